//! SystemTap SDT ("USDT") probes, read from an ELF file's `.note.stapsdt`
//! notes, and the file offsets a uprobe attaches at.
//!
//! The format is SystemTap's, "UserSpaceProbeImplementation" on the
//! SystemTap wiki (also `sys/sdt.h`): every probe site is one ELF note in the
//! non-allocated section `.note.stapsdt`, owner `"stapsdt"`, type 3
//! (`NT_STAPSDT`), whose descriptor is
//!
//! ```text
//! pc        address-sized  link-time address of the probe's nop
//! base      address-sized  link-time address of the .stapsdt.base section
//! semaphore address-sized  link-time address of the probe's semaphore, or 0
//! provider\0 name\0 args\0
//! ```
//!
//! Address-sized means 8 bytes in ELF64 and 4 in ELF32, in the file's byte
//! order. One probe can have several sites (the compiler inlined or cloned
//! the function holding it): HotSpot 25's `hotspot:gc__begin` has two.
//!
//! **Prelink adjustment.** If the file was prelinked after it was built, its
//! sections moved but the notes (not allocated) were not rewritten. The
//! `.stapsdt.base` section is there to measure the move: like systemtap, bcc
//! and libbpf we add (actual `.stapsdt.base` address − the note's `base`) to
//! `pc` and to `semaphore`, when both are known.
//!
//! **File offsets.** A uprobe is placed at a file offset, not an address: the
//! adjusted address is mapped through the `PT_LOAD` program header that holds
//! it in its file-backed part (`p_vaddr .. p_vaddr + p_filesz`), offset =
//! address − `p_vaddr` + `p_offset`.
//!
//! Nothing in the file is trusted: every offset and length is bounds-checked
//! (by `object`, and here for the descriptor), and garbage gives an error,
//! never a panic. [`probes_in_file`] reads only the ELF header, the program
//! and section headers, the section names and the note section, not the
//! whole library (libjvm.so is 20–30 MiB).
use std::{fs::File, path::Path};

use object::{
    Endianness, FileKind, ReadCache, ReadRef,
    elf::{FileHeader32, FileHeader64, PT_LOAD},
    read::elf::{FileHeader, ProgramHeader, SectionHeader},
};
use thiserror::Error;

/// `NT_STAPSDT`, the note type of SystemTap probe descriptors.
const NT_STAPSDT: u32 = 3;
/// The notes of one file take tens of KiB (libjvm.so: 52 KiB for 530
/// probes); more is a corrupt or hostile header, not worth reading.
const MAX_NOTE_SECTION: u64 = 16 << 20;

#[derive(Debug, Error)]
pub enum StapsdtError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not an ELF file")]
    NotElf,
    #[error("malformed ELF: {0}")]
    Elf(#[from] object::read::Error),
    #[error("malformed stapsdt note: {0}")]
    Note(&'static str),
    #[error(".note.stapsdt is {0} bytes, over the {MAX_NOTE_SECTION} read")]
    TooLarge(u64),
    #[error("no {provider}:{name} probe in .note.stapsdt")]
    ProbeNotFound {
        provider: &'static str,
        name: &'static str,
    },
    #[error("no {0} in the symbol table (a stripped libjvm.so?)")]
    SymbolNotFound(&'static str),
    #[error("probe {provider}:{name} at {address:#x} is outside every PT_LOAD segment")]
    NotLoaded {
        provider: String,
        name: String,
        address: u64,
    },
}

/// One probe site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtProbe {
    pub provider: String,
    pub name: String,
    /// The site's address as the note has it.
    pub pc: u64,
    /// `.stapsdt.base`'s address when the note was written.
    pub base: u64,
    /// The semaphore's address as the note has it; 0 without one. When
    /// non-zero, a tracer must increment it (the uprobe's `ref_ctr_offset`)
    /// or the program skips the probe.
    pub semaphore: u64,
    /// Argument specs, e.g. `"1@%dil"` or `"8@%r14 8@%rbx"`; may be empty.
    pub args: String,
    /// `pc` after the prelink adjustment: the site's address in this file.
    pub address: u64,
    /// The file offset of `address`, where a uprobe attaches; `None` when no
    /// `PT_LOAD` segment holds it.
    pub offset: Option<u64>,
    /// The file offset of the (adjusted) semaphore, when there is one.
    pub semaphore_offset: Option<u64>,
}

/// All probes of an ELF image held in memory.
pub fn probes(elf_bytes: &[u8]) -> Result<Vec<UsdtProbe>, StapsdtError> {
    read_probes(elf_bytes)
}

/// All probes of the ELF file at `path`, reading only its headers and
/// `.note.stapsdt`.
pub fn probes_in_file(path: &Path) -> Result<Vec<UsdtProbe>, StapsdtError> {
    let file = File::open(path).map_err(|source| StapsdtError::Io {
        path: path.display().to_string(),
        source,
    })?;
    // A ReadCache reads the ranges `object` asks for, and only those; it is
    // dropped, with what it read, on return.
    let cache = ReadCache::new(file);
    read_probes(&cache)
}

/// The file offset of the virtual `address` in this ELF image, through its
/// `PT_LOAD` program headers; `None` if no segment's file-backed part holds
/// it or the image is not a valid ELF.
pub fn file_offset(elf_bytes: &[u8], address: u64) -> Option<u64> {
    let loads = match FileKind::parse(elf_bytes).ok()? {
        FileKind::Elf64 => load_segments::<FileHeader64<Endianness>, _>(elf_bytes).ok()?,
        FileKind::Elf32 => load_segments::<FileHeader32<Endianness>, _>(elf_bytes).ok()?,
        _ => return None,
    };
    offset_in(&loads, address)
}

/// Where the HotSpot GC probes of a libjvm.so attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotspotGcOffsets {
    /// File offset of the first `hotspot:gc__begin` site.
    pub begin: u64,
    /// File offset of the first `hotspot:gc__end` site.
    pub end: u64,
    /// Every `gc__begin` site, in note order (first = `begin`). A build can
    /// have several: Temurin 25's libjvm has one in
    /// `VM_GC_Operation::notify_gc_begin` and one inlined into
    /// `VM_CollectForMetadataAllocation::doit`; a tracer that attaches only
    /// the first misses the pauses that go through the others.
    pub all_begin: Vec<u64>,
    /// Every `gc__end` site (first = `end`).
    pub all_end: Vec<u64>,
}

