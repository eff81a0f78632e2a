//! GC headroom from synthetic RSS sawtooths, and the GC tax.
use super::Lcg;
use crate::cost::{
    Confidence, GIB,
    allocation::NodeRates,
    gctax::{GcCycles, HeadroomMethod, estimate_headroom, gc_tax},
};

const MIB: f64 = 1024.0 * 1024.0;
const MIB_U: u64 = 1 << 20;

/// One sample a second for `seconds`; every 10 s the heap climbs from
/// 100 MiB by 10 MiB a second to 190 MiB, and a collection (at x9.5 s)
/// drops it back: teeth of exactly 90 MiB. `noise` adds ±noise MiB.
fn sawtooth(seconds: usize, noise: f64, seed: u64) -> (Vec<(f64, u64)>, Vec<f64>) {
    let mut rng = Lcg(seed);
    let series = (0..seconds)
        .map(|t| {
            let mib = 100.0 + 10.0 * (t % 10) as f64 + rng.range(-noise, noise);
            (t as f64, (mib * MIB) as u64)
        })
        .collect();
    let gcs = (0..seconds / 10).map(|k| 10.0 * k as f64 + 9.5).collect();
    (series, gcs)
}

fn near(bytes: u64, mib: f64, tolerance: f64) -> bool {
    (bytes as f64 / MIB - mib).abs() <= mib * tolerance
}

#[test]
fn exact_sawtooth_with_gc_timestamps() {
    let (series, gcs) = sawtooth(600, 0.0, 1);
    let e = estimate_headroom(&series, GcCycles::Timestamps(&gcs));
    assert_eq!(e.method, HeadroomMethod::CycleTimestamps);
    // 60 collections at 9.5 … 599.5; the last has no sample after it.
    assert_eq!(e.cycles, 59);
    assert_eq!(e.reported_cycles, Some(59));
    assert_eq!(e.bytes, (90.0 * MIB) as u64);
    assert_eq!(e.peak_mean_bytes, (190.0 * MIB) as u64);
    assert_eq!(e.floor_mean_bytes, (100.0 * MIB) as u64);
    assert_eq!(e.confidence, Confidence::High);
    assert!(
        e.description
            .contains("59 collections at the runtime's GC times"),
        "{}",
        e.description
    );
}

#[test]
fn exact_sawtooth_without_timestamps_is_found_from_its_drops() {
    let (series, _) = sawtooth(600, 0.0, 1);
    let e = estimate_headroom(&series, GcCycles::Unknown);
    assert_eq!(e.method, HeadroomMethod::SawtoothDrops);
    assert_eq!(e.cycles, 59);
    assert_eq!(e.bytes, (90.0 * MIB) as u64);
    assert_eq!(e.confidence, Confidence::High);
    assert_eq!(e.reported_cycles, None);
    // Per-window counts that agree with the sawtooth keep the confidence.
    let windows: Vec<(f64, u64)> = (1..=60).map(|k| (10.0 * k as f64, 1)).collect();
    let e = estimate_headroom(&series, GcCycles::PerWindow(&windows));
    assert_eq!(e.reported_cycles, Some(59)); // the window ending at 600 s is past the last sample
    assert_eq!(e.confidence, Confidence::High);
}

#[test]
fn noisy_sawtooth_stays_within_ten_percent() {
    for seed in 1..20 {
        let (series, gcs) = sawtooth(900, 4.0, seed);
        let with = estimate_headroom(&series, GcCycles::Timestamps(&gcs));
        // Noise of ±4 MiB on both peak and floor widens the teeth by ≤ 8 MiB.
        assert!(
            near(with.bytes, 90.0, 0.10),
            "seed {seed}: {} MiB",
            with.bytes as f64 / MIB
        );
        assert_eq!(with.confidence, Confidence::High);
        let without = estimate_headroom(&series, GcCycles::Unknown);
        assert!(
            near(without.bytes, 90.0, 0.10),
            "seed {seed}: {} MiB",
            without.bytes as f64 / MIB
        );
        assert_eq!(without.cycles, 89, "seed {seed}");
    }
}

