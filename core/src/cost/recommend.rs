//! What to change for a GC-heavy workload, and what it should save.
//!
//! Every recommendation carries the concrete change, the expected monthly
//! saving (730 h; negative means it costs more), the model the saving comes
//! from, a confidence, and the data window behind it. No memory request,
//! limit or cap it recommends (container requests and limits, `GOMEMLIMIT`,
//! `--max-old-space-size`) is ever below the observed RSS peak; `-Xmx`, a
//! cap on the heap alone, is never below its current value, and the
//! container limit given with it covers the new heap plus the non-heap
//! memory already observed.
//!
//! # Models (each checked against a twin running the change)
//!
//! A runtime change is modelled as a cut in GC CPU and a growth in RSS,
//! from the law of its runtime and the current settings read from the
//! process ([`CurrentSettings`]; where one could not be read, the default
//! is assumed, said, and the range widened). The cut and the growth become
//! CPU and memory through factors measured on twins
//! ([`super::calibration`], `cargo xtask bench recommendations`), priced at
//! the node's rates ([`NodeRates`], the OpenCost split), and reported as a
//! point and a range. CPU saved is money saved only once requests (or
//! nodes) shrink to match, which is what the Kubernetes recommendation
//! does; its saving is computed *after* the runtime change, so the two add
//! up.
//!
//! What a saving means depends on the work ([`WorkMode`]): a service doing
//! a fixed amount of work (CPU below its ceiling, tracking the requests)
//! saves CPU and dollars; a CPU-bound job (pinned at its ceiling: CPU limit,
//! GOMAXPROCS or the node's vCPUs) does the same work in less time, and no
//! dollars are claimed for it.
//!
//! - **Go** — [`super::tuning`]'s `go`: GC CPU ∝ 1/GOGC; GOGC doubled (at
//!   most 400), the heap peak grows by live × ΔGOGC/100, `GOMEMLIMIT` above
//!   it (and under 90% of a container limit, which may cap the growth).
//! - **JVM** — `jvm`: GC CPU ∝ 1/heap; the heap it runs at (committed,
//!   from hsperfdata) fixed at twice that with `-Xms`/`-Xmx`; the container
//!   limit covers it plus the non-heap already used. The collector:
//!   ParallelGC for batch work, G1 for a service that fell back to
//!   SerialGC (not counted in the saving).
//! - **Node** — `node`: scavenges ∝ 1/semi-space;
//!   `--max-semi-space-size` quadrupled (at most 128 MiB).
//! - **Kubernetes** — memory request = projected peak (the observed peak,
//!   or the peak after the runtime change) × (1 + margin), limit = request
//!   (memory is not compressible); CPU request = observed peak cores ×
//!   (1 + margin); no CPU limit (CFS throttling stalls GC threads). Saving =
//!   the change in billed `max(request, usage)` at the node's rates.
//! - **Instance shape** — for each type in the region (burstable t3/t4g
//!   excluded: GC-heavy work burns CPU credits) that fits the pod, the cost
//!   of the pod's bottleneck share, `price × max(cpu ÷ usable vCPUs, memory
//!   ÷ usable GiB)` with 95% of vCPUs and 90% of memory usable (kubelet and
//!   system reservations). The cheapest, Graviton included, is recommended
//!   when ≥ 3% cheaper than the current type; moving to arm64 needs an arm64
//!   (multi-arch) image and per-vCPU performance differs.
//!
//! Confidence comes from the data window (runtime changes: < 15 min low,
//! < 24 h medium; requests and shapes, which rest on peaks: < 6 h low,
//! < 7 days medium) and drops a step for each weak input: fewer than 20 GC
//! cycles, a low-confidence headroom estimate, an assumed current setting,
//! or a change of architecture.
use serde::Serialize;

use crate::gc::{Runtime, verdict::stall_evidence};

use super::{
    Confidence, DataWindow, GIB, HOURS_PER_MONTH,
    allocation::NodeRates,
    nonneg,
    prices::{Lifecycle, NodePrice, PriceTable},
};

/// Default safety margin above observed peaks.
pub const DEFAULT_MARGIN: f64 = 0.15;
/// GC share of CPU from which a runtime change is recommended.
pub const DEFAULT_GC_HEAVY_SHARE: f64 = 0.10;
/// Largest GOGC we recommend.
pub const MAX_GOGC: u32 = 400;

