//! Tally's node agent. `probes` loads the eBPF programs, `collect` turns
//! their maps and `/proc` into per-process windows, `enrich` names cgroups
//! and containers, and `top` prints them.
pub mod collect;
pub mod enrich;
pub mod gc;
pub mod model;
pub mod privileges;
pub mod probes;
pub mod top;
