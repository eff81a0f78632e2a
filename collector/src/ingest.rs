//! The `Ingest` service: agents' report streams in, acks out.
//!
//! Each stream has a reader task (check and prepare each report, hand it to
//! the writer) and an acker task (await the writer's answers in order and
//! ack them), so a stream keeps many reports in flight: an agent resending an
//! hour of buffered reports after a reconnect is not held to one commit per
//! report. One writer thread owns the store and commits whatever has
//! accumulated as one transaction (see [`super::store`]), then updates the
//! latest state and tells watchers.
use std::{
    sync::{Arc, Mutex},
    thread,
};

use bytes::Bytes;
use tally_proto::{self as pb, received::ReceivedReport};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    fleet_verdicts::Fleet,
    store::{Outcome, Prepared, Removed, StoreWriter, tiers::Retention},
    validate::{self, InvalidReport, Limits},
    workload::workload_windows,
};
use crate::{
    fleet_otlp_profiles::OtlpProfiles,
    fleet_profiles::FleetProfiles,
    token_review::{self, ReviewStats},
};
use tally_transport::Caller;

/// Why a report was not taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error(transparent)]
    Invalid(#[from] InvalidReport),
    #[error(
        "field `node_name`: this client ({caller}) is not allowed to write reports for node `{node}`"
    )]
    WrongNode { node: String, caller: String },
}

impl Refusal {
    /// INVALID_ARGUMENT tells the agent this report can never be stored
    /// (it drops it); PERMISSION_DENIED that its credentials are wrong (it
    /// keeps the report and retries, so fixing them loses nothing).
    pub fn status(&self) -> Status {
        match self {
            Refusal::Invalid(_) => Status::invalid_argument(self.to_string()),
            Refusal::WrongNode { .. } => Status::permission_denied(self.to_string()),
        }
    }
}

/// Checks a report (every field, the limits, and that `caller` may write
/// for its node) and prepares it for the store: its windows summed per
/// workload, work done here on the stream's task rather than on the single
/// writer thread.
pub fn prepare(
    received: ReceivedReport,
    limits: &Limits,
    caller: &Caller,
    now_ms: i64,
) -> Result<(Prepared, Refused), Refusal> {
    let refused = validate::check(&received, limits, now_ms)?;
    let received = if refused.is_empty() {
        received
    } else {
        refuse_processes(received, &refused)?
    };
    let report = &received.view;
    let node = report.node.as_ref().ok_or(InvalidReport::NoNode)?;
    if !caller.may_write(&node.node_name) {
        return Err(Refusal::WrongNode {
            node: node.node_name.chars().take(253).collect(),
            caller: caller.describe(),
        });
    }
    let node_name: Arc<str> = Arc::from(node.node_name.as_str());
    let prepared = Prepared {
        identity: Arc::new(node.clone()),
        windows: workload_windows(&node_name, &received),
        node_name,
        agent_instance: node.agent_instance.clone(),
        agent_start_unix_ms: node.agent_start_unix_ms,
        sequence: report.sequence,
        window_start_unix_ms: report.window_start_unix_ms,
        window_end_unix_ms: report.window_end_unix_ms,
        processes: u32::try_from(report.processes.len()).unwrap_or(u32::MAX),
        body: received.bytes,
    };
    Ok((prepared, Refused::of(&refused)))
}

/// The processes of a report refused alone, as the ack tells the agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refused {
    pub processes: u32,
    /// Why the first one was, naming the process and the field.
    pub first: String,
}

impl Refused {
    fn of(refused: &[validate::RefusedProcess]) -> Self {
        Self {
            processes: u32::try_from(refused.len()).unwrap_or(u32::MAX),
            first: refused
                .first()
                .map(|r| format!("process #{}: {}", r.index, r.why))
                .unwrap_or_default(),
        }
    }
}

