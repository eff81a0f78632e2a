//! `agent workloads`: asks a collector for every workload's verdict and
//! prints them, one JSON object a line or an aligned table.
use std::{collections::HashMap, io::Write, time::Duration};

use serde::Serialize;
use tally_proto as pb;

use tally_core::{
    cost::live::{Pricing, usage_usd_per_month},
    model::node::UNKNOWN,
};
use tally_transport::{
    ClientSecurity,
    query::{self, QueryError},
};

use super::{Failure, pricing::PricingArgs, transport::ClientArgs};

#[derive(Debug, clap::Args)]
pub struct WorkloadsArgs {
    /// The collector, e.g. http://collector:4317.
    #[arg(long)]
    collector: String,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    json: bool,
    /// Only workloads seen on this node.
    #[arg(long)]
    node: Option<String>,
    #[command(flatten)]
    security: ClientArgs,
    #[command(flatten)]
    pricing: PricingArgs,
}

/// `agent workloads`.
pub fn command(args: WorkloadsArgs) -> Result<(), Failure> {
    let opts = WorkloadsOptions {
        collector: args.collector,
        json: args.json,
        node: args.node,
        security: (&args.security).into(),
    };
    let pricing = args
        .pricing
        .pricing()
        .map_err(|e| Failure::usage_error(&e))?;
    run(&opts, &pricing).map_err(|e| Failure::failed(&e))
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadsError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct WorkloadsOptions {
    pub collector: String,
    pub json: bool,
    /// Only workloads seen on this node.
    pub node: Option<String>,
    pub security: ClientSecurity,
}

/// One line of output; the JSON field names are the columns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The program and its container's first 12 hex digits, or its pid.
    pub workload: String,
    /// The container's full id (64 hex digits); `None` outside containers.
    pub container_id: Option<String>,
    /// The pod's uid, where it runs in one.
    pub pod_uid: Option<String>,
    pub node: String,
    pub runtime: String,
    pub verdict: String,
    pub confidence: f64,
    pub gc_cpu_share: f64,
    pub cpu_seconds: f64,
    pub alloc_bytes_per_second: f64,
    pub faults_per_second: f64,
    pub rss_bytes: u64,
    /// Share of its latest minute in which the container stalled waiting
    /// for memory (PSI `some`), 0..1; `None` where unknown.
    pub memory_stall_share: Option<f64>,
    pub reasons: Vec<String>,
    /// Kubernetes namespace, pod, container and owning workload, where
    /// the collector knows them.
    pub namespace: Option<String>,
    pub pod_name: Option<String>,
    pub container_name: Option<String>,
    pub owner_kind: Option<String>,
    pub owner_name: Option<String>,
    /// The node's instance type, zone and lifecycle, where it reported them.
    pub instance_type: Option<String>,
    pub zone: Option<String>,
    pub lifecycle: Option<String>,
    /// USD per month at this rate of CPU and RSS, priced at its node's
    /// rates (`tally_core::cost::live`); `None` when the node is not priced.
    pub cost_usd_per_month: Option<f64>,
}

