//! GC threads by name (`/proc/<pid>/task/<tid>/comm`).
//!
//! The kernel keeps 15 bytes of a thread's name (`TASK_COMM_LEN` 16 with
//! the NUL), so "Shenandoah GC Threads#0" arrives as "Shenandoah GC T" and
//! "ZWorkerYoung#12" just fits. The rules match prefixes that survive the
//! cut.
//!
//!
//! Each runtime names its own GC threads ([`super::jvm`], [`super::dotnet`]);
//! Node and Go have none (their modules say why).
use tally_core::gc::Runtime;

/// What a GC thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GcThreadKind {
    /// Does the collection work: marking, copying, compacting, refining.
    Worker,
    /// Drives the cycles and keeps the books: directors, drivers, control
    /// and service threads, statistics, uncommitting memory.
    Control,
    /// HotSpot's VM Thread, where stop-the-world operations run; see the
    /// module doc for why it counts.
    VmThread,
}

/// True if a thread with this `comm` runs the garbage collector of `runtime`.
pub fn is_gc_thread(runtime: Runtime, comm: &str) -> bool {
    gc_thread_kind(runtime, comm).is_some()
}

/// The kind of GC thread `comm` is in `runtime`, or `None` if it is not
/// one.
pub fn gc_thread_kind(runtime: Runtime, comm: &str) -> Option<GcThreadKind> {
    // /proc's comm ends with a newline; a raw comm may carry NULs.
    let comm = comm.trim_end_matches(['\n', '\0']);
    super::of(runtime).and_then(|r| r.gc_thread(comm))
}

