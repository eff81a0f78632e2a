//! Resource attributes, named by the OpenTelemetry semantic conventions, and
//! the Prometheus labels made from them (dots become underscores, as the
//! OpenTelemetry Collector's Prometheus exporter does).
//!
//! | attribute | from |
//! | --- | --- |
//! | `host.name` | the kernel's host name |
//! | `k8s.node.name` | the node name (`--node-name`, `$NODE_NAME`) when running in Kubernetes (`$KUBERNETES_SERVICE_HOST` set) |
//! | `cloud.provider`, `cloud.region`, `cloud.availability_zone`, `host.type` | the node identity (EC2: `aws`, region, zone, instance type), where known |
//! | `process.pid`, `process.executable.name` | the process (pid, comm) |
//! | `container.id`, `container.runtime` | the cgroup path |
//! | `k8s.pod.uid` | the cgroup path (kubepods) |
//! | `k8s.namespace.name`, `k8s.pod.name`, `k8s.container.name` | Kubernetes metadata (`Window::pod`, from `enrich::kube`), when the agent has it |
//! | `k8s.deployment.name`, `k8s.statefulset.name`, `k8s.daemonset.name`, `k8s.job.name`, `k8s.cronjob.name`, `k8s.replicaset.name` | the pod's owner, likewise |
use tally_core::model::{ContainerWindow, NodeIdentity, PodInfo, Window};

/// The node's attributes: on every resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAttrs {
    pub host_name: String,
    pub k8s_node_name: Option<String>,
    pub cloud_provider: Option<String>,
    pub cloud_region: Option<String>,
    pub cloud_availability_zone: Option<String>,
    pub host_type: Option<String>,
}

impl NodeAttrs {
    pub fn from_identity(node: &NodeIdentity) -> Self {
        // `enrich::node` says "unknown" once every source failed: no
        // attribute then, rather than a value that groups unrelated nodes.
        let known = |s: &str| !s.is_empty() && s != tally_core::model::node::UNKNOWN;
        let non_empty = |s: &str| known(s).then(|| s.to_owned());
        let in_kubernetes = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let cloud = [&node.instance_type, &node.zone, &node.region]
            .iter()
            .any(|s| known(s));
        Self {
            host_name: host_name(),
            k8s_node_name: in_kubernetes.then(|| non_empty(&node.node_name)).flatten(),
            // The node identity is EC2's (instance type, zone, region).
            cloud_provider: cloud.then(|| "aws".to_owned()),
            cloud_region: non_empty(&node.region),
            cloud_availability_zone: non_empty(&node.zone),
            host_type: non_empty(&node.instance_type),
        }
    }

    /// `(semantic-convention key, value)` of every attribute that is set.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("host.name", self.host_name.as_str())];
        let opt = [
            ("k8s.node.name", &self.k8s_node_name),
            ("cloud.provider", &self.cloud_provider),
            ("cloud.region", &self.cloud_region),
            ("cloud.availability_zone", &self.cloud_availability_zone),
            ("host.type", &self.host_type),
        ];
        out.extend(
            opt.into_iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (k, v))),
        );
        out
    }
}

/// A process's or a container's own attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityAttrs {
    /// 0 for a container.
    pub pid: u32,
    /// The process's comm; empty for a container.
    pub executable: String,
    pub container_id: Option<String>,
    pub container_runtime: Option<&'static str>,
    pub pod_uid: Option<String>,
    pub namespace: Option<String>,
    pub pod_name: Option<String>,
    pub container_name: Option<String>,
    /// The pod's owner: `(k8s.<kind>.name, name)`.
    pub owner: Option<(&'static str, String)>,
}

impl EntityAttrs {
    /// `(semantic-convention key, value)` of every attribute that is set;
    /// the pid as text.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(8);
        if self.pid != 0 {
            out.push(("process.pid", self.pid.to_string()));
            out.push(("process.executable.name", self.executable.clone()));
        }
        let opt = [
            ("container.id", &self.container_id),
            ("k8s.pod.uid", &self.pod_uid),
            ("k8s.namespace.name", &self.namespace),
            ("k8s.pod.name", &self.pod_name),
            ("k8s.container.name", &self.container_name),
        ];
        out.extend(
            opt.into_iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k, v))),
        );
        if let Some((key, name)) = &self.owner {
            out.push((key, name.clone()));
        }
        if let Some(r) = self.container_runtime {
            out.push(("container.runtime", r.to_owned()));
        }
        out
    }

    /// Fills the Kubernetes names from the pod's metadata.
    fn set_pod(&mut self, pod: Option<&PodInfo>) {
        let Some(p) = pod else { return };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        self.namespace = non_empty(&p.namespace);
        self.pod_name = non_empty(&p.pod);
        self.container_name = p.container.clone();
        if self.pod_uid.is_none() {
            self.pod_uid = non_empty(&p.pod_uid);
        }
        self.owner = p
            .owner
            .as_ref()
            .and_then(|o| owner_key(&o.kind).map(|k| (k, o.name.clone())));
    }
}

