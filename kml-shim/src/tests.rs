use super::*;
use iced_x86::{Decoder, DecoderOptions, Mnemonic};

fn decode(bytes: &[u8], ip: u64) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let i = d.decode();
        assert!(!i.is_invalid(), "invalid instruction at {:#x}", i.ip());
        out.push(i);
    }
    out
}

fn mnemonics(v: &[Instruction]) -> Vec<Mnemonic> {
    v.iter().map(|i| i.mnemonic()).collect()
}

#[test]
fn entry_stub_shape() {
    let stub = 0x7000_1000;
    let slot = 0x7000_0000;
    let entry = 0x40_1000;
    let code = entry_stub(stub, slot, entry).unwrap();
    let ins = decode(&code, stub);
    use Mnemonic::*;
    assert_eq!(
        mnemonics(&ins),
        [
            Pushfq, Push, Push, Mov, Lea, Mov, Add, Test, Jne, Mov, Test, Je, Add, Cmp, Jne, Mov,
            Mov, Pop, Pop, Popfq, Jmp
        ]
    );
    let store = &ins[16];
    assert!(store.is_ip_rel_memory_operand());
    assert_eq!(store.ip_rel_memory_address(), slot);
    let jmp = ins.last().unwrap();
    assert_eq!(jmp.near_branch_target(), entry);
    // No system call anywhere, nothing but the entry jump leaves the stub.
    assert!(ins.iter().all(|i| i.code() != Code::Syscall));
    assert_eq!(ins[8].near_branch_target(), ins[5].ip());
    assert_eq!(ins[11].near_branch_target(), ins[16].ip());
    assert_eq!(ins[14].near_branch_target(), ins[9].ip());
}

/// The stub's loop, simulated over a hand-made initial stack: finds AT_SYSINFO or stores 0.
#[test]
fn entry_stub_walk_semantics() {
    // argc=2, argv[2], NULL, envp[1], NULL, auxv...
    fn stack(aux: &[(u64, u64)]) -> Vec<u64> {
        let mut s = vec![2, 0x1111, 0x2222, 0, 0x3333, 0];
        for &(k, v) in aux {
            s.push(k);
            s.push(v);
        }
        s.extend([0, 0]);
        s
    }
    // Interpret exactly the stub's algorithm on the vector (index arithmetic = rsp + 8*i).
    fn walk(s: &[u64]) -> u64 {
        let argc = s[0] as usize;
        let mut i = argc + 2; // lea rax,[rsp+rax*8+16] relative to entry rsp (24 bytes pushed)
        loop {
            let v = s[i];
            i += 1;
            if v == 0 {
                break;
            }
        }
        loop {
            let k = s[i];
            if k == 0 {
                return 0;
            }
            i += 2;
            if k == AT_SYSINFO {
                return s[i - 1];
            }
        }
    }
    assert_eq!(
        walk(&stack(&[(6, 4096), (32, 0xffff_8000_1234), (33, 7)])),
        0xffff_8000_1234
    );
    assert_eq!(walk(&stack(&[(6, 4096), (33, 7)])), 0);
    assert_eq!(walk(&stack(&[])), 0);
    // The encoded displacement matches the simulation: 24 bytes pushed + 8 (argc) + 8 (NULL).
    let code = entry_stub(0x1000, 0x3000, 0x2000).unwrap();
    let lea = decode(&code, 0x1000)[4];
    assert_eq!(lea.memory_base(), Register::RSP);
    assert_eq!(lea.memory_index(), Register::RAX);
    assert_eq!(lea.memory_index_scale(), 8);
    assert_eq!(lea.memory_displacement64(), 40);
}

fn site_from(bytes: &[u8], ip: u64) -> Vec<Instruction> {
    decode(bytes, ip)
}

