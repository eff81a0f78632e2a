//! After the programs are loaded the agent gives up what it no longer
//! needs, for the rest of its life: it parses what other processes, the
//! API server, IMDS and the collector send it, and a bug there must not
//! hold root's full powers.
//!
//! - Capabilities: every one is dropped from the effective, permitted,
//!   inheritable and ambient sets except [`KEPT`] (each one's reason is
//!   beside it), and from the bounding set where CAP_SETPCAP allows it;
//!   `no_new_privs` is set, so nothing can gain them back.
//! - Executing programs: a seccomp filter makes `execve` and `execveat`
//!   fail with EPERM in every thread (`SECCOMP_FILTER_FLAG_TSYNC`): the
//!   agent reads the binaries of profiled processes (symbols, USDT notes)
//!   and never runs anything, and now cannot.
//!
//! - Uprobes: kernels with CVE-2025-38466 fixed (6.16, and 5.15, 6.1, 6.6,
//!   6.12 stable since July 2025) want CAP_SYS_ADMIN to open a uprobe perf
//!   event, which the agent does not keep: a helper process forked before
//!   confining keeps it for that one system call ([`super::uprobe_opener`]).
//!
//! Capabilities are per thread: this runs before the agent starts its
//! other threads, and [`confine`] checks every thread of the process
//! afterwards.
use std::fmt::Write as _;

/// Linux capability numbers (`include/uapi/linux/capability.h`).
pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;
pub const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// What the agent keeps after loading, and why.
pub const KEPT: &[(u32, &str, &str)] = &[
    (
        CAP_BPF,
        "CAP_BPF",
        "read and update its maps on kernels before 6.5, attach uprobes to processes that start later",
    ),
    (
        CAP_PERFMON,
        "CAP_PERFMON",
        "open uprobe perf events on GC runtimes that start later, where the kernel \
         still takes CAP_PERFMON for them (before 6.16 and the July 2025 stable \
         backports); newer kernels want CAP_SYS_ADMIN, which only the uprobe \
         helper keeps (uprobe_opener)",
    ),
    (
        CAP_SYS_PTRACE,
        "CAP_SYS_PTRACE",
        "read other users' /proc/<pid>/{maps,exe,root} for runtimes, symbols and hsperfdata",
    ),
    (
        CAP_DAC_READ_SEARCH,
        "CAP_DAC_READ_SEARCH",
        "read the JVM's 0600 hsperfdata files and binaries of other users",
    ),
    (
        CAP_CHECKPOINT_RESTORE,
        "CAP_CHECKPOINT_RESTORE",
        "open /proc/<pid>/map_files to symbolize stacks of deleted or namespaced binaries",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("cannot drop {name} from the bounding set: {source}")]
    Bounding {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot set the capabilities: {0}")]
    Capset(std::io::Error),
    #[error("cannot install the seccomp filter: {0}")]
    Seccomp(std::io::Error),
    #[error("threads still hold dropped capabilities: {0}")]
    ThreadsKeptCapabilities(String),
}

/// What [`confine`] left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confined {
    /// Effective (= permitted) capability mask afterwards.
    pub kept: u64,
}

