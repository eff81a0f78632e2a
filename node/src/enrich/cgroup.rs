//! cgroup v2 ids to paths, and paths to containers.
//!
//! The kernel side records `bpf_get_current_cgroup_id()`, which is the inode
//! number of the cgroup's directory in the cgroup2 filesystem. Userspace
//! turns it into a path by walking the mounted hierarchy once and caching
//! every id it saw. An id never looked up before triggers a new walk at
//! once (a container started during the tick must be named in its first
//! window); an id a walk already missed (a cgroup that is gone) triggers one
//! at most every half second. Ids are
//! namespace-independent, unlike `/proc/<pid>/cgroup`, which is relative to
//! the reader's cgroup namespace.
use std::{
    collections::{HashMap, HashSet},
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

pub use tally_core::model::cgroup::CgroupInfo;
use tally_core::model::container;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo)")]
    NoCgroup2,
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Finds where cgroup2 is mounted: `/sys/fs/cgroup` on pure v2 hosts (EKS
/// AL2023, Bottlerocket), `/sys/fs/cgroup/unified` on hybrid ones.
///
/// In a pod, the container's own `/sys/fs/cgroup` shows only its cgroup
/// namespace (its root is `/` there), while the host's hierarchy mounted
/// into it (the DaemonSet's `/host/sys/fs/cgroup`) has a root above the
/// namespace's, which mountinfo spells `/../../..`: the mount reaching
/// highest wins, so the walk sees every cgroup of the node.
pub fn find_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    // mountinfo(5): "36 35 98:0 /root /mnt rw,noatime master:1 - cgroup2 cgroup2 rw"
    let mut found: Vec<(usize, PathBuf)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let mut fields = left.split(' ');
            let root = fields.nth(3)?;
            let mount_point = fields.next()?;
            // "/" or only ".." steps: the root of the hierarchy as far as
            // this cgroup namespace can tell.
            let ups = root
                .split('/')
                .filter(|s| !s.is_empty())
                .try_fold(0usize, |n, seg| (seg == "..").then_some(n + 1))?;
            (fstype == "cgroup2").then(|| (ups, PathBuf::from(unescape_mount_path(mount_point))))
        })
        .collect();
    // Highest root first, then the shortest mount point: the host's own
    // over bind mounts below it.
    found.sort_by_key(|(ups, p)| (std::cmp::Reverse(*ups), p.as_os_str().len()));
    found.into_iter().next().map(|(_, p)| p)
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the cgroup v2 line (`0::<path>`) of `/proc/<pid>/cgroup`.
pub fn parse_proc_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Resolves cgroup ids to [`CgroupInfo`], with a cache.
pub struct CgroupResolver {
    mount: PathBuf,
    by_id: HashMap<u64, Arc<CgroupInfo>>,
    /// Ids a walk did not find: gone before they were looked up, or made
    /// after the walk. They wait for the next timed walk.
    missed: HashSet<u64>,
    last_walk: Option<Instant>,
    /// Shortest time between two walks of the hierarchy.
    min_walk_interval: Duration,
}

