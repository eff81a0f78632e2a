//! Classification across nodes and over time: every workload's recent
//! windows on every node, and the verdict of their merge.
//!
//! A workload's verdict is read from its **history**, not its latest window
//! (a large-heap JVM that collects every few seconds has windows with and
//! without a collection; judged one window at a time it would flip between
//! gc-heavy and steady):
//! - the **current** signals are every window that ended in the last
//!   [`VERDICT_HORIZON_MS`] before its node's latest report, summed per node
//!   (so the share is CPU-weighted) over the time the node covered, then
//!   merged across nodes;
//! - the **previous** verdict is the same rule one horizon earlier;
//! - [`gc::classify_after`] keeps the previous verdict until the current
//!   signals are clearly past the threshold the other way (hysteresis).
//!
//! Both are computed from stored windows alone, so every collector replica,
//! and a collector restarted from its store, gives the same verdict.
//!
//! A node that reported later windows *without* the workload (agents report
//! only processes that did something) counts those as quiet time: the
//! workload's CPU is spread over the whole span, and once its windows are
//! older than two horizons it is idle there.
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use tally_proto as pb;

use tally_core::gc::{self, GcSignals, Runtime};
use tally_core::workload::{self, WorkloadId, WorkloadWindow};

/// How far back a verdict reads: the windows of the last minute (six of
/// the DaemonSet's 10 s windows), and the minute before for the previous
/// verdict.
pub const VERDICT_HORIZON_MS: i64 = 60_000;
/// Windows kept per workload and node at most (two horizons of 1 s windows).
const MAX_WINDOWS_PER_NODE: usize = 128;

/// A workload's window on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeWindow {
    pub node: Arc<str>,
    pub window_end_ms: i64,
    pub window_seconds: f64,
    pub runtime: Runtime,
    pub delta: pb::Counters,
    pub rss_bytes: u64,
}

impl NodeWindow {
    fn start_ms(&self) -> i64 {
        self.window_end_ms - (self.window_seconds * 1000.0) as i64
    }
}

/// A workload's windows on one node, oldest first.
#[derive(Debug, Clone)]
struct NodeHistory {
    node: Arc<str>,
    windows: VecDeque<NodeWindow>,
}

