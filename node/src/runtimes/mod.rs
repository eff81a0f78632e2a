//! How the node sees a process's runtime and its GC: the runtime from its
//! executable and maps ([`runtime`]), GC threads by name ([`threads`]), GC
//! code by symbol ([`symbols`], with Go's own function table, [`gopclntab`]),
//! and the runtimes' own GC events (USDT notes, [`stapsdt`]; HotSpot's
//! hsperfdata, [`hsperf`]). The classification they feed is
//! `tally_core::gc`.
pub mod gopclntab;
pub mod hsperf;
pub mod runtime;
pub mod stapsdt;
pub mod symbols;
pub mod threads;
