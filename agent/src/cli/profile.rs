//! `agent profile`: a CPU profile of a process or container on this node,
//! gzipped pprof and a flame graph (SVG).
use std::{path::PathBuf, time::Duration};

use tally_node::profile::{ProfileOptions, Target};

use super::{Failure, args::parse_duration, require_privileges};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "container"])))]
pub struct ProfileArgs {
    /// The process to profile.
    #[arg(long)]
    pid: Option<u32>,
    /// The container to profile (its id, or a unique prefix of it): every
    /// process in it.
    #[arg(long)]
    container: Option<String>,
    /// How long to sample (30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Directory for profile.pb.gz, flame.svg and stacks.folded (created
    /// if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// cpu-clock samples per second on each CPU.
    #[arg(long, default_value_t = 99, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sample_hz: u64,
}

pub fn run(args: ProfileArgs) -> Result<(), Failure> {
    require_privileges()?;
    let target = match (args.pid, args.container) {
        (Some(pid), _) => Target::Pid(pid),
        (None, Some(id)) => Target::Container(id),
        (None, None) => unreachable!("clap requires one"),
    };
    let opts = ProfileOptions {
        target,
        duration: args.duration,
        out: args.out,
        sample_hz: args.sample_hz,
    };
    let written = tally_node::profile::run(&opts).map_err(|e| Failure::failed(&e))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
