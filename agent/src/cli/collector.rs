//! `agent collector`: the cluster side. Takes agents' report streams,
//! stores them, and answers queries about workloads and their verdicts.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::ValueEnum;
use tally_collector::{
    CollectorConfig, Sync,
    store::{Location, tiers::Retention},
};

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
    /// Directory of the store, a SQLite file (created if missing): one
    /// collector. Give this or --store.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A PostgreSQL database as the store, shared by several collector
    /// replicas behind one Service: postgres://user[:password]@host[:port]/db
    /// (or the key=value form). Give this or --data. From the environment
    /// variable TALLY_STORE when not given (keeps a password off the
    /// command line; deploy/overlays/replicated sets it from a Secret).
    #[arg(long, value_name = "URL", env = "TALLY_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Raw reports kept (90s, 30m, 6h, 7d): every process's windows, what
    /// `top --collector`, verdicts and profiles read. Reports older than
    /// this are refused.
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    retention: Duration,
    /// 1-minute buckets per workload kept (the first rolled-up tier).
    #[arg(long = "retention-1m", default_value = "7d", value_parser = parse_duration)]
    retention_1m: Duration,
    /// 1-hour buckets per workload kept.
    #[arg(long = "retention-1h", default_value = "90d", value_parser = parse_duration)]
    retention_1h: Duration,
    /// 1-day buckets per workload kept.
    #[arg(long = "retention-1d", default_value = "400d", value_parser = parse_duration)]
    retention_1d: Duration,
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
    let sync = match args.sync {
        SyncArg::Full => Sync::Full,
        SyncArg::Normal => Sync::Normal,
    };
    let store = match (args.data, args.store) {
        (Some(data_dir), None) => Location::Sqlite { data_dir, sync },
        (None, Some(url))
            if url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.contains('=') =>
        {
            Location::Postgres { url }
        }
        (None, Some(url)) => {
            return Err(Failure::usage(format!(
                "--store {url:?} is not a PostgreSQL URL (postgres://user@host/db); for a SQLite store in a directory, use --data DIR"
            )));
        }
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "give --data DIR (a SQLite store, one collector) or --store postgres://… (shared by replicas), not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(Failure::usage(
                "the collector needs a store: --data DIR (SQLite, one collector) or --store postgres://user@host/db (PostgreSQL, several replicas)".to_owned(),
            ));
        }
    };
    let config = CollectorConfig {
        export,
        listen: args.listen,
        store,
        retention: Retention {
            raw: args.retention,
            minute: args.retention_1m,
            hour: args.retention_1h,
            day: args.retention_1d,
        },
        classify_interval: args.classify_interval,
        profiles_dir: args.profiles,
        profile_interval: args.profile_interval,
        security: (&args.security).into(),
        token_review: args.security.token_review(),
        // An agent's backlog after an outage longer than the raw retention
        // still has a place: its minute buckets.
        limits: args.limits.limits(args.retention.max(args.retention_1m)),
    };
    tally_collector::run(config).map_err(|e| Failure::failed(&e))
}
