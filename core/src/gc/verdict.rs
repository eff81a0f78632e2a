//! From [`GcSignals`] to a [`Verdict`]: `gc-heavy`, `alloc-churn`, `steady`,
//! `idle` or `gc-unobservable`, with a confidence and the reasons that
//! decided it.
//!
//! The rules, in order (the README explains the thresholds):
//! 1. **idle**: under 2% of a core, and no allocator or fault activity worth
//!    naming.
//! 2. **gc-unobservable**: a garbage-collected runtime whose GC Tally cannot
//!    see for most of its CPU ([`GcSight`](super::GcSight)): no GC thread by
//!    name and no symbolized stacks. Its GC share is unknown, not zero, so
//!    no claim is made about its GC or its churn: confidence 0, and the
//!    reasons say why.
//! 3. **Too few samples** ([`MIN_SAMPLES`]): a share or a per-CPU rate drawn
//!    from a handful of cpu-clock samples says nothing. Such a window is
//!    `steady` with a confidence that says how little it saw; a process
//!    that ran for a moment (a shell's child between fork and exec) never
//!    becomes `alloc-churn` from a few calls divided by almost no CPU. And
//!    a GC share decides gc-heavy (or not) only when its interval
//!    ([`SHARE_Z`]) is clear of the threshold; one that straddles it is
//!    `steady` at confidence 0.3, saying so.
//! 4. **gc-heavy**: a garbage-collected runtime spending at least
//!    [`GC_HEAVY_SHARE`] of its CPU in GC, and at least [`GC_HEAVY_MIN_CORES`]
//!    of a core. A GC that burns a tenth of a service's CPU is worth tuning:
//!    that is where GOGC/GOMEMLIMIT, heap sizing or a different collector pay.
//! 5. **alloc-churn**: heavy traffic through the allocator syscalls and the
//!    fault path for the CPU used, without GC to blame: a C or Rust program
//!    churning malloc, or a GC'd one whose collector is not the problem.
//! 6. **steady**: everything else.
//!
//! Churn and faults are supporting evidence only: they raise the confidence
//! of gc-heavy and appear in its reasons, but never make a verdict gc-heavy.
//! So is a container's memory pressure (PSI, [`MEMORY_STALL_SHARE`]): named
//! in any verdict's reasons, and a little more confidence for gc-heavy.
//!
//! [`classify_after`] adds hysteresis for a verdict over history (the
//! collector's): a workload keeps its previous verdict until the signals are
//! clearly past the threshold the other way ([`HYSTERESIS`]).
use serde::Serialize;
use tally_proto as pb;

use super::GcSignals;

/// Share of the window a container stalled on memory (PSI `some`) from
/// which its verdict names it: 1% is 10 ms a second in which some task
/// waited for memory (reclaim, refaults, swap-in) instead of running.
pub const MEMORY_STALL_SHARE: f64 = 0.01;
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
/// cpu-clock samples below which neither a GC share nor a per-CPU rate
/// decides anything (two samples in GC are not "100% GC").
pub const MIN_SAMPLES: u64 = 10;
/// Width of the interval a GC share must clear its threshold by, in
/// standard errors (Wilson score interval). A share drawn from n samples
/// is known to about ±sqrt(p(1-p)/n): 55% from 23 samples is 34%–74%,
/// clearly gc-heavy; 9% from 99 samples is 5%–16%, which cannot tell 9%
/// from the 10% threshold, so it decides nothing.
pub const SHARE_Z: f64 = 2.0;
/// Share of a workload's CPU whose GC must be unseen for the verdict to be
/// gc-unobservable (a blind sidecar does not blind its container).
pub const BLIND_SHARE: f64 = 0.5;
/// How far past a threshold (as a fraction of it) the signals must move to
/// leave the previous verdict: gc-heavy stays gc-heavy down to 75% of
/// [`GC_HEAVY_SHARE`]; steady becomes gc-heavy only at [`GC_HEAVY_SHARE`].
pub const HYSTERESIS: f64 = 0.25;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    GcHeavy,
    AllocChurn,
    Steady,
    Idle,
    /// A GC'd runtime whose GC cannot be seen: nothing is claimed.
    GcUnobservable,
}

