//! Installs what is missing, so the README's two commands work on a fresh
//! machine: rust-src for the nightly, bpf-linker built against the nightly's
//! own LLVM, and the Debian packages each purpose needs.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, cmd};

/// What the machine is being set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Run,
    Test,
    Bench,
    /// `cargo xtask dist`: static binaries for amd64 and arm64.
    Dist,
    /// `cargo xtask image`: the binaries, and the image built offline.
    Image,
    /// `cargo xtask kernels`: qemu for amd64 and arm64 guests, and the
    /// static binaries of `dist`.
    Kernels,
}

/// bpf-linker release that builds with the pinned aya and the nightly's LLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn all(purpose: Purpose) -> Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    debian_packages(packages(purpose))?;
    if purpose == Purpose::Test {
        python_venv()?;
    }
    if matches!(purpose, Purpose::Image | Purpose::Kernels) {
        debian_packages(packages(Purpose::Dist))?;
    }
    if purpose == Purpose::Test {
        // The suite boots Debian's 6.1 amd64 kernel under qemu
        // (agent/tests/it/kernels.rs); `cargo xtask kernels` fetches the rest.
        let line = crate::kernels::LINES
            .iter()
            .find(|l| l.name == "debian-6.1")
            .expect("the 6.1 line is in LINES");
        crate::kernels::fetch(&crate::workspace_root(), &[line], &["amd64"])?;
    }
    if matches!(purpose, Purpose::Dist | Purpose::Image | Purpose::Kernels) {
        rust_targets(&["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"])?;
    }
    Ok(())
}

fn rust_targets(wanted: &[&str]) -> Result<()> {
    let installed = cmd::output(cmd("rustup").args(["target", "list", "--installed"]))?;
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    cmd::run(cmd("rustup").args(["target", "add"]).args(&missing))
}

/// The official OTLP packages from PyPI the OTLP receiver of the export
/// tests is written against, in a venv under target/ (`tally-pyenv`, the
/// path agent/tests/it/exporting.rs looks for); kubernetes-validate and
/// checkov check deploy/ (agent/tests/it/deploy.rs).
const PIP_TEST_PACKAGES: &[&str] = &[
    "grpcio",
    "opentelemetry-proto",
    "kubernetes-validate",
    "checkov",
];
/// The commands of those packages the tests run from the venv's bin/.
const PIP_TEST_COMMANDS: &[&str] = &["kubernetes-validate", "checkov"];

fn python_venv() -> Result<()> {
    let venv = crate::workspace_root().join("target/tally-pyenv");
    let python = venv.join("bin/python");
    let ready = || {
        cmd::succeeds(cmd(&python).args([
            "-c",
            "import grpc, opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc",
        ])) && PIP_TEST_COMMANDS
            .iter()
            .all(|c| venv.join("bin").join(c).exists())
    };
    if ready() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} into {}",
        PIP_TEST_PACKAGES.join(" "),
        venv.display()
    );
    // Debian's Python, whatever else is first on PATH.
    cmd::run(cmd("/usr/bin/python3").args(["-m", "venv"]).arg(&venv))?;
    // `python -m pip`: a venv copied from another checkout keeps working
    // (its bin/pip's shebang names the original's python).
    cmd::run(
        cmd(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PIP_TEST_PACKAGES),
    )?;
    if !ready() {
        bail!(
            "the venv {} cannot import grpc and opentelemetry.proto, or lacks {}",
            venv.display(),
            PIP_TEST_COMMANDS.join(" and ")
        );
    }
    Ok(())
}

