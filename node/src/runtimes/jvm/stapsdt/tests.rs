use super::*;
use crate::test_support::elf::{SHT_NOTE, SHT_PROGBITS, Section, build};

use crate::test_support::jvm as testjvm;
use std::path::PathBuf;

/// The libjvm.so of JDK `major`, found by looking; see
/// [`testjvm::require_jdk`].
fn libjvm(major: u32) -> Option<PathBuf> {
    Some(testjvm::require_jdk(major)?.join("lib/server/libjvm.so"))
}

fn raw_note(owner: &[u8], n_type: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&(owner.len() as u32).to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&n_type.to_le_bytes());
    n.extend_from_slice(owner);
    while n.len() % 4 != 0 {
        n.push(0);
    }
    n.extend_from_slice(desc);
    while n.len() % 4 != 0 {
        n.push(0);
    }
    n
}

fn desc(provider: &str, name: &str, args: &str, pc: u64, base: u64, sem: u64) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&pc.to_le_bytes());
    d.extend_from_slice(&base.to_le_bytes());
    d.extend_from_slice(&sem.to_le_bytes());
    for s in [provider, name, args] {
        d.extend_from_slice(s.as_bytes());
        d.push(0);
    }
    d
}

fn note(provider: &str, name: &str, args: &str, pc: u64, base: u64, sem: u64) -> Vec<u8> {
    raw_note(
        b"stapsdt\0",
        NT_STAPSDT,
        &desc(provider, name, args, pc, base, sem),
    )
}

/// Text (16 nops) at 0x401000, `.stapsdt.base` at `base_addr`, data at
/// 0x404000 (semaphores), and the notes.
fn elf(notes: Vec<u8>, base_addr: u64) -> Vec<u8> {
    build(&[
        Section::new(".text", SHT_PROGBITS, 0x40_1000, vec![0x90; 16]),
        Section::new(".stapsdt.base", SHT_PROGBITS, base_addr, vec![0]),
        Section::new(".probes", SHT_PROGBITS, 0x40_4000, vec![0; 8]),
        Section::new(".note.stapsdt", SHT_NOTE, 0, notes),
    ])
}

#[test]
fn reads_notes_and_maps_to_file_offsets() {
    let mut notes = note("demo", "start", "8@%rdi -4@%esi", 0x40_1000, 0x40_2000, 0);
    // A foreign note in the section is skipped.
    notes.extend(raw_note(b"GNU\0", 3, &[1, 2, 3, 4]));
    notes.extend(note("demo", "stop", "", 0x40_1008, 0x40_2000, 0x40_4002));
    let image = elf(notes, 0x40_2000);
    let probes = probes(&image).unwrap();
    assert_eq!(probes.len(), 2, "{probes:#?}");
    let (start, stop) = (&probes[0], &probes[1]);
    assert_eq!(
        (start.provider.as_str(), start.name.as_str()),
        ("demo", "start")
    );
    assert_eq!(start.args, "8@%rdi -4@%esi");
    assert_eq!(
        (start.pc, start.base, start.semaphore),
        (0x40_1000, 0x40_2000, 0)
    );
    // Not prelinked: the address is the pc.
    assert_eq!(start.address, 0x40_1000);
    let text_off = start.offset.unwrap();
    assert_eq!(image[text_off as usize], 0x90);
    assert_eq!(stop.offset, Some(text_off + 8));
    assert_eq!(file_offset(&image, 0x40_1008), Some(text_off + 8));
    assert_eq!(stop.args, "");
    assert_eq!(stop.semaphore, 0x40_4002);
    assert_eq!(stop.semaphore_offset, file_offset(&image, 0x40_4002));
    assert!(stop.semaphore_offset.is_some());
    assert_eq!(start.semaphore_offset, None);
    // Outside every segment.
    assert_eq!(file_offset(&image, 0x50_0000), None);
    assert_eq!(file_offset(&image, 0x40_1010), None, "one past .text");
}

#[test]
fn prelinked_file_is_adjusted_by_the_base_move() {
    // The notes were written with .stapsdt.base at 0x30_2000 and pc in a
    // text at 0x30_1000; prelink moved everything by +0x10_0000.
    let notes = note("demo", "moved", "", 0x30_1004, 0x30_2000, 0x30_4000);
    let image = elf(notes, 0x40_2000);
    let p = &probes(&image).unwrap()[0];
    assert_eq!(p.pc, 0x30_1004);
    assert_eq!(p.address, 0x40_1004);
    assert_eq!(p.offset, file_offset(&image, 0x40_1004));
    assert!(p.offset.is_some());
    assert_eq!(p.semaphore_offset, file_offset(&image, 0x40_4000));
    // A note without base is not adjusted.
    let image = elf(note("demo", "nobase", "", 0x40_1004, 0, 0), 0x40_2000);
    assert_eq!(probes(&image).unwrap()[0].address, 0x40_1004);
}

