//! The agent on other kernels and CPUs: Debian's cloud kernels (6.1, the
//! long-term line of EKS's AL2023 and Bottlerocket, and 6.12) booted under
//! qemu with software emulation (TCG: this VM has no nested KVM), for amd64
//! and arm64, beside this machine's own kernel.
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
//!   guest with the agent this build made (about 20 s).
//! - `matrix` (`cargo xtask kernels`): every fetched kernel, both
//!   architectures, with the static binaries of `cargo xtask dist`, each
//!   syscall attach type, and the host; its table goes to
//!   `$TALLY_KERNELS_TABLE` (the README quotes it).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    common::{self, sum, windows_of},
    datapath::{Deviation, alloc_deviations, pid_of},
};

/// Iterations of the `alloc` workload: TCG runs it about 10× slower than
/// the host (arm64 more), and 5000 × 16 pages is still 80,000 faults.
const ALLOC_ITERATIONS: &str = "5000";

/// Lines below Tally's floor (5.15). There, syscall hooks may be missing
/// (the tracepoint programs call `bpf_get_current_task_btf`, 5.11, and
/// `bpf_task_pt_regs`, 5.15), each named with the kernel's reason; what
/// attached must count exactly, and the rest (CPU samples, faults, exec and
/// exit, Go's uprobe) must work.
const BELOW_FLOOR: &[&str] = &["debian-5.10"];

/// The syscalls with a hook each.
const SYSCALLS: [&str; 5] = ["mmap", "munmap", "brk", "mremap", "madvise"];

/// A guest that has not powered off by then has hung.
const GUEST_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    fn host() -> Arch {
        match std::env::consts::ARCH {
            "aarch64" => Arch::Arm64,
            _ => Arch::Amd64,
        }
    }

    /// Debian's (and Docker's) name.
    fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    fn goarch(self) -> &'static str {
        self.name()
    }

    fn c_compiler(self) -> &'static str {
        match self {
            Arch::Amd64 => "gcc",
            Arch::Arm64 => "aarch64-linux-gnu-gcc",
        }
    }

    /// qemu for this architecture, without the kernel and initramfs.
    fn qemu(self) -> Command {
        let (program, machine, console): (&str, &[&str], &str) = match self {
            Arch::Amd64 => ("qemu-system-x86_64", &[], "ttyS0"),
            // Neoverse N1: Graviton2's core.
            Arch::Arm64 => (
                "qemu-system-aarch64",
                &["-M", "virt", "-cpu", "neoverse-n1"],
                "ttyAMA0",
            ),
        };
        let mut c = Command::new(program);
        c.args(machine)
            .args(["-m", "1024", "-smp", "2", "-nographic", "-no-reboot"])
            .arg("-append")
            .arg(format!("console={console} quiet loglevel=1 panic=-1"));
        c
    }
}

/// A kernel `cargo xtask` fetched: `target/kernels/<line>-<arch>/`.
struct Kernel {
    line: String,
    arch: Arch,
    /// `uname -r` and Debian's package version.
    release: String,
    vmlinuz: PathBuf,
    busybox: PathBuf,
}

fn kernels_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kernels")
}

/// Every fetched kernel, by line then architecture.
fn fetched() -> Vec<Kernel> {
    let dir = kernels_dir();
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((line, arch)) = name.rsplit_once('-') else {
            continue;
        };
        let Some(arch) = Arch::ALL.into_iter().find(|a| a.name() == arch) else {
            continue;
        };
        let path = entry.path();
        let Ok(release) = fs::read_to_string(path.join("release")) else {
            continue;
        };
        out.push(Kernel {
            line: line.to_string(),
            arch,
            release: release.trim().to_string(),
            vmlinuz: path.join("vmlinuz"),
            busybox: dir.join(format!("busybox-{}", arch.name())),
        });
    }
    out.sort_by(|a, b| (&a.line, a.arch.name()).cmp(&(&b.line, b.arch.name())));
    out
}

/// What runs in a guest, or on the host, for one architecture.
struct Bins {
    agent: PathBuf,
    /// Shared libraries the agent needs (none for the static `dist` one).
    libs: Vec<PathBuf>,
    workload: PathBuf,
    goalloc: PathBuf,
}

fn tmp() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernels");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_ok(c: &mut Command, what: &str) {
    let status = c.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

