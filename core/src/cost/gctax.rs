//! The GC tax of a workload: what its garbage collector costs.
//!
//! `GC tax = GC CPU seconds × the node's CPU rate
//!         + memory headroom held by GC × the node's memory rate × hours`,
//! with the rates of [`super::allocation::NodeRates`] (OpenCost's split).
//!
//! # Headroom from the RSS sawtooth
//!
//! A tracing collector lets the heap grow to a target before collecting, so
//! RSS climbs from a *floor* (roughly the live set just after a collection)
//! to a *peak* (just before the next), then drops: a sawtooth. The memory
//! held for GC's sake is the height of the teeth. We estimate it as the mean
//! over collections of (peak before the collection − floor after it):
//!
//! - **With GC timestamps** (uprobes/USDT/hsperfdata report each cycle): for
//!   collection *i* at time gᵢ, the peak is the highest RSS sample in
//!   (gᵢ₋₁, gᵢ] and the floor the lowest in (gᵢ, gᵢ₊₁]. Cycles without a
//!   sample on both sides are skipped; if most are, the sampling is coarser
//!   than the GC and we fall back to:
//! - **From the sawtooth itself** (only counts, or nothing, from the
//!   runtime): a drop of at least a quarter of the series' spread (its
//!   95th − 5th percentile) from a running peak starts a collection; the
//!   lowest point before RSS climbs back by the same amount is its floor.
//!   Noise below a quarter of the spread cannot fake a cycle.
//! - **Flat**: when the spread is under 2% of the median RSS (or 1 MiB), no
//!   sawtooth is visible — typical of a JVM, whose committed heap stays
//!   resident, or of a Go heap far below its limit with the scavenger idle.
//!   The spread is reported as the headroom, with low confidence: RSS cannot
//!   show the headroom inside a committed heap.
//!
//! - **No collections**: when the runtime reported counts per window and
//!   they add up to zero in the span, the headroom is zero, whatever RSS does.
//!
//! Confidence: high with ≥ 10 cycles whose heights vary little (coefficient
//! of variation ≤ 0.5), medium with ≥ 3, low otherwise, and low whenever the
//! runtime reports more than twice the collections the series shows (peaks
//! and floors are then missed, so headroom is underestimated).
use serde::Serialize;

use super::{Confidence, DataWindow, HOURS_PER_MONTH, allocation::NodeRates, nonneg};

/// What the runtime says about its collections in the series' span.
#[derive(Debug, Clone, Copy)]
pub enum GcCycles<'a> {
    /// The time of each collection (seconds, same clock as the series).
    Timestamps(&'a [f64]),
    /// Per window: (window end time, collections in the window).
    PerWindow(&'a [(f64, u64)]),
    Unknown,
}

/// How the headroom was estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadroomMethod {
    CycleTimestamps,
    SawtoothDrops,
    /// From rolled-up history: the mean RSS swing (peak − floor) within a
    /// minute, as the collector's 1-minute tier kept it.
    MinuteTeeth,
    Flat,
    /// Too few samples to say anything.
    Insufficient,
    /// The runtime reported no collection in the span: nothing is held for
    /// GC, whatever the RSS does.
    NoCollections,
}

/// The memory a collector holds as headroom, with how it was estimated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadroomEstimate {
    pub bytes: u64,
    pub method: HeadroomMethod,
    /// One sentence saying how, for reports.
    pub description: String,
    /// Collections the estimate averages over.
    pub cycles: usize,
    /// Collections the runtime reported in the series' span, when known.
    pub reported_cycles: Option<u64>,
    pub peak_mean_bytes: u64,
    pub floor_mean_bytes: u64,
    /// Coefficient of variation of the per-cycle heights.
    pub variation: f64,
    pub confidence: Confidence,
    pub notes: Vec<String>,
}

/// A workload's GC tax over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GcTax {
    pub window: DataWindow,
    pub gc_cpu_seconds: f64,
    pub cpu_cost: f64,
    pub headroom: HeadroomEstimate,
    pub memory_cost: f64,
}