/// The file offsets of `hotspot:gc__begin` and `hotspot:gc__end` in the
/// libjvm.so at `path`. Their arguments: `gc__begin` has one, whether the
/// collection is full; `gc__end` none. Neither has a semaphore in the JDKs
/// seen (OpenJDK 17, Temurin 25).
pub fn hotspot_gc_offsets(path: &Path) -> Result<HotspotGcOffsets, StapsdtError> {
    hotspot_gc_offsets_of(&probes_in_file(path)?)
}

/// [`hotspot_gc_offsets`] over already-read probes.
pub fn hotspot_gc_offsets_of(probes: &[UsdtProbe]) -> Result<HotspotGcOffsets, StapsdtError> {
    let sites = |name: &'static str| -> Result<Vec<u64>, StapsdtError> {
        let mut offsets = Vec::new();
        for p in probes
            .iter()
            .filter(|p| p.provider == "hotspot" && p.name == name)
        {
            offsets.push(p.offset.ok_or_else(|| StapsdtError::NotLoaded {
                provider: p.provider.clone(),
                name: p.name.clone(),
                address: p.address,
            })?);
        }
        if offsets.is_empty() {
            return Err(StapsdtError::ProbeNotFound {
                provider: "hotspot",
                name,
            });
        }
        Ok(offsets)
    };
    let all_begin = sites("gc__begin")?;
    let all_end = sites("gc__end")?;
    Ok(HotspotGcOffsets {
        begin: all_begin[0],
        end: all_end[0],
        all_begin,
        all_end,
    })
}

/// `GCIdMark::GCIdMark()`, the constructor that takes a new GC id: every
/// `GC(N)` of `-Xlog:gc` is one call (see `agent-ebpf`'s `runtime_gc.rs`).
/// A local symbol: it is in `.symtab` only, which OpenJDK 17 (Debian) and
/// Temurin 25 keep.
pub const HOTSPOT_NEW_GC_ID_SYMBOL: &str = "_ZN8GCIdMarkC1Ev";

