//! Reading the input ELF file: headers, segments, sections, symbols and relocations, through
//! `object`'s bounds-checked low-level ELF API, into plain owned structures.

use crate::error::Error;
use object::elf as E;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, Sym};
use object::LittleEndian as LE;

pub const PT_LOAD: u32 = E::PT_LOAD;
pub const PT_DYNAMIC: u32 = E::PT_DYNAMIC;
pub const PT_INTERP: u32 = E::PT_INTERP;
pub const PT_NOTE: u32 = E::PT_NOTE;
pub const PT_PHDR: u32 = E::PT_PHDR;
pub const PT_GNU_EH_FRAME: u32 = E::PT_GNU_EH_FRAME;
pub const PF_X: u32 = E::PF_X;
pub const PF_W: u32 = E::PF_W;
pub const PF_R: u32 = E::PF_R;
pub const SHF_ALLOC: u64 = E::SHF_ALLOC as u64;
pub const SHF_EXECINSTR: u64 = E::SHF_EXECINSTR as u64;
pub const SHF_WRITE: u64 = E::SHF_WRITE as u64;
pub const SHT_NOBITS: u32 = E::SHT_NOBITS;
pub const SHT_PROGBITS: u32 = E::SHT_PROGBITS;
pub const SHT_RELA: u32 = E::SHT_RELA;
pub const EHDR_SIZE: usize = 64;
pub const PHDR_SIZE: usize = 56;
pub const SHDR_SIZE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

impl Phdr {
    pub fn to_bytes(&self) -> [u8; PHDR_SIZE] {
        let mut b = [0u8; PHDR_SIZE];
        b[0..4].copy_from_slice(&self.p_type.to_le_bytes());
        b[4..8].copy_from_slice(&self.p_flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.p_offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.p_vaddr.to_le_bytes());
        b[24..32].copy_from_slice(&self.p_paddr.to_le_bytes());
        b[32..40].copy_from_slice(&self.p_filesz.to_le_bytes());
        b[40..48].copy_from_slice(&self.p_memsz.to_le_bytes());
        b[48..56].copy_from_slice(&self.p_align.to_le_bytes());
        b
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub sh_name: u32,
    pub sh_type: u32,
    pub sh_flags: u64,
    pub sh_addr: u64,
    pub sh_offset: u64,
    pub sh_size: u64,
    pub sh_link: u32,
    pub sh_info: u32,
    pub sh_addralign: u64,
    pub sh_entsize: u64,
}

impl Section {
    pub fn to_bytes(&self) -> [u8; SHDR_SIZE] {
        let mut b = [0u8; SHDR_SIZE];
        b[0..4].copy_from_slice(&self.sh_name.to_le_bytes());
        b[4..8].copy_from_slice(&self.sh_type.to_le_bytes());
        b[8..16].copy_from_slice(&self.sh_flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.sh_addr.to_le_bytes());
        b[24..32].copy_from_slice(&self.sh_offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.sh_size.to_le_bytes());
        b[40..44].copy_from_slice(&self.sh_link.to_le_bytes());
        b[44..48].copy_from_slice(&self.sh_info.to_le_bytes());
        b[48..56].copy_from_slice(&self.sh_addralign.to_le_bytes());
        b[56..64].copy_from_slice(&self.sh_entsize.to_le_bytes());
        b
    }

    /// The section's bytes in the file (`None` for `SHT_NOBITS` or out-of-file ranges).
    pub fn data<'a>(&self, file: &'a [u8]) -> Option<&'a [u8]> {
        if self.sh_type == SHT_NOBITS {
            return None;
        }
        slice(file, self.sh_offset, self.sh_size)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub value: u64,
    pub size: u64,
    pub st_type: u8,
    pub shndx: u16,
}

