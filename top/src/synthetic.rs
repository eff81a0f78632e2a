//! Synthetic processes shaped like a busy Kubernetes node: services in
//! containers and pods (JVMs with their GC threads, Go, Node, Python,
//! .NET, native servers), host daemons, a few odd names, some processes
//! exiting and new ones starting every window. Verdicts come from the real
//! classification (`gc::classify`). For `cargo xtask bench top`, the
//! render tests, and `agent top --synthetic N` (no root needed).
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::SystemTime,
};

use super::rows::{StackSummary, Symbol};
use tally_core::{
    gc::{self, Runtime},
    model::{
        CgroupInfo, Counters, ProcKey, ThreadGroup, Tick, Window, container, samples_to_seconds,
    },
};

/// 99 Hz, as the probes sample by default.
pub const SAMPLE_PERIOD_NS: u64 = 1_000_000_000 / 99;
/// CPUs of the synthetic node.
pub const CPUS: usize = 96;

/// A small, fast, deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// A kind of service: its command, runtime and thread names.
struct Template {
    comm: &'static str,
    runtime: Runtime,
    /// (name, threads, share of the CPU, GC thread)
    threads: &'static [(&'static str, u32, f64, bool)],
    symbols: &'static [&'static str],
}

/// The templates' symbols that are GC code by the node's classifier
/// (`tally_node::runtimes::symbols::is_gc_symbol`, checked there): the view
/// links no node code.
const SYNTHETIC_GC_SYMBOLS: [&str; 6] = [
    "G1ParScanThreadState::trim_queue_to_threshold",
    "runtime.scanobject",
    "runtime.findObject",
    "v8::internal::Scavenger::ScavengeObject",
    "v8::internal::Heap::CollectGarbage",
    "WKS::gc_heap::mark_object_simple",
];

const TEMPLATES: &[Template] = &[
    Template {
        comm: "java",
        runtime: Runtime::Jvm,
        threads: &[
            ("http-nio-8080-exec-", 40, 0.55, false),
            ("GC Thread#", 8, 0.18, true),
            ("G1 Conc#", 2, 0.05, true),
            ("C2 CompilerThre", 2, 0.12, false),
            ("VM Thread", 1, 0.03, true),
            ("java", 1, 0.07, false),
        ],
        symbols: &[
            "[unknown]",
            "G1ParScanThreadState::trim_queue_to_threshold",
            "SpinPause",
            "Unsafe_Park",
            "__memmove_avx_unaligned_erms",
        ],
    },
    Template {
        comm: "api-server",
        runtime: Runtime::Go,
        threads: &[("api-server", 24, 1.0, false)],
        symbols: &[
            "runtime.scanobject",
            "runtime.mallocgc",
            "main.(*Server).handle",
            "runtime.memmove",
            "encoding/json.(*decodeState).object",
            "runtime.findObject",
        ],
    },
    Template {
        comm: "coredns",
        runtime: Runtime::Go,
        threads: &[("coredns", 12, 1.0, false)],
        symbols: &[
            "runtime.futex",
            "github.com/miekg/dns.(*Msg).Pack",
            "runtime.mallocgc",
        ],
    },
    Template {
        comm: "node",
        runtime: Runtime::Node,
        threads: &[
            ("node", 1, 0.8, false),
            ("libuv-worker", 4, 0.12, false),
            ("V8 DefaultWorke", 4, 0.08, false),
        ],
        symbols: &[
            "v8::internal::Scavenger::ScavengeObject",
            "Builtins_JSEntry",
            "uv__io_poll",
            "v8::internal::Heap::CollectGarbage",
        ],
    },
    Template {
        comm: "python3",
        runtime: Runtime::Python,
        threads: &[("python3", 1, 1.0, false)],
        symbols: &["_PyEval_EvalFrameDefault", "PyObject_Malloc", "dict_lookup"],
    },
    Template {
        comm: "gunicorn",
        runtime: Runtime::Python,
        threads: &[("gunicorn", 3, 1.0, false)],
        symbols: &["_PyEval_EvalFrameDefault", "sock_recv"],
    },
    Template {
        comm: "dotnet",
        runtime: Runtime::Dotnet,
        threads: &[
            (".NET ThreadPool", 16, 0.7, false),
            (".NET Server GC", 4, 0.25, true),
            ("dotnet", 1, 0.05, false),
        ],
        symbols: &[
            "[unknown]",
            "WKS::gc_heap::mark_object_simple",
            "coreclr_execute_assembly",
        ],
    },
    Template {
        comm: "postgres",
        runtime: Runtime::Native,
        threads: &[("postgres", 1, 1.0, false)],
        symbols: &[
            "hash_search_with_hash_value",
            "ExecInterpExpr",
            "LWLockAcquire",
        ],
    },
    Template {
        comm: "nginx",
        runtime: Runtime::Native,
        threads: &[("nginx", 1, 1.0, false)],
        symbols: &[
            "ngx_http_process_request_line",
            "epoll_wait",
            "__memcpy_avx_unaligned",
        ],
    },
    Template {
        comm: "envoy",
        runtime: Runtime::Native,
        threads: &[("wrk:worker_", 4, 0.9, false), ("envoy", 1, 0.1, false)],
        symbols: &["Envoy::Http::Http1::ConnectionImpl::dispatch", "tc_malloc"],
    },
    Template {
        comm: "redis-server",
        runtime: Runtime::Native,
        threads: &[
            ("redis-server", 1, 0.9, false),
            ("bio_lazy_free", 1, 0.1, false),
        ],
        symbols: &["dictFind", "je_malloc", "_addReplyToBufferOrList"],
    },
];

