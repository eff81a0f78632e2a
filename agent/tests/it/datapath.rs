//! The data path against the kernel's own accounting: the real eBPF
//! programs, the real agent binary, known C workloads in cgroups of their
//! own. Needs root (see `common::require_root`).
use std::{process::Command, time::Duration};

use serde_json::Value;

use crate::common::{self, Agent, TestCgroup, assert_within, run_workload, sum, windows_of};

const SYSCALL_FIELDS: [(&str, &str); 5] = [
    ("mmap_calls", "mmap_bytes"),
    ("munmap_calls", "munmap_bytes"),
    ("brk_calls", "brk_bytes"),
    ("mremap_calls", "mremap_bytes"),
    ("madvise_calls", "madvise_dontneed_bytes"),
];

pub(crate) fn pid_of(report: &Value) -> u64 {
    report["pid"].as_u64().unwrap()
}

/// One of the agent's counts against the workload's own.
pub(crate) struct Deviation {
    pub field: &'static str,
    pub agent: f64,
    pub own: f64,
    /// Within what the data path promises.
    pub ok: bool,
    /// That promise, in words.
    pub promise: String,
}

impl std::fmt::Display for Deviation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (field, agent, own, ok) = (self.field, self.agent, self.own, self.ok);
        let promise = &self.promise;
        write!(f, "{field}: agent {agent}, own {own} ({promise}: {ok})")
    }
}

/// The agent's allocation counts and minor faults for the busy run of the
/// `alloc` workload (`windows`), against its own counts and its
/// /proc/self/stat, within what the data path promises:
/// - calls: at least the workload's own, at most that plus what the C
///   runtime's start-up made (the idle run: the agent's less the idle run's
///   own count);
/// - bytes: within 1%, once the start-up's bytes are taken off;
/// - minor faults: within 1% (the process started after the agent, so its
///   /proc value is all of it).
pub(crate) fn alloc_deviations(
    windows: &[&Value],
    startup: &[&Value],
    busy: &Value,
    idle: &Value,
) -> Vec<Deviation> {
    let own = |report: &Value, field: &str| report[field].as_f64().unwrap_or(f64::NAN);
    let within = |field, agent: f64, own: f64| Deviation {
        field,
        agent,
        own,
        ok: (agent - own).abs() <= 0.01 * own.abs(),
        promise: "within 1%".into(),
    };
    let mut out = Vec::new();
    for (calls, bytes) in SYSCALL_FIELDS {
        let (agent, own_calls) = (sum(windows, calls), own(busy, calls));
        let allowance = sum(startup, calls) - own(idle, calls);
        out.push(Deviation {
            field: calls,
            agent,
            own: own_calls,
            ok: own_calls > 0.0 && agent >= own_calls && agent <= own_calls + allowance,
            promise: format!("> 0, at least own, at most own + start-up {allowance}"),
        });
        let startup_bytes = sum(startup, bytes) - own(idle, bytes);
        out.push(within(
            bytes,
            sum(windows, bytes) - startup_bytes,
            own(busy, bytes),
        ));
    }
    let free = "madvise_free_bytes";
    out.push(within(free, sum(windows, free), own(busy, free)));
    let faults = "minor_faults";
    out.push(within(faults, sum(windows, faults), own(busy, faults)));
    out
}

/// The known workload's allocation syscalls under an agent started with
/// `agent_args`: an idle run (its runtime's start-up) and a busy one, both in
/// a cgroup of their own.
pub struct AllocRun {
    pub cg: TestCgroup,
    pub lines: Vec<Value>,
    pub stderr: String,
    pub idle: Value,
    pub busy: Value,
}

impl AllocRun {
    pub fn start(agent_args: &[&str]) -> Self {
        let cg = TestCgroup::create(&common::unique("tally-test-alloc"));
        let agent = Agent::start(agent_args);
        // The same binary doing nothing: what its runtime does at start-up.
        let idle = run_workload(Some(&cg), &["alloc", "0", "16"]);
        let busy = run_workload(Some(&cg), &["alloc", "20000", "16"]);
        let (lines, stderr, _) = agent.stop();
        Self {
            cg,
            lines,
            stderr,
            idle,
            busy,
        }
    }

    /// The busy run's windows; panics if there are none.
    pub fn windows(&self) -> Vec<&Value> {
        let windows = windows_of(&self.lines, pid_of(&self.busy));
        assert!(
            !windows.is_empty(),
            "no window for pid {}; stderr:\n{}",
            pid_of(&self.busy),
            self.stderr
        );
        windows
    }

