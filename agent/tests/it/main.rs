//! The integration tests of the agent, as one test binary: one module per
//! area, and the helpers they share. The real agent binary, eBPF programs
//! loaded into this kernel, real workloads, containers and daemons; most
//! areas need root (see `common::require_root`).
//!
//! Tests of different areas run at the same time in this binary. Every test
//! that loads programs, starts the agent, the collector, a container or
//! another daemon, measures counts or timing, or uses a shared file or port
//! holds `common::serial()` for its whole run; only pure ones (parsing,
//! nothing started) run beside them.
//!
//! `cargo test --release -p agent --test it -- datapath::` runs one area; the
//! data the tests build and run is in `tests/workloads/` and `tests/fixtures/`.

// What the tests share.
mod common;
mod exporting;
mod support;

// One module per area.
mod cluster;
mod collector;
mod containers;
mod cost;
mod datapath;
mod deploy;
mod faults;
mod fuzz_corpus;
mod go_builds;
mod hostile;
mod imds;
mod jvm_gc;
mod kernels;
mod kube;
mod otlp;
mod otlp_profiles;
mod pods;
mod pressure;
mod profiles;
mod prometheus;
mod recommendations;
mod replicas;
mod run_uprobes;
mod semconv_metrics;
mod settings;
mod syscall_hooks;
mod tiers;
mod token_review;
mod top_tui;
mod verdicts;
