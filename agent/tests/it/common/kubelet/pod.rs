//! A translated pod, running: its container under podman, and the probes
//! the kubelet would run against it.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use super::{PODMAN, PodRun};

/// How a probe asks.
#[derive(Debug, Clone)]
pub enum Handler {
    /// Run in the container (`podman exec`), success on exit 0.
    Exec(Vec<String>),
    /// An HTTP GET from the node to the pod's address, success on 2xx/3xx.
    HttpGet { path: String, port: u16 },
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub handler: Handler,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
}

impl PodRun {
    /// Starts the container; the pod, removed on drop.
    pub fn start(self) -> Pod {
        remove_orphans();
        let out = Command::new(PODMAN).args(&self.args).output().unwrap();
        assert!(
            out.status.success(),
            "podman {:?} failed: {}",
            self.args,
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let ip = inspect(&id, "{{.NetworkSettings.IPAddress}}");
        Pod {
            id,
            ip,
            run: self,
            liveness_failures: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
        }
    }
}

/// Removes, once per test binary, the pods of test binaries that no longer
/// run (killed before their drops ran): they carry `tally-test.owner=<pid>`.
fn remove_orphans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let out = Command::new(PODMAN)
            .args(["ps", "-a", "--filter", "label=tally-test.owner"])
            .args(["--format", "{{.ID}} {{index .Labels \"tally-test.owner\"}}"])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((id, owner)) = line.split_once(' ')
                && !std::path::Path::new("/proc").join(owner).exists()
            {
                let _ = Command::new(PODMAN).args(["rm", "-f", id]).output();
            }
        }
    });
}

fn inspect(id: &str, format: &str) -> String {
    let out = Command::new(PODMAN)
        .args(["inspect", "--format", format, id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A running pod: its container, address, and the kubelet's probes.
pub struct Pod {
    pub id: String,
    pub ip: String,
    pub run: PodRun,
    /// Liveness results that failed (time since start, why).
    liveness_failures: Arc<Mutex<Vec<(Duration, String)>>>,
    stop: Arc<AtomicBool>,
    started: Instant,
}

impl Pod {
    /// Runs a probe once, as the kubelet does; why it failed.
    pub fn probe_once(&self, probe: &Probe) -> Result<(), String> {
        probe_once(&self.id, &self.ip, probe)
    }

    /// Waits until the readiness probe passes (on its schedule, after its
    /// initial delay); how long it took.
    pub fn wait_ready(&self, within: Duration) -> Duration {
        let probe = self
            .run
            .readiness
            .clone()
            .unwrap_or_else(|| panic!("{} has no readiness probe", self.run.name));
        thread::sleep(probe.initial_delay);
        let mut last = String::new();
        while self.started.elapsed() < within {
            match self.probe_once(&probe) {
                Ok(()) => return self.started.elapsed(),
                Err(why) => last = why,
            }
            assert!(
                self.running(),
                "{} exited before it was ready; logs:\n{}",
                self.run.name,
                self.logs()
            );
            thread::sleep(probe.period);
        }
        panic!(
            "{} not ready within {within:?}: {last}; logs:\n{}",
            self.run.name,
            self.logs()
        )
    }

    /// Runs the liveness probe on its schedule in the background; a run of
    /// `failureThreshold` failures would have the kubelet restart the
    /// container, which [`Pod::assert_live`] reports.
    pub fn watch_liveness(&self) {
        let Some(probe) = self.run.liveness.clone() else {
            return;
        };
        let (id, ip) = (self.id.clone(), self.ip.clone());
        let failures = Arc::clone(&self.liveness_failures);
        let stop = Arc::clone(&self.stop);
        let started = self.started;
        thread::spawn(move || {
            let wake = |d: Duration| {
                let until = Instant::now() + d;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(100));
                }
            };
            wake(probe.initial_delay.saturating_sub(started.elapsed()));
            let mut in_a_row = 0;
            while !stop.load(Ordering::Relaxed) {
                match probe_once(&id, &ip, &probe) {
                    Ok(()) => in_a_row = 0,
                    Err(why) => {
                        in_a_row += 1;
                        if in_a_row >= probe.failure_threshold {
                            failures.lock().unwrap().push((started.elapsed(), why));
                        }
                    }
                }
                wake(probe.period);
            }
        });
    }

    /// How many liveness probes ran out of the threshold so far.
    pub fn assert_live(&self) {
        let failures = self.liveness_failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{}: the kubelet would have restarted it: {failures:?}; logs:\n{}",
            self.run.name,
            self.logs()
        );
    }

    pub fn running(&self) -> bool {
        inspect(&self.id, "{{.State.Running}}") == "true"
    }

    /// stdout and stderr so far.
    pub fn logs(&self) -> String {
        let out = Command::new(PODMAN)
            .args(["logs", &self.id])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `podman stop` with the pod's grace period; the exit code.
    pub fn stop(&self) -> i32 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = Command::new(PODMAN).args(["stop", &self.id]).output();
        inspect(&self.id, "{{.State.ExitCode}}")
            .parse()
            .unwrap_or(-1)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = Command::new(PODMAN).args(["rm", "-f", &self.id]).output();
    }
}

fn probe_once(id: &str, ip: &str, probe: &Probe) -> Result<(), String> {
    match &probe.handler {
        Handler::Exec(argv) => {
            let out = Command::new("timeout")
                .arg(probe.timeout.as_secs().max(1).to_string())
                .arg(PODMAN)
                .args(["exec", id])
                .args(argv)
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "exec {argv:?}: {} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
        Handler::HttpGet { path, port } => {
            let addr: SocketAddr = format!("{ip}:{port}").parse().map_err(|e| format!("{e}"))?;
            let get = || -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(&addr, probe.timeout)?;
                s.set_read_timeout(Some(probe.timeout))?;
                write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n"
                )?;
                let mut reply = String::new();
                s.read_to_string(&mut reply)?;
                Ok(reply)
            };
            let reply = get().map_err(|e| format!("GET http://{addr}{path}: {e}"))?;
            let status: u16 = reply
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if (200..400).contains(&status) {
                Ok(())
            } else {
                Err(format!(
                    "GET http://{addr}{path}: {}",
                    reply.lines().next().unwrap_or("no answer")
                ))
            }
        }
    }
}
