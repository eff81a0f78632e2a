//! Parsing real Go builds against `go tool nm`, and synthetic tables for
//! the layouts no toolchain here writes.
use std::{collections::HashMap, path::PathBuf, process::Command};

use super::*;

/// A table in any of the layouts, for the versions and byte orders no
/// toolchain here writes. `funcs` are (entry, name), sorted.
fn synthetic(version: PclntabVersion, big: bool, ptr: usize, funcs: &[(u64, &str)]) -> Vec<u8> {
    let magic = MAGICS[version as usize];
    let put = |buf: &mut Vec<u8>, v: u64, size: usize| {
        let bytes = if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        if big {
            buf.extend_from_slice(&bytes[8 - size..]);
        } else {
            buf.extend_from_slice(&bytes[..size]);
        }
    };
    let end = funcs.last().unwrap().0 + 0x40;
    let text = funcs[0].0;
    let n = funcs.len();
    let mut names = Vec::new();
    let mut nameoffs = Vec::new();
    for (_, name) in funcs {
        nameoffs.push(names.len() as u64);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let mut t = Vec::new();
    put(&mut t, u64::from(magic), 4);
    t.extend_from_slice(&[0, 0, 1, ptr as u8]);
    match version {
        PclntabVersion::Go12 => {
            put(&mut t, n as u64, ptr);
            let functab = t.len();
            let recs = functab + (2 * n + 1) * ptr;
            let names_at = recs + n * (ptr + 4);
            for (i, (entry, _)) in funcs.iter().enumerate() {
                put(&mut t, *entry, ptr);
                put(&mut t, (recs + i * (ptr + 4)) as u64, ptr);
            }
            put(&mut t, end, ptr);
            for (i, (entry, _)) in funcs.iter().enumerate() {
                put(&mut t, *entry, ptr);
                put(&mut t, names_at as u64 + nameoffs[i], 4);
            }
            t.extend_from_slice(&names);
        }
        _ => {
            let (words, field, rec) = if version == PclntabVersion::Go116 {
                (7, ptr, ptr + 4)
            } else {
                (8, 4, 8)
            };
            let names_at = 8 + words * ptr;
            let pcln = names_at + names.len();
            let header = |t: &mut Vec<u8>| {
                let mut w = vec![n as u64, 0];
                if words == 8 {
                    w.push(text);
                }
                // names, cu, file, pc, funcs
                w.extend([
                    names_at as u64,
                    pcln as u64,
                    pcln as u64,
                    pcln as u64,
                    pcln as u64,
                ]);
                for v in w {
                    put(t, v, ptr);
                }
            };
            header(&mut t);
            t.extend_from_slice(&names);
            let recs = (2 * n + 1) * field;
            let rel = |e: u64| if words == 8 { e - text } else { e };
            for (i, (entry, _)) in funcs.iter().enumerate() {
                put(&mut t, rel(*entry), field);
                put(&mut t, (recs + i * rec) as u64, field);
            }
            put(&mut t, rel(end), field);
            for (i, (entry, _)) in funcs.iter().enumerate() {
                put(&mut t, rel(*entry), if words == 8 { 4 } else { ptr });
                put(&mut t, nameoffs[i], 4);
            }
        }
    }
    t
}

const FUNCS: [(u64, &str); 3] = [
    (0x401000, "internal/cpu.Initialize"),
    (0x401080, "runtime.gcMarkTermination"),
    (0x401200, "main.main"),
];

#[test]
fn every_layout_byte_order_and_pointer_size() {
    use PclntabVersion::*;
    for version in [Go12, Go116, Go118, Go120] {
        for big in [false, true] {
            for ptr in [4, 8] {
                let bytes = synthetic(version, big, ptr, &FUNCS);
                let t = parse_table(&bytes, big, None)
                    .unwrap_or_else(|e| panic!("{version:?} big={big} ptr={ptr}: {e}"));
                let what = format!("{version:?} big={big} ptr={ptr}");
                assert_eq!(t.version(), version, "{what}");
                assert_eq!(t.len(), 3, "{what}");
                assert_eq!(t.name_at(0x400fff), None, "{what}");
                assert_eq!(
                    t.name_at(0x401000),
                    Some("internal/cpu.Initialize"),
                    "{what}"
                );
                assert_eq!(
                    t.name_at(0x40107f),
                    Some("internal/cpu.Initialize"),
                    "{what}"
                );
                assert_eq!(
                    t.name_at(0x401080),
                    Some("runtime.gcMarkTermination"),
                    "{what}"
                );
                assert_eq!(t.name_at(0x40123f), Some("main.main"), "{what}");
                assert_eq!(t.name_at(0x401240), None, "{what}");
                assert_eq!(t.entry_of("runtime.gcMarkTermination"), Some(0x401080));
                assert_eq!(t.entry_of("runtime.gcMarkTerm"), None);
            }
        }
    }
}

#[test]
fn damaged_tables_are_errors_not_panics() {
    let good = synthetic(PclntabVersion::Go118, false, 8, &FUNCS);
    for len in 0..good.len() {
        let _ = parse_table(&good[..len], false, None);
    }
    for i in 0..good.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            if let Ok(t) = parse_table(&bad, false, None) {
                let _ = (t.name_at(0x401100), t.entry_of("main.main"));
            }
        }
    }
    let mut unsorted = FUNCS;
    unsorted.swap(0, 1);
    let bytes = synthetic(PclntabVersion::Go116, false, 8, &unsorted);
    assert!(matches!(
        parse_table(&bytes, false, None),
        Err(PclntabError::Unsorted)
    ));
    assert!(matches!(
        parse_table(
            &[0xfe, 0xff, 0xff, 0xff, 0, 0, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0],
            false,
            None
        ),
        Err(PclntabError::UnknownMagic(0xfffffffe))
    ));
}

