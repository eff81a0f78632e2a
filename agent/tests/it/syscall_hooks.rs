//! `--syscall-hooks`: where the allocation syscalls are counted (fexit on
//! the kernel's syscall functions, or the `syscalls:sys_exit_*`
//! tracepoints), and what the agent says about it. On a kernel that refuses
//! fexit loads (this VM's: EPERM) `auto` falls back to the tracepoints and
//! `fexit` leaves the five hooks missing, each with the kernel's reason; on a
//! kernel that permits fexit both count at fexit.
use crate::{
    common::{self, Agent, run_workload, sum, windows_of},
    datapath::AllocRun,
};

const SYSCALLS: [&str; 5] = ["mmap", "munmap", "brk", "mremap", "madvise"];

/// The agent's one line on how the syscall hooks attached.
fn summary_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("syscall hooks: "))
        .collect();
    assert_eq!(lines.len(), 1, "one syscall hooks line; stderr:\n{stderr}");
    lines[0]
}

/// `auto`: fexit where the kernel permits it, else the tracepoints; either
/// way every hook attaches and the counts match the workload's own.
#[test]
fn auto_uses_fexit_or_falls_back_and_counts_exactly() {
    if !common::require_root("auto_uses_fexit_or_falls_back_and_counts_exactly") {
        return;
    }
    let _serial = common::serial();
    let run = AllocRun::start(&["--syscall-hooks", "auto"]);
    let line = summary_line(&run.stderr);
    assert!(
        line.ends_with("syscall hooks: fexit (5 of 5)")
            || line.contains("syscall hooks: tracepoint (fexit refused: __"),
        "{line}"
    );
    assert!(
        run.stderr.contains("probes attached (8 of 8 hooks)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("unavailable ("), "{}", run.stderr);
    run.assert_counts_match();
}

/// `fexit` on a kernel that refuses it: the five hooks are reported missing
/// with the kernel's reason, the rest keeps working; where the kernel
/// permits fexit, all five attach there and count.
#[test]
fn forced_fexit_reports_refused_hooks_missing_with_the_reason() {
    if !common::require_root("forced_fexit_reports_refused_hooks_missing_with_the_reason") {
        return;
    }
    let _serial = common::serial();
    let agent = Agent::start(&["--syscall-hooks", "fexit"]);
    let report = run_workload(None, &["alloc", "500", "4"]);
    let (lines, stderr, status) = agent.stop();
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    let windows = windows_of(&lines, report["pid"].as_u64().unwrap());
    assert!(!windows.is_empty(), "stderr:\n{stderr}");
    let line = summary_line(&stderr);
    if line.ends_with("syscall hooks: fexit (5 of 5)") {
        assert!(
            stderr.contains("probes attached (8 of 8 hooks)"),
            "{stderr}"
        );
        for syscall in SYSCALLS {
            let calls = format!("{syscall}_calls");
            assert!(sum(&windows, &calls) >= report[&calls].as_f64().unwrap());
        }
        return;
    }
    assert!(
        line.contains("syscall hooks: none (fexit refused: __"),
        "{line}"
    );
    assert!(
        stderr.contains("probes attached (3 of 8 hooks)"),
        "{stderr}"
    );
    for syscall in SYSCALLS {
        let warning = stderr
            .lines()
            .find(|l| l.contains("WARN") && l.contains(&format!("_sys_{syscall} unavailable (")))
            .unwrap_or_else(|| panic!("no warning for fexit on {syscall}; stderr:\n{stderr}"));
        assert!(warning.contains("fexit __"), "{warning}");
        assert!(
            warning.contains(&format!("disabled: {syscall}_calls")),
            "{warning}"
        );
        assert_eq!(sum(&windows, &format!("{syscall}_calls")), 0.0);
    }
    // The rest keeps counting: faults come from the kernel's own counters.
    common::assert_within(
        "minor_faults",
        sum(&windows, "minor_faults"),
        report["minor_faults"].as_f64().unwrap(),
        0.01,
    );
}
