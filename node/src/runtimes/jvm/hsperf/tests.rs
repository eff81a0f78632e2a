use super::*;
use crate::test_support::jvm as testjvm;
use std::time::Duration;

const JDK17_G1: &[u8] = include_bytes!("../testdata/jdk17-g1.hsperf");
const JDK17_G1_SNAP: &str = include_str!("../testdata/jdk17-g1.snap");
const JDK25_ZGC: &[u8] = include_bytes!("../testdata/jdk25-zgc.hsperf");
const JDK25_ZGC_SNAP: &str = include_str!("../testdata/jdk25-zgc.snap");

/// Every counter `jstat -J-Djstat.showUnsupported=true -snap <pid>`
/// printed for the same JVM a moment after the file was copied (the
/// JVM was asleep, so nothing GC-related moved), against the parse.
fn check_against_jstat(data: &PerfData, snap: &str) -> usize {
    let mut compared = 0;
    for line in snap.lines() {
        let Some((name, want)) = line.split_once('=') else {
            continue;
        };
        // jstat's pseudo-counters from the prologue.
        if let Some(field) = name.strip_prefix("sun.perfdata.") {
            match field {
                "majorVersion" => assert_eq!(want, data.major_version.to_string()),
                "minorVersion" => assert_eq!(want, data.minor_version.to_string()),
                "timestamp" => assert_eq!(want, data.mod_time_stamp.to_string()),
                _ => {}
            }
            continue;
        }
        let Some(got) = data.get(name) else {
            panic!("jstat shows {name}, the parse has no such counter");
        };
        match got {
            Value::String(s) => assert_eq!(format!("\"{s}\""), want, "{name}"),
            Value::Long(v) => {
                // Times and tick counters keep running while the JVM
                // sleeps; GC counters do not.
                let moving = [
                    "Time",
                    "time",
                    "tick",
                    "Tick",
                    "sun.os.hrt.ticks",
                    "sun.threads",
                    "sun.rt.safepoint",
                    "sun.ci",
                    "sun.cls",
                    "sun.urlClassLoader",
                    "sun.zip",
                    "java.cls",
                    "sun.perfdata",
                    "sun.rt",
                ];
                if !moving.iter().any(|m| name.contains(m)) || name.starts_with("sun.gc.collector")
                {
                    assert_eq!(v.to_string(), want, "{name}");
                }
            }
            other => panic!("{name}: {other:?}"),
        }
        compared += 1;
    }
    compared
}

#[test]
fn jdk17_g1_fixture() {
    let data = parse(JDK17_G1).unwrap();
    assert_eq!((data.major_version, data.minor_version), (2, 0));
    assert_eq!(data.counters.len(), 187, "num_entries of the prologue");
    assert!(check_against_jstat(&data, JDK17_G1_SNAP) > 180);
    assert_eq!(
        data.string("java.property.java.vm.version"),
        Some("17.0.15+6-Debian-1deb12u1")
    );
    assert_eq!(data.string("sun.gc.policy.name"), Some("GarbageFirst"));
    assert_eq!(data.long("sun.os.hrt.frequency"), Some(1_000_000_000));

    let gc = data.gc_counters().unwrap();
    // The JVM's -Xlog:gc had 123 "Pause" lines: 121 young pauses, 2
    // Remark/Cleanup, no full.
    assert_eq!(gc.pauses, 123);
    assert_eq!(
        gc.collections, None,
        "G1's concurrent cycles have no counter"
    );
    assert_eq!(
        gc.per_collector
            .iter()
            .map(|(n, i, _)| (n.as_str(), *i))
            .collect::<Vec<_>>(),
        vec![
            ("G1 young collection pauses", 121),
            ("G1 full collection pauses", 0),
            ("G1 concurrent cycle pauses", 2),
        ]
    );
    assert!((gc.per_collector[0].2 - 0.294_808_247).abs() < 1e-9);
    assert!((gc.gc_time_seconds - (294_808_247.0 + 656_403.0) / 1e9).abs() < 1e-9);
}

