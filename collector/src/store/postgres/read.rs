//! Reads: the queries' histories, the recent state at start, and the
//! refresh of a replica's recent state with what other replicas stored.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use prost::Message as _;
use tally_proto as pb;
use tokio_postgres::{Client, Row, types::ToSql};
use tokio_stream::StreamExt as _;

use super::{PgError, PgReader};
use crate::{
    fleet_verdicts::{Fleet, NodeWindow},
    store::{
        FleetUpdates, Histories, RecentWindow, Spans, StoreError, StoreReader, StoredWindow,
        StoredWorkload,
        tiers::{self, Rollup, Span, Tier},
    },
    workload::{WorkloadId, runtime_from_proto},
};

/// The columns [`recent_window`] reads, in order. A workload's pod and
/// settings are not among them: [`recent_windows`] reads them once per
/// workload, not once per window.
const RECENT_COLUMNS: &str = "w.workload_id, k.key, k.name, k.cgroup_path, n.name,
    w.window_end_unix_ms, w.window_seconds, w.runtime, w.rss_bytes, w.delta";

fn recent_window(r: &Row) -> Option<RecentWindow> {
    let id = WorkloadId::from_db_key(r.get(1))?;
    let node: String = r.get(4);
    Some(RecentWindow {
        id,
        name: r.get(2),
        cgroup_path: r.get(3),
        pod: None,
        settings: None,
        window: NodeWindow {
            node: Arc::from(node),
            window_end_ms: r.get(5),
            window_seconds: r.get(6),
            runtime: runtime_from_proto(r.get(7)),
            // A row this version cannot decode counts as empty.
            delta: pb::Counters::decode(&r.get::<_, Vec<u8>>(9)[..]).unwrap_or_default(),
            rss_bytes: u64::try_from(r.get::<_, i64>(8)).unwrap_or(0),
        },
    })
}

