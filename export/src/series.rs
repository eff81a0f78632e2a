//! What the exporters publish: for every process and container, cumulative
//! sums with the time they started counting, and the latest gauges. Kept on
//! the collection thread (cheap: a few hash-map updates per window) and
//! handed to the OTLP and Prometheus exporters as an immutable
//! [`Snapshot`] after each tick.
//!
//! **Cumulative sums and their start time.** A series' value is the sum of
//! the window deltas the agent reported for its process (exactly the sum of
//! the `--json` deltas), and its start time is when that counting began:
//! - a process started after the agent: its own start (`start_ticks` on the
//!   wall clock); everything it did is counted;
//! - a process older than the agent: the agent instance's start; what it
//!   did before is not counted;
//! - a container: the agent instance's start (nothing of a newer container
//!   happened before it, so the start is right for both).
//!
//! A restarted agent starts every series again from zero with a new start
//! time, which OTLP backends and Prometheus' `rate()` read as a reset,
//! never as a negative rate. A pid reused by a new process is a new start
//! time too.
//!
//! **Bounds.** At most `max_series` processes and as many containers are
//! tracked; past that the least recently active one is dropped (and
//! counted: `tally_exporter_dropped_series_total`). A process is dropped
//! after the window in which it exited, and any series after `idle_ttl`
//! without activity.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::attrs::{self, EntityAttrs, NodeAttrs};
use tally_core::model::NodeIdentity;
use tally_core::{
    gc::{Runtime, Verdict},
    model::{self, Counters, ProcKey, Tick, Window},
};

/// How many series are kept, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct SeriesLimits {
    /// Processes (and, separately, containers) tracked at once.
    pub max_series: usize,
    /// A series without activity for this long is dropped.
    pub idle_ttl: Duration,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        Self {
            max_series: 5000,
            idle_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// Cumulative values of one process or container.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub counters: Counters,
    pub cpu_seconds: f64,
    pub gc_cpu_seconds: f64,
    /// A container's stall time (PSI) since the series started, µs, once a
    /// window had it.
    pub pressure: Option<StallSums>,
}

/// Summed window stall times of a container, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StallSums {
    pub memory_some_us: u64,
    pub memory_full_us: u64,
    pub cpu_some_us: u64,
    pub cpu_full_us: u64,
}

impl StallSums {
    fn add(&mut self, p: &tally_core::model::pressure::CgroupPressure) {
        if let Some(m) = &p.memory {
            self.memory_some_us += m.delta.some_us;
            self.memory_full_us += m.delta.full_us.unwrap_or(0);
        }
        if let Some(c) = &p.cpu {
            self.cpu_some_us += c.delta.some_us;
            self.cpu_full_us += c.delta.full_us.unwrap_or(0);
        }
    }
}

impl Totals {
    fn add(&mut self, delta: &Counters, cpu_seconds: f64, gc_cpu_seconds: f64) {
        self.counters = self.counters.add(delta);
        self.cpu_seconds += cpu_seconds;
        self.gc_cpu_seconds += gc_cpu_seconds;
    }
}

/// One process's or container's series, as exported.
#[derive(Debug, Clone)]
pub struct Entity {
    pub attrs: Arc<EntityAttrs>,
    /// When the cumulative sums started counting.
    pub start: SystemTime,
    pub totals: Totals,
    /// Gauges of the latest window with activity.
    pub rss_bytes: u64,
    /// `None` where the GC could not be seen: no share is exported.
    pub gc_cpu_share: Option<f64>,
    pub runtime: Runtime,
    /// The process's runtime settings as last read (processes only).
    pub settings: Option<Arc<tally_core::model::settings::RuntimeSettings>>,
    pub verdict: Option<Verdict>,
    /// End of the latest window with activity.
    pub last_active: SystemTime,
    /// The process exited in the latest window: exported once more, then
    /// dropped.
    pub exited: bool,
}