/// Drops the refused processes from the report, logging each (the one
/// place a refused process is seen by an operator).
fn refuse_processes(
    received: ReceivedReport,
    refused: &[validate::RefusedProcess],
) -> Result<ReceivedReport, Refusal> {
    let node = received
        .view
        .node
        .as_ref()
        .map_or("", |n| n.node_name.as_str());
    for r in refused {
        let p = &received.view.processes[r.index];
        let key = p.key.unwrap_or_default();
        tracing::warn!(
            node,
            pid = key.pid,
            start_ticks = key.start_ticks,
            "refused one process of a report (the rest is stored): {}",
            r.why
        );
    }
    let drop: Vec<usize> = refused.iter().map(|r| r.index).collect();
    received
        .without_processes(&drop)
        .map_err(|e| Refusal::Invalid(InvalidReport::Undecodable(e.to_string())))
}

/// Work for the writer thread.
pub enum Job {
    Write {
        report: Prepared,
        refused: Refused,
        reply: Reply,
    },
    /// Delete what each retention has let go as of this time (ms since
    /// the epoch).
    Retain { now_unix_ms: i64 },
    /// Recompute the hour and day buckets writes have touched.
    RollUp { now_unix_ms: i64 },
}

/// Reports one stream may have handed to the writer without an answer yet.
const IN_FLIGHT_PER_STREAM: usize = 64;
/// Most reports in one transaction, so one commit never holds the
/// answers of the first reports for long. Under saturation a batch holds
/// what arrived during the last commit; the larger it is, the more rows of
/// each workload share one leaf write (`cargo xtask bench ingest`: 128 →
/// 512 took windows per core from ~225k to ~240k). 512 reports of 200
/// processes are ~36 MiB of bodies held until their commit.
const MAX_BATCH_REPORTS: usize = 512;

pub struct IngestService {
    jobs: mpsc::Sender<Job>,
    limits: Arc<Limits>,
    /// Reports per second one stream may send (`--max-reports-per-second`);
    /// past it the stream is read more slowly, never cut: a resending agent
    /// loses nothing, a flooding client costs no more than this.
    reports_per_second: f64,
    /// With service account tokens: where a report for another node than
    /// the token's is counted.
    reviews: Option<Arc<ReviewStats>>,
}

impl IngestService {
    pub fn new(
        jobs: mpsc::Sender<Job>,
        limits: Limits,
        reports_per_second: f64,
        reviews: Option<Arc<ReviewStats>>,
    ) -> Self {
        Self {
            jobs,
            limits: Arc::new(limits),
            reports_per_second,
            reviews,
        }
    }
}

/// A token bucket: `rate` a second, bursts of `burst`.
struct Throttle {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl Throttle {
    fn new(rate: f64) -> Self {
        // A second's worth, and at least enough for an agent's backlog to
        // start flowing at once.
        let burst = rate.max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: tokio::time::Instant::now(),
        }
    }

    /// Waits until one more report may be read; returns whether it had to.
    async fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        self.tokens = (self.tokens + (now - self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return false;
        }
        let wait = (1.0 - self.tokens) / self.rate;
        tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
        self.last = tokio::time::Instant::now();
        self.tokens = 0.0;
        true
    }
}

/// What the writer answers for one report: how it was stored, and the
/// processes refused before (which the ack names).
type Reply = oneshot::Sender<Result<(Outcome, Refused), Status>>;
type Answer = oneshot::Receiver<Result<(Outcome, Refused), Status>>;

