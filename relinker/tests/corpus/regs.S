/* regs: a system call must change rax, rcx and r11 only. Each site below puts canaries in
 * the 128-byte red zone under rsp, known values in every other general register, xmm0 and
 * xmm7, and a known pattern in the arithmetic flags, then makes the call and checks all of it.
 * The sites vary in shape: the usual `mov $n,%eax; syscall`, the 7-byte `mov $n,%rax`, a
 * number loaded RIP-relative, a syscall that is a jump target, a loop whose head is the mov,
 * a leaf function. Exits 0 and prints "regs: ok" if all is intact; otherwise prints what broke
 * at which site and exits 1. No libc: gcc -nostdlib -static (or -static-pie) regs.S.
 *
 * -DKML_CALL=1 makes each site call the AT_SYSINFO entry itself when there is one, as a
 * relinked site does (red zone skipped): a check of the emulated KML launcher that does not
 * need the relinker. -DKML_CALL=2 calls it without skipping the red zone, which must fail. */

#ifndef KML_CALL
#define KML_CALL 0
#endif

#define CANARY 0x5a5a00c0de000000
#define PATTERN_SET 1
#define PATTERN_CLEAR 0

        .text
        .globl _start
        .type _start, @function

/* Canaries at -8(%rsp) .. -128(%rsp). Clobbers rax. */
.macro CANARIES
        .irp i, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16
        movabs $(CANARY + \i), %rax
        mov %rax, -8*\i(%rsp)
        .endr
.endm

/* The system call of a site: the instruction, or a KML call through AT_SYSINFO. */
.macro KSYSCALL
.if KML_CALL
        mov sysinfo(%rip), %rcx
        jrcxz 8f
.if KML_CALL == 1
        lea -128(%rsp), %rsp
.endif
        call *%rcx
.if KML_CALL == 1
        lea 128(%rsp), %rsp
.endif
        jmp 9f
8:      syscall
9:
.else
        syscall
.endif
.endm

/* Known values in every register the call must keep; rdi, rsi, rdx set by the caller. */
.macro SETREGS
        movabs $0x1111111111111111, %rbx
        movabs $0x2222222222222222, %rbp
        movabs $0x8888888888888888, %r8
        movabs $0x9999999999999999, %r9
        movabs $0xaaaaaaaaaaaaaaaa, %r10
        movabs $0xcccccccccccccccc, %r12
        movabs $0xdddddddddddddddd, %r13
        movabs $0xeeeeeeeeeeeeeeee, %r14
        movabs $0xffffffffffffffff, %r15
        movabs $0x0123456789abcdef, %rax
        movq %rax, %xmm0
        movabs $0x7777777700007777, %rax
        movq %rax, %xmm7
.endm

/* Remembers the registers and rsp for CHECK. */
.macro SAVEREGS site
        movl $\site, cur_site(%rip)
        mov %rbx, save_rbx(%rip)
        mov %rbp, save_rbp(%rip)
        mov %rdi, save_rdi(%rip)
        mov %rsi, save_rsi(%rip)
        mov %rdx, save_rdx(%rip)
        mov %r8, save_r8(%rip)
        mov %r9, save_r9(%rip)
        mov %r10, save_r10(%rip)
        mov %r12, save_r12(%rip)
        mov %r13, save_r13(%rip)
        mov %r14, save_r14(%rip)
        mov %r15, save_r15(%rip)
        mov %rsp, save_rsp(%rip)
.endm

/* Arithmetic flags: all of CF PF AF ZF SF OF set, or all clear. Clobbers rax. */
.macro SETFLAGS pattern
.if \pattern
        mov $0x7f, %al
        add $1, %al             /* OF=1 */
        mov $0xd5, %ah
        sahf                    /* SF ZF AF PF CF = 1 */
.else
        xor %eax, %eax          /* OF=0 CF=0 */
        sahf                    /* ah=0: SF ZF AF PF CF = 0 */
.endif
.endm

/* Right after the call: the result and flags first (mov, lahf and seto change no flags), then
 * everything else. */
