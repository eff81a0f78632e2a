//! The streamer's buffer of unacknowledged reports: bounded, oldest dropped
//! first (and counted), emptied by acks.
use std::collections::VecDeque;

use bytes::Bytes;

/// Reports not yet acknowledged by the collector, in sequence order, each
/// kept encoded: a report is about a third of its decoded size that way, and
/// a resend costs no re-encoding.
#[derive(Debug)]
pub struct ReportBuffer {
    max_reports: usize,
    max_bytes: usize,
    reports: VecDeque<(u64, Bytes)>,
    bytes: usize,
    dropped: u64,
}

impl ReportBuffer {
    /// At most `max_reports` reports and `max_bytes` bytes (one report is
    /// always kept, however large).
    pub fn new(max_reports: usize, max_bytes: usize) -> Self {
        Self {
            max_reports: max_reports.max(1),
            max_bytes,
            reports: VecDeque::new(),
            bytes: 0,
            dropped: 0,
        }
    }

    /// Appends a report; drops the oldest ones while over either bound.
    /// Returns how many were dropped.
    pub fn push(&mut self, sequence: u64, report: Bytes) -> u64 {
        self.bytes += report.len();
        self.reports.push_back((sequence, report));
        let mut dropped = 0;
        while self.reports.len() > self.max_reports
            || (self.bytes > self.max_bytes && self.reports.len() > 1)
        {
            if let Some((_, old)) = self.reports.pop_front() {
                self.bytes -= old.len();
                dropped += 1;
            }
        }
        self.dropped += dropped;
        dropped
    }

    /// Forgets every report at or below `sequence`.
    pub fn ack(&mut self, sequence: u64) {
        while let Some((seq, _)) = self.reports.front() {
            if *seq > sequence {
                break;
            }
            if let Some((_, old)) = self.reports.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// Drops the oldest report (the collector refused it), counting it.
    pub fn drop_oldest(&mut self) -> Option<u64> {
        let (seq, old) = self.reports.pop_front()?;
        self.bytes -= old.len();
        self.dropped += 1;
        Some(seq)
    }

    /// The first report with a sequence at or above `sequence`.
    pub fn next_from(&self, sequence: u64) -> Option<(u64, Bytes)> {
        // Sequences are increasing: binary search.
        let i = self.reports.partition_point(|(s, _)| *s < sequence);
        self.reports.get(i).cloned()
    }

    pub fn oldest(&self) -> Option<u64> {
        self.reports.front().map(|(s, _)| *s)
    }

    pub fn len(&self) -> usize {
        self.reports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Reports dropped so far, in total.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    #[test]
    fn bounded_by_count_drops_oldest_and_counts() {
        let mut buf = ReportBuffer::new(3, usize::MAX);
        for seq in 1..=5 {
            buf.push(seq, b(10));
        }
        assert_eq!(buf.len(), 3);
        assert_eq!(buf.oldest(), Some(3));
        assert_eq!(buf.dropped(), 2);
        assert_eq!(buf.bytes(), 30);
    }

    #[test]
    fn bounded_by_bytes_but_keeps_one() {
        let mut buf = ReportBuffer::new(100, 25);
        buf.push(1, b(10));
        buf.push(2, b(10));
        assert_eq!(buf.push(3, b(10)), 1);
        assert_eq!(buf.oldest(), Some(2));
        assert_eq!(buf.push(4, b(100)), 2);
        assert_eq!(buf.len(), 1);
        assert_eq!(buf.dropped(), 3);
    }

    #[test]
    fn acks_remove_everything_at_or_below() {
        let mut buf = ReportBuffer::new(10, usize::MAX);
        for seq in 1..=5 {
            buf.push(seq, b(1));
        }
        buf.ack(3);
        assert_eq!(buf.oldest(), Some(4));
        // An old or repeated ack changes nothing.
        buf.ack(2);
        assert_eq!(buf.len(), 2);
        buf.ack(99);
        assert!(buf.is_empty());
        assert_eq!(buf.bytes(), 0);
        assert_eq!(buf.dropped(), 0);
    }

    #[test]
    fn resend_starts_from_the_oldest_unacked() {
        let mut buf = ReportBuffer::new(10, usize::MAX);
        for seq in 1..=4 {
            buf.push(seq, b(1));
        }
        // Sent 1..=4, the collector acked 2, then the connection broke:
        // a new connection sends from the oldest kept.
        buf.ack(2);
        let mut sent = Vec::new();
        let mut next = buf.oldest().unwrap();
        while let Some((seq, _)) = buf.next_from(next) {
            sent.push(seq);
            next = seq + 1;
        }
        assert_eq!(sent, vec![3, 4]);
        assert_eq!(buf.next_from(1).map(|(s, _)| s), Some(3));
        assert_eq!(buf.drop_oldest(), Some(3));
        assert_eq!(buf.dropped(), 1);
    }
}
