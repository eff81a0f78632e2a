//! Each process's runtime settings in `agent top --batch --json`, checked
//! against what the process was started with and what the runtime itself
//! says: a Go program's `GOGC`/`GOMEMLIMIT`/`GOMAXPROCS` environment, two
//! JVMs in containers (one with `-Xmx192m -XX:+UseParallelGC`, whose heap
//! maximum in hsperfdata must agree with `-Xmx`; one with no collector flag,
//! whose collector must be the one its own `-Xlog:gc` names), and Node's
//! `--max-old-space-size` on the command line and in `NODE_OPTIONS`.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{
    common::{
        self, Agent,
        container::{self, Image},
    },
    cost::{
        Reaped, collector, container_cgroup, container_id, go_build, report, run_agent, run_in,
        workload,
    },
};

const MIB: u64 = 1 << 20;

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn workloads() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads")
}

/// A child that must exit successfully.
fn spawn(cmd: &mut Command) -> Reaped {
    Reaped(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}")),
    )
}

fn wait_success(mut child: Reaped) {
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `AllocHeavy.java` compiled by the JDK at `home`.
fn javac(home: &Path) -> PathBuf {
    let dir = tmp().join("settings-classes");
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new(home.join("bin/javac"))
        .arg("-d")
        .arg(&dir)
        .arg(workloads().join("java/AllocHeavy.java"))
        .status()
        .expect("javac runs");
    assert!(status.success(), "javac AllocHeavy.java");
    dir
}

/// The settings of `pid`'s last window that has any (a container's first
/// windows may be runc's init before it execs the program).
fn settings_of<'a>(lines: &'a [Value], pid: u32, runtime: &str) -> &'a Value {
    common::windows_of(lines, u64::from(pid))
        .into_iter()
        .rev()
        .map(|w| &w["settings"])
        .find(|s| s["runtime"] == runtime)
        .unwrap_or_else(|| panic!("no {runtime} settings for pid {pid}"))
}

/// `{"value": v, "source": s}` as (v, s).
fn setting<'a>(s: &'a Value, field: &str) -> (&'a Value, &'a str) {
    (
        &s[field]["value"],
        s[field]["source"].as_str().unwrap_or("?"),
    )
}

/// The Go process's settings are the environment it was started with:
/// GOGC=150 GOMEMLIMIT=300MiB GOMAXPROCS=1.
fn assert_go_started_with(g: &Value) {
    assert_eq!(
        setting(g, "gogc"),
        (&serde_json::json!({"percent": 150}), "env")
    );
    assert_eq!(
        setting(g, "gomemlimit_bytes"),
        (&Value::from(300 * MIB), "env")
    );
    assert_eq!(setting(g, "gomaxprocs"), (&Value::from(1), "env"));
}

