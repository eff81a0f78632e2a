//! A running JVM's GC events: its libjvm.so's USDT probes attached
//! ([`probe_hotspot`]), or, without them, the collections and pause time it
//! counts itself ([`own_gc_counts`]: its GC id in memory, hsperfdata).
use std::path::{Path, PathBuf};

use crate::probes::Probes;

/// Collections and pause time (ns) the JVM counted itself: its next GC id
/// read at `gc_id_at` (see [`next_gc_id_address`]) else hsperfdata's
/// collector counts, and hsperfdata's pause collectors' time. `None` when
/// neither can be read.
pub fn own_gc_counts(proc_root: &Path, pid: u32, gc_id_at: Option<u64>) -> Option<(u64, u64)> {
    let from_memory = gc_id_at.and_then(|at| read_next_gc_id(proc_root, pid, at).map(u64::from));
    let counters = match super::hsperf::read_gc_counters(proc_root, pid) {
        Some(Ok(c)) => Some(c),
        Some(Err(err)) => {
            tracing::debug!(pid, "hsperfdata: {err}");
            None
        }
        None => None,
    };
    if from_memory.is_none() && counters.is_none() {
        return None;
    }
    let collections = from_memory
        .or_else(|| counters.as_ref()?.collections)
        .unwrap_or_else(|| {
            tracing::debug!(pid, "JVM collections unknown: no GC id, no counter");
            0
        });
    let pause_ns = counters.map_or(0, |c| (c.gc_time_seconds * 1e9) as u64);
    Some((collections, pause_ns))
}

/// The libjvm.so a JVM process has mapped, as a path that works from the
/// agent's mount namespace (through the process's root).
fn libjvm_of(proc_root: &Path, pid: u32) -> Option<PathBuf> {
    let maps = std::fs::read_to_string(proc_root.join(pid.to_string()).join("maps")).ok()?;
    let path = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libjvm.so"))?;
    Some(
        proc_root
            .join(pid.to_string())
            .join("root")
            .join(path.trim_start_matches('/')),
    )
}

/// Where `GCId::_next_id` is in JVM `pid`'s memory: the start of its
/// libjvm.so's offset-0 mapping plus the symbol's distance from it.
pub fn next_gc_id_address(proc_root: &Path, pid: u32) -> Option<u64> {
    let maps = std::fs::read_to_string(proc_root.join(pid.to_string()).join("maps")).ok()?;
    let start = maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let offset = fields.nth(1)?;
        let path = fields.nth(2)?;
        (path.ends_with("/libjvm.so") && u64::from_str_radix(offset, 16).ok()? == 0)
            .then(|| u64::from_str_radix(range.split('-').next()?, 16).ok())
            .flatten()
    })?;
    let libjvm = libjvm_of(proc_root, pid)?;
    match super::stapsdt::hotspot_next_gc_id_from_base(&libjvm) {
        Ok(delta) => start.checked_add(delta),
        Err(err) => {
            tracing::debug!(pid, "JVM GC ids not readable: {err}");
            None
        }
    }
}

/// The JVM's `GCId::_next_id`, a `uint`, read through `/proc/<pid>/mem`
/// (CAP_SYS_PTRACE; the process is not stopped or changed).
fn read_next_gc_id(proc_root: &Path, pid: u32, at: u64) -> Option<u32> {
    use std::os::unix::fs::FileExt as _;
    let mem = std::fs::File::open(proc_root.join(pid.to_string()).join("mem")).ok()?;
    let mut value = [0u8; 4];
    mem.read_exact_at(&mut value, at).ok()?;
    Some(u32::from_ne_bytes(value))
}

/// Attaches the collection-counting uprobe (`GCIdMark::GCIdMark()`) and the
/// `hotspot:gc__begin`/`gc__end` USDT probes of the process's libjvm.so.
pub fn probe_hotspot(proc_root: &Path, pid: u32, probes: &mut Probes) -> Result<(), String> {
    let libjvm = libjvm_of(proc_root, pid).ok_or("no libjvm.so in its maps")?;
    let offsets = super::stapsdt::hotspot_gc_offsets(&libjvm).map_err(|e| e.to_string())?;
    let gc_id = super::stapsdt::hotspot_gc_id_offset(&libjvm).map_err(|e| e.to_string())?;
    probes
        .probe_libjvm(&libjvm, gc_id, &offsets.all_begin, &offsets.all_end)
        .map_err(|e| e.to_string())?;
    Ok(())
}
