//! Reads for queries: a read-only connection, which WAL lets read while
//! the writer writes.
use std::{collections::HashMap, path::Path};

use prost::Message as _;
use rusqlite::{Connection, OpenFlags, params};
use tally_proto as pb;

use super::{
    StoreError, db_path, open_conn,
    tiers::{self, Rollup, Span, Tier},
};
use tally_core::workload::{WorkloadId, runtime_from_proto};

/// One stored window of a workload, for history.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWindow {
    pub node: String,
    pub window_end_unix_ms: i64,
    pub window_seconds: f64,
    pub runtime: tally_core::gc::Runtime,
    pub delta: pb::Counters,
    pub rss_bytes: u64,
}

/// A read-only connection for queries.
pub struct Reader {
    conn: Connection,
    pub(super) data_dir: std::path::PathBuf,
}

impl Reader {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let conn = open_conn(
            &db_path(data_dir),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(Self {
            conn,
            data_dir: data_dir.to_owned(),
        })
    }

    /// A workload's windows that ended at or after `since_ms`, oldest first.
    pub fn history(&self, id: &WorkloadId, since_ms: i64) -> Result<Vec<StoredWindow>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT n.name, w.window_end_unix_ms, w.window_seconds, w.runtime, w.rss_bytes, w.delta
             FROM windows w
             JOIN workloads k ON k.id = w.workload_id
             JOIN nodes n ON n.id = w.node_id
             WHERE k.key = ?1 AND w.window_end_unix_ms >= ?2
             ORDER BY w.window_end_unix_ms, n.name",
        )?;
        let rows = q.query_map(params![id.db_key(), since_ms], |r| {
            Ok(StoredWindow {
                node: r.get(0)?,
                window_end_unix_ms: r.get(1)?,
                window_seconds: r.get(2)?,
                runtime: runtime_from_proto(r.get(3)?),
                rss_bytes: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                delta: pb::Counters::decode(&r.get::<_, Vec<u8>>(5)?[..]).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every node as its latest stored report named it, with the span of
    /// its reports: kept on the node's row, so both outlive the reports.
    pub fn nodes(&self) -> Result<Vec<pb::NodeSummary>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT identity, COALESCE(first_window_start_unix_ms, 0), last_window_end_unix_ms FROM nodes
             WHERE last_window_end_unix_ms > 0",
        )?;
        let rows = q.query_map([], |r| {
            let identity: Option<Vec<u8>> = r.get(0)?;
            Ok(pb::NodeSummary {
                identity: identity.and_then(|b| pb::NodeIdentity::decode(&b[..]).ok()),
                first_window_start_unix_ms: r.get(1)?,
                last_window_end_unix_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A workload as the store names it, for histories that outlive its
/// verdict (a workload gone from the recent state).
#[derive(Debug, Clone)]
pub struct StoredWorkload {
    pub id: WorkloadId,
    pub name: String,
    pub cgroup_path: String,
    pub pod: Option<pb::PodMetadata>,
    pub settings: Option<pb::RuntimeSettings>,
    /// As its latest stored window or bucket says (`tally.v1.Runtime`).
    pub runtime: i32,
}

impl StoredWorkload {
    /// As a `Workload` without a verdict: the store keeps none.
    pub fn to_proto(&self, nodes: Vec<String>) -> pb::Workload {
        pb::Workload {
            key: Some(self.id.to_proto()),
            name: self.name.clone(),
            nodes,
            runtime: self.runtime,
            cgroup_path: self.cgroup_path.clone(),
            pod: self.pod.clone(),
            settings: self.settings.clone(),
            ..Default::default()
        }
    }
}

type NodeNames = HashMap<i64, String>;

/// Every workload's points over a span, grouped by workload.
pub type Histories = Vec<(StoredWorkload, Vec<pb::WorkloadPoint>)>;
/// Each workload with its rolled-up history, a [`Span`] per node.
pub type Spans = Vec<(StoredWorkload, Vec<pb::NodeSpan>)>;

impl Reader {
    /// Every workload and node row by id.
    fn names(&self) -> Result<(HashMap<i64, StoredWorkload>, NodeNames), StoreError> {
        let mut workloads = HashMap::new();
        let mut q = self.conn.prepare_cached(
            "SELECT w.id, w.key, w.name, w.cgroup_path, p.metadata, s.settings
             FROM workloads w
             LEFT JOIN workload_pods p ON p.workload_id = w.id
             LEFT JOIN workload_settings s ON s.workload_id = w.id",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<Vec<u8>>>(4)?,
                r.get::<_, Option<Vec<u8>>>(5)?,
            ))
        })?;
        for row in rows {
            let (id, key, name, cgroup_path, pod, settings) = row?;
            // A key this version cannot parse is skipped, not fatal.
            let Some(wid) = WorkloadId::from_db_key(&key) else {
                continue;
            };
            workloads.insert(
                id,
                StoredWorkload {
                    id: wid,
                    name,
                    cgroup_path,
                    pod: pod.and_then(|b| pb::PodMetadata::decode(&b[..]).ok()),
                    settings: settings.and_then(|b| pb::RuntimeSettings::decode(&b[..]).ok()),
                    runtime: 0,
                },
            );
        }
        let mut nodes = HashMap::new();
        let mut q = self.conn.prepare_cached("SELECT id, name FROM nodes")?;
        for row in q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
            let (id, name) = row?;
            nodes.insert(id, name);
        }
        Ok((workloads, nodes))
    }

    /// Every workload's raw windows that ended at or after `since_ms`.
    pub fn raw_histories(&self, since_ms: i64) -> Result<Histories, StoreError> {
        let (names, nodes) = self.names()?;
        let (mut names, nodes) = (names, nodes);
        let mut by_workload: HashMap<i64, Vec<pb::WorkloadPoint>> = HashMap::new();
        let mut q = self.conn.prepare_cached(
            "SELECT workload_id, node_id, window_end_unix_ms, window_seconds, rss_bytes, delta,
                    runtime
             FROM windows WHERE window_end_unix_ms >= ?1",
        )?;
        let rows = q.query_map([since_ms], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, i32>(6)?,
            ))
        })?;
        for row in rows {
            let (workload, node, end, seconds, rss, delta, runtime) = row?;
            if let Some(w) = names.get_mut(&workload) {
                w.runtime = runtime;
            }
            by_workload
                .entry(workload)
                .or_default()
                .push(pb::WorkloadPoint {
                    window_end_unix_ms: end,
                    window_seconds: seconds,
                    delta: Some(pb::Counters::decode(&delta[..]).unwrap_or_default()),
                    rss_bytes: u64::try_from(rss).unwrap_or(0),
                    node_name: nodes.get(&node).cloned().unwrap_or_default(),
                    ..Default::default()
                });
        }
        Ok(group(by_workload, names))
    }

    /// Every workload's buckets of `tier` from `from_minute` on, summed
    /// per node into a [`Span`].
    pub fn tier_spans(&self, tier: Tier, from_minute: i64) -> Result<Spans, StoreError> {
        let mut all = Vec::new();
        self.tier_spans_in_parts(tier, from_minute, usize::MAX, |part| {
            all.extend(part);
            true
        })?;
        Ok(all)
    }

    /// The same, handed over in parts of `per_part` workloads, each read
    /// (and sent, by the caller) before the next: a month of a large
    /// cluster is never all in memory, and the client works on one part
    /// while the next is read. Stops when `each` returns false.
    pub fn tier_spans_in_parts(
        &self,
        tier: Tier,
        from_minute: i64,
        per_part: usize,
        mut each: impl FnMut(Spans) -> bool,
    ) -> Result<(), StoreError> {
        let (mut names, nodes) = self.names()?;
        let columns: Vec<&str> = tiers::all_columns().collect();
        // The key is (bucket, workload, node): a part's rows are read bucket
        // by bucket, each a range of the key.
        let mut buckets_q = self.conn.prepare_cached(&format!(
            "SELECT DISTINCT bucket_minute FROM {} WHERE bucket_minute >= ?1",
            tier.table()
        ))?;
        let buckets: Vec<i64> = buckets_q
            .query_map([from_minute], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut q = self.conn.prepare_cached(&format!(
            "SELECT workload_id, node_id, {} FROM {}
             WHERE bucket_minute = ?1 AND workload_id BETWEEN ?2 AND ?3",
            columns.join(", "),
            tier.table()
        ))?;
        let mut ids: Vec<i64> = names.keys().copied().collect();
        ids.sort_unstable();
        for part in ids.chunks(per_part.max(1)) {
            let (first, last) = (part[0], part[part.len() - 1]);
            let mut spans: HashMap<(i64, i64), Span> = HashMap::new();
            for &bucket in &buckets {
                let mut rows = q.query(params![bucket, first, last])?;
                while let Some(r) = rows.next()? {
                    // 620,000 rows of 32 integers for a month of a large
                    // cluster: read without `get`'s checks and conversions
                    // (the columns are integers, NOT NULL).
                    let int = |i: usize| {
                        let v = r.get_ref_unwrap(i);
                        v.as_i64().map_err(|_| {
                            rusqlite::Error::InvalidColumnType(i, String::new(), v.data_type())
                        })
                    };
                    let mut values = [0i64; tiers::COLUMN_COUNT];
                    for (i, v) in values.iter_mut().enumerate() {
                        *v = int(i + 2)?;
                    }
                    let (workload, node) = (int(0)?, int(1)?);
                    spans
                        .entry((workload, node))
                        .or_insert_with(|| Span::new(tier))
                        .add(bucket, &Rollup::from_values(&values));
                }
            }
            let part_names: HashMap<i64, StoredWorkload> = part
                .iter()
                .filter_map(|id| Some((*id, names.remove(id)?)))
                .collect();
            if !each(group_spans(spans, &nodes, part_names)) {
                break;
            }
        }
        Ok(())
    }
}

/// Each workload's spans, one per node, by name; the workloads in key
/// order. A workload's runtime is its spans' (the tiers keep it).
pub(super) fn group_spans(
    spans: HashMap<(i64, i64), Span>,
    nodes: &HashMap<i64, String>,
    mut names: HashMap<i64, StoredWorkload>,
) -> Spans {
    let mut by_workload: HashMap<i64, (i32, Vec<pb::NodeSpan>)> = HashMap::new();
    for ((workload, node), span) in spans {
        let entry = by_workload.entry(workload).or_default();
        entry.0 = entry.0.max(span.runtime());
        entry
            .1
            .push(span.finish(nodes.get(&node).cloned().unwrap_or_default()));
    }
    let mut out: Spans = by_workload
        .into_iter()
        .filter_map(|(id, (runtime, mut spans))| {
            let mut stored = names.remove(&id)?;
            spans.sort_by(|a, b| node_of(a).cmp(node_of(b)));
            stored.runtime = runtime;
            Some((stored, spans))
        })
        .collect();
    out.sort_by_cached_key(|a| a.0.id.db_key());
    out
}

fn node_of(s: &pb::NodeSpan) -> &str {
    s.total.as_ref().map_or("", |t| t.node_name.as_str())
}

pub(super) fn group(
    by_workload: HashMap<i64, Vec<pb::WorkloadPoint>>,
    mut names: HashMap<i64, StoredWorkload>,
) -> Histories {
    let mut out: Histories = by_workload
        .into_iter()
        .filter_map(|(id, mut points)| {
            points.sort_by(|a, b| {
                (a.window_end_unix_ms, &a.node_name).cmp(&(b.window_end_unix_ms, &b.node_name))
            });
            Some((names.remove(&id)?, points))
        })
        .collect();
    out.sort_by_cached_key(|a| a.0.id.db_key());
    out
}
