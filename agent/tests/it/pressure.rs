//! Memory pressure (PSI) per container: two real containers read a 96 MiB
//! file through again and again, one under a 32 MiB memory limit (its page
//! cache thrashes, and its tasks stall in reclaim and on refaults), one
//! without. The kernel's own `memory.pressure` of each container's cgroup
//! is the reference: the agent's figures must be its differences.
use std::{path::Path, thread, time::Duration};

use serde_json::Value;

use crate::common::{
    self,
    container::{self, Image, Run},
};
use crate::exporting::{RunAgent, RunCollector, http_get, tmp};

/// The `some` total of a cgroup's `memory.pressure`, µs.
fn kernel_memory_some_us(cgroup_dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(cgroup_dir.join("memory.pressure")).ok()?;
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// The cgroup directory of a running container's first process.
fn cgroup_dir(pid: u32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .trim_start_matches('/')
        .to_owned();
    common::cgroup2_mount().join(path)
}

/// (memory some, memory full, cpu some) seconds summed over a container's
/// windows, and how many windows had pressure.
fn pressure_of(lines: &[Value], id: &str) -> (f64, f64, f64, usize) {
    let windows: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"] == "container" && l["container_id"] == id)
        .filter(|l| !l["pressure"].is_null())
        .collect();
    let sum = |resource: &str, field: &str| -> f64 {
        windows
            .iter()
            .filter_map(|w| w["pressure"][resource][field].as_f64())
            .sum()
    };
    (
        sum("memory", "some_seconds"),
        sum("memory", "full_seconds"),
        sum("cpu", "some_seconds"),
        windows.len(),
    )
}

#[test]
fn a_container_squeezed_by_its_memory_limit_stalls_and_an_unsqueezed_one_does_not() {
    let test = "a_container_squeezed_by_its_memory_limit_stalls_and_an_unsqueezed_one_does_not";
    if !common::require_root(test) || !container::require_docker(test) {
        return;
    }
    let _serial = common::serial();
    let image = Image::static_c(
        "workload",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/workload.c"),
    );
    // Through a collector too: the reports carry each container's stall.
    let collector = RunCollector::start(&[]);
    let url = format!("http://{}", collector.grpc);
    let agent = RunAgent::start(&[
        "--collector",
        &url,
        "--json",
        "--metrics-listen",
        "127.0.0.1:0",
        "--interval",
        "1",
    ]);
    let data = |name: &str| {
        let dir = tmp().join(common::unique(name));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let command = ["thrash", "/data/file", "96", "8"];
    let squeezed = Run::new()
        .memory_mib(32)
        .volume(&data("psi-squeezed"), "/data", true)
        .start(&image, &command);
    let free = Run::new()
        .volume(&data("psi-free"), "/data", true)
        .start(&image, &command);
    // The kernel's own totals, read while both run (a container's cgroup
    // goes with it), from 2 s in to 6 s in.
    thread::sleep(Duration::from_secs(2));
    let (squeezed_dir, free_dir) = (cgroup_dir(squeezed.pid), cgroup_dir(free.pid));
    let before = (
        kernel_memory_some_us(&squeezed_dir),
        kernel_memory_some_us(&free_dir),
    );
    thread::sleep(Duration::from_secs(4));
    let after = (
        kernel_memory_some_us(&squeezed_dir),
        kernel_memory_some_us(&free_dir),
    );
    let metrics = http_get(agent.metrics_addr(), "/metrics").unwrap().1;
    squeezed.wait_success(Duration::from_secs(60));
    free.wait_success(Duration::from_secs(60));
    thread::sleep(Duration::from_millis(1500));
    let (lines, stderr) = agent.stop();
    let rows = crate::cluster::workloads(&url);
    let report: Value = serde_json::from_str(&crate::cost::report(&url, "json")).unwrap();
    let collector_err = collector.stop();

    let (sq_some, sq_full, sq_cpu, sq_windows) = pressure_of(&lines, &squeezed.id);
    let (free_some, free_full, _, free_windows) = pressure_of(&lines, &free.id);
    let kernel = |b: Option<u64>, a: Option<u64>| {
        a.zip(b)
            .map(|(a, b)| a.saturating_sub(b) as f64 / 1e6)
            .expect("memory.pressure of a running container")
    };
    let (kernel_sq, kernel_free) = (kernel(before.0, after.0), kernel(before.1, after.1));
    eprintln!(
        "squeezed {}: memory some {sq_some:.3} s, full {sq_full:.3} s, cpu some {sq_cpu:.3} s over {sq_windows} windows (the kernel: {kernel_sq:.3} s in 4 s); \
         unsqueezed {}: memory some {free_some:.3} s, full {free_full:.3} s over {free_windows} windows (the kernel: {kernel_free:.3} s in 4 s)",
        squeezed.id, free.id
    );
    assert!(
        sq_windows >= 4 && free_windows >= 4,
        "pressure in most windows of both: {sq_windows}, {free_windows}; stderr:\n{stderr}"
    );
    assert!(
        kernel_sq > 0.0,
        "the kernel saw the squeezed container stall (else the test proves nothing)"
    );
    assert!(
        sq_some >= kernel_sq,
        "the agent's windows cover the kernel's 4 s and more: {sq_some:.3} s against {kernel_sq:.3} s"
    );
    assert!(sq_full <= sq_some + 1e-6, "full is within some");
    assert_eq!(
        kernel_free, 0.0,
        "the unsqueezed container never stalled on memory"
    );
    assert_eq!(free_some, 0.0, "nor does the agent say so");
    assert_eq!(free_full, 0.0);
    // Prometheus has the squeezed container's counter, above zero.
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("tally_container_memory_pressure_seconds_total{")
                && l.contains(&squeezed.id)
                && l.contains("type=\"some\"")
        })
        .unwrap_or_else(|| panic!("no memory pressure series in /metrics:\n{metrics}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value > 0.0, "{line}");
    // The collector's workloads: the squeezed container's share of its
    // last minute stalled, above zero; the other's zero, not unknown.
    let share = |id: &str| {
        rows.iter()
            .find(|r| r["container_id"] == id)
            .unwrap_or_else(|| panic!("no workload {id}: {rows:?}\ncollector:\n{collector_err}"))
            ["memory_stall_share"]
            .as_f64()
    };
    let (sq_share, free_share) = (share(&squeezed.id), share(&free.id));
    eprintln!(
        "agent workloads: memory_stall_share {sq_share:?} squeezed, {free_share:?} unsqueezed"
    );
    assert!(sq_share.is_some_and(|s| s > 0.0), "{sq_share:?}");
    assert_eq!(free_share, Some(0.0));
    // The cost report: the same shares over the whole span, and the
    // squeezed one's requests told why (it is no GC'd runtime, so only the
    // Kubernetes recommendation is made; docker's limit is no pod's, so
    // the report says it does not know it).
    let line = |id: &str| crate::cost::workload(&report, id).clone();
    let (sq_line, free_line) = (line(&squeezed.id), line(&free.id));
    let report_share = |l: &Value| l["memory_stall_share"].as_f64();
    eprintln!(
        "agent report: memory_stall_share {:?} squeezed, {:?} unsqueezed",
        report_share(&sq_line),
        report_share(&free_line)
    );
    let sq_report_share = report_share(&sq_line).expect("the squeezed container's stall share");
    assert!(sq_report_share > 0.0);
    assert_eq!(report_share(&free_line), Some(0.0));
    let told = |l: &Value| {
        l["recommendations"].as_array().unwrap().iter().any(|r| {
            r["caveats"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c.as_str().unwrap().contains("stalled on memory"))
        })
    };
    assert_eq!(
        told(&sq_line),
        sq_report_share >= 0.01,
        "the requests name the stall exactly when it is evidence (≥ 1%): {sq_line:#}"
    );
    assert!(!told(&free_line));
}
