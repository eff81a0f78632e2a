//! See `agent::fuzzing::proc_stat`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agent::fuzzing::proc_stat(data));