/// Calls ListWorkloads and prints the result on stdout.
pub fn run(opts: &WorkloadsOptions, pricing: &Pricing) -> Result<(), WorkloadsError> {
    let workloads = query::run(
        &opts.collector,
        &opts.security,
        Duration::from_secs(30),
        |mut client| async move {
            let workloads = client
                .list_workloads(pb::ListWorkloadsRequest {
                    node_name: opts.node.clone().unwrap_or_default(),
                })
                .await?
                .into_inner()
                .workloads;
            // Node identities price the rows; an older collector without
            // ListNodes still lists, unpriced.
            let nodes = match client.list_nodes(pb::ListNodesRequest {}).await {
                Ok(r) => r.into_inner().nodes,
                Err(s) => {
                    tracing::debug!("ListNodes: {}", s.message());
                    Vec::new()
                }
            };
            Ok((workloads, nodes))
        },
    )?;
    let (workloads, nodes) = workloads;
    let mut rows = priced_rows(&workloads, &nodes, pricing);
    sort(&mut rows);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if opts.json {
        for r in &rows {
            serde_json::to_writer(&mut out, r).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
    } else {
        write!(out, "{}", table(&rows))?;
    }
    out.flush()?;
    Ok(())
}

/// The rows of `workloads`, each with its node's identity (instance type,
/// zone, lifecycle) and its cost per month at that node's rates: usage
/// only (CPU of the latest window and RSS), see `tally_core::cost::live`.
pub fn priced_rows(
    workloads: &[pb::Workload],
    nodes: &[pb::NodeSummary],
    pricing: &Pricing,
) -> Vec<Row> {
    let identities: HashMap<&str, &pb::NodeIdentity> = nodes
        .iter()
        .filter_map(|n| n.identity.as_ref())
        .map(|i| (i.node_name.as_str(), i))
        .collect();
    let mut rates = HashMap::new();
    workloads
        .iter()
        .map(|w| {
            let mut r = row(w);
            // A workload seen on two nodes (moved, or two agents) is priced
            // and described at its first.
            let Some(node) = w.nodes.first() else {
                return r;
            };
            let identity = identities.get(node.as_str()).copied();
            if let Some(i) = identity {
                let known = |v: &str| (!v.is_empty() && v != UNKNOWN).then(|| v.to_owned());
                r.instance_type = known(&i.instance_type);
                r.zone = known(&i.zone);
                r.lifecycle = known(&i.lifecycle);
            }
            let node_rates = rates
                .entry(node.clone())
                .or_insert_with(|| pricing.rates(identity));
            r.cost_usd_per_month = node_rates.as_ref().map(|rates| {
                let cores = if w.window_seconds > 0.0 {
                    w.cpu_seconds / w.window_seconds
                } else {
                    0.0
                };
                usage_usd_per_month(rates, cores, w.rss_bytes as f64)
            });
            r
        })
        .collect()
}

pub fn row(w: &pb::Workload) -> Row {
    let runtime = tally_core::workload::runtime_from_proto(w.runtime);
    Row {
        workload: tally_core::workload::label(w),
        container_id: tally_core::workload::container_id(w),
        pod_uid: tally_core::workload::pod_uid(w),
        node: w.nodes.join(","),
        runtime: runtime.name().to_owned(),
        verdict: tally_core::gc::VerdictKind::name_of(w.verdict.as_ref()).to_owned(),
        confidence: w.verdict.as_ref().map_or(0.0, |v| v.confidence),
        gc_cpu_share: w.gc_cpu_share,
        cpu_seconds: w.cpu_seconds,
        alloc_bytes_per_second: w.alloc_bytes_per_second,
        faults_per_second: w.faults_per_second,
        rss_bytes: w.rss_bytes,
        memory_stall_share: w.memory_stall_share,
        reasons: w
            .verdict
            .as_ref()
            .map_or_else(Vec::new, |v| v.reasons.clone()),
        namespace: w.pod.as_ref().map(|p| p.namespace.clone()),
        pod_name: w.pod.as_ref().map(|p| p.pod_name.clone()),
        container_name: w
            .pod
            .as_ref()
            .map(|p| p.container_name.clone())
            .filter(|c| !c.is_empty()),
        owner_kind: w
            .pod
            .as_ref()
            .map(|p| p.owner_kind.clone())
            .filter(|c| !c.is_empty()),
        owner_name: w
            .pod
            .as_ref()
            .map(|p| p.owner_name.clone())
            .filter(|c| !c.is_empty()),
        instance_type: None,
        zone: None,
        lifecycle: None,
        cost_usd_per_month: None,
    }
}

/// Worst first: gc-heavy, alloc-churn, steady, idle; then by CPU.
fn sort(rows: &mut [Row]) {
    let rank = |v: &str| match v {
        "gc-heavy" => 0,
        "alloc-churn" => 1,
        "gc-unobservable" => 2,
        "steady" => 3,
        "idle" => 4,
        _ => 5,
    };
    rows.sort_by(|a, b| {
        rank(&a.verdict)
            .cmp(&rank(&b.verdict))
            .then(b.cpu_seconds.total_cmp(&a.cpu_seconds))
            .then_with(|| a.workload.cmp(&b.workload))
    });
}

fn human(v: f64, units: &[&str], step: f64) -> String {
    let mut v = v;
    let mut i = 0;
    while v.abs() >= step && i + 1 < units.len() {
        v /= step;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0}{}", units[0])
    } else {
        format!("{v:.1}{}", units[i])
    }
}

/// `node (m6i.large spot)`: the name and, where known, what it is.
fn node_cell(r: &Row) -> String {
    let what: Vec<&str> = [&r.instance_type, &r.lifecycle]
        .into_iter()
        .filter_map(|v| v.as_deref())
        .collect();
    if what.is_empty() {
        r.node.clone()
    } else {
        format!("{} ({})", r.node, what.join(" "))
    }
}

