//! Loading and attaching the eBPF programs of `agent-ebpf`.
//!
//! [`HOOKS`] is the one list of what is attached where and which metrics each
//! hook feeds. A hook the kernel lacks is reported with the metrics it
//! disables; the others keep working.
pub mod btf;
mod fexit_probe;
mod map_access;
pub mod offsets;
mod stats;
pub mod syscall_hooks;
pub mod tracefs;
pub mod uprobes;
mod verifier;

use std::{io, path::Path};

use agent_common::{KernelOffsets, OFFSETS_GLOBAL, ProcEvent, maps};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        PerfEvent, ProgramError, TracePoint,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
pub use syscall_hooks::SyscallHooks;

/// The programs, built by `node/build.rs` from `agent-ebpf`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent-ebpf"));

/// Where a program attaches.
#[derive(Debug, Clone, Copy)]
pub enum Attach {
    /// A software `cpu-clock` perf event on every online CPU.
    CpuClock,
    /// A tracepoint, `category:name`.
    Tracepoint(&'static str, &'static str),
    /// A syscall's exit: `fexit_program` on the kernel's function for
    /// `syscall` where the kernel permits it and `--syscall-hooks` allows,
    /// else the hook's program on the tracepoint `syscalls:<tracepoint>`
    /// (see `syscall_hooks`).
    SyscallExit {
        syscall: &'static str,
        tracepoint: &'static str,
        fexit_program: &'static str,
    },
}

/// One hook: a program, where it attaches, and what it feeds.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    pub program: &'static str,
    pub attach: Attach,
    /// What is lost when this hook cannot attach, in the words of the output.
    pub feeds: &'static str,
}

/// Every hook, in attach order. Lifecycle hooks go last so that no exit is
/// reported for a process whose syscalls were never counted.
pub const HOOKS: &[Hook] = &[
    Hook {
        program: "cpu_clock",
        attach: Attach::CpuClock,
        feeds: "cpu_samples, cpu_seconds",
    },
    Hook {
        program: "sys_exit_mmap",
        attach: Attach::SyscallExit {
            syscall: "mmap",
            tracepoint: "sys_exit_mmap",
            fexit_program: "fexit_mmap",
        },
        feeds: "mmap_calls, mmap_bytes",
    },
    Hook {
        program: "sys_exit_munmap",
        attach: Attach::SyscallExit {
            syscall: "munmap",
            tracepoint: "sys_exit_munmap",
            fexit_program: "fexit_munmap",
        },
        feeds: "munmap_calls, munmap_bytes",
    },
    Hook {
        program: "sys_exit_brk",
        attach: Attach::SyscallExit {
            syscall: "brk",
            tracepoint: "sys_exit_brk",
            fexit_program: "fexit_brk",
        },
        feeds: "brk_calls, brk_bytes",
    },
    Hook {
        program: "sys_exit_mremap",
        attach: Attach::SyscallExit {
            syscall: "mremap",
            tracepoint: "sys_exit_mremap",
            fexit_program: "fexit_mremap",
        },
        feeds: "mremap_calls, mremap_bytes",
    },
    Hook {
        program: "sys_exit_madvise",
        attach: Attach::SyscallExit {
            syscall: "madvise",
            tracepoint: "sys_exit_madvise",
            fexit_program: "fexit_madvise",
        },
        feeds: "madvise_calls, madvise_dontneed_bytes, madvise_free_bytes",
    },
    Hook {
        program: "sched_process_exec",
        attach: Attach::Tracepoint("sched", "sched_process_exec"),
        feeds: "exec events (comm and cgroup refresh after exec)",
    },
    Hook {
        program: "sched_process_exit",
        attach: Attach::Tracepoint("sched", "sched_process_exit"),
        feeds: "exit events: processes that exit between two ticks, and exact totals at exit",
    },
];

