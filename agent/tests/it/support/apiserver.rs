//! A Kubernetes API server stand-in on loopback, for the agent's pod
//! watcher: it serves a pod list filtered by `spec.nodeName`, watch streams
//! (chunked JSON lines of ADDED, MODIFIED and DELETED events, and an ERROR
//! 410 Gone that forces a relist), ReplicaSet and Job metadata for owner
//! chains, a node's labels, and TokenReviews of the service account
//! tokens the test issued (`authentication.k8s.io/v1`, as a real API server
//! answers them: a token for another audience, expired or revoked is not
//! authenticated). Every request needs the bearer token.
//!
//! It is HTTP/1.1 on std threads, plain on loopback ([`ApiServer::start`])
//! or TLS on an address pods reach ([`ApiServer::start_tls`], what a pod's
//! in-cluster client needs): one connection per request (`Connection:
//! close`), watches held open and fed as the test changes pods. Besides
//! [`TOKEN`], it authenticates the service account tokens it issued for
//! [`API_AUDIENCE`] (a pod's automounted token), as a real API server does.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead as _, BufReader, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use serde_json::{Value, json};

pub const TOKEN: &str = "tally-test-token";
/// The audience the API server accepts tokens for (its own, as a real
/// one's `--api-audiences`, the default audience of an automounted token).
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc";

#[derive(Default)]
struct State {
    rv: u64,
    /// Pods by UID, every node's.
    pods: BTreeMap<String, Value>,
    /// (resourceVersion, type, object) of every event.
    events: Vec<(u64, &'static str, Value)>,
    /// Watches from a resourceVersion below this get 410 Gone.
    gone_before: u64,
    /// Bumped by `expire`: open watches end with 410 Gone.
    expiry: u64,
    /// apps/v1 ReplicaSets and batch/v1 Jobs: metadata by (ns, name).
    replicasets: HashMap<(String, String), Value>,
    jobs: HashMap<(String, String), Value>,
    nodes: HashMap<String, Value>,
    /// "METHOD path?query" of every request, in order.
    requests: Vec<String>,
    unauthorized: usize,
    /// Service account tokens: the review's `user` and the token's
    /// audiences; revoked ones are kept, not authenticated.
    tokens: HashMap<String, IssuedToken>,
    /// Every connection is closed unanswered (an unreachable API server).
    down: bool,
    /// How long a TokenReview takes to answer (a slow API server).
    review_delay: Duration,
}

#[derive(Clone)]
struct IssuedToken {
    user: Value,
    audiences: Vec<String>,
    revoked: bool,
}

pub struct ApiServer {
    pub addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl ApiServer {
    /// Plain HTTP on loopback.
    pub fn start() -> Self {
        Self::listen(TcpListener::bind("127.0.0.1:0").unwrap(), None)
    }

    /// HTTPS on `ip` (a port of its own), with the certificate chain and
    /// key in PEM: what a pod reaches as `KUBERNETES_SERVICE_HOST`.
    pub fn start_tls(ip: IpAddr, chain_pem: &[u8], key_pem: &[u8]) -> Self {
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Self::listen(TcpListener::bind((ip, 0)).unwrap(), Some(Arc::new(config)))
    }

    fn listen(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new((
            Mutex::new(State {
                rv: 100,
                gone_before: 0,
                ..Default::default()
            }),
            Condvar::new(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, sp, tls) = (st.clone(), sp.clone(), tls.clone());
                thread::spawn(move || match tls {
                    None => serve(conn, &st, &sp),
                    Some(config) => {
                        let Ok(session) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(session, conn), &st, &sp)
                    }
                });
            }
        });
        Self { addr, state, stop }
    }

