//! Pressure stall information (PSI) of a cgroup v2: how long its tasks
//! stalled waiting for memory, or for a CPU, from the kernel's
//! `memory.pressure` and `cpu.pressure` files in the cgroup's directory
//! (`Documentation/accounting/psi.rst`):
//!
//! ```text
//! some avg10=0.00 avg60=0.00 avg300=0.00 total=12345
//! full avg10=0.00 avg60=0.00 avg300=0.00 total=6789
//! ```
//!
//! `total` is cumulative stall time in µs: `some`, time in which at least
//! one task stalled; `full`, time in which every non-idle task stalled at
//! once. A window's figures are the differences of two reads, so they need
//! none of the kernel's moving averages.
use serde::Serialize;

/// The `some` and `full` totals of one pressure file, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StallTotals {
    pub some_us: u64,
    /// `None` where the file has no `full` line (the root cgroup's
    /// `cpu.pressure` on kernels before 5.13).
    pub full_us: Option<u64>,
}

impl StallTotals {
    /// Parses a pressure file; `None` if it has no `some` line with a
    /// total.
    pub fn parse(text: &str) -> Option<Self> {
        let total = |kind: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(kind))?
                .split_whitespace()
                .find_map(|f| f.strip_prefix("total="))?
                .parse()
                .ok()
        };
        Some(Self {
            some_us: total("some")?,
            full_us: total("full"),
        })
    }

    /// Stall time since `earlier`, µs (zero if the counters went back: a
    /// cgroup removed and made again under the same path).
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            some_us: self.some_us.saturating_sub(earlier.some_us),
            full_us: match (self.full_us, earlier.full_us) {
                (Some(now), Some(then)) => Some(now.saturating_sub(then)),
                (now, _) => now,
            },
        }
    }
}

/// A container's pressure in one window: the stall time of the window and
/// the totals at its end, for memory and CPU. `None` for a resource whose
/// file could not be read (no PSI in the kernel, `psi=0`, a cgroup gone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CgroupPressure {
    pub memory: Option<PressureWindow>,
    pub cpu: Option<PressureWindow>,
}

impl CgroupPressure {
    /// Seconds of the window in which some task stalled on memory: the
    /// verdict's evidence (`GcSignals::memory_stall_seconds`).
    pub fn memory_stall_seconds(&self) -> Option<f64> {
        self.memory.map(|m| m.delta.some_us as f64 / 1e6)
    }
}

/// One resource's pressure in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PressureWindow {
    /// Stall time within the window, µs.
    pub delta: StallTotals,
    /// The cumulative totals at the window's end, µs.
    pub total: StallTotals,
}

impl PressureWindow {
    /// Share of the window's wall time in which some task stalled, 0..1.
    pub fn some_share(&self, window_seconds: f64) -> f64 {
        share(self.delta.some_us, window_seconds)
    }

    /// Share of the window's wall time in which every task stalled.
    pub fn full_share(&self, window_seconds: f64) -> Option<f64> {
        self.delta.full_us.map(|us| share(us, window_seconds))
    }
}

fn share(us: u64, window_seconds: f64) -> f64 {
    if window_seconds <= 0.0 {
        return 0.0;
    }
    (us as f64 / 1e6 / window_seconds).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let t = StallTotals::parse(
            "some avg10=1.50 avg60=0.30 avg300=0.06 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=789\n",
        )
        .unwrap();
        assert_eq!(
            t,
            StallTotals {
                some_us: 123_456,
                full_us: Some(789)
            }
        );
        let cpu_root = StallTotals::parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n");
        assert_eq!(cpu_root.unwrap().full_us, None);
        assert_eq!(StallTotals::parse(""), None);
        assert_eq!(StallTotals::parse("some avg10=0.00"), None);
    }

    #[test]
    fn window_deltas_and_shares() {
        let a = StallTotals {
            some_us: 1_000_000,
            full_us: Some(100),
        };
        let b = StallTotals {
            some_us: 1_500_000,
            full_us: Some(250_100),
        };
        let d = b.since(&a);
        assert_eq!(d.some_us, 500_000);
        assert_eq!(d.full_us, Some(250_000));
        let w = PressureWindow { delta: d, total: b };
        assert!((w.some_share(2.0) - 0.25).abs() < 1e-12);
        assert!((w.full_share(2.0).unwrap() - 0.125).abs() < 1e-12);
        // A cgroup made anew: counters restart, no negative stall.
        assert_eq!(a.since(&b).some_us, 0);
    }
}
