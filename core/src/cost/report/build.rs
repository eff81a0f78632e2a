//! From what the collector kept (each node's identity, each workload's
//! windows) to the cost report: every node priced and split OpenCost's way,
//! every workload's cost and GC tax, and the recommendations. Pure: the
//! fetching is in [`super`], the printing in [`super::render`] and
//! [`super::html`].
use std::collections::BTreeMap;

use serde::Serialize;
use tally_proto as pb;

use super::{
    line::{lifecycle_of, line, usage},
    names::SystemKind,
    summary::{self, ROW_USD_PER_MONTH, Summary},
};
use crate::{
    cost::{
        DataWindow, GcTax, HOURS_PER_MONTH, Lifecycle, NodePrice, PriceTable, Recommendation,
        allocation::{NodeCapacity, NodeRates, WorkloadUsage, allocate},
        recommend::Target,
    },
    gc::Runtime,
    model::RuntimeSettings,
};

/// A GC tax below this many USD a month, or below [`NAMED_TAX_SHARE`] of
/// the workload's own cost, is "none worth naming": it is shown, but not
/// ranked or acted on.
pub const NAMED_TAX_USD_PER_MONTH: f64 = 0.01;
pub const NAMED_TAX_SHARE: f64 = 0.01;

/// At most this many RSS points per workload are kept for the charts.
pub(super) const CHART_POINTS: usize = 240;

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
    /// Raw windows, or rolled-up buckets, each naming its node.
    pub points: Vec<pb::WorkloadPoint>,
    /// Or, of a rolled-up history, its buckets on each node summed, with
    /// their RSS chart (what the collector sends past its raw retention).
    pub spans: Vec<pb::NodeSpan>,
}

/// A workload's history on one node: its points, or the one point that
/// sums a span's buckets, with the span for its chart.
pub(super) struct OnNode<'a> {
    pub points: Vec<&'a pb::WorkloadPoint>,
    pub span: Option<&'a pb::NodeSpan>,
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
    /// The container's full id (64 hex digits); `None` outside containers.
    pub container_id: Option<String>,
    /// The pod's uid, where it runs in one.
    pub pod_uid: Option<String>,
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
    /// Share of its time some task of it stalled waiting for memory (its
    /// container cgroup's `memory.pressure`, `some`); `null` where unknown
    /// (not a container, a kernel without PSI, an older collector's tiers).
    pub memory_stall_share: Option<f64>,
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
    let mut report = ReportBuilder::new(nodes, prices, defaults, margin, now_ms, since_ms);
    for h in histories {
        report.add(h);
    }
    report.finish()
}

/// The report built a workload at a time, as a collector streams them: a
/// workload's line needs only its own history and its node's price; only
/// the split of each node's cost ([`allocate`]) waits for all of the node's
/// workloads ([`ReportBuilder::finish`]). So a client prices one part while
/// the collector reads the next, and holds lines, not histories.
pub struct ReportBuilder<'a> {
    identities: BTreeMap<String, pb::NodeSummary>,
    prices: &'a PriceTable,
    defaults: &'a NodeDefaults,
    margin: f64,
    now_ms: i64,
    since_ms: i64,
    nodes: BTreeMap<String, NodeLines>,
    /// The types priced in each (region, lifecycle), for the shapes.
    region_prices: BTreeMap<(String, String), Vec<NodePrice>>,
}

/// A node, priced, and the lines of the workloads seen on it so far, with
/// what each used (for the split of its cost).
struct NodeLines {
    cost: NodeCost,
    capacity: Option<NodeCapacity>,
    hours: f64,
    usages: Vec<WorkloadUsage<usize>>,
    lines: Vec<WorkloadCostLine>,
}

impl<'a> ReportBuilder<'a> {
    pub fn new(
        nodes: &[pb::NodeSummary],
        prices: &'a PriceTable,
        defaults: &'a NodeDefaults,
        margin: f64,
        now_ms: i64,
        since_ms: i64,
    ) -> Self {
        Self {
            identities: nodes
                .iter()
                .filter_map(|n| Some((n.identity.as_ref()?.node_name.clone(), n.clone())))
                .collect(),
            prices,
            defaults,
            margin,
            now_ms,
            since_ms,
            nodes: BTreeMap::new(),
            region_prices: BTreeMap::new(),
        }
    }

    /// Adds a workload: a line for each node that reported it.
    pub fn add(&mut self, h: &WorkloadHistory) {
        let mut by_node: BTreeMap<&str, Vec<&pb::WorkloadPoint>> = BTreeMap::new();
        for p in &h.points {
            by_node.entry(&p.node_name).or_default().push(p);
        }
        for (node, points) in by_node {
            self.add_on(h, node, &OnNode { points, span: None });
        }
        for span in &h.spans {
            if let Some(total) = span.total.as_ref() {
                let on = OnNode {
                    points: vec![total],
                    span: Some(span),
                };
                self.add_on(h, &total.node_name, &on);
            }
        }
    }

