//! The columns of the interactive table: one registry that the state (sort
//! keys) and the rendering (titles, widths, cells) both read. A new column
//! (the cost column of the cost model) is one more [`Column`] variant and one
//! more entry in [`Column::spec`]; sorting, the sort menu, the help screen
//! and the narrow-terminal layout pick it up from here.
use std::cmp::Ordering;

use super::{
    format::{bytes, count, money},
    rows::{Entry, RowKind},
};
use tally_core::gc::VerdictKind;

/// Where the rows come from: some numbers exist only locally (the collector
/// keeps per-workload summaries, not every syscall counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// This node, through the probes (or synthetic data shaped like them).
    Local,
    /// The cluster, through a collector's watch stream.
    Remote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Pid,
    Procs,
    Name,
    Node,
    Runtime,
    Cpu,
    Gc,
    Verdict,
    Alloc,
    Mmap,
    Munmap,
    Madvise,
    Brk,
    Minflt,
    Majflt,
    Faults,
    Rss,
    MemStall,
    Cost,
    Container,
}

/// Display order, left to right.
pub const ALL: [Column; 20] = [
    Column::Pid,
    Column::Procs,
    Column::Name,
    Column::Node,
    Column::Runtime,
    Column::Cpu,
    Column::Gc,
    Column::Verdict,
    Column::Alloc,
    Column::Mmap,
    Column::Munmap,
    Column::Madvise,
    Column::Brk,
    Column::Minflt,
    Column::Majflt,
    Column::Faults,
    Column::Rss,
    Column::MemStall,
    Column::Cost,
    Column::Container,
];

/// Static description of a column.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub title: &'static str,
    /// Width in cells; the NAME column takes what is left (at least this).
    pub width: u16,
    pub right: bool,
    /// Lower is more important: on a narrow terminal the columns with the
    /// highest numbers go first.
    pub priority: u8,
    /// Numbers sort largest first by default, text A to Z.
    pub descending_first: bool,
    /// What the help screen and the sort menu say about it.
    pub help: &'static str,
}

impl Column {
    pub fn spec(self) -> Spec {
        let num = |title, width, priority, help| Spec {
            title,
            width,
            right: true,
            priority,
            descending_first: true,
            help,
        };
        let text = |title, width, priority, help| Spec {
            title,
            width,
            right: false,
            priority,
            descending_first: false,
            help,
        };
        match self {
            Column::Pid => num("PID", 7, 1, "process id"),
            Column::Procs => num("PROCS", 6, 1, "processes in the group"),
            Column::Name => text("NAME", 16, 0, "command, container or pod"),
            Column::Node => text("NODE", 12, 3, "node(s) the workload runs on"),
            Column::Runtime => text("RUNTIME", 8, 9, "go, jvm, node, dotnet, python, native"),
            Column::Cpu => num("CPU%", 6, 2, "CPU, % of one core"),
            Column::Gc => num("GC%", 5, 4, "share of its CPU spent in GC"),
            Column::Verdict => Spec {
                descending_first: true,
                ..text("VERDICT", 11, 3, "gc-heavy, alloc-churn, steady, idle")
            },
            Column::Alloc => num(
                "ALLOC MB/s",
                11,
                6,
                "bytes asked of the kernel (mmap, brk, mremap), MB/s",
            ),
            Column::Mmap => num("MMAP/s", 7, 11, "mmap calls/s"),
            Column::Munmap => num("MUNMAP/s", 9, 12, "munmap calls/s"),
            Column::Madvise => num("MADV/s", 7, 13, "madvise calls/s"),
            Column::Brk => num("BRK/s", 6, 14, "brk calls/s"),
            Column::Minflt => num("MINFLT/s", 9, 7, "minor page faults/s"),
            Column::Majflt => num("MAJFLT/s", 9, 8, "major page faults/s"),
            Column::Faults => num("FAULTS/s", 9, 7, "page faults/s, minor and major"),
            Column::Rss => num("RSS", 7, 5, "resident memory"),
            Column::MemStall => num(
                "MEMSTALL%",
                9,
                10,
                "share of the window its container stalled waiting for memory (PSI some)",
            ),
            Column::Cost => num(
                "$/MO",
                7,
                6,
                "USD a month at this CPU and RSS, at the node's instance price",
            ),
            Column::Container => text(
                "CONTAINER",
                14,
                15,
                "container id, else the cgroup's last part",
            ),
        }
    }

