//! One workload's line of the cost report, from its history on one node:
//! its CPU, GC CPU, cycles and RSS, the GC tax at the node's rates, and
//! the recommendations.
use tally_proto as pb;

use super::{
    build::{CHART_POINTS, NodeCost, OnNode, WorkloadCostLine, WorkloadHistory},
    names,
};
use crate::{
    cost::{
        Confidence, DataWindow, GcCycles, GcTax, HeadroomMethod, Lifecycle, NodePrice, PriceTable,
        allocation::{NodeRates, WorkloadUsage},
        estimate_headroom, gc_tax,
        gctax::{Teeth, headroom_from_teeth},
        recommend::{Context, CurrentSettings, Observation, WorkloadKind, recommend},
    },
    gc::GcSignals,
    model::RuntimeSettings,
    workload::{runtime_from_proto, signals as signals_of},
};

pub(super) fn usage(
    key: usize,
    w: &pb::Workload,
    points: &[&pb::WorkloadPoint],
) -> WorkloadUsage<usize> {
    let pod = w.pod.as_ref();
    WorkloadUsage {
        key,
        cpu_seconds: points
            .iter()
            .filter_map(|p| p.delta.as_ref())
            .map(|d| d.cpu_seconds)
            .sum(),
        rss_bytes_avg: rss_avg(points) as f64,
        request_cpu_cores: pod
            .map(|p| p.cpu_request_millicores)
            .filter(|&m| m > 0)
            .map(|m| m as f64 / 1000.0),
        request_memory_bytes: pod
            .map(|p| p.memory_request_bytes)
            .filter(|&b| b > 0)
            .map(|b| b as f64),
    }
}

/// Time-weighted mean RSS.
pub(super) fn rss_avg(points: &[&pb::WorkloadPoint]) -> u64 {
    let seconds: f64 = points.iter().map(|p| p.window_seconds).sum();
    if seconds <= 0.0 {
        return 0;
    }
    (points
        .iter()
        .map(|p| p.rss_bytes as f64 * p.window_seconds)
        .sum::<f64>()
        / seconds) as u64
}

/// A point's highest RSS: a window's sample, or a bucket's peak.
fn rss_high(p: &pb::WorkloadPoint) -> u64 {
    if p.bucket_seconds > 0 {
        p.rss_peak_bytes.max(p.rss_bytes)
    } else {
        p.rss_bytes
    }
}

/// What rolled-up points keep of the sawtooth.
fn teeth(points: &[&pb::WorkloadPoint], gc_cycles: Option<u64>) -> Teeth {
    Teeth {
        bytes_sum: points.iter().map(|p| p.sawtooth_bytes_sum).sum(),
        minutes: points.iter().map(|p| u64::from(p.sawtooth_minutes)).sum(),
        cycles: gc_cycles,
        peak_bytes: points.iter().map(|p| rss_high(p)).max().unwrap_or(0),
        floor_bytes: points
            .iter()
            .map(|p| {
                if p.bucket_seconds > 0 {
                    p.rss_min_bytes
                } else {
                    p.rss_bytes
                }
            })
            .filter(|&b| b > 0)
            .min()
            .unwrap_or(0),
    }
}

/// The most CPU a workload can use: its CPU limit, GOMAXPROCS, or the
/// node's vCPUs, whichever is least.
fn cpu_ceiling(current: &CurrentSettings, node: &NodeCost) -> Option<f64> {
    [
        current.limit_cpu_cores,
        current.gomaxprocs.map(f64::from),
        node.price.as_ref().map(|p| f64::from(p.vcpus)),
    ]
    .into_iter()
    .flatten()
    .filter(|c| *c > 0.0)
    .reduce(f64::min)
}

