use which::which;

/// Makes cargo rebuild this crate when bpf-linker changes (a new linker can
/// change the emitted programs), as aya-template does.
fn main() {
    let bpf_linker =
        which("bpf-linker").expect("bpf-linker is not on PATH: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
