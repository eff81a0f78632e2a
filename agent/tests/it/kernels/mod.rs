//! The agent on other kernels and CPUs: Debian's cloud kernels (5.10, below
//! Tally's floor; 6.1, the long-term line of EKS's AL2023 and Bottlerocket;
//! 6.12) and Ubuntu's 5.15 (the floor) booted under qemu with software
//! emulation (TCG: this VM has no nested KVM), for amd64 and arm64, beside
//! this machine's own kernel.
//!
//! Each guest boots an initramfs of busybox, the agent, the static C
//! workload and a static Go program, and runs `tests/guest/scenario.sh`
//! from `tests/guest/init`, which leaves tracefs unmounted as a host that
//! booted without anyone's setup does. The host runs the same script. Each
//! run is checked as the data-path test checks this kernel
//! (`datapath::alloc_deviations`: the workload's own counts and its
//! /proc/self/stat), and Go's GC cycles against its own gctrace.
//!
//! - `debian_6_1_amd64_counts_as_on_this_kernel` (the suite): the 6.1 amd64
//!   guest with the agent this build made, both syscall attach types
//!   (about 26 s).
//! - `matrix` (`cargo xtask kernels`): every fetched kernel, both
//!   architectures, with the static binaries of `cargo xtask dist`, each
//!   syscall attach type, and the host; its table goes to
//!   `$TALLY_KERNELS_TABLE` (the README quotes it).
mod guest;
mod row;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use guest::{Arch, Bins, Kernel, boot, fetched, initramfs, kernels_dir, on_host};
use row::{Row, TABLE_HEAD};

use crate::common;

/// Lines below Tally's floor (5.15). There, syscall hooks may be missing
/// (the tracepoint programs call `bpf_get_current_task_btf`, 5.11, and
/// `bpf_task_pt_regs`, 5.15), each named with the kernel's reason; what
/// attached must count exactly, and the rest (CPU samples, faults, exec and
/// exit, Go's uprobe) must work.
const BELOW_FLOOR: &[&str] = &["debian-5.10"];
/// Boots one kernel with these binaries and checks the run.
fn guest_row(kernel: &Kernel, bins: &Bins, agent_args: &[&str]) -> Row {
    let image = initramfs(kernel, bins, agent_args);
    let start = Instant::now();
    let text = boot(kernel, &image);
    let row = Row::check(
        format!("{} ({})", kernel.line, kernel.release),
        kernel.arch,
        agent_args,
        BELOW_FLOOR.contains(&kernel.line.as_str()),
        &text,
        start.elapsed().as_secs_f64(),
    );
    if !row.problems.is_empty() {
        eprintln!(
            "--- {} {} printed:\n{text}",
            kernel.line,
            kernel.arch.name()
        );
    }
    row
}

/// Fails naming each problem, with the table.
fn assert_rows_ok(rows: &[Row]) {
    let table = format!(
        "{TABLE_HEAD}\n{}",
        rows.iter()
            .map(Row::markdown)
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("{table}");
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| !r.problems.is_empty())
        .map(|r| {
            format!(
                "{} {} [{}]: {}",
                r.kernel,
                r.arch,
                r.agent_args,
                r.problems.join("; ")
            )
        })
        .collect();
    assert!(bad.is_empty(), "kernel matrix:\n{}", bad.join("\n"));
}

fn require_kernel(line: &str, arch: Arch, test: &str) -> Option<Kernel> {
    let found = fetched()
        .into_iter()
        .find(|k| k.line == line && k.arch == arch);
    if found.is_none() {
        let why = format!(
            "{test}: no {line} {} kernel in {} (`cargo xtask setup` fetches it)",
            arch.name(),
            kernels_dir().display()
        );
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("SKIP {why}");
    }
    found
}

