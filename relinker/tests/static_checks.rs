//! Static checks of every relinked corpus program, without running it:
//!
//! - No known branch target lies strictly inside a patch window. Targets are collected here
//!   independently of the relinker (a linear sweep with iced-x86 between symbols: direct branch
//!   and call targets, RIP-relative operands, symbol starts and ends, static-PIE relocation
//!   addends, code pointers in data, relative jump tables; FDE starts and landing pads through
//!   the library's .eh_frame reader), and also through the library's own analysis.
//! - The original code changed only inside the reported windows; each window is a `jmp rel32`
//!   to its trampoline in the added code, padded with int3; the report's window bytes are the
//!   original ones; every site left alone has a reason.
//! - Layout: no segment both writable and executable, PT_GNU_STACK kept non-executable, the
//!   program header table inside a loaded segment, PT_LOADs sorted and disjoint, the added
//!   code within +-2 GiB of the original code, the entry point in it, symbols kept.

mod support;

use iced_x86::{Decoder, DecoderOptions, FlowControl, OpKind};
use object::read::elf::{FileHeader, Rela, SectionHeader, Sym};
use object::LittleEndian as LE;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use support::*;

type Elf64 = object::elf::FileHeader64<LE>;

struct Symbols {
    /// (value, size, name) of code symbols (STT_FUNC, or STT_NOTYPE in an executable section).
    code: Vec<(u64, u64, String)>,
    /// name -> value, every symbol with a name.
    all: BTreeMap<String, u64>,
}

fn symbols(data: &[u8]) -> Symbols {
    let e = Elf64::parse(data).unwrap();
    let end = e.endian().unwrap();
    let sections = e.sections(end, data).unwrap();
    let mut code = Vec::new();
    let mut all = BTreeMap::new();
    if let Ok(table) = sections.symbols(end, data, object::elf::SHT_SYMTAB) {
        for s in table.iter() {
            let name =
                String::from_utf8_lossy(table.symbol_name(end, s).unwrap_or(b"")).into_owned();
            let shndx = s.st_shndx(end) as usize;
            if name.is_empty() || shndx == 0 || shndx >= 0xff00 {
                continue;
            }
            all.entry(name.clone()).or_insert(s.st_value(end));
            let exec_section = sections
                .section(object::read::SectionIndex(shndx))
                .is_ok_and(|h| h.sh_flags(end) & object::elf::SHF_EXECINSTR as u64 != 0);
            let t = s.st_type();
            if exec_section && (t == object::elf::STT_FUNC || t == object::elf::STT_NOTYPE) {
                code.push((s.st_value(end), s.st_size(end), name));
            }
        }
    }
    code.sort();
    Symbols { code, all }
}

/// Bytes of the file at a virtual address (within one PT_LOAD's file part).
fn bytes_at(info: &ElfInfo, data: &[u8], vaddr: u64, len: u64) -> Option<Vec<u8>> {
    let s = info
        .loads()
        .find(|s| vaddr >= s.vaddr && vaddr + len <= s.vaddr + s.filesz)?;
    let off = (s.offset + (vaddr - s.vaddr)) as usize;
    data.get(off..off + len as usize).map(|b| b.to_vec())
}

/// The file-backed parts of the executable segments.
struct CodeRanges(Vec<(u64, u64)>);

impl CodeRanges {
    fn new(info: &ElfInfo) -> CodeRanges {
        CodeRanges(
            info.loads()
                .filter(|s| s.exec())
                .map(|s| (s.vaddr, s.vaddr + s.filesz))
                .collect(),
        )
    }

    fn contains(&self, a: u64) -> bool {
        self.0.iter().any(|&(lo, hi)| a >= lo && a < hi)
    }
}

/// Branch targets found here, independently of the relinker's analysis.
fn independent_targets(data: &[u8], info: &ElfInfo, syms: &Symbols) -> BTreeSet<u64> {
    let code = CodeRanges::new(info);
    let mut t = BTreeSet::new();
    // Symbol starts and ends.
    for (v, size, _) in &syms.code {
        t.insert(*v);
        if *size > 0 {
            t.insert(v + size);
        }
    }
    let rip_rel = decoded_targets(data, info, syms, &code, &mut t);
    if info.e_type == object::elf::ET_EXEC {
        data_pointers(data, info, &code, &mut t);
    }
    relocation_targets(data, &code, &mut t);
    jump_table_targets(data, info, &rip_rel, &code, &mut t);
    t
}

