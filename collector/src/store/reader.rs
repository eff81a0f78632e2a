//! Reads for queries: a read-only connection, which WAL lets read while
//! the writer writes.
use std::path::Path;

use prost::Message as _;
use rusqlite::{Connection, OpenFlags, params};
use tally_proto as pb;

use super::{StoreError, db_path, open_conn};
use tally_core::workload::{WorkloadId, runtime_from_proto};

/// One stored window of a workload, for history.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWindow {
    pub node: String,
    pub window_end_unix_ms: i64,
    pub window_seconds: f64,
    pub runtime: tally_core::gc::Runtime,
    pub delta: pb::Counters,
    pub rss_bytes: u64,
}

/// A read-only connection for queries.
pub struct Reader {
    conn: Connection,
}

impl Reader {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let conn = open_conn(
            &db_path(data_dir),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(Self { conn })
    }

    /// A workload's windows that ended at or after `since_ms`, oldest first.
    pub fn history(&self, id: &WorkloadId, since_ms: i64) -> Result<Vec<StoredWindow>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT n.name, w.window_end_unix_ms, w.window_seconds, w.runtime, w.rss_bytes, w.delta
             FROM windows w
             JOIN workloads k ON k.id = w.workload_id
             JOIN nodes n ON n.id = w.node_id
             WHERE k.key = ?1 AND w.window_end_unix_ms >= ?2
             ORDER BY w.window_end_unix_ms, n.name",
        )?;
        let rows = q.query_map(params![id.db_key(), since_ms], |r| {
            Ok(StoredWindow {
                node: r.get(0)?,
                window_end_unix_ms: r.get(1)?,
                window_seconds: r.get(2)?,
                runtime: runtime_from_proto(r.get(3)?),
                rss_bytes: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                delta: pb::Counters::decode(&r.get::<_, Vec<u8>>(5)?[..]).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every node as its latest stored report named it, with the span of
    /// its stored reports: the identity (instance type, region, lifecycle)
    /// is kept in the report bodies, so no table of its own is needed.
    pub fn nodes(&self) -> Result<Vec<pb::NodeSummary>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT r.body, s.first_start, s.last_end
             FROM (SELECT node_id, MAX(id) AS latest, MIN(window_start_unix_ms) AS first_start,
                          MAX(window_end_unix_ms) AS last_end
                   FROM reports GROUP BY node_id) s
             JOIN reports r ON r.id = s.latest",
        )?;
        let rows = q.query_map([], |r| {
            let body: Vec<u8> = r.get(0)?;
            Ok(pb::NodeSummary {
                identity: pb::NodeReport::decode(&body[..])
                    .ok()
                    .and_then(|report| report.node),
                first_window_start_unix_ms: r.get(1)?,
                last_window_end_unix_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
