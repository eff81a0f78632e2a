//! Software `cpu-clock` perf event, one per online CPU, sampling at the
//! configured period: counts samples per thread.
use agent_common::{ThreadSamples, drop_kind};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm},
    macros::perf_event,
    programs::PerfEventContext,
};

use crate::{
    kernel::{count_drop, current_ids, current_task, offsets, read},
    maps::THREADS,
};

#[perf_event]
pub fn cpu_clock(_ctx: PerfEventContext) -> u32 {
    let (tgid, tid) = current_ids();
    if tid == 0 {
        return 0; // the idle task
    }
    let comm = bpf_get_current_comm().unwrap_or_default();
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if let Some(t) = THREADS.get_ptr_mut(tid) {
        // Only the CPU this thread runs on samples it, and the thread's own
        // exit is the only other writer: no atomics needed.
        unsafe {
            (*t).samples += 1;
            (*t).comm = comm;
            (*t).cgroup_id = cgroup_id;
        }
        return 0;
    }
    let start_ns = match offsets() {
        Some(off) => read::<u64>(current_task(), off.task_start_boottime).unwrap_or(0),
        None => 0,
    };
    let fresh = ThreadSamples {
        tgid,
        _pad: 0,
        samples: 1,
        cgroup_id,
        start_ns,
        comm,
    };
    if THREADS.insert(tid, fresh, BPF_NOEXIST as u64).is_err() {
        count_drop(drop_kind::THREAD_MAP_FULL);
    }
    0
}
