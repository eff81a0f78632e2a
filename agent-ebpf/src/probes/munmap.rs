//! munmap at its exit: the `syscalls:sys_exit_munmap` tracepoint, or fexit
//! on the kernel's munmap function.
//!
//! ```text
//! name: sys_exit_munmap
//! field:int __syscall_nr;    offset:8;    size:4;    signed:1;
//! field:long ret;    offset:16;    size:8;    signed:1;
//!
//! long __x64_sys_munmap(const struct pt_regs *regs);    /* fexit, x86_64 */
//! long __arm64_sys_munmap(const struct pt_regs *regs);  /* fexit, arm64 */
//! ```
//! Arguments (`sys_enter_munmap`): addr, len.
use aya_ebpf::{
    macros::{fexit, tracepoint},
    programs::{FExitContext, TracePointContext},
};

use super::{fexit_syscall, sys_exit_ret};
use crate::kernel::{add, current_record, syscall_arg, syscall_regs};

#[tracepoint]
pub fn sys_exit_munmap(ctx: TracePointContext) -> u32 {
    count(sys_exit_ret(&ctx), syscall_regs);
    0
}

#[fexit]
pub fn fexit_munmap(ctx: FExitContext) -> u32 {
    let (ret, regs) = fexit_syscall(&ctx);
    count(ret, || regs);
    0
}

/// Counts one munmap that returned `ret`; `regs` gives the saved registers,
/// asked for only when the call succeeded.
#[inline(always)]
fn count(ret: i64, regs: impl FnOnce() -> *const u8) {
    let Some((rec, off)) = current_record() else {
        return;
    };
    unsafe {
        add(&raw mut (*rec).alloc.munmap_calls, 1);
        if ret == 0 {
            add(
                &raw mut (*rec).alloc.munmap_bytes,
                syscall_arg::<1>(regs(), &off),
            );
        }
    }
}
