//! Tally's node agent. `probes` loads the eBPF programs, `collect` turns
//! their maps and `/proc` into per-process windows, `enrich` names cgroups
//! and containers, and `top` prints them.
//! `export` publishes OTLP and Prometheus metrics, `profile` writes CPU
//! profiles (pprof, flame graphs).
//! `collector` is the cluster side (ingest, store, verdicts across nodes,
//! queries), `stream` the agent's client to it, `workloads` its CLI view.
pub mod collect;
pub mod collector;
pub mod cost;
pub mod enrich;
pub mod export;
pub mod fuzzing;
pub mod gc;
pub mod health;
pub mod model;
pub mod privileges;
pub mod probes;
pub mod profile;
pub mod report;
pub mod run;
pub mod stream;
pub mod top;
pub mod transport;
pub mod workloads;