pub const STT_FUNC: u8 = E::STT_FUNC;
pub const STT_NOTYPE: u8 = E::STT_NOTYPE;
pub const STT_OBJECT: u8 = E::STT_OBJECT;
pub const STT_TLS: u8 = E::STT_TLS;
pub const STT_SECTION: u8 = E::STT_SECTION;
pub const STT_FILE: u8 = E::STT_FILE;

/// A relocation of the static-PIE self-relocation tables (or glibc's `.rela.iplt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rela {
    pub offset: u64,
    pub r_type: u32,
    pub addend: i64,
    /// The symbol index (in `.dynsym` for dynamic relocations), 0 for none.
    pub sym: u32,
}

pub const R_X86_64_RELATIVE: u32 = E::R_X86_64_RELATIVE;
pub const R_X86_64_IRELATIVE: u32 = E::R_X86_64_IRELATIVE;

/// What the input is, for relinking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A static program (`ET_EXEC` or static-PIE): its entry stub reads `AT_SYSINFO`.
    Static,
    /// A dynamically linked program (`PT_INTERP`): its entry stub too, which the dynamic linker
    /// jumps to with the stack the kernel built.
    Dynamic { interpreter: String },
    /// A shared object (a library, or the dynamic linker): it never sees the aux vector, so its
    /// trampolines ask the kernel (`kml_shim::probe`).
    Shared,
}

/// What `PT_DYNAMIC` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    pub soname: Option<String>,
    /// `DT_RUNPATH`, else `DT_RPATH`, split at `:`.
    pub runpath: Vec<String>,
    /// `DT_TEXTREL` or `DF_TEXTREL`: the loader writes into the code.
    pub textrel: bool,
    /// `DF_1_PIE`: a position-independent program.
    pub pie: bool,
}

/// The parts of the input that the relinker uses.
#[derive(Debug)]
pub struct Elf<'a> {
    pub data: &'a [u8],
    pub kind: Kind,
    pub dynamic: DynamicInfo,
    /// Functions and objects it takes from its libraries (undefined dynamic symbols).
    pub imports: Vec<String>,
    /// `.dynsym` names by index, and whether each is undefined (an import).
    pub dynsym: Vec<(String, bool)>,
    pub e_type: u16,
    pub e_entry: u64,
    pub e_phoff: u64,
    pub e_shoff: u64,
    pub e_shnum: u16,
    pub e_shstrndx: u16,
    pub phdrs: Vec<Phdr>,
    /// Empty when the file has no section headers.
    pub sections: Vec<Section>,
    pub symbols: Vec<Symbol>,
    pub relocations: Vec<Rela>,
}

/// Bounds-checked `&file[offset..offset+size]`.
pub fn slice(file: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let len = usize::try_from(size).ok()?;
    let end = start.checked_add(len)?;
    file.get(start..end)
}

pub fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

pub fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

pub fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(s.try_into().ok()?))
}

impl<'a> Elf<'a> {
    /// Parses and checks the header and program headers; refuses what lupine-relink cannot
    /// handle. Section headers, symbols and relocations are read when present.
    pub fn parse(file: &str, data: &'a [u8]) -> Result<Self, Error> {
        check_ident(file, data)?;
        let hdr = E::FileHeader64::<LE>::parse(data)
            .map_err(|e| malformed(file, format!("ELF header: {e}")))?;
        let e_type = check_header(file, hdr)?;
        let phdrs = read_phdrs(file, hdr, data)?;
        let interpreter = check_phdrs(file, data, &phdrs)?;
        let en = LE;
        let mut elf = Elf {
            data,
            kind: Kind::Static,
            dynamic: DynamicInfo::default(),
            imports: Vec::new(),
            dynsym: Vec::new(),
            e_type,
            e_entry: hdr.e_entry(en),
            e_phoff: hdr.e_phoff(en),
            e_shoff: hdr.e_shoff(en),
            e_shnum: hdr.e_shnum(en),
            e_shstrndx: hdr.e_shstrndx(en),
            phdrs,
            sections: Vec::new(),
            symbols: Vec::new(),
            relocations: Vec::new(),
        };
        elf.read_sections(hdr)
            .map_err(|what| malformed(file, what))?;
        elf.dynamic = elf.read_dynamic(file)?;
        elf.read_dynamic_relocations(file)?;
        elf.kind = elf.classify(interpreter);
        if elf.dynamic.textrel {
            return Err(Error::TextRelocations { file: file.into() });
        }
        if elf.kind != Kind::Shared {
            elf.check_entry(file)?;
        }
        Ok(elf)
    }

