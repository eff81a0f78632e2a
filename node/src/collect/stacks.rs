//! CPU in GC code, by sampled user stack: for runtimes whose collector runs
//! on ordinary threads (Go's mark workers and assists, V8's collectors on
//! the main thread), where thread names cannot tell.
//!
//! Each tick: flip the slot the sampler writes, drain the other one, read
//! each stack's frames, symbolize them with blazesym (ELF symbols only: no
//! DWARF, no perf maps) and count a sample as GC if any frame is GC code.
//! Symbols are cached per process and address; a process's cache goes when
//! the process does.
//!
//! Stripped Go binaries (`-ldflags="-s -w"`) have no symbol table, so
//! blazesym names none of their frames; for those the binary's pclntab
//! names them ([`gc::gopclntab`]). The file is read through
//! `/proc/<pid>/map_files/` (the very file mapped, in a container or
//! deleted meanwhile), parsed once per file (device, inode) however many
//! processes run it, and dropped with the last of them.
//!
//! For CPU profiles ([`StackSampler::record_profiles`]) the same drain also
//! keeps folded stacks (function names, root first) with their sample
//! counts, per process, bounded in memory, until taken.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
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

use crate::runtimes::go::frames::{FileId, GoTables, go_names};

use tally_core::gc::Runtime;

use crate::{
    probes::{ProbeError, Probes},
    runtimes::{self, go::pclntab::GoFuncTable},
};

/// What one process's sampled stacks showed in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackWindow {
    /// Samples with a user stack.
    pub samples: u64,
    /// Of those, samples with a GC frame, in threads not already counted
    /// as GC threads by name.
    pub gc_samples: u64,
    /// Samples (outside GC threads) with a frame symbolized as the
    /// runtime's own code: where there are samples but none of these, the
    /// stacks cannot show GC either (a stripped binary).
    pub runtime_samples: u64,
}

/// What a symbolized address is, for a process's runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// GC code (`runtimes::symbols::is_gc_symbol`).
    Gc,
    /// The runtime's other code (`runtimes::symbols::is_runtime_symbol`).
    Runtime,
    /// Anything else, or no symbol.
    Other,
}

/// What each address of a process is; their names too while the process
/// is profiled.
#[derive(Default)]
struct ProcessSymbols {
    frames: HashMap<u64, Frame>,
    names: HashMap<u64, Arc<str>>,
    /// The pclntabs of the files this process maps, by (device, inode);
    /// `None`: the file has none (or could not be read), not tried again.
    go_tables: HashMap<FileId, Option<Arc<GoFuncTable>>>,
}

/// Whose folded stacks are kept for profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileFilter {
    All,
    Tgids(HashSet<u32>),
}

impl ProfileFilter {
    fn wants(&self, tgid: u32) -> bool {
        match self {
            ProfileFilter::All => true,
            ProfileFilter::Tgids(t) => t.contains(&tgid),
        }
    }
}

pub use tally_core::model::stacks::{
    FoldedStacks, MAX_PROFILED_PROCESSES, MAX_STACKS_PER_PROCESS, UNKNOWN_FRAME,
};

/// The folded stacks recorded since they were last taken, by process;
/// shared, so that a tick's consumer can take them (`agent run` puts them
/// in its reports).
pub type ProfileSink = Arc<Mutex<HashMap<u32, FoldedStacks>>>;

struct ProfileRecorder {
    filter: ProfileFilter,
    by_tgid: ProfileSink,
}

