//! The kernel's run statistics of each attached program, logged at exit
//! when `kernel.bpf_stats_enabled` is on: what each attach type costs per
//! run, on the machine it ran on.
use std::collections::BTreeSet;

use super::Probes;

/// Where the kernel keeps the switch; statistics cost a clock read per run,
/// so the kernel keeps them only while it is 1.
const BPF_STATS_ENABLED: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// How a program is attached, as the statistics line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachType {
    Fexit,
    Tracepoint,
    PerfEvent,
    Uprobe,
}

impl AttachType {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fexit => "fexit",
            Self::Tracepoint => "tracepoint",
            Self::PerfEvent => "perf_event",
            Self::Uprobe => "uprobe",
        }
    }
}

/// One statistics line; other tools parse it, so its format is fixed.
fn line(program: &str, attach: AttachType, run_cnt: u64, run_time_ns: u128) -> String {
    format!(
        "bpf_stats program={program} attach={} run_cnt={run_cnt} run_time_ns={run_time_ns}",
        attach.name()
    )
}

impl Probes {
    /// Prints one [`line`] per attached program to stderr if the kernel
    /// keeps statistics (nothing if it does not, or if a program's info
    /// cannot be read). Plain stderr, not the log: the line must read the
    /// same whatever `TALLY_LOG` says. Call it once, at exit.
    pub fn log_program_stats(&self) {
        let enabled = std::fs::read_to_string(BPF_STATS_ENABLED).is_ok_and(|v| v.trim() == "1");
        if !enabled {
            return;
        }
        let uprobes: BTreeSet<&'static str> = self.attached.programs().collect();
        let programs = self
            .programs
            .iter()
            .copied()
            .chain(uprobes.into_iter().map(|p| (p, AttachType::Uprobe)));
        for (name, attach) in programs {
            let Some(Ok(info)) = self.ebpf.program(name).map(|p| p.info()) else {
                continue;
            };
            eprintln!(
                "{}",
                line(name, attach, info.run_count(), info.run_time().as_nanos())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_the_format_the_kernel_matrix_parses() {
        assert_eq!(
            line("fexit_mmap", AttachType::Fexit, 12, 3400),
            "bpf_stats program=fexit_mmap attach=fexit run_cnt=12 run_time_ns=3400"
        );
        assert_eq!(
            line("cpu_clock", AttachType::PerfEvent, 0, 0),
            "bpf_stats program=cpu_clock attach=perf_event run_cnt=0 run_time_ns=0"
        );
    }
}