    /// A kubeconfig that points at the stand-in with the token.
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://{}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: agent\ncurrent-context: standin\nusers:\n- name: agent\n  user:\n    token: {TOKEN}\n",
            self.addr
        );
        std::fs::write(path, text).unwrap();
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (lock, cv) = &*self.state;
        let r = f(&mut lock.lock().unwrap());
        cv.notify_all();
        r
    }

    /// Adds a pod without telling open watches (it is in the next list).
    pub fn seed_pod(&self, mut pod: Value) {
        self.with(|s| {
            s.rv += 1;
            pod["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            s.pods.insert(uid(&pod), pod);
        });
    }

    /// ADDED or MODIFIED, to every watch.
    pub fn apply_pod(&self, mut pod: Value) {
        self.with(|s| {
            s.rv += 1;
            pod["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            let kind = if s.pods.contains_key(&uid(&pod)) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            s.pods.insert(uid(&pod), pod.clone());
            s.events.push((s.rv, kind, pod));
        });
    }

    /// DELETED, to every watch.
    pub fn delete_pod(&self, uid: &str) {
        self.with(|s| {
            if let Some(mut pod) = s.pods.remove(uid) {
                s.rv += 1;
                pod["metadata"]["resourceVersion"] = json!(s.rv.to_string());
                s.events.push((s.rv, "DELETED", pod));
            }
        });
    }

    /// Removes a pod without an event (one the watch missed).
    pub fn forget_pod(&self, uid: &str) {
        self.with(|s| {
            s.pods.remove(uid);
            s.rv += 1;
        });
    }

    /// The watch window moves past every open watch: they end with an
    /// ERROR event of code 410 (Gone), and resuming from an older
    /// resourceVersion gets the same, so the client must list again.
    pub fn expire(&self) {
        self.with(|s| {
            s.rv += 1;
            s.gone_before = s.rv;
            s.expiry += 1;
        });
    }

    pub fn add_replicaset(&self, ns: &str, name: &str, deployment: &str) {
        let meta = owned_by(ns, name, "apps/v1", "Deployment", deployment);
        self.with(|s| {
            s.replicasets.insert((ns.to_owned(), name.to_owned()), meta);
        });
    }

    pub fn add_job(&self, ns: &str, name: &str, cronjob: &str) {
        let meta = owned_by(ns, name, "batch/v1", "CronJob", cronjob);
        self.with(|s| {
            s.jobs.insert((ns.to_owned(), name.to_owned()), meta);
        });
    }

    pub fn add_node(&self, name: &str, labels: Value) {
        self.with(|s| {
            s.nodes.insert(name.to_owned(), labels);
        });
    }

    pub fn requests(&self) -> Vec<String> {
        self.with(|s| s.requests.clone())
    }

    /// Issues a service account token: `username`
    /// (`system:serviceaccount:NS:NAME`), bound to a pod on `node` where
    /// given, for `audiences`. Returns a JWT-shaped token whose `exp` is
    /// `valid_for` from now (in the past if negative).
    pub fn issue_token(
        &self,
        username: &str,
        node: Option<&str>,
        audiences: &[&str],
        valid_for_seconds: i64,
    ) -> String {
        use base64::Engine as _;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let id = self.with(|s| {
            s.rv += 1;
            s.rv
        });
        let claims = json!({
            "aud": audiences,
            "exp": now + valid_for_seconds,
            "iat": now,
            "sub": username,
            "jti": id.to_string(),
        });
        let token = format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256","kid":"standin"}"#),
            b64(claims.to_string().as_bytes()),
            b64(format!("signature-{id}").as_bytes())
        );
        let mut extra = serde_json::Map::new();
        if let Some(node) = node {
            extra.insert(
                "authentication.kubernetes.io/node-name".into(),
                json!([node]),
            );
            extra.insert(
                "authentication.kubernetes.io/pod-name".into(),
                json!([format!("tally-agent-{node}")]),
            );
        }
        let user = json!({
            "username": username,
            "uid": format!("uid-{id}"),
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "extra": extra,
        });
        let issued = IssuedToken {
            user,
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            revoked: false,
        };
        self.with(|s| s.tokens.insert(token.clone(), issued));
        token
    }

    /// The token is no longer authenticated (its pod was deleted).
    pub fn revoke_token(&self, token: &str) {
        self.with(|s| {
            if let Some(t) = s.tokens.get_mut(token) {
                t.revoked = true;
            }
        });
    }

    /// Answers each TokenReview only after `delay`.
    pub fn set_review_delay(&self, delay: Duration) {
        self.with(|s| s.review_delay = delay);
    }

    /// Closes every connection unanswered while `down`.
    pub fn set_down(&self, down: bool) {
        self.with(|s| s.down = down);
    }

    /// TokenReviews answered.
    pub fn token_reviews(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews"))
            .count()
    }

    /// Lists of pods served (the first and every relist).
    pub fn pod_lists(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("GET /api/v1/pods?") && !r.contains("watch=true"))
            .count()
    }

    pub fn pod_watches(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("GET /api/v1/pods?") && r.contains("watch=true"))
            .count()
    }

    pub fn unauthorized(&self) -> usize {
        self.with(|s| s.unauthorized)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.state.1.notify_all();
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap().to_owned()
}

