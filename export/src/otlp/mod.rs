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
//!
//! [`exporter`] queues and sends, [`retry`] decides when to try again;
//! [`request`] turns a [`Snapshot`] into an `ExportMetricsServiceRequest`,
//! [`profiles`] sampled stacks into an `ExportProfilesServiceRequest`
//! (`ProfilesService/Export`, the same exporter, a queue of its own).
pub mod exporter;
pub mod profiles;
#[cfg(test)]
mod receiver_tests;
pub mod request;
mod retry;

use std::{path::PathBuf, time::Duration};

use opentelemetry_proto::tonic::collector::{
    metrics::v1::ExportMetricsServiceRequest, profiles::v1development::ExportProfilesServiceRequest,
};
use tonic::metadata::MetadataKey;

pub use exporter::{OtlpExporter, OtlpStats};
pub use request::{request, self_metric, unix_nanos};

use super::{metrics::SelfPoint, series::Snapshot};

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

/// The OTLP signal an exporter sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Signal {
    #[default]
    Metrics,
    Profiles,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Profiles => "profiles",
        }
    }
}

/// How the exporter connects and how much it keeps.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub signal: Signal,
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
            signal: Signal::Metrics,
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

/// One export, of either signal.
#[derive(Debug, Clone)]
pub enum OtlpRequest {
    Metrics(ExportMetricsServiceRequest),
    Profiles(ExportProfilesServiceRequest),
}

/// What can be exported: the agent's [`Snapshot`], the collector's
/// workloads, sampled stacks ([`profiles::ProfileBatch`]). Converted to a
/// request on the export thread, with the exporter's own counters
/// (`extra`, for metrics).
pub trait Exportable: Send + Sync {
    fn request(&self, extra: &[SelfPoint]) -> OtlpRequest;
}

impl Exportable for Snapshot {
    fn request(&self, extra: &[SelfPoint]) -> OtlpRequest {
        OtlpRequest::Metrics(request(self, extra))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