    /// The busy run's allocation calls and bytes and minor faults against
    /// the workload's own, as [`alloc_deviations`] promises them.
    pub fn assert_counts_match(&self) {
        let startup = windows_of(&self.lines, pid_of(&self.idle));
        for d in alloc_deviations(&self.windows(), &startup, &self.busy, &self.idle) {
            assert!(d.ok, "{d}");
        }
    }
}

/// mmap/munmap/madvise/brk/mremap calls and bytes, and minor faults, of a
/// workload in its own cgroup against its own counts and /proc/self/stat.
#[test]
fn allocation_syscalls_and_faults_match_the_workload() {
    if !common::require_root("allocation_syscalls_and_faults_match_the_workload") {
        return;
    }
    let _serial = common::serial();
    let run = AllocRun::start(&[]);
    run.assert_counts_match();
    let (busy, cg, windows) = (&run.busy, &run.cg, run.windows());
    assert!(busy["minor_faults"].as_f64().unwrap() > 20000.0 * 16.0);

    // Exit, identity and cgroup.
    assert_eq!(
        windows.iter().filter(|w| w["exited"] == true).count(),
        1,
        "exactly one exit window"
    );
    assert!(
        windows.iter().all(|w| w["cgroup_id"] == cg.id()),
        "cgroup id {}: {windows:?}",
        cg.id()
    );
    assert!(windows.iter().all(|w| w["cgroup_path"] == cg.path.as_str()));
    assert!(windows.iter().all(|w| w["container_id"].is_null()));
    assert!(windows.iter().all(|w| w["comm"] == "workload"));
}

/// Major faults: a file dropped from the page cache, read with MADV_RANDOM.
#[test]
fn major_faults_match_proc() {
    if !common::require_root("major_faults_match_proc") {
        return;
    }
    let _serial = common::serial();
    let agent = Agent::start(&[]);
    let file = common::scratch_dir().join(common::unique("majfault"));
    let report = run_workload(None, &["majfault", file.to_str().unwrap(), "32"]);
    let (lines, stderr, _) = agent.stop();
    let windows = windows_of(&lines, pid_of(&report));
    assert!(!windows.is_empty(), "stderr:\n{stderr}");
    let own = report["major_faults"].as_f64().unwrap();
    assert!(
        own >= 4096.0,
        "the workload should have faulted in 32 MiB from disk: {report}"
    );
    assert_within("major_faults", sum(&windows, "major_faults"), own, 0.01);
    assert_within(
        "minor_faults",
        sum(&windows, "minor_faults"),
        report["minor_faults"].as_f64().unwrap(),
        0.01,
    );
}

/// CPU: 5 s of busy loop sampled at 99 Hz against the process's utime+stime.
#[test]
fn cpu_seconds_match_utime_and_stime() {
    if !common::require_root("cpu_seconds_match_utime_and_stime") {
        return;
    }
    let _serial = common::serial();
    let agent = Agent::start(&["--sample-hz", "99"]);
    let report = run_workload(None, &["spin", "5"]);
    let (lines, stderr, _) = agent.stop();
    let windows = windows_of(&lines, pid_of(&report));
    assert!(!windows.is_empty(), "stderr:\n{stderr}");
    let own = report["cpu_ticks"].as_f64().unwrap() / report["clk_tck"].as_f64().unwrap();
    assert!(own > 4.0, "the spin should have used most of 5 s: {report}");
    assert_within("cpu_seconds", sum(&windows, "cpu_seconds"), own, 0.10);
    let samples = sum(&windows, "cpu_samples");
    assert_within(
        "cpu_samples",
        samples,
        sum(&windows, "cpu_seconds") * 99.0,
        0.01,
    );
}

