//! Finding `syscall` sites, the branch targets around them, and the window of instructions each
//! rewritten site moves into its trampoline.
//!
//! Decoding is a linear sweep with iced-x86 over each executable section (or executable
//! `PT_LOAD` when there are no sections), restarted at every known function start and end
//! (`STT_FUNC` symbols and `.eh_frame` FDEs), so that bytes that are not code desynchronise at
//! most one function.

use crate::cancel::{self, CancelPoint};
use crate::ehframe;
use crate::elf::{self, Elf};
use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpAccess,
    OpKind, Register,
};
use std::collections::BTreeSet;

/// Syscall numbers whose sites always stay a real `syscall`: rt_sigreturn, clone, vfork, exit,
/// clone3 (the call path would push a return address where these cannot return to it).
pub const KEPT_NUMBERS: [u64; 5] = [15, 56, 58, 60, 435];

/// Functions whose system calls are PC-sensitive (by symbol, see also [`PATTERNS`]).
pub const PC_SENSITIVE_SYMBOLS: [&str; 11] = [
    "__syscall_cp_asm",
    "__syscall_cancel_arch",
    "__restore_rt",
    "__restore",
    "vfork",
    "__vfork",
    "clone",
    "__clone",
    "__clone3",
    "__unmapself",
    "__clone_internal_fallback",
];

/// Label pairs delimiting a PC-sensitive range.
pub const PC_SENSITIVE_RANGES: [(&str, &str); 2] = [
    ("__cp_begin", "__cp_end"),
    ("__syscall_cancel_arch_start", "__syscall_cancel_arch_end"),
];

/// Byte patterns of PC-sensitive sites in stripped programs: `(bytes before the syscall, bytes
/// after it, what)`.
pub const PATTERNS: [(&[u8], &[u8], &str); 5] = [
    (
        &[0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0],
        &[],
        "__restore_rt (mov $15,%rax; syscall)",
    ),
    (
        &[0x5f, 0xb8, 0x3a, 0, 0, 0],
        &[],
        "vfork (pop %rdi; mov $58,%eax; syscall)",
    ),
    (
        &[0x5a, 0xb8, 0x3a, 0, 0, 0],
        &[],
        "vfork (pop %rdx; mov $58,%eax; syscall)",
    ),
    (
        &[0x4c, 0x8b, 0x4c, 0x24, 0x10, 0x4c, 0x89, 0x5c, 0x24, 0x08],
        &[],
        "a cancellation-point syscall (__syscall_cp_asm / __syscall_cancel_arch tail)",
    ),
    (
        &[0xb8, 0x0b, 0, 0, 0],
        &[0x48, 0x31, 0xff, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05],
        "__unmapself (munmap of its own stack, then exit)",
    ),
];

/// How far before a site (bytes) an undecodable instruction makes it suspicious.
pub const SUSPICIOUS_BEFORE: u64 = 1024;
/// How far after a site (bytes) an undecodable instruction makes it suspicious.
pub const SUSPICIOUS_AFTER: u64 = 64;

/// A range of code to decode.
#[derive(Debug, Clone)]
pub struct Region<'a> {
    pub name: String,
    pub start: u64,
    pub bytes: &'a [u8],
}

impl Region<'_> {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.bytes.len() as u64)
    }
}

/// Why a site stays a real `syscall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptReason {
    /// In a function or byte pattern whose PC matters (named).
    PcSensitive(String),
    /// The constant syscall number is one that must stay real.
    Number(u64),
    /// No window of at least 5 movable bytes.
    Window(String),
    /// Undecodable bytes nearby: possibly data, not code.
    Undecodable(u64),
    /// A relocation applies inside the window.
    Relocation(u64),
    /// The trampoline could not be encoded.
    Encode(String),
}

impl KeptReason {
    pub fn kind(&self) -> &'static str {
        match self {
            KeptReason::PcSensitive(_) => "pc-sensitive",
            KeptReason::Number(_) => "syscall-number",
            KeptReason::Window(_) => "no-window",
            KeptReason::Undecodable(_) => "undecodable-nearby",
            KeptReason::Relocation(_) => "relocation-in-window",
            KeptReason::Encode(_) => "encode",
        }
    }
}

impl std::fmt::Display for KeptReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeptReason::PcSensitive(w) => write!(f, "PC-sensitive: {w}"),
            KeptReason::Number(n) => write!(
                f,
                "syscall number {n} ({}) must stay a real syscall",
                crate::syscalls::name(*n).unwrap_or("?")
            ),
            KeptReason::Window(w) => write!(f, "no 5-byte window: {w}"),
            KeptReason::Undecodable(a) => {
                write!(
                    f,
                    "undecodable bytes at {a:#x} nearby: possibly data, not code"
                )
            }
            KeptReason::Relocation(a) => {
                write!(f, "a relocation applies at {a:#x} inside the window")
            }
            KeptReason::Encode(w) => write!(f, "trampoline not encodable: {w}"),
        }
    }
}

