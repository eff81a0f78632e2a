//! Recommendations checked against reality: predicted vs measured savings.
//!
//! For each case a fixed-work service (tests/workloads/*/fixedwork*: a
//! fixed number of requests every 10 ms over a live cache, then idle) runs
//! at its runtime's defaults in a real container with a 1 GiB memory limit,
//! under `agent run` streaming to `agent collector`, the node priced as an
//! m6i.large in us-east-1. After a warm-up, `agent report` over the
//! observation window gives Tally's runtime recommendation and its predicted
//! monthly saving. A twin of the service is then started with exactly that
//! change and runs side by side with the default one; after the twin's
//! warm-up, `agent report` over the comparison window prices both, and the
//! measured saving is the default's monthly cost less the twin's: Tally's
//! own pricing, each at the CPU and RSS it actually used.
//!
//! A prediction holds when it is within ±25% of the measured saving with
//! the sign right, or when the range it states contains the measured one.
//! The test runs one work rate per runtime; `cargo xtask bench
//! recommendations` runs the long version (two rates each, JVM with G1 and
//! Parallel, longer windows) and prints the table in the README.
//! Needs root, docker, go, a JDK 17 and node.
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use serde_json::Value;

use crate::{
    common::{
        self,
        container::{self, Image, Run},
    },
    cost::{collector, report_since, run_agent, workload},
};

/// The service's runtime, with the collector for the JVM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Service {
    Go,
    JvmG1,
    JvmParallel,
    Node,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Go => "Go",
            Service::JvmG1 => "JVM G1",
            Service::JvmParallel => "JVM Parallel",
            Service::Node => "Node",
        }
    }

    fn target(self) -> &'static str {
        match self {
            Service::Go => "go",
            Service::JvmG1 | Service::JvmParallel => "jvm",
            Service::Node => "node",
        }
    }
}

/// One service at one work rate (requests per 10 ms tick).
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub service: Service,
    pub rate: u32,
}

/// How long each phase lasts, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Before a window is read: JIT compilation and heap growth.
    pub warm_up: u64,
    /// The default service alone, whose report gives the recommendation.
    pub observe: u64,
    /// Default and twin side by side.
    pub compare: u64,
}

/// What one case predicted and measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub case: Case,
    /// `None`: Tally recommended no runtime change (its model's best case
    /// cost more than it saved), so there was no twin.
    pub change: Option<String>,
    pub model: String,
    pub gc_share: f64,
    pub predicted_usd: f64,
    pub range_usd: Option<(f64, f64)>,
    pub default_usd: f64,
    pub twin_usd: f64,
    pub default_cpu: f64,
    pub twin_cpu: f64,
    pub default_rss_mib: u64,
    pub twin_rss_mib: u64,
}

impl Outcome {
    pub fn measured_usd(&self) -> f64 {
        self.default_usd - self.twin_usd
    }

    /// Predicted less measured, as a share of the measured saving.
    pub fn error(&self) -> f64 {
        let m = self.measured_usd();
        if m == 0.0 {
            f64::INFINITY
        } else {
            (self.predicted_usd - m) / m.abs()
        }
    }

    pub fn in_range(&self) -> bool {
        self.range_usd
            .is_some_and(|(lo, hi)| lo <= self.measured_usd() && self.measured_usd() <= hi)
    }

    /// Within ±25% with the sign right, or inside the stated range.
    pub fn holds(&self) -> bool {
        if self.change.is_none() {
            return false;
        }
        let m = self.measured_usd();
        let close = self.error().abs() <= 0.25 && (self.predicted_usd > 0.0) == (m > 0.0);
        close || self.in_range()
    }
}

/// The outcomes as the README's Markdown table.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut t = String::from(
        "| service | rate (req/10 ms) | GC share | change | predicted $/month | range | measured $/month | error | holds |\n|---|---:|---:|---|---:|---|---:|---:|---|\n",
    );
    for o in outcomes {
        let Some(change) = &o.change else {
            let _ = writeln!(
                t,
                "| {} | {} | {:.0}% | none: the model's best case costs more than it saves | | | | | |",
                o.case.service.name(),
                o.case.rate,
                o.gc_share * 100.0,
            );
            continue;
        };
        let range = o
            .range_usd
            .map_or("—".to_string(), |(lo, hi)| format!("{lo:.2} … {hi:.2}"));
        let _ = writeln!(
            t,
            "| {} | {} | {:.0}% | `{}` | {:.2} | {range} | {:.2} ({:.2}→{:.2}; CPU {:.1}→{:.1} s; RSS {}→{} MiB) | {:+.0}% | {} |",
            o.case.service.name(),
            o.case.rate,
            o.gc_share * 100.0,
            change,
            o.predicted_usd,
            o.measured_usd(),
            o.default_usd,
            o.twin_usd,
            o.default_cpu,
            o.twin_cpu,
            o.default_rss_mib,
            o.twin_rss_mib,
            o.error() * 100.0,
            if o.holds() { "yes" } else { "no" },
        );
    }
    t
}

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn workloads() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads")
}

