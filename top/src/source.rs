//! Where the rows come from, each on a thread of its own so the view never
//! waits: a [`Source`] sends [`Update`]s and takes [`Request`]s. The view
//! knows no data path: the binary spawns the probes of this node or a
//! collector's watch stream (`agent`'s `cli::top`) as a `Source`; this
//! module has the synthetic one (the benchmark, and trying the view
//! without root).
use std::{
    collections::HashSet,
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
    rows::{self, RowId, Rows},
    synthetic::Synthetic,
};
use tally_core::{cost::live::Pricing, model::NodeIdentity};

/// How often the event ring buffer is drained between ticks (as `--batch`).
const EVENT_POLL: Duration = Duration::from_millis(100);

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
    pub fn spawn(
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
pub fn wait_until(control: &Control, until: Instant, mut between: impl FnMut()) -> bool {
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

/// Prices every row at this node's rates and says what the node is.
pub fn price_node(rows: &mut Rows, pricing: &Pricing, node: &NodeIdentity) {
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
