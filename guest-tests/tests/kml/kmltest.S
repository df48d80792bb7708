/*
 * kmltest: the basic Kernel Mode Linux check (CPL 0, call entry, GS across
 * migrations), without libc.
 *
 * Reads CS; looks for AT_SYSINFO in the aux vector. With it (a kernel-mode
 * process), makes 100000 getpid calls through the call entry the way
 * lupine-relink's trampolines do (rsp moved down over the red zone, then
 * "call *AT_SYSINFO"), checking every result against the first one and that
 * rbx, rbp, rdi, rsi, rdx, r8-r10, r12-r15 and the carry flag survive each
 * call. Then it moves itself 100 times between CPU 0 and CPU 1 with
 * sched_setaffinity, checking with getcpu that it runs where it asked to;
 * on one CPU only the moves to CPU 0 succeed. In kernel mode it also reads
 * MSR_GS_BASE and MSR_KERNEL_GS_BASE after each move (rdmsr: CPL 0 only):
 * while a KML process runs both must hold its CPU's per-CPU base, so they
 * must be equal on whichever CPU it lands.
 * Finally it writes its report and exits, through the entry too. Without
 * AT_SYSINFO, all the same with the syscall instruction. Prints one line:
 *   kmltest: cs=0x10 sysinfo=yes secure=1 dumpable=0 calls=100000
 *            migrations=100 ok ticks/call=N
 * (secure: AT_SECURE; dumpable: PR_GET_DUMPABLE; migrations: the moves that
 * succeeded and landed on the right CPU; ticks/call: TSC ticks per getpid),
 * or "... FAIL <what>", and exits 0 on success, 1 on failure.
 *
 * Build: gcc -nostdlib -static -o kmltest kmltest.S
 */
#define AT_SECURE	23
#define AT_SYSINFO	32
#define NR_prctl	157
#define NR_sched_setaffinity 203
#define NR_getcpu	309
#define PR_GET_DUMPABLE	3
#define MOVES		100
#define NR_write	1
#define NR_getpid	39
#define NR_exit_group	231
#define CALLS		100000

	.section .bss
	.balign 8
sysinfo:	.quad 0		/* AT_SYSINFO, or 0 */
secure:		.quad 0		/* AT_SECURE */
dumpable:	.quad 0
migrations:	.quad 0
moves:		.quad 0
mask:		.quad 0
cpu:		.quad 0
pid:		.quad 0
count:		.quad 0
cs:		.quad 0
t0:		.quad 0
ticks:		.quad 0
buf:		.space 256

	.section .rodata
s_head:		.ascii "kmltest: cs=0x"
s_yes:		.ascii " sysinfo=yes"
s_no:		.ascii " sysinfo=no"
s_secure:	.ascii " secure="
s_dumpable:	.ascii " dumpable="
s_calls:	.ascii " calls="
s_migr:		.ascii " migrations="
s_ok:		.ascii " ok ticks/call="
s_fail:		.ascii " FAIL "
s_result:	.ascii "result"
s_regs:		.ascii "registers"
s_flags:	.ascii "flags"
s_cpu:		.ascii "getcpu"
s_gs:		.ascii "gs"
s_nl:		.ascii "\n"
hex:		.ascii "0123456789abcdef"

	.text
	.globl _start
_start:
	xor	%eax, %eax
	mov	%cs, %ax
	mov	%rax, cs(%rip)

	/* rsp: argc, argv[], NULL, envp[], NULL, auxv pairs, AT_NULL */
	mov	(%rsp), %rax
	lea	16(%rsp,%rax,8), %rax	/* &envp[0] */
1:	mov	(%rax), %rcx
	add	$8, %rax
	test	%rcx, %rcx
	jnz	1b
2:	mov	(%rax), %rcx
	test	%rcx, %rcx
	jz	4f
	cmp	$AT_SECURE, %rcx
	jne	3f
	mov	8(%rax), %rcx
	mov	%rcx, secure(%rip)
3:	cmp	$AT_SYSINFO, %rcx
	jne	5f
	mov	8(%rax), %rcx
	mov	%rcx, sysinfo(%rip)
5:	add	$16, %rax
	jmp	2b
