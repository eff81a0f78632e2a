//! Debian's and Ubuntu's kernels, and a static busybox, for the qemu kernel
//! matrix (agent/tests/it/kernels.rs), fetched from their archives.
//!
//! Each kernel line is a set of suites; the newest version of its
//! metapackage (`linux-image-cloud-<arch>`) among them names the image
//! package, whose `/boot/vmlinuz-*` is all the guest needs: the serial
//! console, BTF and the initramfs's unpacking are built in, and the guest
//! needs no disk. Nothing is installed on the host. The files land in
//! `target/kernels/<line>-<arch>/{vmlinuz,release}` and
//! `target/kernels/busybox-<arch>`; what is there is not fetched again.
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, cmd};

const DEBIAN: &str = "http://deb.debian.org/debian";
const DEBIAN_SECURITY: &str = "http://deb.debian.org/debian-security";
const UBUNTU: &str = "http://archive.ubuntu.com/ubuntu";

/// A kernel line: its name in the matrix, the metapackage that names its
/// newest image, and the (archive, suite) pairs its packages come from.
pub struct Line {
    pub name: &'static str,
    /// `{arch}` stands for the architecture.
    meta: &'static str,
    /// Architectures it is fetched for.
    arches: &'static [&'static str],
    suites: &'static [(&'static str, &'static str)],
}

/// Every line the matrix runs:
/// - 6.1, the long-term line of EKS's AL2023 default kernel and of
///   Bottlerocket, and 6.12, that of AL2023's newer kernel;
/// - 5.15, Tally's floor: Ubuntu 22.04's kernel, the oldest line with
///   every helper the programs call. amd64 only: Ubuntu's arm64 archive
///   (ports.ubuntu.com) is not reachable from these machines;
/// - 5.10, Amazon Linux 2's line, below the floor: the matrix checks the
///   agent says what it cannot count there, and counts the rest.
pub const LINES: &[Line] = &[
    Line {
        name: "debian-5.10",
        meta: "linux-image-cloud-{arch}",
        arches: &["amd64", "arm64"],
        suites: &[(DEBIAN, "bullseye"), (DEBIAN_SECURITY, "bullseye-security")],
    },
    Line {
        name: "ubuntu-5.15",
        meta: "linux-image-generic",
        arches: &["amd64"],
        suites: &[(UBUNTU, "jammy-updates"), (UBUNTU, "jammy-security")],
    },
    Line {
        name: "debian-6.1",
        meta: "linux-image-cloud-{arch}",
        arches: &["amd64", "arm64"],
        suites: &[(DEBIAN, "bookworm"), (DEBIAN_SECURITY, "bookworm-security")],
    },
    Line {
        name: "debian-6.12",
        meta: "linux-image-cloud-{arch}",
        arches: &["amd64", "arm64"],
        suites: &[(DEBIAN, "trixie"), (DEBIAN_SECURITY, "trixie-security")],
    },
];

/// Where the matrix's kernels and busyboxes are.
pub fn dir(root: &Path) -> PathBuf {
    root.join("target/kernels")
}

/// Fetches the kernel of each line for each architecture (Debian's names:
/// amd64, arm64), and a static busybox for each architecture.
pub fn fetch(root: &Path, lines: &[&Line], arches: &[&str]) -> Result<()> {
    let dir = dir(root);
    let cache = dir.join("cache");
    fs::create_dir_all(&cache)?;
    for arch in arches {
        let busybox = dir.join(format!("busybox-{arch}"));
        if !busybox.exists() {
            let index = Index::load(&cache, &[(DEBIAN, "bookworm")], arch)?;
            let deb = index.download("busybox-static", &cache)?;
            extract(&deb, "./bin/busybox", &busybox)?;
        }
        for line in lines.iter().filter(|l| l.arches.contains(arch)) {
            let out = dir.join(format!("{}-{arch}", line.name));
            if out.join("vmlinuz").exists() && out.join("release").exists() {
                continue;
            }
            fetch_kernel(&cache, line, arch, &out)?;
        }
    }
    Ok(())
}

/// The newest kernel of a line for which the archive has the file: the
/// index of a suite may name a package its pool no longer holds (seen:
/// bullseye-security's arm64 image), so each suite's is tried, newest first.
fn fetch_kernel(cache: &Path, line: &Line, arch: &str, out: &Path) -> Result<()> {
    let meta = line.meta.replace("{arch}", arch);
    let mut candidates = Vec::new();
    for suite in line.suites {
        let index = Index::load(cache, std::slice::from_ref(suite), arch)?;
        if let Ok(image) = index.image_of(&meta) {
            candidates.push((index.packages[&image].version.clone(), image, index));
        }
    }
    let mut newest_first = Vec::new();
    while !candidates.is_empty() {
        let mut best = 0;
        for i in 1..candidates.len() {
            if version_gt(&candidates[i].0, &candidates[best].0)? {
                best = i;
            }
        }
        newest_first.push(candidates.swap_remove(best));
    }
    let mut failures = Vec::new();
    for (version, image, index) in newest_first {
        let deb = match index.download(&image, cache) {
            Ok(deb) => deb,
            Err(e) => {
                eprintln!("xtask: {image} {version}: {e:#}; trying an older one");
                failures.push(format!("{image} {version}: {e:#}"));
                continue;
            }
        };
        let release = image.trim_start_matches("linux-image-");
        fs::create_dir_all(out)?;
        extract(
            &deb,
            &format!("./boot/vmlinuz-{release}"),
            &out.join("vmlinuz"),
        )?;
        fs::write(out.join("release"), format!("{release} {version}\n"))?;
        eprintln!("xtask: {} {arch}: {release} ({version})", line.name);
        return Ok(());
    }
    bail!(
        "no {meta} of {} could be fetched: {}",
        line.name,
        failures.join("; ")
    )
}

