//! Unwind information for trampolines, so that unwinders (backtraces from signal handlers,
//! forced unwinding for thread cancellation) pass through a trampoline as they passed through
//! the original site.
//!
//! Each trampoline gets an FDE that uses the CIE of the site's function and whose CFI program
//! gives, at each trampoline instruction, the row of the original FDE at the original address of
//! the instruction it replays: the displaced instructions map to their own addresses, the
//! system call to the `syscall`'s address, and the final jump to the end of the window. Rows at
//! increasing original addresses are produced by replaying the original FDE's instructions
//! without their location advances (CFI is a sequential state machine). Between the two
//! `lea rsp` of the KML path the CFA offset is 128 larger when the CFA is rsp-based.
//!
//! A new `.eh_frame_hdr` (the original binary-search table plus the new FDEs, sorted) goes in
//! the added code segment and `PT_GNU_EH_FRAME` points to it.

use crate::ehframe::{CieInfo, EhInfo, FdeRecord};

const DW_CFA_ADVANCE_LOC: u8 = 0x40;
const DW_CFA_OFFSET: u8 = 0x80;
const DW_CFA_RESTORE: u8 = 0xc0;
const RSP: u64 = 7;

/// One CFI instruction of the original program, with the location it takes effect at.
#[derive(Debug, Clone)]
struct Op {
    loc: u64,
    bytes: Vec<u8>,
}

struct R<'a> {
    b: &'a [u8],
    pos: usize,
}

impl R<'_> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let e = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..e)?;
        self.pos = e;
        Some(s)
    }
    fn uleb(&mut self) -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Some(v);
            }
            if shift > 70 {
                return None;
            }
        }
    }
    fn sleb(&mut self) -> Option<i64> {
        let mut v = 0i64;
        let mut shift = 0u32;
        let mut b;
        loop {
            b = self.u8()?;
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
            if shift > 70 {
                return None;
            }
        }
        if shift < 64 && b & 0x40 != 0 {
            v |= -1i64 << shift;
        }
        Some(v)
    }
}

/// The size of a pointer in `enc` (for `DW_CFA_set_loc`).
fn enc_size(enc: u8) -> Option<usize> {
    match enc & 0x0f {
        0x00 | 0x04 | 0x0c => Some(8),
        0x02 | 0x0a => Some(2),
        0x03 | 0x0b => Some(4),
        _ => None,
    }
}

/// Splits a CFI program into its non-advance instructions with their locations. `None` for
/// what this reader does not know (the caller then writes no FDE).
fn split(cie: &CieInfo, prog: &[u8], start: u64) -> Option<Vec<Op>> {
    let mut r = R { b: prog, pos: 0 };
    let mut loc = start;
    let mut out = Vec::new();
    let ca = cie.code_align;
    while r.pos < prog.len() {
        let at = r.pos;
        let op = r.u8()?;
        match op & 0xc0 {
            DW_CFA_ADVANCE_LOC => {
                loc = loc.checked_add(u64::from(op & 0x3f).checked_mul(ca)?)?;
                continue;
            }
            DW_CFA_OFFSET => {
                r.uleb()?;
            }
            DW_CFA_RESTORE => {}
            _ => match op {
                0x00 | 0x0a | 0x0b => {}
                0x01 => return None, // set_loc: not produced for x86-64; refuse
                0x02 => {
                    loc = loc.checked_add(u64::from(r.u8()?).checked_mul(ca)?)?;
                    continue;
                }
                0x03 => {
                    let b = r.take(2)?;
                    loc = loc.checked_add(
                        u64::from(u16::from_le_bytes([b[0], b[1]])).checked_mul(ca)?,
                    )?;
                    continue;
                }
                0x04 => {
                    let b = r.take(4)?;
                    loc = loc.checked_add(
                        u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).checked_mul(ca)?,
                    )?;
                    continue;
                }
                0x05 | 0x09 | 0x0c | 0x14 | 0x2f => {
                    r.uleb()?;
                    r.uleb()?;
                }
                0x06 | 0x07 | 0x08 | 0x0d | 0x0e | 0x2e => {
                    r.uleb()?;
                }
                0x0f => {
                    let n = usize::try_from(r.uleb()?).ok()?;
                    r.take(n)?;
                }
                0x10 | 0x16 => {
                    r.uleb()?;
                    let n = usize::try_from(r.uleb()?).ok()?;
                    r.take(n)?;
                }
                0x11 | 0x12 | 0x15 => {
                    r.uleb()?;
                    r.sleb()?;
                }
                0x13 => {
                    r.sleb()?;
                }
                _ => return None,
            },
        }
        if op == 0 {
            continue; // DW_CFA_nop
        }
        out.push(Op {
            loc,
            bytes: prog.get(at..r.pos)?.to_vec(),
        });
    }
    Some(out)
}

/// The CFA rule as far as this module needs it: register and offset, or an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cfa {
    Reg(u64, i64),
    Expr,
}

