//! Go's GC settings from the environment, parsed as the Go runtime parses
//! them (`runtime/mgcpacer.go` `readGOGC`, `readGOMEMLIMIT`,
//! `runtime/proc.go` for `GOMAXPROCS`).
//!
//! A program can change all three at run time (`debug.SetGCPercent`,
//! `debug.SetMemoryLimit`, `runtime.GOMAXPROCS`); its environment cannot
//! show that, so these are the values it started with.
use serde::Serialize;

use super::{ProcessText, Setting, Source, bytes_text, part};

/// `GOGC`: a percentage, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gogc {
    Percent(u32),
    Off,
}

/// The runtime's default GOGC.
pub const DEFAULT_GOGC: u32 = 100;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoSettings {
    /// Always known once the environment was read: unset means 100.
    pub gogc: Setting<Gogc>,
    /// `None` value: no limit (unset, or `off`).
    pub gomemlimit_bytes: Setting<Option<u64>>,
    /// `None` value: unset, so the runtime's default (the CPUs it may use;
    /// since Go 1.25 also bounded by the cgroup's CPU limit).
    pub gomaxprocs: Setting<Option<u32>>,
    /// What the environment held that the runtime would refuse or ignore.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
}

impl GoSettings {
    pub fn parse(text: ProcessText<'_>) -> GoSettings {
        let mut caveats = Vec::new();
        let gogc = match text.env("GOGC") {
            None => Setting::new(Gogc::Percent(DEFAULT_GOGC), Source::Default),
            Some(v) => Setting::new(parse_gogc(&v), Source::Env),
        };
        let gomemlimit_bytes = match text.env("GOMEMLIMIT") {
            None => Setting::new(None, Source::Default),
            Some(v) => match parse_gomemlimit(&v) {
                Some(limit) => Setting::new(limit, Source::Env),
                None => {
                    // The runtime refuses to start with it; seen here only
                    // if the program set it for itself after starting.
                    caveats.push(format!("GOMEMLIMIT={v:?} is not a limit Go accepts"));
                    Setting::new(None, Source::Default)
                }
            },
        };
        let gomaxprocs = match text.env("GOMAXPROCS") {
            None => Setting::new(None, Source::Default),
            Some(v) => match v.trim().parse::<i32>() {
                Ok(n) if n > 0 => Setting::new(Some(n as u32), Source::Env),
                _ => {
                    caveats.push(format!("GOMAXPROCS={v:?} is ignored by Go"));
                    Setting::new(None, Source::Default)
                }
            },
        };
        GoSettings {
            gogc,
            gomemlimit_bytes,
            gomaxprocs,
            caveats,
        }
    }

    /// `GOGC` as `CurrentSettings` takes it: the percent, 0 for off.
    pub fn gogc_percent(&self) -> u32 {
        match self.gogc.value {
            Gogc::Percent(p) => p,
            Gogc::Off => 0,
        }
    }

    pub(super) fn parts(&self) -> Vec<String> {
        let gogc = match self.gogc.value {
            Gogc::Percent(p) => format!("GOGC {p}"),
            Gogc::Off => "GOGC off".to_owned(),
        };
        let limit = match self.gomemlimit_bytes.value {
            Some(b) => format!("GOMEMLIMIT {}", bytes_text(b)),
            None => "GOMEMLIMIT none".to_owned(),
        };
        let procs = match self.gomaxprocs.value {
            Some(n) => format!("GOMAXPROCS {n}"),
            None => "GOMAXPROCS = CPUs".to_owned(),
        };
        let mut parts = vec![
            part(gogc, self.gogc.source),
            part(limit, self.gomemlimit_bytes.source),
            part(procs, self.gomaxprocs.source),
        ];
        parts.extend(self.caveats.iter().cloned());
        parts
    }
}

/// `readGOGC`: "off" is off, an integer is the percent (negative is off
/// too), anything else is the default.
pub fn parse_gogc(value: &str) -> Gogc {
    if value == "off" {
        return Gogc::Off;
    }
    match value.parse::<i32>() {
        Ok(n) if n < 0 => Gogc::Off,
        Ok(n) => Gogc::Percent(n as u32),
        Err(_) => Gogc::Percent(DEFAULT_GOGC),
    }
}

/// `readGOMEMLIMIT` (`parseByteCount`): "off" (no limit), or a number of
/// bytes with an optional `B`, `KiB`, `MiB`, `GiB` or `TiB` suffix.
/// `Some(None)` is no limit; `None` is malformed.
pub fn parse_gomemlimit(value: &str) -> Option<Option<u64>> {
    if value == "off" {
        return Some(None);
    }
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        None => (value, 1u64),
        Some(at) => {
            let unit = match &value[at..] {
                "B" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                "TiB" => 1 << 40,
                _ => return None,
            };
            (&value[..at], unit)
        }
    };
    if digits.is_empty() {
        return None;
    }
    let bytes = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    // Go's limit is an int64; math.MaxInt64 is its "no limit".
    if bytes > i64::MAX as u64 {
        return None;
    }
    Some((bytes != i64::MAX as u64).then_some(bytes))
}
