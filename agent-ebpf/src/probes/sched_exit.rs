//! `sched:sched_process_exit`, which fires once for every exiting thread.
//!
//! ```text
//! name: sched_process_exit
//! field:char comm[16];    offset:8;    size:16;    signed:0;
//! field:pid_t pid;    offset:24;    size:4;    signed:1;
//! field:int prio;    offset:28;    size:4;    signed:1;
//! field:bool group_dead;    offset:32;    size:1;    signed:0;   (Linux 6.16+ only)
//! ```
//!
//! Each thread folds what it leaves behind into its process's record: its
//! CPU samples and its final fault counters (`min_flt`/`maj_flt` are final
//! here: `exit_mm` has run, so no user fault can follow). The sum over all
//! threads is the process's total, which is what `/proc/<pid>/stat` would
//! have shown, even for a process that lived a few milliseconds.
//!
//! When the thread group is dead (`signal->live == 0`; read from the task
//! rather than the tracepoint's `group_dead`, which older kernels lack), the
//! record is sent to userspace and removed, so `PROCS` holds only live
//! processes. A thread that reaches this point after the group died (a
//! straggler of `exit_group`) also sees `live == 0` and sends what it adds:
//! userspace sums exit events of the same process.
use agent_common::{ProcEvent, drop_kind, event_kind};
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    kernel::{add, count_drop, current_ids, current_task, leader_comm, offsets, proc_record, read},
    maps::{EVENTS, GC_BEGIN, PROCS, STACK_TGIDS, THREADS},
};

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, tid) = current_ids();
    let task = current_task();

    let samples = match unsafe { THREADS.get(tid) } {
        Some(t) => t.samples,
        None => 0,
    };
    let _ = THREADS.remove(tid);
    let _ = GC_BEGIN.remove(tid);

    let Some(rec) = proc_record(tgid, &off) else {
        return 0;
    };
    let min_flt = read::<u64>(task, off.task_min_flt).unwrap_or(0);
    let maj_flt = read::<u64>(task, off.task_maj_flt).unwrap_or(0);
    unsafe {
        add(&raw mut (*rec).exited.cpu_samples, samples);
        add(&raw mut (*rec).exited.min_flt, min_flt);
        add(&raw mut (*rec).exited.maj_flt, maj_flt);
    }

    let live = read::<u64>(task, off.task_signal)
        .and_then(|signal| read::<i32>(signal, off.signal_live))
        .unwrap_or(1);
    if live != 0 {
        return 0;
    }

    let Some(mut entry) = EVENTS.reserve::<ProcEvent>(0) else {
        // The record stays in PROCS; userspace finds it dead and finalizes it.
        count_drop(drop_kind::EVENTS_FULL);
        return 0;
    };
    let mut record = unsafe { *rec };
    record.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    entry.write(ProcEvent {
        kind: event_kind::EXIT,
        tgid,
        tid,
        _pad: 0,
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        comm: leader_comm(&off),
        record,
    });
    // BPF_RB_NO_WAKEUP: see sched_exec.
    entry.submit(1);
    let _ = PROCS.remove(tgid);
    let _ = STACK_TGIDS.remove(tgid);
    0
}
