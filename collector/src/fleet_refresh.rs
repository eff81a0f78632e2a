//! With several replicas on one shared store (PostgreSQL), each replica's
//! recent state ([`Fleet`]) sees only what it ingested itself. Before each
//! classification pass, it is topped up from the store with what any
//! replica stored since the last pass.
//!
//! Guarantees: the refresh reads the windows of every report *received*
//! (stamped by the replica that stored it, before its transaction) at or
//! after the start of the previous refresh minus [`OVERLAP`]. A report whose
//! transaction commits within `OVERLAP` of the time its replica stamped
//! (replica clocks' skew included) is in every replica's recent state by
//! the classification pass after its commit, so ListWorkloads and verdicts
//! agree across replicas within one classify interval. The store hands
//! over each report once, even though the overlap covers it for a minute
//! of passes (PostgreSQL's reader remembers the reports of its last call:
//! with a 2 s interval, the windows would otherwise be read 31 times).
//! Windows seen twice (the replica's own) are not counted twice: the fleet
//! keeps one window per (workload, node, window end). A report committed
//! later than that (a replica stalled mid-transaction for over a minute) is
//! missed by the other replicas' recent state until they restart; the
//! store, histories and cost reports still have it.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{fleet_verdicts::Fleet, store::StoreReader};

/// How far back each refresh reads before the previous one started.
pub const OVERLAP: Duration = Duration::from_secs(60);

pub struct FleetRefresh {
    reader: Arc<Mutex<Box<dyn StoreReader>>>,
    /// Reports received from here on are read by the next refresh.
    since_ms: i64,
}

impl FleetRefresh {
    /// `loaded_at_ms`: when the fleet was loaded from the store.
    pub fn new(reader: Arc<Mutex<Box<dyn StoreReader>>>, loaded_at_ms: i64) -> Self {
        Self {
            reader,
            since_ms: loaded_at_ms,
        }
    }

    pub fn run(&mut self, fleet: &Mutex<Fleet>) {
        let started = tally_core::time::now_unix_ms();
        let overlap = i64::try_from(OVERLAP.as_millis()).unwrap_or(i64::MAX);
        let read = self
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fleet_updates(self.since_ms.saturating_sub(overlap));
        let crate::store::FleetUpdates { windows, nodes } = match read {
            Ok(Some(updates)) => updates,
            Ok(None) => return,
            Err(err) => {
                // The next pass reads from the same point.
                tracing::warn!("cannot refresh the recent state from the store: {err}");
                return;
            }
        };
        let mut fleet = fleet
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (node, end) in nodes {
            fleet.node_reported(&node, end);
        }
        crate::store::observe_recent(&mut fleet, windows);
        self.since_ms = started;
    }
}
