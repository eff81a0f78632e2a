//! Go: what Tally knows of Go's garbage collector. No thread is GC-only
//! (see below), so Go's GC is found from sampled stacks: the function
//! names here, from the symbol table or, in stripped binaries, from the
//! pclntab every Go binary keeps ([`pclntab`], [`frames`]); its cycles come
//! from a uprobe on the runtime's GC-cycle function (`collect::runtimes`).
//!
//! **Go**: no thread is GC-only either: the runtime names no threads (they
//! all carry the process's name) and runs the collector in goroutines on
//! any thread. Go's GC is found from stacks too.
//!
//! **Go** (names from the Go 1.19 runtime on this machine, `go tool nm`, and
//! the newer runtimes' renames): marking (`gcBgMarkWorker`, `gcDrain*`,
//! `gcAssistAlloc*`, `markroot*`, `scanobject`, `scanblock`, `scanstack`,
//! `scanframeworker`, `greyobject`, `shade`, `findObject`, mark bits, work
//! buffers and `(*gcWork).*`), sweeping (`bgsweep`, `sweepone`, `(*sweepLocked).sweep`,
//! `(*mheap).reclaim*`, `deductSweepCredit`), cycle control (`gcStart`,
//! `gcMarkDone`, `gcMarkTermination`, the pacer, `runtime.GC`). Every
//! `runtime.gcXxx` function and method of a `gcXxx` type is GC, except
//! `gcallers` (tracebacks) and the one-time `gcinit`/`gcenable`.
//! - **Not the costs the runtime charges to the program**: the write
//!   barrier (`gcWriteBarrier*`, `wbBufFlush*`, `bulkBarrier*`, `(*wbBuf).*`)
//!   and allocating black (`gcmarknewobject`). They exist because a
//!   collection is running, but Go's own GC accounting
//!   (`GODEBUG=gctrace=1`, `GCCPUFraction`) counts them as the mutator's, and
//!   Tally's share is meant to agree with the runtime's own report.
//! - **Not** `mallocgc` and the allocation path: allocation is the
//!   program's work; its GC assists and proportional sweeping show as
//!   `gcAssistAlloc`/`sweepone` frames under it.
//! - **Not the scavenger** (`bgscavenge`, `(*scavengerState).*`,
//!   `(*pageAlloc).scavenge*`): it returns free memory to the OS after
//!   collection, it does not collect; it is paced to about 1% of one CPU,
//!   and its `madvise` calls already count as released memory in the
//!   allocator signals. Counting it would mix "the GC costs too much"
//!   (tune GOGC/GOMEMLIMIT) with "memory goes back to the OS".
//! - Not finalizers' execution (`runfinq`): that is user code.
//!
pub mod frames;
pub mod pclntab;

use super::{GcEvents, GcRuntime};
use tally_core::gc::Runtime;

/// The file offset of the Go runtime's GC-cycle function in the binary at
/// `exe` (`/proc/<pid>/exe`: the file the process runs, in its container
/// or deleted since), from the pclntab every Go binary keeps, stripped or
/// not; `None` (gccgo, no table) leaves the symbol table to find it.
pub fn gc_cycle_entry_offset(exe: &std::path::Path) -> Option<u64> {
    use crate::probes::uprobes::GO_GC_CYCLE_SYMBOL;
    use pclntab::GoFuncTable;
    let table = match GoFuncTable::read(exe) {
        Ok(table) => table,
        Err(err) => {
            tracing::debug!("{}: {err}; probing by symbol", exe.display());
            return None;
        }
    };
    let entry = table.entry_of(GO_GC_CYCLE_SYMBOL)?;
    table.file_offset_of(entry)
}

/// Go's collector.
pub struct Go;

impl GcRuntime for Go {
    fn runtime(&self) -> Runtime {
        Runtime::Go
    }

    // gccgo links its runtime, libgo, dynamically by default; `gc`-built
    // binaries are known by their ELF sections (`runtime`).
    fn named_by(&self, _exe: &str, libs: &[&str]) -> bool {
        libs.iter().any(|l| l.starts_with("libgo.so"))
    }

    fn gc_seen_by_stacks(&self) -> bool {
        true
    }

    fn gc_events(&self) -> GcEvents {
        GcEvents::CycleUprobe
    }

    fn is_gc_symbol(&self, symbol: &str) -> bool {
        is_go_gc(symbol)
    }

    // Every goroutine's stack ends in runtime.goexit, runtime.main or
    // runtime.mstart; GC workers run in runtime code.
    fn is_runtime_symbol(&self, symbol: &str) -> bool {
        symbol.starts_with("runtime.")
    }
}

