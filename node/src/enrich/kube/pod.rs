//! What Tally keeps of a pod: names, a few labels, the owning workload,
//! QoS class, and each container's requests and limits (pure logic).
use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::core::v1::{Pod, ResourceRequirements},
    apimachinery::pkg::api::resource::Quantity,
};
pub use tally_core::model::pod::{KEPT_LABELS, Owner, PodInfo, Resources, Source};

/// A pod's direct controller, before the owner chain is followed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
}

/// One pod, read: its pod-level metadata and one entry per container.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPod {
    /// Pod-level metadata (`container: None`); `owner` is the direct
    /// controller until [`ParsedPod::set_owner`] resolves the chain.
    pub pod: PodInfo,
    pub controller: Option<OwnerRef>,
    /// The `pod-template-hash` label (Deployments' ReplicaSets), which names
    /// the Deployment when its ReplicaSet cannot be read.
    pub template_hash: Option<String>,
    /// Every container of the spec (init, regular, ephemeral), by name, with
    /// the runtime's id once the kubelet reported one.
    pub containers: Vec<ParsedContainer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParsedContainer {
    /// 64-hex id without the `containerd://` or `cri-o://` scheme.
    pub id: Option<String>,
    /// True for `spec.containers` (not init or ephemeral ones).
    pub regular: bool,
    pub info: Arc<PodInfo>,
}

impl ParsedPod {
    /// Sets the owning workload on the pod and every container.
    pub fn set_owner(&mut self, owner: Option<Owner>) {
        self.pod.owner = owner;
        for c in &mut self.containers {
            Arc::make_mut(&mut c.info).owner = self.pod.owner.clone();
        }
    }

    /// The only regular container, when there is exactly one: a process of
    /// the pod whose container id the kubelet has not reported yet belongs
    /// to it.
    pub fn sole_container(&self) -> Option<&Arc<PodInfo>> {
        let mut regular = self.containers.iter().filter(|c| c.regular);
        match (regular.next(), regular.next()) {
            (Some(c), None) => Some(&c.info),
            _ => None,
        }
    }
}

