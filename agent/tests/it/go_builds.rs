//! Production Go builds: the same allocation-heavy program built with
//! symbols, stripped (`-ldflags="-s -w"`, no `.symtab`) and as a stripped
//! PIE, each run under `agent top --batch --json`. Stripped binaries keep
//! only the runtime's pclntab; Tally must see the same GC through it: GC
//! cycles equal to gctrace's count, and the same GC share as the build with
//! symbols. Each build runs on the host and in a real container (docker,
//! an image holding only the binary and its libraries at a path the host
//! does not have), where the agent reads the binary through the process's
//! mappings and root. Needs root, go and dockerd (`cargo xtask test`
//! installs and starts them).
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::common::{
    self, Agent, TestCgroup,
    container::{self, Image},
};

/// Seconds of allocation per run, after a quiet start.
const RUN_SECONDS: f64 = 8.0;
/// Seconds the program waits, allocating nothing, before it starts: the
/// agent detects it, parses its pclntab and probes it within one window,
/// so the uprobe is on before the first GC cycle (the program starts
/// under 4 MiB of heap, where Go does not collect).
const QUIET_SECONDS: f64 = 2.5;

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn go_build(name: &str, flags: &[&str]) -> PathBuf {
    let out = tmp().join(format!("go-allocheavy-{name}"));
    common::go_build("allocheavy", &out, flags, &[])
}

/// Where a build runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Host,
    Container,
}

/// What one build's run showed, from both sides.
struct Run {
    build: &'static str,
    place: Place,
    share: f64,
    cycles: f64,
    verdict: String,
    confidence: f64,
    gctrace_cycles: f64,
    /// gctrace's GC CPU (its last line's % of GOMAXPROCS × wall time since
    /// start) over the CPU the process used (its own getrusage).
    gctrace_share: f64,
}

