//! CPU in GC code, by sampled user stack: for runtimes whose collector runs
//! on ordinary threads (Go's mark workers and assists, V8's collectors on
//! the main thread), where thread names cannot tell.
//!
//! Each tick: flip the slot the sampler writes, drain the other one, read
//! each stack's frames, symbolize them with blazesym (ELF symbols only: no
//! DWARF, no perf maps) and count a sample as GC if any frame is GC code.
//! Symbols are cached per process and address; a process's cache goes when
//! the process does.
use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use agent_common::StackKey;
use blazesym::{
    Pid,
    symbolize::{
        Input, Symbolized, Symbolizer,
        evict::{self, Evict},
        source::{Process, Source},
    },
};

use crate::{
    gc::{self, Runtime},
    probes::{ProbeError, Probes},
};

/// What one process's sampled stacks showed in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackWindow {
    /// Samples with a user stack.
    pub samples: u64,
    /// Of those, samples with a GC frame, in threads not already counted
    /// as GC threads by name.
    pub gc_samples: u64,
}

/// Addresses whose symbols are GC code, per process.
#[derive(Default)]
struct ProcessSymbols {
    gc: HashMap<u64, bool>,
}

pub struct StackSampler {
    symbolizer: Symbolizer,
    symbols: HashMap<u32, ProcessSymbols>,
    /// Processes whose stacks are sampled (mirrors `STACK_TGIDS`).
    sampled: HashSet<u32>,
    /// False with `--stack-sampling off`: no process is ever added.
    enabled: bool,
}

impl StackSampler {
    pub fn new(enabled: bool) -> Self {
        Self {
            symbolizer: Symbolizer::builder()
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .enable_demangling(true)
                .build(),
            symbols: HashMap::new(),
            sampled: HashSet::new(),
            enabled,
        }
    }
    /// Starts sampling the user stacks of `tgid`.
    pub fn sample(&mut self, probes: &mut Probes, tgid: u32) -> Result<(), ProbeError> {
        if self.enabled && self.sampled.insert(tgid) {
            let _ = probes.stack_tgids_mut()?.insert(tgid, 1, 0);
        }
        Ok(())
    }

    /// Forgets a process that is gone (the kernel side drops its
    /// `STACK_TGIDS` entry when it exits).
    pub fn forget(&mut self, tgid: u32) {
        self.sampled.remove(&tgid);
        if self.symbols.remove(&tgid).is_some() {
            let _ = self
                .symbolizer
                .evict(&Evict::Process(evict::Process::new(Pid::from(tgid))));
        }
    }

    /// Drains the samples since the previous call. `gc_tids` are threads the
    /// thread-name rule already counted as GC.
    pub fn tick(
        &mut self,
        probes: &mut Probes,
        gc_tids: &HashSet<u32>,
        runtime_of: impl Fn(u32) -> Runtime,
    ) -> Result<HashMap<u32, StackWindow>, ProbeError> {
        let drained = drain(probes)?;
        let mut windows: HashMap<u32, StackWindow> = HashMap::new();
        let mut stack_ids = HashSet::new();
        // Group the stacks per process to symbolize each process once.
        let mut per_process: HashMap<u32, Vec<(StackKey, u64, Vec<u64>)>> = HashMap::new();
        {
            let stacks = probes.stacks_mut()?;
            for (key, count) in drained {
                let window = windows.entry(key.tgid).or_default();
                window.samples += count;
                if gc_tids.contains(&key.tid) {
                    continue;
                }
                stack_ids.insert(key.stack_id as u32);
                let Ok(trace) = stacks.get(&(key.stack_id as u32), 0) else {
                    continue;
                };
                let ips = trace
                    .frames()
                    .iter()
                    .map(|f| f.ip)
                    .filter(|&ip| ip != 0)
                    .collect();
                per_process
                    .entry(key.tgid)
                    .or_default()
                    .push((key, count, ips));
            }
        }
        for (tgid, stacks) in per_process {
            let runtime = runtime_of(tgid);
            let gc = self.classify(tgid, runtime, &stacks);
            windows.entry(tgid).or_default().gc_samples += gc;
        }
        // Stack ids are kept only as long as a drain needs them; a stack
        // sampled again meanwhile is recorded anew under the same id.
        let mut stacks = probes.stacks_mut()?;
        for id in stack_ids {
            let _ = stacks.remove(&id);
        }
        Ok(windows)
    }

    /// GC samples among `stacks` of one process.
    fn classify(
        &mut self,
        tgid: u32,
        runtime: Runtime,
        stacks: &[(StackKey, u64, Vec<u64>)],
    ) -> u64 {
        let cache = self.symbols.entry(tgid).or_default();
        let unknown: Vec<u64> = {
            let mut seen = HashSet::new();
            stacks
                .iter()
                .flat_map(|(_, _, ips)| ips.iter().copied())
                .filter(|ip| !cache.gc.contains_key(ip) && seen.insert(*ip))
                .collect()
        };
        if !unknown.is_empty() {
            let mut process = Process::new(Pid::from(tgid));
            process.debug_syms = false;
            process.perf_map = false;
            process.vdso = false;
            let source = Source::Process(process);
            match self.symbolizer.symbolize(&source, Input::AbsAddr(&unknown)) {
                Ok(symbols) => {
                    for (ip, sym) in unknown.iter().zip(symbols) {
                        let is_gc = match sym {
                            Symbolized::Sym(s) => gc::symbols::is_gc_symbol(runtime, &s.name),
                            Symbolized::Unknown(_) => false,
                        };
                        cache.gc.insert(*ip, is_gc);
                    }
                }
                Err(err) => tracing::debug!(tgid, "symbolization failed: {err}"),
            }
        }
        stacks
            .iter()
            .filter(|(_, _, ips)| {
                ips.iter()
                    .any(|ip| cache.gc.get(ip).copied().unwrap_or(false))
            })
            .map(|(_, count, _)| count)
            .sum()
    }

    /// Addresses cached, for the memory figure of the benchmark.
    pub fn cached_addresses(&self) -> usize {
        self.symbols.values().map(|s| s.gc.len()).sum()
    }
}

/// Flips the slot and drains the one the sampler used until now.
fn drain(probes: &mut Probes) -> Result<Vec<(StackKey, u64)>, ProbeError> {
    let slot = probes.flip_stack_slot()?;
    // A sample already past its slot lookup finishes within microseconds.
    std::thread::sleep(Duration::from_millis(1));
    let mut counts = probes.stack_counts_mut(slot)?;
    let keys: Vec<StackKey> = counts.keys().filter_map(Result::ok).collect();
    let mut drained = Vec::with_capacity(keys.len());
    for key in keys {
        if let Ok(n) = counts.get(&key, 0) {
            drained.push((key, n));
        }
        let _ = counts.remove(&key);
    }
    Ok(drained)
}
