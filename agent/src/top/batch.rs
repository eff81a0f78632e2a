//! `agent top --batch`: one JSON object a line, or an aligned table with
//! human units, per window. Pure formatting; the loop is in `top/mod.rs`.
use std::{fmt::Write as _, time::SystemTime};

use serde::Serialize;

use crate::model::Window;

/// One line of `--json` output. Field names are the ones DESIGN.md fixes;
/// fields after `exited` are additions.
#[derive(Debug, Serialize)]
pub struct WindowRecord<'a> {
    pub ts: String,
    pub window_seconds: f64,
    pub pid: u32,
    pub comm: &'a str,
    pub cgroup_id: Option<u64>,
    pub cgroup_path: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub cpu_samples: u64,
    pub cpu_seconds: f64,
    pub mmap_calls: u64,
    pub mmap_bytes: u64,
    pub munmap_calls: u64,
    pub munmap_bytes: u64,
    pub brk_calls: u64,
    pub brk_bytes: u64,
    pub mremap_calls: u64,
    pub madvise_calls: u64,
    pub madvise_dontneed_bytes: u64,
    pub madvise_free_bytes: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    pub rss_bytes: u64,
    pub exited: bool,
    /// Start of the process, clock ticks after boot (field 22 of
    /// `/proc/<pid>/stat`): with `pid`, the process's identity.
    pub start_ticks: u64,
    pub mremap_bytes: u64,
    pub madvise_other_bytes: u64,
    pub container_runtime: Option<&'static str>,
    pub pod_uid: Option<&'a str>,
    pub qos_class: Option<&'static str>,
}

impl<'a> WindowRecord<'a> {
    pub fn new(w: &'a Window, ts: &str) -> Self {
        let container = w.cgroup.as_ref().and_then(|c| c.container.as_ref());
        let d = &w.delta;
        Self {
            ts: ts.to_string(),
            window_seconds: round_to(w.seconds, 3),
            pid: w.key.tgid,
            comm: &w.comm,
            cgroup_id: w.cgroup_id,
            cgroup_path: w.cgroup.as_ref().map(|c| c.path.as_str()),
            container_id: container.map(|c| c.id.as_str()),
            cpu_samples: d.cpu_samples,
            cpu_seconds: round_to(w.cpu_seconds, 6),
            mmap_calls: d.mmap_calls,
            mmap_bytes: d.mmap_bytes,
            munmap_calls: d.munmap_calls,
            munmap_bytes: d.munmap_bytes,
            brk_calls: d.brk_calls,
            brk_bytes: d.brk_bytes,
            mremap_calls: d.mremap_calls,
            madvise_calls: d.madvise_calls,
            madvise_dontneed_bytes: d.madvise_dontneed_bytes,
            madvise_free_bytes: d.madvise_free_bytes,
            minor_faults: d.minor_faults,
            major_faults: d.major_faults,
            rss_bytes: w.rss_bytes,
            exited: w.exited,
            start_ticks: w.key.start_ticks,
            mremap_bytes: d.mremap_bytes,
            madvise_other_bytes: d.madvise_other_bytes,
            container_runtime: container.map(|c| runtime_name(c.runtime)),
            pod_uid: container.and_then(|c| c.pod_uid.as_deref()),
            qos_class: container.and_then(|c| c.qos).map(qos_name),
        }
    }
}

fn runtime_name(r: crate::enrich::container::Runtime) -> &'static str {
    use crate::enrich::container::Runtime::*;
    match r {
        Containerd => "containerd",
        CriO => "cri-o",
        Docker => "docker",
        Podman => "podman",
    }
}

fn qos_name(q: crate::enrich::container::QosClass) -> &'static str {
    use crate::enrich::container::QosClass::*;
    match q {
        Guaranteed => "guaranteed",
        Burstable => "burstable",
        BestEffort => "besteffort",
    }
}

