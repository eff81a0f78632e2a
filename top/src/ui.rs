//! Drawing the [`App`] with ratatui. Nothing here changes what the state
//! means: it reads it, and tells it how many rows fit ([`App::set_page`]).
//! Only the rows on screen are formatted, so thousands of rows cost what a
//! screenful costs.
use std::time::SystemTime;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, Wrap},
};

use super::{
    app::{App, Grouping, Overlay, Screen, secs_text},
    columns::{self, Column, SourceKind},
    filter::FILTER_FIELDS,
    format::{bytes, count, money, rfc3339},
    input::{FILTER_HELP, KEYS},
};
use tally_core::gc::VerdictKind;

mod detail;

use detail::draw_detail;

/// Styles, with or without colour (`NO_COLOR`): without, everything stays
/// readable through text and attributes (bold, reverse, dim).
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn title(self) -> Style {
        let s = Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED);
        if self.color {
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD)
        } else {
            s
        }
    }

    fn table_header(self) -> Style {
        if self.color {
            Style::new().fg(Color::Black).bg(Color::Green)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    fn sorted_header(self) -> Style {
        self.table_header()
            .add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    fn selected(self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    fn warn(self) -> Style {
        if self.color {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// gc-heavy stands out (red, or bold without colour), alloc-churn less,
    /// steady is plain, idle recedes.
    pub fn verdict(self, v: Option<VerdictKind>) -> Style {
        match (v, self.color) {
            (Some(VerdictKind::GcHeavy), true) => {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            }
            (Some(VerdictKind::GcHeavy), false) => Style::new().add_modifier(Modifier::BOLD),
            (Some(VerdictKind::AllocChurn), true) => Style::new().fg(Color::Yellow),
            (Some(VerdictKind::Steady), true) => Style::new().fg(Color::Green),
            (Some(VerdictKind::GcUnobservable), true) => Style::new().fg(Color::Magenta),
            (Some(VerdictKind::Idle) | None, _) => self.dim(),
            _ => Style::new(),
        }
    }

    fn chart(self, metric: usize) -> Style {
        if !self.color {
            return Style::new();
        }
        Style::new().fg(match metric {
            0 => Color::Cyan,
            1 => Color::Red,
            2 => Color::Magenta,
            3 => Color::Yellow,
            _ => Color::Green,
        })
    }
}

/// Draws one frame.
pub fn draw(f: &mut Frame, app: &mut App) {
    let area = f.area();
    let theme = Theme {
        color: app.settings.color,
    };
    if area.width < 20 || area.height < 6 {
        f.render_widget(
            Paragraph::new("tally top: terminal too small").wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(f, app, theme, header);
    let hidden = match app.detail().cloned() {
        Some(e) => {
            draw_detail(f, app, theme, body, &e);
            0
        }
        None => draw_table(f, app, theme, body),
    };
    draw_footer(f, app, theme, footer, hidden);
    match app.overlay {
        Overlay::Help { scroll } => draw_help(f, theme, area, scroll),
        Overlay::SortMenu { cursor } => draw_sort_menu(f, app, theme, area, cursor),
        Overlay::None => {}
    }
}

fn clock(at: Option<SystemTime>) -> String {
    match at {
        Some(t) => {
            let s = rfc3339(t);
            format!("{}Z", &s[11..19])
        }
        None => "--:--:--".into(),
    }
}

fn draw_header(f: &mut Frame, app: &App, theme: Theme, area: Rect) {
    let (col, desc) = app.sort_state();
    let mut first = vec![
        Span::styled(" tally top ", theme.title()),
        Span::raw(format!(" {}  {}", app.settings.label, clock(app.at))),
        Span::raw(format!("  every {}", secs_text(app.interval.as_secs_f64()))),
        Span::raw(format!(
            "  {} {}/{}",
            app.grouping_label(),
            app.visible_len(),
            app.all_rows().len()
        )),
        Span::raw(format!(
            "  sort {}{}",
            col.spec().title,
            if desc { "▼" } else { "▲" }
        )),
    ];
    if !app.filter.is_empty() {
        first.push(Span::raw(format!("  filter \"{}\"", app.filter)));
    }
    if app.gc_only {
        first.push(Span::styled("  gc-heavy only", theme.bold()));
    }
    if let Some(node) = &app.node {
        first.push(Span::raw(format!("  node {node}")));
    }
    // Last: the node's price is the least urgent, and long.
    if let Some(label) = &app.node_label {
        first.push(Span::raw(format!("  {label}")));
    }
    if app.paused {
        first.push(Span::raw("  "));
        first.push(Span::styled(" PAUSED ", theme.title()));
    }
    if !app.source_state.is_empty() {
        first.push(Span::styled(
            format!("  {}", app.source_state),
            theme.warn(),
        ));
    }
    let t = app.totals();
    let scope = match app.source() {
        SourceKind::Local => "node",
        SourceKind::Remote if app.node.is_some() => "node",
        SourceKind::Remote => "cluster",
    };
    let cores = if t.cpus > 0 {
        format!(
            "{:.2}/{} cores ({:.0}%)",
            t.cpu_cores,
            t.cpus,
            100.0 * t.cpu_cores / t.cpus as f64
        )
    } else {
        format!("{:.2} cores", t.cpu_cores)
    };
    let mut second = vec![
        Span::styled(format!(" {scope} CPU "), theme.bold()),
        Span::raw(cores),
        Span::styled("  faults ", theme.bold()),
        Span::raw(format!("{}/s", count(t.faults_ps))),
        Span::styled("  alloc ", theme.bold()),
        Span::raw(format!("{}/s", bytes(t.alloc_bps))),
        Span::styled("  gc-heavy ", theme.bold()),
        Span::styled(
            t.gc_heavy.to_string(),
            if t.gc_heavy > 0 {
                theme.verdict(Some(VerdictKind::GcHeavy))
            } else {
                Style::new()
            },
        ),
    ];
    if let Some(cost) = t.cost_month {
        second.push(Span::styled("  cost ", theme.bold()));
        second.push(Span::raw(format!("${}/mo", money(cost))));
    }
    if t.lost > 0 {
        second.push(Span::styled(
            format!("  LOST {} updates", t.lost),
            theme.warn(),
        ));
    }
    second.push(Span::styled("  agent ", theme.bold()));
    second.push(Span::raw(format!(
        "{:.1}% CPU {} RSS",
        app.agent_cpu_pct,
        bytes(app.agent_rss as f64)
    )));
    f.render_widget(
        Paragraph::new(vec![Line::from(first), Line::from(second)]),
        area,
    );
}

/// Draws the table; returns how many columns did not fit.
fn draw_table(f: &mut Frame, app: &mut App, theme: Theme, area: Rect) -> usize {
    let available = app.columns();
    let (fitted, hidden) = columns::fit(&available, area.width);
    let rows_fit = usize::from(area.height.saturating_sub(1));
    let offset = app.set_page(rows_fit);
    let (sort, desc) = app.sort_state();
    let header = Row::new(fitted.iter().map(|(c, _)| {
        let spec = c.spec();
        if *c == sort {
            let arrow = if desc { "▼" } else { "▲" };
            let text = format!("{}{arrow}", spec.title);
            aligned(text, spec.right).style(theme.sorted_header())
        } else {
            aligned(spec.title.to_owned(), spec.right)
        }
    }))
    .style(theme.table_header());
    let selected = app.selected_index();
    let rows: Vec<Row> = app
        .visible()
        .enumerate()
        .skip(offset)
        .take(rows_fit)
        .map(|(i, e)| {
            let quiet = e.quiet_for > 0.0 || e.exited;
            let cells = fitted.iter().map(|(c, _)| {
                let cell = aligned(c.cell(e), c.spec().right);
                if *c == Column::Verdict && !quiet {
                    cell.style(theme.verdict(e.verdict))
                } else {
                    cell
                }
            });
            let row = Row::new(cells);
            if i == selected {
                row.style(theme.selected())
            } else if quiet {
                row.style(theme.dim())
            } else {
                row
            }
        })
        .collect();
    let empty = rows.is_empty();
    let widths: Vec<Constraint> = fitted.iter().map(|(_, w)| Constraint::Length(*w)).collect();
    f.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        area,
    );
    if empty && area.height > 2 {
        let why = if !app.source_state.is_empty() {
            app.source_state.clone()
        } else if app.updates == 0 {
            format!(
                "waiting for the first window ({})",
                secs_text(app.interval.as_secs_f64())
            )
        } else if app.all_rows().is_empty() {
            "nothing did anything in this window".to_owned()
        } else {
            "no row matches (/ changes the filter, g shows all verdicts)".to_owned()
        };
        let msg = Rect {
            y: area.y + 2,
            height: 1,
            ..area
        };
        f.render_widget(Paragraph::new(format!("  {why}")), msg);
    }
    hidden
}

fn aligned(text: String, right: bool) -> Cell<'static> {
    if right {
        Cell::from(Line::from(text).right_aligned())
    } else {
        Cell::from(text)
    }
}

fn draw_footer(f: &mut Frame, app: &App, theme: Theme, area: Rect, hidden: usize) {
    let mut right = String::new();
    if app.log_count > 0 {
        right.push_str(&format!("{} log lines (printed on exit)  ", app.log_count));
    }
    if hidden > 0 && app.screen == Screen::Table {
        right.push_str(&format!("+{hidden} cols (wider terminal)  "));
    }
    if app.visible_len() > 0 {
        right.push_str(&format!(
            "{}/{} ",
            app.selected_index() + 1,
            app.visible_len()
        ));
    }
    let right_w = u16::try_from(right.chars().count())
        .unwrap_or(u16::MAX)
        .min(area.width / 2);
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(1), Constraint::Length(right_w)]).areas(area);
    let left = if app.editing_filter {
        Line::from(vec![
            Span::styled(" filter: ", theme.title()),
            Span::raw(format!(" {}", app.filter)),
            Span::styled("█", theme.bold()),
            Span::styled(
                format!("  Enter keep · Esc clear · {FILTER_FIELDS} · !word"),
                theme.dim(),
            ),
        ])
    } else if let Some(status) = app.status() {
        Line::from(Span::styled(format!(" {status}"), theme.warn()))
    } else {
        let hints = match app.screen {
            Screen::Detail => " Esc back  ↑↓ next row  p pause  ? help  q quit",
            Screen::Table => {
                " Enter detail  / filter  s sort  c group  g gc-heavy  p pause  +/- interval  ? help  q quit"
            }
        };
        Line::from(Span::styled(hints, theme.dim()))
    };
    f.render_widget(Paragraph::new(left), left_area);
    f.render_widget(
        Paragraph::new(Line::from(right).right_aligned()).style(theme.dim()),
        right_area,
    );
}

// ------------------------------------------------------------ overlays

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width.saturating_sub(2)).max(1);
    let h = height.min(area.height.saturating_sub(2)).max(1);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// The help screen's lines.
pub fn help_lines() -> Vec<String> {
    let mut lines = vec!["KEYS".to_owned()];
    for (keys, what) in KEYS {
        lines.push(format!("  {keys:<20} {what}"));
    }
    lines.push(String::new());
    lines.push("FILTER (/)".to_owned());
    for l in FILTER_HELP {
        lines.push(format!("  {l}"));
    }
    lines.push(String::new());
    lines.push("COLUMNS".to_owned());
    for c in columns::ALL {
        let s = c.spec();
        lines.push(format!("  {:<11} {}", s.title, s.help));
    }
    lines.push(String::new());
    lines.push("Rows are the processes that did something in the window; a quiet one".into());
    lines.push("stays 10 s (dimmed). Verdicts: gc-heavy, alloc-churn, steady, idle.".into());
    lines
}

fn draw_help(f: &mut Frame, theme: Theme, area: Rect, scroll: u16) {
    let lines = help_lines();
    let popup = centered(area, 84, lines.len() as u16 + 2);
    let inner_h = popup.height.saturating_sub(2);
    let max_scroll = (lines.len() as u16).saturating_sub(inner_h);
    let scroll = scroll.min(max_scroll);
    let title = if max_scroll > 0 {
        " help: ↑↓ scroll, Esc or ? closes "
    } else {
        " help: Esc or ? closes "
    };
    let text: Vec<Line> = lines
        .into_iter()
        .map(|l| {
            if l.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && l == l.to_uppercase() {
                Line::from(Span::styled(l, theme.bold()))
            } else {
                Line::from(l)
            }
        })
        .collect();
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(text)
            .scroll((scroll, 0))
            .block(Block::default().borders(Borders::ALL).title(title)),
        popup,
    );
}

fn draw_sort_menu(f: &mut Frame, app: &App, theme: Theme, area: Rect, cursor: usize) {
    let choices = app.sort_choices();
    let (sort, desc) = app.sort_state();
    let popup = centered(area, 40, choices.len() as u16 + 2);
    let inner_h = usize::from(popup.height.saturating_sub(2));
    let first = cursor.saturating_sub(inner_h.saturating_sub(1));
    let lines: Vec<Line> = choices
        .iter()
        .enumerate()
        .skip(first)
        .take(inner_h)
        .map(|(i, c)| {
            let mark = if *c == sort {
                if desc { "▼" } else { "▲" }
            } else {
                " "
            };
            let text = format!("{mark} {:<11} {}", c.spec().title, c.spec().help);
            if i == cursor {
                Line::from(Span::styled(text, theme.selected()))
            } else {
                Line::from(text)
            }
        })
        .collect();
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" sort by (Enter; again reverses) "),
        ),
        popup,
    );
}

impl App {
    /// "processes", "containers", "pods", or "workloads" (remote).
    pub fn grouping_label(&self) -> &'static str {
        match (self.source(), self.grouping) {
            (SourceKind::Remote, Grouping::Processes) => "workloads",
            (_, g) => g.name(),
        }
    }
}

#[cfg(test)]
mod tests;
