//! `agent top`. Batch mode for now (`--batch`, like `top -b`): after each
//! interval, every process that did something in it. The collection state
//! (`collect::Collector`) is apart from the rendering (`batch`), so the
//! interactive view can reuse it.
pub mod batch;

use std::{
    collections::HashSet,
    io,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use agent_common::drop_kind;

use crate::{
    collect::{CollectError, Collector, DROP_NAMES, Tick},
    probes::LoadOptions,
};

/// How `top --batch` runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub interval: Duration,
    /// Windows to print; `None` runs until interrupted.
    pub iterations: Option<u64>,
    pub json: bool,
    /// Only these processes, when not empty.
    pub pids: HashSet<u32>,
}

/// How often the event ring buffer is drained between ticks.
const EVENT_POLL: Duration = Duration::from_millis(100);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Stops the loop at the next poll on SIGINT or SIGTERM, so the current
/// window is never cut in half on the way out.
fn install_stop_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Runs batch mode until `iterations` windows are out or a signal arrives.
pub fn run_batch(opts: &BatchOptions, load: &LoadOptions) -> Result<(), CollectError> {
    install_stop_handlers();
    let mut collector = Collector::start(load)?;
    for missing in &collector.probes().missing {
        tracing::warn!("{}", missing.warning());
    }
    let attached = crate::probes::HOOKS.len() - collector.probes().missing.len();
    tracing::info!(
        "probes attached ({attached} of {} hooks); first window in {:?}",
        crate::probes::HOOKS.len(),
        opts.interval
    );
    let mut stdout = io::stdout().lock();
    let mut printed = 0;
    let mut next = Instant::now() + opts.interval;
    while opts.iterations.is_none_or(|n| printed < n) {
        while Instant::now() < next {
            if STOP.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(EVENT_POLL.min(next.saturating_duration_since(Instant::now())));
            collector.poll_events();
        }
        next += opts.interval;
        let tick = collector.tick()?;
        warn_about_losses(&tick);
        if write_tick(&mut stdout, tick, opts).is_err() {
            return Ok(()); // stdout closed (`| head`): stop quietly
        }
        printed += 1;
    }
    Ok(())
}

fn write_tick(out: &mut impl io::Write, tick: Tick, opts: &BatchOptions) -> io::Result<()> {
    let mut windows = tick.windows;
    if !opts.pids.is_empty() {
        windows.retain(|w| opts.pids.contains(&w.key.tgid));
    }
    batch::sort_windows(&mut windows);
    if opts.json {
        for line in batch::json_lines(&windows, tick.at) {
            writeln!(out, "{line}")?;
        }
    } else {
        writeln!(
            out,
            "{}",
            batch::table(&windows, tick.at, tick.seconds, tick.new_drops.iter().sum())
        )?;
    }
    out.flush()
}

fn warn_about_losses(tick: &Tick) {
    for (kind, &n) in tick.new_drops.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let hint = match kind as u32 {
            drop_kind::THREAD_MAP_FULL => " (raise --max-threads)",
            drop_kind::PROC_MAP_FULL => " (raise --max-processes)",
            _ => "",
        };
        tracing::warn!(
            kind = DROP_NAMES[kind],
            lost = n,
            "eBPF {}: {n} updates lost in this window{hint}",
            DROP_NAMES[kind]
        );
    }
    if tick.swept_records > 0 {
        tracing::warn!(
            records = tick.swept_records,
            "{} processes exited without an exit event; their totals were read from the map",
            tick.swept_records
        );
    }
}
