//! Verdicts on real runtimes: Go, JVM (openjdk 17), Node and C workloads run
//! in cgroups of their own under the real agent; their verdicts and GC
//! numbers are checked against the runtimes' own GC reports
//! (`GODEBUG=gctrace=1`, `-Xlog:gc`, `node --trace-gc`, and the JVM's GC
//! threads' CPU in `/proc/<pid>/task/*/stat`). Needs root, go, java, node,
//! stress-ng (installed by `cargo xtask test`).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{self, Agent, TestCgroup, require};

const RUN_SECONDS: f64 = 12.0;

fn workloads_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads")
}

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn go_build(name: &str) -> PathBuf {
    common::go_build(name, &tmp().join(format!("go-{name}")), &[], &[])
}

fn javac(name: &str) -> PathBuf {
    let dir = tmp().join("java");
    std::fs::create_dir_all(&dir).unwrap();
    let src = workloads_dir().join(format!("java/{name}.java"));
    let status = Command::new("javac")
        .arg("-d")
        .arg(&dir)
        .arg(&src)
        .status()
        .expect("javac runs");
    assert!(status.success(), "javac {}", src.display());
    dir
}

/// A workload started in its own cgroup, its stderr going to a file.
struct Running {
    child: Child,
    stderr: PathBuf,
    started: Instant,
    _cgroup: TestCgroup,
}

fn start(mut cmd: Command, name: &str) -> Running {
    let cgroup = TestCgroup::create(&common::unique(&format!("tally-test-{name}")));
    let stderr = tmp().join(common::unique(name));
    cmd.stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap());
    cgroup.enter_on_spawn(&mut cmd);
    let child = cmd.spawn().expect("workload starts");
    Running {
        child,
        stderr,
        started: Instant::now(),
        _cgroup: cgroup,
    }
}

impl Running {
    fn pid(&self) -> u64 {
        u64::from(self.child.id())
    }

    /// Waits for the exit; returns stderr, how long it lived, and its cgroup.
    fn wait(self) -> (String, Duration, TestCgroup) {
        let (_, log, lived, cgroup) = self.wait_with_stdout();
        (log, lived, cgroup)
    }

    fn wait_with_stdout(self) -> (String, String, Duration, TestCgroup) {
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "workload failed: {out:?}");
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            log,
            self.started.elapsed(),
            self._cgroup,
        )
    }
}

/// The verdicts of a process, window by window, and its totals.
struct Seen {
    windows: Vec<Value>,
}

impl Seen {
    fn of(lines: &[Value], pid: u64) -> Self {
        Self {
            windows: lines.iter().filter(|l| l["pid"] == pid).cloned().collect(),
        }
    }

    fn verdicts(&self) -> Vec<&str> {
        self.windows
            .iter()
            .map(|w| w["verdict"].as_str().unwrap_or(""))
            .collect()
    }

    /// The verdict held by most full windows after the first few seconds
    /// (start-up is not the workload's steady behaviour), and that it was
    /// reached within 30 s of the start.
    fn settled_verdict(&self) -> &str {
        let steady: Vec<&str> = self
            .windows
            .iter()
            .skip(2)
            .filter(|w| w["exited"] == false)
            .map(|w| w["verdict"].as_str().unwrap_or(""))
            .collect();
        assert!(
            !steady.is_empty(),
            "no steady windows: {:?}",
            self.verdicts()
        );
        let mut best = ("", 0);
        for v in &steady {
            let n = steady.iter().filter(|x| *x == v).count();
            if n > best.1 {
                best = (v, n);
            }
        }
        best.0
    }

    fn sum(&self, field: &str) -> f64 {
        self.windows
            .iter()
            .map(|w| w[field].as_f64().unwrap_or(0.0))
            .sum()
    }

    /// GC CPU over all CPU of the process, across its windows.
    fn gc_share(&self) -> f64 {
        self.sum("gc_cpu_seconds") / self.sum("cpu_seconds").max(1e-9)
    }
}

