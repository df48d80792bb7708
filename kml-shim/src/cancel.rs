//! The copy of a C library's cancellation point ([`cancel_point`]).
//!
//! musl's `__syscall_cp_asm` and glibc's `__syscall_cancel_arch` (2.41 and later) make the
//! system call of every cancellation point (read, write, accept, poll, ...). Their thread
//! cancellation handler acts on a pending cancel only when the interrupted PC lies in
//! `[begin, end)`: from the test of the cancel flag up to and including the `syscall`, whose
//! return address `end` is outside, so that a call that completed is never cancelled after the
//! fact. A trampoline outside that range would break it, so lupine-relink copies the whole
//! range into the added code instead, with the slot test inside it, and retargets the
//! handler's two bounds to the copy's:
//!
//! ```text
//! begin:  <the original instructions from the cancel-flag test up to the syscall>
//!         mov   rcx, [rip+slot]         ; rcx and r11 are free here, as at any syscall
//!         jrcxz .real
//!         lea   r11, [rip+end]          ; the return address: the same as the real path's
//!         push  r11
//!         jmp   rcx                     ; KML entry
//! .real:  syscall                       ; the real path, and what the kernel shows for a
//! end:    jmp   original_end            ;   restart of the KML call (see below)
//! ```
//!
//! Both ways of making the call lie in `[begin, end)`, and both return to `end`. A signal that
//! interrupts the KML call before it is made or for a restart finds the caller's view: the
//! KML kernel recognises a call entered with a `syscall` instruction just before its return
//! address and shows the interrupted PC at that `syscall` (inside the range; sigreturn then
//! makes the call again as a real `syscall`), and a completed call at `end` (outside). The
//! function has no red zone to protect (nothing of its own lives below `rsp`), so the push is
//! all the stack it uses.
//!
//! In a shared object, whose slot starts unknown, the copy first asks the kernel, before the
//! range, where the function may clobber the flags and nothing of its own lives below `rsp`
//! yet; the range then sees only the two known states:
//!
//! ```text
//!         cmp   qword [rip+slot], 1         ; SLOT_UNKNOWN
//!         jne   begin
//!         call  probe                       ; preserves every register
//! begin:  ...
//! ```

use crate::{decode_generated, displaced, enc, rip_rel, ShimError};
use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, Code, FlowControl, Instruction, Register};

/// A generated copy of a cancellation point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelCopy {
    /// The machine code, to be placed at the address it was generated for.
    pub bytes: Vec<u8>,
    /// Offset of the real-path `syscall` in `bytes`.
    pub syscall_offset: usize,
    /// Offset of `begin`, the new lower bound of the range (0 but after a probing prologue).
    pub begin_offset: usize,
    /// Offset of `end`, the new upper bound of the range (just after the `syscall`).
    pub end_offset: usize,
    /// Offset of each instruction: the prologue's (`cmp`, `jne`, `call`) when there is one,
    /// the body's, then `mov rcx`, `jrcxz`, `lea`, `push`, `jmp rcx`, `syscall`, and the
    /// final `jmp`.
    pub instruction_offsets: Vec<usize>,
}

/// Whether `i` may be part of a copied cancellation point's body: what a trampoline may
/// replay, or a conditional branch out of it (the cancel-flag test's `jne`).
pub fn check_body(i: &Instruction) -> Result<(), &'static str> {
    if !i.is_invalid() && i.flow_control() == FlowControl::ConditionalBranch {
        return if i.is_jcc_short_or_near() {
            Ok(())
        } else {
            Err("a conditional branch other than jcc")
        };
    }
    crate::check_relocatable(i)
}

