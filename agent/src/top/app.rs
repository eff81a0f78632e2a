//! The interactive view's state, apart from any terminal: the rows of the
//! latest update, how they are grouped, filtered and sorted, what is
//! selected, which screen is open, and each row's recent history. Keys
//! arrive as [`Action`]s ([`super::input`]), data as [`Rows`]
//! ([`super::rows`]); [`super::ui`] draws whatever this holds.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::{
    columns::{ALL, Column, SourceKind},
    rows::{Entry, RowId, RowKind, Rows, Totals},
};
use crate::gc::VerdictKind;

/// How long a row whose process had no window stays (with zero rates), so
/// the table does not flicker as quiet processes come and go.
pub const QUIET_LINGER_SECONDS: f64 = 10.0;
/// How long an exited process stays, marked `exited`.
pub const EXITED_LINGER_SECONDS: f64 = 2.0;
/// The span the detail view charts.
pub const HISTORY_SECONDS: f64 = 300.0;
/// Points kept per row at most (the span at the shortest interval).
pub const HISTORY_MAX_POINTS: usize = 600;
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

/// One term of the filter: `java`, `verdict:gc-heavy`, `!idle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub field: Option<Field>,
    pub needle: String,
    pub negate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Pid,
    Container,
    Pod,
    Runtime,
    Verdict,
    Node,
}

/// The filter's field names, for the help screen.
pub const FILTER_FIELDS: &str = "name: pid: container: pod: runtime: verdict: node:";

/// Splits a filter into terms: whitespace separates them, all must match.
pub fn parse_filter(text: &str) -> Vec<Term> {
    text.split_whitespace()
        .filter_map(|raw| {
            let (negate, raw) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            let lower = raw.to_lowercase();
            let (field, needle) = match lower.split_once(':') {
                Some((f, v)) => match field_named(f) {
                    Some(field) => (Some(field), v.to_owned()),
                    None => (None, lower.clone()),
                },
                None => (None, lower.clone()),
            };
            (!needle.is_empty()).then_some(Term {
                field,
                needle,
                negate,
            })
        })
        .collect()
}

fn field_named(f: &str) -> Option<Field> {
    Some(match f {
        "name" | "comm" => Field::Name,
        "pid" => Field::Pid,
        "container" | "ctr" | "cgroup" => Field::Container,
        "pod" => Field::Pod,
        "runtime" | "rt" => Field::Runtime,
        "verdict" | "v" => Field::Verdict,
        "node" => Field::Node,
        _ => return None,
    })
}

impl Term {
    pub fn matches(&self, e: &Entry) -> bool {
        let n = self.needle.as_str();
        let verdict = e.verdict.map_or("", VerdictKind::name);
        let hit = match self.field {
            Some(Field::Name) => e.name_lc.contains(n),
            Some(Field::Pid) => e.search.pid.starts_with(n),
            Some(Field::Container) => e.search.container.contains(n),
            Some(Field::Pod) => e.search.pod.contains(n),
            Some(Field::Runtime) => e.runtime.name().starts_with(n),
            Some(Field::Verdict) => verdict.contains(n),
            Some(Field::Node) => e.search.node.contains(n),
            None => {
                e.name_lc.contains(n)
                    || e.search.pid.starts_with(n)
                    || e.search.container.contains(n)
                    || e.search.pod.contains(n)
                    || e.runtime.name() == n
                    || verdict.contains(n)
                    || e.search.node.contains(n)
            }
        };
        hit != self.negate
    }
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

/// A row's recent values, for the detail view's charts.
#[derive(Debug, Default)]
struct Series {
    /// Seconds since [`History::base`], and CPU %, GC %, faults/s, alloc
    /// bytes/s, RSS.
    points: VecDeque<(f32, [f32; 5])>,
}

/// Every row's recent values. Rows get a point when they had a window, so
/// a quiet process costs nothing; a row gone for longer than the span is
/// forgotten.
#[derive(Debug, Default)]
pub struct History {
    base: Option<f64>,
    series: HashMap<RowId, Series>,
}

/// The metrics the detail view charts, in [`Entry::point`] order.
pub const METRICS: [&str; 5] = ["CPU", "GC share", "page faults", "allocation", "RSS"];

impl History {
    fn rel(&mut self, unix: f64) -> f32 {
        let base = *self.base.get_or_insert(unix);
        (unix - base) as f32
    }

