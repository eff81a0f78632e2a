//! The `agent` binary: command line, logging, exit codes.
use std::{collections::HashSet, process::ExitCode, time::Duration};

use agent::{privileges, probes::LoadOptions, top};
use clap::{Parser, Subcommand, ValueEnum};

/// Tally: per-process and per-container CPU, allocation syscalls and page
/// faults, from eBPF.
#[derive(Debug, Parser)]
#[command(name = "agent", version)]
struct Cli {
    /// Log format: human text on a terminal, JSON for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// What every process did in each interval.
    Top(TopArgs),
    /// The node daemon: collects like `top` and streams every window to a
    /// collector.
    Run(RunArgs),
    /// The cluster side: takes agents' report streams, stores them, and
    /// answers queries about workloads and their GC verdicts.
    Collector(CollectorArgs),
    /// Every workload's verdict, from a collector.
    Workloads(WorkloadsArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The collector, e.g. http://collector:4317.
    #[arg(long)]
    collector: String,
    /// Length of a window, seconds.
    #[arg(long, default_value_t = 10.0, value_parser = parse_interval)]
    interval: f64,
    /// This node's name in reports (Kubernetes: the downward API's
    /// spec.nodeName); defaults to $NODE_NAME, else the host name.
    #[arg(long)]
    node_name: Option<String>,
    /// Reports kept while the collector is unreachable; past it the oldest
    /// are dropped, and counted.
    #[arg(long, default_value_t = 3600)]
    buffer_reports: usize,
    #[command(flatten)]
    probes: ProbeArgs,
}

#[derive(Debug, clap::Args)]
struct CollectorArgs {
    /// Address to listen on (gRPC); port 0 picks a free one, printed on stdout.
    #[arg(long, default_value = "0.0.0.0:4317")]
    listen: std::net::SocketAddr,
    /// Directory of the store (created if missing).
    #[arg(long)]
    data: std::path::PathBuf,
    /// History kept (90s, 30m, 24h, 7d).
    #[arg(long, default_value = "24h", value_parser = agent::collector::parse_duration)]
    retention: Duration,
    /// How often every workload's verdict is recomputed.
    #[arg(long, default_value = "2s", value_parser = agent::collector::parse_duration)]
    classify_interval: Duration,
    /// fsync every commit (full: acknowledged reports survive a power cut) or
    /// only at checkpoints (normal: they survive the collector crashing).
    #[arg(long, value_enum, default_value_t = SyncArg::Full)]
    sync: SyncArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SyncArg {
    Full,
    Normal,
}

#[derive(Debug, clap::Args)]
struct WorkloadsArgs {
    /// The collector, e.g. http://collector:4317.
    #[arg(long)]
    collector: String,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    json: bool,
    /// Only workloads seen on this node.
    #[arg(long)]
    node: Option<String>,
}

#[derive(Debug, clap::Args)]
struct TopArgs {
    /// Non-interactive output, one window after each interval (like `top -b`).
    #[arg(long)]
    batch: bool,
    /// Length of a window, seconds.
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    interval: f64,
    /// Number of windows to print, then exit; runs until interrupted if unset.
    #[arg(long, short = 'n')]
    iterations: Option<u64>,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    json: bool,
    /// Only this process; repeat for several.
    #[arg(long = "pid", short = 'p')]
    pids: Vec<u32>,
    #[command(flatten)]
    probes: ProbeArgs,
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// cpu-clock samples per second on each CPU.
    #[arg(long, default_value_t = 99, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sample_hz: u64,
    /// Threads the sample map holds; past it, new threads are counted as drops.
    #[arg(long, default_value_t = 32768, value_parser = clap::value_parser!(u32).range(16..))]
    max_threads: u32,
    /// Processes the syscall map holds; past it, new processes are counted as drops.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(16..))]
    max_processes: u32,
    /// Never put uprobes in processes whose comm or cgroup path (which
    /// holds the container id) contains this; repeat for several. Their GC
    /// is still seen through thread names and stacks.
    #[arg(long = "no-uprobes-for", value_name = "PATTERN")]
    no_uprobes_for: Vec<String>,
    /// Whose user stacks are sampled with the CPU: the runtimes whose GC
    /// only stacks show (Go, Node), everyone, or no one.
    #[arg(long, value_enum, default_value_t = agent::probes::StackSampling::GcRuntimes)]
    stack_sampling: agent::probes::StackSampling,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.1..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0.1 and 3600 seconds".into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Top(args) => top(args),
        Command::Run(args) => run(args),
        Command::Collector(args) => collector(args),
        Command::Workloads(args) => workloads(args),
    }
}

fn top(args: TopArgs) -> ExitCode {
    if !args.batch {
        eprintln!("agent: the interactive view is not built yet; use `agent top --batch`");
        return ExitCode::from(2);
    }
    if let Err(missing) = privileges::check_self() {
        eprintln!("agent: {missing}");
        return ExitCode::from(2);
    }
    let load = load_options(&args.probes);
    let opts = top::BatchOptions {
        interval: Duration::from_secs_f64(args.interval),
        iterations: args.iterations,
        json: args.json,
        pids: args.pids.into_iter().collect::<HashSet<_>>(),
    };
    let uprobes = agent::collect::runtimes::UprobePolicy {
        exclude: args.probes.no_uprobes_for,
    };
    match top::run_batch(&opts, &load, uprobes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agent: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn load_options(p: &ProbeArgs) -> LoadOptions {
    LoadOptions {
        sample_hz: p.sample_hz,
        max_threads: p.max_threads,
        max_processes: p.max_processes,
        stack_sampling: p.stack_sampling,
    }
}

fn run(args: RunArgs) -> ExitCode {
    if let Err(missing) = privileges::check_self() {
        eprintln!("agent: {missing}");
        return ExitCode::from(2);
    }
    let node_name = args
        .node_name
        .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(hostname);
    let opts = agent::run::RunOptions {
        collector: args.collector,
        interval: Duration::from_secs_f64(args.interval),
        node: agent::report::NodeIdentity {
            node_name,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get() as u32),
            ..Default::default()
        },
        buffer_reports: args.buffer_reports,
    };
    let uprobes = agent::collect::runtimes::UprobePolicy {
        exclude: args.probes.no_uprobes_for.clone(),
    };
    match agent::run::run(&opts, &load_options(&args.probes), uprobes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agent: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn collector(args: CollectorArgs) -> ExitCode {
    let config = agent::collector::CollectorConfig {
        listen: args.listen,
        data_dir: args.data,
        retention: args.retention,
        classify_interval: args.classify_interval,
        sync: match args.sync {
            SyncArg::Full => agent::collector::Sync::Full,
            SyncArg::Normal => agent::collector::Sync::Normal,
        },
    };
    match agent::collector::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agent: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn workloads(args: WorkloadsArgs) -> ExitCode {
    let opts = agent::workloads::WorkloadsOptions {
        collector: args.collector,
        json: args.json,
        node: args.node,
    };
    match agent::workloads::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agent: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text = format!("{text}: {s}");
        }
        source = cause.source();
    }
    text
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG").unwrap_or_else(|_| "info".into());
    // Colour only on a terminal, and never with NO_COLOR set.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
