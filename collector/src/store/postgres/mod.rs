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
use std::{path::PathBuf, sync::Mutex, time::Duration};

use tokio::{runtime::Runtime, task::JoinHandle};
use tokio_postgres::{Client, error::SqlState};

mod connect;
#[cfg(test)]
mod connection_tests;
mod read;
mod retain;
mod schema;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod tls;
mod write;

pub use connect::SslMode;
pub use schema::SCHEMA_VERSION;
pub use write::PgStore;

use connect::{Role, Target};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot start the PostgreSQL client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the PostgreSQL store's URL: {0}")]
    Url(String),
    #[error("the PostgreSQL store's CA bundle (sslrootcert={}): {why}", path.display())]
    Ca { path: PathBuf, why: String },
    #[error("the PostgreSQL store's TLS: {0}")]
    Tls(String),
    #[error("cannot connect to PostgreSQL {url} ({tls}): {}", causes(source))]
    Connect {
        /// Without its password.
        url: String,
        /// The sslmode, and what the server's certificate is checked
        /// against.
        tls: String,
        source: tokio_postgres::Error,
    },
    #[error(
        "PostgreSQL did not answer within {secs} s: the connection is dropped and made again on the next call"
    )]
    Deadline { secs: u64 },
    #[error("PostgreSQL: {}", causes(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "PostgreSQL store: unexpected schema version {found} (this collector writes {SCHEMA_VERSION})"
    )]
    Schema { found: i64 },
}

/// An error and its causes, `: `-separated: tokio-postgres' own text is
/// only the kind ("db error"), the server's message is its source.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
    /// The connection's I/O task, aborted when the connection is replaced.
    task: JoinHandle<()>,
    /// The URL as given (with its password): for [`PgReader::another`] only.
    url: String,
    target: Target,
    role: Role,
    /// The server's statement timeout on this connection: the client waits
    /// for a call that long plus a margin ([`connect::deadline`]).
    statement_timeout: Duration,
    /// A call gave up waiting: the connection's state is unknown, so it is
    /// made again before the next call.
    broken: bool,
}

impl PgConn {
    pub(super) fn connect(url: &str, role: Role) -> Result<Self, PgError> {
        let target = Target::parse(url)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let (client, task, statement_timeout) = rt.block_on(Self::client(&target, role))?;
        Ok(Self {
            rt,
            client,
            task,
            url: url.to_owned(),
            target,
            role,
            statement_timeout,
            broken: false,
        })
    }

    /// Connects (TLS as the URL says) and sets the role's timeouts.
    async fn client(
        target: &Target,
        role: Role,
    ) -> Result<(Client, JoinHandle<()>, Duration), PgError> {
        let limit = connect::deadline(
            target
                .config
                .get_connect_timeout()
                .copied()
                .unwrap_or(Duration::from_secs(10)),
        );
        let connecting = async {
            let (client, connection) =
                target
                    .config
                    .connect(target.tls.clone())
                    .await
                    .map_err(|source| PgError::Connect {
                        url: target.redacted.clone(),
                        tls: target.tls_described(),
                        source,
                    })?;
            let task = tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::warn!("PostgreSQL connection closed: {err}");
                }
            });
            let (sql, statement_timeout) = target.session_sql(role);
            if !sql.is_empty() {
                client.batch_execute(&sql).await?;
            }
            Ok((client, task, statement_timeout))
        };
        tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| PgError::Deadline {
                secs: limit.as_secs(),
            })?
    }

    /// Connects again if the server closed the connection (a restart, a
    /// failover) or a call gave up on it: the next call then works without
    /// restarting the collector.
    fn ensure(&mut self) -> Result<(), PgError> {
        if self.broken || self.client.is_closed() {
            tracing::info!("reconnecting to PostgreSQL {}", self.target.redacted);
            self.task.abort();
            let (client, task, statement_timeout) =
                self.rt.block_on(Self::client(&self.target, self.role))?;
            self.client = client;
            self.task = task;
            self.statement_timeout = statement_timeout;
            self.broken = false;
        }
        Ok(())
    }

    /// Runs `f` on the connection (made again first if needed), waiting at
    /// most the connection's deadline, or `statement_timeout`'s when a
    /// call raises it. A server that stops answering without closing (a
    /// failover without a FIN) then gives an error, not a hang.
    fn call<T>(
        &mut self,
        statement_timeout: Option<Duration>,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        self.ensure()?;
        let limit = connect::deadline(statement_timeout.unwrap_or(self.statement_timeout));
        let PgConn { rt, client, .. } = self;
        match rt.block_on(async { tokio::time::timeout(limit, f(client)).await }) {
            Ok(result) => result,
            Err(_) => {
                self.broken = true;
                tracing::warn!(
                    "PostgreSQL {} did not answer within {} s; reconnecting on the next call",
                    self.target.redacted,
                    limit.as_secs()
                );
                Err(PgError::Deadline {
                    secs: limit.as_secs(),
                })
            }
        }
    }
}

/// A connection for queries.
pub struct PgReader {
    conn: Mutex<PgConn>,
    /// The reports [`fleet_updates`](crate::store::StoreReader::fleet_updates)
    /// handed over in its last call: the refresh reads back a minute of
    /// overlap every couple of seconds, and only reports not handed over
    /// yet are read again, not their windows thirty times over.
    handed_over: Mutex<std::collections::HashSet<i64>>,
}

impl PgReader {
    pub fn open(url: &str) -> Result<Self, PgError> {
        Ok(Self {
            conn: Mutex::new(PgConn::connect(url, Role::Reader)?),
            handed_over: Mutex::default(),
        })
    }

    /// Runs `f` on the connection (reconnecting first if it was closed).
    fn with<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T, PgError>) -> Result<T, PgError> {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        conn.call(None, async |client: &mut Client| f(client).await)
    }
}

/// Text as PostgreSQL takes it: it has no NUL character, which a process
/// name may hold.
fn pg_text(s: &str) -> String {
    s.replace('\0', "")
}
