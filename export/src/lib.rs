//! Export to the stores people already run: OTLP metrics over gRPC
//! ([`otlp`]) and a Prometheus endpoint ([`http`], [`prom`]).
//!
//! After each tick the collection loop hands the tick to a
//! [`NodeExporter`], which updates the cumulative series ([`series`]) and
//! publishes an immutable [`Snapshot`]: Prometheus renders the latest one
//! when scraped, the OTLP exporter's thread sends each one. Neither ever
//! makes the collection loop wait.
pub mod attrs;
pub mod http;
pub mod metrics;
pub mod otlp;
pub mod profile;
pub mod prom;
pub mod series;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::{
    net::SocketAddr,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

pub use series::{SeriesLimits, Snapshot};

use tally_core::model::{NodeIdentity, Tick};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Otlp(#[from] otlp::OtlpError),
    #[error(transparent)]
    Http(#[from] http::HttpError),
}

/// What to export, and where.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub otlp: Option<otlp::OtlpConfig>,
    /// Serve `/metrics`, `/healthz`, `/readyz` here.
    pub metrics_listen: Option<SocketAddr>,
    pub limits: SeriesLimits,
}

impl ExportOptions {
    pub fn is_empty(&self) -> bool {
        self.otlp.is_none() && self.metrics_listen.is_none()
    }
}

type Published = Arc<RwLock<Option<Arc<Snapshot>>>>;

/// The agent's exporters.
pub struct NodeExporter {
    state: series::SeriesState,
    published: Published,
    otlp: Option<otlp::OtlpExporter>,
    server: Option<http::MetricsServer>,
    ready: Arc<AtomicBool>,
}

impl NodeExporter {
    /// Starts the endpoint and the OTLP thread (before the probes load, so
    /// that `/healthz` answers during the load and `/readyz` says not yet).
    pub fn start(opts: &ExportOptions, node: &NodeIdentity) -> Result<Self, ExportError> {
        let published: Published = Arc::new(RwLock::new(None));
        let ready = Arc::new(AtomicBool::new(false));
        let otlp = opts
            .otlp
            .clone()
            .map(otlp::OtlpExporter::start)
            .transpose()?;
        let otlp_stats = otlp.as_ref().map(otlp::OtlpExporter::stats);
        let server = match opts.metrics_listen {
            Some(addr) => {
                let published = published.clone();
                let render: http::Render = Arc::new(move || {
                    let snapshot = published
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    let extra = otlp_stats.as_ref().map(|s| s.points()).unwrap_or_default();
                    snapshot.map_or_else(String::new, |s| prom::render(&s, &extra))
                });
                Some(http::MetricsServer::start(addr, render, ready.clone())?)
            }
            None => None,
        };
        if let Some(o) = &opts.otlp {
            tracing::info!(endpoint = %o.endpoint, "exporting OTLP metrics");
        }
        Ok(Self {
            state: series::SeriesState::new(
                attrs::NodeAttrs::from_identity(node),
                opts.limits,
                SystemTime::now(),
            ),
            published,
            otlp,
            server,
            ready,
        })
    }

    /// Address of the metrics endpoint, when serving one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(http::MetricsServer::addr)
    }

    /// Takes one tick. `agent_cpu_seconds` is the agent's CPU since it
    /// started; `stream` the streamer's totals.
    pub fn on_tick(
        &mut self,
        tick: &Tick,
        node: &NodeIdentity,
        agent_cpu_seconds: f64,
        agent_rss_bytes: u64,
        stream: series::StreamTotals,
    ) {
        self.state.set_node(node);
        self.state.update(tick);
        self.state
            .set_agent(agent_cpu_seconds, agent_rss_bytes, stream);
        let snapshot = Arc::new(self.state.snapshot(tick.at, tick.seconds));
        if let Some(otlp) = &self.otlp {
            otlp.push(snapshot.clone());
        }
        *self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
        self.ready.store(true, Ordering::Relaxed);
    }

    /// On the way out: gives the OTLP endpoint a moment to take what is
    /// queued; true if it did.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.otlp.as_ref().is_none_or(|o| o.flush(timeout))
    }
}
