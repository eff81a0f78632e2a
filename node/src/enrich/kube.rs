//! From a container to its pod: namespace, pod, container name, a few
//! labels, the owning workload (Deployment through its ReplicaSet,
//! StatefulSet, DaemonSet, Job, CronJob through its Job), QoS class, and
//! the container's requests and limits.
//!
//! The container id comes from the cgroup path ([`crate::enrich::container`]).
//! The pods of this node are watched through the API server on a thread of
//! their own ([`watch`]) into a shared [`PodIndex`], which the collector
//! reads at every tick ([`PodResolver`]). Where the API server cannot be
//! reached (not configured, not answering, or not listed yet), the names
//! the kubelet gave the container runtime fill in ([`runtime`]).
pub mod index;
pub mod pod;
pub mod runtime;
pub mod watch;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, mpsc},
};

pub use index::{PodIndex, Status};
pub use pod::{Owner, PodInfo, Resources, Source};
pub use watch::{Credentials, WatchError};

use tally_core::model::{ProcKey, Window, container::Runtime};

/// Whether the API server is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KubeMode {
    /// When running in a pod (`KUBERNETES_SERVICE_HOST` is set) or given
    /// `--kubeconfig`.
    #[default]
    Auto,
    On,
    /// The container runtime's labels only.
    Off,
}

impl PodSource {
    /// The source `agent run` and `agent top` use: the API server as `mode`
    /// and `kubeconfig` say (the pods of `node`), else the runtime's labels.
    /// Never fails: a problem is one warning, and the runtime's labels.
    pub fn for_node(
        mode: KubeMode,
        kubeconfig: Option<PathBuf>,
        node: &str,
        node_labels: Option<mpsc::Sender<BTreeMap<String, String>>>,
    ) -> Self {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let credentials = match (mode, kubeconfig) {
            (KubeMode::Off, _) => return Self::runtime_only(),
            (_, Some(path)) => Credentials::Kubeconfig(path),
            (KubeMode::On, None) => Credentials::InCluster,
            (KubeMode::Auto, None) if in_cluster => Credentials::InCluster,
            (KubeMode::Auto, None) => return Self::runtime_only(),
        };
        match Self::watch(credentials, node, node_labels) {
            Ok(source) => source,
            Err(e) => {
                tracing::warn!("Kubernetes metadata from the container runtime only: {e}");
                Self::runtime_only()
            }
        }
    }
}

/// Where pod metadata comes from: an index the API server keeps current
/// (when configured), and the runtime's labels as the fallback.
#[derive(Debug, Clone, Default)]
pub struct PodSource {
    index: Option<Arc<PodIndex>>,
    runtime_fallback: bool,
}

impl PodSource {
    /// No API server: the runtime's labels only.
    pub fn runtime_only() -> Self {
        Self {
            index: None,
            runtime_fallback: true,
        }
    }

    /// Watches the pods of `node` through the API server (on a thread of its
    /// own), with the runtime's labels as the fallback. `node_labels`
    /// receives the node's labels once read.
    pub fn watch(
        credentials: Credentials,
        node: &str,
        node_labels: Option<mpsc::Sender<BTreeMap<String, String>>>,
    ) -> Result<Self, WatchError> {
        let index = Arc::new(PodIndex::new());
        watch::spawn(credentials, node.to_owned(), index.clone(), node_labels)?;
        Ok(Self {
            index: Some(index),
            runtime_fallback: true,
        })
    }

    /// A source over an index filled by someone else (tests).
    pub fn from_index(index: Arc<PodIndex>, runtime_fallback: bool) -> Self {
        Self {
            index: Some(index),
            runtime_fallback,
        }
    }

    pub fn index(&self) -> Option<&Arc<PodIndex>> {
        self.index.as_ref()
    }

    /// The collector's side: looks windows up.
    pub fn resolver(&self) -> PodResolver {
        PodResolver {
            source: self.clone(),
            runtime: runtime::RuntimeLabels::default(),
            last: HashMap::new(),
        }
    }
}

