//! What a verdict is about, and what one report says about it: the
//! [`WorkloadId`] of each process (its container, else the process itself),
//! the windows of a report summed per workload, and the [`GcSignals`] the
//! classification library reads from them.
use std::{borrow::Cow, collections::HashMap, fmt, sync::Arc};

use bytes::Bytes;
use tally_proto::{
    self as pb,
    received::{ProcessView, ReceivedReport},
};

use crate::{
    gc::{GcSignals, Runtime},
    model,
};

/// A container (by runtime id, the same on every node), else a process on a
/// node (pid plus start time, so a reused pid is a new workload).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadId {
    Container(Arc<str>),
    Process {
        node: Arc<str>,
        pid: u32,
        start_ticks: u64,
    },
}

/// Received text: UTF-8 from any agent of ours; anything else is replaced,
/// never refused.
pub fn text(b: &Bytes) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

impl WorkloadId {
    /// The workload a process belongs to.
    pub fn of(node: &Arc<str>, p: &ProcessView) -> Self {
        if p.container_id.is_empty() {
            let key = p.key.unwrap_or_default();
            WorkloadId::Process {
                node: node.clone(),
                pid: key.pid,
                start_ticks: key.start_ticks,
            }
        } else {
            WorkloadId::Container(Arc::from(text(&p.container_id)))
        }
    }

    /// The text key under which the store keeps it: unique, stable, and
    /// readable in `sqlite3`.
    pub fn db_key(&self) -> String {
        self.to_string()
    }

    /// Parses [`WorkloadId::db_key`].
    pub fn from_db_key(s: &str) -> Option<Self> {
        if let Some(id) = s.strip_prefix("container/") {
            return Some(WorkloadId::Container(Arc::from(id)));
        }
        let rest = s.strip_prefix("process/")?;
        // The node name may hold '/', the two numbers never do.
        let (rest, start) = rest.rsplit_once('/')?;
        let (node, pid) = rest.rsplit_once('/')?;
        Some(WorkloadId::Process {
            node: Arc::from(node),
            pid: pid.parse().ok()?,
            start_ticks: start.parse().ok()?,
        })
    }

    pub fn to_proto(&self) -> pb::WorkloadKey {
        let key = match self {
            WorkloadId::Container(id) => pb::workload_key::Key::ContainerId(id.to_string()),
            WorkloadId::Process {
                node,
                pid,
                start_ticks,
            } => pb::workload_key::Key::Process(pb::ProcessOnNode {
                node_name: node.to_string(),
                key: Some(pb::ProcessKey {
                    pid: *pid,
                    start_ticks: *start_ticks,
                }),
            }),
        };
        pb::WorkloadKey { key: Some(key) }
    }

    /// None for a key without a container id or process.
    pub fn from_proto(k: &pb::WorkloadKey) -> Option<Self> {
        match k.key.as_ref()? {
            pb::workload_key::Key::ContainerId(id) if !id.is_empty() => {
                Some(WorkloadId::Container(Arc::from(id.as_str())))
            }
            pb::workload_key::Key::Process(p) if !p.node_name.is_empty() => {
                let key = p.key?;
                Some(WorkloadId::Process {
                    node: Arc::from(p.node_name.as_str()),
                    pid: key.pid,
                    start_ticks: key.start_ticks,
                })
            }
            _ => None,
        }
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadId::Container(id) => write!(f, "container/{id}"),
            WorkloadId::Process {
                node,
                pid,
                start_ticks,
            } => write!(f, "process/{node}/{pid}/{start_ticks}"),
        }
    }
}

/// The workload's name and identity: `comm/container-id` (12 digits, as
/// docker shows them) or `comm[pid]`.
pub fn label(w: &pb::Workload) -> String {
    let id = w.key.as_ref().and_then(WorkloadId::from_proto);
    let name = if w.name.is_empty() { "?" } else { &w.name };
    match id {
        Some(WorkloadId::Container(c)) => {
            format!("{name}/{}", c.chars().take(12).collect::<String>())
        }
        Some(WorkloadId::Process { pid, .. }) => format!("{name}[{pid}]"),
        None => name.to_owned(),
    }
}

