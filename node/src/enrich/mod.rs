//! Names for what the kernel reports: cgroup ids to paths and containers,
//! containers to pods (`kube`), and the node's own identity (`node`).
pub mod cgroup;
pub mod kube;
pub mod node;
