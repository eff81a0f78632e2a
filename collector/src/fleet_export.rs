//! The collector's exports: every workload's verdict and latest figures,
//! from the classification pass ([`crate::query::Snapshot`]), as
//! `tally_workload_*` on `/metrics` and `tally.workload.*` gauges over OTLP
//! (one resource per workload: `container.id`, or `process.pid` with the
//! node's `host.name`).
use std::{
    net::SocketAddr,
    sync::{
        Arc, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, SystemTime},
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{Gauge, Metric, NumberDataPoint, metric::Data, number_data_point},
};
use tally_proto as pb;

use tally_core::workload::WorkloadId;
use tally_export::{
    ExportError, ExportOptions,
    attrs::host_name,
    http,
    metrics::{Kind, SelfPoint, Value},
    otlp::{self, Exportable, request::resource},
    prom,
};

use crate::query;

/// The collector's exporters; stop when dropped.
pub struct FleetExporter {
    server: Option<http::MetricsServer>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FleetExporter {
    /// Serves `/metrics` from `snapshot` and, with an OTLP endpoint,
    /// exports it every `every`. Call once the store is open: `/readyz`
    /// says ready from then on.
    pub fn start(
        opts: &ExportOptions,
        snapshot: query::Snapshot,
        every: Duration,
        reviews: Option<Arc<crate::token_review::ReviewStats>>,
    ) -> Result<Self, ExportError> {
        let max = opts.limits.max_series;
        let otlp = opts
            .otlp
            .clone()
            .map(otlp::OtlpExporter::start)
            .transpose()?;
        let stats = otlp.as_ref().map(otlp::OtlpExporter::stats);
        let server = match opts.metrics_listen {
            Some(addr) => Some(serve(addr, snapshot.clone(), stats.clone(), reviews, max)?),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match otlp {
            Some(exporter) => {
                tracing::info!("exporting workload verdicts over OTLP every {every:?}");
                let stop = stop.clone();
                let start = SystemTime::now();
                let host = host_name();
                Some(
                    thread::Builder::new()
                        .name("tally-fleet-export".into())
                        .spawn(move || {
                            while !stop.load(Ordering::Relaxed) {
                                thread::park_timeout(every);
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                                let workloads = read(&snapshot);
                                exporter.push(Arc::new(Workloads {
                                    at: SystemTime::now(),
                                    instance_start: start,
                                    host: host.clone(),
                                    workloads,
                                    max,
                                }));
                            }
                            exporter.flush(Duration::from_secs(3));
                        })
                        .map_err(|e| ExportError::Http(http::HttpError::Thread(e)))?,
                )
            }
            None => None,
        };
        Ok(Self {
            server,
            stop,
            thread,
        })
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(http::MetricsServer::addr)
    }
}

impl Drop for FleetExporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn read(snapshot: &query::Snapshot) -> Arc<Vec<pb::Workload>> {
    snapshot
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

fn serve(
    addr: SocketAddr,
    snapshot: query::Snapshot,
    stats: Option<Arc<otlp::OtlpStats>>,
    reviews: Option<Arc<crate::token_review::ReviewStats>>,
    max: usize,
) -> Result<http::MetricsServer, ExportError> {
    let render: http::Render = Arc::new(move || {
        let mut extra = stats.as_ref().map(|s| s.points()).unwrap_or_default();
        if let Some(r) = &reviews {
            extra.extend(r.points());
        }
        render(&read(&snapshot), max, &extra)
    });
    // The store is open before the exporter starts.
    Ok(http::MetricsServer::start(
        addr,
        render,
        Arc::new(AtomicBool::new(true)),
    )?)
}

/// One workload's gauges: `(prom name, OTLP name, unit, help, value)`.
fn gauges(w: &pb::Workload) -> [(&'static str, &'static str, &'static str, &'static str, f64); 6] {
    let secs = w.window_seconds.max(1e-3);
    [
        (
            "tally_workload_gc_cpu_share",
            "tally.workload.gc.cpu.share",
            "1",
            "Share of the workload's CPU spent in GC over the last minute (merged over its nodes); 0 and meaningless where its verdict is gc-unobservable.",
            w.gc_cpu_share,
        ),
        (
            "tally_workload_cpu_cores",
            "tally.workload.cpu.usage",
            "{cpu}",
            "CPU of the workload in its latest window, in cores.",
            w.cpu_seconds / secs,
        ),
        (
            "tally_workload_alloc_bytes_per_second",
            "tally.workload.alloc.rate",
            "By/s",
            "Bytes through allocation syscalls per second, latest window.",
            w.alloc_bytes_per_second,
        ),
        (
            "tally_workload_page_faults_per_second",
            "tally.workload.paging.faults.rate",
            "{fault}/s",
            "Page faults per second, latest window.",
            w.faults_per_second,
        ),
        (
            "tally_workload_rss_bytes",
            "tally.workload.memory.rss",
            "By",
            "Resident set size of the workload (its processes', summed over nodes).",
            w.rss_bytes as f64,
        ),
        (
            "tally_workload_last_seen_timestamp_seconds",
            "tally.workload.last_seen",
            "s",
            "When the workload's latest window ended (Unix time).",
            w.last_seen_unix_ms as f64 / 1000.0,
        ),
    ]
}

fn verdict(w: &pb::Workload) -> (&'static str, f64) {
    let v = w.verdict.as_ref();
    let name = tally_core::gc::VerdictKind::name_of(v);
    (name, v.map_or(0.0, |v| v.confidence))
}

fn runtime(w: &pb::Workload) -> &'static str {
    match w.runtime() {
        pb::Runtime::Go => "go",
        pb::Runtime::Jvm => "jvm",
        pb::Runtime::Node => "node",
        pb::Runtime::Dotnet => "dotnet",
        pb::Runtime::Python => "python",
        pb::Runtime::Native => "native",
        pb::Runtime::Unknown | pb::Runtime::Unspecified => "unknown",
    }
}

/// A workload's identifying attributes: `(semantic-convention key, value)`.
fn identity(w: &pb::Workload) -> Vec<(&'static str, String)> {
    let id = w.key.as_ref().and_then(WorkloadId::from_proto);
    let mut out = vec![(
        "tally.workload",
        id.as_ref().map(ToString::to_string).unwrap_or_default(),
    )];
    out.push(("tally.workload.name", w.name.clone()));
    match id {
        Some(WorkloadId::Container(c)) => out.push(("container.id", c.to_string())),
        Some(WorkloadId::Process { node, pid, .. }) => {
            out.push(("process.pid", pid.to_string()));
            out.push(("host.name", node.to_string()));
        }
        None => {}
    }
    out.push(("tally.workload.nodes", w.nodes.join(",")));
    out
}

/// The most recently seen `max` workloads; how many were left out.
fn capped(workloads: &[pb::Workload], max: usize) -> (Vec<&pb::Workload>, u64) {
    let mut all: Vec<&pb::Workload> = workloads.iter().collect();
    if all.len() <= max {
        return (all, 0);
    }
    all.sort_by_key(|w| std::cmp::Reverse(w.last_seen_unix_ms));
    let dropped = (all.len() - max) as u64;
    all.truncate(max);
    (all, dropped)
}

/// The collector's exposition.
pub fn render(workloads: &[pb::Workload], max: usize, extra: &[SelfPoint]) -> String {
    let (kept, dropped) = capped(workloads, max);
    let rendered: Vec<String> = kept
        .iter()
        .map(|w| {
            let pairs: Vec<(String, String)> = identity(w)
                .into_iter()
                .map(|(k, v)| (tally_export::attrs::label_name(k), v))
                .collect();
            prom::labels(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        })
        .collect();
    let mut text = prom::Text::new();
    text.family(
        "tally_workload_verdict",
        "1 for the workload's current verdict (gc-heavy, alloc-churn, steady, idle, gc-unobservable), with its runtime.",
        Kind::Gauge,
    );
    for (w, l) in kept.iter().zip(&rendered) {
        let (v, _) = verdict(w);
        let extra = prom::labels([("verdict", v), ("runtime", runtime(w))]);
        text.sample(
            "tally_workload_verdict",
            &prom::join(l, &extra),
            Value::Int(1),
        );
    }
    text.family(
        "tally_workload_verdict_confidence",
        "Confidence of the workload's current verdict, 0..1.",
        Kind::Gauge,
    );
    for (w, l) in kept.iter().zip(&rendered) {
        let (v, c) = verdict(w);
        let extra = prom::labels([("verdict", v)]);
        text.sample(
            "tally_workload_verdict_confidence",
            &prom::join(l, &extra),
            Value::Double(c),
        );
    }
    for i in 0..gauges(&pb::Workload::default()).len() {
        let (name, _, _, help, _) = gauges(&pb::Workload::default())[i];
        text.family(name, help, Kind::Gauge);
        for (w, l) in kept.iter().zip(&rendered) {
            text.sample(name, l, Value::Double(gauges(w)[i].4));
        }
    }
    let mut own = vec![
        SelfPoint {
            prom: "tally_collector_workloads",
            otlp: "tally.collector.workloads",
            unit: "{workload}",
            kind: Kind::Gauge,
            help: "Workloads the collector knows.",
            attrs: Vec::new(),
            value: Value::Int(workloads.len() as u64),
        },
        SelfPoint {
            prom: "tally_collector_workloads_not_exported",
            otlp: "tally.collector.workloads.not_exported",
            unit: "{workload}",
            kind: Kind::Gauge,
            help: "Workloads left out of the latest exposition by the cardinality cap (--export-max-series; least recently seen first).",
            attrs: Vec::new(),
            value: Value::Int(dropped),
        },
    ];
    own.extend_from_slice(extra);
    prom::render_self(&mut text, "", &own);
    text.finish()
}

/// What the collector exports over OTLP at one time.
pub struct Workloads {
    pub at: SystemTime,
    pub instance_start: SystemTime,
    pub host: String,
    pub workloads: Arc<Vec<pb::Workload>>,
    pub max: usize,
}

impl Exportable for Workloads {
    fn request(&self, extra: &[SelfPoint]) -> otlp::OtlpRequest {
        let at = otlp::unix_nanos(self.at);
        let (kept, _) = capped(&self.workloads, self.max);
        let mut resource_metrics = Vec::with_capacity(kept.len() + 1);
        let collector_attrs = vec![
            kv("host.name", self.host.clone()),
            kv("service.name", "tally-collector".into()),
        ];
        let own: Vec<Metric> = extra
            .iter()
            .map(|p| otlp::self_metric(p, otlp::unix_nanos(self.instance_start), at))
            .collect();
        resource_metrics.push(resource(collector_attrs, own));
        for w in kept {
            let attributes = identity(w)
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| {
                    if k == "process.pid" {
                        KeyValue {
                            key: k.into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(v.parse().unwrap_or(0))),
                            }),
                            ..Default::default()
                        }
                    } else {
                        kv(k, v)
                    }
                })
                .collect();
            let (v, confidence) = verdict(w);
            let mut metrics = vec![
                gauge(
                    "tally.workload.verdict",
                    "1 for the workload's current verdict, with its runtime.",
                    "1",
                    vec![point(
                        vec![kv("verdict", v.into()), kv("runtime", runtime(w).into())],
                        1.0,
                        at,
                    )],
                ),
                gauge(
                    "tally.workload.verdict.confidence",
                    "Confidence of the workload's current verdict, 0..1.",
                    "1",
                    vec![point(vec![kv("verdict", v.into())], confidence, at)],
                ),
            ];
            for (_, name, unit, help, value) in gauges(w) {
                metrics.push(gauge(name, help, unit, vec![point(Vec::new(), value, at)]));
            }
            resource_metrics.push(resource(attributes, metrics));
        }
        otlp::OtlpRequest::Metrics(ExportMetricsServiceRequest { resource_metrics })
    }
}