/// A container workload's full id (64 hex digits, as the runtime reports
/// it); `None` for a process outside containers. Tables show its first 12
/// ([`label`]); machines get all of it.
pub fn container_id(w: &pb::Workload) -> Option<String> {
    match w.key.as_ref().and_then(WorkloadId::from_proto)? {
        WorkloadId::Container(id) => Some(id.to_string()),
        WorkloadId::Process { .. } => None,
    }
}

/// The uid of the pod a workload runs in: as the API server gave it, else
/// as the kubelet spelled it in the container's cgroup path; `None`
/// outside Kubernetes.
pub fn pod_uid(w: &pb::Workload) -> Option<String> {
    w.pod
        .as_ref()
        .map(|p| p.pod_uid.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| crate::model::container::parse(&w.cgroup_path).and_then(|c| c.pod_uid))
}

/// One workload's part of one report: the sum of its processes' windows.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadWindow {
    pub id: WorkloadId,
    /// The comm of its first process in the report (a slice of the
    /// received report, not a copy).
    pub name: Bytes,
    pub cgroup_path: Bytes,
    pub runtime: Runtime,
    pub processes: u32,
    pub delta: pb::Counters,
    pub rss_bytes: u64,
    /// The container's pod, from the first of its processes that names one
    /// (with its container name, if any does).
    pub pod: Option<pb::PodMetadata>,
    /// The runtime settings of its main garbage-collected process: of the
    /// processes that carry settings, the one with the most CPU in the
    /// report.
    pub settings: Option<pb::RuntimeSettings>,
}

/// Whether `comm` is one of runc's setup stages (`runc:[0:PARENT]`,
/// `runc:[1:CHILD]`, `runc:[2:INIT]`): the container runtime's own
/// process, in the container's cgroup for a moment before it executes the
/// workload. It names no workload, and its runtime (runc is written in Go)
/// is not the workload's: seen first, it once named a JVM container
/// `runc:[0:PARENT]` and called it Go.
pub fn is_container_runtime_stage(comm: &[u8]) -> bool {
    comm.starts_with(b"runc:[")
}

/// Sums a report's process windows per workload, in the order workloads
/// first appear in the report.
pub fn workload_windows(node: &Arc<str>, received: &ReceivedReport) -> Vec<WorkloadWindow> {
    let report = &received.view;
    let mut out: Vec<WorkloadWindow> = Vec::with_capacity(report.processes.len());
    // Only containers need grouping; a process outside one is its own
    // workload, so the map stays as small as the number of containers.
    let mut containers: HashMap<&[u8], usize> = HashMap::new();
    // The CPU of the process whose settings each workload carries.
    let mut settings_cpu: Vec<f64> = Vec::with_capacity(report.processes.len());
    for (index, p) in report.processes.iter().enumerate() {
        let pod = received.pod(index);
        let delta = p.delta.unwrap_or_default();
        let stage = is_container_runtime_stage(&p.comm);
        let runtime = if stage {
            Runtime::Unknown
        } else {
            runtime_from_proto(p.runtime)
        };
        if !p.container_id.is_empty() {
            if let Some(&i) = containers.get(&p.container_id[..]) {
                let w = &mut out[i];
                if !stage && is_container_runtime_stage(&w.name) {
                    w.name = p.comm.clone();
                }
                add_counters(&mut w.delta, &delta);
                w.rss_bytes = w.rss_bytes.saturating_add(p.rss_bytes);
                w.processes += 1;
                w.runtime = Runtime::merge(w.runtime, runtime);
                if w.pod.as_ref().is_none_or(|m| m.container_name.is_empty())
                    && let Some(pod) = pod
                {
                    w.pod = Some(pod.clone());
                }
                if let Some(settings) = &p.settings
                    && (w.settings.is_none() || delta.cpu_seconds > settings_cpu[i])
                {
                    w.settings = Some(settings.clone());
                    settings_cpu[i] = delta.cpu_seconds;
                }
                continue;
            }
            containers.insert(&p.container_id[..], out.len());
        }
        out.push(WorkloadWindow {
            id: WorkloadId::of(node, p),
            name: p.comm.clone(),
            cgroup_path: p.cgroup_path.clone(),
            runtime,
            processes: 1,
            delta,
            rss_bytes: p.rss_bytes,
            pod: pod.cloned(),
            settings: p.settings.clone(),
        });
        settings_cpu.push(delta.cpu_seconds);
    }
    // A container's stall is its cgroup's, from the report's own list, never
    // what a process's counters claim.
    for w in &mut out {
        w.delta.memory_stall_us = None;
    }
    for cp in &report.container_pressures {
        let Some(memory) = cp.memory else { continue };
        if let Some(&i) = containers.get(&cp.container_id[..]) {
            out[i].delta.memory_stall_us = Some(memory.some_us);
        }
    }
    out
}