/// What a case's containers are started from.
struct Images {
    go: Image,
    jvm: Image,
    classes: PathBuf,
    node: Image,
    scripts: PathBuf,
}

impl Images {
    fn build() -> Images {
        let go_bin = common::go_build(
            "fixedwork",
            &tmp().join("go-fixedwork-static"),
            &[],
            &[("CGO_ENABLED", "0")],
        );
        let jdk = container::find_jdk(17).expect("a JDK 17 (cargo xtask setup installs it)");
        let classes = tmp().join("fixedwork-classes");
        std::fs::create_dir_all(&classes).unwrap();
        let javac = Command::new(jdk.join("bin/javac"))
            .arg("-d")
            .arg(&classes)
            .arg(workloads().join("java/FixedWork.java"))
            .status()
            .expect("javac runs");
        assert!(javac.success(), "javac FixedWork.java");
        Images {
            go: Image::host_files("go-fixedwork", "/fixedwork", &go_bin),
            jvm: Image::jvm("jdk17", &jdk),
            classes,
            node: Image::node("node"),
            scripts: workloads().join("node"),
        }
    }

    /// Starts the case's service for `seconds` with `change` applied (the
    /// recommendation's one-line change; empty for the defaults).
    fn start(&self, case: Case, change: &str, seconds: u64) -> container::Container {
        let (secs, rate) = (seconds.to_string(), case.rate.to_string());
        let flags: Vec<&str> = change.split_whitespace().collect();
        let run = Run::new().memory_mib(1024);
        match case.service {
            Service::Go => {
                let mut run = run;
                for assignment in &flags {
                    let (k, v) = assignment
                        .split_once('=')
                        .unwrap_or_else(|| panic!("a Go change is KEY=VALUE: {change}"));
                    run = run.env(k, v);
                }
                run.start(&self.go, &[&secs, &rate])
            }
            Service::JvmG1 | Service::JvmParallel => {
                let collector = if case.service == Service::JvmG1 {
                    "-XX:+UseG1GC"
                } else {
                    "-XX:+UseParallelGC"
                };
                let mut command = vec!["/opt/jdk/bin/java", collector];
                command.extend(&flags);
                command.extend(["-cp", "/classes", "FixedWork", &secs, &rate]);
                run.volume(&self.classes, "/classes", false)
                    .start(&self.jvm, &command)
            }
            Service::Node => {
                let mut command = vec!["/opt/node/bin/node"];
                command.extend(&flags);
                command.extend(["/scripts/fixedwork.js", &secs, &rate]);
                run.volume(&self.scripts, "/scripts", false)
                    .start(&self.node, &command)
            }
        }
    }
}

/// `agent report --format json` over the last `seconds`.
fn report(url: &str, seconds: u64) -> Value {
    serde_json::from_str(&report_since(url, "json", &format!("{seconds}s"))).unwrap()
}

/// The report's line for the container `id`.
fn line<'a>(report: &'a Value, id: &str) -> &'a Value {
    workload(report, &id[..12])
}

fn f(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} in {v:#}"))
}

