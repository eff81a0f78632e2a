//! The report as text, Markdown or JSON.
use std::fmt::Write as _;

use super::{
    build::{CostReport, NodeCost, WorkloadCostLine},
    summary::{ROW_USD_PER_MONTH, Summary, SummaryChange},
};
use crate::cost::{GIB, Recommendation, recommend::SavingKind};

const MIB: f64 = 1024.0 * 1024.0;

pub fn json(report: &CostReport) -> String {
    // Serializing plain structs of numbers and strings cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_default() + "\n"
}

pub fn usd(x: f64) -> String {
    if x == 0.0 {
        "$0".to_string()
    } else if x.abs() < 0.0001 {
        if x < 0.0 { "-<$0.0001" } else { "<$0.0001" }.to_string()
    } else if x.abs() >= 100.0 {
        format!("${x:.0}")
    } else if x.abs() >= 1.0 {
        format!("${x:.2}")
    } else {
        format!("${x:.4}")
    }
}

/// A monthly figure: cents are its precision, and what is under a cent
/// says so instead of printing `$0.0000`.
pub fn usd_month(x: f64) -> String {
    let sign = if x < 0.0 { "-" } else { "" };
    let a = x.abs();
    if x == 0.0 {
        "$0.00".to_string()
    } else if a < ROW_USD_PER_MONTH {
        format!("{sign}<$0.01")
    } else if a >= 100.0 {
        format!("{sign}${a:.0}")
    } else {
        format!("{sign}${a:.2}")
    }
}