impl VerdictKind {
    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::GcHeavy => "gc-heavy",
            VerdictKind::AllocChurn => "alloc-churn",
            VerdictKind::Steady => "steady",
            VerdictKind::Idle => "idle",
            VerdictKind::GcUnobservable => "gc-unobservable",
        }
    }

    /// Every kind, in the order of the README.
    pub const ALL: [VerdictKind; 5] = [
        VerdictKind::GcHeavy,
        VerdictKind::AllocChurn,
        VerdictKind::Steady,
        VerdictKind::Idle,
        VerdictKind::GcUnobservable,
    ];

    /// The kind named `name` ([`VerdictKind::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The wire's kind; `None` for unspecified (or a newer agent's kind).
    pub fn from_proto(k: pb::VerdictKind) -> Option<Self> {
        Some(match k {
            pb::VerdictKind::VerdictGcHeavy => VerdictKind::GcHeavy,
            pb::VerdictKind::VerdictAllocChurn => VerdictKind::AllocChurn,
            pb::VerdictKind::VerdictSteady => VerdictKind::Steady,
            pb::VerdictKind::VerdictIdle => VerdictKind::Idle,
            pb::VerdictKind::VerdictGcUnobservable => VerdictKind::GcUnobservable,
            pb::VerdictKind::VerdictUnspecified => return None,
        })
    }

    pub fn to_proto(self) -> pb::VerdictKind {
        match self {
            VerdictKind::GcHeavy => pb::VerdictKind::VerdictGcHeavy,
            VerdictKind::AllocChurn => pb::VerdictKind::VerdictAllocChurn,
            VerdictKind::Steady => pb::VerdictKind::VerdictSteady,
            VerdictKind::Idle => pb::VerdictKind::VerdictIdle,
            VerdictKind::GcUnobservable => pb::VerdictKind::VerdictGcUnobservable,
        }
    }

    /// The name of a wire verdict's kind; "unknown" where it has none.
    pub fn name_of(v: Option<&pb::Verdict>) -> &'static str {
        v.and_then(|v| Self::from_proto(v.kind()))
            .map_or("unknown", Self::name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub kind: VerdictKind,
    /// 0..1: how far the deciding signal is past its threshold, and how
    /// many signals agree; 0 for gc-unobservable.
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
        cores: s.per_second(s.cpu_seconds),
        gc_cores: s.per_second(s.gc_cpu_seconds()),
        share: s.gc_cpu_share(),
        churn_bytes_per_s: s.per_second(churn),
        churn_bytes_per_cpu_s: churn / cpu,
        calls_per_cpu_s: s.alloc_calls as f64 / cpu,
        faults_per_s: s.faults_per_second(),
        faults_per_cpu_s: s.minor_faults as f64 / cpu,
        cycles_per_s: s.per_second(s.gc_cycles as f64),
    }
}

/// Decides the verdict of one window's signals.
pub fn classify(s: &GcSignals) -> Verdict {
    classify_after(s, None)
}

/// Decides the verdict of a history's signals, given the verdict the same
/// workload had before (`prior`): each threshold it would have to cross to
/// leave that verdict moves [`HYSTERESIS`] of the way against it.
pub fn classify_after(s: &GcSignals, prior: Option<VerdictKind>) -> Verdict {
    let mut verdict = decide(s, prior);
    add_memory_stall(s, &mut verdict);
    verdict
}

/// A memory stall share where it is evidence (at least
/// [`MEMORY_STALL_SHARE`]): the verdicts' reasons, the cost model's
/// sizing from the limit and the report's line all ask here.
pub fn stall_evidence(share: Option<f64>) -> Option<f64> {
    share.filter(|&s| s >= MEMORY_STALL_SHARE)
}

/// Memory pressure is evidence, never a verdict of its own: a container
/// that stalled on memory for at least [`MEMORY_STALL_SHARE`] of the window
/// says so in its reasons; a gc-heavy one is where that matters most (its
/// collector runs so often because the heap has little room under the
/// limit), so it also raises the confidence a little.
fn add_memory_stall(s: &GcSignals, verdict: &mut Verdict) {
    let Some(share) = stall_evidence(s.memory_stall_share()) else {
        return;
    };
    let stalled = format!(
        "stalled on memory {:.1}% of the time (cgroup memory.pressure)",
        100.0 * share
    );
    if verdict.kind == VerdictKind::GcHeavy {
        verdict.reasons.push(format!(
            "{stalled}: the heap has too little headroom under the memory limit"
        ));
        verdict.confidence = (verdict.confidence + 0.05).min(0.99);
    } else {
        verdict.reasons.push(stalled);
    }
}

