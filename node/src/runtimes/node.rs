//! Node (V8 and its Oilpan heap): no thread is GC-only, so its GC is
//! found from sampled stacks, by these C++ names.
//!
//! **Node**: no thread is GC-only. On node 20 every thread is named "node":
//! the main thread runs scavenges and the final mark-compact pause, and the
//! V8 platform workers run concurrent marking, sweeping and parallel
//! scavenging *and* concurrent (TurboFan/Maglev) compilation and other
//! tasks. Counting the workers as GC would call compilation GC; Node's GC
//! is found from sampled stacks instead ([`super::symbols`]).
//!
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
use super::{
    GcRuntime,
    symbols::{contains_any, cxx_components},
};
use tally_core::gc::Runtime;

/// Node's V8 collector.
pub struct Node;

impl GcRuntime for Node {
    fn runtime(&self) -> Runtime {
        Runtime::Node
    }

    // `node`/`nodejs`, or Node embedded in another program.
    fn named_by(&self, exe: &str, libs: &[&str]) -> bool {
        exe == "node" || exe == "nodejs" || libs.iter().any(|l| l.starts_with("libnode.so"))
    }

    fn gc_seen_by_stacks(&self) -> bool {
        true
    }

    fn is_gc_symbol(&self, symbol: &str) -> bool {
        is_v8_gc(symbol)
    }

    // The engine, its embedded builtins, node's own code and libuv.
    fn is_runtime_symbol(&self, symbol: &str) -> bool {
        symbol.starts_with("Builtins_")
            || symbol.contains("v8::")
            || symbol.starts_with("node::")
            || symbol.starts_with("uv_")
            || symbol.starts_with("_ZN2v8")
            || symbol.starts_with("_ZN4node")
    }
}

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