#[test]
fn jdk25_zgc_fixture_has_sparse_collectors() {
    let data = parse(JDK25_ZGC).unwrap();
    assert!(check_against_jstat(&data, JDK25_ZGC_SNAP) > 140);
    assert_eq!(
        data.string("java.property.java.vm.version"),
        Some("25.0.3+9-LTS")
    );
    let gc = data.gc_counters().unwrap();
    assert_eq!(
        gc.per_collector
            .iter()
            .map(|(n, i, _)| (n.as_str(), *i))
            .collect::<Vec<_>>(),
        vec![
            ("ZGC minor collection pauses", 683),
            ("ZGC major collection pauses", 109)
        ]
    );
    assert_eq!(gc.pauses, 792);
    assert_eq!(gc.collections, None);
    assert!((gc.gc_time_seconds - (4_663_115.0 + 803_498.0) / 1e9).abs() < 1e-9);
}

/// A perf-data buffer with these (name, type, units, vector, data)
/// entries, in either byte order.
fn synth(big_endian: bool, entries: &[(&str, u8, u8, u32, Vec<u8>)]) -> Vec<u8> {
    let i32b = |v: i32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut body = Vec::new();
    for (name, ty, units, vector, data) in entries {
        let name_off = ENTRY_HEADER_LEN;
        let data_off = (name_off + name.len() + 1).next_multiple_of(8);
        let len = (data_off + data.len()).next_multiple_of(8);
        let mut e = Vec::new();
        e.extend_from_slice(&i32b(len as i32));
        e.extend_from_slice(&i32b(name_off as i32));
        e.extend_from_slice(&i32b(*vector as i32));
        e.extend_from_slice(&[*ty, 0, *units, 1]);
        e.extend_from_slice(&i32b(data_off as i32));
        e.extend_from_slice(name.as_bytes());
        e.resize(data_off, 0);
        e.extend_from_slice(data);
        e.resize(len, 0);
        body.extend(e);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[if big_endian { 0 } else { 1 }, 2, 0, 1]);
    out.extend_from_slice(&i32b((PROLOGUE_LEN + body.len()) as i32));
    out.extend_from_slice(&i32b(0));
    out.extend_from_slice(&if big_endian {
        7i64.to_be_bytes()
    } else {
        7i64.to_le_bytes()
    });
    out.extend_from_slice(&i32b(PROLOGUE_LEN as i32));
    out.extend_from_slice(&i32b(entries.len() as i32));
    out.extend(body);
    // The rest of the mapped file is zeros.
    out.resize(out.len() + 64, 0);
    out
}

fn long(v: i64, big_endian: bool) -> Vec<u8> {
    if big_endian {
        v.to_be_bytes().to_vec()
    } else {
        v.to_le_bytes().to_vec()
    }
}

fn gc_entries(big_endian: bool) -> Vec<(&'static str, u8, u8, u32, Vec<u8>)> {
    vec![
        (
            "sun.os.hrt.frequency",
            b'J',
            6,
            0,
            long(1_000_000, big_endian),
        ),
        (
            "sun.gc.collector.0.name",
            b'B',
            UNITS_STRING,
            32,
            b"Copy\0".iter().copied().chain([0; 27]).collect(),
        ),
        (
            "sun.gc.collector.0.invocations",
            b'J',
            4,
            0,
            long(10, big_endian),
        ),
        (
            "sun.gc.collector.0.time",
            b'J',
            3,
            0,
            long(2_500_000, big_endian),
        ),
        (
            "sun.gc.collector.10.invocations",
            b'J',
            4,
            0,
            long(3, big_endian),
        ),
        (
            "sun.gc.collector.10.time",
            b'J',
            3,
            0,
            long(500_000, big_endian),
        ),
        (
            "sun.gc.collector.2.name",
            b'B',
            UNITS_STRING,
            4,
            b"MSC\0".to_vec(),
        ),
        (
            "sun.gc.collector.2.invocations",
            b'J',
            4,
            0,
            long(-5, big_endian),
        ),
        ("sun.other.bytes", b'B', 1, 3, vec![1, 2, 3]),
        ("sun.other.int", b'I', 1, 0, vec![0; 4]),
    ]
}

#[test]
fn synthetic_buffers_in_both_byte_orders() {
    for big_endian in [false, true] {
        let data = parse(&synth(big_endian, &gc_entries(big_endian))).unwrap();
        assert_eq!(data.mod_time_stamp, 7);
        assert_eq!(
            data.get("sun.other.bytes"),
            Some(&Value::Bytes(vec![1, 2, 3]))
        );
        assert_eq!(
            data.get("sun.other.int"),
            Some(&Value::Other {
                data_type: b'I',
                vector_length: 0
            })
        );
        let gc = data.gc_counters().unwrap();
        // Numeric order of indices (2 before 10); a nameless collector
        // is named by index; negative counts are 0.
        assert_eq!(
            gc.per_collector,
            vec![
                ("Copy".to_string(), 10, 2.5),
                ("MSC".to_string(), 0, 0.0),
                ("collector 10".to_string(), 3, 0.5),
            ]
        );
        assert_eq!(gc.pauses, 13);
        assert_eq!(
            gc.collections, None,
            "Copy and MSC are not named as 17 and 25 name them"
        );
        assert!((gc.gc_time_seconds - 3.0).abs() < 1e-12);
    }
}

