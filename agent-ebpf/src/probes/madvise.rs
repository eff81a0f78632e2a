//! `syscalls:sys_exit_madvise`: bytes split by advice, since `MADV_DONTNEED`
//! and `MADV_FREE` are how allocators and GCs hand memory back.
//!
//! ```text
//! name: sys_exit_madvise
//! field:int __syscall_nr;    offset:8;    size:4;    signed:1;
//! field:long ret;    offset:16;    size:8;    signed:1;
//! ```
//! Arguments (`sys_enter_madvise`): start, len_in, behavior.
use agent_common::{MADV_DONTNEED, MADV_FREE};
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::sys_exit_ret;
use crate::kernel::{add, current_ids, offsets, proc_record, syscall_arg, syscall_regs};

#[tracepoint]
pub fn sys_exit_madvise(ctx: TracePointContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, _) = current_ids();
    let Some(rec) = proc_record(tgid, &off) else {
        return 0;
    };
    unsafe {
        add(&raw mut (*rec).alloc.madvise_calls, 1);
        if sys_exit_ret(&ctx) == 0 {
            let regs = syscall_regs();
            let len = syscall_arg::<1>(regs, &off);
            let counter = match syscall_arg::<2>(regs, &off) {
                MADV_DONTNEED => &raw mut (*rec).alloc.madvise_dontneed_bytes,
                MADV_FREE => &raw mut (*rec).alloc.madvise_free_bytes,
                _ => &raw mut (*rec).alloc.madvise_other_bytes,
            };
            add(counter, len);
        }
    }
    0
}
