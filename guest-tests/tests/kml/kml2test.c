/*
 * kml2test: the Kernel Mode Linux checks of interrupts, exceptions and page
 * faults at CPL 0, without libc. Under /trusted it runs at CPL 0 and
 * makes its system calls through the call entry (AT_SYSINFO), moving %rsp
 * over the red zone first as lupine-relink's trampolines do; elsewhere with
 * the syscall instruction.
 *
 *   kml2test redzone  16 canaries in the red zone (the 128 bytes below
 *                     %rsp) of a leaf loop that runs for 2 s of wall time;
 *                     counts the gaps in the TSC (interrupts) it saw
 *   kml2test recurse  recursion 7 MB deep (fresh stack pages at CPL 0)
 *   kml2test mmap     64 MB of fresh anonymous memory touched page by page
 *   kml2test null     a load from address 0          (SIGSEGV)
 *   kml2test noncanon a load from a non-canonical address (#GP: SIGSEGV)
 *   kml2test ud2      ud2                            (SIGILL)
 *   kml2test div0     a division by zero             (SIGFPE)
 *   kml2test int3     int3                           (SIGTRAP)
 *   kml2test overflow recursion without end           (SIGSEGV)
 *   kml2test badiret  a SIGTRAP handler that makes rt_sigreturn return
 *                     to a non-canonical address: the iretq faults (SIGSEGV)
 *   kml2test step     sets TF itself and single-steps eight instructions,
 *                     a system call among them, with a SIGTRAP handler
 *                     counting the traps (#DB) and those reported at a
 *                     kernel address (the call entry's own steps must not
 *                     be). Not int1 (icebp): QEMU's TCG makes it a #UD.
 *   kml2test hog      pinned to CPU 0, a pure loop (no system call) of
 *                     HOG_LOOPS iterations; prints its start and end times
 *
 * Each passing check prints "kml2: <mode> cs=0x10 ok ..." and exits 0; a
 * failing one prints "kml2: <mode> cs=.. FAIL ..." and exits 1; the
 * faulting ones do not return.
 *
 * Build: gcc -O1 -nostdlib -static -fno-builtin -fno-stack-protector
 *        -fno-pie -no-pie -o kml2test kml2test.c
 */
#define AT_SYSINFO 32
#define NR_write 1
#define NR_rt_sigaction 13
#define NR_getppid 110
#define NR_mmap 9
#define NR_munmap 11
#define NR_sched_setaffinity 203
#define NR_clock_gettime 228
#define NR_exit_group 231
#define HOG_LOOPS 300000000L

typedef unsigned long u64;

static long entry; /* AT_SYSINFO, or 0 */

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	if (entry)
		__asm__ volatile("sub $128, %%rsp\n\t"
				 "call *%[ent]\n\t"
				 "add $128, %%rsp"
				 : "=a"(ret)
				 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10),
				   "r"(r8), "r"(r9), [ent] "m"(entry)
				 : "rcx", "r11", "memory", "cc");
	else
		__asm__ volatile("syscall"
				 : "=a"(ret)
				 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10),
				   "r"(r8), "r"(r9)
				 : "rcx", "r11", "memory", "cc");
	return ret;
}

static char out[256];
static int outlen;

static void puts_(const char *s)
{
	while (*s && outlen < (int)sizeof(out) - 1)
		out[outlen++] = *s++;
}

