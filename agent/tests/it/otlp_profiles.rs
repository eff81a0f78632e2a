//! OTLP profiles (`agent run --otlp-profiles-endpoint`), received by a
//! receiver on the official protos (`support::profiles_receiver`) and
//! checked against the pprof that `agent profile` writes for the same
//! process, as Go's own pprof reader (`go tool pprof`) reads it.
use std::{
    collections::HashMap,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::common::{self, TestCgroup};
use crate::exporting::{KillOnDrop, RunAgent, RunCollector, require_tool, tmp};
use crate::support::profiles_receiver::ProfilesReceiver;

/// Per-function sample counts of a pprof file, as `go tool pprof` reads
/// them: (flat, cum) by function name.
fn pprof_counts(profile: &Path) -> HashMap<String, (u64, u64)> {
    let out = Command::new("go")
        .args([
            "tool",
            "pprof",
            "-sample_index=samples",
            "-top",
            "-nodecount=10000",
        ])
        .arg(profile)
        .env("GOCACHE", tmp().join("gocache"))
        .env("HOME", tmp())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pprof failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("go tool pprof -sample_index=samples -top:\n{text}");
    // "  flat  flat%   sum%        cum   cum%" then rows of
    // "  3910 50.00% 50.00%       3910 50.00%  spin_a".
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let (flat, cum) = (cols.first()?.parse().ok()?, cols.get(3)?.parse().ok()?);
            Some((cols[5..].join(" "), (flat, cum)))
        })
        .collect()
}

fn share(n: u64, total: u64) -> f64 {
    n as f64 / total.max(1) as f64
}

/// A pinned two-thread process sampled by `agent run` (OTLP profiles, from
/// the agent and through a collector) and `agent profile` (pprof) over the
/// same seconds: every function's share of the samples, flat and
/// cumulative, within 5% of pprof's; then a Go
/// program's GC frames arrive marked, with the `go` frame type, and its
/// resource names the container.
#[test]
fn otlp_profiles_match_the_pprof_of_agent_profile() {
    let test = "otlp_profiles_match_the_pprof_of_agent_profile";
    if !common::require_root(test)
        || !require_tool("go", &["version"], test, "apt-get install golang-go")
    {
        return;
    }
    let _serial = common::serial();
    let pinned = common::gcc(
        "pinned.c",
        "pinned",
        &["-fno-omit-frame-pointer", "-pthread"],
    );
    let go_bin = common::go_build("profiled", &tmp().join("go-profiled"), &[], &[]);
    let receiver = ProfilesReceiver::start();
    let uid = "0a1b2c3d_4e5f_4a6b_8c7d_9e0f1a2b3c4d";
    let id = "4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0";
    let rel = format!(
        "{}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/cri-containerd-{id}.scope",
        common::unique("tally-test-otlp-profiles")
    );
    let cg = TestCgroup::create(&rel);
    let endpoint = receiver.endpoint();
    // The same stacks through a collector, to a receiver of its own.
    let fleet_receiver = ProfilesReceiver::start();
    let fleet_endpoint = fleet_receiver.endpoint();
    let collector = RunCollector::start(&["--otlp-profiles-endpoint", &fleet_endpoint]);
    let collector_url = format!("http://{}", collector.grpc);
    let agent = RunAgent::start(&[
        "--collector",
        &collector_url,
        "--send-stacks",
        "--otlp-profiles-endpoint",
        &endpoint,
        "--otlp-header",
        "authorization=Bearer tally-test",
        "--stack-sampling",
        "all",
        "--sample-hz",
        "499",
        "--interval",
        "1",
    ]);

    // The pinned process: 14 s, of which `agent profile` takes 10.
    let mut cmd = Command::new(&pinned);
    cmd.arg("14").stdout(Stdio::null());
    cg.enter_on_spawn(&mut cmd);
    let workload = KillOnDrop(cmd.spawn().unwrap());
    let pid = workload.0.id();
    thread::sleep(Duration::from_secs(1));
    let out_dir = tmp().join(common::unique("otlp-profile-pprof"));
    let profiled_from = std::time::SystemTime::now();
    let profile = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["profile", "--pid", &pid.to_string()])
        .args(["--duration", "10s", "--sample-hz", "499", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        profile.status.success(),
        "agent profile failed:\n{}",
        String::from_utf8_lossy(&profile.stderr)
    );
    let profiled_to = std::time::SystemTime::now();
    let mut workload = workload;
    let _ = workload.0.wait();

    // Then a Go program with a collector at work, in the same container.
    let mut cmd = Command::new(&go_bin);
    cmd.arg("5")
        .env("GOGC", "25")
        .env("GOMAXPROCS", "2")
        .stdout(Stdio::null());
    cg.enter_on_spawn(&mut cmd);
    let mut go = KillOnDrop(cmd.spawn().unwrap());
    let go_pid = go.0.id();
    let _ = go.0.wait();
    // The last window's export.
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.process(go_pid).samples == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    thread::sleep(Duration::from_millis(1500));
    let (_, stderr) = agent.stop();
    let collector_err = collector.stop();

    let requests = receiver.requests();
    assert!(!requests.is_empty(), "nothing received; agent:\n{stderr}");
    for (metadata, _) in &requests {
        assert_eq!(
            metadata.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer tally-test")
        );
    }

    // The pinned process: shares as pprof has them, from the agent and
    // from the collector.
    // The OTLP windows within the seconds `agent profile` sampled: on a
    // busy machine lane1's split drifts with the load, so other seconds
    // would differ by more than the profilers do.
    let pprof = pprof_counts(&out_dir.join("profile.pb.gz"));
    let otlp = receiver.process_within(pid, profiled_from, profiled_to);
    compare_with_pprof(&pprof, &otlp, "agent");
    let fleet = fleet_receiver.process_within(pid, profiled_from, profiled_to);
    assert!(
        fleet.profiles > 0,
        "the collector exported nothing of pid {pid}; collector:\n{collector_err}"
    );
    compare_with_pprof(&pprof, &fleet, "collector");
    // The collector names the node as its reports do: the agent's node
    // name, the host name here.
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        fleet.resource.get("host.name").map(String::as_str),
        Some(node.trim())
    );
    assert_eq!(
        fleet.resource.get("container.id").map(String::as_str),
        Some(id)
    );
    // The known split, as a sanity check of both: 1/2, 3/8, 1/8.
    for (f, want) in [("spin_a", 0.5), ("spin_b", 0.375), ("spin_c", 0.125)] {
        let have = share(otlp.flat.get(f).copied().unwrap_or(0), otlp.samples);
        assert!(
            (have - want).abs() < 0.05,
            "{f}: {:.1}% of the samples, expected about {:.1}%",
            have * 100.0,
            want * 100.0
        );
    }
    assert_eq!(
        otlp.frame_attrs.get("spin_a").map(Vec::as_slice),
        Some(&["profile.frame.type=native".to_owned()][..])
    );
    assert_eq!(otlp.gc_samples, 0, "no GC in a C program");

    // Resource attributes: the process, its container and pod.
    let r = &otlp.resource;
    assert_eq!(r.get("container.id").map(String::as_str), Some(id));
    assert_eq!(
        r.get("k8s.pod.uid").map(String::as_str),
        Some(uid.replace('_', "-").as_str())
    );
    assert_eq!(
        r.get("process.executable.name").map(String::as_str),
        Some("pinned")
    );
    assert!(r.contains_key("host.name"), "{r:?}");

    // The Go program: Go frames, GC frames marked, and the samples with
    // them.
    let go = receiver.process(go_pid);
    eprintln!(
        "Go: {} samples, {} with a GC frame; GC leaves {:?}",
        go.samples, go.gc_samples, go.gc_sample_leaves
    );
    assert!(go.samples > 500, "Go samples: {}", go.samples);
    assert_eq!(
        go.frame_attrs.get("main.burn").map(Vec::as_slice),
        Some(&["profile.frame.type=go".to_owned()][..])
    );
    let marked: Vec<&String> = go
        .frame_attrs
        .iter()
        .filter(|(_, a)| a.contains(&"tally.frame.gc=true".to_owned()))
        .map(|(f, _)| f)
        .collect();
    assert!(
        marked
            .iter()
            .any(|f| f.as_str() == "runtime.gcBgMarkWorker"),
        "GC frames marked: {marked:?}"
    );
    assert!(
        marked.iter().all(|f| f.starts_with("runtime.")),
        "only the runtime's frames are GC frames: {marked:?}"
    );
    assert!(
        !go.frame_attrs["main.burn"].contains(&"tally.frame.gc=true".to_owned()),
        "main.burn is not GC"
    );
    assert!(
        go.gc_samples > 0 && go.gc_samples < go.samples,
        "some samples, not all, are GC: {} of {}",
        go.gc_samples,
        go.samples
    );
}

