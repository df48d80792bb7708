use super::*;
use crate::analyze::{analyze, SiteInfo};
use crate::testutil::{build, Options};

/// musl's `__syscall_cp_asm`, placed at `at`, with its `jne` to a `ret` right after it.
fn musl_cp(at: u64) -> Vec<u8> {
    let _ = at;
    let mut v = vec![0x8b, 0x07, 0x85, 0xc0, 0x75, 36]; // mov (%rdi),%eax; test; jne +36
    v.extend_from_slice(&MOVES);
    v.extend_from_slice(&[0x0f, 0x05, 0xc3, 0xc3]); // syscall; ret; cancel: ret
    v
}

/// Where the cancellation point starts in the programs below (after the "handler").
const CP: u64 = 64;

/// `lea target(%rip),%rcx` at `at`.
fn lea_rcx(at: u64, target: u64) -> Vec<u8> {
    let rel = (target as i64 - (at as i64 + 7)) as i32;
    let mut v = vec![0x48, 0x8d, 0x0d];
    v.extend_from_slice(&rel.to_le_bytes());
    v
}

/// A handler's test of both bounds (plus `extra` instructions), padded with `nop`s to `CP`,
/// then the cancellation point.
fn program(text: u64, extra: fn(u64) -> Vec<u8>) -> Vec<u8> {
    let begin = text + CP;
    let end = begin + 6 + MOVES.len() as u64 + 2;
    let mut v = lea_rcx(text, begin);
    v.extend(lea_rcx(text + 7, end));
    v.extend(extra(text + 14));
    v.push(0xc3);
    assert!(v.len() as u64 <= CP);
    v.resize(CP as usize, 0x90);
    v.extend(musl_cp(begin));
    v
}

fn nothing(_: u64) -> Vec<u8> {
    vec![]
}

