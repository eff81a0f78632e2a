//! From what a source delivers (a local [`Tick`], or the collector's
//! [`pb::Workload`]s) to the rows of the interactive table: one [`Entry`]
//! per process, per container (else cgroup), per pod, or per workload, with
//! rates per second, the verdict, threads and top symbols.
use std::{collections::HashMap, sync::Arc, time::SystemTime};

use tally_core::{
    cost::{allocation::NodeRates, live::usage_usd_per_month},
    gc::{self, Runtime, VerdictKind},
    model::{Counters, ProcKey, RuntimeSettings, Tick, Window, pressure::CgroupPressure},
};

/// What a row stands for; also the key of its history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowId {
    Process(ProcKey),
    /// A container, by runtime id.
    Container(Arc<str>),
    /// Processes outside containers, by cgroup path.
    Cgroup(Arc<str>),
    /// A Kubernetes pod, by UID.
    Pod(Arc<str>),
    /// A collector workload, by its store key (`container/<id>`,
    /// `process/<node>/<pid>/<start>`).
    Workload(Arc<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// One process (locally), or one workload (remotely).
    Process,
    /// Processes added up.
    Group,
}

/// Threads of a process sharing a name.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadRow {
    pub name: String,
    pub threads: u32,
    pub cpu_pct: f64,
    pub gc: bool,
}

/// What the sampled user stacks of one process showed in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackSummary {
    /// Samples with a user stack.
    pub samples: u64,
    /// Leaf symbols (the function on CPU), most samples first.
    pub top: Vec<Symbol>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Symbol {
    pub name: Arc<str>,
    pub samples: u64,
    /// GC code of the process's runtime.
    pub gc: bool,
}

impl StackSummary {
    /// The leaf functions of a process's folded stacks (root first, leaf
    /// last), the busiest [`TOP_SYMBOLS`].
    pub fn from_folded(f: &tally_core::model::FoldedStacks) -> Self {
        let mut leaves: HashMap<&Arc<str>, u64> = HashMap::new();
        for (frames, n) in &f.stacks {
            if let Some(leaf) = frames.last() {
                *leaves.entry(leaf).or_default() += n;
            }
        }
        let mut top: Vec<Symbol> = leaves
            .into_iter()
            .map(|(name, samples)| Symbol {
                name: Arc::from(sanitize(name)),
                samples,
                gc: f.gc_frames.contains(name),
            })
            .collect();
        top.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.name.cmp(&b.name)));
        top.truncate(TOP_SYMBOLS);
        Self {
            samples: f.samples(),
            top,
        }
    }
}

/// Whether a row has top symbols, and if not, why.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Stacks {
    /// `--stack-sampling off`.
    #[default]
    Off,
    /// Not recorded yet: a process's stacks are recorded from when its
    /// detail view first opens.
    NotSampled,
    Sampled(StackSummary),
    /// The collector's data has no stacks.
    Unavailable,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: RowId,
    pub kind: RowKind,
    pub pid: Option<u32>,
    /// Processes added up in a group row (1 for a process).
    pub procs: u32,
    /// A group's processes (up to [`MAX_GROUP_PIDS`]); a process's own pid.
    pub pids: Vec<u32>,
    /// Kubernetes `namespace/pod/container`, where known.
    pub pod_name: Option<String>,
    /// Printable name: control and bidi characters replaced.
    pub name: String,
    pub name_lc: String,
    /// Remote: the nodes the workload runs on.
    pub node: String,
    /// Container id (12 digits), else the cgroup's last part.
    pub container_short: String,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub cgroup_path: String,
    pub runtime: Runtime,
    /// CPU, % of one core.
    pub cpu_pct: f64,
    /// Share of its CPU in GC, %.
    pub gc_pct: f64,
    pub verdict: Option<VerdictKind>,
    pub confidence: f64,
    pub reasons: Vec<String>,
    /// Bytes asked of the kernel per second: mmap, brk and mremap growth.
    pub alloc_bps: f64,
    /// Bytes handed back per second: munmap, madvise(DONTNEED/FREE).
    pub release_bps: f64,
    pub mmap_ps: f64,
    pub munmap_ps: f64,
    pub madvise_ps: f64,
    pub brk_ps: f64,
    pub mremap_ps: f64,
    pub minflt_ps: f64,
    pub majflt_ps: f64,
    pub faults_ps: f64,
    pub gc_cycles_ps: f64,
    /// Share of wall time in GC pauses the runtime reported (0..1).
    pub gc_pause_share: f64,
    pub rss: u64,
    /// The node's CPU and memory rates, where the node is priced.
    pub rates: Option<NodeRates>,
    /// USD per month at this CPU and RSS ([`tally_core::cost::live`]).
    pub cost_month: Option<f64>,
    pub exited: bool,
    /// Seconds since the row's last window: rows of processes that went
    /// quiet stay a little while (with zero rates) so the table is stable.
    pub quiet_for: f64,
    pub threads: Vec<ThreadRow>,
    pub stacks: Stacks,
    /// The runtime settings of the process (of a group's busiest process
    /// that has them; of a workload's main GC'd process).
    pub settings: Option<Arc<RuntimeSettings>>,
    /// Its container cgroup's memory and CPU pressure (PSI) in the window
    /// (a pod's: its most stalled container's); local rows only.
    pub pressure: Option<Arc<CgroupPressure>>,
    /// Share of the window in which the container stalled on memory
    /// (PSI `some`), %.
    pub memory_stall_pct: Option<f64>,
    /// Lowercased fields for the filter: pid, container (id and cgroup
    /// path), pod, runtime, verdict, node.
    pub search: Search,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    pub pid: String,
    pub container: String,
    pub pod: String,
    pub node: String,
}

