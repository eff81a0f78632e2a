//! `syscalls:sys_exit_mmap`. Counting at exit alone (arguments come from the
//! saved registers) costs one program run per call instead of two.
//!
//! ```text
//! name: sys_exit_mmap
//! field:int __syscall_nr;    offset:8;    size:4;    signed:1;
//! field:long ret;    offset:16;    size:8;    signed:1;
//! ```
//! Arguments (`sys_enter_mmap`): addr, len, prot, flags, fd, off.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::sys_exit_ret;
use crate::kernel::{add, current_ids, is_err, offsets, proc_record, syscall_arg, syscall_regs};

#[tracepoint]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, _) = current_ids();
    let Some(rec) = proc_record(tgid, &off) else {
        return 0;
    };
    let ret = sys_exit_ret(&ctx);
    unsafe {
        add(&raw mut (*rec).alloc.mmap_calls, 1);
        if !is_err(ret) {
            let regs = syscall_regs();
            add(
                &raw mut (*rec).alloc.mmap_bytes,
                syscall_arg::<1>(regs, &off),
            );
        }
    }
    0
}
