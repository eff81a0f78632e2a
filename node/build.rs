//! Builds `agent-ebpf` for the BPF target with the nightly toolchain and
//! `-Z build-std=core` (aya-build), so `include_bytes!` can embed it.
use std::path::PathBuf;

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.join("../agent-ebpf");
    let root = root.to_str().expect("utf-8 path");
    aya_build::build_ebpf(
        [Package {
            name: "agent-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
}
