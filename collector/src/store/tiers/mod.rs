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

mod span;
mod sql;

pub use span::Span;
pub use sql::{Dialect, mark_dirty, roll, schema, upsert_minute, upsert_minute_unnest};

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
const COLUMNS: [(&str, Merge); 31] = [
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
    // A container's memory stall (PSI `some`), and how many of the
    // bucket's windows carried one: a bucket none of whose windows did (not
    // a container, a kernel without PSI) has an unknown stall, not a zero
    // one. Added in version 3 of the SQLite store, 2 of PostgreSQL's.
    ("memory_stall_us", Merge::Sum),
    ("stall_windows", Merge::Sum),
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
    pub memory_stall_us: i64,
    pub stall_windows: i64,
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
            memory_stall_us: d.memory_stall_us.map_or(0, int),
            stall_windows: i64::from(d.memory_stall_us.is_some()),
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
            self.memory_stall_us,
            self.stall_windows,
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
            memory_stall_us: v[29],
            stall_windows: v[30],
            sawtooth_minutes: v[31],
        }
    }

    /// The bucket as a point of history.
    pub fn to_point(&self, tier: Tier, bucket_minute: i64, node: String) -> pb::WorkloadPoint {
        self.with_teeth(tier)
            .point(tier, (bucket_minute + tier.minutes()) * 60_000, node)
    }

    /// The bucket with its sawtooth columns as the tiers above the minute
    /// hold them: a minute row's own swing (peak − min, when it had two
    /// windows or more) is one minute's tooth.
    pub fn with_teeth(mut self, tier: Tier) -> Rollup {
        if tier == Tier::Minute {
            (self.sawtooth, self.sawtooth_minutes) = if self.windows > 1 {
                ((self.rss_peak - self.rss_min).max(0), 1)
            } else {
                (0, 0)
            };
        }
        self
    }

    /// As a point ending at `end_ms`, the sawtooth columns as they are
    /// ([`Rollup::with_teeth`]).
    pub fn point(&self, tier: Tier, end_ms: i64, node: String) -> pb::WorkloadPoint {
        let seconds = self.seconds_us as f64 / 1e6;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        let s = |us: i64| us as f64 / 1e6;
        let (thread, stack) = (s(self.gc_thread_us), s(self.gc_stack_us));
        pb::WorkloadPoint {
            window_end_unix_ms: end_ms,
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
                // Windows without one count as no stall in a bucket with
                // some: a container's first window, nothing more.
                memory_stall_us: (self.stall_windows > 0).then(|| u(self.memory_stall_us)),
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
            sawtooth_bytes_sum: u(self.sawtooth),
            sawtooth_minutes: u32::try_from(self.sawtooth_minutes).unwrap_or(0),
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

/// Every column after the key, in [`Rollup::values`] order.
/// The columns added to every tier after it was first shipped, by table:
/// what a store of an older version gains.
pub fn added_columns() -> impl Iterator<Item = (&'static str, &'static str)> {
    Tier::ALL.into_iter().flat_map(|t| {
        ["memory_stall_us", "stall_windows"]
            .into_iter()
            .map(move |c| (t.table(), c))
    })
}

pub fn all_columns() -> impl Iterator<Item = &'static str> {
    COLUMNS
        .iter()
        .map(|(c, _)| *c)
        .chain(std::iter::once(SAWTOOTH_MINUTES))
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
    if since_ms >= now_ms.saturating_sub(millis(retention.raw)) {
        return None;
    }
    let span_minutes = (now_ms - since_ms).div_euclid(60_000).max(1);
    let kept = |t: Tier| since_ms >= now_ms.saturating_sub(millis(retention.of(t)));
    let tier = Tier::ALL
        .into_iter()
        .find(|&t| kept(t) && (span_minutes + t.minutes() - 1) / t.minutes() <= MAX_REPORT_POINTS)
        .or_else(|| Tier::ALL.into_iter().rev().find(|&t| kept(t)))
        .unwrap_or(Tier::Day);
    let since_minute = since_ms.div_euclid(60_000) + i64::from(since_ms.rem_euclid(60_000) > 0);
    let oldest = keep_from_minute(now_ms, retention.of(tier));
    let first = since_minute.max(oldest);
    let aligned = first.div_euclid(tier.minutes()) * tier.minutes();
    let from = if aligned < first {
        aligned + tier.minutes()
    } else {
        aligned
    };
    Some((tier, from))
}

/// A retention in milliseconds (saturating).
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The first minute still kept by a retention of `keep` ending at `now_ms`.
pub fn keep_from_minute(now_ms: i64, keep: Duration) -> i64 {
    now_ms.saturating_sub(millis(keep)).div_euclid(60_000)
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

#[cfg(test)]
mod tests;
