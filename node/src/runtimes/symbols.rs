//! GC code by function name, for sampled stacks.
//!
//! A sample counts as GC when **any** frame of its stack is GC code (see
//! `collect::stacks`), so the rules name both the collectors' entry points
//! (everything below them is GC) and the hot leaf functions (when the
//! unwinder loses the callers, the leaf alone must still say GC). Code that
//! only *may* lead to a collection, above all allocation, is not GC: when it
//! does collect, the collector's own frames are on the stack and match.
//!
//! Symbols arrive demangled (`v8::internal::Heap::CollectGarbage(…)`,
//! `void OopOopIterateDispatch<G1CMOopClosure>::Table::oop_oop_iterate<…>(…)`)
//! or, from an unwinder that does not demangle, as Itanium-mangled names
//! (`_ZN2v88internal4Heap14CollectGarbageE…`); Go symbols are Go's own
//! (`runtime.(*gcWork).tryGet`, `runtime.gcMarkDone.func1`,
//! `runtime.wbBufFlush.abi0`). JIT-compiled frames have no symbol and never
//! match.
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
//! **Node/V8** (C++ names from `nm -C /usr/bin/node`, node 20): in
//! `v8::internal`, classes whose name says marking, sweeping, scavenging,
//! evacuating or compacting (`MarkCompactCollector`, `MinorMarkCompactCollector`,
//! `ScavengerCollector`, `Scavenger`, `ConcurrentMarking`,
//! `IncrementalMarking`, `MarkingVisitorBase<…>`, `MarkingBarrier`,
//! `Sweeper`, `ArrayBufferSweeper`, `Evacuator`, `PointersUpdatingVisitor`,
//! `RememberedSet<…>`, `GCTracer`…); `Heap`, `LocalHeap`, `GlobalHandles`,
//! `TracedHandles` and `CppHeap` methods whose name says GC
//! (`Heap::CollectGarbage`, `PerformGarbageCollection`, `Scavenge`,
//! `MarkCompact`, `IterateRoots`, `GenerationalBarrierSlow`…) but not their
//! allocation or bookkeeping methods (`Heap::AllocateRaw…`,
//! `Heap::CreateFillerObjectAt`, `Heap::GcSafe…`, used by stack walking);
//! the write-barrier slow paths (`WriteBarrier`, `Builtins_RecordWrite*`,
//! reached only when a store needs the GC's attention); Oilpan
//! (`cppgc::internal::` markers, sweepers, compactor, write barrier) and
//! `heap::base::` worklists and stack scanning. Heap snapshots and the
//! sampling heap profiler (`HeapSnapshotGenerator`, `V8HeapExplorer`…) are
//! not GC, nor is the compiler.
//!
//! **JVM** (`nm -C` of libjvm.so, OpenJDK 17 and Temurin 25). GC threads
//! are already counted by name ([`super::threads`]); on Java threads GC code
//! runs as barrier slow paths (ZGC and Shenandoah mutators mark and relocate
//! in load barriers, G1 mutators refine cards) and in safepoint operations.
//! Matched: classes of the collectors (`G1*`, `PS*`, `ParallelScavengeHeap`,
//! `PSParallelCompact`, `Z*`, `Shenandoah*`, Serial's `DefNewGeneration`,
//! `TenuredGeneration`, `MarkSweep`/`SerialFullGC`, `SerialHeap`,
//! `GenCollectedHeap`…), the shared machinery (`ReferenceProcessor`,
//! `WeakProcessor`, `SATBMarkQueueSet`, `TaskTerminator`, `PreservedMarks`,
//! `PartialArray*`), GC VM operations (`VM_G1CollectForAllocation`,
//! `VM_GC_Operation`, `VM_ZMarkStart`…, not `VM_GC_HeapInspection`), and the
//! object-iteration templates instantiated for a GC closure
//! (`OopOopIterateDispatch<G1ScanEvacuatedObjClosure>…`, not
//! `<BFSClosure>` of JFR's leak profiler). Not matched: the collectors' JIT
//! support that runs in compiler threads (`*BarrierSetC1/C2`,
//! `*Assembler`, `*Stub*`, C2 `*Node`s), flag parsing (`*Arguments`),
//! monitoring (`*Serviceability*`, `*MemoryPool*`, `*Counters`), heap
//! iteration for tools (`*HeapIterator*`), and allocation (`*Alloc*`
//! classes; methods with "alloc" in their name such as
//! `G1CollectedHeap::attempt_allocation_slow`).
//!
//! **.NET**: the collector (gc.cpp, in libcoreclr.so or libclrgc.so) is
//! compiled twice, into namespaces `WKS::` (workstation) and `SVR::`
//! (server); everything there is GC except its allocation entry points.
//! libcoreclr ships without its internal symbols, so this only matters with
//! symbols installed; not verified on a .NET process (none on this machine).
use tally_core::gc::Runtime;

/// True if a frame with this symbol is garbage-collector code of `runtime`.
pub fn is_gc_symbol(runtime: Runtime, symbol: &str) -> bool {
    match runtime {
        Runtime::Go => is_go_gc(symbol),
        Runtime::Node => is_v8_gc(symbol),
        Runtime::Jvm => is_hotspot_gc(symbol),
        Runtime::Dotnet => is_coreclr_gc(symbol),
        Runtime::Python | Runtime::Native | Runtime::Unknown => false,
    }
}

/// True if a frame with this symbol is the runtime's own code (GC or not):
/// a process whose stacks show such frames would show its GC frames too
/// when it collects, so its GC is observable by stack. A stripped binary
/// shows none (every frame unknown), nor does one whose unwinding fails.
pub fn is_runtime_symbol(runtime: Runtime, symbol: &str) -> bool {
    match runtime {
        // Every goroutine's stack ends in runtime.goexit, runtime.main or
        // runtime.mstart; GC workers run in runtime code.
        Runtime::Go => symbol.starts_with("runtime."),
        // The engine, its embedded builtins, node's own code and libuv.
        Runtime::Node => {
            symbol.starts_with("Builtins_")
                || symbol.contains("v8::")
                || symbol.starts_with("node::")
                || symbol.starts_with("uv_")
                || symbol.starts_with("_ZN2v8")
                || symbol.starts_with("_ZN4node")
        }
        // HotSpot's C++ (demangled or not) and its exported entry points.
        Runtime::Jvm => {
            symbol.starts_with("JVM_")
                || symbol.starts_with("JNI_")
                || symbol.contains("::")
                || symbol.starts_with("_ZN")
        }
        Runtime::Dotnet => symbol.contains("WKS::") || symbol.contains("SVR::"),
        Runtime::Python | Runtime::Native | Runtime::Unknown => false,
    }
}

