//! Each row's recent values, for the detail view's charts: appended as
//! windows arrive (or backfilled from a collector's stored history), bounded
//! in span and points, bucketed to the width of a chart.
use std::collections::{HashMap, VecDeque};

use super::rows::{Entry, RowId};

/// The span the detail view charts.
pub const HISTORY_SECONDS: f64 = 300.0;
/// Points kept per row at most (the span at the shortest interval).
pub const HISTORY_MAX_POINTS: usize = 600;

/// A row's recent values, for the detail view's charts.
#[derive(Debug, Default)]
struct Series {
    /// Seconds since [`History::base`], and CPU %, GC %, faults/s, alloc
    /// bytes/s, RSS.
    points: VecDeque<(f32, [f32; 5])>,
}

/// Every row's recent values. Rows get a point when they had a window, so
/// a quiet process costs nothing; a row gone for longer than the span is
/// forgotten.
#[derive(Debug, Default)]
pub struct History {
    base: Option<f64>,
    series: HashMap<RowId, Series>,
}

/// The metrics the detail view charts, in [`Entry::point`] order.
pub const METRICS: [&str; 5] = ["CPU", "GC share", "page faults", "allocation", "RSS"];

impl History {
    fn rel(&mut self, unix: f64) -> f32 {
        let base = *self.base.get_or_insert(unix);
        (unix - base) as f32
    }

    /// Adds a point for each entry that had a window at `unix` seconds.
    pub fn record<'a>(&mut self, entries: impl IntoIterator<Item = &'a Entry>, unix: f64) {
        let t = self.rel(unix);
        for e in entries {
            if e.quiet_for > 0.0 {
                continue;
            }
            self.push(&e.id, t, e.point());
        }
    }

    fn push(&mut self, id: &RowId, t: f32, point: [f32; 5]) {
        let s = match self.series.get_mut(id) {
            Some(s) => s,
            None => self.series.entry(id.clone()).or_default(),
        };
        if s.points.back().is_some_and(|(last, _)| *last >= t) {
            return; // the same window again (a remote workload not yet updated)
        }
        if s.points.len() >= HISTORY_MAX_POINTS {
            s.points.pop_front();
        }
        s.points.push_back((t, point));
    }

    /// Adds one point of one row, at `unix` seconds (remote workloads:
    /// the end of their latest window).
    pub fn record_one(&mut self, id: &RowId, unix: f64, point: [f32; 5]) {
        let t = self.rel(unix);
        self.push(id, t, point);
    }

    /// Merges older points (a remote workload's stored history) in front of
    /// what the watch stream brought.
    pub fn backfill(&mut self, id: &RowId, points: &[(f64, [f32; 5])]) {
        let mut older: VecDeque<(f32, [f32; 5])> = VecDeque::new();
        for (unix, p) in points {
            older.push_back((self.rel(*unix), *p));
        }
        let s = self.series.entry(id.clone()).or_default();
        let first_new = s.points.front().map(|(t, _)| *t);
        older.retain(|(t, _)| first_new.is_none_or(|f| *t < f));
        older.extend(s.points.drain(..));
        while older.len() > HISTORY_MAX_POINTS {
            older.pop_front();
        }
        s.points = older;
    }

    /// Forgets points older than the span before `unix`.
    pub fn prune(&mut self, unix: f64) {
        let cutoff = self.rel(unix) - HISTORY_SECONDS as f32;
        self.series.retain(|_, s| {
            while s.points.front().is_some_and(|(t, _)| *t < cutoff) {
                s.points.pop_front();
            }
            !s.points.is_empty()
        });
    }

    pub fn len(&self, id: &RowId) -> usize {
        self.series.get(id).map_or(0, |s| s.points.len())
    }

    pub fn rows(&self) -> usize {
        self.series.len()
    }

    /// One metric of a row in `buckets` columns ending at `until` (unix
    /// seconds): each bucket the mean of its points, `None` before the
    /// first point. Buckets are at least `min_step` seconds wide (the
    /// interval), so a wide chart never shows gaps between windows. Returns
    /// the values, the seconds each bucket spans, and the latest point's
    /// value.
    pub fn chart(
        &self,
        id: &RowId,
        metric: usize,
        buckets: usize,
        until: f64,
        min_step: f64,
    ) -> Chart {
        let Some(s) = self.series.get(id) else {
            return Chart::default();
        };
        let Some(base) = self.base else {
            return Chart::default();
        };
        let buckets = buckets.max(1);
        let step = (HISTORY_SECONDS / buckets as f64).max(min_step).max(1e-3);
        let end = until - base;
        let start = end - step * buckets as f64;
        let mut sum = vec![0.0f64; buckets];
        let mut n = vec![0u32; buckets];
        let mut first: Option<usize> = None;
        let mut latest = None;
        for (t, p) in &s.points {
            let t = f64::from(*t);
            if t > end + 1e-6 {
                break;
            }
            latest = Some(f64::from(p[metric]));
            if t <= start {
                continue;
            }
            let i = (((t - start) / step).ceil() as usize).clamp(1, buckets) - 1;
            sum[i] += f64::from(p[metric]);
            n[i] += 1;
            first = Some(first.map_or(i, |f: usize| f.min(i)));
        }
        let carry = metric == 4; // RSS: the last value holds until the next
        let mut values = Vec::with_capacity(buckets);
        let mut last = None;
        for i in 0..buckets {
            let v = if n[i] > 0 {
                Some(sum[i] / f64::from(n[i]))
            } else if first.is_some_and(|f| i > f) {
                if carry { last } else { Some(0.0) }
            } else {
                None
            };
            if n[i] > 0 {
                last = v;
            }
            values.push(v);
        }
        Chart {
            values,
            step,
            latest,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chart {
    pub values: Vec<Option<f64>>,
    /// Seconds a bucket spans.
    pub step: f64,
    pub latest: Option<f64>,
}

impl Chart {
    pub fn max(&self) -> f64 {
        self.values.iter().flatten().copied().fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn chart_buckets_means_and_gaps() {
        let mut h = History::default();
        let id = RowId::Cgroup(Arc::from("/x"));
        for (t, v) in [(100.0, 10.0), (101.0, 20.0), (104.0, 40.0)] {
            h.record_one(&id, t, [v, 0.0, 0.0, 0.0, v]);
        }
        // 5 buckets of at least 1 s ending at 104.
        let c = h.chart(&id, 0, 5, 104.0, 1.0);
        assert_eq!(c.step, HISTORY_SECONDS / 5.0);
        assert_eq!(c.values.len(), 5);
        assert_eq!(c.values[4], Some(70.0 / 3.0));
        assert_eq!(c.latest, Some(40.0));
        let fine = h.chart(&id, 0, 300, 104.0, 1.0);
        assert_eq!(fine.step, 1.0);
        let tail: Vec<Option<f64>> = fine.values[295..].to_vec();
        assert_eq!(
            tail,
            vec![Some(10.0), Some(20.0), Some(0.0), Some(0.0), Some(40.0)]
        );
        // RSS carries its last value over gaps.
        let rss = h.chart(&id, 4, 300, 104.0, 1.0);
        assert_eq!(rss.values[297], Some(20.0));
        assert_eq!(rss.values[294], None, "nothing before the first point");
        // A paused view charts only up to what it shows.
        assert_eq!(h.chart(&id, 0, 300, 101.0, 1.0).latest, Some(20.0));
        h.prune(100.0 + HISTORY_SECONDS + 2.0);
        assert_eq!(h.len(&id), 1);
        h.prune(104.0 + HISTORY_SECONDS + 1.0);
        assert_eq!(h.rows(), 0);
    }
}
