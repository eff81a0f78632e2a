//! `agent profile`: a CPU profile of one process or one container on this
//! node, from the same eBPF cpu-clock samples and user stacks the GC
//! signals use. Writes, in `--out`:
//!
//! - `profile.pb.gz`: gzipped pprof ([`pprof`]), function names, values
//!   `samples/count` and `cpu/nanoseconds`, labels `pid` and `comm`;
//! - `flame.svg`: a flame graph ([`flame`], inferno), GC frames in blue;
//! - `stacks.folded`: the folded stacks (`a;b;c 12`), for other tools.
//!
//! The target's stacks are sampled for the duration whatever
//! `--stack-sampling` says elsewhere (it is added to `STACK_TGIDS`); for a
//! container, so is every process that appears in it meanwhile.
pub mod flame;
pub mod fleet;
pub mod pprof;
pub mod wire;

use std::{
    collections::HashMap,
    ops::ControlFlow,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    collect::{
        CollectError, Collector, driver,
        runtimes::UprobePolicy,
        stacks::{FoldedStacks, MAX_STACKS_PER_PROCESS},
    },
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
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// One process's part of a profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessProfile {
    pub pid: u32,
    pub comm: String,
    pub stacks: FoldedStacks,
}

impl ProcessProfile {
    /// Adds a later drain's stacks, within the same bound as one drain.
    pub fn merge(&mut self, more: FoldedStacks) {
        let s = &mut self.stacks;
        s.runtime = more.runtime;
        s.truncated += more.truncated;
        s.gc_frames.extend(more.gc_frames);
        for (frames, n) in more.stacks {
            if let Some(m) = s.stacks.get_mut(&frames) {
                *m += n;
            } else if s.stacks.len() < MAX_STACKS_PER_PROCESS {
                s.stacks.insert(frames, n);
            } else {
                s.truncated += n;
            }
        }
    }
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
    let mut collector = Collector::start(&load, UprobePolicy::default())?;
    for &pid in &targets {
        collector.profile(pid)?;
    }
    let interval = opts.duration.min(Duration::from_secs(1));
    driver::announce(&collector, interval);
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
        driver::run(&mut collector, interval, |tick| {
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
            collector.profile(pid)?;
        }
        if driver::stopping() || started.elapsed() >= opts.duration {
            break;
        }
    }
    for (tgid, stacks) in collector.take_profiles() {
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
}

/// Writes `profile.pb.gz`, `flame.svg` and `stacks.folded` into `out`;
/// `target` names what was profiled in the flame graph's title.
pub fn write_files(
    out: &Path,
    target: &str,
    sample_hz: u64,
    processes: &[ProcessProfile],
    sample_period_ns: u64,
    start: SystemTime,
    duration: Duration,
) -> Result<Vec<PathBuf>, ProfileError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ProfileError::Write { path, source }
    };
    std::fs::create_dir_all(out).map_err(err(out))?;
    let samples: u64 = processes.iter().map(|p| p.stacks.samples()).sum();
    let time_nanos = start
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let profile = pprof::build(
        processes,
        sample_period_ns,
        time_nanos,
        duration.as_nanos() as i64,
    );
    let pb = out.join("profile.pb.gz");
    pprof::write_gz(&profile, &pb).map_err(err(&pb))?;

    let comms: Vec<&str> = processes.iter().map(|p| p.comm.as_str()).collect();
    let title = format!("CPU: {target} ({})", comms.join(", "));
    let subtitle = format!(
        "{samples} samples in {:.1}s at {sample_hz} Hz; GC frames in blue",
        duration.as_secs_f64(),
    );
    let svg = out.join("flame.svg");
    let file = std::fs::File::create(&svg).map_err(err(&svg))?;
    flame::write(processes, &title, &subtitle, std::io::BufWriter::new(file)).map_err(err(&svg))?;

    let folded = out.join("stacks.folded");
    let mut text = flame::folded(processes).join("\n");
    text.push('\n');
    std::fs::write(&folded, text).map_err(err(&folded))?;
    tracing::info!(
        "{samples} samples of {} processes: {}, {}, {}",
        processes.len(),
        pb.display(),
        svg.display(),
        folded.display()
    );
    Ok(vec![pb, svg, folded])
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
                        .and_then(crate::enrich::container::parse)
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
