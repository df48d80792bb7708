//! The bodies of the fuzz targets `elf` and `relink` (`fuzz/fuzz_targets/`), shared with the
//! corpus replay test (`tests/fuzz_corpus.rs`) so that the two cannot drift apart. Each takes
//! the fuzzer's bytes as a file to relink, returns whether lupine-relink accepted it, and
//! panics when lupine-relink panics or a property fails.

use crate::analyze::{self, Analysis};
use crate::elf::{self, Elf};
use crate::report::{parse_hex, Report};
use crate::{needed, relink, Error};
use iced_x86::{Decoder, DecoderOptions};

/// The `elf` target: the ELF front end, the libraries it names and the analysis. The windows
/// the analysis chooses hold their site, lie in the code, do not overlap and have no branch
/// target after their first byte.
pub fn elf(data: &[u8]) -> bool {
    let Ok(elf) = Elf::parse("input", data) else {
        return false;
    };
    let _ = relink::is_relinked(&elf);
    // Every library it names is found as the input itself (the search's configuration files
    // are absent).
    let libs = needed::resolve(&elf, "/bin/input", &|p: &str| {
        (!p.starts_with("/etc/")).then(|| data.to_vec())
    });
    let _ = libs.len();
    let an = analyze::analyze(&elf);
    check_analysis("input", &an);
    for s in &an.sites {
        if let Some((start, end)) = s.window {
            let _ = analyze::window_hex(&elf, start, end);
        }
    }
    true
}

fn check_analysis(what: &str, an: &Analysis<'_>) {
    let bad = crate::verify_windows(an);
    assert!(bad.is_empty(), "{what}: {}", bad.join("; "));
    assert!(
        an.targets.windows(2).all(|w| w[0] < w[1]),
        "{what}: branch targets not sorted and unique"
    );
}

fn hex(s: &Option<String>, what: &str) -> u64 {
    s.as_deref()
        .and_then(parse_hex)
        .unwrap_or_else(|| panic!("report: {what} is not an address: {s:?}"))
}

fn hex_str(s: &str, what: &str) -> u64 {
    parse_hex(s).unwrap_or_else(|| panic!("report: {what} is not an address: {s:?}"))
}

/// A patched range of the original code, `[start, end)`, and where it jumps (`None` for an
/// operand retargeted in place).
struct Patch {
    start: u64,
    end: u64,
    jumps_to: Option<u64>,
    /// Whether no branch target may lie after its first byte (a window).
    window: bool,
}

/// The ranges of the original code the report says were patched.
fn patches(input: &Elf<'_>, report: &Report) -> Vec<Patch> {
    let mut out = Vec::new();
    for s in report.sites.iter().filter(|s| s.status == "rewritten") {
        if let Some(cp) = &s.cancellation_point {
            out.push(Patch {
                start: hex_str(&cp.entry_window[0], "entry window"),
                end: hex_str(&cp.entry_window[1], "entry window"),
                jumps_to: Some(hex_str(&cp.copy[0], "copy")),
                window: true,
            });
            for [insn, field, _] in &cp.retargeted {
                let (insn, field) = (hex_str(insn, "instruction"), hex_str(field, "field"));
                let bytes = input
                    .bytes_at_vaddr(insn, 15)
                    .or_else(|| input.bytes_from_vaddr(insn))
                    .unwrap_or_else(|| panic!("retargeted instruction {insn:#x} not in the file"));
                let i = Decoder::with_ip(64, bytes, insn, DecoderOptions::NONE).decode();
                assert!(
                    field > insn && field < i.next_ip(),
                    "retargeted field {field:#x} outside its instruction at {insn:#x}"
                );
                out.push(Patch {
                    start: field,
                    end: i.next_ip(),
                    jumps_to: None,
                    window: false,
                });
            }
        } else {
            out.push(Patch {
                start: hex(&s.window_start, "window start"),
                end: hex(&s.window_end, "window end"),
                jumps_to: Some(hex(&s.trampoline, "trampoline")),
                window: true,
            });
        }
    }
    out
}

