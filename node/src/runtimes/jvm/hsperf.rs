//! The HotSpot JVM's performance-counter file ("hsperfdata"), read without
//! attaching to the JVM: the counters `jstat` shows, among them every
//! collector's pause count and time (pauses, not collections: see below).
//!
//! **Where.** A JVM started without `-XX:-UsePerfData` maps a file
//! `/tmp/hsperfdata_<user>/<pid>` and updates it in place. `/tmp` is the
//! JVM's own (HotSpot ignores `java.io.tmpdir` here), so from the host it is
//! `/proc/<pid>/root/tmp/…`, and `<pid>` is the process's id in its own pid
//! namespace: the last field of `NSpid:` in `/proc/<pid>/status`. See
//! [`find_file`].
//!
//! **Format** (HotSpot's `perfMemory.hpp`, the "PerfData" format version
//! 2.0, read by `sun.jvmstat.perfdata.monitor.v2_0.PerfDataBuffer`). A
//! 32-byte prologue:
//!
//! ```text
//! 0  u32 magic 0xcafec0c0 (always stored big-endian)
//! 4  u8  byte_order: 0 big-endian, 1 little-endian; for every field below
//! 5  u8  major_version (2)   6 u8 minor_version (0)
//! 7  u8  accessible: 1 once the JVM finished writing the initial entries
//! 8  i32 used: bytes of the buffer in use
//! 12 i32 overflow
//! 16 i64 mod_time_stamp
//! 24 i32 entry_offset: where the first entry starts
//! 28 i32 num_entries
//! ```
//!
//! then `num_entries` entries back to back, each starting with a 20-byte
//! header:
//!
//! ```text
//! 0  i32 entry_length (header, name, padding and data)
//! 4  i32 name_offset, from the entry's start; NUL-terminated ASCII
//! 8  i32 vector_length: 0 for a scalar, else the element count
//! 12 u8  data_type: 'J' i64, 'B' byte (strings are 'B' vectors), …
//! 13 u8  flags   14 u8 data_units   15 u8 data_variability
//! 16 i32 data_offset, from the entry's start
//! ```
//!
//! The JVM appends an entry and only then counts it, so reading the count
//! first and then the entries is safe while it runs. Counter values are
//! updated without locks; one read is a snapshot, good per counter.
//!
//! **GC counters.** `sun.gc.collector.<N>.name` (string), `.invocations`
//! (events) and `.time` (ticks of `sun.os.hrt.frequency` Hz). What a
//! collector counts is the JVM's choice, seen on OpenJDK 17 and Temurin 25:
//! - G1: "G1 young collection pauses", "G1 full collection pauses", "G1
//!   concurrent cycle pauses" (Remark and Cleanup): together every pause,
//!   one per `Pause` line of `-Xlog:gc`.
//! - Parallel and Serial: "… young collection pauses", "… full collection
//!   pauses": every pause.
//! - ZGC: JDK 17 "Z concurrent cycle pauses" (three per cycle), JDK 25 "ZGC
//!   minor collection pauses" and "ZGC major collection pauses"; the indices
//!   are sparse (1 is missing).
//! - Shenandoah: "Shenandoah full" counts every pause *and* every concurrent
//!   phase (about 4× the pauses), and its time includes the concurrent
//!   phases: for Shenandoah these are GC activity, not pauses.
//!
//! **Pauses are not collections.** `-Xlog:gc` numbers collections, `GC(N)`.
//! Only for Serial and Parallel is every pause one collection (ids = pauses =
//! invocations, seen on 17 and 25). A G1 concurrent cycle has an id of its
//! own and two pauses (Remark, Cleanup) or none (an undo cycle); a ZGC
//! collection has three (17) or three to six (25, split between the minor
//! and major counters); no counter here counts cycles. So
//! [`JvmGcCounters::collections`] is `None` for those, and the agent counts
//! collections from the JVM's GC ids instead (`collect/runtimes.rs`).
//!
//! Nothing in the file is trusted: every offset and length is checked
//! against the buffer, and malformed input is an error, never a panic.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use thiserror::Error;

const MAGIC: [u8; 4] = [0xca, 0xfe, 0xc0, 0xc0];
const PROLOGUE_LEN: usize = 32;
const ENTRY_HEADER_LEN: usize = 20;
/// HotSpot's `PerfDataMemorySize` defaults to 64 KiB; more than this is not
/// a perf-data file.
const MAX_FILE_LEN: u64 = 16 << 20;
/// `data_units` of strings (`U_String`).
const UNITS_STRING: u8 = 5;

