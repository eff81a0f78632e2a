//! What the collector needs of a store, whatever the engine: the writer
//! side (owned by the one writer thread of a replica) and the reader side
//! (queries). SQLite ([`super::Store`], [`super::Reader`]) is the embedded
//! default; PostgreSQL ([`super::postgres`]) lets several replicas share
//! one database.
use std::path::PathBuf;

use tally_proto as pb;

use super::{
    Histories, Outcome, Prepared, Reader, Removed, Spans, Store, StoreError, StoredWindow, Sync,
    tiers::{Retention, Tier},
};
use crate::{fleet_verdicts::Fleet, workload::WorkloadId};

/// Where the store is.
#[derive(Debug, Clone)]
pub enum Location {
    /// One SQLite file in this directory, this replica only.
    Sqlite { data_dir: PathBuf, sync: Sync },
    /// A PostgreSQL database (`postgres://user@host/db`), shareable by
    /// several replicas.
    Postgres { url: String },
}

impl Location {
    /// True when other replicas may write to the same store: the recent
    /// state must then be refreshed from it ([`StoreReader::fleet_updates`]).
    pub fn shared(&self) -> bool {
        matches!(self, Location::Postgres { .. })
    }
}

/// The writer side. Every method is one transaction; an error leaves the
/// store (and what the writer remembers of it) as before the call.
pub trait StoreWriter: Send {
    /// Stores a batch; one outcome per report, in order. A report already
    /// stored (by this or another replica) is a `Duplicate`, decided by the
    /// store's unique key. Returns only after the commit.
    fn write_batch(
        &mut self,
        batch: &[Prepared],
        received_unix_ms: i64,
    ) -> Result<Vec<Outcome>, StoreError>;
    /// Recomputes the hour and day buckets that writes touched.
    fn roll_up(&mut self, retention: &Retention, now_ms: i64) -> Result<usize, StoreError>;
    /// Deletes what each retention has let go.
    fn retain(&mut self, retention: &Retention, now_ms: i64) -> Result<Removed, StoreError>;
    /// The recent state, rebuilt from the store.
    fn load_fleet(&mut self) -> Result<Fleet, StoreError>;
    /// The last stored sequence of an agent instance, 0 if none.
    fn last_sequence(&mut self, agent_instance: &str) -> Result<u64, StoreError>;
    /// For logs: which store this is.
    fn describe(&self) -> String;
}

/// One stored report's windows, for refreshing a replica's recent state
/// with what other replicas stored.
#[derive(Debug, Clone)]
pub struct RecentWindow {
    pub id: WorkloadId,
    pub name: String,
    pub cgroup_path: String,
    pub pod: Option<pb::PodMetadata>,
    pub settings: Option<pb::RuntimeSettings>,
    pub window: crate::fleet_verdicts::NodeWindow,
}

/// What other replicas stored since a point in time.
#[derive(Debug, Default)]
pub struct FleetUpdates {
    pub windows: Vec<RecentWindow>,
    /// Every node that reported, with its latest window end.
    pub nodes: Vec<(String, i64)>,
}

/// A store's two sides, as [`open`] gives them.
pub type Opened = (Box<dyn StoreWriter>, Box<dyn StoreReader>);

/// Adds windows read from the store to the recent state (a window already
/// there is not added twice).
pub fn observe_recent(fleet: &mut Fleet, windows: Vec<RecentWindow>) {
    for w in windows {
        fleet.observe(w.id.clone(), &w.name, &w.cgroup_path, w.window);
        if let Some(pod) = &w.pod {
            fleet.set_pod(&w.id, pod);
        }
        if let Some(settings) = &w.settings {
            fleet.set_settings(&w.id, settings);
        }
    }
}

