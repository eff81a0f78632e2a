//! The report as text, Markdown or JSON.
use std::fmt::Write as _;

use super::build::{CostReport, NodeCost, WorkloadCostLine};
use crate::cost::{GIB, Recommendation};

const MIB: f64 = 1024.0 * 1024.0;

pub fn json(report: &CostReport) -> String {
    // Serializing plain structs of numbers and strings cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_default() + "\n"
}

pub fn usd(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("${x:.0}")
    } else if x.abs() >= 1.0 {
        format!("${x:.2}")
    } else {
        format!("${x:.4}")
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
            usd(w.gc_tax_usd_per_month),
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
        "{:?}: {} — saves {}/month ({} confidence, {} of data). {}",
        r.target,
        r.change,
        usd(r.monthly_saving_usd),
        r.confidence,
        r.window,
        r.model
    )
}

pub fn text(report: &CostReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Tally cost report: last {:.1} h; prices {} (as of {}), spot = {:.0}% of on-demand, margin {:.0}%",
        report.since_seconds / 3600.0,
        report.price_table_version,
        report.price_table_as_of,
        report.spot_fraction * 100.0,
        report.margin * 100.0
    );
    let _ = writeln!(o, "\nNodes");
    for n in &report.nodes {
        let _ = writeln!(o, "  {}", node_line(n));
        for a in &n.assumed {
            let _ = writeln!(o, "    assumed: {a}");
        }
    }
    let _ = writeln!(o, "\nWorkloads by GC tax");
    for w in &report.workloads {
        let _ = writeln!(
            o,
            "  {} ({}, {}, node {}): cost {}/month, {}{}",
            w.workload,
            w.name,
            w.runtime.name(),
            w.node,
            usd(w.cost_usd_per_month),
            tax_line(w),
            if w.gc_tax_worth_naming {
                ""
            } else {
                " — none worth naming"
            }
        );
        for r in &w.recommendations {
            let _ = writeln!(o, "    - {}", recommendation_line(r));
            for c in &r.caveats {
                let _ = writeln!(o, "        note: {c}");
            }
        }
    }
    o
}

pub fn markdown(report: &CostReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Tally cost report\n");
    let _ = writeln!(
        o,
        "Last {:.1} h. Prices: table {} (as of {}); spot = {:.0}% of on-demand; margin {:.0}%.\n",
        report.since_seconds / 3600.0,
        report.price_table_version,
        report.price_table_as_of,
        report.spot_fraction * 100.0,
        report.margin * 100.0
    );
    let _ = writeln!(o, "## Nodes\n");
    for n in &report.nodes {
        let _ = writeln!(o, "- {}", node_line(n));
    }
    let _ = writeln!(o, "\n## Workloads by GC tax\n");
    let _ = writeln!(
        o,
        "| workload | runtime | node | cost $/month | GC share | GC tax $/month | headroom |"
    );
    let _ = writeln!(o, "|---|---|---|---:|---:|---:|---:|");
    for w in &report.workloads {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {}{} | {} |",
            w.workload,
            w.runtime.name(),
            w.node,
            usd(w.cost_usd_per_month),
            gc_share_cell(w),
            usd(w.gc_tax_usd_per_month),
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
    let _ = writeln!(o, "\n## Recommendations\n");
    for w in report
        .workloads
        .iter()
        .filter(|w| !w.recommendations.is_empty())
    {
        let _ = writeln!(o, "### {}\n", w.workload);
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
