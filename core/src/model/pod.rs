//! What Tally keeps of a pod: names, a few labels, the owning workload,
//! QoS class, and each container's requests and limits. Reading them from
//! the API server is the node's (`tally_node::enrich::kube`).
use std::collections::BTreeMap;

use serde::Serialize;

/// The labels kept: the ones people name their services by. Every other
/// label stays in the API server (reports stay small).
pub const KEPT_LABELS: [&str; 5] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app",
];

/// The workload that owns a pod, at the top of its owner chain
/// (`Deployment` rather than its `ReplicaSet`, `CronJob` rather than its
/// `Job`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// One container's requests and limits, as the scheduler and the kubelet
/// see them (`status.containerStatuses[].resources` after an in-place
/// resize, else the spec). `None` where not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Resources {
    pub cpu_request_millicores: Option<u64>,
    pub cpu_limit_millicores: Option<u64>,
    pub memory_request_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
}

/// Where the metadata came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The pods of this node, watched through the API server.
    ApiServer,
    /// The container runtime's own record of the container (containerd's or
    /// CRI-O's OCI config): names only, used while the API server is out of
    /// reach.
    Runtime,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::ApiServer => "api-server",
            Source::Runtime => "runtime",
        }
    }
}

/// The Kubernetes names of the container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PodInfo {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    /// The container's name in the pod spec; `None` when the process could
    /// be placed in the pod but not in one of its containers.
    pub container: Option<String>,
    /// The [`KEPT_LABELS`] the pod has.
    pub labels: BTreeMap<String, String>,
    pub owner: Option<Owner>,
    /// `Guaranteed`, `Burstable` or `BestEffort` (the API's spelling).
    pub qos_class: Option<String>,
    pub resources: Resources,
    pub source: Source,
}

impl PodInfo {
    /// `app.kubernetes.io/name`, else `app`.
    pub fn app(&self) -> Option<&str> {
        self.labels
            .get("app.kubernetes.io/name")
            .or_else(|| self.labels.get("app"))
            .map(String::as_str)
    }

    /// `namespace/pod/container` (or `namespace/pod`).
    pub fn display_name(&self) -> String {
        match &self.container {
            Some(c) => format!("{}/{}/{c}", self.namespace, self.pod),
            None => format!("{}/{}", self.namespace, self.pod),
        }
    }
}