.macro CHECK pattern
        mov %rax, result(%rip)
        lahf
        seto %cl
        cmp save_rsp(%rip), %rsp
        jne fail_rsp
        .irp i, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16
        movabs $(CANARY + \i), %r11
        cmp %r11, -8*\i(%rsp)
        jne fail_redzone
        .endr
        and $0xd5, %ah
.if \pattern
        cmp $0xd5, %ah
        jne fail_flags
        cmp $1, %cl
        jne fail_flags
.else
        cmp $0, %ah
        jne fail_flags
        cmp $0, %cl
        jne fail_flags
.endif
        cmp save_rbx(%rip), %rbx
        jne fail_rbx
        cmp save_rbp(%rip), %rbp
        jne fail_rbp
        cmp save_rdi(%rip), %rdi
        jne fail_rdi
        cmp save_rsi(%rip), %rsi
        jne fail_rsi
        cmp save_rdx(%rip), %rdx
        jne fail_rdx
        cmp save_r8(%rip), %r8
        jne fail_r8
        cmp save_r9(%rip), %r9
        jne fail_r9
        cmp save_r10(%rip), %r10
        jne fail_r10
        cmp save_r12(%rip), %r12
        jne fail_r12
        cmp save_r13(%rip), %r13
        jne fail_r13
        cmp save_r14(%rip), %r14
        jne fail_r14
        cmp save_r15(%rip), %r15
        jne fail_r15
        movq %xmm0, %rax
        movabs $0x0123456789abcdef, %r11
        cmp %r11, %rax
        jne fail_xmm
        movq %xmm7, %rax
        movabs $0x7777777700007777, %r11
        cmp %r11, %rax
        jne fail_xmm
.endm

/* A call with no arguments of its own: rdi, rsi, rdx get known values too. */
.macro ARGS0
        movabs $0x3333333333333333, %rdi
        movabs $0x4444444444444444, %rsi
        movabs $0x5555555555555555, %rdx
.endm

_start:
.if KML_CALL
        mov (%rsp), %rcx                /* argc */
        lea 16(%rsp,%rcx,8), %rax       /* envp */
3:      cmpq $0, (%rax)
        lea 8(%rax), %rax
        jne 3b
4:      mov (%rax), %rcx                /* auxv: find AT_SYSINFO (32) */
        test %rcx, %rcx
        jz 6f
        cmp $32, %rcx
        jne 5f
        mov 8(%rax), %rcx
        mov %rcx, sysinfo(%rip)
5:      add $16, %rax
        jmp 4b
6:
.endif
        /* site 1: getpid, the usual shape */
        CANARIES
        SETREGS
        ARGS0
        SAVEREGS 1
        SETFLAGS PATTERN_SET
        mov $39, %eax
        KSYSCALL
        CHECK PATTERN_SET

        /* site 2: write(1, hello, len): a RIP-relative lea among the argument set-up */
        CANARIES
        SETREGS
        mov $1, %edi
        lea hello(%rip), %rsi
        mov $hello_len, %edx
        SAVEREGS 2
        SETFLAGS PATTERN_CLEAR
        mov $1, %eax
        KSYSCALL
        CHECK PATTERN_CLEAR
        cmpq $hello_len, result(%rip)
        jne fail_result

        /* site 3: getppid where the syscall itself is a jump target */
        CANARIES
        SETREGS
        ARGS0
        SAVEREGS 3
        SETFLAGS PATTERN_SET
        mov $110, %eax
        jmp 1f
        int3
1:      KSYSCALL
        CHECK PATTERN_SET

        /* site 4: a loop whose head is the mov before the syscall */
        movl $3, loops(%rip)
        CANARIES
        SETREGS
        ARGS0
        SAVEREGS 4
