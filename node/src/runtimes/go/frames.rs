//! Frames of stripped Go binaries, named from their pclntab: the mapping an
//! address is in, the file's table (parsed once per file, shared by the
//! processes that run it), and the link-time address the name is at.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Weak},
};

use crate::runtimes::go::pclntab::GoFuncTable;

/// A mapped file: (device, inode) as `/proc/<pid>/maps` shows them.
pub(crate) type FileId = (u64, u64);

/// Parsed pclntabs by file. Processes own them; the last process of a file
/// to go takes its table with it.
#[derive(Default)]
pub(crate) struct GoTables(HashMap<FileId, Weak<GoFuncTable>>);

impl GoTables {
    /// The table of the file mapped at `mapping` of `pid`, parsing it if no
    /// live process has it already.
    fn get(&mut self, pid: u32, mapping: &Mapping) -> Option<Arc<GoFuncTable>> {
        if let Some(table) = self.0.get(&mapping.file).and_then(Weak::upgrade) {
            return Some(table);
        }
        let parsed = mapping
            .readable_paths(pid)
            .into_iter()
            .map(|path| GoFuncTable::read(&path))
            .find(|r| {
                !matches!(
                    r,
                    Err(crate::runtimes::go::pclntab::PclntabError::Io { .. })
                )
            })?;
        match parsed {
            Ok(table) => {
                let table = Arc::new(table);
                self.0.insert(mapping.file, Arc::downgrade(&table));
                Some(table)
            }
            Err(err) => {
                tracing::debug!(pid, "no Go function table in {}: {err}", mapping.path);
                None
            }
        }
    }

    pub(crate) fn prune(&mut self) {
        self.0.retain(|_, w| w.strong_count() > 0);
    }
}

/// One file-backed line of `/proc/<pid>/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    file: FileId,
    path: String,
}

impl Mapping {
    /// `start-end perms offset dev inode path`; `None` for anonymous ones.
    fn parse(line: &str) -> Option<Self> {
        let mut f = line.splitn(6, ' ');
        let (range, _perms, offset, dev, inode) =
            (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        let path = f.next()?.trim_start();
        let inode: u64 = inode.parse().ok()?;
        if inode == 0 || !path.starts_with('/') {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        let (major, minor) = dev.split_once(':')?;
        let hex = |s| u64::from_str_radix(s, 16).ok();
        Some(Self {
            start: hex(start)?,
            end: hex(end)?,
            offset: hex(offset)?,
            file: ((hex(major)? << 20) | hex(minor)?, inode),
            path: path.to_string(),
        })
    }

    /// Where the agent can open the mapped file, best first: the mapping
    /// itself (the file the process has, whatever its mount namespace or
    /// the path now holds), else the path through the process's root.
    fn readable_paths(&self, pid: u32) -> Vec<PathBuf> {
        let proc = Path::new("/proc").join(pid.to_string());
        let mut paths = vec![
            proc.join("map_files")
                .join(format!("{:x}-{:x}", self.start, self.end)),
        ];
        let path = self.path.strip_suffix(" (deleted)").unwrap_or(&self.path);
        if path.len() == self.path.len() {
            paths.push(proc.join("root").join(path.trim_start_matches('/')));
        }
        paths
    }
}

/// The file-backed mappings of `pid`, sorted by address.
fn file_mappings(pid: u32) -> Vec<Mapping> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|maps| maps.lines().filter_map(Mapping::parse).collect())
        .unwrap_or_default()
}

