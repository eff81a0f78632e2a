//! Recommendations: the concrete changes, their modelled savings, and the
//! rule that no memory request, limit or cap goes below an observed peak.
use super::Lcg;
use crate::cost::{
    Arch, Confidence, Lifecycle, PriceTable,
    allocation::NodeRates,
    calibration::{self, Calibration},
    recommend::{
        Context, CurrentSettings, JvmCollector, Observation, Recommendation, SavingKind, Target,
        WorkloadKind, recommend,
    },
};
use crate::gc::Runtime;

const MIB: u64 = 1024 * 1024;
const DAY: f64 = 86400.0;

/// Two days of a Go service: 2 cores average, a quarter of it in GC,
/// RSS between 512 MiB (after collections) and 1 GiB.
fn go_service() -> Observation {
    Observation {
        runtime: Runtime::Go,
        kind: WorkloadKind::Service,
        window_seconds: 2.0 * DAY,
        cpu_seconds: 2.0 * 2.0 * DAY,
        gc_cpu_seconds: 0.25 * 2.0 * 2.0 * DAY,
        gc_cycles: 100_000,
        cpu_peak_cores: 3.0,
        rss_avg_bytes: 768 * MIB,
        rss_peak_bytes: 1024 * MIB,
        rss_floor_bytes: 512 * MIB,
        headroom_confidence: Some(Confidence::High),
        replicas: 1,
        cpu_ceiling_cores: None,
        memory_stall_share: None,
    }
}

/// $0.04 per vCPU-hour, $0.005 per GiB-hour.
fn ctx() -> Context<'static> {
    Context::new(NodeRates::explicit(0.04, 0.005))
}

fn find(recs: &[Recommendation], target: Target) -> &Recommendation {
    recs.iter()
        .find(|r| r.target == target)
        .unwrap_or_else(|| panic!("no {target:?} in {recs:#?}"))
}

fn setting<'a>(rec: &'a Recommendation, name: &str) -> &'a str {
    &rec.settings
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .value
}

/// The calibrated point of a runtime change: GC cores × cut × the CPU
/// factor, less the RSS growth × the RSS factor, at `ctx()`'s rates.
fn calibrated_usd(cal: Calibration, gc_cores: f64, cut: f64, extra_mib: f64) -> f64 {
    (gc_cores * cut * cal.cpu_mid() * 0.04 - extra_mib * cal.rss_mid() / 1024.0 * 0.005) * 730.0
}

#[test]
fn go_doubles_gogc_and_caps_the_heap_above_the_peak() {
    let known = CurrentSettings {
        gogc: Some(100),
        ..Default::default()
    };
    let recs = recommend(&go_service(), &known, &ctx());
    let go = find(&recs, Target::Go);
    // GOGC 100 → 200: live ≈ 1024 / 2 = 512 MiB, the peak grows by 512 to
    // 1536 MiB. No container limit: no GOMEMLIMIT, and that is said.
    assert_eq!(go.change, "GOGC=200");
    assert!(
        go.caveats
            .iter()
            .any(|c| c.contains("no container memory limit"))
    );
    assert!(go.model.contains("grows to 1536 MiB"), "{}", go.model);
    assert_eq!(go.settings[0].was.as_deref(), Some("100"));
    assert!(go.model.contains("cuts it 50%"), "{}", go.model);
    let expected = calibrated_usd(calibration::GO, 0.5, 0.5, 512.0);
    assert!(
        (go.monthly_saving_usd - expected).abs() < 1e-6,
        "{} vs {expected}",
        go.monthly_saving_usd
    );
    let (lo, hi) = go.monthly_saving_range_usd.unwrap();
    assert!(lo < go.monthly_saving_usd && go.monthly_saving_usd < hi);
    assert_eq!(go.saving, SavingKind::Money);
    assert_eq!(go.confidence, Confidence::High);
    // Without prices there is no shape recommendation.
    assert_eq!(recs.len(), 2);
    // GOGC unread: the default is assumed, said, and the range wider.
    let assumed = recommend(&go_service(), &CurrentSettings::default(), &ctx());
    let a = find(&assumed, Target::Go);
    assert_eq!(a.change, go.change);
    assert!(a.caveats.iter().any(|c| c.contains("100, was assumed")));
    assert_eq!(a.confidence, Confidence::Medium);
    let (alo, ahi) = a.monthly_saving_range_usd.unwrap();
    assert!(alo < lo && ahi > hi, "{alo}..{ahi} vs {lo}..{hi}");
}

