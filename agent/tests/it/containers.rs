//! The agent on workloads in real containers (dockerd 20.10, containerd,
//! runc; images built offline by `common::container`): the container's own
//! pid and mount namespaces, an overlayfs root, and a cgroup written by
//! runc. Checked against the workloads' own counts and the runtimes' own
//! reports, as the host tests do. Needs root and a running dockerd (`cargo
//! xtask test` installs docker.io and starts it).
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    self, Agent, assert_within,
    container::{self, Image, Run},
    sum,
};

const SYSCALL_FIELDS: [(&str, &str); 5] = [
    ("mmap_calls", "mmap_bytes"),
    ("munmap_calls", "munmap_bytes"),
    ("brk_calls", "brk_bytes"),
    ("mremap_calls", "mremap_bytes"),
    ("madvise_calls", "madvise_dontneed_bytes"),
];

/// Seconds of allocation work for the runtime workloads.
const RUN_SECONDS: &str = "6";

fn workloads_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads")
}

fn ready(test: &str) -> bool {
    common::require_root(test) && container::require_docker(test)
}

/// The process windows the agent printed for a container.
fn windows_of_container<'a>(lines: &'a [Value], id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["kind"] == "process" && l["container_id"] == id)
        .collect()
}

/// The windows of the process of a container that ran `comm` (before its
/// exec too: runc's init is the same process). runc's own processes,
/// which pass through the container's cgroup, are left out.
fn windows_of_program<'a>(lines: &'a [Value], id: &str, comm: &str) -> Vec<&'a Value> {
    let all = windows_of_container(lines, id);
    let Some(pid) = all
        .iter()
        .find(|w| w["comm"] == comm)
        .map(|w| w["pid"].clone())
    else {
        return Vec::new();
    };
    all.into_iter().filter(|w| w["pid"] == pid).collect()
}

/// The container ids (and processes) in the agent's lines, for failure messages.
fn containers_seen(lines: &[Value]) -> Vec<String> {
    let mut seen: Vec<String> = lines
        .iter()
        .filter(|l| !l["container_id"].is_null())
        .map(|l| format!("{} {} {}", l["container_id"], l["pid"], l["comm"]))
        .collect();
    seen.dedup();
    seen
}

