use super::*;
use crate::ehframe;

fn cie(fde_enc: u8, lsda_enc: u8) -> CieInfo {
    CieInfo {
        vaddr: 0x50_0000,
        code_align: 1,
        data_align: -8,
        fde_enc,
        lsda_enc,
        has_z: true,
        signal_frame: false,
        // def_cfa rsp+8; rip at cfa-8
        initial_instructions: vec![0x0c, 7, 8, 0x90, 1],
    }
}

/// A function at 0x401000: push rbp (+1) -> cfa 16; mov rbp,rsp (+4) -> cfa = rbp+16;
/// at +0x20 remember, def_cfa rsp+8 (an epilogue), at +0x21 restore.
fn fde() -> FdeRecord {
    FdeRecord {
        vaddr: 0x50_0100,
        start: 0x40_1000,
        end: 0x40_1100,
        has_lsda: false,
        cie: 0,
        instructions: vec![
            0x41, 0x0e, 16, 0x86, 2, // advance 1; cfa off 16; rbp at cfa-16
            0x43, 0x0d, 6, // advance 3; cfa reg rbp
            0x5c, 0x0a, 0x0c, 7, 8, // advance 0x1c (to +0x20); remember; def_cfa rsp+8
            0x41, 0x0b, // advance 1; restore
        ],
    }
}

/// The CFA rule of a CFI program at `pc` (CIE initial instructions first).
fn cfa_at(cie: &CieInfo, prog: &[u8], start: u64, pc: u64) -> Cfa {
    let mut cfa = Cfa::Expr;
    let mut st = Vec::new();
    for o in split(cie, &cie.initial_instructions, start).unwrap() {
        step(cie, &mut cfa, &mut st, &o.bytes).unwrap();
    }
    for o in split(cie, prog, start).unwrap() {
        if o.loc > pc {
            break;
        }
        step(cie, &mut cfa, &mut st, &o.bytes).unwrap();
    }
    cfa
}

fn info(c: CieInfo, f: FdeRecord) -> EhInfo {
    EhInfo {
        vaddr: 0x50_0000,
        cies: vec![c],
        records: vec![f],
        ..EhInfo::default()
    }
}

#[test]
fn trampoline_rows_match_the_original_rows() {
    let c = cie(0x1b, 0xff);
    let f = fde();
    let eh = info(c.clone(), f.clone());
    // Two cases: a site in the rsp-based prologue area (+2..+4) and one in the rbp-based body.
    for (w_start, site, end) in [
        (0x40_1001u64, 0x40_1002u64, 0x40_1004u64),
        (0x40_1010, 0x40_1015, 0x40_1017),
    ] {
        let map = [
            MapPoint {
                offset: 0,
                orig: w_start,
                cfa_adjust: 0,
            },
            MapPoint {
                offset: 5,
                orig: site,
                cfa_adjust: 0,
            },
            MapPoint {
                offset: 0x11,
                orig: site,
                cfa_adjust: 128,
            },
            MapPoint {
                offset: 0x13,
                orig: site,
                cfa_adjust: 0,
            },
            MapPoint {
                offset: 0x20,
                orig: site,
                cfa_adjust: 0,
            },
            MapPoint {
                offset: 0x22,
                orig: site + 2,
                cfa_adjust: 0,
            },
            MapPoint {
                offset: 0x28,
                orig: end,
                cfa_adjust: 0,
            },
        ];
        let tramp = 0x60_0000u64;
        // The CIE at 0x500000, the new FDE right after it.
        let mut cie_body = vec![0, 0, 0, 0, 1];
        cie_body.extend_from_slice(b"zR\0");
        cie_body.extend_from_slice(&[1, 0x78, 16, 1, 0x1b]);
        cie_body.extend_from_slice(&c.initial_instructions);
        while (cie_body.len() + 4) % 8 != 0 {
            cie_body.push(0);
        }
        let mut sec = (cie_body.len() as u32).to_le_bytes().to_vec();
        sec.extend_from_slice(&cie_body);
        let fde_at = 0x50_0000 + sec.len() as u64;
        let rec = trampoline_fde(&eh, &f, fde_at, tramp, 0x2d, &map, true).unwrap();
        sec.extend_from_slice(&rec);
        sec.extend_from_slice(&[0, 0, 0, 0]);
        let back = ehframe::parse(&sec, 0x50_0000, &|_| None);
        assert_eq!(back.fdes, [(tramp, tramp + 0x2d)]);
        let got = &back.records[0];
        // Compare rows at each trampoline point with the original rows.
        for (k, p) in map.iter().enumerate() {
            let next = map.get(k + 1).map_or(0x2d, |n| n.offset);
            for off in p.offset..next {
                let want = match cfa_at(&c, &f.instructions, f.start, p.orig) {
                    Cfa::Reg(7, o) => Cfa::Reg(7, o + p.cfa_adjust),
                    other => other,
                };
                assert_eq!(
                    cfa_at(&c, &got.instructions, tramp, tramp + off),
                    want,
                    "site {site:#x}, offset {off:#x}"
                );
            }
        }
    }
}

