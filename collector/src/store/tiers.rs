//! Rolled-up history: per workload and node, what verdicts and the cost
//! report need, in 1-minute, 1-hour and 1-day buckets, each tier with its
//! own retention. Raw windows (per report, per process in the report body)
//! are kept only for hours; a month of a large cluster fits in the tiers.
//!
//! - The **minute** tier is written with the raw windows, in the same
//!   transaction: a report is in the raw tables and in its minutes, or in
//!   neither, and a duplicate (refused by the reports' unique key) adds to
//!   no bucket. The batch's windows are summed per bucket in memory first,
//!   then merged into the stored row (sums add, peaks take the max).
//! - The **hour** and **day** tiers are recomputed from the tier below, by
//!   bucket, whenever a write touched it (`rollup_dirty`): recomputing is
//!   idempotent, so a late report only marks its hour again.
//!
//! Every tier has the same columns, integers (SQLite stores small ones in a
//! byte or two, and zero in none): seconds are kept as microseconds, RSS
//! time as KiB·ms. A bucket is named by its start in minutes since the
//! epoch, in every tier, so a bucket of one tier is a range of the one below.
use std::{collections::BTreeMap, time::Duration};

use tally_core::gc::Runtime;
use tally_proto as pb;

use crate::workload::{WorkloadWindow, runtime_to_proto};

/// A tier of rolled-up history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Minute,
    Hour,
    Day,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Minute, Tier::Hour, Tier::Day];

    pub fn table(self) -> &'static str {
        match self {
            Tier::Minute => "rollup_1m",
            Tier::Hour => "rollup_1h",
            Tier::Day => "rollup_1d",
        }
    }

    pub fn minutes(self) -> i64 {
        match self {
            Tier::Minute => 1,
            Tier::Hour => 60,
            Tier::Day => 1440,
        }
    }

    pub fn seconds(self) -> u32 {
        (self.minutes() * 60) as u32
    }

    /// The tier this one is computed from.
    fn below(self) -> Option<Tier> {
        match self {
            Tier::Minute => None,
            Tier::Hour => Some(Tier::Minute),
            Tier::Day => Some(Tier::Hour),
        }
    }

    /// The tier computed from this one.
    pub fn above(self) -> Option<Tier> {
        match self {
            Tier::Minute => Some(Tier::Hour),
            Tier::Hour => Some(Tier::Day),
            Tier::Day => None,
        }
    }

    pub fn code(self) -> i64 {
        self.minutes()
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Minute => "1m",
            Tier::Hour => "1h",
            Tier::Day => "1d",
        }
    }
}

/// How long each kind of history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Reports and their per-workload windows (`--retention`).
    pub raw: Duration,
    pub minute: Duration,
    pub hour: Duration,
    pub day: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw: Duration::from_secs(6 * 3600),
            minute: Duration::from_secs(7 * 86400),
            hour: Duration::from_secs(90 * 86400),
            day: Duration::from_secs(400 * 86400),
        }
    }
}

impl Retention {
    pub fn of(&self, tier: Tier) -> Duration {
        match tier {
            Tier::Minute => self.minute,
            Tier::Hour => self.hour,
            Tier::Day => self.day,
        }
    }

    /// The longest any history is kept: a workload's names stay that long.
    pub fn longest(&self) -> Duration {
        self.raw.max(self.minute).max(self.hour).max(self.day)
    }
}

/// How a column merges two buckets' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    Sum,
    Max,
    /// The lowest non-zero (0 is "no sample").
    Min,
}

