//! Encodes NodeReports: from a collection tick to the `NodeReport` an agent
//! streams: each
//! process's window (deltas), its cumulative totals since the agent first
//! saw it, its runtime, threads and verdict.
use std::collections::HashMap;

use tally_proto as pb;

use crate::{
    gc::Runtime,
    model::{Counters, NodeIdentity, PodInfo, RuntimeSettings, Tick, Window},
    time::unix_ms,
};

/// The report of one tick.
pub fn node_report(tick: &Tick, node: &NodeIdentity, agent: pb::AgentStats) -> pb::NodeReport {
    let end = unix_ms(tick.at);
    let start = end - (tick.seconds * 1000.0).round() as i64;
    let mut pods = PodTable::default();
    pb::NodeReport {
        node: Some(pb::NodeIdentity {
            node_name: node.node_name.clone(),
            instance_type: node.instance_type.clone(),
            zone: node.zone.clone(),
            region: node.region.clone(),
            lifecycle: node.lifecycle.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            cpus: node.cpus,
            ..Default::default()
        }),
        sequence: 0,
        window_start_unix_ms: start,
        window_end_unix_ms: end,
        processes: tick
            .windows
            .iter()
            .map(|w| {
                let mut p = process_window(w);
                p.pod_ref = w.pod.as_deref().map_or(0, |pod| pods.refer(pod));
                p
            })
            .collect(),
        agent: Some(agent),
        pods: pods.table,
        container_pressures: container_pressures(&tick.windows),
    }
}

/// Each container's pressure once, from the first of its windows that has
/// it (every window of a cgroup shares one).
fn container_pressures(windows: &[crate::model::Window]) -> Vec<pb::ContainerPressure> {
    let mut out: Vec<pb::ContainerPressure> = Vec::new();
    for w in windows {
        let (Some(p), Some(c)) = (
            w.pressure.as_deref(),
            w.cgroup.as_ref().and_then(|c| c.container.as_ref()),
        ) else {
            continue;
        };
        if out.iter().any(|o| o.container_id == c.id) {
            continue;
        }
        let stall = |r: Option<crate::model::pressure::PressureWindow>| {
            r.map(|r| pb::Stall {
                some_us: r.delta.some_us,
                full_us: r.delta.full_us,
            })
        };
        out.push(pb::ContainerPressure {
            container_id: c.id.clone(),
            memory: stall(p.memory),
            cpu: stall(p.cpu),
        });
    }
    out
}

/// A report's pods, each once: a container's windows name the same pod.
#[derive(Default)]
struct PodTable<'a> {
    table: Vec<pb::PodMetadata>,
    refs: HashMap<&'a PodInfo, u32>,
}

impl<'a> PodTable<'a> {
    /// The 1-based `pod_ref` of `pod`, added to the table if new.
    fn refer(&mut self, pod: &'a PodInfo) -> u32 {
        *self.refs.entry(pod).or_insert_with(|| {
            self.table.push(pod_metadata(pod));
            u32::try_from(self.table.len()).unwrap_or(u32::MAX)
        })
    }
}

fn process_window(w: &Window) -> pb::ProcessWindow {
    let signals = w.gc_signals();
    let mut delta = counters(&w.delta, w.cpu_seconds);
    delta.gc_thread_cpu_seconds = signals.gc_thread_cpu_seconds;
    delta.gc_stack_cpu_seconds = signals.gc_stack_cpu_seconds;
    delta.gc_cpu_seconds = signals.gc_cpu_seconds();
    delta.gc_blind_cpu_seconds = signals.gc_blind_cpu_seconds;
    let container = w.cgroup.as_ref().and_then(|c| c.container.as_ref());
    pb::ProcessWindow {
        key: Some(pb::ProcessKey {
            pid: w.key.tgid,
            start_ticks: w.key.start_ticks,
        }),
        comm: wire_text(&w.comm, 64),
        cgroup_id: w.cgroup_id.unwrap_or(0),
        cgroup_path: w
            .cgroup
            .as_ref()
            .map(|c| wire_text(&c.path, 4096))
            .unwrap_or_default(),
        container_id: container.map(|c| wire_text(&c.id, 128)).unwrap_or_default(),
        runtime: runtime(w.runtime) as i32,
        delta: Some(delta),
        total: Some(counters(&w.total, w.total_cpu_seconds)),
        rss_bytes: w.rss_bytes,
        exited: w.exited,
        verdict: w.verdict.as_ref().map(|v| pb::Verdict {
            kind: v.kind.to_proto() as i32,
            confidence: v.confidence,
            reasons: v.reasons.clone(),
        }),
        thread_groups: w
            .threads
            .iter()
            .map(|g| pb::ThreadGroup {
                name: wire_text(&g.name, 64),
                threads: g.threads,
                cpu_seconds: g.cpu_seconds,
                gc: g.gc,
            })
            .collect(),
        settings: w.settings.as_deref().map(RuntimeSettings::to_proto),
        // `pod_ref` is set by `node_report`, which keeps the report's pod
        // table; stacks are added by `profile::wire::attach` when recorded.
        ..Default::default()
    }
}

