//! The report from hand-made collector answers: a node priced from its
//! identity or from the defaults, the allocation balancing to the cent, the
//! GC tax of a GC-heavy Go workload and none for a steady one, and the
//! renderings.
use tally_proto as pb;

use super::{
    Format,
    build::{NodeDefaults, WorkloadHistory, build},
    names::SystemKind,
    render,
};
use crate::cost::{
    PriceTable, Recommendation,
    recommend::{Setting, Target},
};

const MIB: u64 = 1024 * 1024;

fn node(instance_type: &str, region: &str) -> pb::NodeSummary {
    pb::NodeSummary {
        identity: Some(pb::NodeIdentity {
            node_name: "n1".into(),
            instance_type: instance_type.into(),
            region: region.into(),
            ..Default::default()
        }),
        first_window_start_unix_ms: 0,
        last_window_end_unix_ms: 3_600_000,
    }
}

/// 3600 one-second windows. `rss(t)` gives RSS, `gc` the GC CPU share and
/// `cycles` the collections per window.
fn history(
    id: &str,
    runtime: pb::Runtime,
    cpu_per_s: f64,
    gc: f64,
    cycles: u64,
    rss: impl Fn(i64) -> u64,
) -> WorkloadHistory {
    WorkloadHistory {
        workload: pb::Workload {
            key: Some(pb::WorkloadKey {
                key: Some(pb::workload_key::Key::ContainerId(id.into())),
            }),
            name: id.into(),
            runtime: runtime as i32,
            ..Default::default()
        },
        points: (1..=3600)
            .map(|t| pb::WorkloadPoint {
                window_end_unix_ms: t * 1000,
                window_seconds: 1.0,
                delta: Some(pb::Counters {
                    cpu_seconds: cpu_per_s,
                    // As agents send it: the parts and their sum.
                    gc_thread_cpu_seconds: cpu_per_s * gc,
                    gc_cpu_seconds: cpu_per_s * gc,
                    gc_cycles: cycles,
                    ..Default::default()
                }),
                rss_bytes: rss(t),
                node_name: "n1".into(),
                ..Default::default()
            })
            .collect(),
        spans: Vec::new(),
    }
}

fn sample() -> Vec<WorkloadHistory> {
    vec![
        // 0.5 cores, 40% in GC; a sawtooth from 100 to 190 MiB every 10 s.
        history("gcheavy", pb::Runtime::Go, 0.5, 0.4, 1, |t| {
            (100 + 10 * (t % 10) as u64) * MIB
        }),
        // 0.5 cores, no collection, flat 20 MiB.
        history("steady", pb::Runtime::Go, 0.5, 0.0, 0, |_| 20 * MIB),
    ]
}

#[test]
fn a_node_and_two_workloads_balance_to_the_cent_and_only_gc_pays_gc_tax() {
    let prices = PriceTable::embedded();
    let r = build(
        &[node("m6i.large", "us-east-1")],
        &sample(),
        prices,
        &NodeDefaults::default(),
        0.15,
        3_600_000,
        0,
    );
    assert_eq!(r.nodes.len(), 1);
    let n = &r.nodes[0];
    // m6i.large in us-east-1: $0.096 an hour, 2 vCPU, 8 GiB; one hour.
    assert!((n.node_cost_usd - 0.096).abs() < 1e-9, "{n:?}");
    assert!((n.node_cost_usd - (n.allocated_usd + n.idle_usd)).abs() < 0.01);
    let rates = n.rates.unwrap();
    // OpenCost: GiB-hour = 0.096 / (2 × 7.4607 + 8), vCPU-hour = 7.4607 × that.
    let gib_hour = 0.096 / (2.0 * (0.031611 / 0.004237) + 8.0);
    assert!((rates.usd_per_gib_hour - gib_hour).abs() < 1e-9);
    assert_eq!(r.workloads[0].key, "container/gcheavy");
    let heavy = &r.workloads[0];
    let steady = &r.workloads[1];
    // GC CPU: 0.2 cores × 3600 s = 720 s at the vCPU rate.
    let tax = heavy.gc_tax.as_ref().unwrap();
    assert!((heavy.gc_cpu_seconds - 720.0).abs() < 1e-6);
    assert!((tax.cpu_cost - 720.0 / 3600.0 * rates.usd_per_vcpu_hour).abs() < 1e-9);
    // Teeth of 90 MiB, for an hour, at the GiB-hour rate.
    assert_eq!(tax.headroom.bytes, 90 * MIB);
    assert!((tax.memory_cost - 90.0 / 1024.0 * gib_hour).abs() < 1e-9);
    assert!((heavy.gc_tax_usd_per_month - tax.total() * 730.0).abs() < 1e-6);
    assert!(heavy.gc_tax_worth_naming);
    assert_eq!(steady.gc_tax_usd_per_month, 0.0);
    assert!(!steady.gc_tax_worth_naming);
    // The Go change is only for the GC-heavy one, and never below its peak.
    let go = heavy
        .recommendations
        .iter()
        .find(|r| r.target == Target::Go)
        .expect("a Go recommendation");
    assert!(go.change.contains("GOGC=200"), "{}", go.change);
    assert!(go.memory_bytes.iter().all(|&b| b >= 190 * MIB));
    assert!(
        !steady
            .recommendations
            .iter()
            .any(|r| r.target == Target::Go)
    );
}

