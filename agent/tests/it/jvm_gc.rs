//! JVM GC cycles and GC CPU under the real agent, against the JVM's own
//! accounting, one case per JDK and collector. Needs root and the JDKs
//! (found under `$JAVA_HOME` and `/usr/lib/jvm/*` by their `release` file).
//!
//! Ground truths, and what each covers:
//! - **Cycles**: the distinct `GC(N)` ids of `-Xlog:gc`, the JVM's own
//!   numbering of collections: a G1 young or full pause, a G1 concurrent
//!   cycle (its Remark and Cleanup pauses share its id), a Parallel or Serial
//!   collection, a ZGC minor or major collection. Tally's `gc_cycles` over
//!   the run must equal it within 5%. The JVM waits 2.5 s before its first
//!   allocation, so the agent has probed it before the first collection.
//! - **GC CPU, Temurin 25 (G1, Parallel)**: hsperfdata's
//!   `sun.threads.total_gc_cpu_time`, the JVM's CPU time of its GC worker,
//!   concurrent-mark, refinement and service threads (HotSpot's
//!   `CPUTimeCounters`), over the process's CPU (`/proc/<pid>/stat`), both
//!   read when the allocating threads have ended. It leaves out the VM
//!   Thread, which starts and ends every pause and which Tally counts as GC
//!   (`node/src/runtimes/jvm/mod.rs`); its own counter (`sun.threads.cpu_time.vm`) also
//!   holds its other safepoint operations. So the JVM's GC share lies
//!   between the GC threads' CPU (floor) and that plus the VM Thread's
//!   (ceiling).
//! - **GC CPU, OpenJDK 17**: no such counter. `-Xlog:gc+cpu` prints
//!   `User= Sys= Real=` for each pause, measured with `times(2)` on the
//!   whole process (10 ms ticks, unbiased over hundreds of pauses); while a
//!   pause lasts only the GC workers and the VM Thread run, so their sum is
//!   the pause CPU: a floor of GC CPU. G1's concurrent cycles have no such
//!   line; `-Xlog:gc` gives each cycle's wall time, and `-Xlog:gc+init` the
//!   concurrent workers: wall × workers bounds the marking CPU, and added to
//!   the floor gives the ceiling. Not covered by either: G1's refinement
//!   threads, which run outside any GC id. Tally must lie between the two
//!   (with the usual tolerance).
//! - **GC CPU, ZGC and Shenandoah on Temurin 25**: the JVM publishes none
//!   (its `sun.threads.total_gc_cpu_time` stays 0 and `-Xlog:gc+cpu` prints
//!   nothing for ZGC), so the row says so and only cycles are checked.
//!
//! Some cases run the JVM in a real container too (docker; the JDK at
//! `/opt/jdk`, a path the host lacks): probes through the container's root,
//! hsperfdata in its `/tmp` under its namespaced pid.
//!
//! Each case prints one row to stderr (`JVM-GC-ROW …`) for the README.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tally_node::runtimes::jvm::hsperf;

use crate::common::{
    self, Agent,
    container::{self, Image},
};

const WORK_SECONDS: f64 = 8.0;
const WAIT_BEFORE: f64 = 2.5;
const WAIT_AFTER: f64 = 3.0;

/// The JDK, or a loud skip off CI; under CI a missing JDK fails.
pub fn require_jdk(major: u32, test: &str) -> Option<PathBuf> {
    if let Some(home) = container::find_jdk(major) {
        return Some(home);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: no JDK {major} under $JAVA_HOME or /usr/lib/jvm under CI");
    }
    eprintln!("SKIP {test}: no JDK {major} under $JAVA_HOME or /usr/lib/jvm");
    None
}

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// `AllocHeavy.java` compiled by this JDK.
pub fn javac(home: &Path, major: u32) -> PathBuf {
    let dir = tmp().join(format!("jvm-gc-classes-{major}"));
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/java/AllocHeavy.java");
    let status = Command::new(home.join("bin/javac"))
        .arg("-d")
        .arg(&dir)
        .arg(&src)
        .status()
        .expect("javac runs");
    assert!(status.success(), "javac {}", src.display());
    dir
}

