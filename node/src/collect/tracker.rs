//! Turns cumulative observations into per-window deltas. Pure logic, no I/O:
//! the collector feeds it what it read from the maps and `/proc`.
//!
//! Where each number comes from:
//! - page faults, `cpu_ticks`, RSS of live processes: `/proc/<pid>/stat`,
//!   the kernel's exact per-task accounting;
//! - syscalls and CPU samples of live processes: the `PROCS` and `THREADS`
//!   maps;
//! - everything about a process that exited: its exit report (the kernel
//!   record sent when its thread group died). Its faults are the sum over
//!   its threads of their final counters, plus what threads that died before
//!   the agent started had left (`dead_before_attach`, measured once).
//!
//! Reported totals are high-water marks: a field that reads lower than
//! before (a thread moved from `THREADS` to its process's record between two
//! map reads) adds nothing until it catches up, so no sample counts twice.
use std::collections::HashMap;

use tally_core::model::{Counters, ProcKey, Window, samples_to_seconds};

/// A live process as read this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveProc {
    pub key: ProcKey,
    pub comm: String,
    /// Cumulative counters: syscalls and samples from the maps, faults and
    /// cpu_ticks from `/proc`.
    pub counters: Counters,
    pub rss_bytes: u64,
    pub cgroup_id: Option<u64>,
    /// Faults `(minor, major)` that threads dead before the agent attached
    /// left in the process total. Filled in by the collector only for a
    /// process the tracker has not seen ([`Tracker::knows`]) that predates
    /// the agent.
    pub dead_before_attach: Option<(u64, u64)>,
}

/// What the kernel sent when a process's thread group died. Several reports
/// for one process (threads that reached exit after the group died) add up.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitReport {
    pub key: ProcKey,
    pub comm: String,
    pub cgroup_id: Option<u64>,
    pub counters: Counters,
}

#[derive(Debug, Clone)]
struct ProcState {
    comm: String,
    cgroup_id: Option<u64>,
    reported: Counters,
    dead_before_attach: (u64, u64),
    /// Sum of exit reports, once the process exited.
    exit_sum: Option<Counters>,
    last_tick: u64,
}

/// Per-process state across ticks.
#[derive(Debug)]
pub struct Tracker {
    /// Processes that started at or after this (clock ticks since boot) are
    /// counted from zero; older ones from their first observation.
    attach_ticks: u64,
    /// Nanoseconds of CPU one sample stands for.
    sample_period_ns: u64,
    states: HashMap<ProcKey, ProcState>,
    tick: u64,
    /// Ticks a process may go unseen before its state is dropped.
    forget_after: u64,
}

impl Tracker {
    pub fn new(attach_ticks: u64, sample_period_ns: u64) -> Self {
        Self {
            attach_ticks,
            sample_period_ns,
            states: HashMap::new(),
            tick: 0,
            forget_after: 3,
        }
    }

    /// True if the process has been seen before.
    pub fn knows(&self, key: &ProcKey) -> bool {
        self.states.contains_key(key)
    }

    /// True if the process started before the agent attached.
    pub fn predates_attach(&self, key: &ProcKey) -> bool {
        key.start_ticks < self.attach_ticks
    }

    /// True if the process's exit has been recorded.
    pub fn has_exited(&self, key: &ProcKey) -> bool {
        self.states.get(key).is_some_and(|s| s.exit_sum.is_some())
    }

    /// Number of processes with state, for bounds checks.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Records the first observation of every live process without
    /// reporting anything: the baseline the first window is measured from.
    pub fn baseline(&mut self, live: &[LiveProc]) {
        for proc in live {
            self.state_for_live(proc);
        }
    }

