//! How agents and tools reach the collector, and how the collector knows
//! who they are: TLS (rustls), optionally mutual, and bearer tokens.
//!
//! - Server: [`ServerSecurity`] turns `--tls-cert/--tls-key`,
//!   `--tls-client-ca` and `--token-file` into tonic's TLS config and a
//!   [`Caller`] per request. With no credentials (no client CA, no tokens)
//!   the collector refuses a non-loopback address unless `--insecure`.
//! - Client: [`ClientSecurity`] (`--collector-ca`, `--collector-cert`,
//!   `--collector-key`, `--collector-token-file`) and [`connect`], which
//!   every client of the collector uses (`agent run`, `top --collector`,
//!   `workloads`).
//!
//! A caller proves its node with a client certificate valid for the node's
//! name (a DNS name in its subjectAltName, checked with webpki as a server
//! name would be), or with a token bound to that node name.
pub mod query;
pub mod reload;
pub mod tokens;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::interceptor::InterceptedService,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig},
};

pub use reload::ReloadingTokens;
pub use tokens::{TokenFileError, TokenTable};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
    #[error("--tls-cert and --tls-key go together")]
    HalfIdentity,
    #[error(
        "refusing to listen on {addr} without credentials: give --tls-client-ca (mutual TLS) or --token-file, or --insecure to accept any client"
    )]
    NoCredentials { addr: SocketAddr },
    #[error(
        "refusing to accept bearer tokens in clear text on {addr}: give --tls-cert and --tls-key, or --insecure"
    )]
    TokensInClear { addr: SocketAddr },
    #[error("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")]
    ClientCaWithoutTls,
    #[error("the token in {} is not a valid header value", path.display())]
    BadToken { path: PathBuf },
    #[error(
        "bad collector URL `{url}`: {reason} (expected e.g. http://collector:4317 or https://…)"
    )]
    BadUrl { url: String, reason: String },
    #[error("TLS settings for {url}: {source}")]
    Tls {
        url: String,
        source: tonic::transport::Error,
    },
    #[error(
        "--collector-ca, --collector-cert, --collector-key and --collector-tls-name need an https:// collector URL"
    )]
    TlsOptionsWithoutHttps,
}

/// Who sent a request, as far as the collector could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Proved to be this node (client certificate or node-bound token).
    Node(String),
    /// May write for any node: a `*` token, or no credentials configured
    /// (loopback, or `--insecure`).
    AnyNode,
    /// A client certificate the client CA signed; which nodes it may write
    /// for is checked per report against its names.
    Certificate(Arc<Vec<tonic::transport::CertificateDer<'static>>>),
    /// A bearer that is no static token, with `--token-review-audience`:
    /// a Kubernetes service account token not verified yet. It may do
    /// nothing until the collector's TokenReview turns it into
    /// [`Caller::ServiceAccount`] (asynchronously, which an interceptor
    /// cannot).
    UnreviewedToken(Arc<str>),
    /// A service account token the API server vouched for, issued to a pod
    /// on this node (its `authentication.kubernetes.io/node-name`); one
    /// bound to no pod names none, and may read but not write.
    ServiceAccount { node: Option<String> },
}

impl Caller {
    /// Whether this caller may write reports for `node`.
    pub fn may_write(&self, node: &str) -> bool {
        match self {
            Caller::AnyNode => true,
            Caller::Node(name) => name == node,
            Caller::ServiceAccount { node: name } => name.as_deref() == Some(node),
            Caller::Certificate(chain) => chain
                .first()
                .is_some_and(|leaf| certificate_names_node(leaf, node)),
            Caller::UnreviewedToken(_) => false,
        }
    }

    /// What the caller proved, as a refusal names it.
    pub fn describe(&self) -> String {
        match self {
            Caller::AnyNode => "any node".to_string(),
            Caller::Node(name) => format!("a token bound to node `{name}`"),
            Caller::Certificate(_) => "a client certificate for other names".to_string(),
            Caller::UnreviewedToken(_) => "a token not reviewed".to_string(),
            Caller::ServiceAccount { node: Some(node) } => format!(
                "a service account token issued on node `{node}`, its `user.extra[authentication.kubernetes.io/node-name]`"
            ),
            Caller::ServiceAccount { node: None } => "a service account token bound to no pod: `user.extra[authentication.kubernetes.io/node-name]` names no node, so it may read but not write".to_string(),
        }
    }
}

