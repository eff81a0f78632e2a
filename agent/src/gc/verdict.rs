//! From [`GcSignals`] to a [`Verdict`]: `gc-heavy`, `alloc-churn`, `steady`
//! or `idle`, with a confidence and the reasons that decided it.
//!
//! The rules, in order (the README explains the thresholds):
//! 1. **idle**: under 2% of a core, and no allocator or fault activity worth
//!    naming.
//! 2. **gc-heavy**: a garbage-collected runtime spending at least
//!    [`GC_HEAVY_SHARE`] of its CPU in GC, and at least [`GC_HEAVY_MIN_CORES`]
//!    of a core. A GC that burns a tenth of a service's CPU is worth tuning:
//!    that is where GOGC/GOMEMLIMIT, heap sizing or a different collector pay.
//! 3. **alloc-churn**: heavy traffic through the allocator syscalls and the
//!    fault path for the CPU used, without GC to blame: a C or Rust program
//!    churning malloc, or a GC'd one whose collector is not the problem.
//! 4. **steady**: everything else.
//!
//! Churn and faults are supporting evidence only: they raise the confidence
//! of gc-heavy and appear in its reasons, but never make a verdict gc-heavy.
use serde::Serialize;

use super::GcSignals;

/// Share of CPU in GC from which a GC'd process is gc-heavy.
pub const GC_HEAVY_SHARE: f64 = 0.10;
/// And the least GC CPU, in cores, so that a nearly idle process with a few
/// GC samples is not called gc-heavy.
pub const GC_HEAVY_MIN_CORES: f64 = 0.02;
/// Below this CPU (cores) a process with no churn is idle.
pub const IDLE_MAX_CORES: f64 = 0.02;
/// Allocator traffic (bytes mapped plus bytes released) per CPU-second
/// above which a process churns the allocator.
pub const CHURN_BYTES_PER_CPU_SECOND: f64 = 256.0 * 1024.0 * 1024.0;
/// Allocation syscalls per CPU-second above which a process churns.
pub const CHURN_CALLS_PER_CPU_SECOND: f64 = 2_000.0;
/// Minor faults per CPU-second above which a process churns the fault path.
pub const CHURN_FAULTS_PER_CPU_SECOND: f64 = 50_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    GcHeavy,
    AllocChurn,
    Steady,
    Idle,
}

impl VerdictKind {
    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::GcHeavy => "gc-heavy",
            VerdictKind::AllocChurn => "alloc-churn",
            VerdictKind::Steady => "steady",
            VerdictKind::Idle => "idle",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub kind: VerdictKind,
    /// 0..1: how far the deciding signal is past its threshold, and how
    /// many signals agree.
    pub confidence: f64,
    pub reasons: Vec<String>,
}

/// Rates derived from one window's signals.
struct Rates {
    cores: f64,
    gc_cores: f64,
    share: f64,
    churn_bytes_per_s: f64,
    churn_bytes_per_cpu_s: f64,
    calls_per_cpu_s: f64,
    faults_per_s: f64,
    faults_per_cpu_s: f64,
    cycles_per_s: f64,
}

fn rates(s: &GcSignals) -> Rates {
    let secs = s.window_seconds.max(1e-3);
    // Per CPU-second, with a floor so that a few syscalls of an almost idle
    // process do not look like a storm.
    let cpu = s.cpu_seconds.max(0.01 * secs);
    let churn = (s.alloc_bytes + s.release_bytes) as f64;
    Rates {
        cores: s.cpu_seconds / secs,
        gc_cores: s.gc_cpu_seconds() / secs,
        share: s.gc_cpu_share(),
        churn_bytes_per_s: churn / secs,
        churn_bytes_per_cpu_s: churn / cpu,
        calls_per_cpu_s: s.alloc_calls as f64 / cpu,
        faults_per_s: (s.minor_faults + s.major_faults) as f64 / secs,
        faults_per_cpu_s: s.minor_faults as f64 / cpu,
        cycles_per_s: s.gc_cycles as f64 / secs,
    }
}

