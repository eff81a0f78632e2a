//! `--json` output: one object a line, a process's window or a container's.
use std::{collections::BTreeMap, time::SystemTime};

use serde::Serialize;

use crate::{
    model::{ContainerWindow, PodInfo, RuntimeSettings, Window},
    time::rfc3339,
};

/// One line of `--json` output. Field names are the ones DESIGN.md fixes;
/// fields after `exited` are additions.
#[derive(Debug, Serialize)]
pub struct WindowRecord<'a> {
    pub ts: String,
    pub window_seconds: f64,
    pub pid: u32,
    pub comm: &'a str,
    pub cgroup_id: Option<u64>,
    pub cgroup_path: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub cpu_samples: u64,
    pub cpu_seconds: f64,
    pub mmap_calls: u64,
    pub mmap_bytes: u64,
    pub munmap_calls: u64,
    pub munmap_bytes: u64,
    pub brk_calls: u64,
    pub brk_bytes: u64,
    pub mremap_calls: u64,
    pub madvise_calls: u64,
    pub madvise_dontneed_bytes: u64,
    pub madvise_free_bytes: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    pub rss_bytes: u64,
    pub exited: bool,
    /// Start of the process, clock ticks after boot (field 22 of
    /// `/proc/<pid>/stat`): with `pid`, the process's identity.
    pub start_ticks: u64,
    pub mremap_bytes: u64,
    pub madvise_other_bytes: u64,
    pub container_runtime: Option<&'static str>,
    pub pod_uid: Option<&'a str>,
    pub qos_class: Option<&'static str>,
    /// "process"; container lines say "container".
    pub kind: &'static str,
    pub runtime: &'static str,
    /// `null` where the GC could not be seen (`gc-unobservable`).
    pub gc_cpu_share: Option<f64>,
    pub gc_cpu_seconds: f64,
    pub gc_cycles: u64,
    pub gc_pause_seconds: f64,
    pub verdict: &'static str,
    pub verdict_confidence: f64,
    pub verdict_reasons: &'a [String],
    /// The busiest thread groups (up to 8), by name.
    pub threads: Vec<ThreadRecord<'a>>,
    /// Its runtime settings (Go, JVM, Node): null for other runtimes.
    pub settings: Option<&'a RuntimeSettings>,
    /// Kubernetes names, owner, requests and limits: null where unknown.
    #[serde(flatten)]
    pub k8s: K8sRecord<'a>,
}

/// The Kubernetes fields of a line (`enrich::kube`), after the others.
#[derive(Debug, Default, Serialize)]
pub struct K8sRecord<'a> {
    pub namespace: Option<&'a str>,
    pub pod_name: Option<&'a str>,
    pub container_name: Option<&'a str>,
    pub owner_kind: Option<&'a str>,
    pub owner_name: Option<&'a str>,
    /// `app.kubernetes.io/name`, else `app`.
    pub app: Option<&'a str>,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub pod_qos_class: Option<&'a str>,
    pub cpu_request_cores: Option<f64>,
    pub cpu_limit_cores: Option<f64>,
    pub memory_request_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// "api-server" or "runtime".
    pub pod_source: Option<&'static str>,
}

