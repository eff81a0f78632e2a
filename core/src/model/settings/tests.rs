use super::{
    go::{parse_gogc, parse_gomemlimit},
    jvm::parse_size,
    *,
};

fn nul(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

fn parse(runtime: Runtime, cmdline: &[&str], environ: &[&str]) -> RuntimeSettings {
    let (cmdline, environ) = (nul(cmdline), nul(environ));
    RuntimeSettings::parse(
        runtime,
        ProcessText {
            cmdline: &cmdline,
            environ: &environ,
        },
    )
    .unwrap()
}

const MIB: u64 = 1 << 20;

#[test]
fn go_settings_from_the_environment() {
    let s = parse(
        Runtime::Go,
        &["/usr/local/bin/allocheavy", "-rate", "5"],
        &[
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=7f3c2a1b9d0e",
            "GOGC=150",
            "GOMEMLIMIT=300MiB",
            "GOMAXPROCS=1",
            "HOME=/root",
        ],
    );
    let g = s.go().unwrap();
    assert_eq!(g.gogc, Setting::new(Gogc::Percent(150), Source::Env));
    assert_eq!(
        g.gomemlimit_bytes,
        Setting::new(Some(300 * MIB), Source::Env)
    );
    assert_eq!(g.gomaxprocs, Setting::new(Some(1), Source::Env));
    assert_eq!(
        s.to_string(),
        "GOGC 150 (env) · GOMEMLIMIT 300 MiB (env) · GOMAXPROCS 1 (env)"
    );
}

#[test]
fn go_defaults_are_known_when_the_environment_was_read() {
    let s = parse(Runtime::Go, &["./server"], &["PATH=/bin", "HOME=/root"]);
    let g = s.go().unwrap();
    assert_eq!(g.gogc, Setting::new(Gogc::Percent(100), Source::Default));
    assert_eq!(g.gomemlimit_bytes, Setting::new(None, Source::Default));
    assert_eq!(g.gomaxprocs, Setting::new(None, Source::Default));
    assert_eq!(g.gogc_percent(), 100);
    assert!(g.caveats.is_empty());
}

#[test]
fn gogc_as_the_go_runtime_reads_it() {
    assert_eq!(parse_gogc("off"), Gogc::Off);
    assert_eq!(parse_gogc("-1"), Gogc::Off);
    assert_eq!(parse_gogc("0"), Gogc::Percent(0));
    assert_eq!(parse_gogc("250"), Gogc::Percent(250));
    // readGOGC: anything else is the default.
    assert_eq!(parse_gogc("fast"), Gogc::Percent(100));
    assert_eq!(parse_gogc(""), Gogc::Percent(100));
}

#[test]
fn gomemlimit_as_the_go_runtime_reads_it() {
    assert_eq!(parse_gomemlimit("off"), Some(None));
    assert_eq!(parse_gomemlimit("1048576"), Some(Some(MIB)));
    assert_eq!(parse_gomemlimit("512B"), Some(Some(512)));
    assert_eq!(parse_gomemlimit("64KiB"), Some(Some(64 << 10)));
    assert_eq!(parse_gomemlimit("300MiB"), Some(Some(300 * MIB)));
    assert_eq!(parse_gomemlimit("2GiB"), Some(Some(2 << 30)));
    assert_eq!(parse_gomemlimit("1TiB"), Some(Some(1 << 40)));
    // Go refuses these (SI units, lowercase, a sign, nothing).
    for bad in [
        "300MB",
        "300mib",
        "-1",
        "",
        "MiB",
        "1.5GiB",
        "99999999999TiB",
    ] {
        assert_eq!(parse_gomemlimit(bad), None, "{bad}");
    }
    // math.MaxInt64 is Go's own "no limit".
    assert_eq!(parse_gomemlimit("9223372036854775807"), Some(None));
}

#[test]
fn go_values_the_runtime_ignores_are_caveats() {
    let s = parse(
        Runtime::Go,
        &["./server"],
        &["GOGC=off", "GOMAXPROCS=0", "GOMEMLIMIT=1GB"],
    );
    let g = s.go().unwrap();
    assert_eq!(g.gogc, Setting::new(Gogc::Off, Source::Env));
    assert_eq!(g.gogc_percent(), 0);
    assert_eq!(g.gomaxprocs.value, None);
    assert_eq!(g.gomemlimit_bytes.value, None);
    assert_eq!(g.caveats.len(), 2, "{:?}", g.caveats);
}

#[test]
fn jvm_flags_from_the_command_line() {
    let s = parse(
        Runtime::Jvm,
        &[
            "java",
            "-Xmx192m",
            "-Xms64M",
            "-XX:+UseParallelGC",
            "-XX:MaxRAMPercentage=75.0",
            "-XX:-UseContainerSupport",
            "-cp",
            "/app",
            "Alloc",
            // The program's own arguments are not the JVM's.
            "-Xmx1g",
        ],
        &["PATH=/usr/bin", "JAVA_HOME=/opt/java/openjdk"],
    );
    let j = s.jvm().unwrap();
    assert_eq!(
        j.max_heap_bytes,
        Some(Setting::new(192 * MIB, Source::Flag))
    );
    assert_eq!(
        j.initial_heap_bytes,
        Some(Setting::new(64 * MIB, Source::Flag))
    );
    assert_eq!(
        j.collector,
        Some(Setting::new(JvmCollector::Parallel, Source::Flag))
    );
    assert_eq!(j.max_ram_percentage, Some(Setting::new(75.0, Source::Flag)));
    assert_eq!(
        j.use_container_support,
        Some(Setting::new(false, Source::Flag))
    );
    assert_eq!(j.heap, None);
}

#[test]
fn jvm_options_apply_in_the_jvms_order() {
    // JAVA_TOOL_OPTIONS, JDK_JAVA_OPTIONS, the command line, _JAVA_OPTIONS.
    let s = parse(
        Runtime::Jvm,
        &[
            "/opt/java/openjdk/bin/java",
            "-XX:MaxHeapSize=256m",
            "-jar",
            "app.jar",
            "-XX:+UseZGC",
        ],
        &[
            "JAVA_TOOL_OPTIONS=-Xmx128m -XX:+UseG1GC -XX:InitialRAMPercentage=10",
            "JDK_JAVA_OPTIONS=-XX:+UseSerialGC -Xms32m",
            "_JAVA_OPTIONS=-XX:InitialHeapSize=48m",
        ],
    );
    let j = s.jvm().unwrap();
    assert_eq!(
        j.max_heap_bytes,
        Some(Setting::new(256 * MIB, Source::Flag))
    );
    assert_eq!(
        j.collector,
        Some(Setting::new(JvmCollector::Serial, Source::Env))
    );
    assert_eq!(
        j.initial_heap_bytes,
        Some(Setting::new(48 * MIB, Source::Env))
    );
    assert_eq!(
        j.initial_ram_percentage,
        Some(Setting::new(10.0, Source::Env))
    );
    // What the JVM would refuse to start with is not a setting.
    let refused = parse(
        Runtime::Jvm,
        &[
            "java",
            "-XX:MaxRAMPercentage=NaN",
            "-XX:InitialRAMPercentage=150",
            "M",
        ],
        &[],
    );
    let refused = refused.jvm().unwrap();
    assert_eq!(
        (refused.max_ram_percentage, refused.initial_ram_percentage),
        (None, None)
    );
    // JDK_JAVA_OPTIONS is the `java` launcher's, not the JVM's.
    let embedded = parse(
        Runtime::Jvm,
        &["/usr/bin/app-with-jni"],
        &["JDK_JAVA_OPTIONS=-Xmx1g"],
    );
    assert_eq!(embedded.jvm().unwrap().max_heap_bytes, None);
}

#[test]
fn jvm_sizes() {
    assert_eq!(parse_size("1024"), Some(1024));
    assert_eq!(parse_size("512k"), Some(512 << 10));
    assert_eq!(parse_size("192m"), Some(192 * MIB));
    assert_eq!(parse_size("2G"), Some(2 << 30));
    assert_eq!(parse_size("1t"), Some(1 << 40));
    assert_eq!(parse_size("m"), None);
    assert_eq!(parse_size("1.5g"), None);
    assert_eq!(parse_size(""), None);
}

#[test]
fn jvm_collector_and_heap_from_hsperfdata_counters() {
    // A JDK 17 JVM started with -XX:+UseG1GC -Xmx128m (testdata/jdk17-g1.snap
    // of tally-node).
    let g1 = [
        ("sun.gc.generation.0.capacity", 62914584),
        ("sun.gc.generation.0.maxCapacity", 134217752),
        ("sun.gc.generation.1.capacity", 68157448),
        ("sun.gc.generation.1.maxCapacity", 134217736),
    ];
    let collector = JvmCollector::from_hsperfdata(
        Some("GarbageFirst"),
        &[
            "G1 young collection pauses",
            "G1 full collection pauses",
            "G1 concurrent cycle pauses",
        ],
    );
    assert_eq!(collector, Some(JvmCollector::G1));
    let long = |name: &str| g1.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let heap = JvmHeap::from_hsperfdata(long, collector).unwrap();
    // Each G1 generation may take the whole heap: the largest is it.
    assert_eq!(heap.max_capacity_bytes, 134217752);
    assert_eq!(heap.capacity_bytes, 62914584 + 68157448);
    // Parallel splits the heap: the generations add up.
    let parallel = [
        ("sun.gc.generation.0.capacity", 22020096),
        ("sun.gc.generation.0.maxCapacity", 67108864),
        ("sun.gc.generation.1.capacity", 44564480),
        ("sun.gc.generation.1.maxCapacity", 134217728),
    ];
    let long = |name: &str| parallel.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let heap = JvmHeap::from_hsperfdata(long, Some(JvmCollector::Parallel)).unwrap();
    assert_eq!(heap.max_capacity_bytes, 192 * MIB);
    assert_eq!(
        JvmCollector::from_hsperfdata(None, &["ZGC minor collection pauses"]),
        Some(JvmCollector::Z)
    );
    assert_eq!(
        JvmCollector::from_hsperfdata(Some("Copy:MSC"), &[]),
        Some(JvmCollector::Serial)
    );
    assert_eq!(JvmHeap::from_hsperfdata(|_| None, None), None);
}

#[test]
fn jvm_flag_wins_over_hsperfdata_collector() {
    let mut j = parse(Runtime::Jvm, &["java", "-XX:+UseParallelGC", "Main"], &[])
        .jvm()
        .cloned()
        .unwrap();
    j.with_hsperfdata(Some(JvmCollector::G1), None);
    assert_eq!(j.collector.unwrap().source, Source::Flag);
    let mut k = parse(Runtime::Jvm, &["java", "Main"], &[])
        .jvm()
        .cloned()
        .unwrap();
    k.with_hsperfdata(
        Some(JvmCollector::Serial),
        Some(JvmHeap {
            capacity_bytes: 64 * MIB,
            max_capacity_bytes: 192 * MIB,
        }),
    );
    assert_eq!(
        k.collector,
        Some(Setting::new(JvmCollector::Serial, Source::Hsperfdata))
    );
    assert_eq!(
        k.max_heap(),
        Some(Setting::new(192 * MIB, Source::Hsperfdata))
    );
    assert_eq!(
        RuntimeSettings::Jvm(k).to_string(),
        "-Xmx not set · SerialGC (hsperfdata) · heap 64 MiB/192 MiB (hsperfdata)"
    );
}

#[test]
fn node_heap_flags() {
    let s = parse(
        Runtime::Node,
        &[
            "node",
            "--max_old_space_size=200",
            "server.js",
            "--max-old-space-size=999",
        ],
        &["NODE_OPTIONS=--max-old-space-size=100 --max-semi-space-size 16"],
    );
    let n = s.node().unwrap();
    assert_eq!(n.max_old_space_mib, Some(Setting::new(200, Source::Flag)));
    assert_eq!(n.max_semi_space_mib, Some(Setting::new(16, Source::Env)));
    let defaults = parse(Runtime::Node, &["node", "app.js"], &[]);
    assert_eq!(defaults.node().unwrap(), &NodeSettings::default());
}

#[test]
fn other_runtimes_have_none() {
    let empty = ProcessText {
        cmdline: b"",
        environ: b"",
    };
    assert_eq!(RuntimeSettings::parse(Runtime::Native, empty), None);
    assert_eq!(
        RuntimeSettings::unknown("environ: permission denied").to_string(),
        "settings unknown: environ: permission denied"
    );
}

#[test]
fn settings_survive_the_wire() {
    let all = [
        parse(
            Runtime::Go,
            &["x"],
            &["GOGC=off", "GOMEMLIMIT=1GiB", "GOMAXPROCS=x"],
        ),
        parse(Runtime::Go, &["x"], &[]),
        parse(
            Runtime::Jvm,
            &[
                "java",
                "-Xmx192m",
                "-Xms1g",
                "-XX:+UseZGC",
                "-XX:MaxRAMPercentage=50",
                "-XX:InitialRAMPercentage=5.5",
                "-XX:+UseContainerSupport",
                "M",
            ],
            &[],
        ),
        parse(Runtime::Jvm, &["java", "M"], &[]),
        parse(Runtime::Node, &["node", "--max-old-space-size=200"], &[]),
        RuntimeSettings::unknown("gone"),
    ];
    for s in all {
        assert_eq!(RuntimeSettings::from_proto(&s.to_proto()), Some(s.clone()));
    }
    let mut j = JvmSettings::default();
    j.with_hsperfdata(
        Some(JvmCollector::G1),
        Some(JvmHeap {
            capacity_bytes: 1,
            max_capacity_bytes: 2,
        }),
    );
    let j = RuntimeSettings::Jvm(j);
    assert_eq!(RuntimeSettings::from_proto(&j.to_proto()), Some(j));
    assert_eq!(
        RuntimeSettings::from_proto(&tally_proto::RuntimeSettings::default()),
        None
    );
}
