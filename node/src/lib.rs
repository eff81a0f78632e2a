//! Tally's node side. `probes` loads the eBPF programs, `collect` (the
//! [`collect::Sampler`]) turns their maps and `/proc` into per-process
//! windows, `runtimes` knows each language runtime and its GC, `enrich`
//! names cgroups, containers, pods and the node, `stream` sends reports to
//! the collector, `profile` writes local CPU profiles, and `run` is
//! `agent run`'s loop. Metrics export is `tally_export`'s; the model and the
//! classification are `tally_core`'s.
pub mod collect;
pub mod enrich;
pub mod health;
pub mod privileges;
pub mod probes;
pub mod profile;
pub mod run;
pub mod runtimes;
pub mod stream;
#[cfg(test)]
mod test_support;
