//! `cargo xtask image`: Tally's image for linux/amd64 and linux/arm64, built
//! from the Dockerfile offline: buildah, no daemon, no BuildKit, no registry.
//!
//! - target/image/oci: an OCI image layout whose index points at one image
//!   index (tag = the version) with a manifest per platform, ready for
//!   `skopeo copy --all oci:target/image/oci:0.1.0 docker://REGISTRY/tally:0.1.0`;
//! - the same manifest list in the local containers-storage (podman and
//!   buildah see it as `tally:0.1.0`);
//! - this machine's platform loaded into dockerd as `tally:0.1.0`, when a
//!   dockerd answers.
//!
//! Only COPY runs in the Dockerfile, so the arm64 image needs no emulation.
//! `--timestamp 0` makes the build reproducible: the same binaries give the
//! same digests.
use std::{fs, path::Path};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    cmd::{self, cmd},
    dist, setup,
};

/// The image's name and tag, as the manifests in deploy/ name it.
pub const TAG: &str = "tally:0.1.0";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architectures to build, by Docker's names.
    #[arg(long, value_delimiter = ',', default_values_t = dist::ARCHES.iter().map(|a| a.to_string()))]
    arch: Vec<String>,
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    let arches: Vec<&str> = args.arch.iter().map(String::as_str).collect();
    build(root, &arches)
}

/// Builds the images of `arches` and loads this machine's into the local
/// runtimes. The test command builds only this machine's.
pub fn build(root: &Path, arches: &[&str]) -> Result<()> {
    dist::run(root, arches)?;
    // A fresh list each time: `--manifest` adds to an existing one.
    if cmd::succeeds(cmd("buildah").args(["manifest", "exists", TAG])) {
        cmd::run(cmd("buildah").args(["manifest", "rm", TAG]))?;
    }
    for arch in arches {
        cmd::run(
            cmd("buildah")
                .args(["build", "--quiet", "--layers=false", "--timestamp", "0"])
                .args(["--platform", &format!("linux/{arch}")])
                .args(["--manifest", TAG, "--file", "Dockerfile", "."]),
        )
        .with_context(|| format!("building the linux/{arch} image"))?;
    }
    let layout = root.join("target/image/oci");
    if layout.exists() {
        fs::remove_dir_all(&layout)?;
    }
    fs::create_dir_all(&layout)?;
    let version = TAG.split_once(':').expect("TAG has a tag").1;
    let dest = format!("oci:{}:{version}", layout.display());
    cmd::run(cmd("buildah").args(["manifest", "push", "--all", "--format", "oci", TAG, &dest]))?;
    let platforms = check_layout(&layout, version)?;
    ensure!(
        arches.iter().all(|a| platforms.iter().any(|p| p == a)),
        "{} has platforms {platforms:?}, not {arches:?}",
        layout.display()
    );
    eprintln!(
        "xtask: {} (OCI layout, tag {version}): linux/{}",
        layout.display(),
        platforms.join(", linux/")
    );
    eprintln!("xtask: containers-storage (podman, buildah): {TAG}");
    let host = dist::host_arch()?;
    if arches.contains(&host) && setup::dockerd_answers() {
        // skopeo picks this machine's platform out of the index.
        cmd::run(cmd("skopeo").args(["copy", "--quiet", &dest, &format!("docker-daemon:{TAG}")]))?;
        eprintln!("xtask: dockerd: {TAG} (linux/{host})");
    }
    Ok(())
}

/// The platforms of the layout's image index tagged `version`: each manifest
/// must name its architecture in the index and in its config.
fn check_layout(layout: &Path, version: &str) -> Result<Vec<String>> {
    let json = |path: &Path| -> Result<serde_json::Value> {
        let text = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{} is no JSON", path.display()))
    };
    let blob = |digest: &serde_json::Value| -> Result<serde_json::Value> {
        let digest = digest.as_str().context("a descriptor without a digest")?;
        let (algo, hex) = digest
            .split_once(':')
            .context("a digest without an algorithm")?;
        json(&layout.join("blobs").join(algo).join(hex))
    };
    let top = json(&layout.join("index.json"))?;
    let tagged = top["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == version)
        .with_context(|| format!("index.json has no image tagged {version}"))?;
    ensure!(
        tagged["mediaType"] == "application/vnd.oci.image.index.v1+json",
        "the image tagged {version} is a {}, not an image index",
        tagged["mediaType"]
    );
    let index = blob(&tagged["digest"])?;
    let mut platforms = Vec::new();
    for m in index["manifests"].as_array().into_iter().flatten() {
        let arch = m["platform"]["architecture"].as_str().unwrap_or_default();
        ensure!(
            m["platform"]["os"] == "linux",
            "a manifest for {}",
            m["platform"]
        );
        let config = blob(&blob(&m["digest"])?["config"]["digest"])?;
        if config["architecture"] != arch {
            bail!(
                "the linux/{arch} manifest's config says {}",
                config["architecture"]
            );
        }
        platforms.push(arch.to_owned());
    }
    Ok(platforms)
}