/// Environment variable naming a hook (`category:name`) to attach under a name
/// the kernel does not have, so tests exercise the missing-hook path for real.
/// A syscall hook is named by its tracepoint, and then not tried at fexit.
pub const FAULT_MISSING_HOOK_ENV: &str = "TALLY_FAULT_MISSING_HOOK";

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Offsets(#[from] offsets::OffsetsError),
    #[error("loading the eBPF programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the eBPF object has no program {0}")]
    NoProgram(&'static str),
    #[error("the eBPF object has no map {0}")]
    NoMap(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot list online CPUs: {0}")]
    Cpus(io::Error),
    #[error("no hook could attach; the first failure was: {0}")]
    NothingAttached(String),
}

/// Settings for [`Probes::load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// cpu-clock samples per second on each CPU.
    pub sample_hz: u64,
    /// Capacity of the per-thread sample map.
    pub max_threads: u32,
    /// Capacity of the per-process map.
    pub max_processes: u32,
    /// Whose user stacks the sampler records.
    pub stack_sampling: StackSampling,
    /// Where the allocation syscalls are counted.
    pub syscall_hooks: SyscallHooks,
}

/// Whose user stacks are sampled with the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StackSampling {
    /// Processes of runtimes whose GC only stacks can see (Go, Node).
    #[default]
    GcRuntimes,
    /// Every process (profiles of anything; costs a stack walk per sample).
    All,
    /// None: GC CPU from thread names only.
    Off,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            sample_hz: 99,
            max_threads: 32768,
            max_processes: 16384,
            stack_sampling: StackSampling::default(),
            syscall_hooks: SyscallHooks::default(),
        }
    }
}

/// A hook that could not be attached, and why.
#[derive(Debug, Clone)]
pub struct MissingHook {
    pub hook: Hook,
    pub reason: String,
    /// The syscall hook was asked for at fexit only (`--syscall-hooks fexit`).
    pub fexit_only: bool,
}

impl MissingHook {
    /// The warning line printed for it.
    pub fn warning(&self) -> String {
        let place = match self.hook.attach {
            Attach::CpuClock => "perf event cpu-clock".to_string(),
            Attach::Tracepoint(cat, name) => format!("tracepoint {cat}:{name}"),
            Attach::SyscallExit { syscall, .. } if self.fexit_only => {
                format!("fexit {}", syscall_hooks::kernel_function(syscall))
            }
            Attach::SyscallExit { tracepoint, .. } => format!("tracepoint syscalls:{tracepoint}"),
        };
        format!(
            "{place} unavailable ({}); disabled: {}",
            self.reason, self.hook.feeds
        )
    }
}

/// The loaded and attached programs and their maps.
pub struct Probes {
    ebpf: Ebpf,
    /// Nanoseconds of CPU time one sample stands for.
    pub sample_period_ns: u64,
    pub missing: Vec<MissingHook>,
    /// How tracefs was had for the tracepoint attaches.
    pub tracefs: tracefs::Tracefs,
    attached: uprobes::Attached,
    /// Each attached hook's program and how it attached, for its statistics.
    programs: Vec<(&'static str, stats::AttachType)>,
}

impl Probes {
    /// Finds kernel offsets, loads every program and attaches every hook.
    ///
    /// Needs CAP_BPF and CAP_PERFMON (or root) and Linux 5.15+ (for
    /// `bpf_task_pt_regs`); see the README for why.
    pub fn load(opts: &LoadOptions) -> Result<Self, ProbeError> {
        raise_memlock_limit();
        let offsets = offsets::from_vmlinux(Path::new(offsets::VMLINUX_BTF))?;
        let ebpf = load_object(&offsets, opts)?;
        let sample_period_ns = 1_000_000_000 / opts.sample_hz.max(1);
        let mut probes = Self {
            ebpf,
            sample_period_ns,
            missing: Vec::new(),
            tracefs: tracefs::Tracefs::Unavailable(String::new()),
            attached: uprobes::Attached::default(),
            programs: Vec::new(),
        };
        probes.load_uprobes();
        probes.set_stack_all(opts.stack_sampling == StackSampling::All)?;
        probes.attach_all(opts.syscall_hooks)?;
        Ok(probes)
    }

