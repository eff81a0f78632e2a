//! The collector's CPU profiles (`agent collector --profiles DIR`): agents
//! with stack sampling on send each process's folded stacks in its window
//! (`tally_export::profile::wire`); the collector adds those of every report it stores (a
//! resent duplicate is not stored, so never counted twice) to its
//! workload's profile, and every `--profile-interval` writes each
//! workload's profile of that interval to
//! `DIR/<workload>/<interval end, Unix seconds>/` (`profile.pb.gz`,
//! `flame.svg`, `stacks.folded`, as `agent profile` does), then starts
//! anew.
//!
//! Bounded like the agent's recorder: at most [`MAX_PROFILED_WORKLOADS`]
//! workloads an interval, and
//! [`MAX_STACKS_PER_PROCESS`](tally_core::model::stacks::MAX_STACKS_PER_PROCESS)
//! distinct stacks a process (the rest counted under `[truncated]`).
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use tally_proto::received::ReportView;

use tally_core::{model::stacks::MAX_PROFILED_PROCESSES, workload::WorkloadId};
use tally_export::profile::{ProcessProfile, WriteError as ProfileError, wire};

/// Workloads whose stacks are kept in one interval.
pub const MAX_PROFILED_WORKLOADS: usize = MAX_PROFILED_PROCESSES;
/// When a report says nothing of its sampling period (no CPU samples).
pub(crate) const DEFAULT_SAMPLE_PERIOD_NS: u64 = 1_000_000_000 / 99;

/// The sampling period a process window's counters imply (CPU seconds per
/// sample), ns; `None` without samples. Stacks on the wire carry counts,
/// and this turns them back into CPU time for profiles of either kind.
pub(crate) fn sample_period_ns(delta: &tally_proto::Counters) -> Option<u64> {
    (delta.cpu_samples > 0)
        .then(|| (delta.cpu_seconds * 1e9 / delta.cpu_samples as f64).round() as u64)
}

/// One workload's stacks in the current interval, by node and process.
#[derive(Default)]
struct WorkloadProfile {
    processes: HashMap<(Arc<str>, u32), ProcessProfile>,
    sample_period_ns: u64,
}

struct Interval {
    start: SystemTime,
    workloads: HashMap<WorkloadId, WorkloadProfile>,
}

/// The profiles being gathered; written by [`FleetProfiles::spawn_writer`].
pub struct FleetProfiles {
    dir: PathBuf,
    current: Mutex<Interval>,
}

impl FleetProfiles {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            current: Mutex::new(Interval {
                start: SystemTime::now(),
                workloads: HashMap::new(),
            }),
        }
    }

    /// Adds the stacks of a stored report (its encoded bytes: the view
    /// is decoded again only here, so reports without stacks cost one
    /// pass over their bytes).
    pub fn add_report(&self, node: &Arc<str>, body: &Bytes) {
        let Ok(view) = <ReportView as prost::Message>::decode(body.clone()) else {
            return;
        };
        if view.processes.iter().all(|p| p.stacks.is_empty()) {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        for p in view.processes.iter().filter(|p| !p.stacks.is_empty()) {
            let id = WorkloadId::of(node, p);
            let full = current.workloads.len() >= MAX_PROFILED_WORKLOADS;
            if full && !current.workloads.contains_key(&id) {
                continue;
            }
            let workload = current.workloads.entry(id).or_default();
            let delta = p.delta.unwrap_or_default();
            if workload.sample_period_ns == 0
                && let Some(period) = sample_period_ns(&delta)
            {
                workload.sample_period_ns = period;
            }
            let pid = p.key.unwrap_or_default().pid;
            let process = workload
                .processes
                .entry((node.clone(), pid))
                .or_insert_with(|| ProcessProfile {
                    pid,
                    comm: String::from_utf8_lossy(&p.comm).into_owned(),
                    ..Default::default()
                });
            process.merge(wire::stacks_of(p));
        }
    }

    /// Writes every workload's profile of the interval that ends now and
    /// starts the next; returns the directories written.
    pub fn write_interval(&self) -> Result<Vec<PathBuf>, ProfileError> {
        let now = SystemTime::now();
        let ended = {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(
                &mut *current,
                Interval {
                    start: now,
                    workloads: HashMap::new(),
                },
            )
        };
        let duration = now.duration_since(ended.start).unwrap_or_default();
        let end_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut written = Vec::with_capacity(ended.workloads.len());
        for (id, workload) in ended.workloads {
            let nodes: std::collections::HashSet<&Arc<str>> =
                workload.processes.keys().map(|(n, _)| n).collect();
            let several_nodes = nodes.len() > 1;
            let mut processes: Vec<ProcessProfile> = workload
                .processes
                .into_iter()
                .map(|((node, _), mut p)| {
                    // One container on several nodes: tell its processes apart.
                    if several_nodes {
                        p.comm = format!("{} on {node}", p.comm);
                    }
                    p
                })
                .collect();
            processes.sort_by(|a, b| (a.pid, &a.comm).cmp(&(b.pid, &b.comm)));
            let period = match workload.sample_period_ns {
                0 => DEFAULT_SAMPLE_PERIOD_NS,
                p => p,
            };
            let out = self.dir.join(dir_name(&id)).join(end_secs.to_string());
            tally_export::profile::write_files(
                &out,
                &id.to_string(),
                1_000_000_000 / period.max(1),
                &processes,
                period,
                ended.start,
                duration,
            )?;
            written.push(out);
        }
        Ok(written)
    }

    /// Writes the profiles every `every` from a thread of its own, and
    /// once more when the returned handle is dropped.
    pub fn spawn_writer(self: &Arc<Self>, every: Duration) -> std::io::Result<ProfileWriter> {
        let profiles = self.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::Builder::new()
            .name("tally-profiles".into())
            .spawn(move || {
                loop {
                    thread::park_timeout(every);
                    let stopping = stopped.load(Ordering::Relaxed);
                    match profiles.write_interval() {
                        Ok(dirs) if !dirs.is_empty() => tracing::info!(
                            "CPU profiles of {} workloads written to {}",
                            dirs.len(),
                            profiles.dir.display()
                        ),
                        Ok(_) => {}
                        Err(err) => tracing::error!("cannot write CPU profiles: {err}"),
                    }
                    if stopping {
                        break;
                    }
                }
            })?;
        Ok(ProfileWriter {
            stop,
            thread: Some(thread),
        })
    }
}