/// Adds the targets of the decoded code: direct branches and calls, RIP-relative operands
/// into code and (ET_EXEC) immediates that are code addresses. Decodes between consecutive
/// symbol starts when there are symbols (resynchronising at each), else each executable
/// segment in one sweep. Returns the RIP-relative operands outside the code.
fn decoded_targets(
    data: &[u8],
    info: &ElfInfo,
    syms: &Symbols,
    code: &CodeRanges,
    t: &mut BTreeSet<u64>,
) -> BTreeSet<u64> {
    let mut starts: Vec<u64> = syms
        .code
        .iter()
        .map(|s| s.0)
        .filter(|&a| code.contains(a))
        .collect();
    for &(lo, _) in &code.0 {
        starts.push(lo);
    }
    starts.sort();
    starts.dedup();
    let mut rip_rel = BTreeSet::new();
    for (i, &start) in starts.iter().enumerate() {
        let seg_end = code
            .0
            .iter()
            .find(|&&(lo, hi)| start >= lo && start < hi)
            .unwrap()
            .1;
        let stop = starts.get(i + 1).copied().unwrap_or(seg_end).min(seg_end);
        let Some(bytes) = bytes_at(info, data, start, stop - start) else {
            continue;
        };
        let mut d = Decoder::with_ip(64, &bytes, start, DecoderOptions::NONE);
        for ins in &mut d {
            if ins.is_invalid() {
                continue;
            }
            match ins.flow_control() {
                FlowControl::UnconditionalBranch
                | FlowControl::ConditionalBranch
                | FlowControl::Call => {
                    if matches!(
                        ins.op0_kind(),
                        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
                    ) {
                        t.insert(ins.near_branch_target());
                    }
                }
                _ => {}
            }
            if ins.is_ip_rel_memory_operand() {
                let a = ins.ip_rel_memory_address();
                if code.contains(a) {
                    t.insert(a);
                } else {
                    rip_rel.insert(a);
                }
            }
            // Immediates that look like code addresses (ET_EXEC: mov $func, %reg).
            for op in 0..ins.op_count() {
                if matches!(
                    ins.op_kind(op),
                    OpKind::Immediate32to64 | OpKind::Immediate32 | OpKind::Immediate64
                ) {
                    let v = ins.immediate(op);
                    if info.e_type == object::elf::ET_EXEC && code.contains(v) {
                        t.insert(v);
                    }
                }
            }
        }
    }
    rip_rel
}

/// Adds the 8-byte words that are code addresses, in every non-executable segment.
fn data_pointers(data: &[u8], info: &ElfInfo, code: &CodeRanges, t: &mut BTreeSet<u64>) {
    for s in info.loads().filter(|s| !s.exec()) {
        let off = s.offset as usize;
        let bytes = &data[off..off + s.filesz as usize];
        let skew = (8 - (s.vaddr % 8) as usize) % 8;
        for c in bytes.get(skew..).unwrap_or(&[]).chunks_exact(8) {
            let v = u64::from_le_bytes(c.try_into().unwrap());
            if code.contains(v) {
                t.insert(v);
            }
        }
    }
}

/// Adds the relocation addends (static-PIE) that point into code.
fn relocation_targets(data: &[u8], code: &CodeRanges, t: &mut BTreeSet<u64>) {
    let e = Elf64::parse(data).unwrap();
    let end = e.endian().unwrap();
    let Ok(sections) = e.sections(end, data) else {
        return;
    };
    for sh in sections.iter() {
        if sh.sh_type(end) != object::elf::SHT_RELA {
            continue;
        }
        if let Ok(Some((relas, _))) = sh.rela(end, data) {
            for r in relas {
                let a = r.r_addend(end) as u64;
                if code.contains(a) {
                    t.insert(a);
                }
            }
        }
    }
}

/// Adds relative jump tables: 32-bit entries from a RIP-relative address in read-only data,
/// each entry + table address landing in code.
fn jump_table_targets(
    data: &[u8],
    info: &ElfInfo,
    rip_rel: &BTreeSet<u64>,
    code: &CodeRanges,
    t: &mut BTreeSet<u64>,
) {
    for &table in rip_rel {
        let Some(s) = info
            .loads()
            .find(|s| !s.exec() && !s.write() && s.contains(table))
        else {
            continue;
        };
        let mut a = table;
        let mut found = Vec::new();
        while a + 4 <= s.vaddr + s.filesz && found.len() < 4096 {
            let b = bytes_at(info, data, a, 4).unwrap();
            let v = i32::from_le_bytes(b.try_into().unwrap()) as i64;
            let target = (table as i64 + v) as u64;
            if v == 0 || !code.contains(target) {
                break;
            }
            found.push(target);
            a += 4;
        }
        if found.len() >= 2 {
            t.extend(found);
        }
    }
}

