//! `agent run`: the node daemon. Collects like `agent top`, turns each
//! window into a `NodeReport` and streams it to the collector, which may be
//! down: reports wait in the streamer's bounded buffer, collection never
//! waits for the network.
use std::{ops::ControlFlow, time::Duration};

use tally_proto as pb;

use crate::{
    collect::{CollectError, Collector, driver, runtimes::UprobePolicy},
    probes::LoadOptions,
    report::{self, NodeIdentity},
    stream::{StreamError, Streamer, StreamerConfig},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error(transparent)]
    Stream(#[from] StreamError),
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub collector: String,
    pub interval: Duration,
    pub node: NodeIdentity,
    /// Unacknowledged reports kept while the collector is unreachable.
    pub buffer_reports: usize,
}

/// Streams windows until a signal arrives, then gives the collector a few
/// seconds to take what is still buffered.
pub fn run(opts: &RunOptions, load: &LoadOptions, uprobes: UprobePolicy) -> Result<(), RunError> {
    let mut config = StreamerConfig::new(opts.collector.clone());
    config.buffer_reports = opts.buffer_reports;
    let streamer = Streamer::start(config)?;
    let mut collector = Collector::start(load, uprobes)?;
    driver::announce(&collector, opts.interval);
    tracing::info!(collector = %opts.collector, node = %opts.node.node_name, "streaming reports");
    let clock_ticks = sysconf(libc::_SC_CLK_TCK).unwrap_or(100);
    let page_size = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
    let mut last_cpu = 0.0;
    driver::run(&mut collector, opts.interval, |tick| {
        let (cpu, rss) = report::self_usage(clock_ticks, page_size);
        let stats = pb::AgentStats {
            cpu_seconds: cpu - last_cpu,
            rss_bytes: rss,
            lost_updates: tick.new_drops.iter().sum(),
            dropped_reports: 0, // the streamer fills it in
        };
        last_cpu = cpu;
        streamer.push(report::node_report(&tick, &opts.node, stats));
        ControlFlow::Continue(())
    })?;
    if !streamer.flush(Duration::from_secs(5)) {
        tracing::warn!(
            pending = streamer.pending(),
            "collector did not take every report before exit"
        );
    }
    Ok(())
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as u64)
}
