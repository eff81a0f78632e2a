//! The export request of a [`Snapshot`]: one `ResourceMetrics` per
//! process and per container, and one for the agent itself.
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};

use crate::{
    attrs::{EntityAttrs, NodeAttrs},
    metrics::{self, Kind, MetricDef, SelfPoint, Value},
    runtime_metrics::{self, RuntimeMetric, RuntimeValue},
    series::{Entity, Snapshot},
};

/// The export request of one snapshot.
pub fn request(s: &Snapshot, extra: &[SelfPoint]) -> ExportMetricsServiceRequest {
    let node = node_attributes(&s.node);
    let at = unix_nanos(s.at);
    let mut resource_metrics = Vec::with_capacity(1 + s.processes.len() + s.containers.len());
    resource_metrics.push(resource(
        node.clone(),
        self_metrics(
            &metrics::self_points(s, extra),
            unix_nanos(s.instance_start),
            at,
        ),
    ));
    for (process, entities) in [(true, &s.processes), (false, &s.containers)] {
        for e in entities {
            let mut attributes = node.clone();
            attributes.extend(entity_attributes(&e.attrs));
            resource_metrics.push(resource(attributes, entity_metrics(e, process, at)));
        }
    }
    ExportMetricsServiceRequest { resource_metrics }
}

/// One resource with its metrics, in the `tally` scope.
pub fn resource(attributes: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "tally".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn entity_metrics(e: &Entity, process: bool, at: u64) -> Vec<Metric> {
    let start = unix_nanos(e.start);
    let points = metrics::points(e);
    let mut out = Vec::new();
    for def in metrics::ALL {
        let data_points: Vec<NumberDataPoint> = points
            .iter()
            .filter(|p| std::ptr::eq::<MetricDef>(p.metric, def))
            .map(|p| {
                let attrs: Vec<(&str, &str)> =
                    p.attrs.iter().map(|(k, v)| (def.otlp_key(k), *v)).collect();
                data_point(&attrs, p.value, def.kind, start, at)
            })
            .collect();
        if data_points.is_empty() {
            continue;
        }
        let name = if process {
            def.otlp_process
        } else {
            def.otlp_container
        };
        out.push(metric(name, def.help, def.unit, def.kind, data_points));
    }
    if process {
        out.extend(
            runtime_metrics::of_process(e)
                .into_iter()
                .map(|m| runtime_metric(&m, start, at)),
        );
    }
    out
}

/// A semantic-convention runtime metric: cumulative, from the process's
/// start time.
fn runtime_metric(m: &RuntimeMetric, start: u64, at: u64) -> Metric {
    match &m.value {
        RuntimeValue::UpDown(v) => metric(
            m.otlp,
            m.help,
            m.unit,
            Kind::UpDown,
            vec![data_point(&[], *v, Kind::UpDown, start, at)],
        ),
        RuntimeValue::Histogram { buckets, sum } => Metric {
            name: m.otlp.into(),
            description: m.help.into(),
            unit: m.unit.into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: start,
                    time_unix_nano: at,
                    count: buckets.iter().sum(),
                    sum: Some(*sum),
                    bucket_counts: buckets.to_vec(),
                    explicit_bounds: tally_core::model::PAUSE_BOUNDS_SECONDS.to_vec(),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
    }
}

/// One self metric alone.
pub fn self_metric(p: &SelfPoint, start: u64, at: u64) -> Metric {
    let dp = data_point(&p.attrs, p.value, p.kind, start, at);
    metric(p.otlp, p.help, p.unit, p.kind, vec![dp])
}

fn self_metrics(points: &[SelfPoint], start: u64, at: u64) -> Vec<Metric> {
    let mut out: Vec<Metric> = Vec::new();
    for p in points {
        let dp = data_point(&p.attrs, p.value, p.kind, start, at);
        match out.iter_mut().find(|m| m.name == p.otlp) {
            Some(m) => match &mut m.data {
                Some(Data::Sum(s)) => s.data_points.push(dp),
                Some(Data::Gauge(g)) => g.data_points.push(dp),
                _ => {}
            },
            None => out.push(metric(p.otlp, p.help, p.unit, p.kind, vec![dp])),
        }
    }
    out
}

fn metric(
    name: &str,
    help: &str,
    unit: &str,
    kind: Kind,
    data_points: Vec<NumberDataPoint>,
) -> Metric {
    let data = match kind {
        Kind::Gauge => Data::Gauge(Gauge { data_points }),
        Kind::Counter | Kind::UpDown => Data::Sum(Sum {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: kind == Kind::Counter,
        }),
    };
    Metric {
        name: name.into(),
        description: help.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn data_point(
    attrs: &[(&'static str, &'static str)],
    value: Value,
    kind: Kind,
    start: u64,
    at: u64,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.iter().map(|(k, v)| kv(k, string(v))).collect(),
        // Gauges have no start; sums count from it.
        start_time_unix_nano: if kind == Kind::Gauge { 0 } else { start },
        time_unix_nano: at,
        value: Some(match value {
            Value::Int(v) => number_data_point::Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX)),
            Value::Double(v) => number_data_point::Value::AsDouble(v),
        }),
        ..Default::default()
    }
}

pub(crate) fn node_attributes(node: &NodeAttrs) -> Vec<KeyValue> {
    node.pairs()
        .into_iter()
        .map(|(k, v)| kv(k, string(v)))
        .collect()
}

pub(crate) fn entity_attributes(e: &EntityAttrs) -> Vec<KeyValue> {
    e.pairs()
        .into_iter()
        .map(|(k, v)| {
            if k == "process.pid" {
                kv(k, any_value::Value::IntValue(i64::from(e.pid)))
            } else {
                kv(k, any_value::Value::StringValue(v))
            }
        })
        .collect()
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn string(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_owned())
}

pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use tally_core::{model::Tick, testing::test_window};

    use crate::series::{SeriesLimits, SeriesState};

    #[test]
    fn request_has_resources_cumulative_sums_and_start_times() {
        let t0 = SystemTime::now();
        let node = NodeAttrs {
            host_name: "node-a".into(),
            ..Default::default()
        };
        let mut s = SeriesState::new(node, SeriesLimits::default(), t0);
        let at = t0 + Duration::from_secs(1);
        s.update(&Tick {
            at,
            seconds: 1.0,
            windows: vec![test_window(42, "worker", "/user.slice")],
            new_drops: [0; 6],
            swept_records: 0,
            sample_period_ns: 10_000_000,
        });
        let req = request(&s.snapshot(at, 1.0), &[]);
        assert_eq!(req.resource_metrics.len(), 2, "the agent and one process");
        let proc = &req.resource_metrics[1];
        let attrs = &proc.resource.as_ref().unwrap().attributes;
        let get = |k: &str| attrs.iter().find(|a| a.key == k).cloned();
        assert!(get("host.name").is_some());
        assert_eq!(
            get("process.pid").unwrap().value.unwrap().value,
            Some(any_value::Value::IntValue(42))
        );
        let metrics = &proc.scope_metrics[0].metrics;
        let faults = metrics
            .iter()
            .find(|m| m.name == "process.paging.faults")
            .unwrap();
        let Some(Data::Sum(sum)) = &faults.data else {
            panic!("faults is a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points.len(), 2);
        let minor = &sum.data_points[0];
        assert_eq!(minor.start_time_unix_nano, unix_nanos(t0));
        assert_eq!(minor.time_unix_nano, unix_nanos(at));
        assert_eq!(minor.value, Some(number_data_point::Value::AsInt(2048)));
        assert_eq!(minor.attributes[0].key, "system.paging.fault.type");
    }
}