/// Runs the program (on the host in a cgroup of its own, or as a
/// container) under the agent; its JSON report, its gctrace, its pid on the
/// host, and the container, kept until the agent has seen it exit.
fn run_build(build: &'static str, bin: &Path, place: Place) -> Run {
    let agent = Agent::start(&["--interval", "1"]);
    let args = [RUN_SECONDS.to_string(), QUIET_SECONDS.to_string()];
    let env = [
        ("GOGC", "10"),
        ("GODEBUG", "gctrace=1"),
        ("GOMAXPROCS", "1"),
    ];
    let (report, gctrace, pid, running) = match place {
        Place::Host => {
            let cgroup = TestCgroup::create(&common::unique(&format!("tally-test-go-{build}")));
            let gctrace_file = tmp().join(common::unique(&format!("gctrace-{build}")));
            let mut cmd = Command::new(bin);
            // GOGC=10: a cycle every few tens of ms. One P, as in the
            // verdicts test: the process keeps its P busy and no mark
            // worker idles.
            cmd.args(&args)
                .envs(env)
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&gctrace_file).unwrap());
            cgroup.enter_on_spawn(&mut cmd);
            let out = cmd
                .spawn()
                .expect("workload starts")
                .wait_with_output()
                .unwrap();
            assert!(out.status.success(), "{build}: workload failed: {out:?}");
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            let pid = report["pid"].as_u64().unwrap();
            let gctrace = std::fs::read_to_string(&gctrace_file).unwrap();
            (report, gctrace, pid, None)
        }
        Place::Container => {
            let image = Image::host_files(&format!("go-{build}"), "/app/allocheavy", bin);
            let mut run = container::Run::new();
            for (k, v) in env {
                run = run.env(k, v);
            }
            let c = run.start(&image, &[&args[0], &args[1]]);
            let (stdout, gctrace) = c.wait_success(std::time::Duration::from_secs(60));
            let report: Value = serde_json::from_str(stdout.trim()).unwrap();
            let pid = u64::from(c.pid);
            (report, gctrace, pid, Some(c))
        }
    };
    // The window that reports the exit carries the cycles of the process's
    // last moments.
    let (lines, stderr, _) = agent.stop_after_exit_of(pid);
    let windows = common::windows_of(&lines, pid);
    assert!(
        !windows.is_empty(),
        "{build}: no window for {pid}:\n{stderr}"
    );
    let runtimes: Vec<(&Value, &Value, &Value)> = windows
        .iter()
        .map(|w| (&w["runtime"], &w["exited"], &w["gc_cycles"]))
        .collect();
    // Every window says Go, the exit's too (it may come after the process
    // left /proc).
    assert!(
        windows.iter().all(|w| w["runtime"] == "go"),
        "{build}: not seen as Go: {runtimes:?}"
    );

    if let Some(c) = &running {
        // The container's own id, from its real cgroup.
        assert!(
            windows
                .iter()
                .filter(|w| w["exited"] == false)
                .all(|w| w["container_id"] == c.id.as_str()),
            "{build}: windows not named by container {}",
            c.id
        );
    }
    drop(running);
    let gc_lines: Vec<&str> = gctrace.lines().filter(|l| l.starts_with("gc ")).collect();
    let last: Vec<&str> = gc_lines
        .last()
        .expect("gctrace lines")
        .split_whitespace()
        .collect();
    let at: f64 = last[2]
        .trim_start_matches('@')
        .trim_end_matches('s')
        .parse()
        .unwrap();
    let pct: f64 = last[3].trim_end_matches("%:").parse().unwrap();
    let procs: f64 = last[last.len() - 2].parse().unwrap();
    let gctrace_share = pct / 100.0 * at * procs / report["cpu_seconds"].as_f64().unwrap();

    // The verdict most full windows after the first two held (the quiet
    // start is idle), with its mean confidence.
    let steady: Vec<&&Value> = windows
        .iter()
        .skip(2)
        .filter(|w| w["exited"] == false)
        .collect();
    let verdict_of = |w: &Value| w["verdict"].as_str().unwrap_or("").to_string();
    let verdict = steady
        .iter()
        .map(|w| verdict_of(w))
        .max_by_key(|v| steady.iter().filter(|w| verdict_of(w) == *v).count())
        .unwrap_or_default();
    let held: Vec<f64> = steady
        .iter()
        .filter(|w| verdict_of(w) == verdict)
        .map(|w| w["verdict_confidence"].as_f64().unwrap_or(0.0))
        .collect();
    Run {
        build,
        place,
        share: common::sum(&windows, "gc_cpu_seconds")
            / common::sum(&windows, "cpu_seconds").max(1e-9),
        cycles: common::sum(&windows, "gc_cycles"),
        verdict,
        confidence: held.iter().sum::<f64>() / held.len().max(1) as f64,
        gctrace_cycles: gc_lines.len() as f64,
        gctrace_share,
    }
}

/// 5 percentage points, or 25% relative, whichever is larger: the
/// tolerance of the verdicts test's Go GC share.
fn share_tolerance(reference: f64) -> f64 {
    (0.05f64).max(0.25 * reference)
}