4:
	mov	$NR_prctl, %eax
	mov	$PR_GET_DUMPABLE, %edi
	call	sys
	mov	%rax, dumpable(%rip)

	/* The first getpid: the reference result. */
	mov	$NR_getpid, %eax
	call	sys
	mov	%rax, pid(%rip)

	/* Values every call must preserve. */
	mov	$0x1111111111111111, %rbx
	mov	$0x2222222222222222, %rbp
	mov	$0x3333333333333333, %rdi
	mov	$0x4444444444444444, %rsi
	mov	$0x5555555555555555, %rdx
	mov	$0x6666666666666666, %r8
	mov	$0x7777777777777777, %r9
	mov	$0x8888888888888888, %r10
	mov	$0x9999999999999999, %r12
	mov	$0xaaaaaaaaaaaaaaaa, %r13
	mov	$0xbbbbbbbbbbbbbbbb, %r14
	mov	$0xcccccccccccccccc, %r15

	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	mov	%rdx, t0(%rip)
	mov	$0x5555555555555555, %rdx

	cmpq	$0, sysinfo(%rip)
	je	.Lsyscall_loop

.Lcall_loop:
	mov	$NR_getpid, %eax
	stc
	lea	-128(%rsp), %rsp	/* over the red zone, as lupine-relink does */
	call	*sysinfo(%rip)
	lea	128(%rsp), %rsp
	jnc	.Lbad_flags
	call	check
	incq	count(%rip)
	cmpq	$CALLS, count(%rip)
	jb	.Lcall_loop
	jmp	.Ldone

.Lsyscall_loop:
	mov	$NR_getpid, %eax
	stc
	syscall
	jnc	.Lbad_flags
	call	check
	incq	count(%rip)
	cmpq	$CALLS, count(%rip)
	jb	.Lsyscall_loop

.Ldone:
	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	sub	t0(%rip), %rdx
	mov	%rdx, %rax
	xor	%edx, %edx
	mov	$CALLS, %ecx
	div	%rcx
	mov	%rax, ticks(%rip)

	/* Move between CPU 0 and CPU 1; count the moves that land right. */
.Lmove:
	mov	moves(%rip), %rcx
	and	$1, %ecx
	mov	%rcx, cpu(%rip)		/* the target */
	mov	$1, %eax
	shl	%cl, %rax
	mov	%rax, mask(%rip)
	mov	$NR_sched_setaffinity, %eax
	xor	%edi, %edi
	mov	$8, %esi
	lea	mask(%rip), %rdx
	call	sys
	test	%rax, %rax
	jnz	1f			/* no such CPU */
	movq	$-1, mask(%rip)
	mov	$NR_getcpu, %eax
	lea	mask(%rip), %rdi
	xor	%esi, %esi
	xor	%edx, %edx
	call	sys
	test	%rax, %rax
	jnz	.Lbad_cpu
	mov	mask(%rip), %eax	/* unsigned int */
	cmp	cpu(%rip), %rax
	jne	.Lbad_cpu
	cmpq	$0, sysinfo(%rip)
	je	2f
	mov	$0xc0000101, %ecx	/* MSR_GS_BASE */
	rdmsr
	shl	$32, %rdx
	or	%rax, %rdx
	mov	%rdx, %r8
	mov	$0xc0000102, %ecx	/* MSR_KERNEL_GS_BASE */
	rdmsr
	shl	$32, %rdx
	or	%rax, %rdx
	cmp	%rdx, %r8
	jne	.Lbad_gs
2:	incq	migrations(%rip)
1:	incq	moves(%rip)
	cmpq	$MOVES, moves(%rip)
	jb	.Lmove

	call	head
	lea	s_migr(%rip), %rsi
	mov	$(s_ok - s_migr), %ecx
	call	append
	mov	migrations(%rip), %rax
	call	append_dec
	lea	s_ok(%rip), %rsi
	mov	$(s_fail - s_ok), %ecx
	call	append
	mov	ticks(%rip), %rax
	call	append_dec
	xor	%ebx, %ebx		/* exit status 0 */
	jmp	report

.Lbad_flags:
	lea	s_flags(%rip), %r12
	mov	$(s_cpu - s_flags), %r13d
	jmp	fail
.Lbad_cpu:
	lea	s_cpu(%rip), %r12
	mov	$(s_gs - s_cpu), %r13d
	jmp	fail
.Lbad_gs:
	lea	s_gs(%rip), %r12
	mov	$(s_nl - s_gs), %r13d
	jmp	fail

