//! Uprobes on the runtimes' own GC code, attached per binary as processes
//! of that runtime appear (see `agent-ebpf/src/probes/runtime_gc.rs`).
//!
//! A uprobe belongs to a file (an inode), not a process: one attach covers
//! every process running that binary or library, so each file is probed
//! once. Processes whose workload opted out are not excluded here; they
//! are simply never the reason to probe a file.
use std::{
    collections::HashSet,
    os::{
        fd::{AsFd as _, AsRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::Path,
};

use aya::programs::{
    UProbe,
    uprobe::{UProbeAttachLocation, UProbeScope},
};

use super::{ProbeError, Probes};
use crate::privileges::uprobe_opener::{UprobeOpener, UprobeOpenerError};

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
pub struct Attached {
    places: HashSet<(u64, u64, &'static str, u64)>,
    /// Opens the perf events once the agent has confined itself (see
    /// [`crate::privileges::uprobe_opener`]); `None`: aya opens them.
    opener: Option<UprobeOpener>,
    /// The perf events the helper opened, each with a program attached:
    /// closing one detaches it, so they live as long as the probes.
    events: Vec<OwnedFd>,
}

impl Attached {
    /// The programs attached somewhere (a program once per place).
    pub fn programs(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.places.iter().map(|&(_, _, program, _)| program)
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
    #[error("uprobe {program} on {path}: {}{}", with_causes(source), hint(source))]
    Attach {
        program: &'static str,
        path: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("uprobe {program} on {path}: {source}")]
    Helper {
        program: &'static str,
        path: String,
        #[source]
        source: UprobeOpenerError,
    },
    #[error("uprobe {program} on {path}: no symbol {symbol}")]
    NoSymbol {
        program: &'static str,
        path: String,
        symbol: String,
    },
    #[error("uprobe {program} on {path}: cannot attach the program to the perf event: {source}")]
    SetBpf {
        program: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
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

    /// From now on, uprobe perf events are opened by the helper (after
    /// [`crate::privileges::confine::confine`], which leaves the agent
    /// without the CAP_SYS_ADMIN newer kernels want for them).
    pub fn open_uprobes_with(&mut self, opener: UprobeOpener) {
        self.attached.opener = Some(opener);
    }

    /// True if the Go GC-cycle probe is already on the file at `path`, so
    /// that another process of the same binary costs no table parsing.
    pub fn go_binary_probed(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|meta| {
            self.attached.places.iter().any(|&(dev, ino, program, _)| {
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
        location: UProbeAttachLocation<'_>,
    ) -> Result<bool, UprobeError> {
        let meta = std::fs::metadata(path).map_err(|source| UprobeError::Stat {
            path: path.display().to_string(),
            source,
        })?;
        let at = match location {
            UProbeAttachLocation::AbsoluteOffset(offset) => offset,
            _ => 0,
        };
        let key = (meta.dev(), meta.ino(), program, at);
        if self.attached.places.contains(&key) {
            return Ok(false);
        }
        let uprobe: &mut UProbe = self
            .ebpf
            .program_mut(program)
            .and_then(|p| p.try_into().ok())
            .ok_or(UprobeError::NotLoaded(program))?;
        let shown = || path.display().to_string();
        match &self.attached.opener {
            None => {
                uprobe
                    .attach(location, path, UProbeScope::AllProcesses)
                    .map_err(|source| UprobeError::Attach {
                        program,
                        path: shown(),
                        source,
                    })?;
            }
            Some(opener) => {
                let (symbol, offset) = match location {
                    UProbeAttachLocation::AbsoluteOffset(offset) => (None, offset),
                    UProbeAttachLocation::Symbol(symbol) => (Some(symbol), 0),
                    UProbeAttachLocation::SymbolOffset(symbol, offset) => (Some(symbol), offset),
                };
                let offset = match symbol {
                    None => offset,
                    Some(symbol) => {
                        symbol_file_offset(path, symbol).ok_or_else(|| UprobeError::NoSymbol {
                            program,
                            path: shown(),
                            symbol: symbol.to_string(),
                        })? + offset
                    }
                };
                let event = opener
                    .open(path, offset)
                    .map_err(|source| UprobeError::Helper {
                        program,
                        path: shown(),
                        source,
                    })?;
                let program_fd = uprobe.fd().map_err(|source| UprobeError::Attach {
                    program,
                    path: shown(),
                    source,
                })?;
                set_bpf(&event, program_fd.as_fd().as_raw_fd()).map_err(|source| {
                    UprobeError::SetBpf {
                        program,
                        path: shown(),
                        source,
                    }
                })?;
                self.attached.events.push(event);
            }
        }
        self.attached.places.insert(key);
        Ok(true)
    }
}

/// An error and its causes: aya's "`perf_event_open` failed" alone drops
/// the errno that says why.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// What an EACCES from opening a uprobe means.
fn hint(err: &aya::programs::ProgramError) -> &'static str {
    let denied = matches!(
        err,
        aya::programs::ProgramError::SyscallError(e)
            if e.call == "perf_event_open" && e.io_error.raw_os_error() == Some(libc::EACCES)
    );
    if denied {
        " (on Linux 6.16+, and 5.15/6.1/6.6/6.12 stable since July 2025, opening a \
         uprobe needs CAP_SYS_ADMIN, CAP_PERFMON no longer suffices: the agent had \
         none, nor a uprobe helper holding it)"
    } else {
        ""
    }
}

/// Attaches the program to the perf event, as aya does where BPF links are
/// unavailable: the attachment lasts as long as the event's descriptor.
fn set_bpf(event: &OwnedFd, program: std::os::fd::RawFd) -> std::io::Result<()> {
    const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
    const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
    for (request, arg) in [
        (PERF_EVENT_IOC_SET_BPF, program),
        (PERF_EVENT_IOC_ENABLE, 0),
    ] {
        // SAFETY: perf ioctls on a perf event descriptor, integer argument.
        if unsafe { libc::ioctl(event.as_raw_fd(), request as _, arg) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The file offset of `symbol` in the ELF file at `path` (symbol table or
/// dynamic symbols), translated as aya does for executables and libraries.
fn symbol_file_offset(path: &Path, symbol: &str) -> Option<u64> {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let sym = file
        .symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok(symbol))?;
    if !matches!(
        file.kind(),
        object::ObjectKind::Dynamic | object::ObjectKind::Executable
    ) {
        return Some(sym.address());
    }
    let section = file.section_by_index(sym.section_index()?).ok()?;
    let (file_start, _) = section.file_range()?;
    Some(sym.address() - section.address() + file_start)
}