/// The thread writing profiles; writes the last interval and ends when
/// dropped.
pub struct ProfileWriter {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for ProfileWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// A workload id as one directory name: `container_<id>`,
/// `process_<node>_<pid>_<start ticks>`.
fn dir_name(id: &WorkloadId) -> String {
    id.to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost::Message as _;
    use tally_proto as pb;

    use super::*;
    use tally_core::model::stacks::FoldedStacks;

    fn report(pid: u32, container: &str, stacks: &[(&[&str], u64)]) -> Bytes {
        let mut folded = FoldedStacks::default();
        for (frames, n) in stacks {
            folded
                .stacks
                .insert(frames.iter().map(|f| Arc::from(*f)).collect(), *n);
        }
        folded.gc_frames.insert(Arc::from("runtime.scanobject"));
        let mut r = pb::NodeReport {
            processes: vec![pb::ProcessWindow {
                key: Some(pb::ProcessKey {
                    pid,
                    start_ticks: 5,
                }),
                comm: "app".into(),
                container_id: container.into(),
                delta: Some(pb::Counters {
                    cpu_samples: 100,
                    cpu_seconds: 1.0,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        wire::attach(&mut r, HashMap::from([(pid, folded)]));
        Bytes::from(r.encode_to_vec())
    }

    #[test]
    fn stored_reports_add_up_per_workload_and_each_interval_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let profiles = FleetProfiles::new(dir.path().to_path_buf());
        let node: Arc<str> = Arc::from("node-a");
        let hot: &[&str] = &["runtime.main", "main.main", "main.burn"];
        let gc: &[&str] = &["runtime.gcBgMarkWorker", "runtime.scanobject"];
        profiles.add_report(&node, &report(7, "c1", &[(hot, 60), (gc, 20)]));
        profiles.add_report(&node, &report(7, "c1", &[(hot, 30)]));
        profiles.add_report(&node, &report(9, "", &[(hot, 5)]));
        let written = profiles.write_interval().unwrap();
        assert_eq!(written.len(), 2, "the container and the lone process");
        let container = written
            .iter()
            .find(|d| d.to_string_lossy().contains("container_c1"))
            .expect("the container's directory");
        let folded = std::fs::read_to_string(container.join("stacks.folded")).unwrap();
        assert!(
            folded.contains("runtime.main;main.main;main.burn 90\n"),
            "{folded}"
        );
        assert!(folded.contains("runtime.gcBgMarkWorker;runtime.scanobject 20\n"));
        let svg = std::fs::read_to_string(container.join("flame.svg")).unwrap();
        assert!(svg.contains(&tally_export::profile::flame::gc_fill()));
        assert!(container.join("profile.pb.gz").exists());
        // The next interval starts empty.
        assert!(profiles.write_interval().unwrap().is_empty());
    }
}
