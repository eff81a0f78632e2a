//! The agent's side of `Ingest.Stream`: a [`Streamer`] takes each interval's
//! `NodeReport` without ever blocking the collection loop, and a task on a
//! thread of its own streams them to the collector in sequence order.
//!
//! - Every report stays in a bounded buffer until the collector acknowledges
//!   it (`last_stored_sequence`: stored durably); when the buffer is full the
//!   oldest is dropped and counted ([`Streamer::dropped_reports`]).
//! - A connection that fails (collector down, restarting, unreachable) is
//!   retried with exponential backoff, capped, with jitter so that a fleet of
//!   agents does not reconnect in lockstep; the new connection resends every
//!   unacknowledged report, oldest first. The collector acks a report it
//!   already stored without storing it again.
//! - The agent instance id is random per process start: with the sequence
//!   it names a report uniquely.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use tally_node::stream::{Streamer, StreamerConfig};
//! # fn reports() -> Vec<tally_proto::NodeReport> { Vec::new() }
//! let streamer = Streamer::start(StreamerConfig::new("http://collector:4317"))?;
//! for report in reports() {
//!     // Sets sequence, agent instance and dropped_reports; never blocks.
//!     streamer.push(report);
//! }
//! // On the way out, give the collector a moment to take the rest.
//! streamer.flush(Duration::from_secs(5));
//! # Ok::<(), tally_node::stream::StreamError>(())
//! ```
mod buffer;

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use prost::Message as _;
use tally_proto as pb;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, transport::Endpoint};

pub use buffer::ReportBuffer;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot start the streaming thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Transport(#[from] tally_transport::TransportError),
}

/// How a [`Streamer`] connects and how much it keeps.
#[derive(Debug, Clone)]
pub struct StreamerConfig {
    /// `http://host:port`; `host:port` means http.
    pub collector: String,
    /// Unacknowledged reports kept; past it the oldest are dropped.
    pub buffer_reports: usize,
    /// And at most this many bytes of them (encoded).
    pub buffer_bytes: usize,
    /// First retry delay after a failure; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
    /// TLS and credentials.
    pub security: tally_transport::ClientSecurity,
}

impl StreamerConfig {
    pub fn new(collector: impl Into<String>) -> Self {
        Self {
            collector: collector.into(),
            // An hour of 1 s windows.
            buffer_reports: 3600,
            buffer_bytes: 256 << 20,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            security: tally_transport::ClientSecurity::default(),
        }
    }
}

/// Checks a collector URL and makes the endpoint for it, without client
/// credentials (see [`tally_transport::ClientSecurity::endpoint`]).
pub fn collector_endpoint(url: &str) -> Result<Endpoint, StreamError> {
    Ok(tally_transport::ClientSecurity::default().endpoint(url)?)
}

/// What the streaming task and the collection loop share.
struct Shared {
    buffer: Mutex<ReportBuffer>,
    next_sequence: AtomicU64,
    acked: AtomicU64,
    /// Processes the collector refused one by one from acked reports.
    refused_processes: AtomicU64,
    connected: AtomicBool,
    /// A report was pushed.
    wake: Notify,
    /// The agent is exiting: retry now rather than at the end of the
    /// backoff (up to `backoff_max`), which would outlast the flush.
    retry_now: Notify,
}

