//! The collector's durable history: one SQLite file in WAL mode, written by
//! one thread.
//!
//! Tables:
//! - `reports`: one row per stored report, unique per (node, agent instance,
//!   sequence), with the whole report (every process window) as its encoded
//!   `tally.v1.NodeReport` in `body`: the per-process record, kept compact
//!   because one blob per report costs far less than one row per process;
//! - `windows`: one row per workload per report (a container's processes
//!   summed, a process outside a container alone), its counters an encoded
//!   `tally.v1.Counters`; clustered by (workload, window end) for history;
//! - `workloads`, `nodes`: names for the integer ids used above;
//! - `agents`: per agent instance, the last stored sequence (the ack and the
//!   dedupe) and the end of its latest window;
//! - `workload_pods`: a container workload's Kubernetes names (namespace,
//!   pod, container, owner, readable in `sqlite3`) and its whole
//!   `tally.v1.PodMetadata`, as the latest report that named them; written
//!   only when they change.
//!
//! Reports are written in batches, one transaction a batch (group commit):
//! every report arriving while the previous commit syncs goes into the next
//! one, so a commit (and its fsync) is paid per batch, not per report, and a
//! report is all in or all out. Acks are sent only after the commit.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use prost::Message as _;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
use tally_proto as pb;

mod backend;
pub mod postgres;
mod reader;
mod retain;
mod schema;
pub mod tiers;
mod write;

pub use backend::{
    FleetUpdates, Location, Opened, RecentWindow, StoreReader, StoreWriter, observe_recent, open,
};
pub use reader::{Histories, Reader, Spans, StoredWindow, StoredWorkload};

use schema::SCHEMA_VERSION;

use super::{
    fleet_verdicts::{Fleet, NodeWindow},
    workload::{WorkloadId, WorkloadWindow, runtime_from_proto},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store {}: unexpected schema version {found} (this collector writes {SCHEMA_VERSION})", path.display())]
    Schema { path: PathBuf, found: i64 },
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
}

/// How hard a commit is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sync {
    /// fsync at every commit: an acknowledged report survives a power cut.
    #[default]
    Full,
    /// fsync at checkpoints only: an acknowledged report survives the
    /// collector being killed, not the machine losing power.
    Normal,
}

/// A report checked and prepared for the store (off the writer thread).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub node_name: Arc<str>,
    /// The node as the report names it (instance type, region, …): kept
    /// on the node's row, for pricing after the report itself is gone.
    pub identity: Arc<pb::NodeIdentity>,
    pub agent_instance: String,
    pub agent_start_unix_ms: i64,
    pub sequence: u64,
    pub window_start_unix_ms: i64,
    pub window_end_unix_ms: i64,
    pub processes: u32,
    /// The encoded `NodeReport`, as received.
    pub body: Bytes,
    pub windows: Vec<WorkloadWindow>,
}

impl Prepared {
    pub fn window_seconds(&self) -> f64 {
        (self.window_end_unix_ms - self.window_start_unix_ms).max(0) as f64 / 1000.0
    }
}

/// What happened to one report of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        last_stored_sequence: u64,
    },
    /// Already stored (resent after a reconnect): not stored again.
    Duplicate {
        last_stored_sequence: u64,
    },
}

impl Outcome {
    pub fn last_stored_sequence(self) -> u64 {
        match self {
            Outcome::Stored {
                last_stored_sequence,
            }
            | Outcome::Duplicate {
                last_stored_sequence,
            } => last_stored_sequence,
        }
    }
}

#[derive(Debug, Clone)]
struct AgentState {
    last_sequence: u64,
}

