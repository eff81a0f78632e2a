//! Classification across nodes: the latest window of every workload on
//! every node, and the verdict of their merge.
//!
//! A workload's verdict is [`gc::classify`] over the merged [`GcSignals`] of
//! its latest window from each node that runs it. A node that reported a
//! later window *without* the workload (agents report only processes that did
//! something) counts as an empty window: the workload went quiet there, and a
//! stale busy window must not keep it gc-heavy forever.
use std::{collections::HashMap, sync::Arc};

use tally_proto as pb;

use super::workload::{self, WorkloadId, WorkloadWindow};
use crate::gc::{self, GcSignals, Runtime};

/// A workload's latest window on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeWindow {
    pub node: Arc<str>,
    pub window_end_ms: i64,
    pub window_seconds: f64,
    pub runtime: Runtime,
    pub delta: pb::Counters,
    pub rss_bytes: u64,
}

#[derive(Debug, Clone)]
struct Tracked {
    name: String,
    cgroup_path: String,
    /// The pod, as the latest report that named one named it (a pod seen
    /// after its process, or relabelled, updates it).
    pod: Option<pb::PodMetadata>,
    /// One entry per node, the latest window there.
    nodes: Vec<NodeWindow>,
}

impl Tracked {
    fn keep_latest(&mut self, window: NodeWindow) {
        match self.nodes.iter_mut().find(|n| n.node == window.node) {
            Some(n) if n.window_end_ms > window.window_end_ms => {}
            Some(n) => *n = window,
            None => self.nodes.push(window),
        }
    }
}

/// The collector's view of the latest state: what ListWorkloads, Watch and
/// the verdicts are computed from. Rebuilt from the store at start.
#[derive(Debug, Default)]
pub struct Fleet {
    workloads: HashMap<WorkloadId, Tracked>,
    /// End of the latest window each node reported.
    node_last_end: HashMap<Arc<str>, i64>,
}

