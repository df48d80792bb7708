//! C library cancellation points, found so that their system call can be moved with them.
//!
//! musl's `__syscall_cp_asm` (`__cp_begin`..`__cp_end`) and glibc's `__syscall_cancel_arch`
//! (2.41 and later, `__syscall_cancel_arch_start`..`_end`) make the system call of every
//! cancellation point, and their thread-cancellation handler acts only when the interrupted PC
//! is in that range. Such a site is not given a trampoline: the whole range is copied into the
//! added code with the KML call inside it (`kml_shim::cancel_point`), the function's first
//! instructions jump to the copy, and the handler's references to the two bounds are changed to
//! the copy's. That is only done when everything involved is known for certain:
//! - the range is exactly the library's code: a cancel-flag test (`mov (%rdi),%eax`, then
//!   `test %eax,%eax` (musl) or `testb $imm,(%rdi)` (glibc), then `jne`), the nine register and
//!   stack moves, `syscall`, then `ret`; labels, when the program has symbols, must agree;
//! - no branch lands inside it but at its start;
//! - every reference to the bounds as values is a `lea` through RIP or an immediate (which can
//!   be changed in place), at least one to each bound (the handler's test), and no data word or
//!   relocation holds either bound.
//!
//! Anything else keeps the site a real `syscall`, with the reason in the report.

use crate::analyze::Analysis;
use crate::elf::{self, Elf};
use iced_x86::{Code, ConstantOffsets, Decoder, DecoderOptions, Instruction, OpKind, Register};

/// The moves of both libraries between the cancel-flag test and the `syscall`: arguments into
/// the syscall registers, the 5th and 6th from the stack, the flag's address into the stack
/// slot of the 5th.
const MOVES: [u8; 33] = [
    0x49, 0x89, 0xfb, // mov %rdi,%r11
    0x48, 0x89, 0xf0, // mov %rsi,%rax
    0x48, 0x89, 0xd7, // mov %rdx,%rdi
    0x48, 0x89, 0xce, // mov %rcx,%rsi
    0x4c, 0x89, 0xc2, // mov %r8,%rdx
    0x4d, 0x89, 0xca, // mov %r9,%r10
    0x4c, 0x8b, 0x44, 0x24, 0x08, // mov 8(%rsp),%r8
    0x4c, 0x8b, 0x4c, 0x24, 0x10, // mov 16(%rsp),%r9
    0x4c, 0x89, 0x5c, 0x24, 0x08, // mov %r11,8(%rsp)
];
/// Instructions before the `syscall`: the three of the flag test and the nine moves.
const BODY_LEN: usize = 12;
/// `ret`, the instruction at the range's end.
const RET: u8 = 0xc3;

/// Labels of the two libraries: `(begin, end, function)`.
const LABELS: [(&str, &str, &str); 2] = [
    ("__cp_begin", "__cp_end", "__syscall_cp_asm"),
    (
        "__syscall_cancel_arch_start",
        "__syscall_cancel_arch_end",
        "__syscall_cancel_arch",
    ),
];

/// A bound of the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Begin,
    End,
}

/// How an instruction holds a bound's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// A 32-bit displacement from the next instruction (`lea bound(%rip),%reg`).
    RipRel { next_ip: u64 },
    /// A 32-bit immediate, sign-extended to 64 bits or not.
    Imm32 { sign_extended: bool },
    /// A 64-bit immediate (`movabs`).
    Imm64,
}

/// One reference to a bound, to be changed to the copy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundRef {
    /// The instruction.
    pub insn: u64,
    /// The address of the displacement or immediate bytes.
    pub field: u64,
    pub operand: Operand,
    pub edge: Edge,
}

impl BoundRef {
    /// The bytes that make the reference name `value` instead, or `None` when it cannot.
    pub fn encode(&self, value: u64) -> Option<Vec<u8>> {
        match self.operand {
            Operand::RipRel { next_ip } => {
                let d = i32::try_from(value.wrapping_sub(next_ip) as i64).ok()?;
                Some(d.to_le_bytes().to_vec())
            }
            Operand::Imm32 {
                sign_extended: true,
            } => Some(i32::try_from(value as i64).ok()?.to_le_bytes().to_vec()),
            Operand::Imm32 {
                sign_extended: false,
            } => Some(u32::try_from(value).ok()?.to_le_bytes().to_vec()),
            Operand::Imm64 => Some(value.to_le_bytes().to_vec()),
        }
    }
}

/// A cancellation point that can be moved.
#[derive(Debug, Clone)]
pub struct CancelPoint {
    /// Which library's (`musl __syscall_cp_asm` or `glibc __syscall_cancel_arch`).
    pub library: &'static str,
    /// The range `[begin, end)`: from the cancel-flag test to just after the `syscall`.
    pub begin: u64,
    pub end: u64,
    /// The instructions before the `syscall`, as decoded.
    pub body: Vec<Instruction>,
    /// The first instructions, replaced by a jump to the copy.
    pub entry_window: (u64, u64),
    /// The references to the bounds.
    pub refs: Vec<BoundRef>,
}