    /// Whether the column exists for these rows. Remote rows carry the
    /// collector's summaries: no per-syscall counts, faults not split.
    pub fn available(self, source: SourceKind, kind: RowKind) -> bool {
        let local = source == SourceKind::Local;
        match self {
            Column::Pid => kind == RowKind::Process,
            Column::Procs => kind == RowKind::Group,
            Column::Node => !local,
            Column::Mmap
            | Column::Munmap
            | Column::Madvise
            | Column::Brk
            | Column::Minflt
            | Column::Majflt => local,
            Column::Faults => !local,
            Column::Container => local && kind == RowKind::Process,
            Column::Name
            | Column::Runtime
            | Column::Cpu
            | Column::Gc
            | Column::Verdict
            | Column::Alloc
            | Column::Rss
            | Column::MemStall
            | Column::Cost => true,
        }
    }

    /// The cell text of an entry.
    pub fn cell(self, e: &Entry) -> String {
        match self {
            Column::Pid => e.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            Column::Procs => e.procs.to_string(),
            Column::Name => e.name.clone(),
            Column::Node => e.node.clone(),
            Column::Runtime => e.runtime.name().to_string(),
            Column::Cpu => format!("{:.1}", e.cpu_pct),
            Column::Gc => {
                if e.runtime.has_gc() || e.gc_pct > 0.0 {
                    format!("{:.1}", e.gc_pct)
                } else {
                    "-".into()
                }
            }
            Column::Verdict => e.verdict.map_or("-", VerdictKind::name).to_string(),
            Column::Alloc => megabytes(e.alloc_bps),
            Column::Mmap => count(e.mmap_ps),
            Column::Munmap => count(e.munmap_ps),
            Column::Madvise => count(e.madvise_ps),
            Column::Brk => count(e.brk_ps),
            Column::Minflt => count(e.minflt_ps),
            Column::Majflt => count(e.majflt_ps),
            Column::Faults => count(e.faults_ps),
            Column::Rss => {
                if e.exited {
                    "exited".into()
                } else {
                    bytes(e.rss as f64)
                }
            }
            Column::MemStall => e
                .memory_stall_pct
                .map_or_else(|| "-".into(), |p| format!("{p:.1}")),
            Column::Cost => e.cost_month.map_or_else(|| "-".into(), money),
            Column::Container => e.container_short.clone(),
        }
    }

    /// Ascending order of two entries by this column.
    pub fn compare(self, a: &Entry, b: &Entry) -> Ordering {
        let num = |f: fn(&Entry) -> f64| f(a).total_cmp(&f(b));
        match self {
            Column::Pid => a.pid.cmp(&b.pid),
            Column::Procs => a.procs.cmp(&b.procs),
            Column::Name => a.name_lc.cmp(&b.name_lc),
            Column::Node => a.node.cmp(&b.node),
            Column::Runtime => a.runtime.name().cmp(b.runtime.name()),
            Column::Cpu => num(|e| e.cpu_pct),
            Column::Gc => num(|e| e.gc_pct),
            Column::Verdict => a
                .severity()
                .cmp(&b.severity())
                .then(a.confidence.total_cmp(&b.confidence)),
            Column::Alloc => num(|e| e.alloc_bps),
            Column::Mmap => num(|e| e.mmap_ps),
            Column::Munmap => num(|e| e.munmap_ps),
            Column::Madvise => num(|e| e.madvise_ps),
            Column::Brk => num(|e| e.brk_ps),
            Column::Minflt => num(|e| e.minflt_ps),
            Column::Majflt => num(|e| e.majflt_ps),
            Column::Faults => num(|e| e.faults_ps),
            Column::Rss => a.rss.cmp(&b.rss),
            Column::MemStall => num(|e| e.memory_stall_pct.unwrap_or(-1.0)),
            Column::Cost => num(|e| e.cost_month.unwrap_or(-1.0)),
            Column::Container => a.container_short.cmp(&b.container_short),
        }
    }
}

