//! What a run of the scenario showed: its output by section, checked into
//! one row of the matrix.
use std::collections::BTreeMap;

use serde_json::Value;

use super::guest::Arch;
use crate::{
    common::{sum, windows_of},
    datapath::{Deviation, alloc_deviations, pid_of},
};

/// The syscalls with a hook each.
pub(super) const SYSCALLS: [&str; 5] = ["mmap", "munmap", "brk", "mremap", "madvise"];
/// The scenario's output by section (`=== <name>` lines).
pub(super) fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        // The serial console ends lines with \r\n.
        let line = line.trim_end_matches('\r');
        if let Some(name) = line.strip_prefix("=== ") {
            if let Some((n, body)) = current.take() {
                out.insert(n, body);
            }
            current = Some((name.to_string(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((n, body)) = current {
        out.insert(n, body);
    }
    out
}

/// One row of the matrix: what a run showed, and what was wrong with it.
pub(super) struct Row {
    pub(super) kernel: String,
    pub(super) arch: &'static str,
    pub(super) agent_args: String,
    /// `probes attached (N of 8 hooks)`, or why there was no such line.
    pub(super) hooks: String,
    /// The agent's `syscall hooks:` line, where it prints one.
    pub(super) syscall_hooks: String,
    pub(super) deviations: Vec<Deviation>,
    /// Go: the agent's GC cycles and gctrace's lines.
    pub(super) go_cycles: (f64, f64),
    pub(super) go_gc_seconds: f64,
    /// Attach type → (runs, ns), from the agent's `bpf_stats` lines.
    pub(super) bpf_stats: BTreeMap<String, (u64, u64)>,
    pub(super) seconds: f64,
    /// The syscalls whose hooks this kernel cannot load.
    pub(super) missing: Vec<String>,
    pub(super) problems: Vec<String>,
}

impl Row {
    /// `below_floor`: a kernel older than Tally's floor, where syscall hooks
    /// may be missing if the agent says why.
    pub(super) fn check(
        kernel: String,
        arch: Arch,
        agent_args: &[&str],
        below_floor: bool,
        text: &str,
        seconds: f64,
    ) -> Row {
        let s = sections(text);
        let get = |name: &str| s.get(name).map(String::as_str).unwrap_or("");
        let stderr = get("agent.err");
        let mut problems = Vec::new();
        if !s.contains_key("end") {
            problems.push("the scenario did not finish".to_string());
        }
        if get("agent.exit").trim() != "0" {
            problems.push(format!("agent exit status {:?}", get("agent.exit").trim()));
        }
        let hooks = stderr
            .lines()
            .find_map(|l| l.split("probes attached (").nth(1))
            .and_then(|rest| rest.split(')').next())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let why = stderr
                    .lines()
                    .find(|l| l.contains("ERROR") || l.contains("error"))
                    .unwrap_or("no `probes attached` line");
                format!("none: {why}")
            });
        let syscall_hooks = stderr
            .lines()
            .find_map(|l| l.split("syscall hooks: ").nth(1))
            .unwrap_or("")
            .to_string();
        // Every missing hook is a warning naming it and the kernel's reason.
        let unavailable: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("unavailable ("))
            .collect();
        let mut missing: Vec<&str> = Vec::new();
        for l in &unavailable {
            let syscall = SYSCALLS.into_iter().find(|s| {
                l.contains(&format!("sys_exit_{s} ")) || l.contains(&format!("_sys_{s} "))
            });
            let reasoned = l.contains("has no eBPF helper") || l.contains("rejected");
            match syscall {
                Some(s) if below_floor && reasoned => missing.push(s),
                _ => problems.push(l.to_string()),
            }
        }
        let want = format!("{} of 8 hooks", 8 - unavailable.len());
        if hooks != want {
            problems.push(format!("hooks: {hooks}, expected {want}"));
        }
        let lines: Vec<Value> = get("agent.jsonl")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let report = |name: &str| -> Option<Value> { serde_json::from_str(get(name).trim()).ok() };
        let mut deviations = Vec::new();
        match (report("idle.json"), report("busy.json")) {
            (Some(idle), Some(busy)) => {
                let startup = windows_of(&lines, pid_of(&idle));
                let windows = windows_of(&lines, pid_of(&busy));
                deviations = alloc_deviations(&windows, &startup, &busy, &idle);
                // What a missing hook feeds is not compared.
                deviations.retain(|d| {
                    !missing
                        .iter()
                        .any(|m| d.field.starts_with(&format!("{m}_")))
                });
                problems.extend(deviations.iter().filter(|d| !d.ok).map(|d| d.to_string()));
            }
            _ => problems.push("no workload report".to_string()),
        }
        let gctrace = get("go.err")
            .lines()
            .filter(|l| l.starts_with("gc "))
            .count() as f64;
        let go_pid: u64 = get("go.pid").trim().parse().unwrap_or(0);
        let go = windows_of(&lines, go_pid);
        let go_cycles = (sum(&go, "gc_cycles"), gctrace);
        let go_gc_seconds = sum(&go, "gc_cpu_seconds");
        if go.is_empty() || go.iter().any(|w| w["runtime"] != "go") {
            problems.push(format!("Go pid {go_pid}: no window, or not seen as Go"));
        }
        if gctrace == 0.0 || go_cycles.0 != go_cycles.1 {
            problems.push(format!(
                "Go GC cycles: agent {}, gctrace {}",
                go_cycles.0, go_cycles.1
            ));
        }
        if go_gc_seconds <= 0.0 {
            problems.push("Go GC CPU by stacks: none (stacks or symbols)".to_string());
        }
        Row {
            kernel,
            arch: arch.name(),
            agent_args: agent_args.join(" "),
            hooks,
            syscall_hooks,
            deviations,
            go_cycles,
            go_gc_seconds,
            bpf_stats: bpf_stats(stderr),
            seconds,
            missing: missing.iter().map(|m| m.to_string()).collect(),
            problems,
        }
    }

    pub(super) fn counts_cell(&self) -> String {
        if self.deviations.is_empty() {
            return "-".into();
        }
        let ok = self.deviations.iter().filter(|d| d.ok).count();
        let mmap = self.deviations.iter().find(|d| d.field == "mmap_calls");
        let faults = self.deviations.iter().find(|d| d.field == "minor_faults");
        let pair =
            |d: Option<&Deviation>| d.map_or("-".into(), |d| format!("{}/{}", d.agent, d.own));
        format!(
            "{ok} of {} within; mmap {}; minor faults {}",
            self.deviations.len(),
            pair(mmap),
            pair(faults)
        )
    }

    pub(super) fn stats_cell(&self) -> String {
        let cells: Vec<String> = self
            .bpf_stats
            .iter()
            .map(|(attach, (runs, ns))| {
                format!("{attach} {:.0}", *ns as f64 / (*runs).max(1) as f64)
            })
            .collect();
        if cells.is_empty() {
            "-".into()
        } else {
            cells.join(", ")
        }
    }

    pub(super) fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {}/{} | {:.2} | {} | {:.0} | {} |",
            self.kernel,
            self.arch,
            if self.agent_args.is_empty() {
                "default"
            } else {
                &self.agent_args
            },
            self.hooks,
            if self.syscall_hooks.is_empty() {
                "-"
            } else {
                &self.syscall_hooks
            },
            self.counts_cell(),
            self.go_cycles.0,
            self.go_cycles.1,
            self.go_gc_seconds,
            self.stats_cell(),
            self.seconds,
            if self.problems.is_empty() && !self.missing.is_empty() {
                format!(
                    "ok: below the floor; no {} hooks, as documented",
                    self.missing.join("/")
                )
            } else if self.problems.is_empty() {
                "ok".to_string()
            } else {
                self.problems.join("; ")
            },
        )
    }
}

