//! Kubernetes service account tokens on the collector's streams: each
//! agent sends the projected token its pod was issued (audience
//! `--token-review-audience`), and the API server says whose it is through
//! a `TokenReview` (`authentication.k8s.io/v1`, the collector's ClusterRole
//! may `create` them). Since Kubernetes 1.30 a pod-bound token names the
//! node its pod runs on (`authentication.kubernetes.io/node-name` in the
//! review's `user.extra`), so an agent writes for its own node only.
//!
//! - **Once per stream, at its start.** The review runs in [`Reviewed`],
//!   between the interceptor (which can only pass the token on, as
//!   [`Caller::UnreviewedToken`]) and the service, in the request's own
//!   future: a slow API server delays that stream, never another. A stream
//!   already reviewed is never cut, whatever the API server does later.
//! - **Cached until the token expires** (its JWT `exp`, read once the API
//!   server has vouched for it; 60 s where it has none); a refusal for
//!   10 s. So a pod deleted before its token expires can still open
//!   streams until then: the projected token's `expirationSeconds` bounds
//!   it (10 minutes in the shipped DaemonSet).
//! - **What is checked**, each refusal naming its field: the API server
//!   authenticated the token (else UNAUTHENTICATED); it is for the
//!   audience (`aud`); it belongs to the agents' service account
//!   (`user.username`); and each report's `node_name` is the node it names
//!   (`user.extra[authentication.kubernetes.io/node-name]`, checked per
//!   report by [`crate::ingest::prepare`]). A mismatch is
//!   PERMISSION_DENIED. What the token's own claims refuse (an `exp`
//!   past, another `aud`, no JWT at all) is refused without a call, so
//!   junk costs the API server nothing. A token bound to no pod (`kubectl
//!   create token`, how an operator reads) names no node: it may read,
//!   never write.
//! - **An API server that cannot be reached** is tried [`ATTEMPTS`] times,
//!   then the new stream is refused with UNAVAILABLE (the agent keeps its
//!   reports and retries).
//!
//! Every outcome is counted (`tally_collector_token_reviews_total{result}`).
use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use tally_export::metrics::{Kind, SelfPoint, Value};
use tally_transport::Caller;
use tonic::{Status, codegen::http, server::NamedService};

/// The extra a pod-bound token's review carries: the node of its pod.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";
/// Calls to the API server for one review before the stream is refused.
pub const ATTEMPTS: u32 = 3;
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// The first wait between calls; doubled each time.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// How long an accepted token without `exp` is trusted.
const NO_EXPIRY_TTL: Duration = Duration::from_secs(60);
/// How long a refusal is remembered (the API server's answer may change:
/// a token issued just now, a role just granted).
const REFUSAL_TTL: Duration = Duration::from_secs(10);
/// Past this many cached reviews, the expired ones are dropped.
const CACHE_PRUNE_AT: usize = 4096;

/// `--token-review-*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenReviewConfig {
    /// The audience the agents' tokens are issued for.
    pub audience: String,
    /// The agents' service account.
    pub namespace: String,
    pub service_account: String,
}

