//! `cargo xtask dist`: the agent as static (musl) binaries for linux/amd64
//! and linux/arm64, in target/dist/linux-<arch>/agent, where the Dockerfile
//! takes them from.
//!
//! The eBPF programs are built per target: aya-build passes the target's
//! architecture as `bpf_target_arch`, and the syscall arguments' offsets in
//! `struct pt_regs` come from the running kernel's BTF for that architecture
//! (node/src/probes/offsets.rs), so an arm64 binary carries arm64 programs.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::cmd::{self, cmd};

/// One binary of the release.
struct DistTarget {
    /// Docker's name of the platform's architecture (`TARGETARCH`).
    arch: &'static str,
    triple: &'static str,
    /// ELF `e_machine` of the binary.
    elf_machine: u16,
    /// Environment for the C parts (SQLite, ring, psm) and the link, where
    /// the host's defaults do not fit.
    env: &'static [(&'static str, &'static str)],
}

const TARGETS: &[DistTarget] = &[
    DistTarget {
        arch: "amd64",
        triple: "x86_64-unknown-linux-musl",
        elf_machine: 62,
        // cc picks musl-gcc (musl-tools) for this target by itself; rustc
        // links with its own self-contained musl.
        env: &[],
    },
    DistTarget {
        arch: "arm64",
        triple: "aarch64-unknown-linux-musl",
        elf_machine: 183,
        // Debian has no aarch64 musl cross compiler: the GNU one compiles the
        // C parts (freestanding enough: SQLite, ring, psm use no glibc-only
        // symbol) and drives the link against rustc's self-contained musl.
        env: &[
            ("CC_aarch64_unknown_linux_musl", "aarch64-linux-gnu-gcc"),
            // glibc's headers turn open/stat/pread… into open64/stat64/
            // pread64 when a file asks for 64-bit offsets, as SQLite does;
            // musl (1.2.4 on) has no such symbols, and the link fails. On a
            // 64-bit target off_t is 64 bits anyway, so SQLite loses nothing
            // without its large-file switch.
            ("CFLAGS_aarch64_unknown_linux_musl", "-DSQLITE_DISABLE_LFS"),
            ("AR_aarch64_unknown_linux_musl", "aarch64-linux-gnu-ar"),
            (
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER",
                "aarch64-linux-gnu-gcc",
            ),
        ],
    },
];

/// Architectures of the release, by Docker's names.
pub const ARCHES: &[&str] = &["amd64", "arm64"];

/// The architecture of this machine, by Docker's name.
pub fn host_arch() -> Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        other => bail!("no dist target for this machine's architecture ({other})"),
    }
}

/// Builds the binaries of `arches` (all of them: `cargo xtask dist`) into
/// target/dist/linux-<arch>/agent and checks each.
pub fn run(root: &Path, arches: &[&str]) -> Result<()> {
    let mut built = Vec::new();
    for arch in arches {
        let t = TARGETS
            .iter()
            .find(|t| t.arch == *arch)
            .with_context(|| format!("no dist target for {arch}; there are {ARCHES:?}"))?;
        let binary = build(root, t)?;
        check_static_elf(&binary, t)?;
        let dest_dir = root.join("target/dist").join(format!("linux-{}", t.arch));
        fs::create_dir_all(&dest_dir)?;
        let dest = dest_dir.join("agent");
        fs::copy(&binary, &dest)
            .with_context(|| format!("cannot copy {} to {}", binary.display(), dest.display()))?;
        built.push((t, dest));
    }
    // The binary of this machine's architecture must run here.
    let host = host_arch()?;
    if let Some((_, native)) = built.iter().find(|(t, _)| t.arch == host) {
        let version = cmd::output(cmd(native).arg("--version"))?;
        ensure!(
            version.starts_with("agent "),
            "{} --version printed {version:?}",
            native.display()
        );
    }
    for (t, path) in &built {
        let size = fs::metadata(path)?.len();
        eprintln!(
            "xtask: linux/{:<5} {} ({:.1} MiB, static)",
            t.arch,
            path.display(),
            size as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}

fn build(root: &Path, t: &DistTarget) -> Result<PathBuf> {
    cmd::run(
        cmd::cargo()
            .args([
                "build",
                "--profile",
                "dist",
                "--package",
                "agent",
                "--bin",
                "agent",
            ])
            .args(["--target", t.triple])
            .envs(t.env.iter().copied()),
    )
    .with_context(|| format!("building the linux/{} binary", t.arch))?;
    // The `dist` profile: release with thin LTO (the workspace Cargo.toml).
    Ok(root.join("target").join(t.triple).join("dist/agent"))
}

/// The binary is an ELF for the target's machine with no program
/// interpreter (`PT_INTERP`): statically linked, it runs on any distribution
/// and on a `scratch` image.
fn check_static_elf(path: &Path, t: &DistTarget) -> Result<()> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let machine = elf_machine(&bytes).with_context(|| format!("{} is no ELF64", path.display()))?;
    if machine != t.elf_machine {
        bail!(
            "{} is for ELF machine {machine}, not {} ({})",
            path.display(),
            t.elf_machine,
            t.arch
        );
    }
    if has_interpreter(&bytes)
        .with_context(|| format!("{}: bad program headers", path.display()))?
    {
        bail!("{} is dynamically linked (has PT_INTERP)", path.display());
    }
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// `e_machine` of a little-endian ELF64 file.
fn elf_machine(b: &[u8]) -> Option<u16> {
    // EI_CLASS 2 = ELF64, EI_DATA 1 = little-endian.
    (b.get(..6)? == b"\x7fELF\x02\x01").then_some(())?;
    u16_at(b, 18)
}

/// Whether a program header is `PT_INTERP` (3).
fn has_interpreter(b: &[u8]) -> Option<bool> {
    let phoff = usize::try_from(u64_at(b, 32)?).ok()?;
    let phentsize = usize::from(u16_at(b, 54)?);
    let phnum = usize::from(u16_at(b, 56)?);
    let mut found = false;
    for i in 0..phnum {
        found |= u32_at(b, phoff + i * phentsize)? == 3;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 header with one program header of type `p_type`.
    fn elf(machine: u16, p_type: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&p_type.to_le_bytes());
        b
    }

    #[test]
    fn static_and_dynamic_elf_headers() {
        assert_eq!(elf_machine(&elf(183, 1)), Some(183));
        assert_eq!(has_interpreter(&elf(183, 1)), Some(false));
        assert_eq!(has_interpreter(&elf(62, 3)), Some(true));
        assert_eq!(elf_machine(b"#!/bin/sh\n"), None);
        // A file cut inside its first program header's p_type (bytes 64..68).
        let mut cut = elf(62, 1);
        cut.truncate(66);
        assert_eq!(has_interpreter(&cut), None);
    }
}
