//! CPU profiles: `agent profile --pid` of a Go workload with a known hot
//! function; `go tool pprof -top` (Debian's golang-go) reads the pprof
//! file and lists it by name; the flame graph SVG has the functions and the
//! GC highlight, and headless Chromium renders it to a PNG:
//!
//! ```sh
//! chromium --headless --no-sandbox --disable-gpu --window-size=1200,900 \
//!     --screenshot=flame.png file:///…/flame.svg
//! ```
//!
//! and the test decodes the PNG and counts the pixels of frames in inferno's
//! hot palette and in the GC colour.
use std::{
    path::Path,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use crate::common;
use crate::exporting::{KillOnDrop, RunAgent, RunCollector, require_tool, tmp};

fn go_build(name: &str) -> std::path::PathBuf {
    common::go_build(name, &tmp().join(format!("go-{name}")), &[], &[])
}

/// A decoded PNG: 8-bit RGB or RGBA, not interlaced (what Chromium's
/// `--screenshot` writes), as RGB pixels row by row.
struct Image {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Image {
    fn decode(png: &[u8]) -> Image {
        use std::io::Read as _;
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let (mut at, mut idat) = (8, Vec::new());
        let (mut width, mut height, mut channels) = (0, 0, 0);
        while at + 8 <= png.len() {
            let len = be(&png[at..]);
            let kind = &png[at + 4..at + 8];
            let data = &png[at + 8..at + 8 + len];
            match kind {
                b"IHDR" => {
                    (width, height) = (be(&data[0..]), be(&data[4..]));
                    assert_eq!(data[8], 8, "8 bits per channel");
                    assert_eq!(data[12], 0, "not interlaced");
                    channels = match data[9] {
                        2 => 3,
                        6 => 4,
                        t => panic!("PNG colour type {t}"),
                    };
                }
                b"IDAT" => idat.extend_from_slice(data),
                b"IEND" => break,
                _ => {}
            }
            at += 12 + len;
        }
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..])
            .read_to_end(&mut raw)
            .expect("zlib");
        let stride = width * channels;
        assert_eq!(raw.len(), height * (stride + 1), "scanlines");
        let mut prev = vec![0u8; stride];
        let mut rgb = Vec::with_capacity(width * height);
        for row in raw.chunks(stride + 1) {
            let (filter, line) = (row[0], &row[1..]);
            let mut cur = vec![0u8; stride];
            for i in 0..stride {
                let a = if i >= channels { cur[i - channels] } else { 0 };
                let b = prev[i];
                let c = if i >= channels { prev[i - channels] } else { 0 };
                let predicted = match filter {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                    4 => paeth(a, b, c),
                    f => panic!("PNG filter {f}"),
                };
                cur[i] = line[i].wrapping_add(predicted);
            }
            rgb.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
            prev = cur;
        }
        Image { width, height, rgb }
    }

    fn count(&self, f: impl Fn([u8; 3]) -> bool) -> usize {
        self.rgb.iter().filter(|p| f(**p)).count()
    }
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = i16::from(a) + i16::from(b) - i16::from(c);
    let (pa, pb, pc) = (
        (p - i16::from(a)).abs(),
        (p - i16::from(b)).abs(),
        (p - i16::from(c)).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
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
        svg.contains(&tally_export::profile::flame::gc_fill()),
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
    let image = Image::decode(&png);
    assert_eq!((image.width, image.height), (1200, 900));
    let gc = tally_export::profile::flame::GC_COLOR;
    let gc_pixels = image.count(|p| p == [gc.r, gc.g, gc.b]);
    // inferno's "hot" palette: red 205..255, green 0..230, blue 0..55.
    let hot_pixels = image.count(|[r, g, b]| r >= 205 && g <= 230 && b <= 55);
    let blank = image.count(|p| p == [255, 255, 255] || p == [238, 238, 238]);
    eprintln!(
        "screenshot {}: {}x{}, {} bytes; {hot_pixels} px in the hot palette, {gc_pixels} px in the GC colour, {blank} px background",
        png_path.display(),
        image.width,
        image.height,
        png.len()
    );
    // Frames are 16 px high: the hot stacks cover many frames' worth, and
    // the GC towers at least one frame 60 px wide.
    assert!(
        hot_pixels >= 50 * 16 * 20,
        "the flame graph is drawn: {hot_pixels} px of frames"
    );
    assert!(
        gc_pixels >= 16 * 60,
        "GC frames are drawn in the GC colour: {gc_pixels} px"
    );
}

/// `go tool pprof -top DIR/profile.pb.gz`: the table's function names, hottest
/// first, and the whole output.
fn pprof_top(profile: &Path) -> (Vec<String>, String) {
    let top = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(profile)
        .env("GOCACHE", tmp().join("gocache"))
        .env("HOME", tmp())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&top.stdout).into_owned();
    assert!(
        top.status.success(),
        "pprof failed: {}",
        String::from_utf8_lossy(&top.stderr)
    );
    let names = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    (names, text)
}

