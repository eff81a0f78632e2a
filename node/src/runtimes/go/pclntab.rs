//! Function names of Go binaries from their pclntab, the table the Go
//! runtime itself uses for tracebacks. `go build -ldflags="-s -w"` drops
//! `.symtab` and DWARF but must keep the pclntab, so this is how Tally names
//! frames of stripped Go programs and finds `runtime.gcMarkTermination` to
//! probe.
//!
//! Where the table is: the `.gopclntab` section, `.data.rel.ro.gopclntab`
//! in PIE builds (Go 1.19 puts it in relro there), and for files without
//! section headers a header found by its magic inside a non-executable
//! `PT_LOAD` segment, accepted only if the whole table then checks out.
//!
//! Formats (Go's `runtime/symtab.go`, `debug/gosym`): 1.2–1.15 (magic
//! `0xfffffffb`), 1.16–1.17 (`0xfffffffa`), 1.18–1.19 (`0xfffffff0`) and
//! 1.20+ (`0xfffffff1`, same layout as 1.18), either endianness, 4- or
//! 8-byte pointers.
//!
//! Memory: the table is read once, and only function entries (4 bytes
//! each), name offsets (4 bytes each) and the names (one buffer, as in the
//! file) are kept; pc-value tables and file tables are dropped. A 1,500
//! function program keeps ~40 KiB, a 100k function one a few MiB.
use std::{fs::File, path::Path};

