//! A small, bounds-checked reader of `.eh_frame` (CIEs and FDEs, with the `z`, `P`, `L`, `R`,
//! `S`, `B`, `G` augmentations) and of the LSDA call-site tables it points to
//! (`.gcc_except_table`), for the two facts the relinker needs: where functions start and end
//! (FDE ranges) and where exceptions land (landing pads). Anything it cannot read is skipped
//! and counted, never trusted.

use std::collections::BTreeMap;

/// A CIE, as needed to write FDEs that use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CieInfo {
    /// Address of the CIE's length field.
    pub vaddr: u64,
    pub code_align: u64,
    pub data_align: i64,
    pub fde_enc: u8,
    pub lsda_enc: u8,
    pub has_z: bool,
    pub signal_frame: bool,
    pub initial_instructions: Vec<u8>,
}

/// An FDE with its CFI program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdeRecord {
    /// Address of the FDE's length field.
    pub vaddr: u64,
    pub start: u64,
    pub end: u64,
    pub has_lsda: bool,
    /// Index in [`EhInfo::cies`].
    pub cie: usize,
    pub instructions: Vec<u8>,
}

/// What `.eh_frame` says about code addresses.
#[derive(Debug, Default, Clone)]
pub struct EhInfo {
    /// Address of `.eh_frame`.
    pub vaddr: u64,
    pub cies: Vec<CieInfo>,
    /// Every FDE that could be read, in section order.
    pub records: Vec<FdeRecord>,
    /// `[start, end)` of every FDE.
    pub fdes: Vec<(u64, u64)>,
    /// Landing pads from the LSDAs.
    pub landing_pads: Vec<u64>,
    /// Records or LSDAs that could not be read.
    pub skipped: usize,
}

const DW_EH_PE_OMIT: u8 = 0xff;

