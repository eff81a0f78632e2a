//! The watcher thread: lists and watches the pods of this node
//! (`fieldSelector=spec.nodeName=<node>`) through the API server with
//! kube-rs, follows each pod's owner chain, and keeps the [`PodIndex`]
//! current. It runs on a thread and runtime of its own, so the collector
//! never waits for the API server.
//!
//! kube-rs's `watcher` does the list-then-watch: it relists after a 410
//! Gone (the watch fell out of the API server's window) or when the watch
//! cannot resume, and backs off exponentially (0.8 s to 30 s) while the API
//! server is unreachable. Every list replaces the index whole, so pods
//! deleted while the watch was broken go too.
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    pin::pin,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{Node, Pod},
};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt as _, watcher},
};

use super::{
    index::{PodIndex, Status},
    pod::{self, Owner, OwnerRef, ParsedPod},
};

/// How the agent reaches the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`, the mounted
    /// token and CA).
    InCluster,
    /// A kubeconfig file (development, tests).
    Kubeconfig(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("no in-cluster credentials: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("cannot read the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("cannot start the watcher's thread: {0}")]
    Thread(std::io::Error),
}

/// How long one owner look-up may take before the pod goes in with its
/// direct controller.
const OWNER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a resolved owner is trusted (ReplicaSets are not re-parented
/// in practice; this only bounds the cache).
const OWNER_TTL: Duration = Duration::from_secs(600);
/// How long a failed owner look-up is not retried.
const OWNER_RETRY: Duration = Duration::from_secs(60);

/// Starts the watcher thread. `node_labels` receives the node's labels once
/// they could be read (node identity's fallback).
pub fn spawn(
    credentials: Credentials,
    node: String,
    index: Arc<PodIndex>,
    node_labels: Option<mpsc::Sender<BTreeMap<String, String>>>,
) -> Result<(), WatchError> {
    std::thread::Builder::new()
        .name("tally-kube".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("Kubernetes metadata off: cannot start a runtime: {e}");
                    index.set_status(Status::Unavailable);
                    return;
                }
            };
            runtime.block_on(async move {
                let client = match client(&credentials).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(
                            "Kubernetes metadata off: {e}; pod names come from the container runtime"
                        );
                        index.set_status(Status::Unavailable);
                        return;
                    }
                };
                watch(client, &node, &index, node_labels).await;
            });
        })
        .map_err(WatchError::Thread)?;
    Ok(())
}

async fn client(credentials: &Credentials) -> Result<Client, WatchError> {
    let config = match credentials {
        Credentials::InCluster => kube::Config::incluster()?,
        Credentials::Kubeconfig(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
    };
    Ok(Client::try_from(config)?)
}

async fn watch(
    client: Client,
    node: &str,
    index: &PodIndex,
    mut node_labels: Option<mpsc::Sender<BTreeMap<String, String>>>,
) {
    send_node_labels(&client, node, &mut node_labels).await;
    let pods: Api<Pod> = Api::all(client.clone());
    // `any_semantic`: lists are served from the API server's watch cache
    // (resourceVersion=0), not etcd: one list per agent start and relist on
    // every node of a cluster must stay cheap.
    let config = watcher::Config::default()
        .fields(&format!("spec.nodeName={node}"))
        .any_semantic();
    let mut events = pin!(watcher(pods, config).default_backoff());
    let mut owners = Owners::new(client.clone());
    let mut listing: Option<Vec<ParsedPod>> = None;
    let mut failing = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = Some(Vec::new()),
            Ok(watcher::Event::InitApply(p)) => {
                if let Some(p) = owners.parse(&p).await {
                    listing.get_or_insert_with(Vec::new).push(p);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let pods = listing.take().unwrap_or_default();
                let n = pods.len();
                index.replace_all(pods);
                index.set_status(Status::Synced);
                if failing {
                    tracing::info!("API server reachable again: {n} pods on node {node}");
                } else {
                    tracing::info!("watching the pods of node {node}: {n} now");
                }
                failing = false;
                if node_labels.is_some() {
                    send_node_labels(&client, node, &mut node_labels).await;
                }
            }
            Ok(watcher::Event::Apply(p)) => {
                if let Some(p) = owners.parse(&p).await {
                    tracing::debug!(pod = %p.pod.display_name(), "pod added or changed");
                    index.apply(p);
                }
                index.set_status(Status::Synced);
            }
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = p.metadata.uid.as_deref() {
                    tracing::debug!(uid, "pod deleted");
                    index.delete(uid);
                }
            }
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                tracing::info!("pod watch expired (410 Gone): listing again");
            }
            Err(err) => {
                index.set_status(Status::Unavailable);
                if failing {
                    tracing::debug!("API server: {err}");
                } else {
                    tracing::warn!(
                        "API server unreachable ({err}); retrying with backoff, pod names from the container runtime meanwhile"
                    );
                }
                failing = true;
            }
        }
    }
}

