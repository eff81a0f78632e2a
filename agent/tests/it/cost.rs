//! The cost lens end to end, with real parts: an `agent run` daemon streams
//! to an `agent collector`; a GC-heavy Go workload (GOGC=50) and a steady
//! one (no allocation) run side by side in kubelet-shaped cgroups; the node
//! is priced as an m6i.large in us-east-1 (`--instance-type`, as for a node
//! without IMDS). In `agent report`'s JSON the GC-heavy one carries a GC tax
//! worth naming and a Go recommendation; the steady one none. The HTML
//! report renders in headless Chromium without network. Then the Go
//! recommendation (GOGC and GOMEMLIMIT) is applied by rerunning the
//! workload, and the rerun moves the way it predicts: a lower GC share of
//! CPU, a higher RSS peak, and that peak within the GOMEMLIMIT it set.
//! Needs root, go, and (for the HTML check) chromium.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use serde_json::Value;

use crate::common::{self, TestCgroup};

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// A child killed (and reaped) when the test ends, passing or not.
pub(crate) struct Reaped(pub(crate) Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `agent collector` on a free port, and its URL.
pub(crate) fn collector(data: &Path) -> (Reaped, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["collector", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(format!("http://{addr}"));
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(10));
    (Reaped(child), url.expect("collector listening"))
}

pub(crate) fn go_build(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/workloads/go/{name}.go"));
    let bin = tmp().join(format!("go-{name}-cost"));
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", tmp().join("gocache"))
        .env("HOME", tmp())
        .status()
        .unwrap();
    assert!(built.success(), "go build {name}");
    bin
}

/// A containerd-shaped cgroup for container `id`.
pub(crate) fn container_cgroup(id: &str) -> TestCgroup {
    let uid = "5b2e7c1d_0f3a_4c8e_9d6b_1a2b3c4d5e6f";
    TestCgroup::create(&format!(
        "{}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{id}.scope",
        common::unique("tally-test-cost")
    ))
}

pub(crate) fn container_id(tag: &str) -> String {
    format!("{tag:0<64}")
}

/// Runs `bin args` in `cg` with `env` until it exits.
pub(crate) fn run_in(cg: &TestCgroup, bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Reaped {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null());
    cg.enter_on_spawn(&mut cmd);
    Reaped(cmd.spawn().unwrap())
}

pub(crate) fn report(url: &str, format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["report", "--collector", url, "--format", format])
        .args(["--since", "30m", "--instance-type", "m6i.large"])
        .args(["--region", "us-east-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agent report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn workload<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["workload"].as_str().is_some_and(|n| n.contains(id)))
        .unwrap_or_else(|| panic!("{id} in the report: {report:#}"))
}

fn setting(rec: &Value, name: &str) -> String {
    rec["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["value"].as_str())
        .unwrap_or_else(|| panic!("{name} in {rec:#}"))
        .to_string()
}

/// The HTML report rendered by headless Chromium in a network namespace of
/// its own (no interface but a down loopback): its DOM, or `None` when
/// chromium is not installed.
fn render_offline(html: &Path) -> Option<String> {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())?;
    let profile = tmp().join(common::unique("chromium-profile"));
    let out = Command::new("unshare")
        .args([
            "--net",
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=2000", "--dump-dom"])
        .arg(format!("file://{}", html.display()))
        .stderr(Stdio::null())
        .output()
        .expect("unshare runs");
    assert!(out.status.success(), "chromium failed: {out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn gc_tax_of_a_gc_heavy_go_workload_and_its_recommendation_applied() {
    let test = "gc_tax_of_a_gc_heavy_go_workload_and_its_recommendation_applied";
    if !common::require_root(test) {
        return;
    }
    if Command::new("go").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: go is missing under CI"
        );
        eprintln!("SKIP {test}: go is not installed");
        return;
    }
    let _serial = common::serial();
    let heavy_bin = go_build("allocheavy");
    let steady_bin = go_build("compute");
    let data = tmp().join(common::unique("cost-data"));
    let (_collector, url) = collector(&data);
    let _agent = Reaped(
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["run", "--collector", &url, "--interval", "1"])
            .args(["--node-name", "cost-node", "--no-imds"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    thread::sleep(Duration::from_secs(2));

    let (heavy_id, steady_id, tuned_id) = (
        container_id("c057a1"),
        container_id("c057b2"),
        container_id("c057c3"),
    );
    let heavy_cg = container_cgroup(&heavy_id);
    let steady_cg = container_cgroup(&steady_id);
    let one_cpu = ("GOMAXPROCS", "1");
    let mut heavy = run_in(
        &heavy_cg,
        &heavy_bin,
        &["20", "1"],
        &[("GOGC", "50"), one_cpu],
    );
    let mut steady = run_in(&steady_cg, &steady_bin, &["20"], &[one_cpu]);
    assert!(heavy.0.wait().unwrap().success());
    assert!(steady.0.wait().unwrap().success());
    thread::sleep(Duration::from_secs(3));

    let first: Value = serde_json::from_str(&report(&url, "json")).unwrap();
    assert_eq!(first["nodes"][0]["instance_type"], "m6i.large", "{first:#}");
    let node_cost = first["nodes"][0]["node_cost_usd"].as_f64().unwrap();
    let allocated = first["nodes"][0]["allocated_usd"].as_f64().unwrap();
    let idle = first["nodes"][0]["idle_usd"].as_f64().unwrap();
    assert!((node_cost - allocated - idle).abs() < 0.01, "{first:#}");
    let h = workload(&first, &heavy_id[..12]);
    let s = workload(&first, &steady_id[..12]);
    eprintln!(
        "gc-heavy: GC share {:.3}, GC tax ${:.4}/month, RSS peak {} MiB; steady: GC share {:.3}, GC tax ${:.6}/month",
        h["gc_cpu_share"],
        h["gc_tax_usd_per_month"].as_f64().unwrap(),
        h["rss_peak_bytes"].as_u64().unwrap() >> 20,
        s["gc_cpu_share"],
        s["gc_tax_usd_per_month"].as_f64().unwrap()
    );
    assert!(h["gc_tax_usd_per_month"].as_f64().unwrap() > 0.0, "{h:#}");
    assert_eq!(h["gc_tax_worth_naming"], true, "{h:#}");
    assert_eq!(s["gc_tax_worth_naming"], false, "{s:#}");
    assert!(s["gc_tax_usd_per_month"].as_f64().unwrap() < 0.01, "{s:#}");
    let rank = |id: &str| {
        first["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .position(|w| w["workload"].as_str().unwrap().contains(id))
    };
    assert!(rank(&heavy_id[..12]) < rank(&steady_id[..12]));
    let go = h["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == "go")
        .unwrap_or_else(|| panic!("a Go recommendation: {h:#}"));
    assert!(
        s["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["target"] != "go")
    );
    let gogc = setting(go, "GOGC");
    let gomemlimit = setting(go, "GOMEMLIMIT");
    let limit_mib: u64 = gomemlimit.trim_end_matches("MiB").parse().unwrap();
    let heavy_peak = h["rss_peak_bytes"].as_u64().unwrap();
    assert!(
        limit_mib << 20 >= heavy_peak,
        "never below the peak: {go:#}"
    );

    // The HTML report: one file, rendered offline.
    let html = tmp().join(common::unique("cost-report") + ".html");
    std::fs::write(&html, report(&url, "html")).unwrap();
    match render_offline(&html) {
        Some(dom) => {
            assert!(dom.contains("<svg id=\"tax-chart\""), "{dom}");
            assert!(dom.contains(&heavy_id[..12]), "{dom}");
            assert!(dom.matches("<polyline").count() >= 2, "{dom}");
        }
        None => {
            assert!(std::env::var_os("CI").is_none(), "chromium missing");
            eprintln!("SKIP the HTML check: chromium is not installed");
        }
    }

    // Apply the recommendation and check the predicted direction.
    let tuned_cg = container_cgroup(&tuned_id);
    let mut tuned = run_in(
        &tuned_cg,
        &heavy_bin,
        &["20", "1"],
        &[("GOGC", &gogc), ("GOMEMLIMIT", &gomemlimit), one_cpu],
    );
    assert!(tuned.0.wait().unwrap().success());
    thread::sleep(Duration::from_secs(3));
    let second: Value = serde_json::from_str(&report(&url, "json")).unwrap();
    let h = workload(&second, &heavy_id[..12]);
    let t = workload(&second, &tuned_id[..12]);
    let share = |w: &Value| w["gc_cpu_share"].as_f64().unwrap();
    let peak = |w: &Value| w["rss_peak_bytes"].as_u64().unwrap();
    eprintln!(
        "applied {gogc} {gomemlimit}: GC share {:.3} -> {:.3}, RSS peak {} -> {} MiB",
        share(h),
        share(t),
        peak(h) >> 20,
        peak(t) >> 20
    );
    assert!(share(t) < share(h), "GC share should fall: {t:#}");
    assert!(
        peak(t) > peak(h),
        "RSS should rise into the headroom: {t:#}"
    );
    // GOMEMLIMIT counts Go's memory, not RSS: allow the runtime's own.
    assert!(peak(t) <= (limit_mib + 16) << 20, "{t:#}");
}