#[test]
fn trampoline_shape_without_displaced_code() {
    let t = trampoline(0x80_0000, &Site::default(), 0x7f_f000, 0x40_1007, None).unwrap();
    let ins = decode(&t.bytes, 0x80_0000);
    use Mnemonic::*;
    assert_eq!(
        mnemonics(&ins),
        [Mov, Jrcxz, Lea, Call, Lea, Jmp, Syscall, Jmp]
    );
    assert_eq!(ins[0].ip_rel_memory_address(), 0x7f_f000);
    assert_eq!(ins[0].op0_register(), Register::RCX);
    assert_eq!(ins[1].near_branch_target(), ins[6].ip());
    assert_eq!(ins[2].memory_displacement64() as i64, -128);
    assert_eq!(ins[3].op0_register(), Register::RCX);
    assert_eq!(ins[4].memory_displacement64(), 128);
    assert_eq!(ins[5].near_branch_target(), ins[7].ip());
    assert_eq!(ins[6].len(), 2);
    assert_eq!((ins[6].ip() - 0x80_0000) as usize, t.syscall_offset);
    assert_eq!(ins[7].near_branch_target(), 0x40_1007);
    assert_eq!(ins[7].code(), Code::Jmp_rel32_64);
}

#[test]
fn trampoline_replays_displaced_code_and_relocates_rip_relative() {
    // mov eax, 1 ; <syscall> ; mov [rip+0x100], rax  (at 0x401000)
    let before = site_from(&[0xb8, 0x01, 0, 0, 0], 0x40_1000);
    let after = site_from(&[0x48, 0x89, 0x05, 0x00, 0x01, 0, 0], 0x40_1007);
    let target = after[0].ip_rel_memory_address();
    assert_eq!(target, 0x40_1007 + 7 + 0x100);
    let site = Site { before, after };
    let base = 0x50_0000;
    let t = trampoline(base, &site, 0x4f_f000, 0x40_100e, None).unwrap();
    let ins = decode(&t.bytes, base);
    use Mnemonic::*;
    assert_eq!(
        mnemonics(&ins),
        [Mov, Mov, Jrcxz, Lea, Call, Lea, Jmp, Syscall, Mov, Jmp]
    );
    assert_eq!(ins[0].immediate32(), 1);
    assert!(ins[8].is_ip_rel_memory_operand());
    assert_eq!(ins[8].ip_rel_memory_address(), target);
    assert_eq!(ins[9].near_branch_target(), 0x40_100e);
    assert_eq!(&t.bytes[t.syscall_offset..t.syscall_offset + 2], &SYSCALL);
}

#[test]
fn trampoline_refuses_control_flow_and_syscalls() {
    let ret = site_from(&[0xc3], 0x1000);
    let site = Site {
        before: vec![],
        after: ret,
    };
    assert!(matches!(
        trampoline(0x2000, &site, 0x3000, 0x1001, None),
        Err(ShimError::NotRelocatable { ip: 0x1000, .. })
    ));
    let sc = site_from(&[0x0f, 0x05], 0x1000);
    assert!(check_relocatable(&sc[0]).is_err());
    let endbr = site_from(&[0xf3, 0x0f, 0x1e, 0xfa], 0x1000);
    assert!(check_relocatable(&endbr[0]).is_err());
    let jcc = site_from(&[0x74, 0x00], 0x1000);
    assert!(check_relocatable(&jcc[0]).is_err());
    let mov = site_from(&[0x48, 0x89, 0xc7], 0x1000);
    assert!(check_relocatable(&mov[0]).is_ok());
}

#[test]
fn out_of_range_targets_are_errors_not_panics() {
    // A RIP-relative operand more than 2 GiB away from the trampoline cannot be re-encoded.
    let before = site_from(&[0x48, 0x8b, 0x05, 0, 0, 0, 0], 0x40_0000);
    let site = Site {
        before,
        after: vec![],
    };
    assert!(matches!(
        trampoline(0x1_0000_0000, &site, 0x1_0000_1000, 0x40_0010, None),
        Err(ShimError::Encode { .. })
    ));
    assert!(trampoline(0x1_0000_0000, &Site::default(), 0x10, 0x40_0010, None).is_err());
    assert!(trampoline(
        0x1_0000_0000,
        &Site::default(),
        0x1_0000_1000,
        0x40_0010,
        None
    )
    .is_err());
    assert!(entry_stub(0x1_0000_0000, 0x1_0000_1000, 0x1000).is_err());
}

#[test]
fn jmp_rel32_encoding_and_range() {
    assert_eq!(jmp_rel32(0x1000, 0x1005), Some([0xe9, 0, 0, 0, 0]));
    assert_eq!(
        jmp_rel32(0x1000, 0x1000),
        Some([0xe9, 0xfb, 0xff, 0xff, 0xff])
    );
    assert_eq!(jmp_rel32(0x1000, 0x1_0000_1000), None);
    assert_eq!(jmp_rel32(u64::MAX - 2, 0), None);
}