/// Waits until `AllocHeavy`'s allocating threads (`alloc-N`) have started
/// and ended again (at most 60 s).
pub fn wait_for_allocation_end(pid: u32, test: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut started = false;
    while Instant::now() < deadline {
        let alloc = threads_named(pid, "alloc-");
        if alloc > 0 {
            started = true;
        } else if started {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started, "{test}: the JVM never started allocating");
}

/// Threads of `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .count()
}

/// utime + stime of the whole process, seconds.
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
    let s = tally_core::procstat::parse_stat(&stat).unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    s.cpu_ticks as f64 / hz
}

/// What the JVM says about itself, read once its allocating threads ended.
struct JvmOwn {
    process_cpu: f64,
    /// `sun.threads.total_gc_cpu_time`, seconds; `None` without the counter.
    gc_cpu: Option<f64>,
    /// `sun.threads.cpu_time.vm`, the VM Thread's CPU, seconds.
    vm_thread_cpu: f64,
    /// Pause time of the pause collectors (`sun.gc.collector.*.time`).
    pause_seconds: f64,
}

fn read_jvm_own(pid: u32) -> JvmOwn {
    let path = hsperf::find_file(Path::new("/proc"), pid).expect("the JVM's hsperfdata");
    let data = hsperf::read(&path).unwrap();
    let frequency = data.long("sun.os.hrt.frequency").unwrap() as f64;
    let gc = data.gc_counters().unwrap();
    JvmOwn {
        process_cpu: process_cpu_seconds(pid),
        // Ticks of the high-resolution clock (ns on Linux), as jstat reads
        // every `U_Ticks` counter.
        gc_cpu: data
            .long("sun.threads.total_gc_cpu_time")
            .map(|t| t as f64 / frequency),
        vm_thread_cpu: data.long("sun.threads.cpu_time.vm").unwrap_or(0) as f64 / frequency,
        pause_seconds: gc.gc_time_seconds,
    }
}

/// From `-Xlog:gc,gc+cpu,gc+init`: distinct GC ids, the `User+Sys`
/// seconds of the pauses, and the CPU the concurrent cycles could have
/// used (their wall time × the concurrent workers).
struct GcLog {
    ids: usize,
    pause_cpu: f64,
    concurrent_cpu_bound: f64,
}