/// The columns after the key, in the order [`Rollup::values`] gives them.
const COLUMNS: [(&str, Merge); 29] = [
    ("runtime", Merge::Max),
    ("windows", Merge::Sum),
    ("seconds_us", Merge::Sum),
    ("cpu_samples", Merge::Sum),
    ("cpu_us", Merge::Sum),
    ("gc_thread_us", Merge::Sum),
    ("gc_stack_us", Merge::Sum),
    ("gc_blind_us", Merge::Sum),
    ("gc_cycles", Merge::Sum),
    ("gc_pause_us", Merge::Sum),
    ("mmap_calls", Merge::Sum),
    ("mmap_bytes", Merge::Sum),
    ("munmap_calls", Merge::Sum),
    ("munmap_bytes", Merge::Sum),
    ("brk_calls", Merge::Sum),
    ("brk_bytes", Merge::Sum),
    ("mremap_calls", Merge::Sum),
    ("mremap_bytes", Merge::Sum),
    ("madvise_calls", Merge::Sum),
    ("madvise_dontneed_bytes", Merge::Sum),
    ("madvise_free_bytes", Merge::Sum),
    ("madvise_other_bytes", Merge::Sum),
    ("minor_faults", Merge::Sum),
    ("major_faults", Merge::Sum),
    ("rss_kib_ms", Merge::Sum),
    ("rss_peak", Merge::Max),
    ("rss_min", Merge::Min),
    ("cpu_peak_millicores", Merge::Max),
    // Sums of the minutes' RSS swing (peak − min, of minutes with two
    // windows or more): written by the roll-up of the minute tier (a minute
    // row holds 0; its own peak − min is its swing).
    ("sawtooth", Merge::Sum),
];
/// How many values [`Rollup::values`] gives.
pub const COLUMN_COUNT: usize = COLUMNS.len() + 1;
/// Only in the tiers above the minute: how many minutes `sawtooth` sums.
const SAWTOOTH_MINUTES: &str = "sawtooth_minutes";

/// One bucket of one workload on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollup {
    pub runtime: i64,
    pub windows: i64,
    pub seconds_us: i64,
    pub cpu_samples: i64,
    pub cpu_us: i64,
    pub gc_thread_us: i64,
    pub gc_stack_us: i64,
    pub gc_blind_us: i64,
    pub gc_cycles: i64,
    pub gc_pause_us: i64,
    pub mmap_calls: i64,
    pub mmap_bytes: i64,
    pub munmap_calls: i64,
    pub munmap_bytes: i64,
    pub brk_calls: i64,
    pub brk_bytes: i64,
    pub mremap_calls: i64,
    pub mremap_bytes: i64,
    pub madvise_calls: i64,
    pub madvise_dontneed_bytes: i64,
    pub madvise_free_bytes: i64,
    pub madvise_other_bytes: i64,
    pub minor_faults: i64,
    pub major_faults: i64,
    pub rss_kib_ms: i64,
    pub rss_peak: i64,
    pub rss_min: i64,
    pub cpu_peak_millicores: i64,
    pub sawtooth: i64,
    pub sawtooth_minutes: i64,
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn micros(seconds: f64) -> i64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1e6).round() as i64
    } else {
        0
    }
}

impl Rollup {
    /// Adds one stored window (a workload's processes on one node, summed).
    pub fn add_window(
        &mut self,
        window_seconds: f64,
        runtime: Runtime,
        d: &pb::Counters,
        rss_bytes: u64,
    ) {
        let mut w = Rollup {
            runtime: runtime_to_proto(runtime) as i64,
            windows: 1,
            seconds_us: micros(window_seconds),
            cpu_samples: int(d.cpu_samples),
            cpu_us: micros(d.cpu_seconds),
            gc_thread_us: micros(d.gc_thread_cpu_seconds),
            gc_stack_us: micros(d.gc_stack_cpu_seconds),
            gc_blind_us: micros(d.gc_blind_cpu_seconds),
            gc_cycles: int(d.gc_cycles),
            gc_pause_us: micros(d.gc_pause_seconds),
            mmap_calls: int(d.mmap_calls),
            mmap_bytes: int(d.mmap_bytes),
            munmap_calls: int(d.munmap_calls),
            munmap_bytes: int(d.munmap_bytes),
            brk_calls: int(d.brk_calls),
            brk_bytes: int(d.brk_bytes),
            mremap_calls: int(d.mremap_calls),
            mremap_bytes: int(d.mremap_bytes),
            madvise_calls: int(d.madvise_calls),
            madvise_dontneed_bytes: int(d.madvise_dontneed_bytes),
            madvise_free_bytes: int(d.madvise_free_bytes),
            madvise_other_bytes: int(d.madvise_other_bytes),
            minor_faults: int(d.minor_faults),
            major_faults: int(d.major_faults),
            rss_kib_ms: int(rss_bytes / 1024).saturating_mul(micros(window_seconds) / 1000),
            rss_peak: int(rss_bytes),
            rss_min: int(rss_bytes),
            cpu_peak_millicores: if window_seconds > 0.0 {
                (d.cpu_seconds / window_seconds * 1000.0).round() as i64
            } else {
                0
            },
            sawtooth: 0,
            sawtooth_minutes: 0,
        };
        if rss_bytes == 0 {
            w.rss_min = 0;
        }
        self.merge(&w);
    }