#[test]
fn deterministic() {
    let a = trampoline(0x9000, &Site::default(), 0x8000, 0x1234, None).unwrap();
    let b = trampoline(0x9000, &Site::default(), 0x8000, 0x1234, None).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        entry_stub(1 << 20, 1 << 19, 0x1000).unwrap(),
        entry_stub(1 << 20, 1 << 19, 0x1000).unwrap()
    );
}

const PAGE: usize = 4096;

/// Two anonymous pages to run generated code in this process: code, then data.
struct Pages {
    mem: *mut libc::c_void,
}

impl Pages {
    fn new() -> Pages {
        // SAFETY: a plain anonymous mapping owned by the test.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(mem, libc::MAP_FAILED);
        Pages { mem }
    }

    fn code(&self) -> u64 {
        self.mem as u64
    }

    fn data(&self) -> u64 {
        self.code() + PAGE as u64
    }

    /// Copies each piece to its offset in the code page, then makes the page executable and
    /// not writable.
    fn load(&self, pieces: &[(usize, &[u8])]) {
        // SAFETY: writes within the mapping (the pieces fit in the code page), then changes
        // the protection of the mapping's own first page.
        unsafe {
            let p = self.mem as *mut u8;
            for (off, bytes) in pieces {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(*off), bytes.len());
            }
            assert_eq!(
                libc::mprotect(self.mem, PAGE, libc::PROT_READ | libc::PROT_EXEC),
                0
            );
        }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.mem, 2 * PAGE) };
    }
}

fn read(a: u64) -> u64 {
    // SAFETY: the tests read only their own data page.
    unsafe { *(a as *const u64) }
}

fn write(a: u64, v: u64) {
    // SAFETY: the tests write only their own data page.
    unsafe { *(a as *mut u64) = v }
}

/// Registers the trampoline test sets before its site and checks after it.
const VALUES: [(Register, i32); 12] = [
    (Register::RBX, 0x1000_0001),
    (Register::RBP, 0x1000_0002),
    (Register::RDI, 0x1000_0003),
    (Register::RSI, 0x1000_0004),
    (Register::RDX, 0x1000_0005),
    (Register::R8, 0x1000_0006),
    (Register::R9, 0x1000_0007),
    (Register::R10, 0x1000_0008),
    (Register::R12, 0x1000_0009),
    (Register::R13, 0x1000_000a),
    (Register::R14, 0x1000_000b),
    (Register::R15, 0x1000_000c),
];

/// The function the trampoline test relinks, at `code`: red-zone canaries, [`VALUES`] and CF
/// set, then the site (`mov eax, 39; syscall; mov [out], rax`), then checks that return 0 when
/// all held. Returns its bytes, the site and the address after the site.
fn function_under_test(code: u64, out: u64) -> (Vec<u8>, u64, u64) {
    let mut a = CodeAssembler::new(64).unwrap();
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r).unwrap();
    }
    for off in (8..=128).step_by(8) {
        a.mov(qword_ptr(rsp - off), 0x2200_0000 + off).unwrap();
    }
    for (reg, v) in VALUES {
        a.add_instruction(Instruction::with2(Code::Mov_r64_imm64, reg, v as u64).unwrap())
            .unwrap();
    }
    a.stc().unwrap();
    let mut site_label = a.create_label();
    a.set_label(&mut site_label).unwrap();
    a.mov(eax, 39).unwrap(); // getpid, displaced before the syscall
    a.syscall().unwrap();
    a.add_instruction(
        Instruction::with2(
            Code::Mov_rm64_r64,
            MemoryOperand::with_base_displ(Register::RIP, out as i64),
            Register::RAX,
        )
        .unwrap(),
    )
    .unwrap(); // displaced after the syscall, RIP-relative
    let mut resume = a.create_label();
    let mut fail = a.create_label();
    let mut done = a.create_label();
    a.set_label(&mut resume).unwrap();
    a.mov(eax, 100).unwrap();
    a.jnc(fail).unwrap();
    for (n, (reg, v)) in VALUES.iter().enumerate() {
        a.mov(eax, 1 + n as u32).unwrap();
        a.add_instruction(Instruction::with2(Code::Cmp_rm64_imm32, *reg, *v).unwrap())
            .unwrap();
        a.jne(fail).unwrap();
    }
    for off in (8..=128).step_by(8) {
        a.mov(eax, 1000 + off as u32).unwrap();
        a.cmp(qword_ptr(rsp - off), 0x2200_0000 + off).unwrap();
        a.jne(fail).unwrap();
    }
    a.xor(eax, eax).unwrap();
    a.set_label(&mut fail).unwrap();
    a.nop().unwrap();
    a.set_label(&mut done).unwrap();
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r).unwrap();
    }
    a.ret().unwrap();
    let res = a
        .assemble_options(code, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    let site = res.label_ip(&site_label).unwrap();
    let resume_ip = res.label_ip(&resume).unwrap();
    let _ = done;
    (res.inner.code_buffer, site, resume_ip)
}

