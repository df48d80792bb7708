//! Layout and writing of the relinked program.
//!
//! ```text
//! file:   [input bytes, windows patched][pad][slot: 8 bytes][pad][code segment][.shstrtab copy][section headers]
//! memory: ... highest input segment | next page: slot (R+W) | next page: code segment (R+X)
//! code segment: "LUPINE-RELINK\0" u16 version | program header table | entry stub |
//!               trampolines (16-byte aligned, int3 between) | int3 x16 | FDEs | .eh_frame_hdr
//! ```
//!
//! Each added segment has `p_offset ≡ p_vaddr (mod 4096)`; the slot and code segments are on
//! different pages, so nothing is both writable and executable. The slot comes first so that
//! its address is known before the trampolines are encoded. The program header table (two
//! entries longer, three when a `PT_GNU_EH_FRAME` is added) moves into the code segment:
//! `e_phoff` and `PT_PHDR` point there, and Linux ≥ 5.18 derives `AT_PHDR` from the `PT_LOAD`
//! that contains `e_phoff`. The new `PT_LOAD`s follow the last input `PT_LOAD`, so they stay
//! sorted; `PT_GNU_STACK` and every other header are unchanged.
//!
//! Sections: when the input has section headers, a copy of the table is appended with
//! `.lupine.slot` and `.lupine.text` (so `objdump -d` shows the trampolines and `strip` keeps
//! the segments), and `.shstrtab` is copied and extended; symbols are untouched. The old table
//! and the old program header table stay in the file as unreferenced bytes.
//!
//! Everything depends only on the input bytes: the output is byte-identical for the same input.

use crate::analyze::{self, Analysis, KeptReason, SiteInfo};
use crate::cancel;
use crate::cfi;
use crate::elf::{self, Elf, Phdr, Section};
use crate::error::Error;
use crate::report::{self, hex, Report};
use kml_shim::{Site, INT3, MARKER};

pub const PAGE: u64 = 4096;
/// Alignment of the entry stub and of each trampoline.
pub const TRAMPOLINE_ALIGN: u64 = 16;
/// `int3` bytes after the last trampoline (unwinders read a few bytes past a return address).
pub const TAIL_PAD: u64 = 16;
/// How far past the end of a shared object's file its segments may reach: the added segments
/// sit at the file offset equal to their address, so the output is padded up to there (real
/// libraries: a few pages of `.bss`; a damaged header would ask for terabytes).
const MAX_SHARED_PADDING: u64 = 256 << 20;
const TEXT_NAME: &str = ".lupine.text";
const SLOT_NAME: &str = ".lupine.slot";

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? / a * a)
}

/// The result of relinking in memory.
#[derive(Debug)]
pub struct Relinked {
    pub bytes: Vec<u8>,
    pub report: Report,
}

/// Whether the program already carries the marker.
pub(crate) fn is_relinked(elf: &Elf<'_>) -> bool {
    elf.section(TEXT_NAME).is_some()
        || elf.loads().any(|p| {
            elf::slice(elf.data, p.p_offset, MARKER.len() as u64).is_some_and(|b| b == MARKER)
        })
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Evidence that the program is written in Go.
fn go_evidence(elf: &Elf<'_>) -> Option<String> {
    for n in [
        ".go.buildinfo",
        ".gopclntab",
        ".note.go.buildid",
        ".gosymtab",
    ] {
        if elf.section(n).is_some() {
            return Some(format!("section {n}"));
        }
    }
    if let Some(s) = elf.symbols.iter().find(|s| {
        matches!(
            s.name.as_str(),
            "runtime.main" | "runtime.rt0_go" | "runtime.morestack"
        )
    }) {
        return Some(format!("symbol {}", s.name));
    }
    for p in elf.phdrs.iter().filter(|p| p.p_type == elf::PT_NOTE) {
        let Some(mut b) = elf::slice(elf.data, p.p_offset, p.p_filesz) else {
            continue;
        };
        while b.len() >= 12 {
            let namesz = elf::read_u32(b, 0).unwrap_or(0) as usize;
            let descsz = elf::read_u32(b, 4).unwrap_or(0) as usize;
            let ntype = elf::read_u32(b, 8).unwrap_or(0);
            let name_end = 12usize.saturating_add(namesz);
            let desc_start = align4(name_end);
            let next = align4(desc_start.saturating_add(descsz));
            if b.get(12..name_end) == Some(b"Go\0") && ntype == 4 {
                return Some("Go build ID note".into());
            }
            match b.get(next..) {
                Some(r) if next > 0 => b = r,
                _ => break,
            }
        }
    }
    for p in elf.loads().filter(|p| p.p_flags & elf::PF_X == 0) {
        if let Some(b) = elf::slice(elf.data, p.p_offset, p.p_filesz) {
            if find(b, b"\xff Go buildinf:") {
                return Some("Go build information".into());
            }
        }
    }
    None
}

fn align4(v: usize) -> usize {
    v.saturating_add(3) & !3
}

/// Relinks `data` (the contents of `input`), naming `output` in the report.
pub fn relink_bytes(input: &str, output: &str, data: &[u8]) -> Result<Relinked, Error> {
    let elf = Elf::parse(input, data)?;
    if is_relinked(&elf) {
        return Err(Error::AlreadyRelinked { file: input.into() });
    }
    if let Some(evidence) = go_evidence(&elf) {
        return Err(Error::Go {
            file: input.into(),
            evidence,
        });
    }
    let mut an = analyze::analyze(&elf);
    build(input, output, &elf, &mut an)
}

fn layout_err(input: &str, what: impl Into<String>) -> Error {
    Error::Layout {
        file: input.into(),
        what: what.into(),
    }
}

/// The error of an address computation that overflows, for `ok_or_else`.
fn overflow(input: &str) -> impl Fn() -> Error + '_ {
    move || layout_err(input, "addresses overflow")
}