/// Applies one instruction to the CFA rule (other rules are not tracked).
fn step(cie: &CieInfo, cfa: &mut Cfa, stack: &mut Vec<Cfa>, bytes: &[u8]) -> Option<()> {
    let mut r = R { b: bytes, pos: 0 };
    let op = r.u8()?;
    match op {
        0x0a => stack.push(*cfa),
        0x0b => *cfa = stack.pop()?,
        0x0c => {
            let reg = r.uleb()?;
            let off = i64::try_from(r.uleb()?).ok()?;
            *cfa = Cfa::Reg(reg, off);
        }
        0x12 => {
            let reg = r.uleb()?;
            let off = r.sleb()?.checked_mul(cie.data_align)?;
            *cfa = Cfa::Reg(reg, off);
        }
        0x0d => {
            let reg = r.uleb()?;
            *cfa = match *cfa {
                Cfa::Reg(_, off) => Cfa::Reg(reg, off),
                Cfa::Expr => return None,
            };
        }
        0x0e => {
            let off = i64::try_from(r.uleb()?).ok()?;
            *cfa = match *cfa {
                Cfa::Reg(reg, _) => Cfa::Reg(reg, off),
                Cfa::Expr => return None,
            };
        }
        0x13 => {
            let off = r.sleb()?.checked_mul(cie.data_align)?;
            *cfa = match *cfa {
                Cfa::Reg(reg, _) => Cfa::Reg(reg, off),
                Cfa::Expr => return None,
            };
        }
        0x0f => *cfa = Cfa::Expr,
        _ => {}
    }
    Some(())
}

/// Appends `v` as ULEB128.
pub(crate) fn uleb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn advance(delta: u64, out: &mut Vec<u8>) -> Option<()> {
    if delta == 0 {
    } else if delta < 0x40 {
        out.push(DW_CFA_ADVANCE_LOC | delta as u8);
    } else if delta <= 0xff {
        out.extend_from_slice(&[0x02, delta as u8]);
    } else if delta <= 0xffff {
        out.push(0x03);
        out.extend_from_slice(&(delta as u16).to_le_bytes());
    } else {
        out.push(0x04);
        out.extend_from_slice(&u32::try_from(delta).ok()?.to_le_bytes());
    }
    Some(())
}

/// A point of a trampoline: from byte `offset` on, the row is the original row at `orig`,
/// with the CFA offset increased by `cfa_adjust` when the CFA is rsp-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapPoint {
    pub offset: u64,
    pub orig: u64,
    pub cfa_adjust: i64,
}

