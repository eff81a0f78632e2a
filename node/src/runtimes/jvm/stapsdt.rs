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

#[cfg(test)]
mod tests;
