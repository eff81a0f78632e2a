//! The collector against clients that are wrong or hostile, on a real
//! socket: no credentials, someone else's credentials, garbage, truncated
//! and oversized frames, a client that stops reading, and 10,000 idle
//! connections. Throughout, a well-behaved client keeps getting its acks.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use prost::Message as _;
use tally_proto as pb;
use tonic::{Code, metadata::MetadataValue};

use crate::common::{self, daemons::Collector};

/// The collector on loopback, its store in `dir/data`.
fn collector(dir: &Path, extra: &[&str]) -> Collector {
    Collector::start_with(&dir.join("data"), "127.0.0.1:0", extra)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub(crate) fn report(node: &str, instance: &str, seq: u64) -> pb::NodeReport {
    let end = now_ms() - 600_000 + seq as i64 * 10;
    pb::NodeReport {
        node: Some(pb::NodeIdentity {
            node_name: node.into(),
            agent_instance: instance.into(),
            cpus: 2,
            ..Default::default()
        }),
        sequence: seq,
        window_start_unix_ms: end - 1000,
        window_end_unix_ms: end,
        processes: vec![pb::ProcessWindow {
            key: Some(pb::ProcessKey {
                pid: 4242,
                start_ticks: 1,
            }),
            comm: "marker".into(),
            delta: Some(pb::Counters {
                cpu_seconds: 0.5,
                ..Default::default()
            }),
            ..Default::default()
        }],
        agent: None,
        pods: Vec::new(),
        container_pressures: Vec::new(),
    }
}

/// `request` with `token` as its bearer token, if any.
fn authorized<T>(mut request: tonic::Request<T>, token: Option<&str>) -> tonic::Request<T> {
    if let Some(t) = token {
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {t}")).unwrap(),
        );
    }
    request
}

/// Sends `reports` on one stream with an optional bearer token; returns
/// the acks, or the status that ended the stream.
async fn send(
    url: &str,
    token: Option<&str>,
    reports: Vec<pb::NodeReport>,
) -> Result<Vec<u64>, tonic::Status> {
    let acks = send_for_acks(url, token, reports).await?;
    Ok(acks.into_iter().map(|a| a.last_stored_sequence).collect())
}

/// Sends `reports` on one stream and returns the acks, whole.
async fn send_for_acks(
    url: &str,
    token: Option<&str>,
    reports: Vec<pb::NodeReport>,
) -> Result<Vec<pb::IngestAck>, tonic::Status> {
    let n = reports.len();
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = pb::ingest_client::IngestClient::new(channel);
    let request = authorized(tonic::Request::new(tokio_stream::iter(reports)), token);
    let mut acks = client.stream(request).await?.into_inner();
    let mut got = Vec::new();
    while got.len() < n {
        match acks.message().await? {
            Some(a) => got.push(a),
            None => break,
        }
    }
    Ok(got)
}

async fn nodes_listed(url: &str, token: Option<&str>) -> Result<Vec<String>, tonic::Status> {
    let mut client = pb::query_client::QueryClient::connect(url.to_owned())
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let request = authorized(
        tonic::Request::new(pb::ListWorkloadsRequest::default()),
        token,
    );
    let list = client.list_workloads(request).await?.into_inner();
    let mut nodes: Vec<String> = list.workloads.into_iter().flat_map(|w| w.nodes).collect();
    nodes.sort();
    nodes.dedup();
    Ok(nodes)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn no_credentials_off_loopback_needs_insecure() {
    let _serial = common::serial();
    let dir = tmp("insecure");
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["collector", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.join("data"))
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("without credentials") && stderr.contains("--insecure"),
        "{stderr}"
    );
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "* 0123456789abcdef0123\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["collector", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.join("data"))
        .arg("--token-file")
        .arg(&tokens)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("in clear text"), "{stderr}");
    std::fs::write(&tokens, "node-a short\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["collector", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--token-file")
        .arg(&tokens)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tokens:1: the token is 5 characters"),
        "{stderr}"
    );
    // With --insecure it serves.
    let _c = collector(&dir, &["--insecure"]);
}