/// FDE starts and landing pads, through the library's .eh_frame reader.
fn eh_targets(name: &str, data: &[u8]) -> BTreeSet<u64> {
    let elf = lupine_relink::elf::Elf::parse(name, data).unwrap();
    let eh = lupine_relink::analyze::eh_info(&elf);
    let mut t: BTreeSet<u64> = eh.fdes.iter().map(|f| f.0).collect();
    t.extend(eh.landing_pads.iter().copied());
    t
}

fn strictly_inside(targets: &BTreeSet<u64>, (a, b): (u64, u64)) -> Vec<u64> {
    if b <= a + 1 {
        return vec![];
    }
    targets.range(a + 1..b).copied().collect()
}

#[test]
fn no_branch_target_inside_a_patch_window() {
    let mut problems = Vec::new();
    for r in relinked() {
        let name = &r.program.name;
        assert!(
            r.ok(),
            "{name}: lupine-relink failed: {}",
            r.output.describe()
        );
        let data = fs::read(&r.program.path).unwrap();
        let info = elf_info(&r.program.path);
        let syms = symbols(&data);
        let mine = independent_targets(&data, &info, &syms);
        let eh = eh_targets(name, &data);
        let lib = lupine_relink::analyze_bytes(name, &data).unwrap();
        let lib_targets: BTreeSet<u64> = lib.targets.iter().copied().collect();
        let rep = r.report();
        let sites = sites(name, &rep);
        let mut windows = 0;
        let mut mid_instruction = 0;
        for s in sites.iter().filter(|s| s.rewritten) {
            // A moved cancellation point: no branch may land inside its whole range.
            let w = s.window.or(s.moved.as_ref().map(|m| m.range)).unwrap();
            windows += 1;
            // The window's instruction boundaries, from the original bytes.
            let bytes = bytes_at(&info, &data, w.0, w.1 - w.0).unwrap();
            let boundaries: BTreeSet<u64> = Decoder::with_ip(64, &bytes, w.0, DecoderOptions::NONE)
                .into_iter()
                .map(|i| i.ip())
                .collect();
            for (what, set) in [
                ("found here", &mine),
                (".eh_frame", &eh),
                ("the library's", &lib_targets),
            ] {
                for t in strictly_inside(set, w) {
                    if !boundaries.contains(&t) {
                        // Not the start of an instruction of the window: a jump there would
                        // execute a different instruction stream than the decoded one, so
                        // this is a heuristic false positive (data that looks like a
                        // pointer), not a branch target of the code. Counted, not failed.
                        mid_instruction += 1;
                        continue;
                    }
                    problems.push(format!(
                        "{name}: branch target {t:#x} ({what}) inside the window [{:#x}, {:#x}) of site {:#x} ({})",
                        w.0,
                        w.1,
                        s.address,
                        s.symbol.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
        // The report's windows are the library's analysis of the same input.
        let lib_windows: BTreeMap<u64, Option<(u64, u64)>> =
            lib.sites.iter().map(|s| (s.address, s.window)).collect();
        let rep_windows: BTreeMap<u64, Option<(u64, u64)>> =
            sites.iter().map(|s| (s.address, s.window)).collect();
        let lib_sites: BTreeSet<u64> = lib_windows.keys().copied().collect();
        let rep_sites: BTreeSet<u64> = rep_windows.keys().copied().collect();
        if lib_sites != rep_sites {
            problems.push(format!(
                "{name}: the library and the report list different sites"
            ));
        }
        for (a, w) in &rep_windows {
            if let (Some(rw), Some(Some(lw))) = (w, lib_windows.get(a)) {
                if rw != lw {
                    problems.push(format!(
                        "{name}: site {a:#x}: report window {rw:?}, library {lw:?}"
                    ));
                }
            }
        }
        eprintln!(
            "{name}: {windows} windows; {} targets found here, {} from .eh_frame, {} from the \
             library; {mid_instruction} heuristic targets in the middle of a window's instruction",
            mine.len(),
            eh.len(),
            lib_targets.len()
        );
        assert!(windows > 0, "{name}: no window");
        assert!(
            mine.len() > 10,
            "{name}: target collection found almost nothing"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_original_code_changes_only_inside_windows() {
    let mut problems = Vec::new();
    for r in relinked() {
        let name = &r.program.name;
        assert!(r.ok(), "{name}: lupine-relink failed");
        let a = fs::read(&r.program.path).unwrap();
        let b = fs::read(&r.path).unwrap();
        let ia = elf_info(&r.program.path);
        let ib = elf_info(&r.path);
        let rep = r.report();
        let sites = sites(name, &rep);
        let windows: Vec<(u64, u64, &Site)> = sites
            .iter()
            .filter_map(|s| s.window.map(|(x, y)| (x, y, s)))
            .collect();
        let before = (&ia, &a[..]);
        let after = (&ib, &b[..]);
        let mut patched: Vec<(u64, u64, &Site)> = windows.clone();
        for s in &sites {
            patched.extend(moved_patches(before, s).into_iter().map(|(x, y)| (x, y, s)));
        }
        changes_outside_windows(name, before, after, &patched, &mut problems);
        let added = added_code(&r.program.path, &r.path);
        check_windows(name, before, after, &rep, &windows, &added, &mut problems);
        for s in sites.iter().filter(|s| s.moved.is_some()) {
            check_moved(name, after, s, &added, &mut problems);
        }
        check_kept_sites(name, after, &sites, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Bytes of the original segments that changed outside every window and outside the ELF
/// header and the original program header table (which may change).
fn changes_outside_windows(
    name: &str,
    (ia, a): (&ElfInfo, &[u8]),
    (ib, b): (&ElfInfo, &[u8]),
    windows: &[(u64, u64, &Site)],
    problems: &mut Vec<String>,
) {
    let headers = (0u64, 64u64);
    let phdrs = (ia.phoff, ia.phoff + 56 * ia.phnum);
    let mut changed_outside = 0;
    for s in ia.loads() {
        let Some(nb) = bytes_at(ib, b, s.vaddr, s.filesz) else {
            problems.push(format!(
                "{name}: original segment at {:#x} no longer loaded",
                s.vaddr
            ));
            continue;
        };
        let na = &a[s.offset as usize..(s.offset + s.filesz) as usize];
        for (i, (x, y)) in na.iter().zip(nb.iter()).enumerate() {
            if x == y {
                continue;
            }
            let v = s.vaddr + i as u64;
            let off = s.offset + i as u64;
            let in_hdr = (off >= headers.0 && off < headers.1) || (off >= phdrs.0 && off < phdrs.1);
            if !in_hdr && !windows.iter().any(|w| v >= w.0 && v < w.1) {
                changed_outside += 1;
                if changed_outside <= 5 {
                    problems.push(format!(
                        "{name}: byte at {v:#x} changed outside every window"
                    ));
                }
            }
        }
    }
}

/// Each window: the report's bytes are the original ones, and it is now `jmp rel32` to the
/// report's trampoline in the added code, then int3.
fn check_windows(
    name: &str,
    (ia, a): (&ElfInfo, &[u8]),
    (ib, b): (&ElfInfo, &[u8]),
    rep: &lupine_relink::Report,
    windows: &[(u64, u64, &Site)],
    added: &[(u64, u64)],
    problems: &mut Vec<String>,
) {
    for (x, y, s) in windows {
        let orig = bytes_at(ia, a, *x, y - x).unwrap();
        let new = bytes_at(ib, b, *x, y - x).unwrap();
        let hex: String = orig.iter().map(|c| format!("{c:02x}")).collect();
        let reported = rep
            .sites
            .iter()
            .find(|rs| rs.address == format!("{:#x}", s.address))
            .and_then(|rs| rs.window_bytes.clone())
            .unwrap_or_default()
            .replace(' ', "");
        if reported != hex {
            problems.push(format!(
                "{name}: window {x:#x}: report says bytes {reported}, file has {hex}"
            ));
        }
        if new[0] != 0xe9 || new[5..].iter().any(|&c| c != 0xcc) {
            problems.push(format!(
                "{name}: window {x:#x} is not jmp rel32 + int3: {new:02x?}"
            ));
            continue;
        }
        let rel = i32::from_le_bytes(new[1..5].try_into().unwrap()) as i64;
        let dest = (*x as i64 + 5 + rel) as u64;
        if Some(dest) != s.trampoline {
            problems.push(format!(
                "{name}: window {x:#x} jumps to {dest:#x}, the report's trampoline is {:?}",
                s.trampoline
            ));
        }
        if !added.iter().any(|&(lo, hi)| dest >= lo && dest < hi) {
            problems.push(format!(
                "{name}: window {x:#x} jumps to {dest:#x}, outside the added code"
            ));
        }
    }
}

/// The bytes a moved cancellation point changes in the original code: its entry window, and
/// each retargeted operand up to the end of its instruction (decoded here).
fn moved_patches((ia, a): (&ElfInfo, &[u8]), s: &Site) -> Vec<(u64, u64)> {
    let Some(m) = &s.moved else {
        return vec![];
    };
    let mut out = vec![m.entry_window];
    for &(insn, field, _) in &m.retargeted {
        let bytes = bytes_at(ia, a, insn, 15).unwrap_or_default();
        let i = Decoder::with_ip(64, &bytes, insn, DecoderOptions::NONE).decode();
        out.push((field, i.next_ip()));
    }
    out
}

/// A moved cancellation point: its entry window is `jmp rel32` to its copy in the added code,
/// then int3, and each retargeted instruction now names the copy's start or end.
fn check_moved(
    name: &str,
    (ib, b): (&ElfInfo, &[u8]),
    s: &Site,
    added: &[(u64, u64)],
    problems: &mut Vec<String>,
) {
    let m = s.moved.as_ref().unwrap();
    let (x, y) = m.entry_window;
    let new = bytes_at(ib, b, x, y - x).unwrap();
    let rel = i32::from_le_bytes(new[1..5].try_into().unwrap()) as i64;
    let dest = (x as i64 + 5 + rel) as u64;
    let in_added = added
        .iter()
        .any(|&(lo, hi)| m.copy.0 >= lo && m.copy.1 <= hi);
    if new[0] != 0xe9 || new[5..].iter().any(|&c| c != 0xcc) || dest != m.copy.0 || !in_added {
        problems.push(format!(
            "{name}: moved site {:#x}: entry {new:02x?} does not jump to its copy {:?} in the added code",
            s.address, m.copy
        ));
    }
    for &(insn, _, end) in &m.retargeted {
        let want = if end { m.copy.1 } else { m.copy.0 };
        let bytes = bytes_at(ib, b, insn, 15).unwrap_or_default();
        let i = Decoder::with_ip(64, &bytes, insn, DecoderOptions::NONE).decode();
        let names = (i.is_ip_rel_memory_operand() && i.ip_rel_memory_address() == want)
            || (0..i.op_count()).any(|n| {
                matches!(
                    i.op_kind(n),
                    OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64
                ) && i.immediate(n) == want
            });
        if !names {
            problems.push(format!(
                "{name}: moved site {:#x}: the instruction at {insn:#x} does not name {want:#x}",
                s.address
            ));
        }
    }
}

/// A kept site is still a syscall, with a reason.
fn check_kept_sites(
    name: &str,
    (ib, b): (&ElfInfo, &[u8]),
    sites: &[Site],
    problems: &mut Vec<String>,
) {
    for s in sites.iter().filter(|s| !s.rewritten) {
        let now = bytes_at(ib, b, s.address, 2).unwrap();
        if now != [0x0f, 0x05] {
            problems.push(format!(
                "{name}: kept site {:#x} is no longer a syscall",
                s.address
            ));
        }
        if s.reason.as_deref().map_or(true, |x| x.trim().is_empty()) {
            problems.push(format!(
                "{name}: kept site {:#x} without a reason",
                s.address
            ));
        }
    }
}

#[test]
fn layout_of_the_output() {
    let mut problems = Vec::new();
    for r in relinked() {
        let name = &r.program.name;
        assert!(r.ok(), "{name}: lupine-relink failed");
        let ia = elf_info(&r.program.path);
        let ib = elf_info(&r.path);
        let mut p = Problems {
            name,
            list: &mut problems,
        };
        check_permissions(&mut p, &ia, &ib);
        check_phdr_table(&mut p, &ib);
        check_loads(&mut p, &ia, &ib);
        check_added_code(&mut p, r, &ia, &ib);
        // Symbols kept, at the same values.
        let sa = symbols(&fs::read(&r.program.path).unwrap());
        let sb = symbols(&fs::read(&r.path).unwrap());
        let missing: Vec<&String> = sa
            .all
            .iter()
            .filter(|(n, v)| sb.all.get(*n) != Some(v))
            .map(|(n, _)| n)
            .take(5)
            .collect();
        p.check(
            missing.is_empty(),
            format!("symbols lost or moved: {missing:?}"),
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// No segment writable and executable; PT_GNU_STACK kept, not made executable.
fn check_permissions(p: &mut Problems<'_>, ia: &ElfInfo, ib: &ElfInfo) {
    for s in ib.loads() {
        p.check(
            !(s.exec() && s.write()),
            format!("PT_LOAD at {:#x} is writable and executable", s.vaddr),
        );
    }
    let stack_in = ia
        .segments
        .iter()
        .find(|s| s.p_type == object::elf::PT_GNU_STACK);
    let stack_out = ib
        .segments
        .iter()
        .find(|s| s.p_type == object::elf::PT_GNU_STACK);
    if let Some(si) = stack_in {
        p.check(stack_out.is_some(), "PT_GNU_STACK dropped".into());
        if let Some(so) = stack_out {
            p.check(
                !so.exec() || si.exec(),
                "PT_GNU_STACK became executable".into(),
            );
        }
    }
}

/// The program header table is loaded, and PT_PHDR (if any) says where.
fn check_phdr_table(p: &mut Problems<'_>, ib: &ElfInfo) {
    let table = (ib.phoff, ib.phoff + 56 * ib.phnum);
    let holder = ib
        .loads()
        .find(|s| table.0 >= s.offset && table.1 <= s.offset + s.filesz);
    p.check(
        holder.is_some(),
        format!("program header table {table:x?} is in no PT_LOAD"),
    );
    if let (Some(h), Some(ph)) = (
        holder,
        ib.segments
            .iter()
            .find(|s| s.p_type == object::elf::PT_PHDR),
    ) {
        p.check(
            ph.vaddr == h.vaddr + (table.0 - h.offset) && ph.offset == table.0,
            "PT_PHDR does not match the table's place".into(),
        );
    }
}

/// PT_LOADs sorted, disjoint and aligned; one new writable one (the slot).
fn check_loads(p: &mut Problems<'_>, ia: &ElfInfo, ib: &ElfInfo) {
    let loads: Vec<&Segment> = ib.loads().collect();
    for w in loads.windows(2) {
        p.check(
            w[0].vaddr < w[1].vaddr,
            format!(
                "PT_LOADs not sorted: {:#x} then {:#x}",
                w[0].vaddr, w[1].vaddr
            ),
        );
        p.check(
            w[0].end() <= w[1].vaddr,
            format!("PT_LOADs overlap at {:#x}", w[1].vaddr),
        );
    }
    for s in &loads {
        p.check(
            s.align <= 1 || (s.vaddr % s.align) == (s.offset % s.align),
            format!("PT_LOAD at {:#x}: offset and address disagree", s.vaddr),
        );
    }
    // One new writable segment for the slot, not executable.
    let old_rw: Vec<u64> = ia.loads().filter(|s| s.write()).map(|s| s.vaddr).collect();
    let new_rw: Vec<&&Segment> = loads
        .iter()
        .filter(|s| s.write() && !old_rw.contains(&s.vaddr))
        .collect();
    p.check(
        new_rw.len() == 1,
        format!("{} new writable segments", new_rw.len()),
    );
}

/// The added code: reachable with rel32 from all original code, holding the entry (the
/// report's stub); the ELF type unchanged.
fn check_added_code(p: &mut Problems<'_>, r: &Relinked, ia: &ElfInfo, ib: &ElfInfo) {
    let rep = r.report();
    let added = added_code(&r.program.path, &r.path);
    p.check(!added.is_empty(), "no added executable segment".into());
    let orig = code_ranges(&r.program.path);
    let lo = orig.iter().map(|r| r.0).min().unwrap();
    let hi = orig.iter().map(|r| r.1).max().unwrap();
    for &(a, b) in &added {
        let span = b.max(hi) - a.min(lo);
        p.check(
            span < (1 << 31),
            format!("added code [{a:#x}, {b:#x}) out of rel32 reach"),
        );
    }
    p.check(
        added.iter().any(|&(a, b)| ib.entry >= a && ib.entry < b),
        format!("entry {:#x} is not in the added code", ib.entry),
    );
    p.check(
        rep.entry
            .stub
            .as_deref()
            .and_then(lupine_relink::report::parse_hex)
            == Some(ib.entry)
            && Some(ia.entry) == lupine_relink::report::parse_hex(&rep.entry.original),
        format!(
            "entry {:#x} / {:#x} vs report {:?}",
            ia.entry, ib.entry, rep.entry
        ),
    );
    p.check(ia.e_type == ib.e_type, "ELF type changed".into());
}
