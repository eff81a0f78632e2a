//! Whether this kernel loads and attaches fexit programs at all, asked with a
//! two-instruction program before aya parses the kernel's whole BTF for the
//! real ones. That parse (aya's `FExit::load` needs it) costs about 14 MiB
//! of peak RSS; a kernel that refuses every fexit (this VM's 6.18: EPERM at
//! load; Debian's 6.1 arm64: ENOTSUPP at attach) would make the agent pay it
//! for nothing. The function's BTF id comes from the agent's own streaming
//! reader (`btf::func_id`), which keeps no index.
use std::{io, os::fd::FromRawFd as _, os::fd::OwnedFd, path::Path};

use super::{btf, offsets::VMLINUX_BTF};

/// `enum bpf_cmd`, `enum bpf_prog_type`, `enum bpf_attach_type` (uapi).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_FEXIT: u32 = 25;
/// The kernel's own errno for "not supported here" (not in libc).
const ENOTSUPP: i32 = 524;

/// `Ok` if an fexit program on `function` loads and attaches; else why not,
/// in the words the agent logs.
pub fn permits(function: &str) -> Result<(), String> {
    let id = btf::func_id(Path::new(VMLINUX_BTF), function)
        .map_err(|e| format!("no kernel BTF: {e}"))?
        .ok_or_else(|| format!("the kernel's BTF has no function {function}"))?;
    let prog = load(id).map_err(|e| format!("the kernel refused the load: {}", errno_text(&e)))?;
    attach(&prog).map_err(|e| format!("the kernel refused the attach: {}", errno_text(&e)))?;
    Ok(())
}

fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(ENOTSUPP) => "ENOTSUPP (524), this kernel cannot attach fexit".to_string(),
        _ => e.to_string(),
    }
}

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a zero-filled `union bpf_attr` prefix of the given
    // size; the kernel reads only that much, and every pointer in it points
    // to memory that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success these commands return a new file descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// `r0 = 0; exit` as an fexit program on the function of BTF id `id`.
fn load(id: u32) -> io::Result<OwnedFd> {
    // mov64 r0, 0; exit
    let insns: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let license = b"GPL\0";
    // `union bpf_attr` for BPF_PROG_LOAD, up to attach_btf_obj_fd (5.10+).
    let mut attr = [0u8; 120];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_TRACING.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..53].copy_from_slice(b"probe");
    attr[68..72].copy_from_slice(&BPF_TRACE_FEXIT.to_ne_bytes());
    attr[108..112].copy_from_slice(&id.to_ne_bytes());
    bpf(BPF_PROG_LOAD, &mut attr)
}

/// Attaches it, as aya does fexit (`BPF_RAW_TRACEPOINT_OPEN`), and detaches
/// at once (the link goes with its descriptor).
fn attach(prog: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut attr = [0u8; 16];
    attr[8..12].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On this machine's kernel: a definite answer either way, naming the
    /// step; an unknown function is said so without a syscall.
    #[test]
    fn answers_for_this_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            assert!(std::env::var_os("CI").is_none(), "CI needs {VMLINUX_BTF}");
            eprintln!("SKIP: no {VMLINUX_BTF} on this machine");
            return;
        }
        let missing = permits("tally_no_such_function").unwrap_err();
        assert!(missing.contains("has no function"), "{missing}");
        let function = super::super::syscall_hooks::kernel_function("mmap");
        match permits(&function) {
            Ok(()) => {}
            Err(why) => assert!(why.starts_with("the kernel refused the "), "{why}"),
        }
    }
}
