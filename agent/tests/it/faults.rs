//! Faults, each against the real agent, collector and kernel: a collector
//! outage, collector crashes during ingest, a fork and exit storm, more
//! processes than the maps hold, missing privileges and hooks, and an agent
//! restart. Each checks that nothing is lost or counted twice.
//!
//! Short by default (`cargo xtask test`); `TALLY_SOAK=1` runs the long
//! versions (`cargo xtask soak`), and `TALLY_SOAK_RESULTS=<file>` collects
//! one result line per test for its table. Needs root.
use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    self, Agent, TestCgroup, assert_within,
    churn::{Running, forkstorm, occupancy, rss_bytes, warned_losses},
    daemons::{
        Collector, highest_acked, integrity_check, printed_container_totals, record_result, soak,
        stored, stored_container_totals, stored_reports,
    },
    run_workload, sum, windows_of,
};

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn pid_of(report: &Value) -> u64 {
    report["pid"].as_u64().unwrap()
}

/// 64 random hex digits: a container id of its own for each test.
fn container_id() -> String {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A kubelet/containerd-shaped cgroup, so the collector keys its processes
/// as one container workload.
fn container_cgroup(test: &str, id: &str) -> TestCgroup {
    let uid = "6d1e2f3a_4b5c_4d6e_8f7a_9b0c1d2e3f4a";
    TestCgroup::create(&format!(
        "{}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/cri-containerd-{id}.scope",
        common::unique(test)
    ))
}

/// `agent run --json` streaming to `url`, every `interval` seconds.
fn agent_run(url: &str, node: &str, interval: &str, extra: &[&str], log: &str) -> Agent {
    let mut args = vec![
        "run",
        "--json",
        "--no-imds",
        "--collector",
        url,
        "--interval",
        interval,
        "--node-name",
        node,
    ];
    args.extend_from_slice(extra);
    Agent::spawn(&args, &[("TALLY_LOG", log)])
}

/// Checks the stored sequences of every instance are 1..=n, each once, and
/// returns the total count and how many are missing.
fn contiguous(data: &Path, instances: usize) -> (u64, u64) {
    let all = stored(data);
    assert_eq!(all.len(), instances, "agent instances stored: {all:?}");
    let (mut count, mut missing) = (0, 0);
    for (instance, seqs) in all {
        let n = *seqs.last().expect("reports stored");
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "{instance}: every report once, none missing"
        );
        count += n;
        missing += n - seqs.len() as u64;
    }
    (count, missing)
}

/// The collector down for 20 s (soak: 5 min) with the default buffer; the
/// agent is stopped right after the restart, so its exit flush must not
/// wait out its backoff. Afterwards the collector's totals for a container
/// equal what the agent counted, and every report is stored once.
#[test]
fn collector_outage_loses_nothing() {
    let test = "collector_outage_loses_nothing";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let outage = Duration::from_secs(if soak() { 300 } else { 20 });
    let data = tmp().join(common::unique("outage-data"));
    let mut collector = Collector::start(&data, "127.0.0.1:0");
    let id = container_id();
    let cg = container_cgroup("tally-test-outage", &id);
    let agent = agent_run(&collector.url(), "node-outage", "1", &[], "info");
    // Busy every 100 ms until just after the collector is back.
    let ticks = (outage.as_secs() + 6) * 10;
    let marker = Running::spawn(
        Some(&cg),
        &common::workload(),
        &["tick", &ticks.to_string(), "100"],
    );
    thread::sleep(Duration::from_secs(3));
    collector.kill9();
    thread::sleep(outage);
    collector.restart();
    let marker = marker.finish();
    // Its exit window, then stop.
    thread::sleep(Duration::from_millis(1500));
    let (lines, stderr, status) = agent.interrupt();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("unavailable"),
        "the agent noticed the outage: {stderr}"
    );
    assert!(
        !stderr.contains("did not take every report"),
        "the exit flush: {stderr}"
    );

    let (reports, missing) = contiguous(&data, 1);
    let windows = outage.as_secs() + 5;
    assert!(reports >= windows, "{reports} reports for {windows} s");
    let dropped: u64 = stored_reports(&data)
        .iter()
        .map(|r| r.agent.as_ref().map_or(0, |a| a.dropped_reports))
        .max()
        .unwrap_or(0);
    assert_eq!(dropped, 0, "the default buffer held the outage");

    let got = stored_container_totals(&collector.url(), &id);
    let want = printed_container_totals(&lines, &id);
    assert_eq!(got, want, "stored totals against the agent's windows");
    assert!(want.mmap_calls >= marker["mmap_calls"].as_u64().unwrap());
    assert_within(
        "minor_faults",
        want.minor_faults as f64,
        marker["minor_faults"].as_f64().unwrap(),
        0.01,
    );
    let lost = missing + want.mmap_calls.abs_diff(got.mmap_calls);
    record_result(
        test,
        &format!("{reports} reports at 1/s, a container active every 100 ms"),
        &format!("collector down {} s", outage.as_secs()),
        0,
        lost + dropped,
    );
}

