//! The interactive view's loop: updates from the source thread, keys from
//! the terminal, a frame whenever something on screen changed. Generic over
//! the backend and the event source, so the benchmark drives the very same
//! loop with scripted keys and a terminal-less backend.
use std::{
    io::{self, IsTerminal as _},
    sync::mpsc::TryRecvError,
    time::{Duration, Instant},
};

use crossterm::event::{self, Event, KeyEventKind};
use ratatui::{Terminal, backend::Backend};

use super::{
    app::{App, Effect, Screen, Settings},
    columns::SourceKind,
    input,
    rows::RowId,
    source::{Request, Source, Update},
    terminal, ui,
};

/// How long the loop waits for a key before looking at the source again.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("agent top needs a terminal (use --batch for scripts and pipes)")]
    NotATerminal,
    #[error("terminal: {0}")]
    Terminal(#[from] io::Error),
    #[error("drawing: {0}")]
    Draw(String),
    #[error("{0}")]
    Source(String),
    #[error("the terminal was restored after a panic")]
    Lost,
}

pub struct InteractiveOptions {
    /// Where the rows come from: this node's probes or a collector (spawned
    /// by the binary), or [`source::synthetic`].
    pub source: Source,
    pub kind: SourceKind,
    /// What the header says the rows are of: the host, the collector.
    pub label: String,
    pub interval: Duration,
    /// Remote: only this node at start.
    pub node: Option<String>,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Quit,
    Signal(i32),
}

/// Something that yields terminal events.
pub trait Events {
    fn next_event(&mut self, timeout: Duration) -> io::Result<Option<Event>>;
}

/// The real terminal's events.
pub struct TerminalEvents;

impl Events for TerminalEvents {
    fn next_event(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        if event::poll(timeout)? {
            Ok(Some(event::read()?))
        } else {
            Ok(None)
        }
    }
}

/// Frame and update times, for the benchmark.
#[derive(Debug, Default)]
pub struct Timings {
    pub frames: Vec<Duration>,
    pub ingests: Vec<Duration>,
}

/// The agent's own CPU and RSS, from `/proc/self/stat`.
pub struct SelfUsage {
    clock_ticks: u64,
    page_size: u64,
    last: Option<(Instant, f64)>,
}

impl Default for SelfUsage {
    fn default() -> Self {
        Self {
            clock_ticks: tally_core::procstat::clock_ticks(),
            page_size: tally_core::procstat::page_size(),
            last: None,
        }
    }
}

impl SelfUsage {
    /// CPU since the previous call (% of one core), and RSS.
    pub fn sample(&mut self) -> (f64, u64) {
        let (cpu, rss) = tally_core::procstat::self_usage(self.clock_ticks, self.page_size);
        let now = Instant::now();
        let pct = match self.last {
            Some((at, before)) => {
                let wall = now.duration_since(at).as_secs_f64();
                if wall > 0.0 {
                    100.0 * (cpu - before) / wall
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, cpu));
        (pct.max(0.0), rss)
    }
}

/// The view needs a terminal on stdin and stdout: checked before a source
/// is spawned, and again here.
pub fn check_terminal() -> Result<(), TopError> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        return Err(TopError::NotATerminal);
    }
    Ok(())
}

/// `agent top` without `--batch`: the full-screen view until `q`, Ctrl-C
/// or a signal. The terminal is restored whatever happens.
pub fn run_interactive(opts: InteractiveOptions) -> Result<(), TopError> {
    check_terminal()?;
    let InteractiveOptions {
        source,
        kind,
        label,
        interval,
        node,
    } = opts;
    let settings = Settings {
        source: kind,
        label,
        interval,
        color: color_wanted(),
        node,
    };
    let mut app = App::new(settings);
    let result = {
        let mut screen = terminal::Screen::enter()?;
        let r = event_loop(
            &mut screen.terminal,
            &mut app,
            &source,
            &mut TerminalEvents,
            true,
            None,
        );
        drop(screen);
        r
    };
    terminal::flush_captured_logs();
    source.stop(Duration::from_secs(3));
    result.map(|_| ())
}