    /// Merges another bucket's values in, as the stored upsert does.
    pub fn merge(&mut self, o: &Rollup) {
        let mine = self.values();
        let theirs = o.values();
        let mut out = [0i64; COLUMN_COUNT];
        for (i, (_, merge)) in COLUMNS.iter().enumerate() {
            out[i] = merge_values(*merge, mine[i], theirs[i]);
        }
        out[COLUMNS.len()] = mine[COLUMNS.len()].saturating_add(theirs[COLUMNS.len()]);
        *self = Rollup::from_values(&out);
    }

    /// The columns' values, in [`COLUMNS`] order, then `sawtooth_minutes`.
    pub fn values(&self) -> [i64; COLUMN_COUNT] {
        [
            self.runtime,
            self.windows,
            self.seconds_us,
            self.cpu_samples,
            self.cpu_us,
            self.gc_thread_us,
            self.gc_stack_us,
            self.gc_blind_us,
            self.gc_cycles,
            self.gc_pause_us,
            self.mmap_calls,
            self.mmap_bytes,
            self.munmap_calls,
            self.munmap_bytes,
            self.brk_calls,
            self.brk_bytes,
            self.mremap_calls,
            self.mremap_bytes,
            self.madvise_calls,
            self.madvise_dontneed_bytes,
            self.madvise_free_bytes,
            self.madvise_other_bytes,
            self.minor_faults,
            self.major_faults,
            self.rss_kib_ms,
            self.rss_peak,
            self.rss_min,
            self.cpu_peak_millicores,
            self.sawtooth,
            self.sawtooth_minutes,
        ]
    }

    pub fn from_values(v: &[i64; COLUMN_COUNT]) -> Self {
        Rollup {
            runtime: v[0],
            windows: v[1],
            seconds_us: v[2],
            cpu_samples: v[3],
            cpu_us: v[4],
            gc_thread_us: v[5],
            gc_stack_us: v[6],
            gc_blind_us: v[7],
            gc_cycles: v[8],
            gc_pause_us: v[9],
            mmap_calls: v[10],
            mmap_bytes: v[11],
            munmap_calls: v[12],
            munmap_bytes: v[13],
            brk_calls: v[14],
            brk_bytes: v[15],
            mremap_calls: v[16],
            mremap_bytes: v[17],
            madvise_calls: v[18],
            madvise_dontneed_bytes: v[19],
            madvise_free_bytes: v[20],
            madvise_other_bytes: v[21],
            minor_faults: v[22],
            major_faults: v[23],
            rss_kib_ms: v[24],
            rss_peak: v[25],
            rss_min: v[26],
            cpu_peak_millicores: v[27],
            sawtooth: v[28],
            sawtooth_minutes: v[29],
        }
    }