// ---------------------------------------------------------------- Go

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

// ---------------------------------------------------------------- C++ names

/// One component of a C++ qualified name: `Class<Arg, …>` is `name`
/// `Class`, `arg` `Some("Arg")` (the first identifier of the template
/// arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Comp<'a> {
    name: &'a str,
    arg: Option<&'a str>,
}

impl<'a> Comp<'a> {
    fn plain(name: &'a str) -> Self {
        Comp { name, arg: None }
    }

    /// From demangled text such as `OopOopIterateDispatch<ZMarkBarrierOopClosure<false> >`.
    fn from_text(text: &'a str) -> Self {
        let Some((name, args)) = text.split_once('<') else {
            return Comp::plain(text);
        };
        let args = args.trim_start();
        let end = args
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(args.len());
        Comp {
            name,
            arg: Some(&args[..end]).filter(|s| !s.is_empty()),
        }
    }
}

/// The components of a C++ function's qualified name, from a demangled or
/// an Itanium-mangled symbol: `void ns::Class<T>::method<U>(args) const`
/// gives `ns`, `Class` (arg `T`), `method` (arg `U`); the anonymous
/// namespace is dropped. Best effort: what cannot be parsed gives few or odd
/// components, which match nothing.
fn cxx_components(symbol: &str) -> Vec<Comp<'_>> {
    if symbol.starts_with("_Z") {
        return mangled_components(symbol);
    }
    // The qualified name ends at the first '(' outside template arguments
    // (and outside "(anonymous namespace)"); a space outside them ends a
    // return type or a "non-virtual thunk to" (but not "operator bool").
    let bytes = symbol.as_bytes();
    let mut angle = 0i32;
    let mut end = bytes.len();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => angle += 1,
            b'>' => angle -= 1,
            b'(' if angle == 0 => {
                if symbol[i..].starts_with("(anonymous namespace)") {
                    i += "(anonymous namespace)".len();
                    continue;
                }
                end = i;
                break;
            }
            b' ' if angle == 0 && !symbol[..i].ends_with("operator") => start = i + 1,
            _ => {}
        }
        i += 1;
    }
    let name = &symbol[start.min(end)..end];
    let mut out = Vec::new();
    let (mut depth, mut from) = (0i32, 0);
    let nb = name.as_bytes();
    let mut j = 0;
    while j < nb.len() {
        match nb[j] {
            b'<' => depth += 1,
            b'>' => depth -= 1,
            b':' if depth == 0 && nb.get(j + 1) == Some(&b':') => {
                out.push(&name[from..j]);
                from = j + 2;
                j += 1;
            }
            _ => {}
        }
        j += 1;
    }
    out.push(&name[from..]);
    out.into_iter()
        .filter(|c| !c.is_empty() && *c != "(anonymous namespace)")
        .map(Comp::from_text)
        .collect()
}

/// The components of an Itanium-mangled name: `_ZN` nested names, a plain
/// `_Z<len><name>`, local names (`_ZZ…`, lambdas: their enclosing
/// function) and thunks (`_ZThn…_`, `_ZTv…_…_`). Template arguments are
/// skipped by a rough reading of the grammar (substitutions, template
/// parameters, literals of builtin types), keeping the first name in them
/// as the component's `arg`; where the reading fails, the function's own
/// name is unknown and given as `"?"`. Unwinders normally demangle (blazesym
/// does): this is the fallback.
fn mangled_components(symbol: &str) -> Vec<Comp<'_>> {
    let b = symbol.as_bytes();
    let mut out: Vec<Comp<'_>> = Vec::new();
    let mut i = 2;
    // Thunks: Th <offset> _ | Tv <offset> _ <offset> _ | Tc …; then the
    // target's encoding.
    if b.get(2) == Some(&b'T') && matches!(b.get(3), Some(b'h' | b'v')) {
        let underscores = if b[3] == b'h' { 1 } else { 2 };
        let mut seen = 0;
        i = 4;
        while seen < underscores && i < b.len() {
            if b[i] == b'_' {
                seen += 1;
            }
            i += 1;
        }
    } else if b.get(2) == Some(&b'Z') {
        i = 3;
    }
    let nested = b.get(i) == Some(&b'N');
    if nested {
        i += 1;
        // CV- and ref-qualifiers of a member function.
        while matches!(b.get(i), Some(b'r' | b'V' | b'K' | b'R' | b'O')) {
            i += 1;
        }
    }
    let skip_seq_id = |mut i: usize| {
        while b
            .get(i)
            .is_some_and(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        {
            i += 1;
        }
        if b.get(i) == Some(&b'_') { i + 1 } else { i }
    };
    let mut depth = 0usize;
    let mut complete = false;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_digit() => {
                let mut len = 0usize;
                while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
                    len = len.saturating_mul(10).saturating_add((d - b'0') as usize);
                    i += 1;
                }
                let Some(name) = symbol.get(i..i.saturating_add(len)) else {
                    break;
                };
                if depth == 0 {
                    // "_GLOBAL__N_1" is the anonymous namespace.
                    if name != "_GLOBAL__N_1" {
                        out.push(Comp::plain(name));
                    }
                    if !nested {
                        complete = true;
                        break;
                    }
                } else if let Some(last) = out.last_mut()
                    && last.arg.is_none()
                {
                    last.arg = Some(name);
                }
                i += len;
            }
            b'I' | b'X' => {
                depth += 1;
                i += 1;
            }
            // A nested name inside template arguments, closed by an E.
            b'N' if depth > 0 => {
                depth += 1;
                i += 1;
            }
            // A literal: L <builtin type> <value> E.
            b'L' if depth > 0 && b.get(i + 1).is_some_and(|c| c.is_ascii_lowercase()) => {
                i += 2;
                while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'n') {
                    i += 1;
                }
                if b.get(i) != Some(&b'E') {
                    break;
                }
                i += 1;
            }
            // std::, or a substitution / template parameter reference.
            b'S' if b.get(i + 1) == Some(&b't') => i += 2,
            b'S' | b'T' if depth > 0 => {
                i += 1;
                if b[i - 1] == b'S' && b.get(i).is_some_and(|c| c.is_ascii_lowercase()) {
                    i += 1;
                } else {
                    i = skip_seq_id(i);
                }
            }
            b'E' if depth > 0 => {
                depth -= 1;
                i += 1;
            }
            b'E' => {
                complete = true;
                break;
            }
            // Builtin types and qualifiers in template arguments.
            c if depth > 0
                && (c.is_ascii_lowercase() || matches!(c, b'P' | b'R' | b'K' | b'V')) =>
            {
                i += 1
            }
            // Anything else (constructors C1/D2, operators, substitutions at
            // the top, unhandled grammar) ends what can be read.
            _ => break,
        }
    }
    if nested && !complete && !out.is_empty() {
        out.push(Comp::plain("?"));
    }
    out
}