fn gauge(name: &str, help: &str, unit: &str, data_points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: help.into(),
        unit: unit.into(),
        data: Some(Data::Gauge(Gauge { data_points })),
        ..Default::default()
    }
}

fn point(attributes: Vec<KeyValue>, value: f64, at: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: at,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(id: &str, seen: i64) -> pb::Workload {
        pb::Workload {
            key: Some(WorkloadId::Container(Arc::from(id)).to_proto()),
            name: "java".into(),
            nodes: vec!["n1".into(), "n2".into()],
            runtime: pb::Runtime::Jvm as i32,
            verdict: Some(pb::Verdict {
                kind: pb::VerdictKind::VerdictGcHeavy as i32,
                confidence: 0.8,
                reasons: vec!["GC 50%".into()],
            }),
            gc_cpu_share: 0.5,
            cpu_seconds: 2.0,
            window_seconds: 2.0,
            last_seen_unix_ms: seen,
            ..Default::default()
        }
    }

    #[test]
    fn verdicts_as_prometheus_and_otlp() {
        let ws = vec![workload("abc", 1), workload("def", 2)];
        let text = render(&ws, 10, &[]);
        assert!(text.contains("tally_workload_verdict{tally_workload=\"container/abc\",tally_workload_name=\"java\",container_id=\"abc\",tally_workload_nodes=\"n1,n2\",verdict=\"gc-heavy\",runtime=\"jvm\"} 1\n"), "{text}");
        assert!(text.contains("tally_workload_cpu_cores{"));
        assert!(text.contains("tally_collector_workloads 2\n"));
        let capped = render(&ws, 1, &[]);
        assert!(
            !capped.contains("container/abc"),
            "least recently seen dropped"
        );
        assert!(capped.contains("tally_collector_workloads_not_exported 1\n"));
        tally_export::testing::assert_naming(&text);

        let req = Workloads {
            at: SystemTime::now(),
            instance_start: SystemTime::now(),
            host: "c".into(),
            workloads: Arc::new(ws),
            max: 10,
        }
        .request(&[]);
        let otlp::OtlpRequest::Metrics(req) = req else {
            panic!("a metrics request");
        };
        assert_eq!(req.resource_metrics.len(), 3);
        let names: Vec<&str> = req.resource_metrics[1].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert!(names.contains(&"tally.workload.verdict"));
    }
}
