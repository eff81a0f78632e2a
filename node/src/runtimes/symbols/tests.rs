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

/// `agent top`'s synthetic processes (`tally_top::synthetic`) mark their
/// GC frames from a fixed list, since the view links no node code: the
/// list must say what this classifier says.
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