/// Lays out the added segments, patches the windows and writes the output and its report.
fn build(
    input: &str,
    output: &str,
    elf: &Elf<'_>,
    an: &mut Analysis<'_>,
) -> Result<Relinked, Error> {
    let layout = Layout::new(input, elf, an)?;
    let mut code = CodeSegment::start(input, elf, &layout)?;
    let mut out = elf.data.to_vec();
    if let Some(b) = layout.bss {
        out.resize(out.len().max(b.file_end as usize), 0);
        out[b.file_start as usize..b.file_end as usize].fill(0);
    }
    let slot = SlotRef {
        addr: layout.rw_vaddr,
        probe: layout.probe(),
    };
    let placed = place_trampolines(input, elf, an, slot, &mut code, &mut out)?;
    code.pad(TAIL_PAD, INT3);
    let unwind = add_unwind_info(input, elf, an, &placed.laid_out, &mut code)?;
    if layout.shared {
        // Linux before 6.7 zeroes the rest of the page after an interpreter's last file byte,
        // which is here, in a segment it cannot write: end it on a page boundary.
        let end = code.next(PAGE).ok_or_else(overflow(input))?;
        code.put(end, INT3, &[]);
    }
    let rx_size = code.bytes.len() as u64;
    let phdrs = program_headers(input, elf, &layout, rx_size, unwind.eh_frame_hdr)?;
    code.write_phdrs(&phdrs);

    out.resize(layout.rw_off as usize, 0);
    out.extend_from_slice(&layout.slot_initial().to_le_bytes());
    out.resize(layout.rx_off as usize, 0);
    out.extend_from_slice(&code.bytes);
    let sections = append_section_headers(input, elf, &layout, rx_size, &mut out)?;
    let old_table_zeroed = layout.bss.is_some_and(|b| {
        let end = elf.e_shoff + u64::from(elf.e_shnum) * elf::SHDR_SIZE as u64;
        elf.e_shoff < b.file_end && end > b.file_start
    });
    let (shoff, shnum) = match sections {
        Some(s) => s,
        None if old_table_zeroed => (0, 0),
        None => (elf.e_shoff, elf.e_shnum),
    };
    write_elf_header(&mut out, &layout, phdrs.len(), shoff, shnum);

    let report = make_report(
        input,
        output,
        elf,
        an,
        &out,
        RxInfo {
            tramps: placed.tramps,
            copy_ends: placed.copy_ends,
            unwind: unwind.per_site,
            eh_frame_hdr: unwind.eh_frame_hdr.map(|h| h.0),
            layout,
            rx_size,
            sections_added: sections.is_some(),
        },
    );
    Ok(Relinked { bytes: out, report })
}

/// Bytes before the program header table in the code segment: marker, version, padding.
const CODE_HEADER_LEN: u64 = 16;

/// The slot, and the probe that fills it in a shared object.
#[derive(Clone, Copy)]
struct SlotRef {
    addr: u64,
    probe: Option<u64>,
}

/// The `.bss` of a shared object's last segment, made file-backed (zeros in the file): Linux
/// before 6.7 maps the `.bss` of an interpreter (`PT_INTERP`, which the dynamic linker and
/// musl's `libc.so` are) only after its last segment, which is now the added code. The zeros
/// go on to the end of the page, as the kernel leaves it: glibc's dynamic linker allocates
/// from there and counts on zeros.
#[derive(Clone, Copy)]
struct Bss {
    /// The program header of the segment.
    phdr: usize,
    /// Its file range beyond `p_filesz`, up to the end of the page of `p_memsz`.
    file_start: u64,
    file_end: u64,
}

/// Where the two added segments go, in the file and in memory.
struct Layout {
    /// A shared object: no entry stub but a probe, and the slot starts unknown.
    shared: bool,
    bss: Option<Bss>,
    /// The slot segment (8 bytes, R+W).
    rw_off: u64,
    rw_vaddr: u64,
    /// The code segment (R+X).
    rx_off: u64,
    rx_vaddr: u64,
    /// The entry stub (the probe in a shared object), after room for the moved program
    /// header table.
    stub_vaddr: u64,
}