/// Every function's share of `otlp`'s samples, flat and cumulative, is
/// within 5% (relative) of its share in pprof, for every function with 5%
/// of pprof's samples; the five functions of `pinned.c` among them.
fn compare_with_pprof(
    pprof: &HashMap<String, (u64, u64)>,
    otlp: &crate::support::profiles_receiver::ProcessTotals,
    from: &str,
) {
    let pprof_total: u64 = pprof.values().map(|(flat, _)| flat).sum();
    eprintln!(
        "{from}: pprof {pprof_total} samples; OTLP {} samples in {} profiles; flat {:?}; cum {:?}",
        otlp.samples, otlp.profiles, otlp.flat, otlp.cum
    );
    assert_eq!(otlp.sample_type, ("samples".to_owned(), "count".to_owned()));
    assert_eq!(otlp.period, 1_000_000_000 / 499);
    // 10 s at 499 Hz on two busy CPUs, and the 1 s windows within them.
    assert!(pprof_total > 7_000, "pprof has {pprof_total} samples");
    assert!(
        otlp.samples > 6_000,
        "{from}: OTLP has {} samples",
        otlp.samples
    );
    let mut compared = Vec::new();
    for (name, &(flat, cum)) in pprof {
        for (what, n, got) in [
            ("flat", flat, otlp.flat.get(name).copied().unwrap_or(0)),
            ("cum", cum, otlp.cum.get(name).copied().unwrap_or(0)),
        ] {
            let want = share(n, pprof_total);
            if want < 0.05 {
                continue;
            }
            let have = share(got, otlp.samples);
            let off = (have - want).abs() / want;
            compared.push(format!(
                "{name} {what}: pprof {:.2}%, OTLP {:.2}% ({:+.1}%)",
                want * 100.0,
                have * 100.0,
                (have - want) / want * 100.0
            ));
            assert!(
                off <= 0.05,
                "{from}: {name} {what}: {:.2}% of OTLP's samples, {:.2}% of pprof's\n{compared:#?}",
                have * 100.0,
                want * 100.0
            );
        }
    }
    eprintln!("{from}: {compared:#?}");
    for f in ["spin_a", "spin_b", "spin_c", "lane0", "lane1"] {
        assert!(
            compared.iter().any(|c| c.starts_with(&format!("{f} "))),
            "{from}: {f} compared: {compared:#?}"
        );
    }
}