/// Drops every capability except [`KEPT`] (plus CAP_NET_BIND_SERVICE when
/// `bind_low_port`) and forbids exec. Run it once the probes are loaded and
/// before other threads start.
pub fn confine(bind_low_port: bool) -> Result<Confined, ConfineError> {
    let mut keep: u64 = KEPT.iter().map(|&(cap, _, _)| 1u64 << cap).sum();
    if bind_low_port {
        keep |= 1 << CAP_NET_BIND_SERVICE;
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(ConfineError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    let last = last_cap();
    // The bounding set first: dropping from it needs CAP_SETPCAP, which is
    // about to go. A pod that drops ALL and adds only what the agent needs
    // (deploy/agent-daemonset.yaml) has no CAP_SETPCAP: there the bounding
    // set stays as the runtime gave it, and that is enough, since it only
    // limits what an execve gains, and no_new_privs (above) and the seccomp
    // filter (below, no execve at all) already rule that out.
    let may_drop_bounding = capget().map_err(ConfineError::Capset)? & (1 << CAP_SETPCAP) != 0;
    for cap in (0..=last).filter(|_| may_drop_bounding) {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            // EINVAL: this kernel does not know the capability.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(ConfineError::Bounding {
                    name: format!("capability {cap}"),
                    source: err,
                });
            }
        }
    }
    // SAFETY: prctl with integer arguments; failure (kernels without
    // ambient capabilities) leaves nothing to clear.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    let current = capget().map_err(ConfineError::Capset)?;
    let kept = current & keep;
    capset(kept, kept, 0).map_err(ConfineError::Capset)?;
    forbid_exec().map_err(ConfineError::Seccomp)?;
    check_threads(kept)?;
    Ok(Confined { kept })
}

/// The highest capability this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// This thread's permitted set.
pub(super) fn capget() -> std::io::Result<u64> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u64::from(data[0].permitted) | u64::from(data[1].permitted) << 32)
}

pub(super) fn capset(effective: u64, permitted: u64, inheritable: u64) -> std::io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(effective);
    let (p0, p1) = split(permitted);
    let (i0, i1) = split(inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: version 3 takes a header and two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `AUDIT_ARCH_*` of the architecture the agent is built for.
#[cfg(target_arch = "x86_64")]
pub(super) const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
pub(super) const AUDIT_ARCH: u32 = 0xC000_00B7;

/// x32 system calls on x86_64 have this bit set in their number.
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Installs a seccomp filter on every thread: execve and execveat fail with
/// EPERM; system calls of another ABI (32-bit, x32), which the agent never
/// makes and which would dodge the numbers checked, fail too.
fn forbid_exec() -> std::io::Result<()> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    // struct seccomp_data: int nr; __u32 arch; …
    let (nr_offset, arch_offset) = (0, 4);
    let deny = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let filter = [
        stmt(LD_W_ABS, arch_offset),
        // Another ABI: deny (jump to the last instruction).
        jump(JEQ_K, AUDIT_ARCH, 0, 5),
        stmt(LD_W_ABS, nr_offset),
        jump(JGE_K, X32_SYSCALL_BIT, 3, 0),
        jump(JEQ_K, libc::SYS_execve as u32, 2, 0),
        jump(JEQ_K, libc::SYS_execveat as u32, 1, 0),
        stmt(RET_K, libc::SECCOMP_RET_ALLOW),
        stmt(RET_K, deny),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: the program outlives the call, which copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &raw const prog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Every thread's effective and permitted sets must be `kept` or less.
fn check_threads(kept: u64) -> Result<(), ConfineError> {
    let mut offenders = String::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Ok(());
    };
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for field in ["CapEff:", "CapPrm:"] {
            let mask = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                .unwrap_or(0);
            if mask & !kept != 0 {
                let _ = write!(
                    offenders,
                    "{}thread {} {field} {mask:x}",
                    if offenders.is_empty() { "" } else { ", " },
                    task.file_name().to_string_lossy()
                );
            }
        }
    }
    if offenders.is_empty() {
        Ok(())
    } else {
        Err(ConfineError::ThreadsKeptCapabilities(offenders))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_capabilities_are_few_and_named() {
        let mask: u64 = KEPT.iter().map(|&(c, _, _)| 1u64 << c).sum();
        assert_eq!(mask.count_ones() as usize, KEPT.len());
        // Never the broad ones.
        for broad in [21u32, 12, 1, 16, 7, 6] {
            // SYS_ADMIN, NET_ADMIN, DAC_OVERRIDE, SYS_MODULE, SETUID, SETGID
            assert_eq!(mask & (1 << broad), 0, "capability {broad}");
        }
    }
}