/// Generates the copy of a cancellation point whose instructions before its `syscall` are
/// `body` (as decoded at their original addresses), to be placed at `at`; `slot_addr` is the
/// slot, `resume_addr` the original `end` (the instruction after the `syscall`), `probe` the
/// shared object's probe routine (`None` in a program).
pub fn cancel_point(
    at: u64,
    body: &[Instruction],
    slot_addr: u64,
    resume_addr: u64,
    probe: Option<u64>,
) -> Result<CancelCopy, ShimError> {
    for i in body {
        check_body(i).map_err(|reason| ShimError::NotRelocatable { ip: i.ip(), reason })?;
    }
    let e = enc(at);
    let mut a = CodeAssembler::new(64).map_err(&e)?;
    let mut real = a.create_label();
    let mut end = a.create_label();
    let mut begin = a.create_label();
    if let Some(p) = probe {
        a.add_instruction(
            Instruction::with2(
                Code::Cmp_rm64_imm8,
                rip_rel(slot_addr),
                crate::SLOT_UNKNOWN as i32,
            )
            .map_err(&e)?,
        )
        .map_err(&e)?;
        a.jne(begin).map_err(&e)?;
        a.add_instruction(Instruction::with_branch(Code::Call_rel32_64, p).map_err(&e)?)
            .map_err(&e)?;
    }
    a.set_label(&mut begin).map_err(&e)?;
    for i in body {
        a.add_instruction(displaced(i)).map_err(&e)?;
    }
    a.add_instruction(
        Instruction::with2(Code::Mov_r64_rm64, Register::RCX, rip_rel(slot_addr)).map_err(&e)?,
    )
    .map_err(&e)?;
    a.jrcxz(real).map_err(&e)?;
    a.lea(r11, qword_ptr(end)).map_err(&e)?;
    a.push(r11).map_err(&e)?;
    a.jmp(rcx).map_err(&e)?;
    a.set_label(&mut real).map_err(&e)?;
    a.syscall().map_err(&e)?;
    a.set_label(&mut end).map_err(&e)?;
    a.add_instruction(Instruction::with_branch(Code::Jmp_rel32_64, resume_addr).map_err(&e)?)
        .map_err(&e)?;
    let res = a
        .assemble_options(at, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .map_err(&e)?;
    let offset =
        |ip: u64| usize::try_from(ip.wrapping_sub(at)).map_err(|_| ShimError::Internal("offset"));
    let syscall_offset = offset(res.label_ip(&real).map_err(&e)?)?;
    let begin_offset = offset(res.label_ip(&begin).map_err(&e)?)?;
    let end_offset = offset(res.label_ip(&end).map_err(&e)?)?;
    let bytes = res.inner.code_buffer;
    let copy = Copy {
        at,
        slot_addr,
        resume_addr,
        probe,
        begin_offset,
        end_offset,
    };
    let instruction_offsets = copy.verify(&bytes, body)?;
    Ok(CancelCopy {
        bytes,
        syscall_offset,
        begin_offset,
        end_offset,
        instruction_offsets,
    })
}

/// What a generated copy must be.
struct Copy {
    at: u64,
    slot_addr: u64,
    resume_addr: u64,
    probe: Option<u64>,
    begin_offset: usize,
    end_offset: usize,
}

impl Copy {
    /// Decodes a generated copy and checks that it is exactly the documented shape, position
    /// independent (see `Shape::verify`), with its `syscall` just before `end`.
    fn verify(&self, bytes: &[u8], body: &[Instruction]) -> Result<Vec<usize>, ShimError> {
        let at = self.at;
        let bad = |why: &'static str| ShimError::Encode {
            at,
            reason: format!("generated cancellation point is not in shape: {why}"),
        };
        let got =
            decode_generated(at, bytes).ok_or_else(|| bad("undecodable or EIP-relative output"))?;
        let pro = if self.probe.is_some() { 3 } else { 0 };
        let n = body.len();
        if got.len() != pro + n + 7 {
            return Err(bad("unexpected instruction count (a target out of range?)"));
        }
        let begin = at.wrapping_add(self.begin_offset as u64);
        if !self.prologue_ok(&got[..pro], begin) || got[pro].ip() != begin {
            return Err(bad("the probing prologue is not the documented sequence"));
        }
        for (o, c) in body.iter().zip(&got[pro..pro + n]) {
            let same_target = !o.is_jcc_short_or_near()
                || (c.is_jcc_short_or_near()
                    && c.condition_code() == o.condition_code()
                    && c.near_branch_target() == o.near_branch_target());
            let same_operand = o.is_ip_rel_memory_operand() == c.is_ip_rel_memory_operand()
                && (!o.is_ip_rel_memory_operand()
                    || c.ip_rel_memory_address() == o.ip_rel_memory_address());
            if !(same_target && same_operand && (o.is_jcc_short_or_near() || o.code() == c.code()))
            {
                return Err(bad("a copied instruction changed"));
            }
        }
        let t = &got[pro + n..];
        let end = at.wrapping_add(self.end_offset as u64);
        let ok = t[0].code() == Code::Mov_r64_rm64
            && t[0].ip_rel_memory_address() == self.slot_addr
            && t[1].code() == Code::Jrcxz_rel8_64
            && t[1].near_branch_target() == t[5].ip()
            && t[2].code() == Code::Lea_r64_m
            && t[2].op0_register() == Register::R11
            && t[2].ip_rel_memory_address() == end
            && t[3].code() == Code::Push_r64
            && t[3].op0_register() == Register::R11
            && t[4].code() == Code::Jmp_rm64
            && t[4].op0_register() == Register::RCX
            && t[5].code() == Code::Syscall
            && t[5].next_ip() == end
            && t[6].code() == Code::Jmp_rel32_64
            && t[6].ip() == end
            && t[6].near_branch_target() == self.resume_addr;
        if !ok {
            return Err(bad("the tail is not the documented sequence"));
        }
        Ok(got
            .iter()
            .map(|i| i.ip().wrapping_sub(at) as usize)
            .collect())
    }

    /// `cmp qword [rip+slot], 1; jne begin; call probe`, or nothing without a probe.
    fn prologue_ok(&self, p: &[Instruction], begin: u64) -> bool {
        match self.probe {
            None => p.is_empty(),
            Some(probe) => {
                p[0].code() == Code::Cmp_rm64_imm8
                    && p[0].ip_rel_memory_address() == self.slot_addr
                    && p[0].immediate8() as u64 == crate::SLOT_UNKNOWN
                    && p[1].is_jcc_short_or_near()
                    && p[1].condition_code() == iced_x86::ConditionCode::ne
                    && p[1].near_branch_target() == begin
                    && p[2].code() == Code::Call_rel32_64
                    && p[2].near_branch_target() == probe
            }
        }
    }
}
