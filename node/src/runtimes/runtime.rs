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
//!    section headers, a valid pclntab in its data ([`super::go::pclntab`]);
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
    let exe = basename(exe);
    // Each runtime's module says what names it; the order is the rules'.
    let named = |r: Runtime| super::of(r).is_some_and(|m| m.named_by(exe, &libs));
    if let Some(r) = [Runtime::Jvm, Runtime::Node, Runtime::Dotnet]
        .into_iter()
        .find(|&r| named(r))
    {
        return Some(r);
    }
    if is_python_name(exe)
        || libs
            .iter()
            .any(|l| l.starts_with("libpython") && l.contains(".so"))
    {
        return Some(Runtime::Python);
    }
    named(Runtime::Go).then_some(Runtime::Go)
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
        Some(GoCheck::NoSections) => super::go::pclntab::GoFuncTable::read(path).is_ok(),
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
mod tests;