pub(super) fn line(
    h: &WorkloadHistory,
    node: &str,
    on: &OnNode,
    rates: Option<NodeRates>,
    prices: &PriceTable,
    node_cost: Option<&NodeCost>,
    region_prices: &[NodePrice],
) -> WorkloadCostLine {
    let w = &h.workload;
    let points = &on.points[..];
    let runtime = runtime_from_proto(w.runtime);
    let window_seconds: f64 = points.iter().map(|p| p.window_seconds).sum();
    // The history's points as one window of signals: the GC's CPU is the
    // sum of its parts, as for verdicts.
    let mut signals = GcSignals {
        runtime,
        ..GcSignals::default()
    };
    for p in points {
        if let Some(d) = p.delta.as_ref() {
            signals.then(&signals_of(runtime, p.window_seconds, d, p.rss_bytes));
        }
    }
    let cpu_seconds = signals.cpu_seconds;
    let gc_cpu_seconds = signals.gc_cpu_seconds().min(cpu_seconds);
    let gc_cpu_share = signals.gc_cpu_share();
    let gc_blind_share = signals.blind_share();
    let gc_unobservable = runtime.has_gc() && gc_blind_share >= crate::gc::verdict::BLIND_SHARE;
    let memory_stall_share = signals.memory_stall_share();
    let gc_cycles: u64 = points
        .iter()
        .filter_map(|p| p.delta.as_ref())
        .map(|d| d.gc_cycles)
        .sum();
    let series: Vec<(f64, u64)> = match on.span {
        // A span's chart: each bucket's peak.
        Some(span) => span
            .bucket_end_unix_ms
            .iter()
            .zip(&span.bucket_rss_peak_bytes)
            .filter(|(_, rss)| **rss > 0)
            .map(|(&end_ms, &rss)| (end_ms as f64 / 1000.0, rss))
            .collect(),
        None => points
            .iter()
            .filter(|p| p.rss_bytes > 0)
            .map(|p| (p.window_end_unix_ms as f64 / 1000.0, rss_high(p)))
            .collect(),
    };
    let per_window: Vec<(f64, u64)> = points
        .iter()
        .map(|p| {
            (
                p.window_end_unix_ms as f64 / 1000.0,
                p.delta.as_ref().map_or(0, |d| d.gc_cycles),
            )
        })
        .collect();
    // Runtimes without a collector have no GC tax; a collector the agent
    // saw no cycle counts of is judged from the sawtooth alone.
    let cycles = if !runtime.has_gc() {
        GcCycles::PerWindow(&[])
    } else if gc_cycles > 0 || gc_cpu_seconds == 0.0 {
        GcCycles::PerWindow(&per_window)
    } else {
        GcCycles::Unknown
    };
    let rolled_up = points.iter().any(|p| p.bucket_seconds > 0);
    let headroom = if runtime.has_gc() && rolled_up {
        // Cycles are known where counted, or where no GC CPU was seen.
        let known = gc_cycles > 0 || gc_cpu_seconds == 0.0;
        headroom_from_teeth(teeth(points, known.then_some(gc_cycles)))
    } else if runtime.has_gc() {
        estimate_headroom(&series, cycles)
    } else {
        let mut e = estimate_headroom(&series, GcCycles::PerWindow(&[]));
        e.bytes = 0;
        e.description = format!("{} runtime: no garbage collector", runtime.name());
        e
    };
    let rss_peak = series.iter().map(|s| s.1).max().unwrap_or(0);
    let rss_avg = rss_avg(points);
    let cpu_peak_cores = points
        .iter()
        .filter(|p| p.window_seconds > 0.0)
        .filter_map(|p| {
            if p.bucket_seconds > 0 {
                Some(p.cpu_peak_cores)
            } else {
                Some(p.delta.as_ref()?.cpu_seconds / p.window_seconds)
            }
        })
        .fold(0.0, f64::max);
    // The floor is the live set only where the sawtooth was resolved;
    // otherwise the recommender assumes live = half the peak (GOGC=100).
    let floor = match headroom.method {
        HeadroomMethod::SawtoothDrops
        | HeadroomMethod::CycleTimestamps
        | HeadroomMethod::MinuteTeeth => headroom.floor_mean_bytes,
        _ => 0,
    };
    let headroom_confidence: Option<Confidence> = Some(headroom.confidence);
    // A GC that could not be seen has an unknown cost, not a zero one.
    let tax = rates
        .filter(|_| !gc_unobservable)
        .map(|r| gc_tax(gc_cpu_seconds, window_seconds, headroom, &r));
    let gc_tax_usd_per_month = tax.as_ref().map_or(0.0, GcTax::monthly);
    let recommendations = match (rates, node_cost) {
        (Some(rates), Some(n)) => {
            let current = current_settings(w);
            let obs = Observation {
                runtime,
                kind: WorkloadKind::Unknown,
                window_seconds,
                cpu_seconds,
                gc_cpu_seconds,
                gc_cycles,
                cpu_peak_cores,
                rss_avg_bytes: rss_avg,
                rss_peak_bytes: rss_peak,
                rss_floor_bytes: floor,
                headroom_confidence,
                replicas: 1,
                cpu_ceiling_cores: cpu_ceiling(&current, n),
                memory_stall_share,
            };
            let mut ctx = Context::new(rates);
            ctx.prices = Some(prices);
            ctx.instance_type = Some(&n.instance_type);
            ctx.region = Some(&n.region);
            ctx.lifecycle = lifecycle_of(n);
            ctx.region_prices = Some(region_prices);
            recommend(&obs, &current, &ctx)
        }
        _ => Vec::new(),
    };
    let start = series.first().map_or(0.0, |s| s.0);
    let step = series.len().div_ceil(CHART_POINTS).max(1);
    WorkloadCostLine {
        key: names::key(w),
        container_id: crate::workload::container_id(w),
        pod_uid: crate::workload::pod_uid(w),
        name: names::display_name(w),
        program: w.name.clone(),
        system: names::system_kind(w, runtime, rss_peak),
        under_a_cent: false,
        node: node.to_string(),
        runtime,
        window: DataWindow {
            seconds: window_seconds,
        },
        cpu_seconds,
        gc_cpu_seconds,
        gc_cpu_share,
        gc_blind_share,
        gc_cycles,
        memory_stall_share,
        rss_avg_bytes: rss_avg,
        rss_peak_bytes: rss_peak,
        cost_usd: 0.0,
        cost_usd_per_month: 0.0,
        unused_request_usd_per_month: 0.0,
        gc_tax: tax,
        gc_tax_usd_per_month,
        gc_tax_worth_naming: false,
        recommendations,
        settings: w.settings.as_ref().and_then(RuntimeSettings::from_proto),
        rss_series: series
            .chunks(step)
            .map(|c| {
                let top = c.iter().max_by_key(|s| s.1).copied().unwrap_or(c[0]);
                (top.0 - start, top.1)
            })
            .collect(),
    }
}