    /// A shared object has a `DT_SONAME`, or is `ET_DYN` with a dynamic section, without an
    /// interpreter and no PIE program (musl's `libc.so`, which is also its dynamic linker, has no `DT_SONAME`). A
    /// wrong guess costs speed, never correctness: a program taken for a library asks the
    /// kernel at its first system call, a library taken for a program uses real `syscall`s.
    fn classify(&self, interpreter: Option<String>) -> Kind {
        let d = &self.dynamic;
        let has_dynamic = self.phdrs.iter().any(|p| p.p_type == PT_DYNAMIC);
        let shared = d.soname.is_some()
            || (self.e_type == E::ET_DYN
                && has_dynamic
                && interpreter.is_none()
                && (!d.pie || !d.needed.is_empty() || self.e_entry == 0));
        match interpreter {
            _ if shared => Kind::Shared,
            Some(interpreter) => Kind::Dynamic { interpreter },
            None => Kind::Static,
        }
    }

    /// Every program starts in its code.
    fn check_entry(&self, file: &str) -> Result<(), Error> {
        let e_entry = self.e_entry;
        if !self.is_executable_vaddr(e_entry) {
            return Err(Error::NotProgram {
                file: file.into(),
                what: format!(
                    "its entry point {e_entry:#x} (e_entry) is not in an executable segment"
                ),
            });
        }
        Ok(())
    }

    fn read_sections(&mut self, hdr: &E::FileHeader64<LE>) -> Result<(), String> {
        let en = LE;
        let data = self.data;
        if hdr.e_shoff(en) == 0 {
            return Ok(());
        }
        let shnum = hdr.e_shnum(en);
        let shoff = hdr.e_shoff(en);
        let table = hdr.sections(en, data).map_err(|e| {
            let end = shoff.checked_add(u64::from(shnum) * SHDR_SIZE as u64);
            if end.map_or(true, |e| e > data.len() as u64) {
                format!(
                    "the section header table (e_shoff {shoff:#x}, {shnum} entries) extends beyond the end of the file ({} bytes): truncated?",
                    data.len()
                )
            } else {
                format!("section headers: {e}")
            }
        })?;
        for (i, s) in table.iter().enumerate() {
            if s.sh_type(en) != SHT_NOBITS && s.sh_type(en) != E::SHT_NULL {
                let end = s.sh_offset(en).checked_add(s.sh_size(en));
                if end.map_or(true, |e| e > data.len() as u64) {
                    return Err(format!(
                        "section {i} ({}) at offset {:#x}, size {:#x}, extends beyond the end of the file ({} bytes): truncated?",
                        String::from_utf8_lossy(table.section_name(en, s).unwrap_or(b"?")),
                        s.sh_offset(en),
                        s.sh_size(en),
                        data.len()
                    ));
                }
            }
            let name = table
                .section_name(en, s)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            self.sections.push(Section {
                name,
                sh_name: s.sh_name(en),
                sh_type: s.sh_type(en),
                sh_flags: s.sh_flags(en),
                sh_addr: s.sh_addr(en),
                sh_offset: s.sh_offset(en),
                sh_size: s.sh_size(en),
                sh_link: s.sh_link(en),
                sh_info: s.sh_info(en),
                sh_addralign: s.sh_addralign(en),
                sh_entsize: s.sh_entsize(en),
            });
            if s.sh_type(en) == SHT_RELA && s.sh_flags(en) & SHF_ALLOC != 0 {
                if let Ok(Some((relas, _))) = s.rela(en, data) {
                    for r in relas {
                        self.relocations.push(Rela {
                            offset: r.r_offset.get(en),
                            r_type: (r.r_info.get(en) & 0xffff_ffff) as u32,
                            addend: r.r_addend.get(en),
                            sym: (r.r_info.get(en) >> 32) as u32,
                        });
                    }
                }
            }
        }
        // The dynamic symbols too: a stripped library has only those.
        for kind in [E::SHT_SYMTAB, E::SHT_DYNSYM] {
            let symtab = table
                .symbols(en, data, kind)
                .map_err(|e| format!("symbol table: {e}"))?;
            let strings = symtab.strings();
            for s in symtab.iter() {
                let name = s
                    .name(en, strings)
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default();
                if kind == E::SHT_DYNSYM {
                    let undefined = s.st_shndx(en) == 0;
                    self.dynsym.push((name.clone(), undefined));
                    if undefined {
                        if !name.is_empty() {
                            self.imports.push(name);
                        }
                        continue;
                    }
                }
                self.symbols.push(Symbol {
                    name,
                    value: s.st_value(en),
                    size: s.st_size(en),
                    st_type: s.st_type(),
                    shndx: s.st_shndx(en),
                });
            }
        }
        self.imports.sort();
        self.imports.dedup();
        self.read_relr(&table);
        Ok(())
    }

