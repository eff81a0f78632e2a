use super::*;
use crate::gc::{GcSight, Runtime};

fn signals(runtime: Runtime, cpu: f64, gc_threads: f64, gc_stacks: f64) -> GcSignals {
    GcSignals {
        runtime,
        window_seconds: 1.0,
        cpu_seconds: cpu,
        // 99 Hz, the default sampling rate.
        cpu_samples: (cpu * 99.0).round() as u64,
        gc_thread_cpu_seconds: gc_threads,
        gc_stack_cpu_seconds: gc_stacks,
        ..GcSignals::default()
    }
}

#[test]
fn a_gc_runtime_whose_gc_is_unseen_is_gc_unobservable_not_steady() {
    // A stripped Go binary: busy, churning, and no GC seen at all.
    let mut s = signals(Runtime::Go, 1.0, 0.0, 0.0);
    s.gc_blind_cpu_seconds = 1.0;
    s.gc_blind = Some(GcSight::NoSymbols);
    s.alloc_calls = 30_000;
    s.gc_cycles = 15;
    let v = classify(&s);
    assert_eq!(v.kind, VerdictKind::GcUnobservable);
    assert_eq!(v.confidence, 0.0);
    assert!(v.reasons[0].contains("no symbols"), "{v:?}");
    assert!(v.reasons.iter().any(|r| r.contains("15.0 GC cycles/s")));
    // A blind sidecar does not blind its container.
    let mut container = signals(Runtime::Jvm, 2.0, 0.5, 0.0);
    container.merge(&s);
    assert_eq!(classify(&container).kind, VerdictKind::GcHeavy);
    // Idle stays idle: nothing to see is nothing to claim.
    let mut quiet = signals(Runtime::Go, 0.001, 0.0, 0.0);
    quiet.gc_blind_cpu_seconds = 0.001;
    assert_eq!(classify(&quiet).kind, VerdictKind::Idle);
    // A native program has no GC to be blind to.
    let mut native = signals(Runtime::Native, 1.0, 0.0, 0.0);
    native.gc_blind_cpu_seconds = 1.0;
    assert_eq!(classify(&native).kind, VerdictKind::Steady);
}

#[test]
fn a_few_samples_decide_nothing() {
    // Both of 2 samples in GC: a share, but not a finding.
    let mut two = signals(Runtime::Go, 0.1, 0.0, 0.1);
    two.cpu_samples = 2;
    let v = classify(&two);
    assert_eq!(v.kind, VerdictKind::Steady);
    assert!(v.confidence < 0.2, "{v:?}");
    assert!(v.reasons.iter().any(|r| r.contains("too few")), "{v:?}");
    // 55% of 23 samples is clearly past 10%.
    let mut some = signals(Runtime::Jvm, 0.23, 0.1265, 0.0);
    some.cpu_samples = 23;
    assert_eq!(classify(&some).kind, VerdictKind::GcHeavy);
    // 12% of 99 samples cannot be told from 10%: it says so.
    let near = classify(&signals(Runtime::Jvm, 1.0, 0.12, 0.0));
    assert_eq!(near.kind, VerdictKind::Steady);
    assert_eq!(near.confidence, 0.3);
    assert!(near.reasons[0].contains("too few to tell"), "{near:?}");
    // 12% of 10,000 samples can.
    let mut many = signals(Runtime::Jvm, 1.0, 0.12, 0.0);
    many.cpu_samples = 10_000;
    assert_eq!(classify(&many).kind, VerdictKind::GcHeavy);
}

#[test]
fn a_short_process_is_never_alloc_churn() {
    // A shell's child between fork and exec: a window's worth of time,
    // a millisecond of CPU, a handful of mmaps.
    let mut s = signals(Runtime::Native, 0.001, 0.0, 0.0);
    s.cpu_samples = 0;
    s.alloc_calls = 40;
    s.alloc_bytes = 8 << 20;
    s.minor_faults = 300;
    assert_eq!(classify(&s).kind, VerdictKind::Idle);
    let mut busy_moment = signals(Runtime::Native, 0.05, 0.0, 0.0);
    busy_moment.alloc_calls = 2_000;
    assert_ne!(classify(&busy_moment).kind, VerdictKind::AllocChurn);
}

#[test]
fn a_churning_gc_runtime_says_its_gc_share_plainly() {
    let mut s = signals(Runtime::Go, 1.0, 0.0, 0.0);
    s.alloc_calls = 30_000;
    let v = classify(&s);
    assert_eq!(v.kind, VerdictKind::AllocChurn);
    assert!(
        v.reasons.contains(&"GC only 0% of CPU".to_string()),
        "{v:?}"
    );
}

#[test]
fn a_verdict_over_history_does_not_flap_at_its_threshold() {
    // A minute of one core: 5,940 samples, a share known to ±0.8 points.
    let minute = |gc: f64| {
        let mut s = signals(Runtime::Jvm, 60.0, 60.0 * gc, 0.0);
        s.window_seconds = 60.0;
        s
    };
    let near = minute(0.085);
    assert_eq!(classify(&near).kind, VerdictKind::Steady);
    assert_eq!(
        classify_after(&near, Some(VerdictKind::GcHeavy)).kind,
        VerdictKind::GcHeavy
    );
    assert_eq!(
        classify_after(&near, Some(VerdictKind::Steady)).kind,
        VerdictKind::Steady
    );
    // Clearly past the threshold, the verdict changes.
    let low = minute(0.05);
    assert_eq!(
        classify_after(&low, Some(VerdictKind::GcHeavy)).kind,
        VerdictKind::Steady
    );
    let high = minute(0.12);
    assert_eq!(
        classify_after(&high, Some(VerdictKind::Steady)).kind,
        VerdictKind::GcHeavy
    );
}

