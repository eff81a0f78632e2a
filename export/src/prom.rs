//! Prometheus text exposition format (version 0.0.4) of a [`Snapshot`]:
//! `tally_process_*` and `tally_container_*` families with the resource
//! attributes as labels (dots as underscores: `process_pid`,
//! `container_id`, `k8s_pod_name`, `host_name`…), plus the agent's own
//! metrics.
use std::fmt::Write as _;

use super::{
    attrs::{NodeAttrs, label_name},
    metrics::{self, Kind, MetricDef, SelfPoint, Value},
    runtime_metrics::{self, RuntimeMetric, RuntimeValue},
    series::{Entity, Snapshot},
};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds an exposition, family by family.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::UpDown => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample; `labels` is already rendered (see [`labels`]).
    pub fn sample(&mut self, name: &str, labels: &str, value: Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            self.out.push_str(labels);
            self.out.push('}');
        }
        self.out.push(' ');
        match value {
            Value::Int(v) => {
                let _ = write!(self.out, "{v}");
            }
            Value::Double(v) => self.out.push_str(&float(v)),
        }
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Renders `key="value"` pairs (keys already valid label names).
pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_value(&mut out, v);
        out.push('"');
    }
    out
}

/// Joins two rendered label lists.
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a},{b}"),
    }
}

fn escape_value(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// The node's labels, rendered.
pub fn node_labels(node: &NodeAttrs) -> String {
    let pairs: Vec<(String, &str)> = node
        .pairs()
        .into_iter()
        .map(|(k, v)| (label_name(k), v))
        .collect();
    labels(pairs.iter().map(|(k, v)| (k.as_str(), *v)))
}

fn entity_labels(node: &str, e: &Entity) -> String {
    let pairs: Vec<(String, String)> = e
        .attrs
        .pairs()
        .into_iter()
        .map(|(k, v)| (label_name(k), v))
        .collect();
    join(
        node,
        &labels(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    )
}

/// The whole exposition of an agent.
pub fn render(s: &Snapshot, extra: &[SelfPoint]) -> String {
    let node = node_labels(&s.node);
    let mut text = Text::new();
    for (prefix, entities) in [
        ("tally_process_", &s.processes),
        ("tally_container_", &s.containers),
    ] {
        let rendered: Vec<(String, Vec<metrics::Point>)> = entities
            .iter()
            .map(|e| (entity_labels(&node, e), metrics::points(e)))
            .collect();
        for def in metrics::ALL {
            let name = format!("{prefix}{}", def.prom);
            let mut started = false;
            for (labels_of, points) in &rendered {
                for p in points
                    .iter()
                    .filter(|p| std::ptr::eq::<MetricDef>(p.metric, def))
                {
                    if !started {
                        text.family(&name, def.help, def.kind);
                        started = true;
                    }
                    let point_labels = labels(p.attrs.iter().copied());
                    text.sample(&name, &join(labels_of, &point_labels), p.value);
                }
            }
        }
    }
    render_runtime(&mut text, &node, &s.processes);
    render_self(&mut text, &node, &metrics::self_points(s, extra));
    text.finish()
}

/// The processes' semantic-convention runtime metrics, family by family.
fn render_runtime(text: &mut Text, node: &str, processes: &[Entity]) {
    let rendered: Vec<(String, Vec<RuntimeMetric>)> = processes
        .iter()
        .map(|e| (entity_labels(node, e), runtime_metrics::of_process(e)))
        .filter(|(_, m)| !m.is_empty())
        .collect();
    let mut done: Vec<&str> = Vec::new();
    for (_, metrics) in &rendered {
        for first in metrics {
            if done.contains(&first.prom) {
                continue;
            }
            done.push(first.prom);
            let kind = match first.value {
                RuntimeValue::Histogram { .. } => "histogram",
                RuntimeValue::UpDown(_) => "gauge",
            };
            let _ = writeln!(
                text.out,
                "# HELP {} {}",
                first.prom,
                escape_help(first.help)
            );
            let _ = writeln!(text.out, "# TYPE {} {kind}", first.prom);
            for (labels_of, metrics) in &rendered {
                for m in metrics.iter().filter(|m| m.prom == first.prom) {
                    match &m.value {
                        RuntimeValue::UpDown(v) => text.sample(m.prom, labels_of, *v),
                        RuntimeValue::Histogram { buckets, sum } => {
                            let name = format!("{}_bucket", m.prom);
                            let mut count = 0;
                            for (le, n) in runtime_metrics::cumulative_buckets(buckets) {
                                let le = labels([("le", le.as_str())]);
                                text.sample(&name, &join(labels_of, &le), Value::Int(n));
                                count = n;
                            }
                            text.sample(&format!("{}_sum", m.prom), labels_of, Value::Double(*sum));
                            text.sample(&format!("{}_count", m.prom), labels_of, Value::Int(count));
                        }
                    }
                }
            }
        }
    }
}

/// Self metrics, grouped by family in the order they come.
pub fn render_self(text: &mut Text, node: &str, points: &[SelfPoint]) {
    let mut done: Vec<&str> = Vec::new();
    for p in points {
        if done.contains(&p.prom) {
            continue;
        }
        done.push(p.prom);
        text.family(p.prom, p.help, p.kind);
        for q in points.iter().filter(|q| q.prom == p.prom) {
            let l = labels(q.attrs.iter().copied());
            text.sample(q.prom, &join(node, &l), q.value);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use tally_core::{model::Tick, testing::test_window};

    use crate::series::{SeriesLimits, SeriesState};

    #[test]
    fn exposition_has_families_labels_and_values() {
        let t0 = SystemTime::now();
        let node = NodeAttrs {
            host_name: "h\"1".into(),
            ..Default::default()
        };
        let mut s = SeriesState::new(node, SeriesLimits::default(), t0);
        s.update(&Tick {
            at: t0 + Duration::from_secs(1),
            seconds: 1.0,
            windows: vec![test_window(42, "worker", "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope")],
            new_drops: [0, 3, 0, 0, 0, 0],
            swept_records: 0,
            sample_period_ns: 10_000_000,
        });
        let text = render(&s.snapshot(t0, 1.0), &[]);
        assert!(text.contains("# TYPE tally_process_cpu_seconds_total counter\n"));
        assert!(text.contains(
            "tally_process_page_faults_total{host_name=\"h\\\"1\",process_pid=\"42\",process_executable_name=\"worker\",container_id=\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",container_runtime=\"docker\",type=\"minor\"} 2048\n"
        ), "{text}");
        assert!(text.contains("container_runtime=\"docker\"} 1\n"), "{text}");
        assert!(text.contains("tally_container_alloc_syscalls_total{"));
        assert!(text.contains(
            "tally_ebpf_lost_updates_total{host_name=\"h\\\"1\",kind=\"process_map_full\"} 3\n"
        ));
        // Each family's HELP/TYPE once.
        assert_eq!(
            text.matches("# TYPE tally_process_page_faults_total")
                .count(),
            1
        );
        crate::testing::assert_naming(&text);
    }
}