/// The windows a query of [`RECENT_COLUMNS`] selects, each row decoded as
/// it arrives (the raw rows, with their blobs, are never all held at once:
/// a refresh after a busy interval reads millions), then each workload's
/// pod and settings, once, on its first window ([`observe_recent`] keeps
/// them; a window without them changes nothing).
///
/// [`observe_recent`]: crate::store::observe_recent
async fn recent_windows(
    c: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<RecentWindow>, PgError> {
    let rows = c.query_raw(sql, params.iter().copied()).await?;
    let mut rows = std::pin::pin!(rows);
    let mut windows = Vec::new();
    let mut first: HashMap<i64, usize> = HashMap::new();
    while let Some(row) = rows.next().await {
        let row = row?;
        if let Some(w) = recent_window(&row) {
            first.entry(row.get(0)).or_insert(windows.len());
            windows.push(w);
        }
    }
    if first.is_empty() {
        return Ok(windows);
    }
    let ids: Vec<i64> = first.keys().copied().collect();
    for r in c
        .query(
            "SELECT workload_id, metadata FROM workload_pods WHERE workload_id = ANY($1)",
            &[&ids],
        )
        .await?
    {
        if let Some(&i) = first.get(&r.get::<_, i64>(0)) {
            windows[i].pod = pb::PodMetadata::decode(&r.get::<_, Vec<u8>>(1)[..]).ok();
        }
    }
    for r in c
        .query(
            "SELECT workload_id, settings FROM workload_settings WHERE workload_id = ANY($1)",
            &[&ids],
        )
        .await?
    {
        if let Some(&i) = first.get(&r.get::<_, i64>(0)) {
            windows[i].settings = pb::RuntimeSettings::decode(&r.get::<_, Vec<u8>>(1)[..]).ok();
        }
    }
    Ok(windows)
}

/// The recent state: every workload's newest windows on each node (enough
/// for two verdict horizons), and every node's latest window end.
pub(super) async fn load_fleet(client: &Client) -> Result<Fleet, PgError> {
    let mut fleet = Fleet::new();
    for r in client
        .query(
            "SELECT n.name, MAX(a.last_window_end_unix_ms)
             FROM agents a JOIN nodes n ON n.id = a.node_id GROUP BY n.name",
            &[],
        )
        .await?
    {
        fleet.node_reported(r.get(0), r.get(1));
    }
    let windows = recent_windows(
        client,
        &format!(
            "SELECT {RECENT_COLUMNS}
             FROM workloads k
             CROSS JOIN LATERAL (SELECT * FROM windows x WHERE x.workload_id = k.id
                ORDER BY x.window_end_unix_ms DESC LIMIT 256) w
             JOIN nodes n ON n.id = w.node_id"
        ),
        &[],
    )
    .await?;
    crate::store::observe_recent(&mut fleet, windows);
    Ok(fleet)
}

impl StoreReader for PgReader {
    fn history(&self, id: &WorkloadId, since_ms: i64) -> Result<Vec<StoredWindow>, StoreError> {
        let key = id.db_key();
        Ok(self.with(async |c| {
            let rows = c
                .query(
                    "SELECT n.name, w.window_end_unix_ms, w.window_seconds, w.runtime, w.rss_bytes, w.delta
                     FROM windows w
                     JOIN workloads k ON k.id = w.workload_id
                     JOIN nodes n ON n.id = w.node_id
                     WHERE k.key = $1 AND w.window_end_unix_ms >= $2
                     ORDER BY w.window_end_unix_ms, n.name",
                    &[&key, &since_ms],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| StoredWindow {
                    node: r.get(0),
                    window_end_unix_ms: r.get(1),
                    window_seconds: r.get(2),
                    runtime: runtime_from_proto(r.get(3)),
                    rss_bytes: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                    delta: pb::Counters::decode(&r.get::<_, Vec<u8>>(5)[..]).unwrap_or_default(),
                })
                .collect())
        })?)
    }

    fn nodes(&self) -> Result<Vec<pb::NodeSummary>, StoreError> {
        Ok(self.with(async |c| {
            let rows = c
                .query(
                    "SELECT identity, COALESCE(first_window_start_unix_ms, 0), last_window_end_unix_ms
                     FROM nodes WHERE last_window_end_unix_ms > 0",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| pb::NodeSummary {
                    identity: r
                        .get::<_, Option<Vec<u8>>>(0)
                        .and_then(|b| pb::NodeIdentity::decode(&b[..]).ok()),
                    first_window_start_unix_ms: r.get(1),
                    last_window_end_unix_ms: r.get(2),
                })
                .collect())
        })?)
    }

    fn raw_histories(&self, since_ms: i64) -> Result<Histories, StoreError> {
        Ok(self.with(async |c| {
            let (mut names, nodes) = names(c).await?;
            let mut by_workload: HashMap<i64, Vec<pb::WorkloadPoint>> = HashMap::new();
            for r in c
                .query(
                    "SELECT workload_id, node_id, window_end_unix_ms, window_seconds, rss_bytes,
                        delta, runtime
                     FROM windows WHERE window_end_unix_ms >= $1",
                    &[&since_ms],
                )
                .await?
            {
                let workload: i64 = r.get(0);
                if let Some(w) = names.get_mut(&workload) {
                    w.runtime = r.get(6);
                }
                by_workload
                    .entry(workload)
                    .or_default()
                    .push(pb::WorkloadPoint {
                        window_end_unix_ms: r.get(2),
                        window_seconds: r.get(3),
                        delta: Some(
                            pb::Counters::decode(&r.get::<_, Vec<u8>>(5)[..]).unwrap_or_default(),
                        ),
                        rss_bytes: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                        node_name: nodes.get(&r.get::<_, i64>(1)).cloned().unwrap_or_default(),
                        ..Default::default()
                    });
            }
            Ok(crate::store::reader::group(by_workload, names))
        })?)
    }

    fn tier_spans(&self, tier: Tier, from_minute: i64) -> Result<Spans, StoreError> {
        Ok(self.with(async |c| {
            let (names, nodes) = names(c).await?;
            let columns: Vec<&str> = tiers::all_columns().collect();
            let mut spans: HashMap<(i64, i64), Span> = HashMap::new();
            for r in c
                .query(
                    &format!(
                        "SELECT bucket_minute, workload_id, node_id, {} FROM {} WHERE bucket_minute >= $1",
                        columns.join(", "),
                        tier.table()
                    ),
                    &[&from_minute],
                )
                .await?
            {
                let mut values = [0i64; tiers::COLUMN_COUNT];
                for (i, v) in values.iter_mut().enumerate() {
                    *v = r.get(i + 3);
                }
                let (bucket, workload, node): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
                spans
                    .entry((workload, node))
                    .or_insert_with(|| Span::new(tier))
                    .add(bucket, &Rollup::from_values(&values));
            }
            Ok(crate::store::reader::group_spans(spans, &nodes, names))
        })?)
    }

    fn another(&self) -> Result<Box<dyn StoreReader>, StoreError> {
        let url = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .url
            .clone();
        Ok(Box::new(PgReader::open(&url)?))
    }

    /// The windows of the reports received at or after
    /// `received_since_ms` that an earlier call did not hand over already
    /// (the only caller, the refresh, has those: the refresh reads a minute
    /// of overlap each pass), and their nodes' latest window ends.
    fn fleet_updates(&self, received_since_ms: i64) -> Result<Option<FleetUpdates>, StoreError> {
        let mut handed_over = self
            .handed_over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (updates, received) = self.with(async |c| {
            // A report is committed with its windows: every id read here
            // has all of them. One committed after this read is read by
            // the next call (its received time is still in the overlap).
            let received: HashSet<i64> = c
                .query(
                    "SELECT id FROM reports WHERE received_unix_ms >= $1",
                    &[&received_since_ms],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let new: Vec<i64> = received
                .iter()
                .copied()
                .filter(|id| !handed_over.contains(id))
                .collect();
            if new.is_empty() {
                return Ok((FleetUpdates::default(), received));
            }
            let nodes = c
                .query(
                    "SELECT n.name, MAX(r.window_end_unix_ms)
                     FROM reports r JOIN nodes n ON n.id = r.node_id
                     WHERE r.id = ANY($1) GROUP BY n.name",
                    &[&new],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let windows = recent_windows(
                c,
                &format!(
                    "SELECT {RECENT_COLUMNS}
                     FROM windows w
                     JOIN workloads k ON k.id = w.workload_id
                     JOIN nodes n ON n.id = w.node_id
                     WHERE w.report_id = ANY($1)
                     ORDER BY w.window_end_unix_ms"
                ),
                &[&new],
            )
            .await?;
            Ok((FleetUpdates { windows, nodes }, received))
        })?;
        // Only once read: after an error the next call reads them all.
        *handed_over = received;
        Ok(Some(updates))
    }
}

/// Every workload and node row by id.
async fn names(
    c: &Client,
) -> Result<(HashMap<i64, StoredWorkload>, HashMap<i64, String>), PgError> {
    let mut workloads = HashMap::new();
    for r in c
        .query(
            "SELECT w.id, w.key, w.name, w.cgroup_path, p.metadata, s.settings
             FROM workloads w
             LEFT JOIN workload_pods p ON p.workload_id = w.id
             LEFT JOIN workload_settings s ON s.workload_id = w.id",
            &[],
        )
        .await?
    {
        // A key this version cannot parse is skipped, not fatal.
        let Some(id) = WorkloadId::from_db_key(r.get(1)) else {
            continue;
        };
        workloads.insert(
            r.get::<_, i64>(0),
            StoredWorkload {
                id,
                name: r.get(2),
                cgroup_path: r.get(3),
                pod: r
                    .get::<_, Option<Vec<u8>>>(4)
                    .and_then(|b| pb::PodMetadata::decode(&b[..]).ok()),
                settings: r
                    .get::<_, Option<Vec<u8>>>(5)
                    .and_then(|b| pb::RuntimeSettings::decode(&b[..]).ok()),
                runtime: 0,
            },
        );
    }
    let nodes = c
        .query("SELECT id, name FROM nodes", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok((workloads, nodes))
}