/// The file offset of [`HOTSPOT_NEW_GC_ID_SYMBOL`] in the libjvm.so at
/// `path`, from its `.symtab`.
pub fn hotspot_gc_id_offset(path: &Path) -> Result<u64, StapsdtError> {
    let file = File::open(path).map_err(|source| StapsdtError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let cache = ReadCache::new(file);
    let address = match FileKind::parse(&cache) {
        Ok(FileKind::Elf64) => {
            symbol_address::<FileHeader64<Endianness>, _>(&cache, HOTSPOT_NEW_GC_ID_SYMBOL)?
        }
        Ok(FileKind::Elf32) => {
            symbol_address::<FileHeader32<Endianness>, _>(&cache, HOTSPOT_NEW_GC_ID_SYMBOL)?
        }
        _ => return Err(StapsdtError::NotElf),
    }
    .ok_or(StapsdtError::SymbolNotFound(HOTSPOT_NEW_GC_ID_SYMBOL))?;
    let loads = match FileKind::parse(&cache) {
        Ok(FileKind::Elf64) => load_segments::<FileHeader64<Endianness>, _>(&cache)?,
        _ => load_segments::<FileHeader32<Endianness>, _>(&cache)?,
    };
    offset_in(&loads, address).ok_or(StapsdtError::NotLoaded {
        provider: "symbol".into(),
        name: HOTSPOT_NEW_GC_ID_SYMBOL.into(),
        address,
    })
}

/// `GCId::_next_id`, the `uint` the JVM increments for every new GC id:
/// the number of `GC(N)` it has logged, readable without a uprobe.
pub const HOTSPOT_NEXT_GC_ID_SYMBOL: &str = "_ZN4GCId8_next_idE";

/// Where [`HOTSPOT_NEXT_GC_ID_SYMBOL`] is in a process that mapped the
/// libjvm.so at `path`: its distance from the address where the file's
/// offset 0 is mapped (the start of its first `/proc/<pid>/maps` line).
pub fn hotspot_next_gc_id_from_base(path: &Path) -> Result<u64, StapsdtError> {
    let file = File::open(path).map_err(|source| StapsdtError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let cache = ReadCache::new(file);
    let (address, loads) = match FileKind::parse(&cache) {
        Ok(FileKind::Elf64) => (
            symbol_value::<FileHeader64<Endianness>, _>(
                &cache,
                HOTSPOT_NEXT_GC_ID_SYMBOL,
                object::elf::STT_OBJECT,
            )?,
            load_segments::<FileHeader64<Endianness>, _>(&cache)?,
        ),
        _ => return Err(StapsdtError::NotElf),
    };
    let address = address.ok_or(StapsdtError::SymbolNotFound(HOTSPOT_NEXT_GC_ID_SYMBOL))?;
    // The segment that maps file offset 0 sits at the mapping's start,
    // rounded down to its page.
    let base = loads
        .iter()
        .find(|l| l.offset == 0)
        .map(|l| l.vaddr & !0xfff)
        .ok_or(StapsdtError::Note("no PT_LOAD maps file offset 0"))?;
    address.checked_sub(base).ok_or(StapsdtError::NotLoaded {
        provider: "symbol".into(),
        name: HOTSPOT_NEXT_GC_ID_SYMBOL.into(),
        address,
    })
}

/// The value of the function symbol `name` in `.symtab`, if there is one.
fn symbol_address<'d, Elf, R>(data: R, name: &str) -> Result<Option<u64>, StapsdtError>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'d>,
{
    symbol_value::<Elf, R>(data, name, object::elf::STT_FUNC)
}

/// The value of the symbol `name` of type `st_type` in `.symtab`.
fn symbol_value<'d, Elf, R>(data: R, name: &str, st_type: u8) -> Result<Option<u64>, StapsdtError>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'d>,
{
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let symbols = sections.symbols(endian, data, object::elf::SHT_SYMTAB)?;
    for symbol in symbols.iter() {
        use object::read::elf::Sym as _;
        if symbol.st_type() == st_type
            && symbol.st_value(endian).into() != 0
            && symbols.symbol_name(endian, symbol).ok() == Some(name.as_bytes())
        {
            return Ok(Some(symbol.st_value(endian).into()));
        }
    }
    Ok(None)
}

fn read_probes<'d, R: ReadRef<'d>>(data: R) -> Result<Vec<UsdtProbe>, StapsdtError> {
    match FileKind::parse(data) {
        Ok(FileKind::Elf64) => read_probes_elf::<FileHeader64<Endianness>, R>(data),
        Ok(FileKind::Elf32) => read_probes_elf::<FileHeader32<Endianness>, R>(data),
        _ => Err(StapsdtError::NotElf),
    }
}

/// The file-backed part of one `PT_LOAD` segment.
#[derive(Debug, Clone, Copy)]
struct Load {
    vaddr: u64,
    filesz: u64,
    offset: u64,
}

fn load_segments<'d, Elf, R>(data: R) -> Result<Vec<Load>, StapsdtError>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'d>,
{
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    Ok(header
        .program_headers(endian, data)?
        .iter()
        .filter(|ph| ph.p_type(endian) == PT_LOAD)
        .map(|ph| Load {
            vaddr: ph.p_vaddr(endian).into(),
            filesz: ph.p_filesz(endian).into(),
            offset: ph.p_offset(endian).into(),
        })
        .collect())
}

fn offset_in(loads: &[Load], address: u64) -> Option<u64> {
    loads.iter().find_map(|l| {
        let delta = address.checked_sub(l.vaddr)?;
        (delta < l.filesz)
            .then(|| l.offset.checked_add(delta))
            .flatten()
    })
}

fn read_probes_elf<'d, Elf, R>(data: R) -> Result<Vec<UsdtProbe>, StapsdtError>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'d>,
{
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let addr_size = if header.is_class_64() { 8 } else { 4 };
    let loads = load_segments::<Elf, R>(data)?;
    let sections = header.sections(endian, data)?;
    let Some((_, notes_section)) = sections.section_by_name(endian, b".note.stapsdt") else {
        return Ok(Vec::new());
    };
    let size: u64 = notes_section.sh_size(endian).into();
    if size > MAX_NOTE_SECTION {
        return Err(StapsdtError::TooLarge(size));
    }
    // Where .stapsdt.base is now; the notes say where it was.
    let actual_base: Option<u64> = sections
        .section_by_name(endian, b".stapsdt.base")
        .map(|(_, s)| s.sh_addr(endian).into());
    let Some(mut notes) = notes_section.notes(endian, data)? else {
        // Named .note.stapsdt but not SHT_NOTE: nothing we can read.
        return Err(StapsdtError::Note(".note.stapsdt is not a note section"));
    };
    let mut probes = Vec::new();
    while let Some(note) = notes.next()? {
        if note.name() != b"stapsdt" || note.n_type(endian) != NT_STAPSDT {
            continue;
        }
        let d = parse_desc(note.desc(), addr_size, endian)?;
        // Prelink adjustment, as systemtap/bcc/libbpf do it: only when both
        // bases are known; wrapping, as the addresses are modular.
        let shift = match actual_base {
            Some(actual) if actual != 0 && d.base != 0 => actual.wrapping_sub(d.base),
            _ => 0,
        };
        let address = d.pc.wrapping_add(shift);
        let semaphore_offset = (d.semaphore != 0)
            .then(|| offset_in(&loads, d.semaphore.wrapping_add(shift)))
            .flatten();
        probes.push(UsdtProbe {
            offset: offset_in(&loads, address),
            address,
            semaphore_offset,
            provider: d.provider,
            name: d.name,
            pc: d.pc,
            base: d.base,
            semaphore: d.semaphore,
            args: d.args,
        });
    }
    Ok(probes)
}

struct Desc {
    pc: u64,
    base: u64,
    semaphore: u64,
    provider: String,
    name: String,
    args: String,
}

/// Parses one descriptor; see the module doc for its layout.
fn parse_desc(desc: &[u8], addr_size: usize, endian: Endianness) -> Result<Desc, StapsdtError> {
    let addrs = desc.get(..3 * addr_size).ok_or(StapsdtError::Note(
        "descriptor shorter than its three addresses",
    ))?;
    let word = |i: usize| -> u64 {
        let b = &addrs[i * addr_size..(i + 1) * addr_size];
        match (addr_size, endian) {
            (8, Endianness::Little) => u64::from_le_bytes(b.try_into().unwrap_or_default()),
            (8, Endianness::Big) => u64::from_be_bytes(b.try_into().unwrap_or_default()),
            (_, Endianness::Little) => u32::from_le_bytes(b.try_into().unwrap_or_default()).into(),
            (_, Endianness::Big) => u32::from_be_bytes(b.try_into().unwrap_or_default()).into(),
        }
    };
    let mut strings = desc[3 * addr_size..].split(|&b| b == 0);
    let mut next = |what: &'static str| -> Result<String, StapsdtError> {
        strings
            .next()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .ok_or(StapsdtError::Note(what))
    };
    let provider = next("no provider")?;
    let name = next("no name")?;
    // A NUL-terminated field is followed by more input; the args may be
    // empty, but must be there (a truncated descriptor lacks the NULs).
    let terminated = desc[3 * addr_size..].iter().filter(|&&b| b == 0).count();
    if terminated < 3 {
        return Err(StapsdtError::Note(
            "provider, name and args are not NUL-terminated",
        ));
    }
    let args = next("no args")?;
    if provider.is_empty() || name.is_empty() {
        return Err(StapsdtError::Note("empty provider or name"));
    }
    Ok(Desc {
        pc: word(0),
        base: word(1),
        semaphore: word(2),
        provider,
        name,
        args,
    })
}

/// A minimal ELF64 little-endian writer for tests: sections with names,
/// types, addresses and contents, and one `PT_LOAD` per section that has an
/// address (mapping exactly its contents). Enough to exercise the readers on
/// layouts no compiler here produces (prelinked, odd, corrupt).
#[cfg(test)]
pub(crate) mod testelf {
    pub const SHT_PROGBITS: u32 = 1;
    pub const SHT_SYMTAB: u32 = 2;
    pub const SHT_STRTAB: u32 = 3;
    pub const SHT_NOTE: u32 = 7;

    pub struct Section<'a> {
        pub name: &'a str,
        pub sh_type: u32,
        pub addr: u64,
        pub data: Vec<u8>,
        /// Section index (1-based, in this list's order) of the linked
        /// section, e.g. a symtab's strtab; 0 for none.
        pub link: u32,
    }

    impl<'a> Section<'a> {
        pub fn new(name: &'a str, sh_type: u32, addr: u64, data: Vec<u8>) -> Self {
            Self {
                name,
                sh_type,
                addr,
                data,
                link: 0,
            }
        }
    }

    pub fn build(sections: &[Section<'_>]) -> Vec<u8> {
        let loads: Vec<&Section<'_>> = sections.iter().filter(|s| s.addr != 0).collect();
        let phoff = 64u64;
        let mut data_off = phoff + 56 * loads.len() as u64;
        let mut offsets = Vec::new();
        for s in sections {
            data_off = data_off.next_multiple_of(8);
            offsets.push(data_off);
            data_off += s.data.len() as u64;
        }
        // .shstrtab: "\0" then every name, then its own.
        let mut shstrtab = vec![0u8];
        let mut name_offs = Vec::new();
        for s in sections {
            name_offs.push(shstrtab.len() as u32);
            shstrtab.extend_from_slice(s.name.as_bytes());
            shstrtab.push(0);
        }
        let shstrtab_name = shstrtab.len() as u32;
        shstrtab.extend_from_slice(b".shstrtab\0");
        let shstrtab_off = data_off;
        let shoff = (shstrtab_off + shstrtab.len() as u64).next_multiple_of(8);
        let shnum = sections.len() as u16 + 2;

        let mut out = Vec::new();
        out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
        out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // entry
        out.extend_from_slice(&(if loads.is_empty() { 0 } else { phoff }).to_le_bytes());
        out.extend_from_slice(&shoff.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // flags
        out.extend_from_slice(&64u16.to_le_bytes()); // ehsize
        out.extend_from_slice(&56u16.to_le_bytes());
        out.extend_from_slice(&(loads.len() as u16).to_le_bytes());
        out.extend_from_slice(&64u16.to_le_bytes());
        out.extend_from_slice(&shnum.to_le_bytes());
        out.extend_from_slice(&(shnum - 1).to_le_bytes()); // shstrndx: last
        assert_eq!(out.len(), 64);
        for (s, off) in sections.iter().zip(&offsets).filter(|(s, _)| s.addr != 0) {
            out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
            out.extend_from_slice(&5u32.to_le_bytes()); // R+X
            out.extend_from_slice(&off.to_le_bytes());
            out.extend_from_slice(&s.addr.to_le_bytes());
            out.extend_from_slice(&s.addr.to_le_bytes());
            out.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
            out.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
            out.extend_from_slice(&0x1000u64.to_le_bytes());
        }
        for (s, off) in sections.iter().zip(&offsets) {
            out.resize(*off as usize, 0);
            out.extend_from_slice(&s.data);
        }
        out.resize(shstrtab_off as usize, 0);
        out.extend_from_slice(&shstrtab);
        out.resize(shoff as usize, 0);
        let mut shdr =
            |name: u32, ty: u32, addr: u64, off: u64, size: u64, link: u32, align: u64| {
                out.extend_from_slice(&name.to_le_bytes());
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(&(if addr != 0 { 2u64 } else { 0 }).to_le_bytes()); // SHF_ALLOC
                out.extend_from_slice(&addr.to_le_bytes());
                out.extend_from_slice(&off.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.extend_from_slice(&link.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes()); // info
                out.extend_from_slice(&align.to_le_bytes());
                out.extend_from_slice(&(if ty == SHT_SYMTAB { 24u64 } else { 0 }).to_le_bytes());
            };
        shdr(0, 0, 0, 0, 0, 0, 0);
        for ((s, off), name) in sections.iter().zip(&offsets).zip(&name_offs) {
            shdr(
                *name,
                s.sh_type,
                s.addr,
                *off,
                s.data.len() as u64,
                s.link,
                4,
            );
        }
        shdr(
            shstrtab_name,
            SHT_STRTAB,
            0,
            shstrtab_off,
            shstrtab.len() as u64,
            0,
            1,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testelf::{SHT_NOTE, SHT_PROGBITS, Section, build};
    use super::*;

    use crate::runtimes::hsperf::testjvm;
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
}
