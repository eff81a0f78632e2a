//! The detail view of one row: what it is, its verdict with the reasons,
//! its rates, charts of the last minutes, its threads by name and its top
//! symbols.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::Modifier,
    text::{Line, Span},
    widgets::{Paragraph, Sparkline, Wrap},
};

use super::Theme;
use tally_core::gc::VerdictKind;

use crate::{
    app::{App, secs_text, unix_seconds},
    columns::{SourceKind, megabytes},
    format::{bytes, count},
    history::METRICS,
    rows::{Entry, RowKind, Stacks},
};

pub(super) fn draw_detail(f: &mut Frame, app: &App, theme: Theme, area: Rect, e: &Entry) {
    let mut title = vec![Span::styled(format!(" {} ", e.name), theme.title())];
    let mut facts = Vec::new();
    match (e.kind, e.pid) {
        (RowKind::Process, Some(pid)) => facts.push(format!("pid {pid}")),
        (RowKind::Group, _) => facts.push(format!("{} processes", e.procs)),
        _ => {}
    }
    facts.push(e.runtime.name().to_owned());
    if let Some(id) = &e.container_id {
        facts.push(format!(
            "container {}",
            id.chars().take(12).collect::<String>()
        ));
    }
    if let Some(pod) = &e.pod_name {
        facts.push(format!("pod {pod}"));
    } else if let Some(uid) = &e.pod_uid {
        facts.push(format!("pod uid {uid}"));
    }
    if !e.node.is_empty() {
        facts.push(format!("node {}", e.node));
    }
    if e.exited {
        facts.push("exited".to_owned());
    } else if e.quiet_for > 0.0 {
        facts.push(format!("quiet for {:.0}s", e.quiet_for));
    }
    title.push(Span::raw(format!("  {}", facts.join(" · "))));

    let verdict = e.verdict.map_or("no verdict", VerdictKind::name);
    let mut verdict_line = vec![
        Span::styled(" verdict ", theme.bold()),
        Span::styled(
            verdict.to_uppercase(),
            theme.verdict(e.verdict).add_modifier(Modifier::BOLD),
        ),
    ];
    if e.verdict.is_some() {
        verdict_line.push(Span::raw(format!("  confidence {:.2}", e.confidence)));
    }
    if !e.reasons.is_empty() {
        verdict_line.push(Span::raw(format!("  {}", e.reasons.join("; "))));
    }
    let numbers = numbers_line(app, e);
    let mut top = vec![Line::from(title)];
    if !e.cgroup_path.is_empty() {
        top.push(Line::from(Span::styled(
            format!(" cgroup {}", e.cgroup_path),
            theme.dim(),
        )));
    }
    // One line per runtime: what it was started with, and from where.
    if let Some(settings) = &e.settings {
        top.push(Line::from(Span::raw(format!(" {settings}"))));
    }
    let top_h = top.len() as u16;
    let [head, verdict_area, numbers_area, rest] = Layout::vertical([
        Constraint::Length(top_h),
        Constraint::Length(wrapped_height(&verdict_line, area.width).min(3)),
        Constraint::Length(wrapped_height(&numbers, area.width).min(2)),
        Constraint::Min(0),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(top), head);
    f.render_widget(
        Paragraph::new(Line::from(verdict_line)).wrap(Wrap { trim: false }),
        verdict_area,
    );
    f.render_widget(
        Paragraph::new(Line::from(numbers)).wrap(Wrap { trim: false }),
        numbers_area,
    );
    if rest.height < 2 {
        return;
    }
    let (charts, side) = if rest.width >= 70 {
        let [c, s] = Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)])
            .spacing(1)
            .areas(rest);
        (c, s)
    } else {
        let [c, s] =
            Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(rest);
        (c, s)
    };
    draw_charts(f, app, theme, charts, e);
    draw_side(f, app, theme, side, e);
}

fn wrapped_height(spans: &[Span], width: u16) -> u16 {
    let chars: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    (chars / usize::from(width.max(1)) + 1) as u16
}

fn numbers_line(app: &App, e: &Entry) -> Vec<Span<'static>> {
    let mut parts = vec![
        format!("CPU {:.1}%", e.cpu_pct),
        format!("GC {:.1}%", e.gc_pct),
        format!("RSS {}", bytes(e.rss as f64)),
        format!("alloc {} MB/s", megabytes(e.alloc_bps)),
    ];
    if app.source() == SourceKind::Local {
        parts.push(format!("freed {} MB/s", megabytes(e.release_bps)));
        parts.push(format!(
            "mmap {}/s munmap {}/s madvise {}/s brk {}/s mremap {}/s",
            count(e.mmap_ps),
            count(e.munmap_ps),
            count(e.madvise_ps),
            count(e.brk_ps),
            count(e.mremap_ps)
        ));
        parts.push(format!(
            "faults {}/s minor {}/s major",
            count(e.minflt_ps),
            count(e.majflt_ps)
        ));
        if e.gc_cycles_ps > 0.0 {
            parts.push(format!("GC cycles {:.1}/s", e.gc_cycles_ps));
        }
        if e.gc_pause_share > 0.0 {
            parts.push(format!(
                "GC pauses {:.1}% of time",
                100.0 * e.gc_pause_share
            ));
        }
        if let Some(p) = &e.pressure {
            parts.push(pressure_text(p));
        }
    } else {
        parts.push(format!("faults {}/s", count(e.faults_ps)));
    }
    vec![Span::raw(format!(" {}", parts.join("  ")))]
}

