//! The runtime knobs of [`super::recommend`]: `GOGC`/`GOMEMLIMIT` for Go,
//! `-Xmx` and the collector for the JVM, `--max-old-space-size` for Node,
//! each with the GC-CPU model its saving comes from (see the models in
//! [`super::recommend`]'s documentation).
use super::DataWindow;
use super::recommend::{
    Context, CurrentSettings, Effect, JvmCollector, MAX_GOGC, MIB, Observation, REALIZATION,
    Recommendation, Setting, Target, WorkloadKind, mib, net_saving, round64, runtime_confidence,
};

pub(super) fn go(
    obs: &Observation,
    current: &CurrentSettings,
    ctx: &Context<'_>,
    margin: f64,
) -> (Recommendation, Effect) {
    let gc_cores = obs.gc_cpu_seconds / obs.window_seconds;
    let peak = obs.rss_peak_bytes as f64;
    let floor = if obs.rss_floor_bytes > 0 {
        obs.rss_floor_bytes as f64
    } else {
        peak / 2.0
    };
    let teeth = (peak - floor).max(0.0);
    let old = current.gogc.unwrap_or(100);
    let assumed_gogc = current.gogc.is_none().then(|| {
        "the current GOGC is not known to Tally: the default, 100, was assumed".to_string()
    });
    let mut settings = Vec::new();
    let mut caveats = vec![
        "GOMEMLIMIT needs Go 1.19 or later; it counts Go-managed memory, not RSS, so it is kept under 90% of the container limit".to_string(),
    ];
    caveats.extend(assumed_gogc);
    let (reduction, projected, gomemlimit, model_head) = if old == 0 {
        // GOGC=off: collections are driven by GOMEMLIMIT alone.
        let limit = current
            .gomemlimit_bytes
            .map_or(peak, |l| l as f64)
            .max(floor + 1.0);
        let new_limit = (limit * 1.5).max(peak * (1.0 + margin));
        let reduction = 1.0 - (limit - floor) / (new_limit - floor);
        caveats.push("GOGC=off: the heap grows to GOMEMLIMIT before every collection".to_string());
        (
            reduction,
            new_limit,
            new_limit,
            format!(
                "with GOGC=off, GC CPU ∝ 1/(GOMEMLIMIT − live); raising it from {} to {} MiB cuts modelled GC CPU by {:.0}%",
                mib(limit),
                mib(new_limit),
                reduction * 100.0
            ),
        )
    } else {
        let new = (old.saturating_mul(2)).clamp(old, MAX_GOGC.max(old));
        let projected = floor + teeth * f64::from(new) / f64::from(old);
        let container = current
            .limit_memory_bytes
            .map_or(f64::INFINITY, |l| l as f64);
        let k8s_limit = (projected.max(peak) * (1.0 + margin)).max(if container.is_finite() {
            container
        } else {
            0.0
        });
        let cap = (projected.max(peak) * (1.0 + margin))
            .min(0.9 * k8s_limit)
            .max(peak);
        // Where the cap binds, GC runs at the limit: effective GOGC.
        let effective = (100.0 * (cap / floor - 1.0)).clamp(f64::from(old), f64::from(new));
        let reduction = 1.0 - f64::from(old) / effective;
        if new != old {
            settings.push(Setting {
                name: "GOGC".into(),
                value: new.to_string(),
                was: Some(old.to_string()),
            });
        }
        (
            reduction,
            floor + teeth * effective / f64::from(old),
            cap,
            format!(
                "Go collects when the heap grows GOGC% past the live heap, so GC CPU ∝ 1/GOGC; GOGC {old}→{:.0} (effective, under GOMEMLIMIT) cuts modelled GC CPU by {:.0}%",
                effective,
                reduction * 100.0
            ),
        )
    };
    let gomemlimit = round64(gomemlimit).max(peak);
    settings.push(Setting {
        name: "GOMEMLIMIT".into(),
        value: format!("{}MiB", mib(gomemlimit)),
        was: current
            .gomemlimit_bytes
            .map(|b| format!("{}MiB", mib(b as f64))),
    });
    let saved = gc_cores * reduction.max(0.0) * REALIZATION;
    let extra = ((projected - peak) / 2.0).max(0.0);
    let (saving, money) = net_saving(ctx, obs, saved, extra);
    let rec = Recommendation {
        target: Target::Go,
        change: settings
            .iter()
            .map(|s| format!("{}={}", s.name, s.value))
            .collect::<Vec<_>>()
            .join(" "),
        settings,
        monthly_saving_usd: saving,
        confidence: runtime_confidence(obs, false),
        window: DataWindow { seconds: 0.0 },
        model: format!(
            "{model_head}; we claim {:.0}% of it: {money}",
            REALIZATION * 100.0
        ),
        caveats,
        memory_bytes: vec![gomemlimit as u64],
    };
    (
        rec,
        Effect {
            gc_cores_saved: saved,
            extra_avg_bytes: extra,
            projected_peak_bytes: projected.max(peak),
        },
    )
}