fn read_gc_log(text: &str) -> GcLog {
    let id_of = |line: &str| -> Option<u64> {
        let at = line.find("GC(")? + 3;
        line[at..].split(')').next()?.parse().ok()
    };
    let ids: BTreeSet<u64> = text.lines().filter_map(id_of).collect();
    let pause_cpu: f64 = text
        .lines()
        .filter(|l| l.contains(" User="))
        .map(|line| {
            let secs = |key: &str| -> f64 {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .and_then(|v| v.trim_end_matches('s').parse().ok())
                    .unwrap_or(0.0)
            };
            secs("User=") + secs("Sys=")
        })
        .sum();
    let workers: f64 = text
        .lines()
        .find_map(|l| l.split("Concurrent Workers: ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1.0);
    // "GC(6) Concurrent Mark Cycle 20.718ms", "… Concurrent Undo Cycle …".
    let concurrent_wall: f64 = text
        .lines()
        .filter(|l| l.contains(" Concurrent ") && l.contains(" Cycle ") && l.ends_with("ms"))
        .filter_map(|l| {
            l.rsplit(' ')
                .next()?
                .trim_end_matches("ms")
                .parse::<f64>()
                .ok()
        })
        .sum::<f64>()
        / 1e3;
    GcLog {
        ids: ids.len(),
        pause_cpu,
        concurrent_cpu_bound: concurrent_wall * workers,
    }
}

/// The verdict most windows of the busy part of the run held, and its
/// mean confidence.
fn busy_verdict(windows: &[&Value]) -> (String, f64) {
    let busiest = windows
        .iter()
        .map(|w| w["cpu_seconds"].as_f64().unwrap_or(0.0))
        .fold(0.0, f64::max);
    let busy: Vec<&&Value> = windows
        .iter()
        .filter(|w| w["cpu_seconds"].as_f64().unwrap_or(0.0) >= 0.5 * busiest)
        .collect();
    let mut best = (String::new(), 0, 0.0);
    for v in &busy {
        let name = v["verdict"].as_str().unwrap_or("").to_owned();
        let same: Vec<f64> = busy
            .iter()
            .filter(|w| w["verdict"] == v["verdict"])
            .map(|w| w["verdict_confidence"].as_f64().unwrap_or(0.0))
            .collect();
        if same.len() > best.1 {
            best = (
                name,
                same.len(),
                same.iter().sum::<f64>() / same.len() as f64,
            );
        }
    }
    (best.0, best.2)
}

fn run_case(test: &str, major: u32, flag: &str, collector: &str) {
    run_case_with(test, major, flag, collector, &[]);
}

/// [`run_case`] with more agent arguments.
fn run_case_with(test: &str, major: u32, flag: &str, collector: &str, agent_args: &[&str]) {
    run_case_at(test, major, flag, collector, agent_args, Place::Host);
}

/// Where the JVM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Host,
    Container,
}

/// The JVM started on the host, or in a container.
enum Running {
    Host(std::process::Child),
    Container(container::Container),
}

fn run_case_at(
    test: &str,
    major: u32,
    flag: &str,
    collector: &str,
    agent_args: &[&str],
    place: Place,
) {
    if !common::require_root(test) {
        return;
    }
    let Some(home) = require_jdk(major, test) else {
        return;
    };
    if place == Place::Container && !container::require_docker(test) {
        return;
    }
    let _serial = common::serial();
    let classes = javac(&home, major);
    let logs = tmp().join(common::unique(&format!("jvm-gc-{major}-{collector}")));
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("gc.log");
    let mut args = vec!["--interval", "1"];
    args.extend_from_slice(agent_args);
    let agent = Agent::start(&args);
    let (log_at, classes_at) = match place {
        Place::Host => (log.display().to_string(), classes.display().to_string()),
        Place::Container => ("/logs/gc.log".to_owned(), "/classes".to_owned()),
    };
    let java_args: Vec<String> = [
        "-Xmx64m",
        flag,
        "-XX:+UsePerfData",
        &format!("-Xlog:gc,gc+cpu,gc+init:file={log_at}"),
        "-cp",
        &classes_at,
        "AllocHeavy",
        &WORK_SECONDS.to_string(),
        &WAIT_BEFORE.to_string(),
        &WAIT_AFTER.to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let running = match place {
        Place::Host => Running::Host(
            Command::new(home.join("bin/java"))
                .args(&java_args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("java starts"),
        ),
        Place::Container => {
            let image = Image::jvm(&format!("jdk{major}"), &home);
            let mut command = vec!["/opt/jdk/bin/java"];
            command.extend(java_args.iter().map(String::as_str));
            Running::Container(
                container::Run::new()
                    .volume(&classes, "/classes", false)
                    .volume(&logs, "/logs", true)
                    .start(&image, &command),
            )
        }
    };
    let pid = match &running {
        Running::Host(child) => child.id(),
        Running::Container(c) => c.pid,
    };
    // The JVM's own figures once the allocating threads are gone (the JVM
    // then sleeps WAIT_AFTER seconds, alive, with its counters).
    wait_for_allocation_end(pid, test);
    let own = read_jvm_own(pid);
    let kept = match running {
        Running::Host(child) => {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{test}: java failed: {out:?}");
            None
        }
        Running::Container(c) => {
            c.wait_success(Duration::from_secs(60));
            Some(c)
        }
    };
    let (lines, stderr, _) = agent.stop_after_exit_of(u64::from(pid));
    let windows = common::windows_of(&lines, u64::from(pid));
    assert!(
        !windows.is_empty(),
        "{test}: no window; agent stderr:\n{stderr}"
    );
    // Every window says jvm, the exit's too (it may come after the process
    // left /proc); in a container, a first window can be runc's init (a Go
    // program) before it execs the JVM under the same pid.
    let runtimes: Vec<(&Value, &Value)> = windows
        .iter()
        .map(|w| (&w["runtime"], &w["exited"]))
        .collect();
    let first_jvm = windows
        .iter()
        .position(|w| w["runtime"] == "jvm")
        .unwrap_or(windows.len());
    assert!(
        windows[first_jvm..].iter().all(|w| w["runtime"] == "jvm")
            && (first_jvm == 0 || (kept.is_some() && first_jvm <= 1)),
        "{test}: runtimes {runtimes:?}"
    );
    if let Some(c) = &kept {
        assert!(
            windows.iter().all(|w| w["container_id"] == c.id.as_str()),
            "{test}: windows not named by container {}",
            c.id
        );
    }

    let gc_log = read_gc_log(&std::fs::read_to_string(&log).unwrap());
    let cycles = common::sum(&windows, "gc_cycles");
    let pauses = common::sum(&windows, "gc_pause_seconds");
    let share =
        common::sum(&windows, "gc_cpu_seconds") / common::sum(&windows, "cpu_seconds").max(1e-9);
    let (verdict, confidence) = busy_verdict(&windows);

    // The JVM's share: exact where it counts GC CPU, else floor..ceiling.
    let cpu = own.process_cpu.max(1e-9);
    let (floor, ceiling, jvm_share) = match own.gc_cpu {
        Some(gc) if gc > 0.0 => {
            let ceiling = (gc + own.vm_thread_cpu) / cpu;
            (
                gc / cpu,
                ceiling,
                format!(
                    "{:.1}%..{:.1}% (GC threads..+VM Thread)",
                    100.0 * gc / cpu,
                    100.0 * ceiling
                ),
            )
        }
        Some(_) => (f64::NAN, f64::NAN, "n/a (publishes no GC CPU)".to_owned()),
        None => {
            let floor = gc_log.pause_cpu / cpu;
            let ceiling = (gc_log.pause_cpu + gc_log.concurrent_cpu_bound) / cpu;
            (
                floor,
                ceiling,
                format!(
                    "{:.1}%..{:.1}% (gc+cpu pauses..+concurrent cycles)",
                    100.0 * floor,
                    100.0 * ceiling
                ),
            )
        }
    };
    let jvm_pauses = if collector == "Shenandoah" {
        "n/a (its counter holds concurrent phases)".to_owned()
    } else {
        format!("{:.3}s", own.pause_seconds)
    };
    eprintln!(
        "JVM-GC-ROW | JDK {major} | {collector}{} | {} | GC share Tally {:.1}% vs JVM {jvm_share} | \
         cycles Tally {cycles} vs JVM {} | pauses Tally {:.3}s vs JVM {jvm_pauses} | {verdict} | {confidence:.2}",
        if agent_args.is_empty() {
            ""
        } else {
            " (no uprobes)"
        },
        match place {
            Place::Host => "host",
            Place::Container => "container",
        },
        100.0 * share,
        gc_log.ids,
        pauses,
    );

    assert!(
        gc_log.ids > 50,
        "{test}: the JVM should collect often ({} ids)",
        gc_log.ids
    );
    let want = gc_log.ids as f64;
    assert!(
        (cycles - want).abs() <= 0.05 * want,
        "{test}: GC cycles: Tally {cycles}, -Xlog:gc {want} distinct GC(N)"
    );
    // A pause is counted once. Stop-the-world pauses take milliseconds and
    // Tally's (gc__begin to gc__end, a little wider than the JVM's own
    // timer) is within 15% of the JVM's pause collectors' time. ZGC's take
    // microseconds, of the order of the probes' own cost: only seen.
    assert!(pauses > 0.0, "{test}: no pause time");
    // Shenandoah's one counter holds its concurrent phases too: no pause time.
    if !["ZGC", "Shenandoah"].contains(&collector) && agent_args.is_empty() {
        assert!(
            (pauses - own.pause_seconds).abs() <= 0.15 * own.pause_seconds,
            "{test}: pause time Tally {pauses:.3}s, JVM {:.3}s",
            own.pause_seconds
        );
    }
    if !floor.is_nan() {
        // 5 points, or 25% relative, whichever is larger.
        let slack = |x: f64| 0.05f64.max(0.25 * x);
        assert!(
            share >= floor - slack(floor) && share <= ceiling + slack(ceiling),
            "{test}: GC share Tally {:.1}%, JVM {jvm_share}",
            100.0 * share
        );
    }
}

#[test]
fn jdk17_g1_cycles_and_gc_cpu_match_the_jvm() {
    run_case(
        "jdk17_g1_cycles_and_gc_cpu_match_the_jvm",
        17,
        "-XX:+UseG1GC",
        "G1",
    );
}

#[test]
fn jdk17_parallel_cycles_and_gc_cpu_match_the_jvm() {
    run_case(
        "jdk17_parallel_cycles_and_gc_cpu_match_the_jvm",
        17,
        "-XX:+UseParallelGC",
        "Parallel",
    );
}

#[test]
fn jdk25_zgc_cycles_match_the_jvm() {
    run_case("jdk25_zgc_cycles_match_the_jvm", 25, "-XX:+UseZGC", "ZGC");
}

#[test]
fn jdk25_parallel_cycles_and_gc_cpu_match_the_jvm() {
    run_case(
        "jdk25_parallel_cycles_and_gc_cpu_match_the_jvm",
        25,
        "-XX:+UseParallelGC",
        "Parallel",
    );
}

#[test]
fn jdk25_g1_cycles_and_gc_cpu_match_the_jvm() {
    run_case(
        "jdk25_g1_cycles_and_gc_cpu_match_the_jvm",
        25,
        "-XX:+UseG1GC",
        "G1",
    );
}

#[test]
fn jdk17_serial_cycles_and_gc_cpu_match_the_jvm() {
    run_case(
        "jdk17_serial_cycles_and_gc_cpu_match_the_jvm",
        17,
        "-XX:+UseSerialGC",
        "Serial",
    );
}

#[test]
fn jdk25_shenandoah_cycles_match_the_jvm() {
    run_case(
        "jdk25_shenandoah_cycles_match_the_jvm",
        25,
        "-XX:+UseShenandoahGC",
        "Shenandoah",
    );
}

/// With uprobes opted out, collections come from the JVM's own GC id
/// counter (`GCId::_next_id`, read from its memory) and pause time from
/// hsperfdata: ZGC, whose pause counters are not collections.
#[test]
fn jdk25_zgc_without_uprobes_counts_collections_from_its_gc_ids() {
    run_case_with(
        "jdk25_zgc_without_uprobes_counts_collections_from_its_gc_ids",
        25,
        "-XX:+UseZGC",
        "ZGC",
        &["--no-uprobes-for", "java"],
    );
}

/// The same for G1 on OpenJDK 17, whose concurrent cycles have GC ids and
/// no counter.
#[test]
fn jdk17_g1_without_uprobes_counts_collections_from_its_gc_ids() {
    run_case_with(
        "jdk17_g1_without_uprobes_counts_collections_from_its_gc_ids",
        17,
        "-XX:+UseG1GC",
        "G1",
        &["--no-uprobes-for", "java"],
    );
}

#[test]
fn jdk17_g1_in_a_container_cycles_and_gc_cpu_match_the_jvm() {
    run_case_at(
        "jdk17_g1_in_a_container_cycles_and_gc_cpu_match_the_jvm",
        17,
        "-XX:+UseG1GC",
        "G1",
        &[],
        Place::Container,
    );
}

#[test]
fn jdk25_zgc_in_a_container_cycles_match_the_jvm() {
    run_case_at(
        "jdk25_zgc_in_a_container_cycles_match_the_jvm",
        25,
        "-XX:+UseZGC",
        "ZGC",
        &[],
        Place::Container,
    );
}

#[test]
fn jdk25_parallel_in_a_container_cycles_and_gc_cpu_match_the_jvm() {
    run_case_at(
        "jdk25_parallel_in_a_container_cycles_and_gc_cpu_match_the_jvm",
        25,
        "-XX:+UseParallelGC",
        "Parallel",
        &[],
        Place::Container,
    );
}

/// A JVM already running when the agent starts, seen without uprobes (its
/// counts come from its own cumulative counters): its first window carries
/// the collections of that window, not those of its life so far, and no
/// window holds more pause time than the window can.
#[test]
fn a_jvm_running_before_the_agent_reports_no_lifetime_in_its_first_window() {
    let test = "a_jvm_running_before_the_agent_reports_no_lifetime_in_its_first_window";
    if !common::require_root(test) {
        return;
    }
    let Some(home) = require_jdk(17, test) else {
        return;
    };
    let _serial = common::serial();
    let classes = javac(&home, 17);
    let log = tmp().join(common::unique("jvm-gc-before-agent.log"));
    let mut java = Command::new(home.join("bin/java"))
        .args(["-Xmx64m", "-XX:+UseParallelGC", "-XX:+UsePerfData"])
        .arg(format!("-Xlog:gc:file={}", log.display()))
        .arg("-cp")
        .arg(&classes)
        .args(["AllocHeavy", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("java starts");
    let pid = java.id();
    // Its life before the agent: hundreds of collections.
    std::thread::sleep(Duration::from_secs(5));
    let before = read_gc_log(&std::fs::read_to_string(&log).unwrap()).ids;
    let agent = Agent::start(&["--interval", "1", "--no-uprobes-for", "java"]);
    std::thread::sleep(Duration::from_secs(4));
    let (lines, stderr, _) = agent.stop();
    let after = read_gc_log(&std::fs::read_to_string(&log).unwrap()).ids;
    let _ = java.kill();
    let _ = java.wait();
    let windows = common::windows_of(&lines, u64::from(pid));
    assert!(
        windows.len() >= 2,
        "{test}: too few windows; agent stderr:\n{stderr}"
    );
    let cycles: Vec<f64> = windows
        .iter()
        .map(|w| w["gc_cycles"].as_f64().unwrap_or(0.0))
        .collect();
    eprintln!(
        "{test}: JVM collected {before} times before the agent, {after} by its stop; windows: {cycles:?}"
    );
    assert!(
        before > 100,
        "{test}: the JVM should collect often ({before})"
    );
    // Everything the agent reports happened while it ran.
    let reported: f64 = cycles.iter().sum();
    assert!(
        reported <= (after - before) as f64 * 1.05 + 5.0,
        "{test}: {reported} cycles reported, {} while the agent ran (lifetime {after})",
        after - before
    );
    assert!(
        cycles[0] < before as f64 / 2.0,
        "{test}: the first window carries {} cycles: the JVM's life before the agent ({before})",
        cycles[0]
    );
    for w in &windows {
        let pause = w["gc_pause_seconds"].as_f64().unwrap_or(0.0);
        let window = w["window_seconds"].as_f64().unwrap_or(0.0);
        assert!(
            pause <= window * 2.0,
            "{test}: {pause} s of pauses in a {window} s window"
        );
    }
}
