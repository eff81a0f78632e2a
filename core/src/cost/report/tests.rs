//! The report from hand-made collector answers: a node priced from its
//! identity or from the defaults, the allocation balancing to the cent, the
//! GC tax of a GC-heavy Go workload and none for a steady one, and the
//! renderings.
use tally_proto as pb;

use super::{
    Format,
    build::{NodeDefaults, WorkloadHistory, build},
    render,
};
use crate::cost::{PriceTable, recommend::Target};

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
                verdict: None,
            })
            .collect(),
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
    assert_eq!(r.workloads[0].workload, "container/gcheavy");
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
    let heavy = text.find("container/gcheavy").unwrap();
    let steady = text.find("container/steady").unwrap();
    assert!(heavy < steady, "{text}");
    assert!(text.contains("none worth naming"));
    assert!(super::render(&r, Format::Markdown).contains("| container/gcheavy | go |"));
    let json: serde_json::Value = serde_json::from_str(&render::json(&r)).unwrap();
    assert_eq!(json["workloads"][0]["name"], "gcheavy");
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
