//! `agent top`. Batch mode (`--batch`, like `top -b`): after each
//! interval, every process that did something in it. The collection state
//! (`collect::Collector`) is apart from the rendering (`batch`), so the
//! interactive view can reuse it.
//!
//! The interactive view (without `--batch`): [`app`] holds the state
//! (with [`filter`] and [`history`]), [`rows`] turns ticks (or a collector's workloads) into rows, [`ui`]
//! draws, [`input`] maps keys, [`source`] runs the data source on its own
//! thread, [`terminal`] takes and always restores the terminal, [`live`]
//! is the loop, [`bench`] measures it.
pub mod app;
pub mod bench;
pub mod columns;
pub mod filter;
#[cfg(test)]
mod fixtures;
pub mod format;
pub mod history;
pub mod input;
pub mod live;
pub mod records;
pub mod rows;
pub mod source;
pub mod synthetic;
pub mod table;
pub mod terminal;
pub mod ui;

pub use live::{InteractiveOptions, Origin, TopError, run_interactive};

use std::{collections::HashSet, io, ops::ControlFlow, time::Duration};

use crate::{
    collect::{CollectError, Collector, Tick, driver, runtimes::UprobePolicy},
    probes::LoadOptions,
};

/// How `top --batch` runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub interval: Duration,
    /// Windows to print; `None` runs until interrupted.
    pub iterations: Option<u64>,
    pub json: bool,
    /// Only these processes, when not empty.
    pub pids: HashSet<u32>,
    /// Pod metadata of containers (`enrich::kube`), if wanted.
    pub pods: Option<crate::enrich::kube::PodSource>,
}

/// Runs batch mode until `iterations` windows are out or a signal arrives.
pub fn run_batch(
    opts: &BatchOptions,
    load: &LoadOptions,
    uprobes: UprobePolicy,
) -> Result<(), CollectError> {
    let mut collector = Collector::start(load, uprobes)?;
    if let Some(pods) = &opts.pods {
        collector.set_pods(pods.resolver());
    }
    driver::announce(&collector, opts.interval);
    let missing_hooks = collector.probes().missing.len();
    let mut stdout = io::stdout().lock();
    let mut printed = 0;
    driver::run(&mut collector, opts.interval, |tick| {
        if write_tick(&mut stdout, tick, opts, missing_hooks).is_err() {
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

fn write_tick(
    out: &mut impl io::Write,
    tick: Tick,
    opts: &BatchOptions,
    missing_hooks: usize,
) -> io::Result<()> {
    let mut windows = tick.windows;
    if !opts.pids.is_empty() {
        windows.retain(|w| opts.pids.contains(&w.key.tgid));
    }
    records::sort_windows(&mut windows);
    let containers = crate::model::containers(&windows, tick.sample_period_ns);
    if opts.json {
        for line in records::json_lines(&windows, &containers, tick.at, tick.sample_period_ns) {
            writeln!(out, "{line}")?;
        }
    } else {
        let lost = tick.new_drops.iter().sum();
        writeln!(
            out,
            "{}",
            table::table(&windows, tick.at, tick.seconds, lost, missing_hooks)
        )?;
    }
    out.flush()
}

#[cfg(test)]
pub(crate) use test_support::test_window;

#[cfg(test)]
mod test_support {
    use std::sync::Arc;

    use crate::{
        enrich::{cgroup::CgroupInfo, container},
        model::{Counters, ProcKey, Window},
    };

    /// A window for rendering tests.
    pub(crate) fn test_window(pid: u32, comm: &str, path: &str) -> Window {
        Window {
            key: ProcKey {
                tgid: pid,
                start_ticks: 500,
            },
            comm: comm.into(),
            cgroup_id: Some(99),
            cgroup: Some(Arc::new(CgroupInfo {
                id: 99,
                path: path.into(),
                container: container::parse(path),
            })),
            pod: None,
            seconds: 2.0,
            total: Counters::default(),
            delta: Counters {
                cpu_samples: 99,
                minor_faults: 2048,
                mmap_calls: 10,
                mmap_bytes: 655_360,
                ..Default::default()
            },
            cpu_seconds: 1.0,
            rss_bytes: 3 << 20,
            exited: false,
            runtime: Default::default(),
            gc_thread_samples: 0,
            gc_stack_samples: 0,
            threads: Vec::new(),
            gc_sight: Default::default(),
            verdict: None,
        }
    }
}
