//! What users deploy, run: the agent's pod (deploy/agent-daemonset.yaml)
//! and the collector's pod (deploy/collector-deployment.yaml), as
//! `kubectl kustomize deploy/` renders them, under podman with the image
//! `cargo xtask image` built from this tree, installed by the README's own
//! install commands ("Install on EKS"). The workload runs under dockerd.
//!
//! The README's block runs as written in bash, in a copy of the checkout,
//! with stand-ins for what needs a cluster (`kubectl`, `kustomize`):
//! `create` makes the objects offline (`--dry-run=client -o json`), `apply
//! -k` renders the manifests and hands them to the test, which runs the
//! pods ([`common::kubelet`]: every pod-spec field becomes a `podman run`
//! flag, a prepared volume or a probe, or the test fails), `rollout status`
//! waits for their readiness probes, and `port-forward` is a TCP forward
//! from 127.0.0.1:4317 to the collector's pod, and `create token` hands out
//! a token the API server stand-in issued. The block's last command,
//! `agent workloads`, must list the workload container the agent's pod saw;
//! the stored windows of that container must hold its own counts.
//!
//! The pods reach an API server stand-in over TLS (`KUBERNETES_SERVICE_HOST`,
//! the automounted token, as a kubelet gives them): the agent watches its
//! node's pods there, and the collector reviews the agent's projected token
//! there (TokenReview), so the agent writes as its own node only.
use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::Value;
use tally_proto as pb;

use crate::{
    common::{
        self,
        container::{self, Image, Run},
        kubelet::{self, ApiAccess, CLUSTER_ONLY, Node, PodRun},
    },
    support::apiserver::ApiServer,
};

/// The image the manifests name (`images:` in deploy/kustomization.yaml).
const IMAGE: &str = "tally:0.1.0";
/// The node name the downward API gives the agent.
const NODE: &str = "pod-test-node";
/// The namespace of the manifests.
const NAMESPACE: &str = "tally";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ is in the workspace")
        .to_path_buf()
}

/// The README's install block: the shell code block under "### Install on
/// EKS", continuation lines joined.
fn readme_install_block() -> String {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split_once("### Install on EKS")
        .expect("README has \"### Install on EKS\"")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("an sh block in Install on EKS")
        .1
        .split_once("```")
        .unwrap()
        .0;
    block.replace("\\\n", " ")
}

/// The stand-ins for cluster commands, in `bin/` of `work`: `kubectl` and
/// `kustomize` that talk to this test through files in `work/cluster`,
/// and `agent`, the binary under test.
fn stand_ins(work: &Path) -> PathBuf {
    let bin = work.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let cluster = work.join("cluster");
    fs::create_dir_all(cluster.join("objects")).unwrap();
    let kubectl = format!(
        r#"#!/bin/bash
# kubectl against a cluster of one node that the pod test runs.
set -euo pipefail
CLUSTER={cluster}
ns=""
args=()
while (($#)); do
  case "$1" in
    -n) ns="$2"; shift 2;;
    *) args+=("$1"); shift;;
  esac
done
set -- "${{args[@]}}"
case "$1" in
  create)
    if [ "$2" = token ]; then
      # A token the API server stand-in issued: `create token SA
      # --audience AUD --duration D` as the README runs it.
      [ "$4 $6" = "--audience --duration" ] || {{ echo "kubectl stand-in: create token SA --audience AUD --duration D" >&2; exit 1; }}
      cat "$CLUSTER/tokens/$ns/$3/$5"
      exit 0
    fi
    n=$(ls "$CLUSTER/objects" | wc -l)
    /usr/bin/kubectl ${{ns:+-n "$ns"}} "$@" --dry-run=client -o json > "$CLUSTER/objects/$n.json";;
  apply)
    [ "$2" = -k ] || {{ echo "kubectl stand-in: only apply -k" >&2; exit 1; }}
    /usr/bin/kubectl kustomize "$3" > "$CLUSTER/rendered.yaml"
    touch "$CLUSTER/applied";;
  rollout)
    for _ in $(seq 600); do
      [ -e "$CLUSTER/ready" ] && {{ echo "$3 successfully rolled out"; exit 0; }}
      [ -e "$CLUSTER/failed" ] && exit 1
      sleep 0.5
    done
    exit 1;;
  port-forward)
    # The test forwards 127.0.0.1:$3 to the collector's pod.
    echo "Forwarding from 127.0.0.1:$3 -> $3";;
  *) echo "kubectl stand-in: $1 is not run here" >&2; exit 1;;
