//! Runtime metrics under the OpenTelemetry semantic conventions' names
//! (semconv 1.44), where Tally measures the very quantity the convention
//! names; the same names that OpenTelemetry's runtime instrumentations and
//! OBI export, so that Tally's series sit on their dashboards. Per process
//! only: the conventions define them per runtime instance.
//!
//! | OTLP | Prometheus | from |
//! | --- | --- | --- |
//! | `jvm.gc.duration` (histogram, s) | `jvm_gc_duration_seconds` | each HotSpot GC pause, timed by the `gc__begin`/`gc__end` USDT probes |
//! | `go.config.gogc` (%) | `go_config_gogc_percent` | `GOGC` in the environment (100 when unset); none when `off` |
//! | `go.memory.limit` (By) | `go_memory_limit_bytes` | `GOMEMLIMIT` in the environment, when set |
//! | `go.processor.limit` ({thread}) | `go_processor_limit` | `GOMAXPROCS` in the environment, when set |
//!
//! Where the semantics differ from the convention's, the README says how
//! (section "Runtime metrics by the semantic conventions").
use tally_core::{
    gc::Runtime,
    model::{
        PAUSE_BOUNDS_SECONDS,
        settings::{Gogc, RuntimeSettings},
    },
};

use crate::{metrics::Value, series::Entity};

/// What a runtime metric holds.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeValue {
    /// Cumulative, explicit bounds [`PAUSE_BOUNDS_SECONDS`]: the count of
    /// each bucket (not cumulative; the last is above the last bound).
    Histogram { buckets: [u64; 5], sum: f64 },
    /// A non-monotonic sum (an UpDownCounter), a gauge in Prometheus.
    UpDown(Value),
}

/// One runtime metric of one process.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeMetric {
    pub otlp: &'static str,
    /// The Prometheus family (a histogram's `_bucket`, `_sum`, `_count`
    /// follow it).
    pub prom: &'static str,
    pub unit: &'static str,
    pub help: &'static str,
    pub value: RuntimeValue,
}

pub const JVM_GC_DURATION: (&str, &str) = ("jvm.gc.duration", "jvm_gc_duration_seconds");

/// The runtime metrics of a process; none for a container.
pub fn of_process(e: &Entity) -> Vec<RuntimeMetric> {
    let mut out = Vec::new();
    let c = &e.totals.counters;
    // Pauses timed one by one only: hsperfdata's sum has no lengths.
    if e.runtime == Runtime::Jvm && c.gc_pauses() > 0 {
        out.push(RuntimeMetric {
            otlp: JVM_GC_DURATION.0,
            prom: JVM_GC_DURATION.1,
            unit: "s",
            help: "Duration of JVM garbage collection pauses (HotSpot gc__begin to gc__end, every collector's).",
            value: RuntimeValue::Histogram {
                buckets: c.gc_pause_buckets,
                sum: c.gc_pause_seconds(),
            },
        });
    }
    if let Some(RuntimeSettings::Go(go)) = e.settings.as_deref() {
        if let Gogc::Percent(p) = go.gogc.value {
            out.push(RuntimeMetric {
                otlp: "go.config.gogc",
                prom: "go_config_gogc_percent",
                unit: "%",
                help: "Heap size target percentage configured by the user (GOGC), otherwise 100.",
                value: RuntimeValue::UpDown(Value::Int(u64::from(p))),
            });
        }
        if let Some(limit) = go.gomemlimit_bytes.value {
            out.push(RuntimeMetric {
                otlp: "go.memory.limit",
                prom: "go_memory_limit_bytes",
                unit: "By",
                help: "Go runtime memory limit configured by the user (GOMEMLIMIT), if a limit exists.",
                value: RuntimeValue::UpDown(Value::Int(limit)),
            });
        }
        if let Some(procs) = go.gomaxprocs.value {
            out.push(RuntimeMetric {
                otlp: "go.processor.limit",
                prom: "go_processor_limit",
                unit: "{thread}",
                help: "The number of OS threads that can execute user-level Go code simultaneously (GOMAXPROCS, as set).",
                value: RuntimeValue::UpDown(Value::Int(u64::from(procs))),
            });
        }
    }
    out
}