#[test]
fn collections_only_where_one_pause_is_one_collection() {
    let with = |names: &[&'static str]| {
        let mut entries = vec![(
            "sun.os.hrt.frequency".to_owned(),
            b'J',
            6,
            0,
            long(1_000_000_000, false),
        )];
        for (n, name) in names.iter().enumerate() {
            let mut bytes = name.as_bytes().to_vec();
            bytes.push(0);
            let len = bytes.len() as u32;
            entries.push((
                format!("sun.gc.collector.{n}.name"),
                b'B',
                UNITS_STRING,
                len,
                bytes,
            ));
            entries.push((
                format!("sun.gc.collector.{n}.invocations"),
                b'J',
                4,
                0,
                long(10 + n as i64, false),
            ));
        }
        let entries: Vec<(&str, u8, u8, u32, Vec<u8>)> = entries
            .iter()
            .map(|(n, t, u, v, d)| (n.as_str(), *t, *u, *v, d.clone()))
            .collect();
        parse(&synth(false, &entries))
            .unwrap()
            .gc_counters()
            .unwrap()
    };
    for kind in ["Parallel", "Serial"] {
        let young = format!("{kind} young collection pauses").leak();
        let full = format!("{kind} full collection pauses").leak();
        let gc = with(&[young, full]);
        assert_eq!((gc.pauses, gc.collections), (21, Some(21)), "{kind}");
    }
    for names in [
        &[
            "G1 young collection pauses",
            "G1 full collection pauses",
            "G1 concurrent cycle pauses",
        ][..],
        &["ZGC minor collection pauses", "ZGC major collection pauses"],
        &["Z concurrent cycle pauses"],
        &["Shenandoah partial", "Shenandoah full"],
    ] {
        assert_eq!(with(names).collections, None, "{names:?}");
    }
}

#[test]
fn missing_gc_counters() {
    let no_freq = synth(
        false,
        &[("sun.gc.collector.0.invocations", b'J', 4, 0, long(1, false))],
    );
    assert!(matches!(
        parse(&no_freq).unwrap().gc_counters(),
        Err(HsperfError::Missing("sun.os.hrt.frequency"))
    ));
    let no_gc = synth(
        false,
        &[("sun.os.hrt.frequency", b'J', 6, 0, long(1, false))],
    );
    assert!(matches!(
        parse(&no_gc).unwrap().gc_counters(),
        Err(HsperfError::Missing(_))
    ));
    let zero = synth(
        false,
        &[("sun.os.hrt.frequency", b'J', 6, 0, long(0, false))],
    );
    assert!(parse(&zero).unwrap().gc_counters().is_err());
    let empty = synth(false, &[]);
    assert!(parse(&empty).unwrap().counters.is_empty());
}

#[test]
fn prologue_errors() {
    assert!(matches!(parse(&[]), Err(HsperfError::Short(0))));
    assert!(matches!(parse(&[0; 64]), Err(HsperfError::Magic(_))));
    let good = synth(false, &gc_entries(false));
    let mut bad = good.clone();
    bad[4] = 7;
    assert!(matches!(parse(&bad), Err(HsperfError::ByteOrder(7))));
    let mut bad = good.clone();
    bad[5] = 1;
    assert!(matches!(parse(&bad), Err(HsperfError::Version(1, 0))));
    let mut bad = good.clone();
    bad[7] = 0;
    assert!(matches!(parse(&bad), Err(HsperfError::NotAccessible)));
    // Entry offset inside the prologue, or negative.
    let mut bad = good.clone();
    bad[24..28].copy_from_slice(&8i32.to_le_bytes());
    assert!(matches!(parse(&bad), Err(HsperfError::Prologue(_))));
    let mut bad = good.clone();
    bad[24..28].copy_from_slice(&(-1i32).to_le_bytes());
    assert!(matches!(parse(&bad), Err(HsperfError::Prologue(_))));
    // More entries than there are.
    let mut bad = good.clone();
    bad[28..32].copy_from_slice(&i32::MAX.to_le_bytes());
    assert!(matches!(parse(&bad), Err(HsperfError::Entry { .. })));
    // `used` cuts the last entry off.
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&((good.len() - 64 - 8) as i32).to_le_bytes());
    assert!(matches!(
        parse(&bad),
        Err(HsperfError::Entry { index: 9, .. })
    ));
}