impl Bins {
    /// The workloads, static, for `arch`, beside `agent`.
    fn new(arch: Arch, agent: PathBuf) -> Self {
        let workloads = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads");
        let workload = tmp().join(format!("workload-{}", arch.name()));
        run_ok(
            Command::new(arch.c_compiler())
                .args(["-static", "-O2", "-o"])
                .arg(&workload)
                .arg(workloads.join("workload.c")),
            &format!("{} -static workload.c", arch.c_compiler()),
        );
        let goalloc = tmp().join(format!("goalloc-{}", arch.name()));
        run_ok(
            Command::new("go")
                .args(["build", "-o"])
                .arg(&goalloc)
                .arg(workloads.join("go/allocheavy.go"))
                .env("GOARCH", arch.goarch())
                .env("CGO_ENABLED", "0")
                .env("GOCACHE", tmp().join("gocache"))
                .env("HOME", tmp()),
            &format!("go build allocheavy.go for {}", arch.name()),
        );
        let libs = shared_libraries(&agent);
        Self {
            agent,
            libs,
            workload,
            goalloc,
        }
    }
}

/// The libraries `ldd` names for a dynamically linked binary, with its
/// interpreter; none for a static one.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The guest's initramfs: busybox, `init`, the scenario, the binaries in
/// /tally, their libraries at their own paths, and the agent's arguments.
fn initramfs(kernel: &Kernel, bins: &Bins, agent_args: &[&str]) -> PathBuf {
    let name = format!("{}-{}", kernel.line, kernel.arch.name());
    let root = tmp().join(format!("root-{name}"));
    let _ = fs::remove_dir_all(&root);
    for dir in ["bin", "tally", "proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest");
    let copy = |from: &Path, to: PathBuf| {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    };
    copy(&kernel.busybox, root.join("bin/busybox"));
    copy(&guest.join("init"), root.join("init"));
    copy(&guest.join("scenario.sh"), root.join("scenario.sh"));
    copy(&bins.agent, root.join("tally/agent"));
    copy(&bins.workload, root.join("tally/workload"));
    copy(&bins.goalloc, root.join("tally/goalloc"));
    for lib in &bins.libs {
        copy(lib, root.join(lib.strip_prefix("/").unwrap()));
    }
    let mut args = vec![ALLOC_ITERATIONS];
    args.extend_from_slice(agent_args);
    fs::write(root.join("scenario-args"), args.join(" ")).unwrap();
    let image = tmp().join(format!("initramfs-{name}.cpio"));
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && find . | cpio -o -H newc --quiet > \"$2\"")
            .arg("pack")
            .arg(&root)
            .arg(&image),
        "cpio",
    );
    image
}

/// Boots the kernel with the initramfs; everything the guest printed.
fn boot(kernel: &Kernel, initramfs: &Path) -> String {
    let mut qemu = kernel.arch.qemu();
    qemu.arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initramfs);
    run_bounded(qemu, "qemu")
}

/// The scenario on this machine's kernel.
fn on_host(bins: &Bins, agent_args: &[&str]) -> String {
    let dir = tmp().join("host");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (from, name) in [
        (&bins.agent, "agent"),
        (&bins.workload, "workload"),
        (&bins.goalloc, "goalloc"),
    ] {
        fs::copy(from, dir.join(name)).unwrap();
    }
    let mut sh = Command::new("sh");
    sh.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest/scenario.sh"))
        .arg(&dir)
        .arg(dir.join("work"))
        .arg(ALLOC_ITERATIONS)
        .args(agent_args);
    run_bounded(sh, "scenario.sh")
}

/// Runs to its end or [`GUEST_TIMEOUT`]; stdout and stderr together.
fn run_bounded(mut c: Command, what: &str) -> String {
    let out = tmp().join(format!("{what}.out"));
    let file = fs::File::create(&out).unwrap();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > GUEST_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} ran over {GUEST_TIMEOUT:?}:\n{}",
                fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    String::from_utf8_lossy(&fs::read(&out).unwrap()).into_owned()
}