#[test]
fn go_respects_a_container_limit_and_gogc_off() {
    // A 1200 MiB limit caps the heap at 90%, 1080 MiB: the GC runs at
    // GOMEMLIMIT, an effective GOGC of 100 × (1080 / 512 − 1) ≈ 111.
    let current = CurrentSettings {
        gogc: Some(100),
        limit_memory_bytes: Some(1200 * MIB),
        request_memory_bytes: Some(1200 * MIB),
        ..Default::default()
    };
    let recs = recommend(&go_service(), &current, &ctx());
    let go = find(&recs, Target::Go);
    assert_eq!(go.change, "GOGC=200 GOMEMLIMIT=1080MiB");
    assert!(
        go.model.contains("GOGC 100→111 cuts it 10%"),
        "{}",
        go.model
    );
    // GOGC=off with a GOMEMLIMIT of 800 MiB: raise the limit by half.
    let current = CurrentSettings {
        gogc: Some(0),
        gomemlimit_bytes: Some(800 * MIB),
        ..Default::default()
    };
    let go = find(&recommend(&go_service(), &current, &ctx()), Target::Go).clone();
    // max(800 × 1.5, 1024 × 1.15) = 1200 → 1216 MiB; cut 1 − 288/704 = 59%.
    assert_eq!(go.change, "GOMEMLIMIT=1216MiB");
    assert!(go.model.contains("cuts it 59%"), "{}", go.model);
    // GOGC already at the ceiling: nothing to change, no Go recommendation.
    let current = CurrentSettings {
        gogc: Some(400),
        ..Default::default()
    };
    let recs = recommend(&go_service(), &current, &ctx());
    assert!(recs.iter().all(|r| r.target != Target::Go), "{recs:#?}");
}

#[test]
fn jvm_doubles_the_heap_it_runs_at_and_picks_a_collector() {
    let obs = Observation {
        runtime: Runtime::Jvm,
        kind: WorkloadKind::Service,
        rss_avg_bytes: 1200 * MIB,
        rss_peak_bytes: 1400 * MIB,
        rss_floor_bytes: 700 * MIB,
        ..go_service()
    };
    let current = CurrentSettings {
        jvm_max_heap_bytes: Some(2048 * MIB),
        jvm_heap_committed_bytes: Some(1024 * MIB),
        jvm_collector: Some(JvmCollector::G1),
        limit_memory_bytes: Some(4096 * MIB),
        ..Default::default()
    };
    let recs = recommend(&obs, &current, &ctx());
    let jvm = find(&recs, Target::Jvm);
    // Runs at 1024 MiB of a 2048 MiB max: fixed at 2048, −50% GC CPU,
    // +1024 MiB of RSS.
    assert_eq!(jvm.change, "-Xms2048m -Xmx2048m");
    assert!(jvm.model.contains("cuts GC CPU 50%"), "{}", jvm.model);
    let expected = calibrated_usd(calibration::JVM, 0.5, 0.5, 1024.0);
    assert!((jvm.monthly_saving_usd - expected).abs() < 1e-6);
    assert_eq!(jvm.confidence, Confidence::High);
    // Container: heap 2048 + non-heap 376 = 2424 × 1.15 → 2816, but the
    // limit is already 4096.
    assert_eq!(jvm.memory_bytes, vec![4096 * MIB]);
    // A batch job gets ParallelGC, and its saving is time, not dollars.
    let batch = Observation {
        kind: WorkloadKind::Batch,
        ..obs.clone()
    };
    let jvm = find(&recommend(&batch, &current, &ctx()), Target::Jvm).clone();
    assert_eq!(jvm.change, "-Xms2048m -Xmx2048m -XX:+UseParallelGC");
    assert_eq!(jvm.saving, SavingKind::Time);
    assert_eq!(jvm.monthly_saving_usd, 0.0);
    assert!(jvm.monthly_saving_range_usd.is_none());
    assert!(
        jvm.time_saving_share
            .is_some_and(|(lo, hi)| 0.0 < lo && lo < hi)
    );
    // A service that fell back to SerialGC gets G1; without -Xmx or the
    // committed heap the JVM default is assumed and confidence drops.
    let current = CurrentSettings {
        jvm_collector: Some(JvmCollector::Serial),
        limit_memory_bytes: Some(2048 * MIB),
        ..Default::default()
    };
    let jvm = find(&recommend(&obs, &current, &ctx()), Target::Jvm).clone();
    assert!(jvm.change.ends_with("-XX:+UseG1GC"), "{}", jvm.change);
    assert_eq!(jvm.confidence, Confidence::Medium);
    assert!(
        jvm.caveats
            .iter()
            .any(|c| c.contains("assumed the JVM default, 25%"))
    );
    assert_eq!(
        JvmCollector::from_command_line("java -XX:+UseG1GC -XX:+UseParallelGC -jar app.jar"),
        Some(JvmCollector::Parallel)
    );
    assert_eq!(JvmCollector::from_command_line("java -jar app.jar"), None);
}

