//! Node identity: the node's name (the downward API's `spec.nodeName`), and
//! its EC2 instance type, zone, region and lifecycle (on-demand or spot).
//!
//! The EC2 facts come from IMDSv2 (a token first, then one GET each; 1 s
//! time-outs and no retries), else from the node's labels
//! (`node.kubernetes.io/instance-type`, `topology.kubernetes.io/zone` and
//! `…/region`, `eks.amazonaws.com/capacityType` or Karpenter's
//! `karpenter.sh/capacity-type`), else they are "unknown", said once in the
//! log. All of it runs on a thread of its own: collection starts at once,
//! and reports carry empty fields until the answer is in.
use std::{
    collections::BTreeMap,
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream, ToSocketAddrs as _},
    sync::{Arc, RwLock, mpsc},
    time::{Duration, Instant},
};

use tally_core::model::NodeIdentity;

/// IMDS's address on every EC2 instance (IPv4).
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// Each IMDS request's time-out: connect, send and answer.
pub const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the node's labels are waited for when IMDS gave nothing.
const LABELS_WAIT: Duration = Duration::from_secs(30);
pub use tally_core::model::node::UNKNOWN;

/// The node identity reports carry, filled in from a background thread.
#[derive(Debug, Clone, Default)]
pub struct SharedIdentity(Arc<RwLock<NodeIdentity>>);

impl SharedIdentity {
    pub fn new(identity: NodeIdentity) -> Self {
        Self(Arc::new(RwLock::new(identity)))
    }

    /// A copy of the identity as known now.
    pub fn get(&self) -> NodeIdentity {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut NodeIdentity)) {
        f(&mut self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }
}

/// Instance type, zone, region and lifecycle; `None` where not known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ec2Facts {
    pub instance_type: Option<String>,
    pub zone: Option<String>,
    pub region: Option<String>,
    /// `on-demand` or `spot` (IMDS's spelling; labels are converted).
    pub lifecycle: Option<String>,
}

impl Ec2Facts {
    pub fn is_complete(&self) -> bool {
        self.instance_type.is_some()
            && self.zone.is_some()
            && self.region.is_some()
            && self.lifecycle.is_some()
    }

    /// Fills what `self` lacks from `other`.
    pub fn or(self, other: Ec2Facts) -> Ec2Facts {
        Ec2Facts {
            instance_type: self.instance_type.or(other.instance_type),
            zone: self.zone.or(other.zone),
            region: self.region.or(other.region),
            lifecycle: self.lifecycle.or(other.lifecycle),
        }
    }

    /// The facts the node's labels hold.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Ec2Facts {
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| labels.get(*k))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let lifecycle = get(&[
            "eks.amazonaws.com/capacityType",
            "karpenter.sh/capacity-type",
        ])
        .map(
            |v| match v.to_ascii_lowercase().replace('_', "-").as_str() {
                "on-demand" => "on-demand".to_owned(),
                "spot" => "spot".to_owned(),
                other => other.to_owned(),
            },
        );
        Ec2Facts {
            instance_type: get(&[
                "node.kubernetes.io/instance-type",
                "beta.kubernetes.io/instance-type",
            ]),
            zone: get(&[
                "topology.kubernetes.io/zone",
                "failure-domain.beta.kubernetes.io/zone",
            ]),
            region: get(&[
                "topology.kubernetes.io/region",
                "failure-domain.beta.kubernetes.io/region",
            ]),
            lifecycle,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("bad IMDS endpoint {0:?} (expected http://HOST[:PORT])")]
    Endpoint(String),
    #[error("IMDS at {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("IMDS at {addr} answered {status} to {path}")]
    Status {
        addr: String,
        path: &'static str,
        status: u16,
    },
    #[error("IMDS at {addr} sent a malformed answer to {path}")]
    Malformed { addr: String, path: &'static str },
}

/// A minimal IMDSv2 client: plain HTTP/1.1 over a TCP connection per
/// request, every step bounded by the time-out, no retries.
#[derive(Debug, Clone)]
pub struct Imds {
    host: String,
    port: u16,
    timeout: Duration,
}