/// Field-wise `a += b`.
pub fn add_counters(a: &mut pb::Counters, b: &pb::Counters) {
    a.cpu_samples = a.cpu_samples.saturating_add(b.cpu_samples);
    a.cpu_seconds += b.cpu_seconds;
    a.mmap_calls = a.mmap_calls.saturating_add(b.mmap_calls);
    a.mmap_bytes = a.mmap_bytes.saturating_add(b.mmap_bytes);
    a.munmap_calls = a.munmap_calls.saturating_add(b.munmap_calls);
    a.munmap_bytes = a.munmap_bytes.saturating_add(b.munmap_bytes);
    a.brk_calls = a.brk_calls.saturating_add(b.brk_calls);
    a.brk_bytes = a.brk_bytes.saturating_add(b.brk_bytes);
    a.mremap_calls = a.mremap_calls.saturating_add(b.mremap_calls);
    a.mremap_bytes = a.mremap_bytes.saturating_add(b.mremap_bytes);
    a.madvise_calls = a.madvise_calls.saturating_add(b.madvise_calls);
    a.madvise_dontneed_bytes = a
        .madvise_dontneed_bytes
        .saturating_add(b.madvise_dontneed_bytes);
    a.madvise_free_bytes = a.madvise_free_bytes.saturating_add(b.madvise_free_bytes);
    a.madvise_other_bytes = a.madvise_other_bytes.saturating_add(b.madvise_other_bytes);
    a.minor_faults = a.minor_faults.saturating_add(b.minor_faults);
    a.major_faults = a.major_faults.saturating_add(b.major_faults);
    a.gc_cpu_seconds += b.gc_cpu_seconds;
    a.gc_cycles = a.gc_cycles.saturating_add(b.gc_cycles);
    a.gc_pause_seconds += b.gc_pause_seconds;
    a.gc_thread_cpu_seconds += b.gc_thread_cpu_seconds;
    a.gc_stack_cpu_seconds += b.gc_stack_cpu_seconds;
    a.gc_blind_cpu_seconds += b.gc_blind_cpu_seconds;
    a.memory_stall_us = match (a.memory_stall_us, b.memory_stall_us) {
        (Some(x), Some(y)) => Some(x.saturating_add(y)),
        (x, y) => x.or(y),
    };
}

/// What the classification library reads from one window's counters.
pub fn signals(
    runtime: Runtime,
    window_seconds: f64,
    delta: &pb::Counters,
    rss_bytes: u64,
) -> GcSignals {
    GcSignals {
        runtime,
        window_seconds,
        cpu_seconds: delta.cpu_seconds,
        cpu_samples: delta.cpu_samples,
        gc_blind_cpu_seconds: delta.gc_blind_cpu_seconds,
        // The wire carries how much CPU was blind, not why.
        gc_blind: None,
        gc_thread_cpu_seconds: delta.gc_thread_cpu_seconds,
        gc_stack_cpu_seconds: delta.gc_stack_cpu_seconds,
        gc_cycles: delta.gc_cycles,
        gc_pause_seconds: delta.gc_pause_seconds,
        alloc_bytes: model::alloc_bytes(delta.mmap_bytes, delta.brk_bytes, delta.mremap_bytes),
        release_bytes: model::release_bytes(
            delta.munmap_bytes,
            delta.madvise_dontneed_bytes,
            delta.madvise_free_bytes,
        ),
        alloc_calls: model::alloc_calls([
            delta.mmap_calls,
            delta.munmap_calls,
            delta.brk_calls,
            delta.mremap_calls,
            delta.madvise_calls,
        ]),
        minor_faults: delta.minor_faults,
        major_faults: delta.major_faults,
        rss_bytes,
        memory_stall_seconds: delta.memory_stall_us.map(|us| us as f64 / 1e6),
    }
}

