//! Which language runtime a process runs, from what /proc shows of it.
//!
//! The rules, first match wins:
//! 1. **JVM**: `libjvm.so` is mapped (HotSpot, and OpenJ9's compatibility
//!    libjvm.so).
//! 2. **Node**: the executable is `node`/`nodejs`, or `libnode.so*` is mapped
//!    (Node embedded in another program).
//! 3. **.NET**: `libcoreclr.so` is mapped. (NativeAOT binaries have no
//!    libcoreclr and come out as native.)
//! 4. **Python**: the executable is `python`, `python3`, `python3.12`,
//!    `python2.7`… (Debian's and pyenv's are statically linked with
//!    libpython, so the name is what tells), or `libpython*.so*` is mapped
//!    (uwsgi, embedded interpreters).
//! 5. **Go**: the executable is an ELF with a `.go.buildinfo` section (every
//!    `gc`-built binary since Go 1.13, stripped, PIE or `-trimpath` alike),
//!    a `.gopclntab` (`.data.rel.ro.gopclntab` in PIE builds) or
//!    `.note.go.buildid` section (older ones); or, in a file without
//!    section headers, a valid pclntab in its data ([`super::gopclntab`]);
//!    or gccgo's `libgo.so` is mapped; or failing those the symbol table
//!    names `runtime.main` or `runtime.gcStart` (gccgo with libgo linked in
//!    statically).
//! 6. **Native**: any other ELF executable.
//! 7. **Unknown**: nothing could be read: kernel threads (no `exe`),
//!    processes gone meanwhile.
//!
//! Maps and names are checked before the ELF is opened, so a JVM or Node
//! process costs one read of its maps. The ELF is read through
//! `/proc/<pid>/exe`, which opens the very file the process runs even when
//! it lives in another mount namespace (a container) or was deleted; only
//! its ELF header, section headers and section names are read, and for the
//! symbol fallback the string table in 64 KiB pieces, never the whole file
//! (Go binaries run to 100+ MiB).
//!
//! Detection is meant to run once per process, and again after an exec; the
//! caller caches the result.
use std::{fs::File, io::Read, os::unix::fs::FileExt, path::Path};

use object::{
    Endianness, FileKind, ReadCache, ReadRef,
    elf::{FileHeader32, FileHeader64, SHT_STRTAB, SHT_SYMTAB},
    read::elf::{FileHeader, SectionHeader},
};
use tally_core::gc::Runtime;
use thiserror::Error;

/// What the executable file itself says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExeFacts {
    /// It is an ELF file (magic `\x7fELF`).
    pub elf: bool,
    /// It was built by a Go toolchain; see the module doc.
    pub go: bool,
}

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Section names only Go toolchains write.
const GO_SECTIONS: [&[u8]; 4] = [
    b".go.buildinfo",
    b".gopclntab",
    b".data.rel.ro.gopclntab",
    b".note.go.buildid",
];
/// Symbols every Go program has, for binaries without the Go sections.
const GO_SYMBOLS: [&[u8]; 2] = [b"\0runtime.main\0", b"\0runtime.gcStart\0"];
/// The symbol-table scan reads at most this much string table. It runs only
/// for ELF files with a `.symtab` and none of the Go sections (distribution
/// binaries are mostly stripped), once per process; a C++ program's table
/// can be hundreds of MiB of names.
const MAX_STRTAB_SCAN: u64 = 16 << 20;
const SCAN_CHUNK: usize = 64 << 10;

