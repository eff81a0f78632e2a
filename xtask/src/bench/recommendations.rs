//! `cargo xtask bench recommendations`: Tally's recommendations against
//! reality, the long version of the suite's harness
//! (`agent/tests/it/recommendations.rs`). Fixed-work Go, JVM (G1 and
//! Parallel) and Node services at two work rates each run at their defaults
//! in containers; each gets Tally's recommendation, a twin runs it side by
//! side, and Tally's own pricing of the two gives the measured saving. It
//! prints predicted vs measured, with the error, and writes the table to
//! `target/recommendations.md` (the README's table comes from it).
//! Needs root and what the suite needs (dockerd running, go, a JDK 17,
//! node): `cargo xtask setup` provides them.
use std::path::Path;

use anyhow::Result;

pub fn run(root: &Path) -> Result<()> {
    crate::cmd::run(
        crate::cmd::cargo()
            .args(["test", "--release", "--package", "agent", "--test", "it"])
            .args(["--", "recommendations::bench_two_rates_of_each_service"])
            .args(["--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(
                "TALLY_RECOMMENDATIONS_TABLE",
                root.join("target/recommendations.md"),
            )
            .current_dir(root),
    )
}