#[test]
fn node_quadruples_the_semi_space_and_notes_old_space() {
    let obs = Observation {
        runtime: Runtime::Node,
        gc_cycles: (50.0 * 2.0 * DAY) as u64,
        rss_avg_bytes: 450 * MIB,
        rss_peak_bytes: 600 * MIB,
        rss_floor_bytes: 300 * MIB,
        ..go_service()
    };
    let current = CurrentSettings {
        node_max_semi_space_mib: Some(16),
        node_max_old_space_mib: Some(512),
        ..Default::default()
    };
    let recs = recommend(&obs, &current, &ctx());
    let node = find(&recs, Target::Node);
    // 16 → 64 MiB: −75% scavenges, +3 × 48 MiB of young generation.
    assert_eq!(node.change, "--max-semi-space-size=64");
    assert_eq!(node.settings[0].was.as_deref(), Some("16"));
    assert!(node.model.contains("cuts them 75%"), "{}", node.model);
    let expected = calibrated_usd(calibration::NODE, 0.5, 0.75, 144.0);
    assert!((node.monthly_saving_usd - expected).abs() < 1e-6);
    assert!(
        node.caveats
            .iter()
            .any(|c| c.contains("near --max-old-space-size=512")),
        "{:?}",
        node.caveats
    );
    // At the largest semi-space there is nothing left to change.
    let current = CurrentSettings {
        node_max_semi_space_mib: Some(128),
        ..Default::default()
    };
    let recs = recommend(&obs, &current, &ctx());
    assert!(recs.iter().all(|r| r.target != Target::Node), "{recs:#?}");
}

#[test]
fn cpu_pinned_at_its_ceiling_saves_time_not_dollars() {
    // 2 cores average against a 2-core ceiling (a CPU limit or GOMAXPROCS).
    let pinned = Observation {
        kind: WorkloadKind::Unknown,
        cpu_ceiling_cores: Some(2.0),
        ..go_service()
    };
    let current = CurrentSettings {
        gogc: Some(100),
        ..Default::default()
    };
    let go = find(&recommend(&pinned, &current, &ctx()), Target::Go).clone();
    assert_eq!(go.saving, SavingKind::Time);
    assert_eq!(go.monthly_saving_usd, 0.0);
    assert!(go.model.contains("CPU-bound"), "{}", go.model);
    // The same work with room to spare: fixed work, dollars.
    let fixed = Observation {
        cpu_ceiling_cores: Some(8.0),
        ..pinned
    };
    let go = find(&recommend(&fixed, &current, &ctx()), Target::Go).clone();
    assert_eq!(go.saving, SavingKind::Money);
    assert!(go.monthly_saving_usd > 0.0);
    assert!(go.model.contains("fixed work"), "{}", go.model);
}