fn contains_any(s: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| s.contains(n))
}

// ---------------------------------------------------------------- V8

/// Class-name fragments of V8's and Oilpan's collectors.
const V8_GC_CLASS_PARTS: &[&str] = &[
    "Marking",
    "Marker",
    "MarkCompact",
    "MarkSweep",
    "MarkBit",
    "Sweep",
    "Scaveng",
    "Evacuat",
    "Compaction",
    "Compactor",
    "Updating",
    "RecordMigratedSlot",
    "RememberedSet",
    "SlotSet",
    "InvalidatedSlots",
    "WriteBarrier",
    "WeakObjectRetainer",
    "Conservative",
];

/// Whole classes that are GC.
const V8_GC_CLASSES: &[&str] = &[
    "GCTracer",
    "GCIdleTimeHandler",
    "GCCallbacks",
    "GCCallbacksScope",
    "CollectionBarrier",
    "CollectorBase",
    "MemoryReducer",
    "MinorGCJob",
    "MinorGCHeapGrowing",
    "WeakObjects",
    "VisitWeakList",
    "PreFinalizerHandler",
    "GCInvoker",
    "WeakCallbackJobTask",
    "StatsCollector",
    "DeferredFinalizationBuilder",
    "InlinedFinalizationBuilder",
    "RegularFreeHandler",
    "DiscardingFreeHandler",
];

/// `heap::base::` classes that are GC: marking worklists and the
/// conservative stack scan.
const HEAP_BASE_GC_CLASSES: &[&str] = &["Worklist", "WorklistBase", "Stack"];

/// Classes with GC methods among others: judged by the method's name.
const V8_MIXED_CLASSES: &[&str] = &[
    "Heap",
    "HeapBase",
    "LocalHeap",
    "GlobalHandles",
    "TracedHandles",
    "TracedHandlesImpl",
    "CppHeap",
];

const V8_GC_METHOD_PARTS: &[&str] = &[
    "Garbage",
    "GC",
    "MarkCompact",
    "Scavenge",
    "Marking",
    "Sweep",
    "Evacuat",
    "Compact",
    "Roots",
    "Weak",
    "Barrier",
    "RememberedSet",
    "RecordedSlot",
    "Tracing",
    "TraceEpilogue",
    "TracePrologue",
];

fn is_v8_gc(symbol: &str) -> bool {
    // Embedded builtins: the write barrier's out-of-line part, called from
    // JIT code only when a store must be recorded or marked.
    if let Some(builtin) = symbol.strip_prefix("Builtins_") {
        return builtin.starts_with("RecordWrite") || builtin.starts_with("EphemeronKeyBarrier");
    }
    let components = cxx_components(symbol);
    let names: Vec<&str> = components.iter().map(|c| c.name).collect();
    let rest: &[&str] = match names.as_slice() {
        ["v8", "internal", rest @ ..]
        | ["cppgc", "internal", rest @ ..]
        | ["heap", "base", rest @ ..] => rest,
        _ => return false,
    };
    let Some(&class) = rest.first() else {
        return false;
    };
    let is_heap_base = names[0] == "heap";
    if is_heap_base {
        return HEAP_BASE_GC_CLASSES.contains(&class) || class.contains("Marking");
    }
    if rest.len() == 1 {
        // A free function: v8::internal::Heap_GenerationalBarrierSlow and
        // the like, or VisitWeakList<…>.
        return (class.starts_with("Heap_") && class.contains("Barrier"))
            || class == "VisitWeakList"
            || class.contains("WriteBarrier");
    }
    let method = rest[1];
    if V8_MIXED_CLASSES.contains(&class) {
        return !contains_any(method, &["Allocat", "Statistics", "GcSafe"])
            && contains_any(method, V8_GC_METHOD_PARTS);
    }
    // Type-info registration happens at allocation, not collection.
    if class.starts_with("GCInfo") {
        return false;
    }
    V8_GC_CLASSES.contains(&class) || contains_any(class, V8_GC_CLASS_PARTS)
}

// ---------------------------------------------------------------- HotSpot

/// Class-name prefixes of the collectors.
const HOTSPOT_GC_PREFIXES: &[&str] = &[
    "G1",
    "Shenandoah",
    "ParallelScavenge",
    "ParallelCompact",
    "ParCompaction",
    "ParMarkBitMap",
    "ParallelOld",
    "DefNew",
    "Tenured",
    "CardGeneration",
    "GenCollectedHeap",
    "GenMarkSweep",
    "MarkSweep",
    // Not "Serial": SerializeClosure is CDS.
    "SerialHeap",
    "SerialFullGC",
    "SerialGC",
    "SerialBlockOffset",
    "SerialCheck",
    "SerialStringDedup",
    "ReferenceProcessor",
    "WeakProcessor",
    "SATBMarkQueue",
    "TaskTerminator",
    "PreservedMarks",
    "PartialArray",
    "MarkBitMap",
    "CardTableRS",
    "ObjectStartArray",
];

/// Serial's closures, whose names do not say Serial.
const HOTSPOT_GC_CLASSES: &[&str] = &[
    "YoungGenScanClosure",
    "OldGenScanClosure",
    "AdjustPointerClosure",
    "MarkAndPushClosure",
    "PromoteFailureClosure",
    "FilteringClosure",
    "UpdateLogBuffersDeferred",
];

