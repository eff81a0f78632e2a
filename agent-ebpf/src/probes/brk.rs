//! `syscalls:sys_enter_brk` and `syscalls:sys_exit_brk`. Growth needs the
//! break before the call (`mm->brk`), which is gone by exit, so brk is the
//! one syscall probed on both sides. It is rare next to mmap and madvise.
//!
//! ```text
//! name: sys_enter_brk
//! field:int __syscall_nr;    offset:8;    size:4;    signed:1;
//! field:unsigned long brk;    offset:16;    size:8;    signed:0;
//!
//! name: sys_exit_brk
//! field:int __syscall_nr;    offset:8;    size:4;    signed:1;
//! field:long ret;    offset:16;    size:8;    signed:1;
//! ```
use agent_common::drop_kind;
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::sys_exit_ret;
use crate::{
    kernel::{add, count_drop, current_ids, current_task, offsets, proc_record, read},
    maps::BRK_SCRATCH,
};

#[tracepoint]
pub fn sys_enter_brk(_ctx: TracePointContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (_, tid) = current_ids();
    let Some(mm) = read::<u64>(current_task(), off.task_mm) else {
        return 0;
    };
    let Some(old_brk) = read::<u64>(mm, off.mm_brk) else {
        return 0;
    };
    if BRK_SCRATCH.insert(tid, old_brk, 0).is_err() {
        count_drop(drop_kind::BRK_SCRATCH_FULL);
    }
    0
}

#[tracepoint]
pub fn sys_exit_brk(ctx: TracePointContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, tid) = current_ids();
    let old_brk = unsafe { BRK_SCRATCH.get(tid) }.copied();
    let _ = BRK_SCRATCH.remove(tid);
    let Some(rec) = proc_record(tgid, &off) else {
        return 0;
    };
    unsafe { add(&raw mut (*rec).alloc.brk_calls, 1) };
    // brk returns the new break on success and the old one on failure.
    let new_brk = sys_exit_ret(&ctx) as u64;
    if let Some(old_brk) = old_brk
        && new_brk > old_brk
    {
        unsafe { add(&raw mut (*rec).alloc.brk_bytes, new_brk - old_brk) };
    }
    0
}
