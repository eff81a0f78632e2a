//! `cargo xtask bench top`: the interactive view with 2,000 synthetic
//! processes at a 1 s refresh, drawn through its real loop and crossterm
//! backend into /dev/null at 80×24 and 300×80. The agent measures itself
//! (hidden flags of `agent top` built with its `bench` feature:
//! `--synthetic N --bench-seconds S`) and
//! prints JSON; this prints the table against the targets: under 5 ms a
//! frame, under 3% of one core.
use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Synthetic processes, all active in every window.
    #[arg(long, default_value_t = 2000)]
    processes: usize,
    /// Seconds of the idle phase (a frame per refresh): the CPU figure.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Refresh interval, seconds.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

const FRAME_TARGET_MS: f64 = 5.0;
const CPU_TARGET_PERCENT: f64 = 3.0;
const SIZES: [&str; 2] = ["80x24", "300x80"];

pub fn run(args: &Args, root: &Path) -> Result<()> {
    let agent = root.join("target/release/agent");
    let mut c = Command::new(&agent);
    c.args(["top", "--synthetic"])
        .arg(args.processes.to_string())
        .arg("--bench-seconds")
        .arg(args.seconds.to_string())
        .arg("--interval")
        .arg(args.interval.to_string());
    for s in SIZES {
        c.args(["--bench-size", s]);
    }
    eprintln!(
        "xtask: bench top: {} synthetic processes, {} s refresh, {} s idle then ~1,000 keys, at {}",
        args.processes,
        args.interval,
        args.seconds,
        SIZES.join(" and ")
    );
    let out = c
        .output()
        .with_context(|| format!("cannot run {}", agent.display()))?;
    if !out.status.success() {
        bail!(
            "agent top --synthetic failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
    if results.len() != SIZES.len() {
        bail!("expected {} result lines, got:\n{stdout}", SIZES.len());
    }
    print!("{}", table(&results)?);
    Ok(())
}

/// A number in the agent's flat JSON: `key` or `object.key`.
fn number(json: &str, path: &str) -> Result<f64> {
    let (scope, key) = match path.split_once('.') {
        Some((obj, key)) => {
            let start = json
                .find(&format!("\"{obj}\":{{"))
                .with_context(|| format!("no {obj} in {json}"))?;
            let rest = &json[start..];
            (&rest[..rest.find('}').unwrap_or(rest.len())], key)
        }
        None => (json, path),
    };
    let pat = format!("\"{key}\":");
    let at = scope
        .find(&pat)
        .with_context(|| format!("no {path} in {json}"))?
        + pat.len();
    let text: String = scope[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))
        .collect();
    text.parse()
        .with_context(|| format!("{path} is not a number in {json}"))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn table(results: &[&str]) -> Result<String> {
    let get =
        |path: &str| -> Result<Vec<f64>> { results.iter().map(|r| number(r, path)).collect() };
    let mut out = String::new();
    out.push_str(&format!(
        "\n| measure | {} | target |\n| --- | ---: | ---: | --- |\n",
        SIZES.map(|s| s.replace('x', "×")).join(" | ")
    ));
    let mut row = |name: &str, values: &[f64], unit: &str, target: Option<f64>| {
        let cells: Vec<String> = values.iter().map(|v| format!("{v:.2} {unit}")).collect();
        let t = match target {
            Some(t) => format!("< {t} {unit}: {}", verdict(values.iter().all(|v| *v < t))),
            None => String::new(),
        };
        out.push_str(&format!("| {name} | {} | {t} |\n", cells.join(" | ")));
    };
    row(
        "frame at each refresh, median",
        &get("refresh_frame_ms.median")?,
        "ms",
        Some(FRAME_TARGET_MS),
    );
    row(
        "frame at each refresh, p99",
        &get("refresh_frame_ms.p99")?,
        "ms",
        Some(FRAME_TARGET_MS),
    );
    row(
        "frame per key (scroll, detail, filter), median",
        &get("key_frame_ms.median")?,
        "ms",
        Some(FRAME_TARGET_MS),
    );
    row(
        "frame per key, p99",
        &get("key_frame_ms.p99")?,
        "ms",
        Some(FRAME_TARGET_MS),
    );
    row(
        "taking an update (rows, filter, sort, history), median",
        &get("update_ms.median")?,
        "ms",
        None,
    );
    row("taking an update, p99", &get("update_ms.p99")?, "ms", None);
    row(
        "CPU of top while open, % of one core",
        &get("top_cpu_percent")?,
        "%",
        Some(CPU_TARGET_PERCENT),
    );
    row(
        "  of which the view's thread",
        &get("view_thread_cpu_percent")?,
        "%",
        None,
    );
    row(
        "  of which building rows from each tick",
        &get("rows_cpu_percent")?,
        "%",
        None,
    );
    row(
        "synthetic data generator (not top's)",
        &get("generator_cpu_percent")?,
        "%",
        None,
    );
    let rss: Vec<f64> = get("peak_rss_kib")?.iter().map(|k| k / 1024.0).collect();
    row("peak RSS (whole process)", &rss, "MiB", None);
    let frames: Vec<f64> = get("key_frame_ms.count")?;
    out.push_str(&format!(
        "\nFrames per key phase: {}. Idle frames: {}.\n",
        frames
            .iter()
            .map(|f| format!("{f:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        get("refresh_frame_ms.count")?
            .iter()
            .map(|f| format!("{f:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_the_agents_json() {
        let j = r#"{"processes":2000,"refresh_frame_ms":{"count":20,"median":0.5,"p99":1.25e0,"max":2.0},"key_frame_ms":{"count":9,"median":0.1,"p99":0.2,"max":0.3},"top_cpu_percent":0.8}"#;
        assert_eq!(number(j, "processes").unwrap(), 2000.0);
        assert_eq!(number(j, "refresh_frame_ms.p99").unwrap(), 1.25);
        assert_eq!(number(j, "key_frame_ms.median").unwrap(), 0.1);
        assert_eq!(number(j, "top_cpu_percent").unwrap(), 0.8);
        assert!(number(j, "nope").is_err());
    }
}