/// Text from the node as reports carry it: any process can name itself
/// (or a thread, or a cgroup) with control characters, so those become
/// U+FFFD, and a name longer than `max` bytes is cut at a character
/// boundary. The collector refuses reports that break these rules: one odd
/// process must not get the whole node's report refused.
pub fn wire_text(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// A container's Kubernetes names, as reports carry them.
pub fn pod_metadata(p: &PodInfo) -> pb::PodMetadata {
    let r = &p.resources;
    pb::PodMetadata {
        namespace: p.namespace.clone(),
        pod_name: p.pod.clone(),
        pod_uid: p.pod_uid.clone(),
        container_name: p.container.clone().unwrap_or_default(),
        owner_kind: p.owner.as_ref().map(|o| o.kind.clone()).unwrap_or_default(),
        owner_name: p.owner.as_ref().map(|o| o.name.clone()).unwrap_or_default(),
        labels: p.labels.clone().into_iter().collect(),
        qos_class: p.qos_class.clone().unwrap_or_default(),
        cpu_request_millicores: r.cpu_request_millicores.unwrap_or(0),
        cpu_limit_millicores: r.cpu_limit_millicores.unwrap_or(0),
        memory_request_bytes: r.memory_request_bytes.unwrap_or(0),
        memory_limit_bytes: r.memory_limit_bytes.unwrap_or(0),
        source: p.source.name().to_owned(),
    }
}

fn counters(c: &Counters, cpu_seconds: f64) -> pb::Counters {
    pb::Counters {
        cpu_samples: c.cpu_samples,
        cpu_seconds,
        mmap_calls: c.mmap_calls,
        mmap_bytes: c.mmap_bytes,
        munmap_calls: c.munmap_calls,
        munmap_bytes: c.munmap_bytes,
        brk_calls: c.brk_calls,
        brk_bytes: c.brk_bytes,
        mremap_calls: c.mremap_calls,
        mremap_bytes: c.mremap_bytes,
        madvise_calls: c.madvise_calls,
        madvise_dontneed_bytes: c.madvise_dontneed_bytes,
        madvise_free_bytes: c.madvise_free_bytes,
        madvise_other_bytes: c.madvise_other_bytes,
        minor_faults: c.minor_faults,
        major_faults: c.major_faults,
        gc_cycles: c.gc_cycles,
        gc_pause_seconds: c.gc_pause_seconds(),
        ..Default::default()
    }
}

pub fn runtime(r: Runtime) -> pb::Runtime {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::pod::{Resources, Source};

    fn pod(name: &str, container: &str) -> PodInfo {
        PodInfo {
            namespace: "shop".into(),
            pod: name.into(),
            pod_uid: format!("uid-{name}"),
            container: Some(container.into()),
            labels: [("app".to_owned(), name.to_owned())].into(),
            owner: None,
            qos_class: Some("Burstable".into()),
            resources: Resources::default(),
            source: Source::ApiServer,
        }
    }

    /// Equal pods share one entry; another container is another entry.
    #[test]
    fn each_pod_goes_into_the_table_once() {
        let (a, a_again, b) = (pod("web", "app"), pod("web", "app"), pod("web", "sidecar"));
        let mut t = PodTable::default();
        assert_eq!(
            [t.refer(&a), t.refer(&a_again), t.refer(&b), t.refer(&a)],
            [1, 1, 2, 1]
        );
        assert_eq!(t.table.len(), 2);
        assert_eq!(t.table[0], pod_metadata(&a));
        assert_eq!(t.table[1].container_name, "sidecar");
    }
}
