//! Two collector replicas on one PostgreSQL database, and a failover: a
//! throwaway cluster (initdb/pg_ctl, loopback), two `agent collector
//! --store postgres://…`, three real `agent run` agents each behind a TCP
//! forwarder (what a Service does: new connections go to a live replica).
//! Two agents start on replica A, one on B; A is killed with -9 mid-ingest
//! and its agents' forwarders switch to B; the agents reconnect and resend
//! what A had not acknowledged. Then:
//! - the database (read with psql, not through Tally) holds every report
//!   sequence 1..N of every agent exactly once;
//! - a replica restarted on the same database and the surviving one list
//!   the same workloads, and `agent report` gives the same CPU per
//!   workload from either.
//!
//! Needs root (the agents load their eBPF programs) and postgresql.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use serde_json::Value;
use tally_collector::store::postgres::testing::start_or_skip;

use crate::{
    common,
    cost::{Reaped, report_since, spawn_collector},
};

/// `agent collector --store URL` on a free port, and its address.
fn replica(store: &str) -> (Reaped, SocketAddr) {
    let (child, url) = spawn_collector(&["--store", store, "--classify-interval", "1s"]);
    let addr = url.trim_start_matches("http://").parse().unwrap();
    (child, addr)
}

/// A TCP forwarder: each connection it accepts goes to the current target.
/// Switching the target leaves open connections as they are (a killed
/// replica's close by themselves).
struct Forwarder {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
}

impl Forwarder {
    fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let to = target.clone();
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let dest = *to.lock().unwrap();
                let Ok(server) = TcpStream::connect(dest) else {
                    continue; // the agent retries
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Self { addr, target }
    }

    fn switch(&self, to: SocketAddr) {
        *self.target.lock().unwrap() = to;
    }
}

