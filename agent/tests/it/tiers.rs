//! Rolled-up history end to end: a collector that keeps raw reports for
//! only 25 s answers `agent report` from its 1-minute tier once they are
//! gone. A GC-heavy Go workload runs in a container-shaped cgroup under an
//! `agent run` streaming to it; the report's CPU for the container is
//! compared with the kernel's (the workload's own getrusage), its GC cycles
//! with Go's own count (`runtime.MemStats.NumGC`), and the report says what
//! it was read from. Needs root and go.
use std::{process::Command, thread, time::Duration};

use serde_json::Value;

use crate::{
    common,
    cost::{Reaped, container_cgroup, container_id, go_build, report_since, run_agent, workload},
};

/// `agent collector` keeping raw reports for `raw`, on a free port.
fn collector_keeping(data: &std::path::Path, raw: &str) -> (Reaped, String) {
    crate::cost::collector_with(data, &["--retention", raw])
}

#[test]
fn a_report_past_the_raw_retention_reads_the_minute_tier() {
    let test = "a_report_past_the_raw_retention_reads_the_minute_tier";
    if !common::require_root(test) || !common::require("go", test) {
        return;
    }
    let _serial = common::serial();
    let bin = go_build("allocheavy");
    let data = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("tiers"));
    let (_collector, url) = collector_keeping(&data, "25s");
    let _agent = run_agent(&url, "tiers-node");

    let id = container_id("713e5");
    let cg = container_cgroup(&id);
    let mut cmd = Command::new(&bin);
    // 2.5 s before it allocates: the agent finds the Go binary and puts its
    // GC uprobe in before the first collection.
    cmd.args(["12", "2.5"])
        .envs([("GOGC", "50"), ("GOMAXPROCS", "1")])
        .stdout(std::process::Stdio::piped());
    cg.enter_on_spawn(&mut cmd);
    let out = cmd.spawn().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let own: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (own_cpu, own_cycles) = (
        own["cpu_seconds"].as_f64().unwrap(),
        own["num_gc"].as_u64().unwrap(),
    );
    // The agent's last windows reach the collector: a report from the raw
    // windows, all of the run within them.
    thread::sleep(Duration::from_secs(3));
    let recent: Value = serde_json::from_str(&report_since(&url, "json", "22s")).unwrap();
    assert_eq!(recent["history_bucket_seconds"], 0, "{recent:#}");
    // Then the raw ones age out (retention passes run every 2.5 s here).
    thread::sleep(Duration::from_secs(26));

    // Raw windows of the last 10 s: the workload is gone from them.
    let raw: Value = serde_json::from_str(&report_since(&url, "json", "10s")).unwrap();
    assert_eq!(raw["history_bucket_seconds"], 0);
    assert!(
        raw["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| !w["key"].as_str().unwrap().contains(&id[..12])),
        "raw windows of the workload outlived --retention 25s: {raw:#}"
    );

    let rolled: Value = serde_json::from_str(&report_since(&url, "json", "10m")).unwrap();
    assert_eq!(rolled["history_bucket_seconds"], 60, "{rolled:#}");
    let w = workload(&rolled, &id[..12]);
    let cpu = w["cpu_seconds"].as_f64().unwrap();
    let cycles = w["gc_cycles"].as_u64().unwrap();
    eprintln!(
        "from the 1-minute tier: CPU {cpu:.2} s (getrusage {own_cpu:.2} s), GC cycles {cycles} (NumGC {own_cycles}), headroom {}",
        w["gc_tax"]["headroom"]["description"]
    );
    assert!(
        (cpu - own_cpu).abs() <= 0.05 * own_cpu,
        "CPU {cpu} vs the kernel's {own_cpu}: {w:#}"
    );
    assert_eq!(
        cycles, own_cycles,
        "GC cycles: from the tier vs NumGC: {w:#}"
    );
    assert_eq!(w["gc_tax"]["headroom"]["method"], "minute_teeth", "{w:#}");
    // The node is still priced: its identity outlived its reports.
    assert_eq!(
        rolled["nodes"][0]["instance_type"], "m6i.large",
        "{rolled:#}"
    );
    // The same numbers as from the raw windows.
    let before = workload(&recent, &id[..12]);
    assert_eq!(before["gc_cycles"], w["gc_cycles"]);
    for field in ["cpu_seconds", "gc_cpu_seconds", "rss_peak_bytes"] {
        let (a, b) = (before[field].as_f64().unwrap(), w[field].as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-3 * a.max(1.0),
            "{field}: raw {a}, rolled up {b}"
        );
    }
}
