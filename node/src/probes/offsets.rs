//! Offsets of the kernel fields the programs read, found in the running
//! kernel's BTF (`/sys/kernel/btf/vmlinux`, `CONFIG_DEBUG_INFO_BTF`, present
//! on EKS AL2023 and Bottlerocket kernels).
//!
//! Rust eBPF programs cannot carry CO-RE relocations yet, so userspace does
//! what libbpf would: look each field up by name, and hand the offsets to the
//! programs as read-only data before load.
use std::path::Path;

use agent_common::KernelOffsets;

use super::btf::{BtfError, BtfIndex};

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("cannot read kernel BTF at {path} (needs CONFIG_DEBUG_INFO_BTF=y): {source}")]
    Read {
        path: String,
        #[source]
        source: BtfError,
    },
    #[error("kernel BTF: struct {strukt} has no field {field}")]
    NoField {
        strukt: &'static str,
        field: &'static str,
    },
    #[error("unsupported architecture {0}: Tally reads syscall arguments on x86_64 and aarch64")]
    Arch(&'static str),
}

/// Every (struct, field) the programs read.
const FIELDS: &[(&str, &str)] = &[
    ("task_struct", "min_flt"),
    ("task_struct", "maj_flt"),
    ("task_struct", "group_leader"),
    ("task_struct", "start_boottime"),
    ("task_struct", "signal"),
    ("task_struct", "mm"),
    ("task_struct", "comm"),
    ("signal_struct", "live"),
    ("mm_struct", "brk"),
];

/// `struct pt_regs` fields holding syscall arguments 0..6 at syscall exit.
fn regs_fields() -> Result<&'static [&'static str], OffsetsError> {
    match std::env::consts::ARCH {
        // The x86_64 syscall ABI: rdi, rsi, rdx, r10, r8, r9.
        "x86_64" => Ok(&["di", "si", "dx", "r10", "r8", "r9"]),
        // arm64: x0..x5, but x0 holds the return value once the syscall
        // returns; the entry code keeps the original in orig_x0. `regs` is
        // the array x0..x30.
        "aarch64" => Ok(&["orig_x0", "regs"]),
        other => Err(OffsetsError::Arch(other)),
    }
}

/// Finds every offset the programs need.
pub fn from_vmlinux(path: &Path) -> Result<KernelOffsets, OffsetsError> {
    let regs = regs_fields()?;
    let mut wanted: Vec<&str> = FIELDS.iter().flat_map(|&(s, f)| [s, f]).collect();
    wanted.push("pt_regs");
    wanted.extend_from_slice(regs);
    let read_err = |source| OffsetsError::Read {
        path: path.display().to_string(),
        source,
    };
    let btf = BtfIndex::open(path, &wanted).map_err(read_err)?;
    let field = |strukt: &'static str, field: &'static str| -> Result<u32, OffsetsError> {
        btf.member_offset(strukt, field)
            .map_err(read_err)?
            .ok_or(OffsetsError::NoField { strukt, field })
    };
    let regs_arg = match regs {
        [a0, a1, a2, a3, a4, a5] => [
            field("pt_regs", a0)?,
            field("pt_regs", a1)?,
            field("pt_regs", a2)?,
            field("pt_regs", a3)?,
            field("pt_regs", a4)?,
            field("pt_regs", a5)?,
        ],
        [orig_x0, x] => {
            let x = field("pt_regs", x)?;
            [
                field("pt_regs", orig_x0)?,
                x + 8,
                x + 16,
                x + 24,
                x + 32,
                x + 40,
            ]
        }
        _ => unreachable!("regs_fields returns 6 or 2 names"),
    };
    Ok(KernelOffsets {
        task_min_flt: field("task_struct", "min_flt")?,
        task_maj_flt: field("task_struct", "maj_flt")?,
        task_group_leader: field("task_struct", "group_leader")?,
        task_start_boottime: field("task_struct", "start_boottime")?,
        task_signal: field("task_struct", "signal")?,
        task_mm: field("task_struct", "mm")?,
        task_comm: field("task_struct", "comm")?,
        signal_live: field("signal_struct", "live")?,
        mm_brk: field("mm_struct", "brk")?,
        regs_arg,
        ready: 1,
    })
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
        // mm_struct keeps its fields in an anonymous struct since Linux 6.2:
        // brk is found through it, and sits after start_brk.
        assert!(off.mm_brk >= 8);
        if std::env::consts::ARCH == "x86_64" {
            // struct pt_regs on x86_64: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di ...
            assert_eq!(off.regs_arg, [14 * 8, 13 * 8, 12 * 8, 7 * 8, 9 * 8, 8 * 8]);
        }
    }
}