/// The semantic-convention key of an owner's name.
pub fn owner_key(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Deployment" => "k8s.deployment.name",
        "StatefulSet" => "k8s.statefulset.name",
        "DaemonSet" => "k8s.daemonset.name",
        "ReplicaSet" => "k8s.replicaset.name",
        "Job" => "k8s.job.name",
        "CronJob" => "k8s.cronjob.name",
        _ => return None,
    })
}

/// The attributes of a process's series.
pub fn process(w: &Window) -> EntityAttrs {
    let container = w.cgroup.as_ref().and_then(|c| c.container.as_ref());
    let mut attrs = EntityAttrs {
        pid: w.key.tgid,
        executable: w.comm.clone(),
        container_id: container.map(|c| c.id.clone()),
        container_runtime: container.map(|c| container_runtime(c.runtime)),
        pod_uid: container.and_then(|c| c.pod_uid.clone()),
        ..Default::default()
    };
    attrs.set_pod(w.pod.as_deref());
    attrs
}

/// The attributes of a process as a collector received it (its window in
/// an agent's report, and its pod from the report's table).
pub fn received_process(
    p: &tally_proto::received::ProcessView,
    pod: Option<&tally_proto::PodMetadata>,
) -> EntityAttrs {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let cgroup = text(&p.cgroup_path);
    let container = tally_core::model::container::parse(&cgroup);
    let mut attrs = EntityAttrs {
        pid: p.key.unwrap_or_default().pid,
        executable: text(&p.comm),
        container_id: non_empty(&text(&p.container_id))
            .or_else(|| container.as_ref().map(|c| c.id.clone())),
        container_runtime: container.as_ref().map(|c| container_runtime(c.runtime)),
        pod_uid: container.and_then(|c| c.pod_uid),
        ..Default::default()
    };
    if let Some(pod) = pod {
        attrs.namespace = non_empty(&pod.namespace);
        attrs.pod_name = non_empty(&pod.pod_name);
        attrs.container_name = non_empty(&pod.container_name);
        if let Some(uid) = non_empty(&pod.pod_uid) {
            attrs.pod_uid = Some(uid);
        }
        attrs.owner = owner_key(&pod.owner_kind).map(|k| (k, pod.owner_name.clone()));
    }
    attrs
}

/// The node attributes of a node as its reports name it (on a collector,
/// `host.name` is the node's name, not the collector's host; the report
/// does not say whether that is a Kubernetes node name, so no
/// `k8s.node.name`).
pub fn received_node(node: &tally_proto::NodeIdentity) -> NodeAttrs {
    let non_empty =
        |s: &str| (!s.is_empty() && s != tally_core::model::node::UNKNOWN).then(|| s.to_owned());
    let cloud = [&node.instance_type, &node.zone, &node.region]
        .iter()
        .any(|s| non_empty(s).is_some());
    NodeAttrs {
        host_name: node.node_name.clone(),
        k8s_node_name: None,
        cloud_provider: cloud.then(|| "aws".to_owned()),
        cloud_region: non_empty(&node.region),
        cloud_availability_zone: non_empty(&node.zone),
        host_type: non_empty(&node.instance_type),
    }
}

/// The attributes of a container's series.
pub fn container(c: &ContainerWindow) -> EntityAttrs {
    let mut attrs = EntityAttrs {
        container_id: Some(c.container.id.clone()),
        container_runtime: Some(container_runtime(c.container.runtime)),
        pod_uid: c.container.pod_uid.clone(),
        ..Default::default()
    };
    attrs.set_pod(c.pod.as_deref());
    attrs
}

fn container_runtime(r: tally_core::model::container::Runtime) -> &'static str {
    use tally_core::model::container::Runtime::*;
    match r {
        Containerd => "containerd",
        CriO => "cri-o",
        Docker => "docker",
        Podman => "podman",
    }
}

/// Prometheus label name of an attribute key.
pub fn label_name(key: &str) -> String {
    key.replace('.', "_")
}

/// The kernel's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_node_facts_are_no_attributes() {
        let unknown = tally_core::model::node::UNKNOWN.to_owned();
        let off_cloud = NodeAttrs::from_identity(&NodeIdentity {
            node_name: "n".into(),
            instance_type: unknown.clone(),
            zone: unknown.clone(),
            region: unknown.clone(),
            lifecycle: unknown,
            cpus: 2,
        });
        let keys: Vec<&str> = off_cloud.pairs().into_iter().map(|(k, _)| k).collect();
        assert!(!keys.contains(&"cloud.provider"), "{keys:?}");
        assert!(!keys.contains(&"cloud.region") && !keys.contains(&"host.type"));
        let ec2 = NodeAttrs::from_identity(&NodeIdentity {
            node_name: "n".into(),
            instance_type: "m7g.large".into(),
            zone: "eu-west-1a".into(),
            region: "eu-west-1".into(),
            lifecycle: "spot".into(),
            cpus: 2,
        });
        let pairs = ec2.pairs();
        for want in [
            ("cloud.provider", "aws"),
            ("cloud.region", "eu-west-1"),
            ("cloud.availability_zone", "eu-west-1a"),
            ("host.type", "m7g.large"),
        ] {
            assert!(pairs.contains(&want), "{want:?} in {pairs:?}");
        }
    }
}