impl Layout {
    /// Puts the slot at the end of the file, on the page after the highest input segment, and
    /// the code segment after it on the next page, each at its file offset modulo the page.
    /// In a shared object each is at the address equal to its file offset (the file is padded
    /// up to it): dynamic linkers find their own program header table at their load address
    /// plus `e_phoff`.
    fn new(input: &str, elf: &Elf<'_>, an: &Analysis<'_>) -> Result<Layout, Error> {
        let max_end = elf
            .loads()
            .map(|p| p.p_vaddr + p.p_memsz)
            .max()
            .ok_or_else(overflow(input))?;
        let shared = elf.kind == elf::Kind::Shared;
        let (rw_off, rw_vaddr, rx_off, rx_vaddr) = if shared {
            let rw =
                align_up(max_end.max(elf.data.len() as u64), PAGE).ok_or_else(overflow(input))?;
            if rw - elf.data.len() as u64 > MAX_SHARED_PADDING {
                return Err(layout_err(
                    input,
                    format!(
                        "its segments end at {max_end:#x}, more than {} MiB past the end of the file",
                        MAX_SHARED_PADDING >> 20
                    ),
                ));
            }
            let rx = rw.checked_add(PAGE).ok_or_else(overflow(input))?;
            (rw, rw, rx, rx)
        } else {
            let rw_off = align_up(elf.data.len() as u64, 8).ok_or_else(overflow(input))?;
            let rw_vaddr = align_up(max_end, PAGE)
                .and_then(|v| v.checked_add(rw_off % PAGE))
                .ok_or_else(overflow(input))?;
            let rx_off = align_up(rw_off + 8, TRAMPOLINE_ALIGN).ok_or_else(overflow(input))?;
            let rx_vaddr = align_up(rw_vaddr + 8, PAGE)
                .and_then(|v| v.checked_add(rx_off % PAGE))
                .ok_or_else(overflow(input))?;
            (rw_off, rw_vaddr, rx_off, rx_vaddr)
        };
        let bss = match shared {
            true => last_bss(input, elf, rw_off)?,
            false => None,
        };
        check_reach(input, an, max_end, rx_vaddr)?;

        // Room for the two new PT_LOADs and perhaps a new PT_GNU_EH_FRAME.
        let max_phnum = elf.phdrs.len() + 3;
        if max_phnum >= usize::from(object::elf::PN_XNUM) {
            return Err(Error::Malformed {
                file: input.into(),
                what: "too many program headers to add three".into(),
            });
        }
        let phdr_room = (max_phnum * elf::PHDR_SIZE) as u64;
        let stub_vaddr = align_up(rx_vaddr + CODE_HEADER_LEN + phdr_room, TRAMPOLINE_ALIGN)
            .ok_or_else(overflow(input))?;
        Ok(Layout {
            shared,
            bss,
            rw_off,
            rw_vaddr,
            rx_off,
            rx_vaddr,
            stub_vaddr,
        })
    }

    /// The probe of a shared object.
    fn probe(&self) -> Option<u64> {
        self.shared.then_some(self.stub_vaddr)
    }

    /// The slot's value in the file.
    fn slot_initial(&self) -> u64 {
        if self.shared {
            kml_shim::SLOT_UNKNOWN
        } else {
            0
        }
    }

    /// The file offset of an address in the code segment.
    fn rx_offset(&self, vaddr: u64) -> u64 {
        self.rx_off + (vaddr - self.rx_vaddr)
    }

    /// The file offset of the moved program header table.
    fn phoff(&self) -> u64 {
        self.rx_off + CODE_HEADER_LEN
    }

    /// The address of the moved program header table.
    fn phdr_vaddr(&self) -> u64 {
        self.rx_vaddr + CODE_HEADER_LEN
    }

    /// The `PT_LOAD`s of the slot and of the code segment (`rx_size` bytes).
    fn loads(&self, rx_size: u64) -> [Phdr; 2] {
        let slot = Phdr {
            p_type: elf::PT_LOAD,
            p_flags: elf::PF_R | elf::PF_W,
            p_offset: self.rw_off,
            p_vaddr: self.rw_vaddr,
            p_paddr: self.rw_vaddr,
            p_filesz: 8,
            p_memsz: 8,
            p_align: PAGE,
        };
        let code = Phdr {
            p_type: elf::PT_LOAD,
            p_flags: elf::PF_R | elf::PF_X,
            p_offset: self.rx_off,
            p_vaddr: self.rx_vaddr,
            p_paddr: self.rx_vaddr,
            p_filesz: rx_size,
            p_memsz: rx_size,
            p_align: PAGE,
        };
        [slot, code]
    }

    /// The section headers of the slot and of the code segment, named at `slot_name` and
    /// `text_name` in `.shstrtab`.
    fn sections(&self, rx_size: u64, slot_name: u32, text_name: u32) -> [Section; 2] {
        let slot = Section {
            name: SLOT_NAME.into(),
            sh_name: slot_name,
            sh_type: elf::SHT_PROGBITS,
            sh_flags: elf::SHF_ALLOC | elf::SHF_WRITE,
            sh_addr: self.rw_vaddr,
            sh_offset: self.rw_off,
            sh_size: 8,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: 8,
            sh_entsize: 0,
        };
        let text = Section {
            name: TEXT_NAME.into(),
            sh_name: text_name,
            sh_type: elf::SHT_PROGBITS,
            sh_flags: elf::SHF_ALLOC | elf::SHF_EXECINSTR,
            sh_addr: self.rx_vaddr,
            sh_offset: self.rx_off,
            sh_size: rx_size,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: TRAMPOLINE_ALIGN,
            sh_entsize: 0,
        };
        [slot, text]
    }
}

/// The `.bss` of the last `PT_LOAD`, if it has one; its file range must end before `limit`.
fn last_bss(input: &str, elf: &Elf<'_>, limit: u64) -> Result<Option<Bss>, Error> {
    let Some(i) = elf.phdrs.iter().rposition(|p| p.p_type == elf::PT_LOAD) else {
        return Ok(None);
    };
    let p = elf.phdrs[i];
    if p.p_memsz <= p.p_filesz {
        return Ok(None);
    }
    let file_start = p.p_offset + p.p_filesz;
    let file_end = p
        .p_offset
        .checked_add(p.p_memsz)
        .and_then(|e| align_up(e, PAGE))
        .ok_or_else(overflow(input))?;
    if file_end > limit {
        return Err(layout_err(
            input,
            format!("the .bss of program header {i} ends at file offset {file_end:#x}, past the added segments"),
        ));
    }
    Ok(Some(Bss {
        phdr: i,
        file_start,
        file_end,
    }))
}

/// Everything must stay within ±2 GiB of the code (the code segment's size estimated from the
/// number of sites).
fn check_reach(input: &str, an: &Analysis<'_>, max_end: u64, rx_vaddr: u64) -> Result<(), Error> {
    let code_lo = an.regions.iter().map(|r| r.start).min().unwrap_or(rx_vaddr);
    let estimate = 4096 + 96 * an.sites.len() as u64;
    if rx_vaddr.saturating_add(estimate).saturating_sub(code_lo) >= (1u64 << 31) - (1 << 20) {
        return Err(layout_err(
            input,
            format!(
                "the end of the program's address range ({max_end:#x}) is more than 2 GiB from its code ({code_lo:#x})"
            ),
        ));
    }
    Ok(())
}

