//! Runtime metrics under the semantic conventions' names, as a real
//! Prometheus scrapes them from `agent run --metrics-listen`, checked
//! against the runtimes' own reports: a JDK 17 G1 JVM's `-Xlog:gc` pause
//! lines for `jvm_gc_duration_seconds`, and a Go program's own
//! `debug.SetGCPercent`, `debug.SetMemoryLimit` and `runtime.GOMAXPROCS`
//! for `go_config_gogc_percent`, `go_memory_limit_bytes` and
//! `go_processor_limit`.
use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use serde_json::Value;

use crate::common;
use crate::exporting::{KillOnDrop, RunAgent, require_tool, tmp};
use crate::jvm_gc::{javac, require_jdk, wait_for_allocation_end};
use crate::prometheus::{Prometheus, query, require_prometheus};

/// The pauses of an `-Xlog:gc` log, in ms: "GC(3) Pause Young (Normal)
/// (G1 Evacuation Pause) 24M->3M(64M) 2.345ms", "GC(5) Pause Remark …",
/// "GC(5) Pause Cleanup …", "GC(9) Pause Full …".
fn logged_pauses(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains(" Pause ") && l.ends_with("ms"))
        .filter_map(|l| l.rsplit(' ').next()?.trim_end_matches("ms").parse().ok())
        .collect()
}

/// One series' value, by PromQL.
fn value(prom: std::net::SocketAddr, q: &str) -> f64 {
    let r = query(prom, q);
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn prometheus_scrapes_semconv_runtime_metrics_that_match_the_runtimes() {
    let test = "prometheus_scrapes_semconv_runtime_metrics_that_match_the_runtimes";
    if !common::require_root(test)
        || !require_prometheus(test)
        || !require_tool("go", &["version"], test, "apt-get install golang-go")
    {
        return;
    }
    let Some(jdk) = require_jdk(17, test) else {
        return;
    };
    let _serial = common::serial();
    let classes = javac(&jdk, 17);
    let go_bin = common::go_build("gcsettings", &tmp().join("go-gcsettings"), &[], &[]);
    let agent = RunAgent::start(&["--metrics-listen", "127.0.0.1:0", "--interval", "1"]);
    let prometheus = Prometheus::start(agent.metrics_addr());

    // Go: its own settings, printed first.
    let mut go = KillOnDrop(
        Command::new(&go_bin)
            .arg("20")
            .env("GOGC", "25")
            .env("GOMEMLIMIT", "64MiB")
            .env("GOMAXPROCS", "2")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let go_pid = go.0.id();
    let mut line = String::new();
    BufReader::new(go.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let go_own: Value = serde_json::from_str(&line).unwrap();

    // The JVM: 2 s idle (the agent attaches its USDT probes), 6 s of
    // allocation, then 6 s alive with its counters.
    let log = tmp().join(format!("{}.log", common::unique("semconv-gc")));
    let java = KillOnDrop(
        Command::new(jdk.join("bin/java"))
            .args(["-Xmx64m", "-XX:+UseG1GC"])
            .arg(format!("-Xlog:gc:file={}", log.display()))
            .arg("-cp")
            .arg(&classes)
            .args(["AllocHeavy", "6", "2", "6"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("java starts"),
    );
    let jvm_pid = java.0.id();
    wait_for_allocation_end(jvm_pid, test);
    // A window and a scrape after the last pause.
    thread::sleep(Duration::from_secs(3));
    let prom = prometheus.addr;
    let jvm = format!("process_pid=\"{jvm_pid}\"");
    let count = value(prom, &format!("jvm_gc_duration_seconds_count{{{jvm}}}"));
    let sum = value(prom, &format!("jvm_gc_duration_seconds_sum{{{jvm}}}"));
    let buckets: Vec<(String, f64)> =
        query(prom, &format!("jvm_gc_duration_seconds_bucket{{{jvm}}}"))
            .iter()
            .map(|s| {
                (
                    s["metric"]["le"].as_str().unwrap().to_owned(),
                    s["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
    let gogc = value(
        prom,
        &format!("go_config_gogc_percent{{process_pid=\"{go_pid}\"}}"),
    );
    let limit = value(
        prom,
        &format!("go_memory_limit_bytes{{process_pid=\"{go_pid}\"}}"),
    );
    let procs = value(
        prom,
        &format!("go_processor_limit{{process_pid=\"{go_pid}\"}}"),
    );
    drop(java);
    drop(go);
    let (_, stderr) = agent.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");

    let text = std::fs::read_to_string(&log).unwrap();
    let pauses = logged_pauses(&text);
    let logged_sum: f64 = pauses.iter().sum::<f64>() / 1e3;
    let logged_le_10ms = pauses.iter().filter(|&&ms| ms <= 10.0).count();
    eprintln!(
        "jvm_gc_duration_seconds: count {count}, sum {sum:.4} s, buckets {buckets:?}; -Xlog:gc: {} pauses, {logged_sum:.4} s, {logged_le_10ms} of them <= 10 ms",
        pauses.len()
    );
    assert!(pauses.len() >= 3, "the JVM paused: {text}");
    assert_eq!(
        count,
        pauses.len() as f64,
        "one observation per pause -Xlog:gc logged"
    );
    // The probes bracket a little more than the logged span of a pause.
    assert!(
        sum >= logged_sum * 0.9 && sum <= logged_sum * 1.3 + 0.005 * count,
        "pause time {sum:.4} s, -Xlog:gc {logged_sum:.4} s"
    );
    let le = |b: &str| {
        buckets
            .iter()
            .find(|(le, _)| le == b)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("no le={b} in {buckets:?}"))
    };
    assert_eq!(buckets.len(), 5, "{buckets:?}");
    assert_eq!(le("+Inf"), count);
    assert!(
        (le("0.01") - logged_le_10ms as f64).abs() <= 1.0 + 0.1 * count,
        "pauses <= 10 ms: {} by the histogram, {logged_le_10ms} by -Xlog:gc",
        le("0.01")
    );

    eprintln!("Go: {go_own}; Prometheus: gogc {gogc}, limit {limit}, procs {procs}");
    assert_eq!(gogc, go_own["gogc"].as_f64().unwrap());
    assert_eq!(limit, go_own["memory_limit"].as_f64().unwrap());
    assert_eq!(procs, go_own["gomaxprocs"].as_f64().unwrap());
}
