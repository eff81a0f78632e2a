//! `agent collector`: the cluster side. Agents stream their reports in
//! ([`ingest`]); each is stored durably before it is acknowledged
//! ([`store`]); workloads are classified across nodes ([`fleet`], with the
//! same `gc` library the agent uses); and [`query`] answers ListWorkloads,
//! WorkloadHistory and Watch.
pub mod fleet_export;
pub mod fleet_otlp_profiles;
pub mod fleet_profiles;
mod fleet_refresh;
pub mod fleet_verdicts;
mod framing;
pub mod ingest;
pub mod listener;
pub mod query;
pub mod store;
pub mod token_review;
pub mod validate;

/// What a verdict is about, and what a received report says of it (core).
use tally_core::workload;

use std::{
    io::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use tally_proto as pb;
use tokio::sync::{broadcast, mpsc};

pub use store::Sync;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the store: {0}")]
    Open(String),
    #[error("cannot start the collector's threads: {0}")]
    Runtime(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Export(#[from] tally_export::ExportError),
    #[error(transparent)]
    Transport(#[from] tally_transport::TransportError),
    #[error(transparent)]
    TokenReview(#[from] token_review::TokenReviewError),
}

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub listen: SocketAddr,
    /// The store: a SQLite file in a directory, or a PostgreSQL database
    /// several replicas share.
    pub store: store::Location,
    /// How long raw reports and each rolled-up tier are kept.
    pub retention: store::tiers::Retention,
    /// How often every workload's verdict is recomputed for ListWorkloads.
    pub classify_interval: Duration,
    /// `/metrics` and OTLP export of the workloads' verdicts.
    pub export: tally_export::ExportOptions,
    /// Write CPU profiles from the agents' stacks here, every
    /// `profile_interval` (`profile::fleet`).
    pub profiles_dir: Option<PathBuf>,
    pub profile_interval: Duration,
    /// TLS, client certificates, tokens.
    pub security: tally_transport::ServerSecurity,
    /// Kubernetes service account tokens, reviewed by the API server
    /// (`--token-review-audience`); `security.token_review` follows it.
    pub token_review: Option<token_review::TokenReviewSetup>,
    pub limits: Limits,
}

/// Limits on what clients may send or hold, each named by its flag in the
/// errors it causes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--max-report-bytes`: one encoded report (gRPC's message size).
    pub max_report_bytes: usize,
    /// `--max-reports-per-second`, per stream.
    pub max_reports_per_second: f64,
    /// `--max-connections`, open at once.
    pub max_connections: usize,
    /// `--max-streams-per-connection`.
    pub max_streams_per_connection: u32,
    /// The per-report field limits.
    pub report: validate::Limits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // 16k processes with long cgroup paths and pod metadata fit.
            max_report_bytes: 32 << 20,
            // An agent sends one report an interval, and after an outage
            // its backlog: 200 a second drains an hour of 5 s reports in 4 s.
            max_reports_per_second: 200.0,
            max_connections: 16_384,
            // One ingest stream per agent; queries from tools beside it.
            max_streams_per_connection: 16,
            report: validate::Limits::default(),
        }
    }
}
/// Reports queued for the writer; past it, streams wait (and so do agents,
/// which buffer): backpressure instead of unbounded memory.
const WRITER_QUEUE: usize = 256;
/// How long a stopping collector waits for open streams to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often the hour and day tiers catch up with the minute tier: how far
/// behind a report reading them may be.
const ROLL_UP_INTERVAL: Duration = Duration::from_secs(60);

