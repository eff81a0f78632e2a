//! The interactive view's state, apart from any terminal: the rows of the
//! latest update, how they are grouped, filtered and sorted, what is
//! selected, which screen is open, and each row's recent history. Keys
//! arrive as [`Action`]s ([`super::input`]), data as [`Rows`]
//! ([`super::rows`]); [`super::ui`] draws whatever this holds.
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::{
    columns::{ALL, Column, SourceKind},
    filter::Term,
    history::History,
    rows::{Entry, RowId, RowKind, Rows, Totals},
};
use tally_core::gc::VerdictKind;

mod keys;

/// How long a row whose process had no window stays (with zero rates), so
/// the table does not flicker as quiet processes come and go.
pub const QUIET_LINGER_SECONDS: f64 = 10.0;
/// How long an exited process stays, marked `exited`.
pub const EXITED_LINGER_SECONDS: f64 = 2.0;
/// The intervals `+` and `-` step through, seconds.
pub const INTERVAL_STEPS: [f64; 10] = [0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0];
/// How long a status message stays in the footer.
const STATUS_SECONDS: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Processes,
    Containers,
    Pods,
}

impl Grouping {
    fn index(self) -> usize {
        match self {
            Grouping::Processes => 0,
            Grouping::Containers => 1,
            Grouping::Pods => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Grouping::Processes => "processes",
            Grouping::Containers => "containers",
            Grouping::Pods => "pods",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Table,
    Detail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help { scroll: u16 },
    SortMenu { cursor: usize },
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Enter: open the detail view (or close it).
    Enter,
    /// Esc/Backspace in the detail view, Esc in menus.
    Back,
    Help,
    HelpScroll(i16),
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    FilterClearLine,
    FilterAccept,
    FilterCancel,
    SortMenu,
    SortMenuMove(i16),
    SortMenuAccept,
    SortPrev,
    SortNext,
    SortBy(Column),
    InvertSort,
    ToggleGcOnly,
    CycleGrouping,
    CycleNode,
    TogglePause,
    Slower,
    Faster,
    Redraw,
}

/// What the event loop must do after an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    Quit,
    /// Tell the source the new interval.
    SetInterval(Duration),
    /// Clear and redraw the whole screen.
    Redraw,
}

/// Fixed for the whole run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: SourceKind,
    /// "local", the collector's URL, "synthetic".
    pub label: String,
    pub interval: Duration,
    /// False with `NO_COLOR` set.
    pub color: bool,
    /// Remote: only workloads on this node, at start.
    pub node: Option<String>,
}

pub struct App {
    pub settings: Settings,
    pub interval: Duration,
    pub grouping: Grouping,
    pub sort: Column,
    pub descending: bool,
    /// The filter as typed, and its terms.
    pub filter: String,
    terms: Vec<Term>,
    pub editing_filter: bool,
    pub gc_only: bool,
    pub paused: bool,
    /// Remote: only workloads on this node.
    pub node: Option<String>,
    pub screen: Screen,
    pub overlay: Overlay,
    /// Rows per grouping.
    entries: [Vec<Entry>; 3],
    /// Indices into the current grouping's entries: filtered, sorted.
    view: Vec<usize>,
    selected: usize,
    selected_id: Option<RowId>,
    /// First row on screen, and how many fit (set by the renderer).
    offset: usize,
    page: usize,
    totals: Totals,
    /// End of the window on screen, and its length.
    pub at: Option<SystemTime>,
    /// What the node is and costs, from the source (local).
    pub node_label: Option<String>,
    pub seconds: f64,
    /// Updates that arrived while paused: the latest one.
    pending: Option<Rows>,
    pub history: History,
    status: Option<(String, Instant)>,
    /// How the source is doing: "loading probes", "connected", an error.
    pub source_state: String,
    /// The agent's own CPU (% of one core) and RSS.
    pub agent_cpu_pct: f64,
    pub agent_rss: u64,
    /// Log lines captured while the screen is ours: count and latest.
    pub log_count: usize,
    pub log_last: Option<String>,
    /// Nodes seen (remote), for `n`.
    nodes: Vec<String>,
    /// Set when something on screen changed.
    pub dirty: bool,
    pub updates: u64,
}

impl App {
    pub fn new(settings: Settings) -> Self {
        let interval = settings.interval;
        let node = settings.node.clone();
        Self {
            settings,
            interval,
            grouping: Grouping::Processes,
            sort: Column::Cpu,
            descending: true,
            filter: String::new(),
            terms: Vec::new(),
            editing_filter: false,
            gc_only: false,
            paused: false,
            node,
            screen: Screen::Table,
            overlay: Overlay::None,
            entries: [Vec::new(), Vec::new(), Vec::new()],
            view: Vec::new(),
            selected: 0,
            selected_id: None,
            offset: 0,
            page: 20,
            totals: Totals::default(),
            at: None,
            node_label: None,
            seconds: 0.0,
            pending: None,
            history: History::default(),
            status: None,
            source_state: String::new(),
            agent_cpu_pct: 0.0,
            agent_rss: 0,
            log_count: 0,
            log_last: None,
            nodes: Vec::new(),
            dirty: true,
            updates: 0,
        }
    }

