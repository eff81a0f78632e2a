//! Writing a batch of reports in one transaction (see the module's doc for
//! the lock order and the dedupe).
use std::collections::{BTreeMap, HashMap};

use prost::Message as _;
use tally_proto as pb;
use tokio_postgres::Transaction;

use super::{MAX_RETRIES, PgConn, PgError, connect::Role, pg_text, schema};
use crate::{
    store::{
        Outcome, Prepared, Removed, StoreError, StoreWriter, sql_u64,
        tiers::{self, Retention, Tier},
    },
    workload::{WorkloadId, is_container_runtime_stage, runtime_to_proto, text},
};

/// A workload's id, as this replica last learned it.
#[derive(Debug, Clone, Copy)]
pub(super) struct CachedWorkload {
    pub id: i64,
    /// Named after runc's setup stage: renamed by the first window naming
    /// the workload (in the database, whichever replica sees it).
    pub stage_name: bool,
}

/// The writer's handle. What it remembers (ids, the pods and settings it
/// wrote) only saves statements; the database decides everything else.
pub struct PgStore {
    pub(super) conn: PgConn,
    pub(super) workloads: HashMap<WorkloadId, CachedWorkload>,
    pub(super) pods: HashMap<i64, pb::PodMetadata>,
    pub(super) settings: HashMap<i64, pb::RuntimeSettings>,
}

impl PgStore {
    /// Connects, creates the tables if needed (or checks their version).
    pub fn open(url: &str) -> Result<Self, PgError> {
        let mut conn = PgConn::connect(url, Role::Writer)?;
        conn.call(None, async |client| schema::create_or_check(client).await)?;
        Ok(Self {
            conn,
            workloads: HashMap::new(),
            pods: HashMap::new(),
            settings: HashMap::new(),
        })
    }

    /// Forgets what a rolled-back transaction may have taught: learned
    /// again on the next batch.
    pub(super) fn forget(&mut self) {
        self.workloads.clear();
        self.pods.clear();
        self.settings.clear();
    }

    /// Runs `f` in a transaction, retried on deadlock or serialization
    /// failure (after the rollback; a retry sees the other transaction's
    /// rows, so what it stored comes back as duplicates).
    pub(super) fn transact<T>(
        &mut self,
        f: impl AsyncFnMut(&mut Transaction<'_>, &mut Caches<'_>) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        self.transact_within(None, f)
    }

    /// [`Self::transact`], with the statement timeout raised to
    /// `statement_timeout` in this transaction (`SET LOCAL`) when given, and
    /// the client's deadline with it.
    pub(super) fn transact_within<T>(
        &mut self,
        statement_timeout: Option<std::time::Duration>,
        mut f: impl AsyncFnMut(&mut Transaction<'_>, &mut Caches<'_>) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        // A statement timeout the URL sets is the user's: kept.
        let statement_timeout =
            statement_timeout.filter(|_| !self.conn.target.user_sets("statement_timeout"));
        let mut attempt = 0;
        loop {
            let mut caches = Caches {
                workloads: &mut self.workloads,
                pods: &mut self.pods,
                settings: &mut self.settings,
            };
            let result = self.conn.call(statement_timeout, async |client| {
                let mut tx = client.transaction().await?;
                if let Some(limit) = statement_timeout {
                    tx.batch_execute(&format!(
                        "SET LOCAL statement_timeout = '{}ms'",
                        limit.as_millis()
                    ))
                    .await?;
                }
                let out = f(&mut tx, &mut caches).await?;
                // Acknowledged only once this returns: an error here (or
                // the deadline) leaves the reports unacknowledged, and the
                // agents send them again (stored once, by their key).
                tx.commit().await?;
                Ok::<_, PgError>(out)
            });
            match result {
                Ok(out) => return Ok(out),
                Err(err) => {
                    self.forget();
                    if err.retryable() && attempt < MAX_RETRIES {
                        attempt += 1;
                        tracing::debug!("retrying a store transaction: {err}");
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }
}

pub(super) struct Caches<'a> {
    pub workloads: &'a mut HashMap<WorkloadId, CachedWorkload>,
    pub pods: &'a mut HashMap<i64, pb::PodMetadata>,
    pub settings: &'a mut HashMap<i64, pb::RuntimeSettings>,
}

const UPSERT_NODES: &str = "
INSERT INTO nodes (name, identity, first_window_start_unix_ms, last_window_end_unix_ms)
SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::int8[], $4::int8[])
ON CONFLICT (name) DO UPDATE SET
    identity = CASE WHEN excluded.last_window_end_unix_ms >= nodes.last_window_end_unix_ms
                    THEN excluded.identity ELSE nodes.identity END,
    first_window_start_unix_ms = LEAST(COALESCE(nodes.first_window_start_unix_ms,
        excluded.first_window_start_unix_ms), excluded.first_window_start_unix_ms),
    last_window_end_unix_ms = GREATEST(nodes.last_window_end_unix_ms, excluded.last_window_end_unix_ms)
RETURNING id, name";

const UPSERT_WORKLOADS: &str = "
INSERT INTO workloads (key, name, cgroup_path, stage_name, created_unix_ms)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $5::int8[])
ON CONFLICT (key) DO UPDATE SET
    name = CASE WHEN workloads.stage_name AND NOT excluded.stage_name
                THEN excluded.name ELSE workloads.name END,
    stage_name = workloads.stage_name AND excluded.stage_name
RETURNING id, key, stage_name";

const INSERT_REPORTS: &str = "
INSERT INTO reports (node_id, agent_instance, sequence, window_start_unix_ms,
    window_end_unix_ms, received_unix_ms, processes, body)
SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::int8[],
    $6::int8[], $7::int8[], $8::bytea[])
