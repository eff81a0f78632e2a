//! The cost lens: what each workload costs on its node, what its garbage
//! collector costs, and what to change.
//!
//! Pure logic, no I/O: the callers (`agent top`, `agent workloads`,
//! `agent report`) hand in what the agent measured and print what comes out.
//! End to end:
//!
//! 1. **Price** ([`prices`], [`overrides`]). A node's hourly price comes from
//!    an embedded, versioned table of Linux on-demand EC2 prices (x86 m6i,
//!    m7i, c6i, c7i, r6i, r7i, t3; Graviton m6g, m7g, c6g, c7g, r6g, r7g,
//!    t4g; .medium/.large–.4xlarge; ten regions), with vCPUs, memory, source
//!    and date per row, and a `verified` column that says which figures were
//!    read from a source and which were derived. Spot nodes cost on-demand ×
//!    a spot fraction (default 0.40, measured from spot prices of the same
//!    snapshot). Fargate's per-vCPU-hour and per-GB-hour rates are included.
//!    The user's override file (savings plans, other regions) wins over the
//!    table; a malformed file is rejected with the line and field at fault.
//! 2. **Split the node's price into CPU and memory** ([`allocation`]), the
//!    way OpenCost does when a cloud gives only a node's total price: with
//!    OpenCost's default relative prices of a vCPU-hour and a GiB-hour
//!    ($0.031611 and $0.004237, a ratio of ~7.46), the GiB-hour rate is
//!    `price / (vcpus × 7.46 + GiB)` and the vCPU-hour rate is 7.46 times
//!    that, so the two resources add back up to the node's price exactly.
//!    The same rates are used everywhere below.
//! 3. **Allocate** ([`allocation`]). Each workload is billed, per resource,
//!    for `max(request, usage)` — CPU usage from CPU seconds, memory usage
//!    from average RSS — so a workload that requests more than it uses pays
//!    for what it reserved (reported apart as "requested but unused"). What
//!    nobody used or requested is the node's idle cost, kept apart. When the
//!    node is overcommitted, shares are scaled down proportionally so that
//!    node price × hours = Σ workload costs + idle, always (tested to the
//!    cent).
//! 4. **GC tax** ([`gctax`]): the CPU seconds spent in GC, priced at the CPU
//!    rate, plus the memory the collector holds as headroom, priced at the
//!    memory rate. Headroom is estimated from the RSS sawtooth: the mean of
//!    (peak before a collection − floor after it), using GC timestamps when
//!    the runtime reports them, else the sawtooth's own drops; the estimate
//!    says which method it used, over how many cycles, and how confident it
//!    is (low for a flat series or few cycles).
//! 5. **Recommend** ([`recommend`]): for each GC-heavy workload, the concrete
//!    change — `GOGC`/`GOMEMLIMIT` for Go, `-Xmx` and collector for the JVM,
//!    `--max-old-space-size` for Node, Kubernetes requests/limits from
//!    observed peaks plus a stated margin, and the instance shape (Graviton
//!    included) that would pack it better — each with its expected monthly
//!    saving (730 h), the model behind it, a confidence and the data window.
//!    No memory figure it recommends is ever below an observed peak.
pub mod allocation;
pub mod calibration;
pub mod gctax;
pub mod live;
pub mod overrides;
pub mod prices;
pub mod recommend;
mod records;
pub mod report;
mod shape;
pub(crate) mod tuning;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::Serialize;

pub use allocation::{NodeAllocation, NodeRates, WorkloadCost, WorkloadUsage, allocate};
pub use gctax::{GcCycles, GcTax, HeadroomEstimate, HeadroomMethod, estimate_headroom, gc_tax};
pub use overrides::{OverrideError, Overrides};
pub use prices::{Arch, FargateRate, Lifecycle, NodePrice, PriceTable, Verification};
pub use recommend::{Recommendation, recommend};
pub use records::TableError;

/// Hours in the month that monthly figures use (AWS's convention: 365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Bytes in a GiB, the memory unit of prices.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// How much a figure can be relied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn name(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }

    /// One step down (low stays low).
    pub fn lower(self) -> Confidence {
        match self {
            Confidence::High => Confidence::Medium,
            _ => Confidence::Low,
        }
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The span of data a figure rests on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DataWindow {
    pub seconds: f64,
}

impl DataWindow {
    pub fn hours(self) -> f64 {
        self.seconds / 3600.0
    }
}

impl fmt::Display for DataWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.seconds.is_finite() {
            self.seconds.max(0.0)
        } else {
            0.0
        };
        if s < 120.0 {
            write!(f, "{s:.0} s")
        } else if s < 2.0 * 3600.0 {
            write!(f, "{:.0} min", s / 60.0)
        } else if s < 2.0 * 86400.0 {
            write!(f, "{:.1} h", s / 3600.0)
        } else {
            write!(f, "{:.1} days", s / 86400.0)
        }
    }
}

/// `x` when finite and positive, else 0: inputs come from counters and
/// samplers, and a NaN must not poison a bill.
pub(crate) fn nonneg(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 { x } else { 0.0 }
}