#[derive(Debug, Error)]
pub enum HsperfError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} bytes: too short for the perf-data prologue")]
    Short(usize),
    #[error("bad magic {0:02x?}: not a perf-data file")]
    Magic([u8; 4]),
    #[error("unknown byte order {0}")]
    ByteOrder(u8),
    #[error("unsupported perf-data version {0}.{1}")]
    Version(u8, u8),
    #[error("the JVM has not finished initialising its perf data")]
    NotAccessible,
    #[error("malformed prologue: {0}")]
    Prologue(&'static str),
    #[error("malformed entry {index} at {offset}: {what}")]
    Entry {
        index: usize,
        offset: usize,
        what: &'static str,
    },
    #[error("file is {0} bytes, more than a perf-data file")]
    TooLarge(u64),
    #[error("no {0} counter")]
    Missing(&'static str),
}

/// One counter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar `'J'` (jlong).
    Long(i64),
    /// A `'B'` vector with string units: the bytes up to the first NUL.
    String(String),
    /// Any other `'B'` vector.
    Bytes(Vec<u8>),
    /// A type HotSpot does not write today (`'I'`, `'D'`, vectors of
    /// longs…): kept by name, value unread.
    Other { data_type: u8, vector_length: u32 },
}

/// One named counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Counter {
    pub value: Value,
    /// `U_None` 1, `U_Bytes` 2, `U_Ticks` 3, `U_Events` 4, `U_String` 5,
    /// `U_Hertz` 6.
    pub units: u8,
    /// `V_Constant` 1, `V_Monotonic` 2, `V_Variable` 3.
    pub variability: u8,
}

/// A parsed perf-data buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfData {
    pub major_version: u8,
    pub minor_version: u8,
    /// Time stamp of the last structural change (an entry added).
    pub mod_time_stamp: i64,
    pub counters: BTreeMap<String, Counter>,
}

impl PerfData {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.counters.get(name).map(|c| &c.value)
    }

    pub fn long(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            Value::Long(v) => Some(*v),
            _ => None,
        }
    }

    pub fn string(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The GC counters; see [`JvmGcCounters::from_perf_data`].
    pub fn gc_counters(&self) -> Result<JvmGcCounters, HsperfError> {
        JvmGcCounters::from_perf_data(self)
    }
}

/// What the collectors of one JVM did since it started.
#[derive(Debug, Clone, PartialEq)]
pub struct JvmGcCounters {
    /// Invocations summed over the collectors: every pause for G1,
    /// Parallel, Serial and ZGC; pauses and concurrent phases for
    /// Shenandoah (see the module doc).
    pub pauses: u64,
    /// Collections, the `GC(N)` ids of `-Xlog:gc`, where the counters tell
    /// them: for Serial and Parallel every pause is one collection (seen on
    /// 17 and 25: ids = pauses = invocations). `None` for G1 (a concurrent
    /// cycle has an id of its own, two pauses or none, and no counter), for
    /// ZGC (a collection has three to six pauses, split between the minor
    /// and major counters by what else runs) and for Shenandoah.
    pub collections: Option<u64>,
    /// Time summed over the collectors, in seconds.
    pub gc_time_seconds: f64,
    /// Per collector, by index: name, invocations, seconds.
    pub per_collector: Vec<(String, u64, f64)>,
}

impl JvmGcCounters {
    /// From `sun.gc.collector.<N>.{name,invocations,time}` and
    /// `sun.os.hrt.frequency`. A collector without a name is called
    /// `collector <N>`; a missing count or time is 0.
    pub fn from_perf_data(data: &PerfData) -> Result<JvmGcCounters, HsperfError> {
        let frequency = data
            .long("sun.os.hrt.frequency")
            .filter(|&f| f > 0)
            .ok_or(HsperfError::Missing("sun.os.hrt.frequency"))? as f64;
        // Indices from the counter names: they can be sparse (ZGC).
        let mut indices: Vec<u32> = data
            .counters
            .range("sun.gc.collector.".to_owned()..)
            .map_while(|(name, _)| name.strip_prefix("sun.gc.collector."))
            .filter_map(|rest| rest.split('.').next()?.parse().ok())
            .collect();
        indices.sort_unstable();
        indices.dedup();
        if indices.is_empty() {
            return Err(HsperfError::Missing("sun.gc.collector.*"));
        }
        let mut counters = JvmGcCounters {
            pauses: 0,
            collections: None,
            gc_time_seconds: 0.0,
            per_collector: Vec::with_capacity(indices.len()),
        };
        for n in indices {
            let key = |field: &str| format!("sun.gc.collector.{n}.{field}");
            let name = data
                .string(&key("name"))
                .map_or_else(|| format!("collector {n}"), str::to_owned);
            let invocations = data.long(&key("invocations")).unwrap_or(0).max(0) as u64;
            let seconds = data.long(&key("time")).unwrap_or(0).max(0) as f64 / frequency;
            counters.pauses += invocations;
            counters.gc_time_seconds += seconds;
            counters.per_collector.push((name, invocations, seconds));
        }
        let one_pause_one_collection = counters.per_collector.iter().all(|(name, _, _)| {
            [
                "Serial young",
                "Serial full",
                "Parallel young",
                "Parallel full",
            ]
            .iter()
            .any(|kind| name.starts_with(kind) && name.ends_with(" collection pauses"))
        });
        counters.collections = one_pause_one_collection.then_some(counters.pauses);
        Ok(counters)
    }
}