/// Strips the runtime scheme of a `containerID` (`containerd://<id>`,
/// `cri-o://<id>`, `docker://<id>`).
pub fn container_id(status_id: &str) -> Option<&str> {
    let id = status_id.split_once("://").map_or(status_id, |(_, id)| id);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Reads a pod. `None` for a pod without a name, namespace or UID.
pub fn parse(pod: &Pod) -> Option<ParsedPod> {
    let meta = &pod.metadata;
    let namespace = meta.namespace.clone().filter(|s| !s.is_empty())?;
    let name = meta.name.clone().filter(|s| !s.is_empty())?;
    let uid = meta.uid.clone().filter(|s| !s.is_empty())?;
    let all_labels = meta.labels.clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = KEPT_LABELS
        .iter()
        .filter_map(|k| all_labels.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    let controller = refs
        .iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())
        .map(|r| OwnerRef {
            kind: r.kind.clone(),
            name: r.name.clone(),
        });
    let status = pod.status.as_ref();
    let base = PodInfo {
        namespace,
        pod: name,
        pod_uid: uid,
        container: None,
        labels,
        owner: controller.as_ref().map(|c| Owner {
            kind: c.kind.clone(),
            name: c.name.clone(),
        }),
        qos_class: status.and_then(|s| s.qos_class.clone()),
        resources: Resources::default(),
        source: Source::ApiServer,
    };

    let mut containers = Vec::new();
    let spec = pod.spec.as_ref();
    let mut add = |name: &str, regular: bool, spec_resources: Option<&ResourceRequirements>| {
        let statuses = status.into_iter().flat_map(|s| {
            [
                s.container_statuses.as_deref(),
                s.init_container_statuses.as_deref(),
                s.ephemeral_container_statuses.as_deref(),
            ]
            .into_iter()
            .flatten()
            .flatten()
        });
        let found = statuses.into_iter().find(|s| s.name == name);
        let resources = found
            .and_then(|s| s.resources.as_ref())
            .or(spec_resources)
            .map(resources)
            .unwrap_or_default();
        let id = found
            .and_then(|s| s.container_id.as_deref())
            .and_then(container_id)
            .map(str::to_owned);
        containers.push(ParsedContainer {
            id,
            regular,
            info: Arc::new(PodInfo {
                container: Some(name.to_owned()),
                resources,
                ..base.clone()
            }),
        });
    };
    if let Some(spec) = spec {
        for c in &spec.containers {
            add(&c.name, true, c.resources.as_ref());
        }
        for c in spec.init_containers.iter().flatten() {
            add(&c.name, false, c.resources.as_ref());
        }
        for c in spec.ephemeral_containers.iter().flatten() {
            add(&c.name, false, c.resources.as_ref());
        }
    }
    Some(ParsedPod {
        pod: base,
        controller,
        template_hash: all_labels.get("pod-template-hash").cloned(),
        containers,
    })
}

fn resources(r: &ResourceRequirements) -> Resources {
    let get = |m: &Option<BTreeMap<String, Quantity>>, key: &str| {
        m.as_ref()
            .and_then(|m| m.get(key))
            .and_then(|q| parse_quantity(&q.0))
    };
    let millis = |v: Option<f64>| v.map(|v| (v * 1000.0).ceil() as u64);
    let bytes = |v: Option<f64>| v.map(|v| v.ceil() as u64);
    Resources {
        cpu_request_millicores: millis(get(&r.requests, "cpu")),
        cpu_limit_millicores: millis(get(&r.limits, "cpu")),
        memory_request_bytes: bytes(get(&r.requests, "memory")),
        memory_limit_bytes: bytes(get(&r.limits, "memory")),
    }
}

/// Parses a Kubernetes quantity (`100m`, `1.5`, `512Mi`, `1G`, `2e3`) into
/// base units (cores, bytes). `None` for anything else, or a negative one.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let v: f64 = num.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let v = v * factor;
    (v.is_finite() && v >= 0.0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT_POD: &str = include_str!("testdata/pod-deployment.json");

    #[test]
    fn quantities() {
        let cases = [
            ("100m", 0.1),
            ("1", 1.0),
            ("1.5", 1.5),
            ("250m", 0.25),
            ("512Mi", 512.0 * 1024.0 * 1024.0),
            ("1Gi", 1024.0 * 1024.0 * 1024.0),
            ("1G", 1e9),
            ("128974848", 128_974_848.0),
            ("129e6", 129e6),
            ("2E3", 2000.0),
            ("500k", 5e5),
            ("0", 0.0),
        ];
        for (s, want) in cases {
            let got = parse_quantity(s).unwrap_or_else(|| panic!("{s}"));
            assert!((got - want).abs() < 1e-6 * want.max(1.0), "{s}: {got}");
        }
        for bad in ["", "Mi", "1Xi", "-1", "abc", "1e", "1.2.3"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn container_ids_lose_their_scheme() {
        let id = "a".repeat(64);
        assert_eq!(container_id(&format!("containerd://{id}")), Some(&id[..]));
        assert_eq!(container_id(&format!("cri-o://{id}")), Some(&id[..]));
        assert_eq!(container_id(&id), Some(&id[..]));
        assert_eq!(container_id("containerd://abc"), None);
        assert_eq!(container_id(""), None);
    }

    /// A pod in the API server's JSON (every field `kubectl get -o json`
    /// prints for a running pod): a Deployment's pod with an app container
    /// and a finished init container.
    #[test]
    fn a_deployment_pod_is_read_whole() {
        let pod: Pod = serde_json::from_str(DEPLOYMENT_POD).unwrap();
        let p = parse(&pod).unwrap();
        assert_eq!(p.pod.namespace, "shop");
        assert_eq!(p.pod.pod, "checkout-7d4b9c8f6d-x2x7k");
        assert_eq!(p.pod.pod_uid, "3f1c2a7e-5b6d-4c8e-9f0a-1b2c3d4e5f60");
        assert_eq!(p.pod.qos_class.as_deref(), Some("Burstable"));
        assert_eq!(p.pod.app(), Some("checkout"));
        assert_eq!(p.pod.labels.len(), 3, "{:?}", p.pod.labels);
        assert!(!p.pod.labels.contains_key("pod-template-hash"));
        assert_eq!(
            p.controller,
            Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: "checkout-7d4b9c8f6d".into()
            })
        );
        assert_eq!(p.template_hash.as_deref(), Some("7d4b9c8f6d"));
        assert_eq!(p.containers.len(), 2);
        let app = &p.containers[0];
        assert!(app.regular);
        assert_eq!(
            app.id.as_deref(),
            Some("9b1e4c2d7a3f5e6b8c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b")
        );
        assert_eq!(app.info.container.as_deref(), Some("checkout"));
        assert_eq!(
            app.info.resources,
            Resources {
                cpu_request_millicores: Some(250),
                cpu_limit_millicores: Some(1000),
                memory_request_bytes: Some(256 << 20),
                memory_limit_bytes: Some(512 << 20),
            }
        );
        let init = &p.containers[1];
        assert!(!init.regular);
        assert_eq!(init.info.container.as_deref(), Some("migrate"));
        assert_eq!(init.info.resources, Resources::default());
        assert_eq!(p.sole_container(), Some(&app.info));
    }

    #[test]
    fn owner_is_set_everywhere() {
        let pod: Pod = serde_json::from_str(DEPLOYMENT_POD).unwrap();
        let mut p = parse(&pod).unwrap();
        let owner = Owner {
            kind: "Deployment".into(),
            name: "checkout".into(),
        };
        p.set_owner(Some(owner.clone()));
        assert_eq!(p.pod.owner.as_ref(), Some(&owner));
        assert!(
            p.containers
                .iter()
                .all(|c| c.info.owner.as_ref() == Some(&owner))
        );
        assert_eq!(
            p.containers[0].info.display_name(),
            "shop/checkout-7d4b9c8f6d-x2x7k/checkout"
        );
    }

    #[test]
    fn a_pending_pod_has_containers_without_ids() {
        let mut pod: Pod = serde_json::from_str(DEPLOYMENT_POD).unwrap();
        pod.status = None;
        let p = parse(&pod).unwrap();
        assert!(p.containers.iter().all(|c| c.id.is_none()));
        assert_eq!(p.pod.qos_class, None);
        // Requests and limits still come from the spec.
        assert_eq!(
            p.containers[0].info.resources.cpu_request_millicores,
            Some(250)
        );
    }

    #[test]
    fn a_pod_without_identity_is_skipped() {
        let mut pod: Pod = serde_json::from_str(DEPLOYMENT_POD).unwrap();
        pod.metadata.uid = None;
        assert!(parse(&pod).is_none());
    }
}
