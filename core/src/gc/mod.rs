//! GC signals and verdicts: the one classification library, used by the
//! agent (per process, per container on a node) and by the collector (per
//! workload across nodes).
//!
//! No signal is enough alone, so a verdict combines:
//! - CPU in GC threads, by thread name;
//! - CPU in GC code, by sampled stack, for runtimes whose GC runs on ordinary
//!   threads (Go);
//! - GC cycles and pauses from the runtime itself (uprobes, USDT, hsperfdata);
//! - allocator churn and faults, as supporting evidence only.
//!
//! And whether the GC could be seen at all ([`GcSight`]): a GC'd process
//! with no GC thread by name and no symbolized stacks has an unknown GC
//! share, not a zero one, and its verdict says so.
pub mod runtime;
pub mod verdict;

pub use runtime::Runtime;
pub use verdict::{Verdict, VerdictKind, classify, classify_after};

/// `part` of `cpu_seconds` as a share, 0..1; 0 without CPU. Every share of
/// CPU (GC, blind) is this one function.
pub fn cpu_share(part: f64, cpu_seconds: f64) -> f64 {
    if cpu_seconds <= 0.0 {
        0.0
    } else {
        (part / cpu_seconds).clamp(0.0, 1.0)
    }
}

/// Whether an instrument that measures GC CPU worked for a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum GcSight {
    /// GC threads by name, or GC code in symbolized stacks (or a runtime
    /// without a GC, where there is nothing to see).
    #[default]
    Seen,
    /// Its stacks are sampled, but no frame has a symbol: a stripped
    /// binary without a Go pclntab, or JIT code only.
    NoSymbols,
    /// No GC thread by name, and its stacks are not sampled.
    NoInstrument,
}

impl GcSight {
    pub fn is_blind(self) -> bool {
        self != GcSight::Seen
    }

    /// Why the GC share is unknown, for a verdict's reasons.
    pub fn why(self) -> &'static str {
        match self {
            GcSight::Seen => "GC seen",
            GcSight::NoSymbols => {
                "GC unobservable: no GC threads by name, and its sampled stacks have no symbols (stripped binary?)"
            }
            GcSight::NoInstrument => {
                "GC unobservable: no GC threads by name, and its stacks are not sampled"
            }
        }
    }
}

/// What one window says about a process or a workload's GC.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GcSignals {
    pub runtime: Runtime,
    pub window_seconds: f64,
    /// All CPU of the process(es), from samples.
    pub cpu_seconds: f64,
    /// The cpu-clock samples behind `cpu_seconds`: how much a share drawn
    /// from them can say.
    pub cpu_samples: u64,
    /// CPU of the processes whose GC could not be seen ([`GcSight`]).
    pub gc_blind_cpu_seconds: f64,
    /// Why, where one process says (the agent's own processes); `None`
    /// where only the blind CPU is known (the collector's workloads).
    pub gc_blind: Option<GcSight>,
    /// CPU of threads whose names are GC threads.
    pub gc_thread_cpu_seconds: f64,
    /// CPU of samples in other threads whose stack is in GC code.
    pub gc_stack_cpu_seconds: f64,
    /// GC cycles the runtime reported, when it is observed.
    pub gc_cycles: u64,
    pub gc_pause_seconds: f64,
    /// Bytes asked of the kernel: mmap, brk growth, mremap growth.
    pub alloc_bytes: u64,
    /// Bytes handed back: munmap, madvise(DONTNEED/FREE).
    pub release_bytes: u64,
    /// mmap, munmap, brk, mremap and madvise calls.
    pub alloc_calls: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    pub rss_bytes: u64,
    /// Time in which some task of the container stalled waiting for memory
    /// (its cgroup's `memory.pressure`), seconds; `None` for a process
    /// (pressure is its cgroup's, not its own) or where it is unknown.
    pub memory_stall_seconds: Option<f64>,
}

impl GcSignals {
    /// Share of the window in which the container stalled on memory.
    pub fn memory_stall_share(&self) -> Option<f64> {
        self.memory_stall_seconds
            .map(|s| (s / self.window_seconds.max(1e-3)).min(1.0))
    }

    /// CPU attributed to GC.
    pub fn gc_cpu_seconds(&self) -> f64 {
        self.gc_thread_cpu_seconds + self.gc_stack_cpu_seconds
    }

    /// `count` per second of the window (at least 1 ms): every rate of a
    /// window or a workload is this one function.
    pub fn per_second(&self, count: f64) -> f64 {
        count / self.window_seconds.max(1e-3)
    }

    /// Bytes asked of the kernel per second.
    pub fn alloc_bytes_per_second(&self) -> f64 {
        self.per_second(self.alloc_bytes as f64)
    }

    /// Minor and major faults per second.
    pub fn faults_per_second(&self) -> f64 {
        self.per_second(self.minor_faults.saturating_add(self.major_faults) as f64)
    }

    /// Share of the CPU whose GC could not be seen, 0..1.
    pub fn blind_share(&self) -> f64 {
        cpu_share(self.gc_blind_cpu_seconds, self.cpu_seconds)
    }

    /// The same signals one window later: counts add up and the window
    /// grows (`merge` adds processes side by side in one window); RSS is
    /// the later one's.
    pub fn then(&mut self, later: &GcSignals) {
        let seconds = self.window_seconds + later.window_seconds;
        let rss = later.rss_bytes;
        self.merge(later);
        self.window_seconds = seconds;
        self.rss_bytes = rss;
    }

    /// The GC share where it is known: `None` for a GC'd runtime whose GC
    /// could not be seen for most of its CPU (its share is unknown, and
    /// outputs say so instead of printing 0).
    pub fn observed_gc_share(&self) -> Option<f64> {
        (!(self.runtime.has_gc() && self.blind_share() >= verdict::BLIND_SHARE))
            .then(|| self.gc_cpu_share())
    }

    /// Share of the CPU spent in GC, 0..1; 0 without CPU.
    pub fn gc_cpu_share(&self) -> f64 {
        cpu_share(self.gc_cpu_seconds(), self.cpu_seconds)
    }

    /// Adds another process's (or window's) signals: for containers and
    /// workloads. The runtime is kept when both agree, else the GC'd one.
    pub fn merge(&mut self, other: &GcSignals) {
        self.runtime = Runtime::merge(self.runtime, other.runtime);
        self.window_seconds = self.window_seconds.max(other.window_seconds);
        self.cpu_seconds += other.cpu_seconds;
        self.cpu_samples += other.cpu_samples;
        self.gc_blind_cpu_seconds += other.gc_blind_cpu_seconds;
        // Two blind processes for different reasons: say the first.
        self.gc_blind = self.gc_blind.or(other.gc_blind);
        self.gc_thread_cpu_seconds += other.gc_thread_cpu_seconds;
        self.gc_stack_cpu_seconds += other.gc_stack_cpu_seconds;
        self.gc_cycles += other.gc_cycles;
        self.gc_pause_seconds += other.gc_pause_seconds;
        self.alloc_bytes += other.alloc_bytes;
        self.release_bytes += other.release_bytes;
        self.alloc_calls += other.alloc_calls;
        self.minor_faults += other.minor_faults;
        self.major_faults += other.major_faults;
        self.rss_bytes += other.rss_bytes;
        self.memory_stall_seconds = match (self.memory_stall_seconds, other.memory_stall_seconds) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
}
