//! Keeping each kind of history as long as its retention says: the
//! roll-up of the minute tier into hours and days, and the deletion of what
//! has aged out of each tier.
use std::collections::HashSet;

use rusqlite::params;

use super::{
    Removed, Store, StoreError, WorkloadId,
    tiers::{self, Dialect, Retention, Tier},
};

impl Store {
    /// Recomputes every bucket of the hour and day tiers that a write
    /// touched since the last pass, in one transaction. Returns how many
    /// buckets it recomputed.
    pub fn roll_up(&mut self, retention: &Retention, now_ms: i64) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut done = 0;
        for tier in [Tier::Hour, Tier::Day] {
            let below = if tier == Tier::Hour {
                Tier::Minute
            } else {
                Tier::Hour
            };
            // A bucket whose oldest part has left the tier below would be
            // recomputed short: it stays as it was.
            let floor = tiers::keep_from_minute(now_ms, retention.of(below));
            let dirty: Vec<i64> = tx
                .prepare_cached("SELECT bucket_minute FROM rollup_dirty WHERE tier = ?1")?
                .query_map([tier.code()], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let Some(roll) = tiers::roll(Dialect::Sqlite, tier) else {
                continue;
            };
            let mut roll = tx.prepare_cached(&roll)?;
            let mut mark = tx.prepare_cached(&tiers::mark_dirty(Dialect::Sqlite))?;
            let mut clean = tx.prepare_cached(
                "DELETE FROM rollup_dirty WHERE tier = ?1 AND bucket_minute = ?2",
            )?;
            for bucket in dirty {
                if bucket >= floor {
                    roll.execute(params![bucket, bucket + tier.minutes()])?;
                    done += 1;
                    if let Some(above) = tier.above() {
                        mark.execute(params![above.code(), tiers::bucket_of(above, bucket)])?;
                    }
                }
                clean.execute(params![tier.code(), bucket])?;
            }
        }
        tx.commit()?;
        Ok(done)
    }

    /// Deletes what each retention has let go, as of `now_ms`: raw reports
    /// and windows, agents not heard from, the buckets of each tier, and
    /// workloads and nodes no kept history names any more.
    pub fn retain(&mut self, retention: &Retention, now_ms: i64) -> Result<Removed, StoreError> {
        let raw_cutoff = now_ms.saturating_sub(tiers::millis(retention.raw));
        let names_cutoff = now_ms.saturating_sub(tiers::millis(retention.longest()));
        let tx = self.conn.transaction()?;
        let mut removed = Removed::default();
        let mut gone: Vec<WorkloadId> = Vec::new();
        {
            // Per workload, so each delete walks the (workload, end) index
            // instead of scanning the table.
            let mut delete_windows = tx.prepare_cached(
                "DELETE FROM windows WHERE workload_id = ?1 AND window_end_unix_ms < ?2",
            )?;
            let mut delete_workload = tx.prepare_cached("DELETE FROM workloads WHERE id = ?1")?;
            let mut delete_pod =
                tx.prepare_cached("DELETE FROM workload_pods WHERE workload_id = ?1")?;
            let mut delete_settings =
                tx.prepare_cached("DELETE FROM workload_settings WHERE workload_id = ?1")?;
            let mut store_end = tx.prepare_cached(
                "UPDATE workloads SET last_window_end_unix_ms = ?2 WHERE id = ?1",
            )?;
            for (wid, row) in &self.workloads {
                // Once a pass at most, and only for workloads that reported.
                if row.last_end_ms > row.stored_end_ms && row.last_end_ms >= names_cutoff {
                    store_end.execute(params![row.id, row.last_end_ms])?;
                }
                // A workload whose windows all went in an earlier pass
                // costs no delete (most of a long retention's workloads).
                if !row.raw_gone {
                    removed.windows += delete_windows.execute(params![row.id, raw_cutoff])?;
                }
                if row.last_end_ms < names_cutoff {
                    delete_workload.execute([row.id])?;
                    delete_pod.execute([row.id])?;
                    delete_settings.execute([row.id])?;
                    gone.push(wid.clone());
                }
            }

            removed.reports = tx.execute(
                "DELETE FROM reports WHERE window_end_unix_ms < ?1",
                [raw_cutoff],
            )?;
            tx.execute(
                "DELETE FROM agents WHERE last_window_end_unix_ms < ?1",
                [raw_cutoff],
            )?;
            for tier in Tier::ALL {
                let keep_from = tiers::keep_from_minute(now_ms, retention.of(tier));
                // Buckets that ended before the cutoff.
                removed.buckets += tx.execute(
                    &format!(
                        "DELETE FROM {} WHERE bucket_minute + ?2 <= ?1",
                        tier.table()
                    ),
                    params![keep_from, tier.minutes()],
                )?;
            }
            tx.execute(
                "DELETE FROM nodes WHERE last_window_end_unix_ms < ?1
                   AND id NOT IN (SELECT node_id FROM agents)",
                [names_cutoff],
            )?;
        }
        tx.commit()?;
        for row in self.workloads.values_mut() {
            row.raw_gone = row.last_end_ms < raw_cutoff;
            row.stored_end_ms = row.last_end_ms;
        }
        removed.workloads = gone.len();
        for w in gone {
            if let Some(row) = self.workloads.remove(&w) {
                self.pods.remove(&row.id);
                self.settings.remove(&row.id);
            }
        }
        let mut q = self.conn.prepare("SELECT instance FROM agents")?;
        let live: HashSet<String> = q
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        self.agents.retain(|k, _| live.contains(k));
        let mut q = self.conn.prepare("SELECT id FROM nodes")?;
        let nodes: HashSet<i64> = q
            .query_map([], |r| r.get::<_, i64>(0))?
            .collect::<Result<_, _>>()?;
        self.nodes.retain(|_, id| nodes.contains(id));
        self.identities.retain(|id, _| nodes.contains(id));
        Ok(removed)
    }
}