/// The code segment's bytes as they are assembled, from its start address.
struct CodeSegment {
    vaddr: u64,
    bytes: Vec<u8>,
}

impl CodeSegment {
    /// The marker and version, room for the program header table, and the entry stub (the
    /// probe in a shared object).
    fn start(input: &str, elf: &Elf<'_>, layout: &Layout) -> Result<CodeSegment, Error> {
        let stub = if layout.shared {
            kml_shim::probe(layout.stub_vaddr, layout.rw_vaddr)
                .map_err(|e| layout_err(input, format!("probe: {e}")))?
        } else {
            kml_shim::entry_stub(layout.stub_vaddr, layout.rw_vaddr, elf.e_entry)
                .map_err(|e| layout_err(input, format!("entry stub: {e}")))?
        };
        let mut code = CodeSegment {
            vaddr: layout.rx_vaddr,
            bytes: Vec::new(),
        };
        code.bytes.extend_from_slice(MARKER);
        code.bytes
            .extend_from_slice(&kml_shim::FORMAT_VERSION.to_le_bytes());
        code.put(layout.stub_vaddr, INT3, &stub);
        Ok(code)
    }

    /// The address of the next byte appended, rounded up to `align`.
    fn next(&self, align: u64) -> Option<u64> {
        align_up(self.vaddr + self.bytes.len() as u64, align)
    }

    /// Fills up to the address `at` with `fill`, then appends `bytes` there.
    fn put(&mut self, at: u64, fill: u8, bytes: &[u8]) {
        self.bytes.resize((at - self.vaddr) as usize, fill);
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends `len` bytes of `fill`.
    fn pad(&mut self, len: u64, fill: u8) {
        self.bytes.resize(self.bytes.len() + len as usize, fill);
    }

    /// Writes the program header table after the segment's header.
    fn write_phdrs(&mut self, phdrs: &[Phdr]) {
        for (n, p) in phdrs.iter().enumerate() {
            let at = CODE_HEADER_LEN as usize + n * elf::PHDR_SIZE;
            self.bytes[at..at + elf::PHDR_SIZE].copy_from_slice(&p.to_bytes());
        }
    }
}

/// The trampolines and moved cancellation points placed in the code segment.
struct Placed {
    /// Per site: the trampoline (or copy) and its real-path syscall.
    tramps: Vec<Option<(u64, u64)>>,
    /// Per site: the end of a moved cancellation point's copy (its new upper bound).
    copy_ends: Vec<Option<u64>>,
    /// What was placed, in address order.
    laid_out: Vec<LaidOut>,
}

/// Added code that stands for original code: a trampoline or a cancellation point's copy.
struct LaidOut {
    /// The site.
    idx: usize,
    at: u64,
    len: u64,
    /// The original code whose unwind information it mirrors.
    covering: (u64, u64),
    /// Each of its instructions and the original address whose unwind row it takes; `None`
    /// when the code has an unexpected shape.
    map: Option<Vec<cfi::MapPoint>>,
}

/// Appends a trampoline to the code segment for each site with a window and patches the window
/// in `out` with a jump to it, or a copy of each moved cancellation point; a site whose code
/// cannot be encoded is kept.
fn place_trampolines(
    input: &str,
    elf: &Elf<'_>,
    an: &mut Analysis<'_>,
    slot: SlotRef,
    code: &mut CodeSegment,
    out: &mut [u8],
) -> Result<Placed, Error> {
    let mut placed = Placed {
        tramps: vec![None; an.sites.len()],
        copy_ends: vec![None; an.sites.len()],
        laid_out: Vec::new(),
    };
    for (idx, s) in an.sites.iter_mut().enumerate() {
        let cursor = code.next(TRAMPOLINE_ALIGN).ok_or_else(overflow(input))?;
        if let Some(cp) = &s.moved {
            match move_cancel_point(input, elf, cp, cursor, slot, out)? {
                Err(e) => {
                    s.kept = Some(KeptReason::Encode(e));
                    s.moved = None;
                }
                Ok(copy) => {
                    code.put(cursor, INT3, &copy.bytes);
                    placed.tramps[idx] = Some((cursor, cursor + copy.syscall_offset as u64));
                    placed.copy_ends[idx] = Some(cursor + copy.end_offset as u64);
                    placed.laid_out.push(LaidOut {
                        idx,
                        at: cursor,
                        len: copy.bytes.len() as u64,
                        covering: (cp.begin, cp.end),
                        map: cancel_map(cp, &copy),
                    });
                }
            }
            continue;
        }
        let Some((start, end)) = s.window else {
            continue;
        };
        match encode_trampoline(s, cursor, slot, start, end) {
            Err(e) => {
                s.kept = Some(KeptReason::Encode(e));
                s.window = None;
            }
            Ok((t, jmp)) => {
                patch_window(input, elf, out, start, end, &jmp)?;
                code.put(cursor, INT3, &t.bytes);
                placed.tramps[idx] = Some((cursor, cursor + t.syscall_offset as u64));
                placed.laid_out.push(LaidOut {
                    idx,
                    at: cursor,
                    len: t.bytes.len() as u64,
                    covering: (start, end),
                    map: trampoline_map(s, &t, end),
                });
            }
        }
    }
    Ok(placed)
}

/// Generates the copy of the cancellation point `cp` at `at`, sends the function's entry to it
/// and makes every reference to the bounds name the copy's, in `out`. The inner `Err` says why
/// the copy could not be made (nothing is patched then).
fn move_cancel_point(
    input: &str,
    elf: &Elf<'_>,
    cp: &cancel::CancelPoint,
    at: u64,
    slot: SlotRef,
    out: &mut [u8],
) -> Result<Result<kml_shim::CancelCopy, String>, Error> {
    let copy = match kml_shim::cancel_point(at, &cp.body, slot.addr, cp.end, slot.probe) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let (start, end) = cp.entry_window;
    let Some(jmp) = kml_shim::jmp_rel32(start, at) else {
        return Ok(Err("the copy is out of jmp range".into()));
    };
    let mut fields = Vec::with_capacity(cp.refs.len());
    for r in &cp.refs {
        let value = match r.edge {
            cancel::Edge::Begin => at + copy.begin_offset as u64,
            cancel::Edge::End => at + copy.end_offset as u64,
        };
        let Some(bytes) = r.encode(value) else {
            return Ok(Err(format!(
                "the reference at {:#x} cannot name the copy at {value:#x}",
                r.insn
            )));
        };
        fields.push((r.field, bytes));
    }
    patch_window(input, elf, out, start, end, &jmp)?;
    for (field, bytes) in fields {
        patch_bytes(input, elf, out, field, &bytes)?;
    }
    Ok(Ok(copy))
}

/// Each instruction of the copy `copy` of `cp` and the original address whose unwind row it
/// takes (the KML path's push moves the CFA by 8); `None` for an unexpected shape.
fn cancel_map(cp: &cancel::CancelPoint, copy: &kml_shim::CancelCopy) -> Option<Vec<cfi::MapPoint>> {
    let o = &copy.instruction_offsets;
    let n = cp.body.len();
    let pro = o.len().checked_sub(n + 7)?;
    if pro != 0 && pro != 3 {
        return None;
    }
    let syscall = cp.end - 2;
    let pt = |k: usize, orig: u64, adj: i64| cfi::MapPoint {
        offset: o[k] as u64,
        orig,
        cfa_adjust: adj,
    };
    // The probing prologue runs as the function's first instruction.
    let mut map: Vec<cfi::MapPoint> = (0..pro).map(|k| pt(k, cp.begin, 0)).collect();
    map.extend(
        cp.body
            .iter()
            .enumerate()
            .map(|(k, i)| pt(pro + k, i.ip(), 0)),
    );
    let n = pro + n;
    map.push(pt(n, syscall, 0)); // mov rcx, [slot]
    map.push(pt(n + 4, syscall, 8)); // jmp rcx, after the push
    map.push(pt(n + 5, syscall, 0)); // .real: syscall
    map.push(pt(n + 6, cp.end, 0)); // end: jmp to the original end
    Some(map)
}

/// The trampoline of the site `s` (window `start..end`) at `at`, and the jump to it.
fn encode_trampoline(
    s: &mut SiteInfo,
    at: u64,
    slot: SlotRef,
    start: u64,
    end: u64,
) -> Result<(kml_shim::Trampoline, [u8; kml_shim::JMP_REL32_LEN]), String> {
    // Lent to the shim and given back: the FDE of the trampoline needs them.
    let site = Site {
        before: std::mem::take(&mut s.before),
        after: std::mem::take(&mut s.after),
    };
    let result = kml_shim::trampoline(at, &site, slot.addr, end, slot.probe)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            let j = kml_shim::jmp_rel32(start, at).ok_or("trampoline out of jmp range")?;
            Ok((t, j))
        });
    s.before = site.before;
    s.after = site.after;
    result
}