impl Entry {
    /// The container's pressure, and the memory stall share made from it.
    fn set_pressure(&mut self, pressure: Option<Arc<CgroupPressure>>, seconds: f64) {
        self.memory_stall_pct = pressure
            .as_ref()
            .and_then(|p| p.memory)
            .map(|m| 100.0 * m.some_share(seconds));
        self.pressure = pressure;
    }

    /// gc-heavy is the most severe: it sorts first when descending.
    pub fn severity(&self) -> u8 {
        match self.verdict {
            Some(VerdictKind::GcHeavy) => 5,
            Some(VerdictKind::AllocChurn) => 4,
            // Worth a look: nothing is known of its GC.
            Some(VerdictKind::GcUnobservable) => 3,
            Some(VerdictKind::Steady) => 2,
            Some(VerdictKind::Idle) => 1,
            None => 0,
        }
    }

    fn blank(id: RowId, kind: RowKind) -> Self {
        Self {
            id,
            kind,
            pid: None,
            procs: 1,
            pids: Vec::new(),
            pod_name: None,
            name: String::new(),
            name_lc: String::new(),
            node: String::new(),
            container_short: "-".into(),
            container_id: None,
            pod_uid: None,
            cgroup_path: String::new(),
            runtime: Runtime::Unknown,
            cpu_pct: 0.0,
            gc_pct: 0.0,
            verdict: None,
            confidence: 0.0,
            reasons: Vec::new(),
            alloc_bps: 0.0,
            release_bps: 0.0,
            mmap_ps: 0.0,
            munmap_ps: 0.0,
            madvise_ps: 0.0,
            brk_ps: 0.0,
            mremap_ps: 0.0,
            minflt_ps: 0.0,
            majflt_ps: 0.0,
            faults_ps: 0.0,
            gc_cycles_ps: 0.0,
            gc_pause_share: 0.0,
            rss: 0,
            rates: None,
            cost_month: None,
            exited: false,
            quiet_for: 0.0,
            threads: Vec::new(),
            stacks: Stacks::Off,
            settings: None,
            pressure: None,
            memory_stall_pct: None,
            search: Search::default(),
        }
    }

    fn set_name(&mut self, name: &str) {
        self.name = sanitize(name);
        self.name_lc = self.name.to_lowercase();
    }

    fn fill_search(&mut self) {
        self.search = Search {
            pid: self.pid.map(|p| p.to_string()).unwrap_or_default(),
            container: format!(
                "{} {}",
                self.container_id.as_deref().unwrap_or(""),
                self.cgroup_path
            )
            .to_lowercase(),
            pod: format!(
                "{} {}",
                self.pod_uid.as_deref().unwrap_or(""),
                self.pod_name.as_deref().unwrap_or("")
            )
            .to_lowercase(),
            node: self.node.to_lowercase(),
        };
    }