pub struct StackSampler {
    symbolizer: Symbolizer,
    symbols: HashMap<u32, ProcessSymbols>,
    go_tables: GoTables,
    /// Processes whose stacks are sampled (mirrors `STACK_TGIDS`).
    sampled: HashSet<u32>,
    /// False with `--stack-sampling off`: no process is ever added.
    enabled: bool,
    /// Folded stacks kept for profiles, when asked for.
    profiles: Option<ProfileRecorder>,
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
            go_tables: GoTables::default(),
            sampled: HashSet::new(),
            enabled,
            profiles: None,
        }
    }

    /// Keeps the folded stacks of the processes `filter` names from the
    /// next drain on (replacing any earlier filter; what was recorded stays
    /// until taken). Their stacks must be sampled too ([`Self::sample`], or
    /// `--stack-sampling all`).
    pub fn record_profiles(&mut self, filter: ProfileFilter) {
        match &mut self.profiles {
            Some(p) => p.filter = filter,
            None => {
                self.profiles = Some(ProfileRecorder {
                    filter,
                    by_tgid: ProfileSink::default(),
                })
            }
        }
    }

    /// Adds `tgid` to a [`ProfileFilter::Tgids`] filter.
    pub fn profile_tgid(&mut self, tgid: u32) {
        match &mut self.profiles {
            Some(ProfileRecorder {
                filter: ProfileFilter::Tgids(t),
                ..
            }) => {
                t.insert(tgid);
            }
            Some(_) => {}
            None => self.record_profiles(ProfileFilter::Tgids(HashSet::from([tgid]))),
        }
    }

    /// The folded stacks recorded since the previous call, by process.
    pub fn take_profiles(&mut self) -> HashMap<u32, FoldedStacks> {
        self.profile_sink().map(take_stacks).unwrap_or_default()
    }

    /// Where the recorded stacks accumulate, once recording.
    pub fn profile_sink(&self) -> Option<ProfileSink> {
        self.profiles.as_ref().map(|p| p.by_tgid.clone())
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
            self.go_tables.prune();
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
                let profiled = self
                    .profiles
                    .as_ref()
                    .is_some_and(|p| p.filter.wants(key.tgid));
                if gc_tids.contains(&key.tid) && !profiled {
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
            let profiled = self.profiles.as_ref().is_some_and(|p| p.filter.wants(tgid));
            // GC threads (by name) are already counted as GC: not again.
            let (own, gc_threads): (Vec<_>, Vec<_>) = stacks
                .into_iter()
                .partition(|(key, _, _)| !gc_tids.contains(&key.tid));
            let (gc, runtime_samples) = self.classify(tgid, runtime, &own, profiled);
            let window = windows.entry(tgid).or_default();
            window.gc_samples += gc;
            window.runtime_samples += runtime_samples;
            if profiled {
                self.classify(tgid, runtime, &gc_threads, true);
                self.record(tgid, runtime, own.iter().chain(&gc_threads));
            }
        }
        // Stack ids are kept only as long as a drain needs them; a stack
        // sampled again meanwhile is recorded anew under the same id.
        let mut stacks = probes.stacks_mut()?;
        for id in stack_ids {
            let _ = stacks.remove(&id);
        }
        Ok(windows)
    }

    /// Adds stacks of a profiled process to its folded stacks.
    fn record<'a>(
        &mut self,
        tgid: u32,
        runtime: Runtime,
        stacks: impl Iterator<Item = &'a (StackKey, u64, Vec<u64>)>,
    ) {
        let (Some(recorder), Some(cache)) = (self.profiles.as_mut(), self.symbols.get(&tgid))
        else {
            return;
        };
        let mut by_tgid = recorder
            .by_tgid
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !by_tgid.contains_key(&tgid) && by_tgid.len() >= MAX_PROFILED_PROCESSES {
            return;
        }
        let folded = by_tgid.entry(tgid).or_default();
        folded.runtime = runtime;
        let unknown: Arc<str> = Arc::from(UNKNOWN_FRAME);
        for (_, count, ips) in stacks {
            // The kernel gives the leaf first.
            let frames: Vec<Arc<str>> = ips
                .iter()
                .rev()
                .map(|ip| {
                    cache
                        .names
                        .get(ip)
                        .cloned()
                        .unwrap_or_else(|| unknown.clone())
                })
                .collect();
            for (ip, name) in ips.iter().rev().zip(&frames) {
                if cache.frames.get(ip) == Some(&Frame::Gc) && !folded.gc_frames.contains(name) {
                    folded.gc_frames.insert(name.clone());
                }
            }
            if let Some(n) = folded.stacks.get_mut(&frames) {
                *n += count;
            } else if folded.stacks.len() < MAX_STACKS_PER_PROCESS {
                folded.stacks.insert(frames, *count);
            } else {
                folded.truncated += count;
            }
        }
    }

    /// GC samples among `stacks` of one process, and samples that show the
    /// runtime's code at all; with `names`, keeps the frames' names too.
    fn classify(
        &mut self,
        tgid: u32,
        runtime: Runtime,
        stacks: &[(StackKey, u64, Vec<u64>)],
        names: bool,
    ) -> (u64, u64) {
        let cache = self.symbols.entry(tgid).or_default();
        let unknown: Vec<u64> = {
            let mut seen = HashSet::new();
            stacks
                .iter()
                .flat_map(|(_, _, ips)| ips.iter().copied())
                .filter(|ip| {
                    (!cache.frames.contains_key(ip) || (names && !cache.names.contains_key(ip)))
                        && seen.insert(*ip)
                })
                .collect()
        };
        if !unknown.is_empty() {
            let mut process = Process::new(Pid::from(tgid));
            process.debug_syms = false;
            process.perf_map = false;
            process.vdso = false;
            let source = Source::Process(process);
            // After a failed symbolization, addresses still unnamed are
            // tried again next time.
            let mut retry = false;
            let mut found: Vec<Option<Arc<str>>> =
                match self.symbolizer.symbolize(&source, Input::AbsAddr(&unknown)) {
                    Ok(symbols) => symbols
                        .iter()
                        .map(|sym| match sym {
                            Symbolized::Sym(s) => Some(Arc::from(&*s.name)),
                            Symbolized::Unknown(_) => None,
                        })
                        .collect(),
                    Err(err) => {
                        tracing::debug!(tgid, "symbolization failed: {err}");
                        retry = true;
                        vec![None; unknown.len()]
                    }
                };
            // A stripped Go binary: blazesym finds no symbol table.
            if runtime == Runtime::Go && found.iter().any(Option::is_none) {
                go_names(
                    tgid,
                    &unknown,
                    &mut found,
                    &mut cache.go_tables,
                    &mut self.go_tables,
                );
            }
            for (ip, name) in unknown.iter().zip(found) {
                if retry && name.is_none() {
                    continue;
                }
                let frame = name
                    .as_deref()
                    .map_or(Frame::Other, |n| frame_of(runtime, n));
                cache.frames.insert(*ip, frame);
                if names {
                    let name = name.unwrap_or_else(|| Arc::from(UNKNOWN_FRAME));
                    cache.names.insert(*ip, name);
                }
            }
        }
        let has = |ips: &[u64], kinds: &[Frame]| {
            ips.iter()
                .any(|ip| cache.frames.get(ip).is_some_and(|f| kinds.contains(f)))
        };
        let (mut gc, mut seen) = (0, 0);
        for (_, count, ips) in stacks {
            if has(ips, &[Frame::Gc]) {
                gc += count;
            }
            if has(ips, &[Frame::Gc, Frame::Runtime]) {
                seen += count;
            }
        }
        (gc, seen)
    }

    /// Starts sampling `tgid`'s stacks and keeping them for its profile.
    pub fn profile(&mut self, probes: &mut Probes, tgid: u32) -> Result<(), ProbeError> {
        self.profile_tgid(tgid);
        if !self.enabled {
            return Ok(());
        }
        self.sampled.insert(tgid);
        probes
            .stack_tgids_mut()?
            .insert(tgid, 1, 0)
            .map_err(|source| ProbeError::Map {
                name: "STACK_TGIDS",
                source,
            })
    }

    /// Whether `tgid`'s user stacks are sampled.
    pub fn samples_stacks_of(&self, tgid: u32) -> bool {
        self.enabled && self.sampled.contains(&tgid)
    }

    /// Addresses cached, for the memory figure of the benchmark.
    pub fn cached_addresses(&self) -> usize {
        self.symbols.values().map(|s| s.frames.len()).sum()
    }
}

fn frame_of(runtime: Runtime, symbol: &str) -> Frame {
    if runtimes::symbols::is_gc_symbol(runtime, symbol) {
        Frame::Gc
    } else if runtimes::symbols::is_runtime_symbol(runtime, symbol) {
        Frame::Runtime
    } else {
        Frame::Other
    }
}

/// Empties a sink, returning what it held.
pub fn take_stacks(sink: ProfileSink) -> HashMap<u32, FoldedStacks> {
    std::mem::take(&mut *sink.lock().unwrap_or_else(PoisonError::into_inner))
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
