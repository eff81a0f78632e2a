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
pub mod runtime_metrics;
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
    /// Sampled stacks as OTLP profiles (`otlp::profiles`).
    pub otlp_profiles: Option<otlp::OtlpConfig>,
    /// Serve `/metrics`, `/healthz`, `/readyz` here.
    pub metrics_listen: Option<SocketAddr>,
    pub limits: SeriesLimits,
}

impl ExportOptions {
    pub fn is_empty(&self) -> bool {
        self.otlp.is_none() && self.otlp_profiles.is_none() && self.metrics_listen.is_none()
    }
}

type Published = Arc<RwLock<Option<Arc<Snapshot>>>>;

/// The agent's exporters.
pub struct NodeExporter {
    state: series::SeriesState,
    published: Published,
    otlp: Option<otlp::OtlpExporter>,
    profiles: Option<otlp::OtlpExporter>,
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
        let profiles = opts
            .otlp_profiles
            .clone()
            .map(|c| {
                otlp::OtlpExporter::start(otlp::OtlpConfig {
                    signal: otlp::Signal::Profiles,
                    ..c
                })
            })
            .transpose()?;
        let otlp_stats: Vec<_> = otlp
            .iter()
            .chain(&profiles)
            .map(otlp::OtlpExporter::stats)
            .collect();
        let server = match opts.metrics_listen {
            Some(addr) => {
                let published = published.clone();
                let render: http::Render = Arc::new(move || {
                    let snapshot = published
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    let extra: Vec<_> = otlp_stats.iter().flat_map(|s| s.points()).collect();
                    snapshot.map_or_else(String::new, |s| prom::render(&s, &extra))
                });
                Some(http::MetricsServer::start(addr, render, ready.clone())?)
            }
            None => None,
        };
        if let Some(o) = &opts.otlp {
            tracing::info!(endpoint = %o.endpoint, "exporting OTLP metrics");
        }
        if let Some(o) = &opts.otlp_profiles {
            tracing::info!(endpoint = %o.endpoint, "exporting OTLP profiles");
        }
        Ok(Self {
            state: series::SeriesState::new(
                attrs::NodeAttrs::from_identity(node),
                opts.limits,
                SystemTime::now(),
            ),
            published,
            otlp,
            profiles,
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

    /// Whether sampled stacks are exported (OTLP profiles).
    pub fn wants_stacks(&self) -> bool {
        self.profiles.is_some()
    }

    /// Queues a window's sampled stacks as OTLP profiles: each process with
    /// the attributes of its window in `tick` (the pid alone if it has none).
    pub fn on_stacks(
        &self,
        tick: &Tick,
        mut stacks: std::collections::HashMap<u32, tally_core::model::stacks::FoldedStacks>,
    ) {
        let Some(profiles) = &self.profiles else {
            return;
        };
        let mut processes = Vec::with_capacity(stacks.len());
        for w in &tick.windows {
            if let Some(s) = stacks.remove(&w.key.tgid) {
                processes.push(otlp::profiles::ProcessStacks {
                    attrs: attrs::process(w),
                    stacks: s,
                });
            }
        }
        processes.extend(
            stacks
                .into_iter()
                .map(|(pid, s)| otlp::profiles::ProcessStacks {
                    attrs: attrs::EntityAttrs {
                        pid,
                        ..Default::default()
                    },
                    stacks: s,
                }),
        );
        let duration = Duration::from_secs_f64(tick.seconds.max(0.0));
        let batch = otlp::profiles::ProfileBatch {
            node: (**self.state.node()).clone(),
            processes,
            start: tick.at.checked_sub(duration).unwrap_or(tick.at),
            duration,
            period_ns: tick.sample_period_ns,
        };
        if !batch.is_empty() {
            profiles.push(Arc::new(batch));
        }
    }

    /// On the way out: gives the OTLP endpoints a moment to take what is
    /// queued; true if they did.
    pub fn flush(&self, timeout: Duration) -> bool {
        let metrics = self.otlp.as_ref().is_none_or(|o| o.flush(timeout));
        metrics && self.profiles.as_ref().is_none_or(|o| o.flush(timeout))
    }
}