#[tonic::async_trait]
impl pb::received::server::ingest_server::Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<pb::IngestAck, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<ReceivedReport>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown peer".to_owned(), |a| a.to_string());
        // Put there by the interceptor, which refused requests without
        // valid credentials.
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no credentials checked"))?;
        let mut inbound = request.into_inner();
        let limits = self.limits.clone();
        let mut throttle = Throttle::new(self.reports_per_second);
        let (ack_tx, ack_rx) = mpsc::channel(IN_FLIGHT_PER_STREAM);
        let (answers_tx, mut answers_rx) = mpsc::channel::<Answer>(IN_FLIGHT_PER_STREAM);
        let jobs = self.jobs.clone();
        let reviews = self.reviews.clone();

        tokio::spawn(async move {
            let mut throttled = false;
            loop {
                if throttle.take().await && !throttled {
                    throttled = true;
                    tracing::warn!(
                        "stream from {peer} slowed down: limit --max-reports-per-second ({}) reached",
                        throttle.rate
                    );
                }
                let report = match inbound.message().await {
                    Ok(Some(r)) => r,
                    // The agent closed its side, or went away.
                    Ok(None) => break,
                    // A message that does not decode (or is over the size
                    // limit): the client is told why, not just cut off.
                    Err(status) => {
                        tracing::debug!("ingest stream from {peer} ended: {status}");
                        let (reply, answer) = oneshot::channel();
                        let _ = reply.send(Err(status));
                        let _ = answers_tx.send(answer).await;
                        break;
                    }
                };
                let (reply, answer) = oneshot::channel();
                match prepare(report, &limits, &caller, tally_core::time::now_unix_ms()) {
                    Ok((report, refused)) => {
                        let job = Job::Write {
                            report,
                            refused,
                            reply,
                        };
                        if jobs.send(job).await.is_err() {
                            break; // shutting down
                        }
                    }
                    Err(refusal) => {
                        tracing::warn!("refused a report from {peer}: {refusal}");
                        if let (
                            Refusal::WrongNode { .. },
                            Caller::ServiceAccount { node },
                            Some(r),
                        ) = (&refusal, &caller, &reviews)
                        {
                            r.count(if node.is_some() {
                                token_review::Outcome::WrongNode
                            } else {
                                token_review::Outcome::NoNode
                            });
                        }
                        let _ = reply.send(Err(refusal.status()));
                        let _ = answers_tx.send(answer).await;
                        break;
                    }
                }
                if answers_tx.send(answer).await.is_err() {
                    break; // the acker stopped: the agent is gone
                }
            }
        });

        tokio::spawn(async move {
            while let Some(answer) = answers_rx.recv().await {
                let ack = match answer.await {
                    Ok(Ok((outcome, refused))) => Ok(pb::IngestAck {
                        last_stored_sequence: outcome.last_stored_sequence(),
                        refused_processes: refused.processes,
                        refusal: refused.first,
                    }),
                    Ok(Err(status)) => Err(status),
                    Err(_) => Err(Status::unavailable("collector is shutting down")),
                };
                let last = ack.is_err();
                if ack_tx.send(ack).await.is_err() || last {
                    break;
                }
            }
        });

        Ok(Response::new(ReceiverStream::new(ack_rx)))
    }
}

/// Starts the writer thread; it ends when every job sender is dropped.
pub fn spawn_writer(
    store: Box<dyn StoreWriter>,
    jobs: mpsc::Receiver<Job>,
    fleet: Arc<Mutex<Fleet>>,
    watch: broadcast::Sender<Arc<pb::WatchEvent>>,
    profiles: Option<Arc<FleetProfiles>>,
    otlp_profiles: Option<OtlpProfiles>,
    retention: Retention,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("tally-store".into())
        .spawn(move || {
            writer_loop(
                store,
                jobs,
                &fleet,
                &watch,
                profiles.as_deref(),
                otlp_profiles.as_ref(),
                &retention,
            );
            if let Some(o) = &otlp_profiles
                && !o.flush(std::time::Duration::from_secs(3))
            {
                tracing::warn!("the OTLP profiles endpoint did not take every export before exit");
            }
        })
}