    /// `SHT_RELR` tables (packed relative relocations, as Debian 12's glibc has): each
    /// relocated word holds its addend.
    fn read_relr(&mut self, table: &object::read::elf::SectionTable<'_, E::FileHeader64<LE>>) {
        let data = self.data;
        let mut offsets = Vec::new();
        for s in table.iter() {
            if s.sh_type(LE) != E::SHT_RELR || s.sh_flags(LE) & u64::from(E::SHF_ALLOC) == 0 {
                continue;
            }
            let Some(b) = slice(data, s.sh_offset(LE), s.sh_size(LE)) else {
                continue;
            };
            let mut next = 0u64;
            for w in b.chunks_exact(8) {
                let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
                if w & 1 == 0 {
                    offsets.push(w);
                    next = w.wrapping_add(8);
                } else {
                    for bit in 1..64 {
                        if w >> bit & 1 == 1 {
                            offsets.push(next.wrapping_add((bit - 1) * 8));
                        }
                    }
                    next = next.wrapping_add(63 * 8);
                }
            }
        }
        for offset in offsets {
            if let Some(v) = self.bytes_at_vaddr(offset, 8).and_then(|b| read_u64(b, 0)) {
                self.relocations.push(Rela {
                    offset,
                    r_type: R_X86_64_RELATIVE,
                    addend: v as i64,
                    sym: 0,
                });
            }
        }
    }

    /// `DT_RELA`/`DT_JMPREL` tables from `PT_DYNAMIC`, for files without section headers.
    fn read_dynamic_relocations(&mut self, file: &str) -> Result<(), Error> {
        if !self.relocations.is_empty() || !self.sections.is_empty() {
            return Ok(());
        }
        let Some(dynp) = self.phdrs.iter().find(|p| p.p_type == PT_DYNAMIC).copied() else {
            return Ok(());
        };
        let Some(dynb) = slice(self.data, dynp.p_offset, dynp.p_filesz) else {
            return Err(Error::Malformed {
                file: file.into(),
                what: "PT_DYNAMIC is outside the file".into(),
            });
        };
        let mut tables = Vec::new();
        let (mut rela, mut relasz, mut jmprel, mut pltrelsz) = (None, None, None, None);
        for e in dynb.chunks_exact(16) {
            let tag = read_u64(e, 0).unwrap_or(0);
            let val = read_u64(e, 8).unwrap_or(0);
            match tag {
                0 => break,
                7 => rela = Some(val),
                8 => relasz = Some(val),
                23 => jmprel = Some(val),
                2 => pltrelsz = Some(val),
                _ => {}
            }
        }
        if let (Some(a), Some(s)) = (rela, relasz) {
            tables.push((a, s));
        }
        if let (Some(a), Some(s)) = (jmprel, pltrelsz) {
            tables.push((a, s));
        }
        for (addr, size) in tables {
            if let Some(b) = self.bytes_at_vaddr(addr, size) {
                for r in b.chunks_exact(24) {
                    self.relocations.push(Rela {
                        offset: read_u64(r, 0).unwrap_or(0),
                        r_type: read_u32(r, 8).unwrap_or(0),
                        addend: read_u64(r, 16).unwrap_or(0) as i64,
                        sym: read_u32(r, 12).unwrap_or(0),
                    });
                }
            }
        }
        Ok(())
    }