#[test]
fn entry_errors() {
    let one = |e: (&str, u8, u8, u32, Vec<u8>)| synth(false, &[e]);
    let base = one(("a.b", b'J', 4, 0, long(1, false)));
    let at = PROLOGUE_LEN;
    let set = |field: usize, v: i32| {
        let mut b = base.clone();
        b[at + field..at + field + 4].copy_from_slice(&v.to_le_bytes());
        b
    };
    for (what, bad) in [
        ("length 0", set(0, 0)),
        ("length 19", set(0, 19)),
        ("length negative", set(0, -8)),
        ("length huge", set(0, i32::MAX)),
        ("name in header", set(4, 4)),
        ("name past entry", set(4, 4096)),
        ("name negative", set(4, -1)),
        ("vector negative", set(8, -1)),
        ("vector huge", set(8, i32::MAX)),
        ("data in header", set(16, 0)),
        ("data past entry", set(16, 1 << 20)),
        ("data negative", set(16, i32::MIN)),
    ] {
        assert!(
            matches!(parse(&bad), Err(HsperfError::Entry { .. })),
            "{what}: {:?}",
            parse(&bad)
        );
    }
    let mut unknown = base.clone();
    unknown[at + 12] = b'Q';
    assert!(parse(&unknown).is_err());
    // A name without its NUL: the name runs to the end of the entry.
    let mut no_nul = one(("abcdefghijklmnopqrstuvwxyz", b'B', UNITS_STRING, 0, vec![]));
    let entry_len = i32::from_le_bytes(no_nul[at..at + 4].try_into().unwrap()) as usize;
    no_nul[at + 16..at + 20].copy_from_slice(&20i32.to_le_bytes());
    for b in &mut no_nul[at + 20..at + entry_len] {
        *b = b'x';
    }
    assert!(parse(&no_nul).is_err());
}

#[test]
fn truncations_and_corruptions_never_panic() {
    let mut inputs = vec![JDK17_G1.to_vec(), synth(true, &gc_entries(true))];
    inputs.push(synth(false, &gc_entries(false)));
    for input in &inputs {
        for len in (0..input.len()).step_by(7) {
            let _ = parse(&input[..len]);
        }
    }
    // Corrupt the prologue and the first entries byte by byte; the
    // fixture's later entries are like the first.
    for input in &inputs {
        for i in 0..input.len().min(1024) {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = input.clone();
                bad[i] = v;
                if let Ok(d) = parse(&bad) {
                    let _ = d.gc_counters();
                }
            }
        }
    }
    // Cheap pseudo-random noise over the whole fixture.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bad = JDK17_G1.to_vec();
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % bad.len() as u64) as usize;
        bad[i] = (x >> 32) as u8;
        let _ = parse(&bad);
    }
}

#[test]
fn status_fields() {
    let status = "Name:\tjava\nUid:\t1000\t1001\t1000\t1000\nNSpid:\t48213\t1\n";
    assert_eq!(nspid_and_euid(status), (Some(1), Some(1001)));
    let host = "Uid:\t0\t0\t0\t0\nNSpid:\t4242\n";
    assert_eq!(nspid_and_euid(host), (Some(4242), Some(0)));
    assert_eq!(nspid_and_euid("Name: x\n"), (None, None));
    assert_eq!(nspid_and_euid("NSpid:\nUid:\n"), (None, None));
}

