//! `agent profile`: a CPU profile of one process or one container on this
//! node, from the same eBPF cpu-clock samples and user stacks the GC
//! signals use. Writes, in `--out`:
//!
//! - `profile.pb.gz`: gzipped pprof (`tally_export::profile::pprof`), function names, values
//!   `samples/count` and `cpu/nanoseconds`, labels `pid` and `comm`;
//! - `flame.svg`: a flame graph (`tally_export::profile::flame`, inferno), GC frames in blue;
//! - `stacks.folded`: the folded stacks (`a;b;c 12`), for other tools.
//!
//! The target's stacks are sampled for the duration whatever
//! `--stack-sampling` says elsewhere (it is added to `STACK_TGIDS`); for a
//! container, so is every process that appears in it meanwhile.
pub use tally_export::profile::{ProcessProfile, flame, pprof, wire, write_files};

use std::{
    collections::HashMap,
    ops::ControlFlow,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    collect::{CollectError, Sampler, driver, runtimes::UprobePolicy},
    probes::{LoadOptions, StackSampling},
};

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error("no process {0}")]
    NoProcess(u32),
    #[error("no running process is in a container whose id starts with `{0}`")]
    NoContainer(String),
    #[error(transparent)]
    Write(#[from] tally_export::profile::WriteError),
}

/// What to profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Pid(u32),
    /// A container id or a prefix of it.
    Container(String),
}

#[derive(Debug, Clone)]
pub struct ProfileOptions {
    pub target: Target,
    pub duration: Duration,
    pub out: PathBuf,
    pub sample_hz: u64,
}

/// Samples the target for the duration (or until SIGINT/SIGTERM), then
/// writes the files; returns their paths.
pub fn run(opts: &ProfileOptions) -> Result<Vec<PathBuf>, ProfileError> {
    let targets = match &opts.target {
        Target::Pid(pid) => {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Err(ProfileError::NoProcess(*pid));
            }
            vec![*pid]
        }
        Target::Container(id) => {
            let pids = container_pids(id);
            if pids.is_empty() {
                return Err(ProfileError::NoContainer(id.clone()));
            }
            pids
        }
    };
    let load = LoadOptions {
        sample_hz: opts.sample_hz,
        stack_sampling: StackSampling::GcRuntimes,
        ..LoadOptions::default()
    };
    let mut sampler = Sampler::start(&load, UprobePolicy::default())?;
    for &pid in &targets {
        sampler.profile(pid)?;
    }
    let interval = opts.duration.min(Duration::from_secs(1));
    driver::announce(&sampler, interval);
    tracing::info!(
        "profiling {:?} ({} processes) for {:?}",
        opts.target,
        targets.len(),
        opts.duration
    );
    let started = Instant::now();
    let start_wall = SystemTime::now();
    let mut profiles: HashMap<u32, ProcessProfile> = HashMap::new();
    let mut comms: HashMap<u32, String> = HashMap::new();
    let mut period = 0;
    let mut profiled: std::collections::HashSet<u32> = targets.iter().copied().collect();
    // One window at a time, so that processes that join the container are
    // added to the sampled set as they appear.
    loop {
        let mut joined = Vec::new();
        driver::run(&mut sampler, interval, |tick| {
            period = tick.sample_period_ns;
            for w in &tick.windows {
                let ours = match &opts.target {
                    Target::Pid(pid) => w.key.tgid == *pid,
                    Target::Container(id) => w
                        .cgroup
                        .as_ref()
                        .and_then(|c| c.container.as_ref())
                        .is_some_and(|c| c.id.starts_with(id.as_str())),
                };
                if ours {
                    comms.insert(w.key.tgid, w.comm.clone());
                    if !profiled.contains(&w.key.tgid) && !w.exited {
                        joined.push(w.key.tgid);
                    }
                }
            }
            ControlFlow::Break(())
        })?;
        for pid in joined {
            tracing::debug!(pid, "joined the container: profiled from now on");
            profiled.insert(pid);
            sampler.profile(pid)?;
        }
        if driver::stopping() || started.elapsed() >= opts.duration {
            break;
        }
    }
    for (tgid, stacks) in sampler.take_profiles() {
        profiles.entry(tgid).or_default().merge(stacks);
    }
    let duration = started.elapsed();
    let mut processes: Vec<ProcessProfile> = profiles
        .into_iter()
        .map(|(pid, mut p)| {
            p.pid = pid;
            p.comm = comms
                .get(&pid)
                .cloned()
                .or_else(|| comm_of(pid))
                .unwrap_or_else(|| format!("pid {pid}"));
            p
        })
        .filter(|p| p.stacks.samples() > 0)
        .collect();
    processes.sort_by_key(|p| p.pid);
    let target = match &opts.target {
        Target::Pid(pid) => format!("pid {pid}"),
        Target::Container(id) => format!("container {}", &id[..id.len().min(12)]),
    };
    write_files(
        &opts.out,
        &target,
        opts.sample_hz,
        &processes,
        period,
        start_wall,
        duration,
    )
    .map_err(ProfileError::from)
}

/// Every process whose cgroup names a container whose id starts with `id`.
fn container_pids(id: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|c| {
                    c.lines()
                        .find(|l| l.starts_with("0::"))
                        .and_then(tally_core::model::container::parse)
                })
                .is_some_and(|c| c.id.starts_with(id))
        })
        .collect();
    pids.sort_unstable();
    pids
}

fn comm_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}
