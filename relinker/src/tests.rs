//! Unit tests of the whole pipeline on synthetic programs (`testutil`), run for real.

use crate::elf::{self, Elf};
use crate::testutil::{build, run, Options, EXIT_OK, MESSAGE};
use crate::{analyze, relink_bytes, Error};

fn relink(b: &[u8]) -> Result<crate::Relinked, Error> {
    relink_bytes("in", "out", b)
}

#[test]
fn synthetic_programs_run_before_and_after() {
    for (name, o) in [
        ("exec-phdr", Options::default()),
        (
            "exec-nophdr",
            Options {
                phdr: false,
                ..Options::default()
            },
        ),
        (
            "pie-phdr",
            Options {
                pie: true,
                ..Options::default()
            },
        ),
        (
            "exec-nosections",
            Options {
                sections: false,
                ..Options::default()
            },
        ),
        (
            "pie-nosections-noeh",
            Options {
                pie: true,
                sections: false,
                eh_frame: false,
                ..Options::default()
            },
        ),
    ] {
        let b = build(&o);
        let (code, out) = run(&b.bytes, &format!("{name}-orig"));
        assert_eq!(
            (code, out.as_slice()),
            (EXIT_OK, MESSAGE),
            "{name}: the input itself"
        );
        let r = relink(&b.bytes).unwrap();
        let (code, out) = run(&r.bytes, &format!("{name}-relinked"));
        assert_eq!(
            (code, out.as_slice()),
            (EXIT_OK, MESSAGE),
            "{name}: relinked"
        );
        let c = &r.report.counts;
        assert_eq!(
            (c.sites, c.rewritten, c.kept),
            (6, 4, 2),
            "{name}: {:#?}",
            r.report.sites
        );
        let kinds: Vec<_> = r
            .report
            .sites
            .iter()
            .filter_map(|s| s.reason_kind.clone())
            .collect();
        assert_eq!(kinds, ["pc-sensitive", "syscall-number"], "{name}");
        let numbers: Vec<_> = r.report.sites.iter().map(|s| s.syscall_number).collect();
        assert_eq!(
            numbers,
            [Some(39), Some(1), None, Some(231), Some(15), Some(56)],
            "{name}"
        );
        if o.sections {
            for s in &r.report.sites {
                let a = crate::report::parse_hex(&s.address).unwrap();
                assert_eq!(
                    s.symbol.clone().unwrap(),
                    format!("_start+{:#x}", a - b.text_addr),
                    "{name}"
                );
            }
        }
        // Relinking the output again is refused.
        assert!(
            matches!(relink(&r.bytes), Err(Error::AlreadyRelinked { .. })),
            "{name}"
        );
        // Same input, same output.
        assert_eq!(
            relink(&b.bytes).unwrap().bytes,
            r.bytes,
            "{name}: not deterministic"
        );
    }
}

