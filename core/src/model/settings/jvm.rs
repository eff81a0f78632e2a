//! A HotSpot JVM's heap and collector settings: its options, applied in the
//! order the JVM applies them (`JAVA_TOOL_OPTIONS`, then the `java`
//! launcher's `JDK_JAVA_OPTIONS`, then the command line, then
//! `_JAVA_OPTIONS`; the last one of a kind wins), and what its own
//! performance counters (hsperfdata) say: the collector in use and the
//! heap's current and maximum capacity.
use serde::Serialize;

use super::{ProcessText, Setting, Source, bytes_text, part};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum JvmCollector {
    Serial,
    Parallel,
    G1,
    Z,
    Shenandoah,
}

impl JvmCollector {
    const FLAGS: [(&str, JvmCollector); 5] = [
        ("-XX:+UseSerialGC", JvmCollector::Serial),
        ("-XX:+UseParallelGC", JvmCollector::Parallel),
        ("-XX:+UseG1GC", JvmCollector::G1),
        ("-XX:+UseZGC", JvmCollector::Z),
        ("-XX:+UseShenandoahGC", JvmCollector::Shenandoah),
    ];

    /// The collector a JVM command line selects (`-XX:+UseParallelGC`, …):
    /// the last such flag.
    pub fn from_command_line(args: &str) -> Option<JvmCollector> {
        Self::FLAGS
            .into_iter()
            .filter_map(|(flag, c)| args.rfind(flag).map(|at| (at, c)))
            .max_by_key(|(at, _)| *at)
            .map(|(_, c)| c)
    }

    fn from_flag(arg: &str) -> Option<JvmCollector> {
        Self::FLAGS
            .into_iter()
            .find_map(|(flag, c)| (arg == flag).then_some(c))
    }

    /// The collector in use, from hsperfdata's `sun.gc.collector.<N>.name`
    /// ("G1 young collection pauses", "Parallel young collection pauses",
    /// "Serial full collection pauses", "ZGC minor collection pauses", JDK
    /// 17's "Z concurrent cycle pauses", "Shenandoah …"), else
    /// `sun.gc.policy.name` ("GarbageFirst", "ParScav:MSC", "Copy:MSC").
    pub fn from_hsperfdata(policy: Option<&str>, collector_names: &[&str]) -> Option<JvmCollector> {
        let by_name = collector_names.iter().find_map(|n| {
            [
                ("G1 ", JvmCollector::G1),
                ("Parallel ", JvmCollector::Parallel),
                ("Serial ", JvmCollector::Serial),
                ("ZGC ", JvmCollector::Z),
                ("Z ", JvmCollector::Z),
                ("Shenandoah", JvmCollector::Shenandoah),
            ]
            .into_iter()
            .find_map(|(prefix, c)| n.starts_with(prefix).then_some(c))
        });
        by_name.or_else(|| match policy? {
            "GarbageFirst" => Some(JvmCollector::G1),
            "ParScav:MSC" | "ParScav:PSMC" => Some(JvmCollector::Parallel),
            "Copy:MSC" | "Copy:MarkSweepCompact" => Some(JvmCollector::Serial),
            p if p.starts_with("Shenandoah") => Some(JvmCollector::Shenandoah),
            p if p.starts_with('Z') => Some(JvmCollector::Z),
            _ => None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            JvmCollector::Serial => "SerialGC",
            JvmCollector::Parallel => "ParallelGC",
            JvmCollector::G1 => "G1GC",
            JvmCollector::Z => "ZGC",
            JvmCollector::Shenandoah => "ShenandoahGC",
        }
    }

    /// Whether each generation may grow to the whole heap (regional
    /// collectors): their generations' maximum capacities overlap.
    fn regional(self) -> bool {
        matches!(
            self,
            JvmCollector::G1 | JvmCollector::Z | JvmCollector::Shenandoah
        )
    }
}

/// The heap as the JVM counts it (hsperfdata), at the last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JvmHeap {
    /// Committed now: the generations' capacities added up.
    pub capacity_bytes: u64,
    /// The most it may grow to (the JVM's own `-Xmx`, after alignment and
    /// ergonomics).
    pub max_capacity_bytes: u64,
}

