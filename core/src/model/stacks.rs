//! Sampled stacks, folded per process.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use crate::gc::Runtime;

/// Distinct stacks kept per process; samples of further stacks are counted
/// under one `[truncated]` frame.
pub const MAX_STACKS_PER_PROCESS: usize = 20_000;
/// Processes whose stacks are kept at once; further ones are not recorded.
pub const MAX_PROFILED_PROCESSES: usize = 1024;
/// The frame name of an address without a symbol.
pub const UNKNOWN_FRAME: &str = "[unknown]";

/// One process's folded stacks since they were last taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FoldedStacks {
    pub runtime: Runtime,
    /// Frames root first, leaf last, with their sample counts.
    pub stacks: HashMap<Vec<Arc<str>>, u64>,
    /// Frame names that are GC code of `runtime` (`gc::symbols`).
    pub gc_frames: HashSet<Arc<str>>,
    /// Samples whose stack was not kept (the per-process bound).
    pub truncated: u64,
}

impl FoldedStacks {
    /// Total samples.
    pub fn samples(&self) -> u64 {
        self.stacks.values().sum::<u64>() + self.truncated
    }

    /// Lines of Brendan Gregg's folded format (`a;b;c 12`), sorted.
    pub fn folded_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .stacks
            .iter()
            .map(|(frames, n)| format!("{} {n}", frames.join(";")))
            .collect();
        if self.truncated > 0 {
            lines.push(format!("[truncated] {}", self.truncated));
        }
        lines.sort();
        lines
    }
}