fn owned_by(ns: &str, name: &str, api_version: &str, kind: &str, owner: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": format!("{name}-uid"),
            "resourceVersion": "1",
            "ownerReferences": [{
                "apiVersion": api_version,
                "kind": kind,
                "name": owner,
                "uid": format!("{owner}-uid"),
                "controller": true,
                "blockOwnerDeletion": true
            }]
        }
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code
    })
}

fn respond(conn: &mut impl Write, code: u16, body: &Value) {
    let text = body.to_string();
    let reason = match code {
        200 => "OK",
        201 => "Created",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Error",
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = conn.flush();
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

fn serve<C: Read + Write>(mut conn: C, state: &(Mutex<State>, Condvar), stop: &AtomicBool) {
    // One request a connection: what the reader buffers past its body is
    // nothing.
    let mut reader = BufReader::new(&mut conn);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    let mut bearer = String::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization")
                && let Some(token) = v.trim().strip_prefix("Bearer ")
            {
                bearer = token.to_owned();
            }
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; content_length.min(1 << 20)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    drop(reader);
    if state.0.lock().unwrap().down {
        return;
    }
    let authorized = {
        let s = state.0.lock().unwrap();
        bearer == TOKEN
            || s.tokens.get(&bearer).is_some_and(|t| {
                !t.revoked && t.audiences.iter().any(|a| a == API_AUDIENCE) && !expired(&bearer)
            })
    };
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query.replace("%3D", "=").replace("%3d", "=");
    {
        let mut s = state.0.lock().unwrap();
        s.requests.push(format!("{method} {target}"));
        if !authorized {
            s.unauthorized += 1;
        }
    }
    if !authorized {
        respond(&mut conn, 401, &status(401, "Unauthorized", "Unauthorized"));
        return;
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "v1", "pods"] => {
            let node = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("fieldSelector=spec.nodeName="))
                .map(str::to_owned);
            if query_param(&query, "watch") == Some("true") {
                let from: u64 = query_param(&query, "resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                watch(conn, state, stop, node, from);
            } else {
                let s = state.0.lock().unwrap();
                let items: Vec<Value> = s
                    .pods
                    .values()
                    .filter(|p| on_node(p, node.as_deref()))
                    .cloned()
                    .collect();
                let list = json!({
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": s.rv.to_string()},
                    "items": items
                });
                drop(s);
                respond(&mut conn, 200, &list);
            }
        }
        ["apis", "apps", "v1", "namespaces", ns, "replicasets", name] => {
            let found = state
                .0
                .lock()
                .unwrap()
                .replicasets
                .get(&((*ns).to_owned(), (*name).to_owned()))
                .cloned();
            match found {
                Some(m) => respond(&mut conn, 200, &m),
                None => respond(&mut conn, 404, &status(404, "NotFound", "not found")),
            }
        }
        ["apis", "batch", "v1", "namespaces", ns, "jobs", name] => {
            let found = state
                .0
                .lock()
                .unwrap()
                .jobs
                .get(&((*ns).to_owned(), (*name).to_owned()))
                .cloned();
            match found {
                Some(m) => respond(&mut conn, 200, &m),
                None => respond(&mut conn, 404, &status(404, "NotFound", "not found")),
            }
        }
        ["api", "v1", "nodes", name] => {
            let found = state.0.lock().unwrap().nodes.get(*name).cloned();
            match found {
                Some(labels) => respond(
                    &mut conn,
                    200,
                    &json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": {"name": name, "uid": "node-uid", "resourceVersion": "1", "labels": labels}
                    }),
                ),
                None => respond(&mut conn, 404, &status(404, "NotFound", "not found")),
            }
        }
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] if method == "POST" => {
            let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let delay = state.0.lock().unwrap().review_delay;
            thread::sleep(delay);
            let answer = token_review(&state.0.lock().unwrap(), &review);
            respond(&mut conn, 201, &answer);
        }
        _ => respond(&mut conn, 404, &status(404, "NotFound", "no such path")),
    }
}