#[test]
fn a_table_is_found_by_its_magic_among_other_data() {
    let table = synthetic(PclntabVersion::Go120, false, 8, &FUNCS);
    let mut segment = vec![0u8; 64];
    // A stray magic with a nonsense header first.
    segment[8..12].copy_from_slice(&0xfffffff1u32.to_le_bytes());
    segment.extend_from_slice(&table);
    let t = scan_for_table(&segment, false, None).expect("found");
    assert_eq!(t.name_at(0x401081), Some("runtime.gcMarkTermination"));
    assert!(scan_for_table(&segment[..64], false, None).is_none());
}

// ------------------------------------------------ real Go binaries

pub(crate) fn go_available() -> bool {
    if Command::new("go").arg("version").output().is_ok() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("go is missing under CI (cargo xtask setup installs golang-go)");
    }
    eprintln!("SKIP gopclntab real-binary tests: go is not installed");
    false
}

/// Builds the allocation-heavy test workload with `flags`.
pub(crate) fn go_build(name: &str, flags: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tally-gopclntab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/workloads/go/allocheavy.go");
    let status = Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .env("GOCACHE", dir.join("cache"))
        .env("HOME", &dir)
        .status()
        .expect("go runs");
    assert!(status.success(), "go build {flags:?}");
    out
}

/// `go tool nm`'s functions (T/t) of an unstripped build: address to
/// names (aliases share an address).
fn nm_functions(bin: &Path) -> HashMap<u64, Vec<String>> {
    let out = Command::new("go")
        .args(["tool", "nm"])
        .arg(bin)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut funcs: HashMap<u64, Vec<String>> = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3 && (f[1] == "T" || f[1] == "t") {
            // runtime.text/etext are labels at the text's ends, not functions.
            if f[2] == "runtime.text" || f[2] == "runtime.etext" {
                continue;
            }
            let addr = u64::from_str_radix(f[0], 16).unwrap();
            // The symbol table marks assembly (ABI0) functions with a
            // suffix the runtime's own table, and so tracebacks, omit.
            let name = f[2..].join(" ");
            let name = name.strip_suffix(".abi0").unwrap_or(&name);
            // And the linker writes type arguments and array types,
            // first '[' to last ']', as "[...]" (cmd/link's nameParts).
            let name = match (name.find('['), name.rfind(']')) {
                (Some(i), Some(j)) if j > i => format!("{}[...]{}", &name[..i], &name[j + 1..]),
                _ => name.to_string(),
            };
            funcs.entry(addr).or_default().push(name);
        }
    }
    funcs
}

