//! The `Query` service: the workloads and their verdicts (from the latest
//! classification pass), one workload's history (from the store), and a
//! watch stream of every stored window.
use std::sync::{Arc, Mutex, RwLock};

use tally_proto as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{
    fleet_verdicts::Fleet,
    store::{
        Histories, Spans, StoreError, StoreReader, StoredWorkload,
        tiers::{self, Retention},
    },
    workload::{self, WorkloadId},
};
use tally_core::gc;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("request without a workload key (a container id, or a node name and process key)")]
    NoKey,
    #[error("no workload {0}")]
    NotFound(WorkloadId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("query task failed: {0}")]
    Task(String),
}

impl From<QueryError> for Status {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::NoKey => Status::invalid_argument(e.to_string()),
            QueryError::NotFound(_) => Status::not_found(e.to_string()),
            QueryError::Store(_) | QueryError::Task(_) => Status::internal(e.to_string()),
        }
    }
}

/// Verdicts of every workload as of the latest classification pass.
pub type Snapshot = Arc<RwLock<Arc<Vec<pb::Workload>>>>;

/// Events a watcher may fall behind by before it skips ahead: a slow
/// watcher loses events, ingest never waits for it.
pub const WATCH_BACKLOG: usize = 4096;

pub struct QueryService {
    pub fleet: Arc<Mutex<Fleet>>,
    pub snapshot: Snapshot,
    pub reader: Arc<Mutex<Box<dyn StoreReader>>>,
    pub watch: broadcast::Sender<Arc<pb::WatchEvent>>,
    /// Which tier a cost history is read from depends on what is kept.
    pub retention: Retention,
}

/// Points a CostHistory message carries at most (a whole workload's never
/// split): about 1.5 MiB, under gRPC's 4 MiB default whatever the cluster.
const COST_HISTORY_POINTS: usize = 8192;
/// A span's chart entries that weigh as much as a point (12 bytes against
/// about 190).
const CHART_ENTRIES_A_POINT: usize = 16;
/// Workloads read from the store at a time for CostHistory.
const PART_WORKLOADS: usize = 256;

/// Where CostHistory's parts go: each workload named by the recent state
/// where it is still tracked (with its verdict), else by the store.
struct Parts<'a> {
    tx: &'a mpsc::Sender<Result<pb::CostHistoryChunk, Status>>,
    fleet: &'a Mutex<Fleet>,
    from_unix_ms: i64,
    bucket_seconds: u32,
    sent: bool,
}

impl Parts<'_> {
    /// Sends a part of raw windows; false once the client is gone.
    fn send(&mut self, part: Histories) -> bool {
        let workloads = self.named(part, |points| pb::WorkloadHistoryResponse {
            points,
            ..Default::default()
        });
        self.send_responses(workloads)
    }

    /// Sends a part of rolled-up spans; false once the client is gone.
    fn send_spans(&mut self, part: Spans) -> bool {
        let workloads = self.named(part, |spans| pb::WorkloadHistoryResponse {
            spans,
            ..Default::default()
        });
        self.send_responses(workloads)
    }

    /// Each history as a response naming its workload: as the recent state
    /// tracks it, else as stored, on the nodes its history names.
    fn named<T>(
        &self,
        part: Vec<(StoredWorkload, T)>,
        history: impl Fn(T) -> pb::WorkloadHistoryResponse,
    ) -> Vec<pb::WorkloadHistoryResponse> {
        let fleet = self
            .fleet
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        part.into_iter()
            .map(|(stored, h)| {
                let mut response = history(h);
                response.workload = Some(
                    fleet
                        .workload(&stored.id)
                        .unwrap_or_else(|| stored.to_proto(nodes_of(&response))),
                );
                response
            })
            .collect()
    }

    /// Sends in messages of at most [`COST_HISTORY_POINTS`] points' weight.
    fn send_responses(&mut self, workloads: Vec<pb::WorkloadHistoryResponse>) -> bool {
        let weight = |w: &pb::WorkloadHistoryResponse| {
            w.points.len()
                + w.spans
                    .iter()
                    .map(|s| 1 + s.bucket_end_unix_ms.len() / CHART_ENTRIES_A_POINT)
                    .sum::<usize>()
        };
        let mut workloads = workloads.into_iter().peekable();
        loop {
            let mut chunk = Vec::new();
            let mut points = 0;
            while let Some(w) =
                workloads.next_if(|w| chunk.is_empty() || points + weight(w) <= COST_HISTORY_POINTS)
            {
                points += weight(&w);
                chunk.push(w);
            }
            if chunk.is_empty() && self.sent {
                return true;
            }
            let msg = pb::CostHistoryChunk {
                workloads: chunk,
                from_unix_ms: self.from_unix_ms,
                bucket_seconds: self.bucket_seconds,
            };
            self.sent = true;
            if self.tx.blocking_send(Ok(msg)).is_err() {
                return false;
            }
            if workloads.peek().is_none() {
                return true;
            }
        }
    }
}