/// kill -9 of the collector during ingest (reports every 100 ms), 3 times
/// (soak: 20): after each kill, before the restart, the store passes
/// `PRAGMA integrity_check` and holds every report the agent saw
/// acknowledged; at the end every report is stored exactly once.
#[test]
fn collector_crash_keeps_every_acknowledged_report() {
    let test = "collector_crash_keeps_every_acknowledged_report";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let kills = if soak() { 20 } else { 3 };
    let data = tmp().join(common::unique("crash-data"));
    let mut collector = Collector::start(&data, "127.0.0.1:0");
    let agent = agent_run(
        &collector.url(),
        "node-crash",
        "0.1",
        &[],
        "info,tally_node::stream=debug",
    );
    let mut lost_acked = 0;
    let mut acked_at_kills = Vec::new();
    for k in 0..kills {
        // Kill at a different point of the group commit cycle each time.
        thread::sleep(Duration::from_millis(2000 + 137 * k));
        collector.kill9();
        // Acks already logged but not yet read from the pipe.
        thread::sleep(Duration::from_millis(100));
        let acked = highest_acked(&agent.stderr());
        assert!(acked > 0, "acks logged: {}", agent.stderr());
        assert_eq!(integrity_check(&data), "ok", "after kill {k}");
        let seqs = stored(&data).pop().expect("an instance").1;
        let missing = (1..=acked)
            .filter(|s| seqs.binary_search(s).is_err())
            .count();
        lost_acked += missing;
        assert_eq!(
            missing, 0,
            "kill {k}: acknowledged up to {acked}, stored {seqs:?}"
        );
        acked_at_kills.push(acked);
        collector.restart();
    }
    thread::sleep(Duration::from_secs(2));
    let (_, stderr, status) = agent.interrupt();
    assert!(status.success(), "{stderr}");
    collector.kill9();
    assert_eq!(integrity_check(&data), "ok");
    let (reports, missing) = contiguous(&data, 1);
    assert_eq!(highest_acked(&stderr), reports, "the last report was acked");
    assert!(
        acked_at_kills.windows(2).all(|w| w[0] < w[1]),
        "ingest went on between kills: {acked_at_kills:?}"
    );
    record_result(
        test,
        &format!("{reports} reports at 10/s"),
        &format!("{kills} × kill -9 of the collector"),
        0,
        lost_acked as u64 + missing,
    );
}