/// One `syscall` instruction and what the relinker decided for it.
#[derive(Debug, Clone)]
pub struct SiteInfo {
    /// Address of the `syscall` instruction.
    pub address: u64,
    /// `symbol+offset`, when symbols exist.
    pub symbol: Option<String>,
    /// The syscall number when it is a constant at the site.
    pub number: Option<u64>,
    /// `[start, end)` of the bytes replaced by `jmp rel32` + `int3` (rewritten sites only).
    pub window: Option<(u64, u64)>,
    /// Displaced instructions before and after the syscall (rewritten sites only).
    pub before: Vec<Instruction>,
    pub after: Vec<Instruction>,
    /// `None` when rewritten.
    pub kept: Option<KeptReason>,
    /// A C library's cancellation point, moved whole instead of given a trampoline (see
    /// [`cancel`]); `window` is then `None`.
    pub moved: Option<CancelPoint>,
}

/// Everything the relinker learned about the code.
#[derive(Debug)]
pub struct Analysis<'a> {
    pub regions: Vec<Region<'a>>,
    /// Every known branch target, sorted and unique.
    pub targets: Vec<u64>,
    pub sites: Vec<SiteInfo>,
    pub instructions: usize,
    pub undecodable: usize,
    pub fdes: usize,
    pub landing_pads: usize,
    pub eh_frame_skipped: usize,
    /// The parsed `.eh_frame`.
    pub eh: ehframe::EhInfo,
}

impl Analysis<'_> {
    pub fn is_target(&self, a: u64) -> bool {
        self.targets.binary_search(&a).is_ok()
    }
    /// A known target after the first byte of the instruction `i`: a window holding `i` would
    /// overwrite it (a branch into the middle of a decoded instruction runs another instruction
    /// stream, or the decoding is wrong there; either way the window is not proven safe).
    pub fn target_inside(&self, i: &Instruction) -> Option<u64> {
        let k = self.targets.partition_point(|&t| t <= i.ip());
        self.targets.get(k).copied().filter(|&t| t < i.next_ip())
    }
    pub fn in_code(&self, a: u64) -> bool {
        self.regions.iter().any(|r| a >= r.start && a < r.end())
    }
}

struct Chunk {
    /// Addresses of undecodable instructions.
    invalid: Vec<u64>,
}

/// Code regions: executable sections, or executable `PT_LOAD`s without the ELF and program
/// headers when there are no usable sections.
pub fn code_regions<'a>(elf: &Elf<'a>) -> Vec<Region<'a>> {
    let mut out = Vec::new();
    for s in &elf.sections {
        let exec = s.sh_flags & elf::SHF_EXECINSTR != 0 && s.sh_flags & elf::SHF_ALLOC != 0;
        if !exec || s.sh_type == elf::SHT_NOBITS || s.sh_size == 0 {
            continue;
        }
        // Only what a PF_X segment maps from the file, byte for byte.
        let Some(bytes) = elf.bytes_at_vaddr(s.sh_addr, s.sh_size) else {
            continue;
        };
        if !elf.is_executable_vaddr(s.sh_addr) {
            continue;
        }
        if elf.vaddr_to_offset(s.sh_addr) != Some(s.sh_offset) {
            continue;
        }
        out.push(Region {
            name: s.name.clone(),
            start: s.sh_addr,
            bytes,
        });
    }
    if out.is_empty() {
        let hdr_end = (elf.e_phoff)
            .saturating_add((elf.phdrs.len() * elf::PHDR_SIZE) as u64)
            .max(elf::EHDR_SIZE as u64);
        for (i, p) in elf.loads().enumerate() {
            if p.p_flags & elf::PF_X == 0 || p.p_filesz == 0 {
                continue;
            }
            let mut off = p.p_offset;
            let mut vaddr = p.p_vaddr;
            let end = p.p_offset.saturating_add(p.p_filesz);
            if off < hdr_end && p.p_offset <= elf.e_phoff {
                let skip = hdr_end.min(end) - off;
                off += skip;
                vaddr += skip;
            }
            if let Some(bytes) = elf::slice(elf.data, off, end - off) {
                if !bytes.is_empty() {
                    out.push(Region {
                        name: format!("PT_LOAD[{i}]"),
                        start: vaddr,
                        bytes,
                    });
                }
            }
        }
    }
    out.sort_by_key(|r| r.start);
    // Overlapping executable sections (a damaged section table) would decode the same bytes
    // twice and give one syscall two windows: each byte belongs to the first region that has it.
    let mut end = 0u64;
    out.retain_mut(|r| {
        if r.start < end {
            let skip = end - r.start;
            if skip >= r.bytes.len() as u64 {
                return false;
            }
            r.bytes = &r.bytes[skip as usize..];
            r.start = end;
        }
        end = end.max(r.end());
        true
    });
    out
}

