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

#[derive(Debug, clap::Args)]
struct HealthArgs {
    /// The file `agent run --health-file` rewrites after every window.
    #[arg(long)]
    file: std::path::PathBuf,
    /// Healthy while the last window finished less than this ago.
    #[arg(long, default_value = "60s", value_parser = agent::collector::parse_duration)]
    max_age: Duration,
}

/// Kubernetes metadata: pods, owners, requests and limits of containers.
#[derive(Debug, clap::Args)]
struct KubeArgs {
    /// Ask the API server for the pods of this node: `auto` does when
    /// running in a pod (KUBERNETES_SERVICE_HOST) or given --kubeconfig;
    /// otherwise (and while it is unreachable) the names come from the
    /// container runtime's labels.
    #[arg(long, value_enum, default_value_t = agent::enrich::kube::KubeMode::Auto)]
    kube: agent::enrich::kube::KubeMode,
    /// Reach the API server with this kubeconfig instead of the pod's
    /// service account.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<std::path::PathBuf>,
}

impl KubeArgs {
    fn source(
        &self,
        node: &str,
        labels: Option<std::sync::mpsc::Sender<std::collections::BTreeMap<String, String>>>,
    ) -> agent::enrich::kube::PodSource {
        agent::enrich::kube::PodSource::for_node(self.kube, self.kubeconfig.clone(), node, labels)
    }
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// Export OTLP metrics over gRPC to this endpoint, e.g.
    /// http://otel-collector:4317 (https:// for TLS).
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// gRPC metadata sent with every OTLP export, e.g.
    /// `authorization=Bearer TOKEN`; repeat for several.
    #[arg(long = "otlp-header", value_name = "KEY=VALUE")]
    otlp_headers: Vec<String>,
    /// Compression of OTLP exports.
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    otlp_compression: Compression,
    /// Time-out of one OTLP export.
    #[arg(long, default_value = "10s", value_parser = agent::collector::parse_duration)]
    otlp_timeout: Duration,
    /// CA certificate (PEM) for an https:// endpoint; the system's roots
    /// otherwise.
    #[arg(long, value_name = "FILE")]
    otlp_ca: Option<std::path::PathBuf>,
    /// Exports kept while the endpoint is slow or down; past it the oldest
    /// is dropped (and counted in tally_otlp_dropped_exports_total).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    otlp_queue: u64,
    /// Serve Prometheus metrics on http://ADDR/metrics, with /healthz and
    /// /readyz (e.g. 0.0.0.0:9464; port 0 picks one, logged).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Processes (and containers) exported at once; past it the least
    /// recently active are dropped (tally_exporter_dropped_series_total).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    export_max_series: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Compression {
    Gzip,
    None,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "container"])))]
struct ProfileArgs {
    /// The process to profile.
    #[arg(long)]
    pid: Option<u32>,
    /// The container to profile (its id, or a unique prefix of it): every
    /// process in it.
    #[arg(long)]
    container: Option<String>,
    /// How long to sample (30s, 2m).
    #[arg(long, default_value = "30s", value_parser = agent::collector::parse_duration)]
    duration: Duration,
    /// Directory for profile.pb.gz, flame.svg and stacks.folded (created
    /// if missing).
    #[arg(long, default_value = ".")]
    out: std::path::PathBuf,
    /// cpu-clock samples per second on each CPU.
    #[arg(long, default_value_t = 99, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sample_hz: u64,
}

/// Where the node's EC2 identity comes from.
#[derive(Debug, clap::Args)]
struct ImdsArgs {
    /// IMDSv2 endpoint for the instance type, zone, region and lifecycle;
    /// defaults to $AWS_EC2_METADATA_SERVICE_ENDPOINT, else
    /// http://169.254.169.254. Asked once, in the background, 1 s time-outs.
    #[arg(long, value_name = "URL")]
    imds_endpoint: Option<String>,
    /// Never ask IMDS (also with AWS_EC2_METADATA_DISABLED=true): the node's
    /// labels, else "unknown".
    #[arg(long)]
    no_imds: bool,
}

