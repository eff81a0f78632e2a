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

/// Go, GOGC doubled (`fixedwork.go`).
pub const GO: Calibration = Calibration {
    cpu: (0.4, 1.3),
    rss: (0.9, 2.4),
};

/// The JVM's heap doubled (`FixedWork.java`, G1 and Parallel).
pub const JVM: Calibration = Calibration {
    cpu: (0.5, 1.1),
    rss: (0.8, 1.2),
};

/// Node's semi-space quadrupled (`fixedwork.js`).
pub const NODE: Calibration = Calibration {
    cpu: (0.1, 0.6),
    rss: (0.8, 1.2),
};

/// Settings assumed rather than read widen the range by this much each way.
pub const ASSUMED_WIDENING: f64 = 0.5;