/// Writes the FDE of a trampoline at `tramp_addr` (`tramp_len` bytes) placed at `fde_vaddr`,
/// or `None` if the original unwind information cannot be carried over.
pub fn trampoline_fde(
    eh: &EhInfo,
    fde: &FdeRecord,
    fde_vaddr: u64,
    tramp_addr: u64,
    tramp_len: u64,
    map: &[MapPoint],
    pie: bool,
) -> Option<Vec<u8>> {
    let cie = eh.cies.get(fde.cie)?;
    if cie.code_align != 1 || cie.signal_frame {
        return None;
    }
    let prog = cfi_program(cie, fde, tramp_len, map)?;
    let mut rec = Vec::new();
    let cie_ptr_field = fde_vaddr.checked_add(4)?;
    rec.extend_from_slice(
        &u32::try_from(cie_ptr_field.checked_sub(cie.vaddr)?)
            .ok()?
            .to_le_bytes(),
    );
    let pc_field = fde_vaddr.checked_add(8)?;
    pc_range(cie, pc_field, tramp_addr, tramp_len, pie, &mut rec)?;
    if cie.has_z {
        no_lsda(cie, &mut rec)?;
    }
    rec.extend_from_slice(&prog);
    while (rec.len() + 4) % 8 != 0 {
        rec.push(0); // DW_CFA_nop
    }
    let mut out = Vec::with_capacity(rec.len() + 4);
    out.extend_from_slice(&u32::try_from(rec.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&rec);
    Some(out)
}

/// The trampoline's CFI program: at each point of `map`, the original FDE's instructions up to
/// the point's original address are replayed, then the CFA offset adjusted as the point says.
fn cfi_program(
    cie: &CieInfo,
    fde: &FdeRecord,
    tramp_len: u64,
    map: &[MapPoint],
) -> Option<Vec<u8>> {
    let init = split(cie, &cie.initial_instructions, fde.start)?;
    let ops = split(cie, &fde.instructions, fde.start)?;
    let mut cfa = Cfa::Expr;
    let mut stack = Vec::new();
    for o in &init {
        step(cie, &mut cfa, &mut stack, &o.bytes)?;
    }
    let mut prog = Vec::new();
    let mut next = 0usize; // next original op to replay
    let mut at = 0u64; // trampoline offset the program is at
    let mut adjusted = false;
    for p in map {
        if p.offset < at || p.offset > tramp_len {
            return None;
        }
        advance(p.offset - at, &mut prog)?;
        at = p.offset;
        if adjusted {
            // Back to the unadjusted offset before replaying anything.
            if let Cfa::Reg(_, off) = cfa {
                prog.push(0x0e);
                uleb(u64::try_from(off).ok()?, &mut prog);
            }
            adjusted = false;
        }
        while let Some(o) = ops.get(next).filter(|o| o.loc <= p.orig) {
            prog.extend_from_slice(&o.bytes);
            step(cie, &mut cfa, &mut stack, &o.bytes)?;
            next += 1;
        }
        if p.cfa_adjust != 0 {
            match cfa {
                Cfa::Reg(RSP, off) => {
                    prog.push(0x0e);
                    uleb(
                        u64::try_from(off.checked_add(p.cfa_adjust)?).ok()?,
                        &mut prog,
                    );
                    adjusted = true;
                }
                Cfa::Reg(_, _) => {}
                Cfa::Expr => return None,
            }
        }
    }
    Some(prog)
}

/// Appends the FDE's `pc_begin` (its field at `pc_field`) and `pc_range` in the CIE's encoding.
fn pc_range(
    cie: &CieInfo,
    pc_field: u64,
    tramp_addr: u64,
    tramp_len: u64,
    pie: bool,
    rec: &mut Vec<u8>,
) -> Option<()> {
    match cie.fde_enc {
        0x1b => {
            let v = i32::try_from(tramp_addr as i64 - pc_field as i64).ok()?;
            rec.extend_from_slice(&v.to_le_bytes());
            rec.extend_from_slice(&u32::try_from(tramp_len).ok()?.to_le_bytes());
        }
        0x1c => {
            rec.extend_from_slice(&(tramp_addr.wrapping_sub(pc_field)).to_le_bytes());
            rec.extend_from_slice(&tramp_len.to_le_bytes());
        }
        0x03 | 0x0b if !pie => {
            rec.extend_from_slice(&u32::try_from(tramp_addr).ok()?.to_le_bytes());
            rec.extend_from_slice(&u32::try_from(tramp_len).ok()?.to_le_bytes());
        }
        0x00 | 0x04 | 0x0c if !pie => {
            rec.extend_from_slice(&tramp_addr.to_le_bytes());
            rec.extend_from_slice(&tramp_len.to_le_bytes());
        }
        _ => return None,
    }
    Some(())
}

/// Appends the augmentation data of a `z` CIE's FDE: no LSDA.
fn no_lsda(cie: &CieInfo, rec: &mut Vec<u8>) -> Option<()> {
    if cie.lsda_enc == 0xff {
        rec.push(0);
    } else {
        // A zero pointer of the LSDA encoding's size.
        let n = match cie.lsda_enc & 0x0f {
            0x01 | 0x09 => 1,
            e => enc_size(e)?,
        };
        rec.push(n as u8);
        rec.resize(rec.len() + n, 0);
    }
    Some(())
}

/// The FDE that covers all of `[start, end)`.
pub fn covering(eh: &EhInfo, start: u64, end: u64) -> Option<&FdeRecord> {
    eh.records.iter().find(|f| f.start <= start && end <= f.end)
}

/// Reads the binary-search table of an `.eh_frame_hdr` at `hdr_vaddr`: `(initial_loc, fde)`.
pub fn read_hdr_table(hdr: &[u8], hdr_vaddr: u64) -> Option<Vec<(u64, u64)>> {
    if hdr.len() < 4 || hdr[0] != 1 {
        return None;
    }
    let (ptr_enc, count_enc, table_enc) = (hdr[1], hdr[2], hdr[3]);
    let mut pos = 4 + enc_size(ptr_enc)?;
    if count_enc != 0x03 || table_enc != 0x3b {
        return None;
    }
    let count = u32::from_le_bytes(hdr.get(pos..pos + 4)?.try_into().ok()?) as usize;
    pos += 4;
    let mut out = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let e = hdr.get(pos..pos + 8)?;
        let a = i32::from_le_bytes([e[0], e[1], e[2], e[3]]) as i64 as u64;
        let f = i32::from_le_bytes([e[4], e[5], e[6], e[7]]) as i64 as u64;
        out.push((hdr_vaddr.wrapping_add(a), hdr_vaddr.wrapping_add(f)));
        pos += 8;
    }
    Some(out)
}

/// Writes an `.eh_frame_hdr` for `.eh_frame` at `eh_frame` with `table` (sorted here), to be
/// placed at `hdr_vaddr`.
pub fn write_hdr(hdr_vaddr: u64, eh_frame: u64, table: &mut [(u64, u64)]) -> Option<Vec<u8>> {
    table.sort_unstable();
    let mut out = vec![1u8, 0x1b, 0x03, 0x3b];
    let rel = |to: u64, from: u64| i32::try_from(to as i64 - from as i64).ok();
    out.extend_from_slice(&rel(eh_frame, hdr_vaddr + 4)?.to_le_bytes());
    out.extend_from_slice(&u32::try_from(table.len()).ok()?.to_le_bytes());
    for &(loc, fde) in table.iter() {
        out.extend_from_slice(&rel(loc, hdr_vaddr)?.to_le_bytes());
        out.extend_from_slice(&rel(fde, hdr_vaddr)?.to_le_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests;
