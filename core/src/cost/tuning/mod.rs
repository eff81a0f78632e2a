//! The runtime knobs of [`super::recommend`]: `GOGC`/`GOMEMLIMIT` for Go,
//! the heap size and collector for the JVM, the young generation for Node.
//! Each runtime's module models what its change does to GC CPU and to RSS
//! (a [`Change`]); [`priced`] turns that into a saving, a range, and what
//! the saving means, one way for all of them.
mod go;
mod jvm;
mod node;

pub(super) use go::go;
pub(super) use jvm::jvm;
pub(crate) use node::DEFAULT_MAX_SEMI_SPACE_MIB;
pub(super) use node::node;

use super::calibration::{ASSUMED_WIDENING, Calibration};
use super::recommend::{
    Context, Effect, MIB, Observation, Recommendation, SavingKind, Setting, Target, WorkMode,
    runtime_confidence,
};
use super::{DataWindow, GIB, HOURS_PER_MONTH};

/// What a runtime change is modelled to do, before pricing.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub(super) target: Target,
    pub(super) settings: Vec<Setting>,
    /// The change in one line: environment assignments for Go, flags for
    /// the JVM and Node, exactly as they are applied.
    pub(super) change: String,
    /// The law and its numbers, e.g. "GOGC 100→200: GC CPU ∝ 1/GOGC, −50%".
    pub(super) law: String,
    /// Modelled share of the GC CPU the change removes.
    pub(super) gc_cut: f64,
    /// Modelled steady-state RSS the change adds.
    pub(super) extra_rss_bytes: f64,
    pub(super) projected_peak_bytes: f64,
    pub(super) calibration: Calibration,
    /// A current setting the model rests on was assumed, not read.
    pub(super) assumed: bool,
    pub(super) caveats: Vec<String>,
    pub(super) memory_bytes: Vec<u64>,
}

/// The change priced: a point saving, the range the calibration gives, and
/// for CPU-bound work the time saved instead of dollars. `None` when the
/// modelled effect is nil.
pub(super) fn priced(
    c: Change,
    obs: &Observation,
    ctx: &Context<'_>,
    mode: &WorkMode,
) -> Option<(Recommendation, Effect)> {
    // A cut of NaN is no cut either.
    if c.gc_cut.is_nan() || c.gc_cut <= 0.0 || obs.window_seconds <= 0.0 {
        return None;
    }
    let gc_cores = obs.gc_cpu_seconds / obs.window_seconds;
    let cut_cores = gc_cores * c.gc_cut;
    let widen = if c.assumed { ASSUMED_WIDENING } else { 0.0 };
    let cal = c.calibration;
    let cpu = (
        cut_cores * cal.cpu.0 * (1.0 - widen),
        cut_cores * cal.cpu_mid(),
        cut_cores * cal.cpu.1 * (1.0 + widen),
    );
    let rss = (
        c.extra_rss_bytes * cal.rss.0 * (1.0 - widen),
        c.extra_rss_bytes * cal.rss_mid(),
        c.extra_rss_bytes * cal.rss.1 * (1.0 + widen),
    );
    let r = ctx.rates;
    let n = f64::from(obs.replicas);
    let usd = |cores: f64, bytes: f64| {
        (cores * r.usd_per_vcpu_hour - bytes / GIB * r.usd_per_gib_hour) * HOURS_PER_MONTH * n
    };
    let calibrated = format!(
        "calibrated on twins (cargo xtask bench recommendations): CPU saved = {:.2}–{:.2} × the {:.3} GC cores seen × {:.0}%, RSS added = {:.2}–{:.2} × {:.0} MiB{}",
        cal.cpu.0 * (1.0 - widen),
        cal.cpu.1 * (1.0 + widen),
        gc_cores,
        c.gc_cut * 100.0,
        cal.rss.0 * (1.0 - widen),
        cal.rss.1 * (1.0 + widen),
        c.extra_rss_bytes / MIB,
        if c.assumed {
            ", widened: a current setting was assumed"
        } else {
            ""
        }
    );
    if mode.kind == SavingKind::Money && usd(cpu.2, rss.0) <= 0.0 {
        // Even the calibrated best case costs more than it saves.
        return None;
    }
    let avg_cores = obs.cpu_seconds / obs.window_seconds;
    let (saving, range, time_share, money, effect_cores) = match mode.kind {
        SavingKind::Time => {
            let share = |cores: f64| {
                if avg_cores > 0.0 {
                    cores / avg_cores
                } else {
                    0.0
                }
            };
            (
                0.0,
                None,
                Some((share(cpu.0), share(cpu.2))),
                format!(
                    "the same work in {:.0}–{:.0}% less CPU time, so it finishes sooner; no dollars are claimed until the job is seen finishing sooner",
                    share(cpu.0) * 100.0,
                    share(cpu.2) * 100.0
                ),
                // Pinned at its ceiling, it keeps using what it is given.
                0.0,
            )
        }
        SavingKind::Money => {
            let (lo, mid, hi) = (usd(cpu.0, rss.2), usd(cpu.1, rss.1), usd(cpu.2, rss.0));
            (
                mid,
                Some((lo, hi)),
                None,
                format!(
                    "{:.3} cores × ${:.5}/vCPU-h less {:.0} MiB × ${:.6}/GiB-h, × 730 h × {} replica(s) = ${mid:.2}/month (${lo:.2} to ${hi:.2})",
                    cpu.1,
                    r.usd_per_vcpu_hour,
                    rss.1 / MIB,
                    r.usd_per_gib_hour,
                    obs.replicas
                ),
                cpu.1,
            )
        }
    };
    let mut caveats = c.caveats;
    if let Some(stall) = obs.squeezed() {
        caveats.push(format!(
            "it stalled on memory {:.1}% of the time (PSI): its heap has too little room under its limit, so it collects more often than its settings alone would make it; the headroom this change adds is what relieves it, so give it the memory limit this report recommends with it",
            stall * 100.0
        ));
    }
    if mode.kind == SavingKind::Money && saving <= 0.0 {
        caveats.push(
            "the memory it adds may cost more than the CPU it saves: try it on one replica and compare"
                .to_string(),
        );
    }
    let rec = Recommendation {
        target: c.target,
        change: c.change,
        settings: c.settings,
        monthly_saving_usd: saving,
        monthly_saving_range_usd: range,
        saving: mode.kind,
        time_saving_share: time_share,
        confidence: runtime_confidence(obs, c.assumed),
        window: DataWindow { seconds: 0.0 },
        model: format!("{}; {calibrated}; {}: {money}", c.law, mode.why),
        caveats,
        memory_bytes: c.memory_bytes,
    };
    let effect = Effect {
        gc_cores_saved: effect_cores,
        extra_avg_bytes: rss.1,
        projected_peak_bytes: c.projected_peak_bytes.max(obs.rss_peak_bytes as f64),
    };
    Some((rec, effect))
}
