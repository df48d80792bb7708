//! The machine code that `lupine-relink` adds to an x86-64 program.
//!
//! Everything here is position independent (only RIP-relative addressing and relative
//! branches), so it serves `ET_EXEC` and static-PIE programs alike: the addresses passed in are
//! link-time virtual addresses, and the code keeps working when the kernel slides the whole image.
//!
//! # The slot
//!
//! One 8-byte writable word (in its own read-write `PT_LOAD`). The entry stub stores the value of
//! the aux vector's `AT_SYSINFO` (32) entry there, or 0 when the kernel gave none (any kernel
//! without Kernel Mode Linux: x86-64 Linux only passes `AT_SYSINFO_EHDR`). Nothing else writes it.
//!
//! # Entry stub ([`entry_stub`])
//!
//! The program's new `e_entry`. At process entry `rsp` points at `argc`, followed by `argv[]`,
//! a NULL, `envp[]`, a NULL and the aux vector (pairs of `u64`, ended by `AT_NULL`). Nothing
//! lives below `rsp` yet, so the stub saves what it touches there:
//!
//! ```text
//! stub:   pushfq                        ; rflags, rax and rcx saved below the entry rsp
//!         push  rax
//!         push  rcx
//!         mov   rax, [rsp+24]           ; argc
//!         lea   rax, [rsp+rax*8+40]     ; &envp[0] = entry rsp + 8 + 8*argc + 8
//! .env:   mov   rcx, [rax]
//!         add   rax, 8
//!         test  rcx, rcx
//!         jnz   .env                    ; rax = &auxv[0]
//! .aux:   mov   rcx, [rax]
//!         test  rcx, rcx
//!         jz    .store                  ; AT_NULL: rcx = 0
//!         add   rax, 16
//!         cmp   rcx, 32                 ; AT_SYSINFO
//!         jne   .aux
//!         mov   rcx, [rax-8]            ; its value
//! .store: mov   [rip+slot], rcx
//!         pop   rcx
//!         pop   rax
//!         popfq
//!         jmp   original_entry          ; rsp, rdx and every other register as the kernel left them
//! ```
//!
//! It makes no system call and writes no memory above the entry `rsp`.
//!
//! # Trampoline ([`trampoline`])
//!
//! Each rewritten site becomes `jmp rel32` to its trampoline (the rest of the patched window is
//! `int3`). The trampoline replays the instructions that the jump displaced (`before` the
//! `syscall` and `after` it, re-encoded at their new address so that RIP-relative operands still
//! reach the same bytes), and performs the system call through the slot when it is set:
//!
//! ```text
//! tramp:  <before...>                   ; displaced instructions that preceded the syscall
//!         mov   rcx, [rip+slot]         ; rcx and r11 are free: syscall clobbers them
//!         jrcxz .real                   ; flags untouched on both paths
//!         lea   rsp, [rsp-128]          ; step over the caller's red zone
//!         call  rcx                     ; KML entry: number in rax, args in rdi rsi rdx r10 r8 r9
//!         lea   rsp, [rsp+128]
//!         jmp   .after
//! .real:  syscall                       ; a plain 2-byte syscall: SA_RESTART rewinds rip onto it
//! .after: <after...>                    ; displaced instructions that followed the syscall
//!         jmp   resume                  ; the first byte after the patched window
//! ```
//!
//! On the real path nothing touches the stack and rflags are exactly what the `syscall`
//! leaves; on the KML path the only memory written is the return address of `call`, 136 bytes
//! below the caller's `rsp` (below the 128-byte red zone), and the entry itself must preserve
//! rflags and every register but rax, rcx and r11, as a `syscall` does.
//!
//! # Shared objects: the probing trampoline and [`probe`]
//!
//! A shared library never sees the aux vector: the kernel hands it to the program's (or the
//! dynamic linker's) entry point, and the library is loaded later, perhaps by a program that
//! was not relinked. Its slot therefore starts at [`SLOT_UNKNOWN`] (1: not a code address), and
//! its trampolines ask the kernel the first time they run:
//!
//! ```text
//! tramp:  <before...>
//! .check: mov   rcx, [rip+slot]
//!         jrcxz .real                   ; 0: no KML entry
//!         lea   rcx, [rcx-1]            ; lea and jrcxz leave the flags alone
//!         jrcxz .probe                  ; 1: not known yet
//!         lea   rcx, [rcx+1]
//!         lea   rsp, [rsp-128]
//!         call  rcx                     ; KML entry (the kernel knows this call again)
//!         lea   rsp, [rsp+128]
//!         jmp   .after
//! .probe: lea   rsp, [rsp-128]
//!         call  probe                   ; stores the entry or 0; preserves everything
//!         lea   rsp, [rsp+128]
//!         jmp   .check
//! .real:  syscall
//! .after: <after...>
//!         jmp   resume
//! ```
//!
//! The probe (one per library) calls `prctl(PR_GET_AUXV)` with a real `syscall`, reads
//! `AT_SYSINFO` from the copy of the aux vector the kernel returns, and stores it in the slot,
//! or 0 when the kernel fails the call (a kernel without `PR_GET_AUXV`: Linux before 6.4
//! without the KML series) or gives no `AT_SYSINFO` (no KML, or a process at CPL 3). It
//! needs nothing but the stack: no relocation, no TLS, no C library, no `/proc`, so it works in
//! the dynamic linker before it has relocated itself and in a PID 1 before any mount. Threads
//! that race store the same value.
//!
//! # Cancellation points ([`cancel_point`])
//!
//! A C library's cancellation point is copied whole instead, with the KML call inside the
//! range its cancellation handler tests: see the `cancel` module.

