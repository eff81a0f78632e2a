//! `agent top`: what every process did in each interval, as a batch of
//! lines (`--batch`) or the full-screen view of this node, of a cluster
//! (`--collector`), or of synthetic processes (`--synthetic`).
mod local;
mod remote;

use std::{collections::HashSet, io, ops::ControlFlow, time::Duration};

use tally_core::model::NodeIdentity;
use tally_node::{
    collect::{CollectError, Sampler, driver, runtimes::UprobePolicy},
    enrich::{
        kube::PodSource,
        node::{SharedIdentity, resolve_in_background},
    },
    probes::{HOOKS, LoadOptions},
};
use tally_top::{
    BatchView, InteractiveOptions, TopError, columns::SourceKind, source, table::HooksMissing,
    write_tick,
};

use super::{
    Failure,
    args::{ImdsArgs, KubeArgs, ProbeArgs, hostname, node_name, parse_interval},
    pricing::PricingArgs,
    require_privileges,
    transport::ClientArgs,
};

#[derive(Debug, clap::Args)]
pub struct TopArgs {
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
    collector_security: ClientArgs,
    /// The cost column: this node's (or each collector node's) price.
    #[command(flatten)]
    pricing: PricingArgs,
    #[command(flatten)]
    imds: ImdsArgs,
    /// Interactive view of N synthetic processes instead of the probes (no
    /// root needed): to try the view; the benchmark's data.
    #[arg(long, value_name = "N", conflicts_with_all = ["batch", "collector"])]
    synthetic: Option<usize>,
    /// With --synthetic: measure frame times and CPU for this many seconds
    /// instead of showing anything (`cargo xtask bench top`).
    #[cfg(feature = "bench")]
    #[arg(long, hide = true, requires = "synthetic")]
    bench_seconds: Option<f64>,
    /// With --synthetic: panic on the source thread after this many
    /// seconds; the tests check that the terminal is given back.
    #[arg(long, hide = true, requires = "synthetic", value_parser = parse_interval)]
    panic_after: Option<f64>,
    /// With --bench-seconds: a terminal size, WIDTHxHEIGHT; repeat.
    #[cfg(feature = "bench")]
    #[arg(long, hide = true, value_parser = super::args::parse_size)]
    bench_size: Vec<(u16, u16)>,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    probes: ProbeArgs,
}

impl TopArgs {
    /// The interactive view owns the terminal: log lines wait until it is
    /// restored.
    pub fn interactive(&self) -> bool {
        !self.batch
    }
}

pub fn run(args: TopArgs) -> Result<(), Failure> {
    if !args.batch {
        return interactive(args);
    }
    require_privileges()?;
    let opts = BatchOptions {
        interval: Duration::from_secs_f64(args.interval),
        iterations: args.iterations,
        view: BatchView {
            json: args.json,
            pids: args.pids.into_iter().collect::<HashSet<_>>(),
        },
        pods: Some(args.kube.source(&node_name(None), None)),
    };
    run_batch(&opts, &args.probes.load_options(), args.probes.uprobes())
        .map_err(|e| Failure::failed(&e))
}

/// How `top --batch` runs.
struct BatchOptions {
    interval: Duration,
    /// Windows to print; `None` runs until interrupted.
    iterations: Option<u64>,
    view: BatchView,
    /// Pod metadata of containers (`enrich::kube`), if wanted.
    pods: Option<PodSource>,
}

/// Runs batch mode until `iterations` windows are out or a signal arrives.
fn run_batch(
    opts: &BatchOptions,
    load: &LoadOptions,
    uprobes: UprobePolicy,
) -> Result<(), CollectError> {
    let mut sampler = Sampler::start(load, uprobes)?;
    if let Some(pods) = &opts.pods {
        sampler.set_pods(pods.resolver());
    }
    driver::announce(&sampler, opts.interval);
    let hooks = HooksMissing {
        missing: sampler.probes().missing.len(),
        of: HOOKS.len(),
    };
    let mut stdout = io::stdout().lock();
    let mut printed = 0;
    driver::run(&mut sampler, opts.interval, |tick| {
        if write_tick(&mut stdout, tick, &opts.view, hooks).is_err() {
            return ControlFlow::Break(()); // stdout closed (`| head`): stop quietly
        }
        printed += 1;
        if opts.iterations.is_some_and(|n| printed >= n) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
}

/// `agent top` without `--batch`.
fn interactive(args: TopArgs) -> Result<(), Failure> {
    let interval = Duration::from_secs_f64(args.interval);
    #[cfg(feature = "bench")]
    if let (Some(processes), Some(seconds)) = (args.synthetic, args.bench_seconds) {
        return bench(processes, seconds, interval, args.bench_size);
    }
    let pricing = args
        .pricing
        .pricing()
        .map_err(|e| Failure::usage_error(&e))?;
    let terminal = || tally_top::check_terminal().map_err(Failure::usage);
    let spawned = match (args.synthetic, args.collector) {
        (Some(processes), _) => {
            terminal()?;
            source::synthetic(
                processes,
                interval,
                args.panic_after.map(Duration::from_secs_f64),
            )
            .map(|s| {
                (
                    s,
                    SourceKind::Local,
                    format!("synthetic ({processes} processes)"),
                )
            })
        }
        (None, Some(collector)) => {
            terminal()?;
            remote::spawn(
                collector.clone(),
                (&args.collector_security).into(),
                pricing,
                interval,
            )
            .map(|s| (s, SourceKind::Remote, collector))
        }
        (None, None) => {
            require_privileges()?;
            let imds = args.imds.client().map_err(Failure::usage)?;
            // This node's identity, resolved in the background (IMDS, 1 s
            // time-outs) while the probes load.
            let identity = SharedIdentity::new(NodeIdentity {
                node_name: node_name(None),
                ..Default::default()
            });
            resolve_in_background(identity.clone(), imds, None);
            terminal()?;
            local::spawn(
                args.probes.load_options(),
                args.probes.uprobes(),
                interval,
                pricing,
                identity,
            )
            .map(|s| {
                let label = hostname().unwrap_or_else(|| "local".into());
                (s, SourceKind::Local, label)
            })
        }
    };
    let (source, kind, label) = spawned.map_err(|e| Failure::failed(&TopError::from(e)))?;
    let opts = InteractiveOptions {
        source,
        kind,
        label,
        interval,
        node: args.node,
    };
    match tally_top::run_interactive(opts) {
        Ok(()) => Ok(()),
        Err(TopError::NotATerminal) => Err(Failure::usage(TopError::NotATerminal)),
        Err(err) => Err(Failure::failed(&err)),
    }
}

/// `--synthetic N --bench-seconds S`: frame times and CPU of the view,
/// measured instead of shown.
#[cfg(feature = "bench")]
fn bench(
    processes: usize,
    seconds: f64,
    interval: Duration,
    sizes: Vec<(u16, u16)>,
) -> Result<(), Failure> {
    let sizes = if sizes.is_empty() {
        vec![(80, 24), (300, 80)]
    } else {
        sizes
    };
    let opts = tally_top::bench::BenchOptions {
        processes,
        seconds,
        interval,
        sizes,
    };
    tally_top::bench::run(&opts).map_err(Failure::failed_with)
}