/// What the agent saw of a container, for failure messages.
fn describe(windows: &[&Value]) -> String {
    windows
        .iter()
        .map(|w| {
            format!(
                "pid {} comm {} runtime {} cgroup {} container {} ({}) pod {} qos {} mmap {} ({} B) brk {} gc_cycles {} gc_cpu {} exited {}",
                w["pid"],
                w["comm"],
                w["runtime"],
                w["cgroup_path"],
                w["container_id"],
                w["container_runtime"],
                w["pod_uid"],
                w["qos_class"],
                w["mmap_calls"],
                w["mmap_bytes"],
                w["brk_calls"],
                w["gc_cycles"],
                w["gc_cpu_seconds"],
                w["exited"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The cgroup v2 id (inode) of a container's cgroup, from its first
/// process's `/proc/<pid>/cgroup`, with the path relative to the mount.
fn cgroup_of(pid: u32) -> (u64, String) {
    use std::os::unix::fs::MetadataExt as _;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .to_owned();
    let dir = common::cgroup2_mount().join(path.trim_start_matches('/'));
    (std::fs::metadata(&dir).unwrap().ino(), path)
}

/// Every window of a container's first process says `runtime`, but the
/// first may be runc's init (a Go program) before it execs the program
/// under the same pid.
fn runtime_after_exec(windows: &[&Value], runtime: &str) -> bool {
    let first = windows
        .iter()
        .position(|w| w["runtime"] == runtime)
        .unwrap_or(windows.len());
    first <= 1 && first < windows.len() && windows[first..].iter().all(|w| w["runtime"] == runtime)
}

fn static_workload() -> Image {
    Image::static_c("workload", &workloads_dir().join("workload.c"))
}

/// The C workload of the data-path tests in a scratch container: the
/// agent's syscall counts and faults equal the workload's own, and its
/// windows name the container's full id, docker, and the real cgroup.
#[test]
fn static_workload_in_a_container_matches_its_own_counts() {
    let test = "static_workload_in_a_container_matches_its_own_counts";
    if !ready(test) {
        return;
    }
    let _serial = common::serial();
    let started = Instant::now();
    let image = static_workload();
    let agent = Agent::start(&[]);
    // The same binary doing little: runc's set-up and the start-up. (A
    // container gone before the agent's next tick keeps its cgroup's path:
    // it is read at the exec; pods.rs checks one of 0.6 s in 10 s windows.)
    let idle = Run::new().start(&image, &["tick", "2", "300"]);
    let idle_report = idle.report();
    let busy = Run::new().start(&image, &["alloc", "20000", "16"]);
    let busy_report = busy.report();
    let (lines, stderr, _) = agent.stop();
    let startup = windows_of_program(&lines, &idle.id, "workload");
    let windows = windows_of_program(&lines, &busy.id, "workload");
    assert!(
        !windows.is_empty() && !startup.is_empty(),
        "no windows for container {} or {}; containers the agent saw: {:?}; agent stderr:\n{stderr}",
        busy.id,
        idle.id,
        containers_seen(&lines)
    );
    let seen = describe(&windows);
    eprintln!(
        "agent saw:\n{seen}\nworkload's own: {busy_report}\nstart-up run: {}\nits own: {idle_report}",
        describe(&startup)
    );

    // The container's first process: its host pid, not its own (1).
    assert_eq!(busy_report["pid"], 1, "pid 1 in its namespace");
    let pid = windows[0]["pid"].as_u64().unwrap();
    assert!(
        busy.pid == 0 || u64::from(busy.pid) == pid,
        "docker says pid {}: {seen}",
        busy.pid
    );
    // The process ran runc's init (Go) before its exec: what that costs is
    // measured on the start-up run. Go's runtime varies it from run to run:
    // a few calls, and its heap reservations by hundreds of MiB (208 MiB
    // measured between two runs), so the bytes' upper bound is loose for
    // mmap and munmap, while the calls' is tight.
    const INIT_CALLS_SLACK: f64 = 8.0;
    let init_bytes_slack = |field: &str| -> f64 {
        let mib = if field.starts_with("mmap") || field.starts_with("munmap") {
            512.0
        } else {
            1.0
        };
        mib * 1024.0 * 1024.0
    };
    for (calls, bytes) in SYSCALL_FIELDS {
        let (got, own) = (sum(&windows, calls), busy_report[calls].as_f64().unwrap());
        let allowance = sum(&startup, calls) - idle_report[calls].as_f64().unwrap();
        assert!(own > 0.0, "the workload makes {calls}");
        assert!(
            got >= own,
            "{calls}: agent {got} < workload's own {own}\n{seen}"
        );
        assert!(
            got <= own + allowance + INIT_CALLS_SLACK,
            "{calls}: agent {got} > own {own} + start-up {allowance}\n{seen}"
        );
        let (got, own) = (sum(&windows, bytes), busy_report[bytes].as_f64().unwrap());
        let allowance = sum(&startup, bytes) - idle_report[bytes].as_f64().unwrap();
        assert!(
            got >= own,
            "{bytes}: agent {got} < workload's own {own}\n{seen}"
        );
        assert!(
            got <= own + allowance + init_bytes_slack(bytes),
            "{bytes}: agent {got} > own {own} + start-up {allowance}\n{seen}"
        );
    }
    assert_within(
        "minor_faults",
        sum(&windows, "minor_faults"),
        busy_report["minor_faults"].as_f64().unwrap(),
        0.01,
    );
    assert_eq!(
        windows.iter().filter(|w| w["exited"] == true).count(),
        1,
        "exactly one exit window:\n{seen}"
    );
    let path = format!("/docker/{}", busy.id);
    for w in &windows {
        assert_eq!(w["container_id"], busy.id.as_str(), "{seen}");
        assert_eq!(w["container_runtime"], "docker", "{seen}");
        assert_eq!(w["cgroup_path"], path.as_str(), "{seen}");
        assert!(w["pod_uid"].is_null(), "{seen}");
    }
    assert_eq!(windows.last().unwrap()["comm"], "workload", "{seen}");
    eprintln!(
        "{test}: {:.1} s (image builds {:.1} s)",
        started.elapsed().as_secs_f64(),
        container::build_seconds()
    );
}

/// `--cgroup-parent` with kubelet's cgroupfs layout
/// (`/kubepods/burstable/pod<uid>/<id>`): the pod UID and QoS class come
/// from the path dockerd wrote.
#[test]
fn kubelet_cgroupfs_parent_yields_pod_and_qos() {
    let test = "kubelet_cgroupfs_parent_yields_pod_and_qos";
    if !ready(test) {
        return;
    }
    let _serial = common::serial();
    let started = Instant::now();
    let image = static_workload();
    let uid = pod_uid();
    let parent = format!("/kubepods/burstable/pod{uid}");
    let agent = Agent::start(&[]);
    // Holds a moment after its work, so its cgroup can be read while it lives.
    let c = Run::new()
        .cgroup_parent(&parent)
        .start(&image, &["tick", "20", "50"]);
    assert!(c.pid > 0, "the container exited before docker inspect");
    let (cgroup_id, path) = cgroup_of(c.pid);
    let report = c.report();
    let (lines, stderr, _) = agent.stop();
    let windows = windows_of_program(&lines, &c.id, "workload");
    assert!(
        !windows.is_empty(),
        "no windows for container {}; containers the agent saw: {:?}; agent stderr:\n{stderr}",
        c.id,
        containers_seen(&lines)
    );
    let seen = describe(&windows);
    eprintln!("agent saw:\n{seen}\ncgroup {path} (id {cgroup_id}); workload's own: {report}");
    assert_eq!(path, format!("{parent}/{}", c.id), "where dockerd put it");
    for w in &windows {
        assert_eq!(w["pid"], c.pid, "{seen}");
        assert_eq!(w["cgroup_id"], cgroup_id, "{seen}");
        assert_eq!(w["cgroup_path"], path.as_str(), "{seen}");
        assert_eq!(w["container_id"], c.id.as_str(), "{seen}");
        assert_eq!(w["pod_uid"], uid.as_str(), "{seen}");
        assert_eq!(w["qos_class"], "burstable", "{seen}");
    }
    let own = report["mmap_calls"].as_f64().unwrap();
    assert!(
        sum(&windows, "mmap_calls") >= own,
        "mmap_calls: own {own}\n{seen}"
    );
    eprintln!("{test}: {:.1} s", started.elapsed().as_secs_f64());
}

/// A random pod UID (a v4 UUID's shape).
fn pod_uid() -> String {
    let mut b = [0u8; 16];
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// OpenJDK 17, which the machine comes with; off CI a missing one skips,
/// under CI it fails.
fn jdk17(test: &str) -> Option<PathBuf> {
    if let Some(jdk) = container::find_jdk(17) {
        return Some(jdk);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: no JDK 17 in JAVA_HOME or /usr/lib/jvm");
    }
    eprintln!("SKIP {test}: no JDK 17 in JAVA_HOME or /usr/lib/jvm");
    None
}

/// `AllocHeavy.class`, compiled on the host into a directory of its own.
fn alloc_heavy_classes(jdk: &Path) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("container-java");
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new(jdk.join("bin/javac"))
        .arg("-d")
        .arg(&dir)
        .arg(workloads_dir().join("java/AllocHeavy.java"))
        .status()
        .expect("javac runs");
    assert!(status.success(), "javac AllocHeavy.java");
    dir
}

/// A JVM with G1 in a container, its GC logged to a volume; the agent's
/// windows for it, the agent's stderr, and the GC log.
fn jvm_in_a_container(
    test: &str,
    agent_args: &[&str],
    java_args: &[&str],
) -> Option<(Vec<Value>, u32, String, String)> {
    if !ready(test) {
        return None;
    }
    let jdk = jdk17(test)?;
    let _serial = common::serial();
    let started = Instant::now();
    let image = Image::jvm("jdk17", &jdk);
    let classes = alloc_heavy_classes(&jdk);
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("container-gclog"));
    std::fs::create_dir_all(&logs).unwrap();
    let agent = Agent::start(agent_args);
    let mut command = vec![
        "/opt/jdk/bin/java",
        "-Xmx64m",
        "-XX:+UseG1GC",
        "-Xlog:gc:file=/logs/gc.log",
        "-cp",
        "/classes",
        "AllocHeavy",
    ];
    command.extend_from_slice(java_args);
    let c = Run::new()
        .volume(&classes, "/classes", false)
        .volume(&logs, "/logs", true)
        .start(&image, &command);
    assert!(c.pid > 0, "the JVM exited before docker inspect");
    c.wait_success(Duration::from_secs(90));
    let (lines, stderr, _) = agent.stop();
    let windows: Vec<Value> = windows_of_container(&lines, &c.id)
        .into_iter()
        .filter(|w| w["pid"] == c.pid)
        .cloned()
        .collect();
    let gclog = std::fs::read_to_string(logs.join("gc.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&logs);
    eprintln!(
        "{test}: {:.1} s (image builds {:.1} s)",
        started.elapsed().as_secs_f64(),
        container::build_seconds()
    );
    Some((windows, c.pid, stderr, gclog))
}

/// -Xlog:gc's pause lines: one per stop-the-world pause.
fn pauses_in(gclog: &str) -> usize {
    gclog.lines().filter(|l| l.contains(" Pause ")).count()
}

/// A JVM in a container: detected as jvm through the container's root, its
/// libjvm.so's USDT probes attached through `/proc/<pid>/root` (the JDK is
/// at /opt/jdk, a path the host lacks), and GC cycles counted.
#[test]
fn jvm_in_a_container_is_detected_and_its_usdt_probes_fire() {
    let test = "jvm_in_a_container_is_detected_and_its_usdt_probes_fire";
    // 2.5 s of waiting first: the probes are on before the first collection.
    let Some((windows, pid, stderr, gclog)) =
        jvm_in_a_container(test, &["--interval", "1"], &[RUN_SECONDS, "2.5"])
    else {
        return;
    };
    let refs: Vec<&Value> = windows.iter().collect();
    let seen = describe(&refs);
    let pauses = pauses_in(&gclog);
    let cycles = sum(&refs, "gc_cycles");
    eprintln!("agent saw:\n{seen}\nagent: {cycles} GC cycles; -Xlog:gc: {pauses} pauses");
    assert!(
        !windows.is_empty(),
        "no windows for the JVM (pid {pid}); stderr:\n{stderr}"
    );
    assert!(pauses > 10, "the JVM should collect often: {gclog}");
    assert!(
        runtime_after_exec(&refs, "jvm"),
        "runtime: agent saw\n{seen}"
    );
    let warning = stderr
        .lines()
        .find(|l| l.contains("HotSpot USDT probes not attached") && l.contains(&pid.to_string()));
    assert!(warning.is_none(), "{}", warning.unwrap_or_default());
    assert!(
        cycles > 0.0,
        "GC cycles: agent 0, -Xlog:gc {pauses} pauses; agent stderr:\n{stderr}"
    );
}

/// With uprobes opted out, the JVM's GC counts come from its hsperfdata,
/// found in the container's /tmp under its namespaced pid (1).
#[test]
fn jvm_in_a_container_has_its_hsperfdata_read() {
    let test = "jvm_in_a_container_has_its_hsperfdata_read";
    // Waits after the work too: the file goes with the JVM.
    let Some((windows, pid, stderr, gclog)) = jvm_in_a_container(
        test,
        &["--interval", "1", "--no-uprobes-for", "java"],
        &["4", "0", "2.5"],
    ) else {
        return;
    };
    let refs: Vec<&Value> = windows.iter().collect();
    let seen = describe(&refs);
    let pauses = pauses_in(&gclog);
    let cycles = sum(&refs, "gc_cycles");
    eprintln!(
        "agent saw:\n{seen}\nagent: {cycles} GC cycles (hsperfdata); -Xlog:gc: {pauses} pauses"
    );
    assert!(
        !windows.is_empty(),
        "no windows for the JVM (pid {pid}); stderr:\n{stderr}"
    );
    assert!(pauses > 10, "the JVM should collect often: {gclog}");
    assert!(runtime_after_exec(&refs, "jvm"), "{seen}");
    assert!(
        cycles > 0.0 && sum(&refs, "gc_pause_seconds") > 0.0,
        "hsperfdata: agent {cycles} GC cycles, -Xlog:gc {pauses} pauses; agent stderr:\n{stderr}"
    );
}

/// Node 20 in a container: detected as node, and GC found in its stacks
/// (symbols read through the container's root: node is at /opt/node).
#[test]
fn node_in_a_container_is_detected_and_its_gc_stacks_seen() {
    let test = "node_in_a_container_is_detected_and_its_gc_stacks_seen";
    if !ready(test) {
        return;
    }
    let _serial = common::serial();
    let started = Instant::now();
    let image = Image::node("node");
    let agent = Agent::start(&["--interval", "1"]);
    let c = Run::new()
        .volume(&workloads_dir().join("node"), "/scripts", false)
        .start(
            &image,
            &[
                "/opt/node/bin/node",
                "--trace-gc",
                "/scripts/allocheavy.js",
                RUN_SECONDS,
            ],
        );
    assert!(c.pid > 0, "node exited before docker inspect");
    let ran = Instant::now();
    let (trace, _) = c.wait_success(Duration::from_secs(60));
    let lived = ran.elapsed().as_secs_f64();
    let (lines, stderr, _) = agent.stop();
    let windows: Vec<&Value> = windows_of_container(&lines, &c.id)
        .into_iter()
        .filter(|w| w["pid"] == c.pid)
        .collect();
    let seen = describe(&windows);
    // --trace-gc: "[pid:0x…]  1234 ms: Scavenge 4.1 (5.2) -> 3.0 (6.2) MB, 1.23 / 0.00 ms  (…)"
    let collections = trace.lines().filter(|l| l.contains(" MB, ")).count();
    let paused_ms: f64 = trace
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
    let trace_share = paused_ms / 1000.0 / lived;
    // GC CPU found in stacks: the total less what GC-named threads used.
    let gc_threads: f64 = windows
        .iter()
        .flat_map(|w| w["threads"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["gc"] == true)
        .map(|t| t["cpu_seconds"].as_f64().unwrap_or(0.0))
        .sum();
    let gc_stacks = sum(&windows, "gc_cpu_seconds") - gc_threads;
    eprintln!(
        "agent saw:\n{seen}\nGC CPU from stacks {gc_stacks:.3} s, from GC threads {gc_threads:.3} s; --trace-gc: {collections} collections"
    );
    assert!(
        !windows.is_empty(),
        "no windows for node (pid {}); stderr:\n{stderr}",
        c.pid
    );
    assert!(collections > 50, "node should collect often: {trace}");
    assert!(
        runtime_after_exec(&windows, "node"),
        "runtime: agent saw\n{seen}"
    );
    assert!(
        gc_stacks > 0.0,
        "no GC in node's stacks ({collections} collections per --trace-gc); agent stderr:\n{stderr}"
    );
    // Pauses are a floor for GC CPU (concurrent marking and sweeping come
    // on top), as in the host test.
    let cpu = sum(&windows, "cpu_seconds");
    let share = sum(&windows, "gc_cpu_seconds") / cpu.max(1e-9);
    eprintln!(
        "GC share: agent {:.1}%, --trace-gc pauses {:.1}% of {lived:.1} s",
        100.0 * share,
        100.0 * trace_share
    );
    assert!(
        share >= 0.75 * trace_share,
        "agent GC share {:.1}% vs {:.1}% paused per --trace-gc\n{seen}",
        100.0 * share,
        100.0 * trace_share
    );
    eprintln!(
        "{test}: {:.1} s (image builds {:.1} s)",
        started.elapsed().as_secs_f64(),
        container::build_seconds()
    );
}

/// A C program churning malloc (blocks over the mmap threshold) in a
/// scratch container: `alloc-churn`, never gc-heavy, runtime native, named
/// by its container; its mmap and munmap calls at least its own count of
/// blocks.
#[test]
fn c_malloc_churn_in_a_container_is_alloc_churn() {
    let test = "c_malloc_churn_in_a_container_is_alloc_churn";
    if !ready(test) {
        return;
    }
    let _serial = common::serial();
    let image = Image::static_c("churn", &workloads_dir().join("churn.c"));
    let agent = Agent::start(&["--interval", "1"]);
    let c = Run::new().start(&image, &["6"]);
    let pid = u64::from(c.pid);
    let report = c.report();
    let blocks = report["blocks"].as_f64().unwrap();
    let (lines, stderr, _) = agent.stop_after_exit_of(pid);
    let windows = common::windows_of(&lines, pid);
    assert!(!windows.is_empty(), "{test}: no window:\n{stderr}");
    let verdicts: Vec<&str> = windows
        .iter()
        .map(|w| w["verdict"].as_str().unwrap_or(""))
        .collect();
    assert!(!verdicts.contains(&"gc-heavy"), "{verdicts:?}");
    let busy: Vec<&Value> = windows
        .iter()
        .copied()
        .filter(|w| w["exited"] == false && w["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.5)
        .collect();
    assert!(!busy.is_empty(), "{verdicts:?}");
    assert!(
        busy.iter().all(|w| w["verdict"] == "alloc-churn"),
        "{verdicts:?}"
    );
    assert!(windows.iter().all(|w| w["container_id"] == c.id.as_str()));
    // runc's init (Go) is the container's first process before its exec:
    // the last windows are the C program's.
    assert_eq!(windows.last().unwrap()["runtime"], "native");
    // Every block is one mmap and one munmap (over the fixed threshold).
    assert!(
        common::sum(&windows, "mmap_calls") >= blocks
            && common::sum(&windows, "munmap_calls") >= blocks,
        "{blocks} blocks, agent mmap {} munmap {}",
        common::sum(&windows, "mmap_calls"),
        common::sum(&windows, "munmap_calls")
    );
    let churn = common::sum(&windows, "mmap_bytes") + common::sum(&windows, "munmap_bytes");
    let cpu = common::sum(&windows, "cpu_seconds");
    eprintln!(
        "| C (malloc churn) | static | container | n/a | n/a | alloc-churn | {:.2} | {:.0} MiB/s through mmap/munmap over {cpu:.1} s of CPU |",
        busy.iter()
            .map(|w| w["verdict_confidence"].as_f64().unwrap_or(0.0))
            .sum::<f64>()
            / busy.len() as f64,
        churn / 1048576.0 / cpu.max(1e-9)
    );
}