mod cancel;
pub use cancel::{cancel_point, check_body, CancelCopy};

use iced_x86::code_asm::*;
use iced_x86::{
    BlockEncoderOptions, Code, Decoder, DecoderOptions, Instruction, MemoryOperand, Register,
};
use std::fmt;

/// The bytes the added executable segment starts with; their presence means "already relinked".
pub const MARKER: &[u8; 14] = b"LUPINE-RELINK\0";
/// Version of the layout and code shapes, written right after [`MARKER`] as a little-endian u16.
pub const FORMAT_VERSION: u16 = 1;
/// `AT_SYSINFO`: the aux vector entry holding the KML system call entry.
pub const AT_SYSINFO: u64 = 32;
/// The System V x86-64 red zone below `rsp` that leaf code may use without moving `rsp`.
pub const RED_ZONE: i64 = 128;
/// Length of the `jmp rel32` that replaces a site.
pub const JMP_REL32_LEN: usize = 5;
/// The `syscall` instruction.
pub const SYSCALL: [u8; 2] = [0x0f, 0x05];
/// The `int3` instruction, used to fill the rest of a patched window.
pub const INT3: u8 = 0xcc;
/// A shared object's slot before its first system call has asked the kernel.
pub const SLOT_UNKNOWN: u64 = 1;
/// `prctl` option that copies the aux vector (Linux 6.4; 6.1 with the KML series).
pub const PR_GET_AUXV: u32 = 0x4155_5856;
const SYS_PRCTL: u32 = 157;
/// Stack bytes the probe reads the aux vector into: 6.1's whole `saved_auxv` is 416 bytes on
/// x86-64, and the kernel puts `AT_SYSINFO` first.
const AUXV_BUF: i32 = 512;

/// Why code could not be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimError {
    /// iced-x86 refused an instruction (for example a RIP-relative operand or a branch whose
    /// target is more than 2 GiB from the address it was re-encoded at).
    Encode { at: u64, reason: String },
    /// A displaced instruction is not one a trampoline may replay (control flow, a system call,
    /// an instruction that reads or writes rcx/r11 or rsp-relative state that the trampoline
    /// changes).
    NotRelocatable { ip: u64, reason: &'static str },
    /// The `syscall` of the generated trampoline did not come out where it was expected.
    Internal(&'static str),
}

impl fmt::Display for ShimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShimError::Encode { at, reason } => {
                write!(f, "cannot encode code at {at:#x}: {reason}")
            }
            ShimError::NotRelocatable { ip, reason } => {
                write!(f, "instruction at {ip:#x} cannot be moved: {reason}")
            }
            ShimError::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}

