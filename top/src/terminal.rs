//! The terminal, taken and always given back: raw mode and the alternate
//! screen on entry; restored on quit, on a panic (any thread), on SIGTERM,
//! SIGINT, SIGHUP or SIGQUIT, and when the guard is dropped on any error
//! path. Ctrl-C is a key in raw mode and quits like `q`.
//!
//! While the screen is ours, log lines cannot go to stderr (they would be
//! drawn over the view): [`LogCapture`] keeps them, the view counts them,
//! and they are printed once the terminal is restored.
use std::{
    collections::VecDeque,
    io::{self, BufWriter, Stdout, Write},
    sync::{
        Mutex, MutexGuard, Once, PoisonError,
        atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering},
    },
};

use crossterm::{
    cursor::{Hide, Show},
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use ratatui::{Terminal, backend::CrosstermBackend};

/// True while the alternate screen and raw mode are on.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The signal that asked to quit, 0 if none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Held while a frame is written, and while restoring: a panic on another
/// thread never restores the terminal in the middle of a frame.
static SCREEN: Mutex<()> = Mutex::new(());

pub type Backend = CrosstermBackend<BufWriter<Stdout>>;

/// Owns the terminal; dropping it restores the terminal.
pub struct Screen {
    pub terminal: Terminal<Backend>,
}

impl Screen {
    /// Raw mode, alternate screen, hidden cursor; installs the panic hook
    /// and the signal handlers first, so nothing can leave the terminal
    /// broken.
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        install_signal_handlers();
        watch_for_hangup();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, Hide) {
            restore();
            return Err(e);
        }
        let backend = CrosstermBackend::new(BufWriter::with_capacity(64 * 1024, io::stdout()));
        match Terminal::new(backend) {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    /// Locks the screen for one frame. `None` once the terminal was given
    /// back (a panic on another thread): draw nothing more.
    pub fn frame_lock() -> Option<MutexGuard<'static, ()>> {
        let guard = SCREEN.lock().unwrap_or_else(PoisonError::into_inner);
        active().then_some(guard)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// True while the view owns the terminal.
pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Gives the terminal back: leaves the alternate screen, shows the cursor,
/// leaves raw mode. Safe to call any number of times, from any thread.
pub fn restore() {
    let _guard = SCREEN.try_lock();
    restore_locked();
}

fn restore_locked() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    // Errors are ignored: on SIGHUP there is no terminal left to restore.
    let _ = execute!(out, LeaveAlternateScreen, Show);
    let _ = disable_raw_mode();
    let _ = out.flush();
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if active() {
                // Wait for a frame being written on another thread (never
                // for long); a panic while drawing holds the lock itself.
                for _ in 0..50 {
                    if let Ok(_guard) = SCREEN.try_lock() {
                        restore_locked();
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                restore_locked();
                flush_captured_logs();
            }
            previous(info);
        }));
    });
}

/// How long the terminal may stay hung up (or a quit signal go unheeded)
/// while the view still owns it, before the process exits on its own.
const HANGUP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
const SIGNAL_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the terminal on stdin hung up (its window closed, the SSH
/// session dropped).
fn hung_up() -> bool {
    let mut fd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// A thread that ends the process when the view can no longer end itself:
/// once the terminal hangs up, crossterm's read of it returns nothing,
/// forever, without an error, and the loop never gets to look at the
/// SIGHUP (seen: `agent top` left spinning a core after its tmux pane
/// closed). The kernel detaches the probes when the process exits.
fn watch_for_hangup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("top-hangup".into())
            .spawn(|| {
                let step = std::time::Duration::from_millis(250);
                let mut hung = std::time::Duration::ZERO;
                let mut signalled_for = std::time::Duration::ZERO;
                loop {
                    std::thread::sleep(step);
                    if !active() {
                        hung = std::time::Duration::ZERO;
                        signalled_for = std::time::Duration::ZERO;
                        continue;
                    }
                    hung = if hung_up() { hung + step } else { std::time::Duration::ZERO };
                    if signalled().is_some() {
                        signalled_for += step;
                    }
                    if hung >= HANGUP_GRACE || signalled_for >= SIGNAL_GRACE {
                        restore();
                        let code = signalled().map_or(1, |s| 128 + s);
                        std::process::exit(code);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the terminal watch ({e}): a hung-up terminal may leave agent top running");
        }
    });
}

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
            // SAFETY: the handler only stores to an atomic (async-signal-safe).
            unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        }
    });
}

/// The signal that asked the view to quit, if one did.
pub fn signalled() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

// ------------------------------------------------------------ logs

/// Lines kept while the view runs; the oldest go first.
const MAX_LOG_LINES: usize = 200;
static LOG: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
static LOG_COUNT: AtomicUsize = AtomicUsize::new(0);

/// A `tracing` writer: stderr normally, kept in memory while the view owns
/// the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogCapture;

pub struct LogSink {
    buf: Vec<u8>,
}

impl Write for LogSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        if active() {
            let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
            for line in text.lines().filter(|l| !l.is_empty()) {
                if log.len() == MAX_LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line.to_owned());
                LOG_COUNT.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let _ = io::stderr().write_all(text.as_bytes());
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogSink;

    fn make_writer(&'a self) -> Self::Writer {
        LogSink { buf: Vec::new() }
    }
}

/// Lines captured so far, and the latest.
pub fn captured() -> (usize, Option<String>) {
    let log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    (LOG_COUNT.load(Ordering::Relaxed), log.back().cloned())
}

/// Prints what was captured on stderr (after the terminal is restored).
pub fn flush_captured_logs() {
    let lines: Vec<String> = LOG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .collect();
    let total = LOG_COUNT.swap(0, Ordering::Relaxed);
    let mut err = io::stderr().lock();
    if total > lines.len() {
        let _ = writeln!(
            err,
            "agent top: {} earlier log lines were dropped",
            total - lines.len()
        );
    }
    for l in lines {
        let _ = writeln!(err, "{l}");
    }
}