/// Host daemons, outside containers.
const HOST: &[(&str, &str, Runtime)] = &[
    ("kubelet", "/system.slice/kubelet.service", Runtime::Go),
    (
        "containerd",
        "/system.slice/containerd.service",
        Runtime::Go,
    ),
    (
        "systemd-journal",
        "/system.slice/systemd-journald.service",
        Runtime::Native,
    ),
    ("sshd", "/system.slice/ssh.service", Runtime::Native),
    (
        "node_exporter",
        "/system.slice/node-exporter.service",
        Runtime::Go,
    ),
    (
        "bash",
        "/user.slice/user-0.slice/session-1.scope",
        Runtime::Native,
    ),
    // Names that must not break the layout.
    (
        "数据处理-worker",
        "/system.slice/odd.service",
        Runtime::Native,
    ),
    (
        "bad\u{1b}[2Jname",
        "/system.slice/odd.service",
        Runtime::Native,
    ),
    (
        "\u{FFFD}\u{FFFD}raw-bytes",
        "/system.slice/odd.service",
        Runtime::Native,
    ),
    (
        "x\u{202E}gnp.exe",
        "/system.slice/odd.service",
        Runtime::Native,
    ),
];

struct Proc {
    key: ProcKey,
    comm: String,
    template: Option<usize>,
    runtime: Runtime,
    cgroup: Arc<CgroupInfo>,
    /// Mean CPU in cores, and this process's GC share when it has a GC.
    cores: f64,
    gc_share: f64,
    /// Allocation traffic per CPU-second.
    alloc_per_cpu: f64,
    rss: u64,
    total: Counters,
    exiting: bool,
}

pub struct Synthetic {
    rng: Rng,
    procs: Vec<Proc>,
    next_pid: u32,
    /// Containers and their cgroups, reused by new processes.
    containers: Vec<(usize, Arc<CgroupInfo>)>,
}

fn hex(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(rng.below(16) as u32, 16).unwrap_or('0'))
        .collect()
}

impl Synthetic {
    pub fn new(processes: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let services = (processes / 3).max(1);
        let mut containers = Vec::with_capacity(services);
        for i in 0..services {
            let t = rng.below(TEMPLATES.len());
            let id = hex(&mut rng, 64);
            let pod = format!(
                "{}_{}_{}_{}_{}",
                hex(&mut rng, 8),
                hex(&mut rng, 4),
                hex(&mut rng, 4),
                hex(&mut rng, 4),
                hex(&mut rng, 12)
            );
            let qos = ["burstable", "besteffort"][i % 2];
            let path = format!(
                "/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{pod}.slice/cri-containerd-{id}.scope"
            );
            containers.push((
                t,
                Arc::new(CgroupInfo {
                    id: 1000 + i as u64,
                    container: container::parse(&path),
                    path,
                }),
            ));
        }
        let mut s = Self {
            rng,
            procs: Vec::with_capacity(processes),
            next_pid: 1000,
            containers,
        };
        for _ in 0..processes {
            let p = s.spawn();
            s.procs.push(p);
        }
        s
    }

