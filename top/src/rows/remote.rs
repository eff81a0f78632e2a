//! Rows of a collector's workloads (remote mode): one per workload, with
//! the collector's summaries (no per-syscall counts, no threads, no stacks).
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use tally_proto as pb;

use super::{Entry, RowId, RowKind, Rows, Stacks, Totals, sanitize, short_id};
use tally_core::gc::{self, VerdictKind};

fn verdict_from_proto(v: Option<&pb::Verdict>) -> Option<gc::Verdict> {
    let v = v?;
    let kind = VerdictKind::from_proto(v.kind())?;
    Some(gc::Verdict {
        kind,
        confidence: v.confidence,
        reasons: v.reasons.clone(),
    })
}

/// The row of a collector workload.
pub fn workload_entry(w: &pb::Workload) -> Option<Entry> {
    use tally_core::workload::WorkloadId;
    let id = WorkloadId::from_proto(w.key.as_ref()?)?;
    let mut e = Entry::blank(RowId::Workload(Arc::from(id.db_key())), RowKind::Process);
    match &id {
        WorkloadId::Container(c) => {
            e.container_id = Some(c.to_string());
            e.container_short = short_id(c);
        }
        WorkloadId::Process { pid, .. } => e.pid = Some(*pid),
    }
    // Kubernetes names where the collector has them: they are what an SRE
    // looks for; the runtime's name and container id otherwise.
    let pod = w.pod.as_ref().filter(|p| !p.pod_name.is_empty());
    e.pod_name = pod.map(|p| {
        if p.container_name.is_empty() {
            format!("{}/{}", p.namespace, p.pod_name)
        } else {
            format!("{}/{}/{}", p.namespace, p.pod_name, p.container_name)
        }
    });
    let name = e
        .pod_name
        .clone()
        .unwrap_or_else(|| tally_core::workload::label(w));
    e.set_name(&name);
    e.node = sanitize(&w.nodes.join(","));
    e.cgroup_path = sanitize(&w.cgroup_path);
    e.pod_uid = tally_core::workload::pod_uid(w);
    e.runtime = tally_core::workload::runtime_from_proto(w.runtime);
    e.settings = w
        .settings
        .as_ref()
        .and_then(tally_core::model::RuntimeSettings::from_proto)
        .map(std::sync::Arc::new);
    let secs = w.window_seconds.max(1e-9);
    e.cpu_pct = 100.0 * w.cpu_seconds / secs;
    e.gc_pct = 100.0 * w.gc_cpu_share;
    e.set_verdict(verdict_from_proto(w.verdict.as_ref()).as_ref());
    e.alloc_bps = w.alloc_bytes_per_second;
    e.faults_ps = w.faults_per_second;
    e.rss = w.rss_bytes;
    e.memory_stall_pct = w.memory_stall_share.map(|s| 100.0 * s);
    e.stacks = Stacks::Unavailable;
    e.fill_search();
    Some(e)
}

/// A workload is listed while it reported recently: within three of its
/// windows, and at least 30 s, of the newest report the collector has.
pub fn fresh(w: &pb::Workload, newest_ms: i64) -> bool {
    let keep_ms = (3.0 * w.window_seconds * 1000.0).max(30_000.0) as i64;
    newest_ms - w.last_seen_unix_ms <= keep_ms
}

/// Rows of the collector's workloads (those that reported recently).
pub fn remote_rows(workloads: &[&pb::Workload]) -> Rows {
    let newest = workloads
        .iter()
        .map(|w| w.last_seen_unix_ms)
        .max()
        .unwrap_or(0);
    let processes: Vec<Entry> = workloads
        .iter()
        .filter(|w| fresh(w, newest))
        .filter_map(|w| workload_entry(w))
        .collect();
    let totals = Totals {
        cpu_cores: processes.iter().map(|e| e.cpu_pct).sum::<f64>() / 100.0,
        cpus: 0,
        faults_ps: processes.iter().map(|e| e.faults_ps).sum(),
        alloc_bps: processes.iter().map(|e| e.alloc_bps).sum(),
        gc_heavy: processes
            .iter()
            .filter(|e| e.verdict == Some(VerdictKind::GcHeavy))
            .count(),
        active: processes.len(),
        lost: 0,
        cost_month: None,
    };
    let at = (newest > 0).then(|| UNIX_EPOCH + Duration::from_millis(newest as u64));
    let pods = pod_rows(&processes);
    Rows {
        at,
        seconds: workloads
            .iter()
            .map(|w| w.window_seconds)
            .fold(0.0, f64::max),
        processes,
        containers: Vec::new(),
        pods,
        totals,
        node_label: None,
    }
}

