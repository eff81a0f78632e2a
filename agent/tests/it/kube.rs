//! Kubernetes attribution against an API server stand-in on loopback
//! (`support/apiserver.rs`): the cgroup layouts kubelet makes for containerd
//! and CRI-O under both cgroup drivers, created for real under this
//! machine's cgroup v2 hierarchy, with workloads running in them; the
//! agent must name each process's container and, through the stand-in's pod
//! list and watch events, its pod, namespace and owner. Covered: ADDED,
//! MODIFIED, DELETED, a 410 Gone that forces a relist, and a pod that
//! appears after its process.
use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tally_core::model::container::Runtime;
use tally_node::enrich::kube::{Credentials, PodSource, Status};

use crate::common::{self, Agent, TestCgroup};
use crate::support::apiserver::ApiServer;

const NODE: &str = "ip-10-0-1-23.eu-west-1.compute.internal";

/// One pod of the test: where kubelet would put its container's cgroup.
struct Layout {
    ns: &'static str,
    pod: &'static str,
    uid: &'static str,
    container: &'static str,
    /// The container id in the pod's status, with its runtime's scheme.
    id: &'static str,
    runtime: &'static str,
    qos: &'static str,
}

const A: Layout = Layout {
    ns: "shop",
    pod: "web-5d9c7b8f4-x7k2p",
    uid: "0a7d3c1e-2b4f-4d6a-8e9c-1f2a3b4c5d6e",
    container: "web",
    id: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90",
    runtime: "containerd",
    qos: "Burstable",
};
const B: Layout = Layout {
    ns: "batch",
    pod: "nightly-29012345-q9z8w",
    uid: "1b8e4d2f-3c5a-4e7b-9f0d-2a3b4c5d6e7f",
    container: "report",
    id: "b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1",
    runtime: "containerd",
    qos: "BestEffort",
};
const C: Layout = Layout {
    ns: "data",
    pod: "db-0",
    uid: "2c9f5e3a-4d6b-4f8c-8a1e-3b4c5d6e7f80",
    container: "postgres",
    id: "c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2",
    runtime: "cri-o",
    qos: "Guaranteed",
};
const D: Layout = Layout {
    ns: "logging",
    pod: "logs-4h7jk",
    uid: "3d0a6f4b-5e7c-4a9d-9b2f-4c5d6e7f8091",
    container: "shipper",
    id: "d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3",
    runtime: "cri-o",
    qos: "Burstable",
};
const E: Layout = Layout {
    ns: "shop",
    pod: "cart-7f6d5c4b3-m4n5p",
    uid: "4e1b7a5c-6f8d-4b0e-8c3a-5d6e7f809102",
    container: "cart",
    id: "e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4",
    runtime: "containerd",
    qos: "BestEffort",
};

impl Layout {
    fn bare_id(&self) -> &'static str {
        self.id
    }

    /// The cgroup kubelet and the runtime make for the container, under
    /// `root`, for the given cgroup driver.
    fn cgroup(&self, root: &str, systemd: bool) -> String {
        let qos = self.qos.to_ascii_lowercase();
        let uid_ = self.uid.replace('-', "_");
        let id = self.id;
        let leaf = match (self.runtime, systemd) {
            ("containerd", true) => format!("cri-containerd-{id}.scope"),
            ("containerd", false) => id.to_owned(),
            (_, true) => format!("crio-{id}.scope"),
            (_, false) => format!("crio-{id}"),
        };
        let pod = if systemd {
            match self.qos {
                "Guaranteed" => format!("kubepods.slice/kubepods-pod{uid_}.slice"),
                _ => format!("kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid_}.slice"),
            }
        } else {
            match self.qos {
                "Guaranteed" => format!("kubepods/pod{}", self.uid),
                _ => format!("kubepods/{qos}/pod{}", self.uid),
            }
        };
        format!("{root}/{pod}/{leaf}")
    }

    fn pod_json(&self, owner: Option<(&str, &str, &str)>, labels: Value) -> Value {
        let scheme = if self.runtime == "containerd" {
            "containerd"
        } else {
            "cri-o"
        };
        let resources = match self.qos {
            "Guaranteed" => {
                json!({"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}})
            }
            "Burstable" => {
                json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}})
            }
            _ => json!({}),
        };
        let owners = match owner {
            Some((api, kind, name)) => json!([{
                "apiVersion": api, "kind": kind, "name": name,
                "uid": format!("{name}-uid"), "controller": true, "blockOwnerDeletion": true
            }]),
            None => json!([]),
        };
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.pod,
                "namespace": self.ns,
                "uid": self.uid,
                "labels": labels,
                "ownerReferences": owners,
                "creationTimestamp": "2026-11-27T01:00:00Z"
            },
            "spec": {
                "nodeName": NODE,
                "containers": [{"name": self.container, "image": "registry.example.com/app:1", "resources": resources}],
                "restartPolicy": "Always"
            },
            "status": {
                "phase": "Running",
                "qosClass": self.qos,
                "containerStatuses": [{
                    "name": self.container,
                    "containerID": format!("{scheme}://{}", self.id),
                    "image": "registry.example.com/app:1",
                    "imageID": "registry.example.com/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                    "ready": true,
                    "restartCount": 0,
                    "started": true,
                    "state": {"running": {"startedAt": "2026-11-27T01:00:01Z"}}
                }]
            }
        })
    }
}

