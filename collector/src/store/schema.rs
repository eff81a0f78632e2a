//! The SQLite store's tables, and how an older store is brought up to date.
use rusqlite::Connection;

use super::tiers::{self, Dialect};

/// Bumped when a table changes shape; a store of another version is refused.
pub const SCHEMA_VERSION: i64 = 3;

pub(super) const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
-- (Version 2 adds the node's identity and span; see MIGRATE_V1.)
CREATE TABLE IF NOT EXISTS agents (
    instance TEXT PRIMARY KEY,
    node_id INTEGER NOT NULL,
    start_unix_ms INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    last_window_end_unix_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL,
    agent_instance TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    window_start_unix_ms INTEGER NOT NULL,
    window_end_unix_ms INTEGER NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    processes INTEGER NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (node_id, agent_instance, sequence)
);
CREATE INDEX IF NOT EXISTS reports_by_end ON reports (window_end_unix_ms);
CREATE TABLE IF NOT EXISTS workloads (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    cgroup_path TEXT NOT NULL
);
-- Clustered by workload and time (WITHOUT ROWID): one B-tree to insert
-- into instead of a table and an index, and a workload's history is
-- contiguous on disk.
CREATE TABLE IF NOT EXISTS windows (
    workload_id INTEGER NOT NULL,
    window_end_unix_ms INTEGER NOT NULL,
    report_id INTEGER NOT NULL,
    node_id INTEGER NOT NULL,
    window_seconds REAL NOT NULL,
    runtime INTEGER NOT NULL,
    processes INTEGER NOT NULL,
    rss_bytes INTEGER NOT NULL,
    delta BLOB NOT NULL,
    PRIMARY KEY (workload_id, window_end_unix_ms, report_id)
) WITHOUT ROWID;
-- Added after version 1 without changing any table: older stores gain it.
CREATE TABLE IF NOT EXISTS workload_pods (
    workload_id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    pod TEXT NOT NULL,
    container TEXT NOT NULL,
    owner_kind TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    metadata BLOB NOT NULL,
    updated_unix_ms INTEGER NOT NULL
);
-- Added later the same way: the runtime settings (tally.v1.RuntimeSettings)
-- of a workload's main GC'd process, as last reported.
CREATE TABLE IF NOT EXISTS workload_settings (
    workload_id INTEGER PRIMARY KEY,
    settings BLOB NOT NULL,
    updated_unix_ms INTEGER NOT NULL
);
";

/// Version 2: the tiers (`tiers::schema`); on `nodes` what the cost report
/// prices a node by (its identity, as its latest report named it) and over
/// (the span of its reports); and on `workloads` its latest window's end:
/// all of it outlives the raw reports.
const MIGRATE_V1: &str = "
ALTER TABLE nodes ADD COLUMN identity BLOB;
ALTER TABLE nodes ADD COLUMN first_window_start_unix_ms INTEGER;
ALTER TABLE nodes ADD COLUMN last_window_end_unix_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workloads ADD COLUMN last_window_end_unix_ms INTEGER NOT NULL DEFAULT 0;
UPDATE nodes SET
    first_window_start_unix_ms = (SELECT MIN(window_start_unix_ms) FROM reports r WHERE r.node_id = nodes.id),
    last_window_end_unix_ms = COALESCE((SELECT MAX(window_end_unix_ms) FROM reports r WHERE r.node_id = nodes.id), 0);
";

/// Creates the tables of a new store, or brings one of version 1 or 2 to
/// this version, in one transaction.
pub fn create_or_migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA_V1)?;
    let has_identity: bool = tx
        .prepare("SELECT 1 FROM pragma_table_info('nodes') WHERE name = 'identity'")?
        .exists([])?;
    if !has_identity {
        // A new store or a version 1 one: the same statements.
        tx.execute_batch(MIGRATE_V1)?;
    }
    tx.execute_batch(&tiers::schema(Dialect::Sqlite))?;
    // Version 3: the tiers keep the memory stall. A version 2 store's tiers
    // gain the columns, 0 in its old buckets: no window there carried one.
    for (table, column) in tiers::added_columns() {
        let has: bool = tx
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"
            ))?
            .exists([])?;
        if !has {
            tx.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
            ))?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}
