//! The names of DESIGN.md: [`ProcKey`], [`Counters`], [`Window`], and what
//! they refer to (cgroups, containers, pods, threads, stacks, the node).
//! Nothing here knows a kernel record's layout: the node's sampler fills
//! these from its maps.
pub mod cgroup;
pub mod container;
pub mod node;
pub mod pod;
pub mod pressure;
pub mod settings;
pub mod stacks;
pub mod threads;
pub mod tick;

use std::sync::Arc;

use serde::Serialize;

pub use self::{
    cgroup::CgroupInfo,
    container::ContainerInfo,
    node::NodeIdentity,
    pod::PodInfo,
    settings::RuntimeSettings,
    stacks::FoldedStacks,
    threads::ThreadGroup,
    tick::{DROP_NAMES, Tick},
};
use crate::gc::{GcSight, GcSignals, Runtime, Verdict};

/// A process: tgid plus its start time, so a reused pid is a new process.
///
/// The start time is in clock ticks since boot, as in field 22 of
/// `/proc/<pid>/stat`; the kernel side's `start_boottime` (ns) is converted
/// with [`ticks_from_ns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProcKey {
    pub tgid: u32,
    pub start_ticks: u64,
}

/// Bytes asked of the kernel: mmap, brk growth, mremap growth. The one
/// definition, for the model's counters and the wire's.
pub fn alloc_bytes(mmap: u64, brk: u64, mremap: u64) -> u64 {
    mmap.saturating_add(brk).saturating_add(mremap)
}

/// Bytes handed back: munmap and madvise(DONTNEED/FREE).
pub fn release_bytes(munmap: u64, madvise_dontneed: u64, madvise_free: u64) -> u64 {
    munmap
        .saturating_add(madvise_dontneed)
        .saturating_add(madvise_free)
}

/// mmap, munmap, brk, mremap and madvise calls.
pub fn alloc_calls(calls: [u64; 5]) -> u64 {
    calls.into_iter().fold(0, u64::saturating_add)
}

/// CPU samples as seconds: the one place the sampling period turns counts
/// into time. The node's sampler calls it when it makes a window; from
/// there on every layer sees seconds.
pub fn samples_to_seconds(samples: u64, sample_period_ns: u64) -> f64 {
    samples as f64 * sample_period_ns as f64 / 1e9
}

/// Converts ns since boot to clock ticks the way `/proc/<pid>/stat` does
/// (`nsec_to_clock_t`: truncating division).
pub fn ticks_from_ns(ns: u64, clock_ticks_per_second: u64) -> u64 {
    ns / (1_000_000_000 / clock_ticks_per_second.max(1))
}

/// Upper bounds of `Counters::gc_pause_buckets`, seconds (the semantic
/// conventions' advice for `jvm.gc.duration`); the kernel side counts
/// against the same bounds in ns.
pub const PAUSE_BOUNDS_SECONDS: [f64; 4] = [0.01, 0.1, 1.0, 10.0];

/// Cumulative totals of one process since the agent first saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub cpu_samples: u64,
    pub mmap_calls: u64,
    pub mmap_bytes: u64,
    pub munmap_calls: u64,
    pub munmap_bytes: u64,
    pub brk_calls: u64,
    pub brk_bytes: u64,
    pub mremap_calls: u64,
    pub mremap_bytes: u64,
    pub madvise_calls: u64,
    pub madvise_dontneed_bytes: u64,
    pub madvise_free_bytes: u64,
    pub madvise_other_bytes: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    /// GC cycles the runtime reported (uprobes, USDT).
    pub gc_cycles: u64,
    /// GC pause time the runtime reported (HotSpot USDT), ns.
    pub gc_pause_ns: u64,
    /// The same pauses by length, when the USDT probes timed them:
    /// buckets of `agent_common::PAUSE_BUCKET_BOUNDS_NS` ([`PAUSE_BOUNDS_SECONDS`]),
    /// then the pauses above the last bound. All zero where the pause time
    /// came from hsperfdata (a sum, no lengths).
    pub gc_pause_buckets: [u64; 5],
    /// utime + stime from `/proc/<pid>/stat`, in clock ticks: not reported,
    /// but it tells that a process ran even when no sample hit it.
    #[serde(skip)]
    pub cpu_ticks: u64,
}

