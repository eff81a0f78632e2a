//! Names for what the kernel reports: cgroup ids to paths and containers.
pub mod cgroup;
pub mod container;