/// Reads the node's labels once and hands them over.
async fn send_node_labels(
    client: &Client,
    node: &str,
    tx: &mut Option<mpsc::Sender<BTreeMap<String, String>>>,
) {
    let Some(sender) = tx.as_ref() else { return };
    let nodes: Api<Node> = Api::all(client.clone());
    match tokio::time::timeout(OWNER_TIMEOUT, nodes.get_metadata_opt(node)).await {
        Ok(Ok(Some(meta))) => {
            let _ = sender.send(meta.metadata.labels.unwrap_or_default());
            *tx = None;
        }
        Ok(Ok(None)) => {
            tracing::warn!("node {node} not found in the API server (is NODE_NAME right?)");
            *tx = None;
        }
        Ok(Err(e)) => tracing::debug!("cannot read node {node}: {e}"),
        Err(_) => tracing::debug!("reading node {node} timed out"),
    }
}

/// Owner chains, cached: a Deployment's pods share one ReplicaSet, a
/// CronJob's runs one Job each.
struct Owners {
    client: Client,
    cache: HashMap<(String, OwnerRef), (Option<Owner>, Instant, Duration)>,
}

impl Owners {
    fn new(client: Client) -> Self {
        Self {
            client,
            cache: HashMap::new(),
        }
    }

    async fn parse(&mut self, p: &Pod) -> Option<ParsedPod> {
        let mut parsed = pod::parse(p)?;
        let owner = self.resolve(&parsed).await;
        parsed.set_owner(owner);
        Some(parsed)
    }

    /// The top of the owner chain: a ReplicaSet's Deployment, a Job's
    /// CronJob, else the controller itself.
    async fn resolve(&mut self, p: &ParsedPod) -> Option<Owner> {
        let controller = p.controller.clone()?;
        let direct = Owner {
            kind: controller.kind.clone(),
            name: controller.name.clone(),
        };
        if controller.kind != "ReplicaSet" && controller.kind != "Job" {
            return Some(direct);
        }
        let key = (p.pod.namespace.clone(), controller.clone());
        if let Some((owner, at, ttl)) = self.cache.get(&key)
            && at.elapsed() < *ttl
        {
            return owner.clone();
        }
        let ns = p.pod.namespace.as_str();
        let fetched = if controller.kind == "ReplicaSet" {
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
            tokio::time::timeout(OWNER_TIMEOUT, api.get_metadata_opt(&controller.name))
                .await
                .map(|r| r.map(|m| m.map(|m| m.metadata)))
        } else {
            let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
            tokio::time::timeout(OWNER_TIMEOUT, api.get_metadata_opt(&controller.name))
                .await
                .map(|r| r.map(|m| m.map(|m| m.metadata)))
        };
        let (owner, ttl) = match fetched {
            Ok(Ok(Some(meta))) => {
                let refs = meta.owner_references.unwrap_or_default();
                let top = refs
                    .iter()
                    .find(|r| r.controller == Some(true))
                    .or_else(|| refs.first())
                    .map(|r| Owner {
                        kind: r.kind.clone(),
                        name: r.name.clone(),
                    });
                (Some(top.unwrap_or(direct)), OWNER_TTL)
            }
            // Gone already: the pod's own reference is all there is.
            Ok(Ok(None)) => (Some(direct), OWNER_RETRY),
            Ok(Err(e)) => {
                tracing::debug!(
                    "cannot read {} {ns}/{}: {e}",
                    controller.kind,
                    controller.name
                );
                (Some(guess(p, direct)), OWNER_RETRY)
            }
            Err(_) => (Some(guess(p, direct)), OWNER_RETRY),
        };
        self.cache.insert(key, (owner.clone(), Instant::now(), ttl));
        if self.cache.len() > 4096 {
            self.cache.retain(|_, (_, at, ttl)| at.elapsed() < *ttl);
        }
        owner
    }
}

/// Without the ReplicaSet (no RBAC for it, or the API server slow): a
/// Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`.
fn guess(p: &ParsedPod, direct: Owner) -> Owner {
    if direct.kind == "ReplicaSet"
        && let Some(hash) = p.template_hash.as_deref()
        && let Some(name) = direct.name.strip_suffix(&format!("-{hash}"))
        && !name.is_empty()
    {
        return Owner {
            kind: "Deployment".into(),
            name: name.to_owned(),
        };
    }
    direct
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_guessed_from_the_template_hash() {
        let pod: Pod = serde_json::from_str(include_str!("testdata/pod-deployment.json")).unwrap();
        let p = pod::parse(&pod).unwrap();
        let direct = Owner {
            kind: "ReplicaSet".into(),
            name: "checkout-7d4b9c8f6d".into(),
        };
        assert_eq!(
            guess(&p, direct.clone()),
            Owner {
                kind: "Deployment".into(),
                name: "checkout".into()
            }
        );
        let mut other = p.clone();
        other.template_hash = Some("zzz".into());
        assert_eq!(guess(&other, direct.clone()), direct);
        let job = Owner {
            kind: "Job".into(),
            name: "nightly-29012345".into(),
        };
        assert_eq!(guess(&p, job.clone()), job);
    }
}
