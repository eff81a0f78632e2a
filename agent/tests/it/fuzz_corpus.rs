//! Replays, through the same entry points the fuzz targets use
//! (`agent::fuzzing`), the seed corpus in `fuzz/corpus/<target>/` and every
//! input a fuzz run ever crashed on, kept in `fuzz/regressions/<target>/`
//! (`cargo xtask fuzz` copies them there). Runs on stable, in the normal
//! test suite: a fixed crash stays fixed.
use std::path::Path;

#[test]
fn every_seed_and_every_past_crash_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let xtask = std::fs::read_to_string(root.join("../xtask/src/fuzz.rs")).unwrap();
    let mut replayed = 0;
    for (name, run) in agent::fuzzing::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no target {name}"
        );
        assert!(
            xtask.contains(&format!("\"{name}\",")),
            "xtask/src/fuzz.rs does not run {name}"
        );
        let mut seeds = 0;
        for kind in ["corpus", "regressions"] {
            let dir = root.join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let data = std::fs::read(entry.path()).unwrap();
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(
                    outcome.is_ok(),
                    "fuzz target {name} panics on {}",
                    entry.path().display()
                );
                replayed += 1;
                if kind == "corpus" {
                    seeds += 1;
                }
            }
        }
        assert!(seeds > 0, "fuzz/corpus/{name}/ has no seed");
    }
    eprintln!("replayed {replayed} fuzz inputs");
}
