//! The export thread: a bounded queue the collection loop pushes into
//! without waiting, and a task that sends each entry with time-outs and
//! retries with backoff, counting what it drops.
use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::collector::{
    metrics::v1::metrics_service_client::MetricsServiceClient,
    profiles::v1development::profiles_service_client::ProfilesServiceClient,
};
use tokio::sync::Notify;
use tonic::{
    Code,
    codec::CompressionEncoding,
    metadata::{MetadataKey, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use super::{
    Exportable, OtlpConfig, OtlpError, OtlpRequest,
    retry::{Backoff, retryable, seed},
};
use crate::metrics::{Kind, SelfPoint, Value};

/// Counters of the exporter, shared with its thread.
#[derive(Debug, Default)]
pub struct OtlpStats {
    /// What the exporter sends: the `signal` attribute of its counters.
    pub signal: super::Signal,
    /// Exports the endpoint accepted.
    pub exported: AtomicU64,
    /// Snapshots dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Exports dropped after a non-retryable error or `max_retry`.
    pub dropped_failed: AtomicU64,
    /// Data points the endpoint said it rejected (partial success).
    pub rejected_points: AtomicU64,
    /// Failed attempts (each retry counts).
    pub failed_attempts: AtomicU64,
    pub queued: AtomicU64,
}

impl OtlpStats {
    /// As self metrics, for Prometheus and the next export.
    pub fn points(&self) -> Vec<SelfPoint> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let signal = ("signal", self.signal.as_str());
        let counter = |prom, otlp, help, mut attrs: Vec<(&'static str, &'static str)>, v| {
            attrs.insert(0, signal);
            SelfPoint {
                prom,
                otlp,
                unit: "{export}",
                kind: Kind::Counter,
                help,
                attrs,
                value: Value::Int(v),
            }
        };
        vec![
            counter(
                "tally_otlp_exports_total",
                "tally.otlp.exports",
                "OTLP exports the endpoint accepted.",
                Vec::new(),
                get(&self.exported),
            ),
            counter(
                "tally_otlp_dropped_exports_total",
                "tally.otlp.dropped_exports",
                "OTLP exports dropped: the queue was full (endpoint slow or down), or the export failed for good.",
                vec![("reason", "queue_full")],
                get(&self.dropped_queue_full),
            ),
            counter(
                "tally_otlp_dropped_exports_total",
                "tally.otlp.dropped_exports",
                "",
                vec![("reason", "failed")],
                get(&self.dropped_failed),
            ),
            counter(
                "tally_otlp_failed_attempts_total",
                "tally.otlp.failed_attempts",
                "OTLP export attempts that failed (each retry counts).",
                Vec::new(),
                get(&self.failed_attempts),
            ),
            SelfPoint {
                prom: "tally_otlp_rejected_points_total",
                otlp: "tally.otlp.rejected_points",
                unit: "{point}",
                kind: Kind::Counter,
                help: "Data points (profiles, of the profiles signal) the OTLP endpoint rejected (partial success).",
                attrs: vec![signal],
                value: Value::Int(get(&self.rejected_points)),
            },
            SelfPoint {
                prom: "tally_otlp_queue_length",
                otlp: "tally.otlp.queue.length",
                unit: "{export}",
                kind: Kind::Gauge,
                help: "Exports waiting to be sent.",
                attrs: vec![signal],
                value: Value::Int(get(&self.queued)),
            },
        ]
    }
}

struct Shared {
    queue: Mutex<VecDeque<Arc<dyn Exportable>>>,
    capacity: usize,
    wake: Notify,
    stop: AtomicBool,
    /// An export is being sent (or retried).
    in_flight: AtomicBool,
    stats: Arc<OtlpStats>,
}

/// Sends snapshots to an OTLP endpoint from a thread of its own.
pub struct OtlpExporter {
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

impl OtlpExporter {
    /// Checks the configuration and starts the thread; never waits for the
    /// endpoint, which may be down now and come up later.
    pub fn start(config: OtlpConfig) -> Result<Self, OtlpError> {
        let endpoint = endpoint(&config)?;
        let headers = config
            .headers
            .iter()
            .map(|(k, v)| {
                let key = MetadataKey::from_bytes(k.as_bytes())
                    .map_err(|_| OtlpError::BadHeader(k.clone()))?;
                let value = MetadataValue::try_from(v.as_str())
                    .map_err(|_| OtlpError::BadHeader(format!("{k}={v}")))?;
                Ok((key, value))
            })
            .collect::<Result<Vec<_>, OtlpError>>()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::with_capacity(config.queue.max(1))),
            capacity: config.queue.max(1),
            wake: Notify::new(),
            stop: AtomicBool::new(false),
            in_flight: AtomicBool::new(false),
            stats: Arc::new(OtlpStats {
                signal: config.signal,
                ..Default::default()
            }),
        });
        let task = Task {
            shared: shared.clone(),
            channel: None,
            endpoint,
            headers,
            config,
        };
        let thread = thread::Builder::new()
            .name("tally-otlp".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(task.run()),
                    Err(err) => tracing::error!("cannot start the OTLP runtime: {err}"),
                }
            })
            .map_err(OtlpError::Thread)?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues a snapshot and returns at once; drops the oldest queued one
    /// when the queue is full.
    pub fn push(&self, snapshot: Arc<dyn Exportable>) {
        let mut q = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while q.len() >= self.shared.capacity {
            q.pop_front();
            self.shared
                .stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(snapshot);
        self.shared
            .stats
            .queued
            .store(q.len() as u64, Ordering::Relaxed);
        drop(q);
        self.shared.wake.notify_one();
    }

    pub fn stats(&self) -> Arc<OtlpStats> {
        self.shared.stats.clone()
    }

    /// Waits until the queue is empty and nothing is in flight, or
    /// `timeout`; true if everything was sent (or dropped for good).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let idle = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
                && !self.shared.in_flight.load(Ordering::Relaxed);
            if idle {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn endpoint(config: &OtlpConfig) -> Result<Endpoint, OtlpError> {
    let url = &config.endpoint;
    let bad = |reason: &str| OtlpError::BadUrl {
        url: url.clone(),
        reason: reason.to_owned(),
    };
    let full = if url.contains("://") {
        url.clone()
    } else {
        format!("http://{url}")
    };
    let tls = full.starts_with("https://");
    if !tls && !full.starts_with("http://") {
        return Err(bad("the scheme must be http or https"));
    }
    let mut endpoint = Endpoint::from_shared(full).map_err(|e| bad(&e.to_string()))?;
    if endpoint.uri().host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if tls {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| OtlpError::Ca {
                path: path.clone(),
                source,
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(OtlpError::Tls)?;
    }
    Ok(endpoint
        .connect_timeout(config.timeout.min(Duration::from_secs(5)))
        .timeout(config.timeout)
        .tcp_nodelay(true))
}

struct Task {
    shared: Arc<Shared>,
    channel: Option<Channel>,
    endpoint: Endpoint,
    headers: Vec<(
        MetadataKey<tonic::metadata::Ascii>,
        MetadataValue<tonic::metadata::Ascii>,
    )>,
    config: OtlpConfig,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max, seed());
        let mut failures: u64 = 0;
        loop {
            let next = {
                let mut q = self
                    .shared
                    .queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let next = q.pop_front();
                self.shared
                    .in_flight
                    .store(next.is_some(), Ordering::Relaxed);
                self.shared
                    .stats
                    .queued
                    .store(q.len() as u64, Ordering::Relaxed);
                next
            };
            let Some(snapshot) = next else {
                if self.shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                self.shared.wake.notified().await;
                continue;
            };
            let extra = self.shared.stats.points();
            let request = snapshot.request(&extra);
            drop(snapshot);
            let first_try = Instant::now();
            loop {
                match self.export(request.clone()).await {
                    Ok(rejected) => {
                        backoff.reset();
                        if failures > 0 {
                            tracing::info!(
                                "OTLP endpoint {} reachable again",
                                self.config.endpoint
                            );
                        }
                        failures = 0;
                        let stats = &self.shared.stats;
                        stats.exported.fetch_add(1, Ordering::Relaxed);
                        stats.rejected_points.fetch_add(rejected, Ordering::Relaxed);
                        break;
                    }
                    Err(status) => {
                        self.shared
                            .stats
                            .failed_attempts
                            .fetch_add(1, Ordering::Relaxed);
                        failures += 1;
                        let retry = retryable(status.code())
                            && first_try.elapsed() < self.config.max_retry
                            && !self.shared.stop.load(Ordering::Relaxed);
                        if failures == 1 || failures.is_multiple_of(20) {
                            tracing::warn!(
                                "OTLP export to {} failed: {} ({:?}){}",
                                self.config.endpoint,
                                status.message(),
                                status.code(),
                                if retry { "; retrying" } else { "; dropped" }
                            );
                        }
                        if !retry {
                            self.shared
                                .stats
                                .dropped_failed
                                .fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // A broken connection is rebuilt on the next try.
                        if matches!(status.code(), Code::Unavailable | Code::Unknown) {
                            self.channel = None;
                        }
                        let delay = backoff.next_delay();
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = self.stopped() => {
                                self.shared.stats.dropped_failed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            }
            self.shared.in_flight.store(false, Ordering::Relaxed);
        }
    }

    async fn stopped(&self) {
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.shared.wake.notified().await;
        }
    }

    /// One attempt; the number of rejected points (metrics) or profiles
    /// on success.
    async fn export(&mut self, request: OtlpRequest) -> Result<u64, tonic::Status> {
        let channel = match &self.channel {
            Some(c) => c.clone(),
            None => {
                let c = self.endpoint.connect_lazy();
                self.channel = Some(c.clone());
                c
            }
        };
        let gzip = self.config.gzip.then_some(CompressionEncoding::Gzip);
        match request {
            OtlpRequest::Metrics(request) => {
                let mut client =
                    MetricsServiceClient::new(channel).max_encoding_message_size(64 << 20);
                if let Some(g) = gzip {
                    client = client.send_compressed(g);
                }
                let response = client.export(self.request(request)).await?.into_inner();
                Ok(response
                    .partial_success
                    .map_or(0, |p| p.rejected_data_points.max(0) as u64))
            }
            OtlpRequest::Profiles(request) => {
                let mut client =
                    ProfilesServiceClient::new(channel).max_encoding_message_size(64 << 20);
                if let Some(g) = gzip {
                    client = client.send_compressed(g);
                }
                let response = client.export(self.request(request)).await?.into_inner();
                Ok(response
                    .partial_success
                    .map_or(0, |p| p.rejected_profiles.max(0) as u64))
            }
        }
    }

    /// A gRPC request with the time-out and headers.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(self.config.timeout);
        for (k, v) in &self.headers {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::{
        attrs::NodeAttrs,
        series::{SeriesLimits, SeriesState},
    };

    #[test]
    fn queue_is_bounded_and_drops_are_counted() {
        // A closed port: every export fails with UNAVAILABLE.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut config = OtlpConfig::new(format!("http://127.0.0.1:{port}"));
        config.queue = 3;
        config.backoff_min = Duration::from_secs(5);
        let exporter = OtlpExporter::start(config).unwrap();
        let s = SeriesState::new(
            NodeAttrs::default(),
            SeriesLimits::default(),
            SystemTime::now(),
        );
        let snap = Arc::new(s.snapshot(SystemTime::now(), 1.0));
        let started = Instant::now();
        for _ in 0..20 {
            exporter.push(snap.clone());
        }
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "push never waits"
        );
        let queued = exporter.shared.queue.lock().unwrap().len();
        assert!(queued <= 3);
        let stats = exporter.stats();
        // 20 pushed, at most 3 queued and 1 in flight.
        assert!(stats.dropped_queue_full.load(Ordering::Relaxed) >= 16);
        // Weak count: the queue's copies, the thread's (maybe), this one.
        assert!(Arc::strong_count(&snap) <= 5);
    }
}