/// Workloads added up per pod (by UID); a workload outside any pod stays
/// a row of its own. A pod's verdict is its most severe container's, with
/// that container's reasons; its GC share is CPU-weighted.
pub fn pod_rows(workloads: &[Entry]) -> Vec<Entry> {
    let mut order: Vec<Arc<str>> = Vec::new();
    let mut members: HashMap<Arc<str>, Vec<&Entry>> = HashMap::new();
    for e in workloads {
        let key: Arc<str> = match &e.pod_uid {
            Some(uid) => Arc::from(uid.as_str()),
            None => match &e.id {
                RowId::Workload(k) => Arc::from(format!("workload:{k}")),
                other => Arc::from(format!("{other:?}")),
            },
        };
        members
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(e);
    }
    order
        .into_iter()
        .filter_map(|key| {
            let list = members.remove(&key)?;
            let first = list[0];
            let id = match &first.pod_uid {
                Some(_) => RowId::Pod(key),
                None => first.id.clone(),
            };
            let mut g = Entry::blank(id, RowKind::Group);
            g.procs = list.len() as u32;
            // `namespace/pod`, without the container.
            let pod = first.pod_name.as_ref().map(|n| {
                let mut parts = n.splitn(3, '/');
                match (parts.next(), parts.next()) {
                    (Some(ns), Some(p)) => format!("{ns}/{p}"),
                    _ => n.clone(),
                }
            });
            g.set_name(pod.as_deref().unwrap_or(&first.name));
            g.pod_name = pod;
            g.pod_uid.clone_from(&first.pod_uid);
            let mut nodes: Vec<&str> = list
                .iter()
                .flat_map(|e| e.node.split(','))
                .filter(|n| !n.is_empty())
                .collect();
            nodes.sort_unstable();
            nodes.dedup();
            g.node = nodes.join(",");
            let busiest = list
                .iter()
                .max_by(|a, b| a.cpu_pct.total_cmp(&b.cpu_pct))
                .copied()
                .unwrap_or(first);
            g.runtime = busiest.runtime;
            g.cpu_pct = list.iter().map(|e| e.cpu_pct).sum();
            g.gc_pct = if g.cpu_pct > 0.0 {
                list.iter().map(|e| e.cpu_pct * e.gc_pct).sum::<f64>() / g.cpu_pct
            } else {
                0.0
            };
            let worst = list
                .iter()
                .max_by(|a, b| {
                    a.severity()
                        .cmp(&b.severity())
                        .then(a.cpu_pct.total_cmp(&b.cpu_pct))
                })
                .copied()
                .unwrap_or(first);
            g.verdict = worst.verdict;
            g.confidence = worst.confidence;
            let who = worst
                .pod_name
                .as_deref()
                .and_then(|n| n.rsplit('/').next())
                .unwrap_or(&worst.name);
            g.reasons = if list.len() > 1 {
                worst
                    .reasons
                    .iter()
                    .map(|r| format!("{who}: {r}"))
                    .collect()
            } else {
                worst.reasons.clone()
            };
            g.alloc_bps = list.iter().map(|e| e.alloc_bps).sum();
            g.faults_ps = list.iter().map(|e| e.faults_ps).sum();
            g.rss = list.iter().map(|e| e.rss).sum();
            g.stacks = Stacks::Unavailable;
            g.fill_search();
            Some(g)
        })
        .collect()
}

/// One point of a workload's history (WorkloadHistory), as charted.
pub fn history_point(p: &pb::WorkloadPoint) -> [f32; 5] {
    let d = p.delta.unwrap_or_default();
    let secs = p.window_seconds.max(1e-9);
    // The runtime does not change a point's numbers.
    let s = tally_core::workload::signals(
        tally_core::gc::Runtime::Unknown,
        p.window_seconds,
        &d,
        p.rss_bytes,
    );
    [
        (100.0 * s.cpu_seconds / secs) as f32,
        (100.0 * s.gc_cpu_share()) as f32,
        ((s.minor_faults + s.major_faults) as f64 / secs) as f32,
        (s.alloc_bytes as f64 / secs) as f32,
        p.rss_bytes as f32,
    ]
}
