//! `agent health`: exits 0 while `agent run --health-file FILE` finishes
//! windows (the DaemonSet's liveness and readiness probe).
use std::{path::PathBuf, time::Duration};

use super::{Failure, args::parse_duration};

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The file `agent run --health-file` rewrites after every window.
    #[arg(long)]
    file: PathBuf,
    /// Healthy while the last window finished less than this ago.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    max_age: Duration,
}

pub fn run(args: HealthArgs) -> Result<(), Failure> {
    tally_node::health::check(&args.file, args.max_age)
        .map(|_| ())
        .map_err(|why| Failure::failed_with(format!("unhealthy: {why}")))
}
