//! CPU profiles as files: gzipped pprof ([`pprof`]), flame graphs
//! ([`flame`], inferno, GC frames in blue) and folded stacks, for
//! `agent profile` on a node and the collector's per-workload profiles;
//! and folded stacks on the wire ([`wire`]).
pub mod flame;
pub mod pprof;
pub mod wire;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tally_core::model::stacks::{FoldedStacks, MAX_STACKS_PER_PROCESS};

/// A profile file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
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
) -> Result<Vec<PathBuf>, WriteError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError { path, source }
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
