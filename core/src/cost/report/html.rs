//! The report as one self-contained HTML file: inline CSS and SVG charts, no
//! script, no external reference, so it renders offline and can be mailed.
use std::fmt::Write as _;

use super::{
    build::{CostReport, WorkloadCostLine},
    render::{
        NO_CHANGES, change_line, gc_tax_summary_line, mib, node_line, pressure_line,
        recommendation_line, rows, settings_line, small_line, spend_line, system_line, tax_line,
        usd_month,
    },
};

/// `<`, `>`, `&`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right}svg{background:#fafafa;border:1px solid #ddd}.muted{color:#888}";

/// Horizontal bars of GC tax per month, one per workload.
fn tax_chart<'a>(workloads: impl Iterator<Item = &'a WorkloadCostLine>) -> String {
    let rows: Vec<&WorkloadCostLine> = workloads.take(12).collect();
    let max = rows
        .iter()
        .map(|w| w.gc_tax_usd_per_month)
        .fold(0.0, f64::max)
        .max(1e-9);
    let (width, bar_h) = (720.0, 22.0);
    let height = bar_h * rows.len().max(1) as f64 + 10.0;
    let mut s = format!(
        "<svg id=\"tax-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"GC tax per month\">"
    );
    for (i, w) in rows.iter().enumerate() {
        let y = 5.0 + i as f64 * bar_h;
        let len = (w.gc_tax_usd_per_month / max * 380.0).max(0.0);
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{:.1}\" font-size=\"11\">{}</text><rect class=\"bar\" x=\"300\" y=\"{:.1}\" width=\"{len:.1}\" height=\"{:.1}\" fill=\"#c0392b\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            y + 15.0,
            escape(&short(&w.name, 44)),
            y + 3.0,
            bar_h - 6.0,
            305.0 + len,
            y + 15.0,
            usd_month(w.gc_tax_usd_per_month)
        );
    }
    s.push_str("</svg>");
    s
}

/// The RSS series as a line: the sawtooth the headroom is read from.
fn rss_chart(index: usize, w: &WorkloadCostLine) -> String {
    let (width, height) = (720.0, 120.0);
    let pts = &w.rss_series;
    if pts.len() < 2 {
        return "<p class=\"muted\">Too few RSS samples to draw.</p>".to_string();
    }
    let t_max = pts.last().map_or(1.0, |p| p.0).max(1e-9);
    let lo = pts.iter().map(|p| p.1).min().unwrap_or(0) as f64;
    let hi = pts.iter().map(|p| p.1).max().unwrap_or(0) as f64;
    let span = (hi - lo).max(1.0);
    let path: Vec<String> = pts
        .iter()
        .map(|&(t, v)| {
            format!(
                "{:.1},{:.1}",
                10.0 + t / t_max * (width - 20.0),
                height - 15.0 - (v as f64 - lo) / span * (height - 30.0)
            )
        })
        .collect();
    format!(
        "<svg id=\"rss-{index}\" class=\"rss\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"RSS over time\"><polyline fill=\"none\" stroke=\"#2c7fb8\" stroke-width=\"1.5\" points=\"{}\"/><text x=\"12\" y=\"12\" font-size=\"10\">{}</text><text x=\"12\" y=\"{:.0}\" font-size=\"10\">{}</text></svg>",
        path.join(" "),
        mib(hi as u64),
        height - 3.0,
        mib(lo as u64)
    )
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

pub fn html(report: &CostReport) -> String {
    let mut o = String::new();
    let s = &report.summary;
    let _ = write!(
        o,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Tally cost report</title><style>{STYLE}</style></head><body><h1>Tally cost report</h1><p>Last {:.1} h, from {}. Prices: table {} (as of {}); spot = {:.0}% of on-demand; margin {:.0}%.</p>",
        report.since_seconds / 3600.0,
        report.history_source(),
        escape(&report.price_table_version),
        escape(&report.price_table_as_of),
        report.spot_fraction * 100.0,
        report.margin * 100.0
    );
    let _ = write!(
        o,
        "<section id=\"summary\"><h2>Summary</h2><p class=\"spend\">{}</p><p class=\"gc-tax\">{}</p>",
        escape(&spend_line(s)),
        escape(&gc_tax_summary_line(s))
    );
    if let Some(l) = system_line(s) {
        let _ = write!(o, "<p class=\"system\">{}</p>", escape(&l));
    }
    if s.changes.is_empty() {
        let _ = write!(o, "<p class=\"no-changes\">{}</p>", escape(NO_CHANGES));
    } else {
        o.push_str("<p>Changes worth making, largest saving first:</p><ol id=\"changes\">");
        for c in &s.changes {
            let _ = write!(o, "<li class=\"change\">{}</li>", escape(&change_line(c)));
        }
        o.push_str("</ol>");
    }
    o.push_str("</section><h2>Nodes</h2><ul>");
    for n in &report.nodes {
        let _ = write!(o, "<li class=\"node\">{}</li>", escape(&node_line(n)));
    }
    o.push_str("</ul><h2>GC tax per month</h2>");
    o.push_str(&tax_chart(rows(report)));
    o.push_str(
        "<table id=\"workloads\"><tr><th>workload</th><th>runtime</th><th>node</th><th>cost $/month</th><th>GC share</th><th>GC tax $/month</th><th>headroom</th></tr>",
    );
    for w in rows(report) {
        let _ = write!(
            o,
            "<tr class=\"workload\"><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}{}</td><td class=\"n\">{}</td></tr>",
            escape(&w.key),
            escape(&w.name),
            w.runtime.name(),
            escape(&w.node),
            usd_month(w.cost_usd_per_month),
            super::render::gc_share_cell(w),
            usd_month(w.gc_tax_usd_per_month),
            if w.gc_tax_worth_naming {
                ""
            } else {
                " <span class=\"muted\">(none worth naming)</span>"
            },
            w.gc_tax
                .as_ref()
                .map_or("-".into(), |t| mib(t.headroom.bytes)),
        );
    }
    if let Some(l) = small_line(s) {
        let _ = write!(
            o,
            "<tr class=\"more\"><td colspan=\"7\" class=\"muted\">{}</td></tr>",
            escape(&l)
        );
    }
    o.push_str("</table><h2>Workloads</h2>");
    for (i, w) in rows(report).enumerate() {
        let _ = write!(
            o,
            "<h3>{}</h3><p class=\"muted\">{}</p><p>{}</p>{}",
            escape(&w.name),
            escape(&w.key),
            escape(&tax_line(w)),
            rss_chart(i, w)
        );
        for l in [settings_line(w), pressure_line(w)].into_iter().flatten() {
            let _ = write!(o, "<p class=\"settings\">{}</p>", escape(&l));
        }
        if !w.recommendations.is_empty() {
            o.push_str("<ul>");
            for r in &w.recommendations {
                let _ = write!(
                    o,
                    "<li class=\"recommendation\">{}</li>",
                    escape(&recommendation_line(r))
                );
            }
            o.push_str("</ul>");
        }
    }
    o.push_str("</body></html>\n");
    o
}
