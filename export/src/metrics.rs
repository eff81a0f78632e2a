//! The metrics both exporters publish, named once: the Prometheus name
//! (`tally_process_…`, `tally_container_…`) and the OTLP name (semantic
//! conventions where one exists: `process.cpu.time`,
//! `process.paging.faults`, `process.memory.usage`, `container.cpu.time`;
//! `tally.…` for the rest), with the same point attributes.
use super::series::{Entity, Snapshot};

/// Cumulative (monotonic) sum, or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// A non-monotonic cumulative sum in OTLP (semantic conventions'
    /// UpDownCounter, e.g. `process.memory.usage`), a gauge in Prometheus.
    UpDown,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Double(f64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Int(v) => v as f64,
            Value::Double(v) => v,
        }
    }
}

/// One metric of a process or a container.
#[derive(Debug)]
pub struct MetricDef {
    /// After `tally_process_` or `tally_container_`.
    pub prom: &'static str,
    pub otlp_process: &'static str,
    pub otlp_container: &'static str,
    /// UCUM, as OTLP wants it.
    pub unit: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Point attributes whose OTLP key is not the Prometheus label's:
    /// `(label, OTLP key)`, the semantic conventions' key in OTLP.
    pub otlp_keys: &'static [(&'static str, &'static str)],
}