/// 1,000 short processes a second for 10 s (soak: 60 s): the agent reports
/// every window, its RSS and map occupancy stay bounded, and a long-lived
/// marker's syscalls and faults stay exact.
#[test]
fn process_churn_keeps_reporting_bounded_and_exact() {
    let test = "process_churn_keeps_reporting_bounded_and_exact";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let storm_secs: u64 = if soak() { 60 } else { 10 };
    let storm_bin = forkstorm();
    let mut agent = Agent::start_with_env(
        &["--interval", "1"],
        &[("TALLY_LOG", "info,tally_node::collect=debug")],
    );
    // What the binary's start-up (the dynamic loader) adds to its own counts.
    let idle = run_workload(None, &["tick", "0", "1"]);
    let marker = Running::spawn(
        None,
        &common::workload(),
        &["tick", &((storm_secs + 4) * 10).to_string(), "100"],
    );
    thread::sleep(Duration::from_secs(1));
    let rss_before = rss_bytes(agent.pid());
    let storm = Running::spawn(None, &storm_bin, &["1000", &storm_secs.to_string()]);
    let mut rss_max = rss_before;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(storm_secs) {
        thread::sleep(Duration::from_millis(500));
        rss_max = rss_max.max(rss_bytes(agent.pid()));
    }
    let storm = storm.finish();
    let marker = marker.finish();
    thread::sleep(Duration::from_secs(3));
    let rss_after = rss_bytes(agent.pid());
    agent.wait_for_stderr("occupancy", Duration::from_secs(1));
    let (lines, stderr, _) = agent.stop();

    let forked = storm["forked"].as_u64().unwrap();
    assert!(
        forked as f64 >= 0.9 * 1000.0 * storm_secs as f64,
        "the storm held its rate: {storm}"
    );
    // The storm forks more processes than pid_max (32768 here): an exited
    // workload's pid is reused by storm children, whose windows must not
    // count as the workload's.
    let of_workload = |report: &Value| -> Vec<&Value> {
        windows_of(&lines, pid_of(report))
            .into_iter()
            .filter(|w| w["comm"] == "workload")
            .collect()
    };
    // Every window: the marker is busy every 100 ms, so each has it.
    let windows = of_workload(&marker);
    let lived = marker["lived_seconds"].as_f64().unwrap();
    assert!(
        windows.len() as f64 >= lived - 1.0,
        "{} windows of the marker in {lived:.1} s",
        windows.len()
    );
    // First: a loss the agent counted explains a miscount below.
    // Stack samples the stack map could not take are not counters: only
    // the losses that touch counts matter here.
    let counting: String = stderr
        .lines()
        .filter(|l| !l.contains("stack"))
        .map(|l| format!("{l}\n"))
        .collect();
    let losses: Vec<&str> = counting
        .lines()
        .filter(|l| l.contains("updates lost"))
        .collect();
    assert_eq!(warned_losses(&counting), 0, "no updates lost: {losses:?}");
    let startup_windows = of_workload(&idle);
    let mut miscounted = 0.0;
    for calls in ["mmap_calls", "munmap_calls"] {
        let startup = sum(&startup_windows, calls) - idle[calls].as_f64().unwrap();
        let (got, want) = (
            sum(&windows, calls),
            marker[calls].as_f64().unwrap() + startup,
        );
        miscounted += (got - want).abs();
        assert_eq!(
            got,
            want,
            "{calls} of the marker (start-up: {startup}); {} windows: {:?}",
            windows.len(),
            windows.iter().map(|w| &w[calls]).collect::<Vec<_>>()
        );
    }
    let (got, want) = (
        sum(&windows, "minor_faults"),
        marker["minor_faults"].as_f64().unwrap(),
    );
    miscounted += (got - want).abs();
    assert_eq!(got, want, "minor faults against /proc/<pid>/stat");
    let procs = occupancy(&stderr, "procs_map");
    let threads = occupancy(&stderr, "threads_map");
    let (procs_max, threads_max) = (
        procs.iter().copied().max().unwrap_or(0),
        threads.iter().copied().max().unwrap_or(0),
    );
    let (procs_last, procs_first) = (*procs.last().unwrap(), procs[0]);
    // Exited processes leave the maps: back to where it started, give or
    // take the system's own process turnover.
    assert!(
        procs_last <= procs_first + 32,
        "PROCS after the storm: {procs_last} (before: {procs_first}, peak {procs_max})"
    );
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 32 << 20,
        "agent RSS grew by {} MiB ({rss_before} -> {rss_after}, peak {rss_max})",
        growth >> 20
    );
    eprintln!(
        "{test}: {forked} processes in {storm_secs} s; agent RSS {} -> {} MiB (peak {}); \
         PROCS peak {procs_max}, last {procs_last}; THREADS peak {threads_max}",
        rss_before >> 20,
        rss_after >> 20,
        rss_max >> 20
    );
    record_result(
        test,
        &format!(
            "{forked} processes in {storm_secs} s; RSS peak {} MiB; PROCS peak {procs_max}",
            rss_max >> 20
        ),
        "fork+exit storm",
        0,
        miscounted as u64,
    );
}

