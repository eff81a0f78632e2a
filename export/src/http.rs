//! The metrics endpoint: `GET /metrics` (Prometheus text format),
//! `GET /healthz` (the process is alive and serving) and `GET /readyz`
//! (ready: on the agent, probes attached and the first window done; on the
//! collector, the store open). On a thread and runtime of its own, so that
//! a slow scraper never touches collection.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use super::prom;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr} for metrics: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the metrics thread: {0}")]
    Thread(std::io::Error),
}

/// Renders the exposition on each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
struct AppState {
    render: Render,
    ready: Arc<AtomicBool>,
}

/// The running endpoint; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `listen` (port 0 picks one; see [`MetricsServer::addr`]) and
    /// serves from a thread of its own.
    pub fn start(
        listen: SocketAddr,
        render: Render,
        ready: Arc<AtomicBool>,
    ) -> Result<Self, HttpError> {
        let bind_err = |source| HttpError::Bind {
            addr: listen,
            source,
        };
        let listener = std::net::TcpListener::bind(listen).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(AppState { render, ready });
        let thread = thread::Builder::new()
            .name("tally-metrics".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(err) => {
                        tracing::error!("cannot start the metrics runtime: {err}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(err) => {
                            tracing::error!("metrics listener: {err}");
                            return;
                        }
                    };
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await;
                    if let Err(err) = served {
                        tracing::error!("metrics endpoint failed: {err}");
                    }
                });
            })
            .map_err(HttpError::Thread)?;
        tracing::info!("serving metrics on http://{addr}/metrics");
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Not joined: a scraper holding its connection open must not hold
        // up the exit; the thread ends with the process at the latest.
        drop(self.thread.take());
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let render = state.render.clone();
    // Rendering thousands of series is CPU work: off the I/O loop.
    let body = tokio::task::spawn_blocking(move || render())
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, prom::CONTENT_TYPE)], body)
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_health_and_readiness() {
        let ready = Arc::new(AtomicBool::new(false));
        let server = MetricsServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(|| "tally_x 1\n".to_string()),
            ready.clone(),
        )
        .unwrap();
        let addr = server.addr();
        let m = get(addr, "/metrics");
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("text/plain; version=0.0.4"));
        assert!(m.ends_with("tally_x 1\n"));
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 503"));
        ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
    }
}