use object::{
    Endianness, FileKind, ReadCache, ReadRef,
    elf::{FileHeader32, FileHeader64, PF_X, PT_LOAD},
    read::elf::{FileHeader, ProgramHeader, SectionHeader},
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PclntabError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not an ELF file we can read: {0}")]
    Elf(#[from] object::Error),
    #[error("no Go pclntab in this file")]
    NotFound,
    #[error("pclntab magic {0:#x} is not a known Go version")]
    UnknownMagic(u32),
    #[error("pclntab header is damaged: {0}")]
    BadHeader(&'static str),
    #[error("pclntab is cut short: {0} lies past its end")]
    Truncated(&'static str),
    #[error("pclntab function entries are not sorted")]
    Unsorted,
}

/// Which layout a table has; the Go versions that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PclntabVersion {
    Go12,
    Go116,
    Go118,
    Go120,
}

impl PclntabVersion {
    fn of_magic(magic: u32) -> Option<Self> {
        match magic {
            0xfffffffb => Some(Self::Go12),
            0xfffffffa => Some(Self::Go116),
            0xfffffff0 => Some(Self::Go118),
            0xfffffff1 => Some(Self::Go120),
            _ => None,
        }
    }
}

const MAGICS: [u32; 4] = [0xfffffffb, 0xfffffffa, 0xfffffff0, 0xfffffff1];

/// A `PT_LOAD` program header: where file bytes land in the link-time
/// address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
}

/// The functions of one Go binary, by link-time virtual address.
#[derive(Debug)]
pub struct GoFuncTable {
    version: PclntabVersion,
    /// Address the entry offsets count from.
    text_start: u64,
    /// Function entries as offsets from `text_start`, sorted; one more than
    /// there are functions: the last is the end of the last function.
    entries: Vec<u32>,
    /// Where each function's NUL-terminated name starts in `names`.
    name_offsets: Vec<u32>,
    names: Box<[u8]>,
    segments: Vec<LoadSegment>,
}

impl GoFuncTable {
    /// Reads the table of the ELF file at `path` (e.g.
    /// `/proc/<pid>/map_files/<range>`), reading only its headers and the
    /// table itself, not the whole file.
    pub fn read(path: &Path) -> Result<Self, PclntabError> {
        let file = File::open(path).map_err(|source| PclntabError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let cache = ReadCache::new(file);
        Self::parse_ref(&cache)
        // The cache, with the table's bytes, is dropped here.
    }

    /// Parses the table of a whole ELF image in memory.
    pub fn parse(elf: &[u8]) -> Result<Self, PclntabError> {
        Self::parse_ref(elf)
    }

    fn parse_ref<'d, R: ReadRef<'d>>(data: R) -> Result<Self, PclntabError> {
        match FileKind::parse(data)? {
            FileKind::Elf64 => parse_elf::<FileHeader64<Endianness>, R>(data),
            FileKind::Elf32 => parse_elf::<FileHeader32<Endianness>, R>(data),
            _ => Err(PclntabError::NotFound),
        }
    }

    pub fn version(&self) -> PclntabVersion {
        self.version
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.name_offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.name_offsets.is_empty()
    }

    /// The name of the function whose code holds link-time address `vaddr`.
    pub fn name_at(&self, vaddr: u64) -> Option<&str> {
        let off = u32::try_from(vaddr.checked_sub(self.text_start)?).ok()?;
        if off >= *self.entries.last()? {
            return None;
        }
        let i = self.entries[..self.len()]
            .partition_point(|&e| e <= off)
            .checked_sub(1)?;
        self.name(i)
    }

    /// The entry address of the function named `name` (the first, if
    /// several share it).
    pub fn entry_of(&self, name: &str) -> Option<u64> {
        (0..self.len())
            .find(|&i| self.name(i) == Some(name))
            .map(|i| self.text_start + u64::from(self.entries[i]))
    }

    /// Where link-time address `vaddr` is in the file.
    pub fn file_offset_of(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
            .map(|s| vaddr - s.vaddr + s.offset)
    }

    /// The link-time address that file offset `offset` is loaded at.
    pub fn vaddr_of_file_offset(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| offset >= s.offset && offset - s.offset < s.filesz)
            .map(|s| offset - s.offset + s.vaddr)
    }

    /// Bytes held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * 4
            + self.name_offsets.capacity() * 4
            + self.names.len()
            + self.segments.capacity() * std::mem::size_of::<LoadSegment>()
    }

    fn name(&self, i: usize) -> Option<&str> {
        let rest = self.names.get(*self.name_offsets.get(i)? as usize..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    }
}

fn parse_elf<'d, Elf, R>(data: R) -> Result<GoFuncTable, PclntabError>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'d>,
{
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let big = endian == Endianness::Big;
    let segments: Vec<LoadSegment> = header
        .program_headers(endian, data)?
        .iter()
        .filter(|p| p.p_type(endian) == PT_LOAD)
        .map(|p| LoadSegment {
            vaddr: p.p_vaddr(endian).into(),
            offset: p.p_offset(endian).into(),
            filesz: p.p_filesz(endian).into(),
        })
        .collect();
    let sections = header.sections(endian, data)?;
    // Go 1.18+ records the text start in the header; an unrelocated PIE
    // table might hold 0 there, and then .text's address is it.
    let text_addr = sections
        .section_by_name(endian, b".text")
        .map(|(_, s)| s.sh_addr(endian).into());
    for name in [&b".gopclntab"[..], b".data.rel.ro.gopclntab"] {
        if let Some((_, section)) = sections.section_by_name(endian, name) {
            let bytes = section.data(endian, data)?;
            let mut table = parse_table(bytes, big, text_addr)?;
            table.segments = segments;
            return Ok(table);
        }
    }
    // No section headers (or renamed ones): look in the non-executable
    // segments for a header whose whole table checks out.
    for phdr in header.program_headers(endian, data)? {
        if phdr.p_type(endian) != PT_LOAD || phdr.p_flags(endian) & PF_X != 0 {
            continue;
        }
        let Ok(bytes) = phdr.data(endian, data) else {
            continue;
        };
        if let Some(mut table) = scan_for_table(bytes, big, text_addr) {
            table.segments = segments;
            return Ok(table);
        }
    }
    Err(PclntabError::NotFound)
}

/// The first table in `bytes` that parses; Go aligns it to at least 8.
fn scan_for_table(bytes: &[u8], big: bool, text_addr: Option<u64>) -> Option<GoFuncTable> {
    (0..bytes.len().saturating_sub(16))
        .step_by(8)
        .filter(|&at| MAGICS.contains(&read_u32(&bytes[at..], big)))
        .find_map(|at| {
            let table = parse_table(&bytes[at..], big, text_addr).ok()?;
            // A stray magic with a plausible header must also name its
            // functions in UTF-8.
            (!table.is_empty() && (0..table.len()).all(|i| table.name(i).is_some()))
                .then_some(table)
        })
}

fn read_u32(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// Little readers over the table, with its byte order and pointer size.
struct Reader<'a> {
    data: &'a [u8],
    big: bool,
    ptr: usize,
}

impl Reader<'_> {
    fn u32_at(&self, at: usize, what: &'static str) -> Result<u32, PclntabError> {
        let b = self
            .data
            .get(at..at.checked_add(4).ok_or(PclntabError::Truncated(what))?)
            .ok_or(PclntabError::Truncated(what))?;
        Ok(read_u32(b, self.big))
    }

    fn ptr_at(&self, at: usize, what: &'static str) -> Result<u64, PclntabError> {
        if self.ptr == 4 {
            return self.u32_at(at, what).map(u64::from);
        }
        let b: [u8; 8] = self
            .data
            .get(at..at.checked_add(8).ok_or(PclntabError::Truncated(what))?)
            .ok_or(PclntabError::Truncated(what))?
            .try_into()
            .expect("8 bytes");
        Ok(if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// Header word `i` after the 8-byte prefix, as an offset into the table.
    fn word(&self, i: usize, what: &'static str) -> Result<usize, PclntabError> {
        let v = self.ptr_at(8 + i * self.ptr, what)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v <= self.data.len())
            .ok_or(PclntabError::Truncated(what))
    }
}

/// Parses a table that starts at `data[0]` (it may run on past its end).
fn parse_table(
    data: &[u8],
    big: bool,
    text_addr: Option<u64>,
) -> Result<GoFuncTable, PclntabError> {
    if data.len() < 16 {
        return Err(PclntabError::Truncated("header"));
    }
    let magic = read_u32(data, big);
    let version = PclntabVersion::of_magic(magic).ok_or(PclntabError::UnknownMagic(magic))?;
    let (pad, min_lc, ptr) = ((data[4], data[5]), data[6], data[7]);
    if pad != (0, 0) {
        return Err(PclntabError::BadHeader("padding is not zero"));
    }
    if ![1, 2, 4].contains(&min_lc) {
        return Err(PclntabError::BadHeader("instruction size quantum"));
    }
    if ![4, 8].contains(&ptr) {
        return Err(PclntabError::BadHeader("pointer size"));
    }
    let r = Reader {
        data,
        big,
        ptr: ptr as usize,
    };
    let nfunc = usize::try_from(r.ptr_at(8, "function count")?)
        .ok()
        .filter(|&n| n > 0 && n < data.len() / 8)
        .ok_or(PclntabError::BadHeader("function count"))?;
    // Per layout: where the function table and _func records are, where
    // names are, the size of a function-table field, and where nameoff
    // sits in a _func.
    let (functab, funcdata, names, field, nameoff_at, text_start) = match version {
        PclntabVersion::Go12 => (8 + r.ptr, 0, (0, data.len()), r.ptr, r.ptr, None),
        PclntabVersion::Go116 => {
            let (names, cu, pcln) = (r.word(2, "names")?, r.word(3, "cu")?, r.word(6, "funcs")?);
            (pcln, pcln, (names, cu), r.ptr, r.ptr, None)
        }
        PclntabVersion::Go118 | PclntabVersion::Go120 => {
            let text = r.ptr_at(8 + 2 * r.ptr, "text start")?;
            let (names, cu, pcln) = (r.word(3, "names")?, r.word(4, "cu")?, r.word(7, "funcs")?);
            let text = if text == 0 { text_addr } else { Some(text) };
            let text = text.ok_or(PclntabError::BadHeader("text start"))?;
            (pcln, pcln, (names, cu), 4, 4, Some(text))
        }
    };
    if names.0 > names.1 {
        return Err(PclntabError::BadHeader("name table bounds"));
    }
    let read_field = |i: usize, what| -> Result<u64, PclntabError> {
        let at = functab + i * field;
        if field == 4 {
            r.u32_at(at, what).map(u64::from)
        } else {
            r.ptr_at(at, what)
        }
    };
    // The table: nfunc (entry, funcoff) pairs, then the end address.
    let first = read_field(0, "function table")?;
    let base = text_start.unwrap_or(first);
    let rel = |v: u64| -> Result<u32, PclntabError> {
        // 1.18+ entries are already offsets; older ones are addresses.
        let off = if text_start.is_some() {
            v
        } else {
            v.checked_sub(base).ok_or(PclntabError::Unsorted)?
        };
        u32::try_from(off).map_err(|_| PclntabError::BadHeader("text over 4 GiB"))
    };
    let mut entries = Vec::with_capacity(nfunc + 1);
    let mut name_offsets = Vec::with_capacity(nfunc);
    let mut old_names = Vec::new();
    for i in 0..nfunc {
        let entry = rel(read_field(2 * i, "function table")?)?;
        if entries.last().is_some_and(|&prev| prev > entry) {
            return Err(PclntabError::Unsorted);
        }
        entries.push(entry);
        let funcoff = usize::try_from(read_field(2 * i + 1, "function table")?)
            .map_err(|_| PclntabError::Truncated("function record"))?;
        let at = funcdata
            .checked_add(funcoff)
            .and_then(|a| a.checked_add(nameoff_at))
            .ok_or(PclntabError::Truncated("function record"))?;
        let nameoff = r.u32_at(at, "function record")? as usize;
        let name_at = names.0 + nameoff;
        if name_at >= names.1 {
            return Err(PclntabError::Truncated("function name"));
        }
        if version == PclntabVersion::Go12 {
            // Names lie among the pc-value tables: copy just them.
            let rest = &data[name_at..];
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(PclntabError::Truncated("function name"))?;
            name_offsets.push(old_names.len() as u32);
            old_names.extend_from_slice(&rest[..=end]);
        } else {
            name_offsets.push(nameoff as u32);
        }
    }
    let end = rel(read_field(2 * nfunc, "end of text")?)?;
    if entries.last().is_some_and(|&last| last > end) {
        return Err(PclntabError::Unsorted);
    }
    entries.push(end);
    let names = if version == PclntabVersion::Go12 {
        old_names.into_boxed_slice()
    } else {
        data[names.0..names.1].into()
    };
    Ok(GoFuncTable {
        version,
        text_start: base,
        entries,
        name_offsets,
        names,
        segments: Vec::new(),
    })
}

#[cfg(test)]
pub(crate) mod tests;