/// Runs the matrix test (`kernels::matrix` in agent/tests/it/kernels.rs)
/// over every fetched kernel with the binaries of `dist`, and the host; it
/// writes its table to target/kernels.md.
pub fn run_matrix(root: &Path, args: &[String]) -> Result<()> {
    cmd::run(
        cmd::cargo()
            .args(["test", "--release", "--package", "agent", "--test", "it"])
            .args(["--", "kernels::matrix"])
            .args(["--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .args(args)
            .env("TALLY_KERNELS_DIST", root.join("target/dist"))
            .env("TALLY_KERNELS_TABLE", root.join("target/kernels.md"))
            .current_dir(root),
    )
}

/// One package's stanza, the fields used here.
#[derive(Debug, Clone, Default)]
struct Package {
    version: String,
    depends: String,
    /// Path in the archive, below its base URL.
    filename: String,
    archive: &'static str,
}

/// The packages of some suites for one architecture; where several suites
/// have a package, the newest version wins.
struct Index {
    packages: HashMap<String, Package>,
}

impl Index {
    fn load(cache: &Path, suites: &[(&'static str, &str)], arch: &str) -> Result<Self> {
        let mut packages: HashMap<String, Package> = HashMap::new();
        for &(archive, suite) in suites {
            let url = format!("{archive}/dists/{suite}/main/binary-{arch}/Packages.xz");
            let xz = cache.join(format!("{suite}-{arch}-Packages.xz"));
            // An index an hour old still names files the archive has; an
            // older one may not (security updates replace them).
            let fresh = fs::metadata(&xz)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 3600));
            if !fresh {
                download(&url, &xz)?;
            }
            let text = cmd::output(cmd("xz").arg("-dc").arg(&xz))?;
            for (name, p) in parse_packages(&text, archive) {
                let newer = match packages.get(&name) {
                    Some(old) => version_gt(&p.version, &old.version)?,
                    None => true,
                };
                if newer {
                    packages.insert(name, p);
                }
            }
        }
        Ok(Self { packages })
    }

    /// The image package a metapackage (`linux-image-cloud-amd64`) depends on.
    fn image_of(&self, meta: &str) -> Result<String> {
        let p = self
            .packages
            .get(meta)
            .with_context(|| format!("no package {meta} in the index"))?;
        p.depends
            .split(',')
            .map(|d| d.split_whitespace().next().unwrap_or(""))
            .find(|d| d.starts_with("linux-image-") && self.packages.contains_key(*d))
            .map(str::to_string)
            .with_context(|| format!("{meta} depends on no image package: {}", p.depends))
    }

    fn download(&self, name: &str, cache: &Path) -> Result<PathBuf> {
        let p = self
            .packages
            .get(name)
            .with_context(|| format!("no package {name} in the index"))?;
        let file = p.filename.rsplit('/').next().unwrap_or(name);
        let deb = cache.join(file);
        if !deb.exists() {
            download(&format!("{}/{}", p.archive, p.filename), &deb)?;
        }
        Ok(deb)
    }
}

/// Name → stanza of a `Packages` file.
fn parse_packages(text: &str, archive: &'static str) -> Vec<(String, Package)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut p = Package {
            archive,
            ..Package::default()
        };
        for line in stanza.lines() {
            let Some((key, value)) = line.split_once(": ") else {
                continue;
            };
            match key {
                "Package" => name = Some(value.to_string()),
                "Version" => p.version = value.to_string(),
                "Depends" => p.depends = value.to_string(),
                "Filename" => p.filename = value.to_string(),
                _ => {}
            }
        }
        if let Some(name) = name {
            out.push((name, p));
        }
    }
    out
}

/// Debian's version order, by dpkg itself.
fn version_gt(a: &str, b: &str) -> Result<bool> {
    Ok(cmd::succeeds(cmd("dpkg").args([
        "--compare-versions",
        a,
        "gt",
        b,
    ])))
}

fn download(url: &str, to: &Path) -> Result<()> {
    let partial = to.with_extension("partial");
    cmd::run(
        cmd("curl")
            .args([
                "--fail",
                "--silent",
                "--show-error",
                "--location",
                "--retry",
                "3",
            ])
            .arg("--output")
            .arg(&partial)
            .arg(url),
    )?;
    fs::rename(&partial, to)?;
    Ok(())
}

/// One file of a .deb, by its path in the package's data.
fn extract(deb: &Path, member: &str, to: &Path) -> Result<()> {
    let script = "dpkg-deb --fsys-tarfile \"$1\" | tar -xO \"$2\" > \"$3\"";
    cmd::run(
        cmd("sh")
            .args(["-c", script, "extract"])
            .arg(deb)
            .arg(member)
            .arg(to),
    )?;
    if fs::metadata(to).map(|m| m.len()).unwrap_or(0) == 0 {
        bail!("{} has no {member}", deb.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stanzas() {
        let text = "Package: linux-image-cloud-amd64\nSource: linux-signed-amd64\nVersion: 6.1.158-1\nDepends: linux-image-6.1.0-41-cloud-amd64 (= 6.1.158-1)\nFilename: pool/main/l/x.deb\n\nPackage: busybox-static\nVersion: 1:1.35.0-4\nFilename: pool/main/b/busybox.deb\n";
        let parsed = parse_packages(text, DEBIAN);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "linux-image-cloud-amd64");
        assert_eq!(parsed[0].1.version, "6.1.158-1");
        assert!(
            parsed[0]
                .1
                .depends
                .starts_with("linux-image-6.1.0-41-cloud-amd64")
        );
        assert_eq!(parsed[1].1.filename, "pool/main/b/busybox.deb");
    }
}