/// Decides the verdict of one window's signals.
pub fn classify(s: &GcSignals) -> Verdict {
    let r = rates(s);
    let churn_reasons = churn_reasons(&r);

    if r.cores < IDLE_MAX_CORES && churn_reasons.is_empty() {
        return Verdict {
            kind: VerdictKind::Idle,
            confidence: (1.0 - r.cores / IDLE_MAX_CORES).clamp(0.5, 1.0),
            reasons: vec![format!("{:.1}% of a core", 100.0 * r.cores)],
        };
    }

    if s.runtime.has_gc() && r.share >= GC_HEAVY_SHARE && r.gc_cores >= GC_HEAVY_MIN_CORES {
        let mut reasons = vec![gc_share_reason(s, &r)];
        let mut confidence = 0.6 + ((r.share - GC_HEAVY_SHARE) / GC_HEAVY_SHARE).min(1.0) * 0.25;
        if s.gc_cycles > 0 {
            reasons.push(format!("{:.1} GC cycles/s", r.cycles_per_s));
            confidence += 0.1;
        }
        if s.gc_pause_seconds > 0.0 {
            reasons.push(format!(
                "GC pauses {:.0} ms/s",
                1000.0 * s.gc_pause_seconds / s.window_seconds.max(1e-3)
            ));
        }
        if !churn_reasons.is_empty() {
            confidence += 0.05;
        }
        reasons.extend(churn_reasons);
        return Verdict {
            kind: VerdictKind::GcHeavy,
            confidence: confidence.min(0.99),
            reasons,
        };
    }

    if !churn_reasons.is_empty() {
        let strongest = [
            r.churn_bytes_per_cpu_s / CHURN_BYTES_PER_CPU_SECOND,
            r.calls_per_cpu_s / CHURN_CALLS_PER_CPU_SECOND,
            r.faults_per_cpu_s / CHURN_FAULTS_PER_CPU_SECOND,
        ]
        .into_iter()
        .fold(0.0, f64::max);
        let mut reasons = churn_reasons;
        if s.runtime.has_gc() {
            reasons.push(format!("GC only {}", gc_share_reason(s, &r)));
        }
        return Verdict {
            kind: VerdictKind::AllocChurn,
            confidence: (0.5 + 0.25 * strongest.log2().max(0.0)).min(0.95),
            reasons,
        };
    }

    let mut reasons = vec![format!("{:.2} cores", r.cores)];
    if s.runtime.has_gc() {
        reasons.push(gc_share_reason(s, &r));
    }
    Verdict {
        kind: VerdictKind::Steady,
        // The further from every threshold, the surer.
        confidence: if s.runtime.has_gc() {
            (0.95 - r.share / GC_HEAVY_SHARE * 0.4).clamp(0.5, 0.95)
        } else {
            0.9
        },
        reasons,
    }
}

fn gc_share_reason(s: &GcSignals, r: &Rates) -> String {
    let mut parts = Vec::new();
    if s.gc_thread_cpu_seconds > 0.0 {
        parts.push(format!(
            "threads {:.0}%",
            100.0 * s.gc_thread_cpu_seconds / s.cpu_seconds.max(1e-9)
        ));
    }
    if s.gc_stack_cpu_seconds > 0.0 {
        parts.push(format!(
            "stacks {:.0}%",
            100.0 * s.gc_stack_cpu_seconds / s.cpu_seconds.max(1e-9)
        ));
    }
    if parts.is_empty() {
        format!("GC {:.0}% of CPU", 100.0 * r.share)
    } else {
        format!("GC {:.0}% of CPU ({})", 100.0 * r.share, parts.join(", "))
    }
}

