//! Whether each process's GC can be seen at all ([`GcSight`]).
//!
//! GC CPU comes from two instruments (`gc` module doc): threads by name
//! (HotSpot's and .NET server GC's collector threads) and symbolized stacks
//! (Go and V8, whose collectors run on ordinary threads). When neither
//! works for a GC'd process, its GC share is unknown, and reporting it as 0
//! would make a stripped Go service look `steady` with full confidence.
//!
//! The evidence, per process:
//! - **GC threads by name**: any sampled thread classified GC, or, until
//!   one is, a look at `/proc/<pid>/task/*/comm` (every
//!   [`RECHECK_TICKS`]): a JVM whose GC has not run yet still has its named
//!   GC threads. JDK 8 names none of them.
//! - **Stacks**: the process's stacks are sampled, and its samples show the
//!   runtime's own code ([`StackWindow::runtime_samples`]). A window with
//!   stack samples but no runtime frame (every frame without a symbol)
//!   says the stacks are blind; a window without stack samples keeps what
//!   the last one said.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use super::stacks::StackWindow;
use tally_core::{
    gc::{GcSight, Runtime},
    model::ProcKey,
};

use crate::runtimes::threads::is_gc_thread;

/// How often (ticks) a process without named GC threads is looked at again.
pub const RECHECK_TICKS: u64 = 10;

#[derive(Debug, Clone, Copy)]
struct State {
    /// Named GC threads were found: the thread instrument works.
    named: bool,
    /// Tick of the last look at its threads' names.
    looked_at: u64,
    /// Tick the process was first seen here.
    first_tick: u64,
    /// What its stacks said last, if they said anything yet.
    stacks: Option<GcSight>,
}

/// What one window says about a process's instruments.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evidence<'a> {
    /// Samples of its threads named as GC threads in the window.
    pub gc_thread_samples: u64,
    /// Its CPU samples in the window.
    pub cpu_samples: u64,
    /// Whether its stacks are sampled, and what they showed.
    pub stacks_sampled: bool,
    pub stacks: Option<&'a StackWindow>,
}

#[derive(Debug, Default)]
pub struct SightTracker {
    by_key: HashMap<ProcKey, State>,
    tick: u64,
}

impl SightTracker {
    /// Starts a tick.
    pub fn next_tick(&mut self) {
        self.tick += 1;
    }

    /// Whether `key`'s GC can be seen in this window.
    pub fn sight(
        &mut self,
        proc_root: &Path,
        key: ProcKey,
        runtime: Runtime,
        evidence: Evidence<'_>,
    ) -> GcSight {
        if !runtime.has_gc() {
            return GcSight::Seen;
        }
        let tick = self.tick;
        let state = self.by_key.entry(key).or_insert(State {
            named: false,
            // Never looked: look now.
            looked_at: tick.wrapping_sub(RECHECK_TICKS),
            first_tick: tick,
            stacks: None,
        });
        if evidence.gc_thread_samples > 0 {
            state.named = true;
        }
        if !state.named && tick.wrapping_sub(state.looked_at) >= RECHECK_TICKS {
            state.looked_at = tick;
            state.named = has_named_gc_threads(&proc_root.join(key.tgid.to_string()), runtime);
        }
        if state.named {
            return GcSight::Seen;
        }
        if !evidence.stacks_sampled {
            return GcSight::NoInstrument;
        }
        if let Some(w) = evidence.stacks.filter(|w| w.samples > 0) {
            state.stacks = Some(if w.runtime_samples > 0 {
                GcSight::Seen
            } else {
                GcSight::NoSymbols
            });
        }
        match state.stacks {
            Some(sight) => sight,
            // Sampling starts when the runtime is detected, within a tick:
            // no stacks yet is no evidence yet.
            None if tick.saturating_sub(state.first_tick) <= 1 || evidence.cpu_samples == 0 => {
                GcSight::Seen
            }
            // CPU, but never a stack: nothing shows its GC.
            None => GcSight::NoSymbols,
        }
    }

    /// Forgets processes that are gone.
    pub fn retain(&mut self, mut keep: impl FnMut(&ProcKey) -> bool) {
        self.by_key.retain(|k, _| keep(k));
    }
}