fn round_to(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Orders windows the way the table shows them: busiest first.
pub fn sort_windows(windows: &mut [Window]) {
    windows.sort_by(|a, b| {
        b.delta
            .cpu_samples
            .cmp(&a.delta.cpu_samples)
            .then(b.delta.minor_faults.cmp(&a.delta.minor_faults))
            .then(a.key.tgid.cmp(&b.key.tgid))
    });
}

/// The JSON lines of one tick.
pub fn json_lines(windows: &[Window], at: SystemTime) -> Vec<String> {
    let ts = rfc3339(at);
    windows
        .iter()
        .map(|w| {
            serde_json::to_string(&WindowRecord::new(w, &ts)).expect("a record always serializes")
        })
        .collect()
}

/// The table of one tick, with a header line of node totals.
/// `lost` is the number of kernel-side updates lost in this window (full
/// maps or ring buffer); the header shows it when it is not zero.
pub fn table(windows: &[Window], at: SystemTime, seconds: f64, lost: u64) -> String {
    let secs = seconds.max(1e-9);
    let rate = |v: u64| v as f64 / secs;
    let sum = |f: fn(&Window) -> u64| windows.iter().map(f).sum::<u64>();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tally top - {}  window {:.2}s  processes {}  cpu {:.2}s  faults {}/s  mmap {}/s  madvise(DONTNEED) {}/s",
        rfc3339(at),
        seconds,
        windows.len(),
        windows.iter().map(|w| w.cpu_seconds).sum::<f64>(),
        count(rate(sum(|w| w.delta.minor_faults + w.delta.major_faults))),
        bytes(rate(sum(|w| w.delta.mmap_bytes))),
        bytes(rate(sum(|w| w.delta.madvise_dontneed_bytes))),
    );
    if lost > 0 {
        out.insert_str(
            out.len() - 1,
            &format!("  LOST {lost} updates (see warnings)"),
        );
    }
    let _ = writeln!(
        out,
        "{:>7} {:<16} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}  CONTAINER/CGROUP",
        "PID",
        "COMM",
        "CPU%",
        "MINFLT",
        "MAJFLT",
        "MMAP",
        "MUNMAP",
        "BRK",
        "MREMAP",
        "MADV",
        "MAPPED",
        "DONTNEED",
        "RSS",
    );
    for w in windows {
        let d = &w.delta;
        let where_ = match w.cgroup.as_ref() {
            Some(c) => match &c.container {
                Some(k) => k.id.chars().take(12).collect(),
                None => c.path.clone(),
            },
            None => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{:>7} {:<16} {:>6.1} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}  {}",
            w.key.tgid,
            fit(&w.comm, 16),
            100.0 * w.cpu_seconds / secs,
            count(rate(d.minor_faults)),
            count(rate(d.major_faults)),
            count(rate(d.mmap_calls)),
            count(rate(d.munmap_calls)),
            count(rate(d.brk_calls)),
            count(rate(d.mremap_calls)),
            count(rate(d.madvise_calls)),
            bytes(rate(d.mmap_bytes)),
            bytes(rate(d.madvise_dontneed_bytes)),
            if w.exited {
                "exited".to_string()
            } else {
                bytes(w.rss_bytes as f64)
            },
            where_,
        );
    }
    out
}

/// Truncates to `width` characters (not bytes), so a long or odd name never
/// shifts the columns after it. Control characters become `?`.
fn fit(s: &str, width: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(width)
        .collect()
}

/// A rate or count with k/M/G suffixes: 950, 1.2k, 34M.
pub fn count(v: f64) -> String {
    scaled(v, 1000.0, &["", "k", "M", "G", "T"])
}

/// Bytes with binary units: 512B, 1.5Ki, 34Mi.
pub fn bytes(v: f64) -> String {
    scaled(v, 1024.0, &["B", "Ki", "Mi", "Gi", "Ti"])
}

fn scaled(mut v: f64, base: f64, units: &[&str]) -> String {
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    if i == 0 || v >= 100.0 {
        format!("{:.0}{}", v, units[i])
    } else {
        format!("{:.1}{}", v, units[i])
    }
}