pub(super) const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Service,
    Batch,
    #[default]
    Unknown,
}

pub use crate::model::settings::JvmCollector;

/// The workload's current settings, where known.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CurrentSettings {
    /// `GOGC`; `Some(0)` means `GOGC=off`; `None`: it could not be read
    /// (100 is then assumed, and said).
    pub gogc: Option<u32>,
    pub gomemlimit_bytes: Option<u64>,
    /// `-Xmx`.
    pub jvm_max_heap_bytes: Option<u64>,
    pub jvm_collector: Option<JvmCollector>,
    /// `--max-old-space-size`, in MiB as the flag takes it.
    pub node_max_old_space_mib: Option<u64>,
    /// `--max-semi-space-size`, in MiB; `None`: V8's default was not read.
    pub node_max_semi_space_mib: Option<u64>,
    /// `GOMAXPROCS`: the most cores Go code runs on at once.
    pub gomaxprocs: Option<u32>,
    /// `-Xms`.
    pub jvm_initial_heap_bytes: Option<u64>,
    /// The heap the JVM has committed (hsperfdata): the size it runs at.
    pub jvm_heap_committed_bytes: Option<u64>,
    pub request_cpu_cores: Option<f64>,
    pub limit_cpu_cores: Option<f64>,
    pub request_memory_bytes: Option<u64>,
    pub limit_memory_bytes: Option<u64>,
}

/// What was observed of one workload (per replica) over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// The runtime (`gc::Runtime`): Go, JVM and Node get a runtime change;
    /// every other one gets requests and shape only.
    pub runtime: Runtime,
    pub kind: WorkloadKind,
    pub window_seconds: f64,
    pub cpu_seconds: f64,
    pub gc_cpu_seconds: f64,
    pub gc_cycles: u64,
    /// Highest CPU use over the sampling intervals, in cores.
    pub cpu_peak_cores: f64,
    pub rss_avg_bytes: u64,
    pub rss_peak_bytes: u64,
    /// RSS just after collections: the live set plus runtime overhead.
    pub rss_floor_bytes: u64,
    /// Confidence of the headroom estimate ([`super::gctax`]), if made.
    pub headroom_confidence: Option<Confidence>,
    pub replicas: u32,
    /// The most CPU it can use: the CPU limit, GOMAXPROCS or the node's
    /// vCPUs, whichever is least; `None` if none is known.
    pub cpu_ceiling_cores: Option<f64>,
    /// Share of the window in which some task of the container stalled
    /// waiting for memory (its cgroup's `memory.pressure`, `some`); `None`
    /// where unknown (not a container, a kernel without PSI).
    pub memory_stall_share: Option<f64>,
}

impl Observation {
    /// The share of the window it stalled on memory, where that is evidence
    /// ([`stall_evidence`]): a container squeezed by its memory limit, the
    /// kernel reclaiming its pages to hold it under. Its RSS peak is then
    /// the limit's doing, not its demand.
    pub fn squeezed(&self) -> Option<f64> {
        stall_evidence(self.memory_stall_share)
    }
}

/// What a runtime change's saving is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SavingKind {
    /// Fixed work: less CPU for the same work, and so dollars.
    Money,
    /// CPU-bound: the same CPU, for less time; no dollars claimed.
    Time,
}

/// Which saving applies to a workload, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkMode {
    pub kind: SavingKind,
    pub why: String,
}

/// Share of its CPU ceiling from which a workload counts as CPU-bound.
pub const PINNED_SHARE: f64 = 0.85;

