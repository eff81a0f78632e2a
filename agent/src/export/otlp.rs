//! OTLP metrics over gRPC (`opentelemetry.proto.collector.metrics.v1.
//! MetricsService/Export`), with the `opentelemetry-proto` crate's generated
//! types and client.
//!
//! - One `ResourceMetrics` per process and per container (resource: the
//!   node's attributes plus the entity's, see [`super::attrs`]), and one for
//!   the agent itself; scope `tally`.
//! - Cumulative sums with start times (see [`super::series`]); gauges for
//!   the latest window's share, RSS (a non-monotonic sum, as the semantic
//!   conventions' `process.memory.usage`) and the verdict.
//! - The collection loop only [`OtlpExporter::push`]es a snapshot into a
//!   bounded queue and returns; a thread of its own converts and sends.
//!   When the queue is full the oldest snapshot is dropped and counted
//!   (cumulative sums lose only resolution, never totals).
//! - gzip (default), TLS for `https://` (system roots, or `--otlp-ca`),
//!   headers (`--otlp-header authorization=Bearer…`), a time-out per export,
//!   retries with exponential backoff and jitter on the codes the OTLP
//!   specification calls retryable (`UNAVAILABLE` above all), for at most
//!   `max_retry` per export.
use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient,
    },
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric::Data, number_data_point,
    },
    resource::v1::Resource,
};
use tokio::sync::Notify;
use tonic::{
    Code,
    codec::CompressionEncoding,
    metadata::{MetadataKey, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use super::{
    attrs::{EntityAttrs, NodeAttrs},
    metrics::{self, Kind, MetricDef, SelfPoint, Value},
    series::{Entity, Snapshot},
};

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("bad OTLP endpoint `{url}`: {reason} (expected e.g. http://otel-collector:4317)")]
    BadUrl { url: String, reason: String },
    #[error("bad OTLP header `{0}`: expected KEY=VALUE with a valid gRPC metadata key")]
    BadHeader(String),
    #[error("cannot read the CA certificate {}: {source}", path.display())]
    Ca {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS set-up failed: {0}")]
    Tls(tonic::transport::Error),
    #[error("cannot start the OTLP export thread: {0}")]
    Thread(std::io::Error),
}

/// How the exporter connects and how much it keeps.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// `http://host:4317` or `https://…`; no scheme means http.
    pub endpoint: String,
    /// gRPC metadata sent with every export (e.g. `authorization`).
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    /// For each export attempt.
    pub timeout: Duration,
    /// Extra CA certificate (PEM) for `https://`; system roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Snapshots waiting to be sent; past it the oldest is dropped.
    pub queue: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// An export still failing after this long is dropped.
    pub max_retry: Duration,
}

impl OtlpConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            headers: Vec::new(),
            gzip: true,
            timeout: Duration::from_secs(10),
            ca_file: None,
            queue: 64,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_retry: Duration::from_secs(300),
        }
    }
}

/// Parses `KEY=VALUE` (a `--otlp-header`), or the comma-separated list of
/// `$OTEL_EXPORTER_OTLP_HEADERS`.
pub fn parse_headers(s: &str) -> Result<Vec<(String, String)>, OtlpError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| OtlpError::BadHeader(pair.to_owned()))?;
            let k = k.trim().to_ascii_lowercase();
            MetadataKey::<tonic::metadata::Ascii>::from_bytes(k.as_bytes())
                .map_err(|_| OtlpError::BadHeader(pair.to_owned()))?;
            Ok((k, v.trim().to_owned()))
        })
        .collect()
}

/// Counters of the exporter, shared with its thread.
#[derive(Debug, Default)]
pub struct OtlpStats {
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
        let counter = |prom, otlp, help, attrs: Vec<(&'static str, &'static str)>, v| SelfPoint {
            prom,
            otlp,
            unit: "{export}",
            kind: Kind::Counter,
            help,
            attrs,
            value: Value::Int(v),
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
                help: "Data points the OTLP endpoint rejected (partial success).",
                attrs: Vec::new(),
                value: Value::Int(get(&self.rejected_points)),
            },
            SelfPoint {
                prom: "tally_otlp_queue_length",
                otlp: "tally.otlp.queue.length",
                unit: "{export}",
                kind: Kind::Gauge,
                help: "Exports waiting to be sent.",
                attrs: Vec::new(),
                value: Value::Int(get(&self.queued)),
            },
        ]
    }
}