impl Counters {
    /// Applies `f` to each pair of fields.
    fn zip_with(&self, other: &Self, f: impl Fn(u64, u64) -> u64) -> Self {
        Self {
            cpu_samples: f(self.cpu_samples, other.cpu_samples),
            mmap_calls: f(self.mmap_calls, other.mmap_calls),
            mmap_bytes: f(self.mmap_bytes, other.mmap_bytes),
            munmap_calls: f(self.munmap_calls, other.munmap_calls),
            munmap_bytes: f(self.munmap_bytes, other.munmap_bytes),
            brk_calls: f(self.brk_calls, other.brk_calls),
            brk_bytes: f(self.brk_bytes, other.brk_bytes),
            mremap_calls: f(self.mremap_calls, other.mremap_calls),
            mremap_bytes: f(self.mremap_bytes, other.mremap_bytes),
            madvise_calls: f(self.madvise_calls, other.madvise_calls),
            madvise_dontneed_bytes: f(self.madvise_dontneed_bytes, other.madvise_dontneed_bytes),
            madvise_free_bytes: f(self.madvise_free_bytes, other.madvise_free_bytes),
            madvise_other_bytes: f(self.madvise_other_bytes, other.madvise_other_bytes),
            minor_faults: f(self.minor_faults, other.minor_faults),
            major_faults: f(self.major_faults, other.major_faults),
            gc_cycles: f(self.gc_cycles, other.gc_cycles),
            gc_pause_ns: f(self.gc_pause_ns, other.gc_pause_ns),
            gc_pause_buckets: std::array::from_fn(|i| {
                f(self.gc_pause_buckets[i], other.gc_pause_buckets[i])
            }),
            cpu_ticks: f(self.cpu_ticks, other.cpu_ticks),
        }
    }

    /// Field-wise `self - earlier`, never below zero.
    pub fn saturating_sub(&self, earlier: &Self) -> Self {
        self.zip_with(earlier, u64::saturating_sub)
    }

    /// Field-wise maximum: the high-water mark of what has been reported.
    pub fn max(&self, other: &Self) -> Self {
        self.zip_with(other, u64::max)
    }

    /// Field-wise sum.
    pub fn add(&self, other: &Self) -> Self {
        self.zip_with(other, u64::saturating_add)
    }

    /// True when nothing happened.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// Pauses timed one by one (the histogram's count).
    pub fn gc_pauses(&self) -> u64 {
        self.gc_pause_buckets.iter().sum()
    }

    /// GC pause time as seconds (counted in ns, exact).
    pub fn gc_pause_seconds(&self) -> f64 {
        self.gc_pause_ns as f64 / 1e9
    }

    /// Bytes asked of the kernel: mmap, brk growth, mremap growth.
    pub fn alloc_bytes(&self) -> u64 {
        alloc_bytes(self.mmap_bytes, self.brk_bytes, self.mremap_bytes)
    }

    /// Bytes handed back: munmap and madvise(DONTNEED/FREE).
    pub fn release_bytes(&self) -> u64 {
        release_bytes(
            self.munmap_bytes,
            self.madvise_dontneed_bytes,
            self.madvise_free_bytes,
        )
    }

    /// All allocation syscalls.
    pub fn alloc_calls(&self) -> u64 {
        alloc_calls([
            self.mmap_calls,
            self.munmap_calls,
            self.brk_calls,
            self.mremap_calls,
            self.madvise_calls,
        ])
    }
}

/// The deltas of one interval for one process.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub key: ProcKey,
    pub comm: String,
    /// cgroup v2 id, when known.
    pub cgroup_id: Option<u64>,
    /// The cgroup's path and container, filled in by the collector.
    pub cgroup: Option<Arc<CgroupInfo>>,
    /// The container's pod, namespace, owner, requests and limits
    /// (`enrich::kube`), where the container is a Kubernetes one.
    pub pod: Option<Arc<PodInfo>>,
    /// Its runtime settings (Go, JVM, Node), read by the node.
    pub settings: Option<Arc<RuntimeSettings>>,
    /// Length of the interval, seconds.
    pub seconds: f64,
    pub delta: Counters,
    /// Cumulative since the agent first saw the process: what a report
    /// carries so that a lost report loses no total.
    pub total: Counters,
    /// `delta.cpu_samples` as seconds ([`samples_to_seconds`]).
    pub cpu_seconds: f64,
    /// `total.cpu_samples` as seconds.
    pub total_cpu_seconds: f64,
    /// Resident set at the end of the window; 0 once the process is gone.
    pub rss_bytes: u64,
    /// True in the window in which the process exited.
    pub exited: bool,
    pub runtime: Runtime,
    /// CPU of GC threads (by name), and of GC code (by stack) in other
    /// threads, as seconds.
    pub gc_thread_cpu_seconds: f64,
    pub gc_stack_cpu_seconds: f64,
    /// Threads grouped by name, busiest first.
    pub threads: Vec<ThreadGroup>,
    /// Whether its GC could be seen in this window.
    pub gc_sight: GcSight,
    pub verdict: Option<Verdict>,
    /// Memory and CPU pressure of the process's container cgroup in this
    /// window (`pressure`), shared by the windows of that cgroup; `None`
    /// outside containers, in a container's first window, or where the
    /// kernel has no PSI.
    pub pressure: Option<Arc<pressure::CgroupPressure>>,
}