impl GcTax {
    pub fn total(&self) -> f64 {
        self.cpu_cost + self.memory_cost
    }

    /// The tax at this rate for a 730-hour month.
    pub fn monthly(&self) -> f64 {
        let hours = self.window.hours();
        if hours > 0.0 {
            self.total() / hours * HOURS_PER_MONTH
        } else {
            0.0
        }
    }
}

/// The GC tax: GC CPU priced at the CPU rate, headroom at the memory rate.
pub fn gc_tax(
    gc_cpu_seconds: f64,
    window_seconds: f64,
    headroom: HeadroomEstimate,
    rates: &NodeRates,
) -> GcTax {
    let window = DataWindow {
        seconds: nonneg(window_seconds),
    };
    GcTax {
        window,
        gc_cpu_seconds: nonneg(gc_cpu_seconds),
        cpu_cost: rates.cpu_seconds_cost(gc_cpu_seconds),
        memory_cost: rates.memory_cost(headroom.bytes as f64, window.hours()),
        headroom,
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Estimates GC headroom from `(time seconds, RSS bytes)` samples.
pub fn estimate_headroom(series: &[(f64, u64)], cycles: GcCycles<'_>) -> HeadroomEstimate {
    let mut samples: Vec<(f64, u64)> = series
        .iter()
        .copied()
        .filter(|(t, _)| t.is_finite())
        .collect();
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let reported = match cycles {
        GcCycles::Timestamps(ts) => Some(in_span(&samples, ts.iter().map(|&t| (t, 1)))),
        GcCycles::PerWindow(w) => Some(in_span(&samples, w.iter().copied())),
        GcCycles::Unknown => None,
    };
    // Counts per window, some in the span, adding up to zero. (Timestamps
    // outside the span say nothing about it, so they do not count here.)
    let counted_windows = match cycles {
        GcCycles::PerWindow(w) => in_span(&samples, w.iter().map(|&(t, _)| (t, 1))),
        _ => 0,
    };
    if counted_windows > 0 && reported == Some(0) {
        // Without a collection there is no sawtooth to pay for; RSS that
        // moves anyway moves for other reasons (growth, caches).
        return HeadroomEstimate {
            bytes: 0,
            method: HeadroomMethod::NoCollections,
            description: "the runtime reported no collection in the window: no GC headroom"
                .to_string(),
            cycles: 0,
            reported_cycles: reported,
            peak_mean_bytes: samples.iter().map(|s| s.1).max().unwrap_or(0),
            floor_mean_bytes: samples.iter().map(|s| s.1).min().unwrap_or(0),
            variation: 0.0,
            confidence: Confidence::Medium,
            notes: Vec::new(),
        };
    }
    if samples.len() < 3 {
        return HeadroomEstimate {
            bytes: 0,
            method: HeadroomMethod::Insufficient,
            description: format!("{} RSS samples: too few to see a sawtooth", samples.len()),
            cycles: 0,
            reported_cycles: reported,
            peak_mean_bytes: samples.iter().map(|s| s.1).max().unwrap_or(0),
            floor_mean_bytes: samples.iter().map(|s| s.1).min().unwrap_or(0),
            variation: 0.0,
            confidence: Confidence::Low,
            notes: Vec::new(),
        };
    }
    let mut notes = Vec::new();
    if let GcCycles::Timestamps(ts) = cycles {
        let (teeth, skipped) = by_timestamps(&samples, ts);
        if !teeth.is_empty() && skipped <= teeth.len() {
            let mut e = summarize(&teeth, HeadroomMethod::CycleTimestamps, reported, notes);
            e.description = format!(
                "mean of (peak before − floor after) over {} collections at the runtime's GC times",
                teeth.len()
            );
            if skipped > 0 {
                e.notes.push(format!(
                    "{skipped} collections had no RSS sample on one side and were skipped"
                ));
            }
            return e;
        }
        notes.push(format!(
            "RSS sampling is coarser than the GC ({skipped} of {} collections had no sample on one side); estimated from the sawtooth's drops instead",
            teeth.len() + skipped
        ));
    }
    let mut sorted: Vec<u64> = samples.iter().map(|s| s.1).collect();
    sorted.sort_unstable();
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64;
    let spread = pct(0.95) - pct(0.05);
    let median = pct(0.5);
    if spread < (0.02 * median).max(MIB) {
        return HeadroomEstimate {
            bytes: spread as u64,
            method: HeadroomMethod::Flat,
            description: format!(
                "RSS is flat ({:.1} MiB spread around {:.0} MiB): no sawtooth to measure; the spread is an upper bound only if the collector returns memory to the OS",
                spread / MIB,
                median / MIB
            ),
            cycles: 0,
            reported_cycles: reported,
            peak_mean_bytes: pct(0.95) as u64,
            floor_mean_bytes: pct(0.05) as u64,
            variation: 0.0,
            confidence: Confidence::Low,
            notes,
        };
    }
    let teeth = by_drops(&samples, 0.25 * spread);
    let mut e = summarize(&teeth, HeadroomMethod::SawtoothDrops, reported, notes);
    e.description = format!(
        "mean of (peak − following floor) over {} drops of at least {:.1} MiB (a quarter of the RSS spread) in the sawtooth",
        teeth.len(),
        0.25 * spread / MIB
    );
    e
}

/// What the rolled-up tiers keep of a sawtooth: the RSS swing (peak −
/// floor) of each minute with two windows or more, summed; and the span's
/// extremes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Teeth {
    pub bytes_sum: u64,
    pub minutes: u64,
    /// Collections the runtime reported in the span; `None` when they were
    /// not counted (the agent could not see them).
    pub cycles: Option<u64>,
    /// The highest and the lowest RSS of any window in the span.
    pub peak_bytes: u64,
    pub floor_bytes: u64,
}

/// Headroom from rolled-up history: the mean swing of RSS within a minute.
/// A collector that collects at least once a minute shows a whole tooth in
/// it; a slower one's teeth are cut into minutes, and the estimate is then
/// low. Both are said in the notes, and the confidence is never high.
pub fn headroom_from_teeth(t: Teeth) -> HeadroomEstimate {
    let base = HeadroomEstimate {
        bytes: 0,
        method: HeadroomMethod::Insufficient,
        description: String::new(),
        cycles: 0,
        reported_cycles: t.cycles,
        peak_mean_bytes: t.peak_bytes,
        floor_mean_bytes: t.floor_bytes,
        variation: 0.0,
        confidence: Confidence::Low,
        notes: Vec::new(),
    };
    if t.cycles == Some(0) {
        return HeadroomEstimate {
            method: HeadroomMethod::NoCollections,
            description: "the runtime reported no collection in the span: no GC headroom"
                .to_string(),
            confidence: Confidence::Medium,
            ..base
        };
    }
    if t.minutes == 0 {
        return HeadroomEstimate {
            description: "no minute of the rolled-up history had two RSS samples".to_string(),
            ..base
        };
    }
    let bytes = t.bytes_sum / t.minutes;
    let mut notes = Vec::new();
    match t.cycles {
        Some(c) if c < t.minutes => notes.push(format!(
            "{c} collections in {} minutes: a tooth longer than a minute is only partly seen, so the headroom is underestimated",
            t.minutes
        )),
        Some(_) => {}
        None => notes.push(
            "the runtime's collections were not counted: each minute's RSS swing is taken as its tooth"
                .to_string(),
        ),
    }
    HeadroomEstimate {
        bytes,
        method: HeadroomMethod::MinuteTeeth,
        description: format!(
            "mean RSS swing (peak − floor) within a minute, over {} minutes of the collector's rolled-up history (its raw windows are no longer kept)",
            t.minutes
        ),
        cycles: usize::try_from(t.minutes).unwrap_or(usize::MAX),
        floor_mean_bytes: t.peak_bytes.saturating_sub(bytes),
        confidence: match t.cycles {
            Some(c) if t.minutes >= 10 && c >= t.minutes => Confidence::Medium,
            _ => Confidence::Low,
        },
        notes,
        ..base
    }
}

/// Collections whose time falls within the series' span.
fn in_span(samples: &[(f64, u64)], counts: impl Iterator<Item = (f64, u64)>) -> u64 {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return 0;
    };
    counts
        .filter(|(t, _)| t.is_finite() && *t >= first.0 && *t <= last.0)
        .map(|(_, n)| n)
        .sum()
}

