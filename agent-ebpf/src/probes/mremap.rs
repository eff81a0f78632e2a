//! mremap at its exit (the `syscalls:sys_exit_mremap` tracepoint, or fexit
//! on the kernel's mremap function): counts calls and the growth of regions.
//!
//! ```text
//! name: sys_exit_mremap
//! field:int __syscall_nr;    offset:8;    size:4;    signed:1;
//! field:long ret;    offset:16;    size:8;    signed:1;
//!
//! long __x64_sys_mremap(const struct pt_regs *regs);    /* fexit, x86_64 */
//! long __arm64_sys_mremap(const struct pt_regs *regs);  /* fexit, arm64 */
//! ```
//! Arguments (`sys_enter_mremap`): addr, old_len, new_len, flags, new_addr.
use aya_ebpf::{
    macros::{fexit, tracepoint},
    programs::{FExitContext, TracePointContext},
};

use super::{fexit_syscall, sys_exit_ret};
use crate::kernel::{add, current_record, is_err, syscall_arg, syscall_regs};

#[tracepoint]
pub fn sys_exit_mremap(ctx: TracePointContext) -> u32 {
    count(sys_exit_ret(&ctx), syscall_regs);
    0
}

#[fexit]
pub fn fexit_mremap(ctx: FExitContext) -> u32 {
    let (ret, regs) = fexit_syscall(&ctx);
    count(ret, || regs);
    0
}

/// Counts one mremap that returned `ret`; `regs` gives the saved registers,
/// asked for only when the call succeeded.
#[inline(always)]
fn count(ret: i64, regs: impl FnOnce() -> *const u8) {
    let Some((rec, off)) = current_record() else {
        return;
    };
    unsafe {
        add(&raw mut (*rec).alloc.mremap_calls, 1);
        if !is_err(ret) {
            let regs = regs();
            let old_len = syscall_arg::<1>(regs, &off);
            let new_len = syscall_arg::<2>(regs, &off);
            if new_len > old_len {
                add(&raw mut (*rec).alloc.mremap_bytes, new_len - old_len);
            }
        }
    }
}
