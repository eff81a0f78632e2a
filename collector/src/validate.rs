//! Every field of a received report is checked here before the report is
//! stored or classified: lengths, ranges, timestamps, sequence numbers, and
//! the limits an operator sets ([`Limits`]). Each refusal names the field or
//! the limit, so the agent's log says what to fix.
//!
//! What is refused is as small as the fault: a report whose identity,
//! window or size is wrong is refused whole; a process whose own numbers or
//! names are wrong is refused alone ([`RefusedProcess`]) and the rest of the
//! report is stored, so one odd process never costs its node's interval.
//!
//! Ranges refuse only what no real agent can send (a negative or NaN CPU
//! time, more CPU than the node's cores in the window, a timestamp from
//! another decade): a check that is too tight would lose real data.
use std::collections::HashSet;

use bytes::Bytes;
use tally_proto::{
    self as pb,
    received::{ProcessView, ReceivedReport},
};

/// What an operator may tune; the defaults fit a 16k-process node with
/// room to spare.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `--max-processes-per-report`.
    pub max_processes_per_report: usize,
    /// `--max-workloads-per-report`: distinct containers plus processes
    /// outside containers.
    pub max_workloads_per_report: usize,
    /// `--max-labels`: labels per pod.
    pub max_labels: usize,
    /// `--max-label-value-bytes` (Kubernetes allows 63).
    pub max_label_value_bytes: usize,
    /// How far in the future a window may end: clocks drift.
    pub max_clock_skew_ms: i64,
    /// How old a window may be: older than the history kept, it would be
    /// deleted at once.
    pub max_age_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_processes_per_report: 65_536,
            max_workloads_per_report: 65_536,
            max_labels: 16,
            max_label_value_bytes: 63,
            max_clock_skew_ms: 10 * 60 * 1000,
            max_age_ms: 24 * 3600 * 1000,
        }
    }
}

