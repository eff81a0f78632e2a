//! Checks, before touching the kernel, that the agent may load its programs,
//! so that a missing capability is one clear line instead of an EPERM from
//! deep inside a loader.
pub mod confine;
pub mod uprobe_opener;

use std::fmt;

/// Linux capability numbers (`include/uapi/linux/capability.h`).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What is missing, and how to run the agent instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPrivileges {
    pub missing: Vec<&'static str>,
}

impl fmt::Display for MissingPrivileges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "missing {}: run as root (sudo agent …), or grant them to the binary \
             (sudo setcap cap_bpf,cap_perfmon,cap_dac_read_search,cap_sys_resource+ep $(command -v agent))",
            self.missing.join(" and ")
        )
    }
}

/// Parses the `CapEff:` line of `/proc/self/status`.
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// CAP_BPF and CAP_PERFMON (Linux 5.8+), or CAP_SYS_ADMIN which covers both.
pub fn check(cap_eff: u64) -> Result<(), MissingPrivileges> {
    let has = |cap: u32| cap_eff & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    let missing: Vec<&'static str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingPrivileges { missing })
    }
}

/// Checks this process.
pub fn check_self() -> Result<(), MissingPrivileges> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    check(effective_caps(&status).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_capabilities() {
        let root = "Name:\tagent\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(check(effective_caps(root).unwrap()), Ok(()));
        assert_eq!(check(1 << CAP_BPF | 1 << CAP_PERFMON), Ok(()));
        assert_eq!(check(1 << CAP_SYS_ADMIN), Ok(()));
    }

    #[test]
    fn names_what_is_missing() {
        let err = check(1 << CAP_BPF).unwrap_err();
        assert_eq!(err.missing, vec!["CAP_PERFMON"]);
        let err = check(effective_caps("CapEff:\t0000000000000000\n").unwrap()).unwrap_err();
        assert_eq!(err.missing, vec!["CAP_BPF", "CAP_PERFMON"]);
        assert!(
            err.to_string()
                .starts_with("missing CAP_BPF and CAP_PERFMON: run as root")
        );
    }

    #[test]
    fn garbage_status_has_no_caps() {
        assert_eq!(effective_caps("CapEff:\tzz\n"), None);
        assert_eq!(effective_caps(""), None);
    }
}