/// Whether the certificate is valid for `node` as a DNS name (its
/// subjectAltName), the check a TLS client makes of a server's name.
fn certificate_names_node(leaf: &tonic::transport::CertificateDer<'_>, node: &str) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let Ok(name) = rustls_pki_types::ServerName::try_from(node) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

/// The collector's side.
#[derive(Debug, Clone, Default)]
pub struct ServerSecurity {
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    /// Accept clients without credentials on any address.
    pub insecure: bool,
    /// Kubernetes service account tokens, reviewed by the API server
    /// (`--token-review-audience`): a bearer that is no static token is
    /// passed on as [`Caller::UnreviewedToken`].
    pub token_review: bool,
}

/// What [`ServerSecurity::prepare`] makes: the TLS config for tonic, and
/// how to tell each request's caller.
#[derive(Debug, Clone)]
pub struct Guard {
    pub tls: Option<ServerTlsConfig>,
    tokens: Option<Arc<ReloadingTokens>>,
    mutual_tls: bool,
    token_review: bool,
}

impl ServerSecurity {
    /// Reads the certificates and tokens and checks the combination is
    /// safe for `addr`.
    pub fn prepare(&self, addr: SocketAddr) -> Result<Guard, TransportError> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTlsConfig::new().identity(Identity::from_pem(
                read("the TLS certificate", cert)?,
                read("the TLS key", key)?,
            ))),
            (None, None) => None,
            _ => return Err(TransportError::HalfIdentity),
        };
        let (tls, mutual_tls) = match (tls, &self.client_ca) {
            (Some(tls), Some(ca)) => (
                Some(tls.client_ca_root(Certificate::from_pem(read("the client CA", ca)?))),
                true,
            ),
            (None, Some(_)) => return Err(TransportError::ClientCaWithoutTls),
            (tls, None) => (tls, false),
        };
        let tokens = self
            .token_file
            .as_deref()
            .map(ReloadingTokens::load)
            .transpose()?
            .map(Arc::new);
        let loopback = addr.ip().is_loopback();
        let bearers = tokens.is_some() || self.token_review;
        if !self.insecure && !loopback {
            if !mutual_tls && !bearers {
                return Err(TransportError::NoCredentials { addr });
            }
            if bearers && tls.is_none() {
                return Err(TransportError::TokensInClear { addr });
            }
        }
        if self.insecure && !mutual_tls && !bearers && !loopback {
            tracing::warn!(
                "--insecure: any client that reaches {addr} may write reports for any node"
            );
        }
        Ok(Guard {
            tls,
            tokens,
            mutual_tls,
            token_review: self.token_review,
        })
    }
}

impl Guard {
    /// The caller of `request`: its token (when tokens are configured),
    /// else its client certificate (mutual TLS), else anyone. With both,
    /// both must pass and the token's binding decides.
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let certificate = if self.mutual_tls {
            // rustls already refused a handshake without a valid client
            // certificate; a request without one cannot get here over TLS.
            let chain = request
                .peer_certs()
                .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
            Some(Caller::Certificate(chain))
        } else {
            None
        };
        match (&self.tokens, self.token_review) {
            (Some(tokens), false) => tokens.current().caller(request),
            (Some(tokens), true) => tokens
                .current()
                .caller(request)
                .or_else(|_| tokens::bearer(request).map(unreviewed)),
            (None, true) => tokens::bearer(request).map(unreviewed),
            (None, false) => Ok(certificate.unwrap_or(Caller::AnyNode)),
        }
    }

    /// An interceptor that refuses requests without valid credentials
    /// before any of their messages is read, and leaves the [`Caller`] in
    /// the request's extensions.
    pub fn interceptor(
        &self,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let guard = self.clone();
        move |mut request: Request<()>| {
            let caller = guard.caller(&request)?;
            request.extensions_mut().insert(caller);
            Ok(request)
        }
    }
}

fn unreviewed(token: &[u8]) -> Caller {
    Caller::UnreviewedToken(Arc::from(String::from_utf8_lossy(token).as_ref()))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|source| TransportError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// A client's side: how to reach the collector.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    /// CA of the collector's certificate; the system's roots otherwise.
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A file holding the bearer token (a Kubernetes Secret's key); read
    /// at each connection, so a rotated token is picked up.
    pub token_file: Option<PathBuf>,
    /// The name the collector's certificate must carry, where it differs
    /// from the URL's host (a port-forward to localhost, an IP address).
    pub tls_name: Option<String>,
}

/// Adds `authorization: Bearer …` to every request.
#[derive(Clone)]
pub struct Authorize(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Authorize {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// A connection to the collector with its credentials.
pub type CollectorChannel = InterceptedService<Channel, Authorize>;

impl ClientSecurity {
    /// Checks a collector URL and makes its endpoint: a missing scheme
    /// means http; https uses TLS with `ca` (or the system's roots) and the
    /// client certificate, if any.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TransportError> {
        let bad = |reason: &str| TransportError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let full = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let https = full.starts_with("https://");
        if !https && !full.starts_with("http://") {
            return Err(bad("the scheme must be http or https"));
        }
        let endpoint = Endpoint::from_shared(full).map_err(|e| bad(&e.to_string()))?;
        if endpoint.uri().host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if !https {
            if self.ca.is_some()
                || self.cert.is_some()
                || self.key.is_some()
                || self.tls_name.is_some()
            {
                return Err(TransportError::TlsOptionsWithoutHttps);
            }
            return Ok(endpoint);
        }
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read("the collector CA", ca)?)),
            None => tls.with_native_roots(),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(
                    read("the client certificate", cert)?,
                    read("the client key", key)?,
                ));
            }
            (None, None) => {}
            _ => return Err(bad("--collector-cert and --collector-key go together")),
        }
        if let Some(name) = &self.tls_name {
            tls = tls.domain_name(name.clone());
        }
        endpoint
            .tls_config(tls)
            .map_err(|source| TransportError::Tls {
                url: url.to_owned(),
                source,
            })
    }

    /// The `authorization` value, read from the token file now.
    pub fn authorize(&self) -> Result<Authorize, TransportError> {
        let Some(path) = &self.token_file else {
            return Ok(Authorize(None));
        };
        let token = read("the collector token", path)?;
        let token = String::from_utf8_lossy(&token);
        let value = format!("Bearer {}", token.trim())
            .parse::<MetadataValue<Ascii>>()
            .map_err(|_| TransportError::BadToken { path: path.clone() })?;
        Ok(Authorize(Some(value)))
    }
}

