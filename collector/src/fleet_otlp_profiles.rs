//! The stacks agents send, as OTLP profiles (`agent collector
//! --otlp-profiles-endpoint`): each stored report with stacks becomes one
//! export, one profile per process, its resource named as the agent would
//! name it (`tally_export::attrs::received_process`), with `host.name` the
//! report's node. A resent duplicate is not stored, so never exported twice.
//!
//! The collector's writer thread only decodes the report and queues the
//! batch; the exporter's own thread builds the request and sends it, and
//! drops the oldest batch when the endpoint falls behind (counted in
//! `tally_otlp_dropped_exports_total{signal="profiles"}` of the exporter).
use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use bytes::Bytes;
use tally_proto::received::ReceivedReport;

use crate::fleet_profiles::{DEFAULT_SAMPLE_PERIOD_NS, sample_period_ns};
use tally_core::workload::runtime_from_proto;
use tally_export::{
    attrs,
    otlp::{
        self, OtlpConfig, OtlpError, OtlpExporter,
        profiles::{ProcessStacks, ProfileBatch},
    },
    profile::wire,
};

pub struct OtlpProfiles {
    exporter: OtlpExporter,
}

impl OtlpProfiles {
    pub fn start(config: OtlpConfig) -> Result<Self, OtlpError> {
        tracing::info!(endpoint = %config.endpoint, "exporting the agents' stacks as OTLP profiles");
        Ok(Self {
            exporter: OtlpExporter::start(OtlpConfig {
                signal: otlp::Signal::Profiles,
                ..config
            })?,
        })
    }

    /// Queues the stacks of a stored report (its encoded bytes), if it has
    /// any.
    pub fn add_report(&self, body: &Bytes) {
        if let Some(batch) = batch(body) {
            self.exporter.push(Arc::new(batch));
        }
    }

    pub fn flush(&self, timeout: Duration) -> bool {
        self.exporter.flush(timeout)
    }
}

/// A report's stacks as a batch; `None` if it has none (or does not
/// decode, which a stored report always does).
fn batch(body: &Bytes) -> Option<ProfileBatch> {
    let report = ReceivedReport::decode(body.clone()).ok()?;
    let view = &report.view;
    if view.processes.iter().all(|p| p.stacks.is_empty()) {
        return None;
    }
    let mut period_ns = None;
    let mut processes = Vec::new();
    for (i, p) in view.processes.iter().enumerate() {
        if p.stacks.is_empty() {
            continue;
        }
        period_ns = period_ns.or_else(|| sample_period_ns(&p.delta.unwrap_or_default()));
        let mut stacks = wire::stacks_of(p);
        stacks.runtime = runtime_from_proto(p.runtime);
        processes.push(ProcessStacks {
            attrs: attrs::received_process(p, report.pod(i)),
            stacks,
        });
    }
    let ms = |v: i64| UNIX_EPOCH + Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let start = ms(view.window_start_unix_ms);
    let end = ms(view.window_end_unix_ms);
    Some(ProfileBatch {
        node: view
            .node
            .as_ref()
            .map(attrs::received_node)
            .unwrap_or_default(),
        processes,
        start,
        duration: end.duration_since(start).unwrap_or_default(),
        period_ns: period_ns.unwrap_or(DEFAULT_SAMPLE_PERIOD_NS),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost::Message as _;
    use tally_proto as pb;

    use super::*;
    use tally_core::model::stacks::FoldedStacks;

    #[test]
    fn a_report_with_stacks_is_one_batch_named_as_the_agent_names_it() {
        let f = |s: &str| Arc::<str>::from(s);
        let mut folded = FoldedStacks::default();
        folded
            .stacks
            .insert(vec![f("main.main"), f("main.burn")], 90);
        folded.stacks.insert(
            vec![f("runtime.gcBgMarkWorker"), f("runtime.scanobject")],
            10,
        );
        folded.gc_frames.insert(f("runtime.scanobject"));
        let id = "ab".repeat(32);
        let window = |pid: u32| pb::ProcessWindow {
            key: Some(pb::ProcessKey {
                pid,
                start_ticks: 1,
            }),
            comm: "app".into(),
            cgroup_path: format!(
                "/kubepods.slice/kubepods-pod0a1b2c3d_4e5f_4a6b_8c7d_9e0f1a2b3c4d.slice/cri-containerd-{id}.scope"
            ),
            container_id: id.clone(),
            runtime: pb::Runtime::Go as i32,
            delta: Some(pb::Counters {
                cpu_samples: 100,
                cpu_seconds: 1.0,
                ..Default::default()
            }),
            pod_ref: 1,
            ..Default::default()
        };
        let mut report = pb::NodeReport {
            node: Some(pb::NodeIdentity {
                node_name: "node-a".into(),
                region: "eu-west-1".into(),
                ..Default::default()
            }),
            window_start_unix_ms: 1_000,
            window_end_unix_ms: 11_000,
            processes: vec![window(7), window(8)],
            pods: vec![pb::PodMetadata {
                namespace: "shop".into(),
                pod_name: "cart-1".into(),
                pod_uid: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".into(),
                container_name: "cart".into(),
                owner_kind: "Deployment".into(),
                owner_name: "cart".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        wire::attach(&mut report, HashMap::from([(7, folded)]));
        let body = Bytes::from(report.encode_to_vec());
        let b = batch(&body).expect("a batch");
        assert_eq!(b.processes.len(), 1, "only the process with stacks");
        assert_eq!(b.period_ns, 10_000_000);
        assert_eq!(b.duration, Duration::from_secs(10));
        assert_eq!(b.node.host_name, "node-a");
        assert_eq!(b.node.cloud_region.as_deref(), Some("eu-west-1"));
        let p = &b.processes[0];
        assert_eq!(p.stacks.samples(), 100);
        assert_eq!(p.stacks.runtime, tally_core::gc::Runtime::Go);
        let pairs = p.attrs.pairs();
        for want in [
            ("process.pid", "7".to_owned()),
            ("process.executable.name", "app".to_owned()),
            ("container.id", id.clone()),
            ("k8s.namespace.name", "shop".to_owned()),
            ("k8s.pod.name", "cart-1".to_owned()),
            ("k8s.container.name", "cart".to_owned()),
            ("k8s.deployment.name", "cart".to_owned()),
            (
                "k8s.pod.uid",
                "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".to_owned(),
            ),
        ] {
            assert!(pairs.contains(&want), "{want:?} in {pairs:?}");
        }
        // No stacks: nothing to export.
        let mut bare = report.clone();
        for w in &mut bare.processes {
            w.stacks.clear();
        }
        assert!(batch(&Bytes::from(bare.encode_to_vec())).is_none());
    }
}
