//! Who is reporting.

/// What a node's name, instance type or zone reads when it is not known.
pub const UNKNOWN: &str = "unknown";

/// Who is reporting. The streamer fills in the agent instance and start.
#[derive(Debug, Clone, Default)]
pub struct NodeIdentity {
    pub node_name: String,
    pub instance_type: String,
    pub zone: String,
    pub region: String,
    pub lifecycle: String,
    pub cpus: u32,
}
