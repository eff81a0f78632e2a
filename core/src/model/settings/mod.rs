//! A process's runtime settings as it was started with them: Go's `GOGC`,
//! `GOMEMLIMIT` and `GOMAXPROCS` ([`go`]), the JVM's heap flags and
//! collector ([`jvm`]), Node's heap flags ([`node`]), each with where its
//! value came from ([`Source`]).
//!
//! The node reads `/proc/<pid>/cmdline` and `/proc/<pid>/environ` (and a
//! JVM's hsperfdata) once per process; everything here is pure parsing of
//! those bytes. What a process changes at run time after it started
//! (`debug.SetGCPercent`, `debug.SetMemoryLimit`, `runtime.GOMAXPROCS`, a
//! JVM's `-XX:+UseAdaptiveSizePolicy` resizing) is not in its environment
//! or command line: these are the settings it *started* with; the JVM's
//! hsperfdata heap numbers are the exception, read as it runs.
pub mod go;
pub mod jvm;
pub mod node;
#[cfg(test)]
mod tests;
mod wire;

use std::fmt;

use serde::Serialize;

pub use self::{
    go::{GoSettings, Gogc},
    jvm::{JvmCollector, JvmHeap, JvmSettings},
    node::NodeSettings,
};
use crate::gc::Runtime;

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Not set anywhere: the runtime's documented default applies.
    Default,
    /// An environment variable (`GOGC`, `JAVA_TOOL_OPTIONS`, `NODE_OPTIONS`…).
    Env,
    /// The command line.
    Flag,
    /// The JVM's own performance counters (hsperfdata).
    Hsperfdata,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::Env => "env",
            Source::Flag => "flag",
            Source::Hsperfdata => "hsperfdata",
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    pub fn new(value: T, source: Source) -> Self {
        Self { value, source }
    }
}

/// The settings of one process, by runtime.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "runtime", rename_all = "lowercase")]
pub enum RuntimeSettings {
    Go(GoSettings),
    Jvm(JvmSettings),
    Node(NodeSettings),
    /// Its command line or environment could not be read (a process gone,
    /// a kernel thread, no privilege): nothing about its settings is known.
    Unknown {
        reason: String,
    },
}

/// A process's `/proc/<pid>/cmdline` and `/proc/<pid>/environ`, each a
/// NUL-separated list, as read.
#[derive(Debug, Clone, Copy)]
pub struct ProcessText<'a> {
    pub cmdline: &'a [u8],
    pub environ: &'a [u8],
}

impl ProcessText<'_> {
    /// The command line's arguments, `argv[0]` first.
    pub fn args(&self) -> Vec<String> {
        nul_separated(self.cmdline).collect()
    }

    /// The value of environment variable `name`, where set.
    pub fn env(&self, name: &str) -> Option<String> {
        nul_separated(self.environ).find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }
}

fn nul_separated(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

impl RuntimeSettings {
    /// The settings of a process of `runtime` from its command line and
    /// environment; `None` for a runtime without settings read here.
    pub fn parse(runtime: Runtime, text: ProcessText<'_>) -> Option<RuntimeSettings> {
        match runtime {
            Runtime::Go => Some(RuntimeSettings::Go(GoSettings::parse(text))),
            Runtime::Jvm => Some(RuntimeSettings::Jvm(JvmSettings::parse(text))),
            Runtime::Node => Some(RuntimeSettings::Node(NodeSettings::parse(text))),
            _ => None,
        }
    }

    pub fn unknown(reason: impl Into<String>) -> RuntimeSettings {
        RuntimeSettings::Unknown {
            reason: reason.into(),
        }
    }

    pub fn go(&self) -> Option<&GoSettings> {
        match self {
            RuntimeSettings::Go(g) => Some(g),
            _ => None,
        }
    }

    pub fn jvm(&self) -> Option<&JvmSettings> {
        match self {
            RuntimeSettings::Jvm(j) => Some(j),
            _ => None,
        }
    }

    pub fn node(&self) -> Option<&NodeSettings> {
        match self {
            RuntimeSettings::Node(n) => Some(n),
            _ => None,
        }
    }
}

/// One line, as `agent top`'s detail view shows it, e.g. `GOGC 150 (env) ·
/// GOMEMLIMIT 300 MiB (env) · GOMAXPROCS 1 (env)`.
impl fmt::Display for RuntimeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = match self {
            RuntimeSettings::Go(g) => g.parts(),
            RuntimeSettings::Jvm(j) => j.parts(),
            RuntimeSettings::Node(n) => n.parts(),
            RuntimeSettings::Unknown { reason } => {
                return write!(f, "settings unknown: {reason}");
            }
        };
        f.write_str(&parts.join(" · "))
    }
}

/// `what (source)`.
fn part(what: impl fmt::Display, source: Source) -> String {
    format!("{what} ({})", source.name())
}

/// Bytes in the largest binary unit that divides them evenly (up to GiB),
/// else MiB with one decimal: settings are usually round.
pub fn bytes_text(bytes: u64) -> String {
    const KIB: u64 = 1024;
    for (unit, size) in [("GiB", KIB * KIB * KIB), ("MiB", KIB * KIB), ("KiB", KIB)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    if bytes >= KIB * KIB {
        format!("{:.1} MiB", bytes as f64 / (KIB * KIB) as f64)
    } else {
        format!("{bytes} B")
    }
}
