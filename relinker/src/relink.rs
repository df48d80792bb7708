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

use crate::analyze::{self, Analysis, KeptReason};
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
fn is_relinked(elf: &Elf<'_>) -> bool {
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

fn build(
    input: &str,
    output: &str,
    elf: &Elf<'_>,
    an: &mut Analysis<'_>,
) -> Result<Relinked, Error> {
    let data = elf.data;
    let overflow = || layout_err(input, "addresses overflow");
    let max_end = elf
        .loads()
        .map(|p| p.p_vaddr + p.p_memsz)
        .max()
        .ok_or_else(overflow)?;
    let file_end = data.len() as u64;
    let rw_off = align_up(file_end, 8).ok_or_else(overflow)?;
    let rw_vaddr = align_up(max_end, PAGE)
        .and_then(|v| v.checked_add(rw_off % PAGE))
        .ok_or_else(overflow)?;
    let rx_off = align_up(rw_off + 8, TRAMPOLINE_ALIGN).ok_or_else(overflow)?;
    let rx_vaddr = align_up(rw_vaddr + 8, PAGE)
        .and_then(|v| v.checked_add(rx_off % PAGE))
        .ok_or_else(overflow)?;

    // Everything must stay within ±2 GiB of the code.
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

    let old_phnum = elf.phdrs.len();
    // Room for the two new PT_LOADs and perhaps a new PT_GNU_EH_FRAME.
    let max_phnum = old_phnum + 3;
    if max_phnum >= usize::from(object::elf::PN_XNUM) {
        return Err(Error::Malformed {
            file: input.into(),
            what: "too many program headers to add three".into(),
        });
    }
    let header_len = 16u64; // marker + version + padding
    let phdr_vaddr = rx_vaddr + header_len;
    let phdr_room = (max_phnum * elf::PHDR_SIZE) as u64;
    let stub_vaddr = align_up(phdr_vaddr + phdr_room, TRAMPOLINE_ALIGN).ok_or_else(overflow)?;
    let stub = kml_shim::entry_stub(stub_vaddr, rw_vaddr, elf.e_entry)
        .map_err(|e| layout_err(input, format!("entry stub: {e}")))?;

    let mut rx: Vec<u8> = Vec::new();
    rx.extend_from_slice(MARKER);
    rx.extend_from_slice(&kml_shim::FORMAT_VERSION.to_le_bytes());
    rx.resize((stub_vaddr - rx_vaddr) as usize, INT3);
    rx.extend_from_slice(&stub);

    let mut out = data.to_vec();
    let mut tramps: Vec<Option<(u64, u64)>> = vec![None; an.sites.len()];
    let mut laid_out: Vec<(usize, u64, kml_shim::Trampoline)> = Vec::new();
    for (idx, s) in an.sites.iter_mut().enumerate() {
        let Some((start, end)) = s.window else {
            continue;
        };
        let cursor = align_up(rx_vaddr + rx.len() as u64, TRAMPOLINE_ALIGN).ok_or_else(overflow)?;
        let site = Site {
            before: std::mem::take(&mut s.before),
            after: std::mem::take(&mut s.after),
        };
        let result = kml_shim::trampoline(cursor, &site, rw_vaddr, end)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                let j = kml_shim::jmp_rel32(start, cursor).ok_or("trampoline out of jmp range")?;
                Ok((t, j))
            });
        s.before = site.before;
        s.after = site.after;
        match result {
            Err(e) => {
                s.kept = Some(KeptReason::Encode(e));
                s.window = None;
            }
            Ok((t, jmp)) => {
                let off = elf
                    .vaddr_to_offset(start)
                    .and_then(|o| usize::try_from(o).ok())
                    .ok_or_else(|| {
                        layout_err(input, format!("window at {start:#x} is not in the file"))
                    })?;
                let len = (end - start) as usize;
                let w = out.get_mut(off..off + len).ok_or_else(|| {
                    layout_err(input, format!("window at {start:#x} is outside the file"))
                })?;
                w.fill(INT3);
                w[..jmp.len()].copy_from_slice(&jmp);
                rx.resize((cursor - rx_vaddr) as usize, INT3);
                rx.extend_from_slice(&t.bytes);
                tramps[idx] = Some((cursor, cursor + t.syscall_offset as u64));
                laid_out.push((idx, cursor, t));
            }
        }
    }
    rx.resize(rx.len() + TAIL_PAD as usize, INT3);

    // Unwind information for the trampolines and the new .eh_frame_hdr.
    let mut unwind = vec![false; an.sites.len()];
    let mut new_eh_hdr: Option<(u64, u64)> = None; // (vaddr, size)
    let eh_ph = elf
        .phdrs
        .iter()
        .position(|p| p.p_type == elf::PT_GNU_EH_FRAME);
    {
        // The original binary-search table, or one made from .eh_frame when the program has
        // none (static non-PIE programs: their unwinder finds .eh_frame through
        // __register_frame_info, and the trampolines' FDEs through the new PT_GNU_EH_FRAME).
        let old_table = eh_ph
            .and_then(|i| {
                let p = elf.phdrs[i];
                elf::slice(data, p.p_offset, p.p_filesz)
                    .and_then(|b| cfi::read_hdr_table(b, p.p_vaddr))
            })
            .or_else(|| {
                (an.eh.skipped == 0 && !an.eh.records.is_empty())
                    .then(|| an.eh.records.iter().map(|f| (f.start, f.vaddr)).collect())
            });
        if let Some(mut table) = old_table {
            let mut fdes: Vec<u8> = Vec::new();
            let fde_base = align_up(rx_vaddr + rx.len() as u64, 8).ok_or_else(overflow)?;
            for (idx, at, t) in &laid_out {
                let s = &an.sites[*idx];
                let Some((start, end)) = s.window else {
                    continue;
                };
                let Some(fde) = cfi::covering(&an.eh, start, end) else {
                    continue;
                };
                let o = &t.instruction_offsets;
                let (nb, na) = (s.before.len(), s.after.len());
                if o.len() != nb + na + 8 {
                    continue;
                }
                let mut map = Vec::with_capacity(nb + na + 6);
                for (i, ins) in s.before.iter().enumerate() {
                    map.push(cfi::MapPoint {
                        offset: o[i] as u64,
                        orig: ins.ip(),
                        cfa_adjust: 0,
                    });
                }
                let pt = |k: usize, orig: u64, adj: i64| cfi::MapPoint {
                    offset: o[k] as u64,
                    orig,
                    cfa_adjust: adj,
                };
                map.push(pt(nb, s.address, 0)); // mov rcx, [slot]
                map.push(pt(nb + 3, s.address, kml_shim::RED_ZONE)); // call rcx, rsp 128 lower
                map.push(pt(nb + 5, s.address, 0)); // jmp .after
                map.push(pt(nb + 6, s.address, 0)); // .real: syscall
                for (j, ins) in s.after.iter().enumerate() {
                    map.push(pt(nb + 7 + j, ins.ip(), 0));
                }
                map.push(pt(nb + 7 + na, end, 0)); // jmp resume
                let fde_vaddr = fde_base + fdes.len() as u64;
                let pie = elf.e_type == object::elf::ET_DYN;
                if let Some(rec) = cfi::trampoline_fde(
                    &an.eh,
                    fde,
                    fde_vaddr,
                    *at,
                    t.bytes.len() as u64,
                    &map,
                    pie,
                ) {
                    fdes.extend_from_slice(&rec);
                    table.push((*at, fde_vaddr));
                    unwind[*idx] = true;
                }
            }
            if !fdes.is_empty() {
                rx.resize((fde_base - rx_vaddr) as usize, 0);
                rx.extend_from_slice(&fdes);
                let hdr_vaddr = align_up(rx_vaddr + rx.len() as u64, 8).ok_or_else(overflow)?;
                if let Some(hdr) = cfi::write_hdr(hdr_vaddr, an.eh.vaddr, &mut table) {
                    rx.resize((hdr_vaddr - rx_vaddr) as usize, 0);
                    rx.extend_from_slice(&hdr);
                    new_eh_hdr = Some((hdr_vaddr, hdr.len() as u64));
                } else {
                    unwind.iter_mut().for_each(|u| *u = false);
                }
            }
        }
    }
    let rx_size = rx.len() as u64;

    // Program headers: PT_PHDR moved, the two new PT_LOADs after the last PT_LOAD.
    let slot_ph = Phdr {
        p_type: elf::PT_LOAD,
        p_flags: elf::PF_R | elf::PF_W,
        p_offset: rw_off,
        p_vaddr: rw_vaddr,
        p_paddr: rw_vaddr,
        p_filesz: 8,
        p_memsz: 8,
        p_align: PAGE,
    };
    let code_ph = Phdr {
        p_type: elf::PT_LOAD,
        p_flags: elf::PF_R | elf::PF_X,
        p_offset: rx_off,
        p_vaddr: rx_vaddr,
        p_paddr: rx_vaddr,
        p_filesz: rx_size,
        p_memsz: rx_size,
        p_align: PAGE,
    };
    let last_load = elf
        .phdrs
        .iter()
        .rposition(|p| p.p_type == elf::PT_LOAD)
        .ok_or_else(|| layout_err(input, "no PT_LOAD"))?;
    let add_eh_ph = eh_ph.is_none() && new_eh_hdr.is_some();
    let new_phnum = old_phnum + 2 + usize::from(add_eh_ph);
    let phdr_size = (new_phnum * elf::PHDR_SIZE) as u64;
    let mut phdrs: Vec<Phdr> = Vec::with_capacity(new_phnum);
    for (i, p) in elf.phdrs.iter().enumerate() {
        let mut p = *p;
        if let (elf::PT_GNU_EH_FRAME, Some((v, n))) = (p.p_type, new_eh_hdr) {
            p.p_offset = rx_off + (v - rx_vaddr);
            p.p_vaddr = v;
            p.p_paddr = v;
            p.p_filesz = n;
            p.p_memsz = n;
        }
        if p.p_type == elf::PT_PHDR {
            p.p_offset = rx_off + header_len;
            p.p_vaddr = phdr_vaddr;
            p.p_paddr = phdr_vaddr;
            p.p_filesz = phdr_size;
            p.p_memsz = phdr_size;
        }
        phdrs.push(p);
        if i == last_load {
            phdrs.push(slot_ph);
            phdrs.push(code_ph);
        }
    }
    if let (true, Some((v, n))) = (add_eh_ph, new_eh_hdr) {
        phdrs.push(Phdr {
            p_type: elf::PT_GNU_EH_FRAME,
            p_flags: elf::PF_R,
            p_offset: rx_off + (v - rx_vaddr),
            p_vaddr: v,
            p_paddr: v,
            p_filesz: n,
            p_memsz: n,
            p_align: 4,
        });
    }
    for (n, p) in phdrs.iter().enumerate() {
        let at = header_len as usize + n * elf::PHDR_SIZE;
        rx[at..at + elf::PHDR_SIZE].copy_from_slice(&p.to_bytes());
    }

    out.resize(rw_off as usize, 0);
    out.extend_from_slice(&[0u8; 8]);
    out.resize(rx_off as usize, 0);
    out.extend_from_slice(&rx);

    // Section headers: a copy of the table with .lupine.slot and .lupine.text added.
    let mut sections_added = false;
    let mut new_shoff = elf.e_shoff;
    let mut new_shnum = elf.e_shnum;
    let shstrndx = usize::from(elf.e_shstrndx);
    if elf.e_shoff != 0
        && !elf.sections.is_empty()
        && usize::from(elf.e_shnum) == elf.sections.len()
        && elf.sections.len() + 2 < 0xff00
        && shstrndx != 0
        && shstrndx < elf.sections.len()
    {
        if let Some(strtab) = elf.sections[shstrndx].data(data) {
            let mut strings = strtab.to_vec();
            let text_name = strings.len() as u32;
            strings.extend_from_slice(TEXT_NAME.as_bytes());
            strings.push(0);
            let slot_name = strings.len() as u32;
            strings.extend_from_slice(SLOT_NAME.as_bytes());
            strings.push(0);
            let str_off = out.len() as u64;
            out.extend_from_slice(&strings);
            out.resize(
                align_up(out.len() as u64, 8).ok_or_else(overflow)? as usize,
                0,
            );
            let mut secs: Vec<Section> = elf.sections.clone();
            secs[shstrndx].sh_offset = str_off;
            secs[shstrndx].sh_size = strings.len() as u64;
            secs.push(Section {
                name: SLOT_NAME.into(),
                sh_name: slot_name,
                sh_type: elf::SHT_PROGBITS,
                sh_flags: elf::SHF_ALLOC | elf::SHF_WRITE,
                sh_addr: rw_vaddr,
                sh_offset: rw_off,
                sh_size: 8,
                sh_link: 0,
                sh_info: 0,
                sh_addralign: 8,
                sh_entsize: 0,
            });
            secs.push(Section {
                name: TEXT_NAME.into(),
                sh_name: text_name,
                sh_type: elf::SHT_PROGBITS,
                sh_flags: elf::SHF_ALLOC | elf::SHF_EXECINSTR,
                sh_addr: rx_vaddr,
                sh_offset: rx_off,
                sh_size: rx_size,
                sh_link: 0,
                sh_info: 0,
                sh_addralign: TRAMPOLINE_ALIGN,
                sh_entsize: 0,
            });
            new_shoff = out.len() as u64;
            for s in &secs {
                out.extend_from_slice(&s.to_bytes());
            }
            new_shnum = secs.len() as u16;
            sections_added = true;
        }
    }

    // ELF header.
    let stub_entry = stub_vaddr;
    out[24..32].copy_from_slice(&stub_entry.to_le_bytes());
    out[32..40].copy_from_slice(&(rx_off + header_len).to_le_bytes());
    out[40..48].copy_from_slice(&new_shoff.to_le_bytes());
    out[56..58].copy_from_slice(&(new_phnum as u16).to_le_bytes());
    out[60..62].copy_from_slice(&new_shnum.to_le_bytes());

    let report = make_report(
        input,
        output,
        elf,
        an,
        &out,
        RxInfo {
            tramps,
            unwind,
            eh_frame_hdr: new_eh_hdr.map(|h| h.0),
            rw_off,
            rw_vaddr,
            rx_off,
            rx_vaddr,
            rx_size,
            stub_vaddr,
            sections_added,
        },
    );
    Ok(Relinked { bytes: out, report })
}