impl<'a> K8sRecord<'a> {
    pub fn new(pod: Option<&'a PodInfo>) -> Self {
        let Some(p) = pod else {
            return Self::default();
        };
        let cores = |m: Option<u64>| m.map(|m| m as f64 / 1000.0);
        Self {
            namespace: Some(&p.namespace),
            pod_name: Some(&p.pod),
            container_name: p.container.as_deref(),
            owner_kind: p.owner.as_ref().map(|o| o.kind.as_str()),
            owner_name: p.owner.as_ref().map(|o| o.name.as_str()),
            app: p.app(),
            labels: (!p.labels.is_empty()).then_some(&p.labels),
            pod_qos_class: p.qos_class.as_deref(),
            cpu_request_cores: cores(p.resources.cpu_request_millicores),
            cpu_limit_cores: cores(p.resources.cpu_limit_millicores),
            memory_request_bytes: p.resources.memory_request_bytes,
            memory_limit_bytes: p.resources.memory_limit_bytes,
            pod_source: Some(p.source.name()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ThreadRecord<'a> {
    pub name: &'a str,
    pub threads: u32,
    pub cpu_seconds: f64,
    pub gc: bool,
}

impl<'a> WindowRecord<'a> {
    pub fn new(w: &'a Window, ts: &str) -> Self {
        let signals = w.gc_signals();
        let container = w.cgroup.as_ref().and_then(|c| c.container.as_ref());
        let d = &w.delta;
        Self {
            ts: ts.to_string(),
            window_seconds: round_to(w.seconds, 3),
            pid: w.key.tgid,
            comm: &w.comm,
            cgroup_id: w.cgroup_id,
            cgroup_path: w.cgroup.as_ref().map(|c| c.path.as_str()),
            container_id: container.map(|c| c.id.as_str()),
            cpu_samples: d.cpu_samples,
            cpu_seconds: round_to(w.cpu_seconds, 6),
            mmap_calls: d.mmap_calls,
            mmap_bytes: d.mmap_bytes,
            munmap_calls: d.munmap_calls,
            munmap_bytes: d.munmap_bytes,
            brk_calls: d.brk_calls,
            brk_bytes: d.brk_bytes,
            mremap_calls: d.mremap_calls,
            madvise_calls: d.madvise_calls,
            madvise_dontneed_bytes: d.madvise_dontneed_bytes,
            madvise_free_bytes: d.madvise_free_bytes,
            minor_faults: d.minor_faults,
            major_faults: d.major_faults,
            rss_bytes: w.rss_bytes,
            exited: w.exited,
            start_ticks: w.key.start_ticks,
            mremap_bytes: d.mremap_bytes,
            madvise_other_bytes: d.madvise_other_bytes,
            container_runtime: container.map(|c| runtime_name(c.runtime)),
            pod_uid: container.and_then(|c| c.pod_uid.as_deref()),
            qos_class: container.and_then(|c| c.qos).map(qos_name),
            kind: "process",
            runtime: w.runtime.name(),
            gc_cpu_share: signals.observed_gc_share().map(|s| round_to(s, 4)),
            gc_cpu_seconds: round_to(signals.gc_cpu_seconds(), 6),
            gc_cycles: d.gc_cycles,
            gc_pause_seconds: round_to(signals.gc_pause_seconds, 6),
            verdict: w.verdict.as_ref().map_or("", |v| v.kind.name()),
            verdict_confidence: w
                .verdict
                .as_ref()
                .map_or(0.0, |v| round_to(v.confidence, 2)),
            verdict_reasons: w.verdict.as_ref().map_or(&[][..], |v| &v.reasons[..]),
            threads: w
                .threads
                .iter()
                .take(8)
                .map(|g| ThreadRecord {
                    name: &g.name,
                    threads: g.threads,
                    cpu_seconds: round_to(g.cpu_seconds, 6),
                    gc: g.gc,
                })
                .collect(),
            settings: w.settings.as_deref(),
            k8s: K8sRecord::new(w.pod.as_deref()),
        }
    }
}

/// One line of `--json` output for a container: its processes' windows
/// added up, and the container's own verdict.
#[derive(Debug, Serialize)]
pub struct ContainerRecord<'a> {
    pub ts: String,
    pub window_seconds: f64,
    pub kind: &'static str,
    pub container_id: &'a str,
    pub container_runtime: &'static str,
    pub pod_uid: Option<&'a str>,
    pub qos_class: Option<&'static str>,
    pub cgroup_path: &'a str,
    pub pids: &'a [u32],
    pub runtime: &'static str,
    pub cpu_samples: u64,
    pub cpu_seconds: f64,
    pub mmap_calls: u64,
    pub mmap_bytes: u64,
    pub munmap_calls: u64,
    pub munmap_bytes: u64,
    pub brk_calls: u64,
    pub brk_bytes: u64,
    pub mremap_calls: u64,
    pub madvise_calls: u64,
    pub madvise_dontneed_bytes: u64,
    pub madvise_free_bytes: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    pub rss_bytes: u64,
    /// `null` where the GC could not be seen (`gc-unobservable`).
    pub gc_cpu_share: Option<f64>,
    pub gc_cpu_seconds: f64,
    pub gc_cycles: u64,
    pub gc_pause_seconds: f64,
    pub verdict: &'static str,
    pub verdict_confidence: f64,
    pub verdict_reasons: &'a [String],
    /// The cgroup's stall time (PSI): `null` in a container's first window,
    /// or without PSI.
    pub pressure: Option<PressureRecord>,
    #[serde(flatten)]
    pub k8s: K8sRecord<'a>,
}

/// A container's memory and CPU pressure in a window.
#[derive(Debug, Serialize)]
pub struct PressureRecord {
    pub memory: Option<StallRecord>,
    pub cpu: Option<StallRecord>,
}

/// One resource's stall: within the window and in total, seconds.
#[derive(Debug, Serialize)]
pub struct StallRecord {
    pub some_seconds: f64,
    pub full_seconds: Option<f64>,
    pub some_total_seconds: f64,
    pub full_total_seconds: Option<f64>,
}

impl PressureRecord {
    fn new(p: &crate::model::pressure::CgroupPressure) -> Self {
        let stall = |w: &crate::model::pressure::PressureWindow| {
            let s = |us: u64| round_to(us as f64 / 1e6, 6);
            StallRecord {
                some_seconds: s(w.delta.some_us),
                full_seconds: w.delta.full_us.map(s),
                some_total_seconds: s(w.total.some_us),
                full_total_seconds: w.total.full_us.map(s),
            }
        };
        Self {
            memory: p.memory.as_ref().map(stall),
            cpu: p.cpu.as_ref().map(stall),
        }
    }
}

impl<'a> ContainerRecord<'a> {
    pub fn new(c: &'a ContainerWindow, ts: &str) -> Self {
        let d = &c.delta;
        Self {
            ts: ts.to_string(),
            window_seconds: round_to(c.seconds, 3),
            kind: "container",
            container_id: &c.container.id,
            container_runtime: runtime_name(c.container.runtime),
            pod_uid: c.container.pod_uid.as_deref(),
            qos_class: c.container.qos.map(qos_name),
            cgroup_path: &c.cgroup_path,
            pids: &c.pids,
            runtime: c.signals.runtime.name(),
            cpu_samples: d.cpu_samples,
            cpu_seconds: round_to(c.signals.cpu_seconds, 6),
            mmap_calls: d.mmap_calls,
            mmap_bytes: d.mmap_bytes,
            munmap_calls: d.munmap_calls,
            munmap_bytes: d.munmap_bytes,
            brk_calls: d.brk_calls,
            brk_bytes: d.brk_bytes,
            mremap_calls: d.mremap_calls,
            madvise_calls: d.madvise_calls,
            madvise_dontneed_bytes: d.madvise_dontneed_bytes,
            madvise_free_bytes: d.madvise_free_bytes,
            minor_faults: d.minor_faults,
            major_faults: d.major_faults,
            rss_bytes: c.signals.rss_bytes,
            gc_cpu_share: c.signals.observed_gc_share().map(|s| round_to(s, 4)),
            gc_cpu_seconds: round_to(c.signals.gc_cpu_seconds(), 6),
            gc_cycles: c.signals.gc_cycles,
            gc_pause_seconds: round_to(c.signals.gc_pause_seconds, 6),
            verdict: c.verdict.kind.name(),
            verdict_confidence: round_to(c.verdict.confidence, 2),
            verdict_reasons: &c.verdict.reasons,
            pressure: c.pressure.as_deref().map(PressureRecord::new),
            k8s: K8sRecord::new(c.pod.as_deref()),
        }
    }
}

fn runtime_name(r: crate::model::container::Runtime) -> &'static str {
    use crate::model::container::Runtime::*;
    match r {
        Containerd => "containerd",
        CriO => "cri-o",
        Docker => "docker",
        Podman => "podman",
    }
}

fn qos_name(q: crate::model::container::QosClass) -> &'static str {
    use crate::model::container::QosClass::*;
    match q {
        Guaranteed => "guaranteed",
        Burstable => "burstable",
        BestEffort => "besteffort",
    }
}

