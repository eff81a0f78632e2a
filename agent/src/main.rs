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
    let load = LoadOptions {
        sample_hz: args.probes.sample_hz,
        max_threads: args.probes.max_threads,
        max_processes: args.probes.max_processes,
    };
    let opts = top::BatchOptions {
        interval: Duration::from_secs_f64(args.interval),
        iterations: args.iterations,
        json: args.json,
        pids: args.pids.into_iter().collect::<HashSet<_>>(),
    };
    match top::run_batch(&opts, &load) {
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