#[test]
fn stripped_and_pie_go_builds_show_the_same_gc_as_with_symbols() {
    let test = "stripped_and_pie_go_builds_show_the_same_gc_as_with_symbols";
    if !common::require_root(test)
        || !common::require("go", test)
        || !container::require_docker(test)
    {
        return;
    }
    let _serial = common::serial();
    let builds = [
        ("symbols", go_build("symbols", &[])),
        ("stripped", go_build("stripped", &["-ldflags=-s -w"])),
        (
            "pie-stripped",
            go_build("pie-stripped", &["-buildmode=pie", "-ldflags=-s -w"]),
        ),
    ];
    let runs: Vec<Run> = builds
        .iter()
        .flat_map(|(build, bin)| {
            [Place::Host, Place::Container].map(|place| run_build(build, bin, place))
        })
        .collect();
    for r in &runs {
        eprintln!(
            "| Go 1.19 | {} | {} | {:.1}% | {} | {} | {:.2} | gctrace: {} cycles, GC {:.1}% of CPU |",
            r.build,
            match r.place {
                Place::Host => "host",
                Place::Container => "container",
            },
            100.0 * r.share,
            r.cycles,
            r.verdict,
            r.confidence,
            r.gctrace_cycles,
            100.0 * r.gctrace_share
        );
    }
    let with_symbols = &runs[0];
    for r in &runs {
        assert!(
            r.gctrace_cycles > 20.0,
            "{}: the program should collect often",
            r.build
        );
        // One uprobe hit per cycle, one gctrace line per cycle. A cycle
        // whose mark termination is entered as the process exits may miss
        // its line, so one cycle of slack, never more.
        assert!(
            (r.cycles - r.gctrace_cycles).abs() <= 1.0,
            "{}: GC cycles: agent {}, gctrace {}",
            r.build,
            r.cycles,
            r.gctrace_cycles
        );
        assert_eq!(r.verdict, "gc-heavy", "{}", r.build);
        let allowed = share_tolerance(with_symbols.share);
        assert!(
            (r.share - with_symbols.share).abs() <= allowed,
            "{}: GC share {:.1}%, with symbols {:.1}% (allowed ±{:.1} points)",
            r.build,
            100.0 * r.share,
            100.0 * with_symbols.share,
            100.0 * allowed
        );
    }
}

/// The blind case: with `--stack-sampling off` nothing shows a Go
/// program's GC CPU (it has no GC threads by name). Its verdict says so,
/// `gc-unobservable` with confidence 0 and no GC share, instead of a
/// confident `steady` at 0%; its cycles, from the uprobe, are still exact.
#[test]
fn go_without_stack_sampling_is_gc_unobservable_not_steady() {
    let test = "go_without_stack_sampling_is_gc_unobservable_not_steady";
    if !common::require_root(test) || !common::require("go", test) {
        return;
    }
    let _serial = common::serial();
    let bin = go_build("symbols", &[]);
    let agent = Agent::start(&["--interval", "1", "--stack-sampling", "off"]);
    let cgroup = TestCgroup::create(&common::unique("tally-test-go-blind"));
    let gctrace_file = tmp().join(common::unique("gctrace-blind"));
    let mut cmd = Command::new(&bin);
    cmd.args([RUN_SECONDS.to_string(), QUIET_SECONDS.to_string()])
        .env("GOGC", "10")
        .env("GODEBUG", "gctrace=1")
        .env("GOMAXPROCS", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&gctrace_file).unwrap());
    cgroup.enter_on_spawn(&mut cmd);
    let out = cmd.spawn().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = report["pid"].as_u64().unwrap();
    let (lines, stderr, _) = agent.stop_after_exit_of(pid);
    let windows = common::windows_of(&lines, pid);
    let busy: Vec<&Value> = windows
        .iter()
        .copied()
        .filter(|w| w["exited"] == false && w["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.5)
        .collect();
    assert!(!busy.is_empty(), "no busy window:\n{stderr}");
    for w in &busy {
        assert_eq!(w["verdict"], "gc-unobservable", "{w}");
        assert_eq!(w["verdict_confidence"], 0.0, "{w}");
        assert!(
            w["gc_cpu_share"].is_null(),
            "a share where none is known: {w}"
        );
        let why = w["verdict_reasons"][0].as_str().unwrap_or_default();
        assert!(why.contains("not sampled"), "{w}");
    }
    let gctrace = std::fs::read_to_string(&gctrace_file).unwrap();
    let gctrace_cycles = gctrace.lines().filter(|l| l.starts_with("gc ")).count() as f64;
    let cycles = common::sum(&windows, "gc_cycles");
    eprintln!(
        "| Go 1.19 | symbols, --stack-sampling off | host | unseen (null) | {cycles} | gc-unobservable | 0.00 | gctrace: {gctrace_cycles} cycles |"
    );
    assert!(
        (cycles - gctrace_cycles).abs() <= 1.0,
        "GC cycles: agent {cycles}, gctrace {gctrace_cycles}"
    );
}