impl MetricDef {
    /// The OTLP key of a point attribute.
    pub fn otlp_key(&self, label: &'static str) -> &'static str {
        self.otlp_keys
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(label, |(_, k)| k)
    }
}

pub static CPU: MetricDef = MetricDef {
    prom: "cpu_seconds_total",
    otlp_process: "process.cpu.time",
    otlp_container: "container.cpu.time",
    unit: "s",
    kind: Kind::Counter,
    help: "CPU time, from cpu-clock samples (samples times the sampling period).",
    otlp_keys: &[],
};
pub static GC_CPU: MetricDef = MetricDef {
    prom: "gc_cpu_seconds_total",
    otlp_process: "tally.process.gc.cpu.time",
    otlp_container: "tally.container.gc.cpu.time",
    unit: "s",
    kind: Kind::Counter,
    help: "CPU time in garbage collection (GC threads by name, GC code by stack).",
    otlp_keys: &[],
};
pub static GC_SHARE: MetricDef = MetricDef {
    prom: "gc_cpu_share",
    otlp_process: "tally.process.gc.cpu.share",
    otlp_container: "tally.container.gc.cpu.share",
    unit: "1",
    kind: Kind::Gauge,
    help: "Share of the CPU spent in GC in the latest active window, 0..1.",
    otlp_keys: &[],
};
pub static ALLOC_CALLS: MetricDef = MetricDef {
    prom: "alloc_syscalls_total",
    otlp_process: "tally.process.alloc.syscalls",
    otlp_container: "tally.container.alloc.syscalls",
    unit: "{call}",
    kind: Kind::Counter,
    help: "Allocation syscalls (mmap, munmap, brk, mremap, madvise), by syscall.",
    otlp_keys: &[],
};
pub static ALLOC_BYTES: MetricDef = MetricDef {
    prom: "alloc_bytes_total",
    otlp_process: "tally.process.alloc.bytes",
    otlp_container: "tally.container.alloc.bytes",
    unit: "By",
    kind: Kind::Counter,
    help: "Bytes of allocation syscalls: mmap length, brk and mremap growth, munmap length, madvise length by advice.",
    otlp_keys: &[],
};
pub static FAULTS: MetricDef = MetricDef {
    prom: "page_faults_total",
    otlp_process: "process.paging.faults",
    otlp_container: "tally.container.paging.faults",
    unit: "{fault}",
    kind: Kind::Counter,
    help: "Page faults (the kernel's per-task minflt/majflt), by type.",
    otlp_keys: &[("type", "system.paging.fault.type")],
};
pub static RSS: MetricDef = MetricDef {
    prom: "rss_bytes",
    otlp_process: "process.memory.usage",
    otlp_container: "tally.container.memory.rss",
    unit: "By",
    kind: Kind::UpDown,
    help: "Resident set size at the end of the latest active window (containers: the sum of their processes').",
    otlp_keys: &[],
};
pub static GC_CYCLES: MetricDef = MetricDef {
    prom: "gc_cycles_total",
    otlp_process: "tally.process.gc.cycles",
    otlp_container: "tally.container.gc.cycles",
    unit: "{cycle}",
    kind: Kind::Counter,
    help: "GC cycles the runtime reported (Go uprobes, HotSpot USDT).",
    otlp_keys: &[],
};
pub static GC_PAUSE: MetricDef = MetricDef {
    prom: "gc_pause_seconds_total",
    otlp_process: "tally.process.gc.pause.time",
    otlp_container: "tally.container.gc.pause.time",
    unit: "s",
    kind: Kind::Counter,
    help: "GC pause time the runtime reported (HotSpot USDT).",
    otlp_keys: &[],
};
pub static VERDICT: MetricDef = MetricDef {
    prom: "verdict",
    otlp_process: "tally.process.verdict",
    otlp_container: "tally.container.verdict",
    unit: "1",
    kind: Kind::Gauge,
    help: "1 for the current verdict (gc-heavy, alloc-churn, steady, idle), with the runtime.",
    otlp_keys: &[],
};
pub static VERDICT_CONFIDENCE: MetricDef = MetricDef {
    prom: "verdict_confidence",
    otlp_process: "tally.process.verdict.confidence",
    otlp_container: "tally.container.verdict.confidence",
    unit: "1",
    kind: Kind::Gauge,
    help: "Confidence of the current verdict, 0..1.",
    otlp_keys: &[],
};

pub static MEMORY_PRESSURE: MetricDef = MetricDef {
    prom: "memory_pressure_seconds_total",
    otlp_process: "tally.process.memory.pressure",
    otlp_container: "tally.container.memory.pressure",
    unit: "s",
    kind: Kind::Counter,
    help: "Time the container's tasks stalled waiting for memory (cgroup memory.pressure): some = at least one task, full = all at once.",
    otlp_keys: &[],
};
pub static CPU_PRESSURE: MetricDef = MetricDef {
    prom: "cpu_pressure_seconds_total",
    otlp_process: "tally.process.cpu.pressure",
    otlp_container: "tally.container.cpu.pressure",
    unit: "s",
    kind: Kind::Counter,
    help: "Time the container's tasks waited for a CPU (cgroup cpu.pressure): some = at least one task, full = all at once.",
    otlp_keys: &[],
};

/// Every metric, in output order.
pub static ALL: [&MetricDef; 13] = [
    &CPU,
    &GC_CPU,
    &GC_SHARE,
    &ALLOC_CALLS,
    &ALLOC_BYTES,
    &FAULTS,
    &RSS,
    &GC_CYCLES,
    &GC_PAUSE,
    &VERDICT,
    &VERDICT_CONFIDENCE,
    &MEMORY_PRESSURE,
    &CPU_PRESSURE,
];

/// One value of one metric of one entity.
#[derive(Debug, Clone)]
pub struct Point {
    pub metric: &'static MetricDef,
    /// Point attributes (Prometheus labels beside the resource's).
    pub attrs: Vec<(&'static str, &'static str)>,
    pub value: Value,
}

/// Every point of one process or container.
pub fn points(e: &Entity) -> Vec<Point> {
    let c = &e.totals.counters;
    let p = |metric: &'static MetricDef, attrs: &[(&'static str, &'static str)], value| Point {
        metric,
        attrs: attrs.to_vec(),
        value,
    };
    let mut out = vec![
        p(&CPU, &[], Value::Double(e.totals.cpu_seconds)),
        p(&GC_CPU, &[], Value::Double(e.totals.gc_cpu_seconds)),
    ];
    // An unseen GC has no share, not a zero one (verdict gc-unobservable).
    if let Some(share) = e.gc_cpu_share {
        out.push(p(&GC_SHARE, &[], Value::Double(share)));
    }
    for (syscall, calls) in [
        ("mmap", c.mmap_calls),
        ("munmap", c.munmap_calls),
        ("brk", c.brk_calls),
        ("mremap", c.mremap_calls),
        ("madvise", c.madvise_calls),
    ] {
        out.push(p(&ALLOC_CALLS, &[("syscall", syscall)], Value::Int(calls)));
    }
    for (attrs, bytes) in [
        (&[("syscall", "mmap")][..], c.mmap_bytes),
        (&[("syscall", "munmap")][..], c.munmap_bytes),
        (&[("syscall", "brk")][..], c.brk_bytes),
        (&[("syscall", "mremap")][..], c.mremap_bytes),
        (
            &[("syscall", "madvise"), ("advice", "dontneed")][..],
            c.madvise_dontneed_bytes,
        ),
        (
            &[("syscall", "madvise"), ("advice", "free")][..],
            c.madvise_free_bytes,
        ),
        (
            &[("syscall", "madvise"), ("advice", "other")][..],
            c.madvise_other_bytes,
        ),
    ] {
        out.push(p(&ALLOC_BYTES, attrs, Value::Int(bytes)));
    }
    out.push(p(&FAULTS, &[("type", "minor")], Value::Int(c.minor_faults)));
    out.push(p(&FAULTS, &[("type", "major")], Value::Int(c.major_faults)));
    out.push(p(&RSS, &[], Value::Int(e.rss_bytes)));
    out.push(p(&GC_CYCLES, &[], Value::Int(c.gc_cycles)));
    out.push(p(&GC_PAUSE, &[], Value::Double(c.gc_pause_seconds())));
    // Containers only: pressure is their cgroup's.
    if let Some(stall) = &e.totals.pressure {
        let s = |us: u64| Value::Double(us as f64 / 1e6);
        for (def, some, full) in [
            (&MEMORY_PRESSURE, stall.memory_some_us, stall.memory_full_us),
            (&CPU_PRESSURE, stall.cpu_some_us, stall.cpu_full_us),
        ] {
            out.push(p(def, &[("type", "some")], s(some)));
            out.push(p(def, &[("type", "full")], s(full)));
        }
    }
    if let Some(v) = &e.verdict {
        let attrs = [("verdict", v.kind.name()), ("runtime", e.runtime.name())];
        out.push(p(&VERDICT, &attrs, Value::Int(1)));
        out.push(p(
            &VERDICT_CONFIDENCE,
            &attrs[..1],
            Value::Double(v.confidence),
        ));
    }
    out
}

