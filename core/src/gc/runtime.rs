//! The language runtime of a process, as every layer names it. How a
//! process's runtime is detected is the node's business
//! (`tally_node::runtimes::detect`).
use serde::Serialize;

/// The language runtime of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Go,
    Jvm,
    Node,
    Dotnet,
    Python,
    Native,
    #[default]
    Unknown,
}

impl Runtime {
    /// True for runtimes with a tracing garbage collector.
    pub fn has_gc(self) -> bool {
        matches!(
            self,
            Runtime::Go | Runtime::Jvm | Runtime::Node | Runtime::Dotnet
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Runtime::Go => "go",
            Runtime::Jvm => "jvm",
            Runtime::Node => "node",
            Runtime::Dotnet => "dotnet",
            Runtime::Python => "python",
            Runtime::Native => "native",
            Runtime::Unknown => "unknown",
        }
    }

    /// The runtime of a group of processes: a GC'd runtime wins over native
    /// helpers (a JVM container with a shell script in it is a JVM).
    pub fn merge(a: Runtime, b: Runtime) -> Runtime {
        match (a, b) {
            (x, y) if x == y => x,
            (x, _) if x.has_gc() => x,
            (_, y) if y.has_gc() => y,
            (Runtime::Unknown, y) => y,
            (x, _) => x,
        }
    }
}
