//! `cargo xtask soak`: the long versions of the fault tests (collector
//! outage of 5 minutes, repeated crashes, a 60 s fork storm, map pressure,
//! agent restarts) and of the hostile-client tests (2,000 rounds of
//! malformed frames; 10,000 idle connections and a stalled reader held for
//! 5 minutes), then one table of what each held and lost.
//!
//! Each test appends one tab-separated line to the results file named by
//! `TALLY_SOAK_RESULTS`: test, load held, faults injected, bad inputs tried,
//! records lost. A test that fails writes nothing, and the soak fails.
use std::{fs, path::Path};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// The integration tests' one binary: agent/tests/it/main.rs, a module per
/// area.
const TEST_BINARY: &str = "it";

/// Its modules with long versions under `TALLY_SOAK=1`.
const SOAK_MODULES: &[&str] = &["faults", "hostile"];

pub fn run(root: &Path, filter: &[String]) -> Result<()> {
    let main_rs = root.join("agent/tests/it/main.rs");
    let text = fs::read_to_string(&main_rs)
        .with_context(|| format!("cannot read {}", main_rs.display()))?;
    let modules = modules(&text);
    for soak in SOAK_MODULES {
        if !modules.iter().any(|m| m == soak) {
            bail!("{} declares no module {soak}", main_rs.display());
        }
    }
    let results = root.join("target/soak-results.tsv");
    let _ = fs::remove_file(&results);
    let mut failed = None;
    for module in SOAK_MODULES {
        let outcome = cmd::run(
            cmd::cargo()
                .args(["test", "--release", "--package", "agent"])
                .args(["--test", TEST_BINARY])
                .arg("--")
                // One at a time: they load programs and measure.
                .args(["--test-threads", "1"])
                .args(harness_args(module, &modules, filter))
                .env("TALLY_SOAK", "1")
                .env("TALLY_SOAK_RESULTS", &results),
        );
        if let Err(e) = outcome {
            failed.get_or_insert(e);
        }
    }
    let text = fs::read_to_string(&results).unwrap_or_default();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    print!("{}", table(&rows));
    if let Some(e) = failed {
        return Err(e).context("a soak test failed (its row is missing above)");
    }
    if rows
        .iter()
        .any(|r| r.get(4).is_some_and(|lost| *lost != "0"))
    {
        bail!("records were lost");
    }
    Ok(())
}

/// The modules `main.rs` declares (`mod name;`), in order.
fn modules(main_rs: &str) -> Vec<String> {
    main_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mod ")?.strip_suffix(';'))
        .map(|m| m.trim().to_owned())
        .collect()
}

/// The harness arguments that run `module`'s tests and no other: its
/// name as the filter (`faults::`). The caller's own arguments (e.g. a
/// test name filter) would widen that, since libtest runs what matches any
/// filter; so with them, every other module is skipped instead, and a
/// filter still narrows within `module` as it did in the module's own
/// test binary.
fn harness_args(module: &str, modules: &[String], extra: &[String]) -> Vec<String> {
    if extra.is_empty() {
        return vec![format!("{module}::")];
    }
    let mut args = extra.to_vec();
    for other in modules.iter().filter(|m| *m != module) {
        args.extend(["--skip".to_owned(), format!("{other}::")]);
    }
    args
}

/// Aligned columns under a header.
fn table(rows: &[Vec<&str>]) -> String {
    let header = [
        "test",
        "load held",
        "faults injected",
        "bad inputs",
        "records lost",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            // Numbers (the last two columns) right-aligned.
            if i >= 3 {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_read_from_main_rs() {
        let main_rs =
            "//! Docs: mod nothing;\n\n// Shared.\nmod common;\n\nmod faults;\nmod hostile;\n";
        assert_eq!(modules(main_rs), ["common", "faults", "hostile"]);
    }

    #[test]
    fn a_module_alone_and_a_filter_narrows_within_it() {
        let modules: Vec<String> = ["common", "datapath", "faults", "hostile"]
            .map(String::from)
            .to_vec();
        assert_eq!(harness_args("faults", &modules, &[]), ["faults::"]);
        let extra = ["outage".to_owned(), "--nocapture".to_owned()];
        assert_eq!(
            harness_args("faults", &modules, &extra),
            [
                "outage",
                "--nocapture",
                "--skip",
                "common::",
                "--skip",
                "datapath::",
                "--skip",
                "hostile::"
            ]
        );
    }

    #[test]
    fn table_aligns_and_right_aligns_numbers() {
        let t = table(&[vec!["outage", "300 reports", "down 300 s", "0", "0"]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("test    load held"));
        assert!(lines[1].starts_with("outage  300 reports"));
        assert!(lines[1].ends_with("           0"));
    }
}
