use super::*;
use crate::test_support::elf::{SHT_PROGBITS, SHT_STRTAB, SHT_SYMTAB, Section, build};
use crate::test_support::jvm as testjvm;

// Recorded on the development VM from real processes
// (`readlink /proc/<pid>/exe`, `/proc/<pid>/maps`), trimmed to the lines
// that matter plus some neighbours.
const JDK17_EXE: &str = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java";
const JDK17_MAPS: &str = "\
55e5c8e81000-55e5c8e82000 r--p 00000000 fe:00 314800                     /usr/lib/jvm/java-17-openjdk-amd64/bin/java
55e5c8e82000-55e5c8e83000 r-xp 00001000 fe:00 314800                     /usr/lib/jvm/java-17-openjdk-amd64/bin/java
55e5d90dc000-55e5d9123000 rw-p 00000000 00:00 0                          [heap]
687400000-6c4c00000 rw-p 00000000 00:00 0 
7f060ea00000-7f060ec51000 r--p 00000000 fe:00 315160                     /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so
7f060ec51000-7f060f9a4000 r-xp 00251000 fe:00 315160                     /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so
7f060fcdd000-7f060fd12000 rw-p 012dd000 fe:00 315160                     /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so
7f0982bee000-7f0982bf0000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";
const JDK25_EXE: &str = "/usr/lib/jvm/temurin-25-jdk-amd64/bin/java";
const JDK25_MAPS: &str = "\
7f2dcc400000-7f2dcc6e3000 r--p 00000000 fe:00 315646                     /usr/lib/jvm/temurin-25-jdk-amd64/lib/server/libjvm.so
7f2dcc6e3000-7f2dcd76f000 r-xp 002e3000 fe:00 315646                     /usr/lib/jvm/temurin-25-jdk-amd64/lib/server/libjvm.so
7f2dcdb6b000-7f2dcdb96000 rw-p 0176b000 fe:00 315646                     /usr/lib/jvm/temurin-25-jdk-amd64/lib/server/libjvm.so
";
const NODE_EXE: &str = "/usr/bin/node";
const NODE_MAPS: &str = "\
00400000-00b6f000 r--p 00000000 fe:00 247584                             /usr/bin/node
00b72000-025fe000 r-xp 00772000 fe:00 247584                             /usr/bin/node
7f3b2c000000-7f3b2c021000 rw-p 00000000 00:00 0 
7f3b31a00000-7f3b31a9a000 r--p 00000000 fe:00 247290                     /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30
7f3b31e28000-7f3b31e4e000 r--p 00000000 fe:00 247241                     /usr/lib/x86_64-linux-gnu/libc.so.6
";
const PYTHON_EXE: &str = "/usr/bin/python3.11";
const PYTHON_MAPS: &str = "\
00400000-0041f000 r--p 00000000 fe:00 247706                             /usr/bin/python3.11
0041f000-006d2000 r-xp 0001f000 fe:00 247706                             /usr/bin/python3.11
006d2000-00945000 r--p 002d2000 fe:00 247706                             /usr/bin/python3.11
";
const GO_EXE: &str = "/tmp/gcw/goalloc/goalloc";
const GO_MAPS: &str = "\
00400000-00464000 r-xp 00000000 fe:00 10052336                           /tmp/gcw/goalloc/goalloc
00464000-004d8000 r--p 00064000 fe:00 10052336                           /tmp/gcw/goalloc/goalloc
004d8000-004de000 rw-p 000d8000 fe:00 10052336                           /tmp/gcw/goalloc/goalloc
004de000-00511000 rw-p 00000000 00:00 0 
c000000000-c013e00000 rw-p 00000000 00:00 0 
7f0982bee000-7f0982bf0000 r-xp 00000000 00:00 0                          [vdso]
";
const SLEEP_EXE: &str = "/usr/bin/sleep";
const SLEEP_MAPS: &str = "\
55d0f4e4f000-55d0f4e51000 r--p 00000000 fe:00 246861                     /usr/bin/sleep
7f1c3c9c8000-7f1c3c9ee000 r--p 00000000 fe:00 247241                     /usr/lib/x86_64-linux-gnu/libc.so.6
";
const ELF: Option<ExeFacts> = Some(ExeFacts {
    elf: true,
    go: false,
});
const GO: Option<ExeFacts> = Some(ExeFacts {
    elf: true,
    go: true,
});

#[test]
fn recorded_processes() {
    assert_eq!(detect_from(JDK17_EXE, JDK17_MAPS, ELF), Runtime::Jvm);
    assert_eq!(detect_from(JDK25_EXE, JDK25_MAPS, ELF), Runtime::Jvm);
    assert_eq!(detect_from(NODE_EXE, NODE_MAPS, ELF), Runtime::Node);
    assert_eq!(detect_from(PYTHON_EXE, PYTHON_MAPS, ELF), Runtime::Python);
    assert_eq!(detect_from(GO_EXE, GO_MAPS, GO), Runtime::Go);
    assert_eq!(detect_from(SLEEP_EXE, SLEEP_MAPS, ELF), Runtime::Native);
    // The Go rule needs the ELF: the maps of a static Go binary say
    // nothing.
    assert_eq!(detect_from(GO_EXE, GO_MAPS, ELF), Runtime::Native);
    // A kernel thread: no exe, no maps, nothing read.
    assert_eq!(detect_from("", "", None), Runtime::Unknown);
    // A file that is not ELF (cannot be exec'd, but /proc can lie).
    assert_eq!(
        detect_from("/x", "", Some(ExeFacts::default())),
        Runtime::Unknown
    );
}

