//! What the report opens with: what the nodes cost, what GC costs of it,
//! and the few changes worth making. Computed here once; the renderings
//! only print it. Also the rule for advice too small to act on.
use serde::Serialize;

use super::{
    build::{NodeCost, WorkloadCostLine},
    names::SystemKind,
};
use crate::cost::{
    Confidence, Recommendation,
    recommend::{SavingKind, Setting, Target},
};

/// At most this many changes open the report.
pub const SUMMARY_CHANGES: usize = 5;
/// A modelled saving smaller than this (USD a month, either sign) is nil:
/// no recommendation is made for it.
pub const NIL_SAVING_USD_PER_MONTH: f64 = 0.01;
/// A workload costing less than this a month gets no row of its own in
/// text, Markdown and HTML (it is counted on one line; the JSON keeps it).
pub const ROW_USD_PER_MONTH: f64 = 0.01;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// What the priced nodes cost per 730-hour month, at their price over
    /// the window.
    pub spend_usd_per_month: f64,
    pub nodes_priced: usize,
    /// Nodes without a price (their workloads' costs are unknown).
    pub nodes_unpriced: usize,
    /// The GC tax of every workload, per month.
    pub gc_tax_usd_per_month: f64,
    /// `gc_tax_usd_per_month` over `spend_usd_per_month`; `None` when no
    /// node is priced.
    pub gc_tax_share: Option<f64>,
    /// Kernel threads and Tally itself: summed, not ranked, not advised.
    pub system_usd_per_month: f64,
    pub system_workloads: usize,
    /// The same per kind, in [`SystemKind`] order.
    pub system_groups: Vec<SystemGroup>,
    /// Ranked workloads under [`ROW_USD_PER_MONTH`], folded into one line.
    pub small_workloads: usize,
    /// The largest savings first, at most [`SUMMARY_CHANGES`].
    pub changes: Vec<SummaryChange>,
}

/// The system workloads of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct SystemGroup {
    pub kind: SystemKind,
    pub workloads: usize,
    pub usd_per_month: f64,
}

/// One change worth making, as the summary lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryChange {
    /// The workload's human name, and its key for machines.
    pub workload: String,
    pub key: String,
    pub target: Target,
    pub change: String,
    pub monthly_saving_usd: f64,
    /// The calibrated range, where the model gives one.
    pub monthly_saving_range_usd: Option<(f64, f64)>,
    pub confidence: Confidence,
}

/// True when the recommendation models no effect: a saving under a cent a
/// month either way (for CPU-bound work, no CPU time saved), or every
/// setting left as it was.
pub fn is_nil(r: &Recommendation) -> bool {
    let no_effect = match (r.saving, r.time_saving_share) {
        (SavingKind::Time, Some((_, hi))) => hi.is_nan() || hi <= 0.0,
        _ => {
            r.monthly_saving_usd.abs() < NIL_SAVING_USD_PER_MONTH
                || !r.monthly_saving_usd.is_finite()
        }
    };
    no_effect || (!r.settings.is_empty() && r.settings.iter().all(Setting::is_unchanged))
}

/// The summary of ranked `workloads` (advised) and `system` ones.
pub fn summarize(
    nodes: &[NodeCost],
    workloads: &[WorkloadCostLine],
    system: &[WorkloadCostLine],
) -> Summary {
    let priced: Vec<&NodeCost> = nodes.iter().filter(|n| n.price.is_some()).collect();
    let spend: f64 = priced
        .iter()
        .filter(|n| n.hours > 0.0)
        .map(|n| n.node_usd_per_month)
        .sum();
    let gc_tax: f64 = workloads
        .iter()
        .chain(system)
        .map(|w| w.gc_tax_usd_per_month)
        .sum();
    let mut changes: Vec<SummaryChange> = workloads
        .iter()
        .flat_map(|w| {
            w.recommendations
                .iter()
                .filter(|r| r.monthly_saving_usd >= NIL_SAVING_USD_PER_MONTH)
                .map(|r| SummaryChange {
                    workload: w.name.clone(),
                    key: w.key.clone(),
                    target: r.target,
                    change: r.change.clone(),
                    monthly_saving_usd: r.monthly_saving_usd,
                    monthly_saving_range_usd: r.monthly_saving_range_usd,
                    confidence: r.confidence,
                })
        })
        .collect();
    changes.sort_by(|a, b| {
        b.monthly_saving_usd
            .total_cmp(&a.monthly_saving_usd)
            .then_with(|| a.key.cmp(&b.key))
    });
    changes.truncate(SUMMARY_CHANGES);
    let mut system_groups: Vec<SystemGroup> = Vec::new();
    for w in system {
        let Some(kind) = w.system else { continue };
        match system_groups.iter_mut().find(|g| g.kind == kind) {
            Some(g) => {
                g.workloads += 1;
                g.usd_per_month += w.cost_usd_per_month;
            }
            None => system_groups.push(SystemGroup {
                kind,
                workloads: 1,
                usd_per_month: w.cost_usd_per_month,
            }),
        }
    }
    system_groups.sort_by_key(|g| g.kind);
    Summary {
        spend_usd_per_month: spend,
        nodes_priced: priced.len(),
        nodes_unpriced: nodes.len() - priced.len(),
        gc_tax_usd_per_month: gc_tax,
        gc_tax_share: (spend > 0.0).then(|| gc_tax / spend),
        system_usd_per_month: system.iter().map(|w| w.cost_usd_per_month).sum(),
        system_workloads: system.len(),
        system_groups,
        small_workloads: workloads.iter().filter(|w| w.under_a_cent).count(),
        changes,
    }
}
