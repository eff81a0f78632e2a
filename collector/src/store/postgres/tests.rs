//! The PostgreSQL store against a real throwaway cluster: dedupe decided
//! by the database between two replicas, the minute tier's sums, the
//! roll-up, and the refresh of one replica's recent state from another's
//! writes.
use std::sync::Barrier;

use super::{PgConn, PgReader, PgStore, testing::start_or_skip};
use crate::store::{
    Outcome, Prepared, StoreReader, StoreWriter,
    tests::report,
    tiers::{Retention, Tier},
};

fn count(url: &str, sql: &str) -> i64 {
    let conn = PgConn::connect(url, super::Role::Reader).unwrap();
    conn.rt
        .block_on(conn.client.query_one(sql, &[]))
        .unwrap()
        .get(0)
}

/// Minute 1000 of the epoch, and a window end inside it.
const MINUTE: i64 = 1000;
fn end_in_minute(second: i64) -> i64 {
    MINUTE * 60_000 + 1000 + second * 1000
}

#[test]
fn two_replicas_store_each_report_once_and_the_loser_gets_duplicates() {
    let Some(cluster) = start_or_skip("postgres dedupe") else {
        return;
    };
    let url = cluster.create_db("dedupe").unwrap();
    let batch: Vec<_> = (1..=40)
        .map(|s| report("n1", "agent-a", s, end_in_minute(s as i64 % 50), &[1, 2, 3]))
        .collect();
    // Overlapping halves, in opposite orders: sorted by the store, so no
    // deadlock (and a deadlock would be retried anyway).
    let first: Vec<_> = batch[..30].to_vec();
    let mut second: Vec<_> = batch[10..].to_vec();
    second.reverse();
    let barrier = Barrier::new(2);
    let run = |reports: &[Prepared]| {
        let mut store = PgStore::open(&url).unwrap();
        barrier.wait();
        store.write_batch(reports, 0).unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&first));
        let b = s.spawn(|| run(&second));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.len(), 30);
    assert_eq!(b.len(), 30);
    // Each sequence is Stored by exactly one replica.
    for seq in 1..=40u64 {
        let stored_by_a = first
            .iter()
            .zip(&a)
            .filter(|(r, o)| r.sequence == seq && matches!(o, Outcome::Stored { .. }))
            .count();
        let stored_by_b = second
            .iter()
            .zip(&b)
            .filter(|(r, o)| r.sequence == seq && matches!(o, Outcome::Stored { .. }))
            .count();
        assert_eq!(stored_by_a + stored_by_b, 1, "sequence {seq}");
    }
    for o in a.iter().chain(&b) {
        assert!(o.last_stored_sequence() >= 1);
    }
    assert_eq!(count(&url, "SELECT COUNT(*) FROM reports"), 40);
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(DISTINCT (node_id, agent_instance, sequence)) FROM reports"
        ),
        40
    );
    // Three processes, three workloads, one window each per report.
    assert_eq!(count(&url, "SELECT COUNT(*) FROM windows"), 120);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM workloads"), 3);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM nodes"), 1);
    assert_eq!(count(&url, "SELECT last_sequence FROM agents"), 40);
    // The minute tier counts each stored window once: 0.5 CPU s each.
    assert_eq!(count(&url, "SELECT SUM(windows)::int8 FROM rollup_1m"), 120);
    assert_eq!(
        count(&url, "SELECT SUM(cpu_us)::int8 FROM rollup_1m"),
        120 * 500_000
    );
    // Resent to a third replica: all duplicates, nothing added.
    let mut third = PgStore::open(&url).unwrap();
    let out = third.write_batch(&batch[35..], 0).unwrap();
    assert!(out.iter().all(|o| matches!(o, Outcome::Duplicate { .. })));
    assert_eq!(count(&url, "SELECT COUNT(*) FROM windows"), 120);
    assert_eq!(third.last_sequence("agent-a").unwrap(), 40);
}