    /// Adds a point for each entry that had a window at `unix` seconds.
    pub fn record<'a>(&mut self, entries: impl IntoIterator<Item = &'a Entry>, unix: f64) {
        let t = self.rel(unix);
        for e in entries {
            if e.quiet_for > 0.0 {
                continue;
            }
            self.push(&e.id, t, e.point());
        }
    }

    fn push(&mut self, id: &RowId, t: f32, point: [f32; 5]) {
        let s = match self.series.get_mut(id) {
            Some(s) => s,
            None => self.series.entry(id.clone()).or_default(),
        };
        if s.points.back().is_some_and(|(last, _)| *last >= t) {
            return; // the same window again (a remote workload not yet updated)
        }
        if s.points.len() >= HISTORY_MAX_POINTS {
            s.points.pop_front();
        }
        s.points.push_back((t, point));
    }

    /// Adds one point of one row, at `unix` seconds (remote workloads:
    /// the end of their latest window).
    pub fn record_one(&mut self, id: &RowId, unix: f64, point: [f32; 5]) {
        let t = self.rel(unix);
        self.push(id, t, point);
    }

    /// Merges older points (a remote workload's stored history) in front of
    /// what the watch stream brought.
    pub fn backfill(&mut self, id: &RowId, points: &[(f64, [f32; 5])]) {
        let mut older: VecDeque<(f32, [f32; 5])> = VecDeque::new();
        for (unix, p) in points {
            older.push_back((self.rel(*unix), *p));
        }
        let s = self.series.entry(id.clone()).or_default();
        let first_new = s.points.front().map(|(t, _)| *t);
        older.retain(|(t, _)| first_new.is_none_or(|f| *t < f));
        older.extend(s.points.drain(..));
        while older.len() > HISTORY_MAX_POINTS {
            older.pop_front();
        }
        s.points = older;
    }

    /// Forgets points older than the span before `unix`.
    pub fn prune(&mut self, unix: f64) {
        let cutoff = self.rel(unix) - HISTORY_SECONDS as f32;
        self.series.retain(|_, s| {
            while s.points.front().is_some_and(|(t, _)| *t < cutoff) {
                s.points.pop_front();
            }
            !s.points.is_empty()
        });
    }

    pub fn len(&self, id: &RowId) -> usize {
        self.series.get(id).map_or(0, |s| s.points.len())
    }

    pub fn rows(&self) -> usize {
        self.series.len()
    }

