use super::*;

use crate::cfi::uleb;

fn record(body: &[u8]) -> Vec<u8> {
    let mut r = (body.len() as u32).to_le_bytes().to_vec();
    r.extend_from_slice(body);
    r
}

/// `.eh_frame` at `base` with a "zPLR" CIE (personality absptr, LSDA pcrel|sdata4, FDE
/// pcrel|sdata4) and one FDE for `[func, func+0x40)` whose LSDA is at `lsda`.
fn zplr(base: u64, func: u64, lsda: u64) -> Vec<u8> {
    let mut cie = vec![0, 0, 0, 0, 1];
    cie.extend_from_slice(b"zPLR\0");
    cie.extend_from_slice(&[1, 0x78, 16]);
    let mut aug = vec![0x00];
    aug.extend_from_slice(&0x1234_5678u64.to_le_bytes()); // personality, absptr
    aug.extend_from_slice(&[0x1b, 0x1b]);
    uleb(aug.len() as u64, &mut cie);
    cie.extend_from_slice(&aug);
    cie.extend_from_slice(&[0x0c, 7, 8, 0x90, 1]);
    while (cie.len() + 4) % 8 != 0 {
        cie.push(0);
    }
    let mut eh = record(&cie);
    let fde_off = eh.len();
    let mut f = Vec::new();
    f.extend_from_slice(&((fde_off + 4) as u32).to_le_bytes());
    let pc_field = base + fde_off as u64 + 8;
    f.extend_from_slice(&((func as i64 - pc_field as i64) as i32).to_le_bytes());
    f.extend_from_slice(&0x40u32.to_le_bytes());
    f.push(4);
    let lsda_field = base + fde_off as u64 + 4 + f.len() as u64;
    f.extend_from_slice(&((lsda as i64 - lsda_field as i64) as i32).to_le_bytes());
    f.extend_from_slice(&[0x41, 0x0e, 16]); // advance 1; def_cfa_offset 16
    while (f.len() + 4) % 8 != 0 {
        f.push(0);
    }
    eh.extend_from_slice(&record(&f));
    eh.extend_from_slice(&[0, 0, 0, 0]);
    eh
}

/// An LSDA with two call sites, landing pads at +0x20 and none.
fn lsda() -> Vec<u8> {
    let mut l = vec![0xff, 0xff, 0x01];
    let mut cs = Vec::new();
    for (start, len, lp) in [(0x4u64, 5u64, 0x20u64), (0x10, 5, 0)] {
        uleb(start, &mut cs);
        uleb(len, &mut cs);
        uleb(lp, &mut cs);
        uleb(0, &mut cs);
    }
    uleb(cs.len() as u64, &mut l);
    l.extend_from_slice(&cs);
    l
}

#[test]
fn zplr_fde_and_landing_pads() {
    let base = 0x50_0000u64;
    let func = 0x40_1000u64;
    let lsda_at = 0x50_1000u64;
    let eh = zplr(base, func, lsda_at);
    let l = lsda();
    let read = |v: u64| if v == lsda_at { Some(&l[..]) } else { None };
    let info = parse(&eh, base, &read);
    assert_eq!(info.skipped, 0);
    assert_eq!(info.fdes, [(func, func + 0x40)]);
    assert_eq!(info.landing_pads, [func + 0x20]);
    assert_eq!(info.records.len(), 1);
    let r = &info.records[0];
    assert!(r.has_lsda);
    assert_eq!(r.instructions[..3], [0x41, 0x0e, 16]);
    let c = &info.cies[r.cie];
    assert_eq!(
        (c.code_align, c.data_align, c.fde_enc, c.lsda_enc),
        (1, -8, 0x1b, 0x1b)
    );
    assert_eq!(c.vaddr, base);
    assert_eq!(c.initial_instructions[..5], [0x0c, 7, 8, 0x90, 1]);
}

#[test]
fn unreadable_lsda_is_counted_not_trusted() {
    let eh = zplr(0x1000, 0x2000, 0x9000);
    let info = parse(&eh, 0x1000, &|_| None);
    assert_eq!(info.fdes.len(), 1);
    assert_eq!(info.skipped, 1);
    assert!(info.landing_pads.is_empty());
}

#[test]
fn every_truncation_and_corruption_is_survived() {
    let eh = zplr(0x1000, 0x2000, 0x3000);
    let l = lsda();
    let read = |v: u64| if v == 0x3000 { Some(&l[..]) } else { None };
    for n in 0..eh.len() {
        let _ = parse(&eh[..n], 0x1000, &read);
    }
    for i in 0..eh.len() {
        for v in [0u8, 0x7f, 0x80, 0xff] {
            let mut b = eh.clone();
            b[i] = v;
            let _ = parse(&b, 0x1000, &read);
            let _ = parse(&b, u64::MAX - 8, &read);
        }
    }
    for n in 0..l.len() {
        let mut pads = Vec::new();
        let _ = parse_lsda(&l[..n], 0x3000, 0x2000, &mut pads);
    }
    // A huge length and a CIE pointer past the start.
    let _ = parse(&[0xf0, 0xff, 0xff, 0x7f, 1, 2, 3, 4], 0, &read);
    let _ = parse(&[8, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0], 0, &read);
}

#[test]
fn leb128_and_encodings() {
    let mut c = Cursor::new(&[0xe5, 0x8e, 0x26, 0x7f, 0x80, 0x7f], 0);
    assert_eq!(c.uleb(), Some(624_485));
    assert_eq!(c.sleb(), Some(-1));
    assert_eq!(c.sleb(), Some(-128));
    assert_eq!(c.uleb(), None);
    // pcrel sdata4: relative to the field
    let b = (-16i32).to_le_bytes();
    let mut c = Cursor::new(&b, 0x1000);
    assert_eq!(c.encoded(0x1b, None), Some(0x1000 - 16));
    // zero stays zero, as libgcc reads it
    let mut c = Cursor::new(&[0, 0, 0, 0], 0x1000);
    assert_eq!(c.encoded(0x1b, None), Some(0));
    // datarel is refused
    let mut c = Cursor::new(&[1, 0, 0, 0], 0x1000);
    assert_eq!(c.encoded(0x3b, None), None);
    // eh_frame_hdr pointer
    let mut hdr = vec![1, 0x1b, 0x03, 0x3b];
    hdr.extend_from_slice(&0x100i32.to_le_bytes());
    assert_eq!(eh_frame_from_hdr(&hdr, 0x5000), Some(0x5004 + 0x100));
    assert_eq!(eh_frame_from_hdr(&hdr[..5], 0x5000), None);
}
