//! `cargo xtask fuzz [--seconds N] [TARGET…]`: each libFuzzer target in
//! `fuzz/` (cargo-fuzz, nightly, AddressSanitizer) for a bounded time,
//! starting from the committed seeds in `fuzz/corpus/<target>/`. An input
//! that crashes a target is copied to `fuzz/regressions/<target>/`, where
//! `agent/tests/it/fuzz_corpus.rs` replays it on every `cargo xtask test`:
//! commit it with the fix.
use std::path::Path;

use anyhow::{Result, bail};

use crate::cmd::{self, cmd};

/// The version the fuzz crate was written against.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Must match `agent::fuzzing::TARGETS` and fuzz/Cargo.toml.
pub const TARGETS: &[&str] = &[
    "ingest",
    "cgroup_path",
    "proc_stat",
    "hsperf",
    "stapsdt",
    "token_file",
    "price_overrides",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Targets to run (all by default).
    targets: Vec<String>,
}

struct Outcome {
    target: String,
    runs: u64,
    corpus: usize,
    crashed: Option<String>,
}

pub fn run(args: &Args, root: &Path) -> Result<()> {
    cargo_fuzz()?;
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.targets.clone()
    };
    for t in &targets {
        if !TARGETS.contains(&t.as_str()) {
            bail!("unknown fuzz target `{t}` (one of {})", TARGETS.join(", "));
        }
    }
    let fuzz_dir = root.join("fuzz");
    cmd::run(
        cmd("cargo")
            .args(["+nightly", "fuzz", "build", "--fuzz-dir"])
            .arg(&fuzz_dir),
    )?;
    let mut outcomes = Vec::new();
    for target in &targets {
        // Grow a scratch corpus, so the committed seeds stay small.
        let work = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&work)?;
        let artifacts = root.join("fuzz/artifacts").join(target);
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts)?;
        let seeds = fuzz_dir.join("corpus").join(target);
        let mut c = cmd("cargo");
        c.args(["+nightly", "fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg(target)
            .arg(&work)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1");
        eprintln!("xtask: fuzzing {target} for {} s", args.seconds);
        let out = c.output()?;
        let log = String::from_utf8_lossy(&out.stderr);
        let runs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let corpus = std::fs::read_dir(&work).map_or(0, Iterator::count);
        let crashed = if out.status.success() {
            None
        } else {
            let kept = keep_crashes(&artifacts, &fuzz_dir.join("regressions").join(target))?;
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            Some(if kept.is_empty() {
                format!("failed ({}) without an artifact", out.status)
            } else {
                kept.join(", ")
            })
        };
        outcomes.push(Outcome {
            target: target.clone(),
            runs,
            corpus,
            crashed,
        });
    }
    println!("| target | seconds | runs | runs/s | corpus | crash |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} |",
            o.target,
            args.seconds,
            o.runs,
            o.runs as f64 / args.seconds.max(1) as f64,
            o.corpus,
            o.crashed.as_deref().unwrap_or("none")
        );
    }
    let crashed: Vec<&Outcome> = outcomes.iter().filter(|o| o.crashed.is_some()).collect();
    if !crashed.is_empty() {
        bail!(
            "{} fuzz target(s) crashed; the inputs are in fuzz/regressions/ and now fail agent/tests/it/fuzz_corpus.rs: fix the parser and commit them",
            crashed.len()
        );
    }
    Ok(())
}

/// Copies crash, leak and timeout inputs into the regression folder.
fn keep_crashes(artifacts: &Path, regressions: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(regressions)?;
    let mut kept = Vec::new();
    for entry in std::fs::read_dir(artifacts)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dest = regressions.join(&name);
        std::fs::copy(entry.path(), &dest)?;
        kept.push(dest.display().to_string());
    }
    Ok(kept)
}

fn cargo_fuzz() -> Result<()> {
    let installed = cmd::output(cmd("cargo").args(["fuzz", "--version"]))
        .is_ok_and(|v| v.contains(CARGO_FUZZ_VERSION));
    if !installed {
        cmd::run(cmd("cargo").args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ]))?;
    }
    Ok(())
}