/// Whether the `syscall` at `site` may be a cancellation point's, and why: inside one of the
/// labelled ranges or functions, or right after the moves.
pub fn looks_like_one(elf: &Elf<'_>, site: u64) -> Option<String> {
    for (b, e, f) in LABELS {
        if let (Some(bv), Some(ev)) = (symbol(elf, b), symbol(elf, e)) {
            if bv <= site && site < ev {
                return Some(format!("{b}..{e}"));
            }
        }
        if symbol(elf, f).is_some_and(|v| v <= site && site < v.saturating_add(64)) {
            return Some(f.to_string());
        }
    }
    let moves = site
        .checked_sub(MOVES.len() as u64)
        .and_then(|a| elf.bytes_at_vaddr(a, MOVES.len() as u64));
    (moves == Some(&MOVES[..])).then(|| "byte pattern of a cancellation point".to_string())
}

/// The cancellation point of the `syscall` `list[k]` (all of the program's instructions, in
/// address order), or why it cannot be moved.
pub fn identify(
    elf: &Elf<'_>,
    an: &Analysis<'_>,
    list: &[Instruction],
    k: usize,
) -> Result<CancelPoint, String> {
    let (library, body) = shape(elf, list, k)?;
    let begin = body[0].ip();
    let end = list[k].next_ip();
    check_labels(elf, begin, end)?;
    if let Some(t) = an.targets.iter().find(|&&t| t > begin && t < end) {
        return Err(format!("a branch lands inside it, at {t:#x}"));
    }
    check_data(elf, begin, end)?;
    let refs = bound_refs(elf, list, begin, end)?;
    Ok(CancelPoint {
        library,
        begin,
        end,
        entry_window: (begin, entry_end(&body)),
        body,
        refs,
    })
}

/// The library and the body when the instructions before `list[k]` are a cancel-flag test and
/// the moves, and a `ret` follows.
fn shape(
    elf: &Elf<'_>,
    list: &[Instruction],
    k: usize,
) -> Result<(&'static str, Vec<Instruction>), String> {
    let not = |what: &str| Err(format!("not the known cancellation point shape: {what}"));
    if k < BODY_LEN {
        return not("too few instructions before it");
    }
    let body = &list[k - BODY_LEN..k];
    let contiguous = body
        .windows(2)
        .chain(std::iter::once(&[body[BODY_LEN - 1], list[k]][..]))
        .all(|w| !w[0].is_invalid() && w[0].next_ip() == w[1].ip());
    if !contiguous {
        return not("undecodable or cut instructions");
    }
    let bytes = |a: u64, n: u64| elf.bytes_at_vaddr(a, n).unwrap_or_default();
    if bytes(body[3].ip(), MOVES.len() as u64) != MOVES {
        return not("the argument moves differ");
    }
    if bytes(list[k].next_ip(), 1) != [RET] {
        return not("no ret after the syscall");
    }
    let (load, test, jne) = (&body[0], &body[1], &body[2]);
    let loads_flag = load.code() == Code::Mov_r32_rm32
        && load.op0_register() == Register::EAX
        && load.memory_base() == Register::RDI
        && load.memory_index() == Register::None
        && load.memory_displacement64() == 0;
    if !loads_flag || jne.condition_code() != iced_x86::ConditionCode::ne {
        return not("the cancel-flag test differs");
    }
    let library = match test.code() {
        Code::Test_rm32_r32
            if test.op0_register() == Register::EAX && test.op1_register() == Register::EAX =>
        {
            "musl __syscall_cp_asm"
        }
        Code::Test_rm8_imm8
            if test.memory_base() == Register::RDI && test.memory_displacement64() == 0 =>
        {
            "glibc __syscall_cancel_arch"
        }
        _ => return not("the cancel-flag test differs"),
    };
    Ok((library, body.to_vec()))
}

/// The labels, when the program has them, must be the bounds found.
fn check_labels(elf: &Elf<'_>, begin: u64, end: u64) -> Result<(), String> {
    for (b, e, _) in LABELS {
        for (name, want) in [(b, begin), (e, end)] {
            if let Some(v) = symbol(elf, name).filter(|&v| v != want) {
                return Err(format!("{name} is at {v:#x}, not at {want:#x}"));
            }
        }
    }
    Ok(())
}

fn symbol(elf: &Elf<'_>, name: &str) -> Option<u64> {
    elf.symbols
        .iter()
        .find(|s| s.shndx != 0 && s.name == name)
        .map(|s| s.value)
}

/// The end of the smallest run of whole instructions from the start that holds a `jmp rel32`.
fn entry_end(body: &[Instruction]) -> u64 {
    let start = body[0].ip();
    body.iter()
        .map(|i| i.next_ip())
        .find(|&e| e - start >= kml_shim::JMP_REL32_LEN as u64)
        .unwrap_or(start)
}

