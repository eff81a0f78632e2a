//! How the node sees a process's runtime and its GC. Each garbage-collected
//! runtime is one module behind [`GcRuntime`] ([`go`], [`jvm`], [`node`],
//! [`dotnet`]): its GC threads by name and its GC code by symbol. Shared by
//! them: the runtime from the executable and maps ([`runtime`]), thread
//! names ([`threads`]), C++ names ([`symbols`]). A runtime's own tables
//! and events live in its module: Go's function table and frames
//! ([`go::pclntab`], [`go::frames`]), HotSpot's USDT notes and hsperfdata
//! ([`jvm::stapsdt`], [`jvm::hsperf`]). The classification they feed is
//! `tally_core::gc`.
pub mod dotnet;
pub mod go;
pub mod jvm;
pub mod node;
pub mod runtime;
pub mod settings;
pub mod symbols;
pub mod threads;

use tally_core::gc::Runtime;

use threads::GcThreadKind;

/// Where a runtime's GC cycles and pauses come from, beside its CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcEvents {
    /// A uprobe on the runtime's GC-cycle function (Go's `gcStart`…).
    CycleUprobe,
    /// HotSpot's `gc__begin`/`gc__end` USDT probes, else its hsperfdata.
    HotspotUsdt,
    /// None the node reads.
    None,
}

/// What the node knows of one garbage-collected runtime: how a process
/// names it, where its GC shows (threads, stacks, events), which of its
/// threads are GC threads and which of its functions are GC code. Each
/// runtime is one module ([`go`], [`jvm`], [`node`], [`dotnet`]); adding a
/// runtime means adding one, and listing it in [`of`]. How the ELF file
/// itself says Go is [`runtime`]'s, after every name and library rule.
pub trait GcRuntime: Sync {
    fn runtime(&self) -> Runtime;

    /// True if the executable's file name (`exe`) or the file names of its
    /// mapped libraries (`libs`) say this runtime.
    fn named_by(&self, exe: &str, libs: &[&str]) -> bool;

    /// True if its GC runs on ordinary threads, so that only sampled
    /// stacks show it (`--stack-sampling gc-runtimes`).
    fn gc_seen_by_stacks(&self) -> bool {
        false
    }

    /// Where its GC cycles and pauses come from.
    fn gc_events(&self) -> GcEvents {
        GcEvents::None
    }

    /// The kind of GC thread `comm` (trimmed) is, if it is one. Runtimes
    /// that name no GC-only thread (Go, Node) have none.
    fn gc_thread(&self, _comm: &str) -> Option<GcThreadKind> {
        None
    }

    /// True if a frame with this symbol is the collector's code.
    fn is_gc_symbol(&self, symbol: &str) -> bool;

    /// True if a frame with this symbol is the runtime's own code, GC or
    /// not: stacks showing such frames would show GC frames too.
    fn is_runtime_symbol(&self, symbol: &str) -> bool;
}

/// The garbage-collected runtimes.
const GC_RUNTIMES: [&dyn GcRuntime; 4] = [&go::Go, &jvm::Jvm, &node::Node, &dotnet::Dotnet];

/// The module of a garbage-collected runtime; `None` for Python, native
/// code and unknown processes (whose GC, if any, Tally does not see).
pub fn of(runtime: Runtime) -> Option<&'static dyn GcRuntime> {
    GC_RUNTIMES.into_iter().find(|r| r.runtime() == runtime)
}