/// The lifecycle a node is priced at.
pub(super) fn lifecycle_of(n: &NodeCost) -> Lifecycle {
    Lifecycle::parse(&n.lifecycle).unwrap_or(Lifecycle::OnDemand)
}

/// What the recommender knows of a workload's current settings: the pod's
/// requests and limits, and its main GC'd process's runtime settings. A
/// runtime default is known once the process's environment was read
/// (`GOGC` unset is 100); where the settings are unknown, so is the value.
fn current_settings(w: &pb::Workload) -> CurrentSettings {
    let pod = w.pod.as_ref();
    let nonzero = |v: u64| (v > 0).then_some(v);
    let settings = w.settings.as_ref().and_then(RuntimeSettings::from_proto);
    let go = settings.as_ref().and_then(RuntimeSettings::go);
    let jvm = settings.as_ref().and_then(RuntimeSettings::jvm);
    let node = settings.as_ref().and_then(RuntimeSettings::node);
    CurrentSettings {
        gogc: go.map(|g| g.gogc_percent()),
        gomemlimit_bytes: go.and_then(|g| g.gomemlimit_bytes.value),
        jvm_max_heap_bytes: jvm.and_then(|j| j.max_heap()).map(|s| s.value),
        jvm_collector: jvm.and_then(|j| j.collector).map(|s| s.value),
        node_max_old_space_mib: node.and_then(|n| n.max_old_space_mib).map(|s| s.value),
        // Read and unset is V8's default; unread stays unknown.
        node_max_semi_space_mib: node.map(|n| {
            n.max_semi_space_mib
                .as_ref()
                .map_or(crate::cost::tuning::DEFAULT_MAX_SEMI_SPACE_MIB, |s| s.value)
        }),
        gomaxprocs: go.and_then(|g| g.gomaxprocs.value),
        jvm_initial_heap_bytes: jvm
            .and_then(|j| j.initial_heap_bytes.as_ref())
            .map(|s| s.value),
        jvm_heap_committed_bytes: jvm.and_then(|j| j.heap.as_ref()).map(|h| h.capacity_bytes),
        request_cpu_cores: pod
            .and_then(|p| nonzero(p.cpu_request_millicores))
            .map(|m| m as f64 / 1000.0),
        limit_cpu_cores: pod
            .and_then(|p| nonzero(p.cpu_limit_millicores))
            .map(|m| m as f64 / 1000.0),
        request_memory_bytes: pod.and_then(|p| nonzero(p.memory_request_bytes)),
        limit_memory_bytes: pod.and_then(|p| nonzero(p.memory_limit_bytes)),
    }
}

#[cfg(test)]
#[path = "line_settings_tests.rs"]
mod settings_tests;