impl Window {
    /// The GC signals of this window, for `gc::classify`.
    pub fn gc_signals(&self) -> GcSignals {
        let d = &self.delta;
        GcSignals {
            runtime: self.runtime,
            window_seconds: self.seconds,
            cpu_seconds: self.cpu_seconds,
            cpu_samples: d.cpu_samples,
            gc_blind_cpu_seconds: if self.gc_sight.is_blind() && self.runtime.has_gc() {
                self.cpu_seconds
            } else {
                0.0
            },
            gc_blind: (self.gc_sight.is_blind() && self.runtime.has_gc()).then_some(self.gc_sight),
            gc_thread_cpu_seconds: self.gc_thread_cpu_seconds,
            gc_stack_cpu_seconds: self.gc_stack_cpu_seconds,
            gc_cycles: d.gc_cycles,
            gc_pause_seconds: d.gc_pause_seconds(),
            alloc_bytes: d.alloc_bytes(),
            release_bytes: d.release_bytes(),
            alloc_calls: d.alloc_calls(),
            minor_faults: d.minor_faults,
            major_faults: d.major_faults,
            rss_bytes: self.rss_bytes,
            // A process's cgroup pressure is its container's signal.
            memory_stall_seconds: None,
        }
    }
}

/// The processes of one container in one window, added up.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerWindow {
    pub container: ContainerInfo,
    /// Path of the container's cgroup (of its first process seen).
    pub cgroup_path: String,
    pub pids: Vec<u32>,
    pub seconds: f64,
    pub delta: Counters,
    pub signals: GcSignals,
    pub verdict: Verdict,
    /// The container's pod, from its processes' windows.
    pub pod: Option<Arc<PodInfo>>,
    /// Its cgroup's memory and CPU pressure in the window.
    pub pressure: Option<Arc<pressure::CgroupPressure>>,
}

/// Groups windows by container; processes outside containers are left out.
pub fn containers(windows: &[Window]) -> Vec<ContainerWindow> {
    let mut by_id: Vec<ContainerWindow> = Vec::new();
    for w in windows {
        let Some(cgroup) = w.cgroup.as_ref() else {
            continue;
        };
        let Some(container) = cgroup.container.as_ref() else {
            continue;
        };
        let signals = w.gc_signals();
        match by_id.iter_mut().find(|c| c.container.id == container.id) {
            Some(c) => {
                c.pids.push(w.key.tgid);
                c.delta = c.delta.add(&w.delta);
                c.signals.merge(&signals);
                // The most precise one: with a container name if any has it.
                if c.pod.as_ref().is_none_or(|p| p.container.is_none()) && w.pod.is_some() {
                    c.pod.clone_from(&w.pod);
                }
                if c.pressure.is_none() {
                    c.pressure.clone_from(&w.pressure);
                }
            }
            None => by_id.push(ContainerWindow {
                container: container.clone(),
                cgroup_path: cgroup.path.clone(),
                pids: vec![w.key.tgid],
                seconds: w.seconds,
                delta: w.delta,
                signals,
                verdict: crate::gc::classify(&signals),
                pod: w.pod.clone(),
                pressure: w.pressure.clone(),
            }),
        }
    }
    for c in &mut by_id {
        // The container's cgroup stalled, not one of its processes: its
        // signals alone take the pressure.
        c.signals.memory_stall_seconds = c.pressure.as_ref().and_then(|p| p.memory_stall_seconds());
        c.verdict = crate::gc::classify(&c.signals);
    }
    by_id
}