/// With stack sampling on, `agent run` sends the stacks in its reports and
/// `agent collector --profiles DIR` writes each workload's profile of every
/// interval: pprof reads it, with the Go program's hot function first.
#[test]
fn the_collector_writes_profiles_from_the_stacks_agents_send() {
    let test = "the_collector_writes_profiles_from_the_stacks_agents_send";
    if !common::require_root(test)
        || !require_tool("go", &["version"], test, "apt-get install golang-go")
    {
        return;
    }
    let _serial = common::serial();
    let bin = go_build("profiled");
    let profiles = tmp().join(common::unique("collector-profiles"));
    let profiles_arg = profiles.display().to_string();
    let collector = RunCollector::start(&["--profiles", &profiles_arg, "--profile-interval", "4s"]);
    let url = format!("http://{}", collector.grpc);
    let agent = RunAgent::start(&["--collector", &url, "--send-stacks", "--interval", "1"]);
    let workload = KillOnDrop(
        Command::new(&bin)
            .arg("9")
            .env("GOGC", "25")
            .env("GOMAXPROCS", "2")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = workload.0.id();
    thread::sleep(Duration::from_secs(10));
    drop(workload);
    let (_, agent_err) = agent.stop();
    // Stopping writes the interval under way.
    let collector_err = collector.stop();
    // The process's directory: process_<node>_<pid>_<start ticks>.
    let dir = std::fs::read_dir(&profiles)
        .unwrap_or_else(|e| {
            panic!(
                "no {}: {e}; collector:\n{collector_err}",
                profiles.display()
            )
        })
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("process_") && n.contains(&format!("_{pid}_")))
        })
        .unwrap_or_else(|| {
            panic!("no profile of pid {pid}; collector:\n{collector_err}\nagent:\n{agent_err}")
        });
    let mut intervals: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    intervals.sort();
    assert!(
        intervals.len() >= 2,
        "about 10 s in 4 s intervals: {intervals:?}"
    );
    // Every interval's profile reads; together they saw the hot function
    // first, and its caller.
    let mut hottest = Vec::new();
    for interval in &intervals {
        let (names, text) = pprof_top(&interval.join("profile.pb.gz"));
        eprintln!("{}:\n{text}", interval.display());
        assert!(text.contains("Type: cpu"), "{text}");
        assert!(interval.join("flame.svg").exists());
        hottest.extend(names.into_iter().take(1));
        let folded = std::fs::read_to_string(interval.join("stacks.folded")).unwrap();
        if folded.lines().any(|l| l.contains("main.main;main.burn ")) {
            hottest.push("main.main;main.burn".into());
        }
    }
    assert!(
        hottest.iter().any(|n| n == "main.burn"),
        "main.burn hottest in some interval: {hottest:?}"
    );
    assert!(
        hottest.iter().any(|n| n == "main.main;main.burn"),
        "the stacks keep their callers: {hottest:?}"
    );
}
