//! Tally's core: what every part of it agrees on, as pure logic.
//!
//! - [`model`]: the names of DESIGN.md (`ProcKey`, `Counters`, `Window`,
//!   `Tick`, containers, pods, the node) and the sums over them;
//! - [`gc`]: the one GC classification (`GcSignals`, `classify`, `Verdict`);
//! - [`workload`]: what a verdict is about across nodes (`WorkloadId`) and
//!   what a received report says about each workload;
//! - [`cost`]: prices, the CPU/memory split, the GC tax, recommendations,
//!   the cost report;
//! - [`encode`]: a tick as the `NodeReport` an agent streams;
//! - [`records`]: windows as `--json` lines.
//!
//! No async runtime, no eBPF, no database, no terminal: the node, the
//! collector and the view all build on it.
pub mod cost;
pub mod encode;
pub mod gc;
pub mod model;
pub mod procstat;
pub mod records;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod workload;

/// An error and its causes on one line: tonic's transport errors say only
/// "transport error" at the top.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text = format!("{text}: {s}");
        }
        source = cause.source();
    }
    text
}
