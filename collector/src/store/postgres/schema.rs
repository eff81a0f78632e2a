//! The PostgreSQL store's tables: those of the SQLite store (see
//! [`crate::store`]) in PostgreSQL types, plus what several replicas need:
//! a workload's stage-name flag and creation time on its row (a replica's
//! memory is not the authority), indexes for reading by time received
//! (the recent-state refresh) and by window end (retention).
use tokio_postgres::Client;

use super::PgError;
use crate::store::tiers::{self, Dialect};

/// Bumped when a table changes shape; a database of another version is
/// refused.
pub const SCHEMA_VERSION: i64 = 2;

/// Held while the tables are created, so that replicas starting together
/// do not race on `CREATE TABLE IF NOT EXISTS`.
const SCHEMA_LOCK: i64 = 0x7461_6c6c_7973_6368; // "tallysch"

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    identity BYTEA,
    first_window_start_unix_ms BIGINT,
    last_window_end_unix_ms BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS agents (
    instance TEXT PRIMARY KEY,
    node_id BIGINT NOT NULL,
    start_unix_ms BIGINT NOT NULL,
    last_sequence BIGINT NOT NULL,
    last_window_end_unix_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS reports (
    id BIGSERIAL PRIMARY KEY,
    node_id BIGINT NOT NULL,
    agent_instance TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    window_start_unix_ms BIGINT NOT NULL,
    window_end_unix_ms BIGINT NOT NULL,
    received_unix_ms BIGINT NOT NULL,
    processes BIGINT NOT NULL,
    body BYTEA NOT NULL,
    UNIQUE (node_id, agent_instance, sequence)
);
CREATE INDEX IF NOT EXISTS reports_by_end ON reports (window_end_unix_ms);
CREATE INDEX IF NOT EXISTS reports_by_received ON reports (received_unix_ms);
CREATE TABLE IF NOT EXISTS workloads (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    cgroup_path TEXT NOT NULL,
    stage_name BOOLEAN NOT NULL,
    created_unix_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS windows (
    workload_id BIGINT NOT NULL,
    window_end_unix_ms BIGINT NOT NULL,
    report_id BIGINT NOT NULL,
    node_id BIGINT NOT NULL,
    window_seconds DOUBLE PRECISION NOT NULL,
    runtime INTEGER NOT NULL,
    processes BIGINT NOT NULL,
    rss_bytes BIGINT NOT NULL,
    delta BYTEA NOT NULL,
    PRIMARY KEY (workload_id, window_end_unix_ms, report_id)
);
CREATE INDEX IF NOT EXISTS windows_by_end ON windows (window_end_unix_ms);
CREATE INDEX IF NOT EXISTS windows_by_report ON windows (report_id);
CREATE TABLE IF NOT EXISTS workload_pods (
    workload_id BIGINT PRIMARY KEY,
    namespace TEXT NOT NULL,
    pod TEXT NOT NULL,
    container TEXT NOT NULL,
    owner_kind TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    metadata BYTEA NOT NULL,
    updated_unix_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS workload_settings (
    workload_id BIGINT PRIMARY KEY,
    settings BYTEA NOT NULL,
    updated_unix_ms BIGINT NOT NULL
);
";

/// Creates the tables of a new database, or checks an existing one's
/// version, in one transaction.
pub async fn create_or_check(client: &mut Client) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(TABLES).await?;
    tx.batch_execute(&tiers::schema(Dialect::Postgres)).await?;
    // Each minute row is updated several times in its minute: room on its
    // page keeps the updates HOT (measured: −38% table size).
    tx.batch_execute("ALTER TABLE rollup_1m SET (fillfactor = 70)")
        .await?;
    let found: Option<i64> = tx
        .query_opt("SELECT MAX(version) FROM schema_version", &[])
        .await?
        .and_then(|r| r.get(0));
    match found {
        None => {
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await?;
        }
        Some(v) if v == SCHEMA_VERSION => {}
        // Version 2: the tiers keep the memory stall; a version 1
        // database's tiers gain the columns, 0 in its old buckets.
        Some(1) => {
            for (table, column) in tiers::added_columns() {
                tx.batch_execute(&format!(
                    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} BIGINT NOT NULL DEFAULT 0"
                ))
                .await?;
            }
            tx.execute("UPDATE schema_version SET version = $1", &[&SCHEMA_VERSION])
                .await?;
        }
        Some(found) => return Err(PgError::Schema { found }),
    }
    tx.commit().await?;
    Ok(())
}
