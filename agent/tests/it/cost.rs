//! The cost lens end to end, with real parts: an `agent run` daemon streams
//! to an `agent collector`; a GC-heavy Go workload (GOGC=50) and a steady
//! one (no allocation) run side by side in kubelet-shaped cgroups; the node
//! is priced as an m6i.large in us-east-1 (`--instance-type`, as for a node
//! without IMDS). In `agent report`'s JSON the GC-heavy one carries a GC tax
//! worth naming and a Go recommendation; the steady one none. The HTML
//! report renders in headless Chromium without network. Then the Go
//! recommendation (GOGC; no GOMEMLIMIT, as no container limit is known) is
//! applied by rerunning the workload, and the rerun moves the way it
//! predicts: a lower GC share of CPU and a higher RSS peak.
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
    collector_with(data, &[])
}

/// The same with more flags.
pub(crate) fn collector_with(data: &Path, flags: &[&str]) -> (Reaped, String) {
    let data = data.to_str().expect("a UTF-8 data directory");
    let mut args = vec!["--data", data];
    args.extend_from_slice(flags);
    spawn_collector(&args)
}

/// `agent collector --listen 127.0.0.1:0 ARGS`, once it listens, and its URL.
pub(crate) fn spawn_collector(args: &[&str]) -> (Reaped, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["collector", "--listen", "127.0.0.1:0"])
        .args(args)
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
    // A store on a database may take a moment to open.
    let url = rx.recv_timeout(Duration::from_secs(20));
    (Reaped(child), url.expect("collector listening"))
}

