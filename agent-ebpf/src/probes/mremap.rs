//! `syscalls:sys_exit_mremap`: counts calls and the growth of regions.
//!
//! ```text
//! name: sys_exit_mremap
//! field:int __syscall_nr;    offset:8;    size:4;    signed:1;
//! field:long ret;    offset:16;    size:8;    signed:1;
//! ```
//! Arguments (`sys_enter_mremap`): addr, old_len, new_len, flags, new_addr.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::sys_exit_ret;
use crate::kernel::{add, current_ids, is_err, offsets, proc_record, syscall_arg, syscall_regs};

#[tracepoint]
pub fn sys_exit_mremap(ctx: TracePointContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, _) = current_ids();
    let Some(rec) = proc_record(tgid, &off) else {
        return 0;
    };
    unsafe {
        add(&raw mut (*rec).alloc.mremap_calls, 1);
        if !is_err(sys_exit_ret(&ctx)) {
            let regs = syscall_regs();
            let old_len = syscall_arg::<1>(regs, &off);
            let new_len = syscall_arg::<2>(regs, &off);
            if new_len > old_len {
                add(&raw mut (*rec).alloc.mremap_bytes, new_len - old_len);
            }
        }
    }
    0
}