#[derive(Debug, Clone, Copy)]
struct WorkloadRow {
    id: i64,
    last_end_ms: i64,
    /// `last_end_ms` as the row last stored it (written by retention
    /// passes): a workload whose raw windows are gone keeps its names as
    /// long as its rolled-up history, across restarts.
    stored_end_ms: i64,
    /// Named after runc's setup stage, seen before the workload: renamed by
    /// the first window that names the workload.
    stage_name: bool,
    /// Every raw window of it was deleted by a retention pass.
    raw_gone: bool,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub reports: usize,
    pub windows: usize,
    pub workloads: usize,
    /// Buckets of the rolled-up tiers.
    pub buckets: usize,
}

/// The writer's handle: the connection and the ids it has handed out.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    nodes: HashMap<Arc<str>, i64>,
    workloads: HashMap<WorkloadId, WorkloadRow>,
    agents: HashMap<String, AgentState>,
    /// The pod metadata stored for each workload row, so that an unchanged
    /// one is not written again.
    pods: HashMap<i64, pb::PodMetadata>,
    /// The identity stored for each node row, likewise.
    identities: HashMap<i64, pb::NodeIdentity>,
    /// The batch's windows summed per minute bucket; reused.
    minutes: tiers::MinuteBuckets,
    /// The same for the runtime settings stored for each workload row.
    settings: HashMap<i64, pb::RuntimeSettings>,
    /// The `windows` rows of the batch being written, and their encoded
    /// `delta`s end to end in `deltas`; both reused from batch to batch.
    rows: Vec<WindowRow>,
    deltas: Vec<u8>,
}

/// One `windows` row, held until the batch's rows are sorted.
struct WindowRow {
    workload_id: i64,
    window_end_unix_ms: i64,
    report_id: i64,
    node_id: i64,
    window_seconds: f64,
    runtime: i32,
    processes: u32,
    rss_bytes: u64,
    /// The encoded delta: `deltas[delta.0..delta.1]`.
    delta: (usize, usize),
}

/// The database file inside the data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tally.sqlite")
}

fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    // The writer holds the lock only for a commit; readers wait that out.
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` and loads the ids
    /// and sequences it holds.
    pub fn open(data_dir: &Path, sync: Sync) -> Result<Self, StoreError> {
        let path = db_path(data_dir);
        let mut conn = open_conn(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match sync {
                Sync::Full => "FULL",
                Sync::Normal => "NORMAL",
            },
        )?;
        // The index leaves of every live workload stay hot between reports.
        conn.pragma_update(None, "cache_size", -32_768)?;
        // Checkpoint (copy the WAL into the database, and fsync it) less
        // often than the 4 MiB default: one per 64 MiB of WAL.
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(StoreError::Schema {
                path,
                found: version,
            });
        }
        schema::create_or_migrate(&mut conn)?;

        let mut store = Self {
            conn,
            path,
            nodes: HashMap::new(),
            workloads: HashMap::new(),
            agents: HashMap::new(),
            pods: HashMap::new(),
            identities: HashMap::new(),
            minutes: tiers::MinuteBuckets::default(),
            settings: HashMap::new(),
            rows: Vec::new(),
            deltas: Vec::new(),
        };
        store.load_ids()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load_ids(&mut self) -> Result<(), StoreError> {
        let mut q = self.conn.prepare("SELECT name, id, identity FROM nodes")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        })?;
        for row in rows {
            let (name, id, identity) = row?;
            self.nodes.insert(Arc::from(name), id);
            if let Some(identity) = identity.and_then(|b| pb::NodeIdentity::decode(&b[..]).ok()) {
                self.identities.insert(id, identity);
            }
        }
        let mut q = self
            .conn
            .prepare("SELECT instance, last_sequence FROM agents")?;
        let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (instance, last) = row?;
            self.agents.insert(
                instance,
                AgentState {
                    last_sequence: u64::try_from(last).unwrap_or(0),
                },
            );
        }
        let mut q = self.conn.prepare(
            "SELECT w.key, w.id,
                MAX(COALESCE((SELECT MAX(window_end_unix_ms) FROM windows WHERE workload_id = w.id), 0),
                    w.last_window_end_unix_ms),
                w.name
             FROM workloads w",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (key, id, last, name) = row?;
            // A key this version cannot parse is skipped, not fatal.
            if let Some(wid) = WorkloadId::from_db_key(&key) {
                self.workloads.insert(
                    wid,
                    WorkloadRow {
                        id,
                        last_end_ms: last.unwrap_or(0),
                        stored_end_ms: last.unwrap_or(0),
                        stage_name: tally_core::workload::is_container_runtime_stage(
                            name.as_bytes(),
                        ),
                        raw_gone: false,
                    },
                );
            }
        }
        let mut q = self
            .conn
            .prepare("SELECT workload_id, metadata FROM workload_pods")?;
        let rows = q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        for row in rows {
            let (id, meta) = row?;
            if let Ok(meta) = pb::PodMetadata::decode(&meta[..]) {
                self.pods.insert(id, meta);
            }
        }
        let mut q = self
            .conn
            .prepare("SELECT workload_id, settings FROM workload_settings")?;
        let rows = q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        for row in rows {
            let (id, settings) = row?;
            if let Ok(settings) = pb::RuntimeSettings::decode(&settings[..]) {
                self.settings.insert(id, settings);
            }
        }
        Ok(())
    }

    /// The last stored sequence of an agent instance, 0 if none.
    pub fn last_sequence(&self, agent_instance: &str) -> u64 {
        self.agents
            .get(agent_instance)
            .map_or(0, |a| a.last_sequence)
    }

    /// Rebuilds the recent state: for every workload, its recent windows on
    /// each node (what its verdict reads), and every node's latest window
    /// end.
    pub fn load_fleet(&self) -> Result<Fleet, StoreError> {
        let mut fleet = Fleet::new();
        let mut node_names: HashMap<i64, Arc<str>> = HashMap::new();
        for (name, &id) in &self.nodes {
            node_names.insert(id, name.clone());
        }
        let mut q = self.conn.prepare(
            "SELECT n.name, MAX(a.last_window_end_unix_ms)
             FROM agents a JOIN nodes n ON n.id = a.node_id GROUP BY n.name",
        )?;
        let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (node, end) = row?;
            fleet.node_reported(&node, end);
        }
        let mut names = self
            .conn
            .prepare_cached("SELECT name, cgroup_path FROM workloads WHERE id = ?1")?;
        // The newest windows of one workload, enough for two verdict
        // horizons of 1 s windows (the fleet drops what is older).
        let mut latest = self.conn.prepare_cached(
            "SELECT node_id, window_end_unix_ms, window_seconds, runtime, rss_bytes, delta
             FROM windows WHERE workload_id = ?1
             ORDER BY window_end_unix_ms DESC LIMIT 256",
        )?;
        for (wid, row) in &self.workloads {
            let Some((name, cgroup_path)) = names
                .query_row([row.id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?
            else {
                continue;
            };
            let rows = latest.query_map([row.id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, i32>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                ))
            })?;
            for w in rows {
                let (node_id, end, secs, runtime, rss, delta) = w?;
                let Some(node) = node_names.get(&node_id) else {
                    continue;
                };
                fleet.observe(
                    wid.clone(),
                    &name,
                    &cgroup_path,
                    NodeWindow {
                        node: node.clone(),
                        window_end_ms: end,
                        window_seconds: secs,
                        runtime: runtime_from_proto(runtime),
                        // A row this version cannot decode counts as empty.
                        delta: pb::Counters::decode(&delta[..]).unwrap_or_default(),
                        rss_bytes: u64::try_from(rss).unwrap_or(0),
                    },
                );
            }
            if let Some(pod) = self.pods.get(&row.id) {
                fleet.set_pod(wid, pod);
            }
            if let Some(settings) = self.settings.get(&row.id) {
                fleet.set_settings(wid, settings);
            }
        }
        Ok(fleet)
    }
}

#[cfg(test)]
mod tests;