/// What can be exported: the agent's [`Snapshot`], the collector's
/// workloads. Converted to a request on the export thread, with the
/// exporter's own counters (`extra`).
pub trait Exportable: Send + Sync {
    fn request(&self, extra: &[SelfPoint]) -> ExportMetricsServiceRequest;
}

impl Exportable for Snapshot {
    fn request(&self, extra: &[SelfPoint]) -> ExportMetricsServiceRequest {
        request(self, extra)
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
            stats: Arc::new(OtlpStats::default()),
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

    /// One attempt; the number of rejected points on success.
    async fn export(&mut self, request: ExportMetricsServiceRequest) -> Result<u64, tonic::Status> {
        let channel = match &self.channel {
            Some(c) => c.clone(),
            None => {
                let c = self.endpoint.connect_lazy();
                self.channel = Some(c.clone());
                c
            }
        };
        let mut client = MetricsServiceClient::new(channel).max_encoding_message_size(64 << 20);
        if self.config.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let mut req = tonic::Request::new(request);
        req.set_timeout(self.config.timeout);
        for (k, v) in &self.headers {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        let response = client.export(req).await?.into_inner();
        let rejected = response
            .partial_success
            .map_or(0, |p| p.rejected_data_points.max(0) as u64);
        Ok(rejected)
    }
}

/// The codes the OTLP specification says to retry.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The export request of one snapshot.
pub fn request(s: &Snapshot, extra: &[SelfPoint]) -> ExportMetricsServiceRequest {
    let node = node_attributes(&s.node);
    let at = unix_nanos(s.at);
    let mut resource_metrics = Vec::with_capacity(1 + s.processes.len() + s.containers.len());
    resource_metrics.push(resource(
        node.clone(),
        self_metrics(
            &metrics::self_points(s, extra),
            unix_nanos(s.instance_start),
            at,
        ),
    ));
    for (process, entities) in [(true, &s.processes), (false, &s.containers)] {
        for e in entities {
            let mut attributes = node.clone();
            attributes.extend(entity_attributes(&e.attrs));
            resource_metrics.push(resource(attributes, entity_metrics(e, process, at)));
        }
    }
    ExportMetricsServiceRequest { resource_metrics }
}

fn resource(attributes: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "tally".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn entity_metrics(e: &Entity, process: bool, at: u64) -> Vec<Metric> {
    let start = unix_nanos(e.start);
    let points = metrics::points(e);
    let mut out = Vec::new();
    for def in metrics::ALL {
        let data_points: Vec<NumberDataPoint> = points
            .iter()
            .filter(|p| std::ptr::eq::<MetricDef>(p.metric, def))
            .map(|p| data_point(&p.attrs, p.value, def.kind, start, at))
            .collect();
        if data_points.is_empty() {
            continue;
        }
        let name = if process {
            def.otlp_process
        } else {
            def.otlp_container
        };
        out.push(metric(name, def.help, def.unit, def.kind, data_points));
    }
    out
}

/// One self metric alone.
pub fn self_metric(p: &SelfPoint, start: u64, at: u64) -> Metric {
    let dp = data_point(&p.attrs, p.value, p.kind, start, at);
    metric(p.otlp, p.help, p.unit, p.kind, vec![dp])
}

fn self_metrics(points: &[SelfPoint], start: u64, at: u64) -> Vec<Metric> {
    let mut out: Vec<Metric> = Vec::new();
    for p in points {
        let dp = data_point(&p.attrs, p.value, p.kind, start, at);
        match out.iter_mut().find(|m| m.name == p.otlp) {
            Some(m) => match &mut m.data {
                Some(Data::Sum(s)) => s.data_points.push(dp),
                Some(Data::Gauge(g)) => g.data_points.push(dp),
                _ => {}
            },
            None => out.push(metric(p.otlp, p.help, p.unit, p.kind, vec![dp])),
        }
    }
    out
}

fn metric(
    name: &str,
    help: &str,
    unit: &str,
    kind: Kind,
    data_points: Vec<NumberDataPoint>,
) -> Metric {
    let data = match kind {
        Kind::Gauge => Data::Gauge(Gauge { data_points }),
        Kind::Counter | Kind::UpDown => Data::Sum(Sum {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: kind == Kind::Counter,
        }),
    };
    Metric {
        name: name.into(),
        description: help.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn data_point(
    attrs: &[(&'static str, &'static str)],
    value: Value,
    kind: Kind,
    start: u64,
    at: u64,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.iter().map(|(k, v)| kv(k, string(v))).collect(),
        // Gauges have no start; sums count from it.
        start_time_unix_nano: if kind == Kind::Gauge { 0 } else { start },
        time_unix_nano: at,
        value: Some(match value {
            Value::Int(v) => number_data_point::Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX)),
            Value::Double(v) => number_data_point::Value::AsDouble(v),
        }),
        ..Default::default()
    }
}

fn node_attributes(node: &NodeAttrs) -> Vec<KeyValue> {
    node.pairs()
        .into_iter()
        .map(|(k, v)| kv(k, string(v)))
        .collect()
}

fn entity_attributes(e: &EntityAttrs) -> Vec<KeyValue> {
    e.pairs()
        .into_iter()
        .map(|(k, v)| {
            if k == "process.pid" {
                kv(k, any_value::Value::IntValue(i64::from(e.pid)))
            } else {
                kv(k, any_value::Value::StringValue(v))
            }
        })
        .collect()
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn string(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_owned())
}

pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Exponential backoff with jitter (each delay drawn from the upper half of
/// the current step), so that a fleet does not retry in lockstep.
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
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let delay = self.step.mul_f64(0.5 + 0.5 * unit);
        self.step = (self.step * 2).min(self.max);
        delay
    }
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        collect::Tick,
        export::series::{SeriesLimits, SeriesState},
        top::test_window,
    };

