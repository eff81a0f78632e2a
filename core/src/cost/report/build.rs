//! From what the collector kept (each node's identity, each workload's
//! windows) to the cost report: every node priced and split OpenCost's way,
//! every workload's cost and GC tax, and the recommendations. Pure: the
//! fetching is in [`super`], the printing in [`super::render`] and
//! [`super::html`].
use std::collections::BTreeMap;

use serde::Serialize;
use tally_proto as pb;

use super::{
    names::{self, SystemKind},
    summary::{self, ROW_USD_PER_MONTH, Summary},
};
use crate::{
    cost::{
        Confidence, DataWindow, GcCycles, GcTax, HOURS_PER_MONTH, HeadroomMethod, Lifecycle,
        NodePrice, PriceTable, Recommendation,
        allocation::{NodeCapacity, NodeRates, WorkloadUsage, allocate},
        estimate_headroom, gc_tax,
        gctax::{Teeth, headroom_from_teeth},
        recommend::{Context, CurrentSettings, Observation, WorkloadKind, recommend},
    },
    gc::{GcSignals, Runtime},
    model::RuntimeSettings,
    workload::{runtime_from_proto, signals as signals_of},
};

/// A GC tax below this many USD a month, or below [`NAMED_TAX_SHARE`] of
/// the workload's own cost, is "none worth naming": it is shown, but not
/// ranked or acted on.
pub const NAMED_TAX_USD_PER_MONTH: f64 = 0.01;
pub const NAMED_TAX_SHARE: f64 = 0.01;

/// At most this many RSS points per workload are kept for the charts.
const CHART_POINTS: usize = 240;

/// What the report prices a node as when the node did not say.
#[derive(Debug, Clone, Default)]
pub struct NodeDefaults {
    pub instance_type: Option<String>,
    pub region: Option<String>,
    pub lifecycle: Option<Lifecycle>,
}

