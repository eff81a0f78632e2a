//! What runtime each process runs, and the per-runtime instruments that
//! follow from it: stack sampling for Go and Node, a GC-cycle uprobe on Go
//! binaries, the HotSpot GC USDT probes on libjvm.so.
//!
//! Detection runs once per process (and again after an exec). Instruments
//! attach once per file, so a node running 50 copies of one Go service
//! probes its binary once.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use tally_core::{gc::Runtime, model::ProcKey};

use crate::{
    collect::stacks::StackSampler,
    probes::Probes,
    runtimes::{self, GcEvents},
};

/// Which processes keep their binaries free of uprobes.
#[derive(Debug, Clone, Default)]
pub struct UprobePolicy {
    /// Substrings of a process's comm or cgroup path (which holds its
    /// container id) that opt it out. Stack sampling and thread names still
    /// apply: they do not touch the process.
    pub exclude: Vec<String>,
}

impl UprobePolicy {
    pub fn allows(&self, comm: &str, cgroup_path: Option<&str>) -> bool {
        !self.exclude.iter().any(|pat| {
            comm.contains(pat.as_str()) || cgroup_path.is_some_and(|p| p.contains(pat.as_str()))
        })
    }
}

#[derive(Debug, Default)]
pub struct Runtimes {
    by_key: HashMap<ProcKey, Runtime>,
    /// JVMs whose GC counts come from their own memory and hsperfdata,
    /// because their libjvm has no uprobes in (opted out, or the attach
    /// failed), with where their `GCId::_next_id` is, when it was found.
    hsperf: HashMap<ProcKey, Option<u64>>,
    policy: UprobePolicy,
}

impl Runtimes {
    pub fn new(policy: UprobePolicy) -> Self {
        Self {
            by_key: HashMap::new(),
            hsperf: Default::default(),
            policy,
        }
    }

    /// GC collections and pause time of a JVM without uprobes, cumulative
    /// since it started; `None` for every other process.
    ///
    /// Collections: the JVM's `GCId::_next_id` (the number of `GC(N)` ids it
    /// took), read from its memory, as exact as the uprobe; else the
    /// hsperfdata counters where they tell collections (Serial, Parallel);
    /// else 0, with a debug line: pauses are not collections. Pause time:
    /// the hsperfdata pause collectors' time.
    pub fn hsperf_gc(&self, proc_root: &Path, key: &ProcKey) -> Option<(u64, u64)> {
        let gc_id_at = *self.hsperf.get(key)?;
        let from_memory =
            gc_id_at.and_then(|at| read_next_gc_id(proc_root, key.tgid, at).map(u64::from));
        let counters = match runtimes::jvm::hsperf::read_gc_counters(proc_root, key.tgid) {
            Some(Ok(c)) => Some(c),
            Some(Err(err)) => {
                tracing::debug!(pid = key.tgid, "hsperfdata: {err}");
                None
            }
            None => None,
        };
        if from_memory.is_none() && counters.is_none() {
            return None;
        }
        let collections = from_memory
            .or_else(|| counters.as_ref()?.collections)
            .unwrap_or_else(|| {
                tracing::debug!(
                    pid = key.tgid,
                    "JVM collections unknown: no GC id, no counter"
                );
                0
            });
        let pause_ns = counters.map_or(0, |c| (c.gc_time_seconds * 1e9) as u64);
        Some((collections, pause_ns))
    }

    pub fn get(&self, key: &ProcKey) -> Runtime {
        self.by_key.get(key).copied().unwrap_or_default()
    }

    /// The runtime of whichever live process has this tgid.
    pub fn of_tgid(&self, tgid: u32) -> Runtime {
        self.by_key
            .iter()
            .find(|(k, _)| k.tgid == tgid)
            .map(|(_, r)| *r)
            .unwrap_or_default()
    }

