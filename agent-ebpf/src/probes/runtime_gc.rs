//! GC events from the runtimes themselves, as uprobes userspace attaches
//! per binary:
//!
//! - Go: an entry uprobe on `runtime.gcMarkTermination`, which every
//!   completed cycle runs exactly once (it is where `GODEBUG=gctrace=1`
//!   prints its line). `runtime.gcStart` is entered more often than cycles
//!   start: goroutines race into it and return when another won. Entry only:
//!   a uretprobe on a Go binary corrupts return addresses on moving stacks.
//! - HotSpot collections: an entry uprobe on `GCIdMark::GCIdMark()` in
//!   libjvm.so, the only code that takes a new GC id (`GCId::_next_id++`;
//!   `GCId::create` is inlined there). One call is one `GC(N)` of
//!   `-Xlog:gc`, for every collector: a G1 young or full pause, a G1
//!   concurrent cycle, a Parallel or Serial collection, a ZGC minor or major
//!   collection, a Shenandoah cycle.
//! - HotSpot pauses: the USDT probes `hotspot:gc__begin` and `hotspot:gc__end`
//!   in libjvm.so, fired around every GC pause (`SvcGCMarker`), attached as
//!   uprobes at the notes' addresses. They time pauses only: a ZGC
//!   collection has three or more, a G1 concurrent cycle two. Each pause is
//!   also counted in its bucket of `PAUSE_BUCKET_BOUNDS_NS`, for the
//!   `jvm.gc.duration` histogram: a histogram needs each pause's length,
//!   which the sum no longer has.
//!
//! **Never twice.** The kernel keys a uprobe by the file's real inode, so
//! two attaches that userspace cannot tell apart fire twice per hit: one
//! image's libjvm.so seen through the overlayfs mounts of two containers has
//! a different device in each (in `stat` and in `/proc/<pid>/maps`) and one
//! real inode underneath. Measured: a JVM in a container counted 2× its
//! `GC(N)` while a second container of the same image ran a JVM. So the
//! programs are idempotent per hit: a GC id counts once per thread within
//! [`SAME_HIT_NS`] (the handlers of one hit run back to back in one trap;
//! one thread takes GC ids at least a collection apart), and a
//! pause counts only when its `gc__end` finds the `gc__begin` of the same
//! thread and takes it, so a second firing of one end adds nothing.
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::uprobe, programs::ProbeContext};

use agent_common::PAUSE_BUCKET_BOUNDS_NS;

use crate::{
    kernel::{add, current_ids, offsets, proc_record},
    maps::{GC_BEGIN, GC_ID_LAST},
};

/// Two firings of `jvm_gc_id` on one thread closer than this are one call.
///
/// Measured with bpftrace on JDK 17 (two probes on `GCIdMark::GCIdMark()`'s
/// one address, so every hit fires both, and a Serial-GC `AllocHeavy`):
/// the second firing of a hit came 0.1 to 2 µs after the first, 4 of 1,078
/// up to 8 µs (bpftrace's programs are heavier than these). Two real calls
/// came at least 8 µs apart: Serial's young collection that gives up at
/// once ("Pause Young … 0.011ms") and the full one it turns into take two
/// GC ids within 8 to 16 µs, and a 20 µs window lost them (a 16% undercount
/// of `GC(N)`).
const SAME_HIT_NS: u64 = 5_000;

#[uprobe]
pub fn go_gc_done(_ctx: ProbeContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, _) = current_ids();
    if let Some(rec) = proc_record(tgid, &off) {
        unsafe { add(&raw mut (*rec).gc.cycles, 1) };
    }
    0
}

#[uprobe]
pub fn jvm_gc_id(_ctx: ProbeContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, tid) = current_ids();
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(&last) = unsafe { GC_ID_LAST.get(tid) }
        && now.wrapping_sub(last) < SAME_HIT_NS
    {
        return 0;
    }
    let _ = GC_ID_LAST.insert(tid, now, 0);
    if let Some(rec) = proc_record(tgid, &off) {
        unsafe { add(&raw mut (*rec).gc.cycles, 1) };
    }
    0
}

#[uprobe]
pub fn jvm_gc_begin(_ctx: ProbeContext) -> u32 {
    let (_, tid) = current_ids();
    let _ = GC_BEGIN.insert(tid, unsafe { bpf_ktime_get_ns() }, 0);
    0
}

#[uprobe]
pub fn jvm_gc_end(_ctx: ProbeContext) -> u32 {
    let Some(off) = offsets() else { return 0 };
    let (tgid, tid) = current_ids();
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(begin) = (unsafe { GC_BEGIN.get(tid) }).copied() else {
        return 0;
    };
    // Only the firing that removes the begin counts the pause.
    if GC_BEGIN.remove(tid).is_err() {
        return 0;
    }
    if now > begin
        && let Some(rec) = proc_record(tgid, &off)
    {
        let pause = now - begin;
        unsafe { add(&raw mut (*rec).gc.pause_ns, pause) };
        // Constant indexes: the verifier checks each without a bound.
        let [b0, b1, b2, b3] = PAUSE_BUCKET_BOUNDS_NS;
        unsafe {
            let buckets = &raw mut (*rec).gc.pause_buckets;
            let bucket = if pause <= b0 {
                &raw mut (*buckets)[0]
            } else if pause <= b1 {
                &raw mut (*buckets)[1]
            } else if pause <= b2 {
                &raw mut (*buckets)[2]
            } else if pause <= b3 {
                &raw mut (*buckets)[3]
            } else {
                &raw mut (*buckets)[4]
            };
            add(bucket, 1);
        }
    }
    0
}