fn pod_a(app: &str) -> Value {
    A.pod_json(
        Some(("apps/v1", "ReplicaSet", "web-5d9c7b8f4")),
        json!({"app.kubernetes.io/name": app, "pod-template-hash": "5d9c7b8f4"}),
    )
}

fn pod_b() -> Value {
    B.pod_json(
        Some(("batch/v1", "Job", "nightly-29012345")),
        json!({"app": "nightly"}),
    )
}

fn pod_c() -> Value {
    C.pod_json(
        Some(("apps/v1", "StatefulSet", "db")),
        json!({"app.kubernetes.io/name": "postgres"}),
    )
}

fn pod_d() -> Value {
    D.pod_json(
        Some(("apps/v1", "DaemonSet", "logs")),
        json!({"app": "logs"}),
    )
}

fn pod_e() -> Value {
    E.pod_json(
        Some(("apps/v1", "ReplicaSet", "cart-7f6d5c4b3")),
        json!({"app": "cart", "pod-template-hash": "7f6d5c4b3"}),
    )
}

/// A stand-in with pods A, B, C listed, their owners' ReplicaSet and Job,
/// and the node.
fn standin() -> ApiServer {
    let api = ApiServer::start();
    api.seed_pod(pod_a("web"));
    api.seed_pod(pod_b());
    api.seed_pod(pod_c());
    api.add_replicaset("shop", "web-5d9c7b8f4", "web");
    api.add_replicaset("shop", "cart-7f6d5c4b3", "cart");
    api.add_job("batch", "nightly-29012345", "nightly");
    api.add_node(
        NODE,
        json!({
            "node.kubernetes.io/instance-type": "m7g.large",
            "topology.kubernetes.io/zone": "eu-west-1a",
            "topology.kubernetes.io/region": "eu-west-1",
            "eks.amazonaws.com/capacityType": "SPOT"
        }),
    );
    // Another node's pod: never listed for this one.
    let mut other = pod_e();
    other["metadata"]["uid"] = json!("99999999-0000-4000-8000-000000000000");
    other["spec"]["nodeName"] = json!("some-other-node");
    api.seed_pod(other);
    api
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// The watcher alone, without eBPF (no root needed): list, owners through
/// ReplicaSet and Job, ADDED, MODIFIED, DELETED, 410 Gone and relist, and
/// the node's labels.
#[test]
fn the_watcher_follows_list_watch_and_relist() {
    let _serial = common::serial();
    let api = standin();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let (tx, rx) = mpsc::channel::<BTreeMap<String, String>>();
    let source = PodSource::watch(Credentials::Kubeconfig(kubeconfig), NODE, Some(tx)).unwrap();
    let index = source.index().unwrap().clone();
    let mut resolver = source.resolver();
    // For a process that starts after everything the test does: a pod
    // deleted before its start never names it.
    let mut lookup = |l: &Layout| {
        let runtime = if l.runtime == "containerd" {
            Runtime::Containerd
        } else {
            Runtime::CriO
        };
        resolver.lookup(runtime, l.bare_id(), Some(l.uid), u64::MAX)
    };
    wait("the first list", Duration::from_secs(10), || {
        index.status() == Status::Synced
    });
    let labels = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("node labels");
    assert_eq!(labels["node.kubernetes.io/instance-type"], "m7g.large");

    let a = lookup(&A).expect("pod A listed");
    assert_eq!((a.namespace.as_str(), a.pod.as_str()), (A.ns, A.pod));
    assert_eq!(a.container.as_deref(), Some("web"));
    let owner = a.owner.as_ref().unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "web")
    );
    assert_eq!(a.resources.cpu_request_millicores, Some(100));
    assert_eq!(a.resources.memory_limit_bytes, Some(256 << 20));
    assert_eq!(a.qos_class.as_deref(), Some("Burstable"));
    let b = lookup(&B).expect("pod B listed");
    let owner = b.owner.as_ref().unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("CronJob", "nightly")
    );
    let c = lookup(&C).expect("pod C listed");
    assert_eq!(c.owner.as_ref().unwrap().kind, "StatefulSet");
    assert!(lookup(&D).is_none());
    assert!(lookup(&E).is_none(), "another node's pod is not listed");

    api.apply_pod(pod_d());
    wait("ADDED", Duration::from_secs(5), || lookup(&D).is_some());
    assert_eq!(
        lookup(&D).unwrap().owner.as_ref().unwrap().kind,
        "DaemonSet"
    );
    api.apply_pod(pod_a("web-v2"));
    wait("MODIFIED", Duration::from_secs(5), || {
        lookup(&A).is_some_and(|a| a.app() == Some("web-v2"))
    });
    api.delete_pod(C.uid);
    wait("DELETED", Duration::from_secs(5), || lookup(&C).is_none());
    // A process that started before the delete (at boot) still ran in C.
    let c = index.lookup_process(C.bare_id(), Some(C.uid), 0);
    assert_eq!(c.expect("C's tombstone").pod, C.pod);

    let lists = api.pod_lists();
    api.forget_pod(B.uid);
    api.seed_pod(pod_e());
    api.expire();
    wait("the relist after 410 Gone", Duration::from_secs(10), || {
        api.pod_lists() > lists && lookup(&E).is_some()
    });
    assert!(
        lookup(&B).is_none(),
        "the relist drops a pod whose DELETED was missed"
    );
    assert_eq!(lookup(&E).unwrap().owner.as_ref().unwrap().name, "cart");
    assert_eq!(index.status(), Status::Synced);
    assert!(lookup(&D).is_some() && lookup(&A).is_some());
    assert_eq!(api.unauthorized(), 0, "every request had the token");
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains(&format!("fieldSelector=spec.nodeName%3D{NODE}"))),
        "{requests:?}"
    );
}

