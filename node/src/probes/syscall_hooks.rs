//! Where the five allocation syscalls are counted: fexit on the kernel's
//! syscall functions where the kernel permits it, the `syscalls:sys_exit_*`
//! tracepoints where it does not.
//!
//! Both entry points run the same counting body (`agent-ebpf/src/probes/`).
//! fexit is the cheaper one: the tracepoints make every syscall of every
//! process take the syscall-exit slow path (`syscall_exit_work`) and perf's
//! tracepoint dispatch, fexit runs only on the five functions, as a direct
//! call from their ftrace trampolines. It needs a kernel with BTF, BPF
//! trampolines (`CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS`) and leave to load
//! tracing programs; some kernels refuse the load (EPERM) although they
//! have BTF.
use aya::{
    Btf, Ebpf,
    programs::{FExit, ProgramError},
};

use super::{Attach, HOOKS, describe};

/// Which attach type the allocation syscalls are counted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SyscallHooks {
    /// fexit where the kernel permits it, the tracepoint where it does not.
    #[default]
    Auto,
    /// fexit only: a refused fexit leaves that syscall uncounted (and says so).
    Fexit,
    /// The `syscalls:sys_exit_*` tracepoints only.
    Tracepoint,
}

/// The kernel's function for a syscall, as fexit attaches to it: the
/// architecture's wrapper that takes the saved registers.
pub fn kernel_function(syscall: &str) -> String {
    #[cfg(target_arch = "aarch64")]
    const PREFIX: &str = "__arm64_sys_";
    #[cfg(not(target_arch = "aarch64"))]
    const PREFIX: &str = "__x64_sys_";
    format!("{PREFIX}{syscall}")
}

/// What [`attach_fexit`] did for each syscall hook of [`HOOKS`], by index.
#[derive(Debug, Default)]
pub struct FexitAttempt {
    /// `(index in HOOKS, Ok or why fexit was refused)`.
    pub results: Vec<(usize, Result<(), String>)>,
}

impl FexitAttempt {
    /// `Some(Ok)` if hook `index` runs at fexit, `Some(Err(why))` if fexit
    /// was refused, `None` if it was not tried.
    pub fn of(&self, index: usize) -> Option<&Result<(), String>> {
        self.results
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, r)| r)
    }
}

/// Loads and attaches the fexit program of every syscall hook.
///
/// fexit needs the kernel's BTF in userspace (to name the function's BTF
/// id in the load): `Btf::from_sys_fs` parses all of
/// `/sys/kernel/btf/vmlinux`, which the rest of the agent avoids (see
/// `hide_vmlinux_btf_from_this_thread`). Measured on a 6.18 host (5.5 MiB
/// of BTF, fexit refused): peak RSS 28.4 MiB instead of 13.6 MiB with
/// tracepoints only, under 0.1 s of start-up, and nothing left once it is
/// dropped. So it is parsed only here, only when fexit is asked for
/// (`--syscall-hooks tracepoint` skips it) and the kernel takes a probe
/// program (`fexit_probe`: a kernel that refuses fexit costs nothing), and
/// dropped before this returns. When the kernel refuses a load (not a lookup of one function),
/// the others are not tried: the refusal (EPERM, no trampolines) is the
/// kernel's, not the function's.
///
/// `fault` (`FAULT_MISSING_HOOK_ENV`, `syscalls:sys_exit_<name>`) leaves
/// that hook out, so it goes to its tracepoint and the fault applies there
/// on any kernel.
pub fn attach_fexit(ebpf: &mut Ebpf, fault: Option<&str>) -> FexitAttempt {
    let mut attempt = FexitAttempt::default();
    let hooks = || {
        HOOKS
            .iter()
            .enumerate()
            .filter_map(|(i, hook)| match hook.attach {
                Attach::SyscallExit {
                    fexit_program,
                    syscall,
                    tracepoint,
                } if fault != Some(&format!("syscalls:{tracepoint}")) => {
                    Some((i, fexit_program, syscall))
                }
                _ => None,
            })
    };
    // A kernel that refuses every fexit is found out before the parse
    // below, with a two-instruction program (`fexit_probe`).
    if let Some((_, _, syscall)) = hooks().next() {
        let function = kernel_function(syscall);
        if let Err(why) = super::fexit_probe::permits(&function) {
            let why = format!("{function}: {why}");
            attempt.results = hooks()
                .enumerate()
                .map(|(n, (i, ..))| {
                    (
                        i,
                        Err(if n == 0 {
                            why.clone()
                        } else {
                            format!("not tried after {why}")
                        }),
                    )
                })
                .collect();
            return attempt;
        }
    }
    let btf = match Btf::from_sys_fs() {
        Ok(btf) => btf,
        Err(err) => {
            let why = format!("no kernel BTF: {err}");
            attempt.results = hooks().map(|(i, ..)| (i, Err(why.clone()))).collect();
            return attempt;
        }
    };
    let mut refused: Option<String> = None;
    for (index, program, syscall) in hooks() {
        let function = kernel_function(syscall);
        let result = match &refused {
            Some(why) => Err(format!("not tried after {why}")),
            None => attach_one(ebpf, program, &function, &btf).map_err(|err| {
                let why = format!("{function}: {}", refusal(&err));
                if matches!(
                    err,
                    ProgramError::LoadError { .. } | ProgramError::SyscallError(_)
                ) {
                    refused = Some(why.clone());
                }
                why
            }),
        };
        attempt.results.push((index, result));
    }
    drop(btf);
    // glibc keeps about 2 MiB of the parse's many small allocations in its
    // heap unless asked to give them back (measured: VmRSS 15.6 MiB after
    // an attempt without this, 13.6 MiB with tracepoints only).
    #[cfg(target_env = "gnu")]
    // SAFETY: a plain libc call with no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
    attempt
}

