//! madvise at its exit (the `syscalls:sys_exit_madvise` tracepoint, or fexit
//! on the kernel's madvise function): bytes split by advice, since
//! `MADV_DONTNEED` and `MADV_FREE` are how allocators and GCs hand memory
//! back.
//!
//! ```text
//! name: sys_exit_madvise
//! field:int __syscall_nr;    offset:8;    size:4;    signed:1;
//! field:long ret;    offset:16;    size:8;    signed:1;
//!
//! long __x64_sys_madvise(const struct pt_regs *regs);    /* fexit, x86_64 */
//! long __arm64_sys_madvise(const struct pt_regs *regs);  /* fexit, arm64 */
//! ```
//! Arguments (`sys_enter_madvise`): start, len_in, behavior.
use agent_common::{MADV_DONTNEED, MADV_FREE};
use aya_ebpf::{
    macros::{fexit, tracepoint},
    programs::{FExitContext, TracePointContext},
};

use super::{fexit_syscall, sys_exit_ret};
use crate::kernel::{add, current_record, syscall_arg, syscall_regs};

#[tracepoint]
pub fn sys_exit_madvise(ctx: TracePointContext) -> u32 {
    count(sys_exit_ret(&ctx), syscall_regs);
    0
}

#[fexit]
pub fn fexit_madvise(ctx: FExitContext) -> u32 {
    let (ret, regs) = fexit_syscall(&ctx);
    count(ret, || regs);
    0
}

/// Counts one madvise that returned `ret`; `regs` gives the saved
/// registers, asked for only when the call succeeded.
#[inline(always)]
fn count(ret: i64, regs: impl FnOnce() -> *const u8) {
    let Some((rec, off)) = current_record() else {
        return;
    };
    unsafe {
        add(&raw mut (*rec).alloc.madvise_calls, 1);
        if ret == 0 {
            let regs = regs();
            let len = syscall_arg::<1>(regs, &off);
            let counter = match syscall_arg::<2>(regs, &off) {
                MADV_DONTNEED => &raw mut (*rec).alloc.madvise_dontneed_bytes,
                MADV_FREE => &raw mut (*rec).alloc.madvise_free_bytes,
                _ => &raw mut (*rec).alloc.madvise_other_bytes,
            };
            add(counter, len);
        }
    }
}
