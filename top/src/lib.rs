//! `agent top`'s view. Batch mode (`--batch`, like `top -b`): after each
//! interval, every process that did something in it ([`write_tick`]). The
//! data path is not here: the binary drives the node's sampler (or a
//! collector client) and hands ticks or a [`source::Source`] to the view.
//!
//! The interactive view (without `--batch`): [`app`] holds the state
//! (with [`filter`] and [`history`]), [`rows`] turns ticks (or a collector's workloads) into rows, [`ui`]
//! draws, [`input`] maps keys, [`source`] runs the data source on its own
//! thread, [`terminal`] takes and always restores the terminal, [`live`]
//! is the loop, `bench` (feature `bench`) measures it.
pub mod app;
#[cfg(feature = "bench")]
pub mod bench;
pub mod columns;
pub mod filter;
#[cfg(test)]
mod fixtures;
pub mod format;
pub mod history;
pub mod input;
pub mod live;
pub mod rows;
pub mod source;
pub mod synthetic;
pub mod table;
pub mod terminal;
pub mod ui;

pub use live::{InteractiveOptions, TopError, check_terminal, run_interactive};

use std::{collections::HashSet, io};

use tally_core::{model::Tick, records};

/// What `top --batch` prints of each tick.
#[derive(Debug, Clone, Default)]
pub struct BatchView {
    pub json: bool,
    /// Only these processes, when not empty.
    pub pids: HashSet<u32>,
}

/// Writes one tick as `top --batch` prints it: a table, or `--json` lines.
pub fn write_tick(
    out: &mut impl io::Write,
    tick: Tick,
    opts: &BatchView,
    missing_hooks: table::HooksMissing,
) -> io::Result<()> {
    let mut windows = tick.windows;
    if !opts.pids.is_empty() {
        windows.retain(|w| opts.pids.contains(&w.key.tgid));
    }
    records::sort_windows(&mut windows);
    let containers = tally_core::model::containers(&windows);
    if opts.json {
        for line in records::json_lines(&windows, &containers, tick.at) {
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
