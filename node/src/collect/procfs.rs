//! `/proc/<pid>/stat`: the kernel's exact per-process fault counters, CPU
//! time and RSS, read every tick for every process.
//!
//! This is the agent's hottest userspace path, so it keeps each stat file
//! open and re-reads it with `pread` (no path lookup per tick) and parses
//! only the fields it needs. An open `/proc/<pid>/stat` is bound to its
//! process: once that process is gone, reads fail with `ESRCH` even if the
//! pid was reused, so a cached descriptor never reads the wrong process.
use std::{
    collections::HashMap,
    fs::File,
    io,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

pub use tally_core::procstat::{Stat, StatError, parse_stat, self_usage};

/// Reads the stat file of every process, keeping descriptors open.
pub struct ProcScanner {
    root: PathBuf,
    open: HashMap<u32, File>,
    /// Descriptors kept open at most; past it, files are opened per read.
    max_open: usize,
    buf: Vec<u8>,
}

impl ProcScanner {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            open: HashMap::new(),
            max_open: fd_budget(),
            buf: vec![0; 4096],
        }
    }

    /// Every process's stat, in pid order. Processes that vanish while
    /// being read are skipped.
    pub fn scan(&mut self) -> io::Result<Vec<Stat>> {
        let mut pids: Vec<u32> = std::fs::read_dir(&self.root)?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        // Close descriptors of processes no longer listed.
        if self.open.len() > pids.len() / 2 {
            self.open.retain(|pid, _| pids.binary_search(pid).is_ok());
        }
        let mut stats = Vec::with_capacity(pids.len());
        for pid in pids {
            if let Some(stat) = self.read(pid) {
                stats.push(stat);
            }
        }
        Ok(stats)
    }

    /// One process's stat, or `None` if it is gone.
    pub fn read(&mut self, pid: u32) -> Option<Stat> {
        if let Some(file) = self.open.get(&pid) {
            match read_into(file, &mut self.buf) {
                Ok(n) => return parse_stat(&self.buf[..n]).ok(),
                // Gone, or the pid now names another process: reopen below.
                Err(_) => {
                    self.open.remove(&pid);
                }
            }
        }
        let file = File::open(stat_path(&self.root, pid)).ok()?;
        let n = read_into(&file, &mut self.buf).ok()?;
        let stat = parse_stat(&self.buf[..n]).ok()?;
        if self.open.len() < self.max_open {
            self.open.insert(pid, file);
        }
        Some(stat)
    }
}

fn stat_path(root: &Path, pid: u32) -> PathBuf {
    root.join(pid.to_string()).join("stat")
}

fn read_into(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    // One read from offset 0 returns the whole line: it is far below 4 KiB.
    file.read_at(buf, 0)
}

/// How many stat files to keep open: raise the soft RLIMIT_NOFILE to the
/// hard one and leave room for everything else the agent opens.
fn fd_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with valid pointers.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    (lim.rlim_cur as usize).saturating_sub(512).min(1 << 20)
}

/// Sum of `minflt`/`majflt` over the live threads of `pid`
/// (`/proc/<pid>/task/*/stat`). Used once per process that predates the
/// agent, to learn what its already-dead threads left in the total.
pub fn live_thread_faults(root: &Path, pid: u32) -> io::Result<(u64, u64)> {
    let mut totals = (0, 0);
    for entry in std::fs::read_dir(root.join(pid.to_string()).join("task"))? {
        let Ok(entry) = entry else { continue };
        let Ok(bytes) = std::fs::read(entry.path().join("stat")) else {
            continue;
        };
        if let Ok(stat) = parse_stat(&bytes) {
            totals.0 += stat.minflt;
            totals.1 += stat.majflt;
        }
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line from this kernel (6.18), `cat /proc/self/stat`.
    const CAT: &[u8] = b"7420 (cat) R 7401 7420 7401 34816 7420 4194304 94 0 0 0 0 0 0 0 20 0 1 0 67355 5787648 214 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_a_real_line() {
        let s = parse_stat(CAT).unwrap();
        assert_eq!(s.pid, 7420);
        assert_eq!(s.comm, b"cat");
        assert_eq!(s.state, b'R');
        assert_eq!(
            (s.minflt, s.majflt, s.cpu_ticks, s.starttime, s.rss_pages),
            (94, 0, 0, 67355, 214)
        );
    }

    #[test]
    fn comm_with_spaces_and_parentheses() {
        let line =
            b"42 (a) b (c)) S 1 42 42 0 -1 4194560 10 20 3 4 5 6 0 0 20 0 1 0 999 1000 7 1 1";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, b"a) b (c)");
        assert_eq!(
            (s.minflt, s.majflt, s.cpu_ticks, s.starttime, s.rss_pages),
            (10, 3, 11, 999, 7)
        );
    }

    #[test]
    fn non_utf8_comm_is_kept_as_bytes() {
        let line = b"5 (\xff\xfe) S 1 5 5 0 -1 0 1 0 2 0 0 0 0 0 20 0 1 0 3 4 5 6";
        assert_eq!(parse_stat(line).unwrap().comm, b"\xff\xfe");
    }

    #[test]
    fn truncated_and_garbage_lines_are_errors() {
        assert_eq!(parse_stat(b"1 (x) S 1 2 3"), Err(StatError::Missing(10)));
        assert_eq!(parse_stat(b"garbage"), Err(StatError::NoComm));
        assert_eq!(parse_stat(b")x( S"), Err(StatError::NoComm));
        assert!(parse_stat(b"1 (x) S 1 1 1 0 -1 0 a 0 0 0 0 0 0 0 20 0 1 0 3 4 5 6").is_err());
        assert!(parse_stat(b"").is_err());
    }

    #[test]
    fn negative_rss_reads_as_zero() {
        let line = b"5 (x) S 1 5 5 0 -1 0 1 0 2 0 0 0 0 0 20 0 1 0 3 4 -1 6";
        assert_eq!(parse_stat(line).unwrap().rss_pages, 0);
    }

    #[test]
    fn scanner_reads_this_process_and_rereads_it() {
        let mut scanner = ProcScanner::new("/proc");
        let me = std::process::id();
        let first = scanner.read(me).expect("own stat");
        assert_eq!(first.pid, me);
        // Fault in fresh pages: the cached descriptor must see the change.
        let pages: Vec<u8> = vec![1; 64 << 20];
        std::hint::black_box(&pages);
        let second = scanner.read(me).unwrap();
        assert!(
            second.minflt > first.minflt,
            "{} -> {}",
            first.minflt,
            second.minflt
        );
        assert!(scanner.scan().unwrap().iter().any(|s| s.pid == me));
    }
}