    fn spawn(&mut self) -> Proc {
        let rng = &mut self.rng;
        let pid = self.next_pid;
        self.next_pid += 1 + rng.below(7) as u32;
        let busy = rng.unit();
        // Most processes are nearly idle; a few burn cores.
        let cores = if busy < 0.75 {
            rng.unit() * 0.01
        } else if busy < 0.98 {
            rng.unit() * 0.1
        } else {
            0.3 + rng.unit() * 1.5
        };
        let (comm, template, runtime, cgroup) = if rng.unit() < 0.12 {
            let (comm, path, runtime) = HOST[rng.below(HOST.len())];
            let cgroup = Arc::new(CgroupInfo {
                id: 10 + rng.below(HOST.len()) as u64,
                path: path.to_owned(),
                container: None,
            });
            (comm.to_owned(), None, runtime, cgroup)
        } else {
            let (t, cgroup) = self.containers[rng.below(self.containers.len())].clone();
            let tmpl = &TEMPLATES[t];
            (tmpl.comm.to_owned(), Some(t), tmpl.runtime, cgroup)
        };
        let gc_share = if runtime.has_gc() {
            // Mostly healthy; a tail of GC-heavy ones.
            if rng.unit() < 0.15 {
                0.12 + rng.unit() * 0.5
            } else {
                rng.unit() * 0.06
            }
        } else {
            0.0
        };
        let alloc_per_cpu = if rng.unit() < 0.1 {
            300e6 + rng.unit() * 700e6
        } else {
            rng.unit() * 50e6
        };
        Proc {
            key: ProcKey {
                tgid: pid,
                start_ticks: 10_000 + u64::from(pid),
            },
            comm,
            template,
            runtime,
            cgroup,
            cores,
            gc_share,
            alloc_per_cpu,
            rss: (8 << 20) + (self.rng.next_u64() % (2 << 30)),
            total: Counters::default(),
            exiting: false,
        }
    }

    /// One window of `seconds`: every process, some exiting, new ones
    /// replacing them.
    pub fn tick(&mut self, seconds: f64) -> Tick {
        let secs = seconds.max(1e-3);
        // Last window's exits are gone; replace them.
        for i in 0..self.procs.len() {
            if self.procs[i].exiting {
                self.procs[i] = self.spawn();
            }
        }
        let mut windows = Vec::with_capacity(self.procs.len());
        for i in 0..self.procs.len() {
            let exiting = self.rng.unit() < 0.005;
            let noise = 0.7 + 0.6 * self.rng.unit();
            let p = &mut self.procs[i];
            p.exiting = exiting;
            let cpu_seconds = p.cores * noise * secs;
            let samples = (cpu_seconds * 1e9 / SAMPLE_PERIOD_NS as f64).round() as u64;
            let gc_samples = (samples as f64 * p.gc_share).round() as u64;
            let alloc = (p.alloc_per_cpu * cpu_seconds) as u64;
            let calls = (cpu_seconds * 800.0 * noise) as u64;
            let delta = Counters {
                cpu_samples: samples,
                mmap_calls: calls / 3,
                mmap_bytes: alloc,
                munmap_calls: calls / 4,
                munmap_bytes: alloc * 9 / 10,
                brk_calls: calls / 10,
                brk_bytes: 4096 * (calls / 10),
                madvise_calls: calls / 5,
                madvise_dontneed_bytes: alloc / 3,
                minor_faults: (cpu_seconds * 20_000.0 * noise) as u64,
                major_faults: u64::from(self.rng.unit() < 0.02),
                gc_cycles: if p.runtime.has_gc() {
                    (p.gc_share * 40.0 * secs) as u64
                } else {
                    0
                },
                ..Counters::default()
            };
            p.total = p.total.add(&delta);
            p.rss = (p.rss as f64 * (0.98 + 0.04 * self.rng.unit())) as u64;
            let threads = thread_groups(p, samples);
            let (thread_gc, stack_gc) = match p.runtime {
                Runtime::Jvm | Runtime::Dotnet => (gc_samples, 0),
                Runtime::Go | Runtime::Node => (0, gc_samples),
                _ => (0, 0),
            };
            let mut w = Window {
                key: p.key,
                comm: p.comm.clone(),
                cgroup_id: Some(p.cgroup.id),
                cgroup: Some(p.cgroup.clone()),
                pod: None,
                settings: None,
                seconds,
                delta,
                total: p.total,
                cpu_seconds: samples_to_seconds(samples, SAMPLE_PERIOD_NS),
                total_cpu_seconds: samples_to_seconds(p.total.cpu_samples, SAMPLE_PERIOD_NS),
                rss_bytes: if exiting { 0 } else { p.rss },
                exited: exiting,
                runtime: p.runtime,
                gc_thread_cpu_seconds: samples_to_seconds(thread_gc, SAMPLE_PERIOD_NS),
                gc_stack_cpu_seconds: samples_to_seconds(stack_gc, SAMPLE_PERIOD_NS),
                threads,
                gc_sight: Default::default(),
                verdict: None,
                pressure: None,
            };
            w.verdict = Some(gc::classify(&w.gc_signals()));
            windows.push(w);
        }
        Tick {
            at: SystemTime::now(),
            seconds,
            windows,
            new_drops: Default::default(),
            swept_records: 0,
            sample_period_ns: SAMPLE_PERIOD_NS,
        }
    }