/// Names from Go pclntabs for the addresses of `pid` without a name yet.
pub(crate) fn go_names(
    pid: u32,
    ips: &[u64],
    names: &mut [Option<Arc<str>>],
    own: &mut HashMap<FileId, Option<Arc<GoFuncTable>>>,
    shared: &mut GoTables,
) {
    let mappings = file_mappings(pid);
    for (ip, name) in ips.iter().zip(names.iter_mut()) {
        if name.is_some() {
            continue;
        }
        let i = mappings.partition_point(|m| m.start <= *ip);
        let Some(m) = i
            .checked_sub(1)
            .map(|i| &mappings[i])
            .filter(|m| *ip < m.end)
        else {
            continue;
        };
        let table = own.entry(m.file).or_insert_with(|| shared.get(pid, m));
        let Some(table) = table else { continue };
        let file_offset = ip - m.start + m.offset;
        *name = table
            .vaddr_of_file_offset(file_offset)
            .and_then(|vaddr| table.name_at(vaddr))
            .map(Arc::from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::runtimes::go::pclntab::tests::{go_available, go_build};

    /// Two processes of one stripped PIE Go binary, deleted from disk once
    /// started: their frames are named through /proc/<pid>/map_files, from
    /// one table parsed once, which goes with the last of them.
    #[test]
    fn stripped_go_frames_share_one_table_per_file() {
        if !go_available() {
            return;
        }
        let built = go_build("stacks-pie", &["-buildmode=pie", "-ldflags=-s -w"]);
        let bin = built.with_file_name("stacks-pie-deleted");
        std::fs::copy(&built, &bin).unwrap();
        let spawn = || {
            std::process::Command::new(&bin)
                .args(["0", "30"])
                .spawn()
                .unwrap()
        };
        let mut procs = [spawn(), spawn()];
        std::thread::sleep(Duration::from_millis(300));
        let link = GoFuncTable::read(&bin).unwrap();
        std::fs::remove_file(&bin).unwrap();
        let entry = link.entry_of("main.main").unwrap();
        let file_offset = link.file_offset_of(entry).unwrap();
        let mut shared = GoTables::default();
        let mut owns = Vec::new();
        for p in &procs {
            let pid = p.id();
            // Where main.main is in this process: its mapping of that
            // file offset, wherever the loader put it.
            let m = file_mappings(pid)
                .into_iter()
                .find(|m| {
                    m.path.ends_with("stacks-pie-deleted (deleted)")
                        && (m.offset..m.offset + (m.end - m.start)).contains(&file_offset)
                })
                .expect("the binary is mapped");
            assert!(
                m.start > 0x400000,
                "PIE is loaded away from its link address"
            );
            let ip = m.start + (file_offset - m.offset) + 1;
            let mut names = vec![None, Some(Arc::from("kept"))];
            let mut own = HashMap::new();
            go_names(pid, &[ip, ip], &mut names, &mut own, &mut shared);
            assert_eq!(names[0].as_deref(), Some("main.main"));
            assert_eq!(names[1].as_deref(), Some("kept"), "named ones stay");
            owns.push(own);
        }
        let tables: Vec<Arc<GoFuncTable>> = owns
            .iter()
            .map(|own| own.values().flatten().next().unwrap().clone())
            .collect();
        assert!(Arc::ptr_eq(&tables[0], &tables[1]), "parsed once");
        drop(tables);
        assert_eq!(shared.0.len(), 1);
        owns.pop();
        shared.prune();
        assert_eq!(shared.0.len(), 1, "one process still runs it");
        owns.pop();
        shared.prune();
        assert!(shared.0.is_empty(), "gone with the last process");
        for p in &mut procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    #[test]
    fn maps_lines() {
        let line = "00464000-004d8000 r--p 00064000 fe:01 10052336                           /tmp/gcw/go alloc";
        assert_eq!(
            Mapping::parse(line),
            Some(Mapping {
                start: 0x464000,
                end: 0x4d8000,
                offset: 0x64000,
                file: ((0xfe << 20) | 1, 10052336),
                path: "/tmp/gcw/go alloc".into(),
            })
        );
        let deleted = "7f00-7f01 r-xp 00000000 fe:00 12 /srv/app (deleted)";
        let m = Mapping::parse(deleted).unwrap();
        // Only the mapping itself reaches a deleted file.
        assert_eq!(
            m.readable_paths(42),
            vec![PathBuf::from("/proc/42/map_files/7f00-7f01")]
        );
        assert_eq!(
            Mapping::parse("7f00-7f01 r-xp 00000000 fe:00 12 /srv/app")
                .unwrap()
                .readable_paths(42)[1],
            PathBuf::from("/proc/42/root/srv/app")
        );
        for anonymous in [
            "c000000000-c013e00000 rw-p 00000000 00:00 0 ",
            "7ffd0000-7ffd1000 rw-p 00000000 00:00 0                          [stack]",
            "garbage",
            "",
        ] {
            assert_eq!(Mapping::parse(anonymous), None, "{anonymous}");
        }
    }
}