/// Why a report was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum InvalidReport {
    #[error("report without node identity")]
    NoNode,
    #[error("report without {0}")]
    Empty(&'static str),
    #[error("{field} is {len} bytes, more than the {max} allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("{field} holds a control character")]
    ControlCharacter { field: &'static str },
    #[error("report sequence must be 1 or more")]
    ZeroSequence,
    #[error("report sequence {0} is out of range")]
    SequenceOutOfRange(u64),
    #[error("report window ends ({end} ms) before it starts ({start} ms)")]
    WindowReversed { start: i64, end: i64 },
    #[error("report window of {0} ms is longer than an hour")]
    WindowTooLong(i64),
    #[error("report window ends at {end} ms, more than {skew_ms} ms after the collector's clock")]
    WindowInFuture { end: i64, skew_ms: i64 },
    #[error("report window ended at {end} ms, older than the {max_age_ms} ms of history kept")]
    WindowTooOld { end: i64, max_age_ms: i64 },
    #[error("{field} = {value} is out of range")]
    OutOfRange { field: &'static str, value: f64 },
    #[error("process window without process key")]
    NoProcessKey,
    #[error("pid {0} is beyond the kernel's PID_MAX_LIMIT")]
    BadPid(u32),
    #[error("process {pid} (start {start_ticks}) appears twice in one report")]
    DuplicateProcess { pid: u32, start_ticks: u64 },
    #[error("{field}: delta {delta} exceeds the cumulative total {total}")]
    DeltaAboveTotal {
        field: &'static str,
        delta: u64,
        total: u64,
    },
    #[error("gc_cpu_seconds = {sum} is not gc_thread_cpu_seconds + gc_stack_cpu_seconds = {parts}")]
    GcCpuNotItsParts { sum: f64, parts: f64 },
    #[error("limit --{limit} ({max}) exceeded: {actual}")]
    Limit {
        limit: &'static str,
        max: usize,
        actual: usize,
    },
    #[error("qos_class `{0}` is not Guaranteed, Burstable or BestEffort")]
    BadQosClass(String),
    #[error("the report could not be encoded again without its refused processes: {0}")]
    Undecodable(String),
}

/// A process of a report refused alone: its index in the report, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedProcess {
    pub index: usize,
    pub why: InvalidReport,
}

/// Linux's PID_MAX_LIMIT (4M): no pid is larger.
const PID_MAX_LIMIT: u32 = 1 << 22;
/// The kernel's TASK_COMM_LEN, with room for agents that add a suffix.
const MAX_COMM: usize = 64;
const MAX_PATH: usize = 4096;
/// DNS subdomain: node, pod and owner names.
const MAX_DNS_NAME: usize = 253;
/// DNS label: namespaces and container names.
const MAX_DNS_LABEL: usize = 63;
/// Short facts: instance type, zone, region, lifecycle, versions, ids.
const MAX_SHORT: usize = 128;
/// A label key: a 253-byte prefix, `/`, a 63-byte name.
const MAX_LABEL_KEY: usize = 317;
const MAX_REASONS: usize = 32;
const MAX_REASON: usize = 512;
const MAX_THREAD_GROUPS: usize = 65_536;
/// Distinct stacks of one process in one window (the agent's stack map
/// holds 16k in all).
const MAX_STACKS: usize = 65_536;
const MAX_FRAME_NAMES: usize = 1 << 20;
/// PERF_MAX_STACK_DEPTH is 127.
const MAX_STACK_DEPTH: usize = 1024;
/// Demangled C++ and Rust symbols can be long.
const MAX_SYMBOL: usize = 8192;
/// Nodes have at most a few hundred CPUs; NodeIdentity.cpus of 0 means
/// "unknown", which is held to this.
const MAX_CPUS: u32 = 8192;
/// 2020-01-01: no report of this product predates it.
const EARLIEST_MS: i64 = 1_577_836_800_000;
/// 1 PiB: far above any process's RSS, far below u64 overflow in sums.
const MAX_BYTES_FIELD: u64 = 1 << 50;

/// Checks everything in `report` against `limits` and the collector's
/// clock `now_ms`. `Err` refuses the whole report; `Ok` lists the processes
/// refused alone, in report order (empty when all is well).
pub fn check(
    received: &ReceivedReport,
    limits: &Limits,
    now_ms: i64,
) -> Result<Vec<RefusedProcess>, InvalidReport> {
    let report = &received.view;
    let node = report.node.as_ref().ok_or(InvalidReport::NoNode)?;
    check_node(node)?;
    if report.sequence == 0 {
        return Err(InvalidReport::ZeroSequence);
    }
    // SQLite integers are signed.
    if i64::try_from(report.sequence).is_err() {
        return Err(InvalidReport::SequenceOutOfRange(report.sequence));
    }
    let (start, end) = (report.window_start_unix_ms, report.window_end_unix_ms);
    if end < start {
        return Err(InvalidReport::WindowReversed { start, end });
    }
    if start < EARLIEST_MS {
        return Err(InvalidReport::OutOfRange {
            field: "window_start_unix_ms",
            value: start as f64,
        });
    }
    if end - start > 3_600_000 {
        return Err(InvalidReport::WindowTooLong(end - start));
    }
    if end > now_ms.saturating_add(limits.max_clock_skew_ms) {
        return Err(InvalidReport::WindowInFuture {
            end,
            skew_ms: limits.max_clock_skew_ms,
        });
    }
    if end < now_ms.saturating_sub(limits.max_age_ms) {
        return Err(InvalidReport::WindowTooOld {
            end,
            max_age_ms: limits.max_age_ms,
        });
    }
    if node.agent_start_unix_ms != 0
        && !(EARLIEST_MS..=now_ms.saturating_add(limits.max_clock_skew_ms))
            .contains(&node.agent_start_unix_ms)
    {
        return Err(InvalidReport::OutOfRange {
            field: "node.agent_start_unix_ms",
            value: node.agent_start_unix_ms as f64,
        });
    }
    let processes = report.processes.len();
    if processes > limits.max_processes_per_report {
        return Err(InvalidReport::Limit {
            limit: "max-processes-per-report",
            max: limits.max_processes_per_report,
            actual: processes,
        });
    }
    // Window length with a second of slack for the agent's own timing.
    let window_seconds = (end - start) as f64 / 1000.0 + 1.0;
    let cpus = if node.cpus == 0 || node.cpus > MAX_CPUS {
        MAX_CPUS
    } else {
        node.cpus
    };
    let max_cpu_seconds = window_seconds * f64::from(cpus);
    let mut keys = HashSet::with_capacity(processes);
    let mut containers: HashSet<&[u8]> = HashSet::new();
    let mut bare_processes = 0usize;
    if received.pods.len() > limits.max_processes_per_report {
        return Err(InvalidReport::Limit {
            limit: "max-processes-per-report",
            max: limits.max_processes_per_report,
            actual: received.pods.len(),
        });
    }
    let mut refused = Vec::new();
    for (index, p) in report.processes.iter().enumerate() {
        let checked = check_process(p, max_cpu_seconds).and_then(|()| {
            if received.pod_ref_dangles(index) {
                return Err(InvalidReport::OutOfRange {
                    field: "process.pod_ref",
                    value: f64::from(p.pod_ref),
                });
            }
            // The first of two windows of one process is kept.
            let key = p.key.unwrap_or_default();
            if !keys.insert((key.pid, key.start_ticks)) {
                return Err(InvalidReport::DuplicateProcess {
                    pid: key.pid,
                    start_ticks: key.start_ticks,
                });
            }
            Ok(())
        });
        if let Err(why) = checked {
            refused.push(RefusedProcess { index, why });
            continue;
        }
        if p.container_id.is_empty() {
            bare_processes += 1;
        } else {
            containers.insert(&p.container_id[..]);
        }
    }
    // Each distinct pod once: a container's processes name the same one.
    // A bad pod refuses the processes that name it.
    let bad_pods: Vec<(usize, InvalidReport)> = received
        .pods
        .iter()
        .enumerate()
        .filter_map(|(i, pod)| check_pod(pod, limits).err().map(|e| (i, e)))
        .collect();
    if !bad_pods.is_empty() {
        for index in 0..report.processes.len() {
            if refused.iter().any(|r| r.index == index) {
                continue;
            }
            let pod = received.pod_index(index);
            if let Some((_, why)) = bad_pods.iter().find(|(i, _)| Some(*i) == pod) {
                refused.push(RefusedProcess {
                    index,
                    why: why.clone(),
                });
            }
        }
        refused.sort_by_key(|r| r.index);
    }
    let workloads = bare_processes + containers.len();
    if workloads > limits.max_workloads_per_report {
        return Err(InvalidReport::Limit {
            limit: "max-workloads-per-report",
            max: limits.max_workloads_per_report,
            actual: workloads,
        });
    }
    if let Some(agent) = &report.agent {
        finite_non_negative("agent.cpu_seconds", agent.cpu_seconds, max_cpu_seconds)?;
        bytes_field("agent.rss_bytes", agent.rss_bytes)?;
    }
    Ok(refused)
}

fn check_node(node: &pb::NodeIdentity) -> Result<(), InvalidReport> {
    if node.node_name.is_empty() {
        return Err(InvalidReport::Empty("node name"));
    }
    if node.agent_instance.is_empty() {
        return Err(InvalidReport::Empty("agent instance"));
    }
    text_str("node.node_name", &node.node_name, MAX_DNS_NAME)?;
    text_str("node.agent_instance", &node.agent_instance, MAX_SHORT)?;
    text_str("node.instance_type", &node.instance_type, MAX_SHORT)?;
    text_str("node.zone", &node.zone, MAX_SHORT)?;
    text_str("node.region", &node.region, MAX_SHORT)?;
    text_str("node.lifecycle", &node.lifecycle, MAX_SHORT)?;
    text_str("node.agent_version", &node.agent_version, MAX_SHORT)?;
    Ok(())
}

fn check_process(p: &ProcessView, max_cpu: f64) -> Result<(), InvalidReport> {
    let key = p.key.ok_or(InvalidReport::NoProcessKey)?;
    if key.pid > PID_MAX_LIMIT {
        return Err(InvalidReport::BadPid(key.pid));
    }
    text_bytes("process.comm", &p.comm, MAX_COMM)?;
    text_bytes("process.cgroup_path", &p.cgroup_path, MAX_PATH)?;
    text_bytes("process.container_id", &p.container_id, MAX_SHORT)?;
    bytes_field("process.rss_bytes", p.rss_bytes)?;
    if let Some(delta) = &p.delta {
        counters(delta, max_cpu)?;
    }
    if let Some(total) = &p.total {
        // A total covers the process's whole life, not one window.
        counters(total, f64::MAX)?;
        if let Some(delta) = &p.delta {
            delta_within_total(delta, total)?;
        }
    }
    if let Some(v) = &p.verdict {
        finite_in("process.verdict.confidence", v.confidence, 0.0, 1.0)?;
        if v.reasons.len() > MAX_REASONS {
            return Err(InvalidReport::TooLong {
                field: "process.verdict.reasons",
                len: v.reasons.len(),
                max: MAX_REASONS,
            });
        }
        for r in &v.reasons {
            text_bytes("process.verdict.reason", r, MAX_REASON)?;
        }
    }
    if p.thread_groups.len() > MAX_THREAD_GROUPS {
        return Err(InvalidReport::TooLong {
            field: "process.thread_groups",
            len: p.thread_groups.len(),
            max: MAX_THREAD_GROUPS,
        });
    }
    for g in &p.thread_groups {
        text_bytes("process.thread_groups.name", &g.name, MAX_COMM)?;
        finite_non_negative("process.thread_groups.cpu_seconds", g.cpu_seconds, max_cpu)?;
    }
    if let Some(settings) = &p.settings {
        check_settings(settings)?;
    }
    check_stacks(p)
}

/// A process's runtime settings: texts the node wrote (reasons, caveats, a
/// collector's name) and percentages the JVM accepts (0 to 100).
fn check_settings(s: &pb::RuntimeSettings) -> Result<(), InvalidReport> {
    text_str(
        "process.settings.unknown_reason",
        &s.unknown_reason,
        MAX_REASON,
    )?;
    if let Some(g) = &s.go {
        if g.caveats.len() > MAX_REASONS {
            return Err(InvalidReport::TooLong {
                field: "process.settings.go.caveats",
                len: g.caveats.len(),
                max: MAX_REASONS,
            });
        }
        for c in &g.caveats {
            text_str("process.settings.go.caveats", c, MAX_REASON)?;
        }
    }
    if let Some(j) = &s.jvm {
        text_str("process.settings.jvm.collector", &j.collector, MAX_SHORT)?;
        text_str(
            "process.settings.jvm.hsperfdata_unread",
            &j.hsperfdata_unread,
            MAX_REASON,
        )?;
        for (field, v) in [
            (
                "process.settings.jvm.max_ram_percentage",
                j.max_ram_percentage,
            ),
            (
                "process.settings.jvm.initial_ram_percentage",
                j.initial_ram_percentage,
            ),
        ] {
            finite_in(field, v, 0.0, 100.0)?;
        }
    }
    Ok(())
}

/// Stacks a window carries (`agent run --send-stacks`): frames index
/// `frame_names`, which are symbol names.
fn check_stacks(p: &ProcessView) -> Result<(), InvalidReport> {
    for (field, len, max) in [
        ("process.stacks", p.stacks.len(), MAX_STACKS),
        ("process.frame_names", p.frame_names.len(), MAX_FRAME_NAMES),
        ("process.gc_frames", p.gc_frames.len(), MAX_FRAME_NAMES),
    ] {
        if len > max {
            return Err(InvalidReport::TooLong { field, len, max });
        }
    }
    for name in &p.frame_names {
        text_bytes("process.frame_names", name, MAX_SYMBOL)?;
    }
    let names = p.frame_names.len() as u64;
    for s in &p.stacks {
        if s.frames.len() > MAX_STACK_DEPTH {
            return Err(InvalidReport::TooLong {
                field: "process.stacks.frames",
                len: s.frames.len(),
                max: MAX_STACK_DEPTH,
            });
        }
        if let Some(&f) = s.frames.iter().find(|&&f| u64::from(f) >= names) {
            return Err(InvalidReport::OutOfRange {
                field: "process.stacks.frames",
                value: f64::from(f),
            });
        }
    }
    if let Some(&f) = p.gc_frames.iter().find(|&&f| u64::from(f) >= names) {
        return Err(InvalidReport::OutOfRange {
            field: "process.gc_frames",
            value: f64::from(f),
        });
    }
    Ok(())
}

fn check_pod(pod: &pb::PodMetadata, limits: &Limits) -> Result<(), InvalidReport> {
    text_str("pod.namespace", &pod.namespace, MAX_DNS_LABEL)?;
    text_str("pod.pod_name", &pod.pod_name, MAX_DNS_NAME)?;
    text_str("pod.pod_uid", &pod.pod_uid, MAX_SHORT)?;
    text_str("pod.container_name", &pod.container_name, MAX_DNS_LABEL)?;
    text_str("pod.owner_kind", &pod.owner_kind, MAX_DNS_LABEL)?;
    text_str("pod.owner_name", &pod.owner_name, MAX_DNS_NAME)?;
    text_str("pod.source", &pod.source, MAX_SHORT)?;
    if !["", "guaranteed", "burstable", "besteffort"]
        .iter()
        .any(|q| pod.qos_class.eq_ignore_ascii_case(q))
    {
        return Err(InvalidReport::BadQosClass(
            pod.qos_class.chars().take(32).collect(),
        ));
    }
    if pod.labels.len() > limits.max_labels {
        return Err(InvalidReport::Limit {
            limit: "max-labels",
            max: limits.max_labels,
            actual: pod.labels.len(),
        });
    }
    for (k, v) in &pod.labels {
        text_str("pod.labels key", k, MAX_LABEL_KEY)?;
        if v.len() > limits.max_label_value_bytes {
            return Err(InvalidReport::Limit {
                limit: "max-label-value-bytes",
                max: limits.max_label_value_bytes,
                actual: v.len(),
            });
        }
        text_str("pod.labels value", v, limits.max_label_value_bytes)?;
    }
    Ok(())
}

fn counters(c: &pb::Counters, max_cpu: f64) -> Result<(), InvalidReport> {
    finite_non_negative("cpu_seconds", c.cpu_seconds, max_cpu)?;
    finite_non_negative("gc_cpu_seconds", c.gc_cpu_seconds, max_cpu)?;
    finite_non_negative("gc_pause_seconds", c.gc_pause_seconds, max_cpu)?;
    finite_non_negative("gc_thread_cpu_seconds", c.gc_thread_cpu_seconds, max_cpu)?;
    finite_non_negative("gc_stack_cpu_seconds", c.gc_stack_cpu_seconds, max_cpu)?;
    finite_non_negative("gc_blind_cpu_seconds", c.gc_blind_cpu_seconds, max_cpu)?;
    // The wire repeats the sum of the GC's two parts (for readers that want
    // one number); verdicts and the cost report read the parts, so a sum
    // that disagrees with them is refused rather than believed.
    let parts = c.gc_thread_cpu_seconds + c.gc_stack_cpu_seconds;
    if (c.gc_cpu_seconds - parts).abs() > 1e-9 * parts.max(1.0) {
        return Err(InvalidReport::GcCpuNotItsParts {
            sum: c.gc_cpu_seconds,
            parts,
        });
    }
    for (name, v) in [
        ("mmap_bytes", c.mmap_bytes),
        ("munmap_bytes", c.munmap_bytes),
        ("brk_bytes", c.brk_bytes),
        ("mremap_bytes", c.mremap_bytes),
        ("madvise_dontneed_bytes", c.madvise_dontneed_bytes),
        ("madvise_free_bytes", c.madvise_free_bytes),
        ("madvise_other_bytes", c.madvise_other_bytes),
    ] {
        // Bytes per window can be large (madvise of a whole heap, over and
        // over), but not past u64/2: sums across processes must not wrap.
        if v > u64::MAX / 2 {
            return Err(InvalidReport::OutOfRange {
                field: name,
                value: v as f64,
            });
        }
    }
    Ok(())
}

/// Each counter's window delta is part of its cumulative total.
fn delta_within_total(d: &pb::Counters, t: &pb::Counters) -> Result<(), InvalidReport> {
    for (field, delta, total) in [
        ("cpu_samples", d.cpu_samples, t.cpu_samples),
        ("mmap_calls", d.mmap_calls, t.mmap_calls),
        ("mmap_bytes", d.mmap_bytes, t.mmap_bytes),
        ("munmap_calls", d.munmap_calls, t.munmap_calls),
        ("munmap_bytes", d.munmap_bytes, t.munmap_bytes),
        ("brk_calls", d.brk_calls, t.brk_calls),
        ("brk_bytes", d.brk_bytes, t.brk_bytes),
        ("mremap_calls", d.mremap_calls, t.mremap_calls),
        ("mremap_bytes", d.mremap_bytes, t.mremap_bytes),
        ("madvise_calls", d.madvise_calls, t.madvise_calls),
        ("minor_faults", d.minor_faults, t.minor_faults),
        ("major_faults", d.major_faults, t.major_faults),
        ("gc_cycles", d.gc_cycles, t.gc_cycles),
    ] {
        if delta > total {
            return Err(InvalidReport::DeltaAboveTotal {
                field,
                delta,
                total,
            });
        }
    }
    Ok(())
}

fn finite_non_negative(field: &'static str, v: f64, max: f64) -> Result<(), InvalidReport> {
    finite_in(field, v, 0.0, max)
}

fn finite_in(field: &'static str, v: f64, min: f64, max: f64) -> Result<(), InvalidReport> {
    if v.is_finite() && v >= min && v <= max {
        Ok(())
    } else {
        Err(InvalidReport::OutOfRange { field, value: v })
    }
}

fn bytes_field(field: &'static str, v: u64) -> Result<(), InvalidReport> {
    if v > MAX_BYTES_FIELD {
        return Err(InvalidReport::OutOfRange {
            field,
            value: v as f64,
        });
    }
    Ok(())
}

fn text_bytes(field: &'static str, b: &Bytes, max: usize) -> Result<(), InvalidReport> {
    let s = std::str::from_utf8(b).map_err(|_| InvalidReport::NotUtf8(field))?;
    text_str(field, s, max)
}

fn text_str(field: &'static str, s: &str, max: usize) -> Result<(), InvalidReport> {
    if s.len() > max {
        return Err(InvalidReport::TooLong {
            field,
            len: s.len(),
            max,
        });
    }
    // Control characters in names break terminals, logs and label
    // exposition; no kernel, runtime or Kubernetes name carries them. Names
    // are nearly always printable ASCII, checked a byte at a time (which
    // vectorizes); only the others are decoded to chars (C1 controls are
    // two bytes in UTF-8).
    let printable_ascii = s.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !printable_ascii && s.chars().any(char::is_control) {
        return Err(InvalidReport::ControlCharacter { field });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
