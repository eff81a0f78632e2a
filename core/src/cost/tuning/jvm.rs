//! The JVM: the heap size, and the collector.
//!
//! Young collections come each time the young generation fills, and
//! G1 and Parallel size it in proportion to the heap they run at, so at a
//! fixed allocation rate GC CPU ∝ 1/heap. The heap a JVM runs at is what it
//! committed (hsperfdata), at most `-Xmx`: with the default `-Xmx` (25% of
//! the container limit) it is often well below. The change fixes the heap
//! at twice that (`-Xms` = `-Xmx`), which adds the difference to RSS as the
//! young generation cycles through it. The collector advice (ParallelGC for
//! batch work, G1 for a service that fell back to SerialGC) is not counted
//! in the saving.
use super::Change;
use crate::cost::calibration;
use crate::cost::recommend::{
    CurrentSettings, JvmCollector, MIB, Observation, Setting, Target, WorkloadKind, mib, round64,
};

pub(in crate::cost) fn jvm(
    obs: &Observation,
    current: &CurrentSettings,
    margin: f64,
) -> Option<Change> {
    let peak = obs.rss_peak_bytes as f64;
    let mut caveats = Vec::new();
    let mut assumed = false;
    let max = match (current.jvm_max_heap_bytes, current.limit_memory_bytes) {
        (Some(x), _) => x as f64,
        (None, Some(limit)) => {
            assumed = true;
            caveats.push(
                "-Xmx unknown: assumed the JVM default, 25% of the container limit".to_string(),
            );
            limit as f64 * 0.25
        }
        (None, None) => {
            assumed = true;
            caveats.push(
                "-Xmx and the container limit unknown: the RSS peak is taken as the heap"
                    .to_string(),
            );
            peak
        }
    };
    let heap = match current.jvm_heap_committed_bytes {
        Some(c) => (c as f64).min(max),
        None => {
            assumed = true;
            caveats.push(
                "the committed heap is unknown (no hsperfdata): taken as -Xmx, or 75% of the RSS peak if less"
                    .to_string(),
            );
            max.min(0.75 * peak)
        }
    }
    .max(MIB);
    // What RSS holds besides the heap: metaspace, code, threads, buffers.
    let non_heap = (peak - heap).max(0.0);
    let new = round64((2.0 * heap).max(heap + 64.0 * MIB));
    let new_max = new.max(current.jvm_max_heap_bytes.map_or(0.0, |m| m as f64));
    let gc_cut = 1.0 - heap / new;
    let projected = (new + non_heap).max(peak);
    let container =
        round64(projected * (1.0 + margin)).max(current.limit_memory_bytes.unwrap_or(0) as f64);
    let mut settings = vec![
        Setting {
            name: "-Xms".into(),
            value: format!("{}m", mib(new)),
            was: current
                .jvm_initial_heap_bytes
                .map(|b| format!("{}m", mib(b as f64))),
        },
        Setting {
            name: "-Xmx".into(),
            value: format!("{}m", mib(new_max)),
            was: current
                .jvm_max_heap_bytes
                .map(|b| format!("{}m", mib(b as f64))),
        },
    ];
    let collector = match (obs.kind, current.jvm_collector) {
        (WorkloadKind::Batch, c) if c != Some(JvmCollector::Parallel) => Some("-XX:+UseParallelGC"),
        (WorkloadKind::Service | WorkloadKind::Unknown, Some(JvmCollector::Serial)) => {
            Some("-XX:+UseG1GC")
        }
        (WorkloadKind::Service | WorkloadKind::Unknown, None)
            if current.request_cpu_cores.is_some_and(|c| c < 2.0) || container < 1792.0 * MIB =>
        {
            caveats.push(
                "with < 2 CPUs or < 1792 MiB the JVM silently picks SerialGC; name G1 explicitly"
                    .to_string(),
            );
            Some("-XX:+UseG1GC")
        }
        _ => None,
    };
    if let Some(flag) = collector {
        settings.push(Setting {
            name: "collector".into(),
            value: flag.into(),
            was: current.jvm_collector.map(|c| format!("{c:?}")),
        });
        caveats.push("the collector change is not counted in the saving".to_string());
    }
    caveats.push(format!(
        "the container needs the heap plus the non-heap already used ({} MiB): a {} MiB limit",
        mib(non_heap),
        mib(container)
    ));
    let change = settings
        .iter()
        .map(|s| match s.name.as_str() {
            "-Xms" | "-Xmx" => format!("{}{}", s.name, s.value),
            _ => s.value.clone(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    Some(Change {
        target: Target::Jvm,
        change,
        settings,
        law: format!(
            "young collections ∝ 1/heap at a fixed allocation rate: the heap it runs at, {} MiB (max {} MiB), fixed at {} MiB cuts GC CPU {:.0}% and adds up to {} MiB of RSS",
            mib(heap),
            mib(max),
            mib(new),
            gc_cut * 100.0,
            mib(new - heap)
        ),
        gc_cut,
        extra_rss_bytes: new - heap,
        projected_peak_bytes: projected,
        calibration: calibration::JVM,
        assumed,
        caveats,
        memory_bytes: vec![container as u64],
    })
}