    /// The bucket as a point of history. A minute's own sawtooth is its
    /// peak − min when it had a GC cycle.
    pub fn to_point(&self, tier: Tier, bucket_minute: i64, node: String) -> pb::WorkloadPoint {
        let seconds = self.seconds_us as f64 / 1e6;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        let s = |us: i64| us as f64 / 1e6;
        let (sawtooth, minutes) = match tier {
            Tier::Minute if self.windows > 1 => (u(self.rss_peak - self.rss_min), 1),
            Tier::Minute => (0, 0),
            _ => (
                u(self.sawtooth),
                u32::try_from(self.sawtooth_minutes).unwrap_or(0),
            ),
        };
        let (thread, stack) = (s(self.gc_thread_us), s(self.gc_stack_us));
        pb::WorkloadPoint {
            window_end_unix_ms: (bucket_minute + tier.minutes()) * 60_000,
            window_seconds: seconds,
            delta: Some(pb::Counters {
                cpu_samples: u(self.cpu_samples),
                cpu_seconds: s(self.cpu_us),
                mmap_calls: u(self.mmap_calls),
                mmap_bytes: u(self.mmap_bytes),
                munmap_calls: u(self.munmap_calls),
                munmap_bytes: u(self.munmap_bytes),
                brk_calls: u(self.brk_calls),
                brk_bytes: u(self.brk_bytes),
                mremap_calls: u(self.mremap_calls),
                mremap_bytes: u(self.mremap_bytes),
                madvise_calls: u(self.madvise_calls),
                madvise_dontneed_bytes: u(self.madvise_dontneed_bytes),
                madvise_free_bytes: u(self.madvise_free_bytes),
                madvise_other_bytes: u(self.madvise_other_bytes),
                minor_faults: u(self.minor_faults),
                major_faults: u(self.major_faults),
                gc_cpu_seconds: thread + stack,
                gc_cycles: u(self.gc_cycles),
                gc_pause_seconds: s(self.gc_pause_us),
                gc_thread_cpu_seconds: thread,
                gc_stack_cpu_seconds: stack,
                gc_blind_cpu_seconds: s(self.gc_blind_us),
            }),
            rss_bytes: if seconds > 0.0 {
                (self.rss_kib_ms as f64 * 1024.0 / (seconds * 1000.0)) as u64
            } else {
                0
            },
            verdict: None,
            node_name: node,
            bucket_seconds: tier.seconds(),
            rss_peak_bytes: u(self.rss_peak),
            rss_min_bytes: u(self.rss_min),
            cpu_peak_cores: self.cpu_peak_millicores as f64 / 1000.0,
            sawtooth_bytes_sum: sawtooth,
            sawtooth_minutes: minutes,
        }
    }
}

fn merge_values(merge: Merge, a: i64, b: i64) -> i64 {
    match merge {
        Merge::Sum => a.saturating_add(b),
        Merge::Max => a.max(b),
        Merge::Min => match (a, b) {
            (0, x) | (x, 0) => x,
            (x, y) => x.min(y),
        },
    }
}

/// The SQL dialect differences between the engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }

    fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MIN",
            Dialect::Postgres => "LEAST",
        }
    }

    fn placeholder(self, i: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{i}"),
            Dialect::Postgres => format!("${i}"),
        }
    }
}

/// The tables of the three tiers and the dirty-bucket list.
pub fn schema(dialect: Dialect) -> String {
    let int = match dialect {
        Dialect::Sqlite => "INTEGER",
        Dialect::Postgres => "BIGINT",
    };
    let without_rowid = match dialect {
        Dialect::Sqlite => " WITHOUT ROWID",
        Dialect::Postgres => "",
    };
    let mut sql = String::new();
    for tier in Tier::ALL {
        let cols: String = COLUMNS
            .iter()
            .map(|(c, _)| format!("    {c} {int} NOT NULL,\n"))
            .collect();
        // Keyed by time first: new buckets go to the end of the tree, the
        // report and the roll-up read time ranges, retention cuts the front.
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
    bucket_minute {int} NOT NULL,
    workload_id {int} NOT NULL,
    node_id {int} NOT NULL,
{cols}    {SAWTOOTH_MINUTES} {int} NOT NULL,
    PRIMARY KEY (bucket_minute, workload_id, node_id)
){without_rowid};
",
            table = tier.table()
        ));
    }
    sql.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS rollup_dirty (
    tier {int} NOT NULL,
    bucket_minute {int} NOT NULL,
    PRIMARY KEY (tier, bucket_minute)
){without_rowid};
"
    ));
    sql
}