fn analysed(code: fn(u64) -> Vec<u8>, symbols: Vec<(&'static str, u64, u64, bool)>) -> SiteInfo {
    let b = build(&Options {
        code: Some(code),
        symbols,
        ..Options::default()
    });
    let elf = Elf::parse("t", &b.bytes).unwrap();
    let an = analyze(&elf);
    assert_eq!(an.sites.len(), 1, "{:?}", an.sites);
    an.sites[0].clone()
}

fn kept_because(code: fn(u64) -> Vec<u8>) -> String {
    let s = analysed(code, vec![]);
    assert!(s.moved.is_none());
    s.kept.expect("kept").to_string()
}

#[test]
fn a_known_cancellation_point_is_moved_with_its_bounds() {
    let s = analysed(|t| program(t, nothing), vec![]);
    assert!(s.kept.is_none(), "{:?}", s.kept);
    let cp = s.moved.expect("moved");
    let text = cp.begin - CP;
    assert_eq!(cp.library, "musl __syscall_cp_asm");
    assert_eq!((cp.end - cp.begin, cp.body.len()), (6 + 33 + 2, 12));
    assert_eq!(cp.entry_window, (cp.begin, cp.begin + 6));
    let refs: Vec<_> = cp.refs.iter().map(|r| (r.insn - text, r.edge)).collect();
    assert_eq!(refs, [(0, Edge::Begin), (7, Edge::End)]);
    // Its labels, where they agree, change nothing.
    let labelled = analysed(
        |t| program(t, nothing),
        vec![
            ("__cp_begin", CP, 0, false),
            ("__cp_end", CP + 41, 0, false),
        ],
    );
    assert!(labelled.moved.is_some(), "{:?}", labelled.kept);
}

#[test]
fn a_movabs_of_a_bound_is_retargeted_too() {
    let s = analysed(
        |t| {
            program(t, |at| {
                let mut v = vec![0x48, 0xb8]; // movabs $begin, %rax
                v.extend_from_slice(&(at - 14 + CP).to_le_bytes());
                v
            })
        },
        vec![],
    );
    let cp = s.moved.expect("moved");
    assert_eq!(cp.refs.len(), 3);
    assert!(cp
        .refs
        .iter()
        .any(|r| r.operand == Operand::Imm64 && r.edge == Edge::Begin));
}

#[test]
fn what_cannot_be_known_for_certain_keeps_the_site() {
    // The handler's test of the end is missing.
    let no_end = kept_because(|t| {
        let mut v = lea_rcx(t, t + CP);
        v.resize(CP as usize, 0x90);
        v.extend(musl_cp(t + CP));
        v
    });
    assert!(
        no_end.contains("no instruction refers to its end"),
        "{no_end}"
    );
    // A branch into the middle of the range.
    let inside = kept_because(|t| {
        program(t, |at| {
            let target = at - 14 + CP + 10;
            let rel = (target as i64 - (at as i64 + 5)) as i32;
            let mut v = vec![0xe9];
            v.extend_from_slice(&rel.to_le_bytes());
            v
        })
    });
    assert!(inside.contains("a branch lands inside it"), "{inside}");
    // A load from the bound: a use that is not its address.
    let load = kept_because(|t| {
        program(t, |at| {
            let mut v = vec![0x48, 0x8b, 0x05]; // mov begin(%rip), %rax
            let rel = ((at - 14 + CP) as i64 - (at as i64 + 7)) as i32;
            v.extend_from_slice(&rel.to_le_bytes());
            v
        })
    });
    assert!(load.contains("uses it as memory"), "{load}");
    // Labels that disagree with the code.
    let s = analysed(
        |t| program(t, nothing),
        vec![
            ("__cp_begin", CP + 2, 0, false),
            ("__cp_end", CP + 41, 0, false),
        ],
    );
    let why = s.kept.expect("kept").to_string();
    assert!(why.contains("__cp_begin is at"), "{why}");
    // Another shape (one move differs): still kept as a cancellation point by its tail.
    let other = kept_because(|t| {
        let mut v = program(t, nothing);
        v[CP as usize + 6 + 3] = 0x49; // mov %rsi,%rax becomes mov %rsi,%r8
        v
    });
    assert!(other.starts_with("PC-sensitive"), "{other}");
}

#[test]
fn relinking_points_the_entry_and_the_bounds_at_the_copy() {
    let b = build(&Options {
        code: Some(|t| program(t, nothing)),
        ..Options::default()
    });
    let r = crate::relink_bytes("t", "t.out", &b.bytes).unwrap();
    let site = &r.report.sites[0];
    let m = site.cancellation_point.as_ref().expect("moved");
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let (copy, copy_end) = (hex(&m.copy[0]), hex(&m.copy[1]));
    let out = Elf::parse("t.out", &r.bytes).unwrap();
    let at = |a: u64, n: u64| out.bytes_at_vaddr(a, n).unwrap().to_vec();
    let decode = |a: u64| Decoder::with_ip(64, &at(a, 15), a, DecoderOptions::NONE).decode();
    let text = hex(&m.range[0]) - CP;
    assert_eq!(decode(text).ip_rel_memory_address(), copy);
    assert_eq!(decode(text + 7).ip_rel_memory_address(), copy_end);
    let entry = decode(text + CP);
    assert_eq!(
        (entry.code(), entry.near_branch_target()),
        (Code::Jmp_rel32_64, copy)
    );
    assert_eq!(
        at(copy_end - 2, 2),
        [0x0f, 0x05],
        "a syscall right before the end"
    );
    // The program's FDE covers the whole text: the copy gets one that mirrors it, listed in
    // the new .eh_frame_hdr.
    assert_eq!(site.unwind_info, Some(true));
    let hdr = r
        .report
        .eh_frame_hdr
        .as_deref()
        .map(hex)
        .expect("an .eh_frame_hdr");
    let seg = out
        .phdrs
        .iter()
        .find(|p| p.p_type == elf::PT_GNU_EH_FRAME)
        .unwrap();
    let table = crate::cfi::read_hdr_table(&at(hdr, seg.p_filesz), hdr).unwrap();
    assert!(table.iter().any(|&(start, _)| start == copy), "{table:x?}");
}