/// Writes `bytes` at the address `at` in `out`.
fn patch_bytes(
    input: &str,
    elf: &Elf<'_>,
    out: &mut [u8],
    at: u64,
    bytes: &[u8],
) -> Result<(), Error> {
    let dst = elf
        .vaddr_to_offset(at)
        .and_then(|o| usize::try_from(o).ok())
        .and_then(|o| out.get_mut(o..o.checked_add(bytes.len())?))
        .ok_or_else(|| layout_err(input, format!("operand at {at:#x} is not in the file")))?;
    dst.copy_from_slice(bytes);
    Ok(())
}

/// Replaces the window `start..end` in `out` with `jmp` and `int3`s.
fn patch_window(
    input: &str,
    elf: &Elf<'_>,
    out: &mut [u8],
    start: u64,
    end: u64,
    jmp: &[u8],
) -> Result<(), Error> {
    let off = elf
        .vaddr_to_offset(start)
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(|| layout_err(input, format!("window at {start:#x} is not in the file")))?;
    let len = (end - start) as usize;
    let w = out
        .get_mut(off..off + len)
        .ok_or_else(|| layout_err(input, format!("window at {start:#x} is outside the file")))?;
    w.fill(INT3);
    w[..jmp.len()].copy_from_slice(jmp);
    Ok(())
}

/// What [`add_unwind_info`] added.
struct Unwind {
    /// Per site: whether its trampoline has an FDE.
    per_site: Vec<bool>,
    /// The new `.eh_frame_hdr`: address and size.
    eh_frame_hdr: Option<(u64, u64)>,
}