/// The agent's own numbers, cumulative since it started.
/// What the streamer lost, in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamTotals {
    /// Reports dropped from its buffer (collector unreachable too long).
    pub dropped_reports: u64,
    /// Processes the collector refused alone, the rest of their reports
    /// stored.
    pub refused_processes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct AgentTotals {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    /// Kernel-side updates lost, by `drop_kind` (see `collect::DROP_NAMES`).
    pub lost_updates: Vec<(&'static str, u64)>,
    /// Reports the streamer dropped (collector unreachable too long), and
    /// processes the collector refused alone.
    pub stream: StreamTotals,
    /// Series dropped by the cardinality cap.
    pub dropped_series: u64,
    /// Windows (ticks) completed.
    pub windows: u64,
}

/// Everything exported after one tick.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// End of the window.
    pub at: SystemTime,
    pub window_seconds: f64,
    /// Start of this agent (or collector) instance.
    pub instance_start: SystemTime,
    pub node: Arc<NodeAttrs>,
    pub processes: Vec<Entity>,
    pub containers: Vec<Entity>,
    pub agent: AgentTotals,
}

/// Series state across ticks.
pub struct SeriesState {
    limits: SeriesLimits,
    node: Arc<NodeAttrs>,
    instance_start: SystemTime,
    /// Wall-clock time of boot, to turn `start_ticks` into a start time.
    boot_time: SystemTime,
    clock_ticks: u64,
    processes: HashMap<ProcKey, Entity>,
    containers: HashMap<String, Entity>,
    agent: AgentTotals,
}

impl SeriesState {
    pub fn new(node: NodeAttrs, limits: SeriesLimits, instance_start: SystemTime) -> Self {
        let boot_ns = tally_core::time::boottime_ns();
        let boot_time = SystemTime::now()
            .checked_sub(Duration::from_nanos(boot_ns))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Self {
            limits,
            node: Arc::new(node),
            instance_start,
            boot_time,
            clock_ticks: clock_ticks(),
            processes: HashMap::new(),
            containers: HashMap::new(),
            agent: AgentTotals {
                lost_updates: tally_core::model::DROP_NAMES
                    .iter()
                    .map(|n| (*n, 0))
                    .collect(),
                ..AgentTotals::default()
            },
        }
    }

    pub fn node(&self) -> &Arc<NodeAttrs> {
        &self.node
    }

    /// Number of process and container series kept.
    pub fn len(&self) -> (usize, usize) {
        (self.processes.len(), self.containers.len())
    }

    /// Follows the node's identity (filled in in the background).
    pub fn set_node(&mut self, node: &NodeIdentity) {
        let attrs = NodeAttrs::from_identity(node);
        if *self.node != attrs {
            self.node = Arc::new(attrs);
        }
    }

    /// Takes one tick's windows.
    pub fn update(&mut self, tick: &Tick) {
        let now = tick.at;
        // Exited processes were exported one last time after their exit
        // window: drop them now.
        self.processes.retain(|_, e| !e.exited);
        for w in &tick.windows {
            self.update_process(w, now);
        }
        for c in model::containers(&tick.windows) {
            let signals = c.signals;
            let attrs = Arc::new(attrs::container(&c));
            let e = self
                .containers
                .entry(c.container.id.clone())
                .or_insert_with(|| Entity {
                    attrs: attrs.clone(),
                    start: self.instance_start,
                    totals: Totals::default(),
                    rss_bytes: 0,
                    gc_cpu_share: None,
                    runtime: Runtime::Unknown,
                    settings: None,
                    verdict: None,
                    last_active: now,
                    exited: false,
                });
            if e.attrs != attrs {
                e.attrs = attrs;
            }
            e.totals
                .add(&c.delta, signals.cpu_seconds, signals.gc_cpu_seconds());
            if let Some(p) = &c.pressure {
                e.totals.pressure.get_or_insert_default().add(p);
            }
            e.rss_bytes = signals.rss_bytes;
            e.gc_cpu_share = signals.observed_gc_share();
            e.runtime = signals.runtime;
            e.verdict = Some(c.verdict.clone());
            e.last_active = now;
        }
        for (i, n) in tick.new_drops.iter().enumerate() {
            if let Some(slot) = self.agent.lost_updates.get_mut(i) {
                slot.1 += n;
            }
        }
        self.agent.windows += 1;
        self.evict(now);
    }

