//! A process's threads, grouped by name.

/// Threads of one process sharing a name, in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadGroup {
    /// The name with its trailing number removed: "GC Thread#0" and
    /// "GC Thread#1" are one group, "GC Thread#".
    pub name: String,
    pub threads: u32,
    pub samples: u64,
    /// The samples as seconds.
    pub cpu_seconds: f64,
    pub gc: bool,
}