/// `agent run` as node `node`, streaming every second through `via`.
fn agent(via: SocketAddr, node: &str) -> Reaped {
    Reaped(
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["run", "--collector", &format!("http://{via}")])
            .args(["--interval", "1", "--node-name", node, "--no-imds"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn stop(agent: &mut Reaped) {
    // SIGTERM: the agent flushes what is unacknowledged, then exits.
    // SAFETY: a pid of our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let _ = agent.0.wait();
}

/// (workload, node) of every workload a replica lists.
fn workloads(addr: SocketAddr) -> BTreeSet<(String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "workloads",
            "--json",
            "--collector",
            &format!("http://{addr}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|w| {
            (
                w["workload"].as_str().unwrap_or_default().to_owned(),
                w["node"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// CPU seconds per workload key in `agent report --format json`.
fn report_cpu(addr: SocketAddr) -> BTreeMap<String, f64> {
    let report: Value =
        serde_json::from_str(&report_since(&format!("http://{addr}"), "json", "10m")).unwrap();
    report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["key"].as_str().unwrap().to_owned(),
                w["cpu_seconds"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_replica_killed_mid_ingest_loses_and_duplicates_no_report() {
    let test = "a_replica_killed_mid_ingest_loses_and_duplicates_no_report";
    if !common::require_root(test) {
        return;
    }
    let Some(cluster) = start_or_skip(test) else {
        return;
    };
    let _serial = common::serial();
    let store = cluster.create_db("replicas").unwrap();
    let (mut a, a_addr) = replica(&store);
    let (_b, b_addr) = replica(&store);
    let nodes = ["replica-node-1", "replica-node-2", "replica-node-3"];
    let forwarders = [
        Forwarder::start(a_addr),
        Forwarder::start(b_addr),
        Forwarder::start(a_addr),
    ];
    let mut agents: Vec<Reaped> = forwarders
        .iter()
        .zip(nodes)
        .map(|(f, node)| agent(f.addr, node))
        .collect();

    // Both replicas take reports; each lists the other's agents' workloads
    // too (its recent state is refreshed from the database).
    thread::sleep(Duration::from_secs(8));
    let seen_by_b: BTreeSet<String> = workloads(b_addr).into_iter().map(|w| w.1).collect();
    for node in nodes {
        assert!(
            seen_by_b.iter().any(|n| n.contains(node)),
            "replica B lists no workload of {node} (agents of A included): {seen_by_b:?}"
        );
    }

    // Kill A mid-ingest; its agents' connections now go to B.
    forwarders[0].switch(b_addr);
    forwarders[2].switch(b_addr);
    let _ = a.0.kill();
    let _ = a.0.wait();
    thread::sleep(Duration::from_secs(8));
    for agent in &mut agents {
        stop(agent);
    }

    // Every agent's sequences 1..N, each once: counted by PostgreSQL.
    let rows = cluster
        .psql(
            "replicas",
            "SELECT n.name, COUNT(*), COUNT(DISTINCT r.sequence), MIN(r.sequence), MAX(r.sequence)
             FROM reports r JOIN nodes n ON n.id = r.node_id GROUP BY n.name ORDER BY n.name",
        )
        .unwrap();
    let mut checked = 0;
    for line in rows.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let (count, distinct, min, max): (i64, i64, i64, i64) = (
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
            f[4].parse().unwrap(),
        );
        eprintln!("{}: {count} reports, sequences {min}..{max}", f[0]);
        assert_eq!((count, min, max), (distinct, 1, count), "{line}");
        // Reports before and after the failover.
        assert!(count >= 10, "{line}");
        checked += 1;
    }
    assert_eq!(checked, nodes.len(), "{rows}");
    let instances = cluster
        .psql(
            "replicas",
            "SELECT COUNT(DISTINCT agent_instance) FROM reports",
        )
        .unwrap();
    assert_eq!(instances, "3");

    // A replica restarted in A's place and the survivor agree.
    let (_c, c_addr) = replica(&store);
    thread::sleep(Duration::from_secs(3));
    let (from_b, from_c) = (workloads(b_addr), workloads(c_addr));
    assert!(!from_b.is_empty());
    assert_eq!(from_b, from_c, "ListWorkloads differs between replicas");
    let (cpu_b, cpu_c) = (report_cpu(b_addr), report_cpu(c_addr));
    assert!(!cpu_b.is_empty());
    assert_eq!(cpu_b, cpu_c, "agent report differs between replicas");
    drop(cluster);
}

/// `deploy/overlays/replicated`, used as its comment says (from a
/// kustomization outside deploy/), renders two collector replicas whose
/// store is the Secret's URL, with no volume.
#[test]
fn the_replicated_overlay_runs_two_collectors_on_the_secrets_database() {
    let test = "the_replicated_overlay_runs_two_collectors_on_the_secrets_database";
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: kubectl is missing under CI"
        );
        eprintln!("SKIPPED {test}: kubectl is not installed");
        return;
    }
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("overlay"));
    std::fs::create_dir_all(dir.join("mine")).unwrap();
    // kustomize takes relative paths only.
    std::os::unix::fs::symlink(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy"),
        dir.join("deploy"),
    )
    .unwrap();
    std::fs::write(
        dir.join("mine/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources:\n  - ../deploy\ncomponents:\n  - ../deploy/overlays/replicated\n",
    )
    .unwrap();
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir.join("mine"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(rendered.contains("replicas: 2"), "{rendered}");
    assert!(rendered.contains("name: TALLY_STORE"), "{rendered}");
    assert!(
        rendered.contains("name: tally-collector-store"),
        "{rendered}"
    );
    // The database's CA bundle, from an optional ConfigMap (sslrootcert).
    for ca in [
        "mountPath: /etc/tally/db-ca",
        "name: tally-collector-db-ca",
        "optional: true",
    ] {
        assert!(rendered.contains(ca), "{ca} missing from {rendered}");
    }
    for gone in ["--data=", "kind: PersistentVolumeClaim", "claimName:"] {
        assert!(!rendered.contains(gone), "{gone} in {rendered}");
    }
}