    fn update_process(&mut self, w: &Window, now: SystemTime) {
        let signals = w.gc_signals();
        let start = self.process_start(w.key);
        let e = self.processes.entry(w.key).or_insert_with(|| Entity {
            attrs: Arc::new(EntityAttrs::default()),
            start,
            totals: Totals::default(),
            rss_bytes: 0,
            gc_cpu_share: None,
            runtime: Runtime::Unknown,
            settings: None,
            verdict: None,
            last_active: now,
            exited: false,
        });
        let attrs = attrs::process(w);
        if *e.attrs != attrs {
            e.attrs = Arc::new(attrs);
        }
        e.totals
            .add(&w.delta, signals.cpu_seconds, signals.gc_cpu_seconds());
        e.rss_bytes = w.rss_bytes;
        e.gc_cpu_share = signals.observed_gc_share();
        e.runtime = w.runtime;
        if w.settings.is_some() {
            e.settings.clone_from(&w.settings);
        }
        e.verdict.clone_from(&w.verdict);
        e.last_active = now;
        e.exited = w.exited;
    }

    /// When a process's sums start: its own start if it is newer than this
    /// instance, else the instance's start.
    fn process_start(&self, key: ProcKey) -> SystemTime {
        let since_boot =
            Duration::from_nanos(key.start_ticks * (1_000_000_000 / self.clock_ticks.max(1)));
        let started = self.boot_time + since_boot;
        started.max(self.instance_start)
    }

    /// Drops idle series, then the least recently active past the cap.
    fn evict(&mut self, now: SystemTime) {
        let ttl = self.limits.idle_ttl;
        let idle = |e: &Entity| now.duration_since(e.last_active).unwrap_or_default() > ttl;
        self.processes.retain(|_, e| !idle(e));
        self.containers.retain(|_, e| !idle(e));
        let max = self.limits.max_series;
        self.agent.dropped_series += cap(&mut self.processes, max) + cap(&mut self.containers, max);
    }

    /// Sets the agent's own figures for the next snapshot.
    pub fn set_agent(&mut self, cpu_seconds: f64, rss_bytes: u64, stream: StreamTotals) {
        self.agent.cpu_seconds = cpu_seconds;
        self.agent.rss_bytes = rss_bytes;
        self.agent.stream = stream;
    }

    /// Everything exported now.
    pub fn snapshot(&self, at: SystemTime, window_seconds: f64) -> Snapshot {
        let mut processes: Vec<Entity> = self.processes.values().cloned().collect();
        processes.sort_by_key(|e| (e.attrs.pid, e.start));
        let mut containers: Vec<Entity> = self.containers.values().cloned().collect();
        containers.sort_by(|a, b| a.attrs.container_id.cmp(&b.attrs.container_id));
        Snapshot {
            at,
            window_seconds,
            instance_start: self.instance_start,
            node: self.node.clone(),
            processes,
            containers,
            agent: self.agent.clone(),
        }
    }
}