/// Appends FDEs for the trampolines inside functions that have one, then a new `.eh_frame_hdr`
/// whose table has them besides the program's own.
fn add_unwind_info(
    input: &str,
    elf: &Elf<'_>,
    an: &Analysis<'_>,
    laid_out: &[LaidOut],
    code: &mut CodeSegment,
) -> Result<Unwind, Error> {
    let mut unwind = Unwind {
        per_site: vec![false; an.sites.len()],
        eh_frame_hdr: None,
    };
    let Some(mut table) = eh_hdr_table(elf, an) else {
        return Ok(unwind);
    };
    let fde_base = code.next(8).ok_or_else(overflow(input))?;
    let fdes = trampoline_fdes(
        elf,
        an,
        laid_out,
        fde_base,
        &mut table,
        &mut unwind.per_site,
    );
    if fdes.is_empty() {
        return Ok(unwind);
    }
    code.put(fde_base, 0, &fdes);
    let hdr_vaddr = code.next(8).ok_or_else(overflow(input))?;
    if let Some(hdr) = cfi::write_hdr(hdr_vaddr, an.eh.vaddr, &mut table) {
        code.put(hdr_vaddr, 0, &hdr);
        unwind.eh_frame_hdr = Some((hdr_vaddr, hdr.len() as u64));
    } else {
        unwind.per_site.iter_mut().for_each(|u| *u = false);
    }
    Ok(unwind)
}

/// The original binary-search table `(initial_loc, fde)`, or one made from `.eh_frame` when the
/// program has none (static non-PIE programs: their unwinder finds `.eh_frame` through
/// `__register_frame_info`, and the trampolines' FDEs through the new `PT_GNU_EH_FRAME`).
fn eh_hdr_table(elf: &Elf<'_>, an: &Analysis<'_>) -> Option<Vec<(u64, u64)>> {
    elf.phdrs
        .iter()
        .position(|p| p.p_type == elf::PT_GNU_EH_FRAME)
        .and_then(|i| {
            let p = elf.phdrs[i];
            elf::slice(elf.data, p.p_offset, p.p_filesz)
                .and_then(|b| cfi::read_hdr_table(b, p.p_vaddr))
        })
        .or_else(|| {
            (an.eh.skipped == 0 && !an.eh.records.is_empty())
                .then(|| an.eh.records.iter().map(|f| (f.start, f.vaddr)).collect())
        })
}

/// The FDEs, placed from `fde_base`, of the trampolines whose windows lie in a function with
/// one; each is added to `table` and marked in `has_fde`.
fn trampoline_fdes(
    elf: &Elf<'_>,
    an: &Analysis<'_>,
    laid_out: &[LaidOut],
    fde_base: u64,
    table: &mut Vec<(u64, u64)>,
    has_fde: &mut [bool],
) -> Vec<u8> {
    let pie = elf.e_type == object::elf::ET_DYN;
    let mut fdes: Vec<u8> = Vec::new();
    for l in laid_out {
        let (start, end) = l.covering;
        let (Some(fde), Some(map)) = (cfi::covering(&an.eh, start, end), &l.map) else {
            continue;
        };
        let fde_vaddr = fde_base + fdes.len() as u64;
        if let Some(rec) = cfi::trampoline_fde(&an.eh, fde, fde_vaddr, l.at, l.len, map, pie) {
            fdes.extend_from_slice(&rec);
            table.push((l.at, fde_vaddr));
            has_fde[l.idx] = true;
        }
    }
    fdes
}

/// Each instruction of the trampoline `t` of site `s` (window ending at `end`) and the
/// original address whose unwind row it takes: the displaced instructions their own, the
/// trampoline's own instructions the `syscall`'s (with the CFA 128 bytes further while `rsp` is
/// lowered), the final jump the end of the window. `None` when `t` has an unexpected shape.
fn trampoline_map(s: &SiteInfo, t: &kml_shim::Trampoline, end: u64) -> Option<Vec<cfi::MapPoint>> {
    let o = &t.instruction_offsets;
    let (nb, na) = (s.before.len(), s.after.len());
    if t.own.start != nb || o.len() != t.own.end + na + 1 {
        return None;
    }
    let origs = s
        .before
        .iter()
        .map(|i| i.ip())
        .chain(t.own.clone().map(|_| s.address))
        .chain(s.after.iter().map(|i| i.ip()))
        .chain(std::iter::once(end));
    let mut map: Vec<cfi::MapPoint> = Vec::with_capacity(o.len());
    for (k, orig) in origs.enumerate() {
        let cfa_adjust = if t.lowered.contains(&k) {
            kml_shim::RED_ZONE
        } else {
            0
        };
        let same = map
            .last()
            .is_some_and(|m| m.orig == orig && m.cfa_adjust == cfa_adjust);
        if !same {
            map.push(cfi::MapPoint {
                offset: o[k] as u64,
                orig,
                cfa_adjust,
            });
        }
    }
    Some(map)
}

/// The output's program headers: the input's, with `PT_PHDR` moved into the code segment and
/// `PT_GNU_EH_FRAME` pointing at the new `.eh_frame_hdr` (added last when the input had none),
/// and the two new `PT_LOAD`s after the last `PT_LOAD`.
fn program_headers(
    input: &str,
    elf: &Elf<'_>,
    layout: &Layout,
    rx_size: u64,
    eh_frame_hdr: Option<(u64, u64)>,
) -> Result<Vec<Phdr>, Error> {
    let last_load = elf
        .phdrs
        .iter()
        .rposition(|p| p.p_type == elf::PT_LOAD)
        .ok_or_else(|| layout_err(input, "no PT_LOAD"))?;
    let had_eh_ph = elf.phdrs.iter().any(|p| p.p_type == elf::PT_GNU_EH_FRAME);
    let add_eh_ph = !had_eh_ph && eh_frame_hdr.is_some();
    let phnum = elf.phdrs.len() + 2 + usize::from(add_eh_ph);
    let phdr_size = (phnum * elf::PHDR_SIZE) as u64;
    let mut phdrs: Vec<Phdr> = Vec::with_capacity(phnum);
    for (i, p) in elf.phdrs.iter().enumerate() {
        let mut p = *p;
        if let (elf::PT_GNU_EH_FRAME, Some((v, n))) = (p.p_type, eh_frame_hdr) {
            p.p_offset = layout.rx_offset(v);
            p.p_vaddr = v;
            p.p_paddr = v;
            p.p_filesz = n;
            p.p_memsz = n;
        }
        if layout.bss.is_some_and(|b| b.phdr == i) {
            p.p_filesz = p.p_memsz;
        }
        if p.p_type == elf::PT_PHDR {
            p.p_offset = layout.phoff();
            p.p_vaddr = layout.phdr_vaddr();
            p.p_paddr = layout.phdr_vaddr();
            p.p_filesz = phdr_size;
            p.p_memsz = phdr_size;
        }
        phdrs.push(p);
        if i == last_load {
            phdrs.extend(layout.loads(rx_size));
        }
    }
    if let (true, Some((v, n))) = (add_eh_ph, eh_frame_hdr) {
        phdrs.push(Phdr {
            p_type: elf::PT_GNU_EH_FRAME,
            p_flags: elf::PF_R,
            p_offset: layout.rx_offset(v),
            p_vaddr: v,
            p_paddr: v,
            p_filesz: n,
            p_memsz: n,
            p_align: 4,
        });
    }
    Ok(phdrs)
}

