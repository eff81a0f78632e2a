//! What this machine lets a runtime give a container: capabilities and
//! resource limits.
use std::fs;

/// Debian's podman: it runs the pods (dockerd runs the workloads).
pub const PODMAN: &str = "/usr/bin/podman";

/// Capabilities this machine can give a container: the bounding set of
/// this process (root). The sandbox the tests run in has no
/// CAP_SYS_RESOURCE, so no runtime here can grant it.
pub(super) fn bounding_set() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .expect("CapBnd in /proc/self/status")
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// The capability numbers of the names a manifest may add.
pub(super) fn capability_number(name: &str) -> Option<u32> {
    const NAMES: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// Resource limits for the pods. The kubelet sets none: a container gets
/// its runtime's. Podman as root asks runc for 1048576 open files, which
/// runc cannot set here (no CAP_SYS_RESOURCE, see [`bounding_set`]): the
/// pods get this process's open-files limit (the one dockerd and containerd
/// run with here), and at most 32768 processes, the most runc could set
/// here (measured: 32768 passes, 40000 fails).
pub(super) fn ulimits() -> [String; 2] {
    let hard = |resource| {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        assert_eq!(unsafe { libc::getrlimit(resource, &mut r) }, 0);
        r.rlim_max
    };
    let nofile = hard(libc::RLIMIT_NOFILE);
    let nproc = hard(libc::RLIMIT_NPROC).min(32768);
    [
        format!("--ulimit=nofile={nofile}:{nofile}"),
        format!("--ulimit=nproc={nproc}:{nproc}"),
    ]
}