/// More live processes than `--max-processes 64` holds, once (soak: 10
/// rounds): every loss is warned about and reaches the collector in the
/// reports' `lost_updates`, never silent; after each round a marker
/// process is counted exactly again.
#[test]
fn map_pressure_is_reported_to_the_collector_and_recovers() {
    let test = "map_pressure_is_reported_to_the_collector_and_recovers";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let rounds = if soak() { 10 } else { 1 };
    let data = tmp().join(common::unique("pressure-data"));
    let collector = Collector::start(&data, "127.0.0.1:0");
    let mut agent = agent_run(
        &collector.url(),
        "node-pressure",
        "1",
        &["--max-processes", "64"],
        "info",
    );
    let mut markers = Vec::new();
    for _ in 0..rounds {
        // 300 processes alive at once, each making an mmap call.
        run_workload(None, &["forkmany", "300", "800"]);
        agent.wait_for_stderr("process map full", Duration::from_secs(5));
        thread::sleep(Duration::from_secs(2));
        markers.push(run_workload(None, &["alloc", "100", "4"]));
    }
    thread::sleep(Duration::from_millis(1500));
    let (lines, stderr, status) = agent.interrupt();
    assert!(status.success(), "{stderr}");
    let warned = warned_losses(&stderr);
    assert!(warned > 0, "losses warned about: {stderr}");
    let reported: u64 = stored_reports(&data)
        .iter()
        .map(|r| r.agent.as_ref().map_or(0, |a| a.lost_updates))
        .sum();
    assert_eq!(reported, warned, "lost_updates stored against the warnings");
    let mut miscounted = 0;
    for marker in &markers {
        let windows = windows_of(&lines, pid_of(marker));
        let (got, own) = (
            sum(&windows, "minor_faults"),
            marker["minor_faults"].as_f64().unwrap(),
        );
        if sum(&windows, "mmap_calls") < marker["mmap_calls"].as_f64().unwrap()
            || (got - own).abs() > 0.01 * own
        {
            miscounted += 1;
        }
        assert_within("marker minor_faults", got, own, 0.01);
    }
    assert_eq!(miscounted, 0);
    record_result(
        test,
        &format!("{rounds} × 300 live processes, PROCS holds 64"),
        &format!("{warned} kernel updates dropped, all reported"),
        0,
        warned - reported.min(warned) + miscounted,
    );
}

/// `agent run` without CAP_BPF (root with the capability dropped from its
/// bounding set): one line naming it, exit 2, no panic. And a tracepoint
/// the kernel lacks: a warning naming it, and the daemon still streams.
#[test]
fn missing_privileges_and_hooks_are_clear_for_the_daemon() {
    let test = "missing_privileges_and_hooks_are_clear_for_the_daemon";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let out = Command::new("setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-bpf,-sys_admin"])
        .arg(env!("CARGO_BIN_EXE_agent"))
        .args([
            "run",
            "--collector",
            "http://127.0.0.1:9",
            "--interval",
            "1",
        ])
        .output()
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("missing CAP_BPF") && !stderr.contains("CAP_PERFMON"));
    assert!(!stderr.contains("panicked"));

    let data = tmp().join(common::unique("hook-data"));
    let collector = Collector::start(&data, "127.0.0.1:0");
    let args = [
        "run",
        "--json",
        "--no-imds",
        "--collector",
        &collector.url(),
        "--interval",
        "0.5",
    ];
    let agent = Agent::spawn(
        &args,
        &[
            ("TALLY_FAULT_MISSING_HOOK", "syscalls:sys_exit_munmap"),
            ("TALLY_LOG", "info"),
        ],
    );
    let report = run_workload(None, &["alloc", "200", "4"]);
    thread::sleep(Duration::from_millis(1200));
    let (lines, stderr, status) = agent.interrupt();
    assert!(status.success(), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("sys_exit_munmap"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        warning.contains("WARN") && warning.contains("munmap"),
        "{warning}"
    );
    assert!(!stderr.contains("panicked"));
    let windows = windows_of(&lines, pid_of(&report));
    assert_eq!(sum(&windows, "munmap_calls"), 0.0);
    assert!(sum(&windows, "mmap_calls") >= report["mmap_calls"].as_f64().unwrap());
    let (reports, missing) = contiguous(&data, 1);
    assert!(reports >= 2, "the daemon streamed: {reports} reports");
    record_result(
        test,
        &format!("{reports} reports with one hook missing"),
        "no CAP_BPF; a missing tracepoint",
        2,
        missing,
    );
}