    /// One metric of a row in `buckets` columns ending at `until` (unix
    /// seconds): each bucket the mean of its points, `None` before the
    /// first point. Buckets are at least `min_step` seconds wide (the
    /// interval), so a wide chart never shows gaps between windows. Returns
    /// the values, the seconds each bucket spans, and the latest point's
    /// value.
    pub fn chart(
        &self,
        id: &RowId,
        metric: usize,
        buckets: usize,
        until: f64,
        min_step: f64,
    ) -> Chart {
        let Some(s) = self.series.get(id) else {
            return Chart::default();
        };
        let Some(base) = self.base else {
            return Chart::default();
        };
        let buckets = buckets.max(1);
        let step = (HISTORY_SECONDS / buckets as f64).max(min_step).max(1e-3);
        let end = until - base;
        let start = end - step * buckets as f64;
        let mut sum = vec![0.0f64; buckets];
        let mut n = vec![0u32; buckets];
        let mut first: Option<usize> = None;
        let mut latest = None;
        for (t, p) in &s.points {
            let t = f64::from(*t);
            if t > end + 1e-6 {
                break;
            }
            latest = Some(f64::from(p[metric]));
            if t <= start {
                continue;
            }
            let i = (((t - start) / step).ceil() as usize).clamp(1, buckets) - 1;
            sum[i] += f64::from(p[metric]);
            n[i] += 1;
            first = Some(first.map_or(i, |f: usize| f.min(i)));
        }
        let carry = metric == 4; // RSS: the last value holds until the next
        let mut values = Vec::with_capacity(buckets);
        let mut last = None;
        for i in 0..buckets {
            let v = if n[i] > 0 {
                Some(sum[i] / f64::from(n[i]))
            } else if first.is_some_and(|f| i > f) {
                if carry { last } else { Some(0.0) }
            } else {
                None
            };
            if n[i] > 0 {
                last = v;
            }
            values.push(v);
        }
        Chart {
            values,
            step,
            latest,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chart {
    pub values: Vec<Option<f64>>,
    /// Seconds a bucket spans.
    pub step: f64,
    pub latest: Option<f64>,
}

impl Chart {
    pub fn max(&self) -> f64 {
        self.values.iter().flatten().copied().fold(0.0, f64::max)
    }
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
            ..
        } = rows;
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

    pub fn apply_action(&mut self, action: Action) -> Effect {
        self.dirty = true;
        match action {
            Action::Quit => return Effect::Quit,
            Action::Redraw => return Effect::Redraw,
            Action::Up => self.select(self.selected.saturating_sub(1)),
            Action::Down => self.select(self.selected + 1),
            Action::PageUp => self.select(self.selected.saturating_sub(self.page)),
            Action::PageDown => self.select(self.selected + self.page),
            Action::Home => self.select(0),
            Action::End => self.select(usize::MAX),
            Action::Enter => match self.screen {
                Screen::Table if self.selected().is_some() => self.screen = Screen::Detail,
                Screen::Table => self.say("nothing selected"),
                Screen::Detail => self.screen = Screen::Table,
            },
            Action::Back => match self.overlay {
                Overlay::None => self.screen = Screen::Table,
                _ => self.overlay = Overlay::None,
            },
            Action::Help => {
                self.overlay = match self.overlay {
                    Overlay::Help { .. } => Overlay::None,
                    _ => Overlay::Help { scroll: 0 },
                }
            }
            Action::HelpScroll(d) => {
                if let Overlay::Help { scroll } = &mut self.overlay {
                    *scroll = scroll.saturating_add_signed(d);
                }
            }
            Action::StartFilter => {
                self.editing_filter = true;
                self.screen = Screen::Table;
            }
            Action::FilterChar(c) => {
                self.filter.push(c);
                self.set_filter();
            }
            Action::FilterBackspace => {
                self.filter.pop();
                self.set_filter();
            }
            Action::FilterClearLine => {
                self.filter.clear();
                self.set_filter();
            }
            Action::FilterAccept => self.editing_filter = false,
            Action::FilterCancel => {
                self.editing_filter = false;
                self.filter.clear();
                self.set_filter();
            }
            Action::SortMenu => {
                let cursor = self
                    .sort_choices()
                    .iter()
                    .position(|c| *c == self.sort)
                    .unwrap_or(0);
                self.overlay = Overlay::SortMenu { cursor };
            }
            Action::SortMenuMove(d) => {
                let n = self.sort_choices().len();
                if let Overlay::SortMenu { cursor } = &mut self.overlay {
                    *cursor = (*cursor as isize + isize::from(d)).clamp(0, n as isize - 1) as usize;
                }
            }
            Action::SortMenuAccept => {
                if let Overlay::SortMenu { cursor } = self.overlay {
                    self.overlay = Overlay::None;
                    if let Some(&c) = self.sort_choices().get(cursor) {
                        self.sort_by(c);
                    }
                }
            }
            Action::SortPrev | Action::SortNext => {
                let choices = self.sort_choices();
                let at = choices.iter().position(|c| *c == self.sort).unwrap_or(0);
                let next = if action == Action::SortNext {
                    (at + 1) % choices.len()
                } else {
                    (at + choices.len() - 1) % choices.len()
                };
                self.set_sort(choices[next], choices[next].spec().descending_first);
            }
            Action::SortBy(c) => {
                if self.columns().contains(&c) {
                    self.sort_by(c);
                } else {
                    self.say(format!("no {} column here", c.spec().title));
                }
            }
            Action::InvertSort => {
                let desc = !self.descending;
                self.set_sort(self.sort, desc);
            }
            Action::ToggleGcOnly => {
                self.gc_only = !self.gc_only;
                self.say(if self.gc_only {
                    "only gc-heavy rows"
                } else {
                    "all rows"
                });
                self.rebuild();
            }
            Action::CycleGrouping => self.cycle_grouping(),
            Action::CycleNode => self.cycle_node(),
            Action::TogglePause => {
                self.paused = !self.paused;
                if !self.paused
                    && let Some(rows) = self.pending.take()
                {
                    self.apply(rows);
                }
                self.say(if self.paused {
                    "paused: press p to resume"
                } else {
                    "resumed"
                });
            }
            Action::Slower | Action::Faster => return self.step_interval(action == Action::Slower),
        }
        Effect::None
    }

    /// Sorts by `c`; by the same column again, reverses.
    fn sort_by(&mut self, c: Column) {
        if c == self.sort {
            self.set_sort(c, !self.descending);
        } else {
            self.set_sort(c, c.spec().descending_first);
        }
    }

    fn set_sort(&mut self, c: Column, descending: bool) {
        self.sort = c;
        self.descending = descending;
        self.say(format!(
            "sorted by {} {}",
            c.spec().title,
            if descending {
                "descending"
            } else {
                "ascending"
            }
        ));
        self.rebuild();
    }

    fn set_filter(&mut self) {
        self.terms = parse_filter(&self.filter);
        self.rebuild();
    }

    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    fn cycle_grouping(&mut self) {
        if self.source() == SourceKind::Remote {
            self.say("remote rows are workloads: containers, else processes");
            return;
        }
        self.grouping = match self.grouping {
            Grouping::Processes => Grouping::Containers,
            Grouping::Containers => Grouping::Pods,
            Grouping::Pods => Grouping::Processes,
        };
        // The sort column may not exist for these rows (PID vs PROCS).
        let columns = self.columns();
        if !columns.contains(&self.sort) {
            self.sort = match self.sort {
                Column::Pid => Column::Procs,
                Column::Procs => Column::Pid,
                _ => Column::Cpu,
            };
            if !columns.contains(&self.sort) {
                self.sort = Column::Cpu;
            }
        }
        self.selected = 0;
        self.selected_id = None;
        self.offset = 0;
        let note = match self.grouping {
            Grouping::Containers => "grouped by container (else cgroup)",
            Grouping::Pods => "grouped by pod (else container, else cgroup)",
            Grouping::Processes => "one row per process",
        };
        self.say(note);
        self.rebuild();
    }

    fn cycle_node(&mut self) {
        if self.source() != SourceKind::Remote {
            self.say("n picks a node in remote mode (--collector)");
            return;
        }
        self.node = match &self.node {
            None => self.nodes.first().cloned(),
            Some(cur) => {
                let at = self.nodes.iter().position(|n| n == cur);
                at.and_then(|i| self.nodes.get(i + 1)).cloned()
            }
        };
        let text = match &self.node {
            Some(n) => format!("node {n}"),
            None => "all nodes".to_owned(),
        };
        self.say(text);
        self.rebuild();
    }

    fn step_interval(&mut self, slower: bool) -> Effect {
        let now = self.interval.as_secs_f64();
        let next = if slower {
            INTERVAL_STEPS.iter().copied().find(|&s| s > now + 1e-9)
        } else {
            INTERVAL_STEPS
                .iter()
                .rev()
                .copied()
                .find(|&s| s < now - 1e-9)
        };
        match next {
            Some(s) => {
                self.interval = Duration::from_secs_f64(s);
                self.say(format!("interval {}", secs_text(s)));
                Effect::SetInterval(self.interval)
            }
            None => {
                self.say(format!("interval stays {}", secs_text(now)));
                Effect::None
            }
        }
    }

    /// The columns `<`/`>` would move between, and which is sorted.
    pub fn sort_state(&self) -> (Column, bool) {
        (self.sort, self.descending)
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
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::top::rows::Stacks;

    fn settings(source: SourceKind) -> Settings {
        Settings {
            source,
            label: "test".into(),
            interval: Duration::from_secs(1),
            color: false,
            node: None,
        }
    }

    #[test]
    fn filters_parse_fields_negation_and_bare_words() {
        let t = parse_filter("java  verdict:GC-heavy !idle foo:bar pod:");
        assert_eq!(t.len(), 4, "{t:?}");
        assert_eq!(t[0].field, None);
        assert_eq!(t[1].field, Some(Field::Verdict));
        assert_eq!(t[1].needle, "gc-heavy");
        assert!(t[2].negate);
        assert_eq!(t[3].field, None, "unknown field: the whole term is a word");
        assert_eq!(t[3].needle, "foo:bar");
    }

    #[test]
    fn secs_text_is_short() {
        assert_eq!(secs_text(0.5), "0.5s");
        assert_eq!(secs_text(2.0), "2s");
        assert_eq!(secs_text(60.0), "1m");
    }

    #[test]
    fn chart_buckets_means_and_gaps() {
        let mut h = History::default();
        let id = RowId::Cgroup(Arc::from("/x"));
        for (t, v) in [(100.0, 10.0), (101.0, 20.0), (104.0, 40.0)] {
            h.record_one(&id, t, [v, 0.0, 0.0, 0.0, v]);
        }
        // 5 buckets of at least 1 s ending at 104.
        let c = h.chart(&id, 0, 5, 104.0, 1.0);
        assert_eq!(c.step, HISTORY_SECONDS / 5.0);
        assert_eq!(c.values.len(), 5);
        assert_eq!(c.values[4], Some(70.0 / 3.0));
        assert_eq!(c.latest, Some(40.0));
        let fine = h.chart(&id, 0, 300, 104.0, 1.0);
        assert_eq!(fine.step, 1.0);
        let tail: Vec<Option<f64>> = fine.values[295..].to_vec();
        assert_eq!(
            tail,
            vec![Some(10.0), Some(20.0), Some(0.0), Some(0.0), Some(40.0)]
        );
        // RSS carries its last value over gaps.
        let rss = h.chart(&id, 4, 300, 104.0, 1.0);
        assert_eq!(rss.values[297], Some(20.0));
        assert_eq!(rss.values[294], None, "nothing before the first point");
        // A paused view charts only up to what it shows.
        assert_eq!(h.chart(&id, 0, 300, 101.0, 1.0).latest, Some(20.0));
        h.prune(100.0 + HISTORY_SECONDS + 2.0);
        assert_eq!(h.len(&id), 1);
        h.prune(104.0 + HISTORY_SECONDS + 1.0);
        assert_eq!(h.rows(), 0);
    }

    #[test]
    fn quiet_rows_linger_then_go() {
        let mut app = App::new(settings(SourceKind::Local));
        let e = |pid: u32, exited: bool| {
            let mut e = crate::top::fixtures::entry(pid, "x");
            e.exited = exited;
            e.stacks = Stacks::Off;
            e
        };
        let rows = |list: Vec<Entry>| Rows {
            at: Some(UNIX_EPOCH + Duration::from_secs(1000)),
            seconds: 1.0,
            processes: list,
            ..Default::default()
        };
        app.ingest(rows(vec![e(1, false), e(2, true)]));
        assert_eq!(app.visible_len(), 2);
        app.ingest(rows(vec![]));
        assert_eq!(app.visible_len(), 2, "both linger one window");
        let quiet = app.visible().find(|r| r.pid == Some(1)).unwrap();
        assert_eq!(quiet.cpu_pct, 0.0);
        assert_eq!(quiet.verdict, Some(VerdictKind::Idle));
        app.ingest(rows(vec![]));
        assert_eq!(app.visible_len(), 1, "the exited one is gone after 2 s");
        for _ in 0..8 {
            app.ingest(rows(vec![]));
        }
        assert_eq!(app.visible_len(), 0, "quiet rows go after 10 s");
    }
}
