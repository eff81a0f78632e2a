//! See `agent::fuzzing::price_overrides`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agent::fuzzing::price_overrides(data));