/// Colour unless `NO_COLOR` is set (to anything but an empty string).
pub fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Runs until quit. `real` holds the screen lock around each frame (a
/// panic elsewhere restores the terminal only between frames).
pub fn event_loop<B: Backend>(
    term: &mut Terminal<B>,
    app: &mut App,
    source: &Source,
    events: &mut impl Events,
    real: bool,
    mut timings: Option<&mut Timings>,
) -> Result<Exit, TopError>
where
    B::Error: std::fmt::Display,
{
    let mut usage = SelfUsage::default();
    let mut detail_of: Option<RowId> = None;
    let mut status_until: Option<Instant> = None;
    loop {
        if let Some(sig) = terminal::signalled() {
            return Ok(Exit::Signal(sig));
        }
        loop {
            match source.updates.try_recv() {
                Ok(update) => {
                    let started = Instant::now();
                    let rows = matches!(update, Update::Rows(_));
                    take_update(app, update)?;
                    if rows {
                        if let Some(t) = timings.as_deref_mut() {
                            t.ingests.push(started.elapsed());
                        }
                        let (cpu, rss) = usage.sample();
                        app.agent_cpu_pct = cpu;
                        app.agent_rss = rss;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    return Err(TopError::Source("the data source stopped".into()));
                }
            }
        }
        if real {
            let (count, last) = terminal::captured();
            if count != app.log_count {
                app.log_count = count;
                app.log_last = last;
                app.dirty = true;
            }
        }
        // A status message leaving the footer is a change too.
        if status_until.is_some_and(|t| t <= Instant::now()) {
            app.dirty = true;
            status_until = None;
        }
        follow_detail(app, source, &mut detail_of);
        if app.dirty {
            app.dirty = false;
            let started = Instant::now();
            let _lock = if real {
                match terminal::Screen::frame_lock() {
                    Some(l) => Some(l),
                    None => return Err(TopError::Lost),
                }
            } else {
                None
            };
            term.draw(|f| ui::draw(f, app))
                .map_err(|e| TopError::Draw(e.to_string()))?;
            if let Some(t) = timings.as_deref_mut() {
                t.frames.push(started.elapsed());
            }
            status_until = app.status_expiry().filter(|t| *t > Instant::now());
        }
        let wait = match status_until {
            Some(t) => POLL.min(t.saturating_duration_since(Instant::now())),
            None => POLL,
        };
        let mut next = events.next_event(wait)?;
        // Take every key already typed before drawing again (a held key
        // repeats faster than frames need to be drawn).
        while let Some(ev) = next {
            if let Some(exit) = take_event(term, app, source, ev)? {
                return Ok(exit);
            }
            next = events.next_event(Duration::ZERO)?;
        }
    }
}

fn take_update(app: &mut App, update: Update) -> Result<(), TopError> {
    match update {
        Update::Rows(rows) => app.ingest(rows),
        Update::Points(points) => {
            for (id, unix, p) in points {
                app.record_remote_point(&id, unix, p);
            }
        }
        Update::History(id, points) => app.backfill(&id, &points),
        Update::State(s) => {
            app.source_state = s;
            app.dirty = true;
        }
        Update::Failed(e) => return Err(TopError::Source(e)),
    }
    Ok(())
}

fn take_event<B: Backend>(
    term: &mut Terminal<B>,
    app: &mut App,
    source: &Source,
    ev: Event,
) -> Result<Option<Exit>, TopError>
where
    B::Error: std::fmt::Display,
{
    match ev {
        Event::Key(key) if key.kind != KeyEventKind::Release => {
            let Some(action) = input::action(app, key) else {
                return Ok(None);
            };
            match app.apply_action(action) {
                Effect::Quit => return Ok(Some(Exit::Quit)),
                Effect::SetInterval(d) => source.control.set_interval(d),
                Effect::Redraw => {
                    term.clear().map_err(|e| TopError::Draw(e.to_string()))?;
                }
                Effect::None => {}
            }
        }
        Event::Resize(..) => app.dirty = true,
        _ => {}
    }
    Ok(None)
}

/// When the detail view shows a new row: ask for its stacks (local) or its
/// history (remote).
fn follow_detail(app: &App, source: &Source, detail_of: &mut Option<RowId>) {
    if app.screen != Screen::Detail {
        *detail_of = None;
        return;
    }
    let Some(e) = app.detail() else { return };
    if detail_of.as_ref() == Some(&e.id) {
        return;
    }
    *detail_of = Some(e.id.clone());
    let request = match app.source() {
        SourceKind::Local => Request::Profile(e.pids.clone()),
        SourceKind::Remote => Request::History(e.id.clone()),
    };
    let _ = source.requests.send(request);
}