pub fn round_to(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Orders windows the way the table shows them: busiest first.
pub fn sort_windows(windows: &mut [Window]) {
    windows.sort_by(|a, b| {
        b.delta
            .cpu_samples
            .cmp(&a.delta.cpu_samples)
            .then(b.delta.minor_faults.cmp(&a.delta.minor_faults))
            .then(a.key.tgid.cmp(&b.key.tgid))
    });
}

/// The JSON lines of one tick: every process's window, then every
/// container's.
pub fn json_lines(
    windows: &[Window],
    containers: &[ContainerWindow],
    at: SystemTime,
) -> Vec<String> {
    let ts = rfc3339(at);
    let processes = windows
        .iter()
        .map(|w| serde_json::to_string(&WindowRecord::new(w, &ts)));
    let containers = containers
        .iter()
        .map(|c| serde_json::to_string(&ContainerRecord::new(c, &ts)));
    processes
        .chain(containers)
        .map(|r| r.expect("a record always serializes"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_window as window;

    #[test]
    fn json_has_the_agreed_fields_in_order() {
        let id = "a".repeat(64);
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f8e2c3a_4b5d_4e6f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{id}.scope"
        );
        let lines = json_lines(&[window(42, "java", &path)], &[], SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let agreed = [
            "ts",
            "window_seconds",
            "pid",
            "comm",
            "cgroup_id",
            "cgroup_path",
            "container_id",
            "cpu_samples",
            "cpu_seconds",
            "mmap_calls",
            "mmap_bytes",
            "munmap_calls",
            "munmap_bytes",
            "brk_calls",
            "brk_bytes",
            "mremap_calls",
            "madvise_calls",
            "madvise_dontneed_bytes",
            "madvise_free_bytes",
            "minor_faults",
            "major_faults",
            "rss_bytes",
            "exited",
        ];
        // In this order, at the start of the line.
        let positions: Vec<usize> = agreed
            .iter()
            .map(|k| {
                lines[0]
                    .find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("no {k}"))
            })
            .collect();
        assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
        assert_eq!(positions[0], 1);
        assert_eq!(v["container_id"], id.as_str());
        assert_eq!(v["pod_uid"], "1f8e2c3a-4b5d-4e6f-8a9b-0c1d2e3f4a5b");
        assert_eq!(v["qos_class"], "burstable");
        assert_eq!(v["container_runtime"], "containerd");
        assert_eq!(v["cpu_seconds"], 1.0);
    }

    #[test]
    fn json_container_id_is_null_outside_containers() {
        let lines = json_lines(
            &[window(1, "systemd", "/init.scope")],
            &[],
            SystemTime::UNIX_EPOCH,
        );
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert!(v["container_id"].is_null());
        assert_eq!(v["cgroup_path"], "/init.scope");
        assert!(v["namespace"].is_null() && v["pod_name"].is_null());
    }

    #[test]
    fn json_has_the_kubernetes_fields_after_the_others() {
        use std::sync::Arc;

        use crate::model::pod::{Owner, PodInfo, Resources, Source};
        let id = "b".repeat(64);
        let path = format!("/kubepods/burstable/pod1f8e2c3a-4b5d-4e6f-8a9b-0c1d2e3f4a5b/{id}");
        let mut w = window(42, "java", &path);
        w.pod = Some(Arc::new(PodInfo {
            namespace: "shop".into(),
            pod: "checkout-0".into(),
            pod_uid: "1f8e2c3a-4b5d-4e6f-8a9b-0c1d2e3f4a5b".into(),
            container: Some("checkout".into()),
            labels: [("app".to_owned(), "checkout".to_owned())].into(),
            owner: Some(Owner {
                kind: "StatefulSet".into(),
                name: "checkout".into(),
            }),
            qos_class: Some("Burstable".into()),
            resources: Resources {
                cpu_request_millicores: Some(250),
                memory_limit_bytes: Some(512 << 20),
                ..Default::default()
            },
            source: Source::ApiServer,
        }));
        let windows = [w];
        let containers = crate::model::containers(&windows);
        let lines = json_lines(&windows, &containers, SystemTime::UNIX_EPOCH);
        assert_eq!(lines.len(), 2);
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["namespace"], "shop", "{line}");
            assert_eq!(v["pod_name"], "checkout-0");
            assert_eq!(v["container_name"], "checkout");
            assert_eq!(v["owner_kind"], "StatefulSet");
            assert_eq!(v["owner_name"], "checkout");
            assert_eq!(v["app"], "checkout");
            assert_eq!(v["labels"]["app"], "checkout");
            assert_eq!(v["cpu_request_cores"], 0.25);
            assert!(v["cpu_limit_cores"].is_null());
            assert_eq!(v["memory_limit_bytes"], 512 << 20);
            assert_eq!(v["pod_source"], "api-server");
            assert!(line.find("\"verdict\"").unwrap() < line.find("\"namespace\"").unwrap());
        }
    }
}