/// A cursor over bytes that live at virtual address `base`.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Cursor<'a> {
    fn new(b: &'a [u8], base: u64) -> Self {
        Cursor { b, pos: 0, base }
    }
    fn vaddr(&self) -> u64 {
        self.base.wrapping_add(self.pos as u64)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn uleb(&mut self) -> Option<u64> {
        let mut result: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.u8()?;
            if shift < 64 {
                result |= u64::from(byte & 0x7f) << shift;
            }
            shift = shift.saturating_add(7);
            if byte & 0x80 == 0 {
                return Some(result);
            }
            if shift > 70 {
                return None;
            }
        }
    }
    fn sleb(&mut self) -> Option<i64> {
        let mut result: i64 = 0;
        let mut shift = 0u32;
        let mut byte;
        loop {
            byte = self.u8()?;
            if shift < 64 {
                result |= i64::from(byte & 0x7f) << shift;
            }
            shift = shift.saturating_add(7);
            if byte & 0x80 == 0 {
                break;
            }
            if shift > 70 {
                return None;
            }
        }
        if shift < 64 && byte & 0x40 != 0 {
            result |= -1i64 << shift;
        }
        Some(result)
    }
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let rest = self.b.get(self.pos..)?;
        let n = rest.iter().position(|&c| c == 0)?;
        let s = &rest[..n];
        self.pos = self.pos.checked_add(n + 1)?;
        Some(s)
    }

    /// Reads a `DW_EH_PE_*`-encoded pointer. `func` is the base for `funcrel`. Indirect
    /// pointers are returned as the address of the pointer (callers only use direct ones).
    fn encoded(&mut self, enc: u8, func: Option<u64>) -> Option<u64> {
        if enc == DW_EH_PE_OMIT {
            return None;
        }
        let field = self.vaddr();
        let raw: u64 = match enc & 0x0f {
            0x00 => self.u64()?,
            0x01 => self.uleb()?,
            0x02 => u64::from(self.u16()?),
            0x03 => u64::from(self.u32()?),
            0x04 => self.u64()?,
            0x09 => self.sleb()? as u64,
            0x0a => self.u16()? as i16 as i64 as u64,
            0x0b => self.u32()? as i32 as i64 as u64,
            0x0c => self.u64()?,
            _ => return None,
        };
        if raw == 0 {
            // As libgcc reads them: a zero value stays zero whatever its application.
            return Some(0);
        }
        let v = match enc & 0x70 {
            0x00 => raw,
            0x10 => field.wrapping_add(raw),
            0x40 => func?.wrapping_add(raw),
            // textrel, datarel, aligned: not used on x86-64 Linux; refuse rather than guess.
            _ => return None,
        };
        Some(v)
    }

    /// Skips an encoded value whose application does not matter (personality pointers).
    fn skip_encoded(&mut self, enc: u8) -> Option<()> {
        match enc & 0x0f {
            0x00 | 0x04 | 0x0c => {
                self.take(8)?;
            }
            0x01 => {
                self.uleb()?;
            }
            0x09 => {
                self.sleb()?;
            }
            0x02 | 0x0a => {
                self.take(2)?;
            }
            0x03 | 0x0b => {
                self.take(4)?;
            }
            _ => return None,
        }
        Some(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Cie {
    fde_enc: u8,
    lsda_enc: u8,
    has_z: bool,
    index: usize,
}

fn parse_cie(rec: &[u8], base: u64) -> Option<CieInfo> {
    // rec starts after the length field, at the CIE id.
    let mut c = Cursor::new(rec, base);
    let id = c.u32()?;
    if id != 0 {
        return None;
    }
    let version = c.u8()?;
    if !matches!(version, 1 | 3 | 4) {
        return None;
    }
    let aug = c.cstr()?;
    if aug.windows(2).any(|w| w == b"eh") {
        c.take(8)?;
    }
    if version == 4 {
        c.u8()?; // address size
        c.u8()?; // segment selector size
    }
    let code_align = c.uleb()?;
    let data_align = c.sleb()?;
    if version == 1 {
        c.u8()?;
    } else {
        c.uleb()?;
    }
    let mut cie = CieInfo {
        vaddr: base.wrapping_sub(4),
        code_align,
        data_align,
        fde_enc: 0,
        lsda_enc: DW_EH_PE_OMIT,
        has_z: false,
        signal_frame: false,
        initial_instructions: Vec::new(),
    };
    if aug.first() == Some(&b'z') {
        cie.has_z = true;
        let len = usize::try_from(c.uleb()?).ok()?;
        let start = c.pos;
        for &ch in &aug[1..] {
            match ch {
                b'L' => cie.lsda_enc = c.u8()?,
                b'R' => cie.fde_enc = c.u8()?,
                b'P' => {
                    let enc = c.u8()?;
                    c.skip_encoded(enc)?;
                }
                b'S' => cie.signal_frame = true,
                b'B' | b'G' => {}
                _ => break, // unknown: the length tells where the data ends
            }
        }
        c.pos = start.checked_add(len)?;
        if c.pos > rec.len() {
            return None;
        }
    } else if !aug.is_empty() && aug != b"eh" {
        return None;
    }
    cie.initial_instructions = rec.get(c.pos..)?.to_vec();
    Some(cie)
}

/// Parses `.eh_frame` bytes located at `vaddr`. `read` returns the file bytes from a virtual
/// address to the end of its segment (for LSDAs).
pub fn parse<'a>(eh: &[u8], vaddr: u64, read: &dyn Fn(u64) -> Option<&'a [u8]>) -> EhInfo {
    let mut info = EhInfo {
        vaddr,
        ..EhInfo::default()
    };
    let mut cies: BTreeMap<usize, Option<Cie>> = BTreeMap::new();
    let mut off = 0usize;
    // Bounded by the data: every record advances by at least 4 bytes.
    while off.checked_add(4).is_some_and(|e| e <= eh.len()) {
        let len = u32::from_le_bytes([eh[off], eh[off + 1], eh[off + 2], eh[off + 3]]);
        if len == 0 {
            break; // terminator
        }
        if len == 0xffff_ffff {
            info.skipped += 1; // 64-bit DWARF records: not produced for x86-64 Linux
            break;
        }
        let body = off + 4;
        let Some(end) = body.checked_add(len as usize).filter(|&e| e <= eh.len()) else {
            info.skipped += 1;
            break;
        };
        let rec = &eh[body..end];
        let rec_vaddr = vaddr.wrapping_add(body as u64);
        let id = match rec.get(0..4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => {
                info.skipped += 1;
                off = end;
                continue;
            }
        };
        if id != 0 {
            // FDE: the CIE pointer is the distance from this field back to the CIE's length.
            let cie_off = body.checked_sub(id as usize);
            let cie = cie_off.and_then(|co| {
                *cies.entry(co).or_insert_with(|| {
                    let l = eh.get(co..co.checked_add(4)?)?;
                    let l = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
                    let start = co.checked_add(4)?;
                    let r = eh.get(start..start.checked_add(l)?)?;
                    let full = parse_cie(r, vaddr.wrapping_add(start as u64))?;
                    let c = Cie {
                        fde_enc: full.fde_enc,
                        lsda_enc: full.lsda_enc,
                        has_z: full.has_z,
                        index: info.cies.len(),
                    };
                    info.cies.push(full);
                    Some(c)
                })
            });
            match cie.and_then(|cie| parse_fde(rec, rec_vaddr, cie).map(|f| (cie, f))) {
                Some((cie, (start, range, lsda, instructions))) => {
                    if range > 0 {
                        info.fdes.push((start, start.wrapping_add(range)));
                        info.records.push(FdeRecord {
                            vaddr: rec_vaddr.wrapping_sub(4),
                            start,
                            end: start.wrapping_add(range),
                            has_lsda: lsda.is_some_and(|l| l != 0),
                            cie: cie.index,
                            instructions,
                        });
                    }
                    if let Some(l) = lsda.filter(|&l| l != 0) {
                        match read(l).and_then(|b| parse_lsda(b, l, start, &mut info.landing_pads))
                        {
                            Some(()) => {}
                            None => info.skipped += 1,
                        }
                    }
                }
                None => info.skipped += 1,
            }
        }
        off = end;
    }
    info.fdes.sort_unstable();
    info.fdes.dedup();
    info.landing_pads.sort_unstable();
    info.landing_pads.dedup();
    info
}

fn parse_fde(rec: &[u8], vaddr: u64, cie: Cie) -> Option<(u64, u64, Option<u64>, Vec<u8>)> {
    let mut c = Cursor::new(rec, vaddr);
    c.u32()?;
    let start = c.encoded(cie.fde_enc, None)?;
    let range = c.encoded(cie.fde_enc & 0x0f, None)?;
    let mut lsda = None;
    if cie.has_z {
        let len = usize::try_from(c.uleb()?).ok()?;
        let aug_end = c.pos.checked_add(len)?;
        if aug_end > rec.len() {
            return None;
        }
        if cie.lsda_enc != DW_EH_PE_OMIT && len > 0 {
            if cie.lsda_enc & 0x80 != 0 {
                return None; // indirect LSDA pointer: not produced by GCC or LLVM here
            }
            lsda = c.encoded(cie.lsda_enc & 0x7f, Some(start));
            lsda?;
        }
        c.pos = aug_end;
    }
    Some((start, range, lsda, rec.get(c.pos..)?.to_vec()))
}

/// Parses one LSDA located at `vaddr` for the function starting at `func`, pushing landing pads.
fn parse_lsda(b: &[u8], vaddr: u64, func: u64, pads: &mut Vec<u64>) -> Option<()> {
    let mut c = Cursor::new(b, vaddr);
    let lp_enc = c.u8()?;
    let lp_start = if lp_enc == DW_EH_PE_OMIT {
        func
    } else {
        c.encoded(lp_enc, Some(func))?
    };
    let tt_enc = c.u8()?;
    if tt_enc != DW_EH_PE_OMIT {
        c.uleb()?;
    }
    let cs_enc = c.u8()?;
    let cs_len = usize::try_from(c.uleb()?).ok()?;
    let cs_end = c.pos.checked_add(cs_len)?;
    if cs_end > b.len() {
        return None;
    }
    // Call-site fields are offsets, whatever application bits the encoding carries.
    let fmt = cs_enc & 0x0f;
    let mut n = 0usize;
    while c.pos < cs_end {
        c.encoded(fmt, None)?; // start
        c.encoded(fmt, None)?; // length
        let lp = c.encoded(fmt, None)?;
        c.uleb()?; // action
        if lp != 0 {
            pads.push(lp_start.wrapping_add(lp));
        }
        n += 1;
        if n > 1_000_000 {
            return None;
        }
    }
    Some(())
}

/// Finds `.eh_frame` through `PT_GNU_EH_FRAME` (`.eh_frame_hdr`) when there are no sections:
/// returns the address of `.eh_frame`.
pub fn eh_frame_from_hdr(hdr: &[u8], hdr_vaddr: u64) -> Option<u64> {
    let mut c = Cursor::new(hdr, hdr_vaddr);
    if c.u8()? != 1 {
        return None;
    }
    let ptr_enc = c.u8()?;
    c.u8()?;
    c.u8()?;
    c.encoded(ptr_enc, None)
}

#[cfg(test)]
mod tests;