/// Without the API server: nothing from it, and no stall.
#[test]
fn an_unreachable_api_server_leaves_the_runtime_fallback() {
    let _serial = common::serial();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    let source = PodSource::watch(Credentials::Kubeconfig(kubeconfig), NODE, None).unwrap();
    let index = source.index().unwrap().clone();
    wait(
        "the watcher to give up for now",
        Duration::from_secs(10),
        || index.status() == Status::Unavailable,
    );
    let mut resolver = source.resolver();
    // No runtime config on this machine either: nothing, quickly.
    let started = Instant::now();
    assert!(
        resolver
            .lookup(Runtime::Containerd, A.id, Some(A.uid), u64::MAX)
            .is_none()
    );
    assert!(started.elapsed() < Duration::from_millis(100));
}

struct Ticker(Child);

impl Ticker {
    /// `workload tick` in `cg`: an mmap every 100 ms for `seconds`.
    fn start(cg: &TestCgroup, seconds: u32) -> Self {
        let mut cmd = Command::new(common::workload());
        cmd.args(["tick", &(seconds * 10).to_string(), "100"])
            .stdout(Stdio::null());
        cg.enter_on_spawn(&mut cmd);
        Self(cmd.spawn().unwrap())
    }

    fn pid(&self) -> u64 {
        u64::from(self.0.id())
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every line the agent printed, kept.
#[derive(Default)]
struct Lines {
    all: Vec<Value>,
}

impl Lines {
    /// Waits for a process window of `pid`, printed from now on, that
    /// satisfies `pred`.
    fn wait(
        &mut self,
        agent: &Agent,
        what: &str,
        pid: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        // A deadline for a busy CI machine, not a latency bound: each
        // window is still checked for what it must say.
        let deadline = Instant::now() + Duration::from_secs(20);
        self.all.extend(agent.take_lines());
        let mut cursor = self.all.len();
        while Instant::now() < deadline {
            self.all.extend(agent.take_lines());
            if let Some(w) = self.all[cursor..]
                .iter()
                .find(|w| w["pid"] == pid && pred(w))
            {
                return w.clone();
            }
            cursor = self.all.len();
            thread::sleep(Duration::from_millis(50));
        }
        let last = self.all.iter().rev().find(|w| w["pid"] == pid);
        panic!(
            "{what}: no window of pid {pid} within 20 s; last: {last:?}\nstderr:\n{}",
            agent.stderr()
        );
    }

    /// Every window of `pid` seen so far.
    fn of(&mut self, agent: &Agent, pid: u64) -> Vec<Value> {
        self.all.extend(agent.take_lines());
        self.all
            .iter()
            .filter(|w| w["pid"] == pid)
            .cloned()
            .collect()
    }
}

fn check_pod(w: &Value, l: &Layout, owner_kind: &str, owner_name: &str) {
    assert_eq!(w["container_id"], l.id, "{w}");
    assert_eq!(w["container_runtime"], l.runtime, "{w}");
    assert_eq!(w["namespace"], l.ns, "{w}");
    assert_eq!(w["pod_name"], l.pod, "{w}");
    assert_eq!(w["container_name"], l.container, "{w}");
    assert_eq!(w["owner_kind"], owner_kind, "{w}");
    assert_eq!(w["owner_name"], owner_name, "{w}");
    assert_eq!(w["pod_qos_class"], l.qos, "{w}");
    assert_eq!(w["pod_source"], "api-server", "{w}");
    assert_eq!(w["pod_uid"], l.uid, "the cgroup path's pod UID agrees: {w}");
}

fn named(w: &Value) -> bool {
    !w["namespace"].is_null()
}

/// The real agent (`top --batch --json`), real cgroups in kubelet's
/// layouts, workloads in them, and the stand-in's list and events.
#[test]
fn pods_namespaces_and_owners_of_workloads_in_kubelet_cgroups() {
    let test = "pods_namespaces_and_owners_of_workloads_in_kubelet_cgroups";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let api = standin();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let root = common::unique("tally-test-k8s");
    // containerd and CRI-O, each under both cgroup drivers.
    let cg_a = TestCgroup::create(&A.cgroup(&root, true));
    let cg_b = TestCgroup::create(&B.cgroup(&root, false));
    let cg_c = TestCgroup::create(&C.cgroup(&root, true));
    let cg_d = TestCgroup::create(&D.cgroup(&root, false));
    let cg_e = TestCgroup::create(&E.cgroup(&root, true));
    let mut agent = Agent::start_with_env(
        &["--kubeconfig", kubeconfig.to_str().unwrap()],
        &[
            ("NODE_NAME", NODE),
            ("TALLY_LOG", "info,tally_node::enrich::kube=debug"),
        ],
    );
    agent.wait_for_stderr("watching the pods of node", Duration::from_secs(10));
    let a = Ticker::start(&cg_a, 30);
    let b = Ticker::start(&cg_b, 30);
    let c = Ticker::start(&cg_c, 30);
    // D's process runs before its pod is known.
    let d = Ticker::start(&cg_d, 30);
    let mut lines = Lines::default();

    // Listed: each container's pod, namespace and owner (through the
    // ReplicaSet to the Deployment, through the Job to the CronJob).
    let w = lines.wait(&agent, "pod A", a.pid(), named);
    check_pod(&w, &A, "Deployment", "web");
    assert_eq!(w["app"], "web");
    assert_eq!(w["cpu_request_cores"], 0.1);
    assert_eq!(w["memory_limit_bytes"], 256 << 20);
    assert!(w["cpu_limit_cores"].is_null());
    assert_eq!(w["cgroup_path"], cg_a.path.as_str());
    let w = lines.wait(&agent, "pod B", b.pid(), named);
    check_pod(&w, &B, "CronJob", "nightly");
    let w = lines.wait(&agent, "pod C", c.pid(), named);
    check_pod(&w, &C, "StatefulSet", "db");
    assert_eq!(w["cpu_limit_cores"], 2.0);
    assert_eq!(w["memory_request_bytes"], 4u64 << 30);
    // D: its container is known from the cgroup, its pod not yet.
    // (Its first window may come before the new cgroup's path is
    // resolved, on a loaded machine.)
    let w = lines.wait(&agent, "D's process", d.pid(), |w| {
        !w["container_id"].is_null()
    });
    assert_eq!(w["container_id"], D.id);
    assert_eq!(w["container_runtime"], "cri-o");
    assert!(!named(&w), "no pod for D yet: {w}");

    // ADDED after its process: the same process is named from then on.
    api.apply_pod(pod_d());
    let w = lines.wait(&agent, "pod D, ADDED after its process", d.pid(), named);
    check_pod(&w, &D, "DaemonSet", "logs");

    // MODIFIED: a relabelled pod.
    api.apply_pod(pod_a("web-v2"));
    lines.wait(&agent, "pod A, MODIFIED", a.pid(), |w| w["app"] == "web-v2");

    // DELETED: a process that was in the pod keeps its names to its end
    // (a new process in its container does not get them: the next test).
    api.delete_pod(C.uid);
    agent.wait_for_stderr("pod deleted", Duration::from_secs(5));
    lines.wait(&agent, "C's process after DELETED", c.pid(), named);

    // 410 Gone: the watch window moves past the agent's; meanwhile B was
    // deleted without an event reaching it and E was created. The relist
    // drops B and adds E.
    let lists = api.pod_lists();
    api.forget_pod(B.uid);
    api.seed_pod(pod_e());
    api.expire();
    agent.wait_for_stderr("410 Gone", Duration::from_secs(5));
    wait("the relist", Duration::from_secs(10), || {
        api.pod_lists() > lists && agent.stderr().matches("watching the pods of node").count() >= 2
    });
    let e = Ticker::start(&cg_e, 3);
    let w = lines.wait(&agent, "pod E, from the relist", e.pid(), named);
    check_pod(&w, &E, "Deployment", "cart");
    let b2 = Ticker::start(&cg_b, 2);
    let b2_pid = b2.pid();
    lines.wait(&agent, "B's new process", b2_pid, |_| true);
    drop(b2);
    thread::sleep(Duration::from_millis(1200));
    let b2_windows = lines.of(&agent, b2_pid);
    assert!(
        b2_windows.iter().all(|w| !named(w)),
        "B is gone after the relist: {b2_windows:?}"
    );
    // The stand-in saw what a real API server would.
    assert!(api.pod_lists() >= 2 && api.pod_watches() >= 2);
    assert_eq!(api.unauthorized(), 0);
    drop((a, b, c, d, e));
    let (_, stderr, _) = agent.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A process started in C's cgroup after C's pod was deleted gets no pod.
/// (Checked on its own windows: the process exits before the test reads
/// them.)
#[test]
fn a_process_in_a_deleted_pods_cgroup_is_not_named() {
    let test = "a_process_in_a_deleted_pods_cgroup_is_not_named";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let api = standin();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let root = common::unique("tally-test-k8s-del");
    let cg = TestCgroup::create(&C.cgroup(&root, false));
    let mut agent = Agent::start_with_env(
        &["--kubeconfig", kubeconfig.to_str().unwrap()],
        &[
            ("NODE_NAME", NODE),
            ("TALLY_LOG", "info,tally_node::enrich::kube=debug"),
        ],
    );
    agent.wait_for_stderr("watching the pods of node", Duration::from_secs(10));
    let before = common::run_workload(Some(&cg), &["alloc", "100", "4"]);
    api.delete_pod(C.uid);
    agent.wait_for_stderr("pod deleted", Duration::from_secs(5));
    let after = common::run_workload(Some(&cg), &["alloc", "100", "4"]);
    let (lines, stderr, _) = agent.stop();
    let of = |r: &Value| common::windows_of(&lines, r["pid"].as_u64().unwrap());
    let (before, after) = (of(&before), of(&after));
    assert!(!before.is_empty() && !after.is_empty(), "{stderr}");
    for w in before {
        check_pod(w, &C, "StatefulSet", "db");
    }
    for w in after {
        assert_eq!(w["container_id"], C.id);
        assert!(!named(w), "{w}");
    }
}