/// Little helpers over a byte slice in one byte order; every read is
/// bounds-checked.
#[derive(Clone, Copy)]
struct Reader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl<'a> Reader<'a> {
    fn slice(&self, at: usize, len: usize) -> Option<&'a [u8]> {
        self.bytes.get(at..at.checked_add(len)?)
    }

    fn i32(&self, at: usize) -> Option<i32> {
        let b: [u8; 4] = self.slice(at, 4)?.try_into().ok()?;
        Some(if self.big_endian {
            i32::from_be_bytes(b)
        } else {
            i32::from_le_bytes(b)
        })
    }

    /// A non-negative i32 as an offset or length.
    fn len(&self, at: usize) -> Option<usize> {
        usize::try_from(self.i32(at)?).ok()
    }

    fn i64(&self, at: usize) -> Option<i64> {
        let b: [u8; 8] = self.slice(at, 8)?.try_into().ok()?;
        Some(if self.big_endian {
            i64::from_be_bytes(b)
        } else {
            i64::from_le_bytes(b)
        })
    }
}

/// Parses a perf-data buffer; see the module doc for the format.
pub fn parse(bytes: &[u8]) -> Result<PerfData, HsperfError> {
    if bytes.len() < PROLOGUE_LEN {
        return Err(HsperfError::Short(bytes.len()));
    }
    let magic: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != MAGIC {
        return Err(HsperfError::Magic(magic));
    }
    let big_endian = match bytes[4] {
        0 => true,
        1 => false,
        other => return Err(HsperfError::ByteOrder(other)),
    };
    let (major_version, minor_version) = (bytes[5], bytes[6]);
    if major_version != 2 {
        return Err(HsperfError::Version(major_version, minor_version));
    }
    if bytes[7] == 0 {
        return Err(HsperfError::NotAccessible);
    }
    let r = Reader { bytes, big_endian };
    let prologue = |at, what| r.len(at).ok_or(HsperfError::Prologue(what));
    let used = prologue(8, "negative used")?;
    let mod_time_stamp = r.i64(16).ok_or(HsperfError::Prologue("short"))?;
    let entry_offset = prologue(24, "negative entry offset")?;
    let num_entries = prologue(28, "negative entry count")?;
    // Entries live in the used part of the buffer (all of it, if the file
    // was cut short).
    let r = Reader {
        bytes: &bytes[..used.min(bytes.len())],
        big_endian,
    };
    if entry_offset < PROLOGUE_LEN || (num_entries > 0 && entry_offset >= r.bytes.len()) {
        return Err(HsperfError::Prologue("entry offset outside the buffer"));
    }

    let mut counters = BTreeMap::new();
    let mut at = entry_offset;
    // Each entry is at least a header long, so a huge num_entries runs out
    // of buffer (an error) after at most len/20 rounds.
    for index in 0..num_entries {
        let bad = |what| HsperfError::Entry {
            index,
            offset: at,
            what,
        };
        let header = r
            .slice(at, ENTRY_HEADER_LEN)
            .ok_or_else(|| bad("header past the end"))?;
        let entry_length = r.len(at).ok_or_else(|| bad("negative length"))?;
        if entry_length < ENTRY_HEADER_LEN {
            return Err(bad("length shorter than a header"));
        }
        let entry = r
            .slice(at, entry_length)
            .ok_or_else(|| bad("length past the end"))?;
        let name_offset = r.len(at + 4).ok_or_else(|| bad("negative name offset"))?;
        let vector_length = r.len(at + 8).ok_or_else(|| bad("negative vector length"))?;
        let (data_type, units, variability) = (header[12], header[14], header[15]);
        let data_offset = r.len(at + 16).ok_or_else(|| bad("negative data offset"))?;

        if name_offset < ENTRY_HEADER_LEN {
            return Err(bad("name overlaps the header"));
        }
        let name_bytes = entry
            .get(name_offset..)
            .ok_or_else(|| bad("name outside the entry"))?;
        let name_len = name_bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("name not NUL-terminated"))?;
        let name = std::str::from_utf8(&name_bytes[..name_len])
            .map_err(|_| bad("name not UTF-8"))?
            .to_owned();

        let element = match data_type {
            b'B' | b'Z' => 1,
            b'S' | b'C' => 2,
            b'I' | b'F' => 4,
            b'J' | b'D' => 8,
            _ => return Err(bad("unknown data type")),
        };
        let data_len = vector_length
            .max(1)
            .checked_mul(element)
            .ok_or_else(|| bad("data length overflows"))?;
        if data_offset < ENTRY_HEADER_LEN {
            return Err(bad("data overlaps the header"));
        }
        let data = entry
            .get(data_offset..)
            .and_then(|d| d.get(..data_len))
            .ok_or_else(|| bad("data outside the entry"))?;
        let value = match (data_type, vector_length) {
            (b'J', 0) => Value::Long(
                r.i64(at + data_offset)
                    .ok_or_else(|| bad("data outside the entry"))?,
            ),
            (b'B', n) if n > 0 => {
                if units == UNITS_STRING {
                    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                    Value::String(String::from_utf8_lossy(&data[..end]).into_owned())
                } else {
                    Value::Bytes(data.to_vec())
                }
            }
            _ => Value::Other {
                data_type,
                vector_length: vector_length as u32,
            },
        };
        counters.insert(
            name,
            Counter {
                value,
                units,
                variability,
            },
        );
        at += entry_length;
    }
    Ok(PerfData {
        major_version,
        minor_version,
        mod_time_stamp,
        counters,
    })
}