/// One workload as the collector knows it, with its history.
#[derive(Debug, Clone)]
pub struct WorkloadHistory {
    pub workload: pb::Workload,
    pub points: Vec<pb::WorkloadPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub generated_unix_ms: i64,
    pub since_seconds: f64,
    /// What the history was read from: 0 for raw windows, else the length
    /// of the collector's rolled-up buckets (60, 3600, 86400 s); set by the
    /// caller that fetched it.
    pub history_bucket_seconds: u32,
    pub price_table_version: String,
    pub price_table_as_of: String,
    pub spot_fraction: f64,
    pub margin: f64,
    /// Spend, GC tax and the changes worth making: the report's opening.
    pub summary: Summary,
    pub nodes: Vec<NodeCost>,
    /// The workloads teams own, ranked by GC tax per month, highest first.
    pub workloads: Vec<WorkloadCostLine>,
    /// Kernel threads and Tally itself ([`SystemKind`]): costed so the
    /// totals add up, but neither ranked nor advised. Costliest first.
    pub system: Vec<WorkloadCostLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeCost {
    pub node: String,
    pub instance_type: String,
    pub region: String,
    pub lifecycle: String,
    /// Where the type, region or lifecycle came from when the node did not
    /// report it (`--instance-type` and friends).
    pub assumed: Vec<String>,
    /// `None`: the type is not in the price table (then `unpriced` says why).
    pub price: Option<NodePrice>,
    pub unpriced: Option<String>,
    pub rates: Option<NodeRates>,
    pub hours: f64,
    pub node_cost_usd: f64,
    pub allocated_usd: f64,
    pub idle_usd: f64,
    pub idle_usd_per_month: f64,
    pub node_usd_per_month: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkloadCostLine {
    /// The store's key (`container/<id>`, `process/<node>/<pid>/<ticks>`):
    /// stable, for machines.
    pub key: String,
    /// The name its owners know it by ([`names::display_name`]).
    pub name: String,
    /// The program: its (first) process's comm.
    pub program: String,
    /// Set for what no team acts on.
    pub system: Option<SystemKind>,
    /// Priced at under [`ROW_USD_PER_MONTH`]: counted, not given a row of
    /// its own in text, Markdown and HTML.
    pub under_a_cent: bool,
    pub node: String,
    pub runtime: Runtime,
    pub window: DataWindow,
    pub cpu_seconds: f64,
    pub gc_cpu_seconds: f64,
    pub gc_cpu_share: f64,
    /// Share of its CPU whose GC the agents could not see (a stripped
    /// binary, a JVM without named GC threads): past
    /// [`gc::verdict::BLIND_SHARE`](crate::gc::verdict::BLIND_SHARE) its GC
    /// share is unknown and no GC tax is claimed.
    pub gc_blind_share: f64,
    pub gc_cycles: u64,
    pub rss_avg_bytes: u64,
    pub rss_peak_bytes: u64,
    pub cost_usd: f64,
    pub cost_usd_per_month: f64,
    /// Requested but not used, per month (part of the cost above).
    pub unused_request_usd_per_month: f64,
    pub gc_tax: Option<GcTax>,
    pub gc_tax_usd_per_month: f64,
    pub gc_tax_worth_naming: bool,
    pub recommendations: Vec<Recommendation>,
    /// The runtime settings of its main GC'd process, as last reported
    /// (`null` where none were: not a Go, JVM or Node workload, or an
    /// agent that does not read them).
    pub settings: Option<RuntimeSettings>,
    /// (seconds since the report's first point, RSS bytes), thinned.
    pub rss_series: Vec<(f64, u64)>,
}

/// Builds the report. `now_ms` and `since_ms` bound the window.
pub fn build(
    nodes: &[pb::NodeSummary],
    histories: &[WorkloadHistory],
    prices: &PriceTable,
    defaults: &NodeDefaults,
    margin: f64,
    now_ms: i64,
    since_ms: i64,
) -> CostReport {
    // Each workload's points, per node that reported them.
    let mut per_node: BTreeMap<String, Vec<(&WorkloadHistory, Vec<&pb::WorkloadPoint>)>> =
        BTreeMap::new();
    for h in histories {
        let mut by_node: BTreeMap<&str, Vec<&pb::WorkloadPoint>> = BTreeMap::new();
        for p in &h.points {
            by_node.entry(&p.node_name).or_default().push(p);
        }
        for (node, points) in by_node {
            per_node
                .entry(node.to_string())
                .or_default()
                .push((h, points));
        }
    }
    let identities: BTreeMap<&str, &pb::NodeSummary> = nodes
        .iter()
        .filter_map(|n| Some((n.identity.as_ref()?.node_name.as_str(), n)))
        .collect();
    let mut node_costs = Vec::new();
    let mut lines = Vec::new();
    for (node, workloads) in &per_node {
        let summary = identities.get(node.as_str()).copied();
        let (mut node_cost, capacity) = price_node(
            node,
            summary.and_then(|s| s.identity.as_ref()),
            prices,
            defaults,
        );
        let start_ms = summary
            .map_or(since_ms, |s| s.first_window_start_unix_ms)
            .max(since_ms);
        let end_ms = summary.map_or(now_ms, |s| s.last_window_end_unix_ms);
        let hours = (end_ms - start_ms).max(0) as f64 / 3.6e6;
        let usages: Vec<WorkloadUsage<usize>> = workloads
            .iter()
            .enumerate()
            .map(|(i, (h, points))| usage(i, &h.workload, points))
            .collect();
        let rates = capacity.map(|c| c.rates);
        if let Some(capacity) = capacity {
            let alloc = allocate(&capacity, hours, &usages);
            node_cost.hours = hours;
            node_cost.node_cost_usd = alloc.node_cost;
            node_cost.allocated_usd = alloc.allocated_cost();
            node_cost.idle_usd = alloc.idle_cost();
            node_cost.idle_usd_per_month = per_month(alloc.idle_cost(), hours);
            node_cost.node_usd_per_month = capacity.usd_per_hour * HOURS_PER_MONTH;
            for w in &alloc.workloads {
                let (h, points) = &workloads[w.key];
                let mut line = line(h, node, points, rates, prices, node_cost_ref(&node_cost));
                line.cost_usd = w.total();
                line.cost_usd_per_month = per_month(w.total(), hours);
                line.unused_request_usd_per_month = per_month(
                    w.cpu_unused_request_cost + w.memory_unused_request_cost,
                    hours,
                );
                lines.push(line);
            }
        } else {
            node_cost.hours = hours;
            for (h, points) in workloads {
                lines.push(line(h, node, points, None, prices, None));
            }
        }
        node_costs.push(node_cost);
    }
    let priced_nodes: Vec<String> = node_costs
        .iter()
        .filter(|n| n.price.is_some())
        .map(|n| n.node.clone())
        .collect();
    for l in &mut lines {
        l.gc_tax_worth_naming = l.gc_tax_usd_per_month >= NAMED_TAX_USD_PER_MONTH
            && l.gc_tax_usd_per_month >= NAMED_TAX_SHARE * l.cost_usd_per_month;
        if !l.gc_tax_worth_naming {
            // Requests and shape still count, runtime knobs do not.
            l.recommendations.retain(|r| {
                matches!(
                    r.target,
                    crate::cost::recommend::Target::Kubernetes
                        | crate::cost::recommend::Target::InstanceShape
                ) && r.monthly_saving_usd >= NAMED_TAX_USD_PER_MONTH
            });
        }
        l.recommendations.retain(|r| !summary::is_nil(r));
        if l.system.is_some() {
            l.recommendations.clear();
        }
        // Only a priced cost can be known to be small; and what costs
        // under a cent a month has nothing worth saving.
        l.under_a_cent = priced_nodes.contains(&l.node) && l.cost_usd_per_month < ROW_USD_PER_MONTH;
        if l.under_a_cent {
            l.recommendations.clear();
        }
    }
    let (mut system, mut lines): (Vec<_>, Vec<_>) =
        lines.into_iter().partition(|l| l.system.is_some());
    lines.sort_by(|a, b| {
        b.gc_tax_usd_per_month
            .total_cmp(&a.gc_tax_usd_per_month)
            .then_with(|| b.cost_usd_per_month.total_cmp(&a.cost_usd_per_month))
            .then_with(|| a.key.cmp(&b.key))
    });
    system.sort_by(|a, b| {
        b.cost_usd_per_month
            .total_cmp(&a.cost_usd_per_month)
            .then_with(|| a.key.cmp(&b.key))
    });
    CostReport {
        generated_unix_ms: now_ms,
        since_seconds: (now_ms - since_ms).max(0) as f64 / 1000.0,
        history_bucket_seconds: 0,
        price_table_version: prices.version().to_string(),
        price_table_as_of: prices.as_of().to_string(),
        spot_fraction: prices.spot_fraction(),
        margin,
        summary: summary::summarize(&node_costs, &lines, &system),
        nodes: node_costs,
        workloads: lines,
        system,
    }
}

/// The (instance type, region, lifecycle) pricing uses: where the node
/// reported one, that one; else the defaults, noted as assumed.
pub(crate) fn price_node(
    node: &str,
    identity: Option<&pb::NodeIdentity>,
    prices: &PriceTable,
    defaults: &NodeDefaults,
) -> (NodeCost, Option<NodeCapacity>) {
    let mut assumed = Vec::new();
    // Agents off EC2 report the word "unknown" (said once in their log):
    // no more a fact than an empty field.
    let mut pick = |reported: Option<&str>, default: Option<String>, what: &str| match reported
        .filter(|s| !s.is_empty() && *s != "unknown")
    {
        Some(r) => r.to_string(),
        None => match default {
            Some(d) => {
                assumed.push(format!("{what} {d} (given, the node reported none)"));
                d
            }
            None => String::new(),
        },
    };
    let instance_type = pick(
        identity.map(|i| i.instance_type.as_str()),
        defaults.instance_type.clone(),
        "instance type",
    );
    let region = pick(
        identity.map(|i| i.region.as_str()),
        defaults.region.clone(),
        "region",
    );
    let lifecycle_text = pick(
        identity.map(|i| i.lifecycle.as_str()),
        defaults.lifecycle.map(|l| {
            if l == Lifecycle::Spot {
                "spot"
            } else {
                "on-demand"
            }
            .to_string()
        }),
        "lifecycle",
    );
    let lifecycle = Lifecycle::parse(&lifecycle_text).unwrap_or(Lifecycle::OnDemand);
    let price = if instance_type.is_empty() || region.is_empty() {
        None
    } else {
        prices.price(&instance_type, &region, lifecycle)
    };
    let unpriced = match (&price, instance_type.is_empty(), region.is_empty()) {
        (Some(_), _, _) => None,
        (None, true, _) => Some(
            "the node reported no instance type (no IMDS, no node labels); give --instance-type"
                .to_string(),
        ),
        (None, _, true) => Some("the node reported no region; give --region".to_string()),
        (None, false, false) => Some(format!(
            "{instance_type} in {region} is not in the price table; add it to a --prices file"
        )),
    };
    let capacity = price.as_ref().map(NodeCapacity::from_price);
    let cost = NodeCost {
        node: node.to_string(),
        instance_type,
        region,
        lifecycle: if lifecycle == Lifecycle::Spot {
            "spot"
        } else {
            "on-demand"
        }
        .to_string(),
        assumed,
        rates: capacity.map(|c| c.rates),
        price,
        unpriced,
        hours: 0.0,
        node_cost_usd: 0.0,
        allocated_usd: 0.0,
        idle_usd: 0.0,
        idle_usd_per_month: 0.0,
        node_usd_per_month: 0.0,
    };
    (cost, capacity)
}

fn node_cost_ref(n: &NodeCost) -> Option<&NodeCost> {
    Some(n)
}

fn per_month(usd: f64, hours: f64) -> f64 {
    if hours > 0.0 {
        usd / hours * HOURS_PER_MONTH
    } else {
        0.0
    }
}

fn usage(key: usize, w: &pb::Workload, points: &[&pb::WorkloadPoint]) -> WorkloadUsage<usize> {
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
fn rss_avg(points: &[&pb::WorkloadPoint]) -> u64 {
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

impl CostReport {
    /// "raw windows" or "1-hour buckets", for the report's first line.
    pub fn history_source(&self) -> String {
        match self.history_bucket_seconds {
            0 => "raw windows".to_string(),
            s if s % 86_400 == 0 => format!("{}-day buckets", s / 86_400),
            s if s % 3600 == 0 => format!("{}-hour buckets", s / 3600),
            s if s % 60 == 0 => format!("{}-minute buckets", s / 60),
            s => format!("{s}-second buckets"),
        }
    }
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

fn line(
    h: &WorkloadHistory,
    node: &str,
    points: &[&pb::WorkloadPoint],
    rates: Option<NodeRates>,
    prices: &PriceTable,
    node_cost: Option<&NodeCost>,
) -> WorkloadCostLine {
    let w = &h.workload;
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
    let gc_cycles: u64 = points
        .iter()
        .filter_map(|p| p.delta.as_ref())
        .map(|d| d.gc_cycles)
        .sum();
    let series: Vec<(f64, u64)> = points
        .iter()
        .filter(|p| p.rss_bytes > 0)
        .map(|p| (p.window_end_unix_ms as f64 / 1000.0, rss_high(p)))
        .collect();
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
            };
            let mut ctx = Context::new(rates);
            ctx.prices = Some(prices);
            ctx.instance_type = Some(&n.instance_type);
            ctx.region = Some(&n.region);
            ctx.lifecycle = Lifecycle::parse(&n.lifecycle).unwrap_or(Lifecycle::OnDemand);
            recommend(&obs, &current, &ctx)
        }
        _ => Vec::new(),
    };
    let start = series.first().map_or(0.0, |s| s.0);
    let step = series.len().div_ceil(CHART_POINTS).max(1);
    WorkloadCostLine {
        key: names::key(w),
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
#[path = "build_settings_tests.rs"]
mod settings_tests;