    /// One tick: the windows of every process that did something since the
    /// previous tick. `seconds` is the length of the window.
    pub fn tick(&mut self, live: &[LiveProc], exits: &[ExitReport], seconds: f64) -> Vec<Window> {
        self.tick += 1;
        let mut windows: Vec<Window> = Vec::new();
        // A process's exit can come in several reports (a straggler thread
        // reports after its group died); two in one tick make one window: a
        // report naming a process twice is refused whole by the collector.
        let mut exited: HashMap<ProcKey, usize> = HashMap::new();
        for exit in exits {
            if let Some(w) = self.apply_exit(exit, seconds) {
                match exited.get(&w.key) {
                    Some(&i) => {
                        let earlier = &mut windows[i];
                        let delta = earlier.delta.add(&w.delta);
                        let cpu_seconds = earlier.cpu_seconds + w.cpu_seconds;
                        *earlier = w;
                        earlier.delta = delta;
                        earlier.cpu_seconds = cpu_seconds;
                    }
                    None => {
                        exited.insert(w.key, windows.len());
                        windows.push(w);
                    }
                }
            }
        }
        for proc in live {
            if let Some(w) = self.apply_live(proc, seconds) {
                windows.push(w);
            }
        }
        let (tick, forget_after) = (self.tick, self.forget_after);
        self.states
            .retain(|_, s| tick - s.last_tick <= forget_after);
        windows
    }

    fn state_for_live(&mut self, proc: &LiveProc) -> &mut ProcState {
        let predates = self.predates_attach(&proc.key);
        let tick = self.tick;
        self.states.entry(proc.key).or_insert_with(|| ProcState {
            comm: proc.comm.clone(),
            cgroup_id: proc.cgroup_id,
            // A process that predates the agent is measured from now on; a
            // newer one from zero, since the kernel side saw all of it.
            reported: if predates {
                proc.counters
            } else {
                Counters::default()
            },
            dead_before_attach: if predates {
                proc.dead_before_attach.unwrap_or((0, 0))
            } else {
                (0, 0)
            },
            exit_sum: None,
            last_tick: tick,
        })
    }

    fn apply_live(&mut self, proc: &LiveProc, seconds: f64) -> Option<Window> {
        let period = self.sample_period_ns;
        let tick = self.tick;
        let state = self.state_for_live(proc);
        if state.exit_sum.is_some() {
            return None; // a zombie whose exit is already reported
        }
        state.last_tick = tick;
        state.comm.clone_from(&proc.comm);
        if proc.cgroup_id.is_some() {
            state.cgroup_id = proc.cgroup_id;
        }
        let delta = proc.counters.saturating_sub(&state.reported);
        state.reported = state.reported.max(&proc.counters);
        (!delta.is_zero()).then(|| {
            window(
                proc.key,
                state,
                delta,
                proc.rss_bytes,
                false,
                seconds,
                period,
            )
        })
    }

    fn apply_exit(&mut self, exit: &ExitReport, seconds: f64) -> Option<Window> {
        let period = self.sample_period_ns;
        let tick = self.tick;
        let state = self.states.entry(exit.key).or_insert_with(|| ProcState {
            // A process never seen alive whose exit event was lost (a full
            // ring buffer) is known only by its kernel record: no name.
            comm: if exit.comm.is_empty() {
                UNNAMED.to_owned()
            } else {
                exit.comm.clone()
            },
            cgroup_id: exit.cgroup_id,
            reported: Counters::default(),
            dead_before_attach: (0, 0),
            exit_sum: None,
            last_tick: tick,
        });
        state.last_tick = tick;
        if !exit.comm.is_empty() {
            state.comm.clone_from(&exit.comm);
        }
        if exit.cgroup_id.is_some() {
            state.cgroup_id = exit.cgroup_id;
        }
        let sum = state
            .exit_sum
            .map_or(exit.counters, |s| s.add(&exit.counters));
        state.exit_sum = Some(sum);
        let mut total = sum;
        total.minor_faults += state.dead_before_attach.0;
        total.major_faults += state.dead_before_attach.1;
        // The kernel does not send utime/stime at exit; keep what /proc said.
        total.cpu_ticks = state.reported.cpu_ticks;
        let delta = total.saturating_sub(&state.reported);
        state.reported = state.reported.max(&total);
        Some(window(exit.key, state, delta, 0, true, seconds, period))
    }
}

/// The `comm` of a process the agent never saw alive and whose exit it
/// learned from its kernel record alone.
pub const UNNAMED: &str = "[unnamed]";

