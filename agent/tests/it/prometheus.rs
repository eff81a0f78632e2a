//! A real Prometheus server (Debian's `prometheus` package), started on
//! loopback with a scrape config, scrapes `agent run --metrics-listen`; a
//! query through Prometheus' HTTP API returns the workload's `tally_…`
//! series with the expected labels and the rate the kernel's own CPU time
//! of the workload gives.
use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{self, TestCgroup};
use crate::exporting::{KillOnDrop, RunAgent, free_port, http_get, require_tool, tmp, urlencode};

/// Debian's `prometheus`, or a loud skip off CI (a failure under CI).
pub fn require_prometheus(test: &str) -> bool {
    require_tool(
        "prometheus",
        &["--version"],
        test,
        "apt-get install prometheus",
    )
}

/// A Prometheus server on loopback scraping one target every second.
pub struct Prometheus {
    pub addr: std::net::SocketAddr,
    _child: KillOnDrop,
}

impl Prometheus {
    /// Starts it and waits until it is ready.
    pub fn start(target: std::net::SocketAddr) -> Self {
        let dir = tmp().join(common::unique("prometheus"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tally\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = KillOnDrop(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http_get(addr, "/-/ready").is_ok_and(|(s, _)| s == 200) {
            assert!(Instant::now() < deadline, "Prometheus not ready in 30 s");
            thread::sleep(Duration::from_millis(200));
        }
        Self {
            addr,
            _child: child,
        }
    }
}

/// `GET /api/v1/query?query=…`: the result vector.
pub fn query(prom: std::net::SocketAddr, q: &str) -> Vec<Value> {
    let (status, body) = http_get(prom, &format!("/api/v1/query?query={}", urlencode(q)))
        .expect("Prometheus answers");
    assert_eq!(status, 200, "{q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{q}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// utime + stime of a process, seconds (/proc/PID/stat).
fn kernel_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the comm, which ends at the last ')': state is field 3,
    // utime 14 and stime 15.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

#[test]
fn prometheus_scrapes_the_agent_and_queries_return_the_workload() {
    let test = "prometheus_scrapes_the_agent_and_queries_return_the_workload";
    if !common::require_root(test) || !require_prometheus(test) {
        return;
    }
    let _serial = common::serial();
    let agent = RunAgent::start(&["--metrics-listen", "127.0.0.1:0", "--interval", "1"]);
    let target = agent.metrics_addr();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, _) = http_get(target, path).unwrap();
            if status == 200 || Instant::now() > deadline {
                assert_eq!(status, 200, "{path}");
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    let prometheus = Prometheus::start(target);
    let prom_addr = prometheus.addr;

    // A busy loop for 14 s in a docker-shaped cgroup.
    let id = "1f2e3d4c5b6a79880716253443526170f1e2d3c4b5a69788796a5b4c3d2e1f0a";
    let cg = TestCgroup::create(&format!(
        "{}/docker-{id}.scope",
        common::unique("tally-test-prom")
    ));
    let mut cmd = Command::new(common::workload());
    cmd.args(["spin", "14"]).stdout(Stdio::null());
    cg.enter_on_spawn(&mut cmd);
    let workload = KillOnDrop(cmd.spawn().unwrap());
    let pid = workload.0.id();
    // The kernel's own CPU time of the loop over about the 5 s the query's
    // rate covers (a scrape and a window behind the query): on a loaded
    // machine a busy loop gets less than a core, and the agent must say
    // what the kernel says, not what a quiet machine would give.
    thread::sleep(Duration::from_secs(4));
    let kernel_before = kernel_cpu_seconds(pid);
    let measured = Instant::now();
    thread::sleep(Duration::from_secs(5));
    let kernel_rate = (kernel_cpu_seconds(pid) - kernel_before) / measured.elapsed().as_secs_f64();
    thread::sleep(Duration::from_secs(1));

    let up = query(prom_addr, "up{job=\"tally\"}");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["value"][1], "1", "the agent is scraped: {up:?}");

    let selector = format!("process_pid=\"{pid}\"");
    let cpu = query(
        prom_addr,
        &format!("rate(tally_process_cpu_seconds_total{{{selector}}}[5s])"),
    );
    assert_eq!(cpu.len(), 1, "{cpu:?}");
    let labels = &cpu[0]["metric"];
    assert_eq!(labels["process_executable_name"], "workload", "{labels}");
    assert_eq!(labels["container_id"], id, "{labels}");
    assert_eq!(labels["container_runtime"], "docker", "{labels}");
    assert_eq!(labels["job"], "tally");
    assert!(labels["host_name"].as_str().is_some_and(|h| !h.is_empty()));
    let rate: f64 = cpu[0]["value"][1].as_str().unwrap().parse().unwrap();
    eprintln!(
        "rate(tally_process_cpu_seconds_total) of the busy loop: {rate:.3} cores, the kernel's {kernel_rate:.3}; labels {labels}"
    );
    assert!(
        kernel_rate > 0.05,
        "the loop ran: {kernel_rate:.3} cores by the kernel"
    );
    assert!(
        (rate - kernel_rate).abs() <= 0.3 * kernel_rate + 0.1,
        "Prometheus says {rate:.3} cores, the kernel {kernel_rate:.3}"
    );

    let faults = query(
        prom_addr,
        &format!("tally_process_page_faults_total{{{selector}}}"),
    );
    let mut types: Vec<&str> = faults
        .iter()
        .filter_map(|s| s["metric"]["type"].as_str())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["major", "minor"], "{faults:?}");

    let container = query(
        prom_addr,
        &format!("rate(tally_container_cpu_seconds_total{{container_id=\"{id}\"}}[5s])"),
    );
    assert_eq!(container.len(), 1, "{container:?}");
    let verdict = query(prom_addr, &format!("tally_process_verdict{{{selector}}}"));
    assert_eq!(verdict.len(), 1, "{verdict:?}");
    assert_eq!(verdict[0]["metric"]["verdict"], "steady", "{verdict:?}");
    assert_eq!(verdict[0]["metric"]["runtime"], "native", "{verdict:?}");
    let lost = query(prom_addr, "tally_ebpf_lost_updates_total");
    assert!(lost.len() >= 5, "loss counters by kind: {lost:?}");
    drop(workload);
    let (_, stderr) = agent.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