/// Connects to the collector at `endpoint` (from
/// [`ClientSecurity::endpoint`]) with the caller's token.
pub async fn connect(
    endpoint: &Endpoint,
    security: &ClientSecurity,
) -> Result<CollectorChannel, ConnectError> {
    let authorize = security.authorize()?;
    let channel = endpoint.connect().await?;
    Ok(InterceptedService::new(channel, authorize))
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Credentials(#[from] TransportError),
    #[error(transparent)]
    Connect(#[from] tonic::transport::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_credentials_only_loopback_or_insecure() {
        let none = ServerSecurity::default();
        assert!(none.prepare(addr("127.0.0.1:4317")).is_ok());
        assert!(none.prepare(addr("[::1]:4317")).is_ok());
        assert!(matches!(
            none.prepare(addr("0.0.0.0:4317")),
            Err(TransportError::NoCredentials { .. })
        ));
        let insecure = ServerSecurity {
            insecure: true,
            ..Default::default()
        };
        assert!(insecure.prepare(addr("0.0.0.0:4317")).is_ok());
    }

    #[test]
    fn tokens_need_tls_off_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "* aaaaaaaaaaaaaaaaaaaaaaaa\n").unwrap();
        let s = ServerSecurity {
            token_file: Some(tokens),
            ..Default::default()
        };
        assert!(s.prepare(addr("127.0.0.1:1")).is_ok());
        assert!(matches!(
            s.prepare(addr("10.0.0.1:1")),
            Err(TransportError::TokensInClear { .. })
        ));
        let half = ServerSecurity {
            tls_cert: Some("c".into()),
            ..Default::default()
        };
        assert!(matches!(
            half.prepare(addr("127.0.0.1:1")),
            Err(TransportError::HalfIdentity)
        ));
        let ca_only = ServerSecurity {
            client_ca: Some("ca".into()),
            ..Default::default()
        };
        assert!(matches!(
            ca_only.prepare(addr("127.0.0.1:1")),
            Err(TransportError::ClientCaWithoutTls)
        ));
    }

    #[test]
    fn client_urls() {
        let c = ClientSecurity::default();
        assert!(c.endpoint("http://collector:4317").is_ok());
        assert_eq!(
            c.endpoint("collector:4317").unwrap().uri().to_string(),
            "http://collector:4317/"
        );
        assert!(c.endpoint("https://collector:4317").is_ok());
        assert!(c.endpoint("ftp://c:1").is_err());
        assert!(c.endpoint("http://").is_err());
        assert!(c.endpoint("http://a b").is_err());
        let with_ca = ClientSecurity {
            ca: Some("/nonexistent".into()),
            ..Default::default()
        };
        assert!(matches!(
            with_ca.endpoint("http://c:1"),
            Err(TransportError::TlsOptionsWithoutHttps)
        ));
        assert!(matches!(
            with_ca.endpoint("https://c:1"),
            Err(TransportError::Read { .. })
        ));
        let named = ClientSecurity {
            tls_name: Some("tally-collector.tally.svc".into()),
            ..Default::default()
        };
        assert!(matches!(
            named.endpoint("http://localhost:4317"),
            Err(TransportError::TlsOptionsWithoutHttps)
        ));
        assert!(named.endpoint("https://localhost:4317").is_ok());
    }

    #[test]
    fn anyone_may_write_for_any_node_only_without_credentials() {
        assert!(Caller::AnyNode.may_write("x"));
        assert!(Caller::Node("a".into()).may_write("a"));
        assert!(!Caller::Node("a".into()).may_write("b"));
        assert!(!Caller::Certificate(Arc::new(vec![])).may_write("a"));
        let junk = tonic::transport::CertificateDer::from(vec![1, 2, 3]);
        assert!(!Caller::Certificate(Arc::new(vec![junk])).may_write("a"));
    }
}
