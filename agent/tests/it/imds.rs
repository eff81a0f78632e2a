//! Node identity from an IMDSv2 stand-in on loopback: without a token it
//! answers 401; the client takes a token first, then reads instance type,
//! zone, region and lifecycle. When IMDS is down (a closed port, or one that
//! accepts and never answers), the client gives up within its 1 s
//! time-out, and `agent run` still starts collecting within 2 s, its
//! reports saying "unknown" in the end.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use tally_node::enrich::node::{IMDS_TIMEOUT, Imds};

use crate::common;

const TOKEN: &str = "AQAEAOrtwPZ-imds-test-token==";

/// IMDSv2 as EC2 serves it, for one spot m7g.large in eu-west-1b.
struct ImdsStandIn {
    addr: SocketAddr,
    /// Status codes answered, by "METHOD path".
    answered: Arc<Mutex<Vec<(String, u16)>>>,
    stop: Arc<AtomicBool>,
}

impl ImdsStandIn {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, sp) = (answered.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    let log = log.clone();
                    thread::spawn(move || serve(conn, &log));
                }
            }
        });
        Self {
            addr,
            answered,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn answered(&self) -> Vec<(String, u16)> {
        self.answered.lock().unwrap().clone()
    }
}

impl Drop for ImdsStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut conn: TcpStream, log: &Mutex<Vec<(String, u16)>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("PUT", "/latest/api/token") => {
            match headers
                .get("x-aws-ec2-metadata-token-ttl-seconds")
                .and_then(|v| v.parse::<u32>().ok())
            {
                Some(ttl) if (1..=21600).contains(&ttl) => (200, TOKEN),
                _ => (400, ""),
            }
        }
        ("GET", p) if p.starts_with("/latest/meta-data/") => {
            if headers.get("x-aws-ec2-metadata-token").map(String::as_str) != Some(TOKEN) {
                (401, "")
            } else {
                match &p["/latest/meta-data/".len()..] {
                    "instance-type" => (200, "m7g.large"),
                    "placement/availability-zone" => (200, "eu-west-1b"),
                    "placement/region" => (200, "eu-west-1"),
                    "instance-life-cycle" => (200, "spot"),
                    _ => (404, ""),
                }
            }
        }
        _ => (405, ""),
    };
    log.lock()
        .unwrap()
        .push((format!("{method} {path}"), status));
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Error",
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nServer: EC2ws\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// IMDSv1-style GET without a token: 401, as on an instance that requires
/// IMDSv2.
#[test]
fn without_a_token_the_stand_in_answers_401() {
    let _serial = common::serial();
    let imds = ImdsStandIn::start();
    let mut conn = TcpStream::connect(imds.addr).unwrap();
    write!(
        conn,
        "GET /latest/meta-data/instance-type HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[test]
fn the_client_takes_a_token_then_reads_the_facts() {
    let _serial = common::serial();
    let imds = ImdsStandIn::start();
    let facts = Imds::new(&imds.url(), IMDS_TIMEOUT)
        .unwrap()
        .fetch()
        .unwrap();
    assert_eq!(facts.instance_type.as_deref(), Some("m7g.large"));
    assert_eq!(facts.zone.as_deref(), Some("eu-west-1b"));
    assert_eq!(facts.region.as_deref(), Some("eu-west-1"));
    assert_eq!(facts.lifecycle.as_deref(), Some("spot"));
    let answered = imds.answered();
    assert_eq!(answered[0], ("PUT /latest/api/token".to_owned(), 200));
    assert_eq!(answered.len(), 5, "{answered:?}");
    assert!(answered.iter().all(|(_, s)| *s == 200), "{answered:?}");
}

/// A port that accepts connections and never answers (a black hole).
fn black_hole() -> (SocketAddr, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        while rx.try_recv().is_err() {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            thread::sleep(Duration::from_millis(10));
        }
    });
    (addr, tx)
}

fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn a_silent_or_closed_imds_fails_within_its_timeout() {
    let _serial = common::serial();
    let (hole, _keep) = black_hole();
    let started = Instant::now();
    let err = Imds::new(&format!("http://{hole}"), IMDS_TIMEOUT)
        .unwrap()
        .fetch()
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
        "black hole: {took:?} ({err})"
    );
    let started = Instant::now();
    let err = Imds::new(&format!("http://{}", closed_port()), IMDS_TIMEOUT)
        .unwrap()
        .fetch()
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "closed port: {:?} ({err})",
        started.elapsed()
    );
}

/// `agent run` as a child, stderr collected.
struct AgentRun {
    child: Child,
    stderr: Arc<Mutex<String>>,
    started: Instant,
}

impl AgentRun {
    fn start(args: &[&str]) -> Self {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent"))
            .arg("run")
            .args(args)
            .env("TALLY_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            stderr,
            started,
        }
    }

    /// How long after the start `needle` appeared in stderr.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Duration {
        while self.started.elapsed() < timeout {
            if self.stderr.lock().unwrap().contains(needle) {
                return self.started.elapsed();
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "no {needle:?} within {timeout:?}; stderr:\n{}",
            self.stderr.lock().unwrap()
        );
    }

    fn stop(mut self) -> String {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(50));
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for AgentRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// IMDS black-holed, or its port closed: the agent collects within 2 s
/// all the same, and says once that the facts are unknown.
#[test]
fn agent_run_starts_within_2s_when_imds_is_down() {
    let test = "agent_run_starts_within_2s_when_imds_is_down";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let (hole, _keep) = black_hole();
    let nowhere = format!("http://{}", closed_port());
    for imds in [
        format!("http://{hole}"),
        format!("http://{}", closed_port()),
    ] {
        let agent = AgentRun::start(&[
            "--collector",
            &nowhere,
            "--interval",
            "0.5",
            "--imds-endpoint",
            &imds,
            "--node-name",
            "imds-test",
        ]);
        let attached = agent.wait_for("probes attached", Duration::from_secs(10));
        assert!(
            attached < Duration::from_secs(2),
            "{imds}: probes attached after {attached:?}"
        );
        agent.wait_for("are \"unknown\"", Duration::from_secs(5));
        let stderr = agent.stop();
        assert_eq!(
            stderr.matches("\"unknown\"").count(),
            1,
            "said once: {stderr}"
        );
    }
}

/// The facts travel in every NodeReport: a real collector stores them.
#[test]
fn reports_carry_the_node_identity_from_imds() {
    let test = "reports_carry_the_node_identity_from_imds";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let imds = ImdsStandIn::start();
    let data: PathBuf =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("imds-data"));
    let mut collector = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["collector", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = collector.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let agent = AgentRun::start(&[
        "--collector",
        &format!("http://{addr}"),
        "--interval",
        "0.5",
        "--imds-endpoint",
        &imds.url(),
        "--node-name",
        "imds-node",
    ]);
    agent.wait_for("node identity from IMDS", Duration::from_secs(10));
    thread::sleep(Duration::from_millis(2000));
    let _ = agent.stop();
    let db = rusqlite::Connection::open(data.join("tally.sqlite")).unwrap();
    let bodies: Vec<Vec<u8>> = db
        .prepare("SELECT body FROM reports ORDER BY sequence")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let _ = collector.kill();
    let _ = collector.wait();
    use prost::Message as _;
    let last =
        tally_proto::NodeReport::decode(&bodies.last().expect("reports stored")[..]).unwrap();
    let node = last.node.unwrap();
    assert_eq!(node.node_name, "imds-node");
    assert_eq!(node.instance_type, "m7g.large");
    assert_eq!(node.zone, "eu-west-1b");
    assert_eq!(node.region, "eu-west-1");
    assert_eq!(node.lifecycle, "spot");
}
