//! Test data: six 1 s windows recorded from a real `agent top --batch
//! --json` run on this project's VM (`testdata/recorded.jsonl`), with
//! `tests/workloads` running: the Go `allocheavy` (GOGC=50) in a
//! kubepods-shaped cgroup (`cri-containerd-9f86d081…` in pod `7c1f2a9e…`),
//! `churn` in a docker-shaped cgroup (`docker-2c26b46b…`), and
//! `workload spin` under a name with invalid UTF-8 (`spin\xff\xfeloop`,
//! which the agent reports as `spin\u{FFFD}\u{FFFD}loop`), next to what
//! else ran (other builds' `rustc`, the VM's daemons). Read back into
//! [`Tick`]s.
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde_json::Value;

use super::{
    app::{App, Settings},
    columns::SourceKind,
    rows::{self, Entry},
};
use tally_core::{
    gc::{Runtime, Verdict, VerdictKind},
    model::{CgroupInfo, Counters, ThreadGroup, Tick, container, samples_to_seconds},
    testing::test_window,
};

const RECORDED: &str = include_str!("testdata/recorded.jsonl");
const PERIOD_NS: u64 = 1_000_000_000 / 99;

fn runtime(name: &str) -> Runtime {
    match name {
        "go" => Runtime::Go,
        "jvm" => Runtime::Jvm,
        "node" => Runtime::Node,
        "dotnet" => Runtime::Dotnet,
        "python" => Runtime::Python,
        "native" => Runtime::Native,
        _ => Runtime::Unknown,
    }
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

/// The recorded ticks, in order.
pub fn recorded_ticks() -> Vec<Tick> {
    let mut ticks: Vec<(String, Tick)> = Vec::new();
    for line in RECORDED.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("recorded line is JSON");
        if v["kind"] != "process" {
            continue;
        }
        let ts = v["ts"].as_str().unwrap_or_default().to_owned();
        if ticks.last().is_none_or(|(t, _)| *t != ts) {
            let n = ticks.len() as u64;
            ticks.push((
                ts,
                Tick {
                    at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + n),
                    seconds: f(&v, "window_seconds"),
                    windows: Vec::new(),
                    new_drops: Default::default(),
                    swept_records: 0,
                    sample_period_ns: PERIOD_NS,
                },
            ));
        }
        let comm = v["comm"].as_str().unwrap_or_default();
        let mut w = test_window(u(&v, "pid") as u32, comm, "/");
        w.key.start_ticks = u(&v, "start_ticks");
        w.cgroup_id = v["cgroup_id"].as_u64();
        w.cgroup = v["cgroup_path"].as_str().map(|p| {
            Arc::new(CgroupInfo {
                id: w.cgroup_id.unwrap_or(0),
                path: p.to_owned(),
                container: container::parse(p),
            })
        });
        w.seconds = f(&v, "window_seconds");
        w.delta = Counters {
            cpu_samples: u(&v, "cpu_samples"),
            mmap_calls: u(&v, "mmap_calls"),
            mmap_bytes: u(&v, "mmap_bytes"),
            munmap_calls: u(&v, "munmap_calls"),
            munmap_bytes: u(&v, "munmap_bytes"),
            brk_calls: u(&v, "brk_calls"),
            brk_bytes: u(&v, "brk_bytes"),
            mremap_calls: u(&v, "mremap_calls"),
            mremap_bytes: u(&v, "mremap_bytes"),
            madvise_calls: u(&v, "madvise_calls"),
            madvise_dontneed_bytes: u(&v, "madvise_dontneed_bytes"),
            madvise_free_bytes: u(&v, "madvise_free_bytes"),
            madvise_other_bytes: u(&v, "madvise_other_bytes"),
            minor_faults: u(&v, "minor_faults"),
            major_faults: u(&v, "major_faults"),
            gc_cycles: u(&v, "gc_cycles"),
            gc_pause_ns: (f(&v, "gc_pause_seconds") * 1e9) as u64,
            // The JSON lines have no pause lengths.
            gc_pause_buckets: [0; 5],
            cpu_ticks: 0,
        };
        w.cpu_seconds = f(&v, "cpu_seconds");
        w.rss_bytes = u(&v, "rss_bytes");
        w.exited = v["exited"].as_bool().unwrap_or(false);
        w.runtime = runtime(v["runtime"].as_str().unwrap_or_default());
        let samples = |secs: f64| (secs * 1e9 / PERIOD_NS as f64).round() as u64;
        w.threads = v["threads"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| ThreadGroup {
                        name: t["name"].as_str().unwrap_or_default().to_owned(),
                        threads: u(t, "threads") as u32,
                        samples: samples(f(t, "cpu_seconds")),
                        cpu_seconds: samples_to_seconds(samples(f(t, "cpu_seconds")), PERIOD_NS),
                        gc: t["gc"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let gc_threads: u64 = w.threads.iter().filter(|t| t.gc).map(|t| t.samples).sum();
        w.gc_thread_cpu_seconds = samples_to_seconds(gc_threads, PERIOD_NS);
        w.gc_stack_cpu_seconds = samples_to_seconds(
            samples(f(&v, "gc_cpu_seconds")).saturating_sub(gc_threads),
            PERIOD_NS,
        );
        w.verdict =
            VerdictKind::from_name(v["verdict"].as_str().unwrap_or_default()).map(|kind| Verdict {
                kind,
                confidence: f(&v, "verdict_confidence"),
                reasons: v["verdict_reasons"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| r.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        ticks.last_mut().expect("a tick").1.windows.push(w);
    }
    ticks.into_iter().map(|(_, t)| t).collect()
}

/// An app fed with every recorded tick.
pub fn recorded_app(source: SourceKind) -> App {
    let mut app = App::new(Settings {
        source,
        label: "recorded".into(),
        interval: Duration::from_secs(1),
        color: false,
        node: None,
    });
    for t in recorded_ticks() {
        app.ingest(rows::local_rows(&t, None, 2));
    }
    app
}

/// A process row, for state tests.
pub fn entry(pid: u32, name: &str) -> Entry {
    let tick = Tick {
        at: SystemTime::UNIX_EPOCH,
        seconds: 2.0,
        windows: vec![test_window(pid, name, "/x")],
        new_drops: Default::default(),
        swept_records: 0,
        sample_period_ns: PERIOD_NS,
    };
    rows::local_rows(&tick, None, 2)
        .processes
        .pop()
        .expect("one row")
}