    /// Top symbols of the processes asked for.
    pub fn stacks(&mut self, pids: &HashSet<u32>) -> HashMap<u32, StackSummary> {
        let mut out = HashMap::new();
        for p in self.procs.iter().filter(|p| pids.contains(&p.key.tgid)) {
            let names: &[&str] = p
                .template
                .map_or(&["__libc_read", "epoll_wait", "[unknown]"], |t| {
                    TEMPLATES[t].symbols
                });
            let mut left = (p.cores * 99.0).round() as u64 + 1;
            let samples = left;
            let mut top = Vec::new();
            for name in names {
                let n = (left as f64 * (0.3 + 0.4 * self.rng.unit())).round() as u64;
                left -= n.min(left);
                top.push(Symbol {
                    name: Arc::from(*name),
                    samples: n,
                    gc: SYNTHETIC_GC_SYMBOLS.contains(name),
                });
            }
            top.sort_by_key(|s| std::cmp::Reverse(s.samples));
            out.insert(p.key.tgid, StackSummary { samples, top });
        }
        out
    }
}

fn thread_groups(p: &Proc, samples: u64) -> Vec<ThreadGroup> {
    let Some(t) = p.template else {
        return vec![ThreadGroup {
            name: p.comm.clone(),
            threads: 1,
            samples,
            cpu_seconds: samples_to_seconds(samples, SAMPLE_PERIOD_NS),
            gc: false,
        }];
    };
    let tmpl = &TEMPLATES[t];
    let mut groups: Vec<ThreadGroup> = tmpl
        .threads
        .iter()
        .map(|(name, threads, share, gc)| {
            // GC threads take the process's GC share, the others the rest.
            let gc_total: f64 = tmpl.threads.iter().filter(|t| t.3).map(|t| t.2).sum();
            let rest_total: f64 = tmpl.threads.iter().filter(|t| !t.3).map(|t| t.2).sum();
            let part = if *gc {
                p.gc_share * share / gc_total.max(1e-9)
            } else {
                let rest = if gc_total > 0.0 {
                    1.0 - p.gc_share
                } else {
                    1.0
                };
                rest * share / rest_total.max(1e-9)
            };
            let samples = (samples as f64 * part).round() as u64;
            ThreadGroup {
                name: (*name).to_owned(),
                threads: *threads,
                samples,
                cpu_seconds: samples_to_seconds(samples, SAMPLE_PERIOD_NS),
                gc: *gc,
            }
        })
        .collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.samples));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::gc::VerdictKind;

    #[test]
    fn a_node_worth_of_processes_with_every_verdict() {
        let mut s = Synthetic::new(2000, 1);
        let t = s.tick(1.0);
        assert_eq!(t.windows.len(), 2000);
        let kinds: HashSet<VerdictKind> = t
            .windows
            .iter()
            .filter_map(|w| w.verdict.as_ref().map(|v| v.kind))
            .collect();
        for k in [
            VerdictKind::GcHeavy,
            VerdictKind::AllocChurn,
            VerdictKind::Steady,
            VerdictKind::Idle,
        ] {
            assert!(kinds.contains(&k), "no {k:?} among {kinds:?}");
        }
        let containers = t
            .windows
            .iter()
            .filter(|w| w.cgroup.as_ref().is_some_and(|c| c.container.is_some()))
            .count();
        assert!(containers > 1500, "{containers} in containers");
        let t2 = s.tick(1.0);
        let pids1: HashSet<u32> = t.windows.iter().map(|w| w.key.tgid).collect();
        let pids2: HashSet<u32> = t2.windows.iter().map(|w| w.key.tgid).collect();
        let exited = t.windows.iter().filter(|w| w.exited).count();
        assert_eq!(pids1.difference(&pids2).count(), exited, "exits replaced");
    }
}