#[test]
fn only_gc_heavy_workloads_get_a_runtime_change() {
    let light = Observation {
        gc_cpu_seconds: 0.05 * 4.0 * DAY,
        ..go_service()
    };
    let recs = recommend(&light, &CurrentSettings::default(), &ctx());
    assert!(
        recs.iter().all(|r| r.target == Target::Kubernetes),
        "{recs:#?}"
    );
    let other = Observation {
        runtime: Runtime::Unknown,
        ..go_service()
    };
    let recs = recommend(&other, &CurrentSettings::default(), &ctx());
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].target, Target::Kubernetes);
}

#[test]
fn over_requested_workloads_save_by_right_sizing() {
    let current = CurrentSettings {
        request_cpu_cores: Some(8.0),
        request_memory_bytes: Some(8192 * MIB),
        ..Default::default()
    };
    let obs = Observation {
        runtime: Runtime::Unknown,
        ..go_service()
    };
    let k8s = recommend(&obs, &current, &ctx()).remove(0);
    // 8 → 3.45 cores and 8192 → 1216 MiB (1024 × 1.15 → 64 MiB steps):
    // (4.55 × 0.04 + 6976 / 1024 × 0.005) × 730 = $157.72.
    assert_eq!(setting(&k8s, "requests.memory"), "1216Mi");
    let expected = (4.55 * 0.04 + 6976.0 / 1024.0 * 0.005) * 730.0;
    assert!(
        (k8s.monthly_saving_usd - expected).abs() < 1e-6,
        "{} vs {expected}",
        k8s.monthly_saving_usd
    );
    assert!(k8s.model.contains("peaks + 15% margin"), "{}", k8s.model);
    // Replicas multiply.
    let obs = Observation { replicas: 3, ..obs };
    let k8s3 = recommend(&obs, &current, &ctx()).remove(0);
    assert!((k8s3.monthly_saving_usd - 3.0 * expected).abs() < 1e-6);
}

#[test]
fn short_windows_and_weak_inputs_lower_confidence() {
    let short = Observation {
        window_seconds: 600.0,
        cpu_seconds: 1200.0,
        gc_cpu_seconds: 300.0,
        gc_cycles: 500,
        ..go_service()
    };
    let recs = recommend(&short, &CurrentSettings::default(), &ctx());
    assert_eq!(find(&recs, Target::Go).confidence, Confidence::Low);
    assert_eq!(find(&recs, Target::Kubernetes).confidence, Confidence::Low);
    assert_eq!(find(&recs, Target::Go).window.to_string(), "10 min");
    let few = Observation {
        gc_cycles: 5,
        headroom_confidence: Some(Confidence::Low),
        ..go_service()
    };
    assert_eq!(
        find(
            &recommend(&few, &CurrentSettings::default(), &ctx()),
            Target::Go
        )
        .confidence,
        Confidence::Low
    );
    let week = Observation {
        window_seconds: 8.0 * DAY,
        ..go_service()
    };
    assert_eq!(
        find(
            &recommend(&week, &CurrentSettings::default(), &ctx()),
            Target::Kubernetes
        )
        .confidence,
        Confidence::High
    );
}