impl NodeHistory {
    fn latest(&self) -> &NodeWindow {
        self.windows.back().expect("a node history is never empty")
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    name: String,
    cgroup_path: String,
    /// The pod, as the latest report that named one named it (a pod seen
    /// after its process, or relabelled, updates it).
    pod: Option<pb::PodMetadata>,
    /// The runtime settings of its main GC'd process, as last reported.
    settings: Option<pb::RuntimeSettings>,
    /// One entry per node, its recent windows.
    nodes: Vec<NodeHistory>,
}

impl Tracked {
    /// Adds a window in time order (resent reports may arrive out of
    /// order; the same window twice is kept once), and drops what is older
    /// than two horizons before the newest.
    fn add(&mut self, window: NodeWindow) {
        let history = match self.nodes.iter_mut().position(|n| n.node == window.node) {
            Some(i) => &mut self.nodes[i],
            None => {
                self.nodes.push(NodeHistory {
                    node: window.node.clone(),
                    windows: VecDeque::with_capacity(4),
                });
                self.nodes.last_mut().expect("just pushed")
            }
        };
        let windows = &mut history.windows;
        let at = windows.partition_point(|w| w.window_end_ms < window.window_end_ms);
        if windows
            .get(at)
            .is_some_and(|w| w.window_end_ms == window.window_end_ms)
        {
            return;
        }
        windows.insert(at, window);
        let newest = windows.back().map_or(0, |w| w.window_end_ms);
        while windows.len() > MAX_WINDOWS_PER_NODE
            || windows
                .front()
                .is_some_and(|w| w.window_end_ms <= newest - 2 * VERDICT_HORIZON_MS)
        {
            windows.pop_front();
        }
    }
}

/// The collector's view of the recent state: what ListWorkloads, Watch and
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
                t.add(window);
                // Except runc's setup stage, seen before the workload.
                if workload::is_container_runtime_stage(t.name.as_bytes())
                    && !workload::is_container_runtime_stage(&w.name)
                {
                    t.name = workload::text(&w.name).into_owned();
                }
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
            if let Some(settings) = &w.settings {
                self.set_settings(&w.id, settings);
            }
        }
    }

    /// Records a workload's runtime settings (copied only when changed).
    pub fn set_settings(&mut self, id: &WorkloadId, settings: &pb::RuntimeSettings) {
        if let Some(t) = self.workloads.get_mut(id)
            && t.settings.as_ref() != Some(settings)
        {
            t.settings = Some(settings.clone());
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

    /// Adds `window` to the workload's history on its node.
    pub fn observe(&mut self, id: WorkloadId, name: &str, cgroup_path: &str, window: NodeWindow) {
        let t = self.workloads.entry(id).or_insert_with(|| Tracked {
            // The first name seen stays: a container's name does not flip
            // with whichever process or node reported last.
            name: name.to_owned(),
            cgroup_path: cgroup_path.to_owned(),
            pod: None,
            settings: None,
            nodes: Vec::with_capacity(1),
        });
        t.add(window);
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
            for n in &mut t.nodes {
                n.windows.retain(|w| w.window_end_ms >= cutoff_ms);
            }
            t.nodes.retain(|n| !n.windows.is_empty());
            !t.nodes.is_empty()
        });
        self.node_last_end.retain(|_, end| *end >= cutoff_ms);
    }

    /// The workload's signals over the horizon that ends `horizons_back`
    /// horizons before each node's latest report: summed over time on each
    /// node, then merged across nodes. `None` when no window falls in it.
    fn signals(&self, t: &Tracked, horizons_back: i64) -> Option<GcSignals> {
        let mut merged: Option<GcSignals> = None;
        for n in &t.nodes {
            let node_end = self
                .node_last_end
                .get(&n.node)
                .copied()
                .unwrap_or(i64::MIN)
                .max(n.latest().window_end_ms);
            let end = node_end - horizons_back * VERDICT_HORIZON_MS;
            let start = end - VERDICT_HORIZON_MS;
            let mut over_time: Option<GcSignals> = None;
            let mut first_start = end;
            for w in n
                .windows
                .iter()
                .filter(|w| w.window_end_ms > start && w.window_end_ms <= end)
            {
                first_start = first_start.min(w.start_ms());
                let s = workload::signals(w.runtime, w.window_seconds, &w.delta, w.rss_bytes);
                match over_time.as_mut() {
                    Some(o) => o.then(&s),
                    None => over_time = Some(s),
                }
            }
            let Some(mut node_signals) = over_time else {
                continue;
            };
            // The span the node covered, quiet windows included.
            node_signals.window_seconds = (end - first_start.max(start)).max(1) as f64 / 1000.0;
            if end > n.latest().window_end_ms {
                // Quiet since: its RSS there is no longer known.
                node_signals.rss_bytes = 0;
            }
            match merged.as_mut() {
                Some(m) => m.merge(&node_signals),
                None => merged = Some(node_signals),
            }
        }
        merged
    }

    /// The workload's verdict over its history, with its signals.
    fn judge(&self, t: &Tracked) -> (GcSignals, gc::Verdict) {
        let current = self.signals(t, 0).unwrap_or_else(|| GcSignals {
            runtime: t
                .nodes
                .first()
                .map_or(Runtime::Unknown, |n| n.latest().runtime),
            window_seconds: VERDICT_HORIZON_MS as f64 / 1000.0,
            ..GcSignals::default()
        });
        let prior = self.signals(t, 1).map(|s| gc::classify(&s).kind);
        let verdict = gc::classify_after(&current, prior);
        (current, verdict)
    }

    fn describe(&self, id: &WorkloadId, t: &Tracked) -> pb::Workload {
        let (s, verdict) = self.judge(t);
        let mut nodes: Vec<String> = t.nodes.iter().map(|n| n.node.to_string()).collect();
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
            alloc_bytes_per_second: s.alloc_bytes_per_second(),
            faults_per_second: s.faults_per_second(),
            rss_bytes: s.rss_bytes,
            last_seen_unix_ms: t
                .nodes
                .iter()
                .map(|n| n.latest().window_end_ms)
                .max()
                .unwrap_or(0),
            cgroup_path: t.cgroup_path.clone(),
            pod: t.pod.clone(),
            settings: t.settings.clone(),
            memory_stall_share: s.memory_stall_share(),
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
                // 99 Hz.
                cpu_samples: (cpu * 99.0) as u64,
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
    fn a_containers_memory_stall_is_its_share_and_evidence_in_its_verdict() {
        let mut fleet = Fleet::new();
        let id = WorkloadId::Container(Arc::from("c"));
        fleet.node_reported("a", 1000);
        // gc-heavy, and 50 ms of a 1 s window stalled on memory.
        let mut w = window("a", 1000, Runtime::Go, 1.0, 0.3);
        w.delta.memory_stall_us = Some(50_000);
        fleet.observe(id.clone(), "app", "", w);
        let got = fleet.workload(&id).unwrap();
        assert!((got.memory_stall_share.unwrap() - 0.05).abs() < 1e-9);
        assert_eq!(kind(&got), pb::VerdictKind::VerdictGcHeavy);
        assert!(
            got.verdict
                .unwrap()
                .reasons
                .iter()
                .any(|r| r.contains("stalled on memory 5.0%") && r.contains("headroom")),
            "the stall is evidence"
        );
        // Without pressure, unknown, not zero.
        let other = WorkloadId::Container(Arc::from("d"));
        fleet.observe(
            other.clone(),
            "app",
            "",
            window("a", 1000, Runtime::Go, 1.0, 0.3),
        );
        assert_eq!(fleet.workload(&other).unwrap().memory_stall_share, None);
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
    fn a_workload_gone_quiet_on_its_node_fades_to_idle() {
        let mut fleet = Fleet::new();
        let id = WorkloadId::Container(Arc::from("c"));
        fleet.node_reported("a", 1000);
        fleet.observe(
            id.clone(),
            "x",
            "",
            window("a", 1000, Runtime::Go, 1.0, 0.5),
        );
        assert_eq!(
            kind(&fleet.workload(&id).unwrap()),
            pb::VerdictKind::VerdictGcHeavy
        );
        // Quiet for a while: its CPU is spread over the time it covered.
        fleet.node_reported("a", 21_000);
        let w = fleet.workload(&id).unwrap();
        assert!((w.window_seconds - 21.0).abs() < 1e-9, "{w:?}");
        assert!((w.cpu_seconds - 1.0).abs() < 1e-9);
        // Quiet for two horizons: nothing of it is recent, it is idle.
        fleet.node_reported("a", 1000 + 2 * VERDICT_HORIZON_MS + 1);
        let w = fleet.workload(&id).unwrap();
        assert_eq!(kind(&w), pb::VerdictKind::VerdictIdle);
        assert_eq!(w.last_seen_unix_ms, 1000);
    }

    /// A JVM with a large heap: a collection every 4 s, each burning 0.4 s
    /// of GC threads in a 1 s window, and 1 core of work in every window.
    /// Window by window it flips between gc-heavy (40%) and steady (0%);
    /// over its history it is one verdict.
    #[test]
    fn a_workload_that_collects_every_few_seconds_keeps_one_verdict() {
        let mut fleet = Fleet::new();
        let id = WorkloadId::Container(Arc::from("jvm"));
        let mut kinds = Vec::new();
        let mut per_window = Vec::new();
        for second in 1..=300i64 {
            let end = second * 1000;
            let gc = if second % 4 == 0 { 0.4 } else { 0.0 };
            let w = window("a", end, Runtime::Jvm, 1.0 + gc, gc);
            per_window.push(gc::classify(&workload::signals(Runtime::Jvm, 1.0, &w.delta, 0)).kind);
            fleet.node_reported("a", end);
            fleet.observe(id.clone(), "java", "", w);
            if second > 20 {
                kinds.push(kind(&fleet.workload(&id).unwrap()));
            }
        }
        assert!(per_window.contains(&gc::VerdictKind::GcHeavy));
        assert!(per_window.contains(&gc::VerdictKind::Steady));
        // 0.1 of 1.1 cores: 9%, just under the threshold; hysteresis keeps
        // whichever it had, and the history never flips.
        let first = kinds[0];
        assert!(kinds.iter().all(|k| *k == first), "{kinds:?}");
    }

    #[test]
    fn hysteresis_keeps_a_verdict_near_its_threshold_and_leaves_it_when_clearly_past() {
        let mut fleet = Fleet::new();
        let id = WorkloadId::Container(Arc::from("svc"));
        let mut at = 0;
        let mut run = |fleet: &mut Fleet, seconds: i64, gc: f64| {
            for _ in 0..seconds {
                at += 1000;
                fleet.node_reported("a", at);
                fleet.observe(
                    id.clone(),
                    "svc",
                    "",
                    window("a", at, Runtime::Jvm, 1.0, gc),
                );
            }
            kind(&fleet.workload(&id).unwrap())
        };
        assert_eq!(run(&mut fleet, 130, 0.2), pb::VerdictKind::VerdictGcHeavy);
        // 8.5%: under the 10% that makes gc-heavy, over the 7.5% that
        // leaves it.
        assert_eq!(run(&mut fleet, 60, 0.085), pb::VerdictKind::VerdictGcHeavy);
        assert_eq!(run(&mut fleet, 130, 0.02), pb::VerdictKind::VerdictSteady);
        // Back to 8.5% from steady: steady stays.
        assert_eq!(run(&mut fleet, 60, 0.085), pb::VerdictKind::VerdictSteady);
        // Clearly past it: gc-heavy within a horizon.
        assert_eq!(run(&mut fleet, 60, 0.3), pb::VerdictKind::VerdictGcHeavy);
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