impl std::error::Error for ShimError {}

fn enc(at: u64) -> impl Fn(IcedError) -> ShimError {
    move |e| ShimError::Encode {
        at,
        reason: e.to_string(),
    }
}

/// A rewritten system call site: the instructions displaced by the `jmp rel32`, as decoded at
/// their original addresses (RIP-relative operands hold their absolute targets, as iced-x86
/// decodes them). The `syscall` itself is between `before` and `after` and is not listed.
#[derive(Debug, Clone, Default)]
pub struct Site {
    pub before: Vec<Instruction>,
    pub after: Vec<Instruction>,
}

/// A generated trampoline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trampoline {
    /// The machine code, to be placed at the address it was generated for.
    pub bytes: Vec<u8>,
    /// Offset of the real-path `syscall` (`0f 05`) in `bytes`.
    pub syscall_offset: usize,
    /// Offset of each instruction in `bytes`: the `before` ones, then the trampoline's own
    /// (indices `own`), then the `after` ones, then the final `jmp`.
    pub instruction_offsets: Vec<usize>,
    /// Indices of the trampoline's own instructions, from `mov rcx` to the `syscall`.
    pub own: std::ops::Range<usize>,
    /// Indices of the instructions that run with `rsp` 128 bytes lower (the `call`s and the
    /// `lea` after each).
    pub lowered: Vec<usize>,
}

/// Whether iced-x86 and the trampoline shape allow `instr` to be displaced into a trampoline.
/// `Err` carries the reason it may not.
pub fn check_relocatable(instr: &Instruction) -> Result<(), &'static str> {
    use iced_x86::FlowControl;
    if instr.is_invalid() {
        return Err("undecodable");
    }
    if instr.flow_control() != FlowControl::Next {
        return Err("control flow");
    }
    match instr.code() {
        Code::Syscall | Code::Sysenter | Code::Int3 | Code::Int_imm8 | Code::Into | Code::Int1 => {
            return Err("system call or interrupt")
        }
        Code::Endbr64 | Code::Endbr32 => return Err("endbr marks a branch target"),
        _ => {}
    }
    // The trampoline may only rely on the block encoder for RIP-relative memory operands; the
    // instruction must not mention rip in any other way.
    for i in 0..instr.op_count() {
        if let Ok(iced_x86::OpKind::Register) = instr.try_op_kind(i) {
            if instr.op_register(i) == Register::RIP || instr.op_register(i) == Register::EIP {
                return Err("reads rip");
            }
        }
    }
    if instr.memory_base() == Register::EIP {
        return Err("EIP-relative operand");
    }
    if instr.memory_index() == Register::RIP {
        return Err("reads rip");
    }
    Ok(())
}