ON CONFLICT DO NOTHING
RETURNING id, node_id, agent_instance, sequence";

const UPSERT_AGENTS: &str = "
INSERT INTO agents (instance, node_id, start_unix_ms, last_sequence, last_window_end_unix_ms)
SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[])
ON CONFLICT (instance) DO UPDATE SET
    node_id = excluded.node_id,
    start_unix_ms = excluded.start_unix_ms,
    last_sequence = GREATEST(agents.last_sequence, excluded.last_sequence),
    last_window_end_unix_ms = GREATEST(agents.last_window_end_unix_ms, excluded.last_window_end_unix_ms)";

const INSERT_WINDOWS: &str = "
INSERT INTO windows (workload_id, window_end_unix_ms, report_id, node_id, window_seconds,
    runtime, processes, rss_bytes, delta)
SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::float8[],
    $6::int4[], $7::int8[], $8::int8[], $9::bytea[])";

const UPSERT_PODS: &str = "
INSERT INTO workload_pods (workload_id, namespace, pod, container, owner_kind, owner_name,
    metadata, updated_unix_ms)
SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::bytea[], $8::int8[])
ON CONFLICT (workload_id) DO UPDATE SET
    namespace = excluded.namespace, pod = excluded.pod, container = excluded.container,
    owner_kind = excluded.owner_kind, owner_name = excluded.owner_name,
    metadata = excluded.metadata, updated_unix_ms = excluded.updated_unix_ms";

const UPSERT_SETTINGS: &str = "
INSERT INTO workload_settings (workload_id, settings, updated_unix_ms)
SELECT * FROM UNNEST($1::int8[], $2::bytea[], $3::int8[])
ON CONFLICT (workload_id) DO UPDATE SET
    settings = excluded.settings, updated_unix_ms = excluded.updated_unix_ms";

pub(super) const MARK_DIRTY: &str = "
INSERT INTO rollup_dirty (tier, bucket_minute)
SELECT $1::int8, b FROM UNNEST($2::int8[]) AS b
ON CONFLICT DO NOTHING";

/// One `windows` row: workload, window end, report, node, seconds,
/// runtime, processes, RSS, encoded delta.
type WindowRow = (i64, i64, i64, i64, f64, i32, i64, i64, Vec<u8>);

/// A node's part of a batch: its span, and its identity as the batch's
/// latest report names it.
struct NodeRow<'a> {
    identity: &'a pb::NodeIdentity,
    first_start: i64,
    last_end: i64,
}

