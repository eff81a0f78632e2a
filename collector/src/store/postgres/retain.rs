//! The roll-up of the minute tier into hours and days, and retention, for
//! the shared store.
use super::{PgError, PgStore, connect::LONG_PASS, write::MARK_DIRTY};
use crate::store::{
    Removed,
    tiers::{self, Dialect, Retention, Tier},
};

impl PgStore {
    /// Recomputes the dirty hour and day buckets in one transaction.
    ///
    /// It first locks `rollup_dirty` against writes (SHARE ROW EXCLUSIVE:
    /// writers' ROW EXCLUSIVE locks do not block each other, only this).
    /// That waits for every write transaction that already marked a bucket
    /// to commit, so the recomputation reads their minutes; a write that
    /// marks one after waits for this pass to commit, and its mark stays
    /// for the next pass. A plain read-then-delete of the marks would lose
    /// a mark made (as a no-op on an existing row) by a transaction that
    /// commits after the pass read the minutes. Passes of two replicas
    /// take turns on the same lock.
    pub(super) fn roll_up_pass(
        &mut self,
        retention: &Retention,
        now_ms: i64,
    ) -> Result<usize, PgError> {
        self.transact_within(Some(LONG_PASS), async |tx, _| {
            tx.batch_execute("LOCK TABLE rollup_dirty IN SHARE ROW EXCLUSIVE MODE")
                .await?;
            let mut done = 0;
            for tier in [Tier::Hour, Tier::Day] {
                let below = if tier == Tier::Hour {
                    Tier::Minute
                } else {
                    Tier::Hour
                };
                // A bucket whose oldest part has left the tier below would
                // be recomputed short: it stays as it was.
                let floor = tiers::keep_from_minute(now_ms, retention.of(below));
                let mut dirty: Vec<i64> = tx
                    .query(
                        "DELETE FROM rollup_dirty WHERE tier = $1 RETURNING bucket_minute",
                        &[&tier.code()],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                dirty.sort_unstable();
                let Some(roll) = tiers::roll(Dialect::Postgres, tier) else {
                    continue;
                };
                let roll = tx.prepare(&roll).await?;
                let mut above: Vec<i64> = Vec::new();
                for bucket in dirty.into_iter().filter(|&b| b >= floor) {
                    tx.execute(&roll, &[&bucket, &(bucket + tier.minutes())])
                        .await?;
                    done += 1;
                    if let Some(up) = tier.above() {
                        above.push(tiers::bucket_of(up, bucket));
                    }
                }
                if let Some(up) = tier.above()
                    && !above.is_empty()
                {
                    above.sort_unstable();
                    above.dedup();
                    tx.execute(MARK_DIRTY, &[&up.code(), &above]).await?;
                }
            }
            Ok(done)
        })
    }

    /// Deletes what each retention has let go, set by set.
    pub(super) fn retain_pass(
        &mut self,
        retention: &Retention,
        now_ms: i64,
    ) -> Result<Removed, PgError> {
        let raw_cutoff = now_ms.saturating_sub(tiers::millis(retention.raw));
        let names_cutoff = now_ms.saturating_sub(tiers::millis(retention.longest()));
        let removed = self.transact_within(Some(LONG_PASS), async |tx, _| {
            let mut removed = Removed {
                windows: usize::try_from(
                    tx.execute(
                        "DELETE FROM windows WHERE window_end_unix_ms < $1",
                        &[&raw_cutoff],
                    )
                    .await?,
                )
                .unwrap_or(usize::MAX),
                reports: usize::try_from(
                    tx.execute(
                        "DELETE FROM reports WHERE window_end_unix_ms < $1",
                        &[&raw_cutoff],
                    )
                    .await?,
                )
                .unwrap_or(usize::MAX),
                ..Removed::default()
            };
            tx.execute(
                "DELETE FROM agents WHERE last_window_end_unix_ms < $1",
                &[&raw_cutoff],
            )
            .await?;
            for tier in Tier::ALL {
                let keep_from = tiers::keep_from_minute(now_ms, retention.of(tier));
                removed.buckets += usize::try_from(
                    tx.execute(
                        &format!(
                            "DELETE FROM {} WHERE bucket_minute + $2 <= $1",
                            tier.table()
                        ),
                        &[&keep_from, &tier.minutes()],
                    )
                    .await?,
                )
                .unwrap_or(usize::MAX);
            }
            // A workload is forgotten when it is older than the longest
            // retention and no kept history names it. (Its creation time,
            // not its last window: a row another replica just upserted in
            // a transaction not committed yet is never old.)
            let gone: Vec<i64> = tx
                .query(
                    "DELETE FROM workloads k WHERE k.created_unix_ms < $1
                       AND NOT EXISTS (SELECT 1 FROM windows w WHERE w.workload_id = k.id)
                       AND NOT EXISTS (SELECT 1 FROM rollup_1m t WHERE t.workload_id = k.id)
                       AND NOT EXISTS (SELECT 1 FROM rollup_1h t WHERE t.workload_id = k.id)
                       AND NOT EXISTS (SELECT 1 FROM rollup_1d t WHERE t.workload_id = k.id)
                     RETURNING id",
                    &[&names_cutoff],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            removed.workloads = gone.len();
            if !gone.is_empty() {
                tx.execute(
                    "DELETE FROM workload_pods WHERE workload_id = ANY($1)",
                    &[&gone],
                )
                .await?;
                tx.execute(
                    "DELETE FROM workload_settings WHERE workload_id = ANY($1)",
                    &[&gone],
                )
                .await?;
            }
            tx.execute(
                "DELETE FROM nodes WHERE last_window_end_unix_ms < $1
                   AND id NOT IN (SELECT node_id FROM agents)",
                &[&names_cutoff],
            )
            .await?;
            Ok(removed)
        })?;
        if removed.workloads > 0 {
            // Ids of deleted rows: learned again (by upsert) when needed.
            self.forget();
        }
        Ok(removed)
    }
}