/// The reader side, for queries.
pub trait StoreReader: Send {
    /// A workload's windows that ended at or after `since_ms`, oldest first.
    fn history(&self, id: &WorkloadId, since_ms: i64) -> Result<Vec<StoredWindow>, StoreError>;
    /// Every node with its latest identity and the span of its reports.
    fn nodes(&self) -> Result<Vec<pb::NodeSummary>, StoreError>;
    /// Every workload's raw windows that ended at or after `since_ms`.
    fn raw_histories(&self, since_ms: i64) -> Result<Histories, StoreError>;
    /// Every workload's buckets of `tier` from `from_minute` on, summed
    /// per node ([`Span`](super::tiers::Span)).
    fn tier_spans(&self, tier: Tier, from_minute: i64) -> Result<Spans, StoreError>;
    /// The same handed over in parts of `per_part` workloads; stops when
    /// `each` returns false. (This default reads it all first; SQLite's
    /// reader reads part by part.)
    fn tier_spans_in_parts(
        &self,
        tier: Tier,
        from_minute: i64,
        per_part: usize,
        each: &mut dyn FnMut(Spans) -> bool,
    ) -> Result<(), StoreError> {
        let mut all = self.tier_spans(tier, from_minute)?.into_iter();
        loop {
            let part: Spans = all.by_ref().take(per_part.max(1)).collect();
            let last = part.is_empty();
            if last || !each(part) {
                return Ok(());
            }
        }
    }
    /// Another connection to the same store, for a long read that must not
    /// hold up the short ones.
    fn another(&self) -> Result<Box<dyn StoreReader>, StoreError>;
    /// The windows of reports received at or after `received_since_ms`
    /// that an earlier call did not hand over already (the refresh, its
    /// only caller, reads a minute of overlap each pass), and every node's
    /// latest window end, for a store other replicas write too; `None` for
    /// a store only this replica writes.
    fn fleet_updates(&self, _received_since_ms: i64) -> Result<Option<FleetUpdates>, StoreError> {
        Ok(None)
    }
}

impl StoreWriter for Store {
    fn write_batch(
        &mut self,
        batch: &[Prepared],
        received_unix_ms: i64,
    ) -> Result<Vec<Outcome>, StoreError> {
        Store::write_batch(self, batch, received_unix_ms)
    }
    fn roll_up(&mut self, retention: &Retention, now_ms: i64) -> Result<usize, StoreError> {
        Store::roll_up(self, retention, now_ms)
    }
    fn retain(&mut self, retention: &Retention, now_ms: i64) -> Result<Removed, StoreError> {
        Store::retain(self, retention, now_ms)
    }
    fn load_fleet(&mut self) -> Result<Fleet, StoreError> {
        Store::load_fleet(self)
    }
    fn last_sequence(&mut self, agent_instance: &str) -> Result<u64, StoreError> {
        Ok(Store::last_sequence(self, agent_instance))
    }
    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}

impl StoreReader for Reader {
    fn history(&self, id: &WorkloadId, since_ms: i64) -> Result<Vec<StoredWindow>, StoreError> {
        Reader::history(self, id, since_ms)
    }
    fn nodes(&self) -> Result<Vec<pb::NodeSummary>, StoreError> {
        Reader::nodes(self)
    }
    fn raw_histories(&self, since_ms: i64) -> Result<Histories, StoreError> {
        Reader::raw_histories(self, since_ms)
    }
    fn tier_spans(&self, tier: Tier, from_minute: i64) -> Result<Spans, StoreError> {
        Reader::tier_spans(self, tier, from_minute)
    }
    fn tier_spans_in_parts(
        &self,
        tier: Tier,
        from_minute: i64,
        per_part: usize,
        each: &mut dyn FnMut(Spans) -> bool,
    ) -> Result<(), StoreError> {
        Reader::tier_spans_in_parts(self, tier, from_minute, per_part, each)
    }
    fn another(&self) -> Result<Box<dyn StoreReader>, StoreError> {
        Ok(Box::new(Reader::open(&self.data_dir)?))
    }
}

/// Opens the writer and a reader of the store at `location` (creating its
/// tables if needed). Blocking: call it off the async threads.
pub fn open(location: &Location) -> Result<Opened, StoreError> {
    match location {
        Location::Sqlite { data_dir, sync } => {
            let store = Store::open(data_dir, *sync)?;
            let reader = Reader::open(data_dir)?;
            Ok((Box::new(store), Box::new(reader)))
        }
        Location::Postgres { url } => {
            let store = super::postgres::PgStore::open(url)?;
            let reader = super::postgres::PgReader::open(url)?;
            Ok((Box::new(store), Box::new(reader)))
        }
    }
}