    fn add_on(&mut self, h: &WorkloadHistory, node: &str, on: &OnNode) {
        if !self.nodes.contains_key(node) {
            let priced = self.price(node);
            self.nodes.insert(node.to_string(), priced);
        }
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let key = n.lines.len();
        n.usages.push(usage(key, &h.workload, &on.points));
        let line = match n.capacity {
            Some(capacity) => {
                let region_prices = self
                    .region_prices
                    .entry((n.cost.region.clone(), n.cost.lifecycle.clone()))
                    .or_insert_with(|| {
                        self.prices.prices_in(&n.cost.region, lifecycle_of(&n.cost))
                    });
                let rates = Some(capacity.rates);
                line(
                    h,
                    node,
                    on,
                    rates,
                    self.prices,
                    Some(&n.cost),
                    region_prices,
                )
            }
            None => line(h, node, on, None, self.prices, None, &[]),
        };
        n.lines.push(line);
    }

    /// A node's price, and the hours its reports span within the report.
    fn price(&self, node: &str) -> NodeLines {
        let summary = self.identities.get(node);
        let (mut cost, capacity) = price_node(
            node,
            summary.and_then(|s| s.identity.as_ref()),
            self.prices,
            self.defaults,
        );
        let start_ms = summary
            .map_or(self.since_ms, |s| s.first_window_start_unix_ms)
            .max(self.since_ms);
        let end_ms = summary.map_or(self.now_ms, |s| s.last_window_end_unix_ms);
        let hours = (end_ms - start_ms).max(0) as f64 / 3.6e6;
        cost.hours = hours;
        NodeLines {
            cost,
            capacity,
            hours,
            usages: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Splits each node's cost between its workloads and idle, and ranks.
    pub fn finish(self) -> CostReport {
        let (prices, margin, now_ms, since_ms) =
            (self.prices, self.margin, self.now_ms, self.since_ms);
        let mut node_costs = Vec::new();
        let mut lines = Vec::new();
        for (_, mut n) in self.nodes {
            if let Some(capacity) = n.capacity {
                let hours = n.hours;
                let alloc = allocate(&capacity, hours, &n.usages);
                n.cost.node_cost_usd = alloc.node_cost;
                n.cost.allocated_usd = alloc.allocated_cost();
                n.cost.idle_usd = alloc.idle_cost();
                n.cost.idle_usd_per_month = per_month(alloc.idle_cost(), hours);
                n.cost.node_usd_per_month = capacity.usd_per_hour * HOURS_PER_MONTH;
                for w in &alloc.workloads {
                    let line = &mut n.lines[w.key];
                    line.cost_usd = w.total();
                    line.cost_usd_per_month = per_month(w.total(), hours);
                    line.unused_request_usd_per_month = per_month(
                        w.cpu_unused_request_cost + w.memory_unused_request_cost,
                        hours,
                    );
                }
            }
            lines.append(&mut n.lines);
            node_costs.push(n.cost);
        }
        rank(node_costs, lines, prices, margin, now_ms, since_ms)
    }
}

/// Names what is worth naming, and orders the lines.
fn rank(
    node_costs: Vec<NodeCost>,
    mut lines: Vec<WorkloadCostLine>,
    prices: &PriceTable,
    margin: f64,
    now_ms: i64,
    since_ms: i64,
) -> CostReport {
    let priced_nodes: std::collections::BTreeSet<String> = node_costs
        .iter()
        .filter(|n| n.price.is_some())
        .map(|n| n.node.clone())
        .collect();
    for l in &mut lines {
        l.gc_tax_worth_naming = l.gc_tax_usd_per_month >= NAMED_TAX_USD_PER_MONTH
            && l.gc_tax_usd_per_month >= NAMED_TAX_SHARE * l.cost_usd_per_month;
        // A container squeezed by its memory limit keeps its requests
        // whatever they cost: what they buy is the end of its stalls.
        let squeezed = crate::gc::verdict::stall_evidence(l.memory_stall_share).is_some();
        let relieves = |r: &Recommendation| {
            squeezed
                && r.target == Target::Kubernetes
                && !r.settings.iter().all(|s| s.is_unchanged())
        };
        if !l.gc_tax_worth_naming {
            // Requests and shape still count, runtime knobs do not.
            l.recommendations.retain(|r| {
                relieves(r)
                    || matches!(r.target, Target::Kubernetes | Target::InstanceShape)
                        && r.monthly_saving_usd >= NAMED_TAX_USD_PER_MONTH
            });
        }
        l.recommendations
            .retain(|r| relieves(r) || !summary::is_nil(r));
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

fn per_month(usd: f64, hours: f64) -> f64 {
    if hours > 0.0 {
        usd / hours * HOURS_PER_MONTH
    } else {
        0.0
    }
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