/// Reads and parses the perf-data file at `path`.
pub fn read(path: &Path) -> Result<PerfData, HsperfError> {
    let io = |source| HsperfError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_LEN {
        return Err(HsperfError::TooLarge(len));
    }
    parse(&std::fs::read(path).map_err(io)?)
}

/// The GC counters of JVM `pid` (under `proc_root`, normally `/proc`), or
/// `None` when it has no perf-data file.
pub fn read_gc_counters(proc_root: &Path, pid: u32) -> Option<Result<JvmGcCounters, HsperfError>> {
    let path = find_file(proc_root, pid)?;
    Some(read(&path).and_then(|d| d.gc_counters()))
}

/// The perf-data file of JVM `pid`: `/proc/<pid>/root/tmp/hsperfdata_*/<nspid>`.
/// When several users' directories hold that name (JVMs of two pid
/// namespaces sharing a /tmp), the one owned by the process's effective
/// uid wins.
pub fn find_file(proc_root: &Path, pid: u32) -> Option<PathBuf> {
    let dir = proc_root.join(pid.to_string());
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let (nspid, euid) = nspid_and_euid(&status);
    let nspid = nspid.unwrap_or(pid);
    let tmp = dir.join("root").join("tmp");
    let mut found: Vec<(PathBuf, Option<u32>)> = Vec::new();
    for entry in std::fs::read_dir(&tmp).ok()?.flatten() {
        if !entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(b"hsperfdata_")
        {
            continue;
        }
        let candidate = entry.path().join(nspid.to_string());
        // symlink_metadata: a planted symlink is not followed out of the
        // container's /tmp.
        if let Ok(meta) = std::fs::symlink_metadata(&candidate)
            && meta.is_file()
        {
            use std::os::unix::fs::MetadataExt;
            found.push((candidate, Some(meta.uid())));
        }
    }
    let preferred = found
        .iter()
        .position(|(_, uid)| euid.is_some() && *uid == euid);
    let pick = preferred.unwrap_or(0);
    (pick < found.len()).then(|| found.swap_remove(pick).0)
}

/// The innermost pid (last field of `NSpid:`) and the effective uid (second
/// field of `Uid:`) from `/proc/<pid>/status` text.
fn nspid_and_euid(status: &str) -> (Option<u32>, Option<u32>) {
    let field = |key: &str, nth_from_end: bool, n: usize| -> Option<u32> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        let mut fields = line.split_whitespace();
        let v = if nth_from_end {
            fields.next_back()
        } else {
            fields.nth(n)
        };
        v?.parse().ok()
    };
    (field("NSpid:", true, 0), field("Uid:", false, 1))
}

#[cfg(test)]
mod tests;