esac
"#,
        cluster = cluster.display()
    );
    // `kustomize edit set image`: the local image keeps its name (no
    // registry here); anything else is not run.
    let kustomize = r#"#!/bin/bash
set -eu
if [ "$1 $2 $3" = "edit set image" ]; then
  echo "kustomize stand-in: kept the local image (asked: $4)" >&2
  exit 0
fi
echo "kustomize stand-in: $* is not run here" >&2
exit 1
"#;
    for (name, text) in [("kubectl", kubectl.as_str()), ("kustomize", kustomize)] {
        let path = bin.join(name);
        fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_agent"), bin.join("agent")).unwrap();
    cluster
}

/// A CA (`ca.crt`, `ca.key`) and a server certificate it issued
/// (`NAME.crt`, `NAME.key`) for the subjectAltNames `san`, in `dir`.
fn ca_and_certificate(dir: &Path, ca_cn: &str, name: &str, cn: &str, san: &str) {
    fs::create_dir_all(dir).unwrap();
    let script = format!(
        r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN={ca_cn}
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key -out {name}.csr -subj /CN={cn}
printf 'subjectAltName={san}\nextendedKeyUsage=serverAuth\n' > {name}.ext
openssl x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out {name}.crt -extfile {name}.ext
"#
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and the collector's certificate for its Service name, as
/// cert-manager would issue them: tls.crt, tls.key and ca.crt in `dir`.
fn certificates(dir: &Path) {
    ca_and_certificate(
        dir,
        "tally-test-ca",
        "tls",
        "tally-collector.tally.svc",
        "DNS:tally-collector.tally.svc,DNS:tally-collector.tally.svc.cluster.local",
    );
}

/// The cluster's own CA and the API server's certificate for `ip` (what
/// pods reach as `KUBERNETES_SERVICE_HOST`) and `kubernetes.default.svc`,
/// in `dir`: (CA, chain, key) in PEM.
fn api_server_certificates(dir: &Path, ip: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    ca_and_certificate(
        dir,
        "kubernetes",
        "apiserver",
        "kube-apiserver",
        &format!("IP:{ip},DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"),
    );
    let read = |f: &str| fs::read(dir.join(f)).unwrap();
    (read("ca.crt"), read("apiserver.crt"), read("apiserver.key"))
}

/// The address of this host on podman's default network, which pods reach.
fn podman_gateway() -> String {
    let out = Command::new(kubelet::PODMAN)
        .args([
            "network",
            "inspect",
            "podman",
            "--format",
            "{{range .Subnets}}{{.Gateway}}{{end}}",
        ])
        .output()
        .unwrap();
    let gateway = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && gateway.parse::<std::net::IpAddr>().is_ok(),
        "podman's default network has no gateway: {gateway} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    gateway
}

/// What the kubelet of `NODE` gets from the API server.
fn api_access(api: &std::sync::Arc<ApiServer>, host: &str, ca: &[u8]) -> ApiAccess {
    let issuer = api.clone();
    ApiAccess {
        host: host.to_owned(),
        port: api.addr.port(),
        ca: ca.to_vec(),
        namespace: NAMESPACE.into(),
        issue: Box::new(move |username, audience, seconds| {
            issuer.issue_token(username, Some(NODE), &[audience], seconds as i64)
        }),
    }
}

/// YAML documents as JSON values (PyYAML, Debian's python3-yaml).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml\nprint(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the rendered manifests have no {kind} {name}"))
}

/// The Secrets the README's commands made, by name: key to bytes.
fn secrets(objects: &Path) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(objects).unwrap() {
        let v: Value = serde_json::from_slice(&fs::read(entry.unwrap().path()).unwrap()).unwrap();
        if v["kind"] != "Secret" {
            continue;
        }
        let mut data = BTreeMap::new();
        for (k, b64) in v["data"].as_object().into_iter().flatten() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.as_str().expect("Secret data is base64 text"))
                .expect("Secret data decodes");
            data.insert(k.clone(), decoded);
        }
        out.insert(v["metadata"]["name"].as_str().unwrap().to_owned(), data);
    }
    out
}

