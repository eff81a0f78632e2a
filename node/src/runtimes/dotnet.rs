//! .NET (CoreCLR): GC threads by name, GC code by C++ name.
//!
//! **.NET**: server GC runs on ".NET Server GC" threads and background GC
//! on ".NET BGC" threads (the names .NET 6+ gives them, and that
//! profilers such as Datadog's match). Workstation non-concurrent GC runs on
//! the allocating thread and is not seen here.
//!
//!
//! **.NET**: the collector (gc.cpp, in libcoreclr.so or libclrgc.so) is
//! compiled twice, into namespaces `WKS::` (workstation) and `SVR::`
//! (server); everything there is GC except its allocation entry points.
//! libcoreclr ships without its internal symbols, so this only matters with
//! symbols installed; not verified on a .NET process (none on this machine).
use super::{GcRuntime, symbols::cxx_components, threads::GcThreadKind};
use tally_core::gc::Runtime;

/// CoreCLR's collector (workstation and server).
pub struct Dotnet;

impl GcRuntime for Dotnet {
    fn runtime(&self) -> Runtime {
        Runtime::Dotnet
    }

    // NativeAOT binaries have no libcoreclr and come out as native.
    fn named_by(&self, _exe: &str, libs: &[&str]) -> bool {
        libs.contains(&"libcoreclr.so")
    }

    fn gc_thread(&self, comm: &str) -> Option<GcThreadKind> {
        dotnet(comm)
    }

    fn is_gc_symbol(&self, symbol: &str) -> bool {
        is_coreclr_gc(symbol)
    }

    fn is_runtime_symbol(&self, symbol: &str) -> bool {
        symbol.contains("WKS::") || symbol.contains("SVR::")
    }
}

fn dotnet(comm: &str) -> Option<GcThreadKind> {
    (comm.starts_with(".NET Server GC") || comm.starts_with(".NET BGC"))
        .then_some(GcThreadKind::Worker)
}

fn is_coreclr_gc(symbol: &str) -> bool {
    let components = cxx_components(symbol);
    let (Some(ns), Some(method)) = (components.first(), components.last()) else {
        return false;
    };
    (ns.name == "WKS" || ns.name == "SVR")
        && components.len() >= 2
        && !method.name.to_ascii_lowercase().contains("alloc")
}
