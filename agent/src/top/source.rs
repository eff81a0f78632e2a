//! Where the rows come from, each on a thread of its own so the view never
//! waits: the probes of this node (the collection loop of `--batch`,
//! driven here so the interval can change), a collector's watch stream, or
//! synthetic processes (the benchmark, and trying the view without root).
//! Each sends [`Update`]s and takes [`Request`]s.
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, Receiver, Sender},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use tally_proto as pb;

use super::{
    rows::{self, RowId, Rows, StackSummary},
    synthetic::Synthetic,
};
use crate::{
    collect::{Collector, runtimes::UprobePolicy},
    cost::{allocation::NodeRates, live::Pricing},
    enrich::node::SharedIdentity,
    probes::{LoadOptions, StackSampling},
    report::NodeIdentity,
    transport::{ClientSecurity, CollectorChannel},
};

/// How often the event ring buffer is drained between ticks (as `--batch`).
const EVENT_POLL: Duration = Duration::from_millis(100);
/// Processes whose stacks are recorded for detail views, at most.
const MAX_PROFILED: usize = 256;
/// How often the remote view re-reads every workload (the watch stream
/// only tells about workloads that reported).
const RESYNC: Duration = Duration::from_secs(10);

pub enum Update {
    Rows(Rows),
    /// Remote: workloads' newest windows, for the charts: (row, unix
    /// seconds, point).
    Points(Vec<(RowId, f64, [f32; 5])>),
    /// Remote: a workload's stored history.
    History(RowId, Vec<(f64, [f32; 5])>),
    /// How the source is doing; empty when all is well.
    State(String),
    /// The source stopped for good.
    Failed(String),
}

pub enum Request {
    /// Record the stacks of these processes (a detail view opened).
    Profile(Vec<u32>),
    /// Fetch a workload's history (remote).
    History(RowId),
}

/// Shared with the source's thread.
#[derive(Debug)]
pub struct Control {
    interval_us: AtomicU64,
    stop: AtomicBool,
}

impl Control {
    pub fn new(interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            interval_us: AtomicU64::new(interval.as_micros() as u64),
            stop: AtomicBool::new(false),
        })
    }

    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us.load(Ordering::Relaxed))
    }

    pub fn set_interval(&self, d: Duration) {
        self.interval_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

pub struct Source {
    pub updates: Receiver<Update>,
    pub requests: Sender<Request>,
    pub control: Arc<Control>,
    handle: Option<JoinHandle<()>>,
}

impl Source {
    pub(crate) fn spawn(
        name: &str,
        interval: Duration,
        body: impl FnOnce(Arc<Control>, Sender<Update>, Receiver<Request>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let control = Control::new(interval);
        let (tx, updates) = mpsc::channel();
        let (requests, rx) = mpsc::channel();
        let c = control.clone();
        let handle = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || body(c, tx, rx))?;
        Ok(Self {
            updates,
            requests,
            control,
            handle: Some(handle),
        })
    }

    /// Asks the thread to stop and waits for it at most `wait` (it detaches
    /// the probes on its way out).
    pub fn stop(mut self, wait: Duration) {
        self.control.stop();
        let Some(handle) = self.handle.take() else {
            return;
        };
        let deadline = Instant::now() + wait;
        while !handle.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }
}

/// Sleeps until `until` in steps, calling `between` after each; false if
/// asked to stop meanwhile.
fn wait_until(control: &Control, until: Instant, mut between: impl FnMut()) -> bool {
    loop {
        if control.stopping() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        thread::sleep(EVENT_POLL.min(until - now));
        between();
    }
}

// ------------------------------------------------------------ local

/// The probes of this node, priced at `identity` (which IMDS fills in
/// from a thread of its own) with `pricing`.
pub fn local(
    load: LoadOptions,
    uprobes: UprobePolicy,
    interval: Duration,
    pricing: Pricing,
    identity: SharedIdentity,
) -> std::io::Result<Source> {
    Source::spawn("top-collect", interval, move |control, tx, rx| {
        let _ = tx.send(Update::State("loading the eBPF programs…".into()));
        let mut collector = match Collector::start(&load, uprobes) {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Update::Failed(crate::stream::error_chain(&e)));
                return;
            }
        };
        let missing = &collector.probes().missing;
        for m in missing {
            tracing::warn!("{}", m.warning());
        }
        // Stays in the header: the columns those hooks feed read 0.
        let state = match missing.first() {
            None => String::new(),
            Some(first) => format!(
                "HOOKS MISSING {} of {}: {}",
                missing.len(),
                crate::probes::HOOKS.len(),
                first.warning()
            ),
        };
        let _ = tx.send(Update::State(state));
        let stacks_on = load.stack_sampling != StackSampling::Off;
        let cpus = thread::available_parallelism().map_or(0, |n| n.get());
        let mut profiled: HashSet<u32> = HashSet::new();
        let mut last = Instant::now();
        loop {
            let proceed = wait_until(&control, last + control.interval(), || {
                collector.poll_events();
                for req in rx.try_iter() {
                    if let Request::Profile(pids) = req {
                        for pid in pids {
                            if profiled.len() < MAX_PROFILED
                                && profiled.insert(pid)
                                && let Err(e) = collector.profile(pid)
                            {
                                tracing::debug!(pid, "cannot record its stacks: {e}");
                            }
                        }
                    }
                }
            });
            if !proceed {
                return;
            }
            last = Instant::now();
            let tick = match collector.tick() {
                Ok(t) => t,
                Err(e) => {
                    let _ = tx.send(Update::Failed(crate::stream::error_chain(&e)));
                    return;
                }
            };
            let stacks = stacks_on.then(|| {
                let folded = collector.take_profiles();
                profiled
                    .iter()
                    .map(|pid| {
                        let s = folded
                            .get(pid)
                            .map(StackSummary::from_folded)
                            .unwrap_or_default();
                        (*pid, s)
                    })
                    .collect::<HashMap<u32, StackSummary>>()
            });
            for w in tick.windows.iter().filter(|w| w.exited) {
                profiled.remove(&w.key.tgid);
            }
            let mut rows = rows::local_rows(&tick, stacks.as_ref(), cpus);
            price_node(&mut rows, &pricing, &identity.get());
            if tx.send(Update::Rows(rows)).is_err() {
                return;
            }
        }
    })
}