#[test]
fn lsda_and_encodings() {
    let f = fde();
    let map = [MapPoint {
        offset: 0,
        orig: 0x40_1002,
        cfa_adjust: 0,
    }];
    // An 'L' CIE gets a zero LSDA pointer of the right size.
    let eh = info(cie(0x1b, 0x1b), f.clone());
    let rec = trampoline_fde(&eh, &f, 0x60_0000, 0x60_1000, 0x10, &map, true).unwrap();
    assert_eq!(rec[16], 4); // augmentation length
    assert_eq!(rec[17..21], [0, 0, 0, 0]);
    assert_eq!(rec.len() % 8, 0);
    // Absolute encodings only without relocation (ET_EXEC).
    let eh = info(cie(0x03, 0xff), f.clone());
    assert!(trampoline_fde(&eh, &f, 0x60_0000, 0x60_1000, 0x10, &map, true).is_none());
    assert!(trampoline_fde(&eh, &f, 0x60_0000, 0x60_1000, 0x10, &map, false).is_some());
    // Signal frames and unknown opcodes are not carried over.
    let mut sc = cie(0x1b, 0xff);
    sc.signal_frame = true;
    assert!(trampoline_fde(
        &info(sc, f.clone()),
        &f,
        0x60_0000,
        0x60_1000,
        0x10,
        &map,
        true
    )
    .is_none());
    let mut bad = f.clone();
    bad.instructions = vec![0x41, 0x3f];
    assert!(trampoline_fde(
        &info(cie(0x1b, 0xff), bad.clone()),
        &bad,
        0x60_0000,
        0x60_1000,
        0x10,
        &map,
        true
    )
    .is_none());
    // Truncated programs never panic.
    for n in 0..f.instructions.len() {
        let mut t = f.clone();
        t.instructions.truncate(n);
        let _ = trampoline_fde(
            &info(cie(0x1b, 0xff), t.clone()),
            &t,
            0x60_0000,
            0x60_1000,
            0x10,
            &map,
            true,
        );
    }
}

#[test]
fn eh_frame_hdr_round_trip() {
    let mut table = vec![
        (0x40_2000u64, 0x50_0200u64),
        (0x40_1000, 0x50_0100),
        (0x60_0000, 0x60_1000),
    ];
    let hdr = write_hdr(0x70_0000, 0x50_0000, &mut table).unwrap();
    assert_eq!(hdr.len(), 12 + 3 * 8);
    assert_eq!(ehframe::eh_frame_from_hdr(&hdr, 0x70_0000), Some(0x50_0000));
    let back = read_hdr_table(&hdr, 0x70_0000).unwrap();
    assert_eq!(
        back,
        [
            (0x40_1000, 0x50_0100),
            (0x40_2000, 0x50_0200),
            (0x60_0000, 0x60_1000)
        ]
    );
    for n in 0..hdr.len() {
        let _ = read_hdr_table(&hdr[..n], 0x70_0000);
    }
    assert!(write_hdr(0x1_0000_0000_0000, 0x50_0000, &mut table).is_none());
}
