//! Types shared by Tally's eBPF programs (`agent-ebpf`) and the userspace agent.
//!
//! Everything here is `#[repr(C)]` and made only of integers and byte arrays, so
//! that the kernel side can write it into maps and the ring buffer and userspace
//! can read it back byte for byte. With the `user` feature the types implement
//! [`aya::Pod`].
#![no_std]

/// Length of a task's `comm`, including the trailing NUL (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// `madvise(2)` advice values counted apart; identical on x86_64 and arm64
/// (`include/uapi/asm-generic/mman-common.h`).
pub const MADV_DONTNEED: u64 = 4;
pub const MADV_FREE: u64 = 8;

/// Names of the maps, shared so that a rename breaks the build, not a run.
pub mod maps {
    pub const THREADS: &str = "THREADS";
    pub const PROCS: &str = "PROCS";
    pub const EVENTS: &str = "EVENTS";
    pub const DROPS: &str = "DROPS";
    pub const STACKS: &str = "STACKS";
    pub const STACK_COUNTS_0: &str = "STACK_COUNTS_0";
    pub const STACK_COUNTS_1: &str = "STACK_COUNTS_1";
    pub const STACK_TGIDS: &str = "STACK_TGIDS";
    pub const CONTROL: &str = "CONTROL";
    pub const GC_BEGIN: &str = "GC_BEGIN";
    pub const GC_ID_LAST: &str = "GC_ID_LAST";
}

/// Name of the global holding [`KernelOffsets`], filled in by userspace at load.
pub const OFFSETS_GLOBAL: &str = "OFFSETS";

/// CPU samples of one thread. Map `THREADS`, keyed by tid (`u32`).
///
/// A thread runs on one CPU at a time, so a plain hash entry per thread never
/// contends; a per-CPU hash would multiply kernel memory by the CPU count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadSamples {
    pub tgid: u32,
    pub _pad: u32,
    /// cpu-clock samples taken while this thread was on a CPU.
    pub samples: u64,
    /// cgroup v2 id of the thread at its latest sample.
    pub cgroup_id: u64,
    /// `task_struct.start_boottime` of the thread, ns since boot.
    pub start_ns: u64,
    /// The thread's `comm` at its latest sample.
    pub comm: [u8; COMM_LEN],
}

/// Allocation-related syscalls of one process, cumulative since the agent
/// attached. Bytes count successful calls only. The counters every
/// iteration of an allocator touches come first, so they share cache lines
/// with the map element's key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocCounters {
    pub mmap_calls: u64,
    /// Sum of `len` of successful `mmap` calls.
    pub mmap_bytes: u64,
    pub munmap_calls: u64,
    pub munmap_bytes: u64,
    pub madvise_calls: u64,
    pub madvise_dontneed_bytes: u64,
    pub madvise_free_bytes: u64,
    pub madvise_other_bytes: u64,
    pub brk_calls: u64,
    /// Growth of the program break (new minus old, when positive).
    pub brk_bytes: u64,
    pub mremap_calls: u64,
    /// Growth of remapped regions (`new_len - old_len`, when positive).
    pub mremap_bytes: u64,
}

/// What the threads of a process that already exited left behind: their CPU
/// samples (moved out of `THREADS` when each thread exits) and their final
/// fault counters (`task_struct.min_flt`/`maj_flt` read at exit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitedThreads {
    pub cpu_samples: u64,
    pub min_flt: u64,
    pub maj_flt: u64,
}

/// One process. Map `PROCS`, keyed by tgid (`u32`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcRecord {
    pub alloc: AllocCounters,
    /// The program break after the latest `brk` call (or when the record was
    /// made, or at exec): brk growth is measured from it at syscall exit.
    pub last_brk: u64,
    /// `start_boottime` of the thread-group leader, ns since boot: with the
    /// tgid it makes the `ProcKey`, so a reused pid is a new process.
    pub start_ns: u64,
    /// cgroup v2 id when the record was created or the process last exec'd.
    pub cgroup_id: u64,
    pub exited: ExitedThreads,
    pub gc: RuntimeGc,
}

/// Upper bounds of the pause histogram's buckets, ns: the semantic
/// conventions' advice for `jvm.gc.duration` (0.01, 0.1, 1, 10 s). A pause
/// of exactly a bound falls in that bound's bucket (Prometheus `le`).
pub const PAUSE_BUCKET_BOUNDS_NS: [u64; 4] =
    [10_000_000, 100_000_000, 1_000_000_000, 10_000_000_000];

/// GC events a runtime reported through uprobes: Go's
/// `runtime.gcMarkTermination`, HotSpot's `gc__begin`/`gc__end` USDT probes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeGc {
    /// Completed GC cycles (Go) or collections, GC ids taken (HotSpot).
    pub cycles: u64,
    /// Time between `gc__begin` and `gc__end` (HotSpot), ns.
    pub pause_ns: u64,
    /// The same pauses, counted by length: one bucket per bound of
    /// [`PAUSE_BUCKET_BOUNDS_NS`], then the pauses above the last.
    pub pause_buckets: [u64; 5],
}