impl Fleet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.workloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty()
    }

    /// Records that `node` reported a window ending at `end_ms`, even one
    /// that named no workload.
    pub fn node_reported(&mut self, node: &str, end_ms: i64) {
        match self.node_last_end.get_mut(node) {
            Some(e) => *e = (*e).max(end_ms),
            None => {
                self.node_last_end.insert(Arc::from(node), end_ms);
            }
        }
    }

    /// Takes one stored report's windows, summed per workload.
    pub fn observe_report(
        &mut self,
        node: &Arc<str>,
        window_end_ms: i64,
        window_seconds: f64,
        windows: &[WorkloadWindow],
    ) {
        self.node_reported(node, window_end_ms);
        for w in windows {
            let window = NodeWindow {
                node: node.clone(),
                window_end_ms,
                window_seconds,
                runtime: w.runtime,
                delta: w.delta,
                rss_bytes: w.rss_bytes,
            };
            // Names are copied only for a workload seen for the first time.
            if let Some(t) = self.workloads.get_mut(&w.id) {
                t.keep_latest(window);
            } else {
                self.observe(
                    w.id.clone(),
                    &workload::text(&w.name),
                    &workload::text(&w.cgroup_path),
                    window,
                );
            }
            if let Some(pod) = &w.pod {
                self.set_pod(&w.id, pod);
            }
        }
    }

    /// Records a workload's pod (copied only when it changed).
    pub fn set_pod(&mut self, id: &WorkloadId, pod: &pb::PodMetadata) {
        if let Some(t) = self.workloads.get_mut(id)
            && t.pod.as_ref() != Some(pod)
        {
            t.pod = Some(pod.clone());
        }
    }

    /// Keeps `window` if it is the workload's latest on its node (reports
    /// resent after a reconnect may arrive out of order).
    pub fn observe(&mut self, id: WorkloadId, name: &str, cgroup_path: &str, window: NodeWindow) {
        let t = self.workloads.entry(id).or_insert_with(|| Tracked {
            // The first name seen stays: a container's name does not flip
            // with whichever process or node reported last.
            name: name.to_owned(),
            cgroup_path: cgroup_path.to_owned(),
            pod: None,
            nodes: Vec::with_capacity(1),
        });
        t.keep_latest(window);
    }

    /// The workload's current state and verdict.
    pub fn workload(&self, id: &WorkloadId) -> Option<pb::Workload> {
        self.workloads.get(id).map(|t| self.describe(id, t))
    }

    /// Every workload, sorted by key, optionally only those seen on `node`.
    pub fn snapshot(&self, node: Option<&str>) -> Vec<pb::Workload> {
        let mut ids: Vec<&WorkloadId> = self
            .workloads
            .iter()
            .filter(|(_, t)| node.is_none_or(|n| t.nodes.iter().any(|w| &*w.node == n)))
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids.into_iter()
            .map(|id| self.describe(id, &self.workloads[id]))
            .collect()
    }

    /// True when the workload has a window on `node`.
    pub fn seen_on(&self, id: &WorkloadId, node: &str) -> bool {
        self.workloads
            .get(id)
            .is_some_and(|t| t.nodes.iter().any(|w| &*w.node == node))
    }

    /// Forgets windows that ended before `cutoff_ms` (retention), and the
    /// workloads and nodes left without any.
    pub fn forget_before(&mut self, cutoff_ms: i64) {
        self.workloads.retain(|_, t| {
            t.nodes.retain(|w| w.window_end_ms >= cutoff_ms);
            !t.nodes.is_empty()
        });
        self.node_last_end.retain(|_, end| *end >= cutoff_ms);
    }

    /// The merged signals of a workload's latest windows, one per node.
    fn merged(&self, t: &Tracked) -> GcSignals {
        let mut merged = GcSignals::default();
        let empty = pb::Counters::default();
        for w in &t.nodes {
            let quiet = self
                .node_last_end
                .get(&w.node)
                .is_some_and(|&end| end > w.window_end_ms);
            let s = if quiet {
                workload::signals(w.runtime, w.window_seconds, &empty, 0)
            } else {
                workload::signals(w.runtime, w.window_seconds, &w.delta, w.rss_bytes)
            };
            merged.merge(&s);
        }
        merged
    }

    fn describe(&self, id: &WorkloadId, t: &Tracked) -> pb::Workload {
        let s = self.merged(t);
        let verdict = gc::classify(&s);
        let secs = s.window_seconds.max(1e-3);
        let mut nodes: Vec<String> = t.nodes.iter().map(|w| w.node.to_string()).collect();
        nodes.sort();
        pb::Workload {
            key: Some(id.to_proto()),
            name: t.name.clone(),
            nodes,
            runtime: workload::runtime_to_proto(s.runtime) as i32,
            verdict: Some(workload::verdict_to_proto(&verdict)),
            gc_cpu_share: s.gc_cpu_share(),
            cpu_seconds: s.cpu_seconds,
            window_seconds: s.window_seconds,
            alloc_bytes_per_second: s.alloc_bytes as f64 / secs,
            faults_per_second: s.minor_faults.saturating_add(s.major_faults) as f64 / secs,
            rss_bytes: s.rss_bytes,
            last_seen_unix_ms: t.nodes.iter().map(|w| w.window_end_ms).max().unwrap_or(0),
            cgroup_path: t.cgroup_path.clone(),
            pod: t.pod.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(node: &str, end: i64, runtime: Runtime, cpu: f64, gc_threads: f64) -> NodeWindow {
        NodeWindow {
            node: Arc::from(node),
            window_end_ms: end,
            window_seconds: 1.0,
            runtime,
            delta: pb::Counters {
                cpu_seconds: cpu,
                gc_thread_cpu_seconds: gc_threads,
                gc_cpu_seconds: gc_threads,
                minor_faults: 10,
                mmap_bytes: 100,
                ..Default::default()
            },
            rss_bytes: 1 << 20,
        }
    }

    fn kind(w: &pb::Workload) -> pb::VerdictKind {
        w.verdict.as_ref().unwrap().kind()
    }

    #[test]
    fn a_container_on_two_nodes_merges_both_latest_windows() {
        let mut fleet = Fleet::new();
        let id = WorkloadId::Container(Arc::from("c"));
        // Node a: mostly GC; node b: none. Merged: 0.3 of 1.5 s = 20% → gc-heavy.
        for (node, gc) in [("a", 0.3), ("b", 0.0)] {
            fleet.node_reported(node, 1000);
            fleet.observe(
                id.clone(),
                "java",
                "",
                window(
                    node,
                    1000,
                    Runtime::Jvm,
                    if gc > 0.0 { 1.0 } else { 0.5 },
                    gc,
                ),
            );
        }
        let w = fleet.workload(&id).unwrap();
        assert_eq!(w.nodes, vec!["a".to_owned(), "b".to_owned()]);
        assert!((w.cpu_seconds - 1.5).abs() < 1e-9);
        assert!((w.gc_cpu_share - 0.2).abs() < 1e-9);
        assert_eq!(kind(&w), pb::VerdictKind::VerdictGcHeavy);
        assert_eq!(w.faults_per_second, 20.0);
        assert_eq!(w.rss_bytes, 2 << 20);
        assert_eq!(w.runtime(), pb::Runtime::Jvm);
        assert!(
            w.verdict.unwrap().reasons[0].contains("threads 20%"),
            "reasons name the GC threads"
        );
    }

    #[test]
    fn older_window_never_replaces_a_newer_one() {
        let mut fleet = Fleet::new();
        let id = WorkloadId::Container(Arc::from("c"));
        fleet.observe(
            id.clone(),
            "x",
            "",
            window("a", 2000, Runtime::Go, 2.0, 0.0),
        );
        fleet.observe(
            id.clone(),
            "x",
            "",
            window("a", 1000, Runtime::Go, 0.0, 0.0),
        );
        let w = fleet.workload(&id).unwrap();
        assert_eq!(w.cpu_seconds, 2.0);
        assert_eq!(w.last_seen_unix_ms, 2000);
    }

    #[test]
    fn a_workload_absent_from_its_nodes_latest_report_is_idle() {
        let mut fleet = Fleet::new();
        let id = WorkloadId::Container(Arc::from("c"));
        fleet.node_reported("a", 1000);
        fleet.observe(
            id.clone(),
            "x",
            "",
            window("a", 1000, Runtime::Go, 2.0, 1.0),
        );
        assert_eq!(
            kind(&fleet.workload(&id).unwrap()),
            pb::VerdictKind::VerdictGcHeavy
        );
        fleet.node_reported("a", 2000);
        let w = fleet.workload(&id).unwrap();
        assert_eq!(kind(&w), pb::VerdictKind::VerdictIdle);
        assert_eq!(w.last_seen_unix_ms, 1000);
    }

    #[test]
    fn the_latest_pod_is_kept_and_shown() {
        let mut fleet = Fleet::new();
        let id = WorkloadId::Container(Arc::from("c"));
        fleet.set_pod(&id, &pb::PodMetadata::default());
        assert!(fleet.workload(&id).is_none(), "no pod without a workload");
        fleet.observe(
            id.clone(),
            "x",
            "",
            window("a", 1000, Runtime::Go, 1.0, 0.0),
        );
        assert_eq!(fleet.workload(&id).unwrap().pod, None);
        let pod = pb::PodMetadata {
            namespace: "ns".into(),
            pod_name: "p".into(),
            ..Default::default()
        };
        fleet.set_pod(&id, &pod);
        assert_eq!(fleet.workload(&id).unwrap().pod, Some(pod));
    }

    #[test]
    fn snapshot_filters_by_node_and_retention_forgets() {
        let mut fleet = Fleet::new();
        let a = WorkloadId::Container(Arc::from("a"));
        let b = WorkloadId::Container(Arc::from("b"));
        fleet.observe(
            a.clone(),
            "a",
            "",
            window("n1", 1000, Runtime::Native, 1.0, 0.0),
        );
        fleet.observe(
            b.clone(),
            "b",
            "",
            window("n2", 3000, Runtime::Native, 1.0, 0.0),
        );
        assert_eq!(fleet.snapshot(None).len(), 2);
        let only = fleet.snapshot(Some("n2"));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].name, "b");
        fleet.forget_before(2000);
        assert_eq!(fleet.len(), 1);
        assert!(fleet.workload(&a).is_none());
    }
}