/// The aligned table: text columns left, numbers right, reasons last.
pub fn table(rows: &[Row]) -> String {
    const HEAD: [&str; 14] = [
        "WORKLOAD",
        "NAMESPACE/POD/CONTAINER",
        "OWNER",
        "NODE",
        "RUNTIME",
        "VERDICT",
        "CONF",
        "GC%",
        "CPU_S",
        "ALLOC/S",
        "FAULTS/S",
        "RSS",
        "$/MONTH",
        "REASONS",
    ];
    const LAST: usize = HEAD.len() - 1;
    let cells: Vec<[String; 14]> = rows
        .iter()
        .map(|r| {
            let pod = match (&r.namespace, &r.pod_name) {
                (Some(ns), Some(pod)) => match &r.container_name {
                    Some(c) => format!("{ns}/{pod}/{c}"),
                    None => format!("{ns}/{pod}"),
                },
                _ => "-".to_owned(),
            };
            let owner = match (&r.owner_kind, &r.owner_name) {
                (Some(kind), Some(name)) => format!("{kind}/{name}"),
                _ => "-".to_owned(),
            };
            [
                r.workload.clone(),
                pod,
                owner,
                node_cell(r),
                r.runtime.clone(),
                r.verdict.clone(),
                format!("{:.2}", r.confidence),
                if r.verdict == tally_core::gc::VerdictKind::GcUnobservable.name() {
                    "?".to_string()
                } else {
                    format!("{:.1}", 100.0 * r.gc_cpu_share)
                },
                format!("{:.2}", r.cpu_seconds),
                human(
                    r.alloc_bytes_per_second,
                    &["B", "Ki", "Mi", "Gi", "Ti"],
                    1024.0,
                ),
                human(r.faults_per_second, &["", "k", "M", "G"], 1000.0),
                human(r.rss_bytes as f64, &["B", "Ki", "Mi", "Gi", "Ti"], 1024.0),
                r.cost_usd_per_month
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}")),
                r.reasons.join("; "),
            ]
        })
        .collect();
    let mut width = HEAD.map(str::len);
    for c in &cells {
        for (w, cell) in width.iter_mut().zip(c.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let left = |i: usize| i < 6 || i == LAST;
    let line = |c: &[String]| {
        let mut s = String::new();
        for (i, cell) in c.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if i == LAST {
                s.push_str(cell);
            } else if left(i) {
                s.push_str(&format!("{cell:<w$}", w = width[i]));
            } else {
                s.push_str(&format!("{cell:>w$}", w = width[i]));
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(&HEAD.map(str::to_owned));
    for c in &cells {
        out.push_str(&line(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::workload::WorkloadId;

    fn workload(container: Option<&str>, kind: pb::VerdictKind, cpu: f64) -> pb::Workload {
        let key = match container {
            Some(c) => WorkloadId::Container(c.into()),
            None => WorkloadId::Process {
                node: "n1".into(),
                pid: 42,
                start_ticks: 7,
            },
        };
        pb::Workload {
            key: Some(key.to_proto()),
            name: "java".into(),
            nodes: vec!["n1".into(), "n2".into()],
            runtime: pb::Runtime::Jvm as i32,
            verdict: Some(pb::Verdict {
                kind: kind as i32,
                confidence: 0.8,
                reasons: vec!["GC 31% of CPU (threads 31%)".into(), "x".into()],
            }),
            gc_cpu_share: 0.31,
            cpu_seconds: cpu,
            window_seconds: 1.0,
            alloc_bytes_per_second: 3.0 * 1024.0 * 1024.0,
            faults_per_second: 12_500.0,
            rss_bytes: 512 << 20,
            ..Default::default()
        }
    }

    #[test]
    fn json_rows_have_exactly_the_documented_fields() {
        let r = row(&workload(
            Some(&"ab".repeat(32)),
            pb::VerdictKind::VerdictGcHeavy,
            1.0,
        ));
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            vec![
                "alloc_bytes_per_second",
                "confidence",
                "container_id",
                "container_name",
                "cost_usd_per_month",
                "cpu_seconds",
                "faults_per_second",
                "gc_cpu_share",
                "instance_type",
                "lifecycle",
                "memory_stall_share",
                "namespace",
                "node",
                "owner_kind",
                "owner_name",
                "pod_name",
                "pod_uid",
                "reasons",
                "rss_bytes",
                "runtime",
                "verdict",
                "workload",
                "zone"
            ]
        );
        assert_eq!(v["workload"], "java/abababababab");
        assert_eq!(v["container_id"], "ab".repeat(32));
        assert!(v["pod_uid"].is_null());
        assert_eq!(v["node"], "n1,n2");
        assert_eq!(v["runtime"], "jvm");
        assert_eq!(v["verdict"], "gc-heavy");
        assert_eq!(v["reasons"][1], "x");
        assert!(v["namespace"].is_null() && v["owner_kind"].is_null());
    }

    #[test]
    fn kubernetes_names_in_rows_and_table() {
        let mut w = workload(Some("c1"), pb::VerdictKind::VerdictGcHeavy, 1.0);
        w.pod = Some(pb::PodMetadata {
            namespace: "shop".into(),
            pod_name: "checkout-7d4b9c8f6d-x2x7k".into(),
            container_name: "checkout".into(),
            owner_kind: "Deployment".into(),
            owner_name: "checkout".into(),
            ..Default::default()
        });
        let r = row(&w);
        assert_eq!(r.namespace.as_deref(), Some("shop"));
        assert_eq!(r.owner_kind.as_deref(), Some("Deployment"));
        assert_eq!(r.container_name.as_deref(), Some("checkout"));
        let t = table(&[r]);
        let line = t.lines().nth(1).unwrap();
        assert!(
            line.contains("shop/checkout-7d4b9c8f6d-x2x7k/checkout  Deployment/checkout  n1,n2"),
            "{t}"
        );
    }

    #[test]
    fn table_is_aligned_and_sorted_worst_first() {
        let mut rows = vec![
            row(&workload(None, pb::VerdictKind::VerdictSteady, 2.0)),
            row(&workload(Some("c1"), pb::VerdictKind::VerdictGcHeavy, 1.0)),
        ];
        sort(&mut rows);
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("WORKLOAD"));
        assert!(lines[1].starts_with("java/c1 "), "{t}");
        assert!(lines[2].starts_with("java[42]"), "{t}");
        // Columns line up: VERDICT starts at the same place on every line.
        let col = lines[0].find("VERDICT").unwrap();
        assert_eq!(&lines[1][col..col + 8], "gc-heavy");
        assert_eq!(&lines[2][col..col + 6], "steady");
        assert!(
            lines[1].contains("3.0Mi")
                && lines[1].contains("12.5k")
                && lines[1].contains("512.0Mi")
        );
    }

    #[test]
    fn rows_are_priced_at_their_nodes_rates() {
        let node = |name: &str, instance_type: &str| pb::NodeSummary {
            identity: Some(pb::NodeIdentity {
                node_name: name.into(),
                instance_type: instance_type.into(),
                zone: "us-east-1a".into(),
                region: "us-east-1".into(),
                lifecycle: "spot".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Two cores and 512 MiB on a priced node; the same on a node off EC2.
        let priced = workload(Some("c1"), pb::VerdictKind::VerdictGcHeavy, 2.0);
        let mut elsewhere = workload(Some("c2"), pb::VerdictKind::VerdictSteady, 2.0);
        elsewhere.nodes = vec!["n3".into()];
        let nodes = [node("n1", "m6i.large"), node("n3", "unknown")];
        let pricing = Pricing::embedded();
        let rows = priced_rows(&[priced, elsewhere], &nodes, &pricing);
        let rates = pricing
            .rates(nodes[0].identity.as_ref())
            .expect("m6i.large in us-east-1 is in the table");
        let expected = 730.0 * (2.0 * rates.usd_per_vcpu_hour + 0.5 * rates.usd_per_gib_hour);
        let cost = rows[0].cost_usd_per_month.unwrap();
        assert!((cost - expected).abs() < 1e-6, "{cost} vs {expected}");
        assert_eq!(rows[0].instance_type.as_deref(), Some("m6i.large"));
        assert_eq!(rows[0].lifecycle.as_deref(), Some("spot"));
        assert_eq!(rows[1].cost_usd_per_month, None);
        assert_eq!(rows[1].instance_type, None, "\"unknown\" is no type");
        let t = table(&rows);
        assert!(t.contains("n1,n2 (m6i.large spot)"), "{t}");
        assert!(t.contains(&format!("{cost:.2}")), "{t}");
    }
}