async fn write_batch(
    tx: &mut Transaction<'_>,
    caches: &mut Caches<'_>,
    batch: &[Prepared],
    received_unix_ms: i64,
) -> Result<Vec<Outcome>, PgError> {
    // Nodes, by name.
    let mut nodes: BTreeMap<&str, NodeRow<'_>> = BTreeMap::new();
    for r in batch {
        let row = nodes.entry(&r.node_name).or_insert(NodeRow {
            identity: &r.identity,
            first_start: r.window_start_unix_ms,
            last_end: r.window_end_unix_ms,
        });
        row.first_start = row.first_start.min(r.window_start_unix_ms);
        if r.window_end_unix_ms >= row.last_end {
            row.last_end = r.window_end_unix_ms;
            row.identity = &r.identity;
        }
    }
    let names: Vec<String> = nodes.keys().map(|n| pg_text(n)).collect();
    let identities: Vec<Vec<u8>> = nodes.values().map(|n| n.identity.encode_to_vec()).collect();
    let firsts: Vec<i64> = nodes.values().map(|n| n.first_start).collect();
    let lasts: Vec<i64> = nodes.values().map(|n| n.last_end).collect();
    let mut node_ids: HashMap<String, i64> = HashMap::new();
    for row in tx
        .query(UPSERT_NODES, &[&names, &identities, &firsts, &lasts])
        .await?
    {
        node_ids.insert(row.get(1), row.get(0));
    }
    let node_id = |name: &str| node_ids.get(&pg_text(name)).copied().unwrap_or(0);

    // Workloads not known yet, or to rename from a stage name, by key.
    let mut wanted: BTreeMap<String, (&WorkloadId, String, String, bool)> = BTreeMap::new();
    for w in batch.iter().flat_map(|r| &r.windows) {
        let stage = is_container_runtime_stage(&w.name);
        let cached = caches.workloads.get(&w.id);
        if cached.is_some_and(|c| !c.stage_name || stage) {
            continue;
        }
        let entry = wanted.entry(w.id.db_key()).or_insert_with(|| {
            (
                &w.id,
                pg_text(&text(&w.name)),
                pg_text(&text(&w.cgroup_path)),
                stage,
            )
        });
        if entry.3 && !stage {
            entry.1 = pg_text(&text(&w.name));
            entry.3 = false;
        }
    }
    if !wanted.is_empty() {
        let keys: Vec<&String> = wanted.keys().collect();
        let names: Vec<&String> = wanted.values().map(|v| &v.1).collect();
        let paths: Vec<&String> = wanted.values().map(|v| &v.2).collect();
        let stages: Vec<bool> = wanted.values().map(|v| v.3).collect();
        let created = vec![received_unix_ms; keys.len()];
        for row in tx
            .query(
                UPSERT_WORKLOADS,
                &[&keys, &names, &paths, &stages, &created],
            )
            .await?
        {
            let key: String = row.get(1);
            if let Some((id, ..)) = wanted.get(&key) {
                caches.workloads.insert(
                    (*id).clone(),
                    CachedWorkload {
                        id: row.get(0),
                        stage_name: row.get(2),
                    },
                );
            }
        }
    }

    // Reports, by (node, instance, sequence); one of each key.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| {
        let r = &batch[i];
        (node_id(&r.node_name), &r.agent_instance, r.sequence)
    });
    order.dedup_by_key(|&mut i| {
        let r = &batch[i];
        (node_id(&r.node_name), &r.agent_instance, r.sequence)
    });
    let instances: Vec<String> = order
        .iter()
        .map(|&i| pg_text(&batch[i].agent_instance))
        .collect();
    let col = |f: &dyn Fn(&Prepared) -> i64| -> Vec<i64> {
        order.iter().map(|&i| f(&batch[i])).collect()
    };
    let report_nodes = col(&|r| node_id(&r.node_name));
    let sequences = col(&|r| sql_u64(r.sequence));
    let starts = col(&|r| r.window_start_unix_ms);
    let ends = col(&|r| r.window_end_unix_ms);
    let received = col(&|_| received_unix_ms);
    let processes = col(&|r| i64::from(r.processes));
    let bodies: Vec<&[u8]> = order.iter().map(|&i| &batch[i].body[..]).collect();
    let mut stored: HashMap<(i64, String, i64), i64> = HashMap::new();
    for row in tx
        .query(
            INSERT_REPORTS,
            &[
                &report_nodes,
                &instances,
                &sequences,
                &starts,
                &ends,
                &received,
                &processes,
                &bodies,
            ],
        )
        .await?
    {
        stored.insert((row.get(1), row.get(2), row.get(3)), row.get(0));
    }
    // The report id of each report of the batch this transaction stored.
    let mut report_ids: Vec<Option<i64>> = vec![None; batch.len()];
    for (i, r) in batch.iter().enumerate() {
        let key = (
            node_id(&r.node_name),
            pg_text(&r.agent_instance),
            sql_u64(r.sequence),
        );
        // `remove`: a second copy of a report in the batch is a duplicate.
        report_ids[i] = stored.remove(&key);
    }
    let outcomes: Vec<Outcome> = batch
        .iter()
        .zip(&report_ids)
        .map(|(r, id)| match id {
            Some(_) => Outcome::Stored {
                last_stored_sequence: r.sequence,
            },
            // Stored before, by this replica or another: acknowledged as
            // stored, never stored twice.
            None => Outcome::Duplicate {
                last_stored_sequence: r.sequence,
            },
        })
        .collect();
    let kept = || {
        batch
            .iter()
            .zip(&report_ids)
            .filter_map(|(r, id)| id.map(|id| (r, id)))
    };

    // Agents, by instance: the batch's latest of each.
    let mut agents: BTreeMap<String, (i64, i64, i64, i64)> = BTreeMap::new();
    for (r, _) in kept() {
        let a = agents.entry(pg_text(&r.agent_instance)).or_insert((
            node_id(&r.node_name),
            r.agent_start_unix_ms,
            0,
            0,
        ));
        if sql_u64(r.sequence) >= a.2 {
            *a = (
                node_id(&r.node_name),
                r.agent_start_unix_ms,
                sql_u64(r.sequence),
                a.3.max(r.window_end_unix_ms),
            );
        }
        a.3 = a.3.max(r.window_end_unix_ms);
    }
    if !agents.is_empty() {
        let inst: Vec<&String> = agents.keys().collect();
        let v =
            |f: fn(&(i64, i64, i64, i64)) -> i64| -> Vec<i64> { agents.values().map(f).collect() };
        tx.execute(
            UPSERT_AGENTS,
            &[&inst, &v(|a| a.0), &v(|a| a.1), &v(|a| a.2), &v(|a| a.3)],
        )
        .await?;
    }

    // Windows, the minute buckets, pods and settings.
    let mut minutes = tiers::MinuteBuckets::default();
    let mut rows: Vec<WindowRow> = Vec::new();
    let mut pods: BTreeMap<i64, pb::PodMetadata> = BTreeMap::new();
    let mut settings: BTreeMap<i64, pb::RuntimeSettings> = BTreeMap::new();
    for (r, report_id) in kept() {
        let node = node_id(&r.node_name);
        let seconds = r.window_seconds();
        for w in &r.windows {
            let Some(workload) = caches.workloads.get(&w.id).map(|c| c.id) else {
                continue;
            };
            minutes.add(r.window_end_unix_ms, workload, node, seconds, w);
            rows.push((
                workload,
                r.window_end_unix_ms,
                report_id,
                node,
                seconds,
                runtime_to_proto(w.runtime) as i32,
                i64::from(w.processes),
                sql_u64(w.rss_bytes),
                w.delta.encode_to_vec(),
            ));
            if let Some(pod) = &w.pod
                && caches.pods.get(&workload) != Some(pod)
            {
                pods.insert(workload, pod.clone());
            }
            if let Some(s) = &w.settings
                && caches.settings.get(&workload) != Some(s)
            {
                settings.insert(workload, s.clone());
            }
        }
    }
    if !rows.is_empty() {
        rows.sort_by_key(|w| (w.0, w.1, w.2));
        tx.execute(
            INSERT_WINDOWS,
            &[
                &rows.iter().map(|w| w.0).collect::<Vec<_>>(),
                &rows.iter().map(|w| w.1).collect::<Vec<_>>(),
                &rows.iter().map(|w| w.2).collect::<Vec<_>>(),
                &rows.iter().map(|w| w.3).collect::<Vec<_>>(),
                &rows.iter().map(|w| w.4).collect::<Vec<_>>(),
                &rows.iter().map(|w| w.5).collect::<Vec<_>>(),
                &rows.iter().map(|w| w.6).collect::<Vec<_>>(),
                &rows.iter().map(|w| w.7).collect::<Vec<_>>(),
                &rows.iter().map(|w| &w.8[..]).collect::<Vec<_>>(),
            ],
        )
        .await?;
    }
    if !pods.is_empty() {
        let s = |f: fn(&pb::PodMetadata) -> &str| -> Vec<String> {
            pods.values().map(|p| pg_text(f(p))).collect()
        };
        tx.execute(
            UPSERT_PODS,
            &[
                &pods.keys().copied().collect::<Vec<_>>(),
                &s(|p| &p.namespace),
                &s(|p| &p.pod_name),
                &s(|p| &p.container_name),
                &s(|p| &p.owner_kind),
                &s(|p| &p.owner_name),
                &pods.values().map(|p| p.encode_to_vec()).collect::<Vec<_>>(),
                &vec![received_unix_ms; pods.len()],
            ],
        )
        .await?;
    }
    if !settings.is_empty() {
        tx.execute(
            UPSERT_SETTINGS,
            &[
                &settings.keys().copied().collect::<Vec<_>>(),
                &settings
                    .values()
                    .map(|s| s.encode_to_vec())
                    .collect::<Vec<_>>(),
                &vec![received_unix_ms; settings.len()],
            ],
        )
        .await?;
    }
    // The minute tier, in the same transaction, by key.
    if !minutes.buckets.is_empty() {
        let mut columns: Vec<Vec<i64>> = vec![Vec::new(); tiers::COLUMN_COUNT + 3];
        for (&(minute, workload, node), bucket) in &minutes.buckets {
            columns[0].push(minute);
            columns[1].push(workload);
            columns[2].push(node);
            for (i, v) in bucket.values().into_iter().enumerate() {
                columns[i + 3].push(v);
            }
        }
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = columns
            .iter()
            .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        tx.execute(&tiers::upsert_minute_unnest(), &params).await?;
        let hours: Vec<i64> = minutes.hours().into_iter().collect();
        tx.execute(MARK_DIRTY, &[&Tier::Hour.code(), &hours])
            .await?;
    }
    // Remembered once committed (a rollback forgets all).
    caches.pods.extend(pods);
    caches.settings.extend(settings);
    Ok(outcomes)
}