/// The scenario's output by section (`=== <name>` lines).
fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        // The serial console ends lines with \r\n.
        let line = line.trim_end_matches('\r');
        if let Some(name) = line.strip_prefix("=== ") {
            if let Some((n, body)) = current.take() {
                out.insert(n, body);
            }
            current = Some((name.to_string(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((n, body)) = current {
        out.insert(n, body);
    }
    out
}

/// One row of the matrix: what a run showed, and what was wrong with it.
struct Row {
    kernel: String,
    arch: &'static str,
    agent_args: String,
    /// `probes attached (N of 8 hooks)`, or why there was no such line.
    hooks: String,
    /// The agent's `syscall hooks:` line, where it prints one.
    syscall_hooks: String,
    deviations: Vec<Deviation>,
    /// Go: the agent's GC cycles and gctrace's lines.
    go_cycles: (f64, f64),
    go_gc_seconds: f64,
    /// Attach type → (runs, ns), from the agent's `bpf_stats` lines.
    bpf_stats: BTreeMap<String, (u64, u64)>,
    seconds: f64,
    /// The syscalls whose hooks this kernel cannot load.
    missing: Vec<String>,
    problems: Vec<String>,
}

impl Row {
    /// `below_floor`: a kernel older than Tally's floor, where syscall hooks
    /// may be missing if the agent says why.
    fn check(
        kernel: String,
        arch: Arch,
        agent_args: &[&str],
        below_floor: bool,
        text: &str,
        seconds: f64,
    ) -> Row {
        let s = sections(text);
        let get = |name: &str| s.get(name).map(String::as_str).unwrap_or("");
        let stderr = get("agent.err");
        let mut problems = Vec::new();
        if !s.contains_key("end") {
            problems.push("the scenario did not finish".to_string());
        }
        if get("agent.exit").trim() != "0" {
            problems.push(format!("agent exit status {:?}", get("agent.exit").trim()));
        }
        let hooks = stderr
            .lines()
            .find_map(|l| l.split("probes attached (").nth(1))
            .and_then(|rest| rest.split(')').next())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let why = stderr
                    .lines()
                    .find(|l| l.contains("ERROR") || l.contains("error"))
                    .unwrap_or("no `probes attached` line");
                format!("none: {why}")
            });
        let syscall_hooks = stderr
            .lines()
            .find_map(|l| l.split("syscall hooks: ").nth(1))
            .unwrap_or("")
            .to_string();
        // Every missing hook is a warning naming it and the kernel's reason.
        let unavailable: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("unavailable ("))
            .collect();
        let mut missing: Vec<&str> = Vec::new();
        for l in &unavailable {
            let syscall = SYSCALLS.into_iter().find(|s| {
                l.contains(&format!("sys_exit_{s} ")) || l.contains(&format!("_sys_{s} "))
            });
            let reasoned = l.contains("has no eBPF helper") || l.contains("rejected");
            match syscall {
                Some(s) if below_floor && reasoned => missing.push(s),
                _ => problems.push(l.to_string()),
            }
        }
        let want = format!("{} of 8 hooks", 8 - unavailable.len());
        if hooks != want {
            problems.push(format!("hooks: {hooks}, expected {want}"));
        }
        let lines: Vec<Value> = get("agent.jsonl")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let report = |name: &str| -> Option<Value> { serde_json::from_str(get(name).trim()).ok() };
        let mut deviations = Vec::new();
        match (report("idle.json"), report("busy.json")) {
            (Some(idle), Some(busy)) => {
                let startup = windows_of(&lines, pid_of(&idle));
                let windows = windows_of(&lines, pid_of(&busy));
                deviations = alloc_deviations(&windows, &startup, &busy, &idle);
                // What a missing hook feeds is not compared.
                deviations.retain(|d| {
                    !missing
                        .iter()
                        .any(|m| d.field.starts_with(&format!("{m}_")))
                });
                problems.extend(deviations.iter().filter(|d| !d.ok).map(|d| d.to_string()));
            }
            _ => problems.push("no workload report".to_string()),
        }
        let gctrace = get("go.err")
            .lines()
            .filter(|l| l.starts_with("gc "))
            .count() as f64;
        let go_pid: u64 = get("go.pid").trim().parse().unwrap_or(0);
        let go = windows_of(&lines, go_pid);
        let go_cycles = (sum(&go, "gc_cycles"), gctrace);
        let go_gc_seconds = sum(&go, "gc_cpu_seconds");
        if go.is_empty() || go.iter().any(|w| w["runtime"] != "go") {
            problems.push(format!("Go pid {go_pid}: no window, or not seen as Go"));
        }
        if gctrace == 0.0 || go_cycles.0 != go_cycles.1 {
            problems.push(format!(
                "Go GC cycles: agent {}, gctrace {}",
                go_cycles.0, go_cycles.1
            ));
        }
        if go_gc_seconds <= 0.0 {
            problems.push("Go GC CPU by stacks: none (stacks or symbols)".to_string());
        }
        Row {
            kernel,
            arch: arch.name(),
            agent_args: agent_args.join(" "),
            hooks,
            syscall_hooks,
            deviations,
            go_cycles,
            go_gc_seconds,
            bpf_stats: bpf_stats(stderr),
            seconds,
            missing: missing.iter().map(|m| m.to_string()).collect(),
            problems,
        }
    }

    fn counts_cell(&self) -> String {
        if self.deviations.is_empty() {
            return "-".into();
        }
        let ok = self.deviations.iter().filter(|d| d.ok).count();
        let mmap = self.deviations.iter().find(|d| d.field == "mmap_calls");
        let faults = self.deviations.iter().find(|d| d.field == "minor_faults");
        let pair =
            |d: Option<&Deviation>| d.map_or("-".into(), |d| format!("{}/{}", d.agent, d.own));
        format!(
            "{ok} of {} within; mmap {}; minor faults {}",
            self.deviations.len(),
            pair(mmap),
            pair(faults)
        )
    }

    fn stats_cell(&self) -> String {
        let cells: Vec<String> = self
            .bpf_stats
            .iter()
            .map(|(attach, (runs, ns))| {
                format!("{attach} {:.0}", *ns as f64 / (*runs).max(1) as f64)
            })
            .collect();
        if cells.is_empty() {
            "-".into()
        } else {
            cells.join(", ")
        }
    }

    fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {}/{} | {:.2} | {} | {:.0} | {} |",
            self.kernel,
            self.arch,
            if self.agent_args.is_empty() {
                "default"
            } else {
                &self.agent_args
            },
            self.hooks,
            if self.syscall_hooks.is_empty() {
                "-"
            } else {
                &self.syscall_hooks
            },
            self.counts_cell(),
            self.go_cycles.0,
            self.go_cycles.1,
            self.go_gc_seconds,
            self.stats_cell(),
            self.seconds,
            if self.problems.is_empty() && !self.missing.is_empty() {
                format!(
                    "ok: below the floor; no {} hooks, as documented",
                    self.missing.join("/")
                )
            } else if self.problems.is_empty() {
                "ok".to_string()
            } else {
                self.problems.join("; ")
            },
        )
    }
}