#[test]
fn unsorted_and_garbage_samples_are_tolerated() {
    let (mut series, gcs) = sawtooth(300, 0.0, 1);
    series.reverse();
    series.push((f64::NAN, 5));
    series.push((f64::INFINITY, 5));
    let e = estimate_headroom(&series, GcCycles::Timestamps(&gcs));
    assert_eq!(e.bytes, (90.0 * MIB) as u64);
    let weird = [f64::NAN, -1.0, 1e300, f64::NEG_INFINITY];
    let e = estimate_headroom(&series, GcCycles::Timestamps(&weird));
    // No usable timestamps: falls back to the drops.
    assert_eq!(e.method, HeadroomMethod::SawtoothDrops);
    let mut rng = Lcg(9);
    for _ in 0..300 {
        let n = (rng.next_u64() % 50) as usize;
        let s: Vec<(f64, u64)> = (0..n)
            .map(|_| {
                (
                    rng.range(-10.0, 10.0),
                    rng.next_u64() >> (rng.next_u64() % 64),
                )
            })
            .collect();
        let g: Vec<f64> = (0..(rng.next_u64() % 10))
            .map(|_| rng.range(-10.0, 10.0))
            .collect();
        let _ = estimate_headroom(&s, GcCycles::Timestamps(&g));
        let _ = estimate_headroom(&s, GcCycles::Unknown);
    }
}

#[test]
fn a_flat_series_is_reported_as_such_with_low_confidence() {
    // A JVM with its heap committed: 2 GiB ± 2 MiB.
    let mut rng = Lcg(3);
    let series: Vec<(f64, u64)> = (0..600)
        .map(|t| (t as f64, ((2048.0 + rng.range(-2.0, 2.0)) * MIB) as u64))
        .collect();
    let e = estimate_headroom(&series, GcCycles::Unknown);
    assert_eq!(e.method, HeadroomMethod::Flat);
    assert_eq!(e.confidence, Confidence::Low);
    assert!(e.bytes < (5.0 * MIB) as u64);
    assert!(
        e.description.starts_with("RSS is flat"),
        "{}",
        e.description
    );
}

#[test]
fn coarse_sampling_is_detected_and_lowers_confidence() {
    // Collections every 0.25 s, RSS sampled every 5 s: most collections have
    // no sample on one side, and the series shows far fewer drops.
    let (series, _) = sawtooth(600, 0.0, 1);
    let coarse: Vec<(f64, u64)> = series.iter().copied().step_by(5).collect();
    let gcs: Vec<f64> = (0..2400).map(|k| k as f64 * 0.25 + 0.1).collect();
    let e = estimate_headroom(&coarse, GcCycles::Timestamps(&gcs));
    assert_eq!(e.method, HeadroomMethod::SawtoothDrops);
    assert_eq!(e.confidence, Confidence::Low);
    assert!(
        e.notes.iter().any(|n| n.contains("coarser than the GC")),
        "{:?}",
        e.notes
    );
    assert!(
        e.notes.iter().any(|n| n.contains("underestimated")),
        "{:?}",
        e.notes
    );
}

#[test]
fn few_cycles_or_samples_mean_low_confidence() {
    let (series, gcs) = sawtooth(25, 0.0, 1);
    let e = estimate_headroom(&series, GcCycles::Timestamps(&gcs));
    assert_eq!(e.cycles, 2);
    assert_eq!(e.confidence, Confidence::Low);
    let (series, gcs) = sawtooth(45, 0.0, 1);
    assert_eq!(
        estimate_headroom(&series, GcCycles::Timestamps(&gcs)).confidence,
        Confidence::Medium
    );
    let e = estimate_headroom(&series[..2], GcCycles::Unknown);
    assert_eq!(e.method, HeadroomMethod::Insufficient);
    assert_eq!((e.bytes, e.confidence), (0, Confidence::Low));
    assert_eq!(
        estimate_headroom(&[], GcCycles::Unknown).method,
        HeadroomMethod::Insufficient
    );
}