/// A process that lives a few milliseconds is reported, exited, with its
/// numbers: the kernel side sends them when its thread group dies.
#[test]
fn short_lived_process_is_reported_with_its_numbers() {
    if !common::require_root("short_lived_process_is_reported_with_its_numbers") {
        return;
    }
    let _serial = common::serial();
    let agent = Agent::start(&[]);
    let report = run_workload(None, &["alloc", "200", "4"]);
    let (lines, stderr, _) = agent.stop();
    assert!(
        report["lived_seconds"].as_f64().unwrap() < 0.1,
        "lived too long for this test: {report}"
    );
    let windows = windows_of(&lines, pid_of(&report));
    assert_eq!(
        windows.len(),
        1,
        "one window, the exit one: {windows:?}; stderr:\n{stderr}"
    );
    let w = windows[0];
    assert_eq!(w["exited"], true);
    assert_eq!(w["rss_bytes"], 0);
    assert!(w["mmap_calls"].as_f64().unwrap() >= report["mmap_calls"].as_f64().unwrap());
    assert!(w["madvise_calls"].as_f64().unwrap() >= report["madvise_calls"].as_f64().unwrap());
    assert_within(
        "minor_faults",
        w["minor_faults"].as_f64().unwrap(),
        report["minor_faults"].as_f64().unwrap(),
        0.01,
    );
    assert!(w["cgroup_id"].as_u64().is_some_and(|id| id > 0), "{w}");
}

/// A kubelet/containerd-shaped cgroup (systemd driver) yields its container
/// id, pod UID and QoS class.
#[test]
fn kubelet_shaped_cgroup_yields_the_container() {
    if !common::require_root("kubelet_shaped_cgroup_yields_the_container") {
        return;
    }
    let _serial = common::serial();
    let uid = "4b2a7c1e_9d3f_4e8a_b6c5_1f0e2d3c4b5a";
    let id = "5c2d9b0e7f1a3c4b6d8e0f2a4c6e8a0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a1c";
    let root = common::unique("tally-test-kube");
    let rel = format!(
        "{root}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{id}.scope"
    );
    let cg = TestCgroup::create(&rel);
    let agent = Agent::start(&[]);
    let report = run_workload(Some(&cg), &["alloc", "100", "4"]);
    let (lines, stderr, _) = agent.stop();
    let windows = windows_of(&lines, pid_of(&report));
    assert!(!windows.is_empty(), "stderr:\n{stderr}");
    for w in windows {
        assert_eq!(w["cgroup_id"], cg.id());
        assert_eq!(w["cgroup_path"], cg.path.as_str());
        assert_eq!(w["container_id"], id);
        assert_eq!(w["container_runtime"], "containerd");
        assert_eq!(w["pod_uid"], uid.replace('_', "-"));
        assert_eq!(w["qos_class"], "burstable");
    }
}

/// A tracepoint the kernel lacks: a warning naming it and what it disables;
/// every other number keeps working.
#[test]
fn missing_tracepoint_warns_and_the_rest_works() {
    if !common::require_root("missing_tracepoint_warns_and_the_rest_works") {
        return;
    }
    let _serial = common::serial();
    let agent = Agent::start_with_env(
        &[],
        &[("TALLY_FAULT_MISSING_HOOK", "syscalls:sys_exit_mremap")],
    );
    let report = run_workload(None, &["alloc", "500", "4"]);
    let (lines, stderr, _) = agent.stop();
    let warning = stderr
        .lines()
        .find(|l| l.contains("sys_exit_mremap"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        warning.contains("WARN") && warning.contains("mremap_calls"),
        "{warning}"
    );
    let windows = windows_of(&lines, pid_of(&report));
    assert_eq!(sum(&windows, "mremap_calls"), 0.0);
    assert!(sum(&windows, "mmap_calls") >= report["mmap_calls"].as_f64().unwrap());
    assert_within(
        "minor_faults",
        sum(&windows, "minor_faults"),
        report["minor_faults"].as_f64().unwrap(),
        0.01,
    );
}

/// `agent top --batch` in a mount namespace of its own where tracefs is
/// not mounted, as on a host that booted without it (util-linux's unshare
/// and setpriv; `setpriv` also drops capabilities from the bounding set).
fn top_without_tracefs(drop_caps: &str) -> std::process::Output {
    let script = format!(
        "umount -l /sys/kernel/debug/tracing 2>/dev/null; umount -l /sys/kernel/tracing 2>/dev/null; \
         if grep -q ' - tracefs ' /proc/self/mountinfo; then echo 'tracefs still mounted' >&2; exit 99; fi; \
         exec setpriv --bounding-set={drop_caps} \"$0\" top --batch -n 2 --interval 0.5"
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_agent"))
        .env("TALLY_LOG", "info")
        .output()
        .expect("unshare runs")
}

/// A host without tracefs: the agent mounts it for itself, privately, and
/// every hook attaches; the host's mounts are left as they were.
#[test]
fn every_hook_attaches_on_a_host_without_tracefs() {
    if !common::require_root("every_hook_attaches_on_a_host_without_tracefs") {
        return;
    }
    let _serial = common::serial();
    let tracefs_mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(" - tracefs "))
            .count()
    };
    let before = tracefs_mounts();
    // -cap_wake_alarm: a no-op drop, so the agent keeps what root has.
    let out = top_without_tracefs("-wake_alarm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("mounted it in the agent's own mount namespace"),
        "{stderr}"
    );
    assert!(
        stderr.contains("probes attached (8 of 8 hooks)"),
        "{stderr}"
    );
    assert!(!stdout.contains("HOOKS MISSING"), "{stdout}");
    assert_eq!(tracefs_mounts(), before, "the host's mounts changed");
}

