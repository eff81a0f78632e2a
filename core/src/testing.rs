//! Builders for other crates' tests (feature `testing`): never in a
//! shipped binary.
use std::sync::Arc;

use crate::model::{CgroupInfo, Counters, ProcKey, Window, container};

/// A window for rendering tests.
pub fn test_window(pid: u32, comm: &str, path: &str) -> Window {
    Window {
        key: ProcKey {
            tgid: pid,
            start_ticks: 500,
        },
        comm: comm.into(),
        cgroup_id: Some(99),
        cgroup: Some(Arc::new(CgroupInfo {
            id: 99,
            path: path.into(),
            container: container::parse(path),
        })),
        pod: None,
        settings: None,
        seconds: 2.0,
        total: Counters::default(),
        delta: Counters {
            cpu_samples: 99,
            minor_faults: 2048,
            mmap_calls: 10,
            mmap_bytes: 655_360,
            ..Default::default()
        },
        cpu_seconds: 1.0,
        total_cpu_seconds: 0.0,
        rss_bytes: 3 << 20,
        exited: false,
        runtime: Default::default(),
        gc_thread_cpu_seconds: 0.0,
        gc_stack_cpu_seconds: 0.0,
        threads: Vec::new(),
        gc_sight: Default::default(),
        verdict: None,
        pressure: None,
    }
}
