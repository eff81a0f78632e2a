//! Maps shared by the probes. Sizes are defaults; userspace may resize them
//! before load (`--max-threads`, `--max-processes`).
use agent_common::{KernelOffsets, ProcRecord, StackKey, ThreadSamples, control, drop_kind};
use aya_ebpf::{
    Global,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
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

/// User stacks of sampled threads, by id (`bpf_get_stackid`).
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(4096, 0);

/// Samples per (thread, stack), double-buffered: the sampler writes the one
/// `CONTROL[STACK_SLOT]` names, userspace drains the other.
#[map]
pub static STACK_COUNTS_0: HashMap<StackKey, u64> = HashMap::with_max_entries(16384, 0);
#[map]
pub static STACK_COUNTS_1: HashMap<StackKey, u64> = HashMap::with_max_entries(16384, 0);

/// Processes whose user stacks are sampled (runtimes whose GC runs on
/// ordinary threads, so only stacks tell GC apart), set by userspace.
#[map]
pub static STACK_TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);

/// Switches set by userspace; see `agent_common::control`.
#[map]
pub static CONTROL: Array<u32> = Array::with_max_entries(control::COUNT, 0);

/// When a thread last took a HotSpot GC id (`GCIdMark::GCIdMark()`), ns, by
/// tid: a second firing of the same call is not a second collection. LRU:
/// entries of gone threads age out.
#[map]
pub static GC_ID_LAST: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// Start of an in-flight HotSpot GC pause (`gc__begin`), ns, by tid.
#[map]
pub static GC_BEGIN: HashMap<u32, u64> = HashMap::with_max_entries(4096, 0);