#[test]
fn settings_are_what_each_process_was_started_with() {
    let test = "settings_are_what_each_process_was_started_with";
    if !common::require_root(test)
        || !common::require("go", test)
        || !common::require("node", test)
        || !container::require_docker(test)
    {
        return;
    }
    let Some(jdk) = container::find_jdk(17) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: no JDK 17 under CI"
        );
        eprintln!("SKIP {test}: no JDK 17 under $JAVA_HOME or /usr/lib/jvm");
        return;
    };
    let _serial = common::serial();
    let go = go_build("allocheavy");
    let classes = javac(&jdk);
    let image = Image::jvm("jdk17", &jdk);
    let agent = Agent::start(&["--interval", "1"]);

    let java = |flags: &[&str]| {
        let mut command = vec!["/opt/jdk/bin/java", "-XX:+UsePerfData", "-Xlog:gc"];
        command.extend_from_slice(flags);
        command.extend_from_slice(&["-cp", "/classes", "AllocHeavy", "5", "0", "2"]);
        container::Run::new()
            .volume(&classes, "/classes", false)
            .start(&image, &command)
    };
    let parallel = java(&["-Xmx192m", "-XX:+UseParallelGC"]);
    let chosen = java(&["-Xmx96m"]);
    let go = spawn(
        Command::new(&go)
            .arg("6")
            .env("GOGC", "150")
            .env("GOMEMLIMIT", "300MiB")
            .env("GOMAXPROCS", "1"),
    );
    let script = workloads().join("node/allocheavy.js");
    let node_flag = spawn(
        Command::new("node")
            .arg("--max-old-space-size=200")
            .arg(&script)
            .arg("5"),
    );
    let node_env = spawn(Command::new("node").arg(&script).arg("5").env(
        "NODE_OPTIONS",
        "--max-old-space-size=200 --max-semi-space-size=8",
    ));
    let pids = (go.0.id(), node_flag.0.id(), node_env.0.id());
    wait_success(go);
    wait_success(node_flag);
    wait_success(node_env);
    let (parallel_log, _) = parallel.wait_success(Duration::from_secs(60));
    let (chosen_log, _) = chosen.wait_success(Duration::from_secs(60));
    let (lines, stderr, _) = agent.stop();
    eprintln!("agent stderr:\n{stderr}");

    // Go: exactly the environment it was started with.
    let g = settings_of(&lines, pids.0, "go");
    eprintln!("go: {g}");
    assert_go_started_with(g);

    // The JVM with flags: the flags, and its own heap maximum agrees.
    let p = settings_of(&lines, parallel.pid, "jvm");
    eprintln!("jvm parallel: {p}");
    assert_eq!(
        setting(p, "max_heap_bytes"),
        (&Value::from(192 * MIB), "flag")
    );
    assert_eq!(setting(p, "collector"), (&Value::from("Parallel"), "flag"));
    assert!(parallel_log.contains("Using Parallel"), "{parallel_log}");
    let own_max = p["heap"]["max_capacity_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no hsperfdata heap: {p}"));
    // Within the JVM's heap alignment (a few MiB at most).
    assert!(
        own_max.abs_diff(192 * MIB) <= 4 * MIB,
        "hsperfdata max heap {own_max} vs -Xmx192m"
    );
    let capacity = p["heap"]["capacity_bytes"].as_u64().unwrap();
    assert!(capacity > 0 && capacity <= own_max, "{p}");

    // The JVM without a collector flag: the collector its own log names.
    let c = settings_of(&lines, chosen.pid, "jvm");
    eprintln!("jvm chosen: {c}");
    let (collector, source) = setting(c, "collector");
    assert_eq!(source, "hsperfdata", "{c}");
    let collector = collector.as_str().unwrap();
    let logged = match collector {
        "G1" => "Using G1",
        "Serial" => "Using Serial",
        "Parallel" => "Using Parallel",
        "Z" => "Using The Z Garbage Collector",
        other => panic!("unexpected collector {other}"),
    };
    assert!(
        chosen_log.contains(logged),
        "agent says {collector}, the JVM's log says:\n{}",
        chosen_log
            .lines()
            .filter(|l| l.contains("Using"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let own_max = c["heap"]["max_capacity_bytes"].as_u64().unwrap();
    assert!(
        own_max.abs_diff(96 * MIB) <= 4 * MIB,
        "hsperfdata max heap {own_max} vs -Xmx96m"
    );

    // Node: the flag, and NODE_OPTIONS.
    let n = settings_of(&lines, pids.1, "node");
    assert_eq!(
        setting(n, "max_old_space_mib"),
        (&Value::from(200), "flag"),
        "{n}"
    );
    let n = settings_of(&lines, pids.2, "node");
    assert_eq!(
        setting(n, "max_old_space_mib"),
        (&Value::from(200), "env"),
        "{n}"
    );
    assert_eq!(
        setting(n, "max_semi_space_mib"),
        (&Value::from(8), "env"),
        "{n}"
    );
}

/// Through `agent run`, the collector and its store: the settings of a Go
/// container's process are on its workload in `agent report --format json`
/// after the collector restarted.
#[test]
fn settings_reach_the_report_after_a_collector_restart() {
    let test = "settings_reach_the_report_after_a_collector_restart";
    if !common::require_root(test) || !common::require("go", test) {
        return;
    }
    let _serial = common::serial();
    let bin = go_build("allocheavy");
    let data = tmp().join(common::unique("settings-data"));
    let (first, url) = collector(&data);
    let agent = run_agent(&url, "settings-node");
    let id = container_id("5e7719");
    let cg = container_cgroup(&id);
    let go = run_in(
        &cg,
        &bin,
        &["4"],
        &[
            ("GOGC", "150"),
            ("GOMEMLIMIT", "300MiB"),
            ("GOMAXPROCS", "1"),
        ],
    );
    wait_success(go);
    std::thread::sleep(Duration::from_secs(3));
    drop(agent);
    drop(first);
    let (_second, url) = collector(&data);
    let report: Value = serde_json::from_str(&report(&url, "json")).unwrap();
    let line = workload(&report, &id[..12]);
    let g = &line["settings"];
    eprintln!("report settings: {g}");
    assert_eq!(g["runtime"], "go", "{line:#}");
    assert_go_started_with(g);
}
