//! `current_settings`: what the recommender is told of a workload.
use super::*;
use crate::{
    gc::Runtime,
    model::settings::{JvmCollector, ProcessText, RuntimeSettings},
};

fn workload(settings: Option<RuntimeSettings>) -> pb::Workload {
    pb::Workload {
        pod: Some(pb::PodMetadata {
            cpu_request_millicores: 500,
            memory_limit_bytes: 512 << 20,
            ..Default::default()
        }),
        settings: settings.map(|s| s.to_proto()),
        ..Default::default()
    }
}

fn parsed(runtime: Runtime, cmdline: &str, environ: &str) -> Option<RuntimeSettings> {
    let nul = |s: &str| s.replace(' ', "\0").into_bytes();
    RuntimeSettings::parse(
        runtime,
        ProcessText {
            cmdline: &nul(cmdline),
            environ: &nul(environ),
        },
    )
}

#[test]
fn go_defaults_are_known_once_read_and_unknown_otherwise() {
    let read = current_settings(&workload(parsed(Runtime::Go, "./svc", "HOME=/root")));
    assert_eq!(read.gogc, Some(100));
    assert_eq!(read.gomemlimit_bytes, None);
    assert_eq!(read.request_cpu_cores, Some(0.5));
    assert_eq!(read.limit_memory_bytes, Some(512 << 20));
    let set = current_settings(&workload(parsed(
        Runtime::Go,
        "./svc",
        "GOGC=off GOMEMLIMIT=300MiB",
    )));
    assert_eq!((set.gogc, set.gomemlimit_bytes), (Some(0), Some(300 << 20)));
    let unread = current_settings(&workload(Some(RuntimeSettings::unknown("gone"))));
    assert_eq!(unread.gogc, None);
    assert_eq!(current_settings(&workload(None)).gogc, None);
}

#[test]
fn jvm_heap_from_xmx_else_hsperfdata() {
    let flags = current_settings(&workload(parsed(
        Runtime::Jvm,
        "java -Xmx192m -XX:+UseParallelGC Main",
        "",
    )));
    assert_eq!(flags.jvm_max_heap_bytes, Some(192 << 20));
    assert_eq!(flags.jvm_collector, Some(JvmCollector::Parallel));
    let Some(RuntimeSettings::Jvm(mut jvm)) = parsed(Runtime::Jvm, "java Main", "") else {
        unreachable!()
    };
    jvm.with_hsperfdata(
        Some(JvmCollector::G1),
        Some(crate::model::settings::JvmHeap {
            capacity_bytes: 64 << 20,
            max_capacity_bytes: 256 << 20,
        }),
    );
    let own = current_settings(&workload(Some(RuntimeSettings::Jvm(jvm))));
    assert_eq!(own.jvm_max_heap_bytes, Some(256 << 20));
    assert_eq!(own.jvm_collector, Some(JvmCollector::G1));
}

#[test]
fn node_old_space() {
    let n = current_settings(&workload(parsed(
        Runtime::Node,
        "node --max-old-space-size=200 app.js",
        "",
    )));
    assert_eq!(n.node_max_old_space_mib, Some(200));
}
