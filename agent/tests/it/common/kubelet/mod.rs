//! The kubelet's part, for a pod template of deploy/ run under podman: each
//! field of the pod spec becomes what the kubelet and the container runtime
//! would make of it (a `podman run` flag, a volume prepared on the node, a
//! probe run on schedule), and a field this file does not know fails the
//! test, so a field added to the manifests is either run here or said to be
//! beyond a single node.
//!
//! Why not `podman kube play` (podman 4.3, Debian 12's): with the Secrets
//! made by `podman kube play` of the Secret objects, it panics (a nil
//! pointer in `VolumeFromSecret`) on the pods' secret volumes; without
//! them it needs a pause image built from catatonit (seen here, both). It
//! also runs an httpGet probe as `curl` inside the container: the image is
//! `scratch`, so the collector's probes would fail where the kubelet's own
//! HTTP GET, from the node, passes. So each field is translated here, to
//! `podman run` (Debian's, 4.3, with runc).
//!
//! Why not dockerd: Debian's dockerd 20.10 refuses `--cap-add BPF` and
//! `PERFMON` ("unknown capability"): its list predates them. containerd
//! (what EKS runs) and podman know them.
//!
//! Service account tokens are the kubelet's too, where the test runs an
//! API server ([`Node::api`]): `automountServiceAccountToken` mounts the
//! token, `ca.crt` and `namespace` and sets `KUBERNETES_SERVICE_HOST` and
//! `_PORT`; a projected `serviceAccountToken` is a token the API server
//! issues for its audience, bound to the pod's node. Neither is rotated
//! (the kubelet renews at 80% of the lifetime; a test pod lives minutes).
//!
//! What no local runtime acts on is listed in [`CLUSTER_ONLY`] with why;
//! deploy.rs checks those fields against the API's schemas and checkov.

mod fields;
mod host;
mod pod;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{PermissionsExt as _, chown},
    path::PathBuf,
    time::Duration,
};

use serde_json::Value;

use crate::support::apiserver::API_AUDIENCE;
use fields::{at, bytes, millicores, object, quantity, string, uint, untranslatable};
pub use host::PODMAN;
use host::{bounding_set, capability_number, ulimits};
pub use pod::{Handler, Probe};

/// Pod-spec fields that only a cluster acts on (the scheduler, the API
/// server, the eviction manager), with why they are not run here.
pub const CLUSTER_ONLY: &[(&str, &str)] = &[
    (
        "spec.priorityClassName",
        "scheduling and eviction order: one node and no scheduler here",
    ),
    (
        "spec.tolerations",
        "taints are the scheduler's: the pod runs on this node anyway",
    ),
];

/// Where a pod's client finds its automounted token (client-go's and
/// kube's in-cluster config).
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The lifetime of the automounted token the kubelet requests.
const AUTOMOUNT_SECONDS: u64 = 3607;

/// The kubelet's TokenRequest: a token of service account `username`
/// (`system:serviceaccount:NS:NAME`), bound to a pod of this node, for an
/// audience, valid so many seconds.
pub type IssueToken = Box<dyn Fn(&str, &str, u64) -> String + Send + Sync>;

/// The API server the pods reach, and the TokenRequests the kubelet makes
/// of it.
pub struct ApiAccess {
    /// `KUBERNETES_SERVICE_HOST` and `_PORT`.
    pub host: String,
    pub port: u16,
    /// The cluster's CA, `ca.crt` beside the token.
    pub ca: Vec<u8>,
    /// The pods' namespace.
    pub namespace: String,
    pub issue: IssueToken,
}

impl std::fmt::Debug for ApiAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiAccess({}:{})", self.host, self.port)
    }
}