/// Appends a copy of `.shstrtab` with the two new names, then a copy of the section header
/// table with `.lupine.slot` and `.lupine.text` added. Returns the new table's offset and
/// number of entries, or `None` when the input has no section header table to copy.
fn append_section_headers(
    input: &str,
    elf: &Elf<'_>,
    layout: &Layout,
    rx_size: u64,
    out: &mut Vec<u8>,
) -> Result<Option<(u64, u16)>, Error> {
    let Some(shstrndx) = copyable_shstrndx(elf) else {
        return Ok(None);
    };
    let Some(strtab) = elf.sections[shstrndx].data(elf.data) else {
        return Ok(None);
    };
    let mut strings = strtab.to_vec();
    let text_name = add_name(&mut strings, TEXT_NAME);
    let slot_name = add_name(&mut strings, SLOT_NAME);
    let str_off = out.len() as u64;
    out.extend_from_slice(&strings);
    out.resize(
        align_up(out.len() as u64, 8).ok_or_else(overflow(input))? as usize,
        0,
    );
    let mut secs: Vec<Section> = elf.sections.clone();
    secs[shstrndx].sh_offset = str_off;
    secs[shstrndx].sh_size = strings.len() as u64;
    // Sections whose bytes the file-backed .bss now covers move to the end.
    if let Some(b) = layout.bss {
        for (i, sec) in secs.iter_mut().enumerate() {
            let end = sec.sh_offset.saturating_add(sec.sh_size);
            let covered = sec.sh_offset < b.file_end && end > b.file_start;
            if i == shstrndx || sec.sh_type == elf::SHT_NOBITS || sec.sh_size == 0 || !covered {
                continue;
            }
            let Some(bytes) = elf.sections[i].data(elf.data) else {
                continue;
            };
            let align = sec.sh_addralign.clamp(1, 4096);
            let at = align_up(out.len() as u64, align).ok_or_else(overflow(input))?;
            out.resize(at as usize, 0);
            out.extend_from_slice(bytes);
            sec.sh_offset = at;
        }
        let at = align_up(out.len() as u64, 8).ok_or_else(overflow(input))?;
        out.resize(at as usize, 0);
    }
    secs.extend(layout.sections(rx_size, slot_name, text_name));
    let shoff = out.len() as u64;
    for s in &secs {
        out.extend_from_slice(&s.to_bytes());
    }
    Ok(Some((shoff, secs.len() as u16)))
}

/// The index of `.shstrtab` when the section header table is whole and has room for two more.
fn copyable_shstrndx(elf: &Elf<'_>) -> Option<usize> {
    let shstrndx = usize::from(elf.e_shstrndx);
    (elf.e_shoff != 0
        && !elf.sections.is_empty()
        && usize::from(elf.e_shnum) == elf.sections.len()
        && elf.sections.len() + 2 < 0xff00
        && shstrndx != 0
        && shstrndx < elf.sections.len())
    .then_some(shstrndx)
}

/// Appends `name` and its NUL to a string table; returns its offset.
fn add_name(strings: &mut Vec<u8>, name: &str) -> u32 {
    let at = strings.len() as u32;
    strings.extend_from_slice(name.as_bytes());
    strings.push(0);
    at
}

/// Points the ELF header at the entry stub (but in a shared object) and at the moved tables.
fn write_elf_header(out: &mut [u8], layout: &Layout, phnum: usize, shoff: u64, shnum: u16) {
    if !layout.shared {
        out[24..32].copy_from_slice(&layout.stub_vaddr.to_le_bytes()); // e_entry
    }
    out[32..40].copy_from_slice(&layout.phoff().to_le_bytes()); // e_phoff
    out[40..48].copy_from_slice(&shoff.to_le_bytes()); // e_shoff
    out[56..58].copy_from_slice(&(phnum as u16).to_le_bytes()); // e_phnum
    out[60..62].copy_from_slice(&shnum.to_le_bytes()); // e_shnum
}

/// What the report tells of the added segments.
struct RxInfo {
    /// Per site: the trampoline and its real-path syscall, and whether it has an FDE.
    tramps: Vec<Option<(u64, u64)>>,
    /// Per site: the end of a moved cancellation point's copy.
    copy_ends: Vec<Option<u64>>,
    unwind: Vec<bool>,
    eh_frame_hdr: Option<u64>,
    layout: Layout,
    rx_size: u64,
    sections_added: bool,
}