/// The output's headers: PT_LOADs sorted and non-overlapping, no W+X, PT_GNU_STACK as it was,
/// the program header table inside the new R+X segment, PT_PHDR describing it, the entry stub
/// inside it, the original bytes unchanged outside the patched windows.
#[test]
fn output_layout_is_sane() {
    for o in [
        Options::default(),
        Options {
            pie: true,
            ..Options::default()
        },
        Options {
            sections: false,
            ..Options::default()
        },
    ] {
        let b = build(&o);
        let r = relink(&b.bytes).unwrap();
        let inp = Elf::parse("in", &b.bytes).unwrap();
        let out = Elf::parse("out", &r.bytes).unwrap();
        let loads: Vec<_> = out.loads().copied().collect();
        assert_eq!(loads.len(), inp.loads().count() + 2);
        for w in loads.windows(2) {
            assert!(
                w[0].p_vaddr + w[0].p_memsz <= w[1].p_vaddr,
                "PT_LOADs unsorted or overlapping"
            );
        }
        for p in &loads {
            assert!(
                !(p.p_flags & elf::PF_W != 0 && p.p_flags & elf::PF_X != 0),
                "W+X segment"
            );
            assert_eq!(p.p_offset % 4096, p.p_vaddr % 4096);
        }
        let stack = |e: &Elf<'_>| e.phdrs.iter().find(|p| p.p_type == 0x6474_e551).copied();
        assert_eq!(stack(&inp), stack(&out));
        let code = loads[loads.len() - 1];
        let slot = loads[loads.len() - 2];
        assert_eq!(code.p_flags, elf::PF_R | elf::PF_X);
        assert_eq!(slot.p_flags, elf::PF_R | elf::PF_W);
        assert!(slot.p_vaddr / 4096 != code.p_vaddr / 4096);
        assert!(
            out.e_phoff >= code.p_offset
                && out.e_phoff + (out.phdrs.len() * 56) as u64 <= code.p_offset + code.p_filesz
        );
        assert!(out.e_entry >= code.p_vaddr && out.e_entry < code.p_vaddr + code.p_memsz);
        assert_eq!(&r.bytes[code.p_offset as usize..][..14], kml_shim::MARKER);
        if let Some(ph) = out.phdrs.iter().find(|p| p.p_type == elf::PT_PHDR) {
            assert_eq!(out.phdrs[0], *ph, "PT_PHDR first");
            assert_eq!(ph.p_offset, out.e_phoff);
            assert_eq!(ph.p_vaddr, code.p_vaddr + (out.e_phoff - code.p_offset));
            assert_eq!(ph.p_filesz, (out.phdrs.len() * 56) as u64);
        }
        // Outside the windows, the original bytes are unchanged.
        let mut expect = b.bytes.clone();
        for s in &r.report.sites {
            if let (Some(ws), Some(we)) = (&s.window_start, &s.window_end) {
                let (ws, we) = (
                    crate::report::parse_hex(ws).unwrap(),
                    crate::report::parse_hex(we).unwrap(),
                );
                let off = inp.vaddr_to_offset(ws).unwrap() as usize;
                expect[off..off + (we - ws) as usize]
                    .copy_from_slice(&r.bytes[off..off + (we - ws) as usize]);
                assert_eq!(r.bytes[off], 0xe9);
                assert!(r.bytes[off + 5..off + (we - ws) as usize]
                    .iter()
                    .all(|&c| c == 0xcc));
            }
        }
        // Bytes from ELF header fields that changed are excluded: entry, phoff, shoff, phnum, shnum.
        for (a, z) in [(24, 48), (56, 58), (60, 62)] {
            expect[a..z].copy_from_slice(&r.bytes[a..z]);
        }
        assert_eq!(&r.bytes[..expect.len()], &expect[..]);
        // Sections: .lupine.slot and .lupine.text added when the input had sections.
        if o.sections {
            assert!(r.report.sections_added);
            let t = out.section(".lupine.text").unwrap();
            assert_eq!(
                (t.sh_addr, t.sh_offset, t.sh_size),
                (code.p_vaddr, code.p_offset, code.p_filesz)
            );
            assert!(out.section(".lupine.slot").is_some());
            assert!(out.section(".text").is_some());
            assert_eq!(out.symbols, inp.symbols);
        } else {
            assert!(!r.report.sections_added);
        }
    }
}

/// No branch target falls strictly inside a rewritten window, and every kept site has a reason.
#[test]
fn windows_never_contain_a_target() {
    let b = build(&Options::default());
    let an = crate::analyze_bytes("in", &b.bytes).unwrap();
    assert!(crate::verify_windows(&an).is_empty());
    for s in &an.sites {
        assert!(s.window.is_some() || s.kept.is_some());
    }
    // The jmp target `out` in the synthetic program is the syscall itself: its window starts
    // there and takes the three following nops.
    let w: Vec<_> = an
        .sites
        .iter()
        .map(|s| s.window.map(|(a, z)| z - a))
        .collect();
    assert_eq!(w, [Some(7), Some(7), Some(5), Some(7), None, None]);
}