/// What the node offers the pod: its name, the objects the pod refers to
/// (Secrets, claims), and the Service names it resolves.
#[derive(Debug, Default)]
pub struct Node {
    pub name: String,
    /// Where volumes are prepared (secrets, emptyDirs).
    pub scratch: PathBuf,
    /// Secrets by name: key to bytes (`data`, decoded).
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// PersistentVolumeClaims by name: the host directory bound to each.
    pub claims: BTreeMap<String, PathBuf>,
    /// Cluster DNS names to addresses (`/etc/hosts` lines), for Services.
    pub hosts: Vec<(String, String)>,
    /// The owner label of the test containers (removed with the test).
    pub label: String,
    /// The API server, where the test runs one: without it no token is
    /// mounted, and the pods' clients fall back as where none is reachable.
    pub api: Option<ApiAccess>,
}

/// A pod template made into a `podman run`.
#[derive(Debug)]
pub struct PodRun {
    pub name: String,
    /// `podman run -d` arguments up to the image, the image, its args.
    args: Vec<String>,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    /// Container ports by name.
    pub ports: BTreeMap<String, u16>,
    /// Every field read, with what became of it (for the test's log).
    pub translated: Vec<String>,
}

/// The pod's volumes, prepared on the node: what `podman run` mounts for
/// each (`None` for an emptyDir in memory, mounted as a tmpfs).
enum Volume {
    Host { path: PathBuf, read_only: bool },
    Tmpfs { size: u64 },
}