    fn set_rates(&mut self, d: &Counters, seconds: f64) {
        let secs = seconds.max(1e-9);
        let rate = |v: u64| v as f64 / secs;
        self.alloc_bps = rate(d.alloc_bytes());
        self.release_bps = rate(d.release_bytes());
        self.mmap_ps = rate(d.mmap_calls);
        self.munmap_ps = rate(d.munmap_calls);
        self.madvise_ps = rate(d.madvise_calls);
        self.brk_ps = rate(d.brk_calls);
        self.mremap_ps = rate(d.mremap_calls);
        self.minflt_ps = rate(d.minor_faults);
        self.majflt_ps = rate(d.major_faults);
        self.faults_ps = self.minflt_ps + self.majflt_ps;
        self.gc_cycles_ps = rate(d.gc_cycles);
        self.gc_pause_share = d.gc_pause_seconds() / secs;
    }

    fn set_verdict(&mut self, v: Option<&gc::Verdict>) {
        self.verdict = v.map(|v| v.kind);
        self.confidence = v.map_or(0.0, |v| v.confidence);
        self.reasons = v.map_or_else(Vec::new, |v| {
            v.reasons.iter().map(|r| sanitize(r)).collect()
        });
    }

    /// The row of a process that had no window this time: same identity
    /// and memory, nothing happening.
    pub fn quiet(&self, seconds: f64) -> Self {
        let mut e = Self::blank(self.id.clone(), self.kind);
        e.pid = self.pid;
        e.procs = self.procs;
        e.pids.clone_from(&self.pids);
        e.pod_name.clone_from(&self.pod_name);
        e.name.clone_from(&self.name);
        e.name_lc.clone_from(&self.name_lc);
        e.node.clone_from(&self.node);
        e.container_short.clone_from(&self.container_short);
        e.container_id.clone_from(&self.container_id);
        e.pod_uid.clone_from(&self.pod_uid);
        e.cgroup_path.clone_from(&self.cgroup_path);
        e.runtime = self.runtime;
        // No window: it did nothing this interval, whatever it did before.
        e.verdict = Some(VerdictKind::Idle);
        e.rss = if self.exited { 0 } else { self.rss };
        e.exited = self.exited;
        e.quiet_for = self.quiet_for + seconds;
        e.price(self.rates);
        e.stacks = match &self.stacks {
            Stacks::Sampled(_) => Stacks::Sampled(StackSummary::default()),
            other => other.clone(),
        };
        e.search = self.search.clone();
        e
    }

    /// Prices the row's CPU and RSS at `rates` (none: unpriced).
    pub fn price(&mut self, rates: Option<NodeRates>) {
        self.rates = rates;
        self.cost_month =
            rates.map(|r| usage_usd_per_month(&r, self.cpu_pct / 100.0, self.rss as f64));
    }

    /// The values the detail view charts: CPU %, GC %, faults/s,
    /// allocation bytes/s, RSS.
    pub fn point(&self) -> [f32; 5] {
        [
            self.cpu_pct as f32,
            self.gc_pct as f32,
            self.faults_ps as f32,
            self.alloc_bps as f32,
            self.rss as f32,
        ]
    }
}

/// The node (or cluster) as a whole, for the header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub cpu_cores: f64,
    /// CPUs of this node; 0 when unknown (remote).
    pub cpus: usize,
    pub faults_ps: f64,
    pub alloc_bps: f64,
    /// Workloads (containers, else processes) judged gc-heavy.
    pub gc_heavy: usize,
    /// Processes (or workloads) with a window.
    pub active: usize,
    /// Kernel-side updates lost in this window.
    pub lost: u64,
    /// USD per month of the rows' CPU and RSS, where priced.
    pub cost_month: Option<f64>,
}

/// Every grouping of one update.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub at: Option<SystemTime>,
    pub seconds: f64,
    pub processes: Vec<Entry>,
    pub containers: Vec<Entry>,
    pub pods: Vec<Entry>,
    pub totals: Totals,
    /// What the node is and costs (`m6i.large us-east-1 on-demand
    /// $0.0960/h`), or why it is not priced; `None` remote.
    pub node_label: Option<String>,
}

impl Rows {
    /// Prices every row: `rates_of` gives a row's node rates.
    pub fn price(&mut self, rates_of: impl Fn(&Entry) -> Option<NodeRates>) {
        for list in [&mut self.processes, &mut self.containers, &mut self.pods] {
            for e in list.iter_mut() {
                let rates = rates_of(e);
                e.price(rates);
            }
        }
        let priced: Vec<f64> = self.processes.iter().filter_map(|e| e.cost_month).collect();
        self.totals.cost_month = (!priced.is_empty()).then(|| priced.iter().sum());
    }
}

