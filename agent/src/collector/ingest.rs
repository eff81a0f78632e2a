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
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use tally_proto::{self as pb, received::ReceivedReport};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    fleet::Fleet,
    store::{Outcome, Prepared, Store},
    workload::workload_windows,
};
use crate::profile::fleet::FleetProfiles;

/// Why a report was refused. The stream ends with INVALID_ARGUMENT naming it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidReport {
    #[error("report without node identity")]
    NoNode,
    #[error("report without node name")]
    EmptyNodeName,
    #[error("report without agent instance")]
    EmptyAgentInstance,
    #[error("report sequence must be 1 or more")]
    ZeroSequence,
    #[error("report sequence {0} is out of range")]
    SequenceOutOfRange(u64),
    #[error("report window ends ({end} ms) before it starts ({start} ms)")]
    WindowReversed { start: i64, end: i64 },
    #[error("process window without process key")]
    NoProcessKey,
}

/// Checks a report and prepares it for the store: its windows summed per
/// workload, work done here on the stream's task rather than on the single
/// writer thread.
pub fn prepare(received: ReceivedReport) -> Result<Prepared, InvalidReport> {
    let report = &received.view;
    let node = report.node.as_ref().ok_or(InvalidReport::NoNode)?;
    if node.node_name.is_empty() {
        return Err(InvalidReport::EmptyNodeName);
    }
    if node.agent_instance.is_empty() {
        return Err(InvalidReport::EmptyAgentInstance);
    }
    if report.sequence == 0 {
        return Err(InvalidReport::ZeroSequence);
    }
    // SQLite integers are signed.
    if i64::try_from(report.sequence).is_err() {
        return Err(InvalidReport::SequenceOutOfRange(report.sequence));
    }
    if report.window_end_unix_ms < report.window_start_unix_ms {
        return Err(InvalidReport::WindowReversed {
            start: report.window_start_unix_ms,
            end: report.window_end_unix_ms,
        });
    }
    if report.processes.iter().any(|p| p.key.is_none()) {
        return Err(InvalidReport::NoProcessKey);
    }
    let node_name: Arc<str> = Arc::from(node.node_name.as_str());
    Ok(Prepared {
        windows: workload_windows(&node_name, report),
        node_name,
        agent_instance: node.agent_instance.clone(),
        agent_start_unix_ms: node.agent_start_unix_ms,
        sequence: report.sequence,
        window_start_unix_ms: report.window_start_unix_ms,
        window_end_unix_ms: report.window_end_unix_ms,
        processes: u32::try_from(report.processes.len()).unwrap_or(u32::MAX),
        body: received.bytes,
    })
}

/// Work for the writer thread.
pub enum Job {
    Write {
        report: Prepared,
        reply: oneshot::Sender<Result<Outcome, Status>>,
    },
    /// Delete history that ended before this time (ms since the epoch).
    Retain { cutoff_unix_ms: i64 },
}

/// Reports one stream may have handed to the writer without an answer yet.
const IN_FLIGHT_PER_STREAM: usize = 64;
/// Most reports in one transaction, so one commit never holds the
/// answers of the first reports for long.
const MAX_BATCH_REPORTS: usize = 128;

pub struct IngestService {
    jobs: mpsc::Sender<Job>,
}

impl IngestService {
    pub fn new(jobs: mpsc::Sender<Job>) -> Self {
        Self { jobs }
    }
}

