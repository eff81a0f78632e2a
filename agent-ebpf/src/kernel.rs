//! Reads of kernel state shared by the probes: task fields at offsets found
//! in BTF by userspace, syscall arguments from the task's saved registers,
//! and the get-or-create of a process record.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use agent_common::{COMM_LEN, KernelOffsets, ProcRecord, drop_kind};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_cgroup_id, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
        generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_task_pt_regs},
    },
};

use crate::maps::{DROPS, OFFSETS, PROCS};

/// The offsets, or `None` until userspace has filled them in.
#[inline(always)]
pub fn offsets() -> Option<KernelOffsets> {
    let off = OFFSETS.load();
    (off.ready != 0).then_some(off)
}

#[inline(always)]
pub fn count_drop(kind: u32) {
    if let Some(slot) = DROPS.get_ptr_mut(kind) {
        // Per-CPU slot: no other CPU writes it.
        unsafe { *slot += 1 };
    }
}

/// Adds to a counter that threads of one process may bump from several CPUs.
#[inline(always)]
pub fn add(counter: *mut u64, value: u64) {
    // SAFETY: `counter` points into a map value, which is 8-byte aligned and
    // lives as long as the map. With its result unused this compiles to a
    // plain BPF atomic add (`lock xadd`), which every kernel we support has;
    // `AtomicU64::fetch_add` is not offered on the BPF target.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, value) };
}

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read<T>(base: u64, offset: u32) -> Option<T> {
    let r = unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) };
    if r.is_err() {
        count_drop(drop_kind::READ_FAILED);
    }
    r.ok()
}

#[inline(always)]
pub fn current_task() -> u64 {
    unsafe { bpf_get_current_task() }
}

/// `group_leader->start_boottime` of the current task: the process's start.
#[inline(always)]
pub fn process_start_ns(off: &KernelOffsets) -> u64 {
    read::<u64>(current_task(), off.task_group_leader)
        .and_then(|leader| read::<u64>(leader, off.task_start_boottime))
        .unwrap_or(0)
}

/// `mm->brk` of the current task; 0 for kernel threads, which have no mm.
#[inline(always)]
pub fn program_break(off: &KernelOffsets) -> u64 {
    match read::<u64>(current_task(), off.task_mm) {
        Some(mm) if mm != 0 => read::<u64>(mm, off.mm_brk).unwrap_or(0),
        _ => 0,
    }
}

/// `comm` of the current thread-group leader.
#[inline(always)]
pub fn leader_comm(off: &KernelOffsets) -> [u8; COMM_LEN] {
    let mut comm = [0u8; COMM_LEN];
    if let Some(leader) = read::<u64>(current_task(), off.task_group_leader) {
        let src = (leader + off.task_comm as u64) as *const u8;
        if unsafe { bpf_probe_read_kernel_buf(src, &mut comm) }.is_err() {
            count_drop(drop_kind::READ_FAILED);
        }
    }
    comm
}

/// The registers the current task saved on syscall entry
/// (`bpf_task_pt_regs`, Linux 5.15). Read its fields with [`syscall_arg`].
#[inline(always)]
pub fn syscall_regs() -> *const u8 {
    // SAFETY: both helpers take and return kernel pointers the verifier tracks.
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8 }
}

/// Syscall argument `N` from [`syscall_regs`], as it stands at syscall exit.
///
/// A plain load, not `bpf_probe_read_kernel`: the registers are a trusted
/// BTF pointer and the offset is a constant to the verifier (`.rodata` is
/// frozen before load), which checks the access against `struct pt_regs`.
/// This keeps the per-syscall cost to one helper pair.
#[inline(always)]
pub fn syscall_arg<const N: usize>(regs: *const u8, off: &KernelOffsets) -> u64 {
    unsafe { *(regs.add(off.regs_arg[N] as usize) as *const u64) }
}

/// A syscall return value in `[-4095, -1]` is an error (`IS_ERR_VALUE`).
#[inline(always)]
pub fn is_err(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

/// The `PROCS` record of `tgid`, created if this is the first time the
/// process shows up. `None` (and a counted drop) when the map is full.
#[inline(always)]
pub fn proc_record(tgid: u32, off: &KernelOffsets) -> Option<*mut ProcRecord> {
    if let Some(rec) = PROCS.get_ptr_mut(tgid) {
        return Some(rec);
    }
    let fresh = ProcRecord {
        last_brk: program_break(off),
        start_ns: process_start_ns(off),
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        ..ProcRecord::default()
    };
    // BPF_NOEXIST: if another CPU created it meanwhile, keep theirs.
    if let Err(err) = PROCS.insert(tgid, fresh, BPF_NOEXIST as u64) {
        const EEXIST: i32 = 17;
        if err != -EEXIST as i64 as i32 && err != -EEXIST {
            count_drop(drop_kind::PROC_MAP_FULL);
            return None;
        }
    }
    PROCS.get_ptr_mut(tgid)
}

/// The current process's record and the offsets it was read with; `None`
/// until userspace has filled in the offsets, or when the map is full.
#[inline(always)]
pub fn current_record() -> Option<(*mut ProcRecord, KernelOffsets)> {
    let off = offsets()?;
    let (tgid, _) = current_ids();
    Some((proc_record(tgid, &off)?, off))
}

/// Splits `bpf_get_current_pid_tgid()` into `(tgid, tid)`.
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let id = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}