/// Generates the entry stub to be placed at `stub_addr` (see the crate documentation for its
/// exact code), storing `AT_SYSINFO` or 0 in the 8-byte slot at `slot_addr` and jumping to
/// `original_entry`. All three are link-time addresses of the same image.
pub fn entry_stub(
    stub_addr: u64,
    slot_addr: u64,
    original_entry: u64,
) -> Result<Vec<u8>, ShimError> {
    let e = enc(stub_addr);
    let mut a = CodeAssembler::new(64).map_err(&e)?;
    let mut env = a.create_label();
    let mut aux = a.create_label();
    let mut store = a.create_label();
    a.pushfq().map_err(&e)?;
    a.push(rax).map_err(&e)?;
    a.push(rcx).map_err(&e)?;
    a.mov(rax, qword_ptr(rsp + 24)).map_err(&e)?;
    a.lea(rax, qword_ptr(rsp + rax * 8 + 40)).map_err(&e)?;
    a.set_label(&mut env).map_err(&e)?;
    a.mov(rcx, qword_ptr(rax)).map_err(&e)?;
    a.add(rax, 8).map_err(&e)?;
    a.test(rcx, rcx).map_err(&e)?;
    a.jnz(env).map_err(&e)?;
    a.set_label(&mut aux).map_err(&e)?;
    a.mov(rcx, qword_ptr(rax)).map_err(&e)?;
    a.test(rcx, rcx).map_err(&e)?;
    a.jz(store).map_err(&e)?;
    a.add(rax, 16).map_err(&e)?;
    a.cmp(rcx, AT_SYSINFO as i32).map_err(&e)?;
    a.jne(aux).map_err(&e)?;
    a.mov(rcx, qword_ptr(rax - 8)).map_err(&e)?;
    a.set_label(&mut store).map_err(&e)?;
    a.add_instruction(
        Instruction::with2(Code::Mov_rm64_r64, rip_rel(slot_addr), Register::RCX).map_err(&e)?,
    )
    .map_err(&e)?;
    a.pop(rcx).map_err(&e)?;
    a.pop(rax).map_err(&e)?;
    a.popfq().map_err(&e)?;
    a.add_instruction(Instruction::with_branch(Code::Jmp_rel32_64, original_entry).map_err(&e)?)
        .map_err(&e)?;
    let bytes = a.assemble(stub_addr).map_err(&e)?;
    // Position independence: the block encoder turns out-of-range targets into absolute ones.
    let mut d = Decoder::with_ip(64, &bytes, stub_addr, DecoderOptions::NONE);
    let mut n = 0;
    let mut last = Instruction::default();
    let mut stores = 0;
    while d.can_decode() {
        last = d.decode();
        n += 1;
        if last.memory_base() == Register::RIP && last.ip_rel_memory_address() == slot_addr {
            stores += 1;
        }
        if last.is_invalid() || last.memory_base() == Register::EIP {
            n = 0;
            break;
        }
    }
    if n != 21
        || stores != 1
        || last.code() != Code::Jmp_rel32_64
        || last.near_branch_target() != original_entry
    {
        return Err(ShimError::Encode {
            at: stub_addr,
            reason: "the slot or the original entry is out of the ±2 GiB range".into(),
        });
    }
    Ok(bytes)
}

fn rip_rel(target: u64) -> MemoryOperand {
    MemoryOperand::with_base_displ(Register::RIP, target as i64)
}

/// Generates the trampoline of one site, to be placed at `tramp_addr` (see the crate
/// documentation for its exact code). `slot_addr` is the slot, `resume_addr` the first byte
/// after the patched window; `probe` is the address of the [`probe`] routine for a shared
/// object's probing trampoline, `None` for a program's (whose entry stub sets the slot).
pub fn trampoline(
    tramp_addr: u64,
    site: &Site,
    slot_addr: u64,
    resume_addr: u64,
    probe: Option<u64>,
) -> Result<Trampoline, ShimError> {
    for i in site.before.iter().chain(site.after.iter()) {
        check_relocatable(i).map_err(|reason| ShimError::NotRelocatable { ip: i.ip(), reason })?;
    }
    let e = enc(tramp_addr);
    let mut a = CodeAssembler::new(64).map_err(&e)?;
    let mut check = a.create_label();
    let mut real = a.create_label();
    let mut after = a.create_label();
    let mut probe_path = a.create_label();
    for i in &site.before {
        a.add_instruction(displaced(i)).map_err(&e)?;
    }
    a.set_label(&mut check).map_err(&e)?;
    a.add_instruction(
        Instruction::with2(Code::Mov_r64_rm64, Register::RCX, rip_rel(slot_addr)).map_err(&e)?,
    )
    .map_err(&e)?;
    a.jrcxz(real).map_err(&e)?;
    if probe.is_some() {
        a.lea(rcx, qword_ptr(rcx - 1)).map_err(&e)?;
        a.jrcxz(probe_path).map_err(&e)?;
        a.lea(rcx, qword_ptr(rcx + 1)).map_err(&e)?;
    }
    // `call rcx` (ff d1): the KML kernel recognises it before a return address, to show a
    // signal handler the call about to be made again.
    a.lea(rsp, qword_ptr(rsp - RED_ZONE as i32)).map_err(&e)?;
    a.call(rcx).map_err(&e)?;
    a.lea(rsp, qword_ptr(rsp + RED_ZONE as i32)).map_err(&e)?;
    a.jmp(after).map_err(&e)?;
    if let Some(p) = probe {
        a.set_label(&mut probe_path).map_err(&e)?;
        a.lea(rsp, qword_ptr(rsp - RED_ZONE as i32)).map_err(&e)?;
        a.add_instruction(Instruction::with_branch(Code::Call_rel32_64, p).map_err(&e)?)
            .map_err(&e)?;
        a.lea(rsp, qword_ptr(rsp + RED_ZONE as i32)).map_err(&e)?;
        a.jmp(check).map_err(&e)?;
    }
    a.set_label(&mut real).map_err(&e)?;
    a.syscall().map_err(&e)?;
    a.set_label(&mut after).map_err(&e)?;
    for i in &site.after {
        a.add_instruction(displaced(i)).map_err(&e)?;
    }
    a.add_instruction(Instruction::with_branch(Code::Jmp_rel32_64, resume_addr).map_err(&e)?)
        .map_err(&e)?;
    let res = a
        .assemble_options(
            tramp_addr,
            BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )
        .map_err(&e)?;
    let syscall_ip = res.label_ip(&real).map_err(&e)?;
    let bytes = res.inner.code_buffer;
    let syscall_offset = usize::try_from(syscall_ip.wrapping_sub(tramp_addr))
        .map_err(|_| ShimError::Internal("syscall offset"))?;
    let shape = Shape {
        at: tramp_addr,
        slot_addr,
        resume_addr,
        probe,
    };
    let instruction_offsets = shape.verify(&bytes, site, syscall_offset)?;
    let nb = site.before.len();
    let own = nb..nb + shape.own_len();
    let lowered = match probe {
        None => vec![nb + 3, nb + 4],
        Some(_) => vec![nb + 6, nb + 7, nb + 10, nb + 11],
    };
    Ok(Trampoline {
        bytes,
        syscall_offset,
        instruction_offsets,
        own,
        lowered,
    })
}