pub(super) const TABLE_HEAD: &str = "| kernel | arch | agent args | hooks | syscall hooks | allocation counts vs the workload's own | Go GC cycles agent/gctrace | Go GC CPU s (stacks) | syscall programs' ns per run | s | result |\n|---|---|---|---|---|---|---|---|---|---|---|";

/// The syscall programs' `bpf_stats program=… attach=… run_cnt=…
/// run_time_ns=…` lines, summed per attach type.
pub(super) fn bpf_stats(stderr: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in stderr.lines() {
        let Some(rest) = line.split("bpf_stats ").nth(1) else {
            continue;
        };
        let field = |key: &str| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        };
        let (Some(program), Some(attach), Some(runs), Some(ns)) = (
            field("program"),
            field("attach"),
            field("run_cnt"),
            field("run_time_ns"),
        ) else {
            continue;
        };
        // The five syscall programs, at whichever attach type they took.
        if !(program.starts_with("sys_exit_") || program.starts_with("fexit_")) {
            continue;
        }
        let e = out.entry(attach.to_string()).or_default();
        e.0 += runs.parse::<u64>().unwrap_or(0);
        e.1 += ns.parse::<u64>().unwrap_or(0);
    }
    out
}

#[test]
pub(super) fn sections_and_bpf_stats_parse() {
    let text = "noise\r\n=== uname\r\n6.1.0\r\nx86_64\r\n=== agent.err\nbpf_stats program=fexit_mmap attach=fexit run_cnt=10 run_time_ns=500\nbpf_stats program=fexit_brk attach=fexit run_cnt=10 run_time_ns=300\nbpf_stats program=sched_process_exit attach=tracepoint run_cnt=1 run_time_ns=9\n=== end\n";
    let s = sections(text);
    assert_eq!(s["uname"], "6.1.0\nx86_64\n");
    assert_eq!(s["end"], "");
    assert_eq!(bpf_stats(&s["agent.err"])["fexit"], (20, 800));
}