fn churn_reasons(r: &Rates) -> Vec<String> {
    let mut reasons = Vec::new();
    if r.churn_bytes_per_cpu_s >= CHURN_BYTES_PER_CPU_SECOND {
        reasons.push(format!(
            "{}/s through mmap/munmap/madvise",
            human_bytes(r.churn_bytes_per_s)
        ));
    }
    if r.calls_per_cpu_s >= CHURN_CALLS_PER_CPU_SECOND {
        reasons.push(format!(
            "{:.0} allocation syscalls per CPU-second",
            r.calls_per_cpu_s
        ));
    }
    if r.faults_per_cpu_s >= CHURN_FAULTS_PER_CPU_SECOND {
        reasons.push(format!("{:.0} page faults/s", r.faults_per_s));
    }
    reasons
}

fn human_bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::Runtime;

    fn signals(runtime: Runtime, cpu: f64, gc_threads: f64, gc_stacks: f64) -> GcSignals {
        GcSignals {
            runtime,
            window_seconds: 1.0,
            cpu_seconds: cpu,
            gc_thread_cpu_seconds: gc_threads,
            gc_stack_cpu_seconds: gc_stacks,
            ..GcSignals::default()
        }
    }

    #[test]
    fn sleeping_process_is_idle() {
        let v = classify(&signals(Runtime::Native, 0.0, 0.0, 0.0));
        assert_eq!(v.kind, VerdictKind::Idle);
        assert!(v.confidence >= 0.9);
    }

    #[test]
    fn go_with_a_third_of_cpu_in_gc_stacks_is_gc_heavy() {
        let mut s = signals(Runtime::Go, 1.8, 0.0, 0.6);
        s.gc_cycles = 40;
        let v = classify(&s);
        assert_eq!(v.kind, VerdictKind::GcHeavy);
        assert!(v.reasons[0].contains("GC 33% of CPU (stacks 33%)"), "{v:?}");
        assert!(v.reasons.iter().any(|r| r.contains("40.0 GC cycles/s")));
        assert!(v.confidence > 0.8);
    }

    #[test]
    fn jvm_gc_threads_count() {
        let v = classify(&signals(Runtime::Jvm, 1.0, 0.31, 0.0));
        assert_eq!(v.kind, VerdictKind::GcHeavy);
        assert!(v.reasons[0].contains("threads 31%"), "{v:?}");
    }

    #[test]
    fn busy_compute_loop_is_steady() {
        let v = classify(&signals(Runtime::Go, 1.0, 0.0, 0.01));
        assert_eq!(v.kind, VerdictKind::Steady);
        let native = classify(&signals(Runtime::Native, 2.0, 0.0, 0.0));
        assert_eq!(native.kind, VerdictKind::Steady);
    }

    #[test]
    fn native_malloc_churn_is_alloc_churn_never_gc_heavy() {
        let mut s = signals(Runtime::Native, 1.0, 0.0, 0.0);
        s.alloc_bytes = 2 << 30;
        s.release_bytes = 2 << 30;
        s.alloc_calls = 30_000;
        // Even with "GC-looking" CPU, a native program cannot be gc-heavy.
        s.gc_stack_cpu_seconds = 0.5;
        let v = classify(&s);
        assert_eq!(v.kind, VerdictKind::AllocChurn);
        assert!(v.reasons.iter().any(|r| r.contains("GiB/s")), "{v:?}");
    }

    #[test]
    fn gc_heavy_needs_enough_gc_cpu_not_just_a_share() {
        // 50% of 1% of a core: a few samples of an almost idle process.
        let v = classify(&signals(Runtime::Go, 0.03, 0.0, 0.015));
        assert_ne!(v.kind, VerdictKind::GcHeavy);
    }

    #[test]
    fn merge_keeps_the_gc_runtime() {
        let mut a = signals(Runtime::Native, 0.1, 0.0, 0.0);
        a.merge(&signals(Runtime::Jvm, 1.0, 0.4, 0.0));
        assert_eq!(a.runtime, Runtime::Jvm);
        assert!((a.gc_cpu_share() - 0.4 / 1.1).abs() < 1e-9);
    }
}
