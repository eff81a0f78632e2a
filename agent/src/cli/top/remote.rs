//! `agent top --collector`'s rows: a collector's workloads, through
//! ListWorkloads and the Watch stream, each priced at its node's rates.
use std::{
    collections::HashMap,
    sync::{
        Arc,
        mpsc::{Receiver, Sender},
    },
    time::{Duration, Instant},
};

use tally_core::{
    cost::{allocation::NodeRates, live::Pricing},
    error_chain,
};
use tally_proto as pb;
use tally_top::{
    rows::{self, RowId},
    source::{Control, Request, Source, Update},
};
use tally_transport::{ClientSecurity, CollectorChannel};

/// How often the remote view re-reads every workload (the watch stream
/// only tells about workloads that reported).
const RESYNC: Duration = Duration::from_secs(10);

/// A collector's workloads, through ListWorkloads and the Watch stream.
pub fn spawn(
    url: String,
    security: ClientSecurity,
    pricing: Pricing,
    interval: Duration,
) -> std::io::Result<Source> {
    Source::spawn("top-watch", interval, move |control, tx, rx| {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Update::Failed(format!(
                    "cannot start the client runtime: {e}"
                )));
                return;
            }
        };
        let link = Link {
            url: &url,
            security: &security,
            pricing: &pricing,
        };
        runtime.block_on(watch_loop(&link, &control, &tx, &rx));
    })
}

/// How the remote source reaches and prices the collector's workloads.
struct Link<'a> {
    url: &'a str,
    security: &'a ClientSecurity,
    pricing: &'a Pricing,
}

async fn watch_loop(
    link: &Link<'_>,
    control: &Control,
    tx: &Sender<Update>,
    rx: &Receiver<Request>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        if control.stopping() {
            return;
        }
        let _ = tx.send(Update::State(format!("connecting to {}…", link.url)));
        match watch_session(link, control, tx, rx).await {
            Ok(()) => return,
            Err(e) => {
                let _ = tx.send(Update::State(format!(
                    "collector: {e}; retrying in {:.1}s",
                    backoff.as_secs_f64()
                )));
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if control.stopping() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn workload_key(w: &pb::Workload) -> Option<RowId> {
    let id = tally_core::workload::WorkloadId::from_proto(w.key.as_ref()?)?;
    Some(RowId::Workload(Arc::from(id.db_key())))
}

fn point_of(w: &pb::Workload) -> Option<(RowId, f64, [f32; 5])> {
    let entry = rows::workload_entry(w)?;
    Some((
        entry.id.clone(),
        w.last_seen_unix_ms as f64 / 1000.0,
        entry.point(),
    ))
}

async fn watch_session(
    link: &Link<'_>,
    control: &Control,
    tx: &Sender<Update>,
    rx: &Receiver<Request>,
) -> Result<(), String> {
    let url = link.url;
    let endpoint = link
        .security
        .endpoint(url)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5));
    let channel = tally_transport::connect(&endpoint, link.security)
        .await
        .map_err(|e| format!("cannot reach {url}: {}", error_chain(&e)))?;
    let mut client = pb::query_client::QueryClient::new(channel);
    let status = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
    let mut state: HashMap<RowId, pb::Workload> = HashMap::new();
    let list = |client: &mut pb::query_client::QueryClient<CollectorChannel>| {
        let mut client = client.clone();
        async move {
            client
                .list_workloads(pb::ListWorkloadsRequest::default())
                .await
                .map(|r| r.into_inner().workloads)
        }
    };
    let mut rates = node_rates(&mut client, link.pricing).await;
    let mut rates_at = Instant::now();
    for w in list(&mut client).await.map_err(status)? {
        if let Some(k) = workload_key(&w) {
            state.insert(k, w);
        }
    }
    let mut stream = client
        .watch(pb::WatchRequest::default())
        .await
        .map_err(status)?
        .into_inner();
    let _ = tx.send(Update::State(String::new()));
    let mut points: Vec<(RowId, f64, [f32; 5])> = state.values().filter_map(point_of).collect();
    let mut dirty = true;
    let mut last_sent = Instant::now() - Duration::from_secs(3600);
    let mut last_list = Instant::now();
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(event)) => {
                    if let Some(w) = event.workload
                        && let Some(k) = workload_key(&w)
                    {
                        points.extend(point_of(&w));
                        state.insert(k, w);
                        dirty = true;
                    }
                }
                Ok(None) => return Err("the watch stream ended".into()),
                Err(s) => return Err(status(s)),
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if control.stopping() {
            return Ok(());
        }
        for req in rx.try_iter() {
            if let Request::History(id) = req {
                history(&mut client, &id, tx).await;
            }
        }
        if last_list.elapsed() >= RESYNC {
            last_list = Instant::now();
            let all = list(&mut client).await.map_err(status)?;
            rates = node_rates(&mut client, link.pricing).await;
            rates_at = Instant::now();
            state.clear();
            for w in all {
                if let Some(k) = workload_key(&w) {
                    points.extend(point_of(&w));
                    state.insert(k, w);
                }
            }
            dirty = true;
        }
        if dirty && last_sent.elapsed() >= control.interval() {
            last_sent = Instant::now();
            dirty = false;
            let _ = tx.send(Update::Points(std::mem::take(&mut points)));
            // A node that joined since the last ListNodes: ask again (at
            // most every 2 s), so its workloads are priced at once.
            let unknown_node = state
                .values()
                .any(|w| w.nodes.first().is_some_and(|n| !rates.contains_key(n)));
            if unknown_node && rates_at.elapsed() >= Duration::from_secs(2) {
                rates = node_rates(&mut client, link.pricing).await;
                rates_at = Instant::now();
            }
            let all: Vec<&pb::Workload> = state.values().collect();
            let mut rows = rows::remote_rows(&all);
            // A workload on two nodes is priced at its first.
            rows.price(|e| rates.get(e.node.split(',').next()?).copied().flatten());
            if tx.send(Update::Rows(rows)).is_err() {
                return Ok(());
            }
        }
    }
}