/// JDK 21–23's non-generational ZGC, renamed X*.
const HOTSPOT_XGC_PREFIXES: &[&str] = &[
    "XBarrier",
    "XHeap",
    "XMark",
    "XRelocat",
    "XDriver",
    "XDirector",
    "XPage",
    "XWorkers",
    "XStat",
    "XNMethod",
    "XReferenceProcessor",
    "XRoots",
    "XWeakRoots",
    "XUnload",
    "XCollectedHeap",
    "XForwarding",
    "XLiveMap",
    "XVerify",
];

fn is_hotspot_gc_class(class: &str) -> bool {
    let upper_after = |prefix: &str| {
        class
            .strip_prefix(prefix)
            .and_then(|r| r.chars().next())
            .is_some_and(|c| c.is_ascii_uppercase())
    };
    // JIT, flags, monitoring, tools and allocation support of the
    // collectors: see the module doc.
    if contains_any(
        class,
        &[
            "C1",
            "C2",
            "Assembler",
            "Stub",
            "Serviceability",
            "Monitoring",
            "MemoryPool",
            "HeapIterator",
            "Alloc",
        ],
    ) || contains_any(class, &["Arguments", "InitLogger"])
        || class.ends_with("Node")
        || class.ends_with("Counters")
    {
        return false;
    }
    HOTSPOT_GC_PREFIXES.iter().any(|p| class.starts_with(p))
        || HOTSPOT_GC_CLASSES.contains(&class)
        || upper_after("PS")
        || upper_after("Z")
        || (class.starts_with("PC") && class.ends_with("Closure"))
        || HOTSPOT_XGC_PREFIXES.iter().any(|p| class.starts_with(p))
}

fn is_hotspot_gc(symbol: &str) -> bool {
    let components = cxx_components(symbol);
    let Some(first) = components.first() else {
        return false;
    };
    let class = first.name;
    // Stop-the-world GC operations, run by the VM Thread.
    if let Some(op) = class.strip_prefix("VM_") {
        return op != "GC_HeapInspection"
            && op != "GC_SendObjectCountEvent"
            && (op.starts_with("GC_")
                || op.starts_with("G1")
                || op.starts_with("CollectFor")
                || op.starts_with("GenCollect")
                || op.starts_with("Parallel")
                || op.starts_with("Serial")
                || op.starts_with("Shenandoah")
                || op.starts_with('Z')
                || op.starts_with('X'));
    }
    // Object iteration instantiated for a collector's closure.
    if class.starts_with("OopOopIterate") && class.ends_with("Dispatch") {
        return first.arg.is_some_and(is_hotspot_gc_class);
    }
    if components.len() < 2 {
        return false; // A free function; HotSpot's GC code is in classes.
    }
    let method = components[components.len() - 1].name;
    is_hotspot_gc_class(class) && !method.to_ascii_lowercase().contains("alloc")
}

// ---------------------------------------------------------------- .NET