    /// `PT_DYNAMIC`'s needed libraries, name, search path and flags.
    fn read_dynamic(&self, file: &str) -> Result<DynamicInfo, Error> {
        let mut info = DynamicInfo::default();
        let Some(dynp) = self.phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) else {
            return Ok(info);
        };
        let dynb = slice(self.data, dynp.p_offset, dynp.p_filesz)
            .ok_or_else(|| malformed(file, "PT_DYNAMIC is outside the file".into()))?;
        let (mut strtab, mut strsz) = (None, None);
        let (mut needed, mut soname, mut rpath, mut runpath) = (Vec::new(), None, None, None);
        for e in dynb.chunks_exact(16) {
            let tag = read_u64(e, 0).unwrap_or(0);
            let val = read_u64(e, 8).unwrap_or(0);
            match tag {
                0 => break,
                1 => needed.push(val),
                5 => strtab = Some(val),
                10 => strsz = Some(val),
                14 => soname = Some(val),
                15 => rpath = Some(val),
                29 => runpath = Some(val),
                22 => info.textrel = true,
                30 => info.textrel |= val & u64::from(E::DF_TEXTREL) != 0,
                0x6fff_fffb => info.pie = val & u64::from(E::DF_1_PIE) != 0,
                _ => {}
            }
        }
        let strings = match (strtab, strsz) {
            (Some(a), Some(n)) => self.bytes_at_vaddr(a, n),
            _ => None,
        };
        let name = |off: u64| -> Result<String, Error> {
            strings
                .and_then(|b| b.get(usize::try_from(off).ok()?..))
                .and_then(|b| b.split(|&c| c == 0).next().filter(|_| b.contains(&0)))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| {
                    malformed(
                        file,
                        format!("dynamic string {off:#x} is outside DT_STRTAB/DT_STRSZ"),
                    )
                })
        };
        for n in needed {
            info.needed.push(name(n)?);
        }
        info.soname = soname.map(name).transpose()?;
        if let Some(p) = runpath.or(rpath) {
            info.runpath = name(p)?
                .split(':')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        Ok(info)
    }

    /// The GOT slots that the dynamic linker fills with an imported symbol's address
    /// (`R_X86_64_JUMP_SLOT`, `R_X86_64_GLOB_DAT`), by slot address, with the symbol's name.
    pub fn import_slots(&self) -> std::collections::BTreeMap<u64, String> {
        self.relocations
            .iter()
            .filter(|r| matches!(r.r_type, E::R_X86_64_JUMP_SLOT | E::R_X86_64_GLOB_DAT))
            .filter_map(|r| {
                let (name, undefined) = self.dynsym.get(r.sym as usize)?;
                (*undefined && !name.is_empty()).then(|| (r.offset, name.clone()))
            })
            .collect()
    }

    pub fn loads(&self) -> impl Iterator<Item = &Phdr> {
        self.phdrs.iter().filter(|p| p.p_type == PT_LOAD)
    }

    pub fn is_executable_vaddr(&self, v: u64) -> bool {
        self.loads()
            .any(|p| p.p_flags & PF_X != 0 && v >= p.p_vaddr && v - p.p_vaddr < p.p_filesz)
    }

    /// File bytes backing `[vaddr, vaddr+size)`, when one `PT_LOAD` maps all of them from the file.
    pub fn bytes_at_vaddr(&self, vaddr: u64, size: u64) -> Option<&'a [u8]> {
        for p in self.loads() {
            if vaddr >= p.p_vaddr {
                let rel = vaddr - p.p_vaddr;
                if rel <= p.p_filesz && size <= p.p_filesz - rel {
                    return slice(self.data, p.p_offset.checked_add(rel)?, size);
                }
            }
        }
        None
    }

    /// File bytes from `vaddr` to the end of the file-backed part of its `PT_LOAD`.
    pub fn bytes_from_vaddr(&self, vaddr: u64) -> Option<&'a [u8]> {
        for p in self.loads() {
            if vaddr >= p.p_vaddr && vaddr - p.p_vaddr < p.p_filesz {
                let rel = vaddr - p.p_vaddr;
                return slice(self.data, p.p_offset.checked_add(rel)?, p.p_filesz - rel);
            }
        }
        None
    }

    /// File offset of `vaddr` (file-backed part of a `PT_LOAD`).
    pub fn vaddr_to_offset(&self, vaddr: u64) -> Option<u64> {
        for p in self.loads() {
            if vaddr >= p.p_vaddr && vaddr - p.p_vaddr < p.p_filesz {
                return p.p_offset.checked_add(vaddr - p.p_vaddr);
            }
        }
        None
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

fn malformed(file: &str, what: String) -> Error {
    Error::Malformed {
        file: file.into(),
        what,
    }
}

/// The identification bytes and the machine: a little-endian 64-bit x86-64 ELF file with a
/// whole ELF header.
fn check_ident(file: &str, data: &[u8]) -> Result<(), Error> {
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(Error::NotElf { file: file.into() });
    }
    if data.len() < 6 {
        return Err(malformed(file, "truncated ELF identification".into()));
    }
    match data[4] {
        E::ELFCLASS64 => {}
        E::ELFCLASS32 => return Err(Error::Elf32 { file: file.into() }),
        c => return Err(malformed(file, format!("unknown ELF class {c} (EI_CLASS)"))),
    }
    if data[5] != E::ELFDATA2LSB {
        // Big-endian headers: the machine field is not worth decoding.
        return Err(Error::Encoding {
            file: file.into(),
            data: data[5],
        });
    }
    if data.len() < EHDR_SIZE {
        return Err(malformed(
            file,
            format!(
                "truncated ELF header: the file has {} bytes, the header needs {EHDR_SIZE}",
                data.len()
            ),
        ));
    }
    let machine = read_u16(data, 18).unwrap_or(0);
    if machine != E::EM_X86_64 {
        return Err(Error::Machine {
            file: file.into(),
            machine,
        });
    }
    Ok(())
}

