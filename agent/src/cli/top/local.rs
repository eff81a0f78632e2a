//! `agent top`'s rows from this node's probes: the collection loop of
//! `--batch`, on the view's source thread so the interval can change.
use std::{
    collections::{HashMap, HashSet},
    thread,
    time::{Duration, Instant},
};

use tally_core::{cost::live::Pricing, error_chain};
use tally_node::{
    collect::{Sampler, runtimes::UprobePolicy},
    enrich::node::SharedIdentity,
    probes::{HOOKS, LoadOptions, StackSampling},
};
use tally_top::{
    rows::{self, StackSummary},
    source::{Request, Source, Update, price_node, wait_until},
};

/// Processes whose stacks are recorded for detail views, at most.
const MAX_PROFILED: usize = 256;

/// The probes of this node, priced at `identity` (which IMDS fills in
/// from a thread of its own) with `pricing`.
pub fn spawn(
    load: LoadOptions,
    uprobes: UprobePolicy,
    interval: Duration,
    pricing: Pricing,
    identity: SharedIdentity,
) -> std::io::Result<Source> {
    Source::spawn("top-collect", interval, move |control, tx, rx| {
        let _ = tx.send(Update::State("loading the eBPF programs…".into()));
        let mut collector = match Sampler::start(&load, uprobes) {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Update::Failed(error_chain(&e)));
                return;
            }
        };
        let missing = &collector.probes().missing;
        for m in missing {
            tracing::warn!("{}", m.warning());
        }
        // Stays in the header: the columns those hooks feed read 0.
        let state = match missing.first() {
            None => String::new(),
            Some(first) => format!(
                "HOOKS MISSING {} of {}: {}",
                missing.len(),
                HOOKS.len(),
                first.warning()
            ),
        };
        let _ = tx.send(Update::State(state));
        let stacks_on = load.stack_sampling != StackSampling::Off;
        let cpus = thread::available_parallelism().map_or(0, |n| n.get());
        let mut profiled: HashSet<u32> = HashSet::new();
        let mut last = Instant::now();
        loop {
            let proceed = wait_until(&control, last + control.interval(), || {
                collector.poll_events();
                for req in rx.try_iter() {
                    if let Request::Profile(pids) = req {
                        for pid in pids {
                            if profiled.len() < MAX_PROFILED
                                && profiled.insert(pid)
                                && let Err(e) = collector.profile(pid)
                            {
                                tracing::debug!(pid, "cannot record its stacks: {e}");
                            }
                        }
                    }
                }
            });
            if !proceed {
                return;
            }
            last = Instant::now();
            let tick = match collector.tick() {
                Ok(t) => t,
                Err(e) => {
                    let _ = tx.send(Update::Failed(error_chain(&e)));
                    return;
                }
            };
            let stacks = stacks_on.then(|| {
                let folded = collector.take_profiles();
                profiled
                    .iter()
                    .map(|pid| {
                        let s = folded
                            .get(pid)
                            .map(StackSummary::from_folded)
                            .unwrap_or_default();
                        (*pid, s)
                    })
                    .collect::<HashMap<u32, StackSummary>>()
            });
            for w in tick.windows.iter().filter(|w| w.exited) {
                profiled.remove(&w.key.tgid);
            }
            let mut rows = rows::local_rows(&tick, stacks.as_ref(), cpus);
            price_node(&mut rows, &pricing, &identity.get());
            if tx.send(Update::Rows(rows)).is_err() {
                return;
            }
        }
    })
}