2:      SETFLAGS PATTERN_CLEAR
        mov $39, %eax
        KSYSCALL
        CHECK PATTERN_CLEAR
        decl loops(%rip)
        jnz 2b

        /* site 5: the 7-byte mov $n,%rax (as musl's __restore_rt has, but sched_yield) */
        CANARIES
        SETREGS
        ARGS0
        SAVEREGS 5
        SETFLAGS PATTERN_SET
        mov $24, %rax
        KSYSCALL
        CHECK PATTERN_SET

        /* site 6: the number loaded RIP-relative, not a constant at the site */
        CANARIES
        SETREGS
        ARGS0
        SAVEREGS 6
        SETFLAGS PATTERN_CLEAR
        mov getpid_nr(%rip), %eax
        KSYSCALL
        CHECK PATTERN_CLEAR

        /* site 7: a leaf function with its own red zone */
        call leaf

        /* site 8: write, the syscall followed by more of its basic block */
        CANARIES
        SETREGS
        mov $1, %edi
        lea okmsg(%rip), %rsi
        mov $okmsg_len, %edx
        SAVEREGS 8
        SETFLAGS PATTERN_SET
        mov $1, %eax
        KSYSCALL
        CHECK PATTERN_SET
        cmpq $okmsg_len, result(%rip)
        jne fail_result

        mov $231, %eax          /* exit_group(0) */
        xor %edi, %edi
        KSYSCALL
        hlt
        .size _start, .-_start

        .type leaf, @function
leaf:
        CANARIES
        SETREGS
        ARGS0
        SAVEREGS 7
        SETFLAGS PATTERN_SET
        mov $39, %eax
        KSYSCALL
        CHECK PATTERN_SET
        ret
        .size leaf, .-leaf

/* Failure: "regs: <what> changed at site <n>", exit status 1. */
.macro FAIL name
fail_\name:
        lea msg_\name(%rip), %rsi
        mov $len_\name, %edx
        jmp fail
.endm
        FAIL rsp
        FAIL redzone
        FAIL flags
        FAIL rbx
        FAIL rbp
        FAIL rdi
        FAIL rsi
        FAIL rdx
        FAIL r8
        FAIL r9
        FAIL r10
        FAIL r12
        FAIL r13
        FAIL r14
        FAIL r15
        FAIL xmm
        FAIL result

        .type fail, @function
fail:
        mov save_rsp(%rip), %rsp  /* a sane stack whatever broke */
        sub $256, %rsp
        push %rdx
        push %rsi
        mov $2, %edi
        lea prefix(%rip), %rsi
        mov $prefix_len, %edx
        mov $1, %eax
        syscall
        pop %rsi
        pop %rdx
        mov $2, %edi
        mov $1, %eax
        syscall
        mov cur_site(%rip), %eax
        add $'0', %eax
        mov %al, sitebuf(%rip)
        mov $2, %edi
        lea atsite(%rip), %rsi
        mov $atsite_len, %edx
        mov $1, %eax
        syscall
        mov $231, %eax
        mov $1, %edi
        syscall
        hlt
        .size fail, .-fail

        .section .rodata
getpid_nr: .long 39
hello:  .ascii "regs: hello from a raw write\n"
        .set hello_len, . - hello
okmsg:  .ascii "regs: ok\n"
        .set okmsg_len, . - okmsg
prefix: .ascii "regs: "
        .set prefix_len, . - prefix
.macro MSG name, text
msg_\name: .ascii "\text"
        .set len_\name, . - msg_\name
.endm
        MSG rsp, "rsp"
        MSG redzone, "the red zone below rsp"
        MSG flags, "the arithmetic flags"
        MSG rbx, "rbx"
        MSG rbp, "rbp"
        MSG rdi, "rdi"
        MSG rsi, "rsi"
        MSG rdx, "rdx"
        MSG r8, "r8"
        MSG r9, "r9"
        MSG r10, "r10"
        MSG r12, "r12"
        MSG r13, "r13"
        MSG r14, "r14"
        MSG r15, "r15"
        MSG xmm, "xmm0 or xmm7"
        MSG result, "the result in rax"

        .data
atsite: .ascii " changed at site "
sitebuf: .ascii "?\n"
        .set atsite_len, . - atsite
        .balign 8
loops:  .long 0
cur_site: .long 0
save_rbx: .quad 0
save_rbp: .quad 0
save_rdi: .quad 0
save_rsi: .quad 0
save_rdx: .quad 0
save_r8: .quad 0
save_r9: .quad 0
save_r10: .quad 0
save_r12: .quad 0
save_r13: .quad 0
save_r14: .quad 0
save_r15: .quad 0
save_rsp: .quad 0
result: .quad 0
sysinfo: .quad 0

        .section .note.GNU-stack, "", @progbits