/// Key of the `STACK_COUNTS_*` maps: samples of one thread with one user
/// stack (an id into `STACKS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub tgid: u32,
    pub tid: u32,
    pub stack_id: i32,
    pub _pad: u32,
}

/// Indices of the `CONTROL` array.
pub mod control {
    /// Which of `STACK_COUNTS_0`/`STACK_COUNTS_1` the sampler writes; userspace
    /// flips it, then drains the other one.
    pub const STACK_SLOT: u32 = 0;
    /// Non-zero: sample the user stacks of every process, not only those
    /// in `STACK_TGIDS` (`--stack-sampling all`).
    pub const STACK_ALL: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// Kinds of [`ProcEvent`].
pub mod event_kind {
    /// A process called `execve`; `record` holds only `start_ns`/`cgroup_id`.
    pub const EXEC: u32 = 1;
    /// The last live thread of a process exited; `record` is its final state.
    pub const EXIT: u32 = 2;
}

/// An exec or exit, sent through the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcEvent {
    pub kind: u32,
    pub tgid: u32,
    /// Exit: the thread that saw the group die. Exec: the tid before exec.
    pub tid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_boot_ns()` at the event.
    pub ts_ns: u64,
    /// `comm` of the thread-group leader.
    pub comm: [u8; COMM_LEN],
    pub record: ProcRecord,
}

/// Indices of the per-CPU `DROPS` array: losses are counted, never silent.
pub mod drop_kind {
    /// `THREADS` was full: a new thread's samples were not recorded.
    pub const THREAD_MAP_FULL: u32 = 0;
    /// `PROCS` was full: a new process's syscalls or exit were not recorded.
    pub const PROC_MAP_FULL: u32 = 1;
    /// The ring buffer was full: an exec or exit event was not sent. For an
    /// exit the record stays in `PROCS` and userspace finalizes it instead.
    pub const EVENTS_FULL: u32 = 2;
    /// A kernel read failed (`bpf_probe_read_kernel`).
    pub const READ_FAILED: u32 = 3;
    /// A user stack could not be recorded (`STACKS` full, or no stack).
    pub const STACK_FAILED: u32 = 4;
    /// A `STACK_COUNTS_*` map was full: a sample lost its stack.
    pub const STACK_COUNTS_FULL: u32 = 5;
    pub const COUNT: u32 = 6;
}

/// Byte offsets into kernel structures, found by userspace in the running
/// kernel's BTF (`/sys/kernel/btf/vmlinux`) and written into the programs'
/// read-only data before load. This stands in for CO-RE relocations, which
/// Rust eBPF programs cannot express yet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_min_flt: u32,
    pub task_maj_flt: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_signal: u32,
    pub task_mm: u32,
    pub task_comm: u32,
    pub signal_live: u32,
    pub mm_brk: u32,
    /// Offsets in `struct pt_regs` of syscall arguments 0..6 as they stand
    /// at syscall exit (arm64 keeps argument 0 in `orig_x0`).
    pub regs_arg: [u32; 6],
    /// Non-zero once userspace filled this in; programs do nothing until then.
    pub ready: u32,
}

impl KernelOffsets {
    /// The value compiled into the programs: not ready, every offset zero.
    pub const UNSET: Self = Self {
        task_min_flt: 0,
        task_maj_flt: 0,
        task_group_leader: 0,
        task_start_boottime: 0,
        task_signal: 0,
        task_mm: 0,
        task_comm: 0,
        signal_live: 0,
        mm_brk: 0,
        regs_arg: [0; 6],
        ready: 0,
    };
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: every type is `#[repr(C)]`, `Copy`, made of integers and byte
    // arrays with explicit padding, so any bit pattern is valid.
    unsafe impl aya::Pod for ThreadSamples {}
    unsafe impl aya::Pod for AllocCounters {}
    unsafe impl aya::Pod for ExitedThreads {}
    unsafe impl aya::Pod for ProcRecord {}
    unsafe impl aya::Pod for ProcEvent {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for RuntimeGc {}
    unsafe impl aya::Pod for StackKey {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ThreadSamples>(), 4 + 4 + 8 * 3 + COMM_LEN);
        assert_eq!(size_of::<AllocCounters>(), 12 * 8);
        assert_eq!(size_of::<ExitedThreads>(), 3 * 8);
        assert_eq!(size_of::<ProcRecord>(), 12 * 8 + 3 * 8 + 3 * 8 + 7 * 8);
        assert_eq!(size_of::<StackKey>(), 16);
        assert_eq!(
            size_of::<ProcEvent>(),
            16 + 8 + COMM_LEN + size_of::<ProcRecord>()
        );
        assert_eq!(size_of::<KernelOffsets>(), 4 * (9 + 6 + 1));
    }
}
