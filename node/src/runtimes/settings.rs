//! Reads a process's runtime settings (`tally_core::model::settings`):
//! its `/proc/<pid>/cmdline` and `/proc/<pid>/environ` (the same procfs
//! serves processes in containers), and for a JVM its hsperfdata, found
//! through the process's root ([`super::jvm::hsperf::find_file`]).
//!
//! One process whose files cannot be read gets settings "unknown" with the
//! reason; nothing else is affected.
use std::path::Path;

use tally_core::{
    gc::Runtime,
    model::settings::{JvmCollector, JvmHeap, JvmSettings, ProcessText, RuntimeSettings},
};

use super::jvm::hsperf::{self, PerfData};

/// The settings of process `pid` of `runtime` (under `proc_root`, normally
/// `/proc`); `None` for a runtime without settings read here.
pub fn read(proc_root: &Path, pid: u32, runtime: Runtime) -> Option<RuntimeSettings> {
    if !matches!(runtime, Runtime::Go | Runtime::Jvm | Runtime::Node) {
        return None;
    }
    let dir = proc_root.join(pid.to_string());
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|err| format!("reading /proc/{pid}/{name}: {err}"))
    };
    let (cmdline, environ) = match (read("cmdline"), read("environ")) {
        (Ok(c), Ok(e)) => (c, e),
        (Err(why), _) | (_, Err(why)) => return Some(RuntimeSettings::unknown(why)),
    };
    // An exited process (a zombie) has both empty: its settings are gone.
    if cmdline.is_empty() && environ.is_empty() {
        return Some(RuntimeSettings::unknown(format!(
            "/proc/{pid}/cmdline and environ are empty (exited?)"
        )));
    }
    let mut settings = RuntimeSettings::parse(
        runtime,
        ProcessText {
            cmdline: &cmdline,
            environ: &environ,
        },
    )?;
    if let RuntimeSettings::Jvm(jvm) = &mut settings {
        refresh_hsperfdata(proc_root, pid, jvm);
    }
    Some(settings)
}

/// Reads JVM `pid`'s hsperfdata again: the heap's current and maximum
/// capacity, and the collector in use where no option chose one. Once
/// read, a failed read (the JVM removes the file as it exits) keeps the
/// last values: they are the heap "at the last read".
pub fn refresh_hsperfdata(proc_root: &Path, pid: u32, jvm: &mut JvmSettings) {
    let read = hsperf::find_file(proc_root, pid)
        .ok_or_else(|| "no hsperfdata file (-XX:-UsePerfData?)".to_owned())
        .and_then(|path| hsperf::read(&path).map_err(|e| e.to_string()));
    match read {
        Ok(data) => {
            let collector = collector(&data);
            jvm.with_hsperfdata(collector, heap(&data, collector));
        }
        Err(why) if jvm.heap.is_none() => jvm.hsperfdata_unread = Some(why),
        Err(_) => {}
    }
}

/// The collector hsperfdata shows in use.
pub fn collector(data: &PerfData) -> Option<JvmCollector> {
    let names: Vec<&str> = data
        .counters
        .iter()
        .filter(|(name, _)| name.starts_with("sun.gc.collector.") && name.ends_with(".name"))
        .filter_map(|(name, _)| data.string(name))
        .collect();
    JvmCollector::from_hsperfdata(data.string("sun.gc.policy.name"), &names)
}

/// The heap's capacity and maximum, from the generations' counters.
pub fn heap(data: &PerfData, collector: Option<JvmCollector>) -> Option<JvmHeap> {
    JvmHeap::from_hsperfdata(|name| data.long(name), collector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_and_heap_of_recorded_jvms() {
        // Started with -XX:+UseG1GC -Xmx128m, and -XX:+UseZGC -Xmx128m.
        for (bytes, want) in [
            (
                &include_bytes!("jvm/testdata/jdk17-g1.hsperf")[..],
                JvmCollector::G1,
            ),
            (
                &include_bytes!("jvm/testdata/jdk25-zgc.hsperf")[..],
                JvmCollector::Z,
            ),
        ] {
            let data = hsperf::parse(bytes).unwrap();
            let c = collector(&data);
            assert_eq!(c, Some(want));
            let h = heap(&data, c).unwrap();
            // -Xmx128m, give or take G1's few bytes of accounting.
            assert!(
                h.max_capacity_bytes.abs_diff(128 << 20) < 64,
                "{}",
                h.max_capacity_bytes
            );
            assert!(h.capacity_bytes > 0 && h.capacity_bytes <= h.max_capacity_bytes + 64);
        }
    }

    #[test]
    fn an_unreadable_process_is_unknown() {
        let root = std::env::temp_dir().join(format!("tally-settings-{}", std::process::id()));
        let s = read(&root, 4242, Runtime::Go).unwrap();
        assert!(
            s.to_string()
                .starts_with("settings unknown: reading /proc/4242/cmdline")
        );
        assert_eq!(read(&root, 4242, Runtime::Native), None);
    }

    #[test]
    fn reads_this_process() {
        // The test binary is no Go program, but its files parse as one.
        let s = read(Path::new("/proc"), std::process::id(), Runtime::Go).unwrap();
        assert!(s.go().is_some(), "{s}");
    }
}