/// Runs the collector until SIGINT or SIGTERM. Prints `listening on ADDR`
/// on stdout once it accepts connections (the address is the bound one, so
/// `--listen 127.0.0.1:0` tells the port it got).
pub fn run(config: CollectorConfig) -> Result<(), CollectorError> {
    if let store::Location::Sqlite { data_dir, .. } = &config.store {
        std::fs::create_dir_all(data_dir).map_err(|source| CollectorError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tally-collector")
        .build()
        .map_err(CollectorError::Runtime)?;
    runtime.block_on(serve(config))
}

async fn serve(config: CollectorConfig) -> Result<(), CollectorError> {
    let security = tally_transport::ServerSecurity {
        token_review: config.token_review.is_some(),
        ..config.security.clone()
    };
    let guard = security.prepare(config.listen)?;
    let reviews = config
        .token_review
        .as_ref()
        .map(|_| Arc::new(token_review::ReviewStats::default()));
    let reviewer = match (&config.token_review, &reviews) {
        (Some(c), Some(stats)) => Some(Arc::new(
            token_review::Reviewer::connect(c.clone(), stats.clone()).await?,
        )),
        _ => None,
    };
    raise_open_files_limit();
    // Blocking (and the PostgreSQL client runs its own runtime): off the
    // async threads.
    let location = config.store.clone();
    let (store, reader, fleet) = tokio::task::spawn_blocking(move || {
        let (mut store, reader) = store::open(&location)?;
        let fleet = store.load_fleet()?;
        Ok::<_, store::StoreError>((store, reader, fleet))
    })
    .await
    .map_err(|e| CollectorError::Open(e.to_string()))??;
    tracing::info!("store {} open: {} workloads", store.describe(), fleet.len());
    let fleet = Arc::new(Mutex::new(fleet));
    let reader: Arc<Mutex<Box<dyn store::StoreReader>>> = Arc::new(Mutex::new(reader));

    let (watch, _) = broadcast::channel::<Arc<pb::WatchEvent>>(query::WATCH_BACKLOG);
    let (jobs, jobs_rx) = mpsc::channel(WRITER_QUEUE);
    let profiles = config
        .profiles_dir
        .clone()
        .map(|dir| Arc::new(crate::fleet_profiles::FleetProfiles::new(dir)));
    // Writes the last interval when `run` returns, whichever way.
    let _profile_writer = profiles
        .as_ref()
        .map(|p| p.spawn_writer(config.profile_interval))
        .transpose()
        .map_err(CollectorError::Runtime)?;
    let otlp_profiles = config
        .export
        .otlp_profiles
        .clone()
        .map(crate::fleet_otlp_profiles::OtlpProfiles::start)
        .transpose()
        .map_err(tally_export::ExportError::from)?;
    let writer = ingest::spawn_writer(
        store,
        jobs_rx,
        fleet.clone(),
        watch.clone(),
        profiles,
        otlp_profiles,
        config.retention,
    )
    .map_err(CollectorError::Runtime)?;

    let snapshot: query::Snapshot = Arc::new(RwLock::new(Arc::new(Vec::new())));
    query::classify_all(&fleet, &snapshot);
    let _exporter = crate::fleet_export::FleetExporter::start(
        &config.export,
        snapshot.clone(),
        config.classify_interval,
        reviews.clone(),
    )?;
    let classifier = {
        let (fleet, snapshot) = (fleet.clone(), snapshot.clone());
        let every = config.classify_interval;
        let refresh = config.store.shared().then(|| {
            Arc::new(Mutex::new(fleet_refresh::FleetRefresh::new(
                reader.clone(),
                tally_core::time::now_unix_ms(),
            )))
        });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (fleet, snapshot, refresh) = (fleet.clone(), snapshot.clone(), refresh.clone());
                // The pass holds the state's lock; keep it off the I/O threads.
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(refresh) = refresh {
                        refresh
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .run(&fleet);
                    }
                    query::classify_all(&fleet, &snapshot)
                })
                .await;
            }
        })
    };
    let retention = {
        let jobs = jobs.clone();
        let keep = config.retention.raw;
        // Often enough that the raw history never exceeds retention by much.
        let retain_every = (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
        tokio::spawn(async move {
            let mut retain = tokio::time::interval(retain_every);
            let mut roll_up = tokio::time::interval(ROLL_UP_INTERVAL.min(retain_every));
            retain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            roll_up.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let job = tokio::select! {
                    _ = retain.tick() => ingest::Job::Retain { now_unix_ms: tally_core::time::now_unix_ms() },
                    _ = roll_up.tick() => ingest::Job::RollUp { now_unix_ms: tally_core::time::now_unix_ms() },
                };
                if jobs.send(job).await.is_err() {
                    break;
                }
            }
        })
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| CollectorError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| CollectorError::Bind {
            addr: config.listen,
            source,
        })?;
    tracing::info!("listening on {local}");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {local}");
    let _ = out.flush();
    drop(out);

    let limits = &config.limits;
    // tonic checks the gRPC length prefix against the limit before it
    // buffers a message, and refuses with OUT_OF_RANGE.
    // The interceptor checks credentials it can check at once; a service
    // account token goes on to its TokenReview, in the request's future.
    let ingest = tonic::service::interceptor::InterceptedService::new(
        token_review::Reviewed::new(
            pb::received::server::ingest_server::IngestServer::new(ingest::IngestService::new(
                jobs,
                limits.report.clone(),
                limits.max_reports_per_second,
                reviews,
            ))
            .max_decoding_message_size(limits.max_report_bytes),
            reviewer.clone(),
        ),
        guard.interceptor(),
    );
    let query = tonic::service::interceptor::InterceptedService::new(
        token_review::Reviewed::new(
            pb::query_server::QueryServer::new(query::QueryService {
                fleet,
                snapshot,
                reader,
                watch,
                retention: config.retention,
            }),
            reviewer,
        ),
        guard.interceptor(),
    );
    let stats = Arc::new(listener::ListenerStats::default());
    let incoming = listener::incoming(listener, limits.max_connections, stats);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = guard.tls.clone() {
        builder = builder.tls_config(tls)?;
    }
    let mut server = tokio::spawn(
        builder
            // Dead agents' streams are noticed and their resources freed.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(limits.max_streams_per_connection))
            // Headers are a few hundred bytes; 16 KiB bounds a hostile
            // client's HPACK tables and header lists.
            .http2_max_header_list_size(Some(16 << 10))
            .add_service(framing::FramingChecked(ingest))
            .add_service(query)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );
    let served = tokio::select! {
        res = &mut server => Some(res),
        () = shutdown_signal() => None,
    };
    let served = match served {
        Some(res) => res,
        None => {
            let _ = stop_tx.send(());
            // Agents' streams never end by themselves: give the graceful
            // shutdown a moment, then stop regardless. Nothing is lost: a
            // report is acknowledged only once committed.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(res) => res,
                Err(_) => {
                    server.abort();
                    tracing::info!("collector stopped (streams still open were cut)");
                    return Ok(());
                }
            }
        }
    };
    classifier.abort();
    retention.abort();
    // The server dropped its job senders: the writer commits what it has
    // and ends. Bounded, in case a stream task still holds a sender.
    let writer_done = tokio::time::timeout(
        SHUTDOWN_GRACE,
        tokio::task::spawn_blocking(move || writer.join()),
    )
    .await;
    match writer_done {
        Ok(Ok(Ok(()))) => {}
        Ok(_) => tracing::error!("the store's writer thread panicked"),
        Err(_) => tracing::warn!("the store's writer was still busy at exit"),
    }
    tracing::info!("collector stopped");
    match served {
        Ok(res) => res.map_err(CollectorError::from),
        Err(join) => Err(CollectorError::Runtime(std::io::Error::other(join))),
    }
}

/// Each connection is a file descriptor: 10,000 agents need more than the
/// usual soft limit of 1024. The hard limit is the operator's to set.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit write and read the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("cannot raise the open files limit to {}", lim.rlim_max);
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!("cannot watch SIGTERM ({err}); stop the collector with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
}

/// Parses `90s`, `10m`, `24h`, `7d`, `500ms`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (like 90s, 10m, 24h, 7d)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "" | "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        "d" => v * 86400.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}` (ms, s, m, h, d)")),
    };
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` must be a positive duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("h").is_err());
    }
}
