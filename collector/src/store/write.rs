//! Writing a batch of reports: one transaction, the in-memory ids kept in
//! step with what committed.
use std::sync::Arc;

use prost::Message as _;
use rusqlite::params;

use crate::workload::{is_container_runtime_stage, runtime_to_proto, text};

use super::{
    AgentState, Outcome, Prepared, Store, StoreError, WindowRow, WorkloadId, WorkloadRow, sql_u64,
    tiers::{self, Dialect, Tier},
};

impl Store {
    /// Stores a batch in one transaction. On error nothing of the batch is
    /// stored, and the in-memory ids are as before.
    pub fn write_batch(
        &mut self,
        batch: &[Prepared],
        received_unix_ms: i64,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut new_nodes: Vec<Arc<str>> = Vec::new();
        let mut new_workloads: Vec<WorkloadId> = Vec::new();
        let mut agents_before: Vec<(String, Option<AgentState>)> = Vec::new();
        let mut ends_before: Vec<(WorkloadId, i64)> = Vec::new();
        let result = self.write_batch_inner(
            batch,
            received_unix_ms,
            &mut new_nodes,
            &mut new_workloads,
            &mut agents_before,
            &mut ends_before,
        );
        if result.is_err() {
            // The transaction rolled back: so do the ids it handed out. The
            // pods written are forgotten whole: they are written again.
            self.pods.clear();
            self.settings.clear();
            self.identities.clear();
            for n in new_nodes {
                self.nodes.remove(&n);
            }
            for w in new_workloads {
                self.workloads.remove(&w);
            }
            for (w, end) in ends_before.into_iter().rev() {
                if let Some(row) = self.workloads.get_mut(&w) {
                    row.last_end_ms = end;
                }
            }
            for (instance, before) in agents_before.into_iter().rev() {
                match before {
                    Some(a) => self.agents.insert(instance, a),
                    None => self.agents.remove(&instance),
                };
            }
        }
        result
    }