#[test]
fn tokens_bind_writers_to_their_node() {
    let _serial = common::serial();
    let dir = tmp("tokens");
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        "node-a aaaaaaaaaaaaaaaaaaaaaaaa\n* any-node-token-0000000000\n",
    )
    .unwrap();
    let c = collector(&dir, &["--token-file", tokens.to_str().unwrap()]);
    let url = c.url();
    let rt = runtime();
    let a = "aaaaaaaaaaaaaaaaaaaaaaaa";
    let err = rt
        .block_on(send(&url, None, vec![report("node-a", "i1", 1)]))
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = rt
        .block_on(send(
            &url,
            Some("wrong-token-000000000000"),
            vec![report("node-a", "i1", 1)],
        ))
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(
        rt.block_on(send(&url, Some(a), vec![report("node-a", "i1", 1)]))
            .unwrap(),
        vec![1]
    );
    let err = rt
        .block_on(send(&url, Some(a), vec![report("node-b", "i2", 1)]))
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("node-b"), "{err:?}");
    assert_eq!(
        rt.block_on(send(
            &url,
            Some("any-node-token-0000000000"),
            vec![report("node-c", "i3", 1)]
        ))
        .unwrap(),
        vec![1]
    );
    // Reading needs a token too; node-b wrote nothing.
    let err = rt.block_on(nodes_listed(&url, None)).unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let nodes = rt.block_on(nodes_listed(&url, Some(a))).unwrap();
        if nodes == ["node-a", "node-c"] {
            break;
        }
        assert!(Instant::now() < deadline, "nodes listed: {nodes:?}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// Certificates for a CA, the collector (localhost) and two nodes' agents.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let ssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl runs (cargo xtask setup installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tally-test-ca",
        ]);
        for (name, ext) in [
            (
                "collector",
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            (
                "node-a",
                "subjectAltName=DNS:node-a\nextendedKeyUsage=clientAuth\n",
            ),
        ] {
            std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
            ssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ]);
            ssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

#[test]
fn mutual_tls_agents_write_only_for_their_node() {
    if !common::require_root("mutual_tls_agents_write_only_for_their_node") {
        return;
    }
    let _serial = common::serial();
    let dir = tmp("mtls");
    let pki = Pki::new(&dir);
    let c = collector(
        &dir,
        &[
            "--tls-cert",
            &pki.path("collector.pem"),
            "--tls-key",
            &pki.path("collector.key"),
            "--tls-client-ca",
            &pki.path("ca.pem"),
        ],
    );
    let port = c.addr.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}");
    let client_flags = [
        "--collector-ca".to_owned(),
        pki.path("ca.pem"),
        "--collector-cert".to_owned(),
        pki.path("node-a.pem"),
        "--collector-key".to_owned(),
        pki.path("node-a.key"),
    ];
    let agent = |node: &str| {
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args([
                "run",
                "--interval",
                "1",
                "--collector",
                &url,
                "--node-name",
                node,
            ])
            .args(&client_flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{node}.stderr"))).unwrap())
            .spawn()
            .unwrap()
    };
    let mut own = agent("node-a");
    let mut foreign = agent("node-b");
    let workloads = || {
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["workloads", "--json", "--collector", &url])
            .args(&client_flags)
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let listed = loop {
        let out = workloads();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("\"node-a\"") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "node-a never listed: {text} {}; collector: {}",
            String::from_utf8_lossy(&out.stderr),
            c.log()
        );
        thread::sleep(Duration::from_millis(500));
    };
    // node-b's agent holds node-a's certificate: refused, and it says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c
        .log()
        .contains("is not allowed to write reports for node `node-b`")
    {
        assert!(Instant::now() < deadline, "collector log: {}", c.log());
        thread::sleep(Duration::from_millis(200));
    }
    let _ = (own.kill(), foreign.kill());
    let _ = (own.wait(), foreign.wait());
    assert!(!listed.contains("\"node-b\""), "{listed}");
    let foreign_log = read(&dir.join("node-b.stderr"));
    assert!(foreign_log.contains("not allowed"), "{foreign_log}");
    // Without a client certificate there is no TLS session at all.
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "workloads",
            "--collector",
            &url,
            "--collector-ca",
            &pki.path("ca.pem"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // And plain text to a TLS port fails too.
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "workloads",
            "--collector",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// One gRPC call on `Ingest/Stream` over raw HTTP/2 with `body` as the
/// request's data; returns `grpc-status` and `grpc-message`.
async fn raw_ingest(addr: &str, body: Vec<u8>) -> (Option<i32>, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/tally.v1.Ingest/Stream"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    stream.send_data(Bytes::from(body), true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let status_of = |h: &http::HeaderMap| {
        (
            h.get("grpc-status")
                .and_then(|v| v.to_str().ok()?.parse().ok()),
            h.get("grpc-message")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
        )
    };
    if let (Some(code), msg) = status_of(response.headers()) {
        return (Some(code), msg);
    }
    let mut body = response.into_body();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.data())
        .await
        .expect("data or trailers within 10 s")
    {
        let _ = chunk;
    }
    match body.trailers().await {
        Ok(Some(t)) => status_of(&t),
        _ => (None, String::new()),
    }
}