impl TokenReviewConfig {
    /// The username the API server gives the agents' service account.
    pub fn username(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// Parses `NAMESPACE:NAME`.
pub fn parse_service_account(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains(':') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("expected NAMESPACE:NAME, not `{s}`")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenReviewError {
    #[error("token review: cannot reach the Kubernetes API server: {0}")]
    Connect(String),
}

/// What the collector reads of the API server's answer to a TokenReview
/// (`authentication.k8s.io/v1` `TokenReviewStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewStatus {
    pub authenticated: bool,
    /// Why it is not authenticated, as the API server says.
    pub error: Option<String>,
    /// The audiences the token was authenticated for.
    pub audiences: Vec<String>,
    /// `user.username`.
    pub username: String,
    /// `user.extra[authentication.kubernetes.io/node-name]`.
    pub node_names: Vec<String>,
}

/// A future of [`TokenReviewApi`].
pub type ApiFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The API server's TokenReview endpoint. The agent binary implements it
/// with kube's client; this crate links no Kubernetes client (it would put
/// kube and k8s-openapi on the collector's build path), and its unit tests
/// answer with fakes.
pub trait TokenReviewApi: Send + Sync {
    /// Called once at the collector's start, in its runtime: credentials
    /// that cannot work (no in-cluster token, a bad kubeconfig) fail the
    /// start rather than every stream.
    fn connect(&self) -> ApiFuture<'_, ()>;
    /// One `create` of a TokenReview of `token` for `audience`. An error
    /// is a call that failed (tried again), never a refusal.
    fn create<'a>(&'a self, token: &'a str, audience: &'a str) -> ApiFuture<'a, ReviewStatus>;
}

/// Token review as the collector is configured: what it checks, and how it
/// reaches the API server.
#[derive(Clone)]
pub struct TokenReviewSetup {
    pub config: TokenReviewConfig,
    pub api: Arc<dyn TokenReviewApi>,
}

impl std::fmt::Debug for TokenReviewSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewSetup")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How a review ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// The API server did not authenticate it, or it expired.
    Unauthenticated,
    WrongAudience,
    WrongServiceAccount,
    /// A report written with a token that names no node (counted by
    /// ingest).
    NoNode,
    /// A report for another node than the token's (counted by ingest).
    WrongNode,
    /// The API server could not be reached.
    Unavailable,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Accepted,
        Outcome::Unauthenticated,
        Outcome::WrongAudience,
        Outcome::WrongServiceAccount,
        Outcome::NoNode,
        Outcome::WrongNode,
        Outcome::Unavailable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::WrongAudience => "wrong_audience",
            Outcome::WrongServiceAccount => "wrong_service_account",
            Outcome::NoNode => "no_node",
            Outcome::WrongNode => "wrong_node",
            Outcome::Unavailable => "unavailable",
        }
    }

    fn status(self, message: String) -> Status {
        match self {
            Outcome::Accepted => Status::new(tonic::Code::Ok, message),
            Outcome::Unauthenticated => Status::unauthenticated(message),
            Outcome::Unavailable => Status::unavailable(message),
            _ => Status::permission_denied(message),
        }
    }
}

/// Reviews by outcome, since the collector started.
#[derive(Debug, Default)]
pub struct ReviewStats {
    counts: [AtomicU64; 7],
}

impl ReviewStats {
    pub fn count(&self, outcome: Outcome) {
        let i = Outcome::ALL.iter().position(|&o| o == outcome).unwrap_or(0);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, outcome: Outcome) -> u64 {
        let i = Outcome::ALL.iter().position(|&o| o == outcome).unwrap_or(0);
        self.counts[i].load(Ordering::Relaxed)
    }