pub fn mib(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

pub fn node_line(n: &NodeCost) -> String {
    match &n.price {
        Some(p) => format!(
            "{}: {} {} {} at {}/h ({} vCPU, {} GiB; {}), {:.2} h: cost {}, allocated {}, idle {} ({} per month)",
            n.node,
            p.instance_type,
            p.region,
            n.lifecycle,
            usd(p.usd_per_hour),
            p.vcpus,
            p.memory_gib,
            p.source,
            n.hours,
            usd(n.node_cost_usd),
            usd(n.allocated_usd),
            usd(n.idle_usd),
            usd(n.idle_usd_per_month),
        ),
        None => format!(
            "{}: not priced: {}",
            n.node,
            n.unpriced.as_deref().unwrap_or("")
        ),
    }
}

/// The GC share as a table shows it: "unseen" where the agents could not
/// see the GC of most of the workload's CPU.
pub fn gc_share_cell(w: &WorkloadCostLine) -> String {
    if w.runtime.has_gc() && w.gc_blind_share >= crate::gc::verdict::BLIND_SHARE {
        "unseen".to_string()
    } else {
        format!("{:.0}%", w.gc_cpu_share * 100.0)
    }
}

pub fn tax_line(w: &WorkloadCostLine) -> String {
    if w.runtime.has_gc() && w.gc_blind_share >= crate::gc::verdict::BLIND_SHARE {
        return format!(
            "GC tax: not claimed (its GC was unobservable for {:.0}% of its CPU: stripped binary, or no GC threads by name)",
            w.gc_blind_share * 100.0
        );
    }
    match &w.gc_tax {
        Some(t) => format!(
            "GC tax {}/month (GC CPU {:.1} s = {:.0}% of CPU, {}; headroom {} via {:?}, {} confidence: {})",
            usd_month(w.gc_tax_usd_per_month),
            w.gc_cpu_seconds,
            w.gc_cpu_share * 100.0,
            usd(t.cpu_cost),
            mib(t.headroom.bytes),
            t.headroom.method,
            t.headroom.confidence,
            t.headroom.description,
        ),
        None => "GC tax: not priced (node not priced)".to_string(),
    }
}

pub fn recommendation_line(r: &Recommendation) -> String {
    format!(
        "{:?}: {} — {} ({} confidence, {} of data). {}",
        r.target,
        r.change,
        saving_text(r),
        r.confidence,
        r.window,
        r.model
    )
}

/// Its memory stall where it is evidence ([`Observation::squeezed`]); its
/// recommendations say what follows from it.
///
/// [`Observation::squeezed`]: crate::cost::recommend::Observation::squeezed
pub fn pressure_line(w: &WorkloadCostLine) -> Option<String> {
    let stall = crate::gc::verdict::stall_evidence(w.memory_stall_share)?;
    Some(format!(
        "Memory pressure: stalled waiting for memory {:.1}% of the time (PSI some): too little headroom under its limit",
        stall * 100.0
    ))
}

/// The runtime settings the workload runs with, as read from its main
/// process (what its recommendations rest on); `None` for a runtime
/// without any Tally reads.
pub fn settings_line(w: &WorkloadCostLine) -> Option<String> {
    w.settings.as_ref().map(|s| format!("Settings: {s}"))
}

/// What a recommendation saves, as every format says it: dollars with the
/// calibrated range, or for CPU-bound work the share of CPU time.
pub fn saving_text(r: &Recommendation) -> String {
    match (r.saving, r.time_saving_share, r.monthly_saving_range_usd) {
        (SavingKind::Time, Some((lo, hi)), _) => format!(
            "saves {:.0}–{:.0}% of its CPU time; CPU-bound, so no dollars are claimed",
            lo * 100.0,
            hi * 100.0
        ),
        (_, _, Some((lo, hi))) => format!(
            "saves {}/month (range {} to {})",
            usd_month(r.monthly_saving_usd),
            usd_month(lo),
            usd_month(hi)
        ),
        _ => format!("saves {}/month", usd_month(r.monthly_saving_usd)),
    }
}

/// The summary's lines, in order: spend, GC tax, the system group, then
/// the changes (or why there are none). Every rendering prints these.
pub fn spend_line(s: &Summary) -> String {
    let unpriced = match s.nodes_unpriced {
        0 => String::new(),
        n => format!("; {n} node(s) not priced, their cost unknown"),
    };
    format!(
        "Spend: {}/month for {} priced node(s), at their price over the window{unpriced}",
        usd_month(s.spend_usd_per_month),
        s.nodes_priced,
    )
}

pub fn gc_tax_summary_line(s: &Summary) -> String {
    match s.gc_tax_share {
        Some(share) => format!(
            "GC tax: {}/month, {:.1}% of spend",
            usd_month(s.gc_tax_usd_per_month),
            share * 100.0
        ),
        None => format!(
            "GC tax: {}/month (no node priced: its share unknown)",
            usd_month(s.gc_tax_usd_per_month)
        ),
    }
}

/// `None` when there is no system workload.
pub fn system_line(s: &Summary) -> Option<String> {
    if s.system_workloads == 0 {
        return None;
    }
    let groups: Vec<String> = s
        .system_groups
        .iter()
        .map(|g| {
            format!(
                "{} {}: {}",
                g.kind.name(),
                g.workloads,
                usd_month(g.usd_per_month)
            )
        })
        .collect();
    Some(format!(
        "System ({}): {}/month over {} workload(s), not ranked, no recommendations",
        groups.join("; "),
        usd_month(s.system_usd_per_month),
        s.system_workloads
    ))
}

pub fn change_line(c: &SummaryChange) -> String {
    let range = c
        .monthly_saving_range_usd
        .map_or(String::new(), |(lo, hi)| {
            format!(", {} to {}", usd_month(lo), usd_month(hi))
        });
    format!(
        "{}: {} — {}/month ({} confidence{range})",
        c.workload,
        c.change,
        usd_month(c.monthly_saving_usd),
        c.confidence
    )
}

pub const NO_CHANGES: &str = "No change worth making: no modelled saving reaches $0.01/month.";

pub fn small_line(s: &Summary) -> Option<String> {
    (s.small_workloads > 0).then(|| {
        format!(
            "{} more workload(s) under $0.01/month (in the JSON)",
            s.small_workloads
        )
    })
}

/// The workloads that get a row: ranked, and a cent a month or more.
pub fn rows(report: &CostReport) -> impl Iterator<Item = &WorkloadCostLine> {
    report.workloads.iter().filter(|w| !w.under_a_cent)
}

pub fn text(report: &CostReport) -> String {
    let mut o = String::new();
    let s = &report.summary;
    let _ = writeln!(
        o,
        "Tally cost report: last {:.1} h from {}; prices {} (as of {}), spot = {:.0}% of on-demand, margin {:.0}%",
        report.since_seconds / 3600.0,
        report.history_source(),
        report.price_table_version,
        report.price_table_as_of,
        report.spot_fraction * 100.0,
        report.margin * 100.0
    );
    let _ = writeln!(o, "\nSummary");
    let _ = writeln!(o, "  {}", spend_line(s));
    let _ = writeln!(o, "  {}", gc_tax_summary_line(s));
    if let Some(l) = system_line(s) {
        let _ = writeln!(o, "  {l}");
    }
    if s.changes.is_empty() {
        let _ = writeln!(o, "  {NO_CHANGES}");
    } else {
        let _ = writeln!(o, "  Changes worth making, largest saving first:");
        for (i, c) in s.changes.iter().enumerate() {
            let _ = writeln!(o, "    {}. {}", i + 1, change_line(c));
        }
    }
    let _ = writeln!(o, "\nNodes");
    for n in &report.nodes {
        let _ = writeln!(o, "  {}", node_line(n));
        for a in &n.assumed {
            let _ = writeln!(o, "    assumed: {a}");
        }
    }
    let _ = writeln!(o, "\nWorkloads by GC tax");
    for w in rows(report) {
        let _ = writeln!(
            o,
            "  {} ({}, node {}): cost {}/month, {}{}",
            w.name,
            w.runtime.name(),
            w.node,
            usd_month(w.cost_usd_per_month),
            tax_line(w),
            if w.gc_tax_worth_naming {
                ""
            } else {
                " — none worth naming"
            }
        );
        let _ = writeln!(o, "    key {}", w.key);
        for l in [settings_line(w), pressure_line(w)].into_iter().flatten() {
            let _ = writeln!(o, "    {l}");
        }
        for r in &w.recommendations {
            let _ = writeln!(o, "    - {}", recommendation_line(r));
            for c in &r.caveats {
                let _ = writeln!(o, "        note: {c}");
            }
        }
    }
    if let Some(l) = small_line(s) {
        let _ = writeln!(o, "  {l}");
    }
    o
}

pub fn markdown(report: &CostReport) -> String {
    let mut o = String::new();
    let s = &report.summary;
    let _ = writeln!(o, "# Tally cost report\n");
    let _ = writeln!(
        o,
        "Last {:.1} h, from {}. Prices: table {} (as of {}); spot = {:.0}% of on-demand; margin {:.0}%.\n",
        report.since_seconds / 3600.0,
        report.history_source(),
        report.price_table_version,
        report.price_table_as_of,
        report.spot_fraction * 100.0,
        report.margin * 100.0
    );
    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(o, "- {}", spend_line(s));
    let _ = writeln!(o, "- {}", gc_tax_summary_line(s));
    if let Some(l) = system_line(s) {
        let _ = writeln!(o, "- {l}");
    }
    if s.changes.is_empty() {
        let _ = writeln!(o, "\n{NO_CHANGES}");
    } else {
        let _ = writeln!(o, "\nChanges worth making, largest saving first:\n");
        for (i, c) in s.changes.iter().enumerate() {
            let _ = writeln!(o, "{}. {}", i + 1, change_line(c));
        }
    }
    let _ = writeln!(o, "\n## Nodes\n");
    for n in &report.nodes {
        let _ = writeln!(o, "- {}", node_line(n));
    }
    let _ = writeln!(o, "\n## Workloads by GC tax\n");
    let _ = writeln!(
        o,
        "| workload | runtime | node | cost $/month | GC share | GC tax $/month | headroom |"
    );
    let _ = writeln!(o, "|---|---|---|---:|---:|---:|---:|");
    for w in rows(report) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {}{} | {} |",
            w.name,
            w.runtime.name(),
            w.node,
            usd_month(w.cost_usd_per_month),
            gc_share_cell(w),
            usd_month(w.gc_tax_usd_per_month),
            if w.gc_tax_worth_naming {
                ""
            } else {
                " (none worth naming)"
            },
            w.gc_tax
                .as_ref()
                .map_or("-".into(), |t| mib(t.headroom.bytes)),
        );
    }
    if let Some(l) = small_line(s) {
        let _ = writeln!(o, "\n{l}");
    }
    let _ = writeln!(o, "\n## Recommendations\n");
    for w in rows(report).filter(|w| !w.recommendations.is_empty()) {
        let _ = writeln!(o, "### {}\n", w.name);
        for l in [settings_line(w), pressure_line(w)].into_iter().flatten() {
            let _ = writeln!(o, "{l}\n");
        }
        for r in &w.recommendations {
            let _ = writeln!(o, "- {}", recommendation_line(r));
            for c in &r.caveats {
                let _ = writeln!(o, "  - note: {c}");
            }
        }
        let _ = writeln!(o);
    }
    o
}
