//! The `agent` binary: parses the command line, sets up logging, runs one
//! subcommand (`cli/`, one file each), and turns its failure into one line
//! on stderr and an exit code, here and nowhere else.
mod cli;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use cli::{
    Failure, collector::CollectorArgs, health::HealthArgs, profile::ProfileArgs,
    report::ReportArgs, run::RunArgs, top::TopArgs, workloads::WorkloadsArgs,
};

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

#[derive(Debug, clap::Subcommand)]
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
    /// The cost report from a collector: workloads ranked by GC tax in $
    /// per month, each node's idle cost, and what to change.
    Report(ReportArgs),
    /// CPU profile of a process or container on this node: gzipped pprof
    /// and a flame graph (SVG).
    Profile(ProfileArgs),
    /// Exits 0 while `agent run --health-file FILE` finishes windows: the
    /// DaemonSet's liveness and readiness probe.
    Health(HealthArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The interactive view owns the terminal: log lines wait until it is
    // restored (tally_top::terminal::LogCapture).
    let interactive = matches!(&cli.command, Command::Top(a) if a.interactive());
    init_logging(cli.log_format, interactive);
    let result: Result<(), Failure> = match cli.command {
        Command::Top(args) => cli::top::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Collector(args) => cli::collector::run(args),
        Command::Workloads(args) => cli::workloads::command(args),
        Command::Report(args) => cli::report::command(args),
        Command::Profile(args) => cli::profile::run(args),
        Command::Health(args) => cli::health::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("agent: {}", failure.message);
            failure.exit_code()
        }
    }
}

fn init_logging(format: LogFormat, interactive: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG").unwrap_or_else(|_| "info".into());
    if interactive {
        // Kept while the view owns the terminal, printed when it is restored.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(tally_top::terminal::LogCapture)
            .with_ansi(false);
        match format {
            LogFormat::Text => builder.with_target(false).init(),
            LogFormat::Json => builder.json().init(),
        }
        return;
    }
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
