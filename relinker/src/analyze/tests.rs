use super::*;
use crate::testutil::{build, Options};
use iced_x86::code_asm::*;

fn decode_all(b: &[u8]) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(64, b, 0x1000, DecoderOptions::NONE);
    let mut v = Vec::new();
    while d.can_decode() {
        v.push(d.decode());
    }
    v
}

fn rax_after(b: &[u8]) -> Option<u64> {
    let mut f = InstructionInfoFactory::new();
    let mut regs: Regs = [None; 16];
    for i in decode_all(b) {
        step_regs(&mut f, &i, &mut regs);
    }
    // step_rax agrees where rax alone decides.
    let only_rax = decode_all(b)
        .iter()
        .fold(None, |r, i| step_rax(&mut f, i, r));
    if only_rax.is_some() {
        assert_eq!(only_rax, regs[0]);
    }
    regs[0]
}

#[test]
fn constant_syscall_numbers() {
    assert_eq!(rax_after(&[0xb8, 0x3c, 0, 0, 0]), Some(60)); // mov eax, 60
    assert_eq!(rax_after(&[0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0]), Some(15)); // mov rax, 15
    assert_eq!(
        rax_after(&[0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff]),
        Some(u64::MAX)
    ); // sign-extended
    assert_eq!(rax_after(&[0x31, 0xc0, 0xb0, 0x38]), Some(56)); // xor eax,eax; mov al,56
    assert_eq!(
        rax_after(&[0x48, 0x31, 0xc0, 0x66, 0xb8, 0xb3, 0x01]),
        Some(435)
    ); // xor rax,rax; mov ax,435
    assert_eq!(rax_after(&[0xb0, 0x38]), None); // mov al alone: upper bits unknown
    assert_eq!(rax_after(&[0xb8, 0x01, 0, 0, 0, 0x48, 0x89, 0xf8]), None); // then mov rax, rdi
    assert_eq!(rax_after(&[0xb8, 0x01, 0, 0, 0, 0x48, 0x89, 0xc7]), Some(1)); // mov rdi, rax keeps it
    assert_eq!(rax_after(&[0xb8, 0x01, 0, 0, 0, 0x0f, 0xa2]), None); // cpuid writes eax
    assert_eq!(rax_after(&[0xb8, 0x01, 0, 0, 0, 0x0f, 0x44, 0xc1]), None); // cmove eax, ecx
    assert_eq!(rax_after(&[0xb8, 0x01, 0, 0, 0, 0x8a, 0xe1]), None); // mov ah, cl
                                                                     // through another register: mov edx, 60; xor edi, edi; mov eax, edx
    assert_eq!(
        rax_after(&[0xba, 0x3c, 0, 0, 0, 0x31, 0xff, 0x89, 0xd0]),
        Some(60)
    );
    // mov rdx, -1; mov eax, edx (zero-extended)
    assert_eq!(
        rax_after(&[0x48, 0xc7, 0xc2, 0xff, 0xff, 0xff, 0xff, 0x89, 0xd0]),
        Some(0xffff_ffff)
    );
    // mov edx, 60; add edx, 1; mov eax, edx: unknown
    assert_eq!(
        rax_after(&[0xba, 0x3c, 0, 0, 0, 0x83, 0xc2, 0x01, 0x89, 0xd0]),
        None
    );
    // mov r10d, 39; mov rax, r10
    assert_eq!(
        rax_after(&[0x41, 0xba, 0x27, 0, 0, 0, 0x4c, 0x89, 0xd0]),
        Some(39)
    );
}

fn sites(o: &Options) -> Vec<SiteInfo> {
    let b = build(o);
    let elf = Elf::parse("t", &b.bytes).unwrap();
    let an = analyze(&elf);
    assert!(
        crate::verify_windows(&an).is_empty(),
        "{:?}",
        crate::verify_windows(&an)
    );
    an.sites
}

/// `getpid` four times: in a plain block, after a branch target, before a ret, in a
/// PC-sensitive function.
fn four_sites(text: u64) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut l1 = a.create_label();
    let mut l2 = a.create_label();
    a.mov(eax, 39).unwrap(); // +0
    a.syscall().unwrap(); // +5: window [0, 7)
    a.mov(eax, 39).unwrap(); // +7
    a.jmp(l1).unwrap(); // +12 (2 bytes)
    a.set_label(&mut l1).unwrap();
    a.syscall().unwrap(); // +14: a target; the ret after it: no window
    a.ret().unwrap(); // +16
    a.mov(eax, 39).unwrap(); // +17
    a.jmp(l2).unwrap(); // +22
    a.set_label(&mut l2).unwrap();
    a.mov(rdi, rax).unwrap(); // +24: target, 3 bytes
    a.syscall().unwrap(); // +27: window [24, 29)
    a.ret().unwrap(); // +29
    a.mov(eax, 39).unwrap(); // +30: the "vfork" symbol covers +30..+38
    a.syscall().unwrap(); // +35
    a.ret().unwrap(); // +37
    a.mov(eax, 39).unwrap(); // +38: inside __cp_begin..__cp_end
    a.syscall().unwrap(); // +43
    a.ret().unwrap(); // +45: __cp_end
    a.nop().unwrap();
    a.assemble(text).unwrap()
}

