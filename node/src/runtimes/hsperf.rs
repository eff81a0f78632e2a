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
pub(crate) mod testjvm {
    //! A JVM to test against: allocates for a while, says `done`, sleeps.
    use std::{
        io::{BufRead, BufReader},
        path::PathBuf,
        process::{Child, Command, Stdio},
        sync::mpsc,
        time::Duration,
    };

    /// A missing tool or privilege: off CI a loud skip (`None`), under CI
    /// (`CI` set) a failure, as every test of the project treats them.
    pub fn skip_or_fail<T>(what: &str) -> Option<T> {
        if std::env::var_os("CI").is_some() {
            panic!("{what} (under CI every test runs)");
        }
        eprintln!("skipped: {what}");
        None
    }

    /// The home of a JDK whose `release` file says `JAVA_VERSION="<major>…"`,
    /// from `$JAVA_HOME`, then `/usr/lib/jvm/*` in name order.
    pub fn jdk_home(major: u32) -> Option<PathBuf> {
        let mut homes: Vec<PathBuf> = std::env::var_os("JAVA_HOME")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        if let Ok(dir) = std::fs::read_dir("/usr/lib/jvm") {
            let mut found: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
            found.sort();
            homes.extend(found);
        }
        homes.into_iter().find(|home| {
            std::fs::read_to_string(home.join("release"))
                .ok()
                .and_then(|r| {
                    let v = r.lines().find_map(|l| l.strip_prefix("JAVA_VERSION=\""))?;
                    v.split(['.', '"']).next()?.parse::<u32>().ok()
                })
                == Some(major)
                && home.join("bin/java").is_file()
        })
    }

    /// `jdk_home(major)`, or [`skip_or_fail`].
    pub fn require_jdk(major: u32) -> Option<PathBuf> {
        jdk_home(major)
            .or_else(|| skip_or_fail(&format!("no JDK {major} under $JAVA_HOME or /usr/lib/jvm")))
    }

    const SOURCE: &str = r#"
public class Alloc {
    static volatile Object sink;
    public static void main(String[] args) throws Exception {
        long end = System.nanoTime() + Long.parseLong(args[0]) * 1_000_000L;
        java.util.List<byte[]> keep = new java.util.ArrayList<>();
        for (long n = 0; System.nanoTime() < end; n++) {
            byte[] b = new byte[1024 + (int) (n % 4096)];
            sink = b;
            if (n % 64 == 0) keep.add(b);
            if (keep.size() > 20000) keep.clear();
        }
        System.out.println("done");
        Thread.sleep(Long.parseLong(args[1]));
    }
}
"#;

    pub struct Jvm {
        pub child: Child,
        pub dir: tempfile::TempDir,
    }

    impl Jvm {
        pub fn gc_log(&self) -> PathBuf {
            self.dir.path().join("gc.log")
        }
    }

    impl Drop for Jvm {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts the `java` of JDK `major` (see [`require_jdk`]) in
    /// source-file mode with `flags`, allocating for `alloc_ms`, then
    /// sleeping 60 s; returns once it said `done`.
    pub fn start(major: u32, flags: &[&str], alloc_ms: u64) -> Option<Jvm> {
        start_in(&[], None, major, flags, alloc_ms)
    }

