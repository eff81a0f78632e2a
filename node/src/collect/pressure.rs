//! Each container's memory and CPU pressure (PSI) per window: its cgroup's
//! `memory.pressure` and `cpu.pressure` (`tally_core::model::pressure`),
//! read once per container cgroup each tick and put on every window of
//! that cgroup.
//!
//! A window's stall time is the difference from the previous tick's read,
//! so a container's first window has none (not a zero: nothing says what
//! its stall was). A cgroup not seen in a tick is forgotten. A file that
//! cannot be read (a kernel without PSI or booted `psi=0`, a cgroup just
//! removed) leaves that resource `None`; one container's failure costs no
//! other its figures.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use tally_core::model::{
    Window,
    pressure::{CgroupPressure, PressureWindow, StallTotals},
};

/// The totals read at the previous tick, by cgroup path.
#[derive(Default)]
struct Last {
    memory: Option<StallTotals>,
    cpu: Option<StallTotals>,
}

pub struct PressureReader {
    mount: PathBuf,
    last: HashMap<String, Last>,
}

impl PressureReader {
    pub fn new(mount: &Path) -> Self {
        Self {
            mount: mount.to_path_buf(),
            last: HashMap::new(),
        }
    }

    /// Sets the pressure of every window whose process is in a container.
    pub fn annotate(&mut self, windows: &mut [Window]) {
        let mut now: HashMap<String, Last> = HashMap::new();
        let mut by_path: HashMap<String, Option<Arc<CgroupPressure>>> = HashMap::new();
        for w in windows.iter_mut() {
            let Some(cgroup) = w.cgroup.as_ref().filter(|c| c.container.is_some()) else {
                continue;
            };
            let pressure = by_path.entry(cgroup.path.clone()).or_insert_with(|| {
                let read = self.read(&cgroup.path);
                let last = self.last.get(&cgroup.path);
                let window = |now: Option<StallTotals>, then: Option<StallTotals>| {
                    Some(PressureWindow {
                        delta: now?.since(&then?),
                        total: now?,
                    })
                };
                let p = CgroupPressure {
                    memory: window(read.memory, last.and_then(|l| l.memory)),
                    cpu: window(read.cpu, last.and_then(|l| l.cpu)),
                };
                now.insert(cgroup.path.clone(), read);
                (p.memory.is_some() || p.cpu.is_some()).then(|| Arc::new(p))
            });
            w.pressure.clone_from(pressure);
        }
        self.last = now;
    }

    fn read(&self, path: &str) -> Last {
        let dir = self.mount.join(path.trim_start_matches('/'));
        let file = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .and_then(|t| StallTotals::parse(&t))
        };
        Last {
            memory: file("memory.pressure"),
            cpu: file("cpu.pressure"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::{model::cgroup::CgroupInfo, testing::test_window};

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn write(dir: &Path, memory_some: u64, cpu_some: u64) {
        std::fs::write(
            dir.join("memory.pressure"),
            format!("some avg10=0.00 avg60=0.00 avg300=0.00 total={memory_some}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total={}\n", memory_some / 2),
        )
        .unwrap();
        std::fs::write(
            dir.join("cpu.pressure"),
            format!("some avg10=0.00 avg60=0.00 avg300=0.00 total={cpu_some}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
        )
        .unwrap();
    }

    #[test]
    fn windows_get_their_cgroups_stall_since_the_last_tick() {
        let root = tempfile::tempdir().unwrap();
        let path = format!("/system.slice/docker-{ID}.scope");
        let dir = root.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let mut reader = PressureReader::new(root.path());
        let windows = || {
            let mut a = test_window(1, "a", &path);
            let mut b = test_window(2, "b", &path);
            // Not in a container: no pressure read.
            let host = test_window(3, "c", "/user.slice");
            for w in [&mut a, &mut b] {
                assert!(w.cgroup.as_ref().unwrap().container.is_some());
            }
            let _: &CgroupInfo = host.cgroup.as_deref().unwrap();
            vec![a, b, host]
        };
        write(&dir, 1_000, 50);
        let mut first = windows();
        reader.annotate(&mut first);
        assert!(
            first.iter().all(|w| w.pressure.is_none()),
            "no previous read"
        );
        write(&dir, 301_000, 80);
        let mut second = windows();
        reader.annotate(&mut second);
        let p = second[0].pressure.as_ref().expect("a delta now");
        assert!(
            Arc::ptr_eq(p, second[1].pressure.as_ref().unwrap()),
            "read once"
        );
        let memory = p.memory.unwrap();
        assert_eq!(memory.delta.some_us, 300_000);
        assert_eq!(memory.delta.full_us, Some(150_000));
        assert_eq!(memory.total.some_us, 301_000);
        assert_eq!(p.cpu.unwrap().delta.some_us, 30);
        assert!(second[2].pressure.is_none());
        // The cgroup goes: nothing to read, nothing kept.
        std::fs::remove_dir_all(&dir).unwrap();
        let mut third = windows();
        reader.annotate(&mut third);
        assert!(third[0].pressure.is_none());
    }
}
