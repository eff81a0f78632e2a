//! `agent run`: the node daemon. Collects like `agent top`, turns each
//! window into a `NodeReport` and streams it to the collector, which may be
//! down: reports wait in the streamer's bounded buffer, collection never
//! waits for the network. The same windows can go to OTLP and Prometheus
//! (`export`), with or without a collector.
use std::{io::Write as _, ops::ControlFlow, time::Duration};

use tally_proto as pb;

use crate::{
    collect::{CollectError, Collector, driver, stacks::take_stacks},
    export::{ExportError, ExportOptions, NodeExporter},
    probes::StackSampling,
    report::{self, NodeIdentity},
    stream::{StreamError, Streamer, StreamerConfig},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Export(#[from] ExportError),
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// None: no collector (export only).
    pub collector: Option<String>,
    /// TLS and credentials for the collector.
    pub collector_security: crate::transport::ClientSecurity,
    pub interval: Duration,
    pub node: NodeIdentity,
    /// Unacknowledged reports kept while the collector is unreachable.
    pub buffer_reports: usize,
    pub export: ExportOptions,
    /// Also print every window on stdout as `agent top --batch --json`
    /// does (the same records).
    pub json: bool,
    /// The node identity as resolved in the background (IMDS, node labels):
    /// each report takes the latest; `node` until then, or if `None`.
    pub identity: Option<crate::enrich::node::SharedIdentity>,
    /// Pod metadata of containers (`enrich::kube`).
    pub pods: Option<crate::enrich::kube::PodSource>,
    /// Rewritten after every window (`agent health`, the pod's probes).
    pub health_file: Option<std::path::PathBuf>,
    /// Reports carry the sampled user stacks (`profile::wire`).
    pub send_stacks: bool,
    /// What the probes were loaded to sample.
    pub stack_sampling: StackSampling,
}

/// Streams windows until a signal arrives, then gives the collector a few
/// seconds to take what is still buffered.
/// `collector` is started (its programs loaded) by the caller, which may
/// drop privileges before this starts the other threads.
pub fn run(opts: &RunOptions, mut collector: Collector) -> Result<(), RunError> {
    let streamer = match &opts.collector {
        Some(url) => {
            let mut config = StreamerConfig::new(url.clone());
            config.buffer_reports = opts.buffer_reports;
            config.security = opts.collector_security.clone();
            Some(Streamer::start(config)?)
        }
        None => None,
    };
    let mut exporter = (!opts.export.is_empty())
        .then(|| NodeExporter::start(&opts.export, &opts.node))
        .transpose()?;
    if let Some(pods) = &opts.pods {
        collector.set_pods(pods.resolver());
    }
    // Reports carry the sampled stacks, from which the collector writes CPU
    // profiles: asked for, since they make reports (and the store) larger.
    let stacks =
        (opts.send_stacks && streamer.is_some() && opts.stack_sampling != StackSampling::Off)
            .then(|| collector.record_all_profiles());
    driver::announce(&collector, opts.interval);
    if let Some(url) = &opts.collector {
        tracing::info!(collector = %url, node = %opts.node.node_name, "streaming reports");
    }
    let clock_ticks = sysconf(libc::_SC_CLK_TCK).unwrap_or(100);
    let page_size = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
    let mut last_cpu = 0.0;
    let mut stdout = std::io::stdout().lock();
    driver::run(&mut collector, opts.interval, |tick| {
        let (cpu, rss) = report::self_usage(clock_ticks, page_size);
        // The identity as resolved so far (IMDS and node labels arrive in
        // the background).
        let node = opts
            .identity
            .as_ref()
            .map_or_else(|| opts.node.clone(), |i| i.get());
        if let Some(exporter) = exporter.as_mut() {
            let stream = streamer.as_ref().map_or_else(Default::default, |s| {
                crate::export::series::StreamTotals {
                    dropped_reports: s.dropped_reports(),
                    refused_processes: s.refused_processes(),
                }
            });
            exporter.on_tick(&tick, &node, cpu, rss, stream);
        }
        if opts.json {
            let mut windows = tick.windows.clone();
            crate::top::records::sort_windows(&mut windows);
            let containers = crate::model::containers(&windows, tick.sample_period_ns);
            for line in crate::top::records::json_lines(
                &windows,
                &containers,
                tick.at,
                tick.sample_period_ns,
            ) {
                let _ = writeln!(stdout, "{line}");
            }
            let _ = stdout.flush();
        }
        let stats = pb::AgentStats {
            cpu_seconds: cpu - last_cpu,
            rss_bytes: rss,
            lost_updates: tick.new_drops.iter().sum(),
            dropped_reports: 0, // the streamer fills it in
        };
        last_cpu = cpu;
        if let Some(streamer) = &streamer {
            let mut report = report::node_report(&tick, &node, stats);
            if let Some(sink) = &stacks {
                crate::profile::wire::attach(&mut report, take_stacks(sink.clone()));
            }
            streamer.push(report);
        }
        if let Some(path) = &opts.health_file
            && let Err(e) = crate::health::touch(path)
        {
            tracing::warn!("cannot write the health file {}: {e}", path.display());
        }
        ControlFlow::Continue(())
    })?;
    if let Some(streamer) = &streamer
        && !streamer.flush(Duration::from_secs(5))
    {
        tracing::warn!(
            pending = streamer.pending(),
            "collector did not take every report before exit"
        );
    }
    if let Some(exporter) = &exporter
        && !exporter.flush(Duration::from_secs(5))
    {
        tracing::warn!("the OTLP endpoint did not take every export before exit");
    }
    Ok(())
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as u64)
}