/// What a generated trampoline must be.
struct Shape {
    at: u64,
    slot_addr: u64,
    resume_addr: u64,
    probe: Option<u64>,
}

impl Shape {
    /// The number of the trampoline's own instructions, up to and including the `syscall`.
    fn own_len(&self) -> usize {
        if self.probe.is_some() {
            14
        } else {
            7
        }
    }

    /// Decodes a generated trampoline and checks it is exactly the documented shape. The block
    /// encoder silently rewrites what does not fit (a far branch becomes `jmp [rip+x]` through
    /// an absolute address, a far RIP-relative operand becomes EIP-relative), neither of which
    /// is position independent: such output is refused here.
    fn verify(
        &self,
        bytes: &[u8],
        site: &Site,
        syscall_offset: usize,
    ) -> Result<Vec<usize>, ShimError> {
        let at = self.at;
        let bad = |why: &'static str| ShimError::Encode {
            at,
            reason: format!(
                "generated trampoline is not position independent or not in shape: {why}"
            ),
        };
        let got = decode_generated(at, bytes).ok_or_else(|| bad("undecodable output"))?;
        let nb = site.before.len();
        let na = site.after.len();
        let own = self.own_len();
        if got.len() != nb + own + na + 1 {
            return Err(bad("unexpected instruction count (a target out of range?)"));
        }
        let same = |orig: &Instruction, new: &Instruction| -> bool {
            if orig.code() != new.code() || new.memory_base() == Register::EIP {
                return false;
            }
            if orig.is_ip_rel_memory_operand() {
                new.is_ip_rel_memory_operand()
                    && new.ip_rel_memory_address() == orig.ip_rel_memory_address()
            } else {
                new.is_ip_rel_memory_operand() == orig.is_ip_rel_memory_operand()
            }
        };
        let displaced_ok = site.before.iter().zip(&got[..nb]).all(|(o, n)| same(o, n))
            && site
                .after
                .iter()
                .zip(&got[nb + own..nb + own + na])
                .all(|(o, n)| same(o, n));
        if !displaced_ok {
            return Err(bad("a displaced instruction changed"));
        }
        let c = &got[nb..nb + own];
        let sys = &c[own - 1];
        let tail = &got[nb + own + na];
        let ok = self.own_ok(c)
            && sys.code() == Code::Syscall
            && sys.ip() == at.wrapping_add(syscall_offset as u64)
            && c[1].code() == Code::Jrcxz_rel8_64
            && c[1].near_branch_target() == sys.ip()
            && matches!(tail.code(), Code::Jmp_rel32_64 | Code::Jmp_rel8_64)
            && tail.near_branch_target() == self.resume_addr;
        if !ok {
            return Err(bad("the trampoline body is not the documented sequence"));
        }
        Ok(got
            .iter()
            .map(|i| i.ip().wrapping_sub(at) as usize)
            .collect())
    }

    /// The trampoline's own instructions `c` (from `mov rcx` to `syscall`) are as documented.
    fn own_ok(&self, c: &[Instruction]) -> bool {
        let slot_load = |i: &Instruction, code: Code| {
            i.code() == code
                && i.memory_base() == Register::RIP
                && i.ip_rel_memory_address() == self.slot_addr
        };
        let lea_rsp = |i: &Instruction, d: i64| {
            i.code() == Code::Lea_r64_m
                && i.op0_register() == Register::RSP
                && i.memory_base() == Register::RSP
                && i.memory_displacement64() as i64 == d
        };
        let lea_rcx = |i: &Instruction, d: i64| {
            i.code() == Code::Lea_r64_m
                && i.op0_register() == Register::RCX
                && i.memory_base() == Register::RCX
                && i.memory_displacement64() as i64 == d
        };
        // The call path: lea rsp, call rcx, lea rsp, jmp .after.
        let call_path = |c: &[Instruction]| {
            lea_rsp(&c[0], -RED_ZONE)
                && c[1].code() == Code::Call_rm64
                && c[1].op0_register() == Register::RCX
                && lea_rsp(&c[2], RED_ZONE)
                && matches!(c[3].code(), Code::Jmp_rel8_64 | Code::Jmp_rel32_64)
                && c[3].near_branch_target() == c[c.len() - 1].next_ip()
        };
        if !slot_load(&c[0], Code::Mov_r64_rm64) || c[0].op0_register() != Register::RCX {
            return false;
        }
        match self.probe {
            None => call_path(&c[2..]),
            Some(p) => {
                lea_rcx(&c[2], -1)
                    && c[3].code() == Code::Jrcxz_rel8_64
                    && c[3].near_branch_target() == c[9].ip()
                    && lea_rcx(&c[4], 1)
                    && call_path(&c[5..])
                    && lea_rsp(&c[9], -RED_ZONE)
                    && c[10].code() == Code::Call_rel32_64
                    && c[10].near_branch_target() == p
                    && lea_rsp(&c[11], RED_ZONE)
                    && matches!(c[12].code(), Code::Jmp_rel8_64 | Code::Jmp_rel32_64)
                    && c[12].near_branch_target() == c[0].ip()
            }
        }
    }
}