/// A TokenReview's answer, as the API server gives it: authenticated only
/// for a known, unrevoked, unexpired token issued for one of the audiences
/// asked (the answer's `audiences`).
fn token_review(s: &State, review: &Value) -> Value {
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let wanted: Vec<String> = review["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let status = match s.tokens.get(token) {
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
        Some(t) if t.revoked => {
            json!({"authenticated": false, "error": "pod has been deleted"})
        }
        Some(_) if expired(token) => json!({"authenticated": false, "error": "token has expired"}),
        Some(t) => {
            let common: Vec<&String> = wanted.iter().filter(|a| t.audiences.contains(a)).collect();
            if common.is_empty() {
                json!({"authenticated": false, "error": format!("token audiences {:?} is invalid for the target audiences {wanted:?}", t.audiences)})
            } else {
                json!({"authenticated": true, "user": t.user, "audiences": common})
            }
        }
    };
    json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": review["spec"],
        "status": status,
    })
}

/// Whether a token's `exp` has passed (or it has none).
fn expired(token: &str) -> bool {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap_or_default();
    let claims: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["exp"].as_u64().is_none_or(|exp| exp <= now)
}

fn on_node(pod: &Value, node: Option<&str>) -> bool {
    node.is_none_or(|n| pod["spec"]["nodeName"] == n)
}

fn chunk(conn: &mut impl Write, line: &str) -> std::io::Result<()> {
    write!(conn, "{:x}\r\n{line}\r\n", line.len())?;
    conn.flush()
}

/// A watch: the events after `from`, then every new one, until the test
/// expires the watch window (410 Gone) or the stand-in stops.
fn watch(
    mut conn: impl Write,
    state: &(Mutex<State>, Condvar),
    stop: &AtomicBool,
    node: Option<String>,
    from: u64,
) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    let (lock, cv) = state;
    let mut s = lock.lock().unwrap();
    let expiry = s.expiry;
    let gone = |from: u64| {
        let e = json!({"type": "ERROR", "object": status(410, "Expired", &format!("too old resource version: {from}"))});
        e.to_string() + "\n"
    };
    if from < s.gone_before {
        let _ = chunk(&mut conn, &gone(from));
        let _ = conn.write_all(b"0\r\n\r\n");
        return;
    }
    let mut sent = from;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if s.expiry != expiry {
            let _ = chunk(&mut conn, &gone(sent));
            break;
        }
        let new: Vec<(u64, &'static str, Value)> = s
            .events
            .iter()
            .filter(|(rv, _, p)| *rv > sent && on_node(p, node.as_deref()))
            .cloned()
            .collect();
        for (rv, kind, pod) in new {
            let line = json!({"type": kind, "object": pod}).to_string() + "\n";
            if chunk(&mut conn, &line).is_err() {
                return;
            }
            sent = rv;
        }
        sent = sent.max(s.events.last().map_or(0, |e| e.0).min(s.rv));
        s = cv.wait_timeout(s, Duration::from_millis(200)).unwrap().0;
    }
    let _ = conn.write_all(b"0\r\n\r\n");
}