/// A name made safe to print: control characters and the invisible or
/// direction-changing ones become `?`, so a hostile or broken name cannot
/// move the cursor, reorder the line or hide text. Capped at 256
/// characters (the layout truncates further).
pub fn sanitize(s: &str) -> String {
    s.chars()
        .take(256)
        .map(|c| {
            if c.is_control()
                || matches!(c,
                    '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
            {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// The last part of a cgroup path: `session-1.scope`.
fn cgroup_tail(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("/")
}

fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

fn thread_rows(groups: &[tally_core::model::ThreadGroup], seconds: f64) -> Vec<ThreadRow> {
    let pct = |cpu_seconds: f64| 100.0 * cpu_seconds / seconds.max(1e-9);
    groups
        .iter()
        .map(|g| ThreadRow {
            name: sanitize(&g.name),
            threads: g.threads,
            cpu_pct: pct(g.cpu_seconds),
            gc: g.gc,
        })
        .collect()
}

fn process_entry(w: &Window, stacks: Option<&HashMap<u32, StackSummary>>) -> Entry {
    let mut e = Entry::blank(RowId::Process(w.key), RowKind::Process);
    e.pid = Some(w.key.tgid);
    e.pids = vec![w.key.tgid];
    e.pod_name = w.pod.as_ref().map(|p| sanitize(&p.display_name()));
    e.set_name(&w.comm);
    let container = w.cgroup.as_ref().and_then(|c| c.container.as_ref());
    if let Some(cg) = w.cgroup.as_ref() {
        e.cgroup_path = sanitize(&cg.path);
        e.container_short = match container {
            Some(c) => short_id(&c.id),
            None => sanitize(cgroup_tail(&cg.path)),
        };
    }
    e.container_id = container.map(|c| c.id.clone());
    e.pod_uid = container.and_then(|c| c.pod_uid.clone());
    e.runtime = w.runtime;
    e.settings.clone_from(&w.settings);
    e.set_pressure(w.pressure.clone(), w.seconds);
    let secs = w.seconds.max(1e-9);
    e.cpu_pct = 100.0 * w.cpu_seconds / secs;
    e.gc_pct = 100.0 * w.gc_signals().gc_cpu_share();
    e.set_verdict(w.verdict.as_ref());
    e.set_rates(&w.delta, w.seconds);
    e.rss = w.rss_bytes;
    e.exited = w.exited;
    e.threads = thread_rows(&w.threads, w.seconds);
    e.stacks = match stacks {
        None => Stacks::Off,
        Some(s) => s
            .get(&w.key.tgid)
            .map_or(Stacks::NotSampled, |s| Stacks::Sampled(s.clone())),
    };
    e.fill_search();
    e
}

mod groups;
mod remote;

use groups::{GroupBy, group_rows};
pub use remote::{fresh, history_point, remote_rows, workload_entry};

/// Symbols kept per row.
pub const TOP_SYMBOLS: usize = 10;
/// Members of a group whose stacks its detail view records, at most.
pub const MAX_GROUP_PIDS: usize = 64;
/// Rows of a local tick. `stacks` is `None` when stack sampling is off.
pub fn local_rows(tick: &Tick, stacks: Option<&HashMap<u32, StackSummary>>, cpus: usize) -> Rows {
    let processes: Vec<Entry> = tick
        .windows
        .iter()
        .map(|w| process_entry(w, stacks))
        .collect();
    let containers = group_rows(&tick.windows, stacks, GroupBy::Container);
    let pods = group_rows(&tick.windows, stacks, GroupBy::Pod);
    // Workloads: containers, else processes.
    let gc_heavy = containers
        .iter()
        .filter(|c| matches!(c.id, RowId::Container(_)))
        .chain(processes.iter().filter(|p| p.container_id.is_none()))
        .filter(|e| e.verdict == Some(VerdictKind::GcHeavy))
        .count();
    let secs = tick.seconds.max(1e-9);
    let totals = Totals {
        cpu_cores: tick.windows.iter().map(|w| w.cpu_seconds).sum::<f64>() / secs,
        cpus,
        faults_ps: processes.iter().map(|e| e.faults_ps).sum(),
        alloc_bps: processes.iter().map(|e| e.alloc_bps).sum(),
        gc_heavy,
        active: processes.len(),
        lost: tick.new_drops.iter().sum(),
        cost_month: None,
    };
    Rows {
        at: Some(tick.at),
        seconds: tick.seconds,
        processes,
        containers,
        pods,
        totals,
        node_label: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::testing::test_window;

    #[test]
    fn sanitize_keeps_text_and_neutralizes_terminal_tricks() {
        assert_eq!(sanitize("java"), "java");
        assert_eq!(sanitize("a\u{1b}[2Jb"), "a?[2Jb");
        assert_eq!(sanitize("x\u{202E}gnp.exe"), "x?gnp.exe");
        assert_eq!(sanitize("\u{FFFD}\u{FFFD}名前"), "\u{FFFD}\u{FFFD}名前");
        assert_eq!(sanitize(&"a".repeat(1000)).chars().count(), 256);
    }

    #[test]
    fn groups_add_up_their_processes() {
        let id = "ab".repeat(32);
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_0000_1111_2222_333344445555.slice/cri-containerd-{id}.scope"
        );
        let windows = vec![
            test_window(1, "java", &path),
            test_window(2, "sh", &path),
            test_window(3, "sshd", "/system.slice/ssh.service"),
        ];
        let tick = Tick {
            at: SystemTime::UNIX_EPOCH,
            seconds: 2.0,
            windows,
            new_drops: [0; tally_core::model::tick::DROP_KINDS],
            swept_records: 0,
            sample_period_ns: 10_101_010,
        };
        let rows = local_rows(&tick, None, 2);
        assert_eq!(rows.processes.len(), 3);
        assert_eq!(rows.containers.len(), 2);
        let c = &rows.containers[0];
        assert_eq!(c.id, RowId::Container(Arc::from(id.as_str())));
        assert_eq!(c.procs, 2);
        assert_eq!(c.name, format!("java/{}", &id[..12]));
        assert!((c.cpu_pct - 100.0).abs() < 1e-9, "2 × 1 s of CPU in 2 s");
        assert_eq!(c.rss, 2 * (3 << 20));
        assert_eq!(rows.containers[1].name, "ssh.service");
        assert_eq!(rows.pods.len(), 2);
        assert!(matches!(rows.pods[0].id, RowId::Pod(_)));
        assert!(rows.pods[0].name.contains("/pod-1234abcd-000"));
        assert_eq!(rows.processes[0].container_short, &id[..12]);
        assert_eq!(rows.processes[2].container_short, "ssh.service");
        assert!((rows.totals.cpu_cores - 1.5).abs() < 1e-9);
        assert_eq!(rows.totals.active, 3);
    }

    #[test]
    fn a_containers_memory_stall_is_a_column_and_evidence_in_its_verdict() {
        use tally_core::model::pressure::{PressureWindow, StallTotals};
        let id = "cd".repeat(32);
        let path = format!("/system.slice/docker-{id}.scope");
        let stall = |us| StallTotals {
            some_us: us,
            full_us: Some(us / 2),
        };
        let pressure = Arc::new(CgroupPressure {
            memory: Some(PressureWindow {
                delta: stall(100_000),
                total: stall(900_000),
            }),
            cpu: None,
        });
        let mut windows = vec![
            test_window(1, "app", &path),
            test_window(2, "sshd", "/user.slice"),
        ];
        windows[0].pressure = Some(pressure);
        let tick = Tick {
            at: SystemTime::UNIX_EPOCH,
            seconds: 2.0,
            windows,
            new_drops: [0; tally_core::model::tick::DROP_KINDS],
            swept_records: 0,
            sample_period_ns: 10_101_010,
        };
        let rows = local_rows(&tick, None, 2);
        // 0.1 s of a 2 s window.
        let p = &rows.processes[0];
        assert!(
            (p.memory_stall_pct.unwrap() - 5.0).abs() < 1e-9,
            "{:?}",
            p.memory_stall_pct
        );
        assert_eq!(crate::columns::Column::MemStall.cell(p), "5.0");
        assert_eq!(
            crate::columns::Column::MemStall.cell(&rows.processes[1]),
            "-"
        );
        let c = &rows.containers[0];
        assert_eq!(c.memory_stall_pct, p.memory_stall_pct);
        assert!(
            c.reasons
                .iter()
                .any(|r| r.contains("stalled on memory 5.0%")),
            "{:?}",
            c.reasons
        );
    }
}
