//! OTLP export, received by a real OTLP/gRPC receiver written against the
//! official Python packages (`grpcio`, `opentelemetry-proto`; see
//! tests/fixtures/otlp_receiver.py), and an endpoint that is down.
//!
//! One agent (`agent run --otlp-endpoint … --json`) both exports and prints
//! its windows as `agent top --batch --json` does, so every export can be
//! checked against the windows it covers: the cumulative sums at a window's
//! end equal the sum of the JSON deltas up to that window, exactly for
//! counts.
use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use crate::common::{self, TestCgroup};
use crate::exporting::{KillOnDrop, RunAgent, RunCollector, http_get, python_venv, rss_bytes, tmp};

/// A receiver process and the file it writes.
struct Receiver {
    child: KillOnDrop,
    port: u16,
    out: std::path::PathBuf,
}

impl Receiver {
    fn start(python: &Path, unavailable: u32) -> Self {
        let out = tmp().join(format!("{}.jsonl", common::unique("otlp-received")));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp_receiver.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg("--out")
            .arg(&out)
            .args(["--unavailable", &unavailable.to_string()])
            .args(["--max-seconds", "180"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the receiver starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("receiver said {first:?}"));
        Self {
            child: KillOnDrop(child),
            port,
            out,
        }
    }

    /// Stops it and returns every record it received.
    fn stop(mut self) -> Vec<Value> {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGTERM) };
        let _ = self.child.0.wait();
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn attr<'a>(resource: &'a Value, key: &str) -> Option<&'a Value> {
    resource["resource"]["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn string_attr(resource: &Value, key: &str) -> Option<String> {
    attr(resource, key)?["string_value"]
        .as_str()
        .map(str::to_owned)
}

fn metric<'a>(resource: &'a Value, name: &str) -> Option<&'a Value> {
    resource["scope_metrics"][0]["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
}

