//! Each tick: drain the maps and events, read `/proc`, and hand the
//! [`tracker::Tracker`] what it needs to make [`Window`]s.
pub mod driver;
pub mod kernel;
pub mod pressure;
pub mod procfs;
pub mod runtimes;
pub mod sight;
pub mod stacks;
pub mod threads;
pub mod tracker;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    time::{Instant, SystemTime},
};

use agent_common::{ProcRecord, ThreadSamples, drop_kind, event_kind};
use aya::maps::{MapData, RingBuf};

use self::{
    procfs::{ProcScanner, Stat},
    runtimes::{Runtimes, UprobePolicy},
    stacks::StackSampler,
    threads::ThreadTracker,
    tracker::{ExitReport, LiveProc, Tracker},
};
use tally_core::model::{Counters, ProcKey, Window, samples_to_seconds, ticks_from_ns};

use crate::{
    enrich::cgroup::CgroupResolver,
    probes::{LoadOptions, ProbeError, Probes, parse_event},
};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Cgroup(#[from] crate::enrich::cgroup::CgroupError),
    #[error("reading /proc: {0}")]
    Proc(std::io::Error),
    #[error("reading eBPF map: {0}")]
    Map(#[from] aya::maps::MapError),
}

/// Ticks a gone process's runtime is remembered for its late exit window
/// (a swept record is reported two ticks after its process went).
const GONE_GRACE_TICKS: u64 = 3;

/// How often (in ticks) thread entries are checked against `/proc`.
const THREAD_SWEEP_TICKS: u64 = 10;

pub use tally_core::model::tick::{DROP_NAMES, Tick};

// The kernel side counts its losses by `drop_kind`; the model names them.
const _: () = assert!(DROP_NAMES.len() == drop_kind::COUNT as usize);

/// CPU samples of the live threads of one process.
#[derive(Debug, Default, Clone, Copy)]
struct ThreadSum {
    samples: u64,
    /// cgroup of the main thread if it was sampled, else of any thread.
    cgroup_id: u64,
}

pub struct Sampler {
    probes: Probes,
    events: RingBuf<MapData>,
    scanner: ProcScanner,
    proc_root: PathBuf,
    cgroups: CgroupResolver,
    tracker: Tracker,
    clock_ticks: u64,
    page_size: u64,
    pending_exits: HashMap<ProcKey, ExitReport>,
    pending_execs: HashSet<u32>,
    /// Records whose process was gone at the previous tick: swept if still
    /// there now (an exit event removes its record at once).
    orphan_candidates: HashSet<ProcKey>,
    /// Thread entries whose thread was gone at the previous sweep.
    dead_thread_candidates: HashSet<u32>,
    ticks: u64,
    drops: [u64; drop_kind::COUNT as usize],
    last_tick: Instant,
    runtimes: Runtimes,
    /// Runtimes of processes gone from /proc in the last
    /// [`GONE_GRACE_TICKS`] ticks, by the tick they went.
    gone_runtimes: HashMap<ProcKey, (tally_core::gc::Runtime, u64)>,
    sight: sight::SightTracker,
    threads: ThreadTracker,
    stacks: StackSampler,
    /// This tick's `THREADS` entries, for `threads`.
    thread_entries: Vec<(u32, ThreadSamples)>,
    /// Pod metadata of containers (`enrich::kube`), when asked for.
    pods: Option<crate::enrich::kube::PodResolver>,
    /// Containers' memory and CPU pressure.
    pressure: pressure::PressureReader,
}

impl Sampler {
    /// Loads the probes, then reads every process once as the baseline.
    pub fn start(opts: &LoadOptions, uprobes: UprobePolicy) -> Result<Self, CollectError> {
        let clock_ticks = tally_core::procstat::clock_ticks();
        let page_size = tally_core::procstat::page_size();
        let attach_ticks = ticks_from_ns(boottime_ns(), clock_ticks);
        let cgroups = CgroupResolver::discover()?;
        let pressure = pressure::PressureReader::new(cgroups.mount());
        let mut probes = Probes::load(opts)?;
        let events = probes.take_events()?;
        let proc_root = PathBuf::from("/proc");
        let tracker = Tracker::new(attach_ticks, probes.sample_period_ns);
        let mut sampler = Self {
            probes,
            events,
            scanner: ProcScanner::new(&proc_root),
            proc_root,
            cgroups,
            tracker,
            clock_ticks,
            page_size,
            pending_exits: HashMap::new(),
            pending_execs: HashSet::new(),
            orphan_candidates: HashSet::new(),
            dead_thread_candidates: HashSet::new(),
            ticks: 0,
            drops: [0; drop_kind::COUNT as usize],
            last_tick: Instant::now(),
            runtimes: Runtimes::new(uprobes),
            gone_runtimes: HashMap::new(),
            sight: sight::SightTracker::default(),
            threads: ThreadTracker::default(),
            stacks: StackSampler::new(opts.stack_sampling != crate::probes::StackSampling::Off),
            thread_entries: Vec::new(),
            pods: None,
            pressure,
        };
        let (live, _) = sampler.observe()?;
        sampler.tracker.baseline(&live);
        sampler
            .threads
            .tick(&sampler.thread_entries, |_| Default::default());
        sampler.last_tick = Instant::now();
        Ok(sampler)
    }

    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Uprobes attached from now on get their perf events from the helper
    /// (see [`crate::privileges::uprobe_opener`]).
    pub fn open_uprobes_with(&mut self, opener: crate::privileges::uprobe_opener::UprobeOpener) {
        self.probes.open_uprobes_with(opener);
    }

    /// Names every container's windows with its pod from now on.
    pub fn set_pods(&mut self, pods: crate::enrich::kube::PodResolver) {
        self.pods = Some(pods);
    }

    /// Samples `tgid`'s user stacks from now on and keeps them as folded
    /// stacks for its CPU profile (see [`Self::take_profiles`]).
    pub fn profile(&mut self, tgid: u32) -> Result<(), CollectError> {
        Ok(self.stacks.profile(&mut self.probes, tgid)?)
    }

    /// The folded stacks of profiled processes since the previous call.
    pub fn take_profiles(&mut self) -> HashMap<u32, stacks::FoldedStacks> {
        self.stacks.take_profiles()
    }

    /// Keeps every sampled process's folded stacks from now on, in the
    /// returned sink (which its consumer empties each tick).
    pub fn record_all_profiles(&mut self) -> stacks::ProfileSink {
        self.stacks.record_profiles(stacks::ProfileFilter::All);
        self.stacks.profile_sink().unwrap_or_default()
    }

    /// Moves exec and exit events out of the ring buffer. Call it often
    /// (every 100 ms) so the buffer never fills between ticks.
    pub fn poll_events(&mut self) {
        loop {
            let Some(item) = self.events.next() else {
                break;
            };
            let parsed = parse_event(&item);
            drop(item);
            let Some(event) = parsed else { continue };
            match event.kind {
                // A container that lives less than a window has removed its
                // cgroup by the next tick, and with it the path that names
                // the container: each is read now, within EVENT_POLL of the
                // exec (the process runs) or of the exit (its cgroup stays
                // until its last process is reaped). Known ids cost nothing.
                event_kind::EXIT => {
                    let report = self.exit_report(&event.record, event.tgid, &event.comm);
                    if let Some(id) = report.cgroup_id {
                        self.cgroups.resolve(id);
                    }
                    self.merge_exit(report);
                }
                event_kind::EXEC => {
                    self.pending_execs.insert(event.tgid);
                    self.cgroups.resolve_pid(&self.proc_root, event.tgid);
                }
                _ => {}
            }
        }
    }

    fn exit_report(&self, rec: &ProcRecord, tgid: u32, comm: &[u8]) -> ExitReport {
        ExitReport {
            key: ProcKey {
                tgid,
                start_ticks: ticks_from_ns(rec.start_ns, self.clock_ticks),
            },
            comm: comm_string(comm),
            cgroup_id: (rec.cgroup_id != 0).then_some(rec.cgroup_id),
            counters: kernel::from_exit_record(rec),
        }
    }

    fn merge_exit(&mut self, report: ExitReport) {
        match self.pending_exits.get_mut(&report.key) {
            Some(pending) => {
                pending.counters = pending.counters.add(&report.counters);
                if pending.comm.is_empty() {
                    pending.comm = report.comm;
                }
            }
            None => {
                self.pending_exits.insert(report.key, report);
            }
        }
    }

    /// Ends the current window: returns what every process did in it.
    pub fn tick(&mut self) -> Result<Tick, CollectError> {
        self.poll_events();
        let (live, mut swept_records) = self.observe()?;
        self.ticks += 1;
        if self.ticks.is_multiple_of(THREAD_SWEEP_TICKS) {
            swept_records += self.sweep_dead_threads()?;
        }
        let exits: Vec<ExitReport> = self.pending_exits.drain().map(|(_, r)| r).collect();
        let seconds = self.last_tick.elapsed().as_secs_f64();
        self.last_tick = Instant::now();
        let mut windows = self.tracker.tick(&live, &exits, seconds);
        self.add_gc_signals(&mut windows)?;
        for w in &mut windows {
            w.cgroup = w.cgroup_id.and_then(|id| self.cgroups.resolve(id));
        }
        self.pressure.annotate(&mut windows);
        if let Some(pods) = self.pods.as_mut() {
            pods.annotate(&mut windows);
        }
        let live_keys: HashSet<ProcKey> = live.iter().map(|p| p.key).collect();
        // An exit can be reported a tick or two after the process left
        // /proc (a record swept after its exit event was lost): its window
        // still names its runtime.
        let (runtimes, ticks) = (&self.runtimes, self.ticks);
        self.gone_runtimes
            .retain(|_, (_, at)| ticks.saturating_sub(*at) <= GONE_GRACE_TICKS);
        for key in runtimes.keys() {
            if !live_keys.contains(key) {
                self.gone_runtimes
                    .entry(*key)
                    .or_insert((runtimes.get(key), ticks));
            }
        }
        self.runtimes
            .retain(|k| live_keys.contains(k), &mut self.stacks);
        self.sight.retain(|k| live_keys.contains(k));
        Ok(Tick {
            at: SystemTime::now(),
            seconds,
            windows,
            new_drops: self.new_drops()?,
            swept_records,
            sample_period_ns: self.probes.sample_period_ns,
        })
    }

    /// Runtime, GC threads and GC stacks of each window, and its verdict.
    fn add_gc_signals(&mut self, windows: &mut [Window]) -> Result<(), CollectError> {
        let runtimes = &self.runtimes;
        let threads = self
            .threads
            .tick(&self.thread_entries, |tgid| runtimes.of_tgid(tgid));
        let gc_tids: HashSet<u32> = threads
            .values()
            .flat_map(|t| t.gc_tids.iter().copied())
            .collect();
        let stacks = self
            .stacks
            .tick(&mut self.probes, &gc_tids, |tgid| runtimes.of_tgid(tgid))?;
        let period = self.probes.sample_period_ns;
        self.sight.next_tick();
        self.runtimes.refresh_jvm_heaps(&self.proc_root);
        for w in windows.iter_mut() {
            w.settings = self.runtimes.settings(&w.key);
            w.runtime = match self.runtimes.get(&w.key) {
                tally_core::gc::Runtime::Unknown => self
                    .gone_runtimes
                    .get(&w.key)
                    .map_or(tally_core::gc::Runtime::Unknown, |(r, _)| *r),
                known => known,
            };
            // Samples become seconds here, once (`model::samples_to_seconds`).
            let seconds = |samples: u64| samples_to_seconds(samples, period);
            let mut gc_thread_samples = 0;
            if let Some(t) = threads.get(&w.key.tgid) {
                gc_thread_samples = t.gc_samples;
                w.gc_thread_cpu_seconds = seconds(t.gc_samples);
                w.threads.clone_from(&t.groups);
                for g in &mut w.threads {
                    g.cpu_seconds = seconds(g.samples);
                }
            }
            let st = stacks.get(&w.key.tgid);
            if let Some(st) = st {
                w.gc_stack_cpu_seconds = seconds(st.gc_samples);
            }
            w.gc_sight = self.sight.sight(
                &self.proc_root,
                w.key,
                w.runtime,
                sight::Evidence {
                    gc_thread_samples,
                    cpu_samples: w.delta.cpu_samples,
                    stacks_sampled: self.stacks.samples_stacks_of(w.key.tgid),
                    stacks: st,
                },
            );
            w.verdict = Some(tally_core::gc::classify(&w.gc_signals()));
        }
        Ok(())
    }

    fn new_drops(&mut self) -> Result<[u64; drop_kind::COUNT as usize], CollectError> {
        let now = self.probes.drops()?;
        let mut new = [0; drop_kind::COUNT as usize];
        for (i, n) in new.iter_mut().enumerate() {
            *n = now[i].saturating_sub(self.drops[i]);
        }
        self.drops = now;
        Ok(new)
    }

    /// Reads the maps, then `/proc`, into one [`LiveProc`] per process.
    /// Records of processes that vanished without an exit event are turned
    /// into exit reports. Returns the live processes and how many records
    /// were swept.
    fn observe(&mut self) -> Result<(Vec<LiveProc>, usize), CollectError> {
        // The process records first, then the threads: a thread that exits
        // in between is then missed for one tick, never counted twice.
        let records = self.read_records()?;
        let (threads, thread_entries) = self.read_threads()?;
        let thread_count = thread_entries.len();
        self.thread_entries = thread_entries;
        let stats = self.scanner.scan().map_err(CollectError::Proc)?;
        let execs = std::mem::take(&mut self.pending_execs);

        let mut live = Vec::with_capacity(stats.len());
        let mut live_keys = HashSet::with_capacity(stats.len());
        for stat in &stats {
            let key = ProcKey {
                tgid: stat.pid,
                start_ticks: stat.starttime,
            };
            live_keys.insert(key);
            let record = records
                .get(&stat.pid)
                .filter(|r| ticks_from_ns(r.start_ns, self.clock_ticks) == stat.starttime);
            let sum = threads.get(&stat.pid).copied().unwrap_or_default();
            let execd = execs.contains(&stat.pid);
            let cgroup_id = self.cgroup_id(key, stat, record, sum, execd);
            // Detection before the counters are read: a JVM already running
            // when the agent starts has its whole life's collections in
            // its hsperfdata, which belong in its baseline, not in the
            // delta of its first window.
            if execd || !self.runtimes.knows(&key) {
                let path = cgroup_id
                    .and_then(|id| self.cgroups.resolve(id))
                    .map(|c| c.path.clone());
                self.runtimes.detect(
                    &self.proc_root,
                    key,
                    &comm_string(&stat.comm),
                    path.as_deref(),
                    &mut self.probes,
                    &mut self.stacks,
                );
            }
            live.push(self.live_proc(key, stat, record, sum.samples, cgroup_id));
        }
        let swept = self.sweep_orphans(&records, &live_keys)?;
        // Tests read this to check that the maps shrink as processes exit.
        tracing::debug!(
            procs_map = records.len(),
            threads_map = thread_count,
            tracked = self.tracker.len(),
            live = live.len(),
            symbol_cache = self.stacks.cached_addresses(),
            "occupancy"
        );
        Ok((live, swept))
    }

    /// The kernel's cgroup id where the programs saw the process; else
    /// /proc/<pid>/cgroup, on first sight and after an exec.
    fn cgroup_id(
        &mut self,
        key: ProcKey,
        stat: &Stat,
        record: Option<&ProcRecord>,
        sum: ThreadSum,
        execd: bool,
    ) -> Option<u64> {
        let kernel_id = [sum.cgroup_id, record.map_or(0, |r| r.cgroup_id)]
            .into_iter()
            .find(|&id| id != 0);
        kernel_id.or_else(|| {
            (execd || !self.tracker.knows(&key))
                .then(|| {
                    self.cgroups
                        .resolve_pid(&self.proc_root, stat.pid)
                        .map(|c| c.id)
                })
                .flatten()
        })
    }

    fn live_proc(
        &self,
        key: ProcKey,
        stat: &Stat,
        record: Option<&ProcRecord>,
        samples: u64,
        cgroup_id: Option<u64>,
    ) -> LiveProc {
        let mut counters = Counters {
            cpu_samples: samples + record.map_or(0, |r| r.exited.cpu_samples),
            minor_faults: stat.minflt,
            major_faults: stat.majflt,
            cpu_ticks: stat.cpu_ticks,
            ..Counters::default()
        };
        if let Some(r) = record {
            kernel::set_alloc(&mut counters, &r.alloc);
            kernel::set_runtime_gc(&mut counters, r);
        }
        // A JVM without USDT probes: its own cumulative counters instead.
        if let Some((collections, gc_ns)) = self.runtimes.hsperf_gc(&self.proc_root, &key) {
            counters.gc_cycles = collections;
            counters.gc_pause_ns = gc_ns;
        }
        let dead_before_attach = (!self.tracker.knows(&key) && self.tracker.predates_attach(&key))
            .then(|| {
                let (minor, major) =
                    procfs::live_thread_faults(&self.proc_root, stat.pid).unwrap_or((0, 0));
                let exited = record.map_or((0, 0), |r| (r.exited.min_flt, r.exited.maj_flt));
                (
                    stat.minflt.saturating_sub(minor + exited.0),
                    stat.majflt.saturating_sub(major + exited.1),
                )
            });
        LiveProc {
            key,
            comm: comm_string(&stat.comm),
            counters,
            rss_bytes: stat.rss_pages * self.page_size,
            cgroup_id,
            dead_before_attach,
        }
    }

    fn read_records(&self) -> Result<HashMap<u32, ProcRecord>, CollectError> {
        let map = self.probes.procs()?;
        let mut records = HashMap::new();
        for entry in map.iter() {
            let (tgid, rec) = match entry {
                Ok(kv) => kv,
                // Removed between key and value lookup: the process exited.
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            records.insert(tgid, rec);
        }
        Ok(records)
    }

    /// Samples per process, and every thread entry of the map.
    #[allow(clippy::type_complexity)]
    fn read_threads(
        &self,
    ) -> Result<(HashMap<u32, ThreadSum>, Vec<(u32, ThreadSamples)>), CollectError> {
        let map = self.probes.threads()?;
        let mut sums: HashMap<u32, ThreadSum> = HashMap::new();
        let mut entries = Vec::new();
        for entry in map.iter() {
            let (tid, t) = match entry {
                Ok(kv) => kv,
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            entries.push((tid, t));
            let sum = sums.entry(t.tgid).or_default();
            sum.samples += t.samples;
            if sum.cgroup_id == 0 || tid == t.tgid {
                sum.cgroup_id = t.cgroup_id;
            }
        }
        Ok((sums, entries))
    }

    /// A record whose process is gone (or already reported as exited) for
    /// two ticks in a row lost its exit event, or belongs to a thread that
    /// exited after its group died: finalize it from the map.
    fn sweep_orphans(
        &mut self,
        records: &HashMap<u32, ProcRecord>,
        live: &HashSet<ProcKey>,
    ) -> Result<usize, CollectError> {
        let mut candidates = HashSet::new();
        let mut orphans = Vec::new();
        for (&tgid, rec) in records {
            let key = ProcKey {
                tgid,
                start_ticks: ticks_from_ns(rec.start_ns, self.clock_ticks),
            };
            if live.contains(&key) && !self.tracker.has_exited(&key) {
                continue;
            }
            if self.orphan_candidates.contains(&key) {
                orphans.push((key, tgid));
            } else {
                candidates.insert(key);
            }
        }
        self.orphan_candidates = candidates;
        if orphans.is_empty() {
            return Ok(0);
        }
        let mut swept = Vec::new();
        {
            let mut map = self.probes.procs_mut()?;
            for (key, tgid) in &orphans {
                // Read again: the record may have grown since the first read.
                if let Ok(rec) = map.get(tgid, 0)
                    && ticks_from_ns(rec.start_ns, self.clock_ticks) == key.start_ticks
                {
                    let _ = map.remove(tgid);
                    swept.push((rec, *tgid));
                }
            }
        }
        let count = swept.len();
        for (rec, tgid) in swept {
            let report = self.exit_report(&rec, tgid, b"");
            self.merge_exit(report);
        }
        Ok(count)
    }
}

impl Sampler {
    /// Every thread's entry leaves `THREADS` when the thread exits; this is
    /// the safety net that keeps the map bounded if an exit was ever missed.
    /// An entry whose thread is gone at two sweeps in a row is removed.
    fn sweep_dead_threads(&mut self) -> Result<usize, CollectError> {
        let mut gone = HashSet::new();
        for entry in self.probes.threads()?.iter() {
            let Ok((tid, t)) = entry else { continue };
            let task = self
                .proc_root
                .join(t.tgid.to_string())
                .join("task")
                .join(tid.to_string());
            if !task.exists() {
                gone.insert(tid);
            }
        }
        let dead: Vec<u32> = gone
            .intersection(&self.dead_thread_candidates)
            .copied()
            .collect();
        self.dead_thread_candidates = gone;
        let mut map = self.probes.threads_mut()?;
        for tid in &dead {
            let _ = map.remove(tid);
        }
        Ok(dead.len())
    }
}

/// A `comm` as text: up to the first NUL, invalid UTF-8 replaced.
pub fn comm_string(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

pub use tally_core::time::boottime_ns;
