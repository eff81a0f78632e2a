//! Offsets of the kernel fields the programs read, found in the running
//! kernel's BTF (`/sys/kernel/btf/vmlinux`, `CONFIG_DEBUG_INFO_BTF`, present
//! on EKS AL2023 and Bottlerocket kernels).
//!
//! Rust eBPF programs cannot carry CO-RE relocations yet, so userspace does
//! what libbpf would: look each field up by name, and hand the offsets to the
//! programs as read-only data before load.
use std::path::Path;

use agent_common::KernelOffsets;
use btf_rs::{Btf, BtfType as _, Type};

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("cannot read kernel BTF at {path} (needs CONFIG_DEBUG_INFO_BTF=y, Linux 5.4+): {source}")]
    Read {
        path: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no field {field}")]
    NoField { strukt: String, field: String },
    #[error("kernel BTF: {0}")]
    Btf(#[from] btf_rs::Error),
    #[error("unsupported architecture {0}: Tally reads syscall arguments on x86_64 and aarch64")]
    Arch(&'static str),
}

/// Finds every offset the programs need.
pub fn from_vmlinux(path: &Path) -> Result<KernelOffsets, OffsetsError> {
    let btf = Btf::from_file(path).map_err(|source| OffsetsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let task = |field: &str| field_offset(&btf, "task_struct", field);
    Ok(KernelOffsets {
        task_min_flt: task("min_flt")?,
        task_maj_flt: task("maj_flt")?,
        task_group_leader: task("group_leader")?,
        task_start_boottime: task("start_boottime")?,
        task_signal: task("signal")?,
        task_mm: task("mm")?,
        task_comm: task("comm")?,
        signal_live: field_offset(&btf, "signal_struct", "live")?,
        mm_brk: field_offset(&btf, "mm_struct", "brk")?,
        regs_arg: syscall_arg_offsets(&btf)?,
        ready: 1,
    })
}

/// Where each syscall argument sits in `struct pt_regs` at syscall exit.
fn syscall_arg_offsets(btf: &Btf) -> Result<[u32; 6], OffsetsError> {
    let regs = |field: &str| field_offset(btf, "pt_regs", field);
    match std::env::consts::ARCH {
        // The x86_64 syscall ABI: rdi, rsi, rdx, r10, r8, r9.
        "x86_64" => Ok([
            regs("di")?,
            regs("si")?,
            regs("dx")?,
            regs("r10")?,
            regs("r8")?,
            regs("r9")?,
        ]),
        // arm64: x0..x5, but x0 holds the return value once the syscall
        // returns; the entry code keeps the original in orig_x0.
        "aarch64" => {
            let x = regs("regs")?;
            Ok([regs("orig_x0")?, x + 8, x + 16, x + 24, x + 32, x + 40])
        }
        other => Err(OffsetsError::Arch(other)),
    }
}

/// Byte offset of `field` in `struct strukt`, looking through anonymous
/// structs and unions (`mm_struct` keeps everything in one since Linux 6.2).
pub fn field_offset(btf: &Btf, strukt: &str, field: &str) -> Result<u32, OffsetsError> {
    let def = btf
        .resolve_types_by_name(strukt)
        .map_err(|_| OffsetsError::NoStruct(strukt.into()))?
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or_else(|| OffsetsError::NoStruct(strukt.into()))?;
    find_member(btf, &def, field)?
        .map(|bits| bits / 8)
        .ok_or_else(|| OffsetsError::NoField {
            strukt: strukt.into(),
            field: field.into(),
        })
}

/// Bit offset of `field` in `def`, searching anonymous members depth-first.
fn find_member(btf: &Btf, def: &btf_rs::Struct, field: &str) -> Result<Option<u32>, OffsetsError> {
    for member in &def.members {
        let name = btf.resolve_name(member)?;
        if name == field {
            return Ok(Some(member.bit_offset()));
        }
        if name.is_empty()
            && let Type::Struct(inner) | Type::Union(inner) = btf.resolve_chained_type(member)?
            && let Some(bits) = find_member(btf, &inner, field)?
        {
            return Ok(Some(member.bit_offset() + bits));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads this machine's BTF: the offsets must be plausible and distinct.
    #[test]
    fn finds_offsets_in_this_kernel() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            assert!(std::env::var_os("CI").is_none(), "CI needs {VMLINUX_BTF}");
            eprintln!("SKIP: no {VMLINUX_BTF} on this machine");
            return;
        }
        let off = from_vmlinux(path).unwrap();
        assert_eq!(off.ready, 1);
        assert_ne!(off.task_min_flt, off.task_maj_flt);
        assert!(off.task_comm > 0 && off.task_mm > 0 && off.mm_brk > 0);
        if std::env::consts::ARCH == "x86_64" {
            // struct pt_regs on x86_64: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di ...
            assert_eq!(off.regs_arg, [14 * 8, 13 * 8, 12 * 8, 7 * 8, 9 * 8, 8 * 8]);
        }
    }
}
