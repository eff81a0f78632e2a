//! Buckets, their merge, and which tier a report reads.
use super::*;

#[test]
fn values_round_trip_and_name_every_column() {
    let mut r = Rollup::default();
    r.add_window(
        10.0,
        Runtime::Go,
        &pb::Counters {
            cpu_seconds: 1.5,
            gc_thread_cpu_seconds: 0.25,
            gc_stack_cpu_seconds: 0.25,
            gc_cycles: 3,
            mmap_calls: 7,
            mmap_bytes: 7 << 20,
            minor_faults: 100,
            ..Default::default()
        },
        100 << 20,
    );
    assert_eq!(Rollup::from_values(&r.values()), r);
    assert_eq!(all_columns().count(), r.values().len());
    let p = r.to_point(Tier::Hour, 60, "n".into());
    let d = p.delta.unwrap();
    assert_eq!(d.cpu_seconds, 1.5);
    assert_eq!(d.gc_cpu_seconds, 0.5);
    assert_eq!(d.mmap_bytes, 7 << 20);
    assert_eq!(p.window_seconds, 10.0);
    assert_eq!(p.rss_bytes, 100 << 20);
    assert_eq!(p.window_end_unix_ms, 120 * 60_000);
    assert_eq!(p.cpu_peak_cores, 0.15);
}

/// A bucket's stall is known once any of its windows carried one, and
/// then sums theirs; a bucket none of whose windows did has none.
#[test]
fn a_buckets_memory_stall_is_its_windows_or_unknown() {
    let window = |stall: Option<u64>| pb::Counters {
        cpu_seconds: 1.0,
        memory_stall_us: stall,
        ..Default::default()
    };
    let mut none = Rollup::default();
    none.add_window(1.0, Runtime::Go, &window(None), 1 << 20);
    let point = |r: &Rollup| r.to_point(Tier::Minute, 0, "n".into()).delta.unwrap();
    assert_eq!(point(&none).memory_stall_us, None);
    let mut some = none;
    some.add_window(1.0, Runtime::Go, &window(Some(0)), 1 << 20);
    assert_eq!(point(&some).memory_stall_us, Some(0));
    some.add_window(1.0, Runtime::Go, &window(Some(250_000)), 1 << 20);
    let mut hour = Rollup::default();
    hour.merge(&some);
    hour.merge(&some);
    assert_eq!((hour.memory_stall_us, hour.stall_windows), (500_000, 4));
    assert_eq!(
        hour.to_point(Tier::Hour, 0, "n".into())
            .delta
            .unwrap()
            .memory_stall_us,
        Some(500_000)
    );
}

#[test]
fn merging_sums_counts_and_keeps_the_extremes_of_rss() {
    let mut r = Rollup::default();
    for (rss, cpu) in [
        (100u64 << 20, 1.0),
        (300 << 20, 4.0),
        (0, 0.5),
        (200 << 20, 2.0),
    ] {
        r.add_window(
            10.0,
            Runtime::Jvm,
            &pb::Counters {
                cpu_seconds: cpu,
                ..Default::default()
            },
            rss,
        );
    }
    assert_eq!(r.windows, 4);
    assert_eq!(r.cpu_us, 7_500_000);
    assert_eq!(r.rss_peak, 300 << 20);
    // A window without an RSS sample is not a floor of 0.
    assert_eq!(r.rss_min, 100 << 20);
    assert_eq!(r.cpu_peak_millicores, 400);
    // Time-weighted mean: (100 + 300 + 0 + 200) MiB × 10 s / 40 s.
    let p = r.to_point(Tier::Minute, 0, "n".into());
    assert_eq!(p.rss_bytes, 150 << 20);
}

#[test]
fn a_report_reads_the_finest_tier_with_at_most_its_chart_points() {
    let r = Retention::default();
    let now = 1_000 * 86_400_000 + 123_456;
    let ago = |h: i64| now - h * 3_600_000;
    assert_eq!(pick(ago(1), now, &r), None);
    assert_eq!(pick(ago(6), now, &r), None);
    // 7 h of minutes is 420 points: hours.
    let (tier, from) = pick(ago(7), now, &r).unwrap();
    assert_eq!(tier, Tier::Hour);
    assert_eq!(from % 60, 0);
    assert!(from * 60_000 >= ago(7) && from * 60_000 < ago(6));
    assert_eq!(pick(ago(24 * 10), now, &r).unwrap().0, Tier::Hour);
    let (tier, from) = pick(ago(24 * 30), now, &r).unwrap();
    assert_eq!(tier, Tier::Day);
    assert_eq!(from % 1440, 0);
    // Short retentions: minutes for a 7 h span when hours are not kept.
    let short = Retention {
        hour: Duration::from_secs(3600),
        day: Duration::from_secs(3600),
        ..r
    };
    assert_eq!(pick(ago(7), now, &short).unwrap().0, Tier::Minute);
}

#[test]
fn buckets_nest_across_tiers() {
    assert_eq!(minute_of(60_000), 0);
    assert_eq!(minute_of(60_001), 1);
    assert_eq!(bucket_of(Tier::Hour, 119), 60);
    assert_eq!(bucket_of(Tier::Day, 1439), 0);
    assert_eq!(bucket_of(Tier::Day, 1440), 1440);
}