/// The `.eh_frame` facts of the program.
pub fn eh_info(elf: &Elf<'_>) -> ehframe::EhInfo {
    let read = |v: u64| elf.bytes_from_vaddr(v);
    if let Some(s) = elf.section(".eh_frame") {
        if let Some(b) = s.data(elf.data) {
            return ehframe::parse(b, s.sh_addr, &read);
        }
    }
    if elf.sections.is_empty() {
        if let Some(p) = elf.phdrs.iter().find(|p| p.p_type == elf::PT_GNU_EH_FRAME) {
            if let Some(hdr) = elf::slice(elf.data, p.p_offset, p.p_filesz) {
                if let Some(v) = ehframe::eh_frame_from_hdr(hdr, p.p_vaddr) {
                    if let Some(b) = elf.bytes_from_vaddr(v) {
                        return ehframe::parse(b, v, &read);
                    }
                }
            }
        }
    }
    ehframe::EhInfo::default()
}

fn is_code_symbol(s: &elf::Symbol) -> bool {
    s.shndx != 0
        && s.shndx < 0xff00
        && matches!(s.st_type, elf::STT_FUNC | elf::STT_NOTYPE)
        && !s.name.is_empty()
        && !s.name.starts_with(".L")
        && !s.name.starts_with('$')
}

/// Names code addresses as `symbol+offset`.
pub struct SymbolIndex {
    /// (value, size, is_func, name), sorted by value.
    syms: Vec<(u64, u64, bool, String)>,
}

impl SymbolIndex {
    pub fn new(elf: &Elf<'_>, regions: &[Region<'_>]) -> Self {
        let in_code = |a: u64| regions.iter().any(|r| a >= r.start && a < r.end());
        let mut syms: Vec<_> = elf
            .symbols
            .iter()
            .filter(|s| is_code_symbol(s) && in_code(s.value))
            .map(|s| (s.value, s.size, s.st_type == elf::STT_FUNC, s.name.clone()))
            .collect();
        syms.sort();
        syms.dedup();
        SymbolIndex { syms }
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// The function containing `a` (a sized `STT_FUNC` one first), else the nearest symbol
    /// before it.
    pub fn name(&self, a: u64) -> Option<String> {
        let n = self.syms.partition_point(|s| s.0 <= a);
        let before = &self.syms[..n];
        let best = before
            .iter()
            .rev()
            .take(256)
            .find(|s| s.2 && s.1 > 0 && a < s.0.saturating_add(s.1))
            .or_else(|| before.last())?;
        let off = a - best.0;
        Some(if off == 0 {
            best.3.clone()
        } else {
            format!("{}+{off:#x}", best.3)
        })
    }
}

/// PC-sensitive ranges by symbol: `[start, end)` and the name.
fn pc_sensitive_ranges(elf: &Elf<'_>) -> Vec<(u64, u64, String)> {
    let mut out = Vec::new();
    let code_syms: Vec<&elf::Symbol> = elf.symbols.iter().filter(|s| is_code_symbol(s)).collect();
    let mut starts: Vec<u64> = code_syms.iter().map(|s| s.value).collect();
    starts.sort_unstable();
    starts.dedup();
    let next_after = |v: u64| -> u64 {
        let i = starts.partition_point(|&s| s <= v);
        starts
            .get(i)
            .copied()
            .unwrap_or(v.saturating_add(64))
            .min(v.saturating_add(4096))
    };
    for s in &code_syms {
        let bare = s.name.strip_prefix("__GI_").unwrap_or(&s.name);
        if PC_SENSITIVE_SYMBOLS.contains(&bare) {
            let end = if s.size > 0 {
                s.value.saturating_add(s.size)
            } else {
                next_after(s.value)
            };
            out.push((s.value, end, s.name.clone()));
        }
    }
    for (b, e) in PC_SENSITIVE_RANGES {
        let find = |n: &str| code_syms.iter().find(|s| s.name == n).map(|s| s.value);
        if let (Some(bv), Some(ev)) = (find(b), find(e)) {
            if bv <= ev {
                out.push((bv, ev, format!("{b}..{e}")));
            }
        }
    }
    out
}