/// The GC functions of package runtime that the prefix rules below miss.
const GO_FUNCS: &[&str] = &[
    // Marking.
    "scanobject",
    "scanblock",
    "scanstack",
    "scanframeworker",
    "scanConservative",
    "greyobject",
    "shade",
    // Object lookup for marking (scanobject, scanblock, shade, wbBufFlush1);
    // elsewhere only in -d=checkptr builds.
    "findObject",
    "shrinkstack",
    "newMarkBits",
    "newAllocBits",
    "nextMarkBitArenaEpoch",
    "clearpools",
    "freeStackSpans",
    // Work buffers.
    "getempty",
    "putempty",
    "putfull",
    "getfull",
    "trygetfull",
    "handoff",
    "freeSomeWbufs",
    "prepareFreeWorkbufs",
    // Sweeping.
    "bgsweep",
    "sweepone",
    "deductSweepCredit",
    "finishsweep_m",
    "queuefinalizer",
    // Cycle control.
    "GC",
    "forcegchelper",
    "gcstopm",
    "stopTheWorldGC",
    "startTheWorldGC",
];

/// Prefixes of GC function names.
const GO_FUNC_PREFIXES: &[&str] = &["markroot", "markBits"];

/// GC machinery the runtime charges to the program (see the module doc).
const GO_MUTATOR_CHARGED: &[&str] = &[
    "gcWriteBarrier",
    "wbBufFlush",
    "wbMove",
    "wbZero",
    "typeBitsBulkBarrier",
    "bulkBarrier",
    "gcmarknewobject",
];

/// GC types: every method of these.
const GO_TYPES: &[&str] = &[
    "workbuf",
    "markBits",
    "sweepLocked",
    "sweepLocker",
    "activeSweep",
    "stackScanState",
    "stackObject",
    // Go 1.22+: pointer bitmaps walked by scanobject and bulkBarrierPreWrite.
    "typePointers",
];

/// GC methods of types that also do other things.
const GO_METHODS: &[(&str, &str)] = &[
    ("mspan", "sweep"),
    ("mspan", "reportZombies"),
    ("mspan", "markBitsForIndex"),
    ("mspan", "markBitsForBase"),
    ("mspan", "typePointersOf"),
    ("mspan", "typePointersOfUnchecked"),
    ("mheap", "reclaim"),
    ("mheap", "reclaimChunk"),
    ("mheap", "nextSpanForSweep"),
    ("mcache", "prepareForSweep"),
    // Go ≤1.21: scanobject's bitmap walk (not initSpan and the setters,
    // which allocation uses).
    ("heapBits", "next"),
    ("heapBits", "nextFast"),
    ("heapBits", "nextArena"),
];

fn is_go_gc(symbol: &str) -> bool {
    let Some(rest) = symbol.strip_prefix("runtime.") else {
        return false;
    };
    // Assembly wrappers (.abi0) and generic instantiations ([...]).
    let rest = rest.strip_suffix(".abi0").unwrap_or(rest);
    let rest = rest.split('[').next().unwrap_or(rest);
    // "(*T).m", "T.m", "f", "f.func1", "f.func1.2", "(*T).m.func1".
    let (head, method) = if let Some(r) = rest.strip_prefix("(*") {
        let Some((ty, m)) = r.split_once(").") else {
            return false;
        };
        (ty, m.split('.').next())
    } else {
        let mut parts = rest.split('.');
        let head = parts.next().unwrap_or_default();
        let second = parts.next().filter(|s| !is_go_closure(s));
        (head, second)
    };
    if head == "gcallers" || head == "gcinit" || head == "gcenable" || head == "wbBuf" {
        return false;
    }
    if GO_MUTATOR_CHARGED.iter().any(|p| head.starts_with(p)) {
        return false;
    }
    // gcStart, gcDrain…, gcAssistAlloc…, gcWork, gcControllerState,
    // gcCPULimiterState, gcTrigger, gcBits…
    if head
        .strip_prefix("gc")
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_uppercase())
    {
        return true;
    }
    if GO_TYPES.contains(&head) {
        return true;
    }
    match method {
        Some(m) => GO_METHODS.contains(&(head, m)),
        None => GO_FUNCS.contains(&head) || GO_FUNC_PREFIXES.iter().any(|p| head.starts_with(p)),
    }
}

/// `func1`, `func12`, `1` (nested closure), `gowrap1`, `deferwrap1`.
fn is_go_closure(s: &str) -> bool {
    let digits = s
        .trim_start_matches("func")
        .trim_start_matches("gowrap")
        .trim_start_matches("deferwrap");
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}