/// A histogram's buckets as Prometheus has them: `(le, cumulative count)`,
/// ending with `+Inf` (the count).
pub fn cumulative_buckets(buckets: &[u64; 5]) -> Vec<(String, u64)> {
    let mut total = 0;
    let mut out = Vec::with_capacity(5);
    for (i, n) in buckets.iter().enumerate() {
        total += n;
        let le = PAUSE_BOUNDS_SECONDS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |b| format!("{b}"));
        out.push((le, total));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, SystemTime},
    };

    use super::*;
    use crate::series::{SeriesLimits, SeriesState};
    use tally_core::{
        model::{
            Tick,
            settings::{ProcessText, RuntimeSettings},
        },
        testing::test_window,
    };

    /// A JVM with three timed pauses and a Go process with GOGC and
    /// GOMEMLIMIT set, as one snapshot.
    fn snapshot() -> crate::Snapshot {
        let t0 = SystemTime::now();
        let mut jvm = test_window(10, "java", "/user.slice");
        jvm.runtime = Runtime::Jvm;
        jvm.delta.gc_pause_buckets = [2, 1, 0, 0, 0];
        jvm.delta.gc_pause_ns = 2_000_000 + 3_000_000 + 40_000_000;
        let mut go = test_window(11, "server", "/user.slice");
        go.runtime = Runtime::Go;
        go.settings = RuntimeSettings::parse(
            Runtime::Go,
            ProcessText {
                cmdline: b"server\0",
                environ: b"GOGC=25\0GOMEMLIMIT=64MiB\0",
            },
        )
        .map(Arc::new);
        let mut s = SeriesState::new(Default::default(), SeriesLimits::default(), t0);
        s.update(&Tick {
            at: t0 + Duration::from_secs(1),
            seconds: 1.0,
            windows: vec![jvm, go],
            new_drops: [0; 6],
            swept_records: 0,
            sample_period_ns: 10_000_000,
        });
        s.snapshot(t0, 1.0)
    }

    #[test]
    fn prometheus_has_the_histogram_and_the_go_settings() {
        let text = crate::prom::render(&snapshot(), &[]);
        assert!(
            text.contains("# TYPE jvm_gc_duration_seconds histogram\n"),
            "{text}"
        );
        for line in [
            "jvm_gc_duration_seconds_bucket{host_name=\"\",process_pid=\"10\",process_executable_name=\"java\",le=\"0.01\"} 2\n",
            "le=\"0.1\"} 3\n",
            "le=\"+Inf\"} 3\n",
            "jvm_gc_duration_seconds_sum{host_name=\"\",process_pid=\"10\",process_executable_name=\"java\"} 0.045\n",
            "jvm_gc_duration_seconds_count{host_name=\"\",process_pid=\"10\",process_executable_name=\"java\"} 3\n",
            "go_config_gogc_percent{host_name=\"\",process_pid=\"11\",process_executable_name=\"server\"} 25\n",
            "go_memory_limit_bytes{host_name=\"\",process_pid=\"11\",process_executable_name=\"server\"} 67108864\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("go_processor_limit"),
            "GOMAXPROCS unset: none"
        );
        assert_eq!(text.matches("# TYPE jvm_gc_duration_seconds").count(), 1);
        crate::testing::assert_naming(&text);
    }

    #[test]
    fn otlp_has_the_histogram_with_the_advised_bounds() {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let req = crate::otlp::request(&snapshot(), &[]);
        let metric = |name: &str| {
            req.resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics[0].metrics)
                .find(|m| m.name == name)
                .cloned()
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let Some(Data::Histogram(h)) = metric("jvm.gc.duration").data else {
            panic!("a histogram");
        };
        let p = &h.data_points[0];
        assert_eq!(p.count, 3);
        assert_eq!(p.bucket_counts, vec![2, 1, 0, 0, 0]);
        assert_eq!(p.explicit_bounds, vec![0.01, 0.1, 1.0, 10.0]);
        assert!((p.sum.unwrap() - 0.045).abs() < 1e-12);
        assert_eq!(metric("go.config.gogc").unit, "%");
        assert_eq!(metric("go.memory.limit").unit, "By");
    }

    #[test]
    fn buckets_accumulate_to_the_count() {
        assert_eq!(
            cumulative_buckets(&[3, 2, 0, 1, 0]),
            vec![
                ("0.01".to_owned(), 3),
                ("0.1".to_owned(), 5),
                ("1".to_owned(), 5),
                ("10".to_owned(), 6),
                ("+Inf".to_owned(), 6),
            ]
        );
    }
}
