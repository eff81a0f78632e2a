//! What one tick of the node's sampler produced.
use std::time::SystemTime;

use super::Window;

/// Kinds of loss the kernel side counts (`agent_common::drop_kind`).
pub const DROP_KINDS: usize = 6;

/// Names of the `drop_kind` counters, for warnings and metrics.
pub const DROP_NAMES: [&str; DROP_KINDS] = [
    "thread map full",
    "process map full",
    "event ring buffer full",
    "kernel read failed",
    "user stack not recorded",
    "stack count map full",
];

/// What one tick produced.
#[derive(Debug)]
pub struct Tick {
    pub at: SystemTime,
    pub seconds: f64,
    pub windows: Vec<Window>,
    /// Losses since the previous tick, by `drop_kind`.
    pub new_drops: [u64; DROP_KINDS],
    /// Map entries of processes or threads that vanished without their exit
    /// being seen (a full ring buffer), finalized or removed by userspace.
    pub swept_records: usize,
    /// Nanoseconds of CPU one sample stands for.
    pub sample_period_ns: u64,
}
