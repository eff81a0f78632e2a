//! The collection loop shared by `agent top --batch` and `agent run`: drain
//! events every 100 ms, end a window every interval, stop cleanly on SIGINT
//! or SIGTERM (never in the middle of a window).
use std::{
    ops::ControlFlow,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use agent_common::drop_kind;

use super::{CollectError, DROP_NAMES, Sampler, Tick};

/// How often the event ring buffer is drained between ticks.
const EVENT_POLL: Duration = Duration::from_millis(100);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_stop_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// True once SIGINT or SIGTERM arrived.
pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Logs what the programs could not attach, and that collection started.
pub fn announce(sampler: &Sampler, interval: Duration) {
    for missing in &sampler.probes().missing {
        tracing::warn!("{}", missing.warning());
    }
    let hooks = crate::probes::HOOKS.len();
    let attached = hooks - sampler.probes().missing.len();
    tracing::info!("probes attached ({attached} of {hooks} hooks); first window in {interval:?}");
}

/// Runs until `on_tick` says stop, or a signal arrives; then logs the
/// programs' run statistics (see `Probes::log_program_stats`).
pub fn run(
    sampler: &mut Sampler,
    interval: Duration,
    on_tick: impl FnMut(Tick) -> ControlFlow<()>,
) -> Result<(), CollectError> {
    let result = run_until_stopped(sampler, interval, on_tick);
    if result.is_ok() {
        sampler.probes().log_program_stats();
    }
    result
}

fn run_until_stopped(
    sampler: &mut Sampler,
    interval: Duration,
    mut on_tick: impl FnMut(Tick) -> ControlFlow<()>,
) -> Result<(), CollectError> {
    install_stop_handlers();
    let mut next = Instant::now() + interval;
    loop {
        while Instant::now() < next {
            if stopping() {
                return Ok(());
            }
            std::thread::sleep(EVENT_POLL.min(next.saturating_duration_since(Instant::now())));
            sampler.poll_events();
        }
        next += interval;
        // A window that took longer than the interval (a stalled machine)
        // is followed by one normal window, not a burst of short ones.
        if next < Instant::now() {
            next = Instant::now() + interval;
        }
        let tick = sampler.tick()?;
        warn_about_losses(&tick);
        if on_tick(tick).is_break() {
            return Ok(());
        }
    }
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
            "{} map entries outlived their process's exit event; finalized from the map",
            tick.swept_records
        );
    }
}