/// (peak, floor) per collection at known times; also how many were skipped.
fn by_timestamps(samples: &[(f64, u64)], timestamps: &[f64]) -> (Vec<(u64, u64)>, usize) {
    let (first, last) = (samples[0].0, samples[samples.len() - 1].0);
    let mut gcs: Vec<f64> = timestamps
        .iter()
        .copied()
        .filter(|t| t.is_finite() && *t > first && *t < last)
        .collect();
    gcs.sort_by(f64::total_cmp);
    gcs.dedup();
    let mut teeth = Vec::new();
    let mut skipped = 0;
    let mut i = 0; // first sample not yet consumed as a "before" sample
    for (k, &g) in gcs.iter().enumerate() {
        let mut peak: Option<u64> = None;
        while i < samples.len() && samples[i].0 <= g {
            peak = Some(peak.map_or(samples[i].1, |p| p.max(samples[i].1)));
            i += 1;
        }
        let next = gcs.get(k + 1).copied().unwrap_or(f64::INFINITY);
        let floor = samples[i..]
            .iter()
            .take_while(|s| s.0 <= next)
            .map(|s| s.1)
            .min();
        match (peak, floor) {
            (Some(p), Some(f)) => teeth.push((p, f)),
            _ => skipped += 1,
        }
    }
    (teeth, skipped)
}

