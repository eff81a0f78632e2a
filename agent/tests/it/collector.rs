//! The collector as a process: the real `agent collector` binary on a
//! loopback port with a data directory of its own, driven by tonic clients
//! built from tally-proto and by the agent's own `Streamer`. No root needed.
use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use tally_node::stream::{Streamer, StreamerConfig};
use tally_proto as pb;
use tokio_stream::StreamExt as _;

use crate::common;

/// A collector process; killed with SIGKILL when dropped.
struct Collector {
    child: Child,
    addr: SocketAddr,
    data: PathBuf,
}

impl Collector {
    fn start(data: &Path, listen: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["collector", "--listen", listen, "--data"])
            .arg(data)
            .args(["--classify-interval", "100ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the collector");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("an address"));
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the collector prints `listening on ADDR` within 10 s");
        Self {
            child,
            addr,
            data: data.to_owned(),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    async fn query(&self) -> pb::query_client::QueryClient<tonic::transport::Channel> {
        pb::query_client::QueryClient::connect(self.url())
            .await
            .expect("connect to the collector")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn db(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(data.join("tally.sqlite")).expect("open the store")
}

/// Sequences stored for an agent instance, in order.
fn stored_sequences(data: &Path, instance: &str) -> Vec<u64> {
    let conn = db(data);
    let mut q = conn
        .prepare("SELECT sequence FROM reports WHERE agent_instance = ?1 ORDER BY sequence")
        .unwrap();
    q.query_map([instance], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|s| s.unwrap() as u64)
        .collect()
}

fn integrity(data: &Path) -> String {
    db(data)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// A process window: `container` empty for a process outside containers.
fn process(
    pid: u32,
    container: &str,
    runtime: pb::Runtime,
    cpu: f64,
    gc: f64,
) -> pb::ProcessWindow {
    pb::ProcessWindow {
        key: Some(pb::ProcessKey {
            pid,
            start_ticks: 1000 + u64::from(pid),
        }),
        comm: format!("proc{pid}"),
        container_id: container.to_owned(),
        runtime: runtime as i32,
        delta: Some(pb::Counters {
            cpu_samples: (cpu * 99.0) as u64,
            cpu_seconds: cpu,
            gc_thread_cpu_seconds: gc,
            gc_cpu_seconds: gc,
            mmap_calls: 10,
            mmap_bytes: 1 << 20,
            minor_faults: 100,
            ..Default::default()
        }),
        rss_bytes: 64 << 20,
        ..Default::default()
    }
}

fn report(
    node: &str,
    instance: &str,
    seq: u64,
    processes: Vec<pb::ProcessWindow>,
) -> pb::NodeReport {
    // Recent windows (older ones would fall to the retention pass), one a
    // second, the latest ending now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let end = now - 3_600_000 + seq as i64 * 1000;
    pb::NodeReport {
        node: Some(pb::NodeIdentity {
            node_name: node.to_owned(),
            agent_instance: instance.to_owned(),
            ..Default::default()
        }),
        sequence: seq,
        window_start_unix_ms: end - 1000,
        window_end_unix_ms: end,
        processes,
        agent: Some(pb::AgentStats::default()),
        pods: Vec::new(),
        container_pressures: Vec::new(),
    }
}

/// Sends `reports` on one stream and returns the acks, one per report.
async fn send(url: &str, reports: Vec<pb::NodeReport>) -> Result<Vec<u64>, tonic::Status> {
    let n = reports.len();
    let mut client = pb::ingest_client::IngestClient::connect(url.to_owned())
        .await
        .expect("connect");
    let mut acks = client
        .stream(tokio_stream::iter(reports))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        match acks.next().await {
            Some(Ok(ack)) => out.push(ack.last_stored_sequence),
            Some(Err(status)) => return Err(status),
            None => break,
        }
    }
    Ok(out)
}

/// Polls ListWorkloads until `done` holds (classification runs every 100 ms).
async fn workloads_until(
    c: &Collector,
    node: &str,
    done: impl Fn(&[pb::Workload]) -> bool,
) -> Vec<pb::Workload> {
    let mut q = c.query().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let w = q
            .list_workloads(pb::ListWorkloadsRequest {
                node_name: node.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .workloads;
        if done(&w) || Instant::now() > deadline {
            return w;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn container_key(id: &str) -> pb::WorkloadKey {
    pb::WorkloadKey {
        key: Some(pb::workload_key::Key::ContainerId(id.to_owned())),
    }
}

fn key_of(w: &pb::Workload) -> Option<&pb::workload_key::Key> {
    w.key.as_ref()?.key.as_ref()
}

// common::serial() is held across awaits on purpose: it keeps other
// tests out for the whole run, and nothing in this test's runtime takes it.
#[tokio::test]
#[allow(clippy::await_holding_lock)]
async fn two_agents_on_two_nodes_both_appear_and_a_container_merges_across_them() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "127.0.0.1:0");
    let mut watch = c
        .query()
        .await
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();

    // A JVM container spread over both nodes: 40% of its CPU in GC threads
    // on node-a, none on node-b; merged, 0.4 / 1.5 = 27%: gc-heavy.
    let a = (1..=3)
        .map(|s| {
            report(
                "node-a",
                "agent-a",
                s,
                vec![
                    process(10, "jvmjvm", pb::Runtime::Jvm, 1.0, 0.4),
                    process(11, "", pb::Runtime::Native, 0.2, 0.0),
                ],
            )
        })
        .collect();
    let b = (1..=3)
        .map(|s| {
            report(
                "node-b",
                "agent-b",
                s,
                vec![
                    process(20, "jvmjvm", pb::Runtime::Jvm, 0.5, 0.0),
                    process(21, "", pb::Runtime::Go, 0.0, 0.0),
                ],
            )
        })
        .collect();
    let url = c.url();
    let (acks_a, acks_b) = tokio::join!(send(&url, a), send(&url, b));
    assert_eq!(acks_a.unwrap(), vec![1, 2, 3]);
    assert_eq!(acks_b.unwrap(), vec![1, 2, 3]);

    let all = workloads_until(&c, "", |w| w.len() == 3).await;
    assert_eq!(all.len(), 3, "{all:#?}");
    let jvm = all
        .iter()
        .find(|w| key_of(w) == Some(&pb::workload_key::Key::ContainerId("jvmjvm".into())))
        .expect("the container");
    assert_eq!(jvm.nodes, vec!["node-a".to_owned(), "node-b".to_owned()]);
    assert_eq!(jvm.runtime(), pb::Runtime::Jvm);
    // Its three windows on each node: the minute of history its verdict
    // reads (README, "Verdicts over history").
    assert!((jvm.cpu_seconds - 4.5).abs() < 1e-9, "{jvm:?}");
    assert!((jvm.gc_cpu_share - 0.4 / 1.5).abs() < 1e-9);
    let verdict = jvm.verdict.as_ref().unwrap();
    assert_eq!(
        verdict.kind(),
        pb::VerdictKind::VerdictGcHeavy,
        "{verdict:?}"
    );
    assert!(verdict.reasons[0].contains("threads 27%"), "{verdict:?}");

    let on_b = workloads_until(&c, "node-b", |w| w.len() == 2).await;
    assert_eq!(on_b.len(), 2);
    assert!(on_b.iter().all(|w| w.nodes.contains(&"node-b".to_owned())));

    // History: three windows of the container on each node.
    let h = c
        .query()
        .await
        .workload_history(pb::WorkloadHistoryRequest {
            key: Some(container_key("jvmjvm")),
            since_unix_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.points.len(), 6);
    assert!(h.workload.is_some());
    let missing = c
        .query()
        .await
        .workload_history(pb::WorkloadHistoryRequest {
            key: Some(container_key("nope")),
            since_unix_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Every stored window reached the watcher.
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("a watch event")
        .unwrap()
        .unwrap();
    assert!(event.workload.is_some());

    // The CLI, both forms.
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["workloads", "--json", "--collector", &c.url()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["verdict"], "gc-heavy", "worst first: {rows:?}");
    assert_eq!(rows[0]["node"], "node-a,node-b");
    // Named after the first process seen, on whichever node reported first.
    let name = rows[0]["workload"].as_str().unwrap();
    assert!(name == "proc10/jvmjvm" || name == "proc20/jvmjvm", "{name}");
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["workloads", "--collector", &c.url()])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("WORKLOAD"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
}

// common::serial() is held across awaits on purpose: it keeps other
// tests out for the whole run, and nothing in this test's runtime takes it.
#[tokio::test]
#[allow(clippy::await_holding_lock)]
async fn kill9_loses_no_acknowledged_report_and_the_streamer_resends_the_rest() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path(), "127.0.0.1:0");
    let addr = c.addr;
    let mut config = StreamerConfig::new(c.url());
    config.backoff_min = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(300);
    let streamer = Streamer::start(config).unwrap();
    let instance = streamer.agent_instance().to_owned();
    let procs = || {
        (0..20)
            .map(|i| process(100 + i, "", pb::Runtime::Go, 0.1, 0.01))
            .collect::<Vec<_>>()
    };
    const N: u64 = 60;

    // Two thirds of the first half acknowledged, then the rest of it pushed
    // at once, so that some are in flight when the collector is killed.
    for seq in 1..=N / 3 {
        streamer.push(report("node-k", "", seq, procs()));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while streamer.acked_sequence() < N / 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        streamer.acked_sequence(),
        N / 3,
        "acknowledged before the kill"
    );
    for seq in N / 3 + 1..=N / 2 {
        streamer.push(report("node-k", "", seq, procs()));
    }
    c.kill9();
    let acked = streamer.acked_sequence();
    eprintln!(
        "killed with {acked} of {} acknowledged, {} stored",
        N / 2,
        stored_sequences(dir.path(), &instance).len()
    );

    // (d) and (b): what was acknowledged is there, the file is sound.
    assert_eq!(integrity(dir.path()), "ok");
    let stored = stored_sequences(dir.path(), &instance);
    for seq in 1..=acked {
        assert!(stored.contains(&seq), "acknowledged {seq} lost: {stored:?}");
    }

    // The agent keeps collecting while the collector is down.
    for seq in N / 2 + 1..=N {
        streamer.push(report("node-k", "", seq, procs()));
    }
    assert!(streamer.pending() as u64 >= N / 2);
    let c = Collector::start(&c.data, &addr.to_string());
    assert!(
        streamer.flush(Duration::from_secs(10)),
        "the streamer resent everything after the restart ({} pending)",
        streamer.pending()
    );
    assert_eq!(streamer.dropped_reports(), 0);
    assert_eq!(
        stored_sequences(dir.path(), &instance),
        (1..=N).collect::<Vec<_>>(),
        "every sequence stored exactly once"
    );
    // And through the query service: one window per report for a process.
    let h = c
        .query()
        .await
        .workload_history(pb::WorkloadHistoryRequest {
            key: Some(pb::WorkloadKey {
                key: Some(pb::workload_key::Key::Process(pb::ProcessOnNode {
                    node_name: "node-k".into(),
                    key: Some(pb::ProcessKey {
                        pid: 100,
                        start_ticks: 1100,
                    }),
                })),
            }),
            since_unix_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.points.len() as u64, N);
    drop(streamer);
    drop(c);
    assert_eq!(integrity(dir.path()), "ok");
}

// common::serial() is held across awaits on purpose: it keeps other
// tests out for the whole run, and nothing in this test's runtime takes it.
#[tokio::test]
#[allow(clippy::await_holding_lock)]
async fn duplicates_are_stored_once_and_acked_with_the_last_sequence() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "127.0.0.1:0");
    let r = |seq| {
        report(
            "node-d",
            "dup",
            seq,
            vec![process(5, "", pb::Runtime::Native, 0.1, 0.0)],
        )
    };
    let acks = send(&c.url(), vec![r(1), r(2), r(2), r(1), r(3)])
        .await
        .unwrap();
    assert_eq!(acks, vec![1, 2, 2, 2, 3]);
    // Resent on a new stream, as after a reconnect.
    let acks = send(&c.url(), vec![r(1), r(2), r(3), r(4)]).await.unwrap();
    assert_eq!(acks, vec![3, 3, 3, 4]);
    assert_eq!(stored_sequences(dir.path(), "dup"), vec![1, 2, 3, 4]);
    let windows: i64 = db(dir.path())
        .query_row("SELECT COUNT(*) FROM windows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(windows, 4);

    // A bad report ends the stream with INVALID_ARGUMENT, after the acks of
    // the good ones before it.
    let mut bad = r(5);
    bad.node.as_mut().unwrap().node_name.clear();
    let err = send(&c.url(), vec![r(5), bad]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("node name"), "{err:?}");
    assert_eq!(stored_sequences(dir.path(), "dup"), vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_collector_that_is_down_or_a_bad_url_is_one_clear_line() {
    let _serial = common::serial();
    // Nothing listens on port 9 of loopback.
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["workloads", "--collector", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("agent: cannot reach the collector at http://127.0.0.1:9: ")
            && err.contains("refused")
            && err.lines().count() == 1,
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["workloads", "--collector", "ftp://x:1"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad collector URL `ftp://x:1`"), "{err}");
}