#[test]
fn stripped_pie_and_trimpath_builds_name_every_function_nm_lists() {
    if !go_available() {
        return;
    }
    // (mode flags): an unstripped build for nm, a stripped one to read.
    for (mode, flags) in [
        ("exe", &[][..]),
        ("pie", &["-buildmode=pie"][..]),
        ("trimpath", &["-trimpath"][..]),
    ] {
        let with_symbols = go_build(&format!("{mode}-sym"), flags);
        let mut stripped_flags = flags.to_vec();
        stripped_flags.push("-ldflags=-s -w");
        let stripped = go_build(&format!("{mode}-stripped"), &stripped_flags);
        let nm = nm_functions(&with_symbols);
        assert!(nm.len() > 1000, "{mode}: nm listed {} functions", nm.len());
        for bin in [&with_symbols, &stripped] {
            let facts = crate::runtimes::runtime::exe_facts(bin).unwrap();
            assert!(facts.go, "{mode}: {} not detected as Go", bin.display());
            let table =
                GoFuncTable::read(bin).unwrap_or_else(|e| panic!("{mode} {}: {e}", bin.display()));
            // Both builds link at the same addresses (PIE too: Go links
            // PIE at 0x400000 and the loader adds one bias to all).
            for (addr, names) in &nm {
                let got = table.name_at(*addr);
                assert!(
                    got.is_some_and(|g| names.iter().any(|n| n == g)),
                    "{mode} {}: at {addr:#x} nm says {names:?}, pclntab {got:?}",
                    bin.display()
                );
            }
            let nm_entry = nm
                .iter()
                .find(|(_, n)| n.iter().any(|n| n == "runtime.gcMarkTermination"))
                .map(|(a, _)| *a);
            assert_eq!(
                table.entry_of("runtime.gcMarkTermination"),
                nm_entry,
                "{mode}"
            );
            // The entry is in the file where its code is.
            let off = table.file_offset_of(nm_entry.unwrap()).unwrap();
            assert_eq!(table.vaddr_of_file_offset(off), nm_entry);
            let bytes = std::fs::read(bin).unwrap();
            let parsed = GoFuncTable::parse(&bytes).unwrap();
            assert_eq!(parsed.entries, table.entries);
            assert!(table.heap_bytes() < 256 << 10, "{}", table.heap_bytes());
        }
    }
}

#[test]
fn a_file_without_section_headers_is_read_by_its_magic() {
    if !go_available() {
        return;
    }
    let stripped = go_build("noshdr-src", &["-ldflags=-s -w"]);
    let expected = GoFuncTable::read(&stripped).unwrap();
    let mut bytes = std::fs::read(&stripped).unwrap();
    // e_shoff, e_shnum, e_shstrndx of an ELF64 header: no sections.
    bytes[0x28..0x30].fill(0);
    bytes[0x3c..0x40].fill(0);
    let noshdr = stripped.with_file_name("noshdr");
    std::fs::write(&noshdr, &bytes).unwrap();
    let table = GoFuncTable::read(&noshdr).unwrap();
    assert_eq!(table.entries, expected.entries);
    assert_eq!(
        table.entry_of("runtime.gcMarkTermination"),
        expected.entry_of("runtime.gcMarkTermination")
    );
    assert!(crate::runtimes::runtime::exe_facts(&noshdr).unwrap().go);
}

#[test]
fn non_go_files_have_no_table() {
    let me = std::env::current_exe().unwrap();
    assert!(matches!(
        GoFuncTable::read(&me),
        Err(PclntabError::NotFound)
    ));
    assert!(matches!(
        GoFuncTable::read(Path::new("/nonexistent")),
        Err(PclntabError::Io { .. })
    ));
    assert!(GoFuncTable::parse(b"#!/bin/sh\n").is_err());
}