    /// [`start`] under a `wrapper` command (e.g. `unshare …`), which must
    /// run java as its direct child and kill it when it dies; the source and
    /// the GC log in a temporary directory under `tmp` (default: the
    /// system's). A wrapper that cannot run (not root) is skipped off CI.
    pub fn start_in(
        wrapper: &[&str],
        tmp: Option<&str>,
        major: u32,
        flags: &[&str],
        alloc_ms: u64,
    ) -> Option<Jvm> {
        let java = require_jdk(major)?.join("bin/java");
        let dir = match tmp {
            Some(parent) => tempfile::tempdir_in(parent).ok()?,
            None => tempfile::tempdir().unwrap(),
        };
        let source = dir.path().join("Alloc.java");
        std::fs::write(&source, SOURCE).unwrap();
        let log = format!("-Xlog:gc:file={}", dir.path().join("gc.log").display());
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&java);
                c
            }
            None => Command::new(&java),
        };
        let spawned = cmd
            .args(flags)
            .args(["-Xmx128m", "-XX:+UsePerfData", &log])
            .arg(&source)
            .args([alloc_ms.to_string(), "60000".into()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => return skip_or_fail(&format!("{wrapper:?} {}: {err}", java.display())),
        };
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "done" {
                    let _ = tx.send(());
                }
            }
        });
        let jvm = Jvm { child, dir };
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            // Without root, unshare cannot make the namespaces.
            let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
                s.lines()
                    .any(|l| l.split_whitespace().eq(["Uid:", "0", "0", "0", "0"]))
            });
            assert!(!root, "{wrapper:?} {} did not start", java.display());
            return skip_or_fail(&format!("{wrapper:?} needs root"));
        }
        Some(jvm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const JDK17_G1: &[u8] = include_bytes!("testdata/jdk17-g1.hsperf");
    const JDK17_G1_SNAP: &str = include_str!("testdata/jdk17-g1.snap");
    const JDK25_ZGC: &[u8] = include_bytes!("testdata/jdk25-zgc.hsperf");
    const JDK25_ZGC_SNAP: &str = include_str!("testdata/jdk25-zgc.snap");

    /// Every counter `jstat -J-Djstat.showUnsupported=true -snap <pid>`
    /// printed for the same JVM a moment after the file was copied (the
    /// JVM was asleep, so nothing GC-related moved), against the parse.
    fn check_against_jstat(data: &PerfData, snap: &str) -> usize {
        let mut compared = 0;
        for line in snap.lines() {
            let Some((name, want)) = line.split_once('=') else {
                continue;
            };
            // jstat's pseudo-counters from the prologue.
            if let Some(field) = name.strip_prefix("sun.perfdata.") {
                match field {
                    "majorVersion" => assert_eq!(want, data.major_version.to_string()),
                    "minorVersion" => assert_eq!(want, data.minor_version.to_string()),
                    "timestamp" => assert_eq!(want, data.mod_time_stamp.to_string()),
                    _ => {}
                }
                continue;
            }
            let Some(got) = data.get(name) else {
                panic!("jstat shows {name}, the parse has no such counter");
            };
            match got {
                Value::String(s) => assert_eq!(format!("\"{s}\""), want, "{name}"),
                Value::Long(v) => {
                    // Times and tick counters keep running while the JVM
                    // sleeps; GC counters do not.
                    let moving = [
                        "Time",
                        "time",
                        "tick",
                        "Tick",
                        "sun.os.hrt.ticks",
                        "sun.threads",
                        "sun.rt.safepoint",
                        "sun.ci",
                        "sun.cls",
                        "sun.urlClassLoader",
                        "sun.zip",
                        "java.cls",
                        "sun.perfdata",
                        "sun.rt",
                    ];
                    if !moving.iter().any(|m| name.contains(m))
                        || name.starts_with("sun.gc.collector")
                    {
                        assert_eq!(v.to_string(), want, "{name}");
                    }
                }
                other => panic!("{name}: {other:?}"),
            }
            compared += 1;
        }
        compared
    }

    #[test]
    fn jdk17_g1_fixture() {
        let data = parse(JDK17_G1).unwrap();
        assert_eq!((data.major_version, data.minor_version), (2, 0));
        assert_eq!(data.counters.len(), 187, "num_entries of the prologue");
        assert!(check_against_jstat(&data, JDK17_G1_SNAP) > 180);
        assert_eq!(
            data.string("java.property.java.vm.version"),
            Some("17.0.15+6-Debian-1deb12u1")
        );
        assert_eq!(data.string("sun.gc.policy.name"), Some("GarbageFirst"));
        assert_eq!(data.long("sun.os.hrt.frequency"), Some(1_000_000_000));

        let gc = data.gc_counters().unwrap();
        // The JVM's -Xlog:gc had 123 "Pause" lines: 121 young pauses, 2
        // Remark/Cleanup, no full.
        assert_eq!(gc.pauses, 123);
        assert_eq!(
            gc.collections, None,
            "G1's concurrent cycles have no counter"
        );
        assert_eq!(
            gc.per_collector
                .iter()
                .map(|(n, i, _)| (n.as_str(), *i))
                .collect::<Vec<_>>(),
            vec![
                ("G1 young collection pauses", 121),
                ("G1 full collection pauses", 0),
                ("G1 concurrent cycle pauses", 2),
            ]
        );
        assert!((gc.per_collector[0].2 - 0.294_808_247).abs() < 1e-9);
        assert!((gc.gc_time_seconds - (294_808_247.0 + 656_403.0) / 1e9).abs() < 1e-9);
    }

    #[test]
    fn jdk25_zgc_fixture_has_sparse_collectors() {
        let data = parse(JDK25_ZGC).unwrap();
        assert!(check_against_jstat(&data, JDK25_ZGC_SNAP) > 140);
        assert_eq!(
            data.string("java.property.java.vm.version"),
            Some("25.0.3+9-LTS")
        );
        let gc = data.gc_counters().unwrap();
        assert_eq!(
            gc.per_collector
                .iter()
                .map(|(n, i, _)| (n.as_str(), *i))
                .collect::<Vec<_>>(),
            vec![
                ("ZGC minor collection pauses", 683),
                ("ZGC major collection pauses", 109)
            ]
        );
        assert_eq!(gc.pauses, 792);
        assert_eq!(gc.collections, None);
        assert!((gc.gc_time_seconds - (4_663_115.0 + 803_498.0) / 1e9).abs() < 1e-9);
    }

    /// A perf-data buffer with these (name, type, units, vector, data)
    /// entries, in either byte order.
    fn synth(big_endian: bool, entries: &[(&str, u8, u8, u32, Vec<u8>)]) -> Vec<u8> {
        let i32b = |v: i32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut body = Vec::new();
        for (name, ty, units, vector, data) in entries {
            let name_off = ENTRY_HEADER_LEN;
            let data_off = (name_off + name.len() + 1).next_multiple_of(8);
            let len = (data_off + data.len()).next_multiple_of(8);
            let mut e = Vec::new();
            e.extend_from_slice(&i32b(len as i32));
            e.extend_from_slice(&i32b(name_off as i32));
            e.extend_from_slice(&i32b(*vector as i32));
            e.extend_from_slice(&[*ty, 0, *units, 1]);
            e.extend_from_slice(&i32b(data_off as i32));
            e.extend_from_slice(name.as_bytes());
            e.resize(data_off, 0);
            e.extend_from_slice(data);
            e.resize(len, 0);
            body.extend(e);
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[if big_endian { 0 } else { 1 }, 2, 0, 1]);
        out.extend_from_slice(&i32b((PROLOGUE_LEN + body.len()) as i32));
        out.extend_from_slice(&i32b(0));
        out.extend_from_slice(&if big_endian {
            7i64.to_be_bytes()
        } else {
            7i64.to_le_bytes()
        });
        out.extend_from_slice(&i32b(PROLOGUE_LEN as i32));
        out.extend_from_slice(&i32b(entries.len() as i32));
        out.extend(body);
        // The rest of the mapped file is zeros.
        out.resize(out.len() + 64, 0);
        out
    }

    fn long(v: i64, big_endian: bool) -> Vec<u8> {
        if big_endian {
            v.to_be_bytes().to_vec()
        } else {
            v.to_le_bytes().to_vec()
        }
    }

    fn gc_entries(big_endian: bool) -> Vec<(&'static str, u8, u8, u32, Vec<u8>)> {
        vec![
            (
                "sun.os.hrt.frequency",
                b'J',
                6,
                0,
                long(1_000_000, big_endian),
            ),
            (
                "sun.gc.collector.0.name",
                b'B',
                UNITS_STRING,
                32,
                b"Copy\0".iter().copied().chain([0; 27]).collect(),
            ),
            (
                "sun.gc.collector.0.invocations",
                b'J',
                4,
                0,
                long(10, big_endian),
            ),
            (
                "sun.gc.collector.0.time",
                b'J',
                3,
                0,
                long(2_500_000, big_endian),
            ),
            (
                "sun.gc.collector.10.invocations",
                b'J',
                4,
                0,
                long(3, big_endian),
            ),
            (
                "sun.gc.collector.10.time",
                b'J',
                3,
                0,
                long(500_000, big_endian),
            ),
            (
                "sun.gc.collector.2.name",
                b'B',
                UNITS_STRING,
                4,
                b"MSC\0".to_vec(),
            ),
            (
                "sun.gc.collector.2.invocations",
                b'J',
                4,
                0,
                long(-5, big_endian),
            ),
            ("sun.other.bytes", b'B', 1, 3, vec![1, 2, 3]),
            ("sun.other.int", b'I', 1, 0, vec![0; 4]),
        ]
    }

    #[test]
    fn synthetic_buffers_in_both_byte_orders() {
        for big_endian in [false, true] {
            let data = parse(&synth(big_endian, &gc_entries(big_endian))).unwrap();
            assert_eq!(data.mod_time_stamp, 7);
            assert_eq!(
                data.get("sun.other.bytes"),
                Some(&Value::Bytes(vec![1, 2, 3]))
            );
            assert_eq!(
                data.get("sun.other.int"),
                Some(&Value::Other {
                    data_type: b'I',
                    vector_length: 0
                })
            );
            let gc = data.gc_counters().unwrap();
            // Numeric order of indices (2 before 10); a nameless collector
            // is named by index; negative counts are 0.
            assert_eq!(
                gc.per_collector,
                vec![
                    ("Copy".to_string(), 10, 2.5),
                    ("MSC".to_string(), 0, 0.0),
                    ("collector 10".to_string(), 3, 0.5),
                ]
            );
            assert_eq!(gc.pauses, 13);
            assert_eq!(
                gc.collections, None,
                "Copy and MSC are not named as 17 and 25 name them"
            );
            assert!((gc.gc_time_seconds - 3.0).abs() < 1e-12);
        }
    }

    #[test]
    fn collections_only_where_one_pause_is_one_collection() {
        let with = |names: &[&'static str]| {
            let mut entries = vec![(
                "sun.os.hrt.frequency".to_owned(),
                b'J',
                6,
                0,
                long(1_000_000_000, false),
            )];
            for (n, name) in names.iter().enumerate() {
                let mut bytes = name.as_bytes().to_vec();
                bytes.push(0);
                let len = bytes.len() as u32;
                entries.push((
                    format!("sun.gc.collector.{n}.name"),
                    b'B',
                    UNITS_STRING,
                    len,
                    bytes,
                ));
                entries.push((
                    format!("sun.gc.collector.{n}.invocations"),
                    b'J',
                    4,
                    0,
                    long(10 + n as i64, false),
                ));
            }
            let entries: Vec<(&str, u8, u8, u32, Vec<u8>)> = entries
                .iter()
                .map(|(n, t, u, v, d)| (n.as_str(), *t, *u, *v, d.clone()))
                .collect();
            parse(&synth(false, &entries))
                .unwrap()
                .gc_counters()
                .unwrap()
        };
        for kind in ["Parallel", "Serial"] {
            let young = format!("{kind} young collection pauses").leak();
            let full = format!("{kind} full collection pauses").leak();
            let gc = with(&[young, full]);
            assert_eq!((gc.pauses, gc.collections), (21, Some(21)), "{kind}");
        }
        for names in [
            &[
                "G1 young collection pauses",
                "G1 full collection pauses",
                "G1 concurrent cycle pauses",
            ][..],
            &["ZGC minor collection pauses", "ZGC major collection pauses"],
            &["Z concurrent cycle pauses"],
            &["Shenandoah partial", "Shenandoah full"],
        ] {
            assert_eq!(with(names).collections, None, "{names:?}");
        }
    }

    #[test]
    fn missing_gc_counters() {
        let no_freq = synth(
            false,
            &[("sun.gc.collector.0.invocations", b'J', 4, 0, long(1, false))],
        );
        assert!(matches!(
            parse(&no_freq).unwrap().gc_counters(),
            Err(HsperfError::Missing("sun.os.hrt.frequency"))
        ));
        let no_gc = synth(
            false,
            &[("sun.os.hrt.frequency", b'J', 6, 0, long(1, false))],
        );
        assert!(matches!(
            parse(&no_gc).unwrap().gc_counters(),
            Err(HsperfError::Missing(_))
        ));
        let zero = synth(
            false,
            &[("sun.os.hrt.frequency", b'J', 6, 0, long(0, false))],
        );
        assert!(parse(&zero).unwrap().gc_counters().is_err());
        let empty = synth(false, &[]);
        assert!(parse(&empty).unwrap().counters.is_empty());
    }

    #[test]
    fn prologue_errors() {
        assert!(matches!(parse(&[]), Err(HsperfError::Short(0))));
        assert!(matches!(parse(&[0; 64]), Err(HsperfError::Magic(_))));
        let good = synth(false, &gc_entries(false));
        let mut bad = good.clone();
        bad[4] = 7;
        assert!(matches!(parse(&bad), Err(HsperfError::ByteOrder(7))));
        let mut bad = good.clone();
        bad[5] = 1;
        assert!(matches!(parse(&bad), Err(HsperfError::Version(1, 0))));
        let mut bad = good.clone();
        bad[7] = 0;
        assert!(matches!(parse(&bad), Err(HsperfError::NotAccessible)));
        // Entry offset inside the prologue, or negative.
        let mut bad = good.clone();
        bad[24..28].copy_from_slice(&8i32.to_le_bytes());
        assert!(matches!(parse(&bad), Err(HsperfError::Prologue(_))));
        let mut bad = good.clone();
        bad[24..28].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(matches!(parse(&bad), Err(HsperfError::Prologue(_))));
        // More entries than there are.
        let mut bad = good.clone();
        bad[28..32].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(matches!(parse(&bad), Err(HsperfError::Entry { .. })));
        // `used` cuts the last entry off.
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&((good.len() - 64 - 8) as i32).to_le_bytes());
        assert!(matches!(
            parse(&bad),
            Err(HsperfError::Entry { index: 9, .. })
        ));
    }

    #[test]
    fn entry_errors() {
        let one = |e: (&str, u8, u8, u32, Vec<u8>)| synth(false, &[e]);
        let base = one(("a.b", b'J', 4, 0, long(1, false)));
        let at = PROLOGUE_LEN;
        let set = |field: usize, v: i32| {
            let mut b = base.clone();
            b[at + field..at + field + 4].copy_from_slice(&v.to_le_bytes());
            b
        };
        for (what, bad) in [
            ("length 0", set(0, 0)),
            ("length 19", set(0, 19)),
            ("length negative", set(0, -8)),
            ("length huge", set(0, i32::MAX)),
            ("name in header", set(4, 4)),
            ("name past entry", set(4, 4096)),
            ("name negative", set(4, -1)),
            ("vector negative", set(8, -1)),
            ("vector huge", set(8, i32::MAX)),
            ("data in header", set(16, 0)),
            ("data past entry", set(16, 1 << 20)),
            ("data negative", set(16, i32::MIN)),
        ] {
            assert!(
                matches!(parse(&bad), Err(HsperfError::Entry { .. })),
                "{what}: {:?}",
                parse(&bad)
            );
        }
        let mut unknown = base.clone();
        unknown[at + 12] = b'Q';
        assert!(parse(&unknown).is_err());
        // A name without its NUL: the name runs to the end of the entry.
        let mut no_nul = one(("abcdefghijklmnopqrstuvwxyz", b'B', UNITS_STRING, 0, vec![]));
        let entry_len = i32::from_le_bytes(no_nul[at..at + 4].try_into().unwrap()) as usize;
        no_nul[at + 16..at + 20].copy_from_slice(&20i32.to_le_bytes());
        for b in &mut no_nul[at + 20..at + entry_len] {
            *b = b'x';
        }
        assert!(parse(&no_nul).is_err());
    }

    #[test]
    fn truncations_and_corruptions_never_panic() {
        let mut inputs = vec![JDK17_G1.to_vec(), synth(true, &gc_entries(true))];
        inputs.push(synth(false, &gc_entries(false)));
        for input in &inputs {
            for len in (0..input.len()).step_by(7) {
                let _ = parse(&input[..len]);
            }
        }
        // Corrupt the prologue and the first entries byte by byte; the
        // fixture's later entries are like the first.
        for input in &inputs {
            for i in 0..input.len().min(1024) {
                for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                    let mut bad = input.clone();
                    bad[i] = v;
                    if let Ok(d) = parse(&bad) {
                        let _ = d.gc_counters();
                    }
                }
            }
        }
        // Cheap pseudo-random noise over the whole fixture.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut bad = JDK17_G1.to_vec();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % bad.len() as u64) as usize;
            bad[i] = (x >> 32) as u8;
            let _ = parse(&bad);
        }
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tjava\nUid:\t1000\t1001\t1000\t1000\nNSpid:\t48213\t1\n";
        assert_eq!(nspid_and_euid(status), (Some(1), Some(1001)));
        let host = "Uid:\t0\t0\t0\t0\nNSpid:\t4242\n";
        assert_eq!(nspid_and_euid(host), (Some(4242), Some(0)));
        assert_eq!(nspid_and_euid("Name: x\n"), (None, None));
        assert_eq!(nspid_and_euid("NSpid:\nUid:\n"), (None, None));
    }

    #[test]
    fn find_file_in_a_fake_proc() {
        let root = tempfile::tempdir().unwrap();
        let proc = root.path().join("proc");
        let pid_dir = proc.join("4242");
        let tmp = pid_dir.join("root").join("tmp");
        std::fs::create_dir_all(tmp.join("hsperfdata_app")).unwrap();
        std::fs::create_dir_all(tmp.join("hsperfdata_other")).unwrap();
        std::fs::create_dir_all(tmp.join("not_hsperf")).unwrap();
        std::fs::write(tmp.join("not_hsperf").join("1"), b"x").unwrap();
        // In its container the JVM is pid 1.
        std::fs::write(
            pid_dir.join("status"),
            "Uid:\t0\t0\t0\t0\nNSpid:\t4242\t1\n",
        )
        .unwrap();
        assert_eq!(find_file(&proc, 4242), None);
        std::fs::write(tmp.join("hsperfdata_app").join("1"), JDK17_G1).unwrap();
        // The host pid is not the file's name.
        std::fs::write(tmp.join("hsperfdata_other").join("4242"), JDK17_G1).unwrap();
        let found = find_file(&proc, 4242).unwrap();
        assert_eq!(found, tmp.join("hsperfdata_app").join("1"));
        assert_eq!(read(&found).unwrap().gc_counters().unwrap().pauses, 123);
        assert_eq!(read_gc_counters(&proc, 4242).unwrap().unwrap().pauses, 123);
        // A symlink is not followed.
        std::fs::remove_file(&found).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &found).unwrap();
        assert_eq!(find_file(&proc, 4242), None);
        // No process, no file.
        assert_eq!(find_file(&proc, 1), None);
        assert!(read_gc_counters(&proc, 1).is_none());
    }

    /// Pause lines of `-Xlog:gc` (G1, Parallel, Serial).
    fn pauses_in_log(log: &Path) -> u64 {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" Pause "))
            .count() as u64
    }

    /// Against a live JVM: the counters of its file equal its own log.
    fn live(major: u32, flags: &[&str]) {
        let Some(jvm) = testjvm::start(major, flags, 1500) else {
            return;
        };
        let pid = jvm.child.id();
        let path = find_file(Path::new("/proc"), pid).expect("a perf-data file");
        // A concurrent cycle can still be finishing; wait until the file and
        // the log agree twice in a row, 300 ms apart.
        let mut last = None;
        for _ in 0..40 {
            let gc = read(&path).unwrap().gc_counters().unwrap();
            let now = (gc.pauses, pauses_in_log(&jvm.gc_log()));
            if last == Some(now) && now.0 == now.1 {
                break;
            }
            last = Some(now);
            std::thread::sleep(Duration::from_millis(300));
        }
        let gc = read(&path).unwrap().gc_counters().unwrap();
        let log_pauses = pauses_in_log(&jvm.gc_log());
        eprintln!("JDK {major} {flags:?}: {gc:?}; -Xlog:gc pauses {log_pauses}");
        assert!(gc.pauses > 0, "{gc:?}");
        assert_eq!(gc.pauses, log_pauses);
        assert!(gc.gc_time_seconds > 0.0);
    }

    /// The JVM in its own pid and mount namespaces with a private /tmp, as
    /// in a container: its file is named by its pid there (1), and is
    /// reachable only through /proc/<pid>/root.
    #[test]
    fn live_in_a_container_like_namespace() {
        let wrapper = [
            "unshare",
            "--pid",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /tmp && exec \"$@\"",
            "sh",
        ];
        // The test's own files must not be under the hidden /tmp.
        let Some(jvm) =
            testjvm::start_in(&wrapper, Some("/var/tmp"), 17, &["-XX:+UseSerialGC"], 500)
        else {
            return;
        };
        // java is unshare's child.
        let unshare = jvm.child.id().to_string();
        let java = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                    s.lines()
                        .any(|l| l.split_whitespace().eq(["PPid:", unshare.as_str()]))
                })
            })
            .expect("java under unshare");
        let status = std::fs::read_to_string(format!("/proc/{java}/status")).unwrap();
        assert_eq!(nspid_and_euid(&status).0, Some(1), "{status}");
        let path = find_file(Path::new("/proc"), java).expect("a perf-data file");
        assert_eq!(
            path,
            Path::new(&format!("/proc/{java}/root/tmp/hsperfdata_root/1"))
        );
        // Not visible from the host's /tmp.
        assert!(
            !Path::new("/tmp/hsperfdata_root/1").exists() || {
                // Unless another JVM here is pid 1 in its namespace; then it must
                // be another file.
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata("/tmp/hsperfdata_root/1").unwrap().ino()
                    != std::fs::metadata(&path).unwrap().ino()
            }
        );
        let gc = read(&path).unwrap().gc_counters().unwrap();
        assert!(gc.pauses > 0);
        assert_eq!(gc.pauses, pauses_in_log(&jvm.gc_log()), "{gc:?}");
    }

    #[test]
    fn live_jdk17_g1() {
        live(17, &["-XX:+UseG1GC"]);
    }

    #[test]
    fn live_jdk25_parallel() {
        live(25, &["-XX:+UseParallelGC"]);
    }
}