/// Every column after the key, in [`Rollup::values`] order.
pub fn all_columns() -> impl Iterator<Item = &'static str> {
    COLUMNS
        .iter()
        .map(|(c, _)| *c)
        .chain(std::iter::once(SAWTOOTH_MINUTES))
}

/// Merges one bucket into the minute tier: parameters are bucket_minute,
/// workload_id, node_id, then [`Rollup::values`].
pub fn upsert_minute(dialect: Dialect) -> String {
    let names: Vec<&str> = all_columns().collect();
    let params: Vec<String> = (1..=names.len() + 3)
        .map(|i| dialect.placeholder(i))
        .collect();
    format!(
        "INSERT INTO {} (bucket_minute, workload_id, node_id, {}) VALUES ({})
         ON CONFLICT (bucket_minute, workload_id, node_id) DO UPDATE SET {}",
        Tier::Minute.table(),
        names.join(", "),
        params.join(", "),
        merge_minute_set(dialect)
    )
}

/// The SET clause merging a new minute row into a stored one.
fn merge_minute_set(dialect: Dialect) -> String {
    let table = Tier::Minute.table();
    let set: Vec<String> = COLUMNS
        .iter()
        .map(|(c, m)| match m {
            Merge::Sum => format!("{c} = {table}.{c} + excluded.{c}"),
            Merge::Max => format!("{c} = {}({table}.{c}, excluded.{c})", dialect.greatest()),
            Merge::Min => format!(
                "{c} = CASE WHEN {table}.{c} = 0 THEN excluded.{c} WHEN excluded.{c} = 0 THEN {table}.{c} ELSE {}({table}.{c}, excluded.{c}) END",
                dialect.least()
            ),
        })
        .collect();
    set.join(", ")
}

/// PostgreSQL: merges many buckets into the minute tier in one statement;
/// parameters are one `int8[]` per column (bucket_minute, workload_id,
/// node_id, then [`Rollup::values`]), the rows in key order and each key
/// once (a row cannot be updated twice by one statement).
pub fn upsert_minute_unnest() -> String {
    let names: Vec<&str> = all_columns().collect();
    let arrays: Vec<String> = (1..=names.len() + 3)
        .map(|i| format!("${i}::int8[]"))
        .collect();
    format!(
        "INSERT INTO {table} (bucket_minute, workload_id, node_id, {})
         SELECT * FROM UNNEST({})
         ON CONFLICT (bucket_minute, workload_id, node_id) DO UPDATE SET {}",
        names.join(", "),
        arrays.join(", "),
        merge_minute_set(Dialect::Postgres),
        table = Tier::Minute.table(),
    )
}

/// Recomputes one bucket of `tier` from the tier below: parameters are the
/// bucket's first minute and the first minute after it.
pub fn roll(dialect: Dialect, tier: Tier) -> Option<String> {
    let below = tier.below()?;
    let (from, to) = (dialect.placeholder(1), dialect.placeholder(2));
    // PostgreSQL types a parameter by its first use: here a select list.
    let from_value = match dialect {
        Dialect::Sqlite => from.clone(),
        Dialect::Postgres => format!("{from}::int8"),
    };
    let exprs: Vec<String> = COLUMNS
        .iter()
        .map(|(c, m)| match (*c, m) {
            // A minute's swing is its own peak − min.
            ("sawtooth", _) if below == Tier::Minute => {
                "SUM(CASE WHEN windows > 1 THEN rss_peak - rss_min ELSE 0 END)".to_string()
            }
            (c, Merge::Sum) => format!("SUM({c})"),
            (c, Merge::Max) => format!("MAX({c})"),
            // 0 is "no sample": the lowest of the others, else 0.
            (c, Merge::Min) => format!("COALESCE(MIN(NULLIF({c}, 0)), 0)"),
        })
        .chain(std::iter::once(if below == Tier::Minute {
            "SUM(CASE WHEN windows > 1 THEN 1 ELSE 0 END)".to_string()
        } else {
            format!("SUM({SAWTOOTH_MINUTES})")
        }))
        .collect();
    let names: Vec<&str> = all_columns().collect();
    let set: Vec<String> = names
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    // The WHERE also keeps SQLite's parser from reading ON CONFLICT as a
    // join constraint (INSERT … SELECT needs one).
    Some(format!(
        "INSERT INTO {table} (bucket_minute, workload_id, node_id, {names})
         SELECT {from_value}, workload_id, node_id, {exprs}
         FROM {below_table}
         WHERE bucket_minute >= {from} AND bucket_minute < {to}
         GROUP BY workload_id, node_id
         ON CONFLICT (bucket_minute, workload_id, node_id) DO UPDATE SET {set}",
        table = tier.table(),
        names = names.join(", "),
        exprs = exprs.join(", "),
        below_table = below.table(),
        set = set.join(", "),
    ))
}