/// Runs the cases one after another under one agent and collector; `None`
/// (a loud skip, off CI only) without root, docker, go or node.
pub fn run(test: &str, cases: &[Case], phases: Phases) -> Option<Vec<Outcome>> {
    let ready = common::require_root(test)
        && container::require_docker(test)
        && common::require("go", test)
        && common::require("node", test);
    if !ready {
        return None;
    }
    let images = Images::build();
    let data = tmp().join(common::unique("recommendations-data"));
    let (_collector, url) = collector(&data);
    let _agent = run_agent(&url, "harness-node");
    let p = phases;
    let outcomes = cases
        .iter()
        .map(|&case| {
            let lifetime = 2 * p.warm_up + p.observe + p.compare + 30;
            let default = images.start(case, "", lifetime);
            thread::sleep(Duration::from_secs(p.warm_up + p.observe + 1));
            let first = report(&url, p.observe);
            let d = line(&first, &default.id);
            let gc_share = f(d, "gc_cpu_share");
            let rec = d["recommendations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["target"] == case.service.target())
                .cloned();
            let Some(rec) = rec else {
                eprintln!(
                    "{test}: no {} recommendation for {} at rate {}: {d:#}",
                    case.service.target(),
                    case.service.name(),
                    case.rate
                );
                return Outcome {
                    case,
                    change: None,
                    model: String::new(),
                    gc_share,
                    predicted_usd: 0.0,
                    range_usd: None,
                    default_usd: 0.0,
                    twin_usd: 0.0,
                    default_cpu: 0.0,
                    twin_cpu: 0.0,
                    default_rss_mib: 0,
                    twin_rss_mib: 0,
                };
            };
            let change = rec["change"].as_str().unwrap().to_string();
            let twin = images.start(case, &change, p.warm_up + p.compare + 30);
            thread::sleep(Duration::from_secs(p.warm_up + p.compare + 1));
            let second = report(&url, p.compare);
            let (d, t) = (line(&second, &default.id), line(&second, &twin.id));
            let range = rec["monthly_saving_range_usd"]
                .as_array()
                .map(|r| (r[0].as_f64().unwrap(), r[1].as_f64().unwrap()));
            let outcome = Outcome {
                case,
                change: Some(change),
                model: rec["model"].as_str().unwrap_or_default().to_string(),
                gc_share,
                predicted_usd: f(&rec, "monthly_saving_usd"),
                range_usd: range,
                default_usd: f(d, "cost_usd_per_month"),
                twin_usd: f(t, "cost_usd_per_month"),
                default_cpu: f(d, "cpu_seconds"),
                twin_cpu: f(t, "cpu_seconds"),
                default_rss_mib: d["rss_avg_bytes"].as_u64().unwrap_or(0) >> 20,
                twin_rss_mib: t["rss_avg_bytes"].as_u64().unwrap_or(0) >> 20,
            };
            eprintln!("{}", table(std::slice::from_ref(&outcome)));
            eprintln!("model: {}", outcome.model);
            outcome
        })
        .collect();
    Some(outcomes)
}

/// One rate per runtime, at the heavier work rate: the suite's version.
#[test]
fn predicted_savings_of_go_jvm_and_node_match_their_twins() {
    let test = "predicted_savings_of_go_jvm_and_node_match_their_twins";
    let _serial = common::serial();
    let cases = [
        Case {
            service: Service::Go,
            rate: 1500,
        },
        Case {
            service: Service::JvmG1,
            rate: 1000,
        },
        Case {
            service: Service::Node,
            rate: 300,
        },
    ];
    let phases = Phases {
        warm_up: 10,
        observe: 30,
        compare: 45,
    };
    let Some(outcomes) = run(test, &cases, phases) else {
        return;
    };
    let table = table(&outcomes);
    eprintln!("{table}");
    for o in &outcomes {
        assert!(o.holds(), "{test}: the prediction did not hold:\n{table}");
    }
}

/// The long version, run by `cargo xtask bench recommendations` only: two
/// work rates of each service, the JVM with G1 and with Parallel, longer
/// windows. Writes the table to `$TALLY_RECOMMENDATIONS_TABLE` if set.
#[test]
#[ignore = "a benchmark of about 15 minutes: cargo xtask bench recommendations"]
fn bench_two_rates_of_each_service() {
    let test = "bench_two_rates_of_each_service";
    let _serial = common::serial();
    let mut cases = Vec::new();
    for (service, rates) in [
        (Service::Go, [500, 1500]),
        (Service::JvmG1, [300, 1000]),
        (Service::JvmParallel, [300, 1000]),
        (Service::Node, [100, 300]),
    ] {
        cases.extend(rates.map(|rate| Case { service, rate }));
    }
    let phases = Phases {
        warm_up: 10,
        observe: 30,
        compare: 60,
    };
    let Some(outcomes) = run(test, &cases, phases) else {
        return;
    };
    let table = table(&outcomes);
    println!("{table}");
    for o in &outcomes {
        println!("{} at {}: {}", o.case.service.name(), o.case.rate, o.model);
    }
    if let Some(path) = std::env::var_os("TALLY_RECOMMENDATIONS_TABLE") {
        std::fs::write(path, &table).unwrap();
    }
}
