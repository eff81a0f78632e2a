use bytes::Bytes;
use prost::Message as _;
use tally_proto::{self as pb, received::ReceivedReport};

use super::*;

const NOW: i64 = 1_800_000_000_000;

fn valid() -> pb::NodeReport {
    let counters = |cpu: f64, calls: u64| pb::Counters {
        cpu_samples: calls,
        cpu_seconds: cpu,
        mmap_calls: calls,
        mmap_bytes: calls * 4096,
        minor_faults: calls,
        gc_cycles: 1,
        ..Default::default()
    };
    pb::NodeReport {
        node: Some(pb::NodeIdentity {
            node_name: "ip-10-0-1-23.ec2.internal".into(),
            agent_instance: "i-1".into(),
            agent_start_unix_ms: NOW - 60_000,
            cpus: 2,
            instance_type: "m7g.large".into(),
            ..Default::default()
        }),
        sequence: 3,
        window_start_unix_ms: NOW - 5_000,
        window_end_unix_ms: NOW,
        processes: vec![pb::ProcessWindow {
            key: Some(pb::ProcessKey {
                pid: 42,
                start_ticks: 7,
            }),
            comm: "java".into(),
            cgroup_path: "/kubepods/pod1/abc".into(),
            container_id: "abc".into(),
            delta: Some(counters(1.5, 10)),
            total: Some(counters(100.0, 1000)),
            rss_bytes: 1 << 30,
            verdict: Some(pb::Verdict {
                kind: 1,
                confidence: 0.9,
                reasons: vec!["GC threads 31% of CPU".into()],
            }),
            thread_groups: vec![pb::ThreadGroup {
                name: "GC Thread#0".into(),
                threads: 2,
                cpu_seconds: 0.5,
                gc: true,
            }],
            pod: Some(pb::PodMetadata {
                namespace: "shop".into(),
                pod_name: "checkout-7d9f".into(),
                qos_class: "Burstable".into(),
                labels: [("app".to_owned(), "checkout".to_owned())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        agent: Some(pb::AgentStats {
            cpu_seconds: 0.01,
            rss_bytes: 10 << 20,
            ..Default::default()
        }),
        pods: Vec::new(),
        container_pressures: Vec::new(),
    }
}

fn check_report(r: &pb::NodeReport) -> Result<(), InvalidReport> {
    check_with(r, &Limits::default())
}

/// The report's refusal, or its first process's: every field must be
/// refused one way or the other.
fn check_with(r: &pb::NodeReport, limits: &Limits) -> Result<(), InvalidReport> {
    let received = ReceivedReport::decode(Bytes::from(r.encode_to_vec())).unwrap();
    match check(&received, limits, NOW)?.into_iter().next() {
        Some(refused) => Err(refused.why),
        None => Ok(()),
    }
}

/// Which processes are refused alone, and the report-level refusal.
fn refused_processes(r: &pb::NodeReport) -> Result<Vec<usize>, InvalidReport> {
    let received = ReceivedReport::decode(Bytes::from(r.encode_to_vec())).unwrap();
    Ok(check(&received, &Limits::default(), NOW)?
        .into_iter()
        .map(|p| p.index)
        .collect())
}

#[test]
fn a_process_fault_refuses_that_process_a_report_fault_the_report() {
    let mut r = valid();
    let second = r.processes[0].clone();
    r.processes.push(second.clone());
    r.processes[1].key = Some(pb::ProcessKey {
        pid: 43,
        start_ticks: 7,
    });
    assert_eq!(refused_processes(&r), Ok(vec![]));
    // Process faults: a number out of range, a name, a duplicate.
    r.processes[1].delta.as_mut().unwrap().gc_pause_seconds = f64::NAN;
    assert_eq!(refused_processes(&r), Ok(vec![1]));
    r.processes[0].comm = "bad\u{1b}[2J".into();
    assert_eq!(refused_processes(&r), Ok(vec![0, 1]));
    let mut dup = valid();
    dup.processes.push(dup.processes[0].clone());
    assert_eq!(refused_processes(&dup), Ok(vec![1]));
    // A bad pod refuses the processes that name it.
    let mut pods = valid();
    pods.processes[0].pod.as_mut().unwrap().qos_class = "Platinum".into();
    assert_eq!(refused_processes(&pods), Ok(vec![0]));
    // Report faults: identity, window.
    r.window_end_unix_ms = r.window_start_unix_ms - 1;
    assert!(matches!(
        refused_processes(&r),
        Err(InvalidReport::WindowReversed { .. })
    ));
}

/// Applies `edit` to a valid report and returns the refusal.
fn refused(edit: impl FnOnce(&mut pb::NodeReport)) -> InvalidReport {
    let mut r = valid();
    edit(&mut r);
    check_report(&r).expect_err("the edited report should be refused")
}

fn process(r: &mut pb::NodeReport) -> &mut pb::ProcessWindow {
    &mut r.processes[0]
}

#[test]
fn a_real_report_passes() {
    check_report(&valid()).unwrap();
}

#[test]
fn identity_and_sequence() {
    assert_eq!(refused(|r| r.node = None), InvalidReport::NoNode);
    assert_eq!(
        refused(|r| r.node.as_mut().unwrap().node_name.clear()),
        InvalidReport::Empty("node name")
    );
    assert_eq!(
        refused(|r| r.node.as_mut().unwrap().agent_instance.clear()),
        InvalidReport::Empty("agent instance")
    );
    assert!(matches!(
        refused(|r| r.node.as_mut().unwrap().node_name = "n".repeat(254)),
        InvalidReport::TooLong {
            field: "node.node_name",
            len: 254,
            max: 253
        }
    ));
    assert_eq!(
        refused(|r| r.node.as_mut().unwrap().zone = "us-east-1a\n".into()),
        InvalidReport::ControlCharacter { field: "node.zone" }
    );
    assert_eq!(refused(|r| r.sequence = 0), InvalidReport::ZeroSequence);
    assert!(matches!(
        refused(|r| r.sequence = u64::MAX),
        InvalidReport::SequenceOutOfRange(_)
    ));
    assert!(matches!(
        refused(|r| r.node.as_mut().unwrap().agent_start_unix_ms = NOW + 3_600_000),
        InvalidReport::OutOfRange {
            field: "node.agent_start_unix_ms",
            ..
        }
    ));
}

#[test]
fn timestamps() {
    assert!(matches!(
        refused(|r| r.window_end_unix_ms = r.window_start_unix_ms - 1),
        InvalidReport::WindowReversed { .. }
    ));
    assert!(matches!(
        refused(|r| {
            r.window_start_unix_ms = NOW + 3_600_000;
            r.window_end_unix_ms = NOW + 3_600_001;
        }),
        InvalidReport::WindowInFuture { .. }
    ));
    assert!(matches!(
        refused(|r| {
            r.window_start_unix_ms = NOW - 2 * 86_400_000;
            r.window_end_unix_ms = NOW - 2 * 86_400_000 + 5000;
        }),
        InvalidReport::WindowTooOld { .. }
    ));
    assert!(matches!(
        refused(|r| r.window_start_unix_ms = NOW - 7_200_000),
        InvalidReport::WindowTooLong(_)
    ));
    assert!(matches!(
        refused(|r| {
            r.window_start_unix_ms = 0;
            r.window_end_unix_ms = 1;
        }),
        InvalidReport::WindowTooOld { .. } | InvalidReport::OutOfRange { .. }
    ));
}

#[test]
fn process_fields() {
    assert_eq!(
        refused(|r| process(r).key = None),
        InvalidReport::NoProcessKey
    );
    assert_eq!(
        refused(|r| process(r).key.as_mut().unwrap().pid = u32::MAX),
        InvalidReport::BadPid(u32::MAX)
    );
    assert_eq!(
        refused(|r| {
            let p = process(r).clone();
            r.processes.push(p);
        }),
        InvalidReport::DuplicateProcess {
            pid: 42,
            start_ticks: 7
        }
    );
    assert_eq!(
        refused(|r| process(r).comm = "a\u{1b}[2Jb".into()),
        InvalidReport::ControlCharacter {
            field: "process.comm"
        }
    );
    assert!(matches!(
        refused(|r| process(r).cgroup_path = "/".repeat(5000)),
        InvalidReport::TooLong {
            field: "process.cgroup_path",
            ..
        }
    ));
    for bad in [f64::NAN, f64::INFINITY, -1.0, 1e9] {
        assert!(
            matches!(
                refused(|r| process(r).delta.as_mut().unwrap().cpu_seconds = bad),
                InvalidReport::OutOfRange {
                    field: "cpu_seconds",
                    ..
                }
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        refused(|r| process(r).delta.as_mut().unwrap().gc_pause_seconds = f64::NAN),
        InvalidReport::OutOfRange {
            field: "gc_pause_seconds",
            ..
        }
    ));
    assert_eq!(
        refused(|r| process(r).delta.as_mut().unwrap().mmap_calls = 5000),
        InvalidReport::DeltaAboveTotal {
            field: "mmap_calls",
            delta: 5000,
            total: 1000
        }
    );
    assert!(matches!(
        refused(|r| process(r).rss_bytes = u64::MAX),
        InvalidReport::OutOfRange {
            field: "process.rss_bytes",
            ..
        }
    ));
    assert!(matches!(
        refused(|r| process(r).verdict.as_mut().unwrap().confidence = 1.5),
        InvalidReport::OutOfRange { .. }
    ));
    assert!(matches!(
        refused(|r| process(r).verdict.as_mut().unwrap().reasons = vec!["r".into(); 100]),
        InvalidReport::TooLong { .. }
    ));
    assert!(matches!(
        refused(|r| process(r).thread_groups[0].cpu_seconds = -0.5),
        InvalidReport::OutOfRange { .. }
    ));
}

#[test]
fn non_utf8_text_is_refused() {
    // Encode a report, then corrupt the comm's bytes in place.
    let mut r = valid();
    process(&mut r).comm = "XXXX".into();
    let mut bytes = r.encode_to_vec();
    let at = bytes.windows(4).position(|w| w == b"XXXX").unwrap();
    bytes[at] = 0xff;
    let received = ReceivedReport::decode(Bytes::from(bytes)).unwrap();
    assert_eq!(
        check(&received, &Limits::default(), NOW),
        Ok(vec![RefusedProcess {
            index: 0,
            why: InvalidReport::NotUtf8("process.comm")
        }])
    );
    // The report without it still encodes and decodes.
    let kept = received.without_processes(&[0]).unwrap();
    assert!(kept.view.processes.is_empty());
    assert_eq!(kept.view.sequence, received.view.sequence);
}

fn pod(r: &mut pb::NodeReport) -> &mut pb::PodMetadata {
    process(r).pod.as_mut().unwrap()
}

#[test]
fn pod_fields_and_label_limits() {
    assert!(matches!(
        refused(|r| pod(r).namespace = "n".repeat(64)),
        InvalidReport::TooLong {
            field: "pod.namespace",
            ..
        }
    ));
    assert!(matches!(
        refused(|r| pod(r).qos_class = "Gold".into()),
        InvalidReport::BadQosClass(_)
    ));
    assert_eq!(
        refused(|r| {
            pod(r).labels.insert("app".into(), "v".repeat(64));
        }),
        InvalidReport::Limit {
            limit: "max-label-value-bytes",
            max: 63,
            actual: 64
        }
    );
    assert_eq!(
        refused(|r| {
            for i in 0..16 {
                pod(r).labels.insert(format!("k{i}"), "v".into());
            }
        }),
        InvalidReport::Limit {
            limit: "max-labels",
            max: 16,
            actual: 17
        }
    );
}

/// The same checks hold for a pod in the report's table (`pod_ref`), and a
/// reference past the table is refused.
#[test]
fn table_pods_are_checked_and_refs_must_land() {
    let to_table = |r: &mut pb::NodeReport| {
        let pod = process(r).pod.take().unwrap();
        r.pods.push(pod);
        process(r).pod_ref = 1;
    };
    check_report(&{
        let mut r = valid();
        to_table(&mut r);
        r
    })
    .expect("a report with a pod table passes");
    assert!(matches!(
        refused(|r| {
            to_table(r);
            r.pods[0].namespace = "n".repeat(64);
        }),
        InvalidReport::TooLong {
            field: "pod.namespace",
            ..
        }
    ));
    assert_eq!(
        refused(|r| {
            to_table(r);
            process(r).pod_ref = 2;
        }),
        InvalidReport::OutOfRange {
            field: "process.pod_ref",
            value: 2.0
        }
    );
    // An inline pod after the table does not make a dangling ref land.
    assert_eq!(
        refused(|r| {
            process(r).pod_ref = 1;
        }),
        InvalidReport::OutOfRange {
            field: "process.pod_ref",
            value: 1.0
        }
    );
    let mut r = valid();
    process(&mut r).pod = None;
    r.pods = vec![pb::PodMetadata::default(); 11];
    let limits = Limits {
        max_processes_per_report: 10,
        ..Limits::default()
    };
    assert_eq!(
        check_with(&r, &limits),
        Err(InvalidReport::Limit {
            limit: "max-processes-per-report",
            max: 10,
            actual: 11
        })
    );
}

#[test]
fn limits_name_themselves() {
    let mut r = valid();
    for pid in 100..110 {
        let mut p = r.processes[0].clone();
        p.key.as_mut().unwrap().pid = pid;
        p.container_id = format!("c{pid}");
        r.processes.push(p);
    }
    let limits = Limits {
        max_processes_per_report: 5,
        ..Limits::default()
    };
    let err = check_with(&r, &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "limit --max-processes-per-report (5) exceeded: 11"
    );
    let limits = Limits {
        max_workloads_per_report: 10,
        ..Limits::default()
    };
    assert_eq!(
        check_with(&r, &limits).unwrap_err(),
        InvalidReport::Limit {
            limit: "max-workloads-per-report",
            max: 10,
            actual: 11
        }
    );
}

/// The wire's GC CPU is the sum of its two parts; a process whose sum
/// disagrees is refused (verdicts read the parts, the sum is not believed).
#[test]
fn gc_cpu_seconds_must_be_the_sum_of_its_parts() {
    let agrees = |r: &mut pb::NodeReport| {
        let d = process(r).delta.as_mut().unwrap();
        d.gc_thread_cpu_seconds = 0.25;
        d.gc_stack_cpu_seconds = 0.125;
        d.gc_cpu_seconds = 0.375;
    };
    let mut r = valid();
    agrees(&mut r);
    check_report(&r).unwrap();
    let why = refused(|r| {
        agrees(r);
        process(r).delta.as_mut().unwrap().gc_cpu_seconds = 0.5;
    });
    assert!(
        matches!(why, InvalidReport::GcCpuNotItsParts { sum, parts } if sum == 0.5 && parts == 0.375),
        "{why}"
    );
    // A sum without parts is refused too: the parts are what is read.
    let why = refused(|r| process(r).delta.as_mut().unwrap().gc_cpu_seconds = 0.3);
    assert!(
        matches!(why, InvalidReport::GcCpuNotItsParts { .. }),
        "{why}"
    );
}

/// Runtime settings: the node's texts are bounded and the JVM's
/// percentages are percentages.
#[test]
fn runtime_settings_are_checked() {
    let jvm = |r: &mut pb::NodeReport| {
        process(r).settings = Some(pb::RuntimeSettings {
            jvm: Some(pb::JvmSettings {
                max_heap_bytes: 192 << 20,
                collector: "Parallel".into(),
                max_ram_percentage: 75.0,
                ..Default::default()
            }),
            ..Default::default()
        });
    };
    let mut r = valid();
    jvm(&mut r);
    check_report(&r).expect("real settings pass");
    let why = refused(|r| {
        jvm(r);
        let j = process(r).settings.as_mut().unwrap().jvm.as_mut().unwrap();
        j.max_ram_percentage = f64::NAN;
    });
    assert!(
        matches!(
            why,
            InvalidReport::OutOfRange {
                field: "process.settings.jvm.max_ram_percentage",
                ..
            }
        ),
        "{why}"
    );
    let why = refused(|r| {
        process(r).settings = Some(pb::RuntimeSettings {
            unknown_reason: "x".repeat(4096),
            ..Default::default()
        });
    });
    assert!(
        matches!(
            why,
            InvalidReport::TooLong {
                field: "process.settings.unknown_reason",
                ..
            }
        ),
        "{why}"
    );
}