#[test]
fn instance_shape_prefers_the_cheapest_fit_including_graviton() {
    // 1.73 cores and 1216 MiB on an m6i.2xlarge in us-east-1: CPU-bound, so a
    // compute family fits better; the cheapest is Graviton c6g.large.
    let table = PriceTable::embedded();
    let obs = Observation {
        runtime: Runtime::Unknown,
        cpu_peak_cores: 1.5,
        ..go_service()
    };
    let context = Context {
        prices: Some(table),
        region: Some("us-east-1"),
        instance_type: Some("m6i.2xlarge"),
        ..ctx()
    };
    let recs = recommend(&obs, &CurrentSettings::default(), &context);
    let shape = find(&recs, Target::InstanceShape);
    assert!(
        shape
            .change
            .starts_with("c6g.large (arm64, 2 vCPU, 4 GiB) instead of m6i.2xlarge"),
        "{}",
        shape.change
    );
    // m6i.2xlarge: $0.384 × 1.73 / 7.6 = $0.08741/h; c6g.large: $0.068 × 1.73 / 1.9 = $0.06192/h.
    let expected = (0.384 * 1.73 / 7.6 - 0.068 * 1.73 / 1.9) * 730.0;
    assert!(
        (shape.monthly_saving_usd - expected).abs() < 1e-6,
        "{} vs {expected}",
        shape.monthly_saving_usd
    );
    assert_eq!(shape.confidence, Confidence::Low); // Medium for 2 days of peaks, lowered for arm64
    assert!(
        shape.caveats.iter().any(|c| c.contains("multi-arch")),
        "{:?}",
        shape.caveats
    );
    assert!(
        shape
            .caveats
            .iter()
            .any(|c| c.starts_with("staying on x86_64: c6i.large saves")),
        "{:?}",
        shape.caveats
    );
    assert_ne!(
        table
            .price("c6g.large", "us-east-1", Lifecycle::OnDemand)
            .unwrap()
            .arch,
        Arch::X86_64
    );
    // Already on the best fit: no shape recommendation.
    let context = Context {
        instance_type: Some("c6g.large"),
        ..context
    };
    assert!(
        recommend(&obs, &CurrentSettings::default(), &context)
            .iter()
            .all(|r| r.target != Target::InstanceShape)
    );
    // Unknown type or region: none either.
    let context = Context {
        instance_type: Some("x9.huge"),
        ..context
    };
    assert!(
        recommend(&obs, &CurrentSettings::default(), &context)
            .iter()
            .all(|r| r.target != Target::InstanceShape)
    );
}

/// Half the time a CPU ceiling near the use (pinned) or well above it.
fn opt_ceiling(rng: &mut Lcg, cores: f64) -> Option<f64> {
    (rng.unit() < 0.5).then(|| cores * rng.range(0.9, 8.0))
}

/// A container that stalls on memory at its limit used what the limit let
/// it: its memory request starts from the limit, and its recommendations
/// say why; one that stalls less than the evidence threshold is sized from
/// its peak as before.
#[test]
fn a_squeezed_container_is_sized_from_its_limit_and_told_why() {
    // Peak 1 GiB under a 2 GiB limit (a limit at the peak leaves GOGC no
    // room to grow, and so no Go change to check).
    let current = CurrentSettings {
        gogc: Some(100),
        limit_memory_bytes: Some(2048 * MIB),
        ..Default::default()
    };
    let squeezed = Observation {
        memory_stall_share: Some(0.05),
        ..go_service()
    };
    let unsqueezed = Observation {
        memory_stall_share: Some(0.001),
        ..go_service()
    };
    // Requests alone: the runtime change projects its own peak.
    let no_runtime = Context {
        gc_heavy_share: 1.0,
        ..ctx()
    };
    let memory = |obs: &Observation| {
        find(&recommend(obs, &current, &no_runtime), Target::Kubernetes).memory_bytes[0]
    };
    assert_eq!(memory(&unsqueezed), 1216 * MIB, "peak 1 GiB + 15%");
    assert_eq!(memory(&squeezed), 2368 * MIB, "limit 2 GiB + 15%");
    let recs = recommend(&squeezed, &current, &ctx());
    let says_psi = |r: &Recommendation| {
        r.caveats
            .iter()
            .any(|c| c.contains("stalled on memory 5.0%"))
    };
    assert!(says_psi(find(&recs, Target::Kubernetes)));
    assert!(says_psi(find(&recs, Target::Go)));
    let plain = recommend(&unsqueezed, &current, &ctx());
    for r in &plain {
        assert!(
            !r.caveats.iter().any(|c| c.contains("stalled")),
            "{:?}",
            r.caveats
        );
    }
}