/// A metric of the agent (or collector) itself, on the node's resource.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfPoint {
    pub prom: &'static str,
    pub otlp: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub attrs: Vec<(&'static str, &'static str)>,
    pub value: Value,
}

/// The agent's own metrics, plus those the exporters add (`extra`).
pub fn self_points(s: &Snapshot, extra: &[SelfPoint]) -> Vec<SelfPoint> {
    let a = &s.agent;
    let mut out = Vec::new();
    for (kind, lost) in &a.lost_updates {
        out.push(SelfPoint {
            prom: "tally_ebpf_lost_updates_total",
            otlp: "tally.ebpf.lost_updates",
            unit: "{update}",
            kind: Kind::Counter,
            help: "Kernel-side updates lost (a full map or ring buffer), by kind.",
            attrs: vec![("kind", lost_kind(kind))],
            value: Value::Int(*lost),
        });
    }
    out.push(SelfPoint {
        prom: "tally_agent_cpu_seconds_total",
        otlp: "tally.agent.cpu.time",
        unit: "s",
        kind: Kind::Counter,
        help: "The agent's own CPU time (utime + stime).",
        attrs: Vec::new(),
        value: Value::Double(a.cpu_seconds),
    });
    out.push(SelfPoint {
        prom: "tally_agent_rss_bytes",
        otlp: "tally.agent.memory.rss",
        unit: "By",
        kind: Kind::Gauge,
        help: "The agent's own resident set size.",
        attrs: Vec::new(),
        value: Value::Int(a.rss_bytes),
    });
    out.push(SelfPoint {
        prom: "tally_agent_windows_total",
        otlp: "tally.agent.windows",
        unit: "{window}",
        kind: Kind::Counter,
        help: "Collection windows completed.",
        attrs: Vec::new(),
        value: Value::Int(a.windows),
    });
    out.push(SelfPoint {
        prom: "tally_stream_dropped_reports_total",
        otlp: "tally.stream.dropped_reports",
        unit: "{report}",
        kind: Kind::Counter,
        help: "Reports dropped from the buffer for the collector (unreachable too long).",
        attrs: Vec::new(),
        value: Value::Int(a.stream.dropped_reports),
    });
    out.push(SelfPoint {
        prom: "tally_stream_refused_processes_total",
        otlp: "tally.stream.refused_processes",
        unit: "{process}",
        kind: Kind::Counter,
        help: "Processes the collector refused from stored reports (a number out of range, a bad name; see the agent's log).",
        attrs: Vec::new(),
        value: Value::Int(a.stream.refused_processes),
    });
    out.push(SelfPoint {
        prom: "tally_exporter_dropped_series_total",
        otlp: "tally.exporter.dropped_series",
        unit: "{series}",
        kind: Kind::Counter,
        help: "Process or container series dropped by the cardinality cap (least recently active first).",
        attrs: Vec::new(),
        value: Value::Int(a.dropped_series),
    });
    out.extend_from_slice(extra);
    out
}

/// `collect::DROP_NAMES` as label values.
fn lost_kind(name: &str) -> &'static str {
    match name {
        "thread map full" => "thread_map_full",
        "process map full" => "process_map_full",
        "event ring buffer full" => "ring_buffer_full",
        "kernel read failed" => "kernel_read_failed",
        "user stack not recorded" => "user_stack_not_recorded",
        "stack count map full" => "stack_count_map_full",
        _ => "other",
    }
}