#[test]
fn refusals() {
    let good = build(&Options::default()).bytes;
    let err = |b: &[u8]| relink(b).unwrap_err();
    assert!(matches!(err(b""), Error::NotElf { .. }));
    assert!(matches!(err(b"#!/bin/sh\n"), Error::NotElf { .. }));
    let mut b = good.clone();
    b[4] = 1;
    assert!(matches!(err(&b), Error::Elf32 { .. }));
    let mut b = good.clone();
    b[5] = 2;
    assert!(matches!(err(&b), Error::Encoding { .. }));
    let mut b = good.clone();
    b[18] = 183;
    let e = err(&b);
    assert!(matches!(e, Error::Machine { machine: 183, .. }));
    assert!(e.to_string().contains("AArch64"), "{e}");
    let mut b = good.clone();
    b[16] = 1;
    assert!(matches!(err(&b), Error::NotProgram { .. }));
    assert!(matches!(err(&good[..40]), Error::Malformed { .. }));
    assert!(matches!(err(&good[..200]), Error::Malformed { .. }));
    let d = build(&Options {
        interp: Some("/lib64/ld-linux-x86-64.so.2"),
        ..Options::default()
    })
    .bytes;
    let r = relink(&d).unwrap();
    assert_eq!(r.report.kind, "dynamic");
    assert_eq!(
        r.report.interpreter.as_deref(),
        Some("/lib64/ld-linux-x86-64.so.2")
    );
    assert!(
        r.report.entry.stub.is_some(),
        "a dynamic program's entry stub sets its slot"
    );
    let g = build(&Options {
        extra_section: Some(".go.buildinfo"),
        ..Options::default()
    })
    .bytes;
    let e = err(&g);
    assert!(matches!(e, Error::Go { .. }));
    assert!(e.to_string().contains("goroutine"), "{e}");
    let r = relink(&good).unwrap();
    assert_eq!(
        err(&r.bytes).to_string(),
        "in: already relinked by lupine-relink"
    );
    // Entry point outside executable code.
    let mut b = good.clone();
    b[24..32].copy_from_slice(&0x40_3000u64.to_le_bytes());
    assert!(matches!(err(&b), Error::NotProgram { .. }));
}

/// Every prefix of a program, and many single-byte corruptions of it, give an error or an
/// output, never a panic.
#[test]
fn no_panic_on_truncated_or_corrupted_input() {
    for o in [
        Options::default(),
        Options {
            sections: false,
            ..Options::default()
        },
    ] {
        let good = build(&o).bytes;
        for n in (0..good.len()).step_by(7) {
            let _ = relink(&good[..n]);
        }
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut b = good.clone();
            for _ in 0..1 + next() % 4 {
                // Mostly headers and tables; sometimes anywhere.
                let at = if next() % 4 == 0 {
                    next() as usize % b.len()
                } else {
                    next() as usize % 0x200
                };
                let at = if next() % 3 == 0 {
                    b.len() - 1 - next() as usize % 0x300.min(b.len() - 1)
                } else {
                    at
                };
                b[at] = next() as u8;
            }
            let _ = relink(&b);
        }
    }
}

#[test]
fn file_level_errors_and_atomic_output() {
    let dir = std::env::temp_dir().join(format!("lupine-relink-unit-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing");
    let out = dir.join("out");
    let e = crate::relink_file(&missing, &out, None, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: no such file", missing.display())
    );
    let e = crate::relink_file(&dir, &out, None, None).unwrap_err();
    assert!(matches!(e, Error::IsDirectory { .. }));
    let text = dir.join("text");
    std::fs::write(&text, b"not a program").unwrap();
    assert!(matches!(
        crate::relink_file(&text, &out, None, None),
        Err(Error::NotElf { .. })
    ));
    assert!(!out.exists());
    let prog = dir.join("prog");
    let good = build(&Options::default()).bytes;
    std::fs::write(&prog, &good).unwrap();
    assert!(matches!(
        crate::relink_file(&prog, &prog, None, None),
        Err(Error::SameFile { .. })
    ));
    let report = dir.join("r.json");
    let r = crate::relink_file(&prog, &out, Some(&report), None).unwrap();
    assert_eq!(std::fs::read(&prog).unwrap(), good, "input modified");
    let parsed: crate::Report = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(parsed, r);
    assert_eq!(parsed.output_size, std::fs::metadata(&out).unwrap().len());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kept_numbers_and_patterns_are_documented_constants() {
    assert_eq!(analyze::KEPT_NUMBERS, [15, 56, 58, 60, 435]);
    assert_eq!(crate::syscalls::name(15), Some("rt_sigreturn"));
    assert_eq!(crate::syscalls::name(435), Some("clone3"));
    assert_eq!(crate::syscalls::name(100_000), None);
}