/* Compare rax with the first pid and the registers with their values. */
check:
	cmp	pid(%rip), %rax
	jne	.Lbad_result
	mov	$0x1111111111111111, %rax
	cmp	%rax, %rbx
	jne	.Lbad_regs
	mov	$0x2222222222222222, %rax
	cmp	%rax, %rbp
	jne	.Lbad_regs
	mov	$0x3333333333333333, %rax
	cmp	%rax, %rdi
	jne	.Lbad_regs
	mov	$0x4444444444444444, %rax
	cmp	%rax, %rsi
	jne	.Lbad_regs
	mov	$0x5555555555555555, %rax
	cmp	%rax, %rdx
	jne	.Lbad_regs
	mov	$0x6666666666666666, %rax
	cmp	%rax, %r8
	jne	.Lbad_regs
	mov	$0x7777777777777777, %rax
	cmp	%rax, %r9
	jne	.Lbad_regs
	mov	$0x8888888888888888, %rax
	cmp	%rax, %r10
	jne	.Lbad_regs
	mov	$0x9999999999999999, %rax
	cmp	%rax, %r12
	jne	.Lbad_regs
	mov	$0xaaaaaaaaaaaaaaaa, %rax
	cmp	%rax, %r13
	jne	.Lbad_regs
	mov	$0xbbbbbbbbbbbbbbbb, %rax
	cmp	%rax, %r14
	jne	.Lbad_regs
	mov	$0xcccccccccccccccc, %rax
	cmp	%rax, %r15
	jne	.Lbad_regs
	ret
.Lbad_result:
	add	$8, %rsp
	lea	s_result(%rip), %r12
	mov	$(s_regs - s_result), %r13d
	jmp	fail
.Lbad_regs:
	add	$8, %rsp
	lea	s_regs(%rip), %r12
	mov	$(s_flags - s_regs), %r13d
	jmp	fail

/* r12/r13: what failed. */
fail:
	call	head
	lea	s_fail(%rip), %rsi
	mov	$(s_result - s_fail), %ecx
	call	append
	mov	%r12, %rsi
	mov	%r13, %rcx
	call	append
	mov	$1, %ebx

/* Write buf (rdi: its end) and a newline; exit with status rbx. */
report:
	lea	s_nl(%rip), %rsi
	mov	$1, %ecx
	call	append
	lea	buf(%rip), %rsi
	mov	%rdi, %rdx
	sub	%rsi, %rdx
	mov	$1, %edi
	mov	$NR_write, %eax
	call	sys
	mov	%rbx, %rdi
	mov	$NR_exit_group, %eax
	call	sys
	ud2

/* "kmltest: cs=0xNN sysinfo=yes|no calls=N" into buf; rdi = end. */
head:
	lea	buf(%rip), %rdi
	lea	s_head(%rip), %rsi
	mov	$(s_yes - s_head), %ecx
	call	append
	mov	cs(%rip), %rax
	lea	hex(%rip), %rsi
	mov	%rax, %rcx
	shr	$4, %rcx
	and	$15, %ecx
	movb	(%rsi,%rcx), %cl
	movb	%cl, (%rdi)
	mov	%rax, %rcx
	and	$15, %ecx
	movb	(%rsi,%rcx), %cl
	movb	%cl, 1(%rdi)
	add	$2, %rdi
	cmpq	$0, sysinfo(%rip)
	je	1f
	lea	s_yes(%rip), %rsi
	mov	$(s_no - s_yes), %ecx
	jmp	2f
1:	lea	s_no(%rip), %rsi
	mov	$(s_secure - s_no), %ecx
2:	call	append
	lea	s_secure(%rip), %rsi
	mov	$(s_dumpable - s_secure), %ecx
	call	append
	mov	secure(%rip), %rax
	call	append_dec
	lea	s_dumpable(%rip), %rsi
	mov	$(s_calls - s_dumpable), %ecx
	call	append
	mov	dumpable(%rip), %rax
	call	append_dec
	lea	s_calls(%rip), %rsi
	mov	$(s_migr - s_calls), %ecx
	call	append
	mov	count(%rip), %rax
	jmp	append_dec

/* Copy rcx bytes from rsi to rdi (advanced). */
append:
	rep movsb
	ret

/* rax in decimal at rdi (advanced). */
append_dec:
	lea	-32(%rsp), %rsp		/* digits, backwards */
	mov	%rsp, %r8
	add	$32, %r8
	mov	$10, %ecx
1:	xor	%edx, %edx
	div	%rcx
	add	$'0', %dl
	dec	%r8
	mov	%dl, (%r8)
	test	%rax, %rax
	jnz	1b
	lea	32(%rsp), %rcx
	sub	%r8, %rcx
	mov	%r8, %rsi
	rep movsb
	lea	32(%rsp), %rsp
	ret

/* A system call: through AT_SYSINFO when there is one, else syscall. */
sys:
	cmpq	$0, sysinfo(%rip)
	je	1f
	lea	-128(%rsp), %rsp
	call	*sysinfo(%rip)
	lea	128(%rsp), %rsp
	ret
1:	syscall
	ret

	.section .note.GNU-stack, "", @progbits
