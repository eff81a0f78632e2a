//! What the churn and map-pressure tests need: a fork storm, workloads
//! running in the background, the agent's RSS, and the occupancy and loss
//! lines of its stderr.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
};

use serde_json::Value;

use super::TestCgroup;

/// A workload running in the background, killed if the test fails first.
pub struct Running(Option<Child>);

impl Running {
    pub fn spawn(cgroup: Option<&TestCgroup>, program: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::piped());
        if let Some(cg) = cgroup {
            cg.enter_on_spawn(&mut cmd);
        }
        Self(Some(cmd.spawn().expect("workload starts")))
    }

    /// Waits for it and returns its JSON line.
    pub fn finish(mut self) -> Value {
        let out = self.0.take().unwrap().wait_with_output().unwrap();
        assert!(out.status.success(), "workload failed: {out:?}");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("workload output {:?}: {e}", out.stdout))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Builds `tests/workloads/forkstorm.c` once.
pub fn forkstorm() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = built.as_ref() {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/forkstorm.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("forkstorm");
    let ok = Command::new("gcc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc runs")
        .success();
    assert!(ok, "gcc failed on {}", src.display());
    *built = Some(out.clone());
    out
}

/// VmRSS of a process, bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// `name=N` from the agent's debug "occupancy" lines, in order.
pub fn occupancy(stderr: &str, name: &str) -> Vec<u64> {
    let key = format!("{name}=");
    stderr
        .lines()
        .filter(|l| l.contains("occupancy"))
        .filter_map(|l| {
            l.split(&key)
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The lost counts of the agent's "updates lost" warnings, summed.
pub fn warned_losses(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.contains("updates lost"))
        .filter_map(|l| {
            l.split("lost=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