impl ImdsArgs {
    /// The IMDS client, unless disabled; a bad endpoint is an error.
    fn client(&self) -> Result<Option<agent::enrich::node::Imds>, String> {
        let disabled = self.no_imds
            || std::env::var("AWS_EC2_METADATA_DISABLED")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        if disabled {
            return Ok(None);
        }
        let endpoint = self
            .imds_endpoint
            .clone()
            .or_else(|| std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").ok())
            .unwrap_or_else(|| agent::enrich::node::DEFAULT_IMDS_ENDPOINT.to_owned());
        agent::enrich::node::Imds::new(&endpoint, agent::enrich::node::IMDS_TIMEOUT)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The collector, e.g. http://collector:4317 (https:// for TLS).
    /// Optional when exporting (--otlp-endpoint, --metrics-listen).
    #[arg(long)]
    collector: Option<String>,
    #[command(flatten)]
    collector_security: agent::transport::cli::ClientArgs,
    /// Keep every capability after loading (and allow exec): for
    /// debugging only; by default the daemon keeps only what it needs.
    #[arg(long)]
    keep_privileges: bool,
    /// Also print every window on stdout, as `agent top --batch --json`.
    #[arg(long)]
    json: bool,
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
    imds: ImdsArgs,
    /// Rewrite this file after every window, for `agent health`.
    #[arg(long, value_name = "FILE")]
    health_file: Option<std::path::PathBuf>,
    /// Send the sampled user stacks (--stack-sampling) in the reports, for
    /// the collector's CPU profiles (`agent collector --profiles`).
    #[arg(long, requires = "collector")]
    send_stacks: bool,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    export: ExportArgs,
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
    #[command(flatten)]
    export: ExportArgs,
    /// Write CPU profiles (pprof, flame graph) of every workload whose
    /// agent samples stacks into DIR/<workload>/<time>/.
    #[arg(long, value_name = "DIR")]
    profiles: Option<std::path::PathBuf>,
    /// How much time each written profile covers.
    #[arg(long, default_value = "60s", value_parser = agent::collector::parse_duration)]
    profile_interval: Duration,
    #[command(flatten)]
    security: agent::transport::cli::ServerArgs,
    #[command(flatten)]
    limits: agent::transport::cli::LimitArgs,
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
    #[command(flatten)]
    security: agent::transport::cli::ClientArgs,
    #[command(flatten)]
    pricing: agent::cost::cli::PricingArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Markdown,
    Json,
    Html,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The collector, e.g. http://collector:4317.
    #[arg(long)]
    collector: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// How far back to look: 90s, 10m, 24h, 7d.
    #[arg(long, default_value = "24h", value_parser = agent::collector::parse_duration)]
    since: std::time::Duration,
    /// Margin over observed peaks for requests and limits.
    #[arg(long, default_value_t = agent::cost::recommend::DEFAULT_MARGIN)]
    margin: f64,
    #[command(flatten)]
    pricing: agent::cost::cli::PricingArgs,
    #[command(flatten)]
    security: agent::transport::cli::ClientArgs,
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
    /// Interactive view of a whole cluster through a collector's watch
    /// stream (e.g. http://collector:4317) instead of this node's probes.
    #[arg(long, value_name = "URL", conflicts_with = "batch")]
    collector: Option<String>,
    /// With --collector: only this node at start (`n` cycles the nodes).
    #[arg(long, value_name = "NAME", requires = "collector")]
    node: Option<String>,
    /// With --collector: its CA, client certificate and token.
    #[command(flatten)]
    collector_security: agent::transport::cli::ClientArgs,
    /// The cost column: this node's (or each collector node's) price.
    #[command(flatten)]
    pricing: agent::cost::cli::PricingArgs,
    #[command(flatten)]
    imds: ImdsArgs,
    /// Interactive view of N synthetic processes instead of the probes (no
    /// root needed): to try the view; the benchmark's data.
    #[arg(long, value_name = "N", conflicts_with_all = ["batch", "collector"])]
    synthetic: Option<usize>,
    /// With --synthetic: measure frame times and CPU for this many seconds
    /// instead of showing anything (`cargo xtask bench top`).
    #[arg(long, hide = true, requires = "synthetic")]
    bench_seconds: Option<f64>,
    /// With --synthetic: panic on the source thread after this many
    /// seconds; the tests check that the terminal is given back.
    #[arg(long, hide = true, requires = "synthetic", value_parser = parse_interval)]
    panic_after: Option<f64>,
    /// With --bench-seconds: a terminal size, WIDTHxHEIGHT; repeat.
    #[arg(long, hide = true, value_parser = parse_size)]
    bench_size: Vec<(u16, u16)>,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    probes: ProbeArgs,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s.split_once('x').ok_or("WIDTHxHEIGHT, e.g. 80x24")?;
    let w: u16 = w.parse().map_err(|e| format!("{e}"))?;
    let h: u16 = h.parse().map_err(|e| format!("{e}"))?;
    Ok((w, h))
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
    // The interactive view owns the terminal: log lines wait until it is
    // restored (top::terminal::LogCapture).
    let interactive = matches!(&cli.command, Command::Top(a) if !a.batch);
    init_logging(cli.log_format, interactive);
    match cli.command {
        Command::Top(args) => top(args),
        Command::Run(args) => run(args),
        Command::Collector(args) => collector(args),
        Command::Workloads(args) => workloads(args),
        Command::Report(args) => report(args),
        Command::Profile(args) => profile(args),
        Command::Health(args) => health(args),
    }
}

fn health(args: HealthArgs) -> ExitCode {
    match agent::health::check(&args.file, args.max_age) {
        Ok(_) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("agent: unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

/// This node's name: --node-name, else the downward API's NODE_NAME, else
/// the host name.
fn node_name(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(hostname)
}

fn export_options(args: &ExportArgs) -> Result<agent::export::ExportOptions, String> {
    let otlp = match &args.otlp_endpoint {
        Some(endpoint) => {
            let mut config = agent::export::otlp::OtlpConfig::new(endpoint.clone());
            for h in &args.otlp_headers {
                config
                    .headers
                    .extend(agent::export::otlp::parse_headers(h).map_err(|e| e.to_string())?);
            }
            config.gzip = matches!(args.otlp_compression, Compression::Gzip);
            config.timeout = args.otlp_timeout;
            config.ca_file.clone_from(&args.otlp_ca);
            config.queue = args.otlp_queue as usize;
            Some(config)
        }
        None => None,
    };
    Ok(agent::export::ExportOptions {
        otlp,
        metrics_listen: args.metrics_listen,
        limits: agent::export::SeriesLimits {
            max_series: args.export_max_series as usize,
            ..Default::default()
        },
    })
}

fn profile(args: ProfileArgs) -> ExitCode {
    if let Err(missing) = privileges::check_self() {
        eprintln!("agent: {missing}");
        return ExitCode::from(2);
    }
    let target = match (args.pid, args.container) {
        (Some(pid), _) => agent::profile::Target::Pid(pid),
        (None, Some(id)) => agent::profile::Target::Container(id),
        (None, None) => unreachable!("clap requires one"),
    };
    let opts = agent::profile::ProfileOptions {
        target,
        duration: args.duration,
        out: args.out,
        sample_hz: args.sample_hz,
    };
    match agent::profile::run(&opts) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("agent: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn top(args: TopArgs) -> ExitCode {
    if !args.batch {
        return interactive_top(args);
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
        pods: Some(args.kube.source(&node_name(None), None)),
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

/// `agent top` without `--batch`: the full-screen view of this node, of a
/// cluster (`--collector`), or of synthetic processes (`--synthetic`).
fn interactive_top(args: TopArgs) -> ExitCode {
    let interval = Duration::from_secs_f64(args.interval);
    if let (Some(processes), Some(seconds)) = (args.synthetic, args.bench_seconds) {
        let sizes = if args.bench_size.is_empty() {
            vec![(80, 24), (300, 80)]
        } else {
            args.bench_size
        };
        let opts = top::bench::BenchOptions {
            processes,
            seconds,
            interval,
            sizes,
        };
        return match top::bench::run(&opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("agent: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let pricing = match args.pricing.pricing() {
        Ok(p) => p,
        Err(err) => {
            eprintln!("agent: {}", error_chain(&err));
            return ExitCode::from(2);
        }
    };
    let origin = match (args.synthetic, args.collector) {
        (Some(processes), _) => top::Origin::Synthetic {
            processes,
            panic_after: args.panic_after.map(Duration::from_secs_f64),
        },
        (None, Some(collector)) => top::Origin::Remote {
            collector,
            security: (&args.collector_security).into(),
            pricing,
        },
        (None, None) => {
            if let Err(missing) = privileges::check_self() {
                eprintln!("agent: {missing}");
                return ExitCode::from(2);
            }
            let imds = match args.imds.client() {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("agent: {e}");
                    return ExitCode::from(2);
                }
            };
            // This node's identity, resolved in the background (IMDS, 1 s
            // time-outs) while the probes load.
            let identity = agent::enrich::node::SharedIdentity::new(agent::report::NodeIdentity {
                node_name: node_name(None),
                ..Default::default()
            });
            agent::enrich::node::resolve_in_background(identity.clone(), imds, None);
            top::Origin::Local {
                load: load_options(&args.probes),
                uprobes: agent::collect::runtimes::UprobePolicy {
                    exclude: args.probes.no_uprobes_for.clone(),
                },
                pricing,
                identity,
            }
        }
    };
    let opts = top::InteractiveOptions {
        origin,
        interval,
        node: args.node,
    };
    match top::run_interactive(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(top::TopError::NotATerminal) => {
            eprintln!("agent: {}", top::TopError::NotATerminal);
            ExitCode::from(2)
        }
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
    let node_name = node_name(args.node_name);
    let export = match export_options(&args.export) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("agent: {err}");
            return ExitCode::from(2);
        }
    };
    if args.collector.is_none() && export.is_empty() && !args.json {
        eprintln!(
            "agent: nowhere to send windows: give --collector URL, --otlp-endpoint URL or --metrics-listen ADDR"
        );
        return ExitCode::from(2);
    }
    let opts = agent::run::RunOptions {
        collector: args.collector,
        collector_security: (&args.collector_security).into(),
        export,
        json: args.json,
        interval: Duration::from_secs_f64(args.interval),
        node: agent::report::NodeIdentity {
            node_name: node_name.clone(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get() as u32),
            ..Default::default()
        },
        buffer_reports: args.buffer_reports,
        identity: None,
        pods: None,
        health_file: args.health_file,
        send_stacks: args.send_stacks,
        stack_sampling: args.probes.stack_sampling,
    };
    // Load and attach first, with every privilege; then give up what the
    // daemon no longer needs, before any other thread starts (the API
    // server watch, IMDS, the collector stream, exports).
    let uprobes = agent::collect::runtimes::UprobePolicy {
        exclude: args.probes.no_uprobes_for.clone(),
    };
    let collector = match agent::collect::Collector::start(&load_options(&args.probes), uprobes) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("agent: {}", error_chain(&err));
            return ExitCode::FAILURE;
        }
    };
    if !args.keep_privileges {
        let low_port = args
            .export
            .metrics_listen
            .is_some_and(|a| a.port() != 0 && a.port() < 1024);
        match agent::privileges::confine::confine(low_port) {
            Ok(c) => tracing::info!(
                "privileges dropped: capabilities {:#x} kept, exec forbidden",
                c.kept
            ),
            Err(err) => {
                eprintln!(
                    "agent: cannot drop privileges after loading: {err} (--keep-privileges runs without dropping them)"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    // Pods of this node, and the node's identity, both in the background:
    // collection starts without waiting for the API server or IMDS.
    let (labels_tx, labels_rx) = std::sync::mpsc::channel();
    let pods = args.kube.source(&node_name, Some(labels_tx));
    let imds = match args.imds.client() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("agent: {e}");
            return ExitCode::from(2);
        }
    };
    let identity = agent::enrich::node::SharedIdentity::new(opts.node.clone());
    let labels_rx = pods.index().is_some().then_some(labels_rx);
    agent::enrich::node::resolve_in_background(identity.clone(), imds, labels_rx);
    let opts = agent::run::RunOptions {
        identity: Some(identity),
        pods: Some(pods),
        ..opts
    };
    match agent::run::run(&opts, collector) {
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
    let export = match export_options(&args.export) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("agent: {err}");
            return ExitCode::from(2);
        }
    };
    let config = agent::collector::CollectorConfig {
        export,
        listen: args.listen,
        data_dir: args.data,
        retention: args.retention,
        classify_interval: args.classify_interval,
        profiles_dir: args.profiles,
        profile_interval: args.profile_interval,
        sync: match args.sync {
            SyncArg::Full => agent::collector::Sync::Full,
            SyncArg::Normal => agent::collector::Sync::Normal,
        },
        security: (&args.security).into(),
        limits: args.limits.limits(args.retention),
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
        security: (&args.security).into(),
    };
    let pricing = match args.pricing.pricing() {
        Ok(p) => p,
        Err(err) => {
            eprintln!("agent: {}", error_chain(&err));
            return ExitCode::from(2);
        }
    };
    match agent::workloads::run(&opts, &pricing) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agent: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn report(args: ReportArgs) -> ExitCode {
    use agent::cost::report::{Format, ReportOptions};
    let opts = ReportOptions {
        collector: args.collector,
        security: (&args.security).into(),
        format: match args.format {
            ReportFormat::Text => Format::Text,
            ReportFormat::Markdown => Format::Markdown,
            ReportFormat::Json => Format::Json,
            ReportFormat::Html => Format::Html,
        },
        since: args.since,
        defaults: args.pricing.defaults(),
        prices: args.pricing.prices,
        spot_fraction: args.pricing.spot_fraction,
        margin: args.margin,
    };
    match agent::cost::report::run(&opts) {
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

fn init_logging(format: LogFormat, interactive: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG").unwrap_or_else(|_| "info".into());
    if interactive {
        // Kept while the view owns the terminal, printed when it is restored.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(top::terminal::LogCapture)
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