/// `2026-11-27T01:30:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{
        enrich::{cgroup::CgroupInfo, container},
        model::{Counters, ProcKey},
    };

    fn window(pid: u32, comm: &str, path: &str) -> Window {
        Window {
            key: ProcKey {
                tgid: pid,
                start_ticks: 500,
            },
            comm: comm.into(),
            cgroup_id: Some(99),
            cgroup: Some(Arc::new(CgroupInfo {
                id: 99,
                path: path.into(),
                container: container::parse(path),
            })),
            seconds: 2.0,
            delta: Counters {
                cpu_samples: 99,
                minor_faults: 2048,
                mmap_calls: 10,
                mmap_bytes: 655_360,
                ..Default::default()
            },
            cpu_seconds: 1.0,
            rss_bytes: 3 << 20,
            exited: false,
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_743_000_123);
        assert_eq!(rfc3339(t), "2026-11-27T01:30:00.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn units() {
        assert_eq!(count(950.0), "950");
        assert_eq!(count(1234.0), "1.2k");
        assert_eq!(count(123_456.0), "123k");
        assert_eq!(bytes(512.0), "512B");
        assert_eq!(bytes(1536.0), "1.5Ki");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0Gi");
    }

    #[test]
    fn json_has_the_agreed_fields_in_order() {
        let id = "a".repeat(64);
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f8e2c3a_4b5d_4e6f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{id}.scope"
        );
        let lines = json_lines(&[window(42, "java", &path)], SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let agreed = [
            "ts",
            "window_seconds",
            "pid",
            "comm",
            "cgroup_id",
            "cgroup_path",
            "container_id",
            "cpu_samples",
            "cpu_seconds",
            "mmap_calls",
            "mmap_bytes",
            "munmap_calls",
            "munmap_bytes",
            "brk_calls",
            "brk_bytes",
            "mremap_calls",
            "madvise_calls",
            "madvise_dontneed_bytes",
            "madvise_free_bytes",
            "minor_faults",
            "major_faults",
            "rss_bytes",
            "exited",
        ];
        // In this order, at the start of the line.
        let positions: Vec<usize> = agreed
            .iter()
            .map(|k| {
                lines[0]
                    .find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("no {k}"))
            })
            .collect();
        assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
        assert_eq!(positions[0], 1);
        assert_eq!(v["container_id"], id.as_str());
        assert_eq!(v["pod_uid"], "1f8e2c3a-4b5d-4e6f-8a9b-0c1d2e3f4a5b");
        assert_eq!(v["qos_class"], "burstable");
        assert_eq!(v["container_runtime"], "containerd");
        assert_eq!(v["cpu_seconds"], 1.0);
    }

    #[test]
    fn json_container_id_is_null_outside_containers() {
        let lines = json_lines(
            &[window(1, "systemd", "/init.scope")],
            SystemTime::UNIX_EPOCH,
        );
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert!(v["container_id"].is_null());
        assert_eq!(v["cgroup_path"], "/init.scope");
    }

    #[test]
    fn table_columns_stay_aligned_with_odd_names() {
        let long = "a-very-long-name-that-goes-on\u{7}\u{fffd}";
        let t = table(
            &[window(1, "x", "/a"), window(123_456, long, "/b")],
            SystemTime::UNIX_EPOCH,
            2.0,
            0,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        // RSS column ends at the same character column on every row.
        let rss_end = |l: &str| l.chars().count() - l.split("  ").last().unwrap().chars().count();
        assert_eq!(rss_end(lines[2]), rss_end(lines[3]));
        assert!(lines[3].contains("a-very-long-name"));
        assert!(!lines[3].contains('\u{7}'));
        assert!(lines[2].contains(" 50.0 "), "{}", lines[2]); // 1 s of CPU in 2 s
        assert!(!lines[0].contains("LOST"));
        let lossy = table(&[window(1, "x", "/a")], SystemTime::UNIX_EPOCH, 1.0, 7);
        assert!(
            lossy
                .lines()
                .next()
                .unwrap()
                .ends_with("LOST 7 updates (see warnings)"),
            "{lossy}"
        );
    }
}
