//! Shared by the export tests (otlp.rs, prometheus.rs, profiles.rs): run
//! `agent run` with exporters, plain HTTP GETs, free ports, the Python venv
//! with the official OTLP packages, and tools that must be present under CI.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::Agent;

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .to_path_buf()
}

pub fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// True if `tool` runs; off CI a missing tool skips loudly, under CI it
/// fails (the setup installs it).
pub fn require_tool(tool: &str, args: &[&str], test: &str, install: &str) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {tool} is missing under CI ({install})");
    }
    eprintln!("SKIP {test}: {tool} is missing ({install})");
    false
}

/// Python with `grpcio` and `opentelemetry-proto` (from PyPI), in a venv
/// under target/ (`cargo xtask test` creates it; created here if missing).
pub fn python_venv(test: &str) -> Option<PathBuf> {
    let venv = target_dir().join("tally-pyenv");
    let python = venv.join("bin/python");
    let importable = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                "import grpc, opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable(&python) {
        return Some(python);
    }
    let made = Command::new("/usr/bin/python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "grpcio", "opentelemetry-proto"])
            .status()
            .is_ok_and(|s| s.success());
    if made && importable(&python) {
        return Some(python);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: cannot set up the Python venv with grpcio and opentelemetry-proto");
    }
    eprintln!(
        "SKIP {test}: no Python venv with grpcio and opentelemetry-proto (python3-venv and PyPI needed)"
    );
    None
}

/// A port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `GET path` over HTTP/1.0: `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// Percent-encodes a query parameter.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `agent run …`: the common [`Agent`] with `run` first, its stdout JSON
/// lines (with `--json`) and stderr.
pub struct RunAgent(Agent);

impl RunAgent {
    /// Starts `agent run ARGS` and waits until its probes are attached.
    pub fn start(args: &[&str]) -> Self {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        Self(Agent::spawn(&all, &[]))
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// The address of `/metrics`, from the log line.
    pub fn metrics_addr(&self) -> SocketAddr {
        let err = self.0.stderr();
        let at = err
            .find("serving metrics on http://")
            .unwrap_or_else(|| panic!("no metrics address in:\n{err}"));
        let rest = &err[at + "serving metrics on http://".len()..];
        rest[..rest.find('/').unwrap()].parse().unwrap()
    }

    /// Stops the agent with SIGINT (it flushes its exports) and returns
    /// the lines it printed, and its stderr.
    pub fn stop(self) -> (Vec<Value>, String) {
        self.0.interrupt_within(Duration::from_secs(15))
    }
}

/// A child killed when dropped (a failing test leaves nothing behind).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// VmRSS of a process, bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `agent collector` on a loopback port with a data directory of its own.
pub struct RunCollector {
    pub child: KillOnDrop,
    /// The gRPC address it printed.
    pub grpc: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl RunCollector {
    /// Starts `agent collector --listen 127.0.0.1:0 --data … ARGS` and waits
    /// for its `listening on ADDR`.
    pub fn start(args: &[&str]) -> Self {
        let data = tmp().join(crate::common::unique("collector-data"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["collector", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the collector starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let grpc = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("collector said {first:?}"));
        Self {
            child: KillOnDrop(child),
            grpc,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The address of `/metrics`, from the log line (written before the
    /// gRPC listener opens; read by a thread that may lag a little).
    pub fn metrics_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let err = self.stderr();
            if let Some(at) = err.find("serving metrics on http://") {
                let rest = &err[at + "serving metrics on http://".len()..];
                return rest[..rest.find('/').unwrap()].parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no metrics address in:\n{err}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it with SIGTERM and waits; returns its stderr.
    pub fn stop(self) -> String {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGTERM) };
        let mut child = self.child;
        let _ = child.0.wait();
        self.stderr.lock().unwrap().clone()
    }
}
