//! Tally's eBPF programs. One file a hook under `probes/`; the maps they share
//! are in `maps.rs`, and reads of kernel structures in `kernel.rs`.
//!
//! Everything is aggregated in maps; only exec and exit travel through the
//! ring buffer, since an aggregate cannot say "this process is gone".
#![no_std]
#![no_main]
// atomic_xadd: see kernel::add.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod kernel;
mod maps;
mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL-compatible: bpf_probe_read_kernel and bpf_task_pt_regs are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