/// Why a load or attach failed, in one line: aya's text of a refused load
/// repeats the error and ends in an empty verifier log when the kernel
/// refused it before verifying (EPERM).
fn refusal(err: &ProgramError) -> String {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
            match tail.len() {
                0 => format!("the kernel refused the load: {io_error}"),
                n => format!(
                    "the verifier rejected it: {io_error}: {}",
                    tail[n.saturating_sub(2)..].join(" / ")
                ),
            }
        }
        // The kernel's internal ENOTSUPP, which libc has no name for: no
        // BPF trampolines for this architecture or kernel (arm64 6.1,
        // which lacks ftrace direct calls, refuses the attach so).
        ProgramError::SyscallError(err) if err.io_error.raw_os_error() == Some(ENOTSUPP) => {
            format!(
                "{} failed: ENOTSUPP (524), this kernel cannot attach fexit",
                err.call
            )
        }
        other => describe(other),
    }
}

/// Linux's `ENOTSUPP` (include/linux/errno.h), not a userspace errno.
const ENOTSUPP: i32 = 524;

fn attach_one(
    ebpf: &mut Ebpf,
    program: &'static str,
    function: &str,
    btf: &Btf,
) -> Result<(), ProgramError> {
    let program: &mut FExit = ebpf
        .program_mut(program)
        .ok_or(ProgramError::UnexpectedProgramType)?
        .try_into()?;
    program.load(function, btf)?;
    if let Err(err) = program.attach() {
        // Loaded but not attachable (arm64 6.1): keep no dead program in
        // the kernel for the agent's lifetime.
        let _ = program.unload();
        return Err(err);
    }
    Ok(())
}

/// The one line saying how the syscall hooks attached: `fexit` of them
/// at fexit, `tracepoint` at their tracepoints, out of `of`; `refused` is
/// why fexit was refused, if it was. E.g. `syscall hooks: fexit (5 of 5)`,
/// `syscall hooks: tracepoint (fexit refused: <reason>)`.
pub fn summary(fexit: usize, tracepoint: usize, of: usize, refused: Option<&str>) -> String {
    let mut parts = Vec::new();
    if fexit > 0 {
        parts.push(format!("fexit ({fexit} of {of})"));
    }
    let why = match refused {
        Some(why) => format!("fexit refused: {why}"),
        None => "as asked".to_string(),
    };
    if tracepoint == of {
        return format!("syscall hooks: tracepoint ({why})");
    }
    if tracepoint > 0 {
        parts.push(format!("tracepoint ({tracepoint} of {of})"));
    }
    let mut line = format!("syscall hooks: {}", parts.join(", "));
    if parts.is_empty() {
        line.push_str("none");
    }
    if let Some(why) = refused {
        line.push_str(&format!(" (fexit refused: {why})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_says_which_attach_type_and_why() {
        let eperm = Some("__x64_sys_mmap: EPERM");
        let cases = [
            ((5, 0, None), "fexit (5 of 5)"),
            (
                (0, 5, eperm),
                "tracepoint (fexit refused: __x64_sys_mmap: EPERM)",
            ),
            ((0, 5, None), "tracepoint (as asked)"),
            (
                (4, 1, eperm),
                "fexit (4 of 5), tracepoint (1 of 5) (fexit refused: __x64_sys_mmap: EPERM)",
            ),
            ((0, 0, eperm), "none (fexit refused: __x64_sys_mmap: EPERM)"),
        ];
        for ((fexit, tracepoint, refused), want) in cases {
            assert_eq!(
                summary(fexit, tracepoint, 5, refused),
                format!("syscall hooks: {want}")
            );
        }
    }

    #[test]
    fn every_syscall_hook_names_its_fexit_program() {
        let syscalls: Vec<_> = HOOKS
            .iter()
            .filter_map(|h| match h.attach {
                Attach::SyscallExit {
                    syscall,
                    tracepoint,
                    ..
                } => Some((syscall, tracepoint, h)),
                _ => None,
            })
            .collect();
        assert_eq!(syscalls.len(), 5);
        for (syscall, tracepoint, hook) in syscalls {
            assert_eq!(tracepoint, format!("sys_exit_{syscall}"));
            assert_eq!(hook.program, tracepoint);
        }
        assert!(kernel_function("mmap").ends_with("_sys_mmap"));
    }
}