/// Processes whose last known pod is kept at most; past it the memory
/// starts again (it is refilled from the index at the next tick).
const MAX_REMEMBERED: usize = 65_536;

/// Fills in [`Window::pod`] at every tick.
#[derive(Debug)]
pub struct PodResolver {
    source: PodSource,
    runtime: runtime::RuntimeLabels,
    /// The pod each live process was last seen in: a process whose pod was
    /// deleted keeps its names until it exits (its last windows, after a
    /// forced delete, still say where it ran).
    last: HashMap<ProcKey, Arc<PodInfo>>,
}

impl PodResolver {
    /// Sets `pod` on every window whose cgroup names a container.
    pub fn annotate(&mut self, windows: &mut [Window]) {
        for w in windows.iter_mut() {
            let found = w
                .cgroup
                .as_ref()
                .and_then(|c| c.container.as_ref())
                .and_then(|c| {
                    self.lookup(c.runtime, &c.id, c.pod_uid.as_deref(), w.key.start_ticks)
                });
            w.pod = match found {
                Some(p) => {
                    if !w.exited {
                        if self.last.len() >= MAX_REMEMBERED {
                            self.last.clear();
                        }
                        self.last.insert(w.key, p.clone());
                    }
                    Some(p)
                }
                None => self.last.get(&w.key).cloned(),
            };
            if w.exited {
                self.last.remove(&w.key);
            }
        }
    }

    /// The API server's view first (for a process started at `start_ticks`,
    /// see [`PodIndex::lookup_process`]); the runtime's labels when the API
    /// server is not (or not yet) answering.
    pub fn lookup(
        &mut self,
        runtime: Runtime,
        container_id: &str,
        pod_uid: Option<&str>,
        start_ticks: u64,
    ) -> Option<Arc<PodInfo>> {
        if let Some(index) = &self.source.index {
            if let Some(found) = index.lookup_process(container_id, pod_uid, start_ticks) {
                return Some(found);
            }
            if index.status() == Status::Synced {
                return None;
            }
        }
        if self.source.runtime_fallback {
            return self.runtime.lookup(runtime, container_id);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::*;
    use tally_core::testing::test_window;

    const ID: &str = "9b1e4c2d7a3f5e6b8c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";

    fn path() -> String {
        format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a7e_5b6d_4c8e_9f0a_1b2c3d4e5f60.slice/cri-containerd-{ID}.scope"
        )
    }

    fn parsed() -> pod::ParsedPod {
        let p: Pod =
            serde_json::from_str(include_str!("kube/testdata/pod-deployment.json")).unwrap();
        pod::parse(&p).unwrap()
    }

    #[test]
    fn windows_get_their_pod_and_keep_it_until_exit_after_a_delete() {
        let index = Arc::new(PodIndex::new());
        index.apply(parsed());
        index.set_status(Status::Synced);
        let mut r = PodSource::from_index(index.clone(), false).resolver();
        let mut w = [test_window(7, "checkout", &path())];
        r.annotate(&mut w);
        assert_eq!(
            w[0].pod.as_ref().and_then(|p| p.container.as_deref()),
            Some("checkout")
        );
        // Deleted at tick 1000, after the first process's start (500).
        index.delete_at("3f1c2a7e-5b6d-4c8e-9f0a-1b2c3d4e5f60", 1_000, 100);
        // The same process keeps its pod; a new one in the container does not.
        let mut w = [
            test_window(7, "checkout", &path()),
            test_window(8, "sh", &path()),
        ];
        w[0].exited = true;
        w[1].key.start_ticks = 1_500;
        r.annotate(&mut w);
        assert!(w[0].pod.is_some());
        assert!(w[1].pod.is_none());
        assert!(r.last.is_empty(), "forgotten after its exit");
    }

    #[test]
    fn outside_containers_nothing() {
        let index = Arc::new(PodIndex::new());
        index.apply(parsed());
        let mut r = PodSource::from_index(index, false).resolver();
        let mut w = [test_window(1, "systemd", "/init.scope")];
        r.annotate(&mut w);
        assert!(w[0].pod.is_none());
    }
}