/// The ELF header's version, type and table entry sizes; returns the type.
fn check_header(file: &str, hdr: &E::FileHeader64<LE>) -> Result<u16, Error> {
    let en = LE;
    let mal = |what: String| malformed(file, what);
    if hdr.e_ident().version != E::EV_CURRENT {
        return Err(mal("EI_VERSION is not EV_CURRENT".into()));
    }
    let e_type = hdr.e_type(en);
    check_type(file, e_type)?;
    if usize::from(hdr.e_ehsize(en)) != EHDR_SIZE {
        return Err(mal(format!(
            "e_ehsize is {}, expected {EHDR_SIZE}",
            hdr.e_ehsize(en)
        )));
    }
    if hdr.e_phnum(en) == E::PN_XNUM {
        return Err(mal(
            "e_phnum is PN_XNUM (extended numbering is not supported)".into(),
        ));
    }
    if hdr.e_phnum(en) == 0 || hdr.e_phoff(en) == 0 {
        return Err(mal("no program headers (e_phnum or e_phoff is 0)".into()));
    }
    if usize::from(hdr.e_phentsize(en)) != PHDR_SIZE {
        return Err(mal(format!(
            "e_phentsize is {}, expected {PHDR_SIZE}",
            hdr.e_phentsize(en)
        )));
    }
    Ok(e_type)
}

