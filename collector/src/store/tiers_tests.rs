//! The rolled-up tiers against the raw windows they summarize.
use super::*;
use tiers::{Retention, Rollup, Tier};

const MINUTE: i64 = 60_000;

/// A report whose every process has `rss` and `gc_cycles`, its window the
/// second before `end_ms`.
fn gc_report(node: &str, seq: u64, end_ms: i64, rss: u64, gc_cycles: u64) -> Prepared {
    let mut r = report(node, &format!("{node}-agent"), seq, end_ms, &[7]);
    let mut body = pb::NodeReport::decode(&r.body[..]).unwrap();
    for p in &mut body.processes {
        p.rss_bytes = rss;
        p.cgroup_path =
            "/kubepods/pod1/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                .into();
        p.container_id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into();
        let d = p.delta.get_or_insert_with(Default::default);
        d.gc_cycles = gc_cycles;
        d.mmap_calls = 3;
        d.mmap_bytes = 3 << 20;
    }
    let bytes = Bytes::from(body.encode_to_vec());
    let received = ReceivedReport::decode(bytes.clone()).unwrap();
    r.windows = workload_windows(&r.node_name, &received);
    r.body = bytes;
    r
}

fn stored_minutes(store: &Store, table: &str) -> Vec<(i64, Rollup)> {
    let cols: Vec<&str> = tiers::all_columns().collect();
    let mut q = store
        .conn
        .prepare(&format!(
            "SELECT bucket_minute, {} FROM {table} ORDER BY bucket_minute, node_id",
            cols.join(", ")
        ))
        .unwrap();
    q.query_map([], |r| {
        let mut v = [0i64; tiers::COLUMN_COUNT];
        for (i, x) in v.iter_mut().enumerate() {
            *x = r.get(i + 1)?;
        }
        Ok((r.get(0)?, Rollup::from_values(&v)))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn the_minute_tier_holds_the_sum_of_its_windows_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
    let t0 = 1_000 * MINUTE;
    // Two minutes of 1 s windows on one node, written in two batches, the
    // second resending the first's last report.
    let first: Vec<Prepared> = (1..=90)
        .map(|i| gc_report("a", i, t0 + i as i64 * 1000, (100 + i) << 20, 1))
        .collect();
    store.write_batch(&first[..60], 0).unwrap();
    let mut second = vec![first[59].clone()];
    second.extend_from_slice(&first[60..]);
    let out = store.write_batch(&second, 0).unwrap();
    assert!(matches!(out[0], Outcome::Duplicate { .. }));
    let minutes = stored_minutes(&store, "rollup_1m");
    assert_eq!(minutes.len(), 2, "{minutes:?}");
    let (m0, r0) = minutes[0];
    let (m1, r1) = minutes[1];
    assert_eq!((m0, m1), (1000, 1001));
    // Windows ending at t0+1 s … t0+60 s belong to minute 1000, the rest to 1001.
    assert_eq!((r0.windows, r1.windows), (60, 30));
    assert_eq!(r0.cpu_us, 60 * 500_000);
    assert_eq!(r0.gc_cycles, 60);
    assert_eq!(r0.mmap_bytes, 60 * (3 << 20));
    assert_eq!(r0.seconds_us, 60_000_000);
    assert_eq!((r0.rss_min, r0.rss_peak), (101 << 20, 160 << 20));
    assert_eq!((r1.rss_min, r1.rss_peak), (161 << 20, 190 << 20));
    // The raw windows say the same.
    let raw: i64 = count(&store, "SELECT COUNT(*) FROM windows");
    assert_eq!(raw, 90);
}

#[test]
fn hours_and_days_are_recomputed_from_the_tier_below_when_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
    let keep = Retention::default();
    // The start of a day.
    let hour0 = 1440 * 333 * MINUTE;
    // Every 10 s for two hours, on two nodes, a collection each minute's
    // first window; RSS climbs 10 MiB a window within each minute.
    let mut seq = 0;
    let mut batch = Vec::new();
    for w in 1..=720i64 {
        seq += 1;
        let end = hour0 + w * 10_000;
        let in_minute = (w - 1) % 6;
        let rss = (200 + 10 * in_minute as u64) << 20;
        let cycles = u64::from(in_minute == 0);
        batch.push(gc_report("a", seq, end, rss, cycles));
        batch.push(gc_report("b", seq, end, rss, cycles));
    }
    for chunk in batch.chunks(100) {
        store.write_batch(chunk, 0).unwrap();
    }
    let now = hour0 + 3 * 60 * MINUTE;
    assert_eq!(store.roll_up(&keep, now).unwrap(), 2 + 1);
    let hours = stored_minutes(&store, "rollup_1h");
    assert_eq!(hours.len(), 4, "two hours on two nodes");
    let minutes = stored_minutes(&store, "rollup_1m");
    let first_hour_a: Vec<&Rollup> = minutes
        .iter()
        .filter(|(m, _)| *m < hour0 / MINUTE + 60)
        .step_by(2)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(first_hour_a.len(), 60);
    let (_, h) = hours[0];
    assert_eq!(h.windows, 360);
    assert_eq!(h.cpu_us, 360 * 500_000);
    assert_eq!(h.gc_cycles, 60);
    assert_eq!((h.rss_min, h.rss_peak), (200 << 20, 250 << 20));
    // Each minute's swing: 250 − 200 MiB.
    assert_eq!(h.sawtooth_minutes, 60);
    assert_eq!(h.sawtooth, 60 * (50 << 20));
    let day = stored_minutes(&store, "rollup_1d");
    assert_eq!(day.len(), 2);
    assert_eq!(day[0].1.windows, 720);
    assert_eq!(day[0].1.sawtooth_minutes, 120);
    // Nothing written since: nothing to recompute.
    assert_eq!(store.roll_up(&keep, now).unwrap(), 0);
    // A late report (an agent's backlog) lands in its minute, and its hour
    // and day are recomputed.
    store
        .write_batch(
            &[gc_report(
                "a",
                seq + 1,
                hour0 + 30 * MINUTE + 5_000,
                900 << 20,
                0,
            )],
            0,
        )
        .unwrap();
    assert_eq!(store.roll_up(&keep, now).unwrap(), 2);
    let hours = stored_minutes(&store, "rollup_1h");
    assert_eq!(hours[0].1.windows, 361);
    assert_eq!(hours[0].1.rss_peak, 900 << 20);
    assert_eq!(stored_minutes(&store, "rollup_1d")[0].1.windows, 721);

    // Retention cuts each tier at its own age.
    let short = Retention {
        raw: std::time::Duration::from_secs(60),
        minute: std::time::Duration::from_secs(90 * 60),
        ..keep
    };
    let removed = store.retain(&short, now).unwrap();
    assert_eq!(removed.windows, 1441);
    // The minutes that ended by now − 90 min (the first 90) on both nodes.
    assert_eq!(removed.buckets, 2 * 90);
    assert_eq!(stored_minutes(&store, "rollup_1h").len(), 4);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM workloads"), 1);
    // Its raw windows gone, the workload keeps its name as long as its
    // tiers do, across a restart.
    drop(store);
    let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
    store.retain(&short, now + 60 * MINUTE).unwrap();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM workloads"), 1);
    let read = Reader::open(dir.path())
        .unwrap()
        .tier_spans(Tier::Hour, 0)
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].1.len(), 2, "a span on each node");
    for span in &read[0].1 {
        assert_eq!(span.bucket_end_unix_ms.len(), 2, "two hours on each");
    }
    assert_eq!(read[0].0.runtime, pb::Runtime::Unknown as i32);
}