impl CgroupResolver {
    /// Finds the cgroup2 mount of this host.
    pub fn discover() -> Result<Self, CgroupError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| {
            CgroupError::Read {
                path: "/proc/self/mountinfo".into(),
                source,
            }
        })?;
        let mount = find_cgroup2_mount(&mountinfo).ok_or(CgroupError::NoCgroup2)?;
        Ok(Self::new(mount))
    }

    pub fn new(mount: PathBuf) -> Self {
        Self {
            mount,
            by_id: HashMap::new(),
            missed: HashSet::new(),
            last_walk: None,
            min_walk_interval: Duration::from_millis(500),
        }
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The cgroup with this id, walking the hierarchy again if it is new.
    /// `None` when the cgroup is gone (a container that already exited).
    pub fn resolve(&mut self, id: u64) -> Option<Arc<CgroupInfo>> {
        if let Some(info) = self.by_id.get(&id) {
            return Some(info.clone());
        }
        let due = self
            .last_walk
            .is_none_or(|t| t.elapsed() >= self.min_walk_interval);
        if due {
            // Bounded: only the ids missed since the last timed walk.
            self.missed.clear();
        }
        if due || !self.missed.contains(&id) {
            self.walk();
        }
        let found = self.by_id.get(&id).cloned();
        if found.is_none() {
            self.missed.insert(id);
        }
        found
    }

    /// The cgroup of a live process, from `/proc/<pid>/cgroup`: for processes
    /// the kernel side has not reported an id for yet.
    pub fn resolve_pid(&mut self, proc_root: &Path, pid: u32) -> Option<Arc<CgroupInfo>> {
        let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
        let path = parse_proc_cgroup(&text)?;
        // Paths of processes outside the reader's cgroup namespace start with
        // "/.."; they cannot be looked up under the mount.
        if path.starts_with("/..") {
            return None;
        }
        let id = std::fs::metadata(self.mount.join(path.trim_start_matches('/')))
            .ok()?
            .ino();
        Some(self.insert(id, path.to_string()))
    }

    fn insert(&mut self, id: u64, path: String) -> Arc<CgroupInfo> {
        self.by_id
            .entry(id)
            .or_insert_with(|| {
                Arc::new(CgroupInfo {
                    id,
                    container: container::parse(&path),
                    path,
                })
            })
            .clone()
    }

    /// Records every cgroup under the mount. Ids never change while a cgroup
    /// lives and are not reused (64-bit kernfs ids), so entries stay valid.
    fn walk(&mut self) {
        self.last_walk = Some(Instant::now());
        let mut stack = vec![self.mount.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let rel = dir.strip_prefix(&self.mount).unwrap_or(Path::new(""));
            let path = format!("/{}", rel.to_string_lossy());
            self.insert(meta.ino(), path);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }

    /// Forgets cgroups that no longer exist, so the cache stays bounded as
    /// containers come and go.
    pub fn prune(&mut self) {
        let mount = self.mount.clone();
        self.by_id
            .retain(|_, info| mount.join(info.path.trim_start_matches('/')).exists());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unified_mount_on_hybrid_host() {
        let mi = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd";
        assert_eq!(
            find_cgroup2_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_pure_v2_mount_and_ignores_subtree_bind_mounts() {
        let mi = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
99 30 0:26 /kubepods.slice /host/cg rw - cgroup2 cgroup2 rw
100 30 0:26 / /var/lib/my\\040dir/cg rw - cgroup2 cgroup2 rw";
        assert_eq!(
            find_cgroup2_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let only_escaped = "100 30 0:26 / /var/lib/my\\040dir/cg rw - cgroup2 cgroup2 rw";
        assert_eq!(
            find_cgroup2_mount(only_escaped),
            Some(PathBuf::from("/var/lib/my dir/cg"))
        );
        assert_eq!(
            find_cgroup2_mount("1 0 0:1 / / rw - ext4 /dev/vda rw"),
            None
        );
    }

    #[test]
    fn in_a_pod_the_hosts_hierarchy_wins_over_the_namespaced_one() {
        // A container in a cgroup namespace, with the host's /sys/fs/cgroup
        // mounted read-only at /host/sys/fs/cgroup.
        let mi = "\
1201 1190 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate
1210 1190 0:26 /../../.. /host/sys/fs/cgroup ro,relatime master:4 - cgroup2 cgroup2 rw,nsdelegate
1211 1190 0:26 /../../kubepods.slice /host/other ro,relatime - cgroup2 cgroup2 rw";
        assert_eq!(
            find_cgroup2_mount(mi),
            Some(PathBuf::from("/host/sys/fs/cgroup"))
        );
    }

    #[test]
    fn proc_cgroup_v2_line() {
        let hybrid = "12:pids:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n";
        assert_eq!(
            parse_proc_cgroup(hybrid),
            Some("/user.slice/session-1.scope")
        );
        assert_eq!(parse_proc_cgroup("0::/\n"), Some("/"));
        assert_eq!(parse_proc_cgroup("3:cpu:/x\n"), None);
    }

    #[test]
    fn resolves_this_process_by_pid_and_by_id() {
        let Ok(mut resolver) = CgroupResolver::discover() else {
            assert!(std::env::var_os("CI").is_none(), "CI needs a cgroup2 mount");
            eprintln!("SKIP: no cgroup2 mount");
            return;
        };
        let me = std::process::id();
        let by_pid = resolver
            .resolve_pid(Path::new("/proc"), me)
            .expect("own cgroup");
        let mut fresh = CgroupResolver::new(resolver.mount().to_path_buf());
        let by_id = fresh.resolve(by_pid.id).expect("id found by walking");
        assert_eq!(by_id.path, by_pid.path);
        assert!(fresh.resolve(u64::MAX).is_none());
    }

    #[test]
    fn a_cgroup_made_after_a_walk_is_found_at_once() {
        let root = tempfile::tempdir().unwrap();
        let mut resolver = CgroupResolver::new(root.path().to_path_buf());
        resolver.min_walk_interval = Duration::from_secs(3600);
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert!(resolver.resolve(ino(root.path())).is_some());
        // Within the half second after that walk, as a container started
        // during the tick would be.
        let dir = root.path().join("docker").join("a".repeat(64));
        std::fs::create_dir_all(&dir).unwrap();
        let found = resolver.resolve(ino(&dir)).expect("found by a new walk");
        assert_eq!(found.path, format!("/docker/{}", "a".repeat(64)));
        // An id already missed waits for the timed walk.
        assert!(resolver.resolve(u64::MAX).is_none());
        assert!(resolver.missed.contains(&u64::MAX));
        let walked = resolver.last_walk;
        assert!(resolver.resolve(u64::MAX).is_none());
        assert_eq!(resolver.last_walk, walked, "no second walk for a missed id");
    }
}