/// Only programs: `ET_EXEC` or `ET_DYN` (static-PIE; shared libraries are told apart later).
fn check_type(file: &str, e_type: u16) -> Result<(), Error> {
    let what = match e_type {
        E::ET_EXEC | E::ET_DYN => return Ok(()),
        E::ET_REL => {
            "is a relocatable object (ET_REL), not a program: link it statically first".into()
        }
        E::ET_CORE => "is a core dump (ET_CORE), not a program".into(),
        t => format!("has ELF type {t} (e_type), not ET_EXEC or ET_DYN"),
    };
    Err(Error::NotProgram {
        file: file.into(),
        what,
    })
}

fn read_phdrs(file: &str, hdr: &E::FileHeader64<LE>, data: &[u8]) -> Result<Vec<Phdr>, Error> {
    let en = LE;
    let raw_ph = hdr.program_headers(en, data).map_err(|_| {
        malformed(
            file,
            format!(
                "program header table (e_phoff {:#x}, {} entries) is outside the file ({} bytes)",
                hdr.e_phoff(en),
                hdr.e_phnum(en),
                data.len()
            ),
        )
    })?;
    Ok(raw_ph
        .iter()
        .map(|p| Phdr {
            p_type: p.p_type(en),
            p_flags: p.p_flags(en),
            p_offset: p.p_offset(en),
            p_vaddr: p.p_vaddr(en),
            p_paddr: p.p_paddr(en),
            p_filesz: p.p_filesz(en),
            p_memsz: p.p_memsz(en),
            p_align: p.p_align(en),
        })
        .collect())
}

/// `PT_LOAD`s that the kernel would map: at least one, each within the file. Returns the
/// interpreter (`PT_INTERP`), if any.
fn check_phdrs(file: &str, data: &[u8], phdrs: &[Phdr]) -> Result<Option<String>, Error> {
    let mut interpreter = None;
    for (i, p) in phdrs.iter().enumerate() {
        if p.p_type == PT_INTERP {
            let b = slice(data, p.p_offset, p.p_filesz).ok_or_else(|| {
                malformed(
                    file,
                    format!("program header {i}: PT_INTERP is outside the file"),
                )
            })?;
            let b = b.split(|&c| c == 0).next().unwrap_or(b);
            interpreter = Some(String::from_utf8_lossy(b).into_owned());
        }
        if p.p_type == PT_LOAD {
            check_load(i, p, data).map_err(|what| malformed(file, what))?;
        }
    }
    if !phdrs.iter().any(|p| p.p_type == PT_LOAD) {
        return Err(malformed(file, "no PT_LOAD segment".into()));
    }
    Ok(interpreter)
}

/// The `PT_LOAD` `p` (program header `i`) is within the file and consistent.
fn check_load(i: usize, p: &Phdr, data: &[u8]) -> Result<(), String> {
    if p.p_filesz > p.p_memsz {
        return Err(format!(
            "program header {i}: p_filesz is larger than p_memsz"
        ));
    }
    if slice(data, p.p_offset, p.p_filesz).is_none() {
        return Err(format!(
            "program header {i}: PT_LOAD file range {:#x}+{:#x} is outside the file ({} bytes)",
            p.p_offset,
            p.p_filesz,
            data.len()
        ));
    }
    if p.p_vaddr.checked_add(p.p_memsz).is_none() {
        return Err(format!(
            "program header {i}: PT_LOAD address range overflows"
        ));
    }
    if p.p_align > 1 && p.p_offset % p.p_align != p.p_vaddr % p.p_align {
        return Err(format!(
            "program header {i}: p_offset {:#x} and p_vaddr {:#x} disagree modulo p_align {:#x}",
            p.p_offset, p.p_vaddr, p.p_align
        ));
    }
    Ok(())
}