#[test]
fn nodes_without_an_instance_type_use_the_defaults_or_say_why_not() {
    let prices = PriceTable::embedded();
    let unpriced = build(
        &[node("", "")],
        &sample(),
        prices,
        &NodeDefaults::default(),
        0.15,
        3_600_000,
        0,
    );
    assert!(unpriced.nodes[0].price.is_none());
    assert!(
        unpriced.nodes[0]
            .unpriced
            .as_deref()
            .unwrap()
            .contains("--instance-type")
    );
    assert!(unpriced.workloads.iter().all(|w| w.gc_tax.is_none()));
    let defaults = NodeDefaults {
        instance_type: Some("c7g.large".into()),
        region: Some("eu-west-1".into()),
        lifecycle: None,
    };
    let priced = build(
        &[node("", "")],
        &sample(),
        prices,
        &defaults,
        0.15,
        3_600_000,
        0,
    );
    let n = &priced.nodes[0];
    assert_eq!(n.price.as_ref().unwrap().instance_type, "c7g.large");
    assert_eq!(n.assumed.len(), 2, "{:?}", n.assumed);
    // What the node reported wins over a default.
    let reported = build(
        &[node("m6i.large", "us-east-1")],
        &sample(),
        prices,
        &defaults,
        0.15,
        3_600_000,
        0,
    );
    assert_eq!(reported.nodes[0].instance_type, "m6i.large");
    assert!(reported.nodes[0].assumed.is_empty());
}

#[test]
fn renderings_carry_the_ranking_and_html_is_self_contained() {
    let r = build(
        &[node("m6i.large", "us-east-1")],
        &sample(),
        PriceTable::embedded(),
        &NodeDefaults::default(),
        0.15,
        3_600_000,
        0,
    );
    let text = super::render(&r, Format::Text);
    let heavy = text.find("gcheavy (container gcheavy)").unwrap();
    let steady = text.find("steady (container steady)").unwrap();
    assert!(heavy < steady, "{text}");
    assert!(text.contains("none worth naming"));
    assert!(super::render(&r, Format::Markdown).contains("| gcheavy (container gcheavy) | go |"));
    let json: serde_json::Value = serde_json::from_str(&render::json(&r)).unwrap();
    assert_eq!(json["workloads"][0]["name"], "gcheavy (container gcheavy)");
    assert_eq!(json["workloads"][0]["key"], "container/gcheavy");
    assert_eq!(json["workloads"][0]["program"], "gcheavy");
    let html = super::render(&r, Format::Html);
    assert!(html.contains("<svg id=\"tax-chart\""));
    assert_eq!(html.matches("class=\"rss\"").count(), 2);
    // Nothing to fetch: no script, no link, no URL but the SVG namespace.
    assert!(!html.contains("<script") && !html.contains("<link"));
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count()
    );
    assert_eq!(super::html::escape("<a&'\">"), "&lt;a&amp;&#39;&quot;&gt;");
}

/// A process outside any container on node n1: `name` with `pid`, one
/// hour of `cpu_per_s` cores and a flat `rss`.
fn process(
    pid: u32,
    name: &str,
    runtime: pb::Runtime,
    cpu_per_s: f64,
    rss: u64,
) -> WorkloadHistory {
    let mut h = history(name, runtime, cpu_per_s, 0.0, 0, move |_| rss);
    h.workload.key = Some(pb::WorkloadKey {
        key: Some(pb::workload_key::Key::Process(pb::ProcessOnNode {
            node_name: "n1".into(),
            key: Some(pb::ProcessKey {
                pid,
                start_ticks: 515_099,
            }),
        })),
    });
    h
}

