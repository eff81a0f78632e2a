//! What runtime each process runs, and the per-runtime instruments that
//! follow from it: stack sampling for Go and Node, a GC-cycle uprobe on Go
//! binaries, the HotSpot GC USDT probes on libjvm.so.
//!
//! Detection runs once per process (and again after an exec). Instruments
//! attach once per file, so a node running 50 copies of one Go service
//! probes its binary once.
use std::{collections::HashMap, path::Path, sync::Arc};

use tally_core::{
    gc::Runtime,
    model::{ProcKey, RuntimeSettings},
};

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
    /// Each Go, JVM and Node process's settings, read at detection.
    settings: HashMap<ProcKey, Arc<RuntimeSettings>>,
    policy: UprobePolicy,
}

impl Runtimes {
    pub fn new(policy: UprobePolicy) -> Self {
        Self {
            by_key: HashMap::new(),
            hsperf: Default::default(),
            settings: HashMap::new(),
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
        runtimes::jvm::process::own_gc_counts(proc_root, key.tgid, gc_id_at)
    }

    /// The settings of a Go, JVM or Node process.
    pub fn settings(&self, key: &ProcKey) -> Option<Arc<RuntimeSettings>> {
        self.settings.get(key).cloned()
    }

    /// Reads each JVM's hsperfdata again: its heap's size changes as it
    /// runs, and a JVM detected as it started may not have had the file.
    pub fn refresh_jvm_heaps(&mut self, proc_root: &Path) {
        for (key, settings) in &mut self.settings {
            if let RuntimeSettings::Jvm(jvm) = Arc::make_mut(settings) {
                runtimes::settings::refresh_hsperfdata(proc_root, key.tgid, jvm);
            }
        }
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
        match runtimes::settings::read(proc_root, key.tgid, runtime) {
            Some(s) => self.settings.insert(key, Arc::new(s)),
            None => self.settings.remove(&key),
        };
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
                    let entry = runtimes::go::gc_cycle_entry_offset(&exe);
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
                    && match runtimes::jvm::process::probe_hotspot(proc_root, key.tgid, probes) {
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
                    self.hsperf.insert(
                        key,
                        runtimes::jvm::process::next_gc_id_address(proc_root, key.tgid),
                    );
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
        self.settings.retain(|k, _| by_key.contains_key(k));
    }
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