#[test]
fn maps_win_over_the_exe() {
    // The JVM under a launcher with another name.
    assert_eq!(
        detect_from("/opt/app/bin/myservice", JDK17_MAPS, ELF),
        Runtime::Jvm
    );
    // Embedded Node and .NET.
    let libnode = "7f00-7f01 r-xp 00000000 fe:00 1 /usr/lib/x86_64-linux-gnu/libnode.so.108\n";
    assert_eq!(
        detect_from("/usr/bin/electron-app", libnode, ELF),
        Runtime::Node
    );
    let coreclr = "7f00-7f01 r-xp 00000000 fe:00 1 /usr/share/dotnet/shared/Microsoft.NETCore.App/8.0.8/libcoreclr.so\n";
    assert_eq!(
        detect_from("/usr/share/dotnet/dotnet", coreclr, ELF),
        Runtime::Dotnet
    );
    assert_eq!(detect_from("/app/MyService", coreclr, ELF), Runtime::Dotnet);
    let libpython =
        "7f00-7f01 r-xp 00000000 fe:00 1 /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0\n";
    assert_eq!(
        detect_from("/usr/bin/uwsgi", libpython, ELF),
        Runtime::Python
    );
    let libgo = "7f00-7f01 r-xp 00000000 fe:00 1 /usr/lib/x86_64-linux-gnu/libgo.so.21.0.0\n";
    assert_eq!(
        detect_from("/usr/local/bin/server", libgo, ELF),
        Runtime::Go
    );
    // Even a Go binary that loaded libjvm is a JVM (rule order).
    assert_eq!(detect_from(GO_EXE, JDK17_MAPS, GO), Runtime::Jvm);
}

#[test]
fn names_and_paths() {
    for name in [
        "python",
        "python3",
        "python3.11",
        "python2.7",
        "python3.12d",
        "python3.13t",
    ] {
        assert!(is_python_name(name), "{name}");
    }
    for name in [
        "pythonista",
        "python3-config",
        "python3.",
        "py",
        "python4",
        "ipython",
    ] {
        assert!(!is_python_name(name), "{name}");
    }
    assert_eq!(
        detect_from("/usr/local/bin/python3.12", "", ELF),
        Runtime::Python
    );
    assert_eq!(detect_from("/usr/bin/nodejs", "", ELF), Runtime::Node);
    // Upgraded under a running process.
    assert_eq!(
        detect_from("/usr/bin/node (deleted)", "", ELF),
        Runtime::Node
    );
    let deleted = "7f00-7f01 r-xp 00000000 fe:00 1 /opt/jdk/lib/server/libjvm.so (deleted)\n";
    assert_eq!(detect_from("/opt/jdk/bin/java", deleted, ELF), Runtime::Jvm);
    // Paths with spaces; libjvm.so as a directory part does not count.
    let spaced = "7f00-7f01 r-xp 00000000 fe:00 1 /opt/my app/libjvm.so\n";
    assert_eq!(mapped_file_name(spaced.trim_end()), Some("libjvm.so"));
    let not_lib = "7f00-7f01 r-xp 00000000 fe:00 1 /opt/libjvm.so/other.so\n";
    assert_eq!(detect_from("/bin/x", not_lib, ELF), Runtime::Native);
    assert_eq!(
        mapped_file_name("7f00-7f01 rw-p 00000000 00:00 0 [heap]"),
        None
    );
    assert_eq!(mapped_file_name("7f00-7f01 rw-p 00000000 00:00 0 "), None);
    assert_eq!(mapped_file_name("garbage"), None);
    assert_eq!(mapped_file_name(""), None);
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    f
}

#[test]
fn go_sections_are_found() {
    for section in [".go.buildinfo", ".gopclntab", ".note.go.buildid"] {
        let image = build(&[
            Section::new(".text", SHT_PROGBITS, 0x40_1000, vec![0x90; 16]),
            Section::new(section, SHT_PROGBITS, 0x40_8000, vec![0xff; 32]),
        ]);
        let f = write_temp(&image);
        assert_eq!(
            exe_facts(f.path()).unwrap(),
            ExeFacts {
                elf: true,
                go: true
            },
            "{section}"
        );
    }
    let plain = build(&[Section::new(
        ".text",
        SHT_PROGBITS,
        0x40_1000,
        vec![0x90; 16],
    )]);
    let f = write_temp(&plain);
    assert_eq!(
        exe_facts(f.path()).unwrap(),
        ExeFacts {
            elf: true,
            go: false
        }
    );
}

