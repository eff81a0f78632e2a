//! The command-line flags of `ServerSecurity` and `ClientSecurity`, and the
//! collector's limits, flattened into the commands that serve or reach the
//! collector.
use std::{path::PathBuf, sync::Arc};

use tally_collector::{
    Limits,
    token_review::{TokenReviewConfig, TokenReviewSetup},
    validate,
};
use tally_transport::{ClientSecurity, ServerSecurity};

/// `agent collector`'s transport security.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Serve TLS with this certificate (PEM, with its chain).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: require client certificates signed by this CA (PEM); a
    /// certificate writes only for the node named in its subjectAltName.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Require a bearer token from this file (`NODE TOKEN` a line, `*` for
    /// any node; see the README). Followed: a changed file takes effect
    /// within 5 s; one that does not parse is logged and the old tokens stay.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Accept clients without credentials on a non-loopback address.
    #[arg(long)]
    pub insecure: bool,
    /// Accept Kubernetes service account tokens issued for this audience
    /// (the agents' projected token), each reviewed once per stream by the
    /// API server (TokenReview): a token writes only for the node its pod
    /// runs on. Static tokens (--token-file) still work beside them.
    #[arg(long, value_name = "AUDIENCE")]
    pub token_review_audience: Option<String>,
    /// The agents' service account, NAMESPACE:NAME: a token of any other
    /// account is refused.
    #[arg(long, value_name = "NAMESPACE:NAME", default_value = "tally:tally-agent", value_parser = parse_service_account)]
    pub token_review_service_account: (String, String),
    /// Reach the API server for TokenReviews with this kubeconfig instead
    /// of the pod's in-cluster credentials.
    #[arg(long, value_name = "FILE", requires = "token_review_audience")]
    pub token_review_kubeconfig: Option<PathBuf>,
}

fn parse_service_account(s: &str) -> Result<(String, String), String> {
    tally_collector::token_review::parse_service_account(s)
}

impl ServerArgs {
    /// The TokenReview settings, when service account tokens are on.
    pub fn token_review(&self) -> Option<TokenReviewSetup> {
        let audience = self.token_review_audience.clone()?;
        let (namespace, service_account) = self.token_review_service_account.clone();
        Some(TokenReviewSetup {
            config: TokenReviewConfig {
                audience,
                namespace,
                service_account,
            },
            api: Arc::new(super::token_review::KubeTokenReviews::new(
                self.token_review_kubeconfig.clone(),
            )),
        })
    }
}

impl From<&ServerArgs> for ServerSecurity {
    fn from(a: &ServerArgs) -> Self {
        ServerSecurity {
            tls_cert: a.tls_cert.clone(),
            tls_key: a.tls_key.clone(),
            client_ca: a.tls_client_ca.clone(),
            token_file: a.token_file.clone(),
            insecure: a.insecure,
            token_review: a.token_review_audience.is_some(),
        }
    }
}

/// How a client reaches the collector (`agent run`, `top --collector`,
/// `workloads`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientArgs {
    /// CA certificate (PEM) of an https:// collector; the system's roots
    /// otherwise.
    #[arg(long, value_name = "FILE")]
    pub collector_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a collector that requires mutual TLS.
    #[arg(long, value_name = "FILE", requires = "collector_key")]
    pub collector_cert: Option<PathBuf>,
    /// The key of --collector-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "collector_cert")]
    pub collector_key: Option<PathBuf>,
    /// File holding the bearer token for the collector (read at every
    /// connection, so a rotated Secret is picked up).
    #[arg(long, value_name = "FILE")]
    pub collector_token_file: Option<PathBuf>,
    /// The name to check the collector's certificate against, instead of
    /// the URL's host: `tally-collector.tally.svc` through a
    /// `kubectl port-forward` to localhost.
    #[arg(long, value_name = "NAME")]
    pub collector_tls_name: Option<String>,
}

impl From<&ClientArgs> for ClientSecurity {
    fn from(a: &ClientArgs) -> Self {
        ClientSecurity {
            ca: a.collector_ca.clone(),
            cert: a.collector_cert.clone(),
            key: a.collector_key.clone(),
            token_file: a.collector_token_file.clone(),
            tls_name: a.collector_tls_name.clone(),
        }
    }
}

/// `agent collector`'s limits.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Largest encoded report accepted.
    #[arg(long, default_value_t = 32 << 20)]
    pub max_report_bytes: usize,
    /// Reports per second one stream may send; past it the stream is read
    /// more slowly (nothing is refused).
    #[arg(long, default_value_t = 200.0)]
    pub max_reports_per_second: f64,
    /// Connections open at once; past it new ones are closed.
    #[arg(long, default_value_t = 16_384)]
    pub max_connections: usize,
    /// Processes in one report.
    #[arg(long, default_value_t = 65_536)]
    pub max_processes_per_report: usize,
    /// Workloads (containers, and processes outside one) in one report.
    #[arg(long, default_value_t = 65_536)]
    pub max_workloads_per_report: usize,
    /// Labels per pod.
    #[arg(long, default_value_t = 16)]
    pub max_labels: usize,
    /// Bytes of one label value.
    #[arg(long, default_value_t = 63)]
    pub max_label_value_bytes: usize,
}

impl LimitArgs {
    /// The limits, with reports accepted back to `retention`.
    pub fn limits(&self, retention: std::time::Duration) -> Limits {
        let defaults = Limits::default();
        Limits {
            max_report_bytes: self.max_report_bytes,
            max_reports_per_second: self.max_reports_per_second.max(0.1),
            max_connections: self.max_connections.max(1),
            max_streams_per_connection: defaults.max_streams_per_connection,
            report: validate::Limits {
                max_processes_per_report: self.max_processes_per_report,
                max_workloads_per_report: self.max_workloads_per_report,
                max_labels: self.max_labels,
                max_label_value_bytes: self.max_label_value_bytes,
                max_age_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
                ..defaults.report
            },
        }
    }
}
