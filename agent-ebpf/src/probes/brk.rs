//! brk at its exit (the `syscalls:sys_exit_brk` tracepoint, or fexit on the
//! kernel's brk function): counts calls and the growth of the break.
//!
//! Growth is measured from the break the process record last saw
//! (`ProcRecord::last_brk`, read from `mm->brk` when the record is made and
//! at exec), so brk needs no entry probe. That matters beyond brk itself:
//! any `sys_enter_*` program makes the kernel run its syscall-entry
//! dispatch on every syscall of every process.
//!
//! ```text
//! name: sys_exit_brk
//! field:int __syscall_nr;    offset:8;    size:4;    signed:1;
//! field:long ret;    offset:16;    size:8;    signed:1;
//!
//! long __x64_sys_brk(const struct pt_regs *regs);    /* fexit, x86_64 */
//! long __arm64_sys_brk(const struct pt_regs *regs);  /* fexit, arm64 */
//! ```
//! brk returns the new break on success and the old one on failure.
use aya_ebpf::{
    macros::{fexit, tracepoint},
    programs::{FExitContext, TracePointContext},
};

use super::{fexit_syscall, sys_exit_ret};
use crate::kernel::{add, current_record};

#[tracepoint]
pub fn sys_exit_brk(ctx: TracePointContext) -> u32 {
    count(sys_exit_ret(&ctx));
    0
}

#[fexit]
pub fn fexit_brk(ctx: FExitContext) -> u32 {
    let (ret, _) = fexit_syscall(&ctx);
    count(ret);
    0
}

/// Counts one brk that returned `ret`, the break after the call.
#[inline(always)]
fn count(ret: i64) {
    let Some((rec, _)) = current_record() else {
        return;
    };
    let new_brk = ret as u64;
    unsafe {
        add(&raw mut (*rec).alloc.brk_calls, 1);
        let last = (*rec).last_brk;
        if last != 0 && new_brk > last {
            add(&raw mut (*rec).alloc.brk_bytes, new_brk - last);
        }
        // brk calls of one process serialize on its mmap_lock (and glibc's
        // main-arena lock), so a plain store keeps up with them.
        (*rec).last_brk = new_brk;
    }
}