impl StoreWriter for PgStore {
    fn write_batch(
        &mut self,
        batch: &[Prepared],
        received_unix_ms: i64,
    ) -> Result<Vec<Outcome>, StoreError> {
        Ok(self
            .transact(async |tx, caches| write_batch(tx, caches, batch, received_unix_ms).await)?)
    }

    fn roll_up(&mut self, retention: &Retention, now_ms: i64) -> Result<usize, StoreError> {
        Ok(self.roll_up_pass(retention, now_ms)?)
    }

    fn retain(&mut self, retention: &Retention, now_ms: i64) -> Result<Removed, StoreError> {
        Ok(self.retain_pass(retention, now_ms)?)
    }

    fn load_fleet(&mut self) -> Result<crate::fleet_verdicts::Fleet, StoreError> {
        Ok(self
            .conn
            .call(None, async |client| super::read::load_fleet(client).await)?)
    }

    fn last_sequence(&mut self, agent_instance: &str) -> Result<u64, StoreError> {
        let instance = pg_text(agent_instance);
        let last: Option<i64> = self
            .conn
            .call(None, async |client| {
                Ok(client
                    .query_opt(
                        "SELECT last_sequence FROM agents WHERE instance = $1",
                        &[&instance],
                    )
                    .await?)
            })?
            .map(|r| r.get(0));
        Ok(last.map_or(0, |l| u64::try_from(l).unwrap_or(0)))
    }

    fn describe(&self) -> String {
        self.conn.target.redacted.clone()
    }
}