/// The nodes a history names, sorted, each once (only for a workload the
/// recent state no longer tracks: a raw history is a point per window).
fn nodes_of(h: &pb::WorkloadHistoryResponse) -> Vec<String> {
    let points = h.points.iter().map(|p| p.node_name.as_str());
    let spans = h
        .spans
        .iter()
        .filter_map(|s| Some(s.total.as_ref()?.node_name.as_str()));
    let nodes: std::collections::BTreeSet<&str> = points.chain(spans).collect();
    nodes.into_iter().map(str::to_owned).collect()
}

/// Recomputes every workload's verdict into the snapshot.
pub fn classify_all(fleet: &Mutex<Fleet>, snapshot: &Snapshot) {
    let all = fleet
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .snapshot(None);
    *snapshot
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(all);
}

fn on_node(w: &pb::Workload, node: &str) -> bool {
    node.is_empty() || w.nodes.iter().any(|n| n == node)
}

#[tonic::async_trait]
impl pb::query_server::Query for QueryService {
    async fn list_workloads(
        &self,
        request: Request<pb::ListWorkloadsRequest>,
    ) -> Result<Response<pb::ListWorkloadsResponse>, Status> {
        let node = request.into_inner().node_name;
        let all = self
            .snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let workloads = all.iter().filter(|w| on_node(w, &node)).cloned().collect();
        Ok(Response::new(pb::ListWorkloadsResponse { workloads }))
    }

    async fn workload_history(
        &self,
        request: Request<pb::WorkloadHistoryRequest>,
    ) -> Result<Response<pb::WorkloadHistoryResponse>, Status> {
        let req = request.into_inner();
        let id = req
            .key
            .as_ref()
            .and_then(WorkloadId::from_proto)
            .ok_or(QueryError::NoKey)?;
        let reader = self.reader.clone();
        let lookup = id.clone();
        let windows = tokio::task::spawn_blocking(move || {
            reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .history(&lookup, req.since_unix_ms)
        })
        .await
        .map_err(|e| QueryError::Task(e.to_string()))?
        .map_err(QueryError::from)?;
        let current = self
            .fleet
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .workload(&id);
        if current.is_none() && windows.is_empty() {
            return Err(QueryError::NotFound(id).into());
        }
        let points = windows
            .into_iter()
            .map(|w| {
                let s = workload::signals(w.runtime, w.window_seconds, &w.delta, w.rss_bytes);
                pb::WorkloadPoint {
                    window_end_unix_ms: w.window_end_unix_ms,
                    window_seconds: w.window_seconds,
                    verdict: Some(workload::verdict_to_proto(&gc::classify(&s))),
                    delta: Some(w.delta),
                    rss_bytes: w.rss_bytes,
                    node_name: w.node,
                    ..Default::default()
                }
            })
            .collect();
        Ok(Response::new(pb::WorkloadHistoryResponse {
            workload: current,
            points,
            spans: Vec::new(),
        }))
    }

    async fn list_nodes(
        &self,
        _request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let reader = self.reader.clone();
        let nodes = tokio::task::spawn_blocking(move || {
            reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .nodes()
        })
        .await
        .map_err(|e| QueryError::Task(e.to_string()))?
        .map_err(QueryError::from)?;
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    type CostHistoryStream = ReceiverStream<Result<pb::CostHistoryChunk, Status>>;

    async fn cost_history(
        &self,
        request: Request<pb::CostHistoryRequest>,
    ) -> Result<Response<Self::CostHistoryStream>, Status> {
        let since_ms = request.into_inner().since_unix_ms;
        let now_ms = tally_core::time::now_unix_ms();
        let picked = tiers::pick(since_ms, now_ms, &self.retention);
        let (from_unix_ms, bucket_seconds) = match picked {
            None => (since_ms, 0),
            Some((tier, from_minute)) => (from_minute * 60_000, tier.seconds()),
        };
        let (reader, fleet) = (self.reader.clone(), self.fleet.clone());
        let (tx, rx) = mpsc::channel(4);
        // Read, convert and send part by part on a blocking thread: the
        // client decodes one part while the next is read.
        tokio::task::spawn_blocking(move || {
            let mut out = Parts {
                tx: &tx,
                fleet: &fleet,
                from_unix_ms,
                bucket_seconds,
                sent: false,
            };
            let reader = reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .another();
            let read = reader.and_then(|reader| match picked {
                None => reader.raw_histories(since_ms).map(|h| {
                    out.send(h);
                }),
                Some((tier, from_minute)) => {
                    reader.tier_spans_in_parts(tier, from_minute, PART_WORKLOADS, &mut |h| {
                        out.send_spans(h)
                    })
                }
            });
            match read {
                // At least one message, so the client learns where it starts.
                Ok(()) if !out.sent => {
                    out.send(Vec::new());
                }
                Ok(()) => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(QueryError::from(e).into()));
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type WatchStream = ReceiverStream<Result<pb::WatchEvent, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let node = request.into_inner().node_name;
        let mut events = self.watch.subscribe();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        let wanted = event.workload.as_ref().is_some_and(|w| on_node(w, &node));
                        if wanted && tx.send(Ok((*event).clone())).await.is_err() {
                            break; // the watcher is gone
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("a watcher fell behind; skipped {n} events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
