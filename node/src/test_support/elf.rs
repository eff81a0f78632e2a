//! A minimal ELF64 little-endian writer for tests: sections with names,
//! types, addresses and contents, and one `PT_LOAD` per section that has an
//! address (mapping exactly its contents). Enough to exercise the readers on
//! layouts no compiler here produces (prelinked, odd, corrupt).
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
    let mut shdr = |name: u32, ty: u32, addr: u64, off: u64, size: u64, link: u32, align: u64| {
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
