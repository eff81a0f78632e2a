//! The store's unit tests: dedupe, ack sequences, retention, rollback.
use super::*;
use tally_core::workload::workload_windows;

#[path = "tiers_tests.rs"]
mod tiers_tests;
use tally_proto::received::ReceivedReport;

pub(super) fn report(node: &str, instance: &str, seq: u64, end_ms: i64, pids: &[u32]) -> Prepared {
    let report = pb::NodeReport {
        node: Some(pb::NodeIdentity {
            node_name: node.into(),
            agent_instance: instance.into(),
            ..Default::default()
        }),
        sequence: seq,
        window_start_unix_ms: end_ms - 1000,
        window_end_unix_ms: end_ms,
        processes: pids
            .iter()
            .map(|&pid| pb::ProcessWindow {
                key: Some(pb::ProcessKey {
                    pid,
                    start_ticks: 1,
                }),
                comm: format!("p{pid}"),
                delta: Some(pb::Counters {
                    cpu_seconds: 0.5,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        agent: None,
        pods: Vec::new(),
        container_pressures: Vec::new(),
    };
    let body = Bytes::from(report.encode_to_vec());
    let received = ReceivedReport::decode(body.clone()).unwrap();
    let node: Arc<str> = Arc::from(node);
    Prepared {
        identity: Arc::new(received.view.node.clone().unwrap_or_default()),
        windows: workload_windows(&node, &received),
        node_name: node,
        agent_instance: instance.into(),
        agent_start_unix_ms: 0,
        sequence: seq,
        window_start_unix_ms: end_ms - 1000,
        window_end_unix_ms: end_ms,
        processes: pids.len() as u32,
        body,
    }
}

/// Every retention one second long, as of one second after `cutoff_ms`.
fn remove_before(store: &mut Store, cutoff_ms: i64) -> Removed {
    let second = std::time::Duration::from_secs(1);
    let keep = tiers::Retention {
        raw: second,
        minute: second,
        hour: second,
        day: second,
    };
    store.retain(&keep, cutoff_ms + 1000).unwrap()
}

fn count(store: &Store, sql: &str) -> i64 {
    store.conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn duplicates_are_acked_with_the_last_sequence_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
    let out = store
        .write_batch(
            &[
                report("n", "i1", 1, 1000, &[1, 2]),
                report("n", "i1", 2, 2000, &[1]),
                report("n", "i1", 2, 2000, &[1]),
            ],
            0,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            Outcome::Stored {
                last_stored_sequence: 1
            },
            Outcome::Stored {
                last_stored_sequence: 2
            },
            Outcome::Duplicate {
                last_stored_sequence: 2
            },
        ]
    );
    // Resent after a reconnect, in a later batch.
    let out = store
        .write_batch(
            &[
                report("n", "i1", 1, 1000, &[1, 2]),
                report("n", "i1", 3, 3000, &[]),
            ],
            0,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            Outcome::Duplicate {
                last_stored_sequence: 2
            },
            Outcome::Stored {
                last_stored_sequence: 3
            },
        ]
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM reports"), 3);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM windows"), 3);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM workloads"), 2);
    // Another instance's sequences are its own.
    let out = store
        .write_batch(&[report("n", "i2", 1, 3000, &[1])], 0)
        .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Stored {
            last_stored_sequence: 1
        }]
    );
}

#[test]
fn ack_sequences_and_ids_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path(), Sync::Full).unwrap();
        store
            .write_batch(
                &[
                    report("n", "i1", 1, 1000, &[7]),
                    report("n", "i1", 2, 2000, &[7]),
                ],
                0,
            )
            .unwrap();
    }
    let mut store = Store::open(dir.path(), Sync::Full).unwrap();
    assert_eq!(store.last_sequence("i1"), 2);
    assert_eq!(store.last_sequence("other"), 0);
    let out = store
        .write_batch(&[report("n", "i1", 2, 2000, &[7])], 0)
        .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Duplicate {
            last_stored_sequence: 2
        }]
    );
    store
        .write_batch(&[report("n", "i1", 3, 3000, &[7])], 0)
        .unwrap();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM workloads"), 1);
    let fleet = store.load_fleet().unwrap();
    let id = WorkloadId::Process {
        node: Arc::from("n"),
        pid: 7,
        start_ticks: 1,
    };
    let w = fleet.workload(&id).unwrap();
    assert_eq!(w.last_seen_unix_ms, 3000);
    // Its three windows: the history its verdict reads.
    assert_eq!(w.cpu_seconds, 1.5);
    let history = Reader::open(dir.path())
        .unwrap()
        .history(&id, 2000)
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h.window_end_unix_ms)
            .collect::<Vec<_>>(),
        vec![2000, 3000]
    );
}