fn packages(purpose: Purpose) -> &'static [&'static str] {
    match purpose {
        Purpose::Run => &[],
        // gcc: the integration tests build their C workloads; golang-go and
        // stress-ng are workloads of the verdict tests (Java and Node come
        // with the machine); tmux runs the interactive top's end-to-end test;
        // prometheus scrapes the agent, chromium draws the flame graph and
        // python3-venv holds the OTLP receiver's packages (export tests).
        Purpose::Test => &[
            "gcc",
            "libc6-dev",
            "golang-go",
            "stress-ng",
            "tmux",
            "prometheus",
            "chromium",
            "python3-venv",
            // openssl: the transport tests make their CA and certificates.
            "openssl",
            // PyYAML: the pod test reads the rendered manifests.
            "python3-yaml",
            // dockerd 20.10 with containerd and runc: the container tests
            // (agent/tests/it/containers.rs) run workloads in real containers.
            "docker.io",
            // podman runs the pods of deploy/ (agent/tests/it/pods.rs):
            // dockerd 20.10 refuses the capabilities BPF and PERFMON.
            "podman",
            // The JVM tests' JDK 17 (javac too). Temurin 25, their other
            // JDK, is not in Debian: the machine image brings it.
            "openjdk-17-jdk-headless",
            // The 6.1 kernel's guest (agent/tests/it/kernels.rs): qemu, cpio
            // for its initramfs, curl and xz to fetch the kernel.
            "qemu-system-x86",
            "cpio",
            "curl",
            "xz-utils",
            // The PostgreSQL store's tests (collector's store::postgres,
            // agent/tests/it/replicas.rs) run a throwaway cluster with its
            // initdb and pg_ctl (/usr/lib/postgresql/<major>/bin), as the
            // `postgres` user it creates; the system cluster it may start
            // is never used.
            "postgresql",
        ],
        // bpftrace: the reference the overhead benchmark compares against.
        Purpose::Bench => &["gcc", "libc6-dev", "bpftrace"],
        // musl-gcc for the amd64 binary's C parts (SQLite, ring); the GNU
        // aarch64 cross compiler and its headers for the arm64 one's.
        Purpose::Dist => &[
            "musl-tools",
            "gcc-aarch64-linux-gnu",
            "libc6-dev-arm64-cross",
        ],
        // buildah builds the Dockerfile with no daemon and no registry;
        // skopeo loads this machine's image into dockerd.
        Purpose::Image => &["buildah", "skopeo"],
        // qemu boots the kernels' guests (TCG: no nested KVM needed); cpio
        // packs their initramfs; the static C workload for arm64 builds with
        // the GNU cross compiler (the Dist packages).
        Purpose::Kernels => &[
            "qemu-system-x86",
            "qemu-system-arm",
            "cpio",
            "curl",
            "xz-utils",
        ],
    }
}