fn window(
    key: ProcKey,
    state: &ProcState,
    delta: Counters,
    rss_bytes: u64,
    exited: bool,
    seconds: f64,
    sample_period_ns: u64,
) -> Window {
    Window {
        key,
        comm: state.comm.clone(),
        cgroup_id: state.cgroup_id,
        cgroup: None,
        pod: None,
        settings: None,
        seconds,
        cpu_seconds: samples_to_seconds(delta.cpu_samples, sample_period_ns),
        total_cpu_seconds: samples_to_seconds(state.reported.cpu_samples, sample_period_ns),
        delta,
        total: state.reported,
        rss_bytes,
        exited,
        runtime: Default::default(),
        gc_thread_cpu_seconds: 0.0,
        gc_stack_cpu_seconds: 0.0,
        threads: Vec::new(),
        gc_sight: Default::default(),
        verdict: None,
        pressure: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: u64 = 10_101_010; // 99 Hz
    const ATTACH: u64 = 1_000;

    fn key(tgid: u32, start_ticks: u64) -> ProcKey {
        ProcKey { tgid, start_ticks }
    }

    fn live(k: ProcKey, minor: u64, mmaps: u64, samples: u64) -> LiveProc {
        LiveProc {
            key: k,
            comm: "w".into(),
            counters: Counters {
                minor_faults: minor,
                mmap_calls: mmaps,
                cpu_samples: samples,
                ..Counters::default()
            },
            rss_bytes: 4096,
            cgroup_id: Some(7),
            dead_before_attach: None,
        }
    }

    fn exit(k: ProcKey, minor: u64, mmaps: u64, samples: u64) -> ExitReport {
        ExitReport {
            key: k,
            comm: "w".into(),
            cgroup_id: Some(7),
            counters: Counters {
                minor_faults: minor,
                mmap_calls: mmaps,
                cpu_samples: samples,
                ..Counters::default()
            },
        }
    }

    #[test]
    fn old_process_is_measured_from_its_baseline() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let k = key(10, ATTACH - 500);
        t.baseline(&[live(k, 1000, 0, 0)]);
        let w = t.tick(&[live(k, 1250, 3, 99)], &[], 1.0);
        assert_eq!(w.len(), 1);
        assert_eq!(
            (
                w[0].delta.minor_faults,
                w[0].delta.mmap_calls,
                w[0].delta.cpu_samples
            ),
            (250, 3, 99)
        );
        assert!((w[0].cpu_seconds - 1.0).abs() < 1e-6);
        assert!(!w[0].exited);
        // Nothing new: no window.
        assert!(t.tick(&[live(k, 1250, 3, 99)], &[], 1.0).is_empty());
    }

    #[test]
    fn new_process_counts_from_zero() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let k = key(11, ATTACH + 5);
        let w = t.tick(&[live(k, 80, 2, 1)], &[], 1.0);
        assert_eq!((w[0].delta.minor_faults, w[0].delta.mmap_calls), (80, 2));
    }

    #[test]
    fn short_lived_process_seen_only_at_exit() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let k = key(12, ATTACH + 9);
        let w = t.tick(&[], &[exit(k, 120, 21, 0)], 1.0);
        assert_eq!(w.len(), 1);
        assert!(w[0].exited);
        assert_eq!(
            (
                w[0].delta.minor_faults,
                w[0].delta.mmap_calls,
                w[0].rss_bytes
            ),
            (120, 21, 0)
        );
    }

    #[test]
    fn exit_after_live_reports_only_the_rest() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let k = key(13, ATTACH + 1);
        t.tick(&[live(k, 100, 5, 10)], &[], 1.0);
        let w = t.tick(&[], &[exit(k, 130, 6, 12)], 1.0);
        assert_eq!(
            (
                w[0].delta.minor_faults,
                w[0].delta.mmap_calls,
                w[0].delta.cpu_samples
            ),
            (30, 1, 2)
        );
        // The zombie still listed in /proc is not reported again.
        assert!(t.tick(&[live(k, 130, 0, 0)], &[], 1.0).is_empty());
    }

    #[test]
    fn old_process_exit_adds_faults_of_threads_dead_before_attach() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let k = key(14, 10);
        // /proc says 5000; 4000 of that belongs to threads long gone.
        let mut first = live(k, 5000, 0, 0);
        first.dead_before_attach = Some((4000, 0));
        t.baseline(&[first]);
        // The remaining threads exit having faulted 1100 in all: 100 new.
        let w = t.tick(&[], &[exit(k, 1100, 0, 0)], 1.0);
        assert_eq!(w[0].delta.minor_faults, 100);
    }

    #[test]
    fn exit_reports_of_one_process_add_up_across_ticks() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let k = key(15, ATTACH + 1);
        t.tick(&[live(k, 10, 0, 50)], &[], 1.0);
        // The group-dead thread's report lacks a straggler thread still
        // holding 20 samples; the straggler's own report comes a tick later.
        let w1 = t.tick(&[], &[exit(k, 10, 0, 40)], 1.0);
        assert_eq!(w1[0].delta.cpu_samples, 0);
        let w2 = t.tick(&[], &[exit(k, 0, 0, 20)], 1.0);
        assert_eq!(w2[0].delta.cpu_samples, 10);
        assert!(w2[0].exited);
    }

    /// Both exit reports in one tick: one window, their sum.
    #[test]
    fn exit_reports_of_one_process_in_one_tick_make_one_window() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let k = key(15, ATTACH + 1);
        t.tick(&[live(k, 10, 0, 50)], &[], 1.0);
        let w = t.tick(&[], &[exit(k, 12, 3, 40), exit(k, 1, 1, 20)], 1.0);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].delta.cpu_samples, 10);
        assert_eq!(w[0].delta.minor_faults, 3);
        assert_eq!(w[0].delta.mmap_calls, 4);
        assert_eq!(w[0].total.cpu_samples, 60);
        assert!(w[0].exited);
    }

    #[test]
    fn a_process_known_only_by_its_swept_record_is_named_unnamed() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let never_seen = key(19, ATTACH + 5);
        let mut swept = exit(never_seen, 3, 2, 1);
        swept.comm = String::new();
        let w = t.tick(&[], &[swept], 1.0);
        assert_eq!(w[0].comm, UNNAMED);
        // One seen alive keeps its name when its record is swept.
        let seen = key(20, ATTACH + 6);
        t.tick(&[live(seen, 1, 0, 0)], &[], 1.0);
        let mut swept = exit(seen, 3, 2, 1);
        swept.comm = String::new();
        let w = t.tick(&[], &[swept], 1.0);
        assert_eq!(w[0].comm, "w");
    }

    #[test]
    fn a_dip_is_not_reported_and_the_recovery_is_not_doubled() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let k = key(16, ATTACH + 1);
        t.tick(&[live(k, 0, 0, 100)], &[], 1.0);
        assert!(t.tick(&[live(k, 0, 0, 90)], &[], 1.0).is_empty());
        let w = t.tick(&[live(k, 0, 0, 120)], &[], 1.0);
        assert_eq!(w[0].delta.cpu_samples, 20);
    }

    #[test]
    fn reused_pid_is_a_new_process() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let old = key(17, ATTACH + 1);
        let new = key(17, ATTACH + 300);
        t.tick(&[live(old, 100, 0, 0)], &[], 1.0);
        t.tick(&[], &[exit(old, 100, 0, 0)], 1.0);
        let w = t.tick(&[live(new, 7, 0, 0)], &[], 1.0);
        assert_eq!(
            (w[0].key, w[0].delta.minor_faults, w[0].exited),
            (new, 7, false)
        );
    }

    #[test]
    fn state_is_forgotten_once_a_process_is_gone() {
        let mut t = Tracker::new(ATTACH, PERIOD);
        let k = key(18, ATTACH + 1);
        t.tick(&[], &[exit(k, 1, 0, 0)], 1.0);
        for _ in 0..5 {
            t.tick(&[], &[], 1.0);
        }
        assert!(t.is_empty());
    }
}
