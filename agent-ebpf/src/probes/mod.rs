//! One module a hook. Each tracepoint's format, as the kernel prints it in
//! `/sys/kernel/tracing/events/<category>/<name>/format`, sits above the code
//! that reads it.
mod brk;
mod cpu_clock;
mod madvise;
mod mmap;
mod mremap;
mod munmap;
mod runtime_gc;
mod sched_exec;
mod sched_exit;

use aya_ebpf::programs::TracePointContext;

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
