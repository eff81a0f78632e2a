//! One module a hook. Each tracepoint's format, as the kernel prints it in
//! `/sys/kernel/tracing/events/<category>/<name>/format`, and each traced
//! kernel function's signature sit above the code that reads them.
//!
//! The five allocation syscalls have two entry points each, one counting
//! body: a `syscalls:sys_exit_*` tracepoint, and an fexit program on the
//! kernel's syscall function (`__x64_sys_*` / `__arm64_sys_*`, named by
//! userspace at load time), which runs as a direct call from the function's
//! ftrace trampoline instead of through the syscall-exit slow path
//! (`syscall_exit_work`) and perf's tracepoint dispatch. Userspace attaches
//! one of the two per syscall (`node/src/probes/syscall_hooks.rs`).
mod brk;
mod cpu_clock;
mod madvise;
mod mmap;
mod mremap;
mod munmap;
mod runtime_gc;
mod sched_exec;
mod sched_exit;

use aya_ebpf::programs::{FExitContext, TracePointContext};

/// Offset of `ret` in every `syscalls:sys_exit_*` tracepoint:
///
/// ```text
/// field:int __syscall_nr;    offset:8;    size:4;    signed:1;
/// field:long ret;    offset:16;    size:8;    signed:1;
/// ```
const SYS_EXIT_RET: usize = 16;

/// `ret` of a `syscalls:sys_exit_*` tracepoint. The tracepoint context is the
/// record itself, so this is a plain load, not a helper call.
#[inline(always)]
fn sys_exit_ret(ctx: &TracePointContext) -> i64 {
    use aya_ebpf::EbpfContext as _;
    unsafe { *(ctx.as_ptr().add(SYS_EXIT_RET) as *const i64) }
}

/// `(ret, regs)` of an fexit program on a syscall function. On x86_64 and
/// arm64 every syscall function is a wrapper taking the saved registers:
///
/// ```text
/// long __x64_sys_mmap(const struct pt_regs *regs);    /* x86_64 */
/// long __arm64_sys_mmap(const struct pt_regs *regs);  /* arm64 */
/// ```
///
/// fexit sees the arguments as an array of u64 with the return value in
/// the slot after the last argument: `regs` in slot 0, `ret` in slot 1. Both
/// are plain context loads; the verifier types slot 0 as a `struct pt_regs`
/// BTF pointer, so [`crate::kernel::syscall_arg`] reads it as it reads the
/// one from `bpf_task_pt_regs` (and it is the same structure: a native
/// syscall is called with the task's saved registers).
#[inline(always)]
fn fexit_syscall(ctx: &FExitContext) -> (i64, *const u8) {
    (ctx.arg::<i64>(1), ctx.arg::<*const u8>(0))
}
