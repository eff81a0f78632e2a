//! The measurement behind `cargo xtask bench top` (hidden flags of `agent
//! top`): the real event loop, fed by synthetic processes at the interval,
//! drawing through the crossterm backend into `/dev/null` (every escape
//! sequence a terminal would get is produced and written), first idle for
//! a while (one frame per update: the CPU an open `top` costs), then with
//! scripted keys (scrolling thousands of rows, the detail view, a filter:
//! one frame per key). Prints one JSON object per terminal size.
use std::{
    collections::{HashSet, VecDeque},
    fs::File,
    io::{self, BufWriter},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, TerminalOptions, Viewport, backend::CrosstermBackend, layout::Rect};
use serde::Serialize;

use super::{
    app::{App, Settings},
    columns::SourceKind,
    live::{Events, Exit, Timings, TopError, event_loop},
    rows,
    source::{Request, Source, Update},
    synthetic::Synthetic,
};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start the synthetic source: {0}")]
    Source(io::Error),
    #[error("cannot open /dev/null: {0}")]
    DevNull(io::Error),
    #[error("the terminal backend: {0}")]
    Backend(io::Error),
    #[error("the view's loop: {0}")]
    Loop(#[from] TopError),
    #[error("the loop ended with {0:?} instead of the scripted quit")]
    Ended(Exit),
    #[error("cannot print the result: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub processes: usize,
    /// Length of the idle phase.
    pub seconds: f64,
    pub interval: Duration,
    pub sizes: Vec<(u16, u16)>,
}

#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub processes: usize,
    pub width: u16,
    pub height: u16,
    pub interval_seconds: f64,
    pub idle_seconds: f64,
    /// Frames drawn while idle (one per update), ms.
    pub refresh_frame_ms: Stats,
    /// Taking an update (rows of every grouping into the state, filter,
    /// sort, history), ms.
    pub update_ms: Stats,
    /// Frames drawn for keys (scrolling, detail view, filter), ms.
    pub key_frame_ms: Stats,
    /// CPU of `top` itself while idle, % of one core: the view's thread
    /// plus building rows from each tick on the source thread. The
    /// synthetic generator is not counted (locally that is the collector).
    pub top_cpu_percent: f64,
    pub view_thread_cpu_percent: f64,
    pub rows_cpu_percent: f64,
    pub generator_cpu_percent: f64,
    /// Peak RSS of the whole process, KiB.
    pub peak_rss_kib: u64,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub count: usize,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