#[test]
fn a_version_1_store_gains_the_tiers_and_keeps_its_nodes_span() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(db_path(dir.path())).unwrap();
        conn.execute_batch(schema::SCHEMA_V1).unwrap();
        conn.execute_batch(
            "INSERT INTO nodes (id, name) VALUES (1, 'n');
             INSERT INTO reports (node_id, agent_instance, sequence, window_start_unix_ms,
                window_end_unix_ms, received_unix_ms, processes, body)
             VALUES (1, 'i', 1, 1000, 2000, 0, 0, x''), (1, 'i', 2, 2000, 3000, 0, 0, x'');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = Store::open(dir.path(), Sync::Normal).unwrap();
    let span: (i64, i64) = store
        .conn
        .query_row(
            "SELECT first_window_start_unix_ms, last_window_end_unix_ms FROM nodes",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(span, (1000, 3000));
    assert_eq!(count(&store, "SELECT COUNT(*) FROM rollup_1h"), 0);
    assert_eq!(count(&store, "PRAGMA user_version"), schema::SCHEMA_VERSION);
}

/// A version 2 store (tiers without the memory stall) gains the columns,
/// keeps its buckets, with no stall known in them, and rolls up again.
#[test]
fn a_version_2_store_gains_the_stall_columns_and_keeps_its_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_000 * MINUTE;
    {
        let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
        let batch: Vec<Prepared> = (1..=3)
            .map(|i| gc_report("a", i, t0 + i as i64 * 1000, 100 << 20, 1))
            .collect();
        store.write_batch(&batch, 0).unwrap();
        for (table, column) in tiers::added_columns() {
            store
                .conn
                .execute_batch(&format!("ALTER TABLE {table} DROP COLUMN {column}"))
                .unwrap();
        }
        store.conn.execute_batch("PRAGMA user_version = 2").unwrap();
    }
    let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
    assert_eq!(count(&store, "PRAGMA user_version"), schema::SCHEMA_VERSION);
    let minutes = stored_minutes(&store, "rollup_1m");
    assert_eq!(minutes.len(), 1);
    assert_eq!(minutes[0].1.gc_cycles, 3);
    assert_eq!(
        (minutes[0].1.memory_stall_us, minutes[0].1.stall_windows),
        (0, 0)
    );
    let later: Vec<Prepared> = (4..=5)
        .map(|i| gc_report("a", i, t0 + i as i64 * 1000, 100 << 20, 1))
        .collect();
    store.write_batch(&later, 0).unwrap();
    assert_eq!(stored_minutes(&store, "rollup_1m")[0].1.gc_cycles, 5);
}