/// A stand-in KML entry at `entry_at`: counts calls at `counter` and, like the kernel's,
/// clobbers the 16 bytes below its own stack pointer, rcx and r11.
fn stand_in_entry(entry_at: u64, counter: u64) -> Vec<u8> {
    let mut e = CodeAssembler::new(64).unwrap();
    e.pushfq().unwrap();
    e.add_instruction(
        Instruction::with1(
            Code::Inc_rm64,
            MemoryOperand::with_base_displ(Register::RIP, counter as i64),
        )
        .unwrap(),
    )
    .unwrap();
    e.popfq().unwrap();
    e.mov(rcx, 0x5a5a_5a5a_5a5a_5a5au64).unwrap();
    e.mov(qword_ptr(rsp - 8), rcx).unwrap();
    e.mov(qword_ptr(rsp - 16), rcx).unwrap();
    e.syscall().unwrap();
    e.mov(r11, 0x77u64).unwrap();
    e.ret().unwrap();
    e.assemble(entry_at).unwrap()
}

/// A function with one relinked site, loaded in [`Pages`]: see [`function_under_test`].
struct Relinked {
    pages: Pages,
    slot: u64,
    counter: u64,
    out: u64,
    entry_at: u64,
}

impl Relinked {
    /// The function at the start of the code page, its trampoline at 0x800 (probing when
    /// `probe_aux` names the aux vector entry its probe at 0xe00 reads), a stand-in KML entry
    /// at 0xc00; data: slot, call counter, the site's output.
    fn new(probe_aux: Option<u64>) -> Relinked {
        let pages = Pages::new();
        let (code, data) = (pages.code(), pages.data());
        let (slot, counter, out) = (data, data + 8, data + 16);
        let (tramp_at, entry_at, probe_at) = (code + 0x800, code + 0xc00, code + 0xe00);
        let (mut func, site, resume_ip) = function_under_test(code, out);
        let window = &func[(site - code) as usize..(resume_ip - code) as usize];
        let ins = decode(window, site);
        assert_eq!(
            mnemonics(&ins),
            [Mnemonic::Mov, Mnemonic::Syscall, Mnemonic::Mov]
        );
        let site_info = Site {
            before: vec![ins[0]],
            after: vec![ins[2]],
        };
        let probe = probe_aux.map(|_| probe_at);
        let t = trampoline(tramp_at, &site_info, slot, resume_ip, probe).unwrap();
        let w = &mut func[(site - code) as usize..(resume_ip - code) as usize];
        w.fill(INT3);
        w[..5].copy_from_slice(&jmp_rel32(site, tramp_at).unwrap());
        let entry = stand_in_entry(entry_at, counter);
        let probe_code = match probe_aux {
            Some(aux) => probe_for(probe_at, slot, aux).unwrap(),
            None => Vec::new(),
        };
        pages.load(&[
            (0, &func),
            (0x800, &t.bytes),
            (0xc00, &entry),
            (0xe00, &probe_code),
        ]);
        Relinked {
            pages,
            slot,
            counter,
            out,
            entry_at,
        }
    }

    /// Runs the function with the slot at `slot` (`None`: as it is); returns its verdict (0:
    /// registers, red zone, CF and the displaced store all held) after checking that the
    /// site's `getpid` returned this process's.
    fn run(&self, slot: Option<u64>) -> u64 {
        if let Some(v) = slot {
            write(self.slot, v);
        }
        write(self.out, 0);
        // SAFETY: the function follows the System V ABI (callee-saved registers restored).
        let f: extern "sysv64" fn() -> u64 =
            unsafe { std::mem::transmute(self.pages.code() as usize) };
        let verdict = f();
        assert_eq!(read(self.out), std::process::id() as u64);
        verdict
    }
}

