//! `agent run`: the node daemon. Collects like `top` and streams every
//! window to a collector, and/or exports them.
use std::{path::PathBuf, time::Duration};

use tally_node::{
    collect::Sampler,
    enrich::node::{SharedIdentity, resolve_in_background},
    privileges::{confine, uprobe_opener::UprobeOpener},
    probes::StackSampling,
    run::RunOptions,
};

use super::{
    Failure,
    args::{ExportArgs, ImdsArgs, KubeArgs, ProbeArgs, identity_of, node_name, parse_interval},
    require_privileges,
    transport::ClientArgs,
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The collector, e.g. http://collector:4317 (https:// for TLS).
    /// Optional when exporting (--otlp-endpoint, --metrics-listen).
    #[arg(long)]
    collector: Option<String>,
    #[command(flatten)]
    collector_security: ClientArgs,
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
    health_file: Option<PathBuf>,
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

pub fn run(args: RunArgs) -> Result<(), Failure> {
    require_privileges()?;
    let node_name = node_name(args.node_name);
    let export = args.export.options().map_err(Failure::usage)?;
    if export.otlp_profiles.is_some() && args.probes.stack_sampling == StackSampling::Off {
        return Err(Failure::usage(
            "--otlp-profiles-endpoint needs sampled stacks: not with --stack-sampling off",
        ));
    }
    if args.collector.is_none() && export.is_empty() && !args.json {
        return Err(Failure::usage(
            "nowhere to send windows: give --collector URL, --otlp-endpoint URL or --metrics-listen ADDR",
        ));
    }
    let opts = RunOptions {
        collector: args.collector,
        collector_security: (&args.collector_security).into(),
        export,
        json: args.json,
        interval: Duration::from_secs_f64(args.interval),
        node: identity_of(node_name.clone()),
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
    let mut sampler = Sampler::start(&args.probes.load_options(), args.probes.uprobes())
        .map_err(|e| Failure::failed(&e))?;
    if !args.keep_privileges {
        // Before confining: the helper keeps the CAP_SYS_ADMIN that uprobe
        // perf events need on current kernels, and nothing else.
        match UprobeOpener::spawn() {
            Ok(Some(opener)) => sampler.open_uprobes_with(opener),
            Ok(None) => tracing::debug!(
                "no CAP_SYS_ADMIN for a uprobe helper: uprobes of runtimes that start later \
                 attach only where the kernel takes CAP_PERFMON for them"
            ),
            Err(err) => tracing::warn!(
                "{err}: uprobes of GC runtimes that start later attach only where the kernel \
                 takes CAP_PERFMON for them"
            ),
        }
        let low_port = args
            .export
            .metrics_listen
            .is_some_and(|a| a.port() != 0 && a.port() < 1024);
        match confine::confine(low_port) {
            Ok(c) => tracing::info!(
                "privileges dropped: capabilities {:#x} kept, exec forbidden",
                c.kept
            ),
            Err(err) => {
                return Err(Failure::failed_with(format!(
                    "cannot drop privileges after loading: {err} (--keep-privileges runs without dropping them)"
                )));
            }
        }
    }
    // Pods of this node, and the node's identity, both in the background:
    // collection starts without waiting for the API server or IMDS.
    let (labels_tx, labels_rx) = std::sync::mpsc::channel();
    let pods = args.kube.source(&node_name, Some(labels_tx));
    let imds = args.imds.client().map_err(Failure::usage)?;
    let identity = SharedIdentity::new(opts.node.clone());
    let labels_rx = pods.index().is_some().then_some(labels_rx);
    resolve_in_background(identity.clone(), imds, labels_rx);
    let opts = RunOptions {
        identity: Some(identity),
        pods: Some(pods),
        ..opts
    };
    tally_node::run::run(&opts, sampler).map_err(|e| Failure::failed(&e))
}