#[test]
fn find_file_in_a_fake_proc() {
    let root = tempfile::tempdir().unwrap();
    let proc = root.path().join("proc");
    let pid_dir = proc.join("4242");
    let tmp = pid_dir.join("root").join("tmp");
    std::fs::create_dir_all(tmp.join("hsperfdata_app")).unwrap();
    std::fs::create_dir_all(tmp.join("hsperfdata_other")).unwrap();
    std::fs::create_dir_all(tmp.join("not_hsperf")).unwrap();
    std::fs::write(tmp.join("not_hsperf").join("1"), b"x").unwrap();
    // In its container the JVM is pid 1.
    std::fs::write(
        pid_dir.join("status"),
        "Uid:\t0\t0\t0\t0\nNSpid:\t4242\t1\n",
    )
    .unwrap();
    assert_eq!(find_file(&proc, 4242), None);
    std::fs::write(tmp.join("hsperfdata_app").join("1"), JDK17_G1).unwrap();
    // The host pid is not the file's name.
    std::fs::write(tmp.join("hsperfdata_other").join("4242"), JDK17_G1).unwrap();
    let found = find_file(&proc, 4242).unwrap();
    assert_eq!(found, tmp.join("hsperfdata_app").join("1"));
    assert_eq!(read(&found).unwrap().gc_counters().unwrap().pauses, 123);
    assert_eq!(read_gc_counters(&proc, 4242).unwrap().unwrap().pauses, 123);
    // A symlink is not followed.
    std::fs::remove_file(&found).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &found).unwrap();
    assert_eq!(find_file(&proc, 4242), None);
    // No process, no file.
    assert_eq!(find_file(&proc, 1), None);
    assert!(read_gc_counters(&proc, 1).is_none());
}

/// Pause lines of `-Xlog:gc` (G1, Parallel, Serial).
fn pauses_in_log(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" Pause "))
        .count() as u64
}

/// Against a live JVM: the counters of its file equal its own log.
fn live(major: u32, flags: &[&str]) {
    let Some(jvm) = testjvm::start(major, flags, 1500) else {
        return;
    };
    let pid = jvm.child.id();
    let path = find_file(Path::new("/proc"), pid).expect("a perf-data file");
    // A concurrent cycle can still be finishing; wait until the file and
    // the log agree twice in a row, 300 ms apart.
    let mut last = None;
    for _ in 0..40 {
        let gc = read(&path).unwrap().gc_counters().unwrap();
        let now = (gc.pauses, pauses_in_log(&jvm.gc_log()));
        if last == Some(now) && now.0 == now.1 {
            break;
        }
        last = Some(now);
        std::thread::sleep(Duration::from_millis(300));
    }
    let gc = read(&path).unwrap().gc_counters().unwrap();
    let log_pauses = pauses_in_log(&jvm.gc_log());
    eprintln!("JDK {major} {flags:?}: {gc:?}; -Xlog:gc pauses {log_pauses}");
    assert!(gc.pauses > 0, "{gc:?}");
    assert_eq!(gc.pauses, log_pauses);
    assert!(gc.gc_time_seconds > 0.0);
}

/// The JVM in its own pid and mount namespaces with a private /tmp, as
/// in a container: its file is named by its pid there (1), and is
/// reachable only through /proc/<pid>/root.
#[test]
fn live_in_a_container_like_namespace() {
    let wrapper = [
        "unshare",
        "--pid",
        "--mount-proc",
        "--kill-child",
        "sh",
        "-c",
        "mount -t tmpfs tmpfs /tmp && exec \"$@\"",
        "sh",
    ];
    // The test's own files must not be under the hidden /tmp.
    let Some(jvm) = testjvm::start_in(&wrapper, Some("/var/tmp"), 17, &["-XX:+UseSerialGC"], 500)
    else {
        return;
    };
    // java is unshare's child.
    let unshare = jvm.child.id().to_string();
    let java = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.split_whitespace().eq(["PPid:", unshare.as_str()]))
            })
        })
        .expect("java under unshare");
    let status = std::fs::read_to_string(format!("/proc/{java}/status")).unwrap();
    assert_eq!(nspid_and_euid(&status).0, Some(1), "{status}");
    let path = find_file(Path::new("/proc"), java).expect("a perf-data file");
    assert_eq!(
        path,
        Path::new(&format!("/proc/{java}/root/tmp/hsperfdata_root/1"))
    );
    // Not visible from the host's /tmp.
    assert!(
        !Path::new("/tmp/hsperfdata_root/1").exists() || {
            // Unless another JVM here is pid 1 in its namespace; then it must
            // be another file.
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/tmp/hsperfdata_root/1").unwrap().ino()
                != std::fs::metadata(&path).unwrap().ino()
        }
    );
    let gc = read(&path).unwrap().gc_counters().unwrap();
    assert!(gc.pauses > 0);
    assert_eq!(gc.pauses, pauses_in_log(&jvm.gc_log()), "{gc:?}");
}

#[test]
fn live_jdk17_g1() {
    live(17, &["-XX:+UseG1GC"]);
}

#[test]
fn live_jdk25_parallel() {
    live(25, &["-XX:+UseParallelGC"]);
}
