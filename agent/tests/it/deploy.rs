//! deploy/: the manifests are valid for every Kubernetes from 1.30 on
//! (kubernetes-validate's schemas, unknown fields rejected), as plain files
//! and as kustomize renders them; checkov fails no check that the README's
//! table does not justify, and the table justifies nothing that passes; the
//! arguments the manifests give the agent are ones it accepts.
//!
//! kubernetes-validate and checkov come from PyPI into the test venv
//! (`cargo xtask setup`); kubectl (for `kubectl kustomize`) comes with the
//! machine. Off CI a missing tool skips loudly; under `CI=true` it fails.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

use crate::common;

/// The oldest Kubernetes the manifests must be valid for.
const OLDEST_MINOR: u32 = 30;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ is in the workspace")
        .to_path_buf()
}

fn deploy_dir() -> PathBuf {
    root().join("deploy")
}

/// A tool the test needs is missing: off CI, say so and skip; under CI,
/// fail.
fn missing(test: &str, what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {what} is missing (install it with `cargo xtask setup`)");
    }
    eprintln!("SKIPPED {test}: {what} is missing; `cargo xtask setup` installs it");
}

/// A command from the test venv, run with the venv's python (so a venv
/// copied from another checkout works too).
fn venv_command(test: &str, name: &str) -> Option<Command> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let bin = target.join("tally-pyenv/bin");
    let script = bin.join(name);
    if !script.exists() {
        missing(
            test,
            &format!("{} (PyPI, in the test venv)", script.display()),
        );
        return None;
    }
    let mut cmd = Command::new(bin.join("python"));
    cmd.arg(script);
    Some(cmd)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// The files `kustomization.yaml` lists under `resources:`.
fn kustomize_resources() -> Vec<String> {
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    let mut in_resources = false;
    let mut files = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('-') {
            in_resources = line.trim_end() == "resources:";
            continue;
        }
        if in_resources && let Some(item) = line.trim().strip_prefix("- ") {
            files.push(item.trim().to_owned());
        }
    }
    files
}

fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}

/// `kubectl kustomize deploy/`: what `kubectl apply -k deploy/` applies.
fn rendered(test: &str) -> Option<String> {
    let out = match Command::new("kubectl")
        .arg("kustomize")
        .arg(deploy_dir())
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            missing(test, "kubectl");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/ failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// The venv's python, to ask kubernetes-validate's own module which
/// versions it has schemas for.
fn venv_python() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("tally-pyenv/bin/python")
}

/// The Kubernetes minor versions in `versions` (`1.29.0 1.30.0 …`) from
/// 1.30 on.
fn minors_from(versions: &str) -> BTreeSet<u32> {
    versions
        .split_whitespace()
        .filter_map(|v| {
            let mut parts = v.split('.');
            let (major, minor) = (parts.next()?, parts.next()?);
            (major == "1").then(|| minor.parse().ok()).flatten()
        })
        .filter(|m| *m >= OLDEST_MINOR)
        .collect()
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let listed: BTreeSet<String> = kustomize_resources().into_iter().collect();
    let present: BTreeSet<String> = manifest_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, present, "deploy/kustomization.yaml resources");
}

#[test]
fn every_manifest_validates_for_kubernetes_1_30_and_newer() {
    let _serial = common::serial();
    let test = "every_manifest_validates_for_kubernetes_1_30_and_newer";
    let Some(rendered) = rendered(test) else {
        return;
    };
    if venv_command(test, "kubernetes-validate").is_none() {
        return;
    }
    let versions = run(Command::new(venv_python()).args([
        "-c",
        "import kubernetes_validate.utils as u; print(' '.join(u.all_versions()))",
    ]));
    let versions = String::from_utf8(versions.stdout).unwrap();
    let minors = minors_from(&versions);
    assert!(
        minors.len() >= 5 && minors.contains(&OLDEST_MINOR),
        "kubernetes-validate knows 1.30 and newer: {minors:?} from {versions:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("rendered.yaml");
    std::fs::write(&all, &rendered).unwrap();
    // Every kind the issue asks for is there, once kustomize is done.
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(
            rendered.contains(&format!("\nkind: {kind}\n")),
            "no {kind} in the rendered manifests"
        );
    }
    let documents =
        rendered.matches("\nkind: ").count() + usize::from(rendered.starts_with("kind: "));
    let mut files = manifest_files();
    files.push(all);
    // The validator does reject: an unknown field in a DaemonSet's pod.
    let bad = dir.path().join("unknown-field.yaml");
    let daemonset = std::fs::read_to_string(deploy_dir().join("agent-daemonset.yaml")).unwrap();
    std::fs::write(&bad, daemonset.replace("hostPID: true", "hostPid: true")).unwrap();
    let out = run(venv_command(test, "kubernetes-validate")
        .unwrap()
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .arg(&bad));
    assert!(!out.status.success(), "a misspelt field passes: {out:?}");
    for minor in &minors {
        let version = format!("1.{minor}.0");
        let out = run(venv_command(test, "kubernetes-validate")
            .unwrap()
            .args(["--strict", "--kubernetes-version", &version])
            .args(&files));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "Kubernetes {version}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Every document passed: each file's and the render's.
        let passed = stdout.matches(" passed for resource ").count();
        assert_eq!(passed, 2 * documents, "Kubernetes {version}: {stdout}");
    }
}

