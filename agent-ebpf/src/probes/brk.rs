//! `syscalls:sys_exit_brk`: counts calls and the growth of the break.
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
//! ```
//! brk returns the new break on success and the old one on failure.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::sys_exit_ret;
use crate::kernel::{add, current_ids, offsets, proc_record};

#[tracepoint]
pub fn sys_exit_brk(ctx: TracePointContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, _) = current_ids();
    let Some(rec) = proc_record(tgid, &off) else {
        return 0;
    };
    let new_brk = sys_exit_ret(&ctx) as u64;
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
    0
}
