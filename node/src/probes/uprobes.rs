//! Uprobes on the runtimes' own GC code, attached per binary as processes
//! of that runtime appear (see `agent-ebpf/src/probes/runtime_gc.rs`).
//!
//! A uprobe belongs to a file (an inode), not a process: one attach covers
//! every process running that binary or library, so each file is probed
//! once. Processes whose workload opted out are not excluded here; they
//! are simply never the reason to probe a file.
use std::{collections::HashSet, os::unix::fs::MetadataExt as _, path::Path};

use aya::programs::{UProbe, uprobe::UProbeScope};

use super::{ProbeError, Probes};

/// Programs attached at runtime, loaded once at start.
pub const UPROBE_PROGRAMS: [&str; 4] = ["go_gc_done", "jvm_gc_id", "jvm_gc_begin", "jvm_gc_end"];

/// The Go function every completed GC cycle enters once.
pub const GO_GC_CYCLE_SYMBOL: &str = "runtime.gcMarkTermination";

/// Places already probed, by (device, inode, program, file offset or 0
/// for a symbol). The kernel keys a uprobe by the real inode, which under
/// overlayfs neither `stat` nor `/proc/<pid>/maps` shows (each container's
/// mount has its own device): one file can be probed once per container, and
/// the programs count each hit once anyway (`agent-ebpf`'s `runtime_gc.rs`).
#[derive(Debug, Default)]
pub struct Attached(HashSet<(u64, u64, &'static str, u64)>);

impl Attached {
    /// The programs attached somewhere (a program once per place).
    pub fn programs(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|&(_, _, program, _)| program)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UprobeError {
    #[error("cannot stat {path}: {source}")]
    Stat {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("uprobe {program} on {path}: {source}")]
    Attach {
        program: &'static str,
        path: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("uprobe program {0} is not loaded (uprobes unavailable on this kernel)")]
    NotLoaded(&'static str),
}

impl Probes {
    /// Loads the uprobe programs so they can be attached later. A kernel
    /// without uprobes (CONFIG_UPROBE_EVENTS) leaves GC cycles unobserved.
    pub(super) fn load_uprobes(&mut self) {
        for name in UPROBE_PROGRAMS {
            let result = self
                .ebpf
                .program_mut(name)
                .ok_or(aya::programs::ProgramError::UnexpectedProgramType)
                .and_then(<&mut UProbe>::try_from)
                .and_then(|p| p.load());
            if let Err(err) = result {
                tracing::warn!(
                    "uprobe program {name} did not load ({err}); GC cycles from runtimes are off"
                );
            }
        }
    }

    /// Counts Go GC cycles of every process running the binary at `path`
    /// (e.g. `/proc/<pid>/exe`), probing [`GO_GC_CYCLE_SYMBOL`] at
    /// `entry_offset` in the file when given (found through the pclntab,
    /// which stripped binaries keep), else by its name in the symbol table.
    /// Returns false if it was already probed.
    pub fn probe_go_binary(
        &mut self,
        path: &Path,
        entry_offset: Option<u64>,
    ) -> Result<bool, UprobeError> {
        let location = match entry_offset {
            Some(offset) => offset.into(),
            None => GO_GC_CYCLE_SYMBOL.into(),
        };
        self.attach_once("go_gc_done", path, location)
    }

    /// True if the Go GC-cycle probe is already on the file at `path`, so
    /// that another process of the same binary costs no table parsing.
    pub fn go_binary_probed(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|meta| {
            self.attached.0.iter().any(|&(dev, ino, program, _)| {
                (dev, ino, program) == (meta.dev(), meta.ino(), "go_gc_done")
            })
        })
    }

    /// Counts HotSpot collections with an entry uprobe at `gc_id_offset`
    /// (`GCIdMark::GCIdMark()`, see `agent-ebpf/src/probes/runtime_gc.rs`)
    /// and times GC pauses through the `gc__begin`/`gc__end` USDT probes at
    /// these file offsets (a libjvm may have several sites of each: JDK 25
    /// inlines a second pair) of the libjvm.so at `path`.
    pub fn probe_libjvm(
        &mut self,
        path: &Path,
        gc_id_offset: u64,
        begins: &[u64],
        ends: &[u64],
    ) -> Result<bool, UprobeError> {
        let mut any = false;
        // Ends first: a begin without its end would leave a tid in GC_BEGIN.
        for &offset in ends {
            any |= self.attach_once("jvm_gc_end", path, offset.into())?;
        }
        for &offset in begins {
            any |= self.attach_once("jvm_gc_begin", path, offset.into())?;
        }
        any |= self.attach_once("jvm_gc_id", path, gc_id_offset.into())?;
        Ok(any)
    }

    fn attach_once(
        &mut self,
        program: &'static str,
        path: &Path,
        location: aya::programs::uprobe::UProbeAttachLocation<'_>,
    ) -> Result<bool, UprobeError> {
        let meta = std::fs::metadata(path).map_err(|source| UprobeError::Stat {
            path: path.display().to_string(),
            source,
        })?;
        let at = match location {
            aya::programs::uprobe::UProbeAttachLocation::AbsoluteOffset(offset) => offset,
            _ => 0,
        };
        let key = (meta.dev(), meta.ino(), program, at);
        if self.attached.0.contains(&key) {
            return Ok(false);
        }
        let uprobe: &mut UProbe = self
            .ebpf
            .program_mut(program)
            .and_then(|p| p.try_into().ok())
            .ok_or(UprobeError::NotLoaded(program))?;
        uprobe
            .attach(location, path, UProbeScope::AllProcesses)
            .map_err(|source| UprobeError::Attach {
                program,
                path: path.display().to_string(),
                source,
            })?;
        self.attached.0.insert(key);
        Ok(true)
    }
}
