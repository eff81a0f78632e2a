//! The parts of the `agent` package other builds link: the fuzz targets'
//! entry points ([`fuzzing`]), shared by `fuzz/` and the corpus replay in
//! `tests/it/fuzz_corpus.rs`. The binary itself is `main.rs` and `cli/`.
pub mod fuzzing;