impl Shared {
    fn buffer(&self) -> MutexGuard<'_, ReportBuffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Streams reports to the collector; see the module docs.
pub struct Streamer {
    shared: Arc<Shared>,
    instance: String,
    start_unix_ms: i64,
    stop: watch::Sender<bool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Streamer {
    /// Checks the URL and starts the streaming thread. Never waits for the
    /// collector: it may be down now and come up later.
    pub fn start(config: StreamerConfig) -> Result<Self, StreamError> {
        let endpoint = config
            .security
            .endpoint(&config.collector)?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            // A collector that vanished without a FIN is noticed.
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let random = random_u128();
        let instance = format!("{random:032x}");
        let shared = Arc::new(Shared {
            buffer: Mutex::new(ReportBuffer::new(
                config.buffer_reports,
                config.buffer_bytes,
            )),
            next_sequence: AtomicU64::new(1),
            acked: AtomicU64::new(0),
            refused_processes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            wake: Notify::new(),
            retry_now: Notify::new(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = Task {
            shared: shared.clone(),
            endpoint,
            security: config.security.clone(),
            url: config.collector.clone(),
            backoff: Backoff::new(config.backoff_min, config.backoff_max, random as u64),
            stop: stop_rx,
        };
        let thread = thread::Builder::new()
            .name("tally-stream".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(task.run()),
                    Err(err) => tracing::error!("cannot start the streaming runtime: {err}"),
                }
            })
            .map_err(StreamError::Thread)?;
        Ok(Self {
            shared,
            instance,
            start_unix_ms: tally_core::time::now_unix_ms(),
            stop,
            thread: Some(thread),
        })
    }

    /// Queues a report and returns at once. Sets its `sequence` (the next
    /// one), its node's `agent_instance` and `agent_start_unix_ms`, and, if
    /// it has `agent` stats, their `dropped_reports`; returns the sequence.
    pub fn push(&self, mut report: pb::NodeReport) -> u64 {
        let mut buffer = self.shared.buffer();
        let sequence = self.shared.next_sequence.fetch_add(1, Ordering::Relaxed);
        report.sequence = sequence;
        let node = report.node.get_or_insert_with(Default::default);
        node.agent_instance.clone_from(&self.instance);
        node.agent_start_unix_ms = self.start_unix_ms;
        if let Some(stats) = report.agent.as_mut() {
            stats.dropped_reports = buffer.dropped();
        }
        let dropped = buffer.push(sequence, Bytes::from(report.encode_to_vec()));
        drop(buffer);
        if dropped > 0 {
            tracing::debug!("report buffer full: dropped the {dropped} oldest");
        }
        self.shared.wake.notify_one();
        sequence
    }

    /// This agent process's instance id (random, 32 hex digits).
    pub fn agent_instance(&self) -> &str {
        &self.instance
    }

    pub fn agent_start_unix_ms(&self) -> i64 {
        self.start_unix_ms
    }

    /// Reports dropped from the full buffer, in total (for
    /// `AgentStats.dropped_reports`).
    pub fn dropped_reports(&self) -> u64 {
        self.shared.buffer().dropped()
    }

    /// Processes the collector refused alone (the rest of their reports
    /// stored), in total.
    pub fn refused_processes(&self) -> u64 {
        self.shared.refused_processes.load(Ordering::Relaxed)
    }

    /// Reports not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.shared.buffer().len()
    }

    /// The highest sequence the collector has acknowledged.
    pub fn acked_sequence(&self) -> u64 {
        self.shared.acked.load(Ordering::Relaxed)
    }

    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Waits until every pushed report is acknowledged, or `timeout`;
    /// true if all were. For a clean exit.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if self.pending() > 0 {
            self.shared.retry_now.notify_one();
        }
        while self.pending() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{}", tally_core::error_chain(.0))]
    Connect(tally_transport::ConnectError),
    #[error("{}", .0.message())]
    Status(Status),
    #[error("the collector closed the stream")]
    Closed,
}

struct Task {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    security: tally_transport::ClientSecurity,
    url: String,
    backoff: Backoff,
    stop: watch::Receiver<bool>,
}

impl Task {
    async fn run(mut self) {
        let mut failures: u32 = 0;
        let mut stop = self.stop.clone();
        loop {
            let (acked_any, result) = tokio::select! {
                r = self.session() => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            self.shared.connected.store(false, Ordering::Relaxed);
            if acked_any {
                self.backoff.reset();
                failures = 0;
            }
            let err = match result {
                Ok(()) => return,
                Err(err) => err,
            };
            failures += 1;
            let delay = self.backoff.next_delay();
            let pending = self.shared.buffer().len();
            // Loud on the first failure, then quiet until it recovers (one
            // line a minute or so while it stays down).
            if failures == 1 || failures.is_multiple_of(20) {
                tracing::warn!(
                    "collector {} unavailable: {err}; {pending} reports buffered, retrying in {:.1}s",
                    self.url,
                    delay.as_secs_f64()
                );
            } else {
                tracing::debug!("collector {} unavailable: {err}", self.url);
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shared.retry_now.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One connection: resend what is unacknowledged, then stream new
    /// reports as they come, taking acks. Returns whether anything was
    /// acknowledged, and how it ended.
    async fn session(&mut self) -> (bool, Result<(), SessionError>) {
        let mut acked_any = false;
        let channel = match tally_transport::connect(&self.endpoint, &self.security).await {
            Ok(c) => c,
            Err(e) => return (false, Err(SessionError::Connect(e))),
        };
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let mut acks = match tally_proto::raw::ingest_stream(channel, ReceiverStream::new(rx)).await
        {
            Ok(r) => r.into_inner(),
            Err(status) => return (false, Err(SessionError::Status(status))),
        };
        self.shared.connected.store(true, Ordering::Relaxed);
        let mut next = self
            .shared
            .buffer()
            .oldest()
            .unwrap_or_else(|| self.shared.next_sequence.load(Ordering::Relaxed));
        if self.shared.buffer().len() > 1 {
            tracing::info!(
                "connected to collector {}; resending {} reports",
                self.url,
                self.shared.buffer().len()
            );
        }
        loop {
            let to_send = self.shared.buffer().next_from(next);
            tokio::select! {
                biased;
                msg = acks.message() => match msg {
                    Ok(Some(ack)) => {
                        acked_any = true;
                        // Tests read this to know what the collector owes
                        // them after a crash.
                        tracing::debug!(acked = ack.last_stored_sequence, "collector stored reports");
                        self.shared.buffer().ack(ack.last_stored_sequence);
                        self.shared.acked.fetch_max(ack.last_stored_sequence, Ordering::Relaxed);
                        if ack.refused_processes > 0 {
                            self.shared
                                .refused_processes
                                .fetch_add(u64::from(ack.refused_processes), Ordering::Relaxed);
                            tracing::warn!(
                                "collector stored report {} without {} of its processes: {}",
                                ack.last_stored_sequence,
                                ack.refused_processes,
                                ack.refusal
                            );
                        }
                    }
                    Ok(None) => return (acked_any, Err(SessionError::Closed)),
                    // The report can never be stored: refused by
                    // validation, or larger than --max-report-bytes.
                    Err(status) if matches!(status.code(), Code::InvalidArgument | Code::OutOfRange) => {
                        // Acks come in order, so the refused report is the
                        // oldest kept: resending it would be refused forever.
                        let dropped = self.shared.buffer().drop_oldest();
                        tracing::error!(
                            "collector refused report {}: {}; dropped it",
                            dropped.unwrap_or(0),
                            status.message()
                        );
                        return (true, Err(SessionError::Status(status)));
                    }
                    Err(status) => return (acked_any, Err(SessionError::Status(status))),
                },
                permit = tx.reserve(), if to_send.is_some() => {
                    let Ok(permit) = permit else {
                        return (acked_any, Err(SessionError::Closed));
                    };
                    if let Some((seq, bytes)) = to_send {
                        permit.send(bytes);
                        next = seq + 1;
                    }
                }
                () = self.shared.wake.notified(), if to_send.is_none() => {}
            }
        }
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half
/// of the current step, so agents that lost the collector together spread
/// their retries.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
    rng: u64,
}

impl Backoff {
    fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            step: min,
            rng: seed | 1,
        }
    }

    fn reset(&mut self) {
        self.step = self.min;
    }

    fn next_delay(&mut self) -> Duration {
        // xorshift64: plenty for jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let delay = self.step.mul_f64(0.5 + 0.5 * unit);
        self.step = (self.step * 2).min(self.max);
        delay
    }
}

fn random_u128() -> u128 {
    let mut buf = [0u8; 16];
    // SAFETY: the pointer and length describe `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != 16 {
        // No getrandom: time and pid still differ between agent starts.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return t ^ (u128::from(std::process::id()) << 64);
    }
    u128::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(collector_endpoint("http://collector:4317").is_ok());
        assert_eq!(
            collector_endpoint("collector:4317")
                .unwrap()
                .uri()
                .to_string(),
            "http://collector:4317/"
        );
        assert!(collector_endpoint("https://c:1").is_ok());
        assert!(collector_endpoint("ftp://c:1").is_err());
        assert!(collector_endpoint("http://").is_err());
        assert!(collector_endpoint("http://a b").is_err());
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 42);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let steps = [100u64, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (d, s) in delays.iter().zip(steps) {
            let s = Duration::from_millis(s);
            assert!(*d >= s / 2 && *d <= s, "{d:?} not in [{:?}, {s:?}]", s / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn push_numbers_and_stamps_reports_and_never_blocks_without_a_collector() {
        // Port 9 on loopback: nothing listens; the task keeps retrying.
        let mut config = StreamerConfig::new("http://127.0.0.1:9");
        config.buffer_reports = 3;
        let s = Streamer::start(config).unwrap();
        let t = Instant::now();
        for _ in 0..5 {
            s.push(pb::NodeReport {
                agent: Some(pb::AgentStats::default()),
                ..Default::default()
            });
        }
        assert!(t.elapsed() < Duration::from_millis(500));
        assert_eq!(s.pending(), 3);
        assert_eq!(s.dropped_reports(), 2);
        assert_eq!(s.agent_instance().len(), 32);
        let buf = s.shared.buffer();
        let (seq, bytes) = buf.next_from(0).unwrap();
        assert_eq!(seq, 3);
        let r = pb::NodeReport::decode(bytes).unwrap();
        assert_eq!(r.sequence, 3);
        assert_eq!(r.node.unwrap().agent_instance, s.agent_instance());
        // Report 3 was pushed when none had been dropped yet.
        assert_eq!(r.agent.unwrap().dropped_reports, 0);
        drop(buf);
        assert!(!s.flush(Duration::from_millis(50)));
        assert!(!s.is_connected());
    }
}