/// No relocation and no 8-byte data word may hold a bound: such a pointer could not be told
/// from other uses, nor changed with certainty.
fn check_data(elf: &Elf<'_>, begin: u64, end: u64) -> Result<(), String> {
    if let Some(r) = elf
        .relocations
        .iter()
        .find(|r| r.addend as u64 == begin || r.addend as u64 == end)
    {
        return Err(format!(
            "the relocation at {:#x} holds one of its bounds",
            r.offset
        ));
    }
    for p in elf.loads().filter(|p| p.p_flags & elf::PF_X == 0) {
        let Some(b) = elf::slice(elf.data, p.p_offset, p.p_filesz) else {
            continue;
        };
        let skip = ((8 - (p.p_vaddr % 8)) % 8) as usize;
        let words = b.get(skip..).unwrap_or_default().chunks_exact(8);
        for (n, w) in words.enumerate() {
            let v = u64::from_le_bytes(w.try_into().unwrap_or_default());
            if v == begin || v == end {
                let at = p.p_vaddr + skip as u64 + 8 * n as u64;
                return Err(format!("the data word at {at:#x} holds one of its bounds"));
            }
        }
    }
    Ok(())
}

/// Every instruction that uses a bound as a value, as a reference that can be changed; an
/// error for any other use of `end`, or when either bound has no reference (the handler's
/// test was not found). Direct branches to `begin` are calls of the function: its entry jumps
/// to the copy.
fn bound_refs(
    elf: &Elf<'_>,
    list: &[Instruction],
    begin: u64,
    end: u64,
) -> Result<Vec<BoundRef>, String> {
    let mut refs = Vec::new();
    for i in list.iter().filter(|i| !i.is_invalid()) {
        if i.is_jcc_short_or_near() || i.is_jmp_short_or_near() || i.is_call_near() {
            if i.near_branch_target() == end {
                return Err(format!("the branch at {:#x} goes to its end", i.ip()));
            }
            continue;
        }
        let named = |v: u64| {
            (v == begin)
                .then_some(Edge::Begin)
                .or((v == end).then_some(Edge::End))
        };
        let has_mem = (0..i.op_count()).any(|n| matches!(i.try_op_kind(n), Ok(OpKind::Memory)));
        let absolute = i.is_ip_rel_memory_operand()
            || (i.memory_base() == Register::None && i.memory_index() == Register::None);
        let addr = (has_mem && absolute).then(|| i.memory_displacement64());
        if let Some(edge) = addr.and_then(named) {
            refs.push(mem_ref(elf, i, edge)?);
        }
        for n in 0..i.op_count() {
            if let Some(edge) = immediate(i, n).and_then(named) {
                refs.push(imm_ref(elf, i, n, edge)?);
            }
        }
    }
    for (edge, name) in [(Edge::Begin, "start"), (Edge::End, "end")] {
        if !refs.iter().any(|r| r.edge == edge) {
            return Err(format!(
                "no instruction refers to its {name} (the cancellation handler's test was not found)"
            ));
        }
    }
    Ok(refs)
}

/// The value of operand `n` when it is an immediate.
fn immediate(i: &Instruction, n: u32) -> Option<u64> {
    match i.try_op_kind(n).ok()? {
        OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64 => {
            i.try_immediate(n).ok()
        }
        _ => None,
    }
}

/// The constant offsets of `i`, from its bytes.
fn offsets(elf: &Elf<'_>, i: &Instruction) -> Option<ConstantOffsets> {
    let bytes = elf.bytes_at_vaddr(i.ip(), i.len() as u64)?;
    let mut d = Decoder::with_ip(64, bytes, i.ip(), DecoderOptions::NONE);
    let again = d.decode();
    (again.code() == i.code()).then(|| d.get_constant_offsets(&again))
}

/// A `lea bound(%rip)`: the only memory use of a bound that is its address.
fn mem_ref(elf: &Elf<'_>, i: &Instruction, edge: Edge) -> Result<BoundRef, String> {
    let refuse = || {
        Err(format!(
            "the instruction at {:#x} uses it as memory",
            i.ip()
        ))
    };
    if i.code() != Code::Lea_r64_m || !i.is_ip_rel_memory_operand() {
        return refuse();
    }
    let Some(o) = offsets(elf, i).filter(|o| o.displacement_size() == 4) else {
        return refuse();
    };
    Ok(BoundRef {
        insn: i.ip(),
        field: i.ip() + o.displacement_offset() as u64,
        operand: Operand::RipRel {
            next_ip: i.next_ip(),
        },
        edge,
    })
}

/// An immediate holding a bound's address.
fn imm_ref(elf: &Elf<'_>, i: &Instruction, n: u32, edge: Edge) -> Result<BoundRef, String> {
    let o = offsets(elf, i)
        .filter(|o| o.immediate_size() == 4 || o.immediate_size() == 8)
        .ok_or_else(|| format!("the immediate at {:#x} cannot be changed", i.ip()))?;
    let operand = match (o.immediate_size(), i.op_kind(n)) {
        (8, _) => Operand::Imm64,
        (_, OpKind::Immediate32to64) => Operand::Imm32 {
            sign_extended: true,
        },
        _ => Operand::Imm32 {
            sign_extended: false,
        },
    };
    Ok(BoundRef {
        insn: i.ip(),
        field: i.ip() + o.immediate_offset() as u64,
        operand,
        edge,
    })
}

#[cfg(test)]
mod tests;