    fn attach_all(&mut self, syscall_hooks: SyscallHooks) -> Result<(), ProbeError> {
        use stats::AttachType;
        let fault = std::env::var(FAULT_MISSING_HOOK_ENV).ok();
        let fexit = match syscall_hooks {
            SyscallHooks::Tracepoint => syscall_hooks::FexitAttempt::default(),
            SyscallHooks::Auto | SyscallHooks::Fexit => {
                syscall_hooks::attach_fexit(&mut self.ebpf, fault.as_deref())
            }
        };
        let fexit_only = syscall_hooks == SyscallHooks::Fexit;
        let (results, how) = tracefs::with_tracefs(|| {
            HOOKS
                .iter()
                .enumerate()
                .map(|(i, hook)| match fexit.of(i) {
                    Some(Ok(())) => Ok(AttachType::Fexit),
                    Some(Err(why)) if fexit_only => Err(why.clone()),
                    _ => self
                        .attach(hook, fault.as_deref())
                        .map_err(|e| describe(&e)),
                })
                .collect::<Vec<_>>()
        });
        match &how {
            tracefs::Tracefs::Mounted(path) => tracing::debug!("tracefs at {path}"),
            tracefs::Tracefs::MountedPrivately => {
                tracing::info!(
                    "tracefs was not mounted: mounted it in the agent's own mount namespace"
                )
            }
            tracefs::Tracefs::Unavailable(why) => tracing::debug!("{why}"),
        }
        let mut attached = 0;
        let (mut at_fexit, mut at_tracepoint, mut syscalls) = (0, 0, 0);
        for (i, (hook, result)) in HOOKS.iter().zip(results).enumerate() {
            let syscall = matches!(hook.attach, Attach::SyscallExit { .. });
            // Missing for want of fexit alone (`--syscall-hooks fexit`).
            let fexit_only = fexit_only && fexit.of(i).is_some();
            syscalls += usize::from(syscall);
            match result {
                Ok(how) => {
                    attached += 1;
                    let program = match (how, hook.attach) {
                        (AttachType::Fexit, Attach::SyscallExit { fexit_program, .. }) => {
                            at_fexit += 1;
                            fexit_program
                        }
                        _ => {
                            at_tracepoint += usize::from(syscall);
                            hook.program
                        }
                    };
                    self.programs.push((program, how));
                }
                Err(reason) => {
                    // "tracefs not found" says nothing of why or what to do.
                    let tracepoint = match hook.attach {
                        Attach::Tracepoint(..) => true,
                        Attach::SyscallExit { .. } => !fexit_only,
                        Attach::CpuClock => false,
                    };
                    let reason = match how.unavailable() {
                        Some(why) if tracepoint => why.to_string(),
                        _ => reason,
                    };
                    self.missing.push(MissingHook {
                        hook: *hook,
                        reason,
                        fexit_only,
                    })
                }
            }
        }
        self.tracefs = how;
        let refused = fexit.results.iter().find_map(|(_, r)| r.as_ref().err());
        tracing::info!(
            "{}",
            syscall_hooks::summary(
                at_fexit,
                at_tracepoint,
                syscalls,
                refused.map(String::as_str)
            )
        );
        if attached == 0 {
            let first = self
                .missing
                .first()
                .map(|m| m.warning())
                .unwrap_or_default();
            return Err(ProbeError::NothingAttached(first));
        }
        Ok(())
    }

