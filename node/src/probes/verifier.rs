//! What a verifier rejection means, in one line, where it is a helper the
//! kernel does not have: the verifier's own log is hundreds of lines of
//! instructions ending in `invalid func unknown#158`, which names neither
//! the helper nor the kernel that has it.

/// Helpers the programs call that not every kernel has: (id in
/// `enum bpf_func_id`, name, first Linux release with it).
const HELPERS: &[(u32, &str, &str)] = &[
    (80, "bpf_get_current_cgroup_id", "4.18"),
    (113, "bpf_probe_read_kernel", "5.5"),
    (125, "bpf_ktime_get_boot_ns", "5.8"),
    (130, "bpf_ringbuf_output", "5.8"),
    (131, "bpf_ringbuf_reserve", "5.8"),
    (158, "bpf_get_current_task_btf", "5.11"),
    (175, "bpf_task_pt_regs", "5.15"),
];

/// One line for a verifier log that rejected a call to a helper this kernel
/// lacks; `None` for any other rejection.
pub fn explain(log: &str) -> Option<String> {
    let id: u32 = log
        .split("invalid func unknown#")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some(match HELPERS.iter().find(|(n, ..)| *n == id) {
        Some((_, name, since)) => format!(
            "this kernel has no eBPF helper {name} (#{id}, Linux {since}+); Tally needs Linux 5.15"
        ),
        None => format!("this kernel has no eBPF helper #{id}; Tally needs Linux 5.15"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_helper() {
        // The end of Debian 5.10's log for sys_exit_mmap.
        let log = "arg#0 type is not a struct\nUnrecognized arg#0 type PTR\n19: (85) call unknown#158\ninvalid func unknown#158\nprocessed 20 insns";
        assert_eq!(
            explain(log).unwrap(),
            "this kernel has no eBPF helper bpf_get_current_task_btf (#158, Linux 5.11+); Tally needs Linux 5.15"
        );
        assert!(
            explain("invalid func unknown#9999")
                .unwrap()
                .contains("#9999")
        );
        assert_eq!(explain("R1 invalid mem access 'scalar'"), None);
    }
}
