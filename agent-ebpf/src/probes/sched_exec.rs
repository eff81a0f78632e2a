//! `sched:sched_process_exec`: tells userspace a process has a new image
//! (new `comm`, possibly a new cgroup), so it can look at it again.
//!
//! ```text
//! name: sched_process_exec
//! field:__data_loc char[] filename;    offset:8;    size:4;    signed:0;
//! field:pid_t pid;    offset:12;    size:4;    signed:1;
//! field:pid_t old_pid;    offset:16;    size:4;    signed:1;
//! ```
use agent_common::{ProcEvent, ProcRecord, drop_kind, event_kind};
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_ktime_get_boot_ns},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    kernel::{add, count_drop, current_ids, offsets, proc_record, process_start_ns, program_break},
    maps::{EVENTS, PROCS, THREADS},
};

const OLD_PID: usize = 16;

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, _) = current_ids();
    let old_tid = unsafe { *(ctx.as_ptr().add(OLD_PID) as *const i32) } as u32;
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };

    // A non-leader thread that execs takes over the leader's pid: move the
    // samples it gathered under its old tid into the process's total.
    if old_tid != tgid
        && let Some(old) = unsafe { THREADS.get(old_tid) }.copied()
    {
        let _ = THREADS.remove(old_tid);
        if let Some(rec) = proc_record(tgid, &off) {
            unsafe { add(&raw mut (*rec).exited.cpu_samples, old.samples) };
        }
    }
    // A new image has a new mm, with its own break.
    if let Some(rec) = PROCS.get_ptr_mut(tgid) {
        unsafe {
            (*rec).cgroup_id = cgroup_id;
            (*rec).last_brk = program_break(&off);
        }
    }

    let event = ProcEvent {
        kind: event_kind::EXEC,
        tgid,
        tid: old_tid,
        _pad: 0,
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        comm: bpf_get_current_comm().unwrap_or_default(),
        record: ProcRecord {
            start_ns: process_start_ns(&off),
            cgroup_id,
            ..ProcRecord::default()
        },
    };
    // BPF_RB_NO_WAKEUP: userspace drains on a timer; a wakeup per event would
    // cost more than the event.
    const BPF_RB_NO_WAKEUP: u64 = 1;
    if EVENTS
        .output::<ProcEvent>(&event, BPF_RB_NO_WAKEUP)
        .is_err()
    {
        count_drop(drop_kind::EVENTS_FULL);
    }
    0
}
