//! The exporter against an OTLP receiver served by tonic on loopback:
//! retries on `UNAVAILABLE` with backoff, gzip, headers, time-outs, TLS.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex, atomic::Ordering},
    thread,
    time::{Duration, Instant, SystemTime},
};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use tonic::{
    codec::CompressionEncoding,
    transport::{Identity, ServerTlsConfig},
};

use super::{OtlpConfig, OtlpExporter};
use crate::{
    attrs::NodeAttrs,
    series::{SeriesLimits, SeriesState, Snapshot},
};

/// An OTLP server that refuses the first `refuse` exports with
/// `UNAVAILABLE`, sleeps `delay` in each, and records what it saw.
struct Receiver {
    refuse: usize,
    delay: Duration,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    encoding: Option<String>,
    authorization: Option<String>,
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let header = |k: &str| {
            req.metadata()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(Seen {
                at: Instant::now(),
                encoding: header("grpc-encoding"),
                authorization: header("authorization"),
            });
            seen.len()
        };
        tokio::time::sleep(self.delay).await;
        if n <= self.refuse {
            return Err(tonic::Status::unavailable("not yet"));
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Serves `receiver` on a loopback port from a thread of its own.
fn serve(receiver: Receiver) -> std::net::SocketAddr {
    serve_tls(receiver, None)
}

/// Serves `receiver`, over TLS with `identity` (certificate and key, PEM)
/// when given, on a loopback port from a thread of its own.
fn serve_tls(receiver: Receiver, identity: Option<(Vec<u8>, Vec<u8>)>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let service =
                MetricsServiceServer::new(receiver).accept_compressed(CompressionEncoding::Gzip);
            let mut server = tonic::transport::Server::builder();
            if let Some((cert, key)) = identity {
                let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
                server = server.tls_config(tls).unwrap();
            }
            let _ = server
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
    });
    addr
}

/// A CA, and a certificate for 127.0.0.1 it signed (rustls refuses a CA's
/// own certificate as a server's), made with the openssl command in `dir`:
/// `(CA certificate file, server certificate, server key)`.
fn certificates(dir: &Path) -> Option<(PathBuf, Vec<u8>, Vec<u8>)> {
    // Arguments split at spaces: none has one.
    let openssl = |args: &str| {
        Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .ok()?;
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let made = openssl(&format!(
        "req -x509 {ec} -keyout ca.key -out ca.pem -subj /CN=tally-test-ca -days 1"
    )) && openssl(&format!(
        "req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"
    )) && openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
         -out server.pem -days 1 -extfile server.ext",
    );
    if !made {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is missing under CI (apt-get install openssl)"
        );
        eprintln!("SKIP the TLS export test: no openssl command to make certificates");
        return None;
    }
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    Some((dir.join("ca.pem"), read("server.pem"), read("server.key")))
}

fn snapshot() -> Arc<Snapshot> {
    let s = SeriesState::new(
        NodeAttrs::default(),
        SeriesLimits::default(),
        SystemTime::now(),
    );
    Arc::new(s.snapshot(SystemTime::now(), 1.0))
}

#[test]
fn unavailable_is_retried_with_backoff_gzipped_with_headers() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = serve(Receiver {
        refuse: 2,
        delay: Duration::ZERO,
        seen: seen.clone(),
    });
    let mut config = OtlpConfig::new(format!("http://{addr}"));
    config.headers = vec![("authorization".into(), "Bearer t".into())];
    config.backoff_min = Duration::from_millis(200);
    let exporter = OtlpExporter::start(config).unwrap();
    exporter.push(snapshot());
    assert!(exporter.flush(Duration::from_secs(10)), "sent in the end");
    let stats = exporter.stats();
    assert_eq!(stats.exported.load(Ordering::Relaxed), 1);
    assert_eq!(stats.failed_attempts.load(Ordering::Relaxed), 2);
    assert_eq!(stats.dropped_failed.load(Ordering::Relaxed), 0);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two refusals, then accepted: {seen:?}");
    for s in &seen {
        assert_eq!(s.encoding.as_deref(), Some("gzip"));
        assert_eq!(s.authorization.as_deref(), Some("Bearer t"));
    }
    // Backoff: at least half the first step, then half the doubled one.
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(200), "{gaps:?}");
}

#[test]
fn an_export_past_its_time_out_is_retried_then_dropped_and_counted() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = serve(Receiver {
        refuse: 0,
        delay: Duration::from_secs(5),
        seen: seen.clone(),
    });
    let mut config = OtlpConfig::new(format!("http://{addr}"));
    config.gzip = false;
    config.timeout = Duration::from_millis(200);
    config.backoff_min = Duration::from_millis(50);
    config.max_retry = Duration::from_millis(900);
    let exporter = OtlpExporter::start(config).unwrap();
    let started = Instant::now();
    exporter.push(snapshot());
    assert!(exporter.flush(Duration::from_secs(10)));
    let stats = exporter.stats();
    let attempts = stats.failed_attempts.load(Ordering::Relaxed);
    assert!(attempts >= 2, "retried after DEADLINE_EXCEEDED: {attempts}");
    assert_eq!(stats.exported.load(Ordering::Relaxed), 0);
    assert_eq!(stats.dropped_failed.load(Ordering::Relaxed), 1);
    // Each attempt ends at the time-out, not at the server's 5 s.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].encoding, None, "not compressed when asked not to");
}

#[test]
fn tls_with_the_given_ca_is_verified_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = certificates(dir.path()) else {
        return;
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = serve_tls(
        Receiver {
            refuse: 0,
            delay: Duration::ZERO,
            seen: seen.clone(),
        },
        Some((cert, key)),
    );
    // Without the CA (the system's roots only) the server is not trusted.
    let mut untrusted = OtlpConfig::new(format!("https://{addr}"));
    untrusted.backoff_min = Duration::from_millis(50);
    untrusted.max_retry = Duration::from_millis(300);
    let exporter = OtlpExporter::start(untrusted).unwrap();
    exporter.push(snapshot());
    assert!(exporter.flush(Duration::from_secs(10)));
    let stats = exporter.stats();
    assert_eq!(stats.exported.load(Ordering::Relaxed), 0);
    assert!(stats.failed_attempts.load(Ordering::Relaxed) >= 1);
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the server"
    );
    drop(exporter);

    let mut trusted = OtlpConfig::new(format!("https://{addr}"));
    trusted.ca_file = Some(ca);
    let exporter = OtlpExporter::start(trusted).unwrap();
    exporter.push(snapshot());
    assert!(exporter.flush(Duration::from_secs(10)));
    assert_eq!(exporter.stats().exported.load(Ordering::Relaxed), 1);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn a_bad_endpoint_or_ca_is_an_error_at_start() {
    assert!(matches!(
        OtlpExporter::start(OtlpConfig::new("ftp://collector:4317")),
        Err(super::OtlpError::BadUrl { .. })
    ));
    let mut config = OtlpConfig::new("https://collector:4317");
    config.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(matches!(
        OtlpExporter::start(config),
        Err(super::OtlpError::Ca { .. })
    ));
}