/// Fixed work or CPU-bound, from the data: a workload whose average CPU is
/// at its ceiling is limited by CPU, not by its work.
pub fn work_mode(obs: &Observation) -> WorkMode {
    let avg = if obs.window_seconds > 0.0 {
        obs.cpu_seconds / obs.window_seconds
    } else {
        0.0
    };
    match obs.cpu_ceiling_cores.filter(|c| *c > 0.0) {
        Some(ceiling) if avg >= PINNED_SHARE * ceiling => WorkMode {
            kind: SavingKind::Time,
            why: format!(
                "CPU-bound: {avg:.2} cores average, pinned at its {ceiling:.2}-core ceiling"
            ),
        },
        Some(ceiling) => WorkMode {
            kind: SavingKind::Money,
            why: format!(
                "fixed work: {avg:.2} cores average, below its {ceiling:.2}-core ceiling, so CPU tracks the work"
            ),
        },
        None if obs.kind == WorkloadKind::Batch => WorkMode {
            kind: SavingKind::Time,
            why: "a batch job: the same CPU for less time".to_string(),
        },
        None => WorkMode {
            kind: SavingKind::Money,
            why: format!(
                "taken as fixed work ({avg:.2} cores average; its CPU ceiling is unknown)"
            ),
        },
    }
}

/// Where the workload runs and the knobs of the recommender.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub rates: NodeRates,
    pub prices: Option<&'a PriceTable>,
    pub instance_type: Option<&'a str>,
    pub region: Option<&'a str>,
    pub lifecycle: Lifecycle,
    /// The types the table prices in the region, at this lifecycle
    /// ([`PriceTable::prices_in`]), where the caller has them: a report
    /// asks once per region, not once per workload (20,000 times a month's
    /// report of a large cluster).
    pub region_prices: Option<&'a [NodePrice]>,
    pub margin: f64,
    pub gc_heavy_share: f64,
}

impl<'a> Context<'a> {
    /// A context with the default margin and GC-heavy threshold.
    pub fn new(rates: NodeRates) -> Context<'a> {
        Context {
            rates,
            prices: None,
            instance_type: None,
            region: None,
            lifecycle: Lifecycle::OnDemand,
            region_prices: None,
            margin: DEFAULT_MARGIN,
            gc_heavy_share: DEFAULT_GC_HEAVY_SHARE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Go,
    Jvm,
    Node,
    Kubernetes,
    InstanceShape,
}

/// One setting to change: name, new value, old value when known.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub was: Option<String>,
}

