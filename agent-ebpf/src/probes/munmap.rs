//! `syscalls:sys_exit_munmap`.
//!
//! ```text
//! name: sys_exit_munmap
//! field:int __syscall_nr;    offset:8;    size:4;    signed:1;
//! field:long ret;    offset:16;    size:8;    signed:1;
//! ```
//! Arguments (`sys_enter_munmap`): addr, len.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::sys_exit_ret;
use crate::kernel::{add, current_ids, offsets, proc_record, syscall_arg, syscall_regs};

#[tracepoint]
pub fn sys_exit_munmap(ctx: TracePointContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, _) = current_ids();
    let Some(rec) = proc_record(tgid, &off) else {
        return 0;
    };
    unsafe {
        add(&raw mut (*rec).alloc.munmap_calls, 1);
        if sys_exit_ret(&ctx) == 0 {
            let regs = syscall_regs();
            add(
                &raw mut (*rec).alloc.munmap_bytes,
                syscall_arg::<1>(regs, &off),
            );
        }
    }
    0
}