/// The JSON report: every site with its decision, the counts, and the added segments.
fn make_report(
    input: &str,
    output: &str,
    elf: &Elf<'_>,
    an: &Analysis<'_>,
    out: &[u8],
    rx: RxInfo,
) -> Report {
    let mut kept_by_reason = std::collections::BTreeMap::new();
    let mut sites = Vec::with_capacity(an.sites.len());
    let mut rewritten = 0;
    for (k, s) in an.sites.iter().enumerate() {
        let t = rx.tramps[k];
        match (&s.kept, t) {
            (None, Some(_)) => rewritten += 1,
            (Some(k), _) => *kept_by_reason.entry(k.kind().to_string()).or_insert(0u64) += 1,
            (None, None) => {}
        }
        let mut site = site_report(elf, s, t, rx.unwind[k]);
        if let (Some(cp), Some((at, _)), Some(end)) = (&s.moved, t, rx.copy_ends[k]) {
            site.cancellation_point = Some(moved_report(elf, cp, at, end));
        }
        sites.push(site);
    }
    let total = an.sites.len() as u64;
    Report {
        tool: "lupine-relink".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        report_format: report::REPORT_FORMAT,
        input: input.into(),
        output: output.into(),
        elf_type: if elf.e_type == object::elf::ET_DYN {
            "ET_DYN".into()
        } else {
            "ET_EXEC".into()
        },
        kind: match elf.kind {
            elf::Kind::Static => "static",
            elf::Kind::Dynamic { .. } => "dynamic",
            elf::Kind::Shared => "shared",
        }
        .into(),
        interpreter: match &elf.kind {
            elf::Kind::Dynamic { interpreter } => Some(interpreter.clone()),
            _ => None,
        },
        soname: elf.dynamic.soname.clone(),
        needed: elf.dynamic.needed.clone(),
        libraries: None,
        counts: report::Counts {
            sites: total,
            rewritten,
            kept: total - rewritten,
        },
        input_size: elf.data.len() as u64,
        output_size: out.len() as u64,
        bytes_added: (out.len() - elf.data.len()) as u64,
        entry: report::Entry {
            original: hex(elf.e_entry),
            stub: (!rx.layout.shared).then(|| hex(rx.layout.stub_vaddr)),
            probe: rx.layout.probe().map(hex),
        },
        code_segment: report::Segment {
            vaddr: hex(rx.layout.rx_vaddr),
            file_offset: rx.layout.rx_off,
            size: rx.rx_size,
            flags: "R+X".into(),
        },
        slot_segment: report::Segment {
            vaddr: hex(rx.layout.rw_vaddr),
            file_offset: rx.layout.rw_off,
            size: 8,
            flags: "R+W".into(),
        },
        sections_added: rx.sections_added,
        trampolines_with_unwind_info: rx.unwind.iter().filter(|&&u| u).count() as u64,
        eh_frame_hdr: rx.eh_frame_hdr.map(hex),
        analysis: analysis_summary(elf, an),
        kept_by_reason,
        sites,
    }
}

/// The report of one site, with its trampoline and real-path syscall `t` and whether the
/// trampoline has an FDE.
fn site_report(elf: &Elf<'_>, s: &SiteInfo, t: Option<(u64, u64)>, unwind: bool) -> report::Site {
    let (status, kind, reason) = match (&s.kept, t) {
        (None, Some(_)) => ("rewritten", None, None),
        (Some(k), _) => ("kept", Some(k.kind().to_string()), Some(k.to_string())),
        (None, None) => (
            "kept",
            Some("encode".to_string()),
            Some("not laid out".to_string()),
        ),
    };
    let window = s.window.filter(|_| t.is_some());
    report::Site {
        address: hex(s.address),
        symbol: s.symbol.clone(),
        status: status.into(),
        syscall_number: s.number,
        syscall_name: s.number.and_then(crate::syscalls::name).map(String::from),
        reason_kind: kind,
        reason,
        window_start: window.map(|w| hex(w.0)),
        window_end: window.map(|w| hex(w.1)),
        window_bytes: window.map(|w| analyze::window_hex(elf, w.0, w.1)),
        trampoline: t.map(|t| hex(t.0)),
        trampoline_syscall: t.map(|t| hex(t.1)),
        unwind_info: t.is_some().then_some(unwind),
        cancellation_point: None,
    }
}

/// The report of a cancellation point moved to `at..end`.
fn moved_report(
    elf: &Elf<'_>,
    cp: &cancel::CancelPoint,
    at: u64,
    end: u64,
) -> report::MovedCancelPoint {
    let (ws, we) = cp.entry_window;
    report::MovedCancelPoint {
        library: cp.library.into(),
        range: [hex(cp.begin), hex(cp.end)],
        entry_window: [hex(ws), hex(we)],
        entry_window_bytes: analyze::window_hex(elf, ws, we),
        copy: [hex(at), hex(end)],
        retargeted: cp
            .refs
            .iter()
            .map(|r| {
                let edge = match r.edge {
                    cancel::Edge::Begin => "begin",
                    cancel::Edge::End => "end",
                };
                [hex(r.insn), hex(r.field), edge.into()]
            })
            .collect(),
    }
}

/// What the analysis found, in numbers.
fn analysis_summary(elf: &Elf<'_>, an: &Analysis<'_>) -> report::AnalysisSummary {
    report::AnalysisSummary {
        code_ranges: an
            .regions
            .iter()
            .map(|r| format!("{} {} {}", r.name, hex(r.start), hex(r.end())))
            .collect(),
        instructions: an.instructions as u64,
        undecodable: an.undecodable as u64,
        branch_targets: an.targets.len() as u64,
        fdes: an.fdes as u64,
        landing_pads: an.landing_pads as u64,
        eh_frame_records_skipped: an.eh_frame_skipped as u64,
        symbols: elf.symbols.len() as u64,
        relocations: elf.relocations.len() as u64,
    }
}