#[test]
fn minutes_roll_up_into_hours_and_days_and_read_back() {
    let Some(cluster) = start_or_skip("postgres roll-up") else {
        return;
    };
    let url = cluster.create_db("rollup").unwrap();
    let mut store = PgStore::open(&url).unwrap();
    // Two minutes of one hour, from two nodes, in two batches.
    for (seq, (node, end)) in [
        ("n1", end_in_minute(0)),
        ("n1", end_in_minute(10)),
        ("n2", end_in_minute(20)),
        ("n1", end_in_minute(70)),
    ]
    .into_iter()
    .enumerate()
    {
        let instance = format!("agent-{node}");
        let r = report(node, &instance, seq as u64 + 1, end, &[7]);
        store.write_batch(&[r], 0).unwrap();
    }
    assert_eq!(count(&url, "SELECT COUNT(*) FROM rollup_1m"), 3);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM rollup_dirty"), 1);
    let now = (MINUTE + 120) * 60_000;
    let keep = Retention {
        raw: std::time::Duration::from_secs(400 * 86400),
        ..Retention::default()
    };
    let keep = Retention {
        minute: keep.raw,
        hour: keep.raw,
        day: keep.raw,
        ..keep
    };
    // The hour, then the day it marked, in one pass; nothing left after.
    assert_eq!(store.roll_up(&keep, now).unwrap(), 2);
    assert_eq!(store.roll_up(&keep, now).unwrap(), 0);
    assert_eq!(count(&url, "SELECT SUM(windows)::int8 FROM rollup_1h"), 4);
    assert_eq!(
        count(&url, "SELECT SUM(cpu_us)::int8 FROM rollup_1d"),
        4 * 500_000
    );
    // Another replica's reader sees every tier.
    let reader = PgReader::open(&url).unwrap();
    // A process is a workload per node: two workloads, one hour each.
    let hours = reader.tier_spans(Tier::Hour, 0).unwrap();
    assert_eq!(hours.len(), 2);
    let points: Vec<_> = hours
        .iter()
        .flat_map(|h| &h.1)
        .filter_map(|s| s.total.as_ref())
        .collect();
    assert_eq!(points.len(), 2);
    let cpu: f64 = points
        .iter()
        .map(|p| p.delta.as_ref().unwrap().cpu_seconds)
        .sum();
    assert_eq!(cpu, 2.0);
    // In parts of one workload, from another connection.
    let mut parts = 0;
    reader
        .another()
        .unwrap()
        .tier_spans_in_parts(Tier::Hour, 0, 1, &mut |part| {
            assert_eq!(part.len(), 1);
            parts += 1;
            true
        })
        .unwrap();
    assert_eq!(parts, 2);
    let raw = reader.raw_histories(0).unwrap();
    assert_eq!(raw.iter().map(|h| h.1.len()).sum::<usize>(), 4);
    assert_eq!(reader.nodes().unwrap().len(), 2);
    // Retention as of far later: everything goes.
    let removed = store
        .retain(&Retention::default(), now + 500 * 86_400_000)
        .unwrap();
    assert_eq!(removed.reports, 4);
    assert_eq!(removed.windows, 4);
    assert_eq!(removed.workloads, 2);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM rollup_1m"), 0);
}

#[test]
fn a_replica_sees_what_another_stored_in_its_recent_state() {
    let Some(cluster) = start_or_skip("postgres fleet refresh") else {
        return;
    };
    let url = cluster.create_db("fleet").unwrap();
    let mut a = PgStore::open(&url).unwrap();
    let mut b = PgStore::open(&url).unwrap();
    a.write_batch(&[report("n1", "i1", 1, end_in_minute(1), &[1])], 100)
        .unwrap();
    // B starts after A stored: its loaded state has A's workload.
    let mut fleet = b.load_fleet().unwrap();
    assert_eq!(fleet.len(), 1);
    a.write_batch(&[report("n2", "i2", 1, end_in_minute(2), &[2])], 200)
        .unwrap();
    let reader = PgReader::open(&url).unwrap();
    let updates = reader.fleet_updates(150).unwrap().unwrap();
    assert_eq!(updates.windows.len(), 1);
    assert_eq!(updates.nodes.len(), 1);
    crate::store::observe_recent(&mut fleet, updates.windows);
    assert_eq!(fleet.len(), 2);
    // Read again from further back (the overlap): only the report not
    // handed over yet (A's first), and nothing counted twice.
    let again = reader.fleet_updates(0).unwrap().unwrap().windows;
    assert_eq!(again.len(), 1);
    crate::store::observe_recent(&mut fleet, again);
    assert!(reader.fleet_updates(0).unwrap().unwrap().windows.is_empty());
    let snapshot = fleet.snapshot(None);
    assert_eq!(snapshot.len(), 2);
    // An empty batch is a transaction with nothing in it.
    assert!(b.write_batch(&[], 0).unwrap().is_empty());
}

/// A version 1 database (tiers without the memory stall) gains the
/// columns when a collector of this version opens it, keeps its buckets,
/// and goes on writing.
#[test]
fn a_version_1_database_gains_the_stall_columns_and_keeps_its_buckets() {
    let Some(cluster) = start_or_skip("postgres migration") else {
        return;
    };
    let url = cluster.create_db("migrate").unwrap();
    let reports: Vec<_> = (1..=4)
        .map(|s| report("n1", "agent-a", s, end_in_minute(s as i64), &[1]))
        .collect();
    {
        let mut store = PgStore::open(&url).unwrap();
        store.write_batch(&reports[..2], 0).unwrap();
    }
    {
        let conn = PgConn::connect(&url, super::Role::Writer).unwrap();
        let mut sql = String::from("UPDATE schema_version SET version = 1;");
        for (table, column) in crate::store::tiers::added_columns() {
            sql.push_str(&format!("ALTER TABLE {table} DROP COLUMN {column};"));
        }
        conn.rt.block_on(conn.client.batch_execute(&sql)).unwrap();
    }
    let mut store = PgStore::open(&url).unwrap();
    assert_eq!(
        count(&url, "SELECT MAX(version) FROM schema_version"),
        super::SCHEMA_VERSION
    );
    assert_eq!(
        count(
            &url,
            "SELECT SUM(stall_windows + memory_stall_us)::int8 FROM rollup_1m"
        ),
        0
    );
    store.write_batch(&reports[2..], 0).unwrap();
    assert_eq!(count(&url, "SELECT SUM(windows)::int8 FROM rollup_1m"), 4);
}