/// The points of a metric: `(attributes as "k=v,…", point)`.
fn points(metric: &Value) -> Vec<(String, &Value)> {
    let data = if metric["sum"].is_object() {
        &metric["sum"]
    } else {
        &metric["gauge"]
    };
    data["data_points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let attrs: Vec<String> = p["attributes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|kv| {
                            format!(
                                "{}={}",
                                kv["key"].as_str().unwrap(),
                                kv["value"]["string_value"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (attrs.join(","), p)
        })
        .collect()
}

fn number(p: &Value) -> f64 {
    if let Some(v) = p.get("as_int") {
        // int64 is a string in protobuf's JSON mapping.
        v.as_str()
            .map(|s| s.parse().unwrap())
            .or_else(|| v.as_f64())
            .unwrap()
    } else {
        p["as_double"].as_f64().unwrap_or(0.0)
    }
}

fn nanos(v: &Value) -> u64 {
    v.as_str()
        .map(|s| s.parse().unwrap())
        .or_else(|| v.as_u64())
        .unwrap_or(0)
}

/// The window end as `--json` prints it.
fn ts_of(nanos: u64) -> String {
    tally_core::time::rfc3339(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// Each metric checked: (OTLP name, point attributes, JSON field).
const CHECKS: &[(&str, &str, &str)] = &[
    ("cpu.time", "", "cpu_seconds"),
    (
        "paging.faults",
        "system.paging.fault.type=minor",
        "minor_faults",
    ),
    (
        "paging.faults",
        "system.paging.fault.type=major",
        "major_faults",
    ),
    ("alloc.syscalls", "syscall=mmap", "mmap_calls"),
    ("alloc.syscalls", "syscall=munmap", "munmap_calls"),
    ("alloc.syscalls", "syscall=brk", "brk_calls"),
    ("alloc.syscalls", "syscall=madvise", "madvise_calls"),
    ("alloc.bytes", "syscall=mmap", "mmap_bytes"),
    ("alloc.bytes", "syscall=munmap", "munmap_bytes"),
    ("alloc.bytes", "syscall=brk", "brk_bytes"),
    (
        "alloc.bytes",
        "syscall=madvise,advice=dontneed",
        "madvise_dontneed_bytes",
    ),
    ("gc.cpu.time", "", "gc_cpu_seconds"),
];

/// The full OTLP name of a checked metric for a process or container.
fn otlp_name(short: &str, process: bool) -> String {
    match (short, process) {
        ("cpu.time", true) => "process.cpu.time".into(),
        ("cpu.time", false) => "container.cpu.time".into(),
        ("paging.faults", true) => "process.paging.faults".into(),
        ("paging.faults", false) => "tally.container.paging.faults".into(),
        (s, true) => format!("tally.process.{s}"),
        (s, false) => format!("tally.container.{s}"),
    }
}

/// Checks every export of one resource against the JSON windows: the
/// cumulative value at each export equals the sum of the deltas of the
/// windows up to it. Returns how many exports were checked.
fn check_sums(exports: &[(u64, &Value)], json: &[&Value], process: bool, what: &str) -> usize {
    let mut checked = 0;
    for (at, resource) in exports {
        let ts = ts_of(*at);
        let upto: Vec<&&Value> = json
            .iter()
            .filter(|w| w["ts"].as_str().unwrap() <= ts.as_str())
            .collect();
        assert!(
            json.iter().any(|w| w["ts"] == ts.as_str()) || !upto.is_empty(),
            "{what}: export at {ts} covers no window"
        );
        for (short, attrs, field) in CHECKS {
            let name = otlp_name(short, process);
            let m = metric(resource, &name).unwrap_or_else(|| panic!("{what}: no {name}"));
            let (_, p) = points(m)
                .into_iter()
                .find(|(a, _)| a == attrs)
                .unwrap_or_else(|| panic!("{what}: {name} has no point {attrs}"));
            let got = number(p);
            let want: f64 = upto.iter().map(|w| w[*field].as_f64().unwrap()).sum();
            // Counts exactly; seconds to the JSON's 6 decimals per window.
            let slack = if field.ends_with("seconds") {
                1e-6 * (upto.len() as f64 + 1.0)
            } else {
                0.0
            };
            assert!(
                (got - want).abs() <= slack,
                "{what} {name}{{{attrs}}} at {ts}: OTLP {got}, sum of --json {field} {want}"
            );
        }
        checked += 1;
    }
    checked
}

#[test]
fn otlp_export_matches_json_windows_and_has_resource_attributes() {
    let test = "otlp_export_matches_json_windows_and_has_resource_attributes";
    if !common::require_root(test) {
        return;
    }
    // Before the venv: python_venv may make it, and deploy's tests use it.
    let _serial = common::serial();
    let Some(python) = python_venv(test) else {
        return;
    };
    // The first two exports are refused with UNAVAILABLE: retried, and
    // still every window arrives.
    let receiver = Receiver::start(&python, 2);
    let uid = "6f1e2d3c_4b5a_4968_8776_655443322110";
    let id = "9a8b7c6d5e4f30211203948576a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8";
    let rel = format!(
        "{}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{id}.scope",
        common::unique("tally-test-otlp")
    );
    let cg = TestCgroup::create(&rel);
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let agent = RunAgent::start(&[
        "--otlp-endpoint",
        &endpoint,
        "--otlp-header",
        "authorization=Bearer tally-test",
        "--json",
        "--interval",
        "0.5",
    ]);
    let agent_started = SystemTime::now();
    // Known work: allocation syscalls and faults, then CPU.
    let report = common::run_workload(Some(&cg), &["alloc", "3000", "4"]);
    let spin = common::run_workload(Some(&cg), &["spin", "1.5"]);
    thread::sleep(Duration::from_millis(1500));
    let (lines, stderr) = agent.stop();
    let received = receiver.stop();
    assert!(
        stderr.contains("failed: test: not yet") && stderr.contains("reachable again"),
        "the refused exports were retried; stderr:\n{stderr}"
    );
    assert!(!received.is_empty(), "nothing received; stderr:\n{stderr}");
    for r in &received {
        assert_eq!(r["metadata"]["authorization"], "Bearer tally-test");
    }

    // Every window the agent printed was exported (none lost to the
    // refusals): each window end is the time of one export.
    let windows: BTreeSet<&str> = lines.iter().filter_map(|l| l["ts"].as_str()).collect();
    let exported: BTreeSet<String> = received
        .iter()
        .map(|r| {
            let agent_res = &r["request"]["resource_metrics"][0];
            let m = metric(agent_res, "tally.agent.windows").expect("agent metrics");
            ts_of(nanos(&points(m)[0].1["time_unix_nano"]))
        })
        .collect();
    for w in &windows {
        assert!(
            exported.contains(*w),
            "window {w} was not exported; exported {exported:?}"
        );
    }

    for (label, work) in [("alloc", &report), ("spin", &spin)] {
        let pid = work["pid"].as_u64().unwrap();
        let json: Vec<&Value> = lines
            .iter()
            .filter(|l| l["kind"] == "process" && l["pid"] == pid)
            .collect();
        assert!(!json.is_empty(), "{label}: no window for pid {pid}");
        let mut exports: Vec<(u64, &Value)> = Vec::new();
        for r in &received {
            for res in r["request"]["resource_metrics"].as_array().unwrap() {
                let is_pid = attr(res, "process.pid")
                    .and_then(|v| v["int_value"].as_str())
                    .is_some_and(|p| p == pid.to_string());
                if is_pid {
                    let cpu = metric(res, "process.cpu.time").unwrap();
                    let at = nanos(&points(cpu)[0].1["time_unix_nano"]);
                    exports.push((at, res));
                }
            }
        }
        assert!(!exports.is_empty(), "{label}: pid {pid} never exported");
        let res = exports[0].1;
        assert_eq!(
            string_attr(res, "process.executable.name").as_deref(),
            Some("workload")
        );
        assert_eq!(string_attr(res, "container.id").as_deref(), Some(id));
        assert_eq!(
            string_attr(res, "k8s.pod.uid").as_deref(),
            Some(uid.replace('_', "-").as_str())
        );
        assert_eq!(
            string_attr(res, "container.runtime").as_deref(),
            Some("containerd")
        );
        assert!(string_attr(res, "host.name").is_some_and(|h| !h.is_empty()));
        // The sums start when the process did (it is newer than the agent).
        let cpu = metric(res, "process.cpu.time").unwrap();
        assert_eq!(
            cpu["sum"]["aggregation_temporality"],
            "AGGREGATION_TEMPORALITY_CUMULATIVE"
        );
        assert_eq!(cpu["sum"]["is_monotonic"], true);
        let start =
            UNIX_EPOCH + Duration::from_nanos(nanos(&points(cpu)[0].1["start_time_unix_nano"]));
        assert!(
            start >= agent_started - Duration::from_secs(2) && start <= SystemTime::now(),
            "{label}: start time {start:?}"
        );
        let checked = check_sums(&exports, &json, true, label);
        eprintln!(
            "{label}: pid {pid}, {checked} exports checked against {} windows",
            json.len()
        );
        // The known work itself, as a sanity check of the totals.
        if label == "alloc" {
            let last = exports.last().unwrap().1;
            let mmap = points(metric(last, "tally.process.alloc.syscalls").unwrap())
                .into_iter()
                .find(|(a, _)| a == "syscall=mmap")
                .map(|(_, p)| number(p))
                .unwrap();
            assert!(mmap >= 3000.0, "mmap calls {mmap}");
        }
    }

    // The container: its sums are its JSON lines' sums.
    let json: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"] == "container" && l["container_id"] == id)
        .collect();
    let mut exports: Vec<(u64, &Value)> = Vec::new();
    for r in &received {
        for res in r["request"]["resource_metrics"].as_array().unwrap() {
            if attr(res, "process.pid").is_none()
                && string_attr(res, "container.id").as_deref() == Some(id)
            {
                let cpu = metric(res, "container.cpu.time").unwrap();
                exports.push((nanos(&points(cpu)[0].1["time_unix_nano"]), res));
            }
        }
    }
    assert!(!exports.is_empty(), "the container was never exported");
    let checked = check_sums(&exports, &json, false, "container");
    eprintln!(
        "container: {checked} exports checked against {} windows",
        json.len()
    );
    let verdict = metric(exports.last().unwrap().1, "tally.container.verdict").expect("a verdict");
    let (attrs, _) = &points(verdict)[0];
    assert!(attrs.starts_with("verdict="), "{attrs}");
}

#[test]
fn otlp_endpoint_down_never_blocks_collection_and_memory_stays_bounded() {
    let test = "otlp_endpoint_down_never_blocks_collection_and_memory_stays_bounded";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    // Down the hard way: the port takes connections (the kernel completes
    // them into the backlog) and never answers, so an exporter that waited
    // for its endpoint would hold each window up for a whole time-out (a
    // closed port would fail fast and hide that).
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", blackhole.local_addr().unwrap());
    let agent = RunAgent::start(&[
        "--otlp-endpoint",
        &endpoint,
        "--otlp-timeout",
        "1s",
        "--otlp-queue",
        "4",
        "--metrics-listen",
        "127.0.0.1:0",
        "--json",
        "--interval",
        "0.2",
        // What this bounds is the export queue. With stacks sampled, the
        // first sample of a big Go daemon of the machine (dockerd: about
        // 4 MiB of function names, kept for its life) comes at any time,
        // before or after the first RSS reading: seen as 4.3 MiB of growth
        // in one run of three here, with the queue at its cap throughout.
        "--stack-sampling",
        "off",
    ]);
    let addr = agent.metrics_addr();
    let started = Instant::now();
    thread::sleep(Duration::from_secs(3));
    let rss_early = rss_bytes(agent.pid());
    thread::sleep(Duration::from_secs(7));
    let rss_late = rss_bytes(agent.pid());
    let elapsed = started.elapsed().as_secs_f64();
    let (_, metrics) = http_get(addr, "/metrics").unwrap();
    let (lines, stderr) = agent.stop();
    drop(blackhole);
    let windows: BTreeSet<&str> = lines.iter().filter_map(|l| l["ts"].as_str()).collect();
    // Windows keep coming at the interval (0.2 s) while every export hangs
    // until its time-out (1 s).
    let expected = elapsed / 0.2;
    assert!(
        windows.len() as f64 >= 0.7 * expected,
        "{} windows in {elapsed:.1}s (expected about {expected:.0}); stderr:\n{stderr}",
        windows.len()
    );
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
    };
    let dropped_full: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("tally_otlp_dropped_exports_total") && l.contains("reason=\"queue_full\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let queued = value("tally_otlp_queue_length");
    let failed = value("tally_otlp_failed_attempts_total");
    let exports = value("tally_otlp_exports_total");
    eprintln!(
        "{} windows; dropped {dropped_full} (queue full), queue {queued}, failed attempts {failed}; RSS {:.1} -> {:.1} MiB",
        windows.len(),
        rss_early as f64 / 1048576.0,
        rss_late as f64 / 1048576.0
    );
    assert_eq!(exports, 0.0);
    assert!(queued <= 4.0, "queue length {queued}");
    assert!(failed >= 1.0, "no attempt failed?");
    // All but the queued and the one in flight were dropped, and counted.
    assert!(
        dropped_full >= windows.len() as f64 - 4.0 - 1.0 - 5.0,
        "dropped {dropped_full} of {} windows",
        windows.len()
    );
    assert!(
        stderr.contains("OTLP export to"),
        "a warning names the endpoint:\n{stderr}"
    );
    // Bounded: no growth with the windows that keep being dropped.
    assert!(
        rss_late <= rss_early + (4 << 20),
        "RSS grew from {rss_early} to {rss_late} bytes"
    );
}

/// `agent collector` with `--metrics-listen` and `--otlp-endpoint`: the
/// verdict of a workload it was sent reaches `/metrics` and the OTLP
/// receiver, with the workload's attributes; `/healthz` and `/readyz`
/// answer. No root needed: the reports are sent by a tonic client.
#[test]
fn collector_exports_verdicts_over_otlp_and_on_its_metrics_endpoint() {
    let test = "collector_exports_verdicts_over_otlp_and_on_its_metrics_endpoint";
    // Before the venv: python_venv may make it, and deploy's tests use it.
    let _serial = common::serial();
    let Some(python) = python_venv(test) else {
        return;
    };
    let receiver = Receiver::start(&python, 1);
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let collector = RunCollector::start(&[
        "--classify-interval",
        "200ms",
        "--metrics-listen",
        "127.0.0.1:0",
        "--otlp-endpoint",
        &endpoint,
    ]);
    let grpc = collector.grpc;
    let metrics = collector.metrics_addr();
    for path in ["/healthz", "/readyz"] {
        assert_eq!(http_get(metrics, path).unwrap().0, 200, "{path}");
    }

    // One Go container, a third of its CPU in GC, over three windows.
    let id = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let reports: Vec<tally_proto::NodeReport> = (1..=3u64)
        .map(|seq| {
            let end = now_ms - 3000 + seq as i64 * 1000;
            tally_proto::NodeReport {
                node: Some(tally_proto::NodeIdentity {
                    node_name: "node-x".into(),
                    agent_instance: "instance-x".into(),
                    ..Default::default()
                }),
                sequence: seq,
                window_start_unix_ms: end - 1000,
                window_end_unix_ms: end,
                processes: vec![tally_proto::ProcessWindow {
                    key: Some(tally_proto::ProcessKey {
                        pid: 4242,
                        start_ticks: 777,
                    }),
                    comm: "gc-app".into(),
                    container_id: id.into(),
                    runtime: tally_proto::Runtime::Go as i32,
                    delta: Some(tally_proto::Counters {
                        cpu_samples: 99,
                        cpu_seconds: 0.9,
                        gc_stack_cpu_seconds: 0.3,
                        gc_cpu_seconds: 0.3,
                        ..Default::default()
                    }),
                    rss_bytes: 100 << 20,
                    ..Default::default()
                }],
                agent: Some(tally_proto::AgentStats::default()),
                pods: Vec::new(),
                container_pressures: Vec::new(),
            }
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio_stream::StreamExt as _;
        let mut client =
            tally_proto::ingest_client::IngestClient::connect(format!("http://{grpc}"))
                .await
                .expect("connect to the collector");
        let mut acks = client
            .stream(tokio_stream::iter(reports))
            .await
            .unwrap()
            .into_inner();
        let mut last = 0;
        while last < 3 {
            last = acks
                .next()
                .await
                .expect("an ack")
                .unwrap()
                .last_stored_sequence;
        }
    });

    // /metrics: the verdict with the workload's labels.
    let deadline = Instant::now() + Duration::from_secs(10);
    let verdict_line = loop {
        let (_, body) = http_get(metrics, "/metrics").unwrap();
        if let Some(l) = body
            .lines()
            .find(|l| l.starts_with("tally_workload_verdict{") && l.contains(id))
        {
            break l.to_owned();
        }
        assert!(Instant::now() < deadline, "no verdict on /metrics:\n{body}");
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!("collector /metrics: {verdict_line}");
    assert!(verdict_line.contains(&format!("container_id=\"{id}\"")));
    assert!(
        verdict_line.contains("verdict=\"gc-heavy\""),
        "{verdict_line}"
    );
    assert!(verdict_line.contains("runtime=\"go\""), "{verdict_line}");
    assert!(verdict_line.ends_with(" 1"));

    // OTLP: exported every classification interval; the first refused.
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::read_to_string(&receiver.out)
        .unwrap_or_default()
        .matches(id)
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the receiver got no verdict");
        thread::sleep(Duration::from_millis(200));
    }
    let stderr = collector.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let received = receiver.stop();
    let workload = received
        .iter()
        .flat_map(|r| r["request"]["resource_metrics"].as_array().unwrap())
        .find(|res| string_attr(res, "container.id").as_deref() == Some(id))
        .expect("the workload's resource");
    assert_eq!(
        string_attr(workload, "tally.workload.name").as_deref(),
        Some("gc-app")
    );
    let verdict = metric(workload, "tally.workload.verdict").expect("the verdict metric");
    let (attrs, point) = &points(verdict)[0];
    assert_eq!(attrs, "verdict=gc-heavy,runtime=go");
    assert_eq!(number(point), 1.0);
    let share = metric(workload, "tally.workload.gc.cpu.share").expect("the GC share");
    let share = number(points(share)[0].1);
    assert!((share - 1.0 / 3.0).abs() < 0.01, "GC share {share}");
}
