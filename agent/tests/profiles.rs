//! CPU profiles: `agent profile --pid` of a Go workload with a known hot
//! function; `go tool pprof -top` (Debian's golang-go) reads the pprof
//! file and lists it by name; the flame graph SVG has the functions and the
//! GC highlight, and headless Chromium renders it to a PNG:
//!
//! ```sh
//! chromium --headless --no-sandbox --disable-gpu --window-size=1200,900 \
//!     --screenshot=flame.png file:///…/flame.svg
//! ```
mod common;
mod exporting;

use std::{
    path::Path,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use exporting::{KillOnDrop, require_tool, tmp};

fn go_build(name: &str) -> std::path::PathBuf {
    let out = tmp().join(format!("go-{name}"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/workloads/go/{name}.go"));
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(&src)
        .env("GOCACHE", tmp().join("gocache"))
        .env("HOME", tmp())
        .status()
        .expect("go runs");
    assert!(status.success(), "go build {}", src.display());
    out
}

/// The PNG's width and height, from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn go_profile_reads_in_pprof_and_renders_as_a_flame_graph() {
    let test = "go_profile_reads_in_pprof_and_renders_as_a_flame_graph";
    if !common::require_root(test)
        || !require_tool("go", &["version"], test, "apt-get install golang-go")
    {
        return;
    }
    let _serial = common::serial();
    let bin = go_build("profiled");
    let workload = KillOnDrop(
        Command::new(&bin)
            .arg("20")
            .env("GOGC", "25")
            .env("GOMAXPROCS", "2")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = workload.0.id();
    thread::sleep(Duration::from_secs(1));
    let out_dir = tmp().join(common::unique("profile"));
    let profile = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "profile",
            "--pid",
            &pid.to_string(),
            "--duration",
            "6s",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&profile.stderr);
    assert!(profile.status.success(), "agent profile failed:\n{stderr}");
    drop(workload);
    let written = String::from_utf8_lossy(&profile.stdout);
    for name in ["profile.pb.gz", "flame.svg", "stacks.folded"] {
        assert!(written.contains(name), "{name} not written: {written}");
    }

    // pprof reads it and names the hottest functions.
    let top = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(out_dir.join("profile.pb.gz"))
        .env("GOCACHE", tmp().join("gocache"))
        .env("HOME", tmp())
        .output()
        .unwrap();
    let top_text = String::from_utf8_lossy(&top.stdout);
    eprintln!("go tool pprof -top:\n{top_text}");
    assert!(
        top.status.success(),
        "pprof failed: {}",
        String::from_utf8_lossy(&top.stderr)
    );
    let table: Vec<&str> = top_text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .collect();
    assert!(
        table.first().is_some_and(|l| l.ends_with("main.burn")),
        "main.burn is the hottest function:\n{top_text}"
    );
    assert!(
        table.iter().take(15).any(|l| l.contains("runtime.")
            && [
                "scanobject",
                "greyobject",
                "gcDrain",
                "mallocgc",
                "findObject"
            ]
            .iter()
            .any(|f| l.contains(f))),
        "the collector's and allocator's functions show:\n{top_text}"
    );
    assert!(top_text.contains("Type: cpu"), "{top_text}");

    // The flame graph: the functions, and GC frames in the GC colour.
    let svg = std::fs::read_to_string(out_dir.join("flame.svg")).unwrap();
    assert!(svg.starts_with("<?xml"), "an SVG");
    assert!(svg.contains("main.burn") && svg.contains("main.churn"));
    assert!(
        svg.contains(&agent::profile::flame::gc_fill()),
        "GC frames highlighted"
    );
    assert!(svg.contains("class=\"gc\""));
    let folded = std::fs::read_to_string(out_dir.join("stacks.folded")).unwrap();
    assert!(folded.lines().any(|l| l.contains("main.main;main.burn ")));

    // Headless Chromium draws it.
    if !require_tool("chromium", &["--version"], test, "apt-get install chromium") {
        return;
    }
    let png_path = out_dir.join("flame.png");
    let shot = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1200,900",
        ])
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("file://{}", out_dir.join("flame.svg").display()))
        .env("HOME", tmp())
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&png_path).expect("a screenshot");
    let (w, h) = png_size(&png);
    eprintln!(
        "screenshot {} ({w}x{h}, {} bytes)",
        png_path.display(),
        png.len()
    );
    assert_eq!((w, h), (1200, 900));
    // A blank page compresses to a few KiB; frames and their text do not.
    assert!(
        png.len() > 15_000,
        "screenshot looks empty: {} bytes",
        png.len()
    );
}