#[test]
fn retention_removes_old_rows_and_forgotten_workloads() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
    store
        .write_batch(
            &[
                report("n", "old", 1, 1000, &[1, 2]),
                report("n", "new", 1, 5000, &[2]),
                report("n", "new", 2, 6000, &[2, 3]),
            ],
            0,
        )
        .unwrap();
    let removed = remove_before(&mut store, 5000);
    assert_eq!(
        removed,
        Removed {
            reports: 1,
            windows: 2,
            workloads: 1,
            buckets: 0,
        }
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM reports"), 2);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM windows"), 3);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM workloads"), 2);
    assert_eq!(store.last_sequence("old"), 0);
    assert_eq!(store.last_sequence("new"), 2);
    // A workload that comes back after being forgotten gets a new row.
    store
        .write_batch(&[report("n", "new", 3, 7000, &[1])], 0)
        .unwrap();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM workloads"), 3);
}

#[test]
fn a_failed_batch_stores_nothing_and_leaves_state_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
    store
        .write_batch(&[report("n", "i", 1, 1000, &[1])], 0)
        .unwrap();
    // Make the next insert into windows fail.
    store
        .conn
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON windows WHEN NEW.window_end_unix_ms = 3000
             BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )
        .unwrap();
    let err = store.write_batch(
        &[
            report("m", "i", 2, 2000, &[9]),
            report("n", "i", 3, 3000, &[1]),
        ],
        0,
    );
    assert!(err.is_err());
    assert_eq!(store.last_sequence("i"), 1);
    assert!(!store.nodes.contains_key("m"));
    assert_eq!(store.workloads.len(), 1);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM reports"), 1);
    store.conn.execute_batch("DROP TRIGGER fail").unwrap();
    let out = store
        .write_batch(
            &[
                report("m", "i", 2, 2000, &[9]),
                report("n", "i", 3, 3000, &[1]),
            ],
            0,
        )
        .unwrap();
    assert_eq!(
        out[1],
        Outcome::Stored {
            last_stored_sequence: 3
        }
    );
}