    pub fn source(&self) -> SourceKind {
        self.settings.source
    }

    /// The kind of rows on screen.
    pub fn row_kind(&self) -> RowKind {
        match self.grouping {
            Grouping::Processes => RowKind::Process,
            _ => RowKind::Group,
        }
    }

    /// The columns these rows have, in display order.
    pub fn columns(&self) -> Vec<Column> {
        let (source, kind) = (self.source(), self.row_kind());
        ALL.into_iter()
            .filter(|c| c.available(source, kind))
            .collect()
    }

    // ------------------------------------------------------------ data

    /// Takes an update. While paused it is kept (and charted) but the
    /// table stays as it is.
    pub fn ingest(&mut self, rows: Rows) {
        self.updates += 1;
        let unix = rows.at.map_or(0.0, unix_seconds);
        if self.source() == SourceKind::Local {
            for list in [&rows.processes, &rows.containers, &rows.pods] {
                self.history.record(list, unix);
            }
        } else {
            // Workloads' points come from the collector (`Points`); pods
            // are charted from what this view has seen.
            self.history.record(&rows.pods, unix);
        }
        self.history.prune(unix);
        if self.paused {
            self.pending = Some(rows);
        } else {
            self.apply(rows);
        }
        self.dirty = true;
    }

    /// Remote: one workload's point, at the end of its window.
    pub fn record_remote_point(&mut self, id: &RowId, unix: f64, point: [f32; 5]) {
        self.history.record_one(id, unix, point);
    }

    /// Remote: a workload's stored history arrived.
    pub fn backfill(&mut self, id: &RowId, points: &[(f64, [f32; 5])]) {
        self.history.backfill(id, points);
        self.dirty = true;
    }

    fn apply(&mut self, rows: Rows) {
        let seconds = rows.seconds;
        let linger = self.source() == SourceKind::Local;
        let Rows {
            at,
            processes,
            containers,
            pods,
            totals,
            node_label,
            ..
        } = rows;
        self.node_label = node_label;
        for (i, new) in [processes, containers, pods].into_iter().enumerate() {
            let old = std::mem::take(&mut self.entries[i]);
            self.entries[i] = merge(old, new, seconds, linger);
        }
        if self.source() == SourceKind::Remote {
            let mut nodes: Vec<String> = self.entries[0]
                .iter()
                .flat_map(|e| e.node.split(',').map(str::to_owned))
                .filter(|n| !n.is_empty())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            nodes.sort();
            self.nodes = nodes;
        }
        self.totals = totals;
        self.at = at;
        self.seconds = seconds;
        self.rebuild();
    }

    /// Node totals for the header; remote with a node chosen: that node's.
    pub fn totals(&self) -> Totals {
        match (&self.node, self.source()) {
            (Some(node), SourceKind::Remote) => {
                let on: Vec<&Entry> = self.entries[0]
                    .iter()
                    .filter(|e| e.node.split(',').any(|n| n == node))
                    .collect();
                Totals {
                    cpu_cores: on.iter().map(|e| e.cpu_pct).sum::<f64>() / 100.0,
                    cpus: 0,
                    faults_ps: on.iter().map(|e| e.faults_ps).sum(),
                    alloc_bps: on.iter().map(|e| e.alloc_bps).sum(),
                    gc_heavy: on
                        .iter()
                        .filter(|e| e.verdict == Some(VerdictKind::GcHeavy))
                        .count(),
                    active: on.len(),
                    lost: 0,
                    cost_month: {
                        let priced: Vec<f64> = on.iter().filter_map(|e| e.cost_month).collect();
                        (!priced.is_empty()).then(|| priced.iter().sum())
                    },
                }
            }
            _ => self.totals.clone(),
        }
    }

    /// Entries of the current grouping (all, unfiltered).
    pub fn all_rows(&self) -> &[Entry] {
        &self.entries[self.grouping.index()]
    }

