//! The client side of the collector's `Query` service, shared by
//! `agent workloads` and `agent report`: one connection with the caller's
//! credentials, one request sequence on a current-thread runtime, and the
//! errors that go with them.
use std::{future::Future, time::Duration};

use tally_proto as pb;

use super::{ClientSecurity, CollectorChannel, TransportError};
use tally_core::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Url(#[from] TransportError),
    #[error("cannot reach the collector at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the collector at {url} answered: {status}")]
    Query { url: String, status: String },
    #[error("cannot start the client runtime: {0}")]
    Runtime(std::io::Error),
}

/// Connects to the collector at `url` and runs `queries` on the connection;
/// a status they return becomes [`QueryError::Query`]. `timeout` bounds each
/// request.
pub fn run<T, F, Fut>(
    url: &str,
    security: &ClientSecurity,
    timeout: Duration,
    queries: F,
) -> Result<T, QueryError>
where
    F: FnOnce(pb::query_client::QueryClient<CollectorChannel>) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let endpoint = security
        .endpoint(url)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(QueryError::Runtime)?;
    runtime.block_on(async {
        let channel =
            super::connect(&endpoint, security)
                .await
                .map_err(|e| QueryError::Unreachable {
                    url: url.to_owned(),
                    reason: error_chain(&e),
                })?;
        queries(pb::query_client::QueryClient::new(channel))
            .await
            .map_err(|s| QueryError::Query {
                url: url.to_owned(),
                status: format!("{:?}: {}", s.code(), s.message()),
            })
    })
}