impl Imds {
    /// `http://HOST[:PORT]` (IMDS speaks plain HTTP).
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, ImdsError> {
        let bad = || ImdsError::Endpoint(endpoint.to_owned());
        let rest = endpoint.strip_prefix("http://").ok_or_else(bad)?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
            (host, rest.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = port.map_or(Ok(80), |p| p.parse::<u16>().map_err(|_| bad()))?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            timeout,
        })
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The token, then the four facts. A fact IMDS does not have is `None`;
    /// any failure of the token (no IMDS, IMDSv1 only, hop limit) is an
    /// error at once.
    pub fn fetch(&self) -> Result<Ec2Facts, ImdsError> {
        let token = self.request(
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
        )?;
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(ImdsError::Malformed {
                addr: self.addr(),
                path: "/latest/api/token",
            });
        }
        let get = |path: &'static str| -> Result<Option<String>, ImdsError> {
            match self.request("GET", path, &[("X-aws-ec2-metadata-token", &token)]) {
                Ok(v) => Ok(Some(v.trim().to_owned()).filter(|v| !v.is_empty())),
                Err(ImdsError::Status { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        Ok(Ec2Facts {
            instance_type: get("/latest/meta-data/instance-type")?,
            zone: get("/latest/meta-data/placement/availability-zone")?,
            region: get("/latest/meta-data/placement/region")?,
            lifecycle: get("/latest/meta-data/instance-life-cycle")?,
        })
    }

    fn request(
        &self,
        method: &str,
        path: &'static str,
        headers: &[(&str, &str)],
    ) -> Result<String, ImdsError> {
        let addr = self.addr();
        let io_err = |source| ImdsError::Io {
            addr: addr.clone(),
            source,
        };
        let deadline = Instant::now() + self.timeout;
        let target: SocketAddr = addr
            .to_socket_addrs()
            .map_err(io_err)?
            .next()
            .ok_or_else(|| io_err(io::Error::other("no address")))?;
        let mut stream = TcpStream::connect_timeout(&target, self.timeout).map_err(io_err)?;
        let remaining = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        stream
            .set_write_timeout(Some(remaining()))
            .map_err(io_err)?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tally-agent\r\nAccept: */*\r\nContent-Length: 0\r\nConnection: close\r\n",
            self.host
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).map_err(io_err)?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if Instant::now() >= deadline {
                return Err(io_err(io::ErrorKind::TimedOut.into()));
            }
            stream.set_read_timeout(Some(remaining())).map_err(io_err)?;
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if raw.len() > 64 << 10 {
                        break;
                    }
                    if let Some(done) = complete(&raw) {
                        raw.truncate(done);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let malformed = || ImdsError::Malformed {
            addr: addr.clone(),
            path,
        };
        let (status, body) = parse_response(&raw).ok_or_else(malformed)?;
        if status != 200 {
            return Err(ImdsError::Status { addr, path, status });
        }
        String::from_utf8(body).map_err(|_| malformed())
    }
}

/// The length of a complete response with a Content-Length, once it is all
/// there (so a server that keeps the connection open is not waited for).
fn complete(raw: &[u8]) -> Option<usize> {
    let head_end = find(raw, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let len: usize = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })?;
    (raw.len() >= head_end + len).then_some(head_end + len)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Status and body of an HTTP/1.1 response (Content-Length, chunked, or
/// up to the end of the connection).
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let head_end = find(raw, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            length = v.parse::<usize>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = &raw[head_end + 4..];
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let line_end = find(rest, b"\r\n")?;
            let size = usize::from_str_radix(
                std::str::from_utf8(&rest[..line_end])
                    .ok()?
                    .split(';')
                    .next()?
                    .trim(),
                16,
            )
            .ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        out
    } else {
        match length {
            Some(n) => body.get(..n)?.to_vec(),
            None => body.to_vec(),
        }
    };
    Some((status, body))
}

/// Resolves the EC2 facts on a thread of its own and writes them into
/// `shared`: IMDS first (unless `imds` is `None`), then the node labels
/// `labels` delivers (if any), then "unknown".
pub fn resolve_in_background(
    shared: SharedIdentity,
    imds: Option<Imds>,
    labels: Option<mpsc::Receiver<BTreeMap<String, String>>>,
) {
    let spawned = std::thread::Builder::new()
        .name("tally-node-identity".into())
        .spawn(move || {
            let started = Instant::now();
            let (from_imds, imds_failure) = match imds.as_ref().map(Imds::fetch) {
                Some(Ok(facts)) => (facts, None),
                Some(Err(e)) => (Ec2Facts::default(), Some(e.to_string())),
                None => (Ec2Facts::default(), Some("disabled".to_owned())),
            };
            if from_imds.is_complete() {
                tracing::info!(
                    "node identity from IMDS in {:?}: {}",
                    started.elapsed(),
                    describe(&from_imds)
                );
            }
            let mut facts = from_imds;
            if !facts.is_complete()
                && let Some(rx) = labels
                && let Ok(labels) = rx.recv_timeout(LABELS_WAIT)
            {
                let from_labels = Ec2Facts::from_labels(&labels);
                facts = facts.or(from_labels);
                tracing::info!(
                    "node identity from the node's labels (IMDS: {}): {}",
                    imds_failure.as_deref().unwrap_or("incomplete"),
                    describe(&facts)
                );
            }
            if facts.instance_type.is_none() && facts.zone.is_none() {
                tracing::info!(
                    "not on EC2 as far as the agent can tell (IMDS: {}; no node labels): instance type, zone, region and lifecycle are \"{UNKNOWN}\"",
                    imds_failure.as_deref().unwrap_or("incomplete")
                );
            }
            let or_unknown = |v: Option<String>| v.unwrap_or_else(|| UNKNOWN.to_owned());
            shared.update(|id| {
                id.instance_type = or_unknown(facts.instance_type);
                id.zone = or_unknown(facts.zone);
                id.region = or_unknown(facts.region);
                id.lifecycle = or_unknown(facts.lifecycle);
            });
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the node identity thread ({e}); EC2 facts stay empty");
    }
}

fn describe(f: &Ec2Facts) -> String {
    let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    format!(
        "instance type {}, zone {}, region {}, lifecycle {}",
        s(&f.instance_type),
        s(&f.zone),
        s(&f.region),
        s(&f.lifecycle)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let i = Imds::new("http://169.254.169.254", IMDS_TIMEOUT).unwrap();
        assert_eq!(i.addr(), "169.254.169.254:80");
        let i = Imds::new("http://127.0.0.1:8123/", IMDS_TIMEOUT).unwrap();
        assert_eq!(i.addr(), "127.0.0.1:8123");
        let i = Imds::new("http://[fd00:ec2::254]", IMDS_TIMEOUT).unwrap();
        assert_eq!(i.addr(), "[fd00:ec2::254]:80");
        let i = Imds::new("http://[::1]:9", IMDS_TIMEOUT).unwrap();
        assert_eq!(i.addr(), "[::1]:9");
        assert!(Imds::new("https://x", IMDS_TIMEOUT).is_err());
        assert!(Imds::new("http://:80", IMDS_TIMEOUT).is_err());
        assert!(Imds::new("http://h:port", IMDS_TIMEOUT).is_err());
    }

    #[test]
    fn responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nm7g.larg";
        assert_eq!(parse_response(r), Some((200, b"m7g.larg".to_vec())));
        assert_eq!(complete(r), Some(r.len()));
        assert_eq!(
            complete(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nm7g"),
            None
        );
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nm7g\r\n6\r\n.large\r\n0\r\n\r\n";
        assert_eq!(parse_response(r), Some((200, b"m7g.large".to_vec())));
        let r = b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n";
        assert_eq!(parse_response(r), Some((401, Vec::new())));
        assert_eq!(parse_response(b"garbage"), None);
    }

    #[test]
    fn facts_from_eks_and_karpenter_labels() {
        let labels: BTreeMap<String, String> = [
            ("node.kubernetes.io/instance-type", "m7g.xlarge"),
            ("topology.kubernetes.io/zone", "eu-west-1b"),
            ("topology.kubernetes.io/region", "eu-west-1"),
            ("eks.amazonaws.com/capacityType", "SPOT"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let f = Ec2Facts::from_labels(&labels);
        assert!(f.is_complete());
        assert_eq!(f.lifecycle.as_deref(), Some("spot"));
        assert_eq!(f.instance_type.as_deref(), Some("m7g.xlarge"));
        let mut karpenter = BTreeMap::new();
        karpenter.insert(
            "karpenter.sh/capacity-type".to_owned(),
            "on-demand".to_owned(),
        );
        assert_eq!(
            Ec2Facts::from_labels(&karpenter).lifecycle.as_deref(),
            Some("on-demand")
        );
        let mut managed = BTreeMap::new();
        managed.insert(
            "eks.amazonaws.com/capacityType".to_owned(),
            "ON_DEMAND".to_owned(),
        );
        assert_eq!(
            Ec2Facts::from_labels(&managed).lifecycle.as_deref(),
            Some("on-demand")
        );
        let partial = Ec2Facts {
            zone: Some("a".into()),
            ..Default::default()
        };
        let merged = partial.or(f);
        assert_eq!(merged.zone.as_deref(), Some("a"));
        assert_eq!(merged.region.as_deref(), Some("eu-west-1"));
    }
}