/// Prices every row at this node's rates and says what the node is.
pub(super) fn price_node(rows: &mut Rows, pricing: &Pricing, node: &NodeIdentity) {
    let identity = pb::NodeIdentity {
        node_name: node.node_name.clone(),
        instance_type: node.instance_type.clone(),
        zone: node.zone.clone(),
        region: node.region.clone(),
        lifecycle: node.lifecycle.clone(),
        ..Default::default()
    };
    let rates = pricing.rates(Some(&identity));
    rows.price(|_| rates);
    rows.node_label = Some(pricing.describe(Some(&identity)));
}

// ------------------------------------------------------------ synthetic

/// Synthetic processes are priced like a real node's, so the view (and
/// the benchmark) shows and pays for the cost column.
pub(super) fn synthetic_node() -> (Pricing, NodeIdentity) {
    let node = NodeIdentity {
        node_name: "synthetic".into(),
        instance_type: "m6i.4xlarge".into(),
        region: "us-east-1".into(),
        lifecycle: "on-demand".into(),
        ..Default::default()
    };
    (Pricing::embedded(), node)
}

/// `processes` synthetic processes, changing every interval.
pub fn synthetic(
    processes: usize,
    interval: Duration,
    panic_after: Option<Duration>,
) -> std::io::Result<Source> {
    Source::spawn("top-synthetic", interval, move |control, tx, rx| {
        let started = Instant::now();
        let (pricing, node) = synthetic_node();
        let mut data = Synthetic::new(processes, 0x7a11_7e57);
        let mut profiled = HashSet::new();
        let mut last = Instant::now();
        // The first window at once: nothing to wait for.
        let first = data.tick(control.interval().as_secs_f64());
        let stacks = data.stacks(&profiled);
        let mut rows = rows::local_rows(&first, Some(&stacks), super::synthetic::CPUS);
        price_node(&mut rows, &pricing, &node);
        if tx.send(Update::Rows(rows)).is_err() {
            return;
        }
        loop {
            let proceed = wait_until(&control, last + control.interval(), || {
                for req in rx.try_iter() {
                    if let Request::Profile(pids) = req {
                        profiled.extend(pids);
                    }
                }
            });
            if !proceed {
                return;
            }
            if panic_after.is_some_and(|d| started.elapsed() >= d) {
                panic!("injected by --panic-after: the terminal must be given back");
            }
            let seconds = last.elapsed().as_secs_f64();
            last = Instant::now();
            let tick = data.tick(seconds);
            let stacks = data.stacks(&profiled);
            let mut rows = rows::local_rows(&tick, Some(&stacks), super::synthetic::CPUS);
            price_node(&mut rows, &pricing, &node);
            if tx.send(Update::Rows(rows)).is_err() {
                return;
            }
        }
    })
}

// ------------------------------------------------------------ remote

/// A collector's workloads, through ListWorkloads and the Watch stream.
pub fn remote(
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
    let id = crate::collector::workload::WorkloadId::from_proto(w.key.as_ref()?)?;
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
    let channel = crate::transport::connect(&endpoint, link.security)
        .await
        .map_err(|e| format!("cannot reach {url}: {}", crate::stream::error_chain(&e)))?;
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
    let Some(wid) = crate::collector::workload::WorkloadId::from_db_key(key) else {
        return;
    };
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        - (super::history::HISTORY_SECONDS * 1000.0) as i64;
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