impl JvmHeap {
    /// From `sun.gc.generation.<N>.capacity` and `.maxCapacity` (`long`
    /// reads a counter). Serial and Parallel split the heap between their
    /// generations, so the maxima add up; a regional collector's (G1, ZGC,
    /// Shenandoah) generations may each take the whole heap, so the largest
    /// is the heap's.
    pub fn from_hsperfdata(
        long: impl Fn(&str) -> Option<i64>,
        collector: Option<JvmCollector>,
    ) -> Option<JvmHeap> {
        let mut capacity = 0u64;
        let mut maxima = Vec::new();
        for n in 0.. {
            let Some(max) = long(&format!("sun.gc.generation.{n}.maxCapacity")) else {
                break;
            };
            maxima.push(max.max(0) as u64);
            let cap = long(&format!("sun.gc.generation.{n}.capacity")).unwrap_or(0);
            capacity = capacity.saturating_add(cap.max(0) as u64);
        }
        if maxima.is_empty() {
            return None;
        }
        let max_capacity_bytes = if collector.is_some_and(JvmCollector::regional) {
            maxima.into_iter().max().unwrap_or(0)
        } else {
            maxima.into_iter().fold(0, u64::saturating_add)
        };
        Some(JvmHeap {
            capacity_bytes: capacity,
            max_capacity_bytes,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JvmSettings {
    /// `-Xmx` / `-XX:MaxHeapSize`.
    pub max_heap_bytes: Option<Setting<u64>>,
    /// `-Xms` / `-XX:InitialHeapSize`.
    pub initial_heap_bytes: Option<Setting<u64>>,
    /// The collector flag, else the collector hsperfdata shows in use.
    pub collector: Option<Setting<JvmCollector>>,
    pub max_ram_percentage: Option<Setting<f64>>,
    pub initial_ram_percentage: Option<Setting<f64>>,
    /// `-XX:±UseContainerSupport` (on by default since JDK 10).
    pub use_container_support: Option<Setting<bool>>,
    /// From hsperfdata, where it could be read.
    pub heap: Option<JvmHeap>,
    /// Why hsperfdata could not be read (`-XX:-UsePerfData`, no file yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsperfdata_unread: Option<String>,
}

/// Options that take the next argument as their value (`java -cp x Main`).
const WITH_VALUE: [&str; 14] = [
    "-cp",
    "-classpath",
    "--class-path",
    "-p",
    "--module-path",
    "--upgrade-module-path",
    "--add-modules",
    "--limit-modules",
    "--add-exports",
    "--add-opens",
    "--add-reads",
    "--patch-module",
    "--enable-native-access",
    "--source",
];

impl JvmSettings {
    pub fn parse(text: ProcessText<'_>) -> JvmSettings {
        let args = text.args();
        let mut s = JvmSettings::default();
        let env_options = |name: &str| -> Vec<String> {
            text.env(name)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        for opt in env_options("JAVA_TOOL_OPTIONS") {
            s.apply(&opt, Source::Env);
        }
        // The `java` launcher inserts it before its own arguments.
        let launcher = args
            .first()
            .is_some_and(|a| a.rsplit('/').next() == Some("java"));
        if launcher {
            for opt in env_options("JDK_JAVA_OPTIONS") {
                s.apply(&opt, Source::Env);
            }
        }
        for opt in jvm_options(&args) {
            s.apply(opt, Source::Flag);
        }
        for opt in env_options("_JAVA_OPTIONS") {
            s.apply(&opt, Source::Env);
        }
        s
    }

    fn apply(&mut self, opt: &str, source: Source) {
        let size = |v: &str| parse_size(v).map(|b| Setting::new(b, source));
        // The JVM refuses a percentage outside 0..100 (and NaN) at startup.
        let percent = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(|p| Setting::new(p, source))
        };
        if let Some(v) = opt.strip_prefix("-Xmx") {
            self.max_heap_bytes = size(v).or(self.max_heap_bytes);
        } else if let Some(v) = opt.strip_prefix("-XX:MaxHeapSize=") {
            self.max_heap_bytes = size(v).or(self.max_heap_bytes);
        } else if let Some(v) = opt.strip_prefix("-Xms") {
            self.initial_heap_bytes = size(v).or(self.initial_heap_bytes);
        } else if let Some(v) = opt.strip_prefix("-XX:InitialHeapSize=") {
            self.initial_heap_bytes = size(v).or(self.initial_heap_bytes);
        } else if let Some(v) = opt.strip_prefix("-XX:MaxRAMPercentage=") {
            self.max_ram_percentage = percent(v).or(self.max_ram_percentage);
        } else if let Some(v) = opt.strip_prefix("-XX:InitialRAMPercentage=") {
            self.initial_ram_percentage = percent(v).or(self.initial_ram_percentage);
        } else if opt == "-XX:+UseContainerSupport" || opt == "-XX:-UseContainerSupport" {
            self.use_container_support = Some(Setting::new(opt.starts_with("-XX:+"), source));
        } else if let Some(c) = JvmCollector::from_flag(opt) {
            self.collector = Some(Setting::new(c, source));
        }
    }

    /// Adds what hsperfdata says: the heap, and the collector where no
    /// option chose one.
    pub fn with_hsperfdata(&mut self, collector: Option<JvmCollector>, heap: Option<JvmHeap>) {
        if self.collector.is_none() {
            self.collector = collector.map(|c| Setting::new(c, Source::Hsperfdata));
        }
        self.heap = heap;
        self.hsperfdata_unread = None;
    }

    /// The maximum heap: `-Xmx` where given, else the JVM's own number.
    pub fn max_heap(&self) -> Option<Setting<u64>> {
        self.max_heap_bytes.or_else(|| {
            self.heap
                .map(|h| Setting::new(h.max_capacity_bytes, Source::Hsperfdata))
        })
    }

    pub(super) fn parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        match self.max_heap_bytes {
            Some(m) => parts.push(part(format!("-Xmx {}", bytes_text(m.value)), m.source)),
            None => parts.push("-Xmx not set".to_owned()),
        }
        if let Some(m) = self.initial_heap_bytes {
            parts.push(part(format!("-Xms {}", bytes_text(m.value)), m.source));
        }
        match self.collector {
            Some(c) => parts.push(part(c.value.name(), c.source)),
            None => parts.push("collector unknown".to_owned()),
        }
        if let Some(p) = self.max_ram_percentage {
            parts.push(part(format!("MaxRAMPercentage {}", p.value), p.source));
        }
        if let Some(p) = self.initial_ram_percentage {
            parts.push(part(format!("InitialRAMPercentage {}", p.value), p.source));
        }
        if let Some(c) = self.use_container_support {
            let sign = if c.value { '+' } else { '-' };
            parts.push(part(format!("{sign}UseContainerSupport"), c.source));
        }
        match (self.heap, &self.hsperfdata_unread) {
            (Some(h), _) => parts.push(part(
                format!(
                    "heap {}/{}",
                    bytes_text(h.capacity_bytes),
                    bytes_text(h.max_capacity_bytes)
                ),
                Source::Hsperfdata,
            )),
            (None, Some(why)) => parts.push(format!("heap unknown: {why}")),
            (None, None) => {}
        }
        parts
    }
}

/// The JVM's options on a command line: after `argv[0]`, up to the main
/// class, `-jar <file>` or `-m <module>` (what follows is the program's).
fn jvm_options(args: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if !arg.starts_with('-') {
            break;
        }
        if matches!(arg.as_str(), "-jar" | "-m" | "--module") {
            break;
        }
        if WITH_VALUE.contains(&arg.as_str()) {
            rest.next();
            continue;
        }
        out.push(arg.as_str());
    }
    out
}

/// A JVM size (`-Xmx192m`): a number with an optional `k`, `m`, `g` or `t`
/// (either case); no suffix is bytes.
pub fn parse_size(value: &str) -> Option<u64> {
    let (digits, shift) = match value.chars().last()? {
        'k' | 'K' => (&value[..value.len() - 1], 10),
        'm' | 'M' => (&value[..value.len() - 1], 20),
        'g' | 'G' => (&value[..value.len() - 1], 30),
        't' | 'T' => (&value[..value.len() - 1], 40),
        _ => (value, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}