    fn attach(
        &mut self,
        hook: &Hook,
        fault: Option<&str>,
    ) -> Result<stats::AttachType, ProgramError> {
        let program = self
            .ebpf
            .program_mut(hook.program)
            .ok_or(ProgramError::UnexpectedProgramType)?;
        let (category, name) = match hook.attach {
            Attach::CpuClock => {
                let program: &mut PerfEvent = program.try_into()?;
                program.load()?;
                let cpus = aya::util::online_cpus().map_err(|(_, e)| ProgramError::IOError(e))?;
                for cpu in cpus {
                    program.attach(
                        PerfEventConfig::Software(SoftwareEvent::CpuClock),
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        SamplePolicy::Period(self.sample_period_ns),
                        false,
                    )?;
                }
                return Ok(stats::AttachType::PerfEvent);
            }
            Attach::Tracepoint(category, name) => (category, name),
            Attach::SyscallExit { tracepoint, .. } => ("syscalls", tracepoint),
        };
        let program: &mut TracePoint = program.try_into()?;
        program.load()?;
        let faulted;
        let name = if fault == Some(&format!("{category}:{name}")) {
            faulted = format!("{name}_tally_fault_missing");
            faulted.as_str()
        } else {
            name
        };
        program.attach(category, name)?;
        Ok(stats::AttachType::Tracepoint)
    }
}

/// Reads one event out of a ring buffer record.
pub fn parse_event(bytes: &[u8]) -> Option<ProcEvent> {
    (bytes.len() >= std::mem::size_of::<ProcEvent>())
        // SAFETY: ProcEvent is Pod, and the length was checked.
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<ProcEvent>()) })
}

fn load_object(offsets: &KernelOffsets, opts: &LoadOptions) -> Result<Ebpf, ProbeError> {
    let (offsets, opts) = (*offsets, opts.clone());
    // The load runs on a thread of its own so that it can hide vmlinux BTF
    // from aya; see `hide_vmlinux_btf_from_this_thread`.
    std::thread::spawn(move || {
        if let Err(err) = hide_vmlinux_btf_from_this_thread() {
            tracing::debug!("loading with aya's vmlinux BTF parse (~18 MiB transient): {err}");
        }
        let mut loader = EbpfLoader::new();
        loader
            // The programs carry no CO-RE relocations (offsets come from
            // `offsets`), so they need no kernel BTF in userspace.
            .btf(None)
            .override_global(OFFSETS_GLOBAL, &offsets, true)
            .map_max_entries(maps::THREADS, opts.max_threads)
            .map_max_entries(maps::PROCS, opts.max_processes);
        loader.load(PROGRAMS).map_err(ProbeError::from)
    })
    .join()
    .expect("the loader thread does not panic")
}

/// aya 0.14's `EbpfLoader::new()` parses all of `/sys/kernel/btf/vmlinux`
/// before `.btf(None)` can say it is not needed (aya-rs/aya#1172): about
/// 18 MiB of peak RSS for nothing. This thread takes a mount namespace of
/// its own (`unshare(CLONE_NEWNS)` affects only the calling thread of a
/// multi-threaded process), stops propagation back to the host, and covers
/// the file with /dev/null, so aya's read finds nothing. The namespace dies
/// with the thread. Needs CAP_SYS_ADMIN; without it the load goes on as is.
fn hide_vmlinux_btf_from_this_thread() -> io::Result<()> {
    use std::ffi::CString;
    let cstr = |s: &str| CString::new(s).expect("no NUL");
    let (target, devnull) = (cstr(offsets::VMLINUX_BTF), cstr("/dev/null"));
    tracefs::private_mount_namespace()?;
    // SAFETY: a plain syscall with valid NUL-terminated strings.
    unsafe {
        if libc::mount(
            devnull.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Kernels before 5.11 charge eBPF maps to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            io::Error::last_os_error()
        );
    }
}

/// One line for why a hook failed, from the innermost cause; a helper the
/// kernel lacks is named, with the verifier's log at debug level.
fn describe(err: &ProgramError) -> String {
    use std::error::Error as _;
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    match verifier::explain(&text) {
        Some(why) => {
            tracing::debug!("verifier: {text}");
            why
        }
        None => text,
    }
}
