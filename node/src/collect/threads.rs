//! CPU by thread, per window: which share of a process's samples its GC
//! threads took, and its threads grouped by name.
//!
//! The `THREADS` map holds each live thread's cumulative samples; this keeps
//! the previous value per thread (`ThreadKey`: tid plus start time, so a
//! reused tid is a new thread) and turns them into deltas.
use std::collections::HashMap;

use agent_common::ThreadSamples;

pub use tally_core::model::threads::ThreadGroup;

use super::comm_string;
use tally_core::gc::Runtime;

/// A thread: tid plus its start time (ns since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThreadKey {
    pub tid: u32,
    pub start_ns: u64,
}

/// What one process's threads did in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreadWindow {
    /// Samples in threads whose name marks them as GC threads.
    pub gc_samples: u64,
    /// Busiest first.
    pub groups: Vec<ThreadGroup>,
    /// tids of GC threads, so stack attribution can skip their samples.
    pub gc_tids: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct ThreadTracker {
    last: HashMap<ThreadKey, u64>,
}

impl ThreadTracker {
    /// Deltas since the previous call, per process. `runtime_of` says how
    /// to read a process's thread names.
    pub fn tick(
        &mut self,
        entries: &[(u32, ThreadSamples)],
        runtime_of: impl Fn(u32) -> Runtime,
    ) -> HashMap<u32, ThreadWindow> {
        let mut next = HashMap::with_capacity(entries.len());
        let mut by_process: HashMap<u32, HashMap<String, ThreadGroup>> = HashMap::new();
        let mut windows: HashMap<u32, ThreadWindow> = HashMap::new();
        for (tid, t) in entries {
            let key = ThreadKey {
                tid: *tid,
                start_ns: t.start_ns,
            };
            let before = self.last.get(&key).copied().unwrap_or(0);
            next.insert(key, t.samples);
            let delta = t.samples.saturating_sub(before);
            if delta == 0 {
                continue;
            }
            let comm = comm_string(&t.comm);
            let gc = crate::runtimes::threads::is_gc_thread(runtime_of(t.tgid), &comm);
            let window = windows.entry(t.tgid).or_default();
            if gc {
                window.gc_samples += delta;
                window.gc_tids.push(*tid);
            }
            let name = group_name(&comm);
            let group = by_process
                .entry(t.tgid)
                .or_default()
                .entry(name.clone())
                .or_insert(ThreadGroup {
                    name,
                    threads: 0,
                    samples: 0,
                    // Set with the window's other seconds (`collect`).
                    cpu_seconds: 0.0,
                    gc,
                });
            group.threads += 1;
            group.samples += delta;
        }
        self.last = next;
        for (tgid, groups) in by_process {
            let mut groups: Vec<ThreadGroup> = groups.into_values().collect();
            groups.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.name.cmp(&b.name)));
            windows.entry(tgid).or_default().groups = groups;
        }
        windows
    }
}

/// "GC Thread#3" → "GC Thread#", "G1 Conc#0" → "G1 Conc#", "worker-12" →
/// "worker-": thread pools are one group. A name that is all digits stays.
pub fn group_name(comm: &str) -> String {
    let trimmed = comm.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.is_empty() {
        comm.to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(tgid: u32, comm: &str, samples: u64, start_ns: u64) -> ThreadSamples {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        ThreadSamples {
            tgid,
            _pad: 0,
            samples,
            cgroup_id: 1,
            start_ns,
            comm: c,
        }
    }

    #[test]
    fn groups_by_name_and_counts_deltas() {
        let mut t = ThreadTracker::default();
        let first = [
            (11, thread(10, "worker-1", 5, 1)),
            (12, thread(10, "worker-2", 7, 2)),
        ];
        t.tick(&first, |_| Runtime::Native);
        let second = [
            (11, thread(10, "worker-1", 8, 1)),
            (12, thread(10, "worker-2", 9, 2)),
        ];
        let w = t.tick(&second, |_| Runtime::Native);
        let g = &w[&10].groups;
        assert_eq!(g.len(), 1);
        assert_eq!(
            (g[0].name.as_str(), g[0].threads, g[0].samples),
            ("worker-", 2, 5)
        );
        assert_eq!(w[&10].gc_samples, 0);
    }

    #[test]
    fn a_reused_tid_starts_from_zero() {
        let mut t = ThreadTracker::default();
        t.tick(&[(11, thread(10, "a", 50, 1))], |_| Runtime::Native);
        let w = t.tick(&[(11, thread(20, "b", 3, 99))], |_| Runtime::Native);
        assert_eq!(w[&20].groups[0].samples, 3);
        assert!(!w.contains_key(&10));
    }

    #[test]
    fn group_names() {
        assert_eq!(group_name("GC Thread#12"), "GC Thread#");
        assert_eq!(group_name("java"), "java");
        assert_eq!(group_name("12345"), "12345");
    }
}