    /// Rows shown, in order.
    pub fn visible(&self) -> impl ExactSizeIterator<Item = &Entry> + '_ {
        let all = self.all_rows();
        self.view.iter().map(move |&i| &all[i])
    }

    pub fn visible_len(&self) -> usize {
        self.view.len()
    }

    pub fn row(&self, index: usize) -> Option<&Entry> {
        self.view.get(index).map(|&i| &self.all_rows()[i])
    }

    pub fn selected_index(&self) -> usize {
        self.selected
    }

    pub fn selected(&self) -> Option<&Entry> {
        self.row(self.selected)
    }

    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Called by the renderer with the rows that fit: keeps the selection
    /// on screen and returns the first row to draw.
    pub fn set_page(&mut self, rows: usize) -> usize {
        self.page = rows.max(1);
        let len = self.view.len();
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + self.page {
            self.offset = self.selected + 1 - self.page;
        }
        self.offset = self.offset.min(len.saturating_sub(self.page));
        self.offset
    }

    /// Re-filters and re-sorts, keeping the selected row selected.
    fn rebuild(&mut self) {
        let all = &self.entries[self.grouping.index()];
        let node = match self.source() {
            SourceKind::Remote => self.node.as_deref(),
            SourceKind::Local => None,
        };
        let mut view: Vec<usize> = (0..all.len())
            .filter(|&i| {
                let e = &all[i];
                (!self.gc_only || e.verdict == Some(VerdictKind::GcHeavy))
                    && node.is_none_or(|n| e.node.split(',').any(|x| x == n))
                    && self.terms.iter().all(|t| t.matches(e))
            })
            .collect();
        let (col, desc) = (self.sort, self.descending);
        view.sort_by(|&a, &b| {
            let (a, b) = (&all[a], &all[b]);
            let o = col.compare(a, b);
            let o = if desc { o.reverse() } else { o };
            o.then_with(|| a.id.cmp(&b.id))
        });
        self.view = view;
        // At the top of the table the selection stays on the first row (you
        // watch the busiest); moved down, or in the detail view, it follows
        // its process as the rows re-sort.
        let at_top = self.selected == 0 && self.screen == Screen::Table;
        let found = self
            .selected_id
            .as_ref()
            .filter(|_| !at_top)
            .and_then(|id| self.view.iter().position(|&i| &all[i].id == id));
        match found {
            Some(i) => self.selected = i,
            None => {
                self.selected = self.selected.min(self.view.len().saturating_sub(1));
                self.selected_id = self.row(self.selected).map(|e| e.id.clone());
            }
        }
        self.dirty = true;
    }

    fn select(&mut self, index: usize) {
        self.selected = index.min(self.view.len().saturating_sub(1));
        self.selected_id = self.row(self.selected).map(|e| e.id.clone());
        self.dirty = true;
    }

    /// The row the detail view shows: the selected one.
    pub fn detail(&self) -> Option<&Entry> {
        (self.screen == Screen::Detail)
            .then(|| self.selected())
            .flatten()
    }

    // ------------------------------------------------------------ keys

    pub fn status(&self) -> Option<&str> {
        self.status
            .as_ref()
            .filter(|(_, at)| at.elapsed() < Duration::from_secs(STATUS_SECONDS))
            .map(|(s, _)| s.as_str())
    }

    /// True while a status message is on screen (the loop redraws when it
    /// expires).
    pub fn status_expiry(&self) -> Option<Instant> {
        self.status
            .as_ref()
            .map(|(_, at)| *at + Duration::from_secs(STATUS_SECONDS))
    }

    pub fn say(&mut self, text: impl Into<String>) {
        self.status = Some((text.into(), Instant::now()));
        self.dirty = true;
    }

    /// The columns the sort menu offers (those of these rows).
    pub fn sort_choices(&self) -> Vec<Column> {
        self.columns()
    }
}

/// `0.5s`, `2s`, `1m`.
pub fn secs_text(s: f64) -> String {
    if s >= 60.0 && (s % 60.0).abs() < 1e-9 {
        format!("{}m", s / 60.0)
    } else if (s - s.round()).abs() < 1e-9 {
        format!("{s:.0}s")
    } else {
        format!("{s}s")
    }
}

pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The new rows, plus the old ones that had no window this time and may
/// linger; a group keeps the name it was first shown with.
fn merge(old: Vec<Entry>, mut new: Vec<Entry>, seconds: f64, linger: bool) -> Vec<Entry> {
    if old.is_empty() {
        return new;
    }
    let mut by_id: HashMap<RowId, Entry> = old.into_iter().map(|e| (e.id.clone(), e)).collect();
    for e in &mut new {
        if let Some(o) = by_id.remove(&e.id)
            && e.kind == RowKind::Group
        {
            e.name = o.name;
            e.name_lc = o.name_lc;
        }
    }
    if linger {
        for o in by_id.into_values() {
            let q = o.quiet(seconds);
            let limit = if q.exited {
                EXITED_LINGER_SECONDS
            } else {
                QUIET_LINGER_SECONDS
            };
            if q.quiet_for < limit {
                new.push(q);
            }
        }
    }
    new
}

#[cfg(test)]
mod tests;