type Answer = oneshot::Receiver<Result<Outcome, Status>>;

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
        let mut inbound = request.into_inner();
        let (ack_tx, ack_rx) = mpsc::channel(IN_FLIGHT_PER_STREAM);
        let (answers_tx, mut answers_rx) = mpsc::channel::<Answer>(IN_FLIGHT_PER_STREAM);
        let jobs = self.jobs.clone();

        tokio::spawn(async move {
            loop {
                let report = match inbound.message().await {
                    Ok(Some(r)) => r,
                    // The agent closed its side, or went away.
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!("ingest stream from {peer} ended: {status}");
                        break;
                    }
                };
                let (reply, answer) = oneshot::channel();
                match prepare(report) {
                    Ok(report) => {
                        if jobs.send(Job::Write { report, reply }).await.is_err() {
                            break; // shutting down
                        }
                    }
                    Err(invalid) => {
                        tracing::warn!("refused a report from {peer}: {invalid}");
                        let _ = reply.send(Err(Status::invalid_argument(invalid.to_string())));
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
                    Ok(Ok(outcome)) => Ok(pb::IngestAck {
                        last_stored_sequence: outcome.last_stored_sequence(),
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

pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Starts the writer thread; it ends when every job sender is dropped.
pub fn spawn_writer(
    store: Store,
    jobs: mpsc::Receiver<Job>,
    fleet: Arc<Mutex<Fleet>>,
    watch: broadcast::Sender<Arc<pb::WatchEvent>>,
    profiles: Option<Arc<FleetProfiles>>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("tally-store".into())
        .spawn(move || writer_loop(store, jobs, &fleet, &watch, profiles.as_deref()))
}

fn writer_loop(
    mut store: Store,
    mut jobs: mpsc::Receiver<Job>,
    fleet: &Mutex<Fleet>,
    watch: &broadcast::Sender<Arc<pb::WatchEvent>>,
    profiles: Option<&FleetProfiles>,
) {
    let mut reports: Vec<Prepared> = Vec::new();
    let mut replies: Vec<oneshot::Sender<Result<Outcome, Status>>> = Vec::new();
    let mut retain: Option<i64> = None;
    while let Some(first) = jobs.blocking_recv() {
        // Group commit: whatever arrived while the last commit ran.
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write { report, reply } => {
                    reports.push(report);
                    replies.push(reply);
                }
                Job::Retain { cutoff_unix_ms } => retain = Some(cutoff_unix_ms),
            }
            if reports.len() < MAX_BATCH_REPORTS {
                next = jobs.try_recv().ok();
            }
        }
        if !reports.is_empty() {
            let stored = write(&mut store, &mut reports, &mut replies, fleet, watch);
            // Stacks of the reports newly stored, never of resent ones.
            if let Some(profiles) = profiles {
                for (node, body) in &stored {
                    profiles.add_report(node, body);
                }
            }
        }
        if let Some(cutoff) = retain.take() {
            match store.remove_before(cutoff) {
                Ok(removed) => {
                    lock(fleet).forget_before(cutoff);
                    if removed.reports > 0 || removed.windows > 0 {
                        tracing::info!(
                            "retention: removed {} reports, {} workload windows, {} workloads",
                            removed.reports,
                            removed.windows,
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
    store: &mut Store,
    reports: &mut Vec<Prepared>,
    replies: &mut Vec<oneshot::Sender<Result<Outcome, Status>>>,
    fleet: &Mutex<Fleet>,
    watch: &broadcast::Sender<Arc<pb::WatchEvent>>,
) -> Vec<(Arc<str>, Bytes)> {
    let mut stored = Vec::new();
    match store.write_batch(reports, now_unix_ms()) {
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
            for (reply, outcome) in replies.drain(..).zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(err) => {
            tracing::error!("cannot store {} reports: {err}", reports.len());
            reports.clear();
            for reply in replies.drain(..) {
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
            window_start_unix_ms: 1000,
            window_end_unix_ms: 2000,
            processes: vec![pb::ProcessWindow {
                key: Some(pb::ProcessKey::default()),
                ..Default::default()
            }],
            agent: None,
        }
    }

    #[test]
    fn prepare_checks_the_basics() {
        let p = prepare(received(&valid())).unwrap();
        assert_eq!(p.window_seconds(), 1.0);
        assert_eq!(p.processes, 1);
        assert_eq!(pb::NodeReport::decode(&p.body[..]).unwrap(), valid());

        let mut r = valid();
        r.node.as_mut().unwrap().node_name.clear();
        assert_eq!(
            prepare(received(&r)).unwrap_err(),
            InvalidReport::EmptyNodeName
        );
        let mut r = valid();
        r.sequence = 0;
        assert_eq!(
            prepare(received(&r)).unwrap_err(),
            InvalidReport::ZeroSequence
        );
        let mut r = valid();
        r.sequence = u64::MAX;
        assert!(matches!(
            prepare(received(&r)),
            Err(InvalidReport::SequenceOutOfRange(_))
        ));
        let mut r = valid();
        r.window_end_unix_ms = 0;
        assert!(matches!(
            prepare(received(&r)),
            Err(InvalidReport::WindowReversed { .. })
        ));
        let mut r = valid();
        r.node = None;
        assert_eq!(prepare(received(&r)).unwrap_err(), InvalidReport::NoNode);
        let mut r = valid();
        r.processes[0].key = None;
        assert_eq!(
            prepare(received(&r)).unwrap_err(),
            InvalidReport::NoProcessKey
        );
    }
}
