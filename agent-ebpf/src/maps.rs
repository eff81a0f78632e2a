//! Maps shared by the probes. Sizes are defaults; userspace may resize them
//! before load (`--max-threads`, `--max-processes`).
use agent_common::{KernelOffsets, ProcRecord, ThreadSamples, drop_kind};
use aya_ebpf::{
    Global,
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};

/// CPU samples per thread, keyed by tid. Entries leave when the thread exits.
#[map]
pub static THREADS: HashMap<u32, ThreadSamples> = HashMap::with_max_entries(32768, 0);

/// Allocation syscalls and exited-thread totals per process, keyed by tgid.
/// Entries leave when the process exits (their last state rides the exit event).
#[map]
pub static PROCS: HashMap<u32, ProcRecord> = HashMap::with_max_entries(16384, 0);

/// Exec and exit events. Userspace polls it; no wakeups are requested.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Losses by `drop_kind`, per CPU.
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop_kind::COUNT, 0);

/// Offsets into kernel structures, written by userspace before load.
#[unsafe(no_mangle)]
pub static OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets::UNSET);