/// Without CAP_SYS_ADMIN the agent cannot mount tracefs: the warning says
/// why and what to do, and the table's header counts the missing hooks.
#[test]
fn without_tracefs_or_cap_sys_admin_the_header_says_hooks_are_missing() {
    if !common::require_root("without_tracefs_or_cap_sys_admin_the_header_says_hooks_are_missing") {
        return;
    }
    let _serial = common::serial();
    let out = top_without_tracefs("-sys_admin");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("sys_exit_mmap"))
        .unwrap_or_else(|| panic!("no warning for sys_exit_mmap: {stderr}"));
    assert!(
        warning.contains("could not mount it") && warning.contains("CAP_SYS_ADMIN"),
        "{warning}"
    );
    assert!(
        stderr.contains("probes attached (1 of 8 hooks)"),
        "{stderr}"
    );
    let header = stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("HOOKS MISSING 7 of 8 (see warnings)"),
        "{stdout}"
    );
}

/// Without root or CAP_BPF/CAP_PERFMON: one line naming what is missing, exit 2.
#[test]
fn without_privileges_one_line_and_exit_2() {
    if !common::require_root("without_privileges_one_line_and_exit_2") {
        return; // needs root to become someone else
    }
    use std::os::unix::{fs::PermissionsExt as _, process::CommandExt as _};
    let _serial = common::serial();
    // A copy nobody can reach: the build tree may sit in a directory only
    // root may enter (a clone in `mktemp -d`, mode 0700).
    let dir = std::env::temp_dir().join(common::unique("tally-unprivileged"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = dir.join("agent");
    std::fs::copy(env!("CARGO_BIN_EXE_agent"), &agent).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&agent)
        .args(["top", "--batch", "-n", "1"])
        .current_dir(&dir)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("missing CAP_BPF and CAP_PERFMON") && stderr.contains("root"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// More processes than the map holds: the losses are counted and reported,
/// collection goes on, and the maps empty again as processes exit.
#[test]
fn full_map_is_counted_and_reported_and_maps_shrink() {
    if !common::require_root("full_map_is_counted_and_reported_and_maps_shrink") {
        return;
    }
    let _serial = common::serial();
    let mut agent = Agent::start_with_env(
        &["--max-processes", "64"],
        &[("TALLY_LOG", "info,tally_node::collect=debug")],
    );
    // 300 processes alive at once, each making an mmap call.
    let report = run_workload(None, &["forkmany", "300", "800"]);
    agent.wait_for_stderr("process map full", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    let marker = run_workload(None, &["alloc", "100", "4"]);
    let (lines, stderr, _) = agent.stop();
    let lost: u64 = stderr
        .lines()
        .filter(|l| l.contains("process map full"))
        .filter_map(|l| {
            l.split("lost=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(lost > 0, "a loss count: {stderr}");
    // Collection went on: the marker after the storm is exact.
    let windows = windows_of(&lines, pid_of(&marker));
    assert!(
        sum(&windows, "mmap_calls") >= marker["mmap_calls"].as_f64().unwrap(),
        "{stderr}"
    );
    assert!(!windows_of(&lines, pid_of(&report)).is_empty());
    // The last occupancy lines: the process map is back near empty.
    let last_occupancy = stderr
        .lines()
        .rev()
        .find(|l| l.contains("occupancy"))
        .expect("debug occupancy lines");
    let procs_map: u64 = last_occupancy
        .split("procs_map=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{last_occupancy}"));
    assert!(
        procs_map < 32,
        "PROCS still holds {procs_map} entries after the storm: {last_occupancy}"
    );
}
