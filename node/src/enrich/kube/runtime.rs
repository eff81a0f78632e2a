//! The fallback while the API server is out of reach: the pod and container
//! names the kubelet gave the container runtime, read from the container's
//! OCI runtime config (`config.json`) without the CRI socket.
//!
//! | runtime | file | keys |
//! | --- | --- | --- |
//! | containerd (CRI plugin) | `/run/containerd/io.containerd.runtime.v2.task/k8s.io/<id>/config.json` | annotations `io.kubernetes.cri.sandbox-namespace`, `…sandbox-name`, `…sandbox-uid`, `…container-name` |
//! | CRI-O | `/var/lib/containers/storage/overlay-containers/<id>/userdata/config.json` (or under `/run/containers/storage`) | annotation `io.kubernetes.cri-o.Labels` (JSON: `io.kubernetes.pod.namespace`, `…pod.name`, `…pod.uid`, `io.kubernetes.container.name`), or the same keys as plain annotations |
//!
//! Each path is tried under `/` and then under `/proc/1/root` (the host's
//! root, for an agent in a pod with `hostPID`). Only names come from here:
//! no owner, labels, QoS or resources.
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use super::pod::{PodInfo, Resources, Source};
use tally_core::model::container::Runtime;

/// Where a container's config is kept, relative to a root.
fn candidates(runtime: Runtime, id: &str) -> Vec<PathBuf> {
    match runtime {
        Runtime::Containerd => vec![PathBuf::from(format!(
            "run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json"
        ))],
        Runtime::CriO => vec![
            PathBuf::from(format!(
                "var/lib/containers/storage/overlay-containers/{id}/userdata/config.json"
            )),
            PathBuf::from(format!(
                "run/containers/storage/overlay-containers/{id}/userdata/config.json"
            )),
        ],
        Runtime::Docker | Runtime::Podman => Vec::new(),
    }
}

/// Reads the names out of an OCI config's annotations.
pub fn parse_config(json: &[u8]) -> Option<PodInfo> {
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let spec: Spec = serde_json::from_slice(json).ok()?;
    let a = &spec.annotations;
    // CRI-O keeps the kubelet's container labels as a JSON object.
    let crio_labels: BTreeMap<String, String> = a
        .get("io.kubernetes.cri-o.Labels")
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| a.get(*k).or_else(|| crio_labels.get(*k)))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    // A pod's sandbox (pause) container is not a workload.
    if a.get("io.kubernetes.cri.container-type")
        .is_some_and(|t| t == "sandbox")
        || a.get("io.kubernetes.cri-o.ContainerType")
            .is_some_and(|t| t == "sandbox")
    {
        return None;
    }
    Some(PodInfo {
        namespace: get(&[
            "io.kubernetes.cri.sandbox-namespace",
            "io.kubernetes.pod.namespace",
        ])?,
        pod: get(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"])?,
        pod_uid: get(&["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"])
            .unwrap_or_default(),
        container: get(&[
            "io.kubernetes.cri.container-name",
            "io.kubernetes.container.name",
        ]),
        labels: BTreeMap::new(),
        owner: None,
        qos_class: None,
        resources: Resources::default(),
        source: Source::Runtime,
    })
}

/// How long a container whose config could not be read is left alone
/// before the next try.
const RETRY_MISS: Duration = Duration::from_secs(30);
/// Entries kept; past it the cache starts again (containers come and go).
const MAX_CACHED: usize = 8192;

/// Cached reads of runtime configs.
#[derive(Debug)]
pub struct RuntimeLabels {
    roots: Vec<PathBuf>,
    cache: HashMap<String, (Option<Arc<PodInfo>>, Instant)>,
}

impl Default for RuntimeLabels {
    fn default() -> Self {
        Self::new(vec![PathBuf::from("/"), PathBuf::from("/proc/1/root")])
    }
}

impl RuntimeLabels {
    /// Looks for configs under each of `roots`, in order.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self {
            roots,
            cache: HashMap::new(),
        }
    }

    /// The names of container `id`, if its runtime keeps them.
    pub fn lookup(&mut self, runtime: Runtime, id: &str) -> Option<Arc<PodInfo>> {
        if let Some((info, at)) = self.cache.get(id)
            && (info.is_some() || at.elapsed() < RETRY_MISS)
        {
            return info.clone();
        }
        let info = self.read(runtime, id).map(Arc::new);
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache
            .insert(id.to_owned(), (info.clone(), Instant::now()));
        info
    }

    fn read(&self, runtime: Runtime, id: &str) -> Option<PodInfo> {
        let rels = candidates(runtime, id);
        self.roots.iter().find_map(|root| {
            rels.iter().find_map(|rel| {
                let bytes = std::fs::read(root.join(rel)).ok()?;
                parse_config(&bytes)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTAINERD: &str = include_str!("testdata/containerd-config.json");
    const CRIO: &str = include_str!("testdata/crio-config.json");
    const ID: &str = "5c2d9b0e7f1a3c4b6d8e0f2a4c6e8a0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a1c";

    #[test]
    fn containerd_cri_annotations() {
        let p = parse_config(CONTAINERD.as_bytes()).unwrap();
        assert_eq!(p.namespace, "shop");
        assert_eq!(p.pod, "checkout-7d4b9c8f6d-x2x7k");
        assert_eq!(p.pod_uid, "3f1c2a7e-5b6d-4c8e-9f0a-1b2c3d4e5f60");
        assert_eq!(p.container.as_deref(), Some("checkout"));
        assert_eq!(p.source, Source::Runtime);
        assert_eq!(p.owner, None);
    }

    #[test]
    fn crio_labels_annotation() {
        let p = parse_config(CRIO.as_bytes()).unwrap();
        assert_eq!(p.namespace, "billing");
        assert_eq!(p.pod, "ledger-0");
        assert_eq!(p.pod_uid, "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d");
        assert_eq!(p.container.as_deref(), Some("ledger"));
    }

    #[test]
    fn sandboxes_and_strangers_are_not_containers() {
        let sandbox = CONTAINERD.replace(
            "\"io.kubernetes.cri.container-type\": \"container\"",
            "\"io.kubernetes.cri.container-type\": \"sandbox\"",
        );
        assert!(parse_config(sandbox.as_bytes()).is_none());
        assert!(parse_config(br#"{"ociVersion":"1.2.0","annotations":{}}"#).is_none());
        assert!(parse_config(b"{}").is_none());
        assert!(parse_config(b"not json").is_none());
    }

    #[test]
    fn files_are_found_under_a_host_root_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        let rel = format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}");
        std::fs::create_dir_all(host.join(&rel)).unwrap();
        let file = host.join(&rel).join("config.json");
        std::fs::write(&file, CONTAINERD).unwrap();
        let mut labels = RuntimeLabels::new(vec![dir.path().join("empty"), host.clone()]);
        let got = labels.lookup(Runtime::Containerd, ID).unwrap();
        assert_eq!(got.container.as_deref(), Some("checkout"));
        std::fs::remove_file(&file).unwrap();
        assert!(labels.lookup(Runtime::Containerd, ID).is_some(), "cached");
        assert!(labels.lookup(Runtime::CriO, &"0".repeat(64)).is_none());
        assert!(labels.lookup(Runtime::Docker, &"1".repeat(64)).is_none());
    }
}