/// The README's table of checkov checks that fail on purpose:
/// `| CKV_K8S_17 | DaemonSet.tally.tally-agent | why |`.
fn justified_in_readme() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|l| {
            let mut cells = l.split('|').map(|c| c.trim().trim_matches('`'));
            let (_, check, resource, why) =
                (cells.next()?, cells.next()?, cells.next()?, cells.next()?);
            (check.starts_with("CKV") && why.len() > 20)
                .then(|| (check.to_owned(), resource.to_owned()))
        })
        .collect()
}

#[test]
fn checkov_fails_only_what_the_readme_justifies() {
    let _serial = common::serial();
    let test = "checkov_fails_only_what_the_readme_justifies";
    let Some(mut checkov) = venv_command(test, "checkov") else {
        return;
    };
    let out = run(checkov
        .arg("--directory")
        .arg(deploy_dir())
        .args(["--framework", "kubernetes", "--output", "json", "--quiet"])
        // Offline: no policies or guidelines fetched from a platform.
        .args(["--skip-download"])
        .env("BC_SKIP_MAPPING", "TRUE"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let results = &report["results"];
    let key = |c: &Value| {
        (
            c["check_id"].as_str().unwrap().to_owned(),
            c["resource"].as_str().unwrap().to_owned(),
        )
    };
    let failed: BTreeSet<(String, String)> = results["failed_checks"]
        .as_array()
        .map(|a| a.iter().map(key).collect())
        .unwrap_or_default();
    // --quiet leaves the passed checks out of the list, not of the summary.
    let passed = report["summary"]["passed"].as_u64().unwrap_or(0);
    assert!(
        passed > 50,
        "checkov checked the manifests: {passed} passed"
    );
    let justified = justified_in_readme();
    let unjustified: Vec<_> = failed.difference(&justified).collect();
    assert!(
        unjustified.is_empty(),
        "checkov failures the README does not justify: {unjustified:#?}"
    );
    let stale: Vec<_> = justified.difference(&failed).collect();
    assert!(
        stale.is_empty(),
        "the README justifies checks that no longer fail: {stale:#?}"
    );
}

/// The agent accepts the arguments the manifests give it: clap rejects an
/// unknown flag before it looks at `--help`, which ends the parse.
#[test]
fn the_manifests_arguments_are_the_agents() {
    let _serial = common::serial();
    let args_of = |file: &str| -> Vec<String> {
        let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
        let mut args = Vec::new();
        let mut in_args = false;
        for line in text.lines() {
            let t = line.trim();
            if t == "args:" {
                in_args = true;
            } else if in_args && let Some(a) = t.strip_prefix("- ") {
                args.push(a.to_owned());
            } else if in_args && !t.starts_with('#') {
                in_args = false;
            }
        }
        args
    };
    for file in ["agent-daemonset.yaml", "collector-deployment.yaml"] {
        let args = args_of(file);
        assert!(args.len() > 2, "{file}: {args:?}");
        let out = run(Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(&args)
            .arg("--help"));
        assert!(
            out.status.success(),
            "{file}: agent {args:?} is refused:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The liveness probe's command.
    let daemonset = std::fs::read_to_string(deploy_dir().join("agent-daemonset.yaml")).unwrap();
    let probe = daemonset
        .lines()
        .find_map(|l| l.trim().strip_prefix("command: [\"/agent\", "))
        .expect("an exec probe running /agent");
    let probe_args: Vec<&str> = probe
        .trim_end_matches(']')
        .split(", ")
        .map(|a| a.trim_matches('"'))
        .collect();
    let out = run(Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(&probe_args)
        .arg("--help"));
    assert!(
        out.status.success(),
        "probe {probe_args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn minors_from_kubernetes_validates_versions() {
    assert_eq!(
        minors_from("1.29.0 1.29.0 1.30.0 1.31.0 1.32.1 2.0.0"),
        BTreeSet::from([30, 31, 32]),
        "1.29 and older are left out"
    );
}