/// The cost report from 1-minute buckets against the same history's raw
/// windows: the same CPU, GC CPU and cycles, and the sawtooth's headroom
/// from the minutes' teeth.
#[test]
fn a_report_from_minute_buckets_prices_as_from_the_raw_windows() {
    use tally_core::cost::{
        HeadroomMethod, PriceTable,
        report::build::{NodeDefaults, WorkloadHistory, build},
    };
    const MIB: u64 = 1 << 20;
    let workload = pb::Workload {
        key: Some(pb::WorkloadKey {
            key: Some(pb::workload_key::Key::ContainerId("gcheavy".into())),
        }),
        name: "gcheavy".into(),
        runtime: pb::Runtime::Go as i32,
        ..Default::default()
    };
    // An hour of 1 s windows: 0.5 cores, 40% in GC, a collection a window,
    // RSS a sawtooth from 100 to 190 MiB every 10 s.
    let raw: Vec<pb::WorkloadPoint> = (1..=3600i64)
        .map(|t| pb::WorkloadPoint {
            window_end_unix_ms: t * 1000,
            window_seconds: 1.0,
            delta: Some(pb::Counters {
                cpu_seconds: 0.5,
                gc_thread_cpu_seconds: 0.2,
                gc_cpu_seconds: 0.2,
                gc_cycles: 1,
                ..Default::default()
            }),
            rss_bytes: (100 + 10 * (t % 10) as u64) * MIB,
            node_name: "n1".into(),
            ..Default::default()
        })
        .collect();
    let mut minutes: std::collections::BTreeMap<i64, Rollup> = Default::default();
    for p in &raw {
        minutes
            .entry(tiers::minute_of(p.window_end_unix_ms))
            .or_default()
            .add_window(
                p.window_seconds,
                tally_core::gc::Runtime::Go,
                p.delta.as_ref().unwrap(),
                p.rss_bytes,
            );
    }
    let rolled: Vec<pb::WorkloadPoint> = minutes
        .iter()
        .map(|(&m, r)| r.to_point(tiers::Tier::Minute, m, "n1".into()))
        .collect();
    assert_eq!(rolled.len(), 60);
    let node = pb::NodeSummary {
        identity: Some(pb::NodeIdentity {
            node_name: "n1".into(),
            instance_type: "m6i.large".into(),
            region: "us-east-1".into(),
            ..Default::default()
        }),
        first_window_start_unix_ms: 0,
        last_window_end_unix_ms: 3_600_000,
    };
    // And as CostHistory sends a rolled-up history: the minutes summed.
    let mut span = tiers::Span::new(tiers::Tier::Minute);
    for (&m, r) in &minutes {
        span.add(m, r);
    }
    let span = span.finish("n1".into());
    let report = |points: Vec<pb::WorkloadPoint>, spans: Vec<pb::NodeSpan>| {
        build(
            std::slice::from_ref(&node),
            &[WorkloadHistory {
                workload: workload.clone(),
                points,
                spans,
            }],
            PriceTable::embedded(),
            &NodeDefaults::default(),
            0.15,
            3_600_000,
            0,
        )
    };
    let (from_raw, from_minutes, from_span) = (
        report(raw, vec![]),
        report(rolled, vec![]),
        report(vec![], vec![span]),
    );
    let (a, b, c) = (
        &from_raw.workloads[0],
        &from_minutes.workloads[0],
        &from_span.workloads[0],
    );
    assert!(
        (a.cpu_seconds - b.cpu_seconds).abs() < 1e-6,
        "{} vs {}",
        a.cpu_seconds,
        b.cpu_seconds
    );
    assert!((a.gc_cpu_seconds - b.gc_cpu_seconds).abs() < 1e-6);
    assert_eq!(a.gc_cycles, b.gc_cycles);
    assert_eq!(a.rss_peak_bytes, b.rss_peak_bytes);
    assert!((a.rss_avg_bytes as f64 / b.rss_avg_bytes as f64 - 1.0).abs() < 0.01);
    let (ha, hb) = (
        &a.gc_tax.as_ref().unwrap().headroom,
        &b.gc_tax.as_ref().unwrap().headroom,
    );
    assert_eq!(ha.method, HeadroomMethod::SawtoothDrops);
    assert_eq!(hb.method, HeadroomMethod::MinuteTeeth);
    assert_eq!(ha.bytes, 90 * MIB);
    assert_eq!(hb.bytes, 90 * MIB);
    assert!((a.gc_tax_usd_per_month / b.gc_tax_usd_per_month - 1.0).abs() < 0.01);
    // The span prices as its minutes do, and charts each minute.
    assert!((b.cpu_seconds - c.cpu_seconds).abs() < 1e-6);
    assert!((b.gc_cpu_seconds - c.gc_cpu_seconds).abs() < 1e-6);
    assert_eq!(
        (b.gc_cycles, b.rss_peak_bytes, b.rss_avg_bytes),
        (c.gc_cycles, c.rss_peak_bytes, c.rss_avg_bytes)
    );
    let hc = &c.gc_tax.as_ref().unwrap().headroom;
    assert_eq!(
        (hc.method, hc.bytes),
        (HeadroomMethod::MinuteTeeth, 90 * MIB)
    );
    assert!((b.gc_tax_usd_per_month / c.gc_tax_usd_per_month - 1.0).abs() < 1e-9);
    assert_eq!(b.rss_series, c.rss_series);
    assert_eq!(c.rss_series.len(), 60);
}