static void putu(u64 v)
{
	char tmp[24];
	int i = 0;

	do {
		tmp[i++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (i && outlen < (int)sizeof(out) - 1)
		out[outlen++] = tmp[--i];
}

static void puthex(u64 v)
{
	char tmp[20];
	int i = 0;

	do {
		tmp[i++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	while (i && outlen < (int)sizeof(out) - 1)
		out[outlen++] = tmp[--i];
}

static __attribute__((noreturn)) void finish(int ok)
{
	puts_(ok ? " ok\n" : " FAIL\n");
	sys6(NR_write, 1, (long)out, outlen, 0, 0, 0);
	sys6(NR_exit_group, ok ? 0 : 1, 0, 0, 0, 0, 0);
	for (;;)
		;
}

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static u64 now_ns(void)
{
	long ts[2];

	sys6(NR_clock_gettime, 1 /* CLOCK_MONOTONIC */, (long)ts, 0, 0, 0, 0);
	return (u64)ts[0] * 1000000000UL + (u64)ts[1];
}

static u64 rdtsc(void)
{
	unsigned int lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

/*
 * The red zone: 16 canaries below %rsp, then a leaf loop (no call, no push)
 * until the TSC passes the deadline, checking them every round and counting
 * the rounds that took more than gap ticks (an interrupt was taken). Returns
 * the number of canaries found wrong at the end.
 */
static __attribute__((noinline)) int redzone(u64 deadline, u64 gap,
					     u64 *gaps)
{
	/* Registers only: the compiler's own red-zone slots are overwritten. */
	register u64 n __asm__("r8");
	register u64 bad __asm__("r9");

	__asm__ volatile(
		"xor %[n], %[n]\n\t"		/* gaps */
		"xor %[bad], %[bad]\n\t"	/* bad canaries */
		"mov $0x5a5a5a5a00000000, %%r10\n\t"
		"mov $-128, %%rcx\n"
		"1:\tlea (%%r10,%%rcx), %%rax\n\t"
		"mov %%rax, (%%rsp,%%rcx)\n\t"
		"add $8, %%rcx\n\t"
		"jnz 1b\n\t"
		"rdtsc\n\t"
		"shl $32, %%rdx\n\t"
		"or %%rax, %%rdx\n\t"
		"mov %%rdx, %%r11\n"		/* previous TSC */
		"2:\tmov $-128, %%rcx\n"
		"3:\tlea (%%r10,%%rcx), %%rax\n\t"
		"cmp %%rax, (%%rsp,%%rcx)\n\t"
		"je 4f\n\t"
		"inc %[bad]\n"
		"4:\tadd $8, %%rcx\n\t"
		"jnz 3b\n\t"
		"rdtsc\n\t"
		"shl $32, %%rdx\n\t"
		"or %%rax, %%rdx\n\t"
		"mov %%rdx, %%rax\n\t"
		"sub %%r11, %%rax\n\t"
		"mov %%rdx, %%r11\n\t"
		"cmp %[gap], %%rax\n\t"
		"jb 5f\n\t"
		"inc %[n]\n"
		"5:\tcmp %[deadline], %%r11\n\t"
		"jb 2b"
		: [n] "=&r"(n), [bad] "=&r"(bad)
		: [deadline] "r"(deadline), [gap] "r"(gap)
		: "rax", "rcx", "rdx", "r10", "r11", "memory", "cc");
	*gaps = n;
	return bad;
}

#define FRAME 4000

/* SIGTRAP handler of "step" (see stepped()). */
static u64 traps, kernel_traps;

static void on_trap(int sig, void *info, void *ucontext)
{
	/* uc_mcontext.gregs[REG_RIP]: after uc_flags, uc_link, uc_stack. */
	u64 rip = ((u64 *)ucontext)[5 + 16];

	(void)sig, (void)info;
	traps++;
	if (rip >> 63)
		kernel_traps++;
}

/* SIGTRAP handler of "badiret": returns to a non-canonical address. */
static void on_trap_bad(int sig, void *info, void *ucontext)
{
	(void)sig, (void)info;
	((u64 *)ucontext)[5 + 16] = 0x8000000000000000UL;
}

/* rt_sigreturn with the syscall instruction, as libc's restorers do. */
void restore_rt(void);
__asm__(".text\n"
	"restore_rt:\n\t"
	"mov $15, %eax\n\t"
	"syscall\n\t"
	"hlt\n");

static void on_sigtrap(void (*handler)(int, void *, void *))
{
	struct {
		void *handler;
		unsigned long flags;
		void *restorer;
		unsigned long mask;
	} sa = { handler, 0x04000004 /* SA_RESTORER|SA_SIGINFO */, restore_rt,
		 0 };

	if (sys6(NR_rt_sigaction, 5 /* SIGTRAP */, (long)&sa, 0, 8, 0, 0)) {
		puts_(" sigaction failed");
		finish(0);
	}
}

/*
 * getppid with TF set around it. After the popfq that sets TF, every
 * instruction traps once: at CPL 0 nop, mov, sub, call (whose steps inside
 * the call entry the kernel must hide: the trap comes after the entry's
 * ret, at the add), add, pushfq, andq, popfq: 8. At CPL 3, nop, mov,
 * pushfq, andq, popfq: 5 (Linux reports no step for the syscall itself).
 */
static long stepped(void)
{
	long ret;

	if (entry)
		__asm__ volatile("pushfq\n\t"
				 "orq $0x100, (%%rsp)\n\t"
				 "popfq\n\t"
				 "nop\n\t"
				 "mov %[nr], %%eax\n\t"
				 "sub $128, %%rsp\n\t"
				 "call *%[ent]\n\t"
				 "add $128, %%rsp\n\t"
				 "pushfq\n\t"
				 "andq $~0x100, (%%rsp)\n\t"
				 "popfq"
				 : "=a"(ret)
				 : [nr] "i"(NR_getppid), [ent] "m"(entry)
				 : "rcx", "r11", "memory", "cc");
	else
		__asm__ volatile("pushfq\n\t"
				 "orq $0x100, (%%rsp)\n\t"
				 "popfq\n\t"
				 "nop\n\t"
				 "mov %[nr], %%eax\n\t"
				 "syscall\n\t"
				 "pushfq\n\t"
				 "andq $~0x100, (%%rsp)\n\t"
				 "popfq"
				 : "=a"(ret)
				 : [nr] "i"(NR_getppid)
				 : "rcx", "r11", "memory", "cc");
	return ret;
}

static __attribute__((noinline)) u64 recurse(int depth)
{
	volatile char buf[FRAME];
	u64 r;

	buf[0] = depth;
	buf[FRAME - 1] = depth >> 8;
	if (!depth)
		return 0;
	r = recurse(depth - 1);
	return r + (unsigned char)buf[0] + 256 * (unsigned char)buf[FRAME - 1];
}

void cmain(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char *mode = argc > 1 ? argv[1] : "";
	long *p = sp + 1 + argc + 1;
	unsigned short cs;
	int ok = 0;

	while (*p)
		p++;
	for (p++; p[0]; p += 2)
		if (p[0] == AT_SYSINFO)
			entry = p[1];

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	puts_("kml2: ");
	puts_(mode);
	puts_(" cs=0x");
	puthex(cs);

	if (streq(mode, "redzone")) {
		/* TSC ticks per 100 ms, to turn 2 s into a TSC deadline. */
		u64 t0 = now_ns(), c0 = rdtsc(), t1, c1, gaps;
		int bad;

		do {
			t1 = now_ns();
		} while (t1 - t0 < 100000000UL);
		c1 = rdtsc();
		/* A gap: a round of the loop that took over 20 us. */
		bad = redzone(c1 + 20 * (c1 - c0), (c1 - c0) / 5000, &gaps);
		puts_(" bad=");
		putu(bad);
		puts_(" gaps=");
		putu(gaps);
		puts_(" ms=");
		putu((now_ns() - t1) / 1000000);
		ok = bad == 0 && gaps > 0;
	} else if (streq(mode, "recurse")) {
		u64 want = 0, got;
		int i;

		for (i = 1; i <= 1800; i++)
			want += (unsigned char)i + 256 * (unsigned char)(i >> 8);
		got = recurse(1800);
		puts_(" depth=1800 sum=");
		putu(got);
		ok = got == want;
	} else if (streq(mode, "mmap")) {
		u64 size = 64UL << 20, i, sum = 0, want = 0;
		long a = sys6(NR_mmap, 0, size, 3 /* RW */,
			      0x22 /* PRIVATE|ANONYMOUS */, -1, 0);
		volatile u64 *m = (volatile u64 *)a;

		if (a < 0 && a > -4096) {
			puts_(" mmap failed");
			finish(0);
		}
		for (i = 0; i < size / 4096; i++)
			m[i * 512] = i;
		for (i = 0; i < size / 4096; i++) {
			sum += m[i * 512];
			want += i;
		}
		puts_(" pages=");
		putu(size / 4096);
		ok = sum == want && !sys6(NR_munmap, a, size, 0, 0, 0, 0);
	} else if (streq(mode, "null")) {
		puts_(" ...\n");
		sys6(NR_write, 1, (long)out, outlen, 0, 0, 0);
		outlen = 0;
		__asm__ volatile("movq 0, %%rax" : : : "rax", "memory");
		puts_("kml2: null survived");
	} else if (streq(mode, "noncanon")) {
		__asm__ volatile("movabs 0x8000000000000000, %%rax"
				 : : : "rax", "memory");
		puts_(" survived");
	} else if (streq(mode, "ud2")) {
		__asm__ volatile("ud2");
		puts_(" survived");
	} else if (streq(mode, "div0")) {
		long q, r = 0;

		__asm__ volatile("xor %%edx, %%edx\n\tmov $1, %%eax\n\tdivq %2"
				 : "=&a"(q), "=&d"(r)
				 : "r"(r)
				 : "cc");
		puts_(" survived");
	} else if (streq(mode, "int3")) {
		__asm__ volatile("int3");
		puts_(" survived");
	} else if (streq(mode, "overflow")) {
		puts_(" ...\n");
		sys6(NR_write, 1, (long)out, outlen, 0, 0, 0);
		outlen = 0;
		recurse(1 << 30);
		puts_("kml2: overflow survived");
	} else if (streq(mode, "badiret")) {
		on_sigtrap(on_trap_bad);
		__asm__ volatile("int3");
		puts_(" survived");
	} else if (streq(mode, "step")) {
		long want = sys6(NR_getppid, 0, 0, 0, 0, 0, 0), got;

		on_sigtrap(on_trap);
		got = stepped();
		puts_(" traps=");
		putu(traps);
		puts_(" kernel=");
		putu(kernel_traps);
		puts_(got == want ? " getppid=same" : " getppid=wrong");
		ok = traps == (entry ? 8 : 5) && !kernel_traps && got == want;
	} else if (streq(mode, "hog")) {
		u64 mask = 1, t0, t1;
		long i = HOG_LOOPS;

		sys6(NR_sched_setaffinity, 0, sizeof(mask), (long)&mask, 0, 0,
		     0);
		t0 = now_ns();
		__asm__ volatile("1:\tdec %0\n\tjnz 1b" : "+r"(i) : : "cc");
		t1 = now_ns();
		puts_(" start=");
		putu(t0 / 1000000);
		puts_(" end=");
		putu(t1 / 1000000);
		ok = 1;
	} else {
		puts_(" unknown mode");
	}
	finish(ok);
}

__asm__(".text\n"
	".globl _start\n"
	"_start:\n\t"
	"xor %ebp, %ebp\n\t"
	"mov %rsp, %rdi\n\t"
	"and $-16, %rsp\n\t"
	"call cmain\n\t"
	"hlt\n");