#[test]
fn names_round_trip() {
    for k in VerdictKind::ALL {
        assert_eq!(VerdictKind::from_name(k.name()), Some(k));
    }
    assert_eq!(
        VerdictKind::from_name("gc-unobservable"),
        Some(VerdictKind::GcUnobservable)
    );
}

#[test]
fn sleeping_process_is_idle() {
    let v = classify(&signals(Runtime::Native, 0.0, 0.0, 0.0));
    assert_eq!(v.kind, VerdictKind::Idle);
    assert!(v.confidence >= 0.9);
}

#[test]
fn go_with_a_third_of_cpu_in_gc_stacks_is_gc_heavy() {
    let mut s = signals(Runtime::Go, 1.8, 0.0, 0.6);
    s.gc_cycles = 40;
    let v = classify(&s);
    assert_eq!(v.kind, VerdictKind::GcHeavy);
    assert!(v.reasons[0].contains("GC 33% of CPU (stacks 33%)"), "{v:?}");
    assert!(v.reasons.iter().any(|r| r.contains("40.0 GC cycles/s")));
    assert!(v.confidence > 0.8);
}

#[test]
fn jvm_gc_threads_count() {
    let v = classify(&signals(Runtime::Jvm, 1.0, 0.31, 0.0));
    assert_eq!(v.kind, VerdictKind::GcHeavy);
    assert!(v.reasons[0].contains("threads 31%"), "{v:?}");
}

#[test]
fn busy_compute_loop_is_steady() {
    let v = classify(&signals(Runtime::Go, 1.0, 0.0, 0.01));
    assert_eq!(v.kind, VerdictKind::Steady);
    let native = classify(&signals(Runtime::Native, 2.0, 0.0, 0.0));
    assert_eq!(native.kind, VerdictKind::Steady);
}

#[test]
fn native_malloc_churn_is_alloc_churn_never_gc_heavy() {
    let mut s = signals(Runtime::Native, 1.0, 0.0, 0.0);
    s.alloc_bytes = 2 << 30;
    s.release_bytes = 2 << 30;
    s.alloc_calls = 30_000;
    // Even with "GC-looking" CPU, a native program cannot be gc-heavy.
    s.gc_stack_cpu_seconds = 0.5;
    let v = classify(&s);
    assert_eq!(v.kind, VerdictKind::AllocChurn);
    assert!(v.reasons.iter().any(|r| r.contains("GiB/s")), "{v:?}");
}

#[test]
fn gc_heavy_needs_enough_gc_cpu_not_just_a_share() {
    // 50% of 1% of a core: a few samples of an almost idle process.
    let v = classify(&signals(Runtime::Go, 0.03, 0.0, 0.015));
    assert_ne!(v.kind, VerdictKind::GcHeavy);
}

#[test]
fn merge_keeps_the_gc_runtime() {
    let mut a = signals(Runtime::Native, 0.1, 0.0, 0.0);
    a.merge(&signals(Runtime::Jvm, 1.0, 0.4, 0.0));
    assert_eq!(a.runtime, Runtime::Jvm);
    assert!((a.gc_cpu_share() - 0.4 / 1.1).abs() < 1e-9);
}

#[test]
fn memory_pressure_is_evidence_and_never_a_verdict() {
    // A gc-heavy Go container that stalled on memory 5% of the window.
    let mut heavy = signals(Runtime::Go, 1.0, 0.0, 0.3);
    let before = classify(&heavy);
    assert_eq!(before.kind, VerdictKind::GcHeavy);
    heavy.memory_stall_seconds = Some(0.05);
    let after = classify(&heavy);
    assert_eq!(after.kind, VerdictKind::GcHeavy);
    assert!(after.confidence > before.confidence, "{before:?} {after:?}");
    assert!(
        after
            .reasons
            .iter()
            .any(|r| r.contains("stalled on memory 5.0% of the time")
                && r.contains("too little headroom")),
        "{after:?}"
    );
    // A steady C program under the same pressure stays steady, and says so.
    let mut steady = signals(Runtime::Native, 1.0, 0.0, 0.0);
    steady.memory_stall_seconds = Some(0.05);
    let v = classify(&steady);
    assert_eq!(v.kind, VerdictKind::Steady);
    assert!(
        v.reasons
            .iter()
            .any(|r| r.contains("stalled on memory 5.0%")),
        "{v:?}"
    );
    // Under 1%, and unknown, say nothing.
    steady.memory_stall_seconds = Some(0.005);
    assert!(
        !classify(&steady)
            .reasons
            .iter()
            .any(|r| r.contains("memory"))
    );
    steady.memory_stall_seconds = None;
    assert!(
        !classify(&steady)
            .reasons
            .iter()
            .any(|r| r.contains("memory"))
    );
}