/// Every node's rates, by name (`None`: not priced). An older collector
/// without ListNodes leaves the rows unpriced.
async fn node_rates(
    client: &mut pb::query_client::QueryClient<CollectorChannel>,
    pricing: &Pricing,
) -> HashMap<String, Option<NodeRates>> {
    match client.list_nodes(pb::ListNodesRequest {}).await {
        Ok(resp) => resp
            .into_inner()
            .nodes
            .iter()
            .filter_map(|n| n.identity.as_ref())
            .map(|i| (i.node_name.clone(), pricing.rates(Some(i))))
            .collect(),
        Err(s) => {
            tracing::debug!("ListNodes: {}", s.message());
            HashMap::new()
        }
    }
}

/// The last five minutes of one workload, for its charts.
async fn history(
    client: &mut pb::query_client::QueryClient<CollectorChannel>,
    id: &RowId,
    tx: &Sender<Update>,
) {
    let RowId::Workload(key) = id else { return };
    let Some(wid) = tally_core::workload::WorkloadId::from_db_key(key) else {
        return;
    };
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        - (tally_top::history::HISTORY_SECONDS * 1000.0) as i64;
    let req = pb::WorkloadHistoryRequest {
        key: Some(wid.to_proto()),
        since_unix_ms: since,
    };
    match tokio::time::timeout(Duration::from_secs(5), client.workload_history(req)).await {
        Ok(Ok(resp)) => {
            let points = resp
                .into_inner()
                .points
                .iter()
                .map(|p| (p.window_end_unix_ms as f64 / 1000.0, rows::history_point(p)))
                .collect();
            let _ = tx.send(Update::History(id.clone(), points));
        }
        Ok(Err(s)) => tracing::debug!("workload history: {}", s.message()),
        Err(_) => tracing::debug!("workload history: timed out"),
    }
}
