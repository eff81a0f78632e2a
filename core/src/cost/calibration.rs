//! How far each runtime model's prediction is from what a twin running the
//! change measured: the factors turning a modelled GC-CPU cut and a
//! modelled memory growth into a range of savings.
//!
//! Measured with `cargo xtask bench recommendations` (the harness in
//! `agent/tests/it/recommendations.rs`): fixed-work services at their
//! defaults in containers, a twin with Tally's change side by side, both
//! priced by Tally's own report. For each runtime, `cpu` spans the ratio
//! (CPU the twin saved) ÷ (GC CPU the agent saw × the model's cut), and
//! `rss` the ratio (RSS the twin added) ÷ (the model's growth), over the
//! cases run; the README's table has the numbers. A ratio above 1 means
//! the change saved more than the GC CPU it removed: fewer cycles also
//! mean fewer write-barrier phases, assists, and fresh pages to fault in.

/// Factors on a model's point values, as (low, high).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Multiplies (GC CPU × modelled cut) into CPU saved.
    pub cpu: (f64, f64),
    /// Multiplies the modelled RSS growth into RSS added.
    pub rss: (f64, f64),
}

impl Calibration {
    pub fn cpu_mid(&self) -> f64 {
        (self.cpu.0 + self.cpu.1) / 2.0
    }

    pub fn rss_mid(&self) -> f64 {
        (self.rss.0 + self.rss.1) / 2.0
    }
}

/// Go, GOGC doubled (`fixedwork.go`). CPU ratios measured: 0.86–1.45
/// over six 60 s twins at 500 and 1,500 requests per tick, 0.41 once in a
/// 30 s twin on a loaded machine; RSS: 1.0–1.1, and 2.2 twice where the
/// default's RSS was still growing when the recommendation was read.
pub const GO: Calibration = Calibration {
    cpu: (0.45, 1.6),
    rss: (0.9, 2.4),
};

/// The JVM's heap doubled (`FixedWork.java`, G1 and Parallel). CPU ratios
/// measured: 0.47–0.88; RSS 0.92–1.04.
pub const JVM: Calibration = Calibration {
    cpu: (0.4, 1.1),
    rss: (0.8, 1.2),
};

/// Node's semi-space quadrupled (`fixedwork.js`). CPU ratios measured:
/// 0.13 and 0.38 (scavenges are not most of this service's V8 GC time);
/// RSS 0.88 and 0.94.
pub const NODE: Calibration = Calibration {
    cpu: (0.1, 0.6),
    rss: (0.8, 1.2),
};

/// Settings assumed rather than read widen the range by this much each way.
pub const ASSUMED_WIDENING: f64 = 0.5;
