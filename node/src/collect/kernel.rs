//! What the kernel side's records say, as the model's [`Counters`]: the one
//! place that knows `agent_common`'s record layouts.
use agent_common::{AllocCounters, ProcRecord};
use tally_core::model::Counters;

/// Copies the syscall counters of a kernel record.
pub fn set_alloc(c: &mut Counters, a: &AllocCounters) {
    c.mmap_calls = a.mmap_calls;
    c.mmap_bytes = a.mmap_bytes;
    c.munmap_calls = a.munmap_calls;
    c.munmap_bytes = a.munmap_bytes;
    c.brk_calls = a.brk_calls;
    c.brk_bytes = a.brk_bytes;
    c.mremap_calls = a.mremap_calls;
    c.mremap_bytes = a.mremap_bytes;
    c.madvise_calls = a.madvise_calls;
    c.madvise_dontneed_bytes = a.madvise_dontneed_bytes;
    c.madvise_free_bytes = a.madvise_free_bytes;
    c.madvise_other_bytes = a.madvise_other_bytes;
}

/// Copies the GC events the runtime reported.
pub fn set_runtime_gc(c: &mut Counters, rec: &ProcRecord) {
    c.gc_cycles = rec.gc.cycles;
    c.gc_pause_ns = rec.gc.pause_ns;
    c.gc_pause_buckets = rec.gc.pause_buckets;
}

/// What a final kernel record (sent at exit) says about a process:
/// syscalls, samples of all its threads, and the faults its threads had
/// when they exited.
pub fn from_exit_record(rec: &ProcRecord) -> Counters {
    let mut c = Counters {
        cpu_samples: rec.exited.cpu_samples,
        minor_faults: rec.exited.min_flt,
        major_faults: rec.exited.maj_flt,
        ..Counters::default()
    };
    set_runtime_gc(&mut c, rec);
    set_alloc(&mut c, &rec.alloc);
    c
}

#[cfg(test)]
mod tests {
    use agent_common::PAUSE_BUCKET_BOUNDS_NS;
    use tally_core::model::PAUSE_BOUNDS_SECONDS;

    #[test]
    fn the_kernel_buckets_pauses_by_the_bounds_the_exporters_name() {
        let ns: Vec<u64> = PAUSE_BOUNDS_SECONDS
            .iter()
            .map(|s| (s * 1e9).round() as u64)
            .collect();
        assert_eq!(ns, PAUSE_BUCKET_BOUNDS_NS);
    }
}