/// Detects the runtime of process `pid` under `proc_root` (normally
/// `/proc`).
pub fn detect(proc_root: &Path, pid: u32) -> Runtime {
    let dir = proc_root.join(pid.to_string());
    // Kernel threads have no exe link (ENOENT) and empty maps.
    let exe = std::fs::read_link(dir.join("exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let maps = std::fs::read_to_string(dir.join("maps")).unwrap_or_default();
    if let Some(runtime) = detect_by_name_and_maps(&exe, &maps) {
        return runtime;
    }
    if exe.is_empty() {
        return Runtime::Unknown;
    }
    let facts = exe_facts(&dir.join("exe")).ok();
    detect_from(&exe, &maps, facts)
}

/// The rules of the module doc over recorded inputs: the `exe` link's text,
/// the maps text and what [`exe_facts`] read (`None`: the file could not be
/// read).
pub fn detect_from(exe: &str, maps: &str, facts: Option<ExeFacts>) -> Runtime {
    if let Some(runtime) = detect_by_name_and_maps(exe, maps) {
        return runtime;
    }
    match facts {
        Some(ExeFacts { go: true, .. }) => Runtime::Go,
        Some(ExeFacts { elf: true, .. }) => Runtime::Native,
        _ => Runtime::Unknown,
    }
}

/// Rules 1–4: the ones that need no ELF reading.
fn detect_by_name_and_maps(exe: &str, maps: &str) -> Option<Runtime> {
    let libs: Vec<&str> = maps.lines().filter_map(mapped_file_name).collect();
    let has = |pred: &dyn Fn(&str) -> bool| libs.iter().any(|l| pred(l));
    if has(&|l| l == "libjvm.so") {
        return Some(Runtime::Jvm);
    }
    let exe = basename(exe);
    if exe == "node" || exe == "nodejs" || has(&|l| l.starts_with("libnode.so")) {
        return Some(Runtime::Node);
    }
    if has(&|l| l == "libcoreclr.so") {
        return Some(Runtime::Dotnet);
    }
    if is_python_name(exe) || has(&|l| l.starts_with("libpython") && l.contains(".so")) {
        return Some(Runtime::Python);
    }
    // gccgo links its runtime, libgo, dynamically by default.
    if has(&|l| l.starts_with("libgo.so")) {
        return Some(Runtime::Go);
    }
    None
}

/// The file name of a maps line's path, if it maps a file.
fn mapped_file_name(line: &str) -> Option<&str> {
    // address perms offset dev inode path; the path may hold spaces, so
    // take everything after the fifth field.
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        rest = &rest[rest.find(' ')?..];
    }
    let path = rest.trim();
    if !path.starts_with('/') {
        return None; // [heap], [stack], anonymous
    }
    Some(basename(path))
}

/// The last path component, without the " (deleted)" the kernel appends to
/// files removed since they were mapped or executed.
fn basename(path: &str) -> &str {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    path.rsplit('/').next().unwrap_or(path)
}

/// `python`, `python3`, `python3.12`, `python2.7`, and debug/ABI-suffixed
/// builds like `python3.12d` or `python3.13t`.
fn is_python_name(name: &str) -> bool {
    let Some(version) = name.strip_prefix("python") else {
        return false;
    };
    let version = version.trim_end_matches(['d', 'm', 't', 'u']);
    version.is_empty()
        || (version.starts_with(['2', '3'])
            && version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && !version.ends_with('.'))
}

/// Reads what the executable at `path` is; see the module doc for what is
/// read. A file that is not ELF, or an ELF too damaged to parse, is
/// `go: false`.
pub fn exe_facts(path: &Path) -> Result<ExeFacts, RuntimeError> {
    let io = |source| RuntimeError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || magic != *b"\x7fELF" {
        return Ok(ExeFacts::default());
    }
    let cache = ReadCache::new(file);
    let go = match FileKind::parse(&cache) {
        Ok(FileKind::Elf64) => is_go_elf::<FileHeader64<Endianness>, _>(&cache),
        Ok(FileKind::Elf32) => is_go_elf::<FileHeader32<Endianness>, _>(&cache),
        _ => None,
    };
    let go = match go {
        Some(GoCheck::Go) => true,
        Some(GoCheck::NotGo) | None => false,
        // Section headers stripped (sstrip, some packers): the runtime's own
        // table, found by its validated header, is the evidence.
        Some(GoCheck::NoSections) => super::gopclntab::GoFuncTable::read(path).is_ok(),
        Some(GoCheck::ScanStrtab { offset, size }) => {
            // Offsets past the end (a damaged header) are not Go, and a read
            // error inside the table is not worth failing detection for.
            strtab_has_go_symbol(&cache.into_inner(), offset, size).unwrap_or(false)
        }
    };
    Ok(ExeFacts { elf: true, go })
}

enum GoCheck {
    Go,
    NotGo,
    /// The file has no section headers at all.
    NoSections,
    /// No Go section, but a symbol table whose strings are here.
    ScanStrtab {
        offset: u64,
        size: u64,
    },
}

/// The section-header part of the Go check; `None` if the headers do not
/// parse.
fn is_go_elf<'d, Elf, R>(data: R) -> Option<GoCheck>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'d>,
{
    let header = Elf::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    if sections.is_empty() {
        return Some(GoCheck::NoSections);
    }
    for section in sections.iter() {
        if let Ok(name) = sections.section_name(endian, section)
            && GO_SECTIONS.contains(&name)
        {
            return Some(GoCheck::Go);
        }
    }
    // The .symtab's linked string table (never .dynstr: Go programs do not
    // export runtime.* dynamically).
    let symtab = sections.iter().find(|s| s.sh_type(endian) == SHT_SYMTAB)?;
    let strtab = sections.section(symtab.link(endian)).ok()?;
    if strtab.sh_type(endian) != SHT_STRTAB {
        return Some(GoCheck::NotGo);
    }
    Some(GoCheck::ScanStrtab {
        offset: strtab.sh_offset(endian).into(),
        size: strtab.sh_size(endian).into(),
    })
}

/// Looks for [`GO_SYMBOLS`] in the string table at `offset..offset+size`,
/// in chunks that overlap by the longest needle so none is missed at a
/// boundary.
fn strtab_has_go_symbol(file: &File, offset: u64, size: u64) -> std::io::Result<bool> {
    let overlap = GO_SYMBOLS.iter().map(|n| n.len()).max().unwrap_or(0) - 1;
    let end = offset
        .saturating_add(size.min(MAX_STRTAB_SCAN))
        .min(file.metadata()?.len());
    let mut buf = vec![0u8; SCAN_CHUNK + overlap];
    // The table starts with a NUL, so a name at its start is found too.
    let mut kept = 0usize;
    let mut pos = offset;
    while pos < end {
        let want = (SCAN_CHUNK as u64).min(end - pos) as usize;
        let n = file.read_at(&mut buf[kept..kept + want], pos)?;
        if n == 0 {
            break; // The header lied about the size: the file ends here.
        }
        let window = &buf[..kept + n];
        if GO_SYMBOLS
            .iter()
            .any(|needle| window.windows(needle.len()).any(|w| w == *needle))
        {
            return Ok(true);
        }
        kept = overlap.min(window.len());
        let from = window.len() - kept;
        buf.copy_within(from..from + kept, 0);
        pos += n as u64;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::hsperf::testjvm;
    use crate::runtimes::stapsdt::testelf::{SHT_PROGBITS, SHT_STRTAB, SHT_SYMTAB, Section, build};

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
}
