//! The pods of this node, by container id and by pod UID: written by the
//! watcher thread, read by the collector at every tick. Reads take a read
//! lock for one hash lookup; the watcher never holds the lock across I/O.
//!
//! A deleted pod is kept for a while as a tombstone: a process that started
//! before the deletion ran in that pod, even when its first window is drawn
//! after the DELETED event (a short process between two ticks); a process
//! that started after it gets nothing.
use std::{
    collections::{HashMap, VecDeque},
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

/// A deleted pod, and when it went (clock ticks since boot, the clock of
/// [`tally_core::model::ProcKey::start_ticks`]).
#[derive(Debug)]
struct Tombstone {
    deleted_ticks: u64,
    uid: String,
    entry: Entry,
    containers: Vec<(String, Arc<PodInfo>)>,
}

/// How long a deleted pod still names the processes that started before its
/// deletion: longer than any tick, so a window drawn after the event finds it.
const TOMBSTONE_SECONDS: u64 = 300;
/// Tombstones kept at most (a node's churn of pods in five minutes is far
/// below this; the bound only caps memory).
const MAX_TOMBSTONES: usize = 1024;

/// A removed pod: its entry and the containers it named (id, info).
type Removed = (Entry, Vec<(String, Arc<PodInfo>)>);

#[derive(Debug, Default)]
struct State {
    by_container: HashMap<String, Arc<PodInfo>>,
    by_uid: HashMap<String, Entry>,
    /// Oldest first.
    deleted: VecDeque<Tombstone>,
}

impl State {
    fn remove(&mut self, uid: &str) -> Option<Removed> {
        let old = self.by_uid.remove(uid)?;
        let containers = old
            .ids
            .iter()
            .filter_map(|id| self.by_container.remove(id).map(|info| (id.clone(), info)))
            .collect();
        Some((old, containers))
    }

    fn bury(&mut self, uid: &str, now_ticks: u64, ticks_per_second: u64) {
        if let Some((entry, containers)) = self.remove(uid) {
            self.deleted.push_back(Tombstone {
                deleted_ticks: now_ticks,
                uid: uid.to_owned(),
                entry,
                containers,
            });
        }
        let horizon = now_ticks.saturating_sub(TOMBSTONE_SECONDS * ticks_per_second);
        while self
            .deleted
            .front()
            .is_some_and(|t| t.deleted_ticks < horizon || self.deleted.len() > MAX_TOMBSTONES)
        {
            self.deleted.pop_front();
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

    fn now_ticks() -> (u64, u64) {
        // SAFETY: sysconf has no preconditions.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
            .unwrap_or(100)
            .max(1);
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec to write; CLOCK_BOOTTIME always exists
        // on Linux, the clock /proc/<pid>/stat's start time counts in.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let ns = (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64;
        (tally_core::model::ticks_from_ns(ns, hz), hz)
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

    /// Removes a pod (DELETED); it stays a tombstone for the processes that
    /// started before now.
    pub fn delete(&self, uid: &str) {
        let (now, hz) = Self::now_ticks();
        self.delete_at(uid, now, hz);
    }

    /// [`Self::delete`] at a given time (clock ticks since boot).
    pub fn delete_at(&self, uid: &str, now_ticks: u64, ticks_per_second: u64) {
        self.write().bury(uid, now_ticks, ticks_per_second);
    }

    /// Replaces everything with a fresh list (the first list, and every
    /// relist after a 410 Gone): pods deleted while the watch was broken go.
    /// Those pods become tombstones as of now, like a DELETED event.
    pub fn replace_all(&self, pods: Vec<ParsedPod>) {
        let (now, hz) = Self::now_ticks();
        let mut state = self.write();
        let listed: std::collections::HashSet<&str> =
            pods.iter().map(|p| p.pod.pod_uid.as_str()).collect();
        let gone: Vec<String> = state
            .by_uid
            .keys()
            .filter(|uid| !listed.contains(uid.as_str()))
            .cloned()
            .collect();
        for uid in gone {
            state.bury(&uid, now, hz);
        }
        for p in pods {
            state.insert(p);
        }
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

    /// [`Self::lookup`] for a process that started at `start_ticks` (clock
    /// ticks since boot): a pod deleted after that start still names it.
    pub fn lookup_process(
        &self,
        container_id: &str,
        pod_uid: Option<&str>,
        start_ticks: u64,
    ) -> Option<Arc<PodInfo>> {
        if let Some(live) = self.lookup(container_id, pod_uid) {
            return Some(live);
        }
        let state = self.read();
        // Newest first: a pod UID is never reused, a container id hardly.
        state
            .deleted
            .iter()
            .rev()
            .filter(|t| start_ticks < t.deleted_ticks)
            .find_map(|t| {
                if let Some((_, info)) = t.containers.iter().find(|(id, _)| id == container_id) {
                    return Some(info.clone());
                }
                (pod_uid? == t.uid)
                    .then(|| t.entry.sole.clone().unwrap_or_else(|| t.entry.pod.clone()))
            })
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
        index.delete_at(UID, 10_000, 100);
        assert!(index.lookup(&"e".repeat(64), Some(UID)).is_none());
        assert!(index.is_empty());
        index.apply(parsed());
        index.replace_all(Vec::new());
        assert!(index.lookup(APP, Some(UID)).is_none());
    }

    #[test]
    fn a_deleted_pod_names_only_processes_that_started_before_its_deletion() {
        let index = PodIndex::new();
        index.apply(parsed());
        index.delete_at(UID, 10_000, 100);
        let before = index.lookup_process(APP, Some(UID), 9_999).unwrap();
        assert_eq!(before.container.as_deref(), Some("checkout"));
        let by_uid = index.lookup_process(&"f".repeat(64), Some(UID), 9_999);
        assert!(by_uid.is_some(), "found through the cgroup's pod UID");
        assert!(index.lookup_process(APP, Some(UID), 10_000).is_none());
        // Five minutes on (at 100 ticks/s) the first tombstone is gone: the
        // pod deleted again then leaves exactly one, its own.
        let later = 10_000 + 300 * 100 + 1;
        index.apply(parsed());
        index.delete_at(UID, later, 100);
        assert_eq!(index.read().deleted.len(), 1);
        assert!(index.lookup_process(APP, Some(UID), later).is_none());
        assert!(index.lookup_process(APP, Some(UID), 10_001).is_some());
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