/// A report of one container process naming its pod.
fn pod_report(seq: u64, end_ms: i64, owner: &str) -> Prepared {
    let report = pb::NodeReport {
        node: Some(pb::NodeIdentity {
            node_name: "n".into(),
            agent_instance: "i".into(),
            ..Default::default()
        }),
        sequence: seq,
        window_start_unix_ms: end_ms - 1000,
        window_end_unix_ms: end_ms,
        processes: vec![pb::ProcessWindow {
            key: Some(pb::ProcessKey {
                pid: 7,
                start_ticks: 1,
            }),
            comm: "java".into(),
            container_id: "c".repeat(64),
            delta: Some(pb::Counters {
                cpu_seconds: 0.5,
                ..Default::default()
            }),
            pod: Some(pb::PodMetadata {
                namespace: "shop".into(),
                pod_name: "checkout-0".into(),
                container_name: "checkout".into(),
                owner_kind: "StatefulSet".into(),
                owner_name: owner.into(),
                source: "api-server".into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        agent: None,
        pods: Vec::new(),
        container_pressures: Vec::new(),
    };
    let body = Bytes::from(report.encode_to_vec());
    let received = ReceivedReport::decode(body.clone()).unwrap();
    let node: Arc<str> = Arc::from("n");
    Prepared {
        identity: Arc::new(received.view.node.clone().unwrap_or_default()),
        windows: workload_windows(&node, &received),
        node_name: node,
        agent_instance: "i".into(),
        agent_start_unix_ms: 0,
        sequence: seq,
        window_start_unix_ms: end_ms - 1000,
        window_end_unix_ms: end_ms,
        processes: 1,
        body,
    }
}

#[test]
fn pod_metadata_is_stored_once_updated_when_it_changes_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
    store
        .write_batch(
            &[
                pod_report(1, 1000, "checkout"),
                pod_report(2, 2000, "checkout"),
            ],
            5,
        )
        .unwrap();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM workload_pods"), 1);
    let updated: i64 = count(&store, "SELECT updated_unix_ms FROM workload_pods");
    assert_eq!(updated, 5, "written once, not per report");
    store
        .write_batch(&[pod_report(3, 3000, "checkout-v2")], 9)
        .unwrap();
    let owner: String = store
        .conn
        .query_row("SELECT owner_name FROM workload_pods", [], |r| r.get(0))
        .unwrap();
    assert_eq!(owner, "checkout-v2");
    drop(store);
    let store = Store::open(dir.path(), Sync::Normal).unwrap();
    let fleet = store.load_fleet().unwrap();
    let w = fleet.snapshot(None);
    assert_eq!(w.len(), 1);
    let pod = w[0].pod.as_ref().expect("the pod survives a restart");
    assert_eq!(
        (pod.namespace.as_str(), pod.owner_name.as_str()),
        ("shop", "checkout-v2")
    );
    let mut store = store;
    remove_before(&mut store, 10_000);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM workload_pods"), 0);
}

#[test]
fn nodes_are_listed_with_their_latest_identity_and_span() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
    let typed = |seq: u64, end_ms: i64, instance_type: &str| {
        let mut p = report("a", "i1", seq, end_ms, &[1]);
        let mut r = pb::NodeReport::decode(&p.body[..]).unwrap();
        r.node.as_mut().unwrap().instance_type = instance_type.into();
        p.identity = Arc::new(r.node.clone().unwrap());
        p.body = Bytes::from(r.encode_to_vec());
        p
    };
    store
        .write_batch(
            &[
                typed(1, 1000, ""),
                typed(2, 2000, "m7g.large"),
                report("b", "i2", 1, 5000, &[2]),
            ],
            0,
        )
        .unwrap();
    let mut nodes = Reader::open(dir.path()).unwrap().nodes().unwrap();
    nodes.sort_by_key(|n| n.identity.as_ref().unwrap().node_name.clone());
    let summary: Vec<(String, String, i64, i64)> = nodes
        .iter()
        .map(|n| {
            let id = n.identity.as_ref().unwrap();
            (
                id.node_name.clone(),
                id.instance_type.clone(),
                n.first_window_start_unix_ms,
                n.last_window_end_unix_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a".into(), "m7g.large".into(), 0, 2000),
            ("b".into(), String::new(), 4000, 5000),
        ]
    );
}

/// A container's report: a busy JVM and an idle Go sidecar, each with its
/// settings.
fn settings_report(seq: u64, end_ms: i64, max_heap_bytes: u64) -> Prepared {
    let process = |pid: u32, cpu_seconds: f64, settings: pb::RuntimeSettings| pb::ProcessWindow {
        key: Some(pb::ProcessKey {
            pid,
            start_ticks: 1,
        }),
        comm: format!("p{pid}"),
        container_id: "d".repeat(64),
        delta: Some(pb::Counters {
            cpu_seconds,
            ..Default::default()
        }),
        settings: Some(settings),
        ..Default::default()
    };
    let jvm = pb::RuntimeSettings {
        jvm: Some(pb::JvmSettings {
            max_heap_bytes,
            max_heap_source: pb::SettingSource::Flag as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let go = pb::RuntimeSettings {
        go: Some(pb::GoSettings {
            gogc: 100,
            gogc_source: pb::SettingSource::Default as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let report = pb::NodeReport {
        node: Some(pb::NodeIdentity {
            node_name: "n".into(),
            agent_instance: "i".into(),
            ..Default::default()
        }),
        sequence: seq,
        window_start_unix_ms: end_ms - 1000,
        window_end_unix_ms: end_ms,
        processes: vec![
            process(8, 0.01, go.clone()),
            process(9, 0.9, jvm),
            process(10, 0.0, go),
        ],
        agent: None,
        pods: Vec::new(),
        container_pressures: Vec::new(),
    };
    let body = Bytes::from(report.encode_to_vec());
    let received = ReceivedReport::decode(body.clone()).unwrap();
    let node: Arc<str> = Arc::from("n");
    Prepared {
        identity: Arc::new(received.view.node.clone().unwrap_or_default()),
        windows: workload_windows(&node, &received),
        node_name: node,
        agent_instance: "i".into(),
        agent_start_unix_ms: 0,
        sequence: seq,
        window_start_unix_ms: end_ms - 1000,
        window_end_unix_ms: end_ms,
        processes: 3,
        body,
    }
}

#[test]
fn the_main_processs_settings_are_the_workloads_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
    store
        .write_batch(&[settings_report(1, 1000, 128 << 20)], 5)
        .unwrap();
    store
        .write_batch(&[settings_report(2, 2000, 192 << 20)], 9)
        .unwrap();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM workload_settings"), 1);
    drop(store);
    let store = Store::open(dir.path(), Sync::Normal).unwrap();
    let w = store.load_fleet().unwrap().snapshot(None);
    assert_eq!(w.len(), 1);
    let jvm = w[0]
        .settings
        .as_ref()
        .and_then(|s| s.jvm.as_ref())
        .expect("the busiest process's settings, kept across a restart");
    assert_eq!(jvm.max_heap_bytes, 192 << 20);
    let mut store = store;
    remove_before(&mut store, 10_000);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM workload_settings"), 0);
}