/// 5 percentage points, or 25% relative, whichever is larger.
#[track_caller]
fn assert_share_close(what: &str, agent: f64, truth: f64) {
    let allowed = (0.05f64).max(0.25 * truth);
    eprintln!(
        "{what}: agent GC share {:.1}%, runtime {:.1}%",
        100.0 * agent,
        100.0 * truth
    );
    assert!(
        (agent - truth).abs() <= allowed,
        "{what}: agent GC share {:.1}%, runtime says {:.1}% (allowed ±{:.1} points)",
        100.0 * agent,
        100.0 * truth,
        100.0 * allowed
    );
}

fn run_under_agent(test: &str, cmd: Command, name: &str) -> (Seen, String, Vec<Value>) {
    let agent = Agent::start(&["--interval", "1"]);
    let running = start(cmd, name);
    let pid = running.pid();
    let (log, lived, _cg) = running.wait();
    let (lines, stderr, _) = agent.stop_after_exit_of(pid);
    let seen = Seen::of(&lines, pid);
    assert!(
        !seen.windows.is_empty(),
        "{test}: no window for pid {pid}; agent stderr:\n{stderr}"
    );
    assert!(lived < Duration::from_secs(30));
    (seen, log, lines)
}

#[test]
fn go_alloc_heavy_is_gc_heavy_and_matches_gctrace() {
    let test = "go_alloc_heavy_is_gc_heavy_and_matches_gctrace";
    if !common::require_root(test) || !require("go", test) {
        return;
    }
    let _serial = common::serial();
    let bin = go_build("allocheavy");
    let agent = Agent::start(&["--interval", "1"]);
    let mut cmd = Command::new(&bin);
    // 2.5 s of waiting first: the agent finds the Go binary within one
    // window and probes it before the first collection. One P, so the
    // process keeps its P busy and no mark worker runs in idle mode.
    cmd.args([RUN_SECONDS.to_string(), "2.5".into()]);
    cmd.env("GOGC", "50")
        .env("GODEBUG", "gctrace=1")
        .env("GOMAXPROCS", "1");
    let running = start(cmd, "go-alloc");
    let pid = running.pid();
    let (stdout, gctrace, _, _cg) = running.wait_with_stdout();
    // Its exit window carries its last cycles.
    let (lines, stderr, _) = agent.stop_after_exit_of(pid);
    let seen = Seen::of(&lines, pid);
    assert!(!seen.windows.is_empty(), "{stderr}");
    assert_eq!(seen.settled_verdict(), "gc-heavy", "{:?}", seen.verdicts());
    assert!(seen.windows.iter().all(|w| w["runtime"] == "go"));

    // gctrace's last line: "gc 58 @7.777s 36%: … 1 P". Its % is GC CPU over
    // GOMAXPROCS × wall time since start; times that budget it is the GC
    // CPU the runtime counted, and over the CPU the process used (its own
    // getrusage) it is comparable with the agent's share.
    let last = gctrace
        .lines()
        .rfind(|l| l.starts_with("gc "))
        .expect("gctrace lines");
    let fields: Vec<&str> = last.split_whitespace().collect();
    let at: f64 = fields[2]
        .trim_start_matches('@')
        .trim_end_matches('s')
        .parse()
        .unwrap();
    let pct: f64 = fields[3].trim_end_matches("%:").parse().unwrap();
    let procs: f64 = fields[fields.len() - 2].parse().unwrap();
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    let runtime_gc_cpu = pct / 100.0 * at * procs;
    let truth = runtime_gc_cpu / report["cpu_seconds"].as_f64().unwrap();
    assert_share_close("go", seen.gc_share(), truth);
    // Cycles: one uprobe hit per completed cycle, one gctrace line each.
    let cycles = gctrace.lines().filter(|l| l.starts_with("gc ")).count() as f64;
    assert_eq!(
        seen.sum("gc_cycles"),
        cycles,
        "GC cycles: agent vs gctrace lines"
    );
}