/// The agent stopped and started again mid-run (a new instance) while a
/// container keeps working: the collector's totals are the two instances'
/// windows added, nothing counted twice (the new instance measures old
/// processes from its own first look, not from their start). Soak: 10
/// restarts.
#[test]
fn agent_restart_does_not_double_count() {
    let test = "agent_restart_does_not_double_count";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let restarts: u64 = if soak() { 10 } else { 1 };
    let data = tmp().join(common::unique("restart-data"));
    let collector = Collector::start(&data, "127.0.0.1:0");
    let id = container_id();
    let cg = container_cgroup("tally-test-restart", &id);
    let mut agent = agent_run(&collector.url(), "node-restart", "0.5", &[], "info");
    let idle = run_workload(None, &["tick", "0", "1"]);
    let busy_secs = 4 * (restarts + 1);
    let marker = Running::spawn(
        Some(&cg),
        &common::workload(),
        &["tick", &(busy_secs * 20).to_string(), "50"],
    );
    let mut lines = Vec::new();
    for _ in 0..restarts {
        thread::sleep(Duration::from_secs(3));
        let (printed, stderr, status) = agent.interrupt();
        assert!(status.success(), "{stderr}");
        lines.extend(printed);
        agent = agent_run(&collector.url(), "node-restart", "0.5", &[], "info");
    }
    let marker = marker.finish();
    thread::sleep(Duration::from_millis(1200));
    let (printed, stderr, status) = agent.interrupt();
    assert!(status.success(), "{stderr}");
    lines.extend(printed);

    contiguous(&data, restarts as usize + 1);
    let got = stored_container_totals(&collector.url(), &id);
    let want = printed_container_totals(&lines, &id);
    assert_eq!(got, want, "stored totals against the instances' windows");
    // Never more than the marker did (its start-up mmaps were seen by the
    // first instance, like the idle run's), and most of it: only the
    // moments between two instances go uncounted.
    let startup = sum(&windows_of(&lines, pid_of(&idle)), "mmap_calls")
        - idle["mmap_calls"].as_f64().unwrap();
    let own_mmaps = marker["mmap_calls"].as_f64().unwrap() + startup;
    let own_faults = marker["minor_faults"].as_f64().unwrap();
    assert!(got.mmap_calls as f64 <= own_mmaps, "{got:?} vs {own_mmaps}");
    assert!(
        got.minor_faults as f64 <= own_faults,
        "{got:?} vs {own_faults}"
    );
    assert!(
        got.mmap_calls as f64 >= 0.5 * own_mmaps,
        "{} of {own_mmaps} mmap calls counted",
        got.mmap_calls
    );
    let double = (got.mmap_calls as f64 - own_mmaps).max(0.0)
        + (got.minor_faults as f64 - own_faults).max(0.0);
    record_result(
        test,
        &format!("a container active every 50 ms for {busy_secs} s"),
        &format!("{restarts} agent restarts"),
        0,
        double as u64 + want.mmap_calls.abs_diff(got.mmap_calls),
    );
}