/// The most points per workload and node a cost report reads: its chart's
/// resolution. A longer span reads a coarser tier.
pub const MAX_REPORT_POINTS: i64 = 240;

/// Where a history since `since_ms` is read from: `None` for the raw
/// windows (while they are kept), else the finest tier that is kept that
/// far back and gives at most [`MAX_REPORT_POINTS`] buckets; with the first
/// minute to read (the first whole bucket at or after `since_ms`, or the
/// oldest the tier keeps).
pub fn pick(since_ms: i64, now_ms: i64, retention: &Retention) -> Option<(Tier, i64)> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if since_ms >= now_ms.saturating_sub(ms(retention.raw)) {
        return None;
    }
    let span_minutes = (now_ms - since_ms).div_euclid(60_000).max(1);
    let kept = |t: Tier| since_ms >= now_ms.saturating_sub(ms(retention.of(t)));
    let tier = Tier::ALL
        .into_iter()
        .find(|&t| kept(t) && (span_minutes + t.minutes() - 1) / t.minutes() <= MAX_REPORT_POINTS)
        .or_else(|| Tier::ALL.into_iter().rev().find(|&t| kept(t)))
        .unwrap_or(Tier::Day);
    let since_minute = since_ms.div_euclid(60_000) + i64::from(since_ms.rem_euclid(60_000) > 0);
    let oldest = now_ms
        .saturating_sub(ms(retention.of(tier)))
        .div_euclid(60_000);
    let first = since_minute.max(oldest);
    let aligned = first.div_euclid(tier.minutes()) * tier.minutes();
    let from = if aligned < first {
        aligned + tier.minutes()
    } else {
        aligned
    };
    Some((tier, from))
}

/// The minute a window belongs to: the one holding its end (a window ends
/// after it starts, so its last millisecond is `end − 1`).
pub fn minute_of(window_end_unix_ms: i64) -> i64 {
    (window_end_unix_ms - 1).div_euclid(60_000)
}

/// The bucket of `tier` holding `minute`.
pub fn bucket_of(tier: Tier, minute: i64) -> i64 {
    minute.div_euclid(tier.minutes()) * tier.minutes()
}

/// A batch's windows summed per (minute, workload, node), in key order.
#[derive(Debug, Default)]
pub struct MinuteBuckets {
    pub buckets: BTreeMap<(i64, i64, i64), Rollup>,
}

impl MinuteBuckets {
    pub fn add(
        &mut self,
        window_end_unix_ms: i64,
        workload_id: i64,
        node_id: i64,
        window_seconds: f64,
        w: &WorkloadWindow,
    ) {
        self.buckets
            .entry((minute_of(window_end_unix_ms), workload_id, node_id))
            .or_default()
            .add_window(window_seconds, w.runtime, &w.delta, w.rss_bytes);
    }

    /// The hours the batch touched (to recompute).
    pub fn hours(&self) -> std::collections::BTreeSet<i64> {
        self.buckets
            .keys()
            .map(|&(m, _, _)| bucket_of(Tier::Hour, m))
            .collect()
    }
}