/// Generates the probe routine of a shared object, to be placed at `at`, for the slot at
/// `slot_addr` (see the crate documentation). Called with `call`; preserves every register
/// and the flags, and writes only below `rsp`.
pub fn probe(at: u64, slot_addr: u64) -> Result<Vec<u8>, ShimError> {
    probe_for(at, slot_addr, AT_SYSINFO)
}

/// [`probe`], reading the aux vector entry `aux_type` (tests read one the host has).
pub(crate) fn probe_for(at: u64, slot_addr: u64, aux_type: u64) -> Result<Vec<u8>, ShimError> {
    const SAVED: [AsmRegister64; 8] = [rax, rcx, rdx, rsi, rdi, r8, r10, r11];
    let e = enc(at);
    let mut a = CodeAssembler::new(64).map_err(&e)?;
    let mut next = a.create_label();
    let mut store = a.create_label();
    a.pushfq().map_err(&e)?;
    for r in SAVED {
        a.push(r).map_err(&e)?;
    }
    a.lea(rsp, qword_ptr(rsp - AUXV_BUF)).map_err(&e)?;
    a.mov(eax, SYS_PRCTL).map_err(&e)?;
    a.mov(edi, PR_GET_AUXV).map_err(&e)?;
    a.mov(rsi, rsp).map_err(&e)?;
    a.mov(edx, AUXV_BUF as u32).map_err(&e)?;
    a.xor(r10d, r10d).map_err(&e)?;
    a.xor(r8d, r8d).map_err(&e)?;
    a.syscall().map_err(&e)?;
    a.xor(ecx, ecx).map_err(&e)?;
    a.test(rax, rax).map_err(&e)?;
    a.jle(store).map_err(&e)?; // an error: no PR_GET_AUXV
    a.mov(edx, AUXV_BUF as u32).map_err(&e)?;
    a.cmp(rax, rdx).map_err(&e)?;
    a.cmova(rax, rdx).map_err(&e)?;
    a.lea(rdx, qword_ptr(rsp + rax)).map_err(&e)?; // the end of what was copied
    a.mov(rsi, rsp).map_err(&e)?;
    a.set_label(&mut next).map_err(&e)?;
    a.lea(rax, qword_ptr(rsi + 16)).map_err(&e)?;
    a.cmp(rax, rdx).map_err(&e)?;
    a.ja(store).map_err(&e)?;
    a.mov(rax, qword_ptr(rsi)).map_err(&e)?;
    a.test(rax, rax).map_err(&e)?;
    a.jz(store).map_err(&e)?; // AT_NULL
    a.add(rsi, 16).map_err(&e)?;
    a.cmp(rax, aux_type as i32).map_err(&e)?;
    a.jne(next).map_err(&e)?;
    a.mov(rcx, qword_ptr(rsi - 8)).map_err(&e)?;
    a.cmp(rcx, SLOT_UNKNOWN as i32).map_err(&e)?;
    a.jne(store).map_err(&e)?;
    a.xor(ecx, ecx).map_err(&e)?; // 1 is no code address: never store it
    a.set_label(&mut store).map_err(&e)?;
    a.add_instruction(
        Instruction::with2(Code::Mov_rm64_r64, rip_rel(slot_addr), Register::RCX).map_err(&e)?,
    )
    .map_err(&e)?;
    a.lea(rsp, qword_ptr(rsp + AUXV_BUF)).map_err(&e)?;
    for r in SAVED.iter().rev() {
        a.pop(*r).map_err(&e)?;
    }
    a.popfq().map_err(&e)?;
    a.ret().map_err(&e)?;
    let bytes = a.assemble(at).map_err(&e)?;
    let stores = decode_generated(at, &bytes)
        .ok_or(ShimError::Internal("undecodable probe"))?
        .iter()
        .filter(|i| i.memory_base() == Register::RIP && i.ip_rel_memory_address() == slot_addr)
        .count();
    if stores != 1 {
        return Err(ShimError::Encode {
            at,
            reason: "the slot is out of the ±2 GiB range of the probe".into(),
        });
    }
    Ok(bytes)
}

