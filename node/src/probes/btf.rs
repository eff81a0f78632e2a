//! A small streaming reader for the kernel's BTF that finds struct member
//! offsets by name.
//!
//! `/sys/kernel/btf/vmlinux` is several MiB with over 100,000 types; parsing
//! all of it (as general BTF libraries do) costs tens of MiB at start-up, more
//! than the agent's whole memory budget. This reader streams the file twice
//! with a small buffer, keeps an index of struct and union types only, and
//! reads the few structs it is asked about. Format: the kernel's
//! Documentation/bpf/btf.rst.
use std::{
    collections::HashMap,
    fs::File,
    io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom},
    os::unix::fs::FileExt as _,
    path::Path,
};

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_FUNC: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not BTF (magic {0:#06x}); a big-endian or corrupt file?")]
    Magic(u16),
    #[error("BTF type {id} has unknown kind {kind}")]
    Kind { id: u32, kind: u32 },
    #[error("BTF header is malformed")]
    Header,
}

/// Header fields, offsets relative to the end of the header.
#[derive(Debug, Clone, Copy)]
struct Header {
    hdr_len: u64,
    type_off: u64,
    type_len: u64,
    str_off: u64,
    str_len: u64,
}

/// A struct or union: where its members start in the file, and how many.
#[derive(Debug, Clone, Copy)]
struct Composite {
    name_off: u32,
    members_at: u64,
    vlen: u32,
}

/// Member offsets of named structs, from one BTF file.
pub struct BtfIndex {
    file: File,
    /// String offset of each name asked for (strings are deduplicated).
    names: HashMap<String, u32>,
    /// Every struct and union, by type id.
    composites: HashMap<u32, Composite>,
}

impl BtfIndex {
    /// Indexes `path`, remembering where the strings in `wanted` are.
    pub fn open(path: &Path, wanted: &[&str]) -> Result<Self, BtfError> {
        let mut file = File::open(path)?;
        let header = read_header(&file)?;
        let names = find_strings(&mut file, &header, wanted)?;
        let composites = index_composites(&mut file, &header)?;
        Ok(Self {
            file,
            names,
            composites,
        })
    }

    /// Byte offset of `member` in `struct strukt`, looking through anonymous
    /// structs and unions. Both names must have been passed to [`open`](Self::open).
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<Option<u32>, BtfError> {
        let (Some(&sname), Some(&mname)) = (self.names.get(strukt), self.names.get(member)) else {
            return Ok(None);
        };
        // The definition, not a forward declaration (those have no members).
        for c in self
            .composites
            .values()
            .filter(|c| c.name_off == sname && c.vlen > 0)
        {
            if let Some(bits) = self.find_member(c, mname, 0)? {
                return Ok(Some(bits / 8));
            }
        }
        Ok(None)
    }

    fn find_member(
        &self,
        c: &Composite,
        name_off: u32,
        depth: u32,
    ) -> Result<Option<u32>, BtfError> {
        if depth > 8 {
            return Ok(None);
        }
        let mut buf = vec![0u8; c.vlen as usize * 12];
        self.file.read_exact_at(&mut buf, c.members_at)?;
        for m in buf.chunks_exact(12) {
            let (name, type_id, offset) = (u32_at(m, 0), u32_at(m, 4), u32_at(m, 8));
            // With kind_flag set the top 8 bits are a bitfield size; the
            // fields we read are never bitfields, and anonymous members are
            // byte aligned, so the low 24 bits are the bit offset.
            let bits = offset & 0x00ff_ffff;
            if name == name_off {
                return Ok(Some(bits));
            }
            if name == 0
                && let Some(inner) = self.composites.get(&type_id)
                && let Some(found) = self.find_member(inner, name_off, depth + 1)?
            {
                return Ok(Some(bits + found));
            }
        }
        Ok(None)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_header(file: &File) -> Result<Header, BtfError> {
    let mut h = [0u8; 24];
    file.read_exact_at(&mut h, 0)?;
    let magic = u16::from_le_bytes([h[0], h[1]]);
    if magic != MAGIC {
        return Err(BtfError::Magic(magic));
    }
    let header = Header {
        hdr_len: u64::from(u32_at(&h, 4)),
        type_off: u64::from(u32_at(&h, 8)),
        type_len: u64::from(u32_at(&h, 12)),
        str_off: u64::from(u32_at(&h, 16)),
        str_len: u64::from(u32_at(&h, 20)),
    };
    if header.hdr_len < 24 {
        return Err(BtfError::Header);
    }
    Ok(header)
}

/// Streams the string section for exact matches of `wanted`.
fn find_strings(
    file: &mut File,
    h: &Header,
    wanted: &[&str],
) -> Result<HashMap<String, u32>, BtfError> {
    file.seek(SeekFrom::Start(h.hdr_len + h.str_off))?;
    let mut reader = BufReader::with_capacity(64 << 10, (&*file).take(h.str_len));
    let mut found = HashMap::new();
    let mut offset: u32 = 0;
    let mut s = Vec::with_capacity(256);
    loop {
        s.clear();
        let n = reader.read_until(0, &mut s)?;
        if n == 0 {
            break;
        }
        let text = s.strip_suffix(&[0]).unwrap_or(&s);
        if let Ok(text) = std::str::from_utf8(text)
            && wanted.contains(&text)
        {
            found.entry(text.to_string()).or_insert(offset);
        }
        offset += n as u32;
    }
    Ok(found)
}

/// One type of the type section, as [`walk_types`] hands it over.
struct TypeEntry {
    id: u32,
    kind: u32,
    name_off: u32,
    vlen: u32,
    /// Where the kind's extra data (members, parameters…) starts.
    extra_at: u64,
}

/// Streams the type section, calling `visit` with each type in id order.
fn walk_types(
    file: &mut File,
    h: &Header,
    mut visit: impl FnMut(&TypeEntry),
) -> Result<(), BtfError> {
    let start = h.hdr_len + h.type_off;
    file.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::with_capacity(64 << 10, (&*file).take(h.type_len));
    let mut pos = start;
    let mut id = 1;
    let mut t = [0u8; 12];
    while pos < start + h.type_len {
        reader.read_exact(&mut t)?;
        pos += 12;
        let (name_off, info) = (u32_at(&t, 0), u32_at(&t, 4));
        let vlen = info & 0xffff;
        let kind = (info >> 24) & 0x1f;
        let extra: u64 = match kind {
            1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
            2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
            3 => 12,                   // ARRAY
            KIND_STRUCT | KIND_UNION => 12 * u64::from(vlen),
            6 | 13 => 8 * u64::from(vlen),   // ENUM, FUNC_PROTO
            15 | 19 => 12 * u64::from(vlen), // DATASEC, ENUM64
            _ => return Err(BtfError::Kind { id, kind }),
        };
        visit(&TypeEntry {
            id,
            kind,
            name_off,
            vlen,
            extra_at: pos,
        });
        io::copy(&mut (&mut reader).take(extra), &mut io::sink())?;
        pos += extra;
        id += 1;
    }
    Ok(())
}

/// Streams the type section, recording where every struct and union is.
fn index_composites(file: &mut File, h: &Header) -> Result<HashMap<u32, Composite>, BtfError> {
    let mut composites = HashMap::new();
    walk_types(file, h, |t| {
        if t.kind == KIND_STRUCT || t.kind == KIND_UNION {
            composites.insert(
                t.id,
                Composite {
                    name_off: t.name_off,
                    members_at: t.extra_at,
                    vlen: t.vlen,
                },
            );
        }
    })?;
    Ok(composites)
}

/// The type id of the kernel function `name` (a `FUNC`), as a tracing
/// program's load names it (`attach_btf_id`), found by streaming the file:
/// no index is kept.
pub fn func_id(path: &Path, name: &str) -> Result<Option<u32>, BtfError> {
    let mut file = File::open(path)?;
    let header = read_header(&file)?;
    let Some(&name_off) = find_strings(&mut file, &header, &[name])?.get(name) else {
        return Ok(None);
    };
    let mut found = None;
    walk_types(&mut file, &header, |t| {
        if t.kind == KIND_FUNC && t.name_off == name_off && found.is_none() {
            found = Some(t.id);
        }
    })?;
    Ok(found)
}