/// The `relink` target, differential: for an input lupine-relink accepts, (1) the bytes of the
/// input outside the patched windows (and the ELF header, and a shared object's `.bss` page,
/// which becomes zeros in the file) are unchanged in the output; (2) each window is a `jmp
/// rel32` to its trampoline in the added code, then `int3`s; (3) the analysis of the output
/// (`analyze_bytes`) finds no branch target after the first byte of a window, and its own
/// windows are sound; (4) the output is refused as already relinked.
pub fn relink(data: &[u8]) -> bool {
    let Ok(r) = relink::relink_bytes("input", "output", data) else {
        return false;
    };
    let out = &r.bytes;
    let rep = &r.report;
    let input = Elf::parse("input", data).expect("accepted input parses");
    assert_eq!(
        rep.counts.sites,
        rep.counts.rewritten + rep.counts.kept,
        "report counts"
    );
    assert_eq!(rep.sites.len() as u64, rep.counts.sites, "report sites");
    assert!(
        out.len() >= data.len(),
        "the output is shorter than the input"
    );
    assert_eq!(rep.output_size, out.len() as u64, "report output size");

    // (1) Unchanged outside the patches.
    let patches = patches(&input, rep);
    let mut allowed: Vec<(u64, u64)> = vec![(0, 64)];
    for p in &patches {
        assert!(p.start < p.end, "empty patch {:#x}..{:#x}", p.start, p.end);
        let off = input
            .vaddr_to_offset(p.start)
            .unwrap_or_else(|| panic!("patch at {:#x} is not in the file", p.start));
        allowed.push((off, off + (p.end - p.start)));
    }
    if input.kind == elf::Kind::Shared {
        if let Some(l) = input.phdrs.iter().rev().find(|p| p.p_type == elf::PT_LOAD) {
            if l.p_memsz > l.p_filesz {
                let start = l.p_offset + l.p_filesz;
                let end = (l.p_offset + l.p_memsz).div_ceil(relink::PAGE) * relink::PAGE;
                let zeros = out.get(start as usize..end as usize);
                assert!(
                    zeros.is_some_and(|z| z.iter().all(|&b| b == 0)),
                    "the .bss page {start:#x}..{end:#x} is not zeros in the file"
                );
                allowed.push((start, end));
            }
        }
    }
    for (i, (a, b)) in data.iter().zip(out.iter()).enumerate() {
        let i = i as u64;
        if a != b && !allowed.iter().any(|&(s, e)| i >= s && i < e) {
            panic!("file offset {i:#x} changed outside every window ({a:#04x} -> {b:#04x})");
        }
    }

    // (2) Each window jumps to its trampoline in the added code.
    let code = &rep.code_segment;
    let (rx, rx_size) = (hex_str(&code.vaddr, "code segment"), code.size);
    for p in patches.iter().filter(|p| p.window) {
        let off = input.vaddr_to_offset(p.start).unwrap_or_default() as usize;
        let w = &out[off..off + (p.end - p.start) as usize];
        assert!(
            w.len() >= 5 && w[0] == 0xe9 && w[5..].iter().all(|&b| b == 0xcc),
            "window {:#x}: not jmp rel32 + int3: {w:02x?}",
            p.start
        );
        let rel = i32::from_le_bytes([w[1], w[2], w[3], w[4]]) as i64;
        let dest = (p.start as i64).wrapping_add(5).wrapping_add(rel) as u64;
        assert_eq!(Some(dest), p.jumps_to, "window {:#x}: jump", p.start);
        assert!(
            dest >= rx && dest - rx < rx_size,
            "window {:#x}: jumps to {dest:#x}, outside the added code",
            p.start
        );
    }

    // (3) The output's own analysis.
    let an = match crate::analyze_bytes("output", out) {
        Ok(an) => an,
        Err(e) => panic!("the output does not parse: {e}"),
    };
    for p in patches.iter().filter(|p| p.window) {
        let i = an.targets.partition_point(|&t| t <= p.start);
        if let Some(t) = an.targets.get(i).filter(|&&t| t < p.end) {
            panic!(
                "output: branch target {t:#x} inside the window {:#x}..{:#x}",
                p.start, p.end
            );
        }
    }
    check_analysis("output", &an);

    // (4) Not relinked twice.
    assert!(
        matches!(
            relink::relink_bytes("output", "again", out),
            Err(Error::AlreadyRelinked { .. })
        ),
        "the output is not refused as already relinked"
    );
    true
}