/// The container's stall (PSI) in the window and since its cgroup was
/// made: "memory stall 0.120 s (full 0.080 s), 12.4 s in all; cpu stall
/// 0.005 s (full 0.000 s), 2.0 s in all".
fn pressure_text(p: &tally_core::model::pressure::CgroupPressure) -> String {
    let one = |name: &str, w: Option<tally_core::model::pressure::PressureWindow>| match w {
        None => format!("{name} stall unknown"),
        Some(w) => {
            let full = w
                .delta
                .full_us
                .map_or_else(String::new, |f| format!(" (full {:.3} s)", f as f64 / 1e6));
            format!(
                "{name} stall {:.3} s{full}, {:.1} s in all",
                w.delta.some_us as f64 / 1e6,
                w.total.some_us as f64 / 1e6
            )
        }
    };
    format!("{}; {}", one("memory", p.memory), one("cpu", p.cpu))
}

fn metric_text(metric: usize, v: f64) -> String {
    match metric {
        0 | 1 => format!("{v:.1}%"),
        2 => format!("{}/s", count(v)),
        3 => format!("{} MB/s", megabytes(v)),
        _ => bytes(v),
    }
}

fn draw_charts(f: &mut Frame, app: &App, theme: Theme, area: Rect, e: &Entry) {
    // Each chart: a title line and at least one line of bars.
    let fit = usize::from(area.height / 2).min(METRICS.len());
    if fit == 0 {
        return;
    }
    let heights: Vec<Constraint> = (0..fit).map(|_| Constraint::Ratio(1, fit as u32)).collect();
    let areas = Layout::vertical(heights).split(area);
    let until = app.at.map_or(0.0, unix_seconds);
    let min_step = app.seconds.max(1.0);
    for (metric, chunk) in areas.iter().enumerate() {
        let [title, bars] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(*chunk);
        let chart = app
            .history
            .chart(&e.id, metric, usize::from(bars.width), until, min_step);
        let max = chart.max();
        let span = chart.step * f64::from(bars.width);
        let latest = chart
            .latest
            .map_or("-".to_owned(), |v| metric_text(metric, v));
        let head = Line::from(vec![
            Span::styled(format!("{} ", METRICS[metric]), theme.bold()),
            Span::styled(latest, theme.chart(metric).add_modifier(Modifier::BOLD)),
            Span::styled(
                format!(
                    "  max {}  last {}",
                    metric_text(metric, max),
                    secs_text((span / 1.0).round().max(1.0))
                ),
                theme.dim(),
            ),
        ]);
        f.render_widget(Paragraph::new(head), title);
        let scale = if max > 0.0 { 1000.0 / max } else { 0.0 };
        let data: Vec<Option<u64>> = chart
            .values
            .iter()
            .map(|v| v.map(|v| (v * scale).round() as u64))
            .collect();
        f.render_widget(
            Sparkline::default()
                .data(data)
                .max(1000)
                .style(theme.chart(metric)),
            bars,
        );
    }
}

fn draw_side(f: &mut Frame, app: &App, theme: Theme, area: Rect, e: &Entry) {
    let mut lines = vec![Line::from(Span::styled(
        "THREADS by name            n   CPU%",
        theme.table_header(),
    ))];
    if e.threads.is_empty() {
        let why = match app.source() {
            SourceKind::Remote => "  (the collector keeps no threads)",
            SourceKind::Local => "  (no CPU samples in this window)",
        };
        lines.push(Line::from(Span::styled(why, theme.dim())));
    }
    let thread_rows = usize::from(area.height / 2).saturating_sub(1).max(1);
    for t in e.threads.iter().take(thread_rows) {
        let name: String = t.name.chars().take(22).collect();
        let mut spans = vec![Span::raw(format!(
            "  {name:<22} {:>4} {:>6.1}",
            t.threads, t.cpu_pct
        ))];
        if t.gc {
            spans.push(Span::styled(
                " gc",
                theme.verdict(Some(VerdictKind::GcHeavy)),
            ));
        }
        lines.push(Line::from(spans));
    }
    if e.threads.len() > thread_rows {
        lines.push(Line::from(Span::styled(
            format!("  … {} more", e.threads.len() - thread_rows),
            theme.dim(),
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "TOP SYMBOLS  leaf functions on CPU, % of stacks",
        theme.table_header(),
    )));
    match &e.stacks {
        Stacks::Off => lines.push(Line::from(Span::styled(
            "  (stacks off: --stack-sampling off)",
            theme.dim(),
        ))),
        Stacks::Unavailable => lines.push(Line::from(Span::styled(
            "  (the collector keeps no stacks; run agent top on the node)",
            theme.dim(),
        ))),
        Stacks::NotSampled => lines.push(Line::from(Span::styled(
            "  (recording its stacks from now on: next window)",
            theme.dim(),
        ))),
        Stacks::Sampled(s) if s.samples == 0 => lines.push(Line::from(Span::styled(
            "  (no stack samples in this window)",
            theme.dim(),
        ))),
        Stacks::Sampled(s) => {
            for sym in &s.top {
                let pct = 100.0 * sym.samples as f64 / s.samples as f64;
                let mut spans = vec![Span::raw(format!("  {pct:>5.1}%  {}", sym.name))];
                if sym.gc {
                    spans.push(Span::styled(
                        " gc",
                        theme.verdict(Some(VerdictKind::GcHeavy)),
                    ));
                }
                lines.push(Line::from(spans));
            }
        }
    }
    f.render_widget(Paragraph::new(lines), area);
}
