//! `cargo xtask`: setup, build, run, test and bench for Tally.
//!
//! - `cargo xtask run -- top --batch`: installs what is missing, builds, runs the agent.
//! - `cargo xtask test`: every test (lints, unit tests, integration tests on the real kernel).
//! - `cargo xtask dist`: static binaries for linux/amd64 and linux/arm64 (the Dockerfile's).
//! - `cargo xtask image`: the image for both, built offline (OCI layout, local runtimes).
//! - `cargo xtask bench overhead`: the data path's cost on a syscall- and fault-heavy loop.
//! - `cargo xtask kernels`: the agent on Debian's 6.1 and 6.12 kernels, amd64 and arm64, under qemu.
//! - `cargo xtask soak`: the long fault tests, and a table of what was lost (nothing).
mod bench;
mod cmd;
mod dist;
mod fuzz;
mod image;
mod kernels;
mod setup;
mod soak;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Installs what building and testing need: rust-src for the nightly,
    /// bpf-linker built against the nightly's own LLVM, and Debian packages.
    Setup,
    /// Builds the agent (with its eBPF programs) into target/release.
    Build,
    /// Sets up, builds, and runs the agent with these arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Runs every test: formatting, clippy, unit and integration tests.
    Test {
        /// Passed to the test harness, e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Static (musl) binaries for linux/amd64 and linux/arm64 in
    /// target/dist/linux-<arch>/agent, for the Dockerfile.
    Dist,
    /// The image for linux/amd64 and linux/arm64, built from the Dockerfile
    /// offline (buildah): an OCI layout in target/image/oci, the manifest
    /// list in containers-storage, this machine's image in dockerd.
    Image(image::Args),
    /// Fuzzes the parsers of untrusted input for a bounded time each;
    /// crashes become regression tests (fuzz/regressions/).
    Fuzz(fuzz::Args),
    /// Runs the long versions of the fault tests (about 15 minutes) and
    /// prints a table: load held, faults injected, bad inputs, records lost.
    Soak {
        /// Passed to the test harness, e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Boots Debian's cloud kernels (6.1, 6.12; amd64 and arm64) under qemu
    /// with the static binaries of `dist`, runs the agent over known work in
    /// each, and prints the matrix: hooks attached, counts against the
    /// workload's own and the kernel's, Go GC cycles against gctrace
    /// (target/kernels.md).
    Kernels {
        /// Passed to the test harness.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Runs a benchmark and prints its table.
    Bench {
        #[command(subcommand)]
        which: bench::Bench,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Command::Setup => setup::all(setup::Purpose::Test),
        Command::Fuzz(args) => {
            setup::all(setup::Purpose::Run)?;
            fuzz::run(&args, &root)
        }
        Command::Build => {
            setup::all(setup::Purpose::Run)?;
            build(&[])
        }
        Command::Run { args } => {
            setup::all(setup::Purpose::Run)?;
            build(&[])?;
            cmd::exec(cmd::cmd(root.join("target/release/agent")).args(args))
        }
        Command::Test { args } => {
            setup::all(setup::Purpose::Test)?;
            // The container tests need a daemon; they fail under CI without one.
            setup::dockerd(&root)?;
            // The pod tests run the shipped manifests with the image built
            // from this tree, for this machine's platform.
            setup::all(setup::Purpose::Image)?;
            image::build(&root, &[dist::host_arch()?])?;
            test(&args)
        }
        Command::Dist => {
            setup::all(setup::Purpose::Dist)?;
            dist::run(&root, dist::ARCHES)
        }
        Command::Image(args) => {
            setup::all(setup::Purpose::Image)?;
            image::run(&root, &args)
        }
        Command::Kernels { args } => {
            setup::all(setup::Purpose::Kernels)?;
            let lines: Vec<&kernels::Line> = kernels::LINES.iter().collect();
            kernels::fetch(&root, &lines, dist::ARCHES)?;
            dist::run(&root, dist::ARCHES)?;
            kernels::run_matrix(&root, &args)
        }
        Command::Soak { args } => {
            setup::all(setup::Purpose::Test)?;
            soak::run(&root, &args)
        }
        Command::Bench { which } => {
            setup::all(setup::Purpose::Bench)?;
            if matches!(which, bench::Bench::Recommendations) {
                // Real runtimes in real containers, as the suite has them.
                setup::all(setup::Purpose::Test)?;
                setup::dockerd(&root)?;
            }
            // With the view's benchmark (`agent top --bench-seconds`).
            build(&["bench"])?;
            bench::run(which, &root)
        }
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

/// Release build of the agent, with these features of its package: the
/// node crate's build script builds the eBPF programs.
fn build(features: &[&str]) -> Result<()> {
    let mut c = cmd::cargo();
    c.args(["build", "--release", "--package", "agent"]);
    if !features.is_empty() {
        c.arg("--features").arg(features.join(","));
    }
    cmd::run(&mut c)
}

fn test(args: &[String]) -> Result<()> {
    cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))?;
    // The eBPF crate only builds for the BPF target with the nightly.
    cmd::run(
        cmd::cmd("cargo")
            .args([
                "+nightly",
                "clippy",
                "--release",
                "--package",
                "agent-ebpf",
                "--target",
                "bpfel-unknown-none",
            ])
            .args(["-Z", "build-std=core", "--", "-D", "warnings"]),
    )?;
    // Release: integration tests measure the agent's real, optimized binary.
    // Unit tests run in parallel; the integration tests serialize themselves.
    //
    // Clippy lints the workspace's crates in the same build, as `cargo
    // clippy` does it (clippy-driver as the workspace's rustc wrapper,
    // `-D warnings` through CLIPPY_ARGS): a separate `cargo clippy` would
    // type-check every dependency a second time, 10 of CI's minutes.
    //
    // The benches that need the store and a gRPC client (`ingest-bench`)
    // are built and linted here too, so they cannot rot unseen.
    cmd::run(
        cmd::cargo()
            .args(["test", "--release", "--features", "xtask/ingest-bench"])
            .env("RUSTC_WORKSPACE_WRAPPER", "clippy-driver")
            .env(
                "CLIPPY_ARGS",
                "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
            )
            .arg("--")
            .args(args),
    )
}