/// `name#N`, the HotSpot worker pattern, with the number possibly cut by the
/// 15-byte limit, even to nothing after the `#`.
pub(super) fn numbered(comm: &str, name: &str) -> bool {
    comm.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('#'))
        .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::jvm as testjvm;

    /// `cat /proc/<pid>/task/*/comm | sort -u` of JVMs on the development
    /// VM (2 CPUs; more workers with -XX:ParallelGCThreads=12
    /// -XX:ConcGCThreads=11 -XX:-UseDynamicNumberOfGCThreads), GC threads
    /// first, then the others.
    const JDK17_G1: (&[&str], &[&str]) = (
        &[
            "G1 Conc#0",
            "G1 Conc#10",
            "G1 Main Marker",
            "G1 Refine#0",
            "G1 Refine#10",
            "G1 Service",
            "GC Thread#0",
            "GC Thread#11",
            "VM Thread",
        ],
        &[
            "C1 CompilerThre",
            "C2 CompilerThre",
            "Common-Cleaner",
            "Finalizer",
            "Monitor Deflati",
            "Notification Th",
            "Reference Handl",
            "Service Thread",
            "Signal Dispatch",
            "Sweeper thread",
            "VM Periodic Tas",
            "java",
        ],
    );
    const JDK17_ZGC: (&[&str], &[&str]) = (
        &[
            "VM Thread",
            "ZDirector",
            "ZDriver",
            "ZStat",
            "ZUncommitter",
            "ZUnmapper",
            "ZWorker#0",
            "ZWorker#11",
        ],
        &[
            "RuntimeWorker#0",
            "RuntimeWorker#1",
            "C2 CompilerThre",
            "java",
        ],
    );
    const JDK17_SHENANDOAH: (&[&str], &[&str]) = (
        &["Shenandoah Cont", "Shenandoah GC T", "VM Thread"],
        &["Safepoint Clean", "Sweeper thread", "java"],
    );
    const JDK25_ZGC: (&[&str], &[&str]) = (
        &[
            "VM Thread",
            "ZDirector",
            "ZDriverMajor",
            "ZDriverMinor",
            "ZStat",
            "ZUncommitter#0",
            "ZWorkerOld#0",
            "ZWorkerOld#1",
            "ZWorkerYoung#0",
            "ZWorkerYoung#8",
        ],
        &[
            "RuntimeWorker#0",
            "RuntimeWorker#1",
            "C1 CompilerThre",
            "Common-Cleaner",
            "java",
        ],
    );
    const JDK25_SHENANDOAH_GENERATIONAL: (&[&str], &[&str]) = (
        &[
            "Shenandoah Cont",
            "Shenandoah GC T",
            "Shenandoah Regu",
            "VM Thread",
        ],
        &["Safepoint Clean", "java"],
    );
    const JDK_PARALLEL: (&[&str], &[&str]) =
        (&["GC Thread#0", "GC Thread#9", "VM Thread"], &["java"]);
    const JDK_SERIAL: (&[&str], &[&str]) = (&["VM Thread"], &["Service Thread", "java"]);

    #[test]
    fn observed_hotspot_names() {
        for (gc, other) in [
            JDK17_G1,
            JDK17_ZGC,
            JDK17_SHENANDOAH,
            JDK25_ZGC,
            JDK25_SHENANDOAH_GENERATIONAL,
            JDK_PARALLEL,
            JDK_SERIAL,
        ] {
            for comm in gc {
                assert!(is_gc_thread(Runtime::Jvm, comm), "{comm} is GC");
                assert!(comm.len() <= 15, "{comm}: the kernel keeps 15 bytes");
            }
            for comm in other {
                assert!(!is_gc_thread(Runtime::Jvm, comm), "{comm} is not GC");
            }
        }
    }

    /// The kernel's cut of a name set with pthread_setname_np.
    fn comm(name: &str) -> &str {
        &name[..name.len().min(15)]
    }

    #[test]
    fn full_names_truncated_like_the_kernel() {
        // Full names from `jcmd <pid> Thread.print`.
        for name in [
            "Shenandoah GC Threads#0",
            "Shenandoah GC Threads#12",
            "Shenandoah Control Thread",
            "Shenandoah Regulator Thread",
            "ZWorkerYoung#10",
            "GC Thread#123",
            "G1 Refine#100",
        ] {
            assert!(
                is_gc_thread(Runtime::Jvm, comm(name)),
                "{name} as {:?}",
                comm(name)
            );
        }
        for name in [
            "Safepoint Cleanup Thread#0",
            "RuntimeWorker#12",
            "Monitor Deflation Thread",
        ] {
            assert!(!is_gc_thread(Runtime::Jvm, comm(name)), "{name}");
        }
        assert_eq!(comm("Shenandoah GC Threads#0"), "Shenandoah GC T");
        assert_eq!(
            gc_thread_kind(Runtime::Jvm, "Shenandoah GC T"),
            Some(GcThreadKind::Worker)
        );
        assert_eq!(
            gc_thread_kind(Runtime::Jvm, "Shenandoah Cont"),
            Some(GcThreadKind::Control)
        );
    }

    #[test]
    fn kinds() {
        use GcThreadKind::*;
        for (comm, kind) in [
            ("GC Thread#0", Worker),
            ("G1 Conc#3", Worker),
            ("G1 Refine#0", Worker),
            ("G1 Main Marker", Control),
            ("G1 Service", Control),
            ("ZWorkerYoung#0", Worker),
            ("ZDirector", Control),
            ("ZUncommitter#0", Control),
            ("XWorker#2", Worker),
            ("XDriver", Control),
            ("VM Thread", VmThread),
        ] {
            assert_eq!(gc_thread_kind(Runtime::Jvm, comm), Some(kind), "{comm}");
        }
    }

    #[test]
    fn near_misses_are_not_gc() {
        for comm in [
            "GC Thread", // no number: not a name HotSpot gives
            "GC Thread#x",
            "GC Threads",
            "ZWorkerish",
            "Zookeeper",
            "ZStats",
            "XMLParser",
            "VM Threads",
            "vm thread",
            "G1",
            "main",
            "",
        ] {
            assert!(!is_gc_thread(Runtime::Jvm, comm), "{comm:?}");
        }
        // Number cut to nothing by the limit is still a worker.
        assert!(is_gc_thread(Runtime::Jvm, "ZWorkerYoung#"));
        // /proc's trailing newline.
        assert!(is_gc_thread(Runtime::Jvm, "GC Thread#0\n"));
    }

    #[test]
    fn runtime_matters() {
        // A Go or native program may name a thread like HotSpot's.
        for runtime in [
            Runtime::Go,
            Runtime::Native,
            Runtime::Python,
            Runtime::Unknown,
            Runtime::Node,
        ] {
            assert!(!is_gc_thread(runtime, "GC Thread#0"));
            assert!(!is_gc_thread(runtime, "VM Thread"));
        }
        assert!(!is_gc_thread(Runtime::Jvm, ".NET Server GC"));
    }

    #[test]
    fn dotnet_names() {
        for comm in [".NET Server GC", ".NET BGC"] {
            assert!(is_gc_thread(Runtime::Dotnet, comm), "{comm}");
        }
        for comm in [
            ".NET Finalizer",
            ".NET Tiered Com",
            ".NET TP Worker",
            ".NET SigHandler",
            "dotnet",
        ] {
            assert!(!is_gc_thread(Runtime::Dotnet, comm), "{comm}");
        }
    }

    #[test]
    fn node_threads_are_never_gc() {
        // node 20.20.2: all seven threads (main, four V8 platform workers,
        // the inspector's and libuv's) are "node".
        for comm in ["node", "node", "node", "node", "node", "node", "node"] {
            assert!(!is_gc_thread(Runtime::Node, comm));
        }
    }

    fn comms(pid: u32) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|c| c.trim_end().to_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn live_jvms() {
        for (major, flag, must) in [
            (
                17,
                "-XX:+UseG1GC",
                &["GC Thread#0", "G1 Conc#0", "G1 Service", "VM Thread"][..],
            ),
            (
                25,
                "-XX:+UseZGC",
                &["ZWorkerYoung#0", "ZDirector", "VM Thread"][..],
            ),
        ] {
            let Some(jvm) = testjvm::start(major, &[flag], 300) else {
                continue;
            };
            let all = comms(jvm.child.id());
            let gc: Vec<&String> = all
                .iter()
                .filter(|c| is_gc_thread(Runtime::Jvm, c))
                .collect();
            eprintln!("JDK {major} {flag}: GC {gc:?}; all {all:?}");
            for m in must {
                assert!(gc.iter().any(|c| c == m), "{m} not among {gc:?}");
            }
            for c in &all {
                if c.starts_with("C1 ")
                    || c.starts_with("C2 ")
                    || c == "java"
                    || c.starts_with("RuntimeWorker")
                {
                    assert!(!is_gc_thread(Runtime::Jvm, c), "{c}");
                }
            }
        }
    }

    #[test]
    fn live_node() {
        let Ok(mut child) = std::process::Command::new("node")
            .args(["-e", "setTimeout(() => {}, 30000)"])
            .spawn()
        else {
            testjvm::skip_or_fail::<()>("no node");
            return;
        };
        std::thread::sleep(std::time::Duration::from_millis(500));
        let all = comms(child.id());
        eprintln!("node threads: {all:?}");
        assert!(all.iter().all(|c| !is_gc_thread(Runtime::Node, c)));
        let _ = child.kill();
        let _ = child.wait();
    }
}
