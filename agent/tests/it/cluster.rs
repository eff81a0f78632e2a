//! The whole chain with real parts: two `agent run` daemons (two node
//! names) stream to one `agent collector`; a GC-heavy Go workload in a
//! kubelet/containerd-shaped cgroup shows up in `agent workloads` as
//! gc-heavy on both nodes within 30 s; the collector is killed (-9) and
//! restarted in the middle, and afterwards every report each agent made is
//! stored exactly once. Needs root and go.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    self, TestCgroup,
    daemons::{Collector, stored},
};

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// An `agent run` daemon, killed if the test fails before stopping it, and
/// where its stderr goes.
struct AgentRun(Child, PathBuf);

impl AgentRun {
    /// What the agent said about its reports (refusals, drops), for a
    /// failure message.
    fn report_lines(&self) -> String {
        std::fs::read_to_string(&self.1)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("refused") || l.contains("dropped") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for AgentRun {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent_run(url: &str, node: &str) -> AgentRun {
    let log = tmp().join(common::unique(&format!("cluster-{node}.stderr")));
    let child = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "run",
            "--collector",
            url,
            "--interval",
            "1",
            "--node-name",
            node,
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    AgentRun(child, log)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `agent workloads --json --collector URL`, one value a row.
pub fn workloads(url: &str) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["workloads", "--json", "--collector", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn two_real_agents_a_gc_heavy_container_and_a_collector_restart() {
    let test = "two_real_agents_a_gc_heavy_container_and_a_collector_restart";
    if !common::require_root(test) {
        return;
    }
    if Command::new("go").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: go is missing under CI"
        );
        eprintln!("SKIP {test}: go is not installed");
        return;
    }
    let _serial = common::serial();
    let data = tmp().join(common::unique("cluster-data"));
    let mut collector = Collector::start(&data, "127.0.0.1:0");
    let url = format!("http://{}", collector.addr);
    let mut agents = [agent_run(&url, "node-a"), agent_run(&url, "node-b")];

    // The workload, in a kubelet/containerd-shaped cgroup.
    let id = "7e3c9b1a5d2f4e6a8c0b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c";
    let uid = "0a1b2c3d_4e5f_4a6b_8c7d_9e0f1a2b3c4d";
    let rel = format!(
        "{}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{id}.scope",
        common::unique("tally-test-cluster")
    );
    let cg = TestCgroup::create(&rel);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/go/allocheavy.go");
    let bin = tmp().join("go-allocheavy-cluster");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", tmp().join("gocache"))
        .env("HOME", tmp())
        .status()
        .unwrap();
    assert!(built.success());
    let mut cmd = Command::new(&bin);
    cmd.args(["14", "1"])
        .env("GOGC", "50")
        .env("GOMAXPROCS", "1")
        .stdout(Stdio::null());
    cg.enter_on_spawn(&mut cmd);
    let started = Instant::now();
    let mut workload = KillOnDrop(cmd.spawn().unwrap());

    // One container workload, seen on both nodes, gc-heavy within 30 s of
    // the start.
    let mut found = None;
    while started.elapsed() < Duration::from_secs(30) && found.is_none() {
        thread::sleep(Duration::from_secs(1));
        found = workloads(&url).into_iter().find(|w| {
            w["workload"]
                .as_str()
                .is_some_and(|n| n.contains(&id[..12]))
                && w["verdict"] == "gc-heavy"
                && w["node"]
                    .as_str()
                    .is_some_and(|n| n.contains("node-a") && n.contains("node-b"))
        });
    }
    let found = found.expect("the container as gc-heavy on both nodes within 30 s");
    assert!(found["gc_cpu_share"].as_f64().unwrap() > 0.1, "{found}");
    // The full ids, as the cgroup path the kubelet would make names them
    // (the table's label keeps 12 digits).
    assert_eq!(found["container_id"], id, "{found}");
    assert_eq!(found["pod_uid"], uid.replace('_', "-"), "{found}");

    // Kill the collector mid-run; the agents buffer, then resend.
    collector.kill9();
    thread::sleep(Duration::from_secs(3));
    let collector = Collector::start(&data, &collector.addr.clone());
    let _ = workload.0.wait();
    thread::sleep(Duration::from_secs(2));
    for agent in &mut agents {
        // SIGINT: the agent stops collecting and flushes its buffer.
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(agent.0.id() as i32, libc::SIGINT) };
    }
    for agent in &mut agents {
        assert!(agent.0.wait().unwrap().success());
    }
    drop(collector);
    let instances = stored(&data);
    assert_eq!(instances.len(), 2, "one instance per agent: {instances:?}");
    let said = format!(
        "node-a said:\n{}\nnode-b said:\n{}",
        agents[0].report_lines(),
        agents[1].report_lines()
    );
    for (instance, seqs) in instances {
        let n = *seqs.last().expect("reports stored");
        assert!(n >= 15, "{instance}: only {n} reports");
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "{instance}: every report once, none missing\n{said}"
        );
    }
}