const TABLE_HEAD: &str = "| kernel | arch | agent args | hooks | syscall hooks | allocation counts vs the workload's own | Go GC cycles agent/gctrace | Go GC CPU s (stacks) | syscall programs' ns per run | s | result |\n|---|---|---|---|---|---|---|---|---|---|---|";

/// The syscall programs' `bpf_stats program=… attach=… run_cnt=…
/// run_time_ns=…` lines, summed per attach type.
fn bpf_stats(stderr: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in stderr.lines() {
        let Some(rest) = line.split("bpf_stats ").nth(1) else {
            continue;
        };
        let field = |key: &str| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        };
        let (Some(program), Some(attach), Some(runs), Some(ns)) = (
            field("program"),
            field("attach"),
            field("run_cnt"),
            field("run_time_ns"),
        ) else {
            continue;
        };
        // The five syscall programs, at whichever attach type they took.
        if !(program.starts_with("sys_exit_") || program.starts_with("fexit_")) {
            continue;
        }
        let e = out.entry(attach.to_string()).or_default();
        e.0 += runs.parse::<u64>().unwrap_or(0);
        e.1 += ns.parse::<u64>().unwrap_or(0);
    }
    out
}

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

#[test]
fn sections_and_bpf_stats_parse() {
    let text = "noise\r\n=== uname\r\n6.1.0\r\nx86_64\r\n=== agent.err\nbpf_stats program=fexit_mmap attach=fexit run_cnt=10 run_time_ns=500\nbpf_stats program=fexit_brk attach=fexit run_cnt=10 run_time_ns=300\nbpf_stats program=sched_process_exit attach=tracepoint run_cnt=1 run_time_ns=9\n=== end\n";
    let s = sections(text);
    assert_eq!(s["uname"], "6.1.0\nx86_64\n");
    assert_eq!(s["end"], "");
    assert_eq!(bpf_stats(&s["agent.err"])["fexit"], (20, 800));
}
