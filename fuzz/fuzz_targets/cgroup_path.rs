//! See `agent::fuzzing::cgroup_path`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agent::fuzzing::cgroup_path(data));
