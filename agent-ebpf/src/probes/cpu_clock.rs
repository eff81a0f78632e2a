//! Software `cpu-clock` perf event, one per online CPU, sampling at the
//! configured period: counts samples per thread.
use agent_common::{StackKey, ThreadSamples, control, drop_kind};
use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm},
    macros::perf_event,
    programs::{PerfEventContext, tracing::StackIdContext as _},
};

use crate::{
    kernel::{add, count_drop, current_ids, current_task, offsets, read},
    maps::{CONTROL, STACK_COUNTS_0, STACK_COUNTS_1, STACK_TGIDS, STACKS, THREADS},
};

#[perf_event]
pub fn cpu_clock(ctx: PerfEventContext) -> u32 {
    let (tgid, tid) = current_ids();
    if tid == 0 {
        return 0; // the idle task
    }
    let all = matches!(CONTROL.get(control::STACK_ALL), Some(&v) if v != 0);
    if all || STACK_TGIDS.get_ptr(tgid).is_some() {
        count_stack(&ctx, tgid, tid);
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

/// Counts this sample under the thread's user stack. Only for processes
/// userspace asked for: a frame-pointer walk costs about a microsecond, and
/// JIT-compiled code (the JVM's) cannot be walked anyway.
#[inline(always)]
fn count_stack(ctx: &PerfEventContext, tgid: u32, tid: u32) {
    let stack_id = match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
        Ok(id) => id as i32,
        Err(err) => {
            // -EFAULT: no user stack (a kernel thread, or the sample hit
            // during a syscall's user-copy); nothing is lost. -ENOMEM and
            // -EEXIST: STACKS is full or the stack collided with another.
            const EFAULT: i32 = 14;
            if err != -EFAULT {
                count_drop(drop_kind::STACK_FAILED);
            }
            return;
        }
    };
    let key = StackKey {
        tgid,
        tid,
        stack_id,
        _pad: 0,
    };
    let counts = match CONTROL.get(control::STACK_SLOT) {
        Some(&1) => &STACK_COUNTS_1,
        _ => &STACK_COUNTS_0,
    };
    if let Some(n) = counts.get_ptr_mut(key) {
        // Samples of one thread come from the CPU it runs on, but two threads
        // never share a key: still atomic, since userspace reads concurrently.
        add(n, 1);
    } else if counts.insert(key, 1u64, BPF_NOEXIST as u64).is_err() {
        // Another CPU may have inserted it first; add to theirs.
        match counts.get_ptr_mut(key) {
            Some(n) => add(n, 1),
            None => count_drop(drop_kind::STACK_COUNTS_FULL),
        }
    }
}