fn with_symtab(strtab: Vec<u8>) -> Vec<u8> {
    let mut symtab = Section::new(".symtab", SHT_SYMTAB, 0, vec![0; 48]);
    symtab.link = 3; // .strtab, 1-based below
    build(&[
        Section::new(".text", SHT_PROGBITS, 0x40_1000, vec![0x90; 16]),
        symtab,
        Section::new(".strtab", SHT_STRTAB, 0, strtab),
    ])
}

#[test]
fn go_symbols_are_found_without_go_sections() {
    // gccgo-style: only the symbol names tell.
    let f = write_temp(&with_symtab(b"\0main\0runtime.main\0other\0".to_vec()));
    assert!(exe_facts(f.path()).unwrap().go);
    // A name at the very end of the table, and one across a chunk
    // boundary of the scan.
    for pad in [
        0,
        SCAN_CHUNK - 5,
        SCAN_CHUNK - 1,
        SCAN_CHUNK,
        2 * SCAN_CHUNK - 7,
    ] {
        let mut strtab = vec![b'x'; pad + 1];
        strtab[0] = 0;
        strtab.extend_from_slice(b"\0runtime.gcStart\0");
        let f = write_temp(&with_symtab(strtab));
        assert!(exe_facts(f.path()).unwrap().go, "pad {pad}");
    }
    // Near misses.
    for strings in [
        &b"\0runtime.mainly\0"[..],
        b"\0xruntime.main\0",
        b"\0runtime.gcStartx\0",
        b"\0runtime\0",
    ] {
        let f = write_temp(&with_symtab(strings.to_vec()));
        assert!(
            !exe_facts(f.path()).unwrap().go,
            "{}",
            String::from_utf8_lossy(strings)
        );
    }
}

#[test]
fn unreadable_and_odd_files() {
    assert!(exe_facts(Path::new("/nonexistent")).is_err());
    let script = write_temp(b"#!/bin/sh\nexit 0\n");
    assert_eq!(exe_facts(script.path()).unwrap(), ExeFacts::default());
    let empty = write_temp(b"");
    assert_eq!(exe_facts(empty.path()).unwrap(), ExeFacts::default());
    // Damaged ELFs are ELF, not Go, and never panic.
    let image = with_symtab(b"\0runtime.main\0".to_vec());
    for len in 4..image.len() {
        let f = write_temp(&image[..len]);
        assert!(exe_facts(f.path()).unwrap().elf);
    }
    for i in 4..image.len() {
        let mut bad = image.clone();
        bad[i] ^= 0xff;
        let f = write_temp(&bad);
        let _ = exe_facts(f.path()).unwrap();
    }
}

#[test]
fn live_processes() {
    let proc_root = Path::new("/proc");
    // This test binary: a Rust ELF.
    assert_eq!(detect(proc_root, std::process::id()), Runtime::Native);
    // kthreadd has no exe.
    assert_eq!(detect(proc_root, 2), Runtime::Unknown);
    // Gone.
    assert_eq!(detect(proc_root, u32::MAX), Runtime::Unknown);
    let mut sleep = std::process::Command::new("sleep")
        .arg("10")
        .spawn()
        .unwrap();
    assert_eq!(detect(proc_root, sleep.id()), Runtime::Native);
    let _ = sleep.kill();
    let _ = sleep.wait();
    // Real Go binaries: the toolchain's own (golang-go, installed by
    // `cargo xtask test`), found through PATH.
    let on_path = |tool: &str| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(tool))
                .find(|p| p.is_file())
                .and_then(|p| p.canonicalize().ok())
        })
    };
    match on_path("go") {
        Some(go) => assert_eq!(
            exe_facts(&go).unwrap(),
            ExeFacts {
                elf: true,
                go: true
            },
            "{}",
            go.display()
        ),
        None => {
            testjvm::skip_or_fail::<()>("no go on PATH");
        }
    }
    // Real non-Go binaries with big symbol tables.
    let mut natives = Vec::new();
    match on_path("node") {
        Some(node) => natives.push(node),
        None => {
            testjvm::skip_or_fail::<()>("no node on PATH");
        }
    }
    if let Some(home) = testjvm::require_jdk(17) {
        natives.push(home.join("lib/server/libjvm.so"));
    }
    for native in natives {
        assert_eq!(
            exe_facts(&native).unwrap(),
            ExeFacts {
                elf: true,
                go: false
            },
            "{}",
            native.display()
        );
    }
}

#[test]
fn merge_and_names() {
    assert_eq!(Runtime::merge(Runtime::Native, Runtime::Go), Runtime::Go);
    assert_eq!(
        Runtime::merge(Runtime::Unknown, Runtime::Python),
        Runtime::Python
    );
    assert_eq!(
        Runtime::merge(Runtime::Python, Runtime::Native),
        Runtime::Python
    );
    assert!(Runtime::Jvm.has_gc() && !Runtime::Python.has_gc());
    assert_eq!(Runtime::Dotnet.name(), "dotnet");
}