/// Marks a bucket of a tier to be recomputed.
pub fn mark_dirty(dialect: Dialect) -> String {
    format!(
        "INSERT INTO rollup_dirty (tier, bucket_minute) VALUES ({}, {}) ON CONFLICT DO NOTHING",
        dialect.placeholder(1),
        dialect.placeholder(2)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_name_every_column() {
        let mut r = Rollup::default();
        r.add_window(
            10.0,
            Runtime::Go,
            &pb::Counters {
                cpu_seconds: 1.5,
                gc_thread_cpu_seconds: 0.25,
                gc_stack_cpu_seconds: 0.25,
                gc_cycles: 3,
                mmap_calls: 7,
                mmap_bytes: 7 << 20,
                minor_faults: 100,
                ..Default::default()
            },
            100 << 20,
        );
        assert_eq!(Rollup::from_values(&r.values()), r);
        assert_eq!(all_columns().count(), r.values().len());
        let p = r.to_point(Tier::Hour, 60, "n".into());
        let d = p.delta.unwrap();
        assert_eq!(d.cpu_seconds, 1.5);
        assert_eq!(d.gc_cpu_seconds, 0.5);
        assert_eq!(d.mmap_bytes, 7 << 20);
        assert_eq!(p.window_seconds, 10.0);
        assert_eq!(p.rss_bytes, 100 << 20);
        assert_eq!(p.window_end_unix_ms, 120 * 60_000);
        assert_eq!(p.cpu_peak_cores, 0.15);
    }

    #[test]
    fn merging_sums_counts_and_keeps_the_extremes_of_rss() {
        let mut r = Rollup::default();
        for (rss, cpu) in [
            (100u64 << 20, 1.0),
            (300 << 20, 4.0),
            (0, 0.5),
            (200 << 20, 2.0),
        ] {
            r.add_window(
                10.0,
                Runtime::Jvm,
                &pb::Counters {
                    cpu_seconds: cpu,
                    ..Default::default()
                },
                rss,
            );
        }
        assert_eq!(r.windows, 4);
        assert_eq!(r.cpu_us, 7_500_000);
        assert_eq!(r.rss_peak, 300 << 20);
        // A window without an RSS sample is not a floor of 0.
        assert_eq!(r.rss_min, 100 << 20);
        assert_eq!(r.cpu_peak_millicores, 400);
        // Time-weighted mean: (100 + 300 + 0 + 200) MiB × 10 s / 40 s.
        let p = r.to_point(Tier::Minute, 0, "n".into());
        assert_eq!(p.rss_bytes, 150 << 20);
    }

    #[test]
    fn a_report_reads_the_finest_tier_with_at_most_its_chart_points() {
        let r = Retention::default();
        let now = 1_000 * 86_400_000 + 123_456;
        let ago = |h: i64| now - h * 3_600_000;
        assert_eq!(pick(ago(1), now, &r), None);
        assert_eq!(pick(ago(6), now, &r), None);
        // 7 h of minutes is 420 points: hours.
        let (tier, from) = pick(ago(7), now, &r).unwrap();
        assert_eq!(tier, Tier::Hour);
        assert_eq!(from % 60, 0);
        assert!(from * 60_000 >= ago(7) && from * 60_000 < ago(6));
        assert_eq!(pick(ago(24 * 10), now, &r).unwrap().0, Tier::Hour);
        let (tier, from) = pick(ago(24 * 30), now, &r).unwrap();
        assert_eq!(tier, Tier::Day);
        assert_eq!(from % 1440, 0);
        // Short retentions: minutes for a 7 h span when hours are not kept.
        let short = Retention {
            hour: Duration::from_secs(3600),
            day: Duration::from_secs(3600),
            ..r
        };
        assert_eq!(pick(ago(7), now, &short).unwrap().0, Tier::Minute);
    }

    #[test]
    fn buckets_nest_across_tiers() {
        assert_eq!(minute_of(60_000), 0);
        assert_eq!(minute_of(60_001), 1);
        assert_eq!(bucket_of(Tier::Hour, 119), 60);
        assert_eq!(bucket_of(Tier::Day, 1439), 0);
        assert_eq!(bucket_of(Tier::Day, 1440), 1440);
    }
}