#[test]
fn irregular_teeth_lower_confidence() {
    // Alternating teeth of 20 and 200 MiB: coefficient of variation > 0.5.
    let mut series = Vec::new();
    let mut gcs = Vec::new();
    let mut t = 0.0;
    for k in 0..30 {
        let height = if k % 2 == 0 { 20.0 } else { 200.0 };
        for step in 0..10 {
            series.push((t, ((100.0 + height * f64::from(step) / 9.0) * MIB) as u64));
            t += 1.0;
        }
        gcs.push(t - 0.5);
    }
    let e = estimate_headroom(&series, GcCycles::Timestamps(&gcs));
    assert!(e.variation > 0.5, "{}", e.variation);
    assert_eq!(e.confidence, Confidence::Medium);
    assert!(near(e.bytes, 110.0, 0.05), "{}", e.bytes as f64 / MIB);
}

#[test]
fn gc_tax_prices_cpu_and_headroom_with_the_node_rates() {
    // $0.04 per vCPU-hour, $0.005 per GiB-hour; 10 hours.
    // CPU: 1800 GC CPU seconds = 0.5 vCPU-hours × 0.04 = $0.02.
    // Memory: 2 GiB × 0.005 × 10 h = $0.10. Total $0.12; a month: 0.12 / 10 × 730 = $8.76.
    let rates = NodeRates::explicit(0.04, 0.005);
    let mut headroom = estimate_headroom(&[], GcCycles::Unknown);
    headroom.bytes = 2 * GIB as u64;
    let tax = gc_tax(1800.0, 36000.0, headroom, &rates);
    assert!((tax.cpu_cost - 0.02).abs() < 1e-12);
    assert!((tax.memory_cost - 0.10).abs() < 1e-12);
    assert!((tax.total() - 0.12).abs() < 1e-12);
    assert!((tax.monthly() - 8.76).abs() < 1e-9);
    assert_eq!(tax.window.to_string(), "10.0 h");
    // Nonsense inputs price at zero.
    let tax = gc_tax(
        f64::NAN,
        -1.0,
        estimate_headroom(&[], GcCycles::Unknown),
        &rates,
    );
    assert_eq!((tax.total(), tax.monthly()), (0.0, 0.0));
}

#[test]
fn no_reported_collection_means_no_headroom_even_with_a_sawtooth() {
    // The same teeth, but the runtime says nothing was collected: the
    // drops are not GC's (e.g. a cache emptied), so nothing is charged.
    let (series, _) = sawtooth(600, 0.0, 1);
    let windows: Vec<(f64, u64)> = (1..=60).map(|k| (10.0 * k as f64, 0)).collect();
    let e = estimate_headroom(&series, GcCycles::PerWindow(&windows));
    assert_eq!(e.method, HeadroomMethod::NoCollections);
    assert_eq!(e.bytes, 0);
    assert_eq!(e.reported_cycles, Some(0));
    // One reported collection and the sawtooth counts again.
    let mut windows = windows;
    windows[3].1 = 1;
    let e = estimate_headroom(&series, GcCycles::PerWindow(&windows));
    assert_eq!(e.method, HeadroomMethod::SawtoothDrops);
    assert!(e.bytes > 0);
}

#[test]
fn rolled_up_teeth_say_what_they_know_of_the_collections() {
    use crate::cost::gctax::{Teeth, headroom_from_teeth};
    let teeth = |cycles| Teeth {
        bytes_sum: 60 * 90 * MIB_U,
        minutes: 60,
        cycles,
        peak_bytes: 190 * MIB_U,
        floor_bytes: 100 * MIB_U,
    };
    let counted = headroom_from_teeth(teeth(Some(360)));
    assert_eq!(counted.method, HeadroomMethod::MinuteTeeth);
    assert_eq!(counted.bytes, 90 * MIB_U);
    assert_eq!(counted.confidence, Confidence::Medium);
    assert!(counted.notes.is_empty());
    // Collections not counted: the swing still stands, said, and low.
    let unknown = headroom_from_teeth(teeth(None));
    assert_eq!(unknown.bytes, 90 * MIB_U);
    assert_eq!(unknown.confidence, Confidence::Low);
    assert!(unknown.notes[0].contains("not counted"), "{unknown:?}");
    // A collection every 5 minutes: teeth cut into minutes, said.
    let slow = headroom_from_teeth(teeth(Some(12)));
    assert_eq!(slow.confidence, Confidence::Low);
    assert!(slow.notes[0].contains("underestimated"));
    assert_eq!(
        headroom_from_teeth(teeth(Some(0))).method,
        HeadroomMethod::NoCollections
    );
}