    /// The counter, for the collector's `/metrics` and OTLP.
    pub fn points(&self) -> Vec<SelfPoint> {
        Outcome::ALL
            .iter()
            .map(|&o| SelfPoint {
                prom: "tally_collector_token_reviews_total",
                otlp: "tally.collector.token_reviews",
                unit: "{review}",
                kind: Kind::Counter,
                help: "Service account tokens reviewed at a stream's start, by result (accepted includes the cached); wrong_node counts reports for another node than the token's.",
                attrs: vec![("result", o.label())],
                value: Value::Int(self.get(o)),
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Cached {
    /// The token's node (if it names one), or the refusal.
    result: Result<Option<String>, (Outcome, String)>,
    until: SystemTime,
}

/// Reviews tokens through the API server, with a cache.
pub struct Reviewer {
    api: Arc<dyn TokenReviewApi>,
    config: TokenReviewConfig,
    cache: Mutex<HashMap<Arc<str>, Cached>>,
    stats: Arc<ReviewStats>,
}

impl Reviewer {
    pub async fn connect(
        setup: TokenReviewSetup,
        stats: Arc<ReviewStats>,
    ) -> Result<Self, TokenReviewError> {
        setup
            .api
            .connect()
            .await
            .map_err(TokenReviewError::Connect)?;
        Ok(Self {
            api: setup.api,
            config: setup.config,
            cache: Mutex::new(HashMap::new()),
            stats,
        })
    }

    /// The caller `token` proves, or why it proves none.
    pub async fn review(&self, token: &Arc<str>) -> Result<Caller, Status> {
        let now = SystemTime::now();
        let claims = Claims::of(token);
        // What the token says of itself can only refuse it, and costs the
        // API server nothing: junk and other audiences' tokens never reach
        // it.
        if let Err((outcome, message)) = precheck(&self.config, &claims, now) {
            return Err(self.refuse(outcome, message));
        }
        if let Some(cached) = self.cached(token, now) {
            return self.answer(cached);
        }
        let result = match self.call(token).await {
            Ok(status) => judge(&self.config, status),
            Err(reason) => {
                return Err(self.refuse(
                    Outcome::Unavailable,
                    format!(
                        "cannot review the service account token: the Kubernetes API server did not answer {ATTEMPTS} TokenReviews ({reason})"
                    ),
                ));
            }
        };
        let until = match &result {
            Ok(_) => claims.exp.unwrap_or(now + NO_EXPIRY_TTL),
            Err(_) => now + REFUSAL_TTL,
        };
        self.remember(token, result.clone(), until, now);
        self.answer(result)
    }

    fn cached(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Option<Result<Option<String>, (Outcome, String)>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(token)
            .filter(|c| c.until > now)
            .map(|c| c.result.clone())
    }

    fn remember(
        &self,
        token: &Arc<str>,
        result: Result<Option<String>, (Outcome, String)>,
        until: SystemTime,
        now: SystemTime,
    ) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_PRUNE_AT {
            cache.retain(|_, c| c.until > now);
        }
        cache.insert(token.clone(), Cached { result, until });
    }

    fn answer(&self, result: Result<Option<String>, (Outcome, String)>) -> Result<Caller, Status> {
        match result {
            Ok(node) => {
                self.stats.count(Outcome::Accepted);
                Ok(Caller::ServiceAccount { node })
            }
            Err((outcome, message)) => Err(self.refuse(outcome, message)),
        }
    }

    fn refuse(&self, outcome: Outcome, message: String) -> Status {
        self.stats.count(outcome);
        tracing::warn!("refused a stream: {message}");
        outcome.status(message)
    }

    /// The API server's review, tried [`ATTEMPTS`] times.
    async fn call(&self, token: &str) -> Result<ReviewStatus, String> {
        let mut wait = FIRST_RETRY;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match tokio::time::timeout(CALL_TIMEOUT, self.api.create(token, &self.config.audience))
                .await
            {
                Ok(Ok(status)) => return Ok(status),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer in {} s", CALL_TIMEOUT.as_secs()),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        Err(last)
    }
}

/// What a token's own claims say, before any call: an expired token, one
/// for another audience, or one that is not a JWT with an audience (every
/// projected service account token has one) is refused.
fn precheck(
    config: &TokenReviewConfig,
    claims: &Claims,
    now: SystemTime,
) -> Result<(), (Outcome, String)> {
    let audience = &config.audience;
    if let Some(exp) = claims.exp
        && exp <= now
    {
        return Err((
            Outcome::Unauthenticated,
            format!(
                "field `exp`: the service account token expired {} s ago",
                now.duration_since(exp).unwrap_or_default().as_secs()
            ),
        ));
    }
    match &claims.aud {
        None => Err((
            Outcome::Unauthenticated,
            "field `aud`: not a service account token (no JWT audience)".to_owned(),
        )),
        Some(aud) if !aud.iter().any(|a| a == audience) => Err((
            Outcome::WrongAudience,
            format!("field `aud`: the token is for {aud:?}, not for `{audience}`"),
        )),
        Some(_) => Ok(()),
    }
}

/// What the API server's review says of a token, against the config.
fn judge(
    config: &TokenReviewConfig,
    status: ReviewStatus,
) -> Result<Option<String>, (Outcome, String)> {
    let audience = &config.audience;
    if !status.authenticated {
        return Err((
            Outcome::Unauthenticated,
            format!(
                "the Kubernetes API server did not authenticate the token{}",
                status.error.map(|e| format!(": {e}")).unwrap_or_default()
            ),
        ));
    }
    if !status.audiences.iter().any(|a| a == audience) {
        return Err((
            Outcome::WrongAudience,
            format!(
                "field `audiences`: the API server's review gives {:?}, not `{audience}`",
                status.audiences
            ),
        ));
    }
    let expected = config.username();
    let username = status.username;
    if username != expected {
        return Err((
            Outcome::WrongServiceAccount,
            format!(
                "field `user.username`: `{username}` is not the agents' service account `{expected}`"
            ),
        ));
    }
    // One node, or none (a token bound to no pod, or Kubernetes before
    // 1.30): that one may read, and writes nothing.
    Ok(match status.node_names.as_slice() {
        [node] if !node.is_empty() => Some(node.clone()),
        _ => None,
    })
}

/// The claims of a JWT read without checking its signature: only ever a
/// reason to refuse (`aud`, `exp` past), or, once the API server has
/// vouched for the token, how long to trust that.
#[derive(Debug, Default, PartialEq)]
struct Claims {
    exp: Option<SystemTime>,
    aud: Option<Vec<String>>,
}

impl Claims {
    fn of(token: &str) -> Self {
        let Some(payload) = token.split('.').nth(1) else {
            return Self::default();
        };
        let Ok(bytes) =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
        else {
            return Self::default();
        };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Self::default();
        };
        let exp = json["exp"]
            .as_u64()
            .map(|s| UNIX_EPOCH + Duration::from_secs(s));
        let aud = match &json["aud"] {
            serde_json::Value::String(a) => Some(vec![a.clone()]),
            serde_json::Value::Array(a) => Some(
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        };
        Self { exp, aud }
    }
}

/// A gRPC service behind the interceptor whose requests' unreviewed tokens
/// are reviewed first: the reviewed caller replaces the token in the
/// request's extensions, or the request is answered with the refusal.
#[derive(Clone)]
pub struct Reviewed<S> {
    inner: S,
    reviewer: Option<Arc<Reviewer>>,
}

impl<S> Reviewed<S> {
    pub fn new(inner: S, reviewer: Option<Arc<Reviewer>>) -> Self {
        Self { inner, reviewer }
    }
}

impl<S: NamedService> NamedService for Reviewed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower_service::Service<http::Request<B>> for Reviewed<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The ready service serves this request; its clone the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let reviewer = self.reviewer.clone();
        Box::pin(async move {
            if let Some(Caller::UnreviewedToken(token)) = request.extensions().get::<Caller>() {
                let token = token.clone();
                let reviewed = match &reviewer {
                    Some(r) => r.review(&token).await,
                    None => Err(Status::unauthenticated("unknown bearer token")),
                };
                match reviewed {
                    Ok(caller) => {
                        request.extensions_mut().insert(caller);
                    }
                    Err(status) => return Ok(status.into_http()),
                }
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TokenReviewConfig {
        TokenReviewConfig {
            audience: "tally-collector".into(),
            namespace: "tally".into(),
            service_account: "tally-agent".into(),
        }
    }

    fn jwt(claims: serde_json::Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            b64(br#"{"alg":"RS256"}"#),
            b64(claims.to_string().as_bytes())
        )
    }

    fn reviewed(username: &str, node: Option<&str>, audiences: &[&str]) -> ReviewStatus {
        ReviewStatus {
            authenticated: true,
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            username: username.into(),
            node_names: node.into_iter().map(str::to_owned).collect(),
            error: None,
        }
    }

    #[test]
    fn claims_are_read_from_the_payload() {
        let c = Claims::of(&jwt(
            serde_json::json!({"exp": 2_000_000_000u64, "aud": ["a", "b"]}),
        ));
        assert_eq!(c.exp, Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
        assert_eq!(c.aud, Some(vec!["a".to_string(), "b".to_string()]));
        let single = Claims::of(&jwt(serde_json::json!({"aud": "a"})));
        assert_eq!(single.aud, Some(vec!["a".to_string()]));
        assert_eq!(Claims::of("not-a-jwt"), Claims::default());
        assert_eq!(Claims::of("a.!!!.c"), Claims::default());
    }

    #[test]
    fn each_refusal_names_its_field() {
        let c = config();
        let none = Claims::default();
        let sa = "system:serviceaccount:tally:tally-agent";
        assert_eq!(
            judge(&c, reviewed(sa, Some("node-a"), &["tally-collector"])),
            Ok(Some("node-a".to_string()))
        );
        assert_eq!(
            judge(&c, reviewed(sa, None, &["tally-collector"])),
            Ok(None),
            "a token of no pod reads"
        );
        let field = |r: Result<Option<String>, (Outcome, String)>| {
            let (o, m) = r.unwrap_err();
            (o, m.split('`').nth(1).unwrap_or("").to_string())
        };
        assert_eq!(
            field(judge(&c, reviewed(sa, Some("n"), &["other"]))),
            (Outcome::WrongAudience, "audiences".into())
        );
        let now = SystemTime::now();
        let other_aud = Claims {
            aud: Some(vec!["other".into()]),
            ..Claims::default()
        };
        assert_eq!(
            precheck(&c, &other_aud, now)
                .map_err(|e| (e.0, e.1.split('`').nth(1).unwrap_or("").to_string())),
            Err((Outcome::WrongAudience, "aud".into()))
        );
        assert_eq!(
            precheck(&c, &none, now)
                .map_err(|e| (e.0, e.1.split('`').nth(1).unwrap_or("").to_string())),
            Err((Outcome::Unauthenticated, "aud".into())),
            "not a JWT with an audience"
        );
        assert_eq!(
            field(judge(
                &c,
                reviewed(
                    "system:serviceaccount:default:x",
                    Some("n"),
                    &["tally-collector"]
                )
            )),
            (Outcome::WrongServiceAccount, "user.username".into())
        );
        let (o, _) = judge(
            &c,
            ReviewStatus {
                authenticated: false,
                error: Some("token has expired".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(o, Outcome::Unauthenticated);
    }

    /// An API server that fails its first `fail_first` calls, then answers
    /// `status`.
    struct FakeApi {
        calls: AtomicU64,
        fail_first: u64,
        status: ReviewStatus,
    }

    impl TokenReviewApi for FakeApi {
        fn connect(&self) -> ApiFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }

        fn create<'a>(&'a self, _: &'a str, _: &'a str) -> ApiFuture<'a, ReviewStatus> {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            let answer = if n < self.fail_first {
                Err("connection refused".to_owned())
            } else {
                Ok(self.status.clone())
            };
            Box::pin(async move { answer })
        }
    }

    async fn reviewer(fail_first: u64) -> (Reviewer, Arc<FakeApi>, Arc<ReviewStats>) {
        let api = Arc::new(FakeApi {
            calls: AtomicU64::new(0),
            fail_first,
            status: reviewed(
                "system:serviceaccount:tally:tally-agent",
                Some("node-a"),
                &["tally-collector"],
            ),
        });
        let stats = Arc::new(ReviewStats::default());
        let setup = TokenReviewSetup {
            config: config(),
            api: api.clone(),
        };
        let reviewer = Reviewer::connect(setup, stats.clone()).await.unwrap();
        (reviewer, api, stats)
    }

    fn token(expires_in: Duration) -> Arc<str> {
        let exp = (SystemTime::now() + expires_in)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        jwt(serde_json::json!({"exp": exp, "aud": ["tally-collector"]})).into()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_is_retried_and_an_accepted_token_cached() {
        let (reviewer, api, stats) = reviewer(ATTEMPTS as u64 - 1).await;
        let token = token(Duration::from_secs(600));
        for _ in 0..2 {
            let caller = reviewer.review(&token).await.unwrap();
            assert!(
                matches!(&caller, Caller::ServiceAccount { node: Some(n) } if n == "node-a"),
                "{caller:?}"
            );
        }
        assert_eq!(
            api.calls.load(Ordering::Relaxed),
            ATTEMPTS as u64,
            "two failed calls, one answer, then the cache"
        );
        assert_eq!(stats.get(Outcome::Accepted), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_api_server_refuses_with_unavailable_and_is_asked_again() {
        let (reviewer, api, stats) = reviewer(u64::MAX).await;
        let token = token(Duration::from_secs(600));
        let refused = reviewer.review(&token).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert_eq!(api.calls.load(Ordering::Relaxed), ATTEMPTS as u64);
        // Not remembered: the next stream asks again.
        reviewer.review(&token).await.unwrap_err();
        assert_eq!(api.calls.load(Ordering::Relaxed), 2 * ATTEMPTS as u64);
        assert_eq!(stats.get(Outcome::Unavailable), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn junk_and_other_audiences_are_refused_without_a_call() {
        let (reviewer, api, stats) = reviewer(0).await;
        let other = jwt(
            serde_json::json!({"exp": 4_000_000_000u64, "aud": ["https://kubernetes.default.svc"]}),
        );
        for (token, code) in [
            ("not-a-jwt".to_owned(), tonic::Code::Unauthenticated),
            (other, tonic::Code::PermissionDenied),
        ] {
            let refused = reviewer.review(&token.into()).await.unwrap_err();
            assert_eq!(refused.code(), code, "{}", refused.message());
            assert!(refused.message().contains("`aud`"), "{}", refused.message());
        }
        assert_eq!(api.calls.load(Ordering::Relaxed), 0);
        assert_eq!(stats.get(Outcome::WrongAudience), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_token_is_refused_without_a_call() {
        let (reviewer, api, stats) = reviewer(0).await;
        // Its `exp`, whole seconds, is at or before now.
        let expired = token(Duration::ZERO);
        let refused = reviewer.review(&expired).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(refused.message().contains("`exp`"), "{}", refused.message());
        assert_eq!(api.calls.load(Ordering::Relaxed), 0);
        assert_eq!(stats.get(Outcome::Unauthenticated), 1);
    }

    #[test]
    fn service_accounts_parse() {
        assert_eq!(
            parse_service_account("tally:tally-agent"),
            Ok(("tally".into(), "tally-agent".into()))
        );
        for bad in ["tally", ":x", "x:", "a:b:c"] {
            assert!(parse_service_account(bad).is_err(), "{bad}");
        }
    }
}