fn decide(s: &GcSignals, prior: Option<VerdictKind>) -> Verdict {
    let r = rates(s);
    // Leaving `kind` is harder than entering it.
    let stay = |kind: VerdictKind| {
        if prior == Some(kind) {
            1.0 - HYSTERESIS
        } else {
            1.0
        }
    };
    let enough_samples = s.cpu_samples >= MIN_SAMPLES;
    let (share_low, share_high) = wilson(r.share, s.cpu_samples);
    let churn_reasons = if enough_samples {
        churn_reasons(&r, stay(VerdictKind::AllocChurn))
    } else {
        Vec::new()
    };

    let idle_max = IDLE_MAX_CORES * (2.0 - stay(VerdictKind::Idle));
    if r.cores < idle_max && churn_reasons.is_empty() {
        return Verdict {
            kind: VerdictKind::Idle,
            confidence: (1.0 - r.cores / idle_max).clamp(0.5, 1.0),
            reasons: vec![format!("{:.1}% of a core", 100.0 * r.cores)],
        };
    }

    if s.runtime.has_gc() && s.blind_share() >= BLIND_SHARE {
        let why = s.gc_blind.map_or(
            "GC unobservable: no GC threads by name and no symbolized stacks",
            super::GcSight::why,
        );
        let mut reasons = vec![why.to_string(), format!("{:.2} cores", r.cores)];
        if s.gc_cycles > 0 {
            reasons.push(format!(
                "{:.1} GC cycles/s (the runtime's count; its CPU is unseen)",
                r.cycles_per_s
            ));
        }
        reasons.extend(churn_reasons);
        return Verdict {
            kind: VerdictKind::GcUnobservable,
            confidence: 0.0,
            reasons,
        };
    }

    if !enough_samples {
        let mut reasons = vec![
            format!("{:.2} cores", r.cores),
            format!(
                "only {} CPU samples: too few to judge GC or churn (needs {MIN_SAMPLES})",
                s.cpu_samples
            ),
        ];
        if s.runtime.has_gc() {
            reasons.push(format!("GC {}", gc_share_text(s, &r)));
        }
        return Verdict {
            kind: VerdictKind::Steady,
            confidence: 0.5 * s.cpu_samples as f64 / MIN_SAMPLES as f64,
            reasons,
        };
    }

    let heavy_share = GC_HEAVY_SHARE * stay(VerdictKind::GcHeavy);
    let heavy_cores = GC_HEAVY_MIN_CORES * stay(VerdictKind::GcHeavy);
    // The share decides only when its interval is clear of the threshold.
    let heavy = s.runtime.has_gc() && share_low >= heavy_share && r.gc_cores >= heavy_cores;
    let undecided = s.runtime.has_gc()
        && !heavy
        && r.gc_cores >= heavy_cores
        && share_high >= heavy_share
        && r.share >= heavy_share.min(0.5 * GC_HEAVY_SHARE);
    if undecided {
        let mut reasons = vec![
            format!(
                "GC {} ({:.0}%–{:.0}% from {} samples): too few to tell it from {:.0}%",
                gc_share_text(s, &r),
                100.0 * share_low,
                100.0 * share_high,
                s.cpu_samples,
                100.0 * heavy_share
            ),
            format!("{:.2} cores", r.cores),
        ];
        reasons.extend(churn_reasons);
        return Verdict {
            kind: VerdictKind::Steady,
            confidence: 0.3,
            reasons,
        };
    }
    if heavy {
        let mut reasons = vec![format!("GC {}", gc_share_text(s, &r))];
        let mut confidence =
            0.6 + ((r.share - GC_HEAVY_SHARE) / GC_HEAVY_SHARE).clamp(0.0, 1.0) * 0.25;
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
            reasons.push(format!("GC only {}", gc_share_text(s, &r)));
        }
        return Verdict {
            kind: VerdictKind::AllocChurn,
            confidence: (0.5 + 0.25 * strongest.log2().max(0.0)).min(0.95),
            reasons,
        };
    }

    let mut reasons = vec![format!("{:.2} cores", r.cores)];
    if s.runtime.has_gc() {
        reasons.push(format!("GC {}", gc_share_text(s, &r)));
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

/// The Wilson score interval of a share `p` drawn from `n` samples, at
/// [`SHARE_Z`] standard errors.
fn wilson(p: f64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, z2) = (n as f64, SHARE_Z * SHARE_Z);
    let center = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = SHARE_Z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// "33% of CPU (stacks 33%)": the share and its parts; the caller says
/// whether it is "GC" or "GC only".
fn gc_share_text(s: &GcSignals, r: &Rates) -> String {
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
        format!("{:.0}% of CPU", 100.0 * r.share)
    } else {
        format!("{:.0}% of CPU ({})", 100.0 * r.share, parts.join(", "))
    }
}

/// What churns; `factor` scales the thresholds (hysteresis).
fn churn_reasons(r: &Rates, factor: f64) -> Vec<String> {
    let mut reasons = Vec::new();
    if r.churn_bytes_per_cpu_s >= CHURN_BYTES_PER_CPU_SECOND * factor {
        reasons.push(format!(
            "{}/s through mmap/munmap/madvise",
            human_bytes(r.churn_bytes_per_s)
        ));
    }
    if r.calls_per_cpu_s >= CHURN_CALLS_PER_CPU_SECOND * factor {
        reasons.push(format!(
            "{:.0} allocation syscalls per CPU-second",
            r.calls_per_cpu_s
        ));
    }
    if r.faults_per_cpu_s >= CHURN_FAULTS_PER_CPU_SECOND * factor {
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
mod tests;