pub fn runtime_from_proto(r: i32) -> Runtime {
    match pb::Runtime::try_from(r) {
        Ok(pb::Runtime::Go) => Runtime::Go,
        Ok(pb::Runtime::Jvm) => Runtime::Jvm,
        Ok(pb::Runtime::Node) => Runtime::Node,
        Ok(pb::Runtime::Dotnet) => Runtime::Dotnet,
        Ok(pb::Runtime::Python) => Runtime::Python,
        Ok(pb::Runtime::Native) => Runtime::Native,
        // Unspecified, unknown, or a value from a newer agent.
        _ => Runtime::Unknown,
    }
}

pub fn runtime_to_proto(r: Runtime) -> pb::Runtime {
    match r {
        Runtime::Go => pb::Runtime::Go,
        Runtime::Jvm => pb::Runtime::Jvm,
        Runtime::Node => pb::Runtime::Node,
        Runtime::Dotnet => pb::Runtime::Dotnet,
        Runtime::Python => pb::Runtime::Python,
        Runtime::Native => pb::Runtime::Native,
        Runtime::Unknown => pb::Runtime::Unknown,
    }
}

pub fn verdict_to_proto(v: &crate::gc::Verdict) -> pb::Verdict {
    pb::Verdict {
        kind: v.kind.to_proto() as i32,
        confidence: v.confidence,
        reasons: v.reasons.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use prost::Message as _;

    fn process(pid: u32, container: &str, cpu: f64, mmap: u64) -> pb::ProcessWindow {
        pb::ProcessWindow {
            key: Some(pb::ProcessKey {
                pid,
                start_ticks: 100 + u64::from(pid),
            }),
            comm: format!("p{pid}"),
            container_id: container.to_owned(),
            runtime: pb::Runtime::Native as i32,
            delta: Some(pb::Counters {
                cpu_seconds: cpu,
                mmap_bytes: mmap,
                mmap_calls: 1,
                ..Default::default()
            }),
            rss_bytes: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn db_keys_round_trip() {
        for id in [
            WorkloadId::Container(Arc::from("ab12")),
            WorkloadId::Process {
                node: Arc::from("a/b"),
                pid: 7,
                start_ticks: 99,
            },
        ] {
            assert_eq!(WorkloadId::from_db_key(&id.db_key()), Some(id.clone()));
            assert_eq!(WorkloadId::from_proto(&id.to_proto()), Some(id));
        }
        assert_eq!(WorkloadId::from_db_key("process/x/notanumber/1"), None);
    }

    #[test]
    fn container_processes_sum_and_others_stand_alone() {
        let mut report = pb::NodeReport {
            node: Some(pb::NodeIdentity {
                node_name: "n1".into(),
                ..Default::default()
            }),
            processes: vec![
                process(1, "c1", 0.5, 10),
                process(2, "", 0.1, 1),
                process(3, "c1", 0.25, 5),
            ],
            ..Default::default()
        };
        report.processes[2].runtime = pb::Runtime::Jvm as i32;
        let received = ReceivedReport::decode(Bytes::from(report.encode_to_vec())).unwrap();
        let w = workload_windows(&Arc::from("n1"), &received);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].id, WorkloadId::Container(Arc::from("c1")));
        assert_eq!(w[0].processes, 2);
        assert_eq!(w[0].name, "p1".as_bytes());
        assert_eq!(w[0].runtime, Runtime::Jvm);
        assert!((w[0].delta.cpu_seconds - 0.75).abs() < 1e-12);
        assert_eq!(w[0].delta.mmap_bytes, 15);
        assert_eq!(w[0].rss_bytes, 2000);
        assert_eq!(
            w[1].id,
            WorkloadId::Process {
                node: Arc::from("n1"),
                pid: 2,
                start_ticks: 102
            }
        );
    }

    #[test]
    fn a_containers_memory_stall_comes_from_the_reports_pressures_only() {
        let mut report = pb::NodeReport {
            processes: vec![
                process(1, "c1", 0.5, 10),
                process(2, "c1", 0.25, 5),
                process(3, "", 0.1, 1),
            ],
            container_pressures: vec![
                pb::ContainerPressure {
                    container_id: "c1".into(),
                    memory: Some(pb::Stall {
                        some_us: 250_000,
                        full_us: Some(100_000),
                    }),
                    cpu: None,
                },
                // Of no container in the report: ignored.
                pb::ContainerPressure {
                    container_id: "c9".into(),
                    memory: Some(pb::Stall::default()),
                    cpu: None,
                },
            ],
            ..Default::default()
        };
        // A process's own counters cannot claim a stall.
        for p in &mut report.processes {
            p.delta.as_mut().unwrap().memory_stall_us = Some(999);
        }
        report.processes[0]
            .delta
            .as_mut()
            .unwrap()
            .gc_blind_cpu_seconds = 0.5;
        report.processes[1]
            .delta
            .as_mut()
            .unwrap()
            .gc_blind_cpu_seconds = 0.25;
        let received = ReceivedReport::decode(Bytes::from(report.encode_to_vec())).unwrap();
        let w = workload_windows(&Arc::from("n1"), &received);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].delta.memory_stall_us, Some(250_000));
        assert_eq!(w[1].delta.memory_stall_us, None, "not a container");
        // Every process's blind CPU adds up, not the first one's alone.
        assert!((w[0].delta.gc_blind_cpu_seconds - 0.75).abs() < 1e-12);
        let s = signals(Runtime::Go, 10.0, &w[0].delta, 0);
        assert_eq!(s.memory_stall_seconds, Some(0.25));
        assert!((s.memory_stall_share().unwrap() - 0.025).abs() < 1e-12);
    }

    #[test]
    fn runc_setup_stages_name_no_container_and_lend_it_no_runtime() {
        let mut report = pb::NodeReport {
            processes: vec![process(1, "c1", 0.01, 1), process(2, "c1", 0.5, 10)],
            ..Default::default()
        };
        report.processes[0].comm = "runc:[0:PARENT]".into();
        report.processes[0].runtime = pb::Runtime::Go as i32;
        report.processes[1].comm = "java".into();
        report.processes[1].runtime = pb::Runtime::Jvm as i32;
        let received = ReceivedReport::decode(Bytes::from(report.encode_to_vec())).unwrap();
        let w = workload_windows(&Arc::from("n1"), &received);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].name, "java".as_bytes());
        assert_eq!(w[0].runtime, Runtime::Jvm);
        assert_eq!(w[0].processes, 2);
        assert!((w[0].delta.cpu_seconds - 0.51).abs() < 1e-12);
        assert!(is_container_runtime_stage(b"runc:[2:INIT]"));
        assert!(!is_container_runtime_stage(b"runc"));
    }

    #[test]
    fn signals_map_counters_one_to_one() {
        let c = pb::Counters {
            cpu_seconds: 2.0,
            gc_thread_cpu_seconds: 0.3,
            gc_stack_cpu_seconds: 0.1,
            gc_cpu_seconds: 0.4,
            mmap_bytes: 1,
            brk_bytes: 2,
            mremap_bytes: 4,
            munmap_bytes: 8,
            madvise_dontneed_bytes: 16,
            madvise_free_bytes: 32,
            madvise_other_bytes: 64,
            mmap_calls: 1,
            munmap_calls: 1,
            brk_calls: 1,
            mremap_calls: 1,
            madvise_calls: 1,
            ..Default::default()
        };
        let s = signals(Runtime::Go, 1.0, &c, 5);
        assert_eq!(s.alloc_bytes, 7);
        assert_eq!(s.release_bytes, 56);
        assert_eq!(s.alloc_calls, 5);
        assert!((s.gc_cpu_seconds() - 0.4).abs() < 1e-12);
        assert_eq!(s.rss_bytes, 5);
    }
}