/// The instructions of generated code at `at`, or `None` when any is undecodable or
/// EIP-relative (the block encoder's way out of a RIP-relative operand out of range).
fn decode_generated(at: u64, bytes: &[u8]) -> Option<Vec<Instruction>> {
    Decoder::with_ip(64, bytes, at, DecoderOptions::NONE)
        .into_iter()
        .map(|i| (!i.is_invalid() && i.memory_base() != Register::EIP).then_some(i))
        .collect()
}

/// A displaced instruction with its IP cleared: the block encoder must not mistake it for the
/// target of a branch in the trampoline (IP 0 is the one value it allows several times).
fn displaced(i: &Instruction) -> Instruction {
    let mut c = *i;
    c.set_ip(0);
    c
}

/// `jmp rel32` at `from` to `to`, or `None` if `to` is out of the ±2 GiB range.
pub fn jmp_rel32(from: u64, to: u64) -> Option<[u8; JMP_REL32_LEN]> {
    let next = from.checked_add(JMP_REL32_LEN as u64)?;
    let delta = to.wrapping_sub(next) as i64;
    let rel = i32::try_from(delta).ok()?;
    let mut out = [0xe9, 0, 0, 0, 0];
    out[1..].copy_from_slice(&rel.to_le_bytes());
    Some(out)
}

#[cfg(test)]
mod tests;