#[test]
fn go_compute_is_steady() {
    let test = "go_compute_is_steady";
    if !common::require_root(test) || !require("go", test) {
        return;
    }
    let _serial = common::serial();
    let bin = go_build("compute");
    let mut cmd = Command::new(&bin);
    cmd.arg("8");
    let (seen, _, _) = run_under_agent(test, cmd, "go-compute");
    assert_eq!(seen.settled_verdict(), "steady", "{:?}", seen.verdicts());
    assert!(seen.gc_share() < 0.02, "GC share {}", seen.gc_share());
}

/// The collections a JVM logged with `-Xlog:gc`: its distinct `GC(N)` ids
/// (a G1 concurrent cycle's pauses share its id; ZGC's three pauses too).
fn gc_ids(log: &str) -> usize {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("GC(")? + 3..];
            rest[..rest.find(')')?].parse::<u64>().ok()
        })
        .collect::<std::collections::BTreeSet<u64>>()
        .len()
}

/// The verdict of an allocation-heavy JVM, and its collections against its
/// own log. Its GC share against the JVM's own GC CPU accounting, for each
/// collector, is `jvm_gc.rs`'s.
#[test]
fn jvm_alloc_heavy_is_gc_heavy_and_counts_its_collections() {
    let test = "jvm_alloc_heavy_is_gc_heavy_and_counts_its_collections";
    if !common::require_root(test) || !require("java", test) {
        return;
    }
    let _serial = common::serial();
    let classes = javac("AllocHeavy");
    let gclog = tmp().join(common::unique("gc.log"));
    let agent = Agent::start(&["--interval", "1"]);
    let mut cmd = Command::new("java");
    cmd.arg("-Xmx64m")
        .arg("-XX:+UseG1GC")
        .arg(format!("-Xlog:gc:file={}", gclog.display()));
    // 2.5 s of waiting first, as for Go: the probes are on before the
    // first collection, so every collection is seen.
    cmd.arg("-cp")
        .arg(&classes)
        .args(["AllocHeavy", &RUN_SECONDS.to_string(), "2.5"]);
    let running = start(cmd, "jvm-alloc");
    let pid = running.pid();
    let (_, _, _cg) = running.wait();
    let (lines, stderr, _) = agent.stop_after_exit_of(pid);
    let seen = Seen::of(&lines, pid);
    assert!(!seen.windows.is_empty(), "{stderr}");
    assert_eq!(seen.settled_verdict(), "gc-heavy", "{:?}", seen.verdicts());
    assert!(seen.windows.iter().all(|w| w["runtime"] == "jvm"));
    // One GCIdMark per collection: the JVM's GC(N) ids.
    let log = std::fs::read_to_string(&gclog).unwrap();
    let collections = gc_ids(&log) as f64;
    assert!(collections > 10.0, "the JVM should collect often: {log}");
    assert_eq!(
        seen.sum("gc_cycles"),
        collections,
        "GC cycles: agent vs -Xlog:gc's GC(N)"
    );
}

/// With uprobes opted out, a JVM's collections come from its own GC id
/// counter and its pause time from hsperfdata, read without probing it.
#[test]
fn jvm_without_uprobes_counts_collections_from_its_own_counters() {
    let test = "jvm_without_uprobes_counts_collections_from_its_own_counters";
    if !common::require_root(test) || !require("java", test) {
        return;
    }
    let _serial = common::serial();
    let classes = javac("AllocHeavy");
    let gclog = tmp().join(common::unique("gc-hsperf.log"));
    let agent = Agent::start(&["--interval", "1", "--no-uprobes-for", "java"]);
    let mut cmd = Command::new("java");
    cmd.arg("-Xmx64m")
        .arg("-XX:+UseG1GC")
        .arg(format!("-Xlog:gc:file={}", gclog.display()));
    // Waits after the work too: the file goes with the JVM, so the last
    // window must have read it after the last collection.
    cmd.arg("-cp")
        .arg(&classes)
        .args(["AllocHeavy", "6", "0", "2.5"]);
    let (seen, _, _) = {
        let running = start(cmd, "jvm-hsperf");
        let pid = running.pid();
        let (_, _, _cg) = running.wait();
        let (lines, stderr, _) = agent.stop_after_exit_of(pid);
        let seen = Seen::of(&lines, pid);
        assert!(!seen.windows.is_empty(), "{stderr}");
        (seen, (), ())
    };
    let log = std::fs::read_to_string(&gclog).unwrap();
    let collections = gc_ids(&log) as f64;
    assert!(collections > 10.0, "{log}");
    assert_eq!(
        seen.sum("gc_cycles"),
        collections,
        "GC cycles: the JVM's own counters vs -Xlog:gc's GC(N)"
    );
    assert!(seen.sum("gc_pause_seconds") > 0.0);
}