struct RxInfo {
    /// Per site: the trampoline and its real-path syscall, and whether it has an FDE.
    tramps: Vec<Option<(u64, u64)>>,
    unwind: Vec<bool>,
    eh_frame_hdr: Option<u64>,
    rw_off: u64,
    rw_vaddr: u64,
    rx_off: u64,
    rx_vaddr: u64,
    rx_size: u64,
    stub_vaddr: u64,
    sections_added: bool,
}

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
    for ((s, t), &uw) in an.sites.iter().zip(&rx.tramps).zip(&rx.unwind) {
        let (status, kind, reason) = match (&s.kept, t) {
            (None, Some(_)) => {
                rewritten += 1;
                ("rewritten", None, None)
            }
            (Some(k), _) => {
                *kept_by_reason.entry(k.kind().to_string()).or_insert(0u64) += 1;
                ("kept", Some(k.kind().to_string()), Some(k.to_string()))
            }
            (None, None) => (
                "kept",
                Some("encode".to_string()),
                Some("not laid out".to_string()),
            ),
        };
        let window = s.window.filter(|_| t.is_some());
        sites.push(report::Site {
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
            unwind_info: t.is_some().then_some(uw),
        });
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
            stub: hex(rx.stub_vaddr),
        },
        code_segment: report::Segment {
            vaddr: hex(rx.rx_vaddr),
            file_offset: rx.rx_off,
            size: rx.rx_size,
            flags: "R+X".into(),
        },
        slot_segment: report::Segment {
            vaddr: hex(rx.rw_vaddr),
            file_offset: rx.rw_off,
            size: 8,
            flags: "R+W".into(),
        },
        sections_added: rx.sections_added,
        trampolines_with_unwind_info: rx.unwind.iter().filter(|&&u| u).count() as u64,
        eh_frame_hdr: rx.eh_frame_hdr.map(hex),
        analysis: report::AnalysisSummary {
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
        },
        kept_by_reason,
        sites,
    }
}