fn writer_loop(
    mut store: Box<dyn StoreWriter>,
    mut jobs: mpsc::Receiver<Job>,
    fleet: &Mutex<Fleet>,
    watch: &broadcast::Sender<Arc<pb::WatchEvent>>,
    profiles: Option<&FleetProfiles>,
    otlp_profiles: Option<&OtlpProfiles>,
    retention: &Retention,
) {
    let mut reports: Vec<Prepared> = Vec::new();
    let mut replies: Vec<(Reply, Refused)> = Vec::new();
    let mut retain: Option<i64> = None;
    let mut roll_up: Option<i64> = None;
    while let Some(first) = jobs.blocking_recv() {
        // Group commit: whatever arrived while the last commit ran.
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write {
                    report,
                    refused,
                    reply,
                } => {
                    reports.push(report);
                    replies.push((reply, refused));
                }
                Job::Retain { now_unix_ms } => retain = Some(now_unix_ms),
                Job::RollUp { now_unix_ms } => roll_up = Some(now_unix_ms),
            }
            if reports.len() < MAX_BATCH_REPORTS {
                next = jobs.try_recv().ok();
            }
        }
        if !reports.is_empty() {
            let stored = write(store.as_mut(), &mut reports, &mut replies, fleet, watch);
            // Stacks of the reports newly stored, never of resent ones.
            if let Some(profiles) = profiles {
                for (node, body) in &stored {
                    profiles.add_report(node, body);
                }
            }
            if let Some(otlp) = otlp_profiles {
                for (_, body) in &stored {
                    otlp.add_report(body);
                }
            }
        }
        if let Some(now) = roll_up.take() {
            let started = std::time::Instant::now();
            match store.roll_up(retention, now) {
                Ok(buckets) => tracing::debug!(
                    "roll-up: {buckets} hour and day buckets recomputed in {:?}",
                    started.elapsed()
                ),
                Err(err) => tracing::error!("roll-up pass failed: {err}"),
            }
        }
        if let Some(now) = retain.take() {
            match store.retain(retention, now) {
                Ok(removed) => {
                    let raw_ms = crate::store::tiers::millis(retention.raw);
                    lock(fleet).forget_before(now.saturating_sub(raw_ms));
                    if removed != Removed::default() {
                        tracing::info!(
                            "retention: removed {} reports, {} workload windows, {} rolled-up buckets, {} workloads",
                            removed.reports,
                            removed.windows,
                            removed.buckets,
                            removed.workloads
                        );
                    }
                }
                Err(err) => tracing::error!("retention pass failed: {err}"),
            }
        }
    }
}