/// True if any thread of the process (its `/proc/<pid>` directory) has the
/// name of one of `runtime`'s GC threads.
fn has_named_gc_threads(proc_dir: &Path, runtime: Runtime) -> bool {
    let Ok(tasks) = std::fs::read_dir(proc_dir.join("task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|task| {
        let comm: PathBuf = task.path().join("comm");
        std::fs::read_to_string(comm).is_ok_and(|c| is_gc_thread(runtime, &c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ProcKey {
        ProcKey {
            tgid: 4242,
            start_ticks: 1,
        }
    }

    /// A fake `/proc` with one process whose threads have these names.
    fn proc_root(names: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (i, name) in names.iter().enumerate() {
            let task = root.path().join(format!("4242/task/{}", 4242 + i));
            std::fs::create_dir_all(&task).unwrap();
            std::fs::write(task.join("comm"), format!("{name}\n")).unwrap();
        }
        root
    }

    fn stacks(samples: u64, runtime_samples: u64) -> StackWindow {
        StackWindow {
            samples,
            gc_samples: 0,
            runtime_samples,
        }
    }

    #[test]
    fn a_jvm_with_named_gc_threads_is_seen_before_its_first_collection() {
        let root = proc_root(&["java", "GC Thread#0", "G1 Main Marker"]);
        let mut t = SightTracker::default();
        let sight = t.sight(
            root.path(),
            key(),
            Runtime::Jvm,
            Evidence {
                cpu_samples: 50,
                ..Evidence::default()
            },
        );
        assert_eq!(sight, GcSight::Seen);
    }

    #[test]
    fn a_jvm_without_names_is_blind() {
        // JDK 8: every thread is "java".
        let root = proc_root(&["java", "java", "java"]);
        let mut t = SightTracker::default();
        let sight = t.sight(
            root.path(),
            key(),
            Runtime::Jvm,
            Evidence {
                cpu_samples: 50,
                ..Evidence::default()
            },
        );
        assert_eq!(sight, GcSight::NoInstrument);
    }

    #[test]
    fn stacks_without_runtime_frames_are_blind_and_it_sticks() {
        let root = proc_root(&["worker"]);
        let mut t = SightTracker::default();
        let sampled = |w| Evidence {
            cpu_samples: 99,
            stacks_sampled: true,
            stacks: w,
            ..Evidence::default()
        };
        let blind = stacks(99, 0);
        assert_eq!(
            t.sight(root.path(), key(), Runtime::Go, sampled(Some(&blind))),
            GcSight::NoSymbols
        );
        // A window without stack samples keeps what was last seen.
        t.next_tick();
        assert_eq!(
            t.sight(root.path(), key(), Runtime::Go, sampled(None)),
            GcSight::NoSymbols
        );
        let symbolized = stacks(99, 97);
        t.next_tick();
        assert_eq!(
            t.sight(root.path(), key(), Runtime::Go, sampled(Some(&symbolized))),
            GcSight::Seen
        );
    }

    #[test]
    fn no_stacks_ever_is_blind_after_a_grace_tick() {
        let root = proc_root(&["node"]);
        let mut t = SightTracker::default();
        let busy = Evidence {
            cpu_samples: 99,
            stacks_sampled: true,
            ..Evidence::default()
        };
        assert_eq!(
            t.sight(root.path(), key(), Runtime::Node, busy),
            GcSight::Seen
        );
        t.next_tick();
        t.next_tick();
        assert_eq!(
            t.sight(root.path(), key(), Runtime::Node, busy),
            GcSight::NoSymbols
        );
        // Stacks off and no names: no instrument at all.
        let unsampled = Evidence {
            cpu_samples: 99,
            ..Evidence::default()
        };
        let other = ProcKey {
            tgid: 4242,
            start_ticks: 2,
        };
        assert_eq!(
            t.sight(root.path(), other, Runtime::Go, unsampled),
            GcSight::NoInstrument
        );
        // A runtime without GC has nothing to see.
        assert_eq!(
            t.sight(root.path(), other, Runtime::Native, unsampled),
            GcSight::Seen
        );
    }
}