/// Runs a trampoline for real, in this process: a hand-written function puts canaries in its
/// red zone and known values in every register, sets CF, and makes `getpid` through a patched
/// site; the check after the site fails unless only rax, rcx and r11 changed, the red zone and
/// CF survived, and the displaced RIP-relative store reached its data. Once with the slot 0
/// (real `syscall`), once with the slot pointing to a stand-in entry that counts calls and,
/// like the kernel's, clobbers the 16 bytes below its own stack pointer.
#[test]
fn trampoline_runs_both_paths_preserving_registers_red_zone_and_flags() {
    let r = Relinked::new(None);
    assert_eq!(
        r.run(Some(0)),
        0,
        "real path: a register, the red zone or CF changed"
    );
    assert_eq!(read(r.counter), 0);
    assert_eq!(
        r.run(Some(r.entry_at)),
        0,
        "call path: a register, the red zone or CF changed"
    );
    assert_eq!(read(r.counter), 1);
}

/// The probing trampoline of a shared object: from the unknown slot, the first call runs the
/// probe (`prctl(PR_GET_AUXV)` on this host, which publishes no `AT_SYSINFO`), which stores 0,
/// and is then made with the real `syscall`; everything the site's checks look at survives
/// the probe. A known entry is called, and 0 means the real path.
#[test]
fn probing_trampoline_asks_once_then_takes_the_known_path() {
    let r = Relinked::new(Some(AT_SYSINFO));
    assert_eq!(
        r.run(Some(SLOT_UNKNOWN)),
        0,
        "probe path: a register, the red zone or CF changed"
    );
    assert_eq!(read(r.slot), 0, "this host publishes no AT_SYSINFO");
    assert_eq!(read(r.counter), 0);
    assert_eq!(r.run(None), 0);
    assert_eq!(
        r.run(Some(r.entry_at)),
        0,
        "call path: a register, the red zone or CF changed"
    );
    assert_eq!(read(r.counter), 1);
    assert_eq!(read(r.slot), r.entry_at);
}

/// The probe, called alone, finds an entry that the host's aux vector has (`AT_PAGESZ`) and
/// stores its value.
#[test]
fn probe_stores_the_aux_vector_entry() {
    let r = Relinked::new(Some(6));
    write(r.slot, SLOT_UNKNOWN);
    // SAFETY: the probe preserves every register and returns with `ret`.
    let probe: extern "sysv64" fn() =
        unsafe { std::mem::transmute(r.pages.code() as usize + 0xe00) };
    probe();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    assert_eq!(read(r.slot), page);
}

#[test]
fn probing_trampoline_shape() {
    let t = trampoline(
        0x80_0000,
        &Site::default(),
        0x7f_f000,
        0x40_1007,
        Some(0x80_1000),
    )
    .unwrap();
    assert_eq!(t.own, 0..14);
    assert_eq!(t.lowered, [6, 7, 10, 11]);
    let ins = decode(&t.bytes, 0x80_0000);
    assert_eq!(ins[13].code(), Code::Syscall);
    let call = (ins[6].ip() - 0x80_0000) as usize;
    assert_eq!(t.bytes[call..call + 2], [0xff, 0xd1], "call rcx");
    assert_eq!(ins[10].near_branch_target(), 0x80_1000);
    assert_eq!(
        ins[12].near_branch_target(),
        0x80_0000,
        "back to the slot test"
    );
    assert_eq!(&t.bytes[t.syscall_offset..t.syscall_offset + 2], &SYSCALL);
    // Out of range of the probe: an error, not a panic or an absolute jump.
    assert!(trampoline(
        0x1_0000_0000,
        &Site::default(),
        0x1_0000_1000,
        0x40,
        Some(0x10)
    )
    .is_err());
}