#[test]
fn jvm_compute_is_steady() {
    let test = "jvm_compute_is_steady";
    if !common::require_root(test) || !require("java", test) {
        return;
    }
    let _serial = common::serial();
    let classes = javac("Compute");
    let mut cmd = Command::new("java");
    cmd.arg("-Xmx64m")
        .arg("-cp")
        .arg(&classes)
        .args(["Compute", "8"]);
    let (seen, _, _) = run_under_agent(test, cmd, "jvm-compute");
    assert_eq!(seen.settled_verdict(), "steady", "{:?}", seen.verdicts());
}

#[test]
fn node_alloc_heavy_is_gc_heavy_per_trace_gc() {
    let test = "node_alloc_heavy_is_gc_heavy_per_trace_gc";
    if !common::require_root(test) || !require("node", test) {
        return;
    }
    let _serial = common::serial();
    let agent = Agent::start(&["--interval", "1"]);
    let trace = tmp().join(common::unique("node-trace"));
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "exec node --trace-gc {} {} > {}",
        workloads_dir().join("node/allocheavy.js").display(),
        RUN_SECONDS,
        trace.display()
    ));
    let running = start(cmd, "node-alloc");
    let pid = running.pid();
    let threads = watch_thread_cpu(pid);
    let (_, lived, _cg) = running.wait();
    let (main_seconds, helper_seconds) = threads.join().unwrap();
    let (lines, stderr, _) = agent.stop();
    let seen = Seen::of(&lines, pid);
    assert!(!seen.windows.is_empty(), "{stderr}");
    assert!(
        seen.windows.iter().any(|w| w["runtime"] == "node"),
        "{:?}",
        seen.windows
    );
    // --trace-gc prints each collection with its pause:
    // "[pid:0x…]   1234 ms: Scavenge 4.1 (5.2) -> 3.0 (6.2) MB, 1.23 / 0.00 ms  (…)"
    let trace = std::fs::read_to_string(&trace).unwrap();
    let pauses_ms: f64 = trace
        .lines()
        .filter_map(|l| {
            l.split(" MB, ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .sum();
    let collections = trace.lines().filter(|l| l.contains(" MB, ")).count();
    let trace_share = pauses_ms / 1000.0 / lived.as_secs_f64();
    assert!(
        collections > 50 && trace_share > 0.05,
        "node's own trace shows little GC: {collections} GCs, {:.1}% paused",
        100.0 * trace_share
    );
    assert_eq!(
        seen.settled_verdict(),
        "gc-heavy",
        "{:?}; trace-gc: {collections} GCs, {:.1}% of the time paused",
        seen.verdicts(),
        100.0 * trace_share
    );
    // Both ways, in CPU seconds over the process's life (the agent was
    // attached before it started):
    // - floor: the main thread's pauses, as V8 itself timed them; GC CPU
    //   is at least that (concurrent and parallel work comes on top);
    // - ceiling: those pauses plus all the CPU of V8's other threads (its
    //   platform workers mark, sweep and scavenge in parallel; they also
    //   compile, so this is a ceiling, not an estimate) plus incremental
    //   marking steps on the main thread, which V8 does not count as
    //   pauses: bounded here by a quarter of the main thread's remaining
    //   CPU, far above what an allocation loop's marking takes.
    let agent_gc = seen.sum("gc_cpu_seconds");
    let pauses = pauses_ms / 1000.0;
    let ceiling = pauses + helper_seconds + 0.25 * (main_seconds - pauses).max(0.0);
    eprintln!(
        "node: agent GC {agent_gc:.2} s (share {:.1}%); V8 paused {pauses:.2} s in {collections} GCs; \
         main thread {main_seconds:.2} s, helper threads {helper_seconds:.2} s (kernel); ceiling {ceiling:.2} s",
        100.0 * seen.gc_share()
    );
    assert!(
        agent_gc >= 0.75 * pauses,
        "agent GC {agent_gc:.2} s under V8's own pauses {pauses:.2} s"
    );
    assert!(
        agent_gc <= ceiling,
        "agent GC {agent_gc:.2} s over what V8's pauses and its helper threads' CPU allow ({ceiling:.2} s)"
    );
}

/// CPU seconds (utime+stime) of a process's main thread and of its other
/// threads, as the kernel counts them: the last values read before it
/// exited, read every 100 ms.
fn watch_thread_cpu(pid: u64) -> std::thread::JoinHandle<(f64, f64)> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    std::thread::spawn(move || {
        let mut last = (0, 0);
        loop {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                break;
            };
            let (mut main, mut others) = (0, 0);
            for task in tasks.flatten() {
                let Ok(stat) = std::fs::read(task.path().join("stat")) else {
                    continue;
                };
                let Ok(s) = tally_core::procstat::parse_stat(&stat) else {
                    continue;
                };
                if u64::from(s.pid) == pid {
                    main = s.cpu_ticks;
                } else {
                    others += s.cpu_ticks;
                }
            }
            if main + others >= last.0 + last.1 {
                last = (main, others);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (last.0 as f64 / hz, last.1 as f64 / hz)
    })
}

#[test]
fn c_malloc_churn_is_alloc_churn_never_gc_heavy() {
    let test = "c_malloc_churn_is_alloc_churn_never_gc_heavy";
    if !common::require_root(test) {
        return;
    }
    let _serial = common::serial();
    let bin = tmp().join("churn");
    let status = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(workloads_dir().join("churn.c"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut cmd = Command::new(&bin);
    cmd.arg("8");
    let (seen, _, _) = run_under_agent(test, cmd, "c-churn");
    assert!(
        !seen.verdicts().contains(&"gc-heavy"),
        "{:?}",
        seen.verdicts()
    );
    assert_eq!(
        seen.settled_verdict(),
        "alloc-churn",
        "{:?}",
        seen.verdicts()
    );
    assert!(seen.windows.iter().all(|w| w["runtime"] == "native"));
}

#[test]
fn stress_ng_cpu_is_steady_and_sleep_is_idle() {
    let test = "stress_ng_cpu_is_steady_and_sleep_is_idle";
    if !common::require_root(test) || !require("stress-ng", test) {
        return;
    }
    let _serial = common::serial();
    let agent = Agent::start(&["--interval", "1"]);
    let mut stress = Command::new("stress-ng");
    stress.args(["--cpu", "1", "--timeout", "8s", "--quiet"]);
    let stress = start(stress, "stress");
    let mut sleep = Command::new("sleep");
    sleep.arg("8");
    let sleeper = start(sleep, "sleep");
    let sleep_pid = sleeper.pid();
    let stress_pid = stress.pid();
    let _ = stress.wait();
    let _ = sleeper.wait();
    let (lines, _, _) = agent.stop();
    // stress-ng's worker is a child of the pid we started: judge every
    // stress-ng process that ran.
    let busy: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["comm"]
                .as_str()
                .is_some_and(|c| c.starts_with("stress-ng"))
                && l["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.5
        })
        .collect();
    assert!(
        !busy.is_empty(),
        "no busy stress-ng window (started pid {stress_pid})"
    );
    assert!(busy.iter().all(|w| w["verdict"] == "steady"), "{busy:?}");
    // A sleeper does nothing after start-up: any window of it is idle.
    let sleeps = Seen::of(&lines, sleep_pid);
    assert!(
        sleeps
            .windows
            .iter()
            .skip(1)
            .all(|w| w["verdict"] == "idle"),
        "{:?}",
        sleeps.verdicts()
    );
}
