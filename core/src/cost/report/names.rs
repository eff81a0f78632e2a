//! What the report calls a workload, and which workloads no team can act
//! on. The store's key (`container/<id>`, `process/<node>/<pid>/<ticks>`)
//! is stable but means nothing to the workload's owners; they know it as
//! a pod's container, a container running some program, or a program.
use serde::Serialize;
use tally_proto as pb;

use crate::{gc::Runtime, workload::WorkloadId};

/// The comm names Tally's own binary runs under: it is built and installed
/// as `agent` (Cargo, the Dockerfile's `/agent`), and deployments may
/// rename it.
const TALLY_COMMS: [&str; 3] = ["agent", "tally-agent", "tally-collector"];
/// The `app.kubernetes.io/name` labels of Tally's own pods (deploy/).
const TALLY_APPS: [&str; 2] = ["tally-agent", "tally-collector"];
/// Their namespace and container names (deploy/).
const TALLY_NAMESPACE: &str = "tally";
const TALLY_CONTAINERS: [&str; 2] = ["agent", "collector"];

/// Why a workload is grouped as "system" rather than ranked and advised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SystemKind {
    /// The kernel's own threads (`rcu_preempt`, `kworker/…`): no team
    /// owns them and no setting of theirs is a team's to change.
    KernelThread,
    /// The Tally agent or collector: what observing costs.
    Tally,
}

impl SystemKind {
    pub fn name(self) -> &'static str {
        match self {
            SystemKind::KernelThread => "kernel threads",
            SystemKind::Tally => "Tally",
        }
    }
}

/// The store's key: unique and stable, for machines.
pub fn key(w: &pb::Workload) -> String {
    w.key
        .as_ref()
        .and_then(WorkloadId::from_proto)
        .map_or_else(|| w.name.clone(), |id| id.to_string())
}

/// The name its owners know it by: `namespace/pod/container` where the
/// pod is known; else the program and its container
/// (`churn-go (container 0123456789ab)`, 12 digits as docker shows them);
/// else the program and its pid (`churn-go (pid 24965)`).
pub fn display_name(w: &pb::Workload) -> String {
    if let Some(pod) = w.pod.as_ref().filter(|p| !p.pod_name.is_empty()) {
        let mut name = if pod.namespace.is_empty() {
            pod.pod_name.clone()
        } else {
            format!("{}/{}", pod.namespace, pod.pod_name)
        };
        if !pod.container_name.is_empty() {
            name.push('/');
            name.push_str(&pod.container_name);
        }
        return name;
    }
    let program = if w.name.is_empty() { "?" } else { &w.name };
    match w.key.as_ref().and_then(WorkloadId::from_proto) {
        Some(WorkloadId::Container(id)) => {
            let short: String = id.chars().take(12).collect();
            format!("{program} (container {short})")
        }
        Some(WorkloadId::Process { pid, .. }) => format!("{program} (pid {pid})"),
        None => program.to_string(),
    }
}

/// Whether the workload is one no team acts on, and which kind.
///
/// A kernel thread is told by what the kernel gives it: no executable
/// (the agent's runtime detection reads none, so the runtime is unknown)
/// and no memory of its own (RSS zero throughout, `rss_peak_bytes`), in no
/// container and no pod. Tally is told in a pod by its deployment's label
/// (or, with names from the container runtime alone, its namespace and
/// container), outside one by its binary's name and its being native code:
/// other programs called `agent` (Datadog's is Go) stay their teams'.
pub fn system_kind(w: &pb::Workload, runtime: Runtime, rss_peak_bytes: u64) -> Option<SystemKind> {
    let id = w.key.as_ref().and_then(WorkloadId::from_proto);
    if let Some(pod) = w.pod.as_ref() {
        let app = pod.labels.get("app.kubernetes.io/name").map(String::as_str);
        let tally = app.is_some_and(|a| TALLY_APPS.contains(&a))
            || (pod.namespace == TALLY_NAMESPACE
                && TALLY_CONTAINERS.contains(&pod.container_name.as_str()));
        return tally.then_some(SystemKind::Tally);
    }
    if runtime == Runtime::Native && TALLY_COMMS.contains(&w.name.as_str()) {
        return Some(SystemKind::Tally);
    }
    let is_process = matches!(id, Some(WorkloadId::Process { .. }));
    (is_process && runtime == Runtime::Unknown && rss_peak_bytes == 0)
        .then_some(SystemKind::KernelThread)
}