fn nightly_rust_src() -> Result<()> {
    if !cmd::succeeds(cmd("rustc").args(["+nightly", "--version"])) {
        eprintln!("xtask: installing the nightly toolchain (eBPF programs need it)");
        cmd::run(cmd("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
            .context("the eBPF programs build with a nightly toolchain; install one with rustup")?;
    }
    let installed = cmd::output(cmd("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    // rust-src for -Z build-std; clippy lints the eBPF crate in the tests.
    for component in ["rust-src", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            cmd::run(cmd("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                "nightly",
            ]))?;
        }
    }
    // The test command lints with the stable toolchain's clippy-driver.
    if !cmd::succeeds(cmd("clippy-driver").arg("--version")) {
        cmd::run(cmd("rustup").args(["component", "add", "clippy"]))?;
    }
    Ok(())
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

/// Builds bpf-linker against the LLVM inside the nightly toolchain, so its
/// LLVM matches the one rustc emits bitcode with. Rebuilt when the nightly
/// changes (the stamp file records `rustc +nightly -vV`).
fn bpf_linker() -> Result<()> {
    let version_info = cmd::output(cmd("rustc").args(["+nightly", "-vV"]))?;
    let prefix = cargo_home().join("tally-llvm-prefix");
    let stamp = prefix.join("stamp");
    let linker = cargo_home().join("bin/bpf-linker");
    let current = fs::read_to_string(&stamp).unwrap_or_default();
    if linker.exists() && current == version_info {
        return Ok(());
    }
    let major = llvm_major(&version_info).context("`rustc +nightly -vV` names no LLVM version")?;
    let sysroot =
        PathBuf::from(cmd::output(cmd("rustc").args(["+nightly", "--print", "sysroot"]))?.trim());
    let libllvm = find_libllvm(&sysroot.join("lib"))?;
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib)?;
    // llvm-sys links `libLLVM.so`; the binary then needs the library's own
    // soname at run time, found through the runpath this prefix becomes.
    for name in [
        PathBuf::from("libLLVM.so"),
        PathBuf::from(libllvm.file_name().expect("a file")),
    ] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("cannot link {} to {}", link.display(), libllvm.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} (about a minute)"
    );
    cmd::run(
        cmd("cargo")
            .args([
                "+nightly",
                "install",
                "bpf-linker",
                "--force",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .env("LLVM_PREFIX", &prefix),
    )?;
    fs::write(&stamp, version_info)?;
    Ok(())
}

/// `LLVM version: 22.1.4` → 22.
fn llvm_major(version_info: &str) -> Option<u32> {
    version_info
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?
        .split('.')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The nightly's shared LLVM: `libLLVM.so.<ver>-rust-…` (or `libLLVM-<ver>-rust-….so`).
fn find_libllvm(libdir: &Path) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = fs::read_dir(libdir)
        .with_context(|| format!("cannot list {}", libdir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains(".so"))
        })
        .collect();
    candidates.sort();
    // Prefer the soname form, which is what the linker records.
    let pick = candidates
        .iter()
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .or(candidates.first())
        .cloned();
    pick.with_context(|| {
        format!(
            "no libLLVM*.so in {}: is the nightly complete?",
            libdir.display()
        )
    })
}

/// Whether a Debian package is installed. Not `dpkg -s`: it succeeds for a
/// package that was removed but left its configuration files behind
/// ("deinstall ok config-files"), which then never got installed again
/// (seen with podman).
fn installed(package: &str) -> bool {
    cmd("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

fn debian_packages(wanted: &[&str]) -> Result<()> {
    let missing: Vec<&str> = wanted.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!(
            "missing Debian packages {}: run as root, or `sudo apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        cmd::run(
            cmd("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    apt(&["update", "-q"])?;
    apt(&[
        &["install", "-y", "-q", "--no-install-recommends"][..],
        &missing,
    ]
    .concat())
}

/// Debian's docker client and daemon (docker.io), by path: another client
/// first on PATH may want BuildKit or an API version this daemon lacks.
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";

/// Starts dockerd for the container tests unless it already answers (a
/// machine with systemd starts it on install; this kind of machine and CI
/// have no init that does). It is left running for later test runs; its
/// log is target/dockerd.log.
/// Whether a dockerd answers on its socket.
pub fn dockerd_answers() -> bool {
    cmd::succeeds(cmd(DOCKER).args(["version", "--format", "{{.Server.Version}}"]))
}

pub fn dockerd(root: &Path) -> Result<()> {
    let answers = dockerd_answers;
    if answers() {
        return Ok(());
    }
    let log_path = root.join("target/dockerd.log");
    fs::create_dir_all(log_path.parent().expect("target/"))?;
    let log = fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    eprintln!("xtask: starting {DOCKERD} (log: {})", log_path.display());
    use std::os::unix::process::CommandExt as _;
    // Its own process group: a Ctrl-C of this command does not stop it.
    cmd(DOCKERD)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {DOCKERD}: is docker.io installed?"))?;
    for _ in 0..120 {
        if answers() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let tail: String = fs::read_to_string(&log_path)
        .unwrap_or_default()
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    bail!(
        "dockerd did not answer within 30 s; the end of {}:\n{tail}",
        log_path.display()
    )
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_rustc() {
        let vv =
            "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv), Some(22));
        assert_eq!(llvm_major("rustc 1.0\n"), None);
    }
}