    fn write_batch_inner(
        &mut self,
        batch: &[Prepared],
        received_unix_ms: i64,
        new_nodes: &mut Vec<Arc<str>>,
        new_workloads: &mut Vec<WorkloadId>,
        agents_before: &mut Vec<(String, Option<AgentState>)>,
        ends_before: &mut Vec<(WorkloadId, i64)>,
    ) -> Result<Vec<Outcome>, StoreError> {
        // A failed batch may have left rows behind.
        self.rows.clear();
        self.deltas.clear();
        self.minutes.buckets.clear();
        let tx = self.conn.transaction()?;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut insert_node = tx.prepare_cached("INSERT INTO nodes (name) VALUES (?1)")?;
            let mut insert_report = tx.prepare_cached(
                "INSERT INTO reports (node_id, agent_instance, sequence, window_start_unix_ms,
                    window_end_unix_ms, received_unix_ms, processes, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT DO NOTHING",
            )?;
            let mut upsert_agent = tx.prepare_cached(
                "INSERT INTO agents (instance, node_id, start_unix_ms, last_sequence, last_window_end_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (instance) DO UPDATE SET
                    last_sequence = excluded.last_sequence,
                    last_window_end_unix_ms = MAX(last_window_end_unix_ms, excluded.last_window_end_unix_ms)",
            )?;
            let mut insert_workload = tx.prepare_cached(
                "INSERT INTO workloads (key, name, cgroup_path) VALUES (?1, ?2, ?3)",
            )?;
            let mut rename_workload =
                tx.prepare_cached("UPDATE workloads SET name = ?1 WHERE id = ?2")?;
            let mut upsert_settings = tx.prepare_cached(
                "INSERT INTO workload_settings (workload_id, settings, updated_unix_ms)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (workload_id) DO UPDATE SET
                    settings = excluded.settings, updated_unix_ms = excluded.updated_unix_ms",
            )?;
            let mut upsert_pod = tx.prepare_cached(
                "INSERT INTO workload_pods (workload_id, namespace, pod, container, owner_kind,
                    owner_name, metadata, updated_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (workload_id) DO UPDATE SET
                    namespace = excluded.namespace, pod = excluded.pod,
                    container = excluded.container, owner_kind = excluded.owner_kind,
                    owner_name = excluded.owner_name, metadata = excluded.metadata,
                    updated_unix_ms = excluded.updated_unix_ms",
            )?;
            let mut node_span = tx.prepare_cached(
                "UPDATE nodes SET
                    first_window_start_unix_ms = CASE
                        WHEN first_window_start_unix_ms IS NULL OR first_window_start_unix_ms > ?2 THEN ?2
                        ELSE first_window_start_unix_ms END,
                    last_window_end_unix_ms = MAX(last_window_end_unix_ms, ?3)
                 WHERE id = ?1",
            )?;
            let mut node_identity =
                tx.prepare_cached("UPDATE nodes SET identity = ?2 WHERE id = ?1")?;
            let mut upsert_minute = tx.prepare_cached(&tiers::upsert_minute(Dialect::Sqlite))?;
            let mut mark_dirty = tx.prepare_cached(&tiers::mark_dirty(Dialect::Sqlite))?;
            let mut insert_window = tx.prepare_cached(
                "INSERT INTO windows (workload_id, node_id, report_id, window_end_unix_ms,
                    window_seconds, runtime, processes, rss_bytes, delta)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;

            for r in batch {
                let last = self
                    .agents
                    .get(&r.agent_instance)
                    .map_or(0, |a| a.last_sequence);
                // Agents send in sequence order, so anything at or below the
                // last stored one was stored before (or dropped by the agent,
                // which never resends it).
                if r.sequence <= last {
                    outcomes.push(Outcome::Duplicate {
                        last_stored_sequence: last,
                    });
                    continue;
                }
                let node_id = match self.nodes.get(&r.node_name) {
                    Some(&id) => id,
                    None => {
                        insert_node.execute([&*r.node_name])?;
                        let id = tx.last_insert_rowid();
                        self.nodes.insert(r.node_name.clone(), id);
                        new_nodes.push(r.node_name.clone());
                        id
                    }
                };
                let inserted = insert_report.execute(params![
                    node_id,
                    r.agent_instance,
                    sql_u64(r.sequence),
                    r.window_start_unix_ms,
                    r.window_end_unix_ms,
                    received_unix_ms,
                    r.processes,
                    &r.body[..],
                ])?;
                // The unique key is the last line of defence against a
                // duplicate the in-memory state missed.
                if inserted == 0 {
                    outcomes.push(Outcome::Duplicate {
                        last_stored_sequence: last,
                    });
                    continue;
                }
                let report_id = tx.last_insert_rowid();
                node_span.execute(params![
                    node_id,
                    r.window_start_unix_ms,
                    r.window_end_unix_ms
                ])?;
                if self.identities.get(&node_id) != Some(&*r.identity) {
                    node_identity.execute(params![node_id, r.identity.encode_to_vec()])?;
                    self.identities.insert(node_id, (*r.identity).clone());
                }
                upsert_agent.execute(params![
                    r.agent_instance,
                    node_id,
                    r.agent_start_unix_ms,
                    sql_u64(r.sequence),
                    r.window_end_unix_ms,
                ])?;
                agents_before.push((
                    r.agent_instance.clone(),
                    self.agents.get(&r.agent_instance).cloned(),
                ));
                self.agents.insert(
                    r.agent_instance.clone(),
                    AgentState {
                        last_sequence: r.sequence,
                    },
                );

                let window_seconds = r.window_seconds();
                for w in &r.windows {
                    let workload_id = match self.workloads.get_mut(&w.id) {
                        Some(row) => {
                            if row.stage_name && !is_container_runtime_stage(&w.name) {
                                rename_workload.execute(params![text(&w.name), row.id])?;
                                row.stage_name = false;
                            }
                            row.raw_gone = false;
                            if row.last_end_ms < r.window_end_unix_ms {
                                ends_before.push((w.id.clone(), row.last_end_ms));
                                row.last_end_ms = r.window_end_unix_ms;
                            }
                            row.id
                        }
                        None => {
                            insert_workload.execute(params![
                                w.id.db_key(),
                                text(&w.name),
                                text(&w.cgroup_path)
                            ])?;
                            let id = tx.last_insert_rowid();
                            self.workloads.insert(
                                w.id.clone(),
                                WorkloadRow {
                                    id,
                                    last_end_ms: r.window_end_unix_ms,
                                    stored_end_ms: 0,
                                    stage_name: is_container_runtime_stage(&w.name),
                                    raw_gone: false,
                                },
                            );
                            new_workloads.push(w.id.clone());
                            id
                        }
                    };
                    if let Some(pod) = &w.pod
                        && self.pods.get(&workload_id) != Some(pod)
                    {
                        upsert_pod.execute(params![
                            workload_id,
                            pod.namespace,
                            pod.pod_name,
                            pod.container_name,
                            pod.owner_kind,
                            pod.owner_name,
                            pod.encode_to_vec(),
                            received_unix_ms,
                        ])?;
                        self.pods.insert(workload_id, pod.clone());
                    }
                    if let Some(settings) = &w.settings
                        && self.settings.get(&workload_id) != Some(settings)
                    {
                        upsert_settings.execute(params![
                            workload_id,
                            settings.encode_to_vec(),
                            received_unix_ms,
                        ])?;
                        self.settings.insert(workload_id, settings.clone());
                    }
                    self.minutes.add(
                        r.window_end_unix_ms,
                        workload_id,
                        node_id,
                        window_seconds,
                        w,
                    );
                    let start = self.deltas.len();
                    // Encoding into a Vec cannot fail.
                    let _ = w.delta.encode(&mut self.deltas);
                    self.rows.push(WindowRow {
                        workload_id,
                        window_end_unix_ms: r.window_end_unix_ms,
                        report_id,
                        node_id,
                        window_seconds,
                        runtime: runtime_to_proto(w.runtime) as i32,
                        processes: w.processes,
                        rss_bytes: w.rss_bytes,
                        delta: (start, self.deltas.len()),
                    });
                }
                outcomes.push(Outcome::Stored {
                    last_stored_sequence: r.sequence,
                });
            }
            // In key order: a batch holds several reports of each node, so
            // a workload's rows go into its leaf one after the other, and the
            // leaves are visited in order, not at random, once per batch.
            self.rows
                .sort_unstable_by_key(|w| (w.workload_id, w.window_end_unix_ms, w.report_id));
            let inserted = self.rows.drain(..).try_for_each(|w| {
                insert_window
                    .execute(params![
                        w.workload_id,
                        w.node_id,
                        w.report_id,
                        w.window_end_unix_ms,
                        w.window_seconds,
                        w.runtime,
                        w.processes,
                        sql_u64(w.rss_bytes),
                        &self.deltas[w.delta.0..w.delta.1],
                    ])
                    .map(drop)
            });
            self.deltas.clear();
            inserted?;
            // The minute tier, in the same transaction: in key order, as
            // for the windows.
            for (&(minute, workload_id, node_id), bucket) in &self.minutes.buckets {
                let v = bucket.values();
                let mut p: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(v.len() + 3);
                p.extend([&minute as &dyn rusqlite::ToSql, &workload_id, &node_id]);
                p.extend(v.iter().map(|x| x as &dyn rusqlite::ToSql));
                upsert_minute.execute(&p[..])?;
            }
            for hour in self.minutes.hours() {
                mark_dirty.execute(params![Tier::Hour.code(), hour])?;
            }
            self.minutes.buckets.clear();
        }
        tx.commit()?;
        Ok(outcomes)
    }
}