/// Linear sweep of each region. `strong` points (symbol starts and ends) always restart the
/// decoder; `weak` ones (FDE starts and ends) restart it unless the instruction that spans them
/// is padding (a `nop` or `int3`): glibc's signal-return FDE starts one byte before
/// `__restore_rt`, inside the alignment `nop`. An instruction cut by a restart is left invalid
/// (so no window or block crosses it) but is not counted as undecodable.
fn decode_regions(
    regions: &[Region<'_>],
    strong: &BTreeSet<u64>,
    weak: &BTreeSet<u64>,
) -> (Vec<Instruction>, Vec<Chunk>) {
    let mut all = Vec::new();
    let mut chunks = Vec::new();
    for r in regions {
        let Ok(mut d) = Decoder::try_with_ip(64, r.bytes, r.start, DecoderOptions::NONE) else {
            continue;
        };
        // Points inside the region, in order, consumed as the sweep advances.
        let strong: Vec<u64> = strong.range(r.start + 1..r.end()).copied().collect();
        let weak: Vec<u64> = weak.range(r.start + 1..r.end()).copied().collect();
        let (mut si, mut wi) = (0usize, 0usize);
        let mut invalid = Vec::new();
        while d.can_decode() {
            let i = d.decode();
            let ip = i.ip();
            let next = ip.saturating_add(i.len() as u64);
            while strong.get(si).is_some_and(|&p| p <= ip) {
                si += 1;
            }
            while weak.get(wi).is_some_and(|&p| p <= ip) {
                wi += 1;
            }
            let cut_strong = strong.get(si).copied().filter(|&p| p < next);
            let cut_weak = weak.get(wi).copied().filter(|&p| p < next);
            let padding = !i.is_invalid()
                && matches!(
                    i.mnemonic(),
                    iced_x86::Mnemonic::Nop | iced_x86::Mnemonic::Int3
                );
            let cut = match (cut_strong, cut_weak) {
                (Some(s), Some(w)) => Some(s.min(w)),
                (Some(s), None) => Some(s),
                (None, Some(w)) if !padding => Some(w),
                _ => None,
            };
            if let Some(c) = cut {
                let mut stub = Instruction::default();
                stub.set_ip(ip);
                stub.set_len((c - ip) as usize);
                all.push(stub);
                let pos = (c - r.start) as usize;
                if d.set_position(pos).is_err() {
                    break;
                }
                d.set_ip(c);
                continue;
            }
            if i.is_invalid() && d.last_error() != iced_x86::DecoderError::NoMoreBytes {
                invalid.push(ip);
            }
            all.push(i);
        }
        chunks.push(Chunk { invalid });
    }
    (all, chunks)
}

/// Resynchronisation points for the sweep: strong ones (`STT_FUNC` symbol starts and ends) and
/// weak ones (FDE starts and ends).
fn sweep_points(elf: &Elf<'_>, eh: &ehframe::EhInfo) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let mut strong = BTreeSet::new();
    for s in &elf.symbols {
        if s.st_type == elf::STT_FUNC && s.shndx != 0 {
            strong.insert(s.value);
            if s.size > 0 {
                strong.insert(s.value.saturating_add(s.size));
            }
        }
    }
    let mut weak = BTreeSet::new();
    for &(a, b) in &eh.fdes {
        weak.insert(a);
        weak.insert(b);
    }
    (strong, weak)
}

/// Every instruction of the program's code, in address order, decoded exactly as [`analyze`]
/// sweeps it (undecodable bytes and instructions cut by a restart are invalid instructions).
/// For tools that read the code around the sites, such as `lupine-config`.
pub fn decode_all(elf: &Elf<'_>) -> Vec<Instruction> {
    let regions = code_regions(elf);
    let eh = eh_info(elf);
    let (strong, weak) = sweep_points(elf, &eh);
    decode_regions(&regions, &strong, &weak).0
}

/// Runs the whole analysis: regions, targets, sites, windows. Trampolines are not encoded here
/// (see `relink`), so an `Encode` reason can still be added later.
pub fn analyze<'a>(elf: &Elf<'a>) -> Analysis<'a> {
    let regions = code_regions(elf);
    let eh = eh_info(elf);
    let (strong, weak) = sweep_points(elf, &eh);
    let (ins, chunks) = decode_regions(&regions, &strong, &weak);
    let targets = branch_targets(elf, &regions, &eh, &ins);
    let mut analysis = Analysis {
        regions: regions.clone(),
        targets,
        sites: Vec::new(),
        instructions: ins.len(),
        undecodable: chunks.iter().map(|c| c.invalid.len()).sum(),
        fdes: eh.fdes.len(),
        landing_pads: eh.landing_pads.len(),
        eh_frame_skipped: eh.skipped,
        eh,
    };
    find_sites(elf, &mut analysis, &ins, &chunks);
    analysis
}

