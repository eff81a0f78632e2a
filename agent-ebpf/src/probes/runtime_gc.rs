//! GC events from the runtimes themselves, as uprobes userspace attaches
//! per binary:
//!
//! - Go: an entry uprobe on `runtime.gcMarkTermination`, which every
//!   completed cycle runs exactly once (it is where `GODEBUG=gctrace=1`
//!   prints its line). `runtime.gcStart` is entered more often than cycles
//!   start: goroutines race into it and return when another won. Entry only:
//!   a uretprobe on a Go binary corrupts return addresses on moving stacks.
//! - HotSpot: the USDT probes `hotspot:gc__begin` and `hotspot:gc__end` in
//!   libjvm.so, fired around every GC pause (`SvcGCMarker`), attached as
//!   uprobes at the notes' addresses.
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::uprobe, programs::ProbeContext};

use crate::{
    kernel::{add, current_ids, offsets, proc_record},
    maps::GC_BEGIN,
};

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
    let begin = unsafe { GC_BEGIN.get(tid) }.copied();
    let _ = GC_BEGIN.remove(tid);
    if let Some(rec) = proc_record(tgid, &off) {
        unsafe {
            add(&raw mut (*rec).gc.cycles, 1);
            if let Some(begin) = begin
                && now > begin
            {
                add(&raw mut (*rec).gc.pause_ns, now - begin);
            }
        }
    }
    0
}