fn is_coreclr_gc(symbol: &str) -> bool {
    let components = cxx_components(symbol);
    let (Some(ns), Some(method)) = (components.first(), components.last()) else {
        return false;
    };
    (ns.name == "WKS" || ns.name == "SVR")
        && components.len() >= 2
        && !method.name.to_ascii_lowercase().contains("alloc")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(runtime: Runtime, symbols: &[&str], want: bool) {
        let wrong: Vec<&&str> = symbols
            .iter()
            .filter(|s| is_gc_symbol(runtime, s) != want)
            .collect();
        assert!(
            wrong.is_empty(),
            "{runtime:?} should say {want} for: {wrong:#?}"
        );
    }

    #[test]
    fn go_gc() {
        all(
            Runtime::Go,
            &[
                // From `go tool nm` of a Go 1.19 program.
                "runtime.gcBgMarkWorker",
                "runtime.gcBgMarkWorker.func2",
                "runtime.gcDrain",
                "runtime.gcDrainN",
                "runtime.gcAssistAlloc",
                "runtime.gcAssistAlloc1",
                "runtime.gcAssistAlloc.func1",
                "runtime.bgsweep",
                "runtime.sweepone",
                "runtime.sweepone.func1",
                "runtime.markroot",
                "runtime.markroot.func1",
                "runtime.markrootBlock",
                "runtime.markrootSpans",
                "runtime.markrootFreeGStacks",
                "runtime.scanobject",
                "runtime.scanblock",
                "runtime.scanstack",
                "runtime.scanstack.func1",
                "runtime.scanframeworker",
                "runtime.scanConservative",
                "runtime.greyobject",
                "runtime.findObject",
                "runtime.gcMarkDone",
                "runtime.gcMarkDone.func1.1",
                "runtime.gcMarkTermination",
                "runtime.gcMarkTermination.func4.1",
                "runtime.gcStart",
                "runtime.gcSweep",
                "runtime.gcResetMarkState",
                "runtime.gcFlushBgCredit",
                "runtime.gcParkAssist",
                "runtime.(*gcWork).tryGet",
                "runtime.(*gcWork).put",
                "runtime.(*gcWork).balance",
                "runtime.(*gcControllerState).findRunnableGCWorker",
                "runtime.(*gcControllerState).endCycle",
                "runtime.(*gcCPULimiterState).accumulate",
                "runtime.gcTrigger.test",
                "runtime.(*workbuf).checknonempty",
                "runtime.(*sweepLocked).sweep",
                "runtime.(*sweepLocker).tryAcquire",
                "runtime.(*activeSweep).end",
                "runtime.(*mheap).reclaim",
                "runtime.(*mheap).reclaimChunk",
                "runtime.(*mheap).nextSpanForSweep",
                "runtime.(*mcache).prepareForSweep",
                "runtime.(*mspan).reportZombies",
                "runtime.deductSweepCredit",
                "runtime.finishsweep_m",
                "runtime.(*stackScanState).putPtr",
                "runtime.newMarkBits",
                "runtime.nextMarkBitArenaEpoch",
                "runtime.freeSomeWbufs",
                "runtime.freeSomeWbufs.func1",
                "runtime.prepareFreeWorkbufs",
                "runtime.queuefinalizer",
                "runtime.forcegchelper",
                "runtime.stopTheWorldGC",
                "runtime.GC",
                // Newer runtimes (1.20–1.22).
                "runtime.gcDrainMarkWorkerDedicated",
                "runtime.gcDrainMarkWorkerIdle",
                "runtime.typePointers.next",
                "runtime.(*mspan).typePointersOfUnchecked",
                "runtime.(*mspan).sweep",
                "runtime.markBits.isMarked",
                "runtime.markBitsForAddr",
                "runtime.heapBits.next",
            ],
            true,
        );
    }

    #[test]
    fn go_not_gc() {
        all(
            Runtime::Go,
            &[
                // Allocation.
                "runtime.mallocgc",
                "runtime.newobject",
                "runtime.makeslice",
                "runtime.(*mcache).refill",
                "runtime.(*mcentral).cacheSpan",
                "runtime.(*mheap).allocSpan",
                "runtime.(*mspan).nextFreeIndex",
                "runtime.(*mspan).refillAllocCache",
                "runtime.heapBitsSetType",
                // Charged to the program by Go's own accounting.
                "runtime.gcmarknewobject",
                "runtime.(*wbBuf).reset",
                "runtime.wbBufFlush",
                "runtime.wbBufFlush.abi0",
                "runtime.wbBufFlush1",
                "runtime.gcWriteBarrier",
                "runtime.gcWriteBarrierCX",
                "runtime.gcWriteBarrier2",
                "runtime.bulkBarrierPreWrite",
                "runtime.typeBitsBulkBarrier",
                "runtime.wbMove",
                // The scavenger (see the module doc).
                "runtime.bgscavenge",
                "runtime.(*scavengerState).run",
                "runtime.(*pageAlloc).scavenge",
                "runtime.(*pageAlloc).scavengeOne",
                "runtime.(*pallocData).findScavengeCandidate",
                // Named gc… but not GC.
                "runtime.gcallers",
                "runtime.gcenable",
                "runtime.gcinit",
                // Scheduler, user finalizers, everything else.
                "runtime.schedule",
                "runtime.findRunnable",
                "runtime.runfinq",
                "runtime.SetFinalizer",
                "runtime.memmove",
                "runtime.futex",
                "runtime.stopTheWorldWithSema",
                "runtime.mcall",
                "runtime.(*mspan).ensureSwept",
                // Not the runtime at all.
                "main.main",
                "main.scanobject",
                "github.com/foo/runtime.gcStart",
                "gcStart",
                "runtime.",
                "runtime.(*",
                "runtime.(*gcWork",
                "",
            ],
            false,
        );
    }

    fn names(symbol: &str) -> Vec<&str> {
        cxx_components(symbol).iter().map(|c| c.name).collect()
    }

    #[test]
    fn cxx_names() {
        assert_eq!(
            names(
                "v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::GCCallbackFlags)"
            ),
            ["v8", "internal", "Heap", "CollectGarbage"]
        );
        let iterate = "void OopOopIterateDispatch<G1CMOopClosure>::Table::oop_oop_iterate<InstanceKlass, narrowOop>(G1CMOopClosure*, oopDesc*, Klass*)";
        assert_eq!(
            names(iterate),
            ["OopOopIterateDispatch", "Table", "oop_oop_iterate"]
        );
        let c = cxx_components(iterate);
        assert_eq!(
            (c[0].arg, c[1].arg, c[2].arg),
            (Some("G1CMOopClosure"), None, Some("InstanceKlass"))
        );
        assert_eq!(
            names(
                "void v8::internal::RememberedSet<(v8::internal::RememberedSetType)1>::Insert<(v8::internal::AccessMode)0>(v8::internal::MemoryChunk*, unsigned long)"
            ),
            ["v8", "internal", "RememberedSet", "Insert"]
        );
        assert_eq!(
            names(
                "v8::internal::(anonymous namespace)::ClearStringTableJobItem::Run(v8::JobDelegate*)"
            ),
            ["v8", "internal", "ClearStringTableJobItem", "Run"]
        );
        assert_eq!(
            names("non-virtual thunk to v8::internal::MinorGCJob::Task::~Task()"),
            ["v8", "internal", "MinorGCJob", "Task", "~Task"]
        );
        assert_eq!(
            names(
                "v8::internal::MarkCompactCollector::ClearJSWeakRefs()::{lambda(v8::internal::HeapObject)#1}::operator()(v8::internal::HeapObject) const"
            ),
            ["v8", "internal", "MarkCompactCollector", "ClearJSWeakRefs"]
        );
        assert_eq!(
            names("ZErrno::operator bool() const"),
            ["ZErrno", "operator bool"]
        );
        assert_eq!(
            names("PSParallelCompact::invoke_no_policy(bool) [clone .part.0]"),
            ["PSParallelCompact", "invoke_no_policy"]
        );
        assert_eq!(names("main"), ["main"]);
        assert_eq!(names(""), Vec::<&str>::new());
        // Mangled, as `nm` without -C shows them.
        assert_eq!(
            names(
                "_ZN2v88internal4Heap14CollectGarbageENS0_15AllocationSpaceENS0_23GarbageCollectionReasonENS_15GCCallbackFlagsE"
            ),
            ["v8", "internal", "Heap", "CollectGarbage"]
        );
        assert_eq!(
            names("_ZN20G1ParScanThreadState23trim_queue_to_thresholdEj"),
            ["G1ParScanThreadState", "trim_queue_to_threshold"]
        );
        assert_eq!(names("_ZNK9Scavenger7ProcessEv"), ["Scavenger", "Process"]);
        let visitor = "_ZN2v88internal18MarkingVisitorBaseINS0_18MainMarkingVisitorINS0_12MarkingStateEEES3_E12VisitPointerENS0_10HeapObjectENS0_14FullObjectSlotE";
        assert_eq!(
            names(visitor),
            ["v8", "internal", "MarkingVisitorBase", "VisitPointer"]
        );
        assert_eq!(cxx_components(visitor)[2].arg, Some("MainMarkingVisitor"));
        let dispatch = "_ZN21OopOopIterateDispatchI13G1Mux2ClosureE5Table15oop_oop_iterateI13InstanceKlass9narrowOopEEvPS0_P7oopDescP5Klass";
        assert_eq!(
            names(dispatch),
            ["OopOopIterateDispatch", "Table", "oop_oop_iterate"]
        );
        assert_eq!(cxx_components(dispatch)[0].arg, Some("G1Mux2Closure"));
        assert_eq!(
            names("_ZN2v88internal12_GLOBAL__N_14Item3RunEv"),
            ["v8", "internal", "Item", "Run"]
        );
        assert_eq!(
            names("_ZThn32_N2v88internal10MinorGCJob4TaskD0Ev"),
            ["v8", "internal", "MinorGCJob", "Task", "?"]
        );
        assert_eq!(
            names(
                "_ZZN2v88internal20MarkCompactCollector15ClearJSWeakRefsEvENKUlNS0_10HeapObjectEE_clES2_"
            ),
            ["v8", "internal", "MarkCompactCollector", "ClearJSWeakRefs"]
        );
        assert_eq!(names("_Z6JVM_GCv"), ["JVM_GC"]);
        // Garbage.
        for junk in [
            "_Z",
            "_ZN",
            "_ZN99999999999999999999x",
            "_ZN2v",
            "<<<(",
            ")))",
            ":::",
            "a::<b",
            "_ZNIIIIII",
            "_ZTh",
            "_ZTvn",
            "_ZZ",
        ] {
            let _ = cxx_components(junk);
        }
    }

    #[test]
    fn v8_gc() {
        all(
            Runtime::Node,
            &[
                // From `nm -C /usr/bin/node` (node 20.20.2).
                "v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::internal::GarbageCollectionReason, v8::GCCallbackFlags)",
                "v8::internal::Heap::PerformGarbageCollection(v8::internal::GarbageCollector, v8::internal::GarbageCollectionReason, char const*)",
                "v8::internal::Heap::Scavenge()",
                "v8::internal::Heap::MarkCompact()",
                "v8::internal::Heap::MinorMarkCompact()",
                "v8::internal::Heap::IterateRoots(v8::internal::RootVisitor*, v8::base::EnumSet<v8::internal::SkipRoot, int>)",
                "v8::internal::Heap::CompleteSweepingFull()",
                "v8::internal::Heap::GenerationalBarrierSlow(v8::internal::HeapObject, unsigned long, v8::internal::HeapObject)",
                "v8::internal::Heap::FinalizeIncrementalMarkingAtomically(v8::internal::GarbageCollectionReason)",
                "v8::internal::Scavenger::Process(v8::JobDelegate*)",
                "v8::internal::ScavengerCollector::JobTask::Run(v8::JobDelegate*)",
                "v8::internal::MarkCompactCollector::MarkLiveObjects()",
                "v8::internal::MinorMarkCompactCollector::StartMarking()",
                "v8::internal::ConcurrentMarking::RunMajor(v8::JobDelegate*, v8::base::EnumSet<v8::internal::CodeFlushMode, int>, unsigned int, bool)",
                "v8::internal::IncrementalMarking::Step(double, unsigned long, v8::internal::StepOrigin)",
                "v8::internal::MarkingBarrier::PublishAll(v8::internal::Heap*)",
                "v8::internal::Sweeper::PauseScope::PauseScope(v8::internal::Sweeper*)",
                "v8::internal::ArrayBufferSweeper::SweepingJob::SweepYoung()",
                "v8::internal::Evacuator::EvacuatePage(v8::internal::MemoryChunk*)",
                "v8::internal::PointersUpdatingVisitor::VisitPointer(v8::internal::HeapObject, v8::internal::FullObjectSlot)",
                "void v8::internal::RememberedSet<(v8::internal::RememberedSetType)1>::Insert<(v8::internal::AccessMode)0>(v8::internal::MemoryChunk*, unsigned long)",
                "v8::internal::GCTracer::StartCycle(v8::internal::GarbageCollector, v8::internal::GarbageCollectionReason, char const*, v8::internal::GCTracer::MarkingType)",
                "v8::internal::MarkingVisitorBase<v8::internal::MainMarkingVisitor>::VisitJSObjectSubclass(v8::internal::Map, v8::internal::JSObject)",
                "v8::internal::YoungGenerationMarkingTask::DrainMarkingWorklist()",
                "v8::internal::CppHeap::StartTracing()",
                "v8::internal::CppHeap::WriteBarrier(v8::internal::JSObject)",
                "v8::internal::GlobalHandles::PostGarbageCollectionProcessing(v8::internal::GarbageCollector, v8::GCCallbackFlags)",
                "v8::internal::Heap_GenerationalBarrierSlow(unsigned long, unsigned long, unsigned long)",
                "cppgc::internal::MarkerBase::VisitRoots(cppgc::EmbedderStackState)",
                "cppgc::internal::Sweeper::SweeperImpl::IncrementalSweepTask::Run()",
                "cppgc::internal::ConcurrentMarkerBase::Start()",
                "cppgc::internal::WriteBarrier::DijkstraMarkingBarrierSlow(void const*)",
                "heap::base::Worklist<v8::internal::HeapObject, (unsigned short)64>::Local::PublishPushSegment()",
                "heap::base::Stack::IteratePointers(heap::base::StackVisitor*) const",
                "Builtins_RecordWriteSaveFP",
                "Builtins_EphemeronKeyBarrierIgnoreFP",
                "_ZN2v88internal4Heap14CollectGarbageENS0_15AllocationSpaceENS0_23GarbageCollectionReasonENS_15GCCallbackFlagsE",
                "_ZN2v88internal18MarkingVisitorBaseINS0_17MainMarkingVisitorEE15VisitJSObjectEv",
            ],
            true,
        );
    }

    #[test]
    fn v8_not_gc() {
        all(
            Runtime::Node,
            &[
                "v8::internal::Heap::AllocateRawOrFail(int, v8::internal::AllocationType, v8::internal::AllocationOrigin, v8::internal::AllocationAlignment)",
                "v8::internal::Heap::CreateFillerObjectAt(unsigned long, int, v8::internal::ClearFreedMemoryMode)",
                "v8::internal::Heap::GcSafeFindCodeForInnerPointer(unsigned long)",
                "v8::internal::Heap::CollectCodeStatistics()",
                "v8::internal::Heap::AllocatedExternalMemorySinceMarkCompact() const",
                "v8::internal::Factory::NewFixedArray(int, v8::internal::AllocationType)",
                "v8::internal::GlobalHandles::CopyGlobal(unsigned long*)",
                "v8::internal::LocalHeap::ParkSlowPath()",
                "v8::internal::compiler::PipelineImpl::CreateGraph()",
                "v8::internal::OptimizingCompileDispatcher::CompileTask::RunInternal()",
                "v8::internal::HeapSnapshotGenerator::FillReferences()",
                "v8::internal::V8HeapExplorer::IterateAndExtractReferences(v8::internal::HeapSnapshotGenerator*)",
                "v8::internal::SamplingHeapProfiler::SampleObject(unsigned long, unsigned long)",
                "v8::internal::CpuTraceMarkExtension::Mark(v8::FunctionCallbackInfo<v8::Value> const&)",
                "v8::internal::JSWeakMap::Initialize()",
                "v8::internal::CollectKeysFromDictionary(v8::internal::Isolate*)",
                "v8::internal::Runtime_AllocateInYoungGeneration(int, unsigned long*, v8::internal::Isolate*)",
                "cppgc::internal::GCInfoTable::RegisterNewGCInfo(std::atomic<unsigned short>&, cppgc::internal::GCInfo const&)",
                "cppgc::internal::ObjectAllocator::OutOfLineAllocate(cppgc::internal::NormalPageSpace&, unsigned long, cppgc::internal::AlignVal, unsigned short)",
                "node::Start(int, char**)",
                "uv_run",
                "Builtins_InterpreterEntryTrampoline",
                "Builtins_ArrayPrototypePush",
                "",
            ],
            false,
        );
    }

    #[test]
    fn hotspot_gc() {
        all(
            Runtime::Jvm,
            &[
                // From `nm -C` of libjvm.so, OpenJDK 17 and Temurin 25.
                "G1ParScanThreadState::trim_queue_to_threshold(unsigned int)",
                "G1CollectedHeap::do_collection_pause_at_safepoint(double)",
                "G1CMTask::do_marking_step(double, bool, bool)",
                "G1DirtyCardQueueSet::refine_completed_buffer_concurrently(unsigned int, unsigned long, G1ConcurrentRefineStats*)",
                "G1BarrierSetRuntime::write_ref_field_post_entry(unsigned char volatile*, JavaThread*)",
                "G1RemSet::refine_card_concurrently(unsigned char volatile*, unsigned int)",
                "PSPromotionManager::drain_stacks_depth(bool)",
                "PSParallelCompact::invoke_no_policy(bool) [clone .part.0]",
                "PSScavenge::invoke()",
                "ParallelScavengeHeap::collect(GCCause::Cause)",
                "ZMark::work(unsigned long)",
                "ZBarrierSetRuntime::load_barrier_on_oop_field_preloaded(oopDesc*, oopDesc**)",
                "ZBarrier::mark_barrier_on_oop_field(oopDesc* volatile*, bool)",
                "ShenandoahRuntime::load_reference_barrier_strong(oopDesc*, oopDesc**)",
                "ShenandoahConcurrentMark::finish_mark()",
                "DefNewGeneration::collect(bool, bool, unsigned long, bool)",
                "MarkSweep::follow_stack()",
                "SerialFullGC::invoke_at_safepoint(bool)",
                "ReferenceProcessor::process_discovered_references(RefProcProxyTask&, ReferenceProcessorPhaseTimes&)",
                "VM_G1CollectForAllocation::doit()",
                "VM_GC_Operation::notify_gc_begin(bool)",
                "VM_CollectForMetadataAllocation::doit()",
                "VM_ZMarkStart::doit()",
                "void OopOopIterateDispatch<G1ScanEvacuatedObjClosure>::Table::oop_oop_iterate<InstanceKlass, narrowOop>(G1ScanEvacuatedObjClosure*, oopDesc*, Klass*)",
                "void OopOopIterateDispatch<PSPushContentsClosure>::Table::oop_oop_iterate<ObjArrayKlass, oopDesc*>(PSPushContentsClosure*, oopDesc*, Klass*)",
                "void OopOopIterateDispatch<YoungGenScanClosure>::Table::oop_oop_iterate<InstanceKlass, narrowOop>(YoungGenScanClosure*, oopDesc*, Klass*)",
                "void OopOopIterateBoundedDispatch<G1CMOopClosure>::Table::oop_oop_iterate_bounded<ObjArrayKlass, narrowOop>(G1CMOopClosure*, oopDesc*, Klass*, MemRegion)",
                "void OopOopIterateDispatch<ZMarkBarrierOopClosure<false> >::Table::oop_oop_iterate<InstanceKlass, oopDesc*>(ZMarkBarrierOopClosure<false>*, oopDesc*, Klass*)",
                "void OopOopIterateDispatch<PCAdjustPointerClosure>::Table::oop_oop_iterate<InstanceKlass, narrowOop>(PCAdjustPointerClosure*, oopDesc*, Klass*)",
                "_ZN20G1ParScanThreadState23trim_queue_to_thresholdEj",
                "XMark::work(unsigned long)",
            ],
            true,
        );
    }

    #[test]
    fn hotspot_not_gc() {
        all(
            Runtime::Jvm,
            &[
                // Allocation.
                "G1CollectedHeap::attempt_allocation_slow(unsigned long)",
                "G1CollectedHeap::mem_allocate(unsigned long, bool*)",
                "G1Allocator::unsafe_max_tlab_alloc()",
                "MemAllocator::allocate() const",
                "ThreadLocalAllocBuffer::fill(HeapWordImpl**, HeapWordImpl**, unsigned long)",
                "ZObjectAllocator::alloc_object(unsigned long)",
                "ShenandoahFreeSet::allocate(ShenandoahAllocRequest&, bool&)",
                // The collectors' JIT support and other non-GC code.
                "G1BarrierSetC2::post_barrier(GraphKit*, Node*, Node*, Node*, Node*, unsigned int, Node*, BasicType, bool) const",
                "ZBarrierSetAssembler::load_at(MacroAssembler*, unsigned long, BasicType, Register, Address, Register, Register)",
                "ShenandoahBarrierC2Support::expand(Compile*, PhaseIterGVN&)",
                "ShenandoahLoadReferenceBarrierNode::Identity(PhaseGVN*)",
                "G1Arguments::initialize()",
                "ZServiceabilityCounters::update_sizes()",
                "G1MonitoringSupport::update_sizes()",
                "ZHeapIterator::object_iterate(ObjectClosure*, unsigned int)",
                "PSGenerationCounters::update_all()",
                "VM_GC_HeapInspection::doit()",
                "VM_HeapDumper::doit()",
                "VM_Deoptimize::doit()",
                "void OopOopIterateDispatch<BFSClosure>::Table::oop_oop_iterate<InstanceKlass, narrowOop>(BFSClosure*, oopDesc*, Klass*)",
                "void OopOopIterateDispatch<ArchiveHeapWriter::EmbeddedOopRelocator>::Table::oop_oop_iterate<InstanceKlass, narrowOop>(ArchiveHeapWriter::EmbeddedOopRelocator*, oopDesc*, Klass*)",
                "CompileBroker::compiler_thread_loop()",
                "PhaseIdealLoop::build_and_optimize()",
                "SafepointSynchronize::begin()",
                "ObjectSynchronizer::enter(Handle, BasicLock*, JavaThread*)",
                "InstanceKlass::initialize(JavaThread*)",
                "XHandlers::XHandlers(XHandlers*)",
                "PCTableNode::Value(PhaseGVN*) const",
                "JVM_GC",
                "os::javaTimeNanos()",
                "Interpreter",
                "",
            ],
            false,
        );
    }

    #[test]
    fn coreclr() {
        all(
            Runtime::Dotnet,
            &[
                "WKS::gc_heap::mark_phase(int)",
                "SVR::gc_heap::plan_phase(int)",
                "SVR::gc_heap::gc_thread_function()",
                "WKS::GCHeap::GarbageCollect(int, bool, int)",
                "WKS::gc_heap::background_mark_phase()",
            ],
            true,
        );
        all(
            Runtime::Dotnet,
            &[
                "WKS::GCHeap::Alloc(gc_alloc_context*, unsigned long, unsigned int)",
                "SVR::gc_heap::try_allocate_more_space(alloc_context*, unsigned long, unsigned int, int)",
                "JIT_New",
                "ThreadNative::Sleep(int)",
                "",
            ],
            false,
        );
    }

    #[test]
    fn runtime_matters() {
        // The same name means GC only in its own runtime.
        assert!(!is_gc_symbol(Runtime::Native, "runtime.gcDrain"));
        assert!(!is_gc_symbol(Runtime::Jvm, "runtime.gcDrain"));
        assert!(!is_gc_symbol(
            Runtime::Go,
            "G1CMTask::do_marking_step(double, bool, bool)"
        ));
        assert!(!is_gc_symbol(
            Runtime::Python,
            "v8::internal::Heap::Scavenge()"
        ));
        assert!(!is_gc_symbol(
            Runtime::Unknown,
            "v8::internal::Heap::Scavenge()"
        ));
        // A native program's own classes named like a collector's.
        assert!(!is_gc_symbol(
            Runtime::Native,
            "G1CollectedHeap::do_collection_pause_at_safepoint(double)"
        ));
    }

    /// Every defined text symbol of the real binaries, demangled and
    /// mangled, is classified without panicking; and the shares are sane:
    /// some GC, mostly not.
    #[test]
    fn real_symbol_tables() {
        for (runtime, path) in [
            (Runtime::Node, "/usr/bin/node"),
            (
                Runtime::Jvm,
                "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
            ),
            (
                Runtime::Jvm,
                "/usr/lib/jvm/temurin-25-jdk-amd64/lib/server/libjvm.so",
            ),
        ] {
            let Ok(out) = std::process::Command::new("nm")
                .args(["--defined-only", "-C", path])
                .output()
            else {
                eprintln!("skipped: no nm");
                return;
            };
            if !out.status.success() {
                eprintln!("skipped: nm {path}");
                continue;
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let names: Vec<&str> = text
                .lines()
                .filter_map(|l| {
                    let mut f = l.splitn(3, ' ');
                    let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
                    matches!(kind, "t" | "T" | "W" | "w").then_some(name)
                })
                .collect();
            let gc = names.iter().filter(|n| is_gc_symbol(runtime, n)).count();
            eprintln!("{path}: {gc} of {} text symbols are GC", names.len());
            assert!(gc > 500, "{path}: {gc}");
            assert!(gc * 4 < names.len(), "{path}: {gc} of {}", names.len());
        }
    }
}

/// `agent top`'s synthetic processes (`tally_top::synthetic`) mark their
/// GC frames from a fixed list, since the view links no node code: the
/// list must say what this classifier says.
#[cfg(test)]
mod synthetic_view {
    use tally_core::gc::Runtime::{self, *};

    #[test]
    fn the_synthetic_gc_symbols_are_the_classifiers() {
        let cases: [(Runtime, &str, bool); 20] = [
            (Jvm, "[unknown]", false),
            (Jvm, "G1ParScanThreadState::trim_queue_to_threshold", true),
            (Jvm, "SpinPause", false),
            (Jvm, "Unsafe_Park", false),
            (Jvm, "__memmove_avx_unaligned_erms", false),
            (Go, "runtime.scanobject", true),
            (Go, "runtime.mallocgc", false),
            (Go, "main.(*Server).handle", false),
            (Go, "runtime.memmove", false),
            (Go, "encoding/json.(*decodeState).object", false),
            (Go, "runtime.findObject", true),
            (Go, "runtime.futex", false),
            (Go, "github.com/miekg/dns.(*Msg).Pack", false),
            (Node, "v8::internal::Scavenger::ScavengeObject", true),
            (Node, "Builtins_JSEntry", false),
            (Node, "uv__io_poll", false),
            (Node, "v8::internal::Heap::CollectGarbage", true),
            (Dotnet, "[unknown]", false),
            (Dotnet, "WKS::gc_heap::mark_object_simple", true),
            (Dotnet, "coreclr_execute_assembly", false),
        ];
        for (runtime, symbol, gc) in cases {
            assert_eq!(super::is_gc_symbol(runtime, symbol), gc, "{symbol}");
        }
    }
}