fn grpc_frame(len_claimed: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8];
    f.extend_from_slice(&len_claimed.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn malformed_frames_are_refused_with_a_reason() {
    let _serial = common::serial();
    let dir = tmp("frames");
    let c = collector(&dir, &["--max-report-bytes", "65536"]);
    let rt = runtime();
    let addr = c.addr.clone();
    let good = report("node-a", "good", 1).encode_to_vec();

    // Garbage where a NodeReport should be.
    let junk: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
    let (code, msg) = rt.block_on(raw_ingest(&addr, grpc_frame(200, &junk)));
    assert_eq!(code, Some(Code::InvalidArgument as i32), "{msg}");
    // A frame that claims more bytes than it brings.
    let (code, msg) = rt.block_on(raw_ingest(&addr, grpc_frame(1000, &good[..10])));
    assert!(code.is_some_and(|c| c != 0), "{code:?} {msg}");
    // Only a frame's header, then the end: tonic alone would end this
    // stream as clean (collector/framing.rs).
    let (code, msg) = rt.block_on(raw_ingest(&addr, grpc_frame(100, &[])));
    assert_eq!(code, Some(Code::InvalidArgument as i32), "{msg}");
    // grpc-message is percent-encoded on the wire.
    assert!(msg.contains("0%20of%20its%20100%20bytes"), "{msg}");
    // A length prefix past --max-report-bytes: refused before buffering.
    let (code, msg) = rt.block_on(raw_ingest(&addr, grpc_frame(u32::MAX, &good)));
    assert_eq!(code, Some(Code::OutOfRange as i32), "{msg}");
    // A well-formed report with a NaN in one of its processes: that
    // process is refused, naming the field; the rest is stored, and the
    // ack says so.
    let mut nan = report("node-a", "nan", 1);
    let mut other = nan.processes[0].clone();
    other.key = Some(pb::ProcessKey {
        pid: 4343,
        start_ticks: 1,
    });
    nan.processes.push(other);
    nan.processes[0].delta.as_mut().unwrap().cpu_seconds = f64::NAN;
    let acks = rt
        .block_on(send_for_acks(&format!("http://{addr}"), None, vec![nan]))
        .unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].last_stored_sequence, 1);
    assert_eq!(acks[0].refused_processes, 1, "{:?}", acks[0]);
    assert!(
        acks[0].refusal.contains("process #0") && acks[0].refusal.contains("cpu_seconds"),
        "{:?}",
        acks[0]
    );
    // A window that ends before it starts: the whole report.
    let mut bad_window = report("node-a", "bad-window", 1);
    bad_window.window_end_unix_ms = bad_window.window_start_unix_ms - 1;
    let (code, msg) = rt.block_on(raw_ingest(
        &addr,
        grpc_frame(bad_window.encoded_len() as u32, &bad_window.encode_to_vec()),
    ));
    assert_eq!(code, Some(Code::InvalidArgument as i32), "{msg}");
    assert!(msg.contains("ends"), "{msg}");
    // Bytes that are not HTTP/2 at all: the connection is closed.
    let mut raw = std::net::TcpStream::connect(&addr).unwrap();
    raw.write_all(b"GET / HTTP/1.0\r\n\r\n\x00\xff\xfe garbage")
        .unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut raw, &mut sink);
    // Through all of it, a well-behaved agent is served.
    let acks = rt
        .block_on(send(
            &c.url(),
            None,
            (1..=5).map(|s| report("node-a", "good", s)).collect(),
        ))
        .unwrap();
    assert_eq!(acks, vec![1, 2, 3, 4, 5]);

    // The long version: rounds of random garbage, cut frames and lying
    // length prefixes, each followed by a good report that must be acked
    // and stored.
    let rounds: u64 = if common::daemons::soak() { 2_000 } else { 50 };
    let mut bad = 6;
    let mut lost = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 512) as usize;
        let junk: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
        let frame = match round % 3 {
            0 => grpc_frame(len as u32, &junk),
            1 => grpc_frame(len as u32 + 100, &junk),
            _ => grpc_frame(u32::MAX - (seed as u32 % 1000), &junk),
        };
        let (code, msg) = rt.block_on(raw_ingest(&addr, frame));
        assert!(
            code.is_some_and(|c| c != 0),
            "round {round}: {code:?} {msg}"
        );
        bad += 1;
        let seq = 6 + round;
        let acked = rt
            .block_on(send(&c.url(), None, vec![report("node-a", "good", seq)]))
            .unwrap();
        if acked != [seq] {
            lost += 1;
        }
    }
    let stored = common::daemons::stored(&dir.join("data"));
    let good: Vec<u64> = stored
        .iter()
        .find(|(instance, _)| instance == "good")
        .map(|(_, seqs)| seqs.clone())
        .unwrap_or_default();
    assert_eq!(
        good,
        (1..=5 + rounds).collect::<Vec<u64>>(),
        "stored sequences"
    );
    assert_eq!(lost, 0);
    assert!(!c.log().contains("panicked"), "{}", c.log());
    common::daemons::record_result(
        "hostile: malformed frames",
        &format!("{} good reports between bad frames", 5 + rounds),
        "garbage, cut frames, oversized length prefixes, NaN, non-HTTP/2 bytes",
        bad + 1,
        lost,
    );
}