/// Bytes per second as MB/s (10^6, as the column title says).
pub fn megabytes(bps: f64) -> String {
    let mb = bps / 1e6;
    if mb == 0.0 {
        "0".into()
    } else if mb < 0.01 {
        "<0.01".into()
    } else if mb < 10.0 {
        format!("{mb:.2}")
    } else if mb < 1000.0 {
        format!("{mb:.1}")
    } else {
        format!("{mb:.0}")
    }
}

/// The columns that fit in `width` cells (one space between columns), in
/// display order, with their widths; the NAME column takes the rest.
/// Returns the columns and how many available ones were left out.
pub fn fit(available: &[Column], width: u16) -> (Vec<(Column, u16)>, usize) {
    let mut shown: Vec<Column> = available.to_vec();
    let need = |cols: &[Column]| -> u32 {
        cols.iter().map(|c| u32::from(c.spec().width)).sum::<u32>()
            + cols.len().saturating_sub(1) as u32
    };
    while need(&shown) > u32::from(width) && shown.len() > 1 {
        // Drop the least important column (never NAME, the last to go).
        let Some((i, _)) = shown
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != Column::Name)
            .max_by_key(|(_, c)| c.spec().priority)
        else {
            break;
        };
        shown.remove(i);
    }
    let hidden = available.len() - shown.len();
    let spare = u32::from(width).saturating_sub(need(&shown));
    let cols = shown
        .into_iter()
        .map(|c| {
            let w = c.spec().width;
            if c == Column::Name {
                (c, (u32::from(w) + spare).min(u32::from(u16::MAX)) as u16)
            } else {
                (c, w)
            }
        })
        .collect();
    (cols, hidden)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_process() -> Vec<Column> {
        ALL.into_iter()
            .filter(|c| c.available(SourceKind::Local, RowKind::Process))
            .collect()
    }

    #[test]
    fn every_issue_column_is_there_locally() {
        let titles: Vec<&str> = local_process().iter().map(|c| c.spec().title).collect();
        for t in [
            "PID",
            "NAME",
            "RUNTIME",
            "CPU%",
            "GC%",
            "VERDICT",
            "ALLOC MB/s",
            "MMAP/s",
            "MUNMAP/s",
            "MADV/s",
            "BRK/s",
            "MINFLT/s",
            "MAJFLT/s",
            "RSS",
        ] {
            assert!(titles.contains(&t), "{t} missing from {titles:?}");
        }
    }

    #[test]
    fn narrow_terminals_drop_the_least_important_columns() {
        let (cols, hidden) = fit(&local_process(), 80);
        let total: u32 =
            cols.iter().map(|(_, w)| u32::from(*w)).sum::<u32>() + cols.len() as u32 - 1;
        assert_eq!(total, 80, "the NAME column takes the rest: {cols:?}");
        let names: Vec<Column> = cols.iter().map(|(c, _)| *c).collect();
        for must in [
            Column::Pid,
            Column::Name,
            Column::Cpu,
            Column::Gc,
            Column::Verdict,
            Column::Rss,
        ] {
            assert!(names.contains(&must), "{must:?} dropped at 80: {names:?}");
        }
        assert!(hidden > 0);
        let (wide, hidden) = fit(&local_process(), 300);
        assert_eq!(hidden, 0);
        assert_eq!(wide.len(), local_process().len());
        // Absurdly narrow: NAME alone, never a panic.
        let (tiny, _) = fit(&local_process(), 5);
        assert_eq!(tiny, vec![(Column::Name, 16)]);
    }

    #[test]
    fn megabytes_are_short() {
        assert_eq!(megabytes(0.0), "0");
        assert_eq!(megabytes(5_000.0), "<0.01");
        assert_eq!(megabytes(1_234_567.0), "1.23");
        assert_eq!(megabytes(189_000_000.0), "189.0");
        assert_eq!(megabytes(12_345_000_000.0), "12345");
    }
}