/// Registers the entry stub test sets before the stub and checks at the original entry.
const ENTRY_REGS: [(Register, u64); 13] = [
    (Register::RAX, 0x3000_0001),
    (Register::RBX, 0x3000_0002),
    (Register::RCX, 0x3000_0003),
    (Register::RDX, 0x3000_0004),
    (Register::RSI, 0x3000_0005),
    (Register::RDI, 0x3000_0006),
    (Register::RBP, 0x3000_0007),
    (Register::R8, 0x3000_0008),
    (Register::R9, 0x3000_0009),
    (Register::R10, 0x3000_000a),
    (Register::R11, 0x3000_000b),
    (Register::R13, 0x3000_000d),
    (Register::R14, 0x3000_000e),
];

/// The entry stub test's harness at `code`, called with the entry rsp: saves its own rsp at
/// `saved_rsp`, switches to the given stack, sets [`ENTRY_REGS`] and CF and jumps to the stub
/// at `stub_at`; at the original entry, checks them and rsp and returns 0 when all held.
/// Returns its bytes and the original entry's address.
fn entry_harness(code: u64, saved_rsp: u64, stub_at: u64) -> (Vec<u8>, u64) {
    let mem_rip = |a: u64| MemoryOperand::with_base_displ(Register::RIP, a as i64);
    let mut a = CodeAssembler::new(64).unwrap();
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r).unwrap();
    }
    a.add_instruction(
        Instruction::with2(Code::Mov_rm64_r64, mem_rip(saved_rsp), Register::RSP).unwrap(),
    )
    .unwrap();
    a.mov(rsp, rdi).unwrap();
    a.mov(r12, rdi).unwrap(); // the expected rsp at the original entry
    for (r, v) in ENTRY_REGS {
        a.add_instruction(Instruction::with2(Code::Mov_r64_imm64, r, v).unwrap())
            .unwrap();
    }
    a.stc().unwrap();
    a.add_instruction(Instruction::with_branch(Code::Jmp_rel32_64, stub_at).unwrap())
        .unwrap();
    let mut entry = a.create_label();
    let mut fail = a.create_label();
    a.set_label(&mut entry).unwrap();
    a.mov(r15, 100u64).unwrap();
    a.jnc(fail).unwrap();
    a.mov(r15, 101u64).unwrap();
    a.cmp(rsp, r12).unwrap();
    a.jne(fail).unwrap();
    for (n, (r, v)) in ENTRY_REGS.iter().enumerate() {
        a.mov(r15, 1 + n as u64).unwrap();
        a.add_instruction(Instruction::with2(Code::Cmp_rm64_imm32, *r, *v as i32).unwrap())
            .unwrap();
        a.jne(fail).unwrap();
    }
    a.xor(r15, r15).unwrap();
    a.set_label(&mut fail).unwrap();
    a.add_instruction(
        Instruction::with2(Code::Mov_r64_rm64, Register::RSP, mem_rip(saved_rsp)).unwrap(),
    )
    .unwrap();
    a.mov(rax, r15).unwrap();
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r).unwrap();
    }
    a.ret().unwrap();
    let res = a
        .assemble_options(code, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    let entry_ip = res.label_ip(&entry).unwrap();
    (res.inner.code_buffer, entry_ip)
}

/// Runs the entry stub for real on a hand-made initial stack: it must store AT_SYSINFO (or 0)
/// in the slot and reach the original entry with rsp, rdx, every other register and CF as
/// they were, without writing above the entry rsp.
#[test]
fn entry_stub_runs_and_preserves_the_entry_state() {
    let pages = Pages::new();
    let code = pages.code();
    let data = pages.data();
    let slot = data;
    let saved_rsp = data + 8;
    let stub_at = code + 0x800;
    let (harness, entry_ip) = entry_harness(code, saved_rsp, stub_at);
    let stub = entry_stub(stub_at, slot, entry_ip).unwrap();
    pages.load(&[(0, &harness), (0x800, &stub)]);
    // SAFETY: the harness follows the System V ABI and restores its own stack.
    let run: extern "sysv64" fn(*mut u64) -> u64 = unsafe { std::mem::transmute(code as usize) };

    for (aux, want) in [
        (
            vec![
                (6u64, 4096u64),
                (32, 0xffff_ffff_ff60_0000),
                (33, 0x7fff_0000),
            ],
            0xffff_ffff_ff60_0000u64,
        ),
        (vec![(6, 4096), (33, 0x7fff_0000)], 0),
        (vec![], 0),
    ] {
        // 32 words of room below the entry rsp, then argc, argv, NULL, envp, NULL, auxv, AT_NULL.
        let mut stack = vec![0xeeee_eeee_eeee_eeeeu64; 32];
        let top = stack.len();
        stack.extend([2, 0x1111, 0x2222, 0, 0x3333, 0x4444, 0]);
        for (k, v) in &aux {
            stack.extend([*k, *v]);
        }
        stack.extend([0, 0]);
        let above = stack[top..].to_vec();
        write(slot, 0x5555);
        // SAFETY: `top` < `stack.len()`, so the pointer stays inside the vector.
        let entry_sp = unsafe { stack.as_mut_ptr().add(top) };
        assert_eq!(
            run(entry_sp),
            0,
            "the original entry saw a changed register, rsp or CF"
        );
        assert_eq!(read(slot), want);
        assert_eq!(
            stack[top..],
            above[..],
            "the stub wrote above the entry rsp"
        );
    }
}

