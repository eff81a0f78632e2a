//! `agent run`: the node daemon. Collects like `agent top`, turns each
//! window into a `NodeReport` and streams it to the collector, which may be
//! down: reports wait in the streamer's bounded buffer, collection never
//! waits for the network. The same windows can go to OTLP and Prometheus
//! (`export`), with or without a collector.
use std::{io::Write as _, ops::ControlFlow, time::Duration};

use tally_proto as pb;

use tally_core::{encode, model::NodeIdentity};
use tally_export::{ExportError, ExportOptions, NodeExporter};

use crate::{
    collect::{CollectError, Sampler, driver, procfs::self_usage, stacks::take_stacks},
    probes::StackSampling,
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
    pub collector_security: tally_transport::ClientSecurity,
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
pub fn run(opts: &RunOptions, mut sampler: Sampler) -> Result<(), RunError> {
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
        sampler.set_pods(pods.resolver());
    }
    // Reports carry the sampled stacks, from which the collector writes CPU
    // profiles: asked for, since they make reports (and the store) larger.
    // The OTLP profiles exporter takes the same stacks.
    let send_stacks = opts.send_stacks && streamer.is_some();
    let export_stacks = exporter.as_ref().is_some_and(NodeExporter::wants_stacks);
    let stacks = ((send_stacks || export_stacks) && opts.stack_sampling != StackSampling::Off)
        .then(|| sampler.record_all_profiles());
    driver::announce(&sampler, opts.interval);
    if let Some(url) = &opts.collector {
        tracing::info!(collector = %url, node = %opts.node.node_name, "streaming reports");
    }
    let clock_ticks = tally_core::procstat::clock_ticks();
    let page_size = tally_core::procstat::page_size();
    let mut last_cpu = 0.0;
    let mut stdout = std::io::stdout().lock();
    driver::run(&mut sampler, opts.interval, |tick| {
        let (cpu, rss) = self_usage(clock_ticks, page_size);
        // The identity as resolved so far (IMDS and node labels arrive in
        // the background).
        let node = opts
            .identity
            .as_ref()
            .map_or_else(|| opts.node.clone(), |i| i.get());
        // Each window's stacks, taken once for both consumers.
        let (to_export, to_report) = match stacks.as_ref().map(|s| take_stacks(s.clone())) {
            Some(t) if export_stacks && send_stacks => (Some(t.clone()), Some(t)),
            Some(t) if export_stacks => (Some(t), None),
            t => (None, t),
        };
        if let Some(exporter) = exporter.as_mut() {
            if let Some(t) = to_export {
                exporter.on_stacks(&tick, t);
            }
            let stream = streamer.as_ref().map_or_else(Default::default, |s| {
                tally_export::series::StreamTotals {
                    dropped_reports: s.dropped_reports(),
                    refused_processes: s.refused_processes(),
                }
            });
            exporter.on_tick(&tick, &node, cpu, rss, stream);
        }
        if opts.json {
            let mut windows = tick.windows.clone();
            tally_core::records::sort_windows(&mut windows);
            let containers = tally_core::model::containers(&windows);
            for line in tally_core::records::json_lines(&windows, &containers, tick.at) {
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
            let mut report = encode::node_report(&tick, &node, stats);
            if let Some(t) = to_report {
                tally_export::profile::wire::attach(&mut report, t);
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
