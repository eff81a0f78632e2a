//! A cgroup as reports carry it.
use serde::Serialize;

use super::container::ContainerInfo;

/// A cgroup, and the container it belongs to where its path names one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupInfo {
    pub id: u64,
    /// Path from the root of the cgroup2 hierarchy, e.g. `/kubepods.slice/…`.
    pub path: String,
    pub container: Option<ContainerInfo>,
}