fn priced(histories: &[WorkloadHistory]) -> super::CostReport {
    build(
        &[node("m6i.large", "us-east-1")],
        histories,
        PriceTable::embedded(),
        &NodeDefaults::default(),
        0.15,
        3_600_000,
        0,
    )
}

#[test]
fn workloads_are_named_as_their_owners_know_them_and_keep_their_key() {
    let mut in_pod = history(&"a".repeat(64), pb::Runtime::Go, 0.1, 0.0, 0, |_| 20 * MIB);
    in_pod.workload.name = "churn-go".into();
    in_pod.workload.pod = Some(pb::PodMetadata {
        namespace: "shop".into(),
        pod_name: "churn-7d9f".into(),
        container_name: "churn".into(),
        ..Default::default()
    });
    let mut in_container = history(
        &"0123456789abcdef".repeat(4),
        pb::Runtime::Go,
        0.1,
        0.0,
        0,
        |_| 20 * MIB,
    );
    in_container.workload.name = "churn-go".into();
    let bare = process(24965, "churn-go", pb::Runtime::Go, 0.1, 20 * MIB);
    let r = priced(&[in_pod, in_container, bare]);
    let name_of = |key: &str| {
        r.workloads
            .iter()
            .find(|w| w.key == key)
            .map(|w| (w.name.as_str(), w.program.as_str()))
            .unwrap_or_else(|| panic!("{key} in {:?}", r.workloads))
    };
    assert_eq!(
        name_of(&format!("container/{}", "a".repeat(64))),
        ("shop/churn-7d9f/churn", "churn-go")
    );
    assert_eq!(
        name_of(&format!("container/{}", "0123456789abcdef".repeat(4))),
        ("churn-go (container 0123456789ab)", "churn-go")
    );
    assert_eq!(
        name_of("process/n1/24965/515099"),
        ("churn-go (pid 24965)", "churn-go")
    );
    let text = super::render(&r, Format::Text);
    assert!(text.contains("churn-go (pid 24965)"), "{text}");
    assert!(text.contains("key process/n1/24965/515099"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&render::json(&r)).unwrap();
    assert!(
        json["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["key"] == "process/n1/24965/515099" && w["name"] == "churn-go (pid 24965)")
    );
}

#[test]
fn kernel_threads_and_tally_are_one_system_line_without_advice() {
    let mut histories = sample();
    // No executable (runtime unknown) and no memory: a kernel thread.
    histories.push(process(16, "rcu_preempt", pb::Runtime::Unknown, 0.05, 0));
    // Tally's own agent, outside a pod, and its collector in one.
    histories.push(process(900, "agent", pb::Runtime::Native, 0.2, 60 * MIB));
    let mut collector = history(&"c".repeat(64), pb::Runtime::Native, 0.1, 0.0, 0, |_| {
        80 * MIB
    });
    collector.workload.pod = Some(pb::PodMetadata {
        namespace: "tally".into(),
        pod_name: "tally-collector-0".into(),
        container_name: "collector".into(),
        labels: [(
            "app.kubernetes.io/name".to_string(),
            "tally-collector".to_string(),
        )]
        .into(),
        ..Default::default()
    });
    histories.push(collector);
    // Memory but no executable read: not a kernel thread, a team's.
    histories.push(process(
        4242,
        "mystery",
        pb::Runtime::Unknown,
        0.05,
        30 * MIB,
    ));
    // Another program called `agent` (Datadog's, in Go): a team's.
    histories.push(process(4343, "agent", pb::Runtime::Go, 0.05, 30 * MIB));
    // A pod of someone else's that happens to run an `agent` binary.
    let mut theirs = history(&"d".repeat(64), pb::Runtime::Native, 0.05, 0.0, 0, |_| {
        30 * MIB
    });
    theirs.workload.name = "agent".into();
    theirs.workload.pod = Some(pb::PodMetadata {
        namespace: "monitoring".into(),
        pod_name: "dd-agent-x1".into(),
        container_name: "agent".into(),
        ..Default::default()
    });
    histories.push(theirs);
    let r = priced(&histories);
    let kinds: Vec<(&str, Option<SystemKind>)> = r
        .system
        .iter()
        .map(|w| (w.program.as_str(), w.system))
        .collect();
    assert_eq!(r.system.len(), 3, "{kinds:?}");
    assert!(kinds.contains(&("rcu_preempt", Some(SystemKind::KernelThread))));
    assert!(kinds.contains(&("agent", Some(SystemKind::Tally))));
    assert!(r.system.iter().all(|w| w.recommendations.is_empty()));
    assert!(r.workloads.iter().all(|w| w.system.is_none()));
    assert!(r.workloads.iter().any(|w| w.program == "mystery"));
    assert!(r.workloads.iter().any(|w| w.name == "agent (pid 4343)"));
    assert!(
        r.workloads
            .iter()
            .any(|w| w.name == "monitoring/dd-agent-x1/agent")
    );
    // Totals still add up: every workload's cost is in one list or the other.
    let n = &r.nodes[0];
    let listed: f64 = r
        .workloads
        .iter()
        .chain(&r.system)
        .map(|w| w.cost_usd)
        .sum();
    assert!((listed - n.allocated_usd).abs() < 1e-9, "{listed} vs {n:?}");
    let system: f64 = r.system.iter().map(|w| w.cost_usd_per_month).sum();
    assert!((r.summary.system_usd_per_month - system).abs() < 1e-9);
    assert!(system > 0.0);
    assert_eq!(r.summary.system_workloads, 3);
    let groups: Vec<(SystemKind, usize)> = r
        .summary
        .system_groups
        .iter()
        .map(|g| (g.kind, g.workloads))
        .collect();
    assert_eq!(
        groups,
        [(SystemKind::KernelThread, 1), (SystemKind::Tally, 2)]
    );
    for format in [Format::Text, Format::Markdown, Format::Html] {
        let out = super::render(&r, format);
        assert!(!out.contains("rcu_preempt"), "{format:?}: {out}");
        assert!(!out.contains("agent (pid 900)"), "{format:?}: {out}");
        assert!(
            out.contains("System (kernel threads 1: "),
            "{format:?}: {out}"
        );
    }
}

/// The GC-heavy sample's first recommendation with `saving` and
/// `settings` (name, value, was) instead of its own.
fn recommendation(saving: f64, settings: &[(&str, &str, Option<&str>)]) -> Recommendation {
    let r = priced(&sample());
    let mut rec = r.workloads[0].recommendations[0].clone();
    rec.monthly_saving_usd = saving;
    rec.settings = settings
        .iter()
        .map(|&(name, value, was)| Setting {
            name: name.into(),
            value: value.into(),
            was: was.map(Into::into),
        })
        .collect();
    rec
}

#[test]
fn advice_with_a_nil_effect_is_not_made_and_no_row_prints_under_a_cent() {
    use super::summary::is_nil;
    assert!(is_nil(&recommendation(
        0.0,
        &[("GOGC", "200", Some("100"))]
    )));
    assert!(is_nil(&recommendation(-0.004, &[])));
    assert!(is_nil(&recommendation(f64::NAN, &[])));
    assert!(is_nil(&recommendation(
        3.0,
        &[
            ("GOGC", "100", Some("100")),
            ("GOMEMLIMIT", "192MiB", Some("192MiB"))
        ]
    )));
    assert!(!is_nil(&recommendation(
        3.0,
        &[("GOGC", "200", Some("100"))]
    )));
    assert!(!is_nil(&recommendation(3.0, &[("GOGC", "200", None)])));
    assert!(!is_nil(&recommendation(-0.5, &[])));
    // CPU-bound work saves time, not dollars: not nil while time is saved.
    let mut time = recommendation(0.0, &[("GOGC", "200", Some("100"))]);
    time.saving = crate::cost::recommend::SavingKind::Time;
    time.time_saving_share = Some((0.1, 0.2));
    assert!(!is_nil(&time));
    assert!(render::recommendation_line(&time).contains("saves 10–20% of its CPU time"));
    time.time_saving_share = Some((0.0, 0.0));
    assert!(is_nil(&time));

    let mut histories = sample();
    // A hundredth of a millicore, a few KiB: well under a cent a month.
    for pid in [7001, 7002] {
        histories.push(process(pid, "tiny", pb::Runtime::Native, 1e-5, 64 << 10));
    }
    let r = priced(&histories);
    assert!(
        r.workloads
            .iter()
            .flat_map(|w| &w.recommendations)
            .all(|rec| !is_nil(rec))
    );
    assert_eq!(r.summary.small_workloads, 2);
    assert_eq!(r.workloads.iter().filter(|w| w.under_a_cent).count(), 2);
    for format in [Format::Text, Format::Markdown, Format::Html] {
        let out = super::render(&r, format);
        assert!(!out.contains("$0.0000"), "{format:?}: {out}");
        assert!(!out.contains("tiny (pid"), "{format:?}: {out}");
        assert!(
            out.contains("2 more workload(s) under $0.01/month"),
            "{format:?}: {out}"
        );
    }
    // The JSON keeps everything.
    let json: serde_json::Value = serde_json::from_str(&render::json(&r)).unwrap();
    let tiny = json["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["program"] == "tiny")
        .count();
    assert_eq!(tiny, 2);
}

#[test]
fn the_summary_opens_with_spend_gc_tax_and_the_largest_savings_first() {
    let mut histories = sample();
    // A second GC-heavy workload, smaller than the first.
    histories.push(history("gclight", pb::Runtime::Go, 0.2, 0.3, 1, |t| {
        (60 + 5 * (t % 10) as u64) * MIB
    }));
    let r = priced(&histories);
    let s = &r.summary;
    // m6i.large at $0.096 an hour, for 730 hours.
    assert!(
        (s.spend_usd_per_month - 0.096 * 730.0).abs() < 1e-9,
        "{s:?}"
    );
    assert_eq!((s.nodes_priced, s.nodes_unpriced), (1, 0));
    let tax: f64 = r.workloads.iter().map(|w| w.gc_tax_usd_per_month).sum();
    assert!((s.gc_tax_usd_per_month - tax).abs() < 1e-9);
    assert!((s.gc_tax_share.unwrap() - tax / s.spend_usd_per_month).abs() < 1e-12);
    assert!(!s.changes.is_empty() && s.changes.len() <= super::summary::SUMMARY_CHANGES);
    assert!(
        s.changes
            .windows(2)
            .all(|p| p[0].monthly_saving_usd >= p[1].monthly_saving_usd),
        "{:?}",
        s.changes
    );
    let best = r
        .workloads
        .iter()
        .flat_map(|w| &w.recommendations)
        .map(|rec| rec.monthly_saving_usd)
        .fold(f64::MIN, f64::max);
    assert_eq!(s.changes[0].monthly_saving_usd, best);
    assert!(s.changes.iter().all(|c| c.monthly_saving_usd >= 0.01));
    // Printed first, in every format, as one line per change.
    let first = render::change_line(&s.changes[0]);
    assert!(
        first.starts_with(&format!("{}: ", s.changes[0].workload)),
        "{first}"
    );
    assert!(
        first.ends_with(&format!("({} confidence)", s.changes[0].confidence)),
        "{first}"
    );
    for format in [Format::Text, Format::Markdown, Format::Html] {
        let out = super::render(&r, format);
        let summary = out.find("Summary").unwrap();
        let nodes = out.find("Nodes").unwrap();
        assert!(summary < nodes, "{format:?}: {out}");
        assert!(
            out.contains("Spend: $70.08/month for 1 priced node(s)"),
            "{format:?}: {out}"
        );
        let share = format!("{:.1}% of spend", s.gc_tax_share.unwrap() * 100.0);
        assert!(out.contains(&share), "{format:?}: {out}");
        let at = out.find(&super::html::escape(&first)).unwrap_or(usize::MAX);
        assert!(at < nodes, "{format:?}: {first} in {out}");
    }
    let json: serde_json::Value = serde_json::from_str(&render::json(&r)).unwrap();
    assert_eq!(
        json["summary"]["changes"][0]["workload"],
        s.changes[0].workload.as_str()
    );
    // Without a price, no share is claimed.
    let unpriced = build(
        &[node("", "")],
        &sample(),
        PriceTable::embedded(),
        &NodeDefaults::default(),
        0.15,
        3_600_000,
        0,
    );
    assert_eq!(unpriced.summary.gc_tax_share, None);
    assert_eq!(unpriced.summary.nodes_unpriced, 1);
    assert_eq!(unpriced.summary.small_workloads, 0);
    assert!(super::render(&unpriced, Format::Text).contains("share unknown"));
}
