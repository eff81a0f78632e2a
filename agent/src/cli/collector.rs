//! `agent collector`: the cluster side. Takes agents' report streams,
//! stores them, and answers queries about workloads and their verdicts.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::ValueEnum;
use tally_collector::{CollectorConfig, Sync};

use super::{
    Failure,
    args::{ExportArgs, parse_duration},
    transport::{LimitArgs, ServerArgs},
};

#[derive(Debug, clap::Args)]
pub struct CollectorArgs {
    /// Address to listen on (gRPC); port 0 picks a free one, printed on stdout.
    #[arg(long, default_value = "0.0.0.0:4317")]
    listen: SocketAddr,
    /// Directory of the store (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// History kept (90s, 30m, 24h, 7d).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    retention: Duration,
    /// How often every workload's verdict is recomputed.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    classify_interval: Duration,
    /// fsync every commit (full: acknowledged reports survive a power cut) or
    /// only at checkpoints (normal: they survive the collector crashing).
    #[arg(long, value_enum, default_value_t = SyncArg::Full)]
    sync: SyncArg,
    #[command(flatten)]
    export: ExportArgs,
    /// Write CPU profiles (pprof, flame graph) of every workload whose
    /// agent samples stacks into DIR/<workload>/<time>/.
    #[arg(long, value_name = "DIR")]
    profiles: Option<PathBuf>,
    /// How much time each written profile covers.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    profile_interval: Duration,
    #[command(flatten)]
    security: ServerArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SyncArg {
    Full,
    Normal,
}

pub fn run(args: CollectorArgs) -> Result<(), Failure> {
    let export = args.export.options().map_err(Failure::usage)?;
    let config = CollectorConfig {
        export,
        listen: args.listen,
        data_dir: args.data,
        retention: args.retention,
        classify_interval: args.classify_interval,
        profiles_dir: args.profiles,
        profile_interval: args.profile_interval,
        sync: match args.sync {
            SyncArg::Full => Sync::Full,
            SyncArg::Normal => Sync::Normal,
        },
        security: (&args.security).into(),
        limits: args.limits.limits(args.retention),
    };
    tally_collector::run(config).map_err(|e| Failure::failed(&e))
}