impl PodRun {
    /// Translates `template` (a pod template: `metadata` and `spec`) for
    /// `node`.
    pub fn translate(template: &Value, node: &Node, name: &str) -> PodRun {
        let mut run = PodRun {
            name: name.to_owned(),
            args: [
                "run",
                "-d",
                // A read-only root is the manifest's alone: no tmpfs on
                // /tmp, /run and /var/tmp that a kubelet would not mount.
                "--read-only-tmpfs=false",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(ulimits())
            .chain([
                format!("--label={}", node.label),
                format!("--hostname={name}"),
            ])
            .collect(),
            liveness: None,
            readiness: None,
            ports: BTreeMap::new(),
            translated: Vec::new(),
        };
        for (k, v) in object(template, "template") {
            match k.as_str() {
                "metadata" => {
                    for (mk, mv) in object(v, "metadata") {
                        match mk.as_str() {
                            "labels" => {
                                for (lk, lv) in object(mv, "metadata.labels") {
                                    run.args.push(format!(
                                        "--label={lk}={}",
                                        string(lv, "metadata.labels")
                                    ));
                                }
                            }
                            _ => untranslatable(&at("metadata", mk), mv),
                        }
                    }
                }
                "spec" => run.spec(v, node),
                _ => untranslatable(k, v),
            }
        }
        run
    }

    fn note(&mut self, field: &str, became: impl std::fmt::Display) {
        self.translated.push(format!("{field}: {became}"));
    }

    /// A boolean field that maps to one flag when it has the value `when`.
    fn flag_if(&mut self, field: &str, v: &Value, when: bool, flag: &str) {
        if v.as_bool() == Some(when) {
            self.args.push(flag.to_owned());
            self.note(field, flag);
        }
    }

    fn spec(&mut self, spec: &Value, node: &Node) {
        let spec = object(spec, "spec");
        // The pod's security context first: volumes and the container
        // depend on its user and fsGroup.
        let mut fs_group = None;
        let mut run_as_non_root = false;
        let (mut uid, mut gid) = (0u64, 0u64);
        if let Some(sc) = spec.get("securityContext") {
            for (k, v) in object(sc, "spec.securityContext") {
                let path = at("spec.securityContext", k);
                match k.as_str() {
                    "runAsUser" => uid = uint(v, &path),
                    "runAsGroup" => gid = uint(v, &path),
                    "runAsNonRoot" => run_as_non_root = v.as_bool() == Some(true),
                    "fsGroup" => {
                        let g = uint(v, &path);
                        // The kubelet adds fsGroup to the container's
                        // groups and gives it the pod's writable volumes.
                        self.args.push(format!("--group-add={g}"));
                        self.note(&path, format!("--group-add={g}, volumes chgrp {g} g+rwxs"));
                        fs_group = Some(g as u32);
                    }
                    "seccompProfile" => self.seccomp(v, &path),
                    _ => untranslatable(&path, v),
                }
            }
        }
        let namespace = node
            .api
            .as_ref()
            .map_or("default", |a| a.namespace.as_str());
        let service_account = format!(
            "system:serviceaccount:{namespace}:{}",
            spec.get("serviceAccountName")
                .map_or("default".to_owned(), |v| string(
                    v,
                    "spec.serviceAccountName"
                ))
        );
        let containers = spec["containers"]
            .as_array()
            .expect("spec.containers is a list");
        assert_eq!(
            containers.len(),
            1,
            "one container a pod is what this translation runs (one `podman run`)"
        );
        let mut volumes = BTreeMap::new();
        for (k, v) in spec {
            let path = at("spec", k);
            match k.as_str() {
                "securityContext" | "containers" => {}
                "hostPID" => self.flag_if(&path, v, true, "--pid=host"),
                "hostNetwork" => self.flag_if(&path, v, true, "--network=host"),
                "hostIPC" => self.flag_if(&path, v, true, "--ipc=host"),
                "terminationGracePeriodSeconds" => {
                    let s = uint(v, &path);
                    self.args.push(format!("--stop-timeout={s}"));
                    self.note(&path, format!("--stop-timeout={s}"));
                }
                "volumes" => {
                    for vol in v.as_array().expect("spec.volumes is a list") {
                        let (name, prepared) = self.volume(vol, node, fs_group, &service_account);
                        volumes.insert(name, prepared);
                    }
                }
                "serviceAccountName" => self.note(&path, &service_account),
                "automountServiceAccountToken" => {
                    if v.as_bool() == Some(true) {
                        self.automount(node, &service_account);
                    }
                }
                _ if CLUSTER_ONLY.iter().any(|(f, _)| *f == path) => {
                    self.note(&path, "cluster only (not run here)");
                }
                _ => untranslatable(&path, v),
            }
        }
        let (user, image_and_args) = self.container(&containers[0], node, &volumes, uid, gid);
        if run_as_non_root {
            // The kubelet refuses to start a container that would run as
            // root under runAsNonRoot.
            assert_ne!(
                user, 0,
                "runAsNonRoot with uid 0: the kubelet would not start it"
            );
        }
        for (host, ip) in &node.hosts {
            self.args.push(format!("--add-host={host}:{ip}"));
        }
        self.args.extend(image_and_args);
    }

    /// The service account token as the kubelet automounts it, or a note
    /// that no API server is here.
    fn automount(&mut self, node: &Node, service_account: &str) {
        let field = "spec.automountServiceAccountToken";
        let Some(api) = &node.api else {
            self.note(
                field,
                "no API server here: no token is mounted, and the agent names containers from the runtime (its fallback)",
            );
            return;
        };
        let dir = node.scratch.join("serviceaccount");
        fs::create_dir_all(&dir).unwrap();
        let token = (api.issue)(service_account, API_AUDIENCE, AUTOMOUNT_SECONDS);
        for (file, bytes) in [
            ("token", token.as_bytes()),
            ("ca.crt", api.ca.as_slice()),
            ("namespace", api.namespace.as_bytes()),
        ] {
            let path = dir.join(file);
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
        self.args.extend([
            format!("--env=KUBERNETES_SERVICE_HOST={}", api.host),
            format!("--env=KUBERNETES_SERVICE_PORT={}", api.port),
            format!(
                "--mount=type=bind,source={},target={SERVICE_ACCOUNT_DIR},readonly,bind-propagation=rprivate",
                dir.display()
            ),
        ]);
        self.note(
            field,
            format!(
                "{service_account}'s token for {API_AUDIENCE}, ca.crt, namespace at {SERVICE_ACCOUNT_DIR}; KUBERNETES_SERVICE_HOST={}:{}",
                api.host, api.port
            ),
        );
    }

    /// A projected volume of service account tokens, each issued by the
    /// API server for its audience and lifetime.
    fn projected(
        &mut self,
        v: &Value,
        field: &str,
        name: &str,
        node: &Node,
        service_account: &str,
    ) -> Volume {
        let api = node
            .api
            .as_ref()
            .unwrap_or_else(|| panic!("{field}: a projected token needs the test's API server"));
        let dir = node.scratch.join("projected").join(name);
        fs::create_dir_all(&dir).unwrap();
        for (k, sources) in object(v, field) {
            if k != "sources" {
                untranslatable(&at(field, k), sources);
            }
            for source in sources.as_array().expect("sources is a list") {
                for (kind, t) in object(source, field) {
                    let at_kind = at(field, kind);
                    if kind != "serviceAccountToken" {
                        untranslatable(&at_kind, t);
                    }
                    let mut audience = API_AUDIENCE.to_owned();
                    let mut seconds = AUTOMOUNT_SECONDS;
                    let mut path = None;
                    for (tk, tv) in object(t, &at_kind) {
                        match tk.as_str() {
                            "audience" => audience = string(tv, &at_kind),
                            "expirationSeconds" => seconds = uint(tv, &at_kind),
                            "path" => path = Some(string(tv, &at_kind)),
                            _ => untranslatable(&at(&at_kind, tk), tv),
                        }
                    }
                    let path = path.unwrap_or_else(|| panic!("{at_kind} has no path"));
                    let token = (api.issue)(service_account, &audience, seconds);
                    let file = dir.join(&path);
                    fs::write(&file, token).unwrap();
                    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
                    self.note(
                        &at_kind,
                        format!(
                            "{service_account}'s token for {audience}, {seconds} s -> {}",
                            file.display()
                        ),
                    );
                }
            }
        }
        Volume::Host {
            path: dir,
            read_only: true,
        }
    }

    fn seccomp(&mut self, v: &Value, path: &str) {
        for (k, t) in object(v, path) {
            match (k.as_str(), t.as_str()) {
                // The runtime's default profile is RuntimeDefault.
                ("type", Some("RuntimeDefault")) => {
                    self.note(path, "podman's default seccomp profile")
                }
                ("type", Some("Unconfined")) => {
                    self.args.push("--security-opt=seccomp=unconfined".into());
                    self.note(path, "--security-opt=seccomp=unconfined");
                }
                _ => untranslatable(&at(path, k), t),
            }
        }
    }

    /// Prepares one volume on the node; its name and how it mounts.
    fn volume(
        &mut self,
        vol: &Value,
        node: &Node,
        fs_group: Option<u32>,
        service_account: &str,
    ) -> (String, Volume) {
        let name = string(&vol["name"], "spec.volumes[].name");
        let path = format!("spec.volumes[{name}]");
        let mut prepared = None;
        for (k, v) in object(vol, &path) {
            let field = at(&path, k);
            prepared = match k.as_str() {
                "name" => continue,
                "emptyDir" => {
                    let o = object(v, &field);
                    let size = o.get("sizeLimit").map(|q| bytes(&quantity(q)));
                    for k in o.keys() {
                        if k != "medium" && k != "sizeLimit" {
                            untranslatable(&at(&field, k), &o[k]);
                        }
                    }
                    match o.get("medium").and_then(Value::as_str) {
                        Some("Memory") => {
                            let size = size.unwrap_or(64 << 20);
                            self.note(&field, format!("tmpfs of {size} B"));
                            Some(Volume::Tmpfs { size })
                        }
                        None | Some("") => {
                            // On the node's disk, world-writable as the
                            // kubelet makes it; the sizeLimit is the
                            // eviction manager's.
                            let dir = node.scratch.join("emptydir").join(&name);
                            fs::create_dir_all(&dir).unwrap();
                            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
                            self.note(&field, format!("{} (0777)", dir.display()));
                            Some(Volume::Host {
                                path: dir,
                                read_only: false,
                            })
                        }
                        Some(other) => panic!("{field}.medium {other}: not translated"),
                    }
                }
                "hostPath" => {
                    let p = PathBuf::from(string(&v["path"], &field));
                    match v.get("type").and_then(Value::as_str) {
                        // The kubelet refuses to start the pod otherwise.
                        Some("Directory") => assert!(
                            p.is_dir(),
                            "{field}: {} is not a directory on this node",
                            p.display()
                        ),
                        None | Some("") => {}
                        Some(other) => panic!("{field}.type {other}: not translated"),
                    }
                    for k in object(v, &field).keys() {
                        if k != "path" && k != "type" {
                            untranslatable(&at(&field, k), &v[k]);
                        }
                    }
                    self.note(&field, p.display());
                    Some(Volume::Host {
                        path: p,
                        read_only: false,
                    })
                }
                "secret" => Some(self.secret(v, &field, &name, node)),
                "projected" => Some(self.projected(v, &field, &name, node, service_account)),
                "persistentVolumeClaim" => {
                    let claim = string(&v["claimName"], &field);
                    let dir = node
                        .claims
                        .get(&claim)
                        .unwrap_or_else(|| panic!("{field}: no volume bound to claim {claim}"))
                        .clone();
                    fs::create_dir_all(&dir).unwrap();
                    if let Some(g) = fs_group {
                        // fsGroup: the volume's group, setgid, group-writable.
                        chown(&dir, None, Some(g)).unwrap();
                        fs::set_permissions(&dir, fs::Permissions::from_mode(0o2775)).unwrap();
                    }
                    self.note(&field, dir.display());
                    Some(Volume::Host {
                        path: dir,
                        read_only: false,
                    })
                }
                _ => untranslatable(&field, v),
            };
        }
        (
            name.clone(),
            prepared.unwrap_or_else(|| panic!("{path} has no source")),
        )
    }

    /// A Secret's keys as files, mode 0644 (defaultMode), mounted read-only
    /// as the kubelet mounts every secret volume.
    fn secret(&mut self, v: &Value, field: &str, name: &str, node: &Node) -> Volume {
        let secret = string(&v["secretName"], field);
        let data = node
            .secrets
            .get(&secret)
            .unwrap_or_else(|| panic!("{field}: no Secret {secret} (the pod would not start)"));
        let dir = node.scratch.join("secrets").join(name);
        fs::create_dir_all(&dir).unwrap();
        let mut files: Vec<(String, String)> = Vec::new();
        match v.get("items") {
            Some(items) => {
                for item in items.as_array().expect("items is a list") {
                    let key = string(&item["key"], field);
                    let to = string(&item["path"], field);
                    files.push((key, to));
                }
            }
            None => files.extend(data.keys().map(|k| (k.clone(), k.clone()))),
        }
        for k in object(v, field).keys() {
            if k != "secretName" && k != "items" {
                untranslatable(&at(field, k), &v[k]);
            }
        }
        for (key, to) in &files {
            let bytes = data
                .get(key)
                .unwrap_or_else(|| panic!("{field}: Secret {secret} has no key {key}"));
            let file = dir.join(to);
            fs::write(&file, bytes).unwrap();
            fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        }
        self.note(field, format!("Secret {secret} -> {}", dir.display()));
        Volume::Host {
            path: dir,
            read_only: true,
        }
    }

    /// The container's fields; its uid and the image with its arguments.
    fn container(
        &mut self,
        c: &Value,
        node: &Node,
        volumes: &BTreeMap<String, Volume>,
        uid: u64,
        gid: u64,
    ) -> (u32, Vec<String>) {
        let mut image = None;
        let mut args: Vec<String> = Vec::new();
        // Ports first: probes name them.
        for p in c["ports"].as_array().into_iter().flatten() {
            assert_eq!(p["protocol"], "TCP", "containers[0].ports: {p}");
            let port = uint(&p["containerPort"], "containers[0].ports") as u16;
            self.ports
                .insert(string(&p["name"], "containers[0].ports"), port);
        }
        for (k, v) in object(c, "container") {
            let path = at("containers[0]", k);
            match k.as_str() {
                "name" => {
                    let n = string(v, &path);
                    self.args.push(format!("--name={}-{n}", self.name));
                }
                "image" => image = Some(string(v, &path)),
                "imagePullPolicy" => {
                    // No registry here: the image is the one `cargo xtask
                    // image` built into containers-storage.
                    self.args.push("--pull=never".into());
                    self.note(&path, format!("{v}: --pull=never (no registry here)"));
                }
                "args" => {
                    for a in v.as_array().expect("args is a list") {
                        args.push(string(a, &path));
                    }
                }
                "env" => {
                    for e in v.as_array().expect("env is a list") {
                        let n = string(&e["name"], &path);
                        let value = if let Some(s) = e.get("value") {
                            string(s, &path)
                        } else {
                            let field = e["valueFrom"]["fieldRef"]["fieldPath"]
                                .as_str()
                                .unwrap_or_else(|| untranslatable(&path, e));
                            match field {
                                "spec.nodeName" => node.name.clone(),
                                "metadata.name" => self.name.clone(),
                                _ => untranslatable(&path, e),
                            }
                        };
                        self.args.push(format!("--env={n}={value}"));
                    }
                }
                "ports" => {
                    for p in v.as_array().expect("ports is a list") {
                        for k in object(p, &path).keys() {
                            if !matches!(k.as_str(), "name" | "containerPort" | "protocol") {
                                untranslatable(&at(&path, k), &p[k]);
                            }
                        }
                    }
                }
                "securityContext" => self.container_security(v, &path),
                "resources" => self.resources(v, &path),
                "livenessProbe" => self.liveness = Some(self.probe(v, &path)),
                "readinessProbe" => self.readiness = Some(self.probe(v, &path)),
                "volumeMounts" => {
                    for m in v.as_array().expect("volumeMounts is a list") {
                        self.mount(m, &path, volumes);
                    }
                }
                _ => untranslatable(&path, v),
            }
        }
        self.args.push(format!("--user={uid}:{gid}"));
        let image = image.expect("the container has an image");
        let mut tail = vec![image];
        tail.extend(args);
        (uid as u32, tail)
    }

    fn container_security(&mut self, v: &Value, path: &str) {
        for (k, v) in object(v, path) {
            let field = at(path, k);
            match k.as_str() {
                "privileged" => self.flag_if(&field, v, true, "--privileged"),
                "allowPrivilegeEscalation" => {
                    self.flag_if(&field, v, false, "--security-opt=no-new-privileges")
                }
                "readOnlyRootFilesystem" => self.flag_if(&field, v, true, "--read-only"),
                "capabilities" => {
                    for (ck, cv) in object(v, &field) {
                        let flag = match ck.as_str() {
                            "drop" => "--cap-drop",
                            "add" => "--cap-add",
                            _ => untranslatable(&at(&field, ck), cv),
                        };
                        for cap in cv.as_array().expect("a list of capabilities") {
                            let cap = string(cap, &field);
                            if flag == "--cap-add" {
                                let n = capability_number(&cap)
                                    .unwrap_or_else(|| panic!("{field}: unknown capability {cap}"));
                                if bounding_set() & (1 << n) == 0 {
                                    // Said, not hidden: podman would drop it
                                    // silently.
                                    self.note(
                                        &field,
                                        format!("{cap} is not in this machine's bounding set: the pod runs without it"),
                                    );
                                    continue;
                                }
                            }
                            self.args.push(format!("{flag}={cap}"));
                        }
                    }
                    self.note(&field, v);
                }
                _ => untranslatable(&field, v),
            }
        }
    }

    fn resources(&mut self, v: &Value, path: &str) {
        for (k, r) in object(v, path) {
            for (res, q) in object(r, &at(path, k)) {
                let q = quantity(q);
                let flag = match (k.as_str(), res.as_str()) {
                    // cpu.shares as the kubelet sets them: 1024 a core.
                    ("requests", "cpu") => {
                        format!("--cpu-shares={}", (millicores(&q) * 1024 / 1000).max(2))
                    }
                    ("requests", "memory") => format!("--memory-reservation={}", bytes(&q)),
                    ("limits", "cpu") => format!("--cpus={}", millicores(&q) as f64 / 1000.0),
                    ("limits", "memory") => format!("--memory={}", bytes(&q)),
                    _ => untranslatable(&format!("{path}.{k}.{res}"), &Value::String(q)),
                };
                self.note(&format!("{path}.{k}.{res}"), &flag);
                self.args.push(flag);
            }
        }
    }

    fn probe(&mut self, v: &Value, path: &str) -> Probe {
        let mut p = Probe {
            handler: Handler::Exec(Vec::new()),
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
        };
        let mut handler = None;
        for (k, v) in object(v, path) {
            let field = at(path, k);
            match k.as_str() {
                "exec" => {
                    let argv = v["command"]
                        .as_array()
                        .unwrap_or_else(|| untranslatable(&field, v))
                        .iter()
                        .map(|a| string(a, &field))
                        .collect();
                    handler = Some(Handler::Exec(argv));
                }
                "httpGet" => {
                    let port = match &v["port"] {
                        Value::String(name) => *self
                            .ports
                            .get(name)
                            .unwrap_or_else(|| panic!("{field}: no container port named {name}")),
                        n => uint(n, &field) as u16,
                    };
                    for k in object(v, &field).keys() {
                        if k != "path" && k != "port" {
                            untranslatable(&at(&field, k), &v[k]);
                        }
                    }
                    handler = Some(Handler::HttpGet {
                        path: string(&v["path"], &field),
                        port,
                    });
                }
                "initialDelaySeconds" => p.initial_delay = Duration::from_secs(uint(v, &field)),
                "periodSeconds" => p.period = Duration::from_secs(uint(v, &field)),
                "timeoutSeconds" => p.timeout = Duration::from_secs(uint(v, &field)),
                "failureThreshold" => p.failure_threshold = uint(v, &field) as u32,
                _ => untranslatable(&field, v),
            }
        }
        p.handler = handler.unwrap_or_else(|| panic!("{path} has no handler"));
        self.note(path, format!("{:?} every {:?}", p.handler, p.period));
        p
    }

    fn mount(&mut self, m: &Value, path: &str, volumes: &BTreeMap<String, Volume>) {
        let name = string(&m["name"], path);
        let inside = string(&m["mountPath"], path);
        let read_only = m.get("readOnly").and_then(Value::as_bool) == Some(true);
        for k in object(m, path).keys() {
            if !matches!(
                k.as_str(),
                "name" | "mountPath" | "readOnly" | "recursiveReadOnly"
            ) {
                untranslatable(&at(path, k), &m[k]);
            }
        }
        match m.get("recursiveReadOnly").and_then(Value::as_str) {
            None | Some("Disabled") => {}
            // What the kubelet does where the runtime cannot: podman 4.3
            // has no recursive read-only bind, so read-only at the top.
            Some("IfPossible") => self.note(
                &format!("{path}[{name}].recursiveReadOnly"),
                "IfPossible: read-only, not recursive (podman 4.3 cannot)",
            ),
            Some(other) => untranslatable(
                &format!("{path}[{name}].recursiveReadOnly"),
                &Value::String(other.to_owned()),
            ),
        }
        let flag = match volumes
            .get(&name)
            .unwrap_or_else(|| panic!("{path}: no volume {name}"))
        {
            Volume::Tmpfs { size } => format!("--tmpfs={inside}:rw,size={size},mode=0777"),
            Volume::Host {
                path: host,
                read_only: volume_ro,
            } => {
                let ro = if read_only || *volume_ro {
                    ",readonly"
                } else {
                    ""
                };
                // rprivate, as the kubelet's default mountPropagation None.
                format!(
                    "--mount=type=bind,source={},target={inside}{ro},bind-propagation=rprivate",
                    host.display()
                )
            }
        };
        self.note(&format!("{path}[{name}]"), &flag);
        self.args.push(flag);
    }
}