#[test]
fn no_notes_is_empty_not_an_error() {
    let image = build(&[Section::new(
        ".text",
        SHT_PROGBITS,
        0x40_1000,
        vec![0x90; 16],
    )]);
    assert_eq!(probes(&image).unwrap(), vec![]);
    let image = elf(Vec::new(), 0x40_2000);
    assert_eq!(probes(&image).unwrap(), vec![]);
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    assert!(matches!(probes(b""), Err(StapsdtError::NotElf)));
    assert!(matches!(
        probes(b"#!/bin/sh\necho hi\n"),
        Err(StapsdtError::NotElf)
    ));
    assert!(probes(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]).is_err());
    assert_eq!(file_offset(b"garbage", 0), None);

    let mut notes = note("demo", "start", "1@%dil", 0x40_1000, 0x40_2000, 0x40_4000);
    notes.extend(note("demo", "stop", "", 0x40_1004, 0x40_2000, 0));
    let image = elf(notes, 0x40_2000);
    assert_eq!(probes(&image).unwrap().len(), 2);
    // Every truncation of the whole file.
    for len in 0..image.len() {
        let _ = probes(&image[..len]);
        let _ = file_offset(&image[..len], 0x40_1000);
    }
    // Every single-byte corruption, with a few values.
    for i in 0..image.len() {
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bad = image.clone();
            bad[i] = v;
            let _ = probes(&bad);
            let _ = file_offset(&bad, 0x40_1000);
        }
    }
}