/// musl's `__syscall_cp_asm` before its `syscall`, decoded at `at` (the `jne` goes 36 bytes on).
fn musl_cancel_body(at: u64) -> Vec<Instruction> {
    let bytes = [
        0x8b, 0x07, 0x85, 0xc0, 0x75, 0x24, 0x49, 0x89, 0xfb, 0x48, 0x89, 0xf0, 0x48, 0x89, 0xd7,
        0x48, 0x89, 0xce, 0x4c, 0x89, 0xc2, 0x4d, 0x89, 0xca, 0x4c, 0x8b, 0x44, 0x24, 0x08, 0x4c,
        0x8b, 0x4c, 0x24, 0x10, 0x4c, 0x89, 0x5c, 0x24, 0x08,
    ];
    Decoder::with_ip(64, &bytes, at, DecoderOptions::NONE)
        .into_iter()
        .collect()
}

#[test]
fn a_cancellation_point_copy_has_both_calls_in_its_range() {
    let (orig, at, slot) = (0x40_1000u64, 0x50_0000u64, 0x4f_f000u64);
    let body = musl_cancel_body(orig);
    let c = cancel_point(at, &body, slot, orig + 41, None).unwrap();
    let end = at + c.end_offset as u64;
    // The real path's syscall ends the range, and the KML path pushes that same end.
    assert_eq!(c.syscall_offset + 2, c.end_offset);
    assert_eq!(&c.bytes[c.syscall_offset..c.end_offset], &SYSCALL);
    let code: Vec<Instruction> = Decoder::with_ip(64, &c.bytes, at, DecoderOptions::NONE)
        .into_iter()
        .collect();
    let lea = code.iter().find(|i| i.code() == Code::Lea_r64_m).unwrap();
    assert_eq!(lea.ip_rel_memory_address(), end);
    let jne = &code[2];
    assert_eq!(
        jne.near_branch_target(),
        orig + 6 + 0x24,
        "the cancel path, as before"
    );
    assert!(code[..code.len() - 1].iter().all(|i| i.ip() < end));
    // A call in the body cannot be copied.
    let mut with_call = body.clone();
    with_call[3] = Instruction::with_branch(Code::Call_rel32_64, 0x40_2000).unwrap();
    assert!(matches!(
        cancel_point(at, &with_call, slot, orig + 41, None),
        Err(ShimError::NotRelocatable { .. })
    ));
}

#[test]
fn a_probing_cancellation_point_asks_before_its_range() {
    let (orig, at, slot, probe) = (0x40_1000u64, 0x50_0000u64, 0x4f_f000u64, 0x50_1000u64);
    let body = musl_cancel_body(orig);
    let c = cancel_point(at, &body, slot, orig + 41, Some(probe)).unwrap();
    let code: Vec<Instruction> = Decoder::with_ip(64, &c.bytes, at, DecoderOptions::NONE)
        .into_iter()
        .collect();
    assert_eq!(code[0].code(), Code::Cmp_rm64_imm8);
    assert_eq!(code[1].near_branch_target(), at + c.begin_offset as u64);
    assert_eq!(code[2].near_branch_target(), probe);
    assert_eq!(
        code[3].ip(),
        at + c.begin_offset as u64,
        "the flag test begins the range"
    );
    assert_eq!(c.instruction_offsets.len(), 3 + body.len() + 7);
    assert_eq!(c.syscall_offset + 2, c.end_offset);
}