/// Removes the least recently active entries past `max`; returns how many.
fn cap<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, Entity>, max: usize) -> u64 {
    if map.len() <= max {
        return 0;
    }
    let mut by_age: Vec<(SystemTime, K)> = map
        .iter()
        .map(|(k, e)| (e.last_active, k.clone()))
        .collect();
    by_age.sort_by_key(|(t, _)| *t);
    let excess = map.len() - max;
    for (_, k) in by_age.into_iter().take(excess) {
        map.remove(&k);
    }
    excess as u64
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::testing::test_window;

    fn tick(windows: Vec<Window>, at: SystemTime) -> Tick {
        Tick {
            at,
            seconds: 1.0,
            windows,
            new_drops: [0; tally_core::model::tick::DROP_KINDS],
            swept_records: 0,
            sample_period_ns: 10_101_010,
        }
    }

    fn node() -> NodeAttrs {
        NodeAttrs::from_identity(&tally_core::model::NodeIdentity {
            node_name: "n1".into(),
            ..Default::default()
        })
    }

    #[test]
    fn sums_are_the_sum_of_deltas_and_exits_are_dropped() {
        let t0 = SystemTime::now();
        let mut s = SeriesState::new(node(), SeriesLimits::default(), t0);
        let w = test_window(42, "w", "/x.slice");
        s.update(&tick(vec![w.clone()], t0 + Duration::from_secs(1)));
        s.update(&tick(vec![w.clone()], t0 + Duration::from_secs(2)));
        let snap = s.snapshot(t0 + Duration::from_secs(2), 1.0);
        assert_eq!(snap.processes.len(), 1);
        let p = &snap.processes[0];
        assert_eq!(p.totals.counters.minor_faults, 2 * 2048);
        assert_eq!(p.totals.counters.mmap_calls, 20);
        // The window's own cpu_seconds (1.0 in the test window), summed.
        assert!((p.totals.cpu_seconds - 2.0).abs() < 1e-9);
        // start_ticks 500 is long before the instance started.
        assert_eq!(p.start, t0);
        let mut gone = w.clone();
        gone.exited = true;
        s.update(&tick(vec![gone], t0 + Duration::from_secs(3)));
        assert_eq!(s.len().0, 1, "exported once more with its exit");
        s.update(&tick(vec![], t0 + Duration::from_secs(4)));
        assert_eq!(s.len().0, 0);
    }

    #[test]
    fn cap_drops_least_recent_and_counts() {
        let t0 = SystemTime::now();
        let limits = SeriesLimits {
            max_series: 2,
            idle_ttl: Duration::from_secs(60),
        };
        let mut s = SeriesState::new(node(), limits, t0);
        for (i, pid) in [1u32, 2, 3].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(i as u64 + 1);
            s.update(&tick(vec![test_window(pid, "w", "/x.slice")], at));
        }
        let snap = s.snapshot(t0 + Duration::from_secs(3), 1.0);
        let pids: Vec<u32> = snap.processes.iter().map(|e| e.attrs.pid).collect();
        assert_eq!(pids, vec![2, 3]);
        assert_eq!(snap.agent.dropped_series, 1);
        // Idle past the TTL: gone.
        s.update(&tick(vec![], t0 + Duration::from_secs(120)));
        assert_eq!(s.len(), (0, 0));
    }

    #[test]
    fn containers_accumulate_their_processes() {
        let t0 = SystemTime::now();
        let mut s = SeriesState::new(node(), SeriesLimits::default(), t0);
        let path = "/kubepods.slice/kubepods-pod1234abcd_0000_1111_2222_333344445555.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope";
        let a = test_window(1, "a", path);
        let b = test_window(2, "b", path);
        s.update(&tick(vec![a, b], t0 + Duration::from_secs(1)));
        let snap = s.snapshot(t0 + Duration::from_secs(1), 1.0);
        assert_eq!(snap.containers.len(), 1);
        let c = &snap.containers[0];
        assert_eq!(c.totals.counters.minor_faults, 2 * 2048);
        assert_eq!(
            c.attrs.container_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
        assert_eq!(c.start, t0);
    }

    #[test]
    fn a_restart_or_a_reused_pid_is_a_new_start_never_a_smaller_value() {
        let t0 = SystemTime::now();
        let w = test_window(42, "w", "/x.slice");
        let mut first = SeriesState::new(node(), SeriesLimits::default(), t0);
        for i in 1..=3 {
            first.update(&tick(vec![w.clone()], t0 + Duration::from_secs(i)));
        }
        let before = first.snapshot(t0 + Duration::from_secs(3), 1.0).processes[0].clone();
        // The agent restarts: the same process counts again from zero, with
        // the new instance's start, so a reader sees a reset.
        let t1 = t0 + Duration::from_secs(10);
        let mut second = SeriesState::new(node(), SeriesLimits::default(), t1);
        second.update(&tick(vec![w.clone()], t1 + Duration::from_secs(1)));
        let after = second.snapshot(t1 + Duration::from_secs(1), 1.0).processes[0].clone();
        assert_eq!(after.start, t1);
        assert!(after.start > before.start);
        assert_eq!(after.totals.counters.minor_faults, 2048);
        assert!(after.totals.counters.minor_faults < before.totals.counters.minor_faults);
        // The pid reused by a process that started after the agent: a
        // series of its own, starting when that process did.
        let mut reused = w.clone();
        let since_boot = tally_core::time::boottime_ns() / 1_000_000_000;
        // It starts a minute from now, after the second instance (t1).
        reused.key.start_ticks = (since_boot + 60) * clock_ticks();
        second.update(&tick(vec![w, reused.clone()], t1 + Duration::from_secs(2)));
        let snap = second.snapshot(t1 + Duration::from_secs(2), 1.0);
        assert_eq!(snap.processes.len(), 2);
        let new = snap
            .processes
            .iter()
            .find(|e| e.start > t1)
            .expect("the new process starts after the instance");
        assert_eq!(new.totals.counters.minor_faults, 2048);
    }
}