/// `agent run` streaming to `url` every second as node `node`, without
/// IMDS; killed when dropped.
pub(crate) fn run_agent(url: &str, node: &str) -> Reaped {
    let agent = Reaped(
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["run", "--collector", url, "--interval", "1"])
            .args(["--node-name", node, "--no-imds"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    thread::sleep(Duration::from_secs(2));
    agent
}

pub(crate) fn go_build(name: &str) -> PathBuf {
    common::go_build(name, &tmp().join(format!("go-{name}-cost")), &[], &[])
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
    report_since(url, format, "30m")
}

/// `agent report` over the last `since` (`30m`, `45s`), the node priced as
/// an m6i.large in us-east-1.
pub(crate) fn report_since(url: &str, format: &str, since: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["report", "--collector", url, "--format", format])
        .args(["--since", since, "--instance-type", "m6i.large"])
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
        .find(|w| w["key"].as_str().is_some_and(|n| n.contains(id)))
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

/// The text between `from` and the next `to` in `dom`.
fn between<'a>(dom: &'a str, from: &str, to: &str) -> &'a str {
    let start = dom.find(from).unwrap_or_else(|| panic!("{from} in {dom}"));
    let rest = &dom[start..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

/// The dollars of "$12.34/month" at the start of `text`.
fn dollars(text: &str) -> f64 {
    let amount = text.trim_start().strip_prefix('$').unwrap_or(text);
    let end = amount
        .find("/month")
        .unwrap_or_else(|| panic!("$/month in {text}"));
    amount[..end]
        .parse()
        .unwrap_or_else(|_| panic!("a number in {text}"))
}

/// For a `process/<node>/<pid>/<start ticks>` key whose process still
/// runs: whether the kernel made it, i.e. it is kthreadd (pid 2) or its
/// child (`/proc/<pid>/stat`'s ppid).
fn is_kernel_thread(key: &str) -> Option<bool> {
    let mut parts = key.strip_prefix("process/")?.rsplitn(3, '/');
    let ticks: u64 = parts.next()?.parse().ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the comm's closing parenthesis: state (field 3), ppid (4), …,
    // starttime (22).
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ppid: u32 = fields.get(1)?.parse().ok()?;
    let start: u64 = fields.get(19)?.parse().ok()?;
    (start == ticks).then_some(pid == 2 || ppid == 2)
}

/// The HTML report as Chromium rendered it, against the JSON report
/// fetched seconds before and against what the test started: the summary
/// opens it with the node's price (an m6i.large at $0.096/h, as the agent
/// was told), the GC tax and its share, and the changes largest first; the
/// GC-heavy workload is named by its program and container; kernel
/// threads and Tally's own processes have no row.
fn check_rendered_summary_and_names(dom: &str, report: &Value, heavy_id: &str, heavy_bin: &Path) {
    let summary = between(dom, "<section id=\"summary\">", "</section>");
    let spend = 0.096 * 730.0;
    assert!(
        summary.contains(&format!("Spend: ${spend:.2}/month for 1 priced node(s)")),
        "{summary}"
    );
    let tax_text = between(summary, "GC tax: ", "</p>");
    let tax = dollars(&tax_text["GC tax: ".len()..]);
    let share: f64 = between(tax_text, ", ", "%")[2..].parse().unwrap();
    assert!((share - tax / spend * 100.0).abs() < 0.1, "{tax_text}");
    // At least the GC-heavy workload's (other processes of the host add
    // theirs; its per-month figure falls a little as the window grows
    // between the two reports).
    let heavy_tax = workload(report, &heavy_id[..12])["gc_tax_usd_per_month"]
        .as_f64()
        .unwrap();
    assert!(
        heavy_tax > 0.0 && tax >= 0.8 * heavy_tax,
        "{tax_text} vs the GC-heavy one's {heavy_tax} in the JSON"
    );
    assert!(report["summary"]["gc_tax_usd_per_month"].as_f64().unwrap() >= heavy_tax);
    let changes: Vec<f64> = summary
        .split("<li class=\"change\">")
        .skip(1)
        .map(|li| dollars(between(li, " — ", "</li>").trim_start_matches(" — ")))
        .collect();
    assert!((1..=5).contains(&changes.len()), "{summary}");
    assert!(changes.windows(2).all(|p| p[0] >= p[1]), "{summary}");
    assert!(changes.iter().all(|&c| c >= 0.01), "{summary}");
    // Named by its program (its comm: the binary's first 15 bytes) and its
    // container's short id; the store's key only as the cell's title.
    let comm: String = heavy_bin
        .file_name()
        .unwrap()
        .to_string_lossy()
        .chars()
        .take(15)
        .collect();
    let name = format!("{comm} (container {})", &heavy_id[..12]);
    assert!(
        dom.contains(&format!("<td title=\"container/{heavy_id}\">{name}</td>")),
        "{name} in {dom}"
    );
    // What no team acts on is in the JSON's system list, not in a row.
    let system = report["system"].as_array().unwrap();
    let tally = system.iter().filter(|w| w["system"] == "tally").count();
    assert!(
        tally >= 1,
        "the agent and collector are Tally's: {system:#?}"
    );
    for w in system {
        let name = w["name"].as_str().unwrap();
        assert!(
            !dom.contains(&format!(">{name}</td>")),
            "{name} has a row: {dom}"
        );
    }
    assert!(
        report["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["system"].is_null() && w["program"] != "agent"),
        "{report:#}"
    );
    // Kernel threads as the kernel counts them: kthreadd (pid 2) and its
    // children. Those still running when checked must be exactly the
    // report's kernel threads.
    let kernel = system
        .iter()
        .filter(|w| w["system"] == "kernel-thread")
        .count();
    assert!(kernel >= 1, "kworkers run in any 20 s: {system:#?}");
    assert!(summary.contains("System (kernel threads "), "{summary}");
    for w in system.iter().chain(report["workloads"].as_array().unwrap()) {
        let Some(kthread) = w["key"].as_str().and_then(is_kernel_thread) else {
            continue;
        };
        assert_eq!(kthread, w["system"] == "kernel-thread", "{w:#}");
    }
    eprintln!(
        "rendered summary: {}; {} system workloads ({kernel} kernel threads, {tally} Tally)",
        between(summary, "<p class=\"spend\">", "</p>"),
        system.len()
    );
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
    let _agent = run_agent(&url, "cost-node");

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
    // The full ids, as its cgroup path names them.
    assert_eq!(h["container_id"], heavy_id.as_str(), "{h:#}");
    assert_eq!(
        h["pod_uid"], "5b2e7c1d-0f3a-4c8e-9d6b-1a2b3c4d5e6f",
        "{h:#}"
    );
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
            .position(|w| w["key"].as_str().unwrap().contains(id))
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
    // GOMEMLIMIT only where a container limit is known; none is here.
    assert!(
        go["settings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["name"] != "GOMEMLIMIT"),
        "{go:#}"
    );
    // The HTML report: one file, rendered offline.
    let html = tmp().join(common::unique("cost-report") + ".html");
    std::fs::write(&html, report(&url, "html")).unwrap();
    match render_offline(&html) {
        Some(dom) => {
            assert!(dom.contains("<svg id=\"tax-chart\""), "{dom}");
            assert!(dom.contains(&heavy_id[..12]), "{dom}");
            assert!(dom.matches("<polyline").count() >= 2, "{dom}");
            check_rendered_summary_and_names(&dom, &first, &heavy_id, &heavy_bin);
        }
        None => {
            assert!(std::env::var_os("CI").is_none(), "chromium missing");
            eprintln!("SKIP the HTML check: chromium is not installed");
        }
    }

    let text = report(&url, "text");
    eprintln!("{}", text.lines().take(14).collect::<Vec<_>>().join("\n"));

    // Apply the recommendation and check the predicted direction.
    let tuned_cg = container_cgroup(&tuned_id);
    let mut tuned = run_in(
        &tuned_cg,
        &heavy_bin,
        &["20", "1"],
        &[("GOGC", &gogc), one_cpu],
    );
    assert!(tuned.0.wait().unwrap().success());
    thread::sleep(Duration::from_secs(3));
    let second: Value = serde_json::from_str(&report(&url, "json")).unwrap();
    let h = workload(&second, &heavy_id[..12]);
    let t = workload(&second, &tuned_id[..12]);
    let share = |w: &Value| w["gc_cpu_share"].as_f64().unwrap();
    let peak = |w: &Value| w["rss_peak_bytes"].as_u64().unwrap();
    eprintln!(
        "applied GOGC={gogc}: GC share {:.3} -> {:.3}, RSS peak {} -> {} MiB",
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
}