fn lock(fleet: &Mutex<Fleet>) -> std::sync::MutexGuard<'_, Fleet> {
    // A panic elsewhere while holding the lock leaves a usable map.
    fleet
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(
    store: &mut dyn StoreWriter,
    reports: &mut Vec<Prepared>,
    replies: &mut Vec<(Reply, Refused)>,
    fleet: &Mutex<Fleet>,
    watch: &broadcast::Sender<Arc<pb::WatchEvent>>,
) -> Vec<(Arc<str>, Bytes)> {
    let mut stored = Vec::new();
    match store.write_batch(reports, tally_core::time::now_unix_ms()) {
        Ok(outcomes) => {
            let watched = watch.receiver_count() > 0;
            {
                let mut fleet = lock(fleet);
                for (report, outcome) in reports.drain(..).zip(&outcomes) {
                    if !matches!(outcome, Outcome::Stored { .. }) {
                        continue;
                    }
                    stored.push((report.node_name.clone(), report.body.clone()));
                    fleet.observe_report(
                        &report.node_name,
                        report.window_end_unix_ms,
                        report.window_seconds(),
                        &report.windows,
                    );
                    if !watched {
                        continue;
                    }
                    for w in &report.windows {
                        if let Some(workload) = fleet.workload(&w.id) {
                            // No receiver left is not an error.
                            let _ = watch.send(Arc::new(pb::WatchEvent {
                                workload: Some(workload),
                            }));
                        }
                    }
                }
            }
            for ((reply, refused), outcome) in replies.drain(..).zip(outcomes) {
                let _ = reply.send(Ok((outcome, refused)));
            }
        }
        Err(err) => {
            tracing::error!("cannot store {} reports: {err}", reports.len());
            reports.clear();
            for (reply, _) in replies.drain(..) {
                let _ = reply.send(Err(Status::unavailable(format!(
                    "collector could not store the report: {err}"
                ))));
            }
        }
    }
    stored
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use prost::Message as _;

    fn received(r: &pb::NodeReport) -> ReceivedReport {
        ReceivedReport::decode(Bytes::from(r.encode_to_vec())).unwrap()
    }

    fn valid() -> pb::NodeReport {
        pb::NodeReport {
            node: Some(pb::NodeIdentity {
                node_name: "n".into(),
                agent_instance: "i".into(),
                ..Default::default()
            }),
            sequence: 1,
            window_start_unix_ms: NOW - 1000,
            window_end_unix_ms: NOW,
            processes: vec![pb::ProcessWindow {
                key: Some(pb::ProcessKey::default()),
                ..Default::default()
            }],
            agent: None,
            pods: Vec::new(),
            container_pressures: Vec::new(),
        }
    }

    fn prepare_as(r: &pb::NodeReport, caller: &Caller) -> Result<Prepared, Refusal> {
        prepare(received(r), &Limits::default(), caller, NOW).map(|(p, _)| p)
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn prepare_checks_the_report_and_who_sent_it() {
        let p = prepare_as(&valid(), &Caller::AnyNode).unwrap();
        assert_eq!(p.window_seconds(), 1.0);
        assert_eq!(p.processes, 1);
        assert_eq!(pb::NodeReport::decode(&p.body[..]).unwrap(), valid());

        assert!(prepare_as(&valid(), &Caller::Node("n".into())).is_ok());
        let wrong = prepare_as(&valid(), &Caller::Node("other".into())).unwrap_err();
        assert_eq!(
            wrong,
            Refusal::WrongNode {
                node: "n".into(),
                caller: "a token bound to node `other`".into()
            }
        );
        assert_eq!(wrong.status().code(), tonic::Code::PermissionDenied);
        // A reviewed service account token: its node, else no write.
        let sa = |node: Option<&str>| Caller::ServiceAccount {
            node: node.map(str::to_owned),
        };
        assert!(prepare_as(&valid(), &sa(Some("n"))).is_ok());
        for other in [
            sa(Some("other")),
            sa(None),
            Caller::UnreviewedToken("t".into()),
        ] {
            let refusal = prepare_as(&valid(), &other).unwrap_err();
            assert_eq!(refusal.status().code(), tonic::Code::PermissionDenied);
        }

        let mut r = valid();
        r.sequence = 0;
        let invalid = prepare_as(&r, &Caller::AnyNode).unwrap_err();
        assert_eq!(invalid, Refusal::Invalid(InvalidReport::ZeroSequence));
        assert_eq!(invalid.status().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn one_bad_process_is_refused_alone() {
        let mut r = valid();
        let good = |pid: u32| pb::ProcessWindow {
            key: Some(pb::ProcessKey {
                pid,
                start_ticks: 9,
            }),
            comm: format!("p{pid}"),
            delta: Some(pb::Counters {
                cpu_seconds: 0.5,
                ..Default::default()
            }),
            ..Default::default()
        };
        r.processes = vec![good(1), good(2), good(3)];
        // A JVM's whole-life pause total in one window: past what one
        // window can hold on this node.
        r.processes[1].delta.as_mut().unwrap().gc_pause_seconds = 1e6;
        let (p, refused) =
            prepare(received(&r), &Limits::default(), &Caller::AnyNode, NOW).unwrap();
        assert_eq!(p.processes, 2);
        let stored = pb::NodeReport::decode(&p.body[..]).unwrap();
        let pids: Vec<u32> = stored
            .processes
            .iter()
            .map(|p| p.key.unwrap().pid)
            .collect();
        assert_eq!(pids, [1, 3]);
        assert_eq!(refused.processes, 1);
        assert!(
            refused.first.contains("process #1") && refused.first.contains("gc_pause_seconds"),
            "{refused:?}"
        );
        // The workloads are summed from what is kept.
        assert_eq!(p.windows.len(), 2);
        // A report-level fault still refuses the whole report.
        r.sequence = 0;
        assert!(prepare(received(&r), &Limits::default(), &Caller::AnyNode, NOW).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttle_holds_a_stream_to_its_rate() {
        let mut t = Throttle::new(10.0);
        let start = tokio::time::Instant::now();
        let mut waited = 0;
        for _ in 0..30 {
            waited += usize::from(t.take().await);
        }
        // A burst of 10 at once, then 20 at 10 a second.
        assert_eq!(waited, 20);
        let took = start.elapsed().as_secs_f64();
        assert!((1.9..2.2).contains(&took), "{took}");
    }
}