/// Debian's 6.1 amd64 cloud kernel, the line of EKS's AL2023 default and
/// Bottlerocket: every hook attaches (tracefs mounted by the agent), the
/// counts are what the workload and the kernel say, at fexit and at the
/// tracepoints, and a Go process's GC cycles are its gctrace's. With the
/// agent this build made.
#[test]
fn debian_6_1_amd64_counts_as_on_this_kernel() {
    let test = "debian_6_1_amd64_counts_as_on_this_kernel";
    if !common::require_root(test)
        || !common::require("qemu-system-x86_64", test)
        || !common::require("go", test)
    {
        return;
    }
    let Some(kernel) = require_kernel("debian-6.1", Arch::Amd64, test) else {
        return;
    };
    let _serial = common::serial();
    let bins = Bins::new(Arch::Amd64, PathBuf::from(env!("CARGO_BIN_EXE_agent")));
    let rows = ATTACH_VARIANTS.map(|args| guest_row(&kernel, &bins, args));
    assert_rows_ok(&rows);
    // 6.1 permits fexit (this VM's kernel does not): the default takes it,
    // and both attach types counted the same, exactly.
    assert_eq!(rows[0].syscall_hooks, "fexit (5 of 5)");
    assert_eq!(rows[1].syscall_hooks, "tracepoint (as asked)");
}

/// Agent arguments of each run: the default (fexit where the kernel
/// permits it), then the syscall hooks at the tracepoints.
const ATTACH_VARIANTS: [&[&str]; 2] = [&[], &["--syscall-hooks", "tracepoint"]];

/// `cargo xtask kernels`: every fetched kernel and this one, both
/// architectures, with the static binaries in `$TALLY_KERNELS_DIST`; the
/// table goes to `$TALLY_KERNELS_TABLE`.
#[test]
#[ignore = "cargo xtask kernels: about 4 minutes of emulated guests"]
fn matrix() {
    let test = "matrix";
    if !common::require_root(test) {
        return;
    }
    let dist = PathBuf::from(
        std::env::var_os("TALLY_KERNELS_DIST").expect("TALLY_KERNELS_DIST (cargo xtask kernels)"),
    );
    let _serial = common::serial();
    let kernels = fetched();
    assert!(
        !kernels.is_empty(),
        "no kernels in {}",
        kernels_dir().display()
    );
    let mut rows = Vec::new();
    for arch in Arch::ALL {
        let bins = Bins::new(arch, dist.join(format!("linux-{}/agent", arch.name())));
        for kernel in kernels.iter().filter(|k| k.arch == arch) {
            for args in ATTACH_VARIANTS {
                rows.push(guest_row(kernel, &bins, args));
                eprintln!("{}", rows.last().unwrap().markdown());
            }
        }
        if arch == Arch::host() {
            for args in ATTACH_VARIANTS {
                rows.push(host_row(&bins, args));
                eprintln!("{}", rows.last().unwrap().markdown());
            }
        }
    }
    if let Some(path) = std::env::var_os("TALLY_KERNELS_TABLE") {
        let mut table = format!("{TABLE_HEAD}\n");
        for r in &rows {
            let _ = writeln!(table, "{}", r.markdown());
        }
        fs::write(&path, table).unwrap();
    }
    assert_rows_ok(&rows);
}

/// The scenario on this machine's kernel, with program statistics on for
/// the run (and put back after).
fn host_row(bins: &Bins, agent_args: &[&str]) -> Row {
    let stats = Path::new("/proc/sys/kernel/bpf_stats_enabled");
    let before = fs::read_to_string(stats).unwrap_or_default();
    let _ = fs::write(stats, "1");
    let start = Instant::now();
    let text = on_host(bins, agent_args);
    let _ = fs::write(stats, before.trim());
    let release = Command::new("uname").arg("-r").output().unwrap();
    Row::check(
        format!("host ({})", String::from_utf8_lossy(&release.stdout).trim()),
        Arch::host(),
        agent_args,
        false,
        &text,
        start.elapsed().as_secs_f64(),
    )
}
