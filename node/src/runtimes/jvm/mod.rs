//! The JVM (HotSpot): GC threads by name, GC code by C++ name, and its
//! own GC events from USDT probes ([`stapsdt`]) or, without
//! them, hsperfdata ([`hsperf`]).
//!
//! **HotSpot** (JDK 9+ names its VM threads; JDK 8 leaves them all "java",
//! so there this finds nothing). Seen with `-XX:+Use{G1,Parallel,Serial,Z,
//! Shenandoah}GC` on OpenJDK 17.0.15 and Temurin 25.0.3:
//! - G1: "GC Thread#N" (pause workers), "G1 Conc#N" (concurrent marking),
//!   "G1 Refine#N" (remembered-set refinement), "G1 Main Marker", "G1
//!   Service".
//! - Parallel: "GC Thread#N". Serial: none; it collects in the VM Thread.
//! - ZGC 17: "ZWorker#N", "ZDirector", "ZDriver", "ZStat", "ZUncommitter",
//!   "ZUnmapper". ZGC 25 (generational): "ZWorkerYoung#N", "ZWorkerOld#N",
//!   "ZDriverMajor", "ZDriverMinor", "ZUncommitter#N". The "X…" names of
//!   JDK 21–23's non-generational ZGC follow the same pattern.
//! - Shenandoah: "Shenandoah GC Threads#N", "Shenandoah Control Thread",
//!   and in generational mode "Shenandoah Regulator Thread".
//! - "VM Thread" **counts as GC**: it runs every stop-the-world operation,
//!   and the GC pauses are the bulk of them. Serial GC does all its work
//!   there; the others start and end every pause there (and G1/Parallel
//!   do serial phases in it). Its other operations (deoptimisation, thread
//!   dumps, class redefinition) are rare and short in a steady service.
//! - Not GC: "RuntimeWorker#N" (ZGC) and "Safepoint Cleanup Thread#N"
//!   (Shenandoah) are the collectors' spare workers for other VM operations
//!   (heap inspection for `jmap -histo`, safepoint cleanup), idle otherwise;
//!   "Reference Handler" and "Finalizer" run Java code after a GC, not the
//!   GC; the JIT's "C1/C2 CompilerThre", "VM Periodic Tas", "Service
//!   Thread", "Monitor Deflati" are not GC either.
//!
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
pub mod hsperf;
pub mod process;
pub mod stapsdt;

use super::{
    GcEvents, GcRuntime,
    symbols::{contains_any, cxx_components},
    threads::{GcThreadKind, numbered},
};
use tally_core::gc::Runtime;

/// HotSpot's collectors (G1, Parallel, Serial, ZGC, Shenandoah).
pub struct Jvm;

impl GcRuntime for Jvm {
    fn runtime(&self) -> Runtime {
        Runtime::Jvm
    }

    // HotSpot, and OpenJ9's compatibility libjvm.so.
    fn named_by(&self, _exe: &str, libs: &[&str]) -> bool {
        libs.contains(&"libjvm.so")
    }

    fn gc_events(&self) -> GcEvents {
        GcEvents::HotspotUsdt
    }

    fn gc_thread(&self, comm: &str) -> Option<GcThreadKind> {
        hotspot(comm)
    }

    fn is_gc_symbol(&self, symbol: &str) -> bool {
        is_hotspot_gc(symbol)
    }

    // HotSpot's C++ (demangled or not) and its exported entry points.
    fn is_runtime_symbol(&self, symbol: &str) -> bool {
        symbol.starts_with("JVM_")
            || symbol.starts_with("JNI_")
            || symbol.contains("::")
            || symbol.starts_with("_ZN")
    }
}

fn hotspot(comm: &str) -> Option<GcThreadKind> {
    use GcThreadKind::*;
    if comm == "VM Thread" {
        return Some(VmThread);
    }
    // G1 and Parallel workers.
    if numbered(comm, "GC Thread") {
        return Some(Worker);
    }
    if let Some(g1) = comm.strip_prefix("G1 ") {
        return Some(match g1 {
            "Service" | "Main Marker" => Control,
            // Conc#N, Refine#N, and whatever a future G1 adds.
            _ => Worker,
        });
    }
    // ZGC (Z…) and JDK 21–23's non-generational ZGC (X…).
    for prefix in ["Z", "X"] {
        let Some(z) = comm.strip_prefix(prefix) else {
            continue;
        };
        if numbered(z, "Worker") || numbered(z, "WorkerYoung") || numbered(z, "WorkerOld") {
            return Some(Worker);
        }
        if [
            "Director",
            "Driver",
            "DriverMajor",
            "DriverMinor",
            "Stat",
            "Uncommitter",
            "Unmapper",
        ]
        .contains(&z)
            || numbered(z, "Uncommitter")
        {
            return Some(Control);
        }
    }
    if let Some(shenandoah) = comm.strip_prefix("Shenandoah ") {
        // "Shenandoah GC Threads#N" cut to "Shenandoah GC T".
        return Some(if shenandoah.starts_with("GC T") {
            Worker
        } else {
            Control
        });
    }
    None
}

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
