//! The store in PostgreSQL, shared by several collector replicas.
//!
//! The same tables as the SQLite store ([`schema`]), written the same way
//! (a batch a transaction, acknowledged after COMMIT), with what sharing
//! needs:
//! - **Dedupe in the database.** A report is inserted with
//!   `ON CONFLICT DO NOTHING RETURNING`: under READ COMMITTED a replica
//!   inserting a report another replica is inserting waits for that
//!   transaction, then gets no row back (a `Duplicate`), or inserts it if
//!   the other rolled back. Its windows and minute buckets are written only
//!   for rows the insert returned.
//! - **Ids by upsert.** Nodes and workloads are upserted with `RETURNING id`
//!   (`DO UPDATE`, so the loser of a race gets the winner's id too).
//! - **Lock order.** Every statement's rows are sorted by their key, and the
//!   statements run in one order (nodes, workloads, reports, agents,
//!   windows, pods, settings, minute tier, dirty marks): two replicas'
//!   transactions cannot wait on each other in a cycle over rows. A
//!   deadlock or serialization failure that happens anyway (40P01, 40001)
//!   retries the whole batch.
//!
//! The client is `tokio-postgres` on a runtime of the store's own (one
//! thread, the caller's): the writer and the queries call it blocking, as
//! they do SQLite.
use std::sync::Mutex;

use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls, error::SqlState};

mod read;
mod retain;
mod schema;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod write;

pub use schema::SCHEMA_VERSION;
pub use write::PgStore;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot start the PostgreSQL client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "PostgreSQL store: unexpected schema version {found} (this collector writes {SCHEMA_VERSION})"
    )]
    Schema { found: i64 },
}

impl PgError {
    /// A deadlock or serialization failure: the transaction was rolled back
    /// and may simply be run again.
    fn retryable(&self) -> bool {
        matches!(self, PgError::Db(e) if e.code().is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        }))
    }
}

/// How often a batch is retried after a deadlock or serialization failure.
const MAX_RETRIES: usize = 5;

/// One connection, and the runtime its I/O runs on.
pub(super) struct PgConn {
    rt: Runtime,
    client: Client,
    url: String,
}

impl PgConn {
    pub(super) fn connect(url: &str) -> Result<Self, PgError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let client = rt.block_on(Self::client(url))?;
        Ok(Self {
            rt,
            client,
            url: url.to_owned(),
        })
    }

    async fn client(url: &str) -> Result<Client, PgError> {
        // TLS is not built in yet: a server that requires it refuses here.
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!("PostgreSQL connection closed: {err}");
            }
        });
        Ok(client)
    }

    /// Connects again if the server closed the connection (a restart, a
    /// failover): the next call then works without restarting the collector.
    fn ensure(&mut self) -> Result<(), PgError> {
        if self.client.is_closed() {
            tracing::info!("reconnecting to PostgreSQL");
            self.client = self.rt.block_on(Self::client(&self.url))?;
        }
        Ok(())
    }
}

/// A connection for queries.
pub struct PgReader {
    conn: Mutex<PgConn>,
}

impl PgReader {
    pub fn open(url: &str) -> Result<Self, PgError> {
        Ok(Self {
            conn: Mutex::new(PgConn::connect(url)?),
        })
    }

    /// Runs `f` on the connection (reconnecting first if it was closed).
    fn with<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T, PgError>) -> Result<T, PgError> {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        conn.ensure()?;
        let PgConn { rt, client, .. } = &*conn;
        rt.block_on(f(client))
    }
}

/// Text as PostgreSQL takes it: it has no NUL character, which a process
/// name may hold.
fn pg_text(s: &str) -> String {
    s.replace('\0', "")
}