/// Whether an address is in one of `regions` (bounds first: most values are not addresses).
fn in_code_fn<'r>(regions: &'r [Region<'_>]) -> impl Fn(u64) -> bool + 'r {
    let code_lo = regions.iter().map(|r| r.start).min().unwrap_or(0);
    let code_hi = regions.iter().map(|r| r.end()).max().unwrap_or(0);
    move |a: u64| a >= code_lo && a < code_hi && regions.iter().any(|r| a >= r.start && a < r.end())
}

/// Every address in the code that something may branch to, sorted and unique. Known targets
/// (direct branches, the entry point, symbols, relocations, unwind data, section starts) count
/// wherever they fall: one inside an instruction (a branch over a `lock` prefix) keeps every
/// window off that instruction. Guessed ones (immediates, displacements, values in data, jump
/// table entries) count only where a decoded instruction other than `int3` starts: a value that
/// points into the middle of an instruction is not a code pointer, nothing branches to padding
/// on purpose, and so a rewritten window (`jmp`, then `int3`s) holds no target in the output
/// either.
fn branch_targets(
    elf: &Elf<'_>,
    regions: &[Region<'_>],
    eh: &ehframe::EhInfo,
    ins: &[Instruction],
) -> Vec<u64> {
    let in_code = in_code_fn(regions);
    let (mut known, mut guessed) = (Vec::new(), Vec::new());
    let lea_bases = instruction_targets(ins, &mut known, &mut guessed);
    metadata_targets(elf, eh, &mut known);
    // Section (region) starts: a window never spans two sections.
    known.extend(regions.iter().map(|r| r.start));
    data_code_pointers(elf, &in_code, &mut guessed);
    jump_table_targets(elf, lea_bases, &in_code, &mut guessed);
    guessed.retain(|&t| starts_code(ins, t));
    let mut targets = known;
    targets.append(&mut guessed);
    targets.retain(|&t| in_code(t));
    targets.sort_unstable();
    targets.dedup();
    targets
}

/// Whether a decoded instruction other than `int3` padding starts at `a` (`ins` is in address
/// order).
fn starts_code(ins: &[Instruction], a: u64) -> bool {
    ins.binary_search_by_key(&a, Instruction::ip)
        .is_ok_and(|k| !ins[k].is_invalid() && ins[k].mnemonic() != iced_x86::Mnemonic::Int3)
}

/// Adds what the code itself points at: direct branch and call targets to `known`; RIP-relative
/// operands, immediates and absolute displacements to `guessed`. Returns the `lea`'d
/// RIP-relative addresses (possible jump table bases).
fn instruction_targets(
    ins: &[Instruction],
    known: &mut Vec<u64>,
    guessed: &mut Vec<u64>,
) -> Vec<u64> {
    let mut lea_bases: Vec<u64> = Vec::new();
    for i in ins.iter().filter(|i| !i.is_invalid()) {
        if matches!(
            i.flow_control(),
            FlowControl::UnconditionalBranch
                | FlowControl::ConditionalBranch
                | FlowControl::Call
                | FlowControl::XbeginXabortXend
        ) {
            for op in 0..i.op_count() {
                if matches!(
                    i.op_kind(op),
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
                ) {
                    known.push(i.near_branch_target());
                }
            }
        }
        if i.is_ip_rel_memory_operand() {
            let t = i.ip_rel_memory_address();
            guessed.push(t);
            if i.mnemonic() == iced_x86::Mnemonic::Lea {
                lea_bases.push(t);
            }
        }
        for op in 0..i.op_count() {
            match i.op_kind(op) {
                OpKind::Immediate32 | OpKind::Immediate64 | OpKind::Immediate32to64 => {
                    if let Ok(v) = i.try_immediate(op) {
                        guessed.push(v);
                    }
                }
                OpKind::Memory if i.memory_base() == Register::None => {
                    guessed.push(i.memory_displacement64());
                }
                _ => {}
            }
        }
    }
    lea_bases
}

/// Adds the entry point, symbol starts and ends, static-PIE relocation addends, FDE starts and
/// landing pads.
fn metadata_targets(elf: &Elf<'_>, eh: &ehframe::EhInfo, targets: &mut Vec<u64>) {
    // Where the kernel (or, once relinked, the entry stub) starts the program.
    targets.push(elf.e_entry);
    for s in &elf.symbols {
        if s.shndx != 0 && s.st_type != elf::STT_SECTION && s.st_type != elf::STT_FILE {
            targets.push(s.value);
            targets.push(s.value.saturating_add(s.size));
        }
    }
    for r in &elf.relocations {
        if matches!(r.r_type, elf::R_X86_64_RELATIVE | elf::R_X86_64_IRELATIVE) {
            targets.push(r.addend as u64);
        }
    }
    // FDE starts only: an FDE may end in the middle of a function (glibc's clone ends its FDE
    // right before the syscall, so that the child's unwinding stops there).
    for &(a, _) in &eh.fdes {
        targets.push(a);
    }
    targets.extend_from_slice(&eh.landing_pads);
}

/// Adds the aligned 8-byte values that point into the code, from non-executable sections (or
/// non-executable `PT_LOAD`s when there are none).
fn data_code_pointers(elf: &Elf<'_>, in_code: &impl Fn(u64) -> bool, targets: &mut Vec<u64>) {
    let mut scan = |bytes: &[u8], vaddr: u64| {
        let skip = ((8 - (vaddr % 8)) % 8) as usize;
        if let Some(b) = bytes.get(skip..) {
            for c in b.chunks_exact(8) {
                let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                if in_code(v) {
                    targets.push(v);
                }
            }
        }
    };
    let mut scanned_sections = false;
    for s in &elf.sections {
        if s.sh_flags & elf::SHF_ALLOC != 0 && s.sh_flags & elf::SHF_EXECINSTR == 0 {
            if let Some(b) = s.data(elf.data) {
                scan(b, s.sh_addr);
                scanned_sections = true;
            }
        }
    }
    if !scanned_sections {
        for p in elf.loads() {
            if p.p_flags & elf::PF_X == 0 {
                if let Some(b) = elf::slice(elf.data, p.p_offset, p.p_filesz) {
                    scan(b, p.p_vaddr);
                }
            }
        }
    }
}

/// Adds the entries of position-independent jump tables: `lea base(%rip)` then 32-bit offsets
/// from base, as long as they point into the code.
fn jump_table_targets(
    elf: &Elf<'_>,
    mut lea_bases: Vec<u64>,
    in_code: &impl Fn(u64) -> bool,
    targets: &mut Vec<u64>,
) {
    lea_bases.sort_unstable();
    lea_bases.dedup();
    for base in lea_bases {
        let Some(b) = elf.bytes_from_vaddr(base) else {
            continue;
        };
        for c in b.chunks_exact(4).take(1 << 16) {
            let off = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let t = base.wrapping_add(off as i64 as u64);
            if !in_code(t) {
                break;
            }
            targets.push(t);
        }
    }
}

fn reads_rcx_r11(f: &mut InstructionInfoFactory, i: &Instruction) -> bool {
    f.info(i).used_registers().iter().any(|u| {
        matches!(u.register().full_register(), Register::RCX | Register::R11)
            && matches!(
                u.access(),
                OpAccess::Read | OpAccess::CondRead | OpAccess::ReadWrite | OpAccess::ReadCondWrite
            )
    })
}

/// Known constant values of the 16 general-purpose registers, by number (rax = 0 ... r15 = 15).
pub type Regs = [Option<u64>; 16];

fn gpr(r: Register) -> Option<usize> {
    let f = r.full_register();
    f.is_gpr64().then(|| f.number())
}

/// The register file after `i`, given the one before: constants through `mov reg, imm`,
/// `xor reg, reg`, `sub reg, reg`, partial `mov al/ax, imm` and register-to-register `mov`;
/// every other write makes the register unknown.
pub fn step_regs(f: &mut InstructionInfoFactory, i: &Instruction, regs: &mut Regs) {
    let reg = |n: u32| {
        if i.op_count() > n && i.op_kind(n) == OpKind::Register {
            i.op_register(n)
        } else {
            Register::None
        }
    };
    let (r0, r1) = (reg(0), reg(1));
    let get = |r: Register, regs: &Regs| gpr(r).and_then(|n| regs[n]);
    let low8 = |r: Register| {
        r.is_gpr8() && !matches!(r, Register::AH | Register::CH | Register::DH | Register::BH)
    };
    let value: Option<Option<u64>> = match i.code() {
        Code::Mov_r32_imm32 | Code::Mov_rm32_imm32 if r0.is_gpr32() => {
            Some(Some(u64::from(i.immediate32())))
        }
        Code::Mov_r64_imm64 if r0.is_gpr64() => Some(Some(i.immediate64())),
        Code::Mov_rm64_imm32 if r0.is_gpr64() => Some(Some(i.immediate32to64() as u64)),
        Code::Xor_r32_rm32
        | Code::Xor_rm32_r32
        | Code::Sub_r32_rm32
        | Code::Sub_rm32_r32
        | Code::Xor_r64_rm64
        | Code::Xor_rm64_r64
        | Code::Sub_r64_rm64
        | Code::Sub_rm64_r64
            if r0 != Register::None && r0 == r1 =>
        {
            Some(Some(0))
        }
        Code::Mov_r8_imm8 | Code::Mov_rm8_imm8 if low8(r0) => {
            Some(get(r0, regs).map(|v| (v & !0xff) | u64::from(i.immediate8())))
        }
        Code::Mov_r16_imm16 | Code::Mov_rm16_imm16 if r0.is_gpr16() => {
            Some(get(r0, regs).map(|v| (v & !0xffff) | u64::from(i.immediate16())))
        }
        Code::Mov_r32_rm32 | Code::Mov_rm32_r32 if r0.is_gpr32() && r1.is_gpr32() => {
            Some(get(r1, regs).map(|v| v & 0xffff_ffff))
        }
        Code::Mov_r64_rm64 | Code::Mov_rm64_r64 if r0.is_gpr64() && r1.is_gpr64() => {
            Some(get(r1, regs))
        }
        _ => None,
    };
    for u in f.info(i).used_registers() {
        if matches!(
            u.access(),
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        ) {
            if let Some(n) = gpr(u.register()) {
                regs[n] = None;
            }
        }
    }
    if let (Some(v), Some(n)) = (value, gpr(r0)) {
        regs[n] = v;
    }
}

/// The value of rax after `i`, given its value before (other registers unknown).
#[cfg(test)]
fn step_rax(f: &mut InstructionInfoFactory, i: &Instruction, rax: Option<u64>) -> Option<u64> {
    let mut regs: Regs = [None; 16];
    regs[0] = rax;
    step_regs(f, i, &mut regs);
    regs[0]
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (n, x) in b.iter().enumerate() {
        if n > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Decides every `syscall` site: kept with a reason, or rewritten with its window.
fn find_sites(elf: &Elf<'_>, an: &mut Analysis<'_>, ins: &[Instruction], chunks: &[Chunk]) {
    let facts = SiteFacts::new(elf, an, chunks);
    let mut f = InstructionInfoFactory::new();
    // Windows do not overlap: the end of the last one.
    let mut claimed_until = 0u64;
    let mut sites = Vec::new();
    for k in 0..ins.len() {
        if ins[k].code() == Code::Syscall {
            let info = facts.site(an, ins, k, claimed_until, &mut f);
            if let Some((_, end)) = info.window {
                claimed_until = end;
            }
            sites.push(info);
        }
    }
    an.sites = sites;
}

/// What deciding a site needs besides the instructions around it.
struct SiteFacts<'e, 'a> {
    elf: &'e Elf<'a>,
    syms: SymbolIndex,
    /// PC-sensitive ranges by symbol (see [`pc_sensitive_ranges`]).
    pc_ranges: Vec<(u64, u64, String)>,
    /// Addresses of undecodable instructions, sorted.
    invalid: Vec<u64>,
    /// Relocation offsets, sorted.
    relocs: Vec<u64>,
}

impl<'e, 'a> SiteFacts<'e, 'a> {
    fn new(elf: &'e Elf<'a>, an: &Analysis<'_>, chunks: &[Chunk]) -> Self {
        let mut invalid: Vec<u64> = chunks
            .iter()
            .flat_map(|c| c.invalid.iter().copied())
            .collect();
        invalid.sort_unstable();
        let mut relocs: Vec<u64> = elf.relocations.iter().map(|r| r.offset).collect();
        relocs.sort_unstable();
        SiteFacts {
            elf,
            syms: SymbolIndex::new(elf, &an.regions),
            pc_ranges: pc_sensitive_ranges(elf),
            invalid,
            relocs,
        }
    }

    /// The site of the `syscall` `list[k]`, whose window may not start before `claimed_until`.
    fn site(
        &self,
        an: &Analysis<'_>,
        list: &[Instruction],
        k: usize,
        claimed_until: u64,
        f: &mut InstructionInfoFactory,
    ) -> SiteInfo {
        let address = list[k].ip();
        let number = constant_number(an, list, k, f);
        let mut info = SiteInfo {
            address,
            symbol: self.syms.name(address),
            number,
            window: None,
            before: Vec::new(),
            after: Vec::new(),
            kept: None,
            moved: None,
        };
        if let Some(what) = cancel::looks_like_one(self.elf, address) {
            match cancel::identify(self.elf, an, list, k) {
                Ok(cp) => info.moved = Some(cp),
                Err(why) => {
                    info.kept = Some(KeptReason::PcSensitive(format!(
                        "{what}, a cancellation point that cannot be moved: {why}"
                    )))
                }
            }
            return info;
        }
        info.kept = self.kept_reason(address, number);
        if info.kept.is_some() {
            return info;
        }
        let w = match choose_window(an, list, k, claimed_until, f) {
            Ok(w) => w,
            Err(reason) => {
                info.kept = Some(reason);
                return info;
            }
        };
        let start = list[w.lo].ip();
        let end = list[w.hi].next_ip();
        let r = self.relocs.partition_point(|&o| o < start);
        if let Some(&o) = self.relocs.get(r).filter(|&&o| o < end) {
            info.kept = Some(KeptReason::Relocation(o));
            return info;
        }
        info.window = Some((start, end));
        info.before = list[w.lo..k].to_vec();
        info.after = list[k + 1..=w.hi].to_vec();
        info
    }

    /// Why the site at `site` (syscall number `number` when constant) must stay a real
    /// `syscall` whatever its window: PC-sensitive, a kept number, undecodable bytes nearby.
    fn kept_reason(&self, site: u64, number: Option<u64>) -> Option<KeptReason> {
        if let Some((_, _, name)) = self
            .pc_ranges
            .iter()
            .find(|(s, e, _)| site >= *s && site < *e)
        {
            return Some(KeptReason::PcSensitive(name.clone()));
        }
        if let Some(what) = self.pc_sensitive_pattern(site) {
            return Some(KeptReason::PcSensitive(format!("byte pattern of {what}")));
        }
        if let Some(n) = number.filter(|n| KEPT_NUMBERS.contains(n)) {
            return Some(KeptReason::Number(n));
        }
        let from = self
            .invalid
            .partition_point(|&a| a < site.saturating_sub(SUSPICIOUS_BEFORE));
        if let Some(&bad) = self
            .invalid
            .get(from)
            .filter(|&&a| a <= site.saturating_add(SUSPICIOUS_AFTER))
        {
            return Some(KeptReason::Undecodable(bad));
        }
        None
    }

    /// The first of [`PATTERNS`] around the syscall at `site`.
    fn pc_sensitive_pattern(&self, site: u64) -> Option<&'static str> {
        let bytes_at = |a: u64, n: u64| self.elf.bytes_at_vaddr(a, n);
        PATTERNS.iter().find_map(|&(pre, post, what)| {
            let p = pre.len() as u64;
            let ok_pre = site
                .checked_sub(p)
                .and_then(|s| bytes_at(s, p))
                .is_some_and(|b| b == pre);
            let ok_post =
                post.is_empty() || bytes_at(site + 2, post.len() as u64).is_some_and(|b| b == post);
            (ok_pre && ok_post).then_some(what)
        })
    }
}

/// The syscall number of the `syscall` `list[k]` when the instructions of its basic block
/// before it make rax a constant.
fn constant_number(
    an: &Analysis<'_>,
    list: &[Instruction],
    k: usize,
    f: &mut InstructionInfoFactory,
) -> Option<u64> {
    let mut j = k;
    while j > 0 {
        let prev = &list[j - 1];
        if an.is_target(list[j].ip())
            || prev.is_invalid()
            || prev.next_ip() != list[j].ip()
            || prev.flow_control() != FlowControl::Next
            || prev.code() == Code::Syscall
        {
            break;
        }
        j -= 1;
    }
    let mut regs: Regs = [None; 16];
    for i in &list[j..k] {
        step_regs(f, i, &mut regs);
    }
    regs[0]
}

/// A window: the instructions `lo..=hi` around a syscall, `len` bytes.
struct Window {
    lo: usize,
    hi: usize,
    len: u64,
}

/// The window of the `syscall` `list[k]`: preceding instructions of its block, then following
/// ones, until it has room for a `jmp rel32`; or why there is none.
fn choose_window(
    an: &Analysis<'_>,
    list: &[Instruction],
    k: usize,
    claimed_until: u64,
    f: &mut InstructionInfoFactory,
) -> Result<Window, KeptReason> {
    if let Some(t) = an.target_inside(&list[k]) {
        return Err(KeptReason::Window(format!(
            "branch target {t:#x} inside the syscall instruction"
        )));
    }
    let mut w = Window {
        lo: k,
        hi: k,
        len: 2,
    };
    let why_back = w.grow_back(an, list, claimed_until).unwrap_or_default();
    let why_fwd = w.grow_forward(an, list, f).unwrap_or_default();
    if w.len < kml_shim::JMP_REL32_LEN as u64 {
        let len = w.len;
        return Err(KeptReason::Window(format!(
            "only {len} movable bytes (before: {why_back}; after: {why_fwd})"
        )));
    }
    Ok(w)
}

impl Window {
    /// Takes in preceding instructions until the window is long enough; `Some(why)` when it
    /// stopped short.
    fn grow_back(
        &mut self,
        an: &Analysis<'_>,
        list: &[Instruction],
        claimed_until: u64,
    ) -> Option<String> {
        while self.len < kml_shim::JMP_REL32_LEN as u64 {
            if self.lo == 0 {
                return Some("start of the decoded range before it".into());
            }
            let prev = &list[self.lo - 1];
            if an.is_target(list[self.lo].ip()) {
                return Some(format!("branch target at {:#x}", list[self.lo].ip()));
            }
            if prev.is_invalid() || prev.next_ip() != list[self.lo].ip() {
                return Some(format!("undecodable bytes at {:#x}", prev.ip()));
            }
            if let Some(t) = an.target_inside(prev) {
                return Some(format!(
                    "branch target {t:#x} inside the instruction at {:#x}",
                    prev.ip()
                ));
            }
            if prev.ip() < claimed_until {
                return Some("the previous site's window".into());
            }
            if let Err(w) = kml_shim::check_relocatable(prev) {
                return Some(format!("{w} at {:#x}", prev.ip()));
            }
            self.lo -= 1;
            self.len += prev.len() as u64;
        }
        None
    }

    /// Takes in following instructions until the window is long enough; `Some(why)` when it
    /// stopped short.
    fn grow_forward(
        &mut self,
        an: &Analysis<'_>,
        list: &[Instruction],
        f: &mut InstructionInfoFactory,
    ) -> Option<String> {
        while self.len < kml_shim::JMP_REL32_LEN as u64 {
            let Some(next) = list.get(self.hi + 1) else {
                return Some("end of the decoded range after it".into());
            };
            if an.is_target(next.ip()) {
                return Some(format!("branch target at {:#x}", next.ip()));
            }
            if next.is_invalid() || list[self.hi].next_ip() != next.ip() {
                return Some(format!("undecodable bytes at {:#x}", next.ip()));
            }
            if let Some(t) = an.target_inside(next) {
                return Some(format!(
                    "branch target {t:#x} inside the instruction at {:#x}",
                    next.ip()
                ));
            }
            if let Err(w) = kml_shim::check_relocatable(next) {
                return Some(format!("{w} at {:#x}", next.ip()));
            }
            if reads_rcx_r11(f, next) {
                return Some(format!(
                    "reads rcx or r11 (set by syscall) at {:#x}",
                    next.ip()
                ));
            }
            self.hi += 1;
            self.len += next.len() as u64;
        }
        None
    }
}

/// The bytes of a window, as hex.
pub fn window_hex(elf: &Elf<'_>, start: u64, end: u64) -> String {
    elf.bytes_at_vaddr(start, end.saturating_sub(start))
        .map(hex)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
