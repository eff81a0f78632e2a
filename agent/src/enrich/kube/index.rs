//! The pods of this node, by container id and by pod UID: written by the
//! watcher thread, read by the collector at every tick. Reads take a read
//! lock for one hash lookup; the watcher never holds the lock across I/O.
use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU8, Ordering},
    },
};

use super::pod::{ParsedPod, PodInfo};

/// Whether the index reflects the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not listed yet.
    Starting,
    /// Listed, and the watch is running.
    Synced,
    /// The API server did not answer (or refused): the index may be stale
    /// and the runtime's own labels fill in.
    Unavailable,
}

#[derive(Debug)]
struct Entry {
    /// Pod-level metadata.
    pod: Arc<PodInfo>,
    /// The only regular container, if there is one.
    sole: Option<Arc<PodInfo>>,
    /// Container ids this pod put into `by_container`.
    ids: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    by_container: HashMap<String, Arc<PodInfo>>,
    by_uid: HashMap<String, Entry>,
}

impl State {
    fn remove(&mut self, uid: &str) {
        if let Some(old) = self.by_uid.remove(uid) {
            for id in old.ids {
                self.by_container.remove(&id);
            }
        }
    }

    fn insert(&mut self, pod: ParsedPod) {
        let uid = pod.pod.pod_uid.clone();
        self.remove(&uid);
        let mut ids = Vec::new();
        for c in &pod.containers {
            if let Some(id) = &c.id {
                self.by_container.insert(id.clone(), c.info.clone());
                ids.push(id.clone());
            }
        }
        let sole = pod.sole_container().cloned();
        self.by_uid.insert(
            uid,
            Entry {
                pod: Arc::new(pod.pod),
                sole,
                ids,
            },
        );
    }
}

/// The index shared by the watcher and the collector.
#[derive(Debug)]
pub struct PodIndex {
    state: RwLock<State>,
    status: AtomicU8,
}

impl Default for PodIndex {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            status: AtomicU8::new(0),
        }
    }
}

impl PodIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn status(&self) -> Status {
        match self.status.load(Ordering::Relaxed) {
            0 => Status::Starting,
            1 => Status::Synced,
            _ => Status::Unavailable,
        }
    }

    pub fn set_status(&self, s: Status) {
        let v = match s {
            Status::Starting => 0,
            Status::Synced => 1,
            Status::Unavailable => 2,
        };
        self.status.store(v, Ordering::Relaxed);
    }

    /// Adds or replaces a pod (ADDED, MODIFIED).
    pub fn apply(&self, pod: ParsedPod) {
        self.write().insert(pod);
    }

    /// Removes a pod (DELETED).
    pub fn delete(&self, uid: &str) {
        self.write().remove(uid);
    }

    /// Replaces everything with a fresh list (the first list, and every
    /// relist after a 410 Gone): pods deleted while the watch was broken go.
    pub fn replace_all(&self, pods: Vec<ParsedPod>) {
        let mut fresh = State::default();
        for p in pods {
            fresh.insert(p);
        }
        *self.write() = fresh;
    }

    pub fn len(&self) -> usize {
        self.read().by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The container with this id; else, from the pod UID the cgroup path
    /// names, the pod's only container, or the pod itself (container
    /// unknown): the kubelet reports a container's id only once it runs, so
    /// a process can be seen before its id is.
    pub fn lookup(&self, container_id: &str, pod_uid: Option<&str>) -> Option<Arc<PodInfo>> {
        let state = self.read();
        if let Some(info) = state.by_container.get(container_id) {
            return Some(info.clone());
        }
        let entry = state.by_uid.get(pod_uid?)?;
        Some(entry.sole.clone().unwrap_or_else(|| entry.pod.clone()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::*;
    use crate::enrich::kube::pod;

    fn parsed() -> ParsedPod {
        let p: Pod = serde_json::from_str(include_str!("testdata/pod-deployment.json")).unwrap();
        pod::parse(&p).unwrap()
    }

    const APP: &str = "9b1e4c2d7a3f5e6b8c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
    const UID: &str = "3f1c2a7e-5b6d-4c8e-9f0a-1b2c3d4e5f60";

    #[test]
    fn by_container_id_then_by_pod_uid() {
        let index = PodIndex::new();
        assert_eq!(index.status(), Status::Starting);
        index.apply(parsed());
        let got = index.lookup(APP, None).unwrap();
        assert_eq!(got.container.as_deref(), Some("checkout"));
        // Unknown id, known pod: its only container.
        let other = "f".repeat(64);
        let got = index.lookup(&other, Some(UID)).unwrap();
        assert_eq!(got.container.as_deref(), Some("checkout"));
        assert!(index.lookup(&other, Some("nope")).is_none());
        assert!(index.lookup(&other, None).is_none());
    }

    #[test]
    fn modified_replaces_deleted_removes_relist_forgets() {
        let index = PodIndex::new();
        index.apply(parsed());
        let mut changed = parsed();
        changed.containers[0].id = Some("e".repeat(64));
        index.apply(changed);
        assert!(
            index.lookup(APP, None).is_none(),
            "old id gone after MODIFIED"
        );
        assert!(index.lookup(&"e".repeat(64), None).is_some());
        index.delete(UID);
        assert!(index.lookup(&"e".repeat(64), Some(UID)).is_none());
        assert!(index.is_empty());
        index.apply(parsed());
        index.replace_all(Vec::new());
        assert!(index.lookup(APP, Some(UID)).is_none());
    }

    #[test]
    fn a_pod_of_several_containers_gives_the_pod_without_a_container() {
        let index = PodIndex::new();
        let mut p = parsed();
        let mut second = p.containers[0].clone();
        second.id = None;
        p.containers.push(second);
        index.apply(p);
        let got = index.lookup(&"0".repeat(64), Some(UID)).unwrap();
        assert_eq!(got.container, None);
        assert_eq!(got.pod, "checkout-7d4b9c8f6d-x2x7k");
    }
}