/// (peak, floor) per drop of at least `threshold` bytes.
fn by_drops(samples: &[(f64, u64)], threshold: f64) -> Vec<(u64, u64)> {
    let mut teeth = Vec::new();
    let mut peak = samples[0].1;
    let mut floor = peak;
    let mut falling = false;
    for &(_, v) in &samples[1..] {
        if falling {
            if v < floor {
                floor = v;
            } else if (v - floor) as f64 >= threshold {
                teeth.push((peak, floor));
                falling = false;
                peak = v;
            }
        } else if v > peak {
            peak = v;
        } else if (peak - v) as f64 >= threshold {
            falling = true;
            floor = v;
        }
    }
    if falling {
        teeth.push((peak, floor));
    }
    teeth
}

fn summarize(
    teeth: &[(u64, u64)],
    method: HeadroomMethod,
    reported: Option<u64>,
    mut notes: Vec<String>,
) -> HeadroomEstimate {
    let n = teeth.len();
    let heights: Vec<f64> = teeth
        .iter()
        .map(|&(p, f)| p.saturating_sub(f) as f64)
        .collect();
    let mean = |xs: &mut dyn Iterator<Item = f64>| {
        if n == 0 {
            0.0
        } else {
            xs.sum::<f64>() / n as f64
        }
    };
    let height = mean(&mut heights.iter().copied());
    let variation = if n > 1 && height > 0.0 {
        (heights.iter().map(|h| (h - height).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() / height
    } else {
        0.0
    };
    let mut confidence = if n >= 10 && variation <= 0.5 {
        Confidence::High
    } else if n >= 3 {
        Confidence::Medium
    } else {
        Confidence::Low
    };
    if let Some(r) = reported
        && r > 2 * n as u64 + 1
    {
        confidence = Confidence::Low;
        notes.push(format!(
            "the runtime reported {r} collections but the RSS series resolves {n}: peaks and floors between samples are missed, so the headroom is likely underestimated"
        ));
    }
    HeadroomEstimate {
        bytes: height.round() as u64,
        method,
        description: String::new(),
        cycles: n,
        reported_cycles: reported,
        peak_mean_bytes: mean(&mut teeth.iter().map(|t| t.0 as f64)).round() as u64,
        floor_mean_bytes: mean(&mut teeth.iter().map(|t| t.1 as f64)).round() as u64,
        variation,
        confidence,
        notes,
    }
}