    pub fn knows(&self, key: &ProcKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// Detects the runtime of a process seen for the first time or after an
    /// exec, and sets up its instruments.
    #[allow(clippy::too_many_arguments)]
    pub fn detect(
        &mut self,
        proc_root: &Path,
        key: ProcKey,
        comm: &str,
        cgroup_path: Option<&str>,
        probes: &mut Probes,
        stacks: &mut StackSampler,
    ) -> Runtime {
        let runtime = runtimes::runtime::detect(proc_root, key.tgid);
        self.by_key.insert(key, runtime);
        let exe = proc_root.join(key.tgid.to_string()).join("exe");
        let uprobes = self.policy.allows(comm, cgroup_path);
        // What to attach is the runtime module's to say.
        let Some(module) = runtimes::of(runtime) else {
            return runtime;
        };
        if module.gc_seen_by_stacks()
            && let Err(err) = stacks.sample(probes, key.tgid)
        {
            tracing::debug!(pid = key.tgid, "stack sampling: {err}");
        }
        match module.gc_events() {
            GcEvents::CycleUprobe => {
                if uprobes && !probes.go_binary_probed(&exe) {
                    let entry = go_gc_entry_offset(&exe);
                    match probes.probe_go_binary(&exe, entry) {
                        Ok(true) => {
                            tracing::debug!(pid = key.tgid, "GC-cycle uprobe on {}", exe.display())
                        }
                        Ok(false) => {}
                        Err(err) => {
                            tracing::warn!(pid = key.tgid, "Go GC cycles not counted: {err}")
                        }
                    }
                }
            }
            GcEvents::HotspotUsdt => {
                let probed = uprobes
                    && match probe_hotspot(proc_root, key.tgid, probes) {
                        Ok(()) => true,
                        Err(err) => {
                            tracing::warn!(
                                pid = key.tgid,
                                "HotSpot USDT probes not attached ({err}); reading hsperfdata instead"
                            );
                            false
                        }
                    };
                if !probed {
                    self.hsperf
                        .insert(key, next_gc_id_address(proc_root, key.tgid));
                }
            }
            GcEvents::None => {}
        }
        runtime
    }

    /// Every process with a known runtime.
    pub fn keys(&self) -> impl Iterator<Item = &ProcKey> {
        self.by_key.keys()
    }

    /// Forgets processes that are gone.
    pub fn retain(&mut self, mut keep: impl FnMut(&ProcKey) -> bool, stacks: &mut StackSampler) {
        self.by_key.retain(|k, _| {
            let kept = keep(k);
            if !kept {
                stacks.forget(k.tgid);
            }
            kept
        });
        let by_key = &self.by_key;
        self.hsperf.retain(|k, _| by_key.contains_key(k));
    }
}

/// The file offset of the Go runtime's GC-cycle function in the binary at
/// `exe` (`/proc/<pid>/exe`: the file the process runs, in its container
/// or deleted since), from the pclntab every Go binary keeps, stripped or
/// not; `None` (gccgo, no table) leaves the symbol table to find it.
fn go_gc_entry_offset(exe: &Path) -> Option<u64> {
    use crate::{probes::uprobes::GO_GC_CYCLE_SYMBOL, runtimes::go::pclntab::GoFuncTable};
    let table = match GoFuncTable::read(exe) {
        Ok(table) => table,
        Err(err) => {
            tracing::debug!("{}: {err}; probing by symbol", exe.display());
            return None;
        }
    };
    let entry = table.entry_of(GO_GC_CYCLE_SYMBOL)?;
    table.file_offset_of(entry)
}

/// The libjvm.so a JVM process has mapped, as a path that works from the
/// agent's mount namespace (through the process's root).
fn libjvm_of(proc_root: &Path, pid: u32) -> Option<PathBuf> {
    let maps = std::fs::read_to_string(proc_root.join(pid.to_string()).join("maps")).ok()?;
    let path = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libjvm.so"))?;
    Some(
        proc_root
            .join(pid.to_string())
            .join("root")
            .join(path.trim_start_matches('/')),
    )
}

/// Where `GCId::_next_id` is in JVM `pid`'s memory: the start of its
/// libjvm.so's offset-0 mapping plus the symbol's distance from it.
fn next_gc_id_address(proc_root: &Path, pid: u32) -> Option<u64> {
    let maps = std::fs::read_to_string(proc_root.join(pid.to_string()).join("maps")).ok()?;
    let start = maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let offset = fields.nth(1)?;
        let path = fields.nth(2)?;
        (path.ends_with("/libjvm.so") && u64::from_str_radix(offset, 16).ok()? == 0)
            .then(|| u64::from_str_radix(range.split('-').next()?, 16).ok())
            .flatten()
    })?;
    let libjvm = libjvm_of(proc_root, pid)?;
    match runtimes::jvm::stapsdt::hotspot_next_gc_id_from_base(&libjvm) {
        Ok(delta) => start.checked_add(delta),
        Err(err) => {
            tracing::debug!(pid, "JVM GC ids not readable: {err}");
            None
        }
    }
}

/// The JVM's `GCId::_next_id`, a `uint`, read through `/proc/<pid>/mem`
/// (CAP_SYS_PTRACE; the process is not stopped or changed).
fn read_next_gc_id(proc_root: &Path, pid: u32, at: u64) -> Option<u32> {
    use std::os::unix::fs::FileExt as _;
    let mem = std::fs::File::open(proc_root.join(pid.to_string()).join("mem")).ok()?;
    let mut value = [0u8; 4];
    mem.read_exact_at(&mut value, at).ok()?;
    Some(u32::from_ne_bytes(value))
}

/// Attaches the collection-counting uprobe (`GCIdMark::GCIdMark()`) and the
/// `hotspot:gc__begin`/`gc__end` USDT probes of the process's libjvm.so.
fn probe_hotspot(proc_root: &Path, pid: u32, probes: &mut Probes) -> Result<(), String> {
    let libjvm = libjvm_of(proc_root, pid).ok_or("no libjvm.so in its maps")?;
    let offsets = runtimes::jvm::stapsdt::hotspot_gc_offsets(&libjvm).map_err(|e| e.to_string())?;
    let gc_id = runtimes::jvm::stapsdt::hotspot_gc_id_offset(&libjvm).map_err(|e| e.to_string())?;
    probes
        .probe_libjvm(&libjvm, gc_id, &offsets.all_begin, &offsets.all_end)
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_matches_comm_and_cgroup() {
        let p = UprobePolicy {
            exclude: vec!["payments".into(), "cri-containerd-abc".into()],
        };
        assert!(!p.allows("payments-api", None));
        assert!(!p.allows(
            "java",
            Some("/kubepods.slice/x/cri-containerd-abc123.scope")
        ));
        assert!(p.allows("java", Some("/system.slice/other.scope")));
        assert!(UprobePolicy::default().allows("anything", None));
    }
}