/// The heap-cap law shared by the JVM and Node: GC CPU ∝ 1/(cap − live).
/// Returns (new cap, modelled reduction, live used).
fn grow_cap(cap: f64, live: f64, floor_at_least: f64) -> (f64, f64, f64) {
    let live = live.min(0.8 * cap);
    let free = (cap - live).max(MIB);
    let new = round64((live + 2.0 * free).max(cap * 1.25).max(floor_at_least));
    (new, 1.0 - free / (new - live), live)
}

pub(super) fn jvm(
    obs: &Observation,
    current: &CurrentSettings,
    ctx: &Context<'_>,
    margin: f64,
) -> (Recommendation, Effect) {
    let gc_cores = obs.gc_cpu_seconds / obs.window_seconds;
    let peak = obs.rss_peak_bytes as f64;
    let mut caveats = Vec::new();
    let (xmx, assumed) = match (current.jvm_max_heap_bytes, current.limit_memory_bytes) {
        (Some(x), _) => (x as f64, false),
        (None, Some(limit)) => {
            caveats.push(
                "-Xmx unknown: assumed the JVM default, 25% of the container limit".to_string(),
            );
            (limit as f64 * 0.25, true)
        }
        (None, None) => {
            caveats.push(
                "-Xmx and the container limit unknown: the observed RSS peak is taken as the heap"
                    .to_string(),
            );
            (peak, true)
        }
    };
    let (new_xmx, reduction, _) = grow_cap(xmx, obs.rss_floor_bytes as f64, xmx);
    let non_heap = if peak > xmx { peak - xmx } else { 0.25 * xmx };
    let projected = (new_xmx + non_heap).max(peak);
    let container =
        round64(projected * (1.0 + margin)).max(current.limit_memory_bytes.unwrap_or(0) as f64);
    let mut settings = vec![Setting {
        name: "-Xmx".into(),
        value: format!("{}m", mib(new_xmx)),
        was: current
            .jvm_max_heap_bytes
            .map(|b| format!("{}m", mib(b as f64))),
    }];
    let collector = match (obs.kind, current.jvm_collector) {
        (WorkloadKind::Batch, c) if c != Some(JvmCollector::Parallel) => Some("-XX:+UseParallelGC"),
        (WorkloadKind::Service | WorkloadKind::Unknown, Some(JvmCollector::Serial)) => {
            Some("-XX:+UseG1GC")
        }
        (WorkloadKind::Service | WorkloadKind::Unknown, None)
            if current.request_cpu_cores.is_some_and(|c| c < 2.0) || container < 1792.0 * MIB =>
        {
            caveats.push(
                "with < 2 CPUs or < 1792 MiB the JVM silently picks SerialGC; name G1 explicitly"
                    .to_string(),
            );
            Some("-XX:+UseG1GC")
        }
        _ => None,
    };
    if let Some(flag) = collector {
        settings.push(Setting {
            name: "collector".into(),
            value: flag.into(),
            was: current.jvm_collector.map(|c| format!("{c:?}")),
        });
        caveats.push("the collector change is not counted in the saving".to_string());
    }
    caveats.push(format!(
        "equivalently -XX:MaxRAMPercentage={:.0} with a {} MiB container limit; the rest of the limit is non-heap (metaspace, threads, buffers)",
        (new_xmx / container * 100.0).floor(), mib(container)
    ));
    let saved = gc_cores * reduction.max(0.0) * REALIZATION;
    let extra = ((projected - peak) / 2.0).max(0.0);
    let (saving, money) = net_saving(ctx, obs, saved, extra);
    let rec = Recommendation {
        target: Target::Jvm,
        change: settings
            .iter()
            .map(|s| {
                if s.name == "-Xmx" {
                    format!("-Xmx{}", s.value)
                } else {
                    s.value.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        settings,
        monthly_saving_usd: saving,
        confidence: runtime_confidence(obs, assumed),
        window: DataWindow { seconds: 0.0 },
        model: format!(
            "JVM collections come ∝ 1/(heap max − live); -Xmx {}→{} MiB doubles the free heap and cuts modelled GC CPU by {:.0}%; we claim {:.0}% of it: {money}",
            mib(xmx),
            mib(new_xmx),
            reduction * 100.0,
            REALIZATION * 100.0
        ),
        caveats,
        memory_bytes: vec![container as u64],
    };
    (
        rec,
        Effect {
            gc_cores_saved: saved,
            extra_avg_bytes: extra,
            projected_peak_bytes: projected,
        },
    )
}

pub(super) fn node(
    obs: &Observation,
    current: &CurrentSettings,
    ctx: &Context<'_>,
    margin: f64,
) -> (Recommendation, Effect) {
    let gc_cores = obs.gc_cpu_seconds / obs.window_seconds;
    let peak = obs.rss_peak_bytes as f64;
    let mut caveats = Vec::new();
    let (old, assumed) = match current.node_max_old_space_mib {
        Some(m) => (m as f64 * MIB, false),
        None => {
            caveats.push(
                "--max-old-space-size unknown: the observed RSS peak is taken as V8's heap limit"
                    .to_string(),
            );
            (peak, true)
        }
    };
    let (new, reduction, _) = grow_cap(old, obs.rss_floor_bytes as f64, peak * (1.0 + margin));
    let projected = (peak + (new - old)).max(peak);
    let per_second = obs.gc_cycles as f64 / obs.window_seconds;
    if per_second > 10.0 {
        caveats.push(format!(
            "{per_second:.0} collections/s are mostly young-generation scavenges, which this flag does not reduce; try --max-semi-space-size=64 as a separate, measured change"
        ));
    }
    let saved = gc_cores * reduction.max(0.0) * REALIZATION;
    let extra = ((projected - peak) / 2.0).max(0.0);
    let (saving, money) = net_saving(ctx, obs, saved, extra);
    let value = mib(new);
    let rec = Recommendation {
        target: Target::Node,
        change: format!("--max-old-space-size={value}"),
        settings: vec![Setting {
            name: "--max-old-space-size".into(),
            value: value.to_string(),
            was: current.node_max_old_space_mib.map(|m| m.to_string()),
        }],
        monthly_saving_usd: saving,
        confidence: runtime_confidence(obs, assumed),
        window: DataWindow { seconds: 0.0 },
        model: format!(
            "V8 old-space collections come ∝ 1/(limit − live); {}→{value} MiB doubles the free old space and cuts modelled GC CPU by {:.0}%; we claim {:.0}% of it: {money}",
            mib(old),
            reduction * 100.0,
            REALIZATION * 100.0
        ),
        caveats,
        memory_bytes: vec![new as u64],
    };
    (
        rec,
        Effect {
            gc_cores_saved: saved,
            extra_avg_bytes: extra,
            projected_peak_bytes: projected,
        },
    )
}
