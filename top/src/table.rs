//! The aligned table of `agent top --batch` without `--json`.
use std::{fmt::Write as _, time::SystemTime};

use super::format::{bytes, count, fit, rfc3339};
use tally_core::model::Window;

/// Hooks that did not attach, of how many the node has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HooksMissing {
    pub missing: usize,
    pub of: usize,
}

/// The table of one tick, with a header line of node totals.
/// `lost` is the number of kernel-side updates lost in this window (full
/// maps or ring buffer); the header shows it when it is not zero, and the
/// hooks that could not attach (`missing_hooks`), whose columns then read 0.
pub fn table(
    windows: &[Window],
    at: SystemTime,
    seconds: f64,
    lost: u64,
    hooks: HooksMissing,
) -> String {
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
    if hooks.missing > 0 {
        out.insert_str(
            out.len() - 1,
            &format!(
                "  HOOKS MISSING {} of {} (see warnings)",
                hooks.missing, hooks.of
            ),
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
        let where_ = match (w.pod.as_ref(), w.cgroup.as_ref()) {
            (Some(pod), _) => pod.display_name(),
            (None, Some(c)) => match &c.container {
                Some(k) => k.id.chars().take(12).collect(),
                None => c.path.clone(),
            },
            (None, None) => "-".to_string(),
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
#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::testing::test_window as window;

    #[test]
    fn table_columns_stay_aligned_with_odd_names() {
        let long = "a-very-long-name-that-goes-on\u{7}\u{fffd}";
        let t = table(
            &[window(1, "x", "/a"), window(123_456, long, "/b")],
            SystemTime::UNIX_EPOCH,
            2.0,
            0,
            HooksMissing::default(),
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
        assert!(!lines[0].contains("HOOKS"));
        let lossy = table(
            &[window(1, "x", "/a")],
            SystemTime::UNIX_EPOCH,
            1.0,
            7,
            HooksMissing::default(),
        );
        assert!(
            lossy
                .lines()
                .next()
                .unwrap()
                .ends_with("LOST 7 updates (see warnings)"),
            "{lossy}"
        );
        let hooks = HooksMissing { missing: 7, of: 8 };
        let blind = table(
            &[window(1, "x", "/a")],
            SystemTime::UNIX_EPOCH,
            1.0,
            0,
            hooks,
        );
        assert!(
            blind
                .lines()
                .next()
                .unwrap()
                .ends_with("HOOKS MISSING 7 of 8 (see warnings)"),
            "{blind}"
        );
    }
}
