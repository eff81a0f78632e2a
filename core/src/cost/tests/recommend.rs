//! Recommendations: the concrete changes, their modelled savings, and the
//! rule that no memory request, limit or cap goes below an observed peak.
use super::Lcg;
use crate::cost::{
    Arch, Confidence, Lifecycle, PriceTable,
    allocation::NodeRates,
    recommend::{
        Context, CurrentSettings, JvmCollector, Observation, Recommendation, Target, WorkloadKind,
        recommend,
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

#[test]
fn go_doubles_gogc_and_caps_the_heap_above_the_peak() {
    let recs = recommend(&go_service(), &CurrentSettings::default(), &ctx());
    let go = find(&recs, Target::Go);
    // GOGC 100 → 200: heap peak projected at 512 + 512 × 2 = 1536 MiB.
    // GOMEMLIMIT = min(1536 × 1.15, 0.9 × 1536 × 1.15) = 1589.8 MiB → 1600 MiB (64 MiB steps).
    assert_eq!(go.change, "GOGC=200 GOMEMLIMIT=1600MiB");
    assert_eq!(go.settings[0].was.as_deref(), Some("100"));
    // Effective GOGC under that cap: 100 × (1589.8 / 512 − 1) = 210 → 200: −50% GC CPU.
    // Claimed: 0.5 GC cores × 50% × 50% = 0.125 cores × $0.04 × 730 = $3.65,
    // less 256 MiB more average memory × $0.005 × 730 = $0.9125: $2.7375.
    assert!(
        (go.monthly_saving_usd - 2.7375).abs() < 1e-9,
        "{}",
        go.monthly_saving_usd
    );
    assert_eq!(go.confidence, Confidence::High);
    assert_eq!(go.window.to_string(), "2.0 days");
    assert!(go.model.contains("GC CPU ∝ 1/GOGC"), "{}", go.model);
    assert!(go.memory_bytes.iter().all(|&b| b >= 1024 * MIB));
    // The Kubernetes change covers the projected peak: 1536 × 1.15 → 1792 MiB.
    let k8s = find(&recs, Target::Kubernetes);
    assert_eq!(setting(k8s, "requests.memory"), "1792Mi");
    assert_eq!(setting(k8s, "limits.memory"), "1792Mi");
    assert_eq!(setting(k8s, "requests.cpu"), "3450m");
    assert_eq!(setting(k8s, "limits.cpu"), "unset");
    // No requests before: billing moves from usage (1.875 cores, 1024 MiB
    // after the Go change) to the requests (3.45 cores, 1792 MiB):
    // ((1.875 − 3.45) × 0.04 + (1024 − 1792) / 1024 × 0.005) × 730 = −$48.7275.
    assert!(
        (k8s.monthly_saving_usd + 48.7275).abs() < 1e-9,
        "{}",
        k8s.monthly_saving_usd
    );
    assert_eq!(k8s.confidence, Confidence::Medium); // 2 days of peaks
    // Without prices there is no shape recommendation.
    assert_eq!(recs.len(), 2);
}

#[test]
fn go_respects_a_container_limit_and_gogc_off() {
    // A 1200 MiB limit: GOMEMLIMIT must stay under 90% of the (new) limit.
    let current = CurrentSettings {
        limit_memory_bytes: Some(1200 * MIB),
        request_memory_bytes: Some(1200 * MIB),
        ..Default::default()
    };
    let recs = recommend(&go_service(), &current, &ctx());
    let go = find(&recs, Target::Go);
    let k8s = find(&recs, Target::Kubernetes);
    let limit: u64 = setting(k8s, "limits.memory")
        .trim_end_matches("Mi")
        .parse()
        .unwrap();
    let gomemlimit: u64 = setting(go, "GOMEMLIMIT")
        .trim_end_matches("MiB")
        .parse()
        .unwrap();
    assert!(
        gomemlimit as f64 <= 0.9 * limit as f64 + 64.0,
        "{gomemlimit} vs {limit}"
    );
    assert!(gomemlimit >= 1024);
    // GOGC=off with a GOMEMLIMIT of 800 MiB: raise the limit by half.
    let current = CurrentSettings {
        gogc: Some(0),
        gomemlimit_bytes: Some(800 * MIB),
        ..Default::default()
    };
    let go = find(&recommend(&go_service(), &current, &ctx()), Target::Go).clone();
    // max(800 × 1.5, 1024 × 1.15) = 1200 → 1216 MiB; reduction 1 − 288/688 = 58%.
    assert_eq!(go.change, "GOMEMLIMIT=1216MiB");
    assert!(
        go.model.contains("cuts modelled GC CPU by 58%"),
        "{}",
        go.model
    );
    // GOGC already at the ceiling: no GOGC change, nothing claimed.
    let current = CurrentSettings {
        gogc: Some(400),
        ..Default::default()
    };
    let go = find(&recommend(&go_service(), &current, &ctx()), Target::Go).clone();
    assert!(!go.change.contains("GOGC="), "{}", go.change);
    assert!(go.monthly_saving_usd.abs() < 1e-9);
}

#[test]
fn jvm_grows_the_heap_and_picks_a_collector() {
    let obs = Observation {
        runtime: Runtime::Jvm,
        kind: WorkloadKind::Batch,
        rss_avg_bytes: 1200 * MIB,
        rss_peak_bytes: 1400 * MIB,
        rss_floor_bytes: 700 * MIB,
        ..go_service()
    };
    let current = CurrentSettings {
        jvm_max_heap_bytes: Some(1024 * MIB),
        jvm_collector: Some(JvmCollector::G1),
        limit_memory_bytes: Some(2048 * MIB),
        ..Default::default()
    };
    let recs = recommend(&obs, &current, &ctx());
    let jvm = find(&recs, Target::Jvm);
    // live 700 MiB, free 324 MiB → 700 + 648 = 1348 → 1408 MiB; −54% GC CPU.
    assert_eq!(jvm.change, "-Xmx1408m -XX:+UseParallelGC");
    assert!(
        jvm.model.contains("cuts modelled GC CPU by 54%"),
        "{}",
        jvm.model
    );
    // Container: heap 1408 + non-heap 376 = 1784 × 1.15 → 2112 MiB; heap = 66% of it.
    assert!(
        jvm.caveats
            .iter()
            .any(|c| c.contains("-XX:MaxRAMPercentage=66 with a 2112 MiB container limit")),
        "{:?}",
        jvm.caveats
    );
    assert_eq!(jvm.memory_bytes, vec![2112 * MIB]);
    assert_eq!(jvm.confidence, Confidence::High);
    assert_eq!(
        setting(find(&recs, Target::Kubernetes), "requests.memory"),
        "2112Mi"
    );
    // A service that fell back to SerialGC gets G1; without -Xmx the JVM
    // default is assumed and confidence drops.
    let obs = Observation {
        kind: WorkloadKind::Service,
        ..obs
    };
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
fn node_grows_old_space_and_notes_scavenges() {
    let obs = Observation {
        runtime: Runtime::Node,
        gc_cycles: (50.0 * 2.0 * DAY) as u64,
        rss_avg_bytes: 450 * MIB,
        rss_peak_bytes: 600 * MIB,
        rss_floor_bytes: 300 * MIB,
        ..go_service()
    };
    let current = CurrentSettings {
        node_max_old_space_mib: Some(512),
        ..Default::default()
    };
    let recs = recommend(&obs, &current, &ctx());
    let node = find(&recs, Target::Node);
    // live 300, free 212 → 724 → 768 MiB; −55% GC CPU.
    assert_eq!(node.change, "--max-old-space-size=768");
    assert_eq!(node.settings[0].was.as_deref(), Some("512"));
    assert!(
        node.model.contains("cuts modelled GC CPU by 55%"),
        "{}",
        node.model
    );
    assert!(
        node.caveats
            .iter()
            .any(|c| c.contains("--max-semi-space-size")),
        "{:?}",
        node.caveats
    );
    assert!(node.monthly_saving_usd > 0.0);
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