#[test]
fn never_below_an_observed_peak() {
    let table = PriceTable::embedded();
    let types: Vec<String> = table
        .instances_in("eu-west-1")
        .map(|e| e.instance_type.clone())
        .collect();
    let mut rng = Lcg(11);
    for i in 0..3000 {
        let window = rng.range(60.0, 30.0 * DAY);
        let cores = rng.range(0.01, 16.0);
        let peak = (rng.range(1.0, 64.0 * 1024.0) * MIB as f64) as u64;
        let floor = (peak as f64 * rng.unit()) as u64;
        let obs = Observation {
            runtime: [Runtime::Go, Runtime::Jvm, Runtime::Node, Runtime::Unknown][i % 4],
            kind: [
                WorkloadKind::Service,
                WorkloadKind::Batch,
                WorkloadKind::Unknown,
            ][i % 3],
            window_seconds: window,
            cpu_seconds: cores * window,
            gc_cpu_seconds: cores * window * rng.range(0.0, 0.9),
            gc_cycles: rng.next_u64() % 1_000_000,
            cpu_peak_cores: cores * rng.range(1.0, 4.0),
            rss_avg_bytes: (floor as f64 + (peak - floor) as f64 * rng.unit()) as u64,
            rss_peak_bytes: peak,
            rss_floor_bytes: floor,
            headroom_confidence: None,
            replicas: (rng.next_u64() % 5) as u32,
            cpu_ceiling_cores: opt_ceiling(&mut rng, cores),
            memory_stall_share: (i % 3 == 0).then(|| rng.range(0.0, 0.3)),
        };
        let opt = |rng: &mut Lcg, lo: f64, hi: f64| {
            if rng.unit() < 0.5 {
                Some(rng.range(lo, hi))
            } else {
                None
            }
        };
        let bytes = |f: Option<f64>| f.map(|f| (peak as f64 * f) as u64);
        let current = CurrentSettings {
            gogc: opt(&mut rng, 0.0, 1.0).map(|_| [0, 25, 50, 100, 200, 800][i % 6]),
            gomemlimit_bytes: bytes(opt(&mut rng, 0.1, 2.0)),
            jvm_max_heap_bytes: bytes(opt(&mut rng, 0.1, 2.0)),
            jvm_collector: None,
            node_max_old_space_mib: bytes(opt(&mut rng, 0.1, 2.0)).map(|b| b / MIB),
            node_max_semi_space_mib: opt(&mut rng, 1.0, 256.0).map(|m| m as u64),
            gomaxprocs: opt(&mut rng, 1.0, 64.0).map(|p| p as u32),
            jvm_initial_heap_bytes: bytes(opt(&mut rng, 0.1, 2.0)),
            jvm_heap_committed_bytes: bytes(opt(&mut rng, 0.1, 2.0)),
            request_cpu_cores: opt(&mut rng, 0.0, 8.0),
            limit_cpu_cores: None,
            request_memory_bytes: bytes(opt(&mut rng, 0.1, 2.0)),
            limit_memory_bytes: bytes(opt(&mut rng, 0.1, 2.0)),
        };
        let context = Context {
            prices: Some(table),
            region: Some("eu-west-1"),
            instance_type: Some(&types[i % types.len()]),
            margin: rng.range(0.0, 0.5),
            ..ctx()
        };
        for rec in recommend(&obs, &current, &context) {
            for &bytes in &rec.memory_bytes {
                assert!(bytes >= peak, "{rec:#?} sets {bytes} below the peak {peak}");
            }
            if let Some(x) = rec.settings.iter().find(|s| s.name == "-Xmx") {
                let new: u64 = x.value.trim_end_matches('m').parse().unwrap();
                if let Some(old) = current.jvm_max_heap_bytes {
                    assert!(new * MIB >= old, "{rec:#?}");
                }
            }
            assert!(rec.monthly_saving_usd.is_finite(), "{rec:#?}");
            if let Some((lo, hi)) = rec.monthly_saving_range_usd {
                assert!(
                    lo <= rec.monthly_saving_usd && rec.monthly_saving_usd <= hi,
                    "{rec:#?}"
                );
            }
            assert!(!rec.change.is_empty());
        }
    }
}

#[test]
fn nonsense_observations_do_not_panic() {
    let nan = Observation {
        window_seconds: f64::NAN,
        cpu_seconds: f64::INFINITY,
        gc_cpu_seconds: -1.0,
        cpu_peak_cores: f64::NAN,
        rss_avg_bytes: 0,
        rss_peak_bytes: 0,
        rss_floor_bytes: u64::MAX,
        replicas: 0,
        ..go_service()
    };
    let context = Context {
        margin: f64::NAN,
        ..ctx()
    };
    let recs = recommend(&nan, &CurrentSettings::default(), &context);
    assert!(recs.iter().all(|r| r.monthly_saving_usd.is_finite()));
}