/// `kubectl port-forward`: 127.0.0.1:`port` to `to`, until the test ends.
fn forward(port: u16, to: String) {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("127.0.0.1:{port} (the README's port-forward) is taken: {e}"));
    thread::spawn(move || {
        for inbound in listener.incoming().map_while(Result::ok) {
            let Ok(outbound) = TcpStream::connect(&to) else {
                continue;
            };
            let (mut a, mut b) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
            let (mut a, mut b) = (outbound, inbound);
            thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
        }
    });
}

fn wait_for(path: &Path, within: Duration, what: &str, log: &Path) {
    let deadline = Instant::now() + within;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}; the README block's output:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The stored windows of `container` (every process in it), from the
/// collector's store.
fn stored_windows(data: &Path, container: &str) -> Vec<pb::ProcessWindow> {
    common::daemons::stored_reports(data)
        .into_iter()
        .flat_map(|r| r.processes)
        .filter(|p| p.container_id == container)
        .collect()
}

/// One counter of a window's delta.
type Field = fn(&pb::Counters) -> u64;

fn summed(windows: &[pb::ProcessWindow], field: Field) -> u64 {
    windows
        .iter()
        .map(|w| field(&w.delta.unwrap_or_default()))
        .sum()
}

#[test]
fn shipped_pods_report_a_container_end_to_end() {
    let test = "shipped_pods_report_a_container_end_to_end";
    if !common::require_root(test)
        || !container::require_docker(test)
        || !common::require("kubectl", test)
        || !common::require("openssl", test)
        || !common::require(kubelet::PODMAN, test)
    {
        return;
    }
    let have_image = Command::new(kubelet::PODMAN)
        .args(["image", "exists", IMAGE])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have_image,
        "{test}: containers-storage has no {IMAGE}; `cargo xtask image` (or `cargo xtask test`) builds it"
    );
    let _serial = common::serial();
    let started = Instant::now();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("pods"));
    fs::create_dir_all(&work).unwrap();
    // The install block runs in a copy of the checkout's deploy/ (it edits
    // kustomization.yaml), with the certificates beside it.
    let copy = Command::new("cp")
        .arg("-r")
        .arg(root().join("deploy"))
        .arg(work.join("deploy"))
        .status()
        .unwrap();
    assert!(copy.success());
    certificates(&work);
    let cluster = stand_ins(&work);
    // The cluster's API server, over TLS where the pods reach it.
    let gateway = podman_gateway();
    let (cluster_ca, chain, key) = api_server_certificates(&work.join("cluster-pki"), &gateway);
    // On every address: podman makes its bridge (the gateway's address)
    // only when the first pod starts.
    let api = std::sync::Arc::new(ApiServer::start_tls(
        std::net::Ipv4Addr::UNSPECIFIED.into(),
        &chain,
        &key,
    ));
    api.add_node(NODE, serde_json::json!({"kubernetes.io/hostname": NODE}));
    // What `kubectl create token` hands the README's reader: the agents'
    // account, bound to no pod.
    let operator_token = api.issue_token(
        &format!("system:serviceaccount:{NAMESPACE}:tally-agent"),
        None,
        &["tally-collector"],
        900,
    );
    let tokens = cluster.join("tokens").join(NAMESPACE).join("tally-agent");
    fs::create_dir_all(&tokens).unwrap();
    fs::write(tokens.join("tally-collector"), &operator_token).unwrap();
    let log = work.join("readme-block.log");
    let script = readme_install_block();
    let path = format!(
        "{}:{}",
        work.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut block = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&work)
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for(
        &cluster.join("applied"),
        Duration::from_secs(60),
        "the README block applies the manifests",
        &log,
    );

    // The cluster's part: the rendered pods, run under dockerd.
    let docs = yaml_documents(&cluster.join("rendered.yaml"));
    let secrets = secrets(&cluster.join("objects"));
    for (name, keys) in &secrets {
        eprintln!("Secret {name}: {:?}", keys.keys().collect::<Vec<_>>());
    }
    let label = format!("tally-test.owner={}", std::process::id());
    let collector_template = &find(&docs, "Deployment", "tally-collector")["spec"]["template"];
    let claim = find(&docs, "PersistentVolumeClaim", "tally-collector-data");
    let data = work.join("pv-collector-data");
    let collector_node = Node {
        name: NODE.into(),
        scratch: work.join("node-collector"),
        secrets: secrets.clone(),
        claims: BTreeMap::from([(
            claim["metadata"]["name"].as_str().unwrap().to_owned(),
            data.clone(),
        )]),
        hosts: Vec::new(),
        label: label.clone(),
        api: Some(api_access(&api, &gateway, &cluster_ca)),
    };
    let collector_run = PodRun::translate(collector_template, &collector_node, "tally-collector");
    eprintln!(
        "collector pod:\n  {}",
        collector_run.translated.join("\n  ")
    );
    let collector = collector_run.start();
    collector.watch_liveness();
    let ready = collector.wait_ready(Duration::from_secs(60));
    eprintln!("collector ready after {ready:?} at {}", collector.ip);

    // The Service in front of it: its name, in the agent's /etc/hosts.
    let service = find(&docs, "Service", "tally-collector");
    let svc_name = format!(
        "{}.{}.svc",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap()
    );
    for p in service["spec"]["ports"].as_array().unwrap() {
        // The translation resolves no port: the Service must map each port
        // to the same number in the pod, or the agent's URL would miss.
        let target = match &p["targetPort"] {
            Value::String(name) => collector.run.ports[name.as_str()],
            n => n.as_u64().unwrap() as u16,
        };
        assert_eq!(
            p["port"].as_u64().unwrap() as u16,
            target,
            "Service port {p} is not translated"
        );
    }
    let agent_template = &find(&docs, "DaemonSet", "tally-agent")["spec"]["template"];
    let agent_node = Node {
        name: NODE.into(),
        scratch: work.join("node-agent"),
        secrets,
        claims: BTreeMap::new(),
        hosts: vec![(svc_name, collector.ip.clone())],
        label: label.clone(),
        api: Some(api_access(&api, &gateway, &cluster_ca)),
    };
    let agent_run = PodRun::translate(agent_template, &agent_node, "tally-agent");
    eprintln!("agent pod:\n  {}", agent_run.translated.join("\n  "));
    for (field, why) in CLUSTER_ONLY {
        eprintln!("not run here: {field}: {why}");
    }
    let agent = agent_run.start();
    agent.watch_liveness();
    let ready = agent.wait_ready(Duration::from_secs(90));
    eprintln!("agent ready after {ready:?}");
    // Every hook, with tracefs mounted by the agent where the node has
    // none (this machine boots without it).
    let logs = agent.logs();
    let attached = logs
        .split("probes attached (")
        .nth(1)
        .and_then(|rest| rest.split_once(" hooks)"))
        .and_then(|(n, _)| n.split_once(" of "))
        .unwrap_or_else(|| panic!("the agent's pod logged no `probes attached`:\n{logs}"));
    assert_eq!(
        attached.0, attached.1,
        "the agent's pod attached {} of {} hooks:\n{logs}",
        attached.0, attached.1
    );
    assert!(
        !logs.contains("\"level\":\"ERROR\""),
        "the agent's pod logged errors:\n{logs}"
    );

    // A workload container: the data-path workload, its own counts.
    let image = Image::static_c("workload", &root().join("agent/tests/workloads/workload.c"));
    let idle = Run::new().start(&image, &["tick", "2", "300"]);
    let idle_report = idle.report();
    let busy = Run::new().start(&image, &["alloc", "20000", "16"]);
    let busy_report = busy.report();
    // Its exit window reaches the store: a window (10 s) and its send.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let windows = stored_windows(&data, &busy.id);
        if windows.iter().any(|w| w.exited) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no exit window of {} stored within 60 s ({} windows); agent:\n{}\ncollector:\n{}",
            busy.id,
            windows.len(),
            agent.logs(),
            collector.logs()
        );
        thread::sleep(Duration::from_millis(500));
    }

    // The collector classifies on its own schedule (--classify-interval):
    // wait until it lists the container, through the README's port-forward.
    forward(4317, format!("{}:4317", collector.ip));
    let token = work.join("token-for-the-test");
    fs::write(&token, &operator_token).unwrap();
    let short = &busy.id[..12];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_agent"))
            .args([
                "workloads",
                "--json",
                "--collector",
                "https://localhost:4317",
            ])
            .args(["--collector-tls-name", "tally-collector.tally.svc"])
            .arg("--collector-ca")
            .arg(work.join("ca.crt"))
            .arg("--collector-token-file")
            .arg(&token)
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout);
        if let Some(row) = listed.lines().find(|l| l.contains(short)) {
            // The full id, as docker itself reported it.
            let row: serde_json::Value = serde_json::from_str(row).unwrap();
            assert_eq!(row["container_id"], busy.id.as_str(), "{row}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the collector did not list container {short} within 60 s: {}{listed}",
            String::from_utf8_lossy(&out.stderr)
        );
        thread::sleep(Duration::from_secs(1));
    }
    // Each pod reached the API server as its own service account: the
    // agent listed its node's pods, the collector reviewed the agent's
    // projected token (and the reader's) and accepted them.
    assert!(api.pod_lists() >= 1, "the agent's pod listed no pods");
    assert_eq!(api.unauthorized(), 0, "requests without a valid token");
    assert!(
        api.token_reviews() >= 2,
        "the collector reviewed {} tokens",
        api.token_reviews()
    );
    let metrics_port = collector.run.ports["metrics"];
    let (code, metrics) = crate::exporting::http_get(
        format!("{}:{metrics_port}", collector.ip).parse().unwrap(),
        "/metrics",
    )
    .unwrap();
    assert_eq!(code, 200);
    let accepted = metrics
        .lines()
        .find(|l| l.starts_with("tally_collector_token_reviews_total{result=\"accepted\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no accepted reviews counted:\n{metrics}"));
    assert!(accepted >= 2, "accepted {accepted}");
    for refused in ["wrong_node", "no_node", "unauthenticated", "unavailable"] {
        let line = format!("tally_collector_token_reviews_total{{result=\"{refused}\"}} 0");
        assert!(metrics.contains(&line), "not {line}:\n{metrics}");
    }

    // Rolled out: the README block goes on (port-forward, agent workloads).
    fs::write(cluster.join("ready"), "").unwrap();
    let out = block.stdout.take().unwrap();
    let printed: Vec<String> = BufReader::new(out).lines().map_while(Result::ok).collect();
    let status = block.wait().unwrap();
    let block_log = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "the README's install block failed ({status}):\n{}\n{block_log}",
        printed.join("\n")
    );
    let table = printed.join("\n");
    eprintln!("the README block printed:\n{table}");
    assert!(
        printed
            .iter()
            .any(|l| l.contains(short) && l.contains(NODE)),
        "`agent workloads` has no row for container {short} on {NODE}:\n{table}"
    );

    // Each pod passes its probes as the manifests declare them: now, once
    // more, and on their schedules all along (a run of failures as long as
    // failureThreshold would have had the kubelet restart it).
    for pod in [&agent, &collector] {
        for probe in [&pod.run.liveness, &pod.run.readiness] {
            let probe = probe.as_ref().expect("both probes are declared");
            if let Err(why) = pod.probe_once(probe) {
                panic!("{}: {why}; logs:\n{}", pod.run.name, pod.logs());
            }
        }
        pod.assert_live();
    }

    // Its numbers: the stored windows against the workload's own counts.
    let windows = stored_windows(&data, &busy.id);
    let startup = stored_windows(&data, &idle.id);
    let fields: [(&str, Field); 5] = [
        ("mmap_calls", |c| c.mmap_calls),
        ("munmap_calls", |c| c.munmap_calls),
        ("brk_calls", |c| c.brk_calls),
        ("mremap_calls", |c| c.mremap_calls),
        ("madvise_calls", |c| c.madvise_calls),
    ];
    // runc's init (Go) runs in the container's first process before its
    // exec: the idle run measures what that adds (see containers.rs).
    const INIT_CALLS_SLACK: u64 = 8;
    for (name, field) in fields {
        let (got, own) = (summed(&windows, field), busy_report[name].as_u64().unwrap());
        let allowance = summed(&startup, field).saturating_sub(idle_report[name].as_u64().unwrap());
        assert!(own > 0, "the workload makes {name}");
        assert!(
            got >= own,
            "{name}: stored {got} < the workload's own {own}"
        );
        assert!(
            got <= own + allowance + INIT_CALLS_SLACK,
            "{name}: stored {got} > own {own} + start-up {allowance}"
        );
    }
    common::assert_within(
        "minor_faults",
        summed(&windows, |c| c.minor_faults) as f64,
        busy_report["minor_faults"].as_f64().unwrap(),
        0.01,
    );
    for w in &windows {
        assert_eq!(w.cgroup_path, format!("/docker/{}", busy.id));
    }
    let node_names: Vec<String> = common::daemons::stored_reports(&data)
        .iter()
        .filter_map(|r| r.node.as_ref().map(|n| n.node_name.clone()))
        .collect();
    assert!(
        !node_names.is_empty() && node_names.iter().all(|n| n == NODE),
        "reports name nodes {node_names:?}, not the downward API's {NODE}"
    );
    // The kubelet stops the agent with SIGTERM and its grace period.
    let code = agent.stop();
    assert_eq!(code, 0, "the agent's pod exited {code}:\n{}", agent.logs());
    eprintln!("{test}: {:.1} s", started.elapsed().as_secs_f64());
}

/// A field the translation does not know fails it, instead of being
/// dropped: here `hostUsers` (user namespaces), added to the agent's pod.
#[test]
fn an_untranslated_field_fails_the_translation() {
    let test = "an_untranslated_field_fails_the_translation";
    if !common::require("kubectl", test) {
        return;
    }
    let _serial = common::serial();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("pods-field"));
    fs::create_dir_all(&work).unwrap();
    let rendered = work.join("rendered.yaml");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join("deploy"))
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::write(&rendered, out.stdout).unwrap();
    let docs = yaml_documents(&rendered);
    let mut template = find(&docs, "DaemonSet", "tally-agent")["spec"]["template"].clone();
    template["spec"]["hostUsers"] = Value::Bool(false);
    let node = Node {
        name: NODE.into(),
        scratch: work.join("node"),
        secrets: BTreeMap::from([(
            "tally-collector-tls".to_owned(),
            BTreeMap::from([("ca.crt".to_owned(), b"x".to_vec())]),
        )]),
        ..Node::default()
    };
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        PodRun::translate(&template, &node, "tally-agent")
    }))
    .expect_err("hostUsers has no translation");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("spec.hostUsers"),
        "the failure names the field: {message}"
    );
}