#[test]
fn truncated_and_corrupt_notes() {
    let full = desc("demo", "start", "1@%dil", 0x1000, 0, 0);
    // Every cut of the descriptor is an error; the whole one parses.
    for len in 0..full.len() {
        let r = parse_desc(&full[..len], 8, Endianness::Little);
        assert!(
            r.is_err(),
            "descriptor cut at {len} parsed: {:?}",
            r.ok().map(|d| d.name)
        );
    }
    let d = parse_desc(&full, 8, Endianness::Little).unwrap();
    assert_eq!(
        (d.provider.as_str(), d.name.as_str(), d.args.as_str()),
        ("demo", "start", "1@%dil")
    );

    // A stapsdt note cut short inside the section: error, not a panic.
    let good = note("demo", "start", "1@%dil", 0x40_1000, 0, 0);
    // Up to the args' NUL; what follows is padding.
    let unpadded = good.iter().rposition(|&b| b != 0).unwrap() + 2;
    for cut in 1..unpadded {
        let r = probes(&elf(good[..cut].to_vec(), 0x40_2000));
        assert!(
            r.is_err() || r.as_ref().is_ok_and(|v| v.is_empty()),
            "cut {cut}: {r:?}"
        );
    }
    // A descsz past the end of the section.
    let mut bad = good.clone();
    bad[4..8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert!(probes(&elf(bad, 0x40_2000)).is_err());
    // A descriptor too short for its addresses, with a valid note frame.
    let short = raw_note(b"stapsdt\0", NT_STAPSDT, &[0; 20]);
    assert!(matches!(
        probes(&elf(short, 0x40_2000)),
        Err(StapsdtError::Note(_))
    ));
    // Empty provider.
    assert!(probes(&elf(note("", "x", "", 0x40_1000, 0, 0), 0x40_2000)).is_err());
}

#[test]
fn big_endian_and_32_bit_descriptors() {
    let mut d = Vec::new();
    d.extend_from_slice(&0x0040_1000u32.to_be_bytes());
    d.extend_from_slice(&0x0040_8000u32.to_be_bytes());
    d.extend_from_slice(&0u32.to_be_bytes());
    d.extend_from_slice(b"p\0n\0\0");
    let desc = parse_desc(&d, 4, Endianness::Big).unwrap();
    assert_eq!(
        (desc.pc, desc.base, desc.semaphore),
        (0x0040_1000, 0x0040_8000, 0)
    );
    assert_eq!(
        (
            desc.provider.as_str(),
            desc.name.as_str(),
            desc.args.as_str()
        ),
        ("p", "n", "")
    );
}

#[test]
fn offsets_through_load_segments() {
    let loads = [
        Load {
            vaddr: 0,
            filesz: 0x1000,
            offset: 0,
        },
        Load {
            vaddr: 0x20_0000,
            filesz: 0x800,
            offset: 0x1000,
        },
    ];
    assert_eq!(offset_in(&loads, 0x10), Some(0x10));
    assert_eq!(offset_in(&loads, 0x20_0010), Some(0x1010));
    // Past filesz (bss) and between segments: no file offset.
    assert_eq!(offset_in(&loads, 0x20_0800), None);
    assert_eq!(offset_in(&loads, 0x1_0000), None);
    // Overflowing offsets are None, not a wrap.
    assert_eq!(
        offset_in(
            &[Load {
                vaddr: 0,
                filesz: u64::MAX,
                offset: 2
            }],
            u64::MAX - 1
        ),
        None
    );
}

fn check_libjvm(major: u32) -> Option<(PathBuf, HotspotGcOffsets)> {
    let path = libjvm(major)?;
    let p = path.as_path();
    let path = path.display();
    let from_file = probes_in_file(p).unwrap();
    // The partial read and the whole-file read agree.
    let bytes = std::fs::read(p).unwrap();
    assert_eq!(from_file, probes(&bytes).unwrap());
    assert!(from_file.len() > 100, "{} probes", from_file.len());
    for probe in &from_file {
        let off = probe.offset.expect("every HotSpot probe is in a PT_LOAD");
        assert_eq!(file_offset(&bytes, probe.address), Some(off));
        // A USDT site is a nop in the text.
        assert_eq!(
            bytes[off as usize], 0x90,
            "{}:{} at {off:#x}",
            probe.provider, probe.name
        );
        // Providers: hotspot (GC, classes, threads…), hotspot_jni (JNI
        // calls), hs_private; Temurin links libstdc++ and libgcc in
        // statically, with their probes (libstdcxx:throw…).
        if probe.provider.starts_with("h") {
            assert_eq!(probe.semaphore, 0, "{}:{}", probe.provider, probe.name);
        }
    }
    for probe in from_file.iter().filter(|p| p.name.starts_with("gc__")) {
        eprintln!(
            "{path}: {}:{} pc {:#x} base {:#x} file offset {:#x} args {:?}",
            probe.provider,
            probe.name,
            probe.pc,
            probe.base,
            probe.offset.unwrap(),
            probe.args
        );
    }
    let begin = from_file.iter().find(|p| p.name == "gc__begin").unwrap();
    assert_eq!(begin.args, "1@%dil", "gc__begin's one argument: is_full");
    // The collection counter's entry: a function in the text, whose
    // first instruction reads GCId::_next_id (`mov …(%rip),%eax`).
    let gc_id = hotspot_gc_id_offset(p).unwrap();
    assert!(bytes.len() as u64 > gc_id);
    let next_id = hotspot_next_gc_id_from_base(p).unwrap();
    eprintln!("{path}: GCIdMark() at file offset {gc_id:#x}, _next_id at base+{next_id:#x}");
    Some((p.to_owned(), hotspot_gc_offsets(p).unwrap()))
}

#[test]
fn libjvm_17_gc_probes() {
    let Some((path, gc)) = check_libjvm(17) else {
        return;
    };
    assert_eq!(gc.all_begin.len(), 1);
    // Debian's 17.0.15 build (`readelf -n` agrees); offsets move with
    // every build, so they are checked only on that one.
    if std::fs::metadata(&path).map(|m| m.len()).ok() == Some(24_112_704) {
        assert_eq!((gc.begin, gc.end), (0x78_3c60, 0x78_3c70));
    }
}

#[test]
fn libjvm_25_gc_probes_have_two_sites() {
    let Some((path, gc)) = check_libjvm(25) else {
        return;
    };
    assert_eq!((gc.all_begin.len(), gc.all_end.len()), (2, 2));
    if std::fs::metadata(&path).map(|m| m.len()).ok() == Some(29_799_648) {
        assert_eq!(gc.all_begin, vec![0x98_a950, 0x98_aaa0]);
        assert_eq!(gc.all_end, vec![0x98_a960, 0x98_aae7]);
        assert_eq!((gc.begin, gc.end), (0x98_a950, 0x98_a960));
    }
}

#[test]
fn big_binary_without_stapsdt_notes() {
    // This node 20 has 256 notes (GNU build notes), none stapsdt: it was
    // built without --with-dtrace.
    let Ok(probes) = probes_in_file(Path::new("/usr/bin/node")) else {
        testjvm::skip_or_fail::<()>("no /usr/bin/node");
        return;
    };
    eprintln!("/usr/bin/node: {} USDT probes", probes.len());
}

#[test]
fn missing_probe_and_missing_file() {
    assert!(matches!(
        hotspot_gc_offsets_of(&[]),
        Err(StapsdtError::ProbeNotFound {
            name: "gc__begin",
            ..
        })
    ));
    assert!(matches!(
        hotspot_gc_offsets(Path::new("/nonexistent/libjvm.so")),
        Err(StapsdtError::Io { .. })
    ));
    // The test binary has no hotspot probes.
    let exe = std::env::current_exe().unwrap();
    assert!(matches!(
        hotspot_gc_offsets(&exe),
        Err(StapsdtError::ProbeNotFound { .. })
    ));
    // A probe outside every segment is reported, not given offset 0.
    let lost = UsdtProbe {
        provider: "hotspot".into(),
        name: "gc__begin".into(),
        pc: 1,
        base: 0,
        semaphore: 0,
        args: String::new(),
        address: 1,
        offset: None,
        semaphore_offset: None,
    };
    assert!(matches!(
        hotspot_gc_offsets_of(&[lost]),
        Err(StapsdtError::NotLoaded { .. })
    ));
}
