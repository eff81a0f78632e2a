//! A cost report's span of one workload on one node, from the tier the
//! report reads: the buckets summed as the roll-up sums them, and each
//! bucket's RSS peak for the chart.
//!
//! A month of a 1,000-node cluster is 620,000 day buckets. Sent as points,
//! the collector encoded and the client decoded and walked every one of
//! them (3 s of the report's time); the report needs their sum and a chart.
//! Both stores fold their rows here, so the sum is computed in one place.
use tally_proto as pb;

use super::{Rollup, Tier};

#[derive(Debug, Clone)]
pub struct Span {
    tier: Tier,
    total: Rollup,
    last_end_ms: i64,
    bucket_end_unix_ms: Vec<i64>,
    bucket_rss_peak_bytes: Vec<u64>,
}

impl Span {
    pub fn new(tier: Tier) -> Self {
        Self {
            tier,
            total: Rollup::default(),
            last_end_ms: 0,
            bucket_end_unix_ms: Vec::new(),
            bucket_rss_peak_bytes: Vec::new(),
        }
    }

    /// Adds the bucket that starts at `bucket_minute` (in any order).
    pub fn add(&mut self, bucket_minute: i64, bucket: &Rollup) {
        let end_ms = (bucket_minute + self.tier.minutes()) * 60_000;
        self.total.merge(&bucket.with_teeth(self.tier));
        self.last_end_ms = self.last_end_ms.max(end_ms);
        self.bucket_end_unix_ms.push(end_ms);
        self.bucket_rss_peak_bytes
            .push(u64::try_from(bucket.rss_peak).unwrap_or(0));
    }

    /// The runtime its buckets named (`pb::Runtime`).
    pub fn runtime(&self) -> i32 {
        i32::try_from(self.total.runtime).unwrap_or(0)
    }

    pub fn finish(self, node: String) -> pb::NodeSpan {
        let mut chart: Vec<(i64, u64)> = self
            .bucket_end_unix_ms
            .into_iter()
            .zip(self.bucket_rss_peak_bytes)
            .collect();
        if !chart.is_sorted() {
            chart.sort_unstable();
        }
        let (bucket_end_unix_ms, bucket_rss_peak_bytes) = chart.into_iter().unzip();
        pb::NodeSpan {
            total: Some(self.total.point(self.tier, self.last_end_ms, node)),
            bucket_end_unix_ms,
            bucket_rss_peak_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(windows: i64, cpu_us: i64, peak: i64, min: i64) -> Rollup {
        Rollup {
            runtime: 1,
            windows,
            seconds_us: windows * 10_000_000,
            cpu_us,
            rss_kib_ms: 100 * windows * 10_000,
            rss_peak: peak,
            rss_min: min,
            cpu_peak_millicores: cpu_us / 10_000,
            ..Rollup::default()
        }
    }

    /// Minutes summed into a span give what their hour holds, and the
    /// chart has each minute's peak, oldest first.
    #[test]
    fn minutes_sum_as_their_roll_up_and_chart_each_peak() {
        let minutes = [
            (2, bucket(6, 3_000_000, 900, 500)),
            (0, bucket(6, 1_000_000, 800, 400)),
            (1, bucket(1, 2_000_000, 700, 700)),
        ];
        let mut span = Span::new(Tier::Minute);
        for (m, b) in &minutes {
            span.add(*m, b);
        }
        let s = span.finish("n".into());
        let t = s.total.unwrap();
        assert_eq!(t.node_name, "n");
        assert_eq!(t.bucket_seconds, 60);
        assert_eq!(t.window_end_unix_ms, 180_000);
        assert_eq!(t.window_seconds, 130.0);
        assert_eq!(t.delta.unwrap().cpu_seconds, 6.0);
        assert_eq!((t.rss_peak_bytes, t.rss_min_bytes), (900, 400));
        assert_eq!(t.cpu_peak_cores, 0.3);
        // The minute of one window has no tooth.
        assert_eq!((t.sawtooth_bytes_sum, t.sawtooth_minutes), (400 + 400, 2));
        assert_eq!(s.bucket_end_unix_ms, [60_000, 120_000, 180_000]);
        assert_eq!(s.bucket_rss_peak_bytes, [800, 700, 900]);
    }

    /// A day's stored teeth are summed, not recomputed from its peak.
    #[test]
    fn days_keep_their_stored_teeth() {
        let mut day = bucket(8640, 1, 900, 100);
        (day.sawtooth, day.sawtooth_minutes) = (1440 * 50, 1440);
        let mut span = Span::new(Tier::Day);
        span.add(0, &day);
        span.add(1440, &day);
        let t = span.finish("n".into()).total.unwrap();
        assert_eq!(t.sawtooth_bytes_sum, 2 * 1440 * 50);
        assert_eq!(t.sawtooth_minutes, 2880);
        assert_eq!(t.bucket_seconds, 86_400);
    }
}