impl Setting {
    /// The new value is the one it had.
    pub fn is_unchanged(&self) -> bool {
        self.was.as_deref() == Some(self.value.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub target: Target,
    /// The change in one line, e.g. `GOGC=200 GOMEMLIMIT=1229MiB`.
    pub change: String,
    pub settings: Vec<Setting>,
    /// USD per 730-hour month for all replicas; negative = costs more.
    /// Zero for a CPU-bound workload's runtime change (see `saving`).
    pub monthly_saving_usd: f64,
    /// The range the calibrated model gives, (low, high), where it has one.
    pub monthly_saving_range_usd: Option<(f64, f64)>,
    /// What the saving is: dollars, or (CPU-bound work) time.
    pub saving: SavingKind,
    /// For [`SavingKind::Time`]: the share of CPU time saved, (low, high).
    pub time_saving_share: Option<(f64, f64)>,
    pub confidence: Confidence,
    pub window: DataWindow,
    /// How the saving was computed.
    pub model: String,
    pub caveats: Vec<String>,
    /// The memory requests, limits and caps this recommendation sets
    /// (container, `GOMEMLIMIT`, `--max-old-space-size`), in bytes: none is
    /// below the observed RSS peak. `-Xmx` is not among them (it caps the
    /// heap alone); the container limit that goes with it is.
    pub memory_bytes: Vec<u64>,
}

/// What a runtime change is expected to do, for the Kubernetes change after it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Effect {
    pub(super) gc_cores_saved: f64,
    pub(super) extra_avg_bytes: f64,
    pub(super) projected_peak_bytes: f64,
}

/// Recommendations for one workload: a runtime change when GC takes at least
/// `ctx.gc_heavy_share` of its CPU, then requests and limits, then (with a
/// price table, region and instance type) a better-packing instance shape.
pub fn recommend(
    obs: &Observation,
    current: &CurrentSettings,
    ctx: &Context<'_>,
) -> Vec<Recommendation> {
    let obs = &sanitized(obs);
    let margin = if ctx.margin.is_finite() {
        ctx.margin.clamp(0.0, 2.0)
    } else {
        DEFAULT_MARGIN
    };
    let window = DataWindow {
        seconds: obs.window_seconds,
    };
    let mut out = Vec::new();
    let share = crate::gc::cpu_share(obs.gc_cpu_seconds, obs.cpu_seconds);
    let mut effect = Effect {
        projected_peak_bytes: obs.rss_peak_bytes as f64,
        ..Effect::default()
    };
    if share >= ctx.gc_heavy_share && obs.gc_cpu_seconds > 0.0 && obs.window_seconds > 0.0 {
        let mode = work_mode(obs);
        let change = match obs.runtime {
            Runtime::Go => super::tuning::go(obs, current, margin),
            Runtime::Jvm => super::tuning::jvm(obs, current, margin),
            Runtime::Node => super::tuning::node(obs, current, margin),
            _ => None,
        };
        if let Some((mut rec, e)) = change.and_then(|c| super::tuning::priced(c, obs, ctx, &mode)) {
            rec.window = window;
            effect = e;
            out.push(rec);
        }
    }
    let (k8s, cpu_request, memory_request) = kubernetes(obs, current, ctx, margin, effect);
    out.push(Recommendation { window, ..k8s });
    if let Some(mut shape) = super::shape::shape(obs, ctx, cpu_request, memory_request) {
        shape.window = window;
        out.push(shape);
    }
    out
}

fn sanitized(obs: &Observation) -> Observation {
    let mut o = obs.clone();
    o.window_seconds = nonneg(o.window_seconds);
    o.cpu_seconds = nonneg(o.cpu_seconds);
    o.gc_cpu_seconds = nonneg(o.gc_cpu_seconds).min(o.cpu_seconds);
    o.cpu_peak_cores = nonneg(o.cpu_peak_cores);
    o.rss_peak_bytes = o.rss_peak_bytes.max(o.rss_avg_bytes).max(o.rss_floor_bytes);
    o.rss_floor_bytes = o.rss_floor_bytes.min(o.rss_peak_bytes);
    o.replicas = o.replicas.max(1);
    o.cpu_ceiling_cores = o.cpu_ceiling_cores.filter(|c| c.is_finite() && *c > 0.0);
    o.memory_stall_share = o
        .memory_stall_share
        .filter(|s| s.is_finite())
        .map(|s| s.clamp(0.0, 1.0));
    o
}

pub(super) fn runtime_confidence(obs: &Observation, assumed_setting: bool) -> Confidence {
    let mut c = if obs.window_seconds < 15.0 * 60.0 {
        Confidence::Low
    } else if obs.window_seconds < 86400.0 {
        Confidence::Medium
    } else {
        Confidence::High
    };
    if obs.gc_cycles < 20 {
        c = c.lower();
    }
    if obs.headroom_confidence == Some(Confidence::Low) {
        c = c.lower();
    }
    if assumed_setting {
        c = c.lower();
    }
    c
}

pub(super) fn peak_confidence(obs: &Observation) -> Confidence {
    if obs.window_seconds < 6.0 * 3600.0 {
        Confidence::Low
    } else if obs.window_seconds < 7.0 * 86400.0 {
        Confidence::Medium
    } else {
        Confidence::High
    }
}

pub(super) fn mib(bytes: f64) -> u64 {
    (nonneg(bytes) / MIB).ceil() as u64
}

/// Rounded up to a multiple of 64 MiB, in bytes.
pub(super) fn round64(bytes: f64) -> f64 {
    (nonneg(bytes) / (64.0 * MIB)).ceil() * 64.0 * MIB
}

fn kubernetes(
    obs: &Observation,
    current: &CurrentSettings,
    ctx: &Context<'_>,
    margin: f64,
    e: Effect,
) -> (Recommendation, f64, f64) {
    let peak = obs.rss_peak_bytes as f64;
    // Squeezed by its limit, it would have used more than its peak: the
    // limit is the least it needs, so the request starts from there.
    let squeezed_limit = obs
        .squeezed()
        .and(current.limit_memory_bytes)
        .map_or(0.0, |b| b as f64);
    let memory =
        round64(e.projected_peak_bytes.max(peak).max(squeezed_limit) * (1.0 + margin)).max(peak);
    let cpu = ((obs.cpu_peak_cores * (1.0 + margin)) * 100.0)
        .ceil()
        .max(1.0)
        / 100.0;
    let avg_cores = if obs.window_seconds > 0.0 {
        obs.cpu_seconds / obs.window_seconds
    } else {
        0.0
    };
    // After the runtime change, if any: billed = max(request, usage).
    let used_cores = (avg_cores - e.gc_cores_saved).max(0.0);
    let used_bytes = obs.rss_avg_bytes as f64 + e.extra_avg_bytes;
    let old_cores = current
        .request_cpu_cores
        .map_or(0.0, nonneg)
        .max(used_cores);
    let new_cores = cpu.max(used_cores);
    let old_bytes = current
        .request_memory_bytes
        .map_or(0.0, |b| b as f64)
        .max(used_bytes);
    let new_bytes = memory.max(used_bytes);
    let r = ctx.rates;
    let n = f64::from(obs.replicas);
    let saving = ((old_cores - new_cores) * r.usd_per_vcpu_hour
        + (old_bytes - new_bytes) / GIB * r.usd_per_gib_hour)
        * HOURS_PER_MONTH
        * n;
    let mut caveats = vec![
        "no CPU limit: CFS throttling stalls GC threads and turns GC into latency; if policy requires one, use at least twice the request".to_string(),
    ];
    if e.projected_peak_bytes > peak {
        caveats.push(format!(
            "the memory request covers the peak projected after the runtime change ({} MiB), not only the observed {} MiB",
            mib(e.projected_peak_bytes), mib(peak)
        ));
    }
    if let Some(stall) = obs.squeezed() {
        caveats.push(match current.limit_memory_bytes {
            Some(limit) => format!(
                "it stalled on memory {:.1}% of the time (PSI): the kernel reclaimed its pages to hold it under its {} MiB limit, so its observed peak understates what it uses; the request starts from that limit, not the peak",
                stall * 100.0,
                mib(limit as f64)
            ),
            None => format!(
                "it stalled on memory {:.1}% of the time (PSI): something (a limit this report does not know) held it tight, so its observed peak understates what it uses, and this request may be too small",
                stall * 100.0
            ),
        });
    }
    let fmt_cpu = |c: f64| format!("{}m", (c * 1000.0).round());
    let settings = vec![
        Setting {
            name: "requests.cpu".into(),
            value: fmt_cpu(cpu),
            was: current.request_cpu_cores.map(fmt_cpu),
        },
        Setting {
            name: "requests.memory".into(),
            value: format!("{}Mi", mib(memory)),
            was: current
                .request_memory_bytes
                .map(|b| format!("{}Mi", mib(b as f64))),
        },
        Setting {
            name: "limits.memory".into(),
            value: format!("{}Mi", mib(memory)),
            was: current
                .limit_memory_bytes
                .map(|b| format!("{}Mi", mib(b as f64))),
        },
        Setting {
            name: "limits.cpu".into(),
            value: "unset".into(),
            was: current.limit_cpu_cores.map(fmt_cpu),
        },
    ];
    let rec = Recommendation {
        target: Target::Kubernetes,
        change: format!(
            "requests: cpu {}, memory {}Mi; limits: memory {}Mi, no cpu limit",
            fmt_cpu(cpu),
            mib(memory),
            mib(memory)
        ),
        settings,
        monthly_saving_usd: saving,
        monthly_saving_range_usd: None,
        saving: SavingKind::Money,
        time_saving_share: None,
        confidence: peak_confidence(obs),
        window: DataWindow { seconds: 0.0 },
        model: format!(
            "requests from observed peaks + {:.0}% margin (memory: {} MiB peak{}, CPU: {:.2} cores peak); saving = change in billed max(request, usage) — CPU {:.2}→{:.2} cores, memory {}→{} MiB — at ${:.5}/vCPU-h and ${:.6}/GiB-h × 730 h × {} replica(s)",
            margin * 100.0,
            mib(peak),
            if e.projected_peak_bytes > peak {
                format!(", {} MiB projected", mib(e.projected_peak_bytes))
            } else {
                String::new()
            },
            obs.cpu_peak_cores,
            old_cores,
            new_cores,
            mib(old_bytes),
            mib(new_bytes),
            r.usd_per_vcpu_hour,
            r.usd_per_gib_hour,
            obs.replicas
        ),
        caveats,
        memory_bytes: vec![memory as u64, memory as u64],
    };
    (rec, cpu, memory)
}
