//! Service account tokens on the ingest stream, reviewed by a Kubernetes
//! API server stand-in (`support::apiserver`, which answers TokenReviews as
//! the real one does): a collector with `--token-review-audience` lets a
//! token write only for the node its pod runs on, refuses every other
//! token naming the field, never cuts a stream it has reviewed (its token
//! expiring, the API server going away), and refuses new streams with
//! UNAVAILABLE while the API server cannot be reached. A real agent writes
//! its node with its token file.
use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use tally_proto as pb;
use tokio::sync::mpsc;
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{Code, metadata::MetadataValue};

use crate::{
    common::{
        self,
        daemons::{Collector, stored_reports},
    },
    exporting::{KillOnDrop, RunCollector, http_get, tmp},
    support::apiserver::ApiServer,
};

const AUDIENCE: &str = "tally-collector";
const AGENTS: &str = "system:serviceaccount:tally:tally-agent";

/// A report of one process on `node`, from its agent.
fn report(node: &str, seq: u64) -> pb::NodeReport {
    crate::hostile::report(node, &format!("{node}-agent"), seq)
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

/// An open ingest stream: reports in, acks out.
struct Stream {
    reports: mpsc::Sender<pb::NodeReport>,
    acks: tonic::Streaming<pb::IngestAck>,
}

impl Stream {
    async fn open(url: &str, token: &str) -> Result<Stream, tonic::Status> {
        let mut client = pb::ingest_client::IngestClient::connect(url.to_owned())
            .await
            .expect("connect");
        let (reports, rx) = mpsc::channel(16);
        let acks = client
            .stream(with_token(ReceiverStream::new(rx), token))
            .await?
            .into_inner();
        Ok(Stream { reports, acks })
    }

    /// Sends one report and waits for its ack: its last stored sequence.
    async fn send(&mut self, report: pb::NodeReport) -> Result<u64, tonic::Status> {
        self.reports.send(report).await.expect("stream open");
        match self.acks.next().await {
            Some(Ok(ack)) => Ok(ack.last_stored_sequence),
            Some(Err(status)) => Err(status),
            None => Err(tonic::Status::aborted("stream ended without an ack")),
        }
    }
}

/// One report on a new stream with `token`: its ack, or the refusal.
async fn write(url: &str, token: &str, node: &str, seq: u64) -> Result<u64, tonic::Status> {
    Stream::open(url, token)
        .await?
        .send(report(node, seq))
        .await
}

async fn nodes(url: &str, token: &str) -> Result<Vec<String>, tonic::Status> {
    let mut client = pb::query_client::QueryClient::connect(url.to_owned())
        .await
        .expect("connect");
    let listed = client
        .list_nodes(with_token(pb::ListNodesRequest::default(), token))
        .await?
        .into_inner();
    Ok(listed
        .nodes
        .into_iter()
        .filter_map(|n| n.identity.map(|i| i.node_name))
        .collect())
}

fn collector(api: &ApiServer) -> RunCollector {
    let kubeconfig = tmp().join(common::unique("token-review-kubeconfig"));
    api.write_kubeconfig(&kubeconfig);
    RunCollector::start(&[
        "--token-review-audience",
        AUDIENCE,
        "--token-review-kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ])
}

/// `tally_collector_token_reviews_total{result="…"}` on the collector's
/// `/metrics`.
fn reviews(c: &RunCollector, result: &str) -> u64 {
    let text = http_get(c.metrics_addr(), "/metrics").unwrap().1;
    let wanted = format!("tally_collector_token_reviews_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .unwrap_or_else(|| panic!("no {wanted} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// Asserts the refusal's code and that its message names `field`.
fn refused(result: Result<u64, tonic::Status>, code: Code, field: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(&format!("`{field}`")),
        "the refusal names `{field}`: {}",
        status.message()
    );
}

#[test]
fn a_service_account_token_writes_only_its_own_node() {
    let api = ApiServer::start();
    let c = collector(&api);
    let url = format!("http://{}", c.grpc);
    let node_a = api.issue_token(AGENTS, Some("node-a"), &[AUDIENCE], 600);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert_eq!(write(&url, &node_a, "node-a", 1).await.unwrap(), 1);
        // Node A's token writing node B's report: refused, naming it.
        refused(
            write(&url, &node_a, "node-b", 1).await,
            Code::PermissionDenied,
            "node_name",
        );
        // Reviewed once: the second stream was answered from the cache.
        assert_eq!(api.token_reviews(), 1);
        // A slow API server delays the stream under review, no other.
        api.set_review_delay(Duration::from_secs(2));
        let new_node = api.issue_token(AGENTS, Some("node-c"), &[AUDIENCE], 600);
        let slow = {
            let (url, token) = (url.clone(), new_node.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let result = write(&url, &token, "node-c", 1).await;
                (result, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        assert_eq!(write(&url, &node_a, "node-a", 2).await.unwrap(), 2);
        let quick = started.elapsed();
        let (result, slow) = slow.await.unwrap();
        assert_eq!(result.unwrap(), 1);
        eprintln!(
            "under a 2 s TokenReview: that stream answered in {:.2} s, another in {:.3} s",
            slow.as_secs_f64(),
            quick.as_secs_f64()
        );
        assert!(slow >= Duration::from_secs(2), "{slow:?}");
        assert!(quick < Duration::from_secs(1), "{quick:?}");
        api.set_review_delay(Duration::ZERO);
        // The token reads, too.
        let listed = nodes(&url, &node_a).await.unwrap();
        assert!(listed.contains(&"node-a".to_string()), "{listed:?}");

        let other_audience = api.issue_token(AGENTS, Some("node-a"), &["vault"], 600);
        refused(
            write(&url, &other_audience, "node-a", 2).await,
            Code::PermissionDenied,
            "aud",
        );
        let other_account = api.issue_token(
            "system:serviceaccount:default:default",
            Some("node-a"),
            &[AUDIENCE],
            600,
        );
        refused(
            write(&url, &other_account, "node-a", 2).await,
            Code::PermissionDenied,
            "user.username",
        );
        // A token bound to no pod (`kubectl create token`): an operator's,
        // which reads and cannot write.
        let no_node = api.issue_token(AGENTS, None, &[AUDIENCE], 600);
        refused(
            write(&url, &no_node, "node-a", 2).await,
            Code::PermissionDenied,
            "user.extra[authentication.kubernetes.io/node-name]",
        );
        assert!(
            nodes(&url, &no_node)
                .await
                .unwrap()
                .contains(&"node-a".to_string())
        );
        let expired = api.issue_token(AGENTS, Some("node-a"), &[AUDIENCE], -5);
        refused(
            write(&url, &expired, "node-a", 2).await,
            Code::Unauthenticated,
            "exp",
        );
        // A token the API server does not know (a forged one): no write,
        // and no read.
        let forged = format!("{node_a}x");
        let status = write(&url, &forged, "node-a", 2).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let status = nodes(&url, &forged).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        // A deleted pod's token, never reviewed before: refused.
        let deleted = api.issue_token(AGENTS, Some("node-a"), &[AUDIENCE], 600);
        api.revoke_token(&deleted);
        let status = write(&url, &deleted, "node-a", 2).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status.message().contains("pod has been deleted"),
            "{status:?}"
        );
    });
    assert!(
        !rt.block_on(nodes(&url, &node_a))
            .unwrap()
            .contains(&"node-b".to_string())
    );
    // Every stream counted once, by its result.
    assert_eq!(reviews(&c, "wrong_node"), 1);
    assert_eq!(reviews(&c, "wrong_audience"), 1);
    assert_eq!(reviews(&c, "wrong_service_account"), 1);
    assert_eq!(reviews(&c, "no_node"), 1);
    assert_eq!(reviews(&c, "unauthenticated"), 4);
    assert_eq!(reviews(&c, "unavailable"), 0);
    let log = c.stderr();
    assert!(log.contains("refused"), "{log}");
}

/// A reviewed stream is never cut: not when its token expires (the kubelet
/// rotated it), not when the API server goes away. New streams are refused
/// with UNAVAILABLE while it is away, and the rotated token is accepted
/// once it is back; the expired one is not.
#[test]
fn a_reviewed_stream_outlives_its_token_and_the_api_server() {
    let api = ApiServer::start();
    let c = collector(&api);
    let url = format!("http://{}", c.grpc);
    let first = api.issue_token(AGENTS, Some("node-a"), &[AUDIENCE], 4);
    let rotated = api.issue_token(AGENTS, Some("node-a"), &[AUDIENCE], 600);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut stream = Stream::open(&url, &first).await.unwrap();
        assert_eq!(stream.send(report("node-a", 1)).await.unwrap(), 1);
        api.set_down(true);
        let started = Instant::now();
        let status = write(&url, &rotated, "node-a", 100).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("did not answer 3 TokenReviews"),
            "{status:?}"
        );
        eprintln!(
            "a new stream refused after {:.1} s of retries",
            started.elapsed().as_secs_f64()
        );
        // The open stream goes on, past its token's expiry.
        tokio::time::sleep(Duration::from_secs(4)).await;
        for seq in 2..=4 {
            assert_eq!(stream.send(report("node-a", seq)).await.unwrap(), seq);
        }
        api.set_down(false);
        assert_eq!(write(&url, &rotated, "node-a", 5).await.unwrap(), 5);
        refused(
            write(&url, &first, "node-a", 6).await,
            Code::Unauthenticated,
            "exp",
        );
        assert_eq!(stream.send(report("node-a", 6)).await.unwrap(), 6);
    });
    assert_eq!(reviews(&c, "unavailable"), 1);
}

/// A real agent sends the token in its token file (the projected volume's
/// file, in the DaemonSet) and its reports are stored for its node. When
/// the kubelet rotates the file, the agent's next stream carries the new
/// token: here the old one is revoked and the collector restarted (its
/// cache gone), and the agent's reports go on being stored.
#[test]
fn an_agent_writes_its_node_with_its_service_account_token() {
    let test = "an_agent_writes_its_node_with_its_service_account_token";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let api = ApiServer::start();
    let kubeconfig = tmp().join(common::unique("token-review-kubeconfig"));
    api.write_kubeconfig(&kubeconfig);
    let data = tmp().join(common::unique("token-review-data"));
    let mut c = Collector::start_with(
        &data,
        "127.0.0.1:0",
        &[
            "--token-review-audience",
            AUDIENCE,
            "--token-review-kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
    let url = c.url();
    let token = api.issue_token(AGENTS, Some("tally-test-node"), &[AUDIENCE], 600);
    let token_file = tmp().join(common::unique("sa-token"));
    std::fs::write(&token_file, &token).unwrap();
    // Killed however the test ends: a failed assertion must not leave an
    // agent attached for the tests after it.
    let agent = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["run", "--interval", "1", "--collector", &url])
            .arg("--collector-token-file")
            .arg(&token_file)
            .args(["--node-name", "tally-test-node"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = rt.block_on(nodes(&url, &token)).unwrap();
        if !listed.is_empty() || Instant::now() > deadline {
            break listed;
        }
        thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(listed, vec!["tally-test-node"], "{}", c.log());

    // The kubelet's rotation: a new token swapped in whole (rename), the
    // old one no longer authenticated.
    let rotated = api.issue_token(AGENTS, Some("tally-test-node"), &[AUDIENCE], 600);
    let next = token_file.with_extension("next");
    std::fs::write(&next, &rotated).unwrap();
    std::fs::rename(&next, &token_file).unwrap();
    api.revoke_token(&token);
    c.kill9();
    let before = stored_reports(&data).len();
    c.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored_reports(&data).len() <= before {
        assert!(
            Instant::now() < deadline,
            "no report stored within 30 s of the rotation: {}",
            c.log()
        );
        thread::sleep(Duration::from_millis(300));
    }
    drop(agent);
    let log = c.log();
    assert!(
        !log.contains("refused a stream"),
        "the agent sent its old token: {log}"
    );
    assert!(stored_reports(&data).iter().all(|r| {
        r.node
            .as_ref()
            .is_some_and(|n| n.node_name == "tally-test-node")
    }));
}
