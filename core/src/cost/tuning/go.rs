//! Go: `GOGC` and `GOMEMLIMIT`.
//!
//! The collector starts a cycle when the heap has grown `GOGC`% past the
//! live heap, so the heap peaks at live × (1 + GOGC/100) and, for a fixed
//! allocation rate, cycles (and the marking they cost) are ∝ 1/GOGC. Go
//! keeps the memory of that peak (its scavenger returns it slowly), so the
//! RSS peak stands for the heap peak: live ≈ peak ÷ (1 + GOGC/100), and
//! doubling GOGC adds live × ΔGOGC/100 of RSS. A container limit caps the
//! growth: `GOMEMLIMIT` at 90% of the limit keeps the heap under it, and
//! where the projected peak would pass it the GC runs at the limit, an
//! effective GOGC of 100 × (cap ÷ live − 1). Without a container limit
//! `GOMEMLIMIT` is not recommended.
use super::Change;
use crate::cost::calibration;
use crate::cost::recommend::{
    CurrentSettings, MAX_GOGC, MIB, Observation, Setting, Target, mib, round64,
};

pub(in crate::cost) fn go(
    obs: &Observation,
    current: &CurrentSettings,
    margin: f64,
) -> Option<Change> {
    let peak = obs.rss_peak_bytes as f64;
    let (old, assumed) = match current.gogc {
        Some(g) => (g, false),
        None => (100, true),
    };
    let mut caveats = vec![
        "GOMEMLIMIT needs Go 1.19 or later and counts Go-managed memory, not RSS".to_string(),
        "GOGC read from the environment; a program calling debug.SetGCPercent overrides it unseen"
            .to_string(),
    ];
    if assumed {
        caveats
            .push("the current GOGC could not be read: the default, 100, was assumed".to_string());
    }
    let cap = current.limit_memory_bytes.map(|l| 0.9 * l as f64);
    if old == 0 {
        return Some(gogc_off(obs, current, margin, caveats, assumed));
    }
    let new = old.saturating_mul(2).min(MAX_GOGC);
    if new <= old {
        return None;
    }
    let live = peak / (1.0 + f64::from(old) / 100.0);
    let mut effective = f64::from(new);
    let mut projected = peak + live * f64::from(new - old) / 100.0;
    if let Some(cap) = cap.filter(|&c| projected > c) {
        effective = (100.0 * (cap / live - 1.0)).clamp(f64::from(old), f64::from(new));
        projected = cap.max(peak);
        caveats.push(format!(
            "the container limit caps the heap: GC runs at GOMEMLIMIT, an effective GOGC of {effective:.0}"
        ));
    }
    let gc_cut = 1.0 - f64::from(old) / effective;
    let mut settings = vec![Setting {
        name: "GOGC".into(),
        value: new.to_string(),
        was: current.gogc.map(|g| g.to_string()),
    }];
    // GOMEMLIMIT guards a container limit; without one it could only cap
    // the growth this change buys (measured: a limit 15% above the
    // projected peak bound, and took most of the saving).
    let gomemlimit = match (cap, current.gomemlimit_bytes) {
        (Some(cap), _) => Some(cap.max(peak)),
        (None, Some(l)) if (l as f64) < projected * (1.0 + margin) => {
            Some(round64(projected * (1.0 + margin)))
        }
        (None, _) => {
            caveats.push(
                "no container memory limit known: GOMEMLIMIT is left as it is (set it at 90% of a limit, where there is one)"
                    .to_string(),
            );
            None
        }
    };
    if let Some(limit) = gomemlimit {
        settings.push(Setting {
            name: "GOMEMLIMIT".into(),
            value: format!("{}MiB", mib(limit)),
            was: current
                .gomemlimit_bytes
                .map(|b| format!("{}MiB", mib(b as f64))),
        });
    }
    let change = settings
        .iter()
        .map(|s| format!("{}={}", s.name, s.value))
        .collect::<Vec<_>>()
        .join(" ");
    Some(Change {
        target: Target::Go,
        change,
        settings,
        law: format!(
            "GC CPU ∝ 1/GOGC at a fixed allocation rate: GOGC {old}→{effective:.0} cuts it {:.0}%; the heap peak (RSS {} MiB, live ≈ {} MiB) grows to {} MiB",
            gc_cut * 100.0,
            mib(peak),
            mib(live),
            mib(projected)
        ),
        gc_cut,
        extra_rss_bytes: (projected - peak).max(0.0),
        projected_peak_bytes: projected,
        calibration: calibration::GO,
        assumed,
        caveats,
        memory_bytes: gomemlimit.map(|l| l as u64).into_iter().collect(),
    })
}

/// `GOGC=off`: collections come when the heap reaches `GOMEMLIMIT`, so GC
/// CPU ∝ 1/(limit − live); the limit is raised by half.
fn gogc_off(
    obs: &Observation,
    current: &CurrentSettings,
    margin: f64,
    caveats: Vec<String>,
    assumed: bool,
) -> Change {
    let peak = obs.rss_peak_bytes as f64;
    let floor = if obs.rss_floor_bytes > 0 {
        obs.rss_floor_bytes as f64
    } else {
        peak / 2.0
    };
    let limit = current
        .gomemlimit_bytes
        .map_or(peak, |l| l as f64)
        .max(floor + MIB);
    let new_limit = round64((limit * 1.5).max(peak * (1.0 + margin)));
    let gc_cut = 1.0 - (limit - floor) / (new_limit - floor);
    let mut caveats = caveats;
    caveats.push("GOGC=off: the heap grows to GOMEMLIMIT before every collection".to_string());
    Change {
        target: Target::Go,
        change: format!("GOMEMLIMIT={}MiB", mib(new_limit)),
        settings: vec![Setting {
            name: "GOMEMLIMIT".into(),
            value: format!("{}MiB", mib(new_limit)),
            was: current
                .gomemlimit_bytes
                .map(|b| format!("{}MiB", mib(b as f64))),
        }],
        law: format!(
            "with GOGC=off, GC CPU ∝ 1/(GOMEMLIMIT − live); raising it from {} to {} MiB cuts it {:.0}%",
            mib(limit),
            mib(new_limit),
            gc_cut * 100.0
        ),
        gc_cut,
        extra_rss_bytes: (new_limit - limit).max(0.0),
        projected_peak_bytes: new_limit.max(peak),
        calibration: calibration::GO,
        assumed,
        caveats,
        memory_bytes: vec![new_limit.max(peak) as u64],
    }
}