fn stats(d: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if ms.is_empty() {
            0.0
        } else {
            ms[((ms.len() - 1) as f64 * q).round() as usize]
        }
    };
    Stats {
        count: ms.len(),
        median: at(0.5),
        p99: at(0.99),
        max: at(1.0),
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer; the clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Keys as if typed one at a time: one per poll that waits, none for a
/// poll that does not (so each key gets its own frame). Empty: idle until
/// `until`, then `q`.
struct Script {
    keys: VecDeque<KeyCode>,
    until: Option<Instant>,
}

impl Events for Script {
    fn next_event(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        if timeout.is_zero() {
            return Ok(None);
        }
        if let Some(until) = self.until {
            let now = Instant::now();
            if now < until {
                std::thread::sleep(timeout.min(until - now));
                return Ok(None);
            }
            return Ok(Some(key(KeyCode::Char('q'))));
        }
        Ok(Some(key(self
            .keys
            .pop_front()
            .unwrap_or(KeyCode::Char('q')))))
    }
}

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

/// The keys of the interactive phase.
fn key_script() -> VecDeque<KeyCode> {
    let mut k = VecDeque::new();
    k.extend(std::iter::repeat_n(KeyCode::Down, 300));
    k.extend(std::iter::repeat_n(KeyCode::PageDown, 100));
    k.push_back(KeyCode::End);
    k.extend(std::iter::repeat_n(KeyCode::PageUp, 100));
    k.push_back(KeyCode::Home);
    for _ in 0..20 {
        k.push_back(KeyCode::Enter); // detail view
        k.extend(std::iter::repeat_n(KeyCode::Down, 5)); // next rows' details
        k.push_back(KeyCode::Enter); // back
    }
    for c in ['>', '>', '<', 'I', 'c', 'c', 'c', 'g', 'g'] {
        k.push_back(KeyCode::Char(c));
    }
    k.push_back(KeyCode::Char('/'));
    for c in "java".chars() {
        k.push_back(KeyCode::Char(c));
    }
    k.push_back(KeyCode::Enter);
    k.extend(std::iter::repeat_n(KeyCode::Down, 50));
    k
}

/// CPU time of the source thread, split.
#[derive(Default)]
struct SourceCpu {
    generator_ns: AtomicU64,
    rows_ns: AtomicU64,
}

fn bench_source(processes: usize, interval: Duration, cpu: Arc<SourceCpu>) -> io::Result<Source> {
    Source::spawn("top-bench", interval, move |control, tx, rx| {
        let mut data = Synthetic::new(processes, 0x000b_e7c4);
        let mut profiled = HashSet::new();
        let mut last = Instant::now();
        let (pricing, node) = super::source::synthetic_node();
        loop {
            while Instant::now() < last + control.interval() {
                if control.stopping() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
                for req in rx.try_iter() {
                    if let Request::Profile(p) = req {
                        profiled.extend(p);
                    }
                }
            }
            let seconds = last.elapsed().as_secs_f64();
            last = Instant::now();
            let t0 = thread_cpu();
            let tick = data.tick(seconds);
            let stacks = data.stacks(&profiled);
            let t1 = thread_cpu();
            let mut rows = rows::local_rows(&tick, Some(&stacks), super::synthetic::CPUS);
            super::source::price_node(&mut rows, &pricing, &node);
            drop(tick);
            let t2 = thread_cpu();
            cpu.generator_ns
                .fetch_add((t1 - t0).as_nanos() as u64, Ordering::Relaxed);
            cpu.rows_ns
                .fetch_add((t2 - t1).as_nanos() as u64, Ordering::Relaxed);
            if tx.send(Update::Rows(rows)).is_err() {
                return;
            }
        }
    })
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// One size: idle phase, then keys.
pub fn run_one(opts: &BenchOptions, width: u16, height: u16) -> Result<BenchResult, BenchError> {
    let cpu = Arc::new(SourceCpu::default());
    let source =
        bench_source(opts.processes, opts.interval, cpu.clone()).map_err(BenchError::Source)?;
    let devnull = File::create("/dev/null").map_err(BenchError::DevNull)?;
    let backend = CrosstermBackend::new(BufWriter::with_capacity(64 * 1024, devnull));
    let mut term = Terminal::with_options(
        backend,
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, width, height)),
        },
    )
    .map_err(BenchError::Backend)?;
    let mut app = App::new(Settings {
        source: SourceKind::Local,
        label: "bench".into(),
        interval: opts.interval,
        color: true,
        node: None,
    });
    // Idle: what an open `top` costs.
    let mut idle = Timings::default();
    let started = Instant::now();
    let (cpu0, gen0, rows0) = (
        thread_cpu(),
        cpu.generator_ns.load(Ordering::Relaxed),
        cpu.rows_ns.load(Ordering::Relaxed),
    );
    let mut script = Script {
        keys: VecDeque::new(),
        until: Some(started + Duration::from_secs_f64(opts.seconds)),
    };
    let exit = event_loop(
        &mut term,
        &mut app,
        &source,
        &mut script,
        false,
        Some(&mut idle),
    )?;
    if exit != Exit::Quit {
        return Err(BenchError::Ended(exit));
    }
    let wall = started.elapsed().as_secs_f64();
    let view = (thread_cpu() - cpu0).as_secs_f64();
    let gen_s = (cpu.generator_ns.load(Ordering::Relaxed) - gen0) as f64 / 1e9;
    let rows_s = (cpu.rows_ns.load(Ordering::Relaxed) - rows0) as f64 / 1e9;
    // Keys: one frame each.
    let mut keys = Timings::default();
    let mut script = Script {
        keys: key_script(),
        until: None,
    };
    event_loop(
        &mut term,
        &mut app,
        &source,
        &mut script,
        false,
        Some(&mut keys),
    )?;
    source.stop(Duration::from_secs(2));
    let pct = |s: f64| 100.0 * s / wall;
    Ok(BenchResult {
        processes: opts.processes,
        width,
        height,
        interval_seconds: opts.interval.as_secs_f64(),
        idle_seconds: wall,
        refresh_frame_ms: stats(&idle.frames),
        update_ms: stats(&idle.ingests),
        key_frame_ms: stats(&keys.frames),
        top_cpu_percent: pct(view + rows_s),
        view_thread_cpu_percent: pct(view),
        rows_cpu_percent: pct(rows_s),
        generator_cpu_percent: pct(gen_s),
        peak_rss_kib: peak_rss_kib(),
    })
}

/// Every size, one JSON line each on stdout.
pub fn run(opts: &BenchOptions) -> Result<(), BenchError> {
    for &(w, h) in &opts.sizes {
        let r = run_one(opts, w, h)?;
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