#[test]
fn idle_connections_and_a_stalled_reader_leave_agents_served() {
    let _serial = common::serial();
    let dir = tmp("idle");
    let c = collector(&dir, &[]);
    let rt = runtime();
    let baseline = c.rss_kib();

    // 10,000 connections: half never send a byte, half open HTTP/2 and
    // then say nothing more.
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let mut idle = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let mut s = std::net::TcpStream::connect(&c.addr).expect("connect");
        if i % 2 == 1 {
            s.write_all(preface).unwrap();
        }
        idle.push(s);
    }
    // A client that streams reports and never reads its acks.
    let stalled_url = c.url();
    let stalled = rt.spawn(async move {
        let channel = tonic::transport::Endpoint::from_shared(stalled_url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = pb::ingest_client::IngestClient::new(channel);
        let reports = (1..=20_000).map(|s| report("node-stalled", "stalled", s));
        let response = client.stream(tokio_stream::iter(reports)).await.unwrap();
        // Hold the response, read nothing.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(response);
    });
    thread::sleep(Duration::from_secs(3));

    let started = Instant::now();
    let acks = rt
        .block_on(send(
            &c.url(),
            None,
            (1..=20).map(|s| report("node-good", "good", s)).collect(),
        ))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(acks, (1..=20).collect::<Vec<u64>>());
    let loaded = c.rss_kib();
    eprintln!(
        "collector RSS: {} MiB idle, {} MiB with 10,000 idle connections and a stalled reader; 20 reports acked in {:.2} s",
        baseline / 1024,
        loaded / 1024,
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(10),
        "a well-behaved agent waited {took:?}"
    );
    // Bounded: well under a GiB for 10,000 connections.
    assert!(
        loaded < baseline + 512 * 1024,
        "RSS grew from {baseline} KiB to {loaded} KiB"
    );
    // The long version: hold all of it for 5 minutes while a good agent
    // sends a report a second; every one is acked and memory stays bounded.
    let hold = if common::daemons::soak() {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(5)
    };
    let until = Instant::now() + hold;
    let mut seq = 20;
    let mut lost = 0;
    let mut peak = loaded;
    while Instant::now() < until {
        seq += 1;
        let acked = rt
            .block_on(send(&c.url(), None, vec![report("node-good", "good", seq)]))
            .unwrap();
        if acked != [seq] {
            lost += 1;
        }
        peak = peak.max(c.rss_kib());
        thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(lost, 0);
    assert!(
        peak < baseline + 512 * 1024,
        "RSS grew from {baseline} KiB to {peak} KiB while held"
    );
    stalled.abort();
    drop(idle);
    assert!(!c.log().contains("panicked"), "{}", c.log());
    common::daemons::record_result(
        "hostile: idle connections",
        &format!(
            "{seq} reports acked over {} s; RSS {} -> peak {} MiB",
            hold.as_secs() + 3,
            baseline / 1024,
            peak / 1024
        ),
        "10,000 idle connections, a client that never reads its acks",
        10_000,
        lost,
    );
}