    #[test]
    fn request_has_resources_cumulative_sums_and_start_times() {
        let t0 = SystemTime::now();
        let node = NodeAttrs {
            host_name: "node-a".into(),
            ..Default::default()
        };
        let mut s = SeriesState::new(node, SeriesLimits::default(), t0);
        let at = t0 + Duration::from_secs(1);
        s.update(&Tick {
            at,
            seconds: 1.0,
            windows: vec![test_window(42, "worker", "/user.slice")],
            new_drops: [0; 6],
            swept_records: 0,
            sample_period_ns: 10_000_000,
        });
        let req = request(&s.snapshot(at, 1.0), &[]);
        assert_eq!(req.resource_metrics.len(), 2, "the agent and one process");
        let proc = &req.resource_metrics[1];
        let attrs = &proc.resource.as_ref().unwrap().attributes;
        let get = |k: &str| attrs.iter().find(|a| a.key == k).cloned();
        assert!(get("host.name").is_some());
        assert_eq!(
            get("process.pid").unwrap().value.unwrap().value,
            Some(any_value::Value::IntValue(42))
        );
        let metrics = &proc.scope_metrics[0].metrics;
        let faults = metrics
            .iter()
            .find(|m| m.name == "process.paging.faults")
            .unwrap();
        let Some(Data::Sum(sum)) = &faults.data else {
            panic!("faults is a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points.len(), 2);
        let minor = &sum.data_points[0];
        assert_eq!(minor.start_time_unix_nano, unix_nanos(t0));
        assert_eq!(minor.time_unix_nano, unix_nanos(at));
        assert_eq!(minor.value, Some(number_data_point::Value::AsInt(2048)));
        assert_eq!(minor.attributes[0].key, "type");
    }

    #[test]
    fn headers_parse() {
        let h = parse_headers("Authorization=Bearer x, x-scope-orgid=7").unwrap();
        assert_eq!(
            h,
            vec![
                ("authorization".into(), "Bearer x".into()),
                ("x-scope-orgid".into(), "7".into())
            ]
        );
        assert!(parse_headers("novalue").is_err());
    }

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