#[test]
fn windows_and_pc_sensitive_symbols() {
    let o = Options {
        code: Some(four_sites),
        symbols: vec![
            ("vfork", 30, 8, true),
            ("__cp_begin", 38, 0, false),
            ("__cp_end", 45, 0, false),
        ],
        ..Options::default()
    };
    let s = sites(&o);
    let text = build(&o).text_addr;
    let got: Vec<_> = s
        .iter()
        .map(|s| {
            (
                s.address - text,
                s.window.map(|(a, z)| (a - text, z - text)),
                s.kept.as_ref().map(|k| k.kind()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (5, Some((0, 7)), None),
            (14, None, Some("no-window")),
            (27, Some((24, 29)), None),
            (35, None, Some("pc-sensitive")),
            (43, None, Some("pc-sensitive")),
        ]
    );
    assert_eq!(s[1].number, None, "a branch target cuts the block");
    assert_eq!(s[0].number, Some(39));
    assert_eq!(s[2].number, None, "mov rdi, rax after the target: unknown");
    assert!(s[3].kept.as_ref().unwrap().to_string().contains("vfork"));
    assert!(s[4]
        .kept
        .as_ref()
        .unwrap()
        .to_string()
        .contains("__cp_begin..__cp_end"));
    assert_eq!(s[2].symbol.as_deref(), Some("_start+0x1b"));
}

/// A branch into the middle of an instruction (as over a `lock` prefix) keeps every window off
/// that instruction (found by fuzzing: the window covered the target); a guessed target there
/// (an immediate that happens to point into the code) does not.
#[test]
fn targets_inside_instructions() {
    fn code(text: u64) -> Vec<u8> {
        let mut c = vec![0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xc3]; // +0 mov eax, 39; syscall; ret
        c.push(0xe9); // +8: jmp +1, into the mov
        c.extend_from_slice(&(-12i32).to_le_bytes());
        c.extend_from_slice(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xc3]); // +13
        c.extend_from_slice(&[0x48, 0xb8]); // +21: mov rax, text+14
        c.extend_from_slice(&(text + 14).to_le_bytes());
        c.push(0xc3);
        c
    }
    let o = Options {
        code: Some(code),
        ..Options::default()
    };
    let text = build(&o).text_addr;
    let s = sites(&o);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].window, None);
    let why = s[0].kept.as_ref().unwrap().to_string();
    assert!(
        why.contains(&format!(
            "branch target {:#x} inside the instruction",
            text + 1
        )),
        "{why}"
    );
    assert_eq!(s[1].window, Some((text + 13, text + 20)));
}

#[test]
fn stripped_programs_use_byte_patterns() {
    fn code(text: u64) -> Vec<u8> {
        let mut v = Vec::new();
        // musl __syscall_cp_asm's tail, musl vfork, musl __unmapself, restore_rt
        v.extend_from_slice(&[
            0x4c, 0x8b, 0x4c, 0x24, 0x10, 0x4c, 0x89, 0x5c, 0x24, 0x08, 0x0f, 0x05, 0xc3,
        ]);
        v.extend_from_slice(&[0x5a, 0xb8, 0x3a, 0, 0, 0, 0x0f, 0x05, 0x52, 0xc3]);
        v.extend_from_slice(&[
            0xb8, 0x0b, 0, 0, 0, 0x0f, 0x05, 0x48, 0x31, 0xff, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05,
        ]);
        v.extend_from_slice(&[0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05, 0x90]);
        let _ = text;
        v
    }
    let s = sites(&Options {
        code: Some(code),
        sections: false,
        ..Options::default()
    });
    let kinds: Vec<_> = s
        .iter()
        .map(|s| s.kept.as_ref().map(|k| k.to_string()))
        .collect();
    assert_eq!(s.len(), 5);
    for (n, k) in kinds.iter().enumerate() {
        // __unmapself's second syscall is exit (60): kept for its number.
        let want = if n == 3 {
            "syscall number 60"
        } else {
            "PC-sensitive: byte pattern"
        };
        assert!(
            k.as_deref().is_some_and(|k| k.starts_with(want)),
            "{kinds:?}"
        );
    }
    assert!(s.iter().all(|s| s.symbol.is_none()));
}

#[test]
fn data_in_code_is_suspicious() {
    fn code(text: u64) -> Vec<u8> {
        let _ = text;
        // an undecodable byte sequence, then a syscall site 16 bytes later
        let mut v = vec![0x0f, 0xff, 0x06, 0x06];
        v.extend_from_slice(&[0x90; 12]);
        v.extend_from_slice(&[0xb8, 0x27, 0, 0, 0, 0x0f, 0x05, 0xc3]);
        v
    }
    let s = sites(&Options {
        code: Some(code),
        ..Options::default()
    });
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].kept.as_ref().map(|k| k.kind()),
        Some("undecodable-nearby")
    );
}
