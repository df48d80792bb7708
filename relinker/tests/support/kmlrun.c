/* kmlrun: an emulated Kernel Mode Linux for the relinker's tests.
 *
 *   kmlrun PROGRAM [ARGS...]
 *
 * A tiny user-space ELF loader. It maps the PT_LOAD segments of a static x86-64 program
 * (ET_EXEC at their addresses, static-PIE at an address the kernel picks), builds a fresh
 * stack with argc, argv, envp and a copy of its own aux vector in which AT_PHDR, AT_PHENT,
 * AT_PHNUM, AT_ENTRY, AT_BASE (0) and AT_EXECFN describe the program and AT_SYSINFO (32) is
 * the address of kml_entry below, then jumps to the program's entry with every general
 * register zero but rsp, as the kernel leaves them.
 *
 * kml_entry stands in for the KML kernel's entry: called with a system call's registers
 * (number in rax; arguments in rdi, rsi, rdx, r10, r8, r9), it clobbers the 16 bytes below
 * its return address as the real entry does, counts the call, makes the real `syscall` and
 * returns with only rax, rcx and r11 changed (rflags as a syscall leaves them). When the two
 * bytes before the return address are a `syscall` (lupine-relink's copy of a cancellation
 * point pushes its return address there), it pops the return address and makes the call with
 * that instruction instead: the KML kernel shows a signal that interrupts such a call as
 * interrupting that `syscall`, and the copy's cancellation handler depends on it, which a
 * stand-in whose own `syscall` was interrupted could not give it.
 *
 * Counting is per process: the counter lives in a MADV_WIPEONFORK page, so a forked child
 * starts from 0 while threads share their process's counter. When a process makes exit (60)
 * or exit_group (231) through kml_entry, kmlrun first appends "kmlrun: pid P calls N" to the
 * file named by KMLRUN_COUNT_FILE, or writes it to the descriptor KMLRUN_COUNT_FD. At start it
 * writes "kmlrun: pid P start" there. KMLRUN_NO_SYSINFO=1 leaves AT_SYSINFO out.
 *
 * Freestanding: no libc (its TLS and errno would clash with the program's once the program
 * owns the thread pointer), no relocations (nothing applies them), built with
 *   gcc -static-pie -nostdlib -ffreestanding -fno-stack-protector -fno-builtin
 *       -mgeneral-regs-only -O2 kmlrun.c
 */

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_pread64 17
#define SYS_madvise 28
#define SYS_getpid 39
#define SYS_exit_group 231

#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_NORESERVE 0x4000
#define MAP_STACK 0x20000
#define MAP_FIXED_NOREPLACE 0x100000
#define MADV_WIPEONFORK 18
#define O_RDONLY 0
#define O_WRONLY 1
#define O_CREAT 0100
#define O_APPEND 02000
#define O_CLOEXEC 02000000

#define PT_LOAD 1
#define PT_INTERP 3
#define PT_PHDR 6
#define ET_EXEC 2
#define ET_DYN 3

#define AT_NULL 0
#define AT_PHDR 3
#define AT_PHENT 4
#define AT_PHNUM 5
#define AT_BASE 7
#define AT_ENTRY 9
#define AT_EXECFN 31
#define AT_SYSINFO 32

#define PAGE 4096UL
#define STACK_SIZE (8UL << 20)
#define MAX_PHDRS 64
#define MAX_AUXV 64

struct ehdr {
    u8 ident[16];
    u16 type, machine;
    u32 version;
    u64 entry, phoff, shoff;
    u32 flags;
    u16 ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};

struct phdr {
    u32 type, flags;
    u64 offset, vaddr, paddr, filesz, memsz, align;
};

static inline i64 sys6(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e, i64 f)
{
    register i64 r10 __asm__("r10") = d;
    register i64 r8 __asm__("r8") = e;
    register i64 r9 __asm__("r9") = f;
    i64 ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sys3(n, a, b, c) sys6(n, (i64)(a), (i64)(b), (i64)(c), 0, 0, 0)

void *memset(void *d, int c, u64 n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, u64 n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

static u64 slen(const char *s)
{
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}

static const char *env_value(char **envp, const char *name)
{
    u64 n = slen(name);
    for (; *envp; envp++) {
        u64 i = 0;
        while (i < n && (*envp)[i] == name[i])
            i++;
        if (i == n && (*envp)[n] == '=')
            return *envp + n + 1;
    }
    return 0;
}

static char *put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

static char *put_u64(char *p, u64 v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static __attribute__((noreturn)) void die(const char *what, const char *detail)
{
    char buf[512];
    char *p = put_str(buf, "kmlrun: ");
    p = put_str(p, what);
    if (detail) {
        p = put_str(p, ": ");
        u64 n = slen(detail);
        if (n > 300)
            n = 300;
        memcpy(p, detail, n);
        p += n;
    }
    *p++ = '\n';
    sys3(SYS_write, 2, buf, p - buf);
    sys3(SYS_exit_group, 127, 0, 0);
    __builtin_unreachable();
}

/* Where the counts go, chosen at start. */
static char count_path[256];
static i64 count_fd = -1;
/* The counter's page (MADV_WIPEONFORK); kml_entry increments *kml_counter. */
u64 *kml_counter;

static u64 parse_u64(const char *s, int *ok)
{
    u64 v = 0;
    *ok = *s != 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            *ok = 0;
            return 0;
        }
        v = v * 10 + (u64)(*s - '0');
    }
    return v;
}

static void emit(const char *line, u64 len)
{
    if (count_path[0]) {
        i64 fd = sys3(SYS_open, count_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            sys3(SYS_write, fd, line, len);
            sys3(SYS_close, fd, 0, 0);
        }
    } else if (count_fd >= 0) {
        sys3(SYS_write, count_fd, line, len);
    }
}

/* Called by kml_entry (on the program's stack, 16-byte aligned) before exit or exit_group. */
void kml_report(void)
{
    char buf[96];
    char *p = put_str(buf, "kmlrun: pid ");
    p = put_u64(p, (u64)sys3(SYS_getpid, 0, 0, 0));
    p = put_str(p, " calls ");
    p = put_u64(p, *(volatile u64 *)kml_counter);
    *p++ = '\n';
    emit(buf, (u64)(p - buf));
}

/* The stand-in entry. At entry [rsp] is the return address; [rsp-8] and [rsp-16] are the
 * 16 bytes the real entry may use, and they are left holding junk. */
__asm__(".text\n"
        ".globl kml_entry\n"
        ".type kml_entry, @function\n"
        "kml_entry:\n"
        "  pushfq\n"                      /* [rsp-8]: the caller's flags */
        "  mov kml_counter(%rip), %rcx\n" /* rcx and r11 are the syscall's to clobber */
        "  lock incq (%rcx)\n"
        "  cmp $231, %eax\n"
        "  je 2f\n"
        "  cmp $60, %eax\n"
        "  je 2f\n"
        "1:\n"
        "  mov 8(%rsp), %rcx\n" /* the return address, above the saved flags */
        "  cmpw $0x050f, -2(%rcx)\n"
        "  je 3f\n"
        "  popfq\n"
        "  movq $0x6b6c6d31, -8(%rsp)\n" /* junk where the real entry saves state */
        "  movq $0x6b6c6d32, -16(%rsp)\n"
        "  syscall\n"
        "  ret\n"
        "3:\n" /* a syscall just before the return address: make the call there */
        "  popfq\n"
        "  movq $0x6b6c6d31, -8(%rsp)\n"
        "  movq $0x6b6c6d32, -16(%rsp)\n"
        "  lea -2(%rcx), %rcx\n"
        "  lea 8(%rsp), %rsp\n"
        "  jmp *%rcx\n"
        "2:\n" /* exit or exit_group: report first; the process is ending anyway */
        "  push %rax\n"
        "  push %rdi\n"
        "  push %rsi\n"
        "  push %rdx\n"
        "  push %r10\n"
        "  push %r8\n"
        "  push %r9\n"
        "  push %rbx\n"
        "  mov %rsp, %rbx\n"
        "  and $-16, %rsp\n"
        "  cld\n"
        "  call kml_report\n"
        "  mov %rbx, %rsp\n"
        "  pop %rbx\n"
        "  pop %r9\n"
        "  pop %r8\n"
        "  pop %r10\n"
        "  pop %rdx\n"
        "  pop %rsi\n"
        "  pop %rdi\n"
        "  pop %rax\n"
        "  jmp 1b\n"
        ".size kml_entry, .-kml_entry\n");
void kml_entry(void);

/* Switches to the new stack, zeroes the registers and jumps to the program's entry. */
__attribute__((noreturn)) static void enter(u64 *sp, u64 entry)
{
    __asm__ volatile("mov %0, %%rsp\n"
                     "mov %1, %%r11\n"
                     "xor %%eax, %%eax\n"
                     "xor %%ebx, %%ebx\n"
                     "xor %%ecx, %%ecx\n"
                     "xor %%edx, %%edx\n"
                     "xor %%esi, %%esi\n"
                     "xor %%edi, %%edi\n"
                     "xor %%ebp, %%ebp\n"
                     "xor %%r8d, %%r8d\n"
                     "xor %%r9d, %%r9d\n"
                     "xor %%r10d, %%r10d\n"
                     "xor %%r12d, %%r12d\n"
                     "xor %%r13d, %%r13d\n"
                     "xor %%r14d, %%r14d\n"
                     "xor %%r15d, %%r15d\n"
                     "push %%r11\n" /* entry, popped by ret below: r11 ends up zero too */
                     "xor %%r11d, %%r11d\n"
                     "cld\n"
                     "ret\n"
                     :
                     : "r"(sp), "r"(entry)
                     : "memory");
    __builtin_unreachable();
}

static int prot_of(u32 flags)
{
    return (flags & 4 ? PROT_READ : 0) | (flags & 2 ? PROT_WRITE : 0) |
           (flags & 1 ? PROT_EXEC : 0);
}

static int is_err(i64 r)
{
    return r < 0 && r > -4096;
}

__attribute__((used)) void kmlrun_main(u64 *sp0)
{
    i64 argc = (i64)sp0[0];
    char **argv = (char **)(sp0 + 1);
    char **envp = argv + argc + 1;
    char **e = envp;
    while (*e)
        e++;
    u64 *auxv = (u64 *)(e + 1);

    if (argc < 2)
        die("usage: kmlrun PROGRAM [ARGS...]", 0);
    const char *path = argv[1];

    const char *cf = env_value(envp, "KMLRUN_COUNT_FILE");
    if (cf && *cf) {
        u64 n = slen(cf);
        if (n >= sizeof count_path)
            die("KMLRUN_COUNT_FILE is too long", 0);
        memcpy(count_path, cf, n + 1);
    }
    const char *cfd = env_value(envp, "KMLRUN_COUNT_FD");
    if (cfd) {
        int ok;
        count_fd = (i64)parse_u64(cfd, &ok);
        if (!ok)
            die("KMLRUN_COUNT_FD is not a number", cfd);
    }
    const char *nosys = env_value(envp, "KMLRUN_NO_SYSINFO");
    int with_sysinfo = !(nosys && nosys[0] == '1');

    i64 fd = sys3(SYS_open, path, O_RDONLY | O_CLOEXEC, 0);
    if (is_err(fd))
        die("cannot open the program", path);
    struct ehdr eh;
    if (sys6(SYS_pread64, fd, (i64)&eh, sizeof eh, 0, 0, 0) != (i64)sizeof eh)
        die("cannot read the ELF header", path);
    if (eh.ident[0] != 0x7f || eh.ident[1] != 'E' || eh.ident[2] != 'L' || eh.ident[3] != 'F' ||
        eh.ident[4] != 2 || eh.ident[5] != 1 || eh.machine != 62)
        die("not a 64-bit little-endian x86-64 ELF", path);
    if (eh.type != ET_EXEC && eh.type != ET_DYN)
        die("not an executable", path);
    if (eh.phentsize != sizeof(struct phdr) || eh.phnum == 0 || eh.phnum > MAX_PHDRS)
        die("bad program header table", path);
    struct phdr ph[MAX_PHDRS];
    u64 phsize = (u64)eh.phnum * sizeof(struct phdr);
    if (sys6(SYS_pread64, fd, (i64)ph, (i64)phsize, (i64)eh.phoff, 0, 0) != (i64)phsize)
        die("cannot read the program headers", path);

    u64 lo = ~0UL, hi = 0, align = PAGE, phdr_vaddr = 0;
    int have_phdr = 0;
    for (int i = 0; i < eh.phnum; i++) {
        if (ph[i].type == PT_INTERP)
            die("dynamically linked (has PT_INTERP): not for kmlrun", path);
        if (ph[i].type == PT_PHDR) {
            phdr_vaddr = ph[i].vaddr;
            have_phdr = 1;
        }
        if (ph[i].type != PT_LOAD)
            continue;
        if ((ph[i].vaddr - ph[i].offset) % PAGE)
            die("PT_LOAD offset and address disagree modulo the page size", path);
        if (ph[i].vaddr < lo)
            lo = ph[i].vaddr;
        if (ph[i].vaddr + ph[i].memsz > hi)
            hi = ph[i].vaddr + ph[i].memsz;
        if (ph[i].align > align)
            align = ph[i].align;
    }
    if (hi == 0)
        die("no PT_LOAD segment", path);
    if (!have_phdr) { /* the table's address: the PT_LOAD whose file range holds it */
        for (int i = 0; i < eh.phnum; i++)
            if (ph[i].type == PT_LOAD && eh.phoff >= ph[i].offset &&
                eh.phoff + phsize <= ph[i].offset + ph[i].filesz) {
                phdr_vaddr = ph[i].vaddr + (eh.phoff - ph[i].offset);
                have_phdr = 1;
            }
        if (!have_phdr)
            die("the program header table is in no PT_LOAD segment", path);
    }
    lo &= ~(PAGE - 1);
    hi = (hi + PAGE - 1) & ~(PAGE - 1);

    /* Reserve the whole span, then map each segment over it. */
    u64 base;
    if (eh.type == ET_EXEC) {
        i64 r = sys6(SYS_mmap, (i64)lo, (i64)(hi - lo), 0,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (is_err(r) || (u64)r != lo)
            die("the program's addresses are taken", path);
        base = 0;
    } else {
        if (align & (align - 1) || align > (1UL << 30))
            die("odd PT_LOAD alignment", path);
        i64 r = sys6(SYS_mmap, 0, (i64)(hi - lo + align), 0, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (is_err(r))
            die("cannot reserve address space", path);
        u64 start = ((u64)r + align - 1) & ~(align - 1);
        base = start - lo;
    }
    for (int i = 0; i < eh.phnum; i++) {
        if (ph[i].type != PT_LOAD || ph[i].memsz == 0)
            continue;
        u64 va = base + ph[i].vaddr;
        u64 pstart = va & ~(PAGE - 1);
        u64 fend = va + ph[i].filesz;
        u64 mend = (va + ph[i].memsz + PAGE - 1) & ~(PAGE - 1);
        int prot = prot_of(ph[i].flags);
        if (ph[i].filesz) {
            i64 r = sys6(SYS_mmap, (i64)pstart, (i64)(fend - pstart), prot | PROT_WRITE,
                         MAP_PRIVATE | MAP_FIXED, fd, (i64)(ph[i].offset & ~(PAGE - 1)));
            if (is_err(r))
                die("cannot map a segment", path);
            u64 fpage_end = (fend + PAGE - 1) & ~(PAGE - 1);
            if (ph[i].memsz > ph[i].filesz) /* zero the rest of the last file page */
                memset((void *)fend, 0, (fpage_end < mend ? fpage_end : mend) - fend);
            sys3(SYS_mprotect, pstart, fpage_end - pstart, prot);
            pstart = fpage_end;
        }
        if (mend > pstart) {
            i64 r = sys6(SYS_mmap, (i64)pstart, (i64)(mend - pstart), prot,
                         MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0);
            if (is_err(r))
                die("cannot map a segment's zero pages", path);
        }
    }
    sys3(SYS_close, fd, 0, 0);

    i64 page = sys6(SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (is_err(page))
        die("cannot map the counter page", 0);
    if (sys3(SYS_madvise, page, PAGE, MADV_WIPEONFORK) != 0)
        die("madvise(MADV_WIPEONFORK) failed", 0);
    kml_counter = (u64 *)page;

    /* The new stack: argc, argv, NULL, envp, NULL, auxv, AT_NULL; strings stay where the
     * kernel put them (the old stack stays mapped). */
    i64 st = sys6(SYS_mmap, 0, STACK_SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (is_err(st))
        die("cannot map a stack", 0);
    u64 nenv = (u64)(e - envp);
    u64 aux[2 * MAX_AUXV];
    u64 na = 0;
    for (u64 *a = auxv; a[0] != AT_NULL && na + 2 < 2 * MAX_AUXV - 16; a += 2) {
        u64 v = a[1];
        switch (a[0]) {
        case AT_PHDR:
        case AT_PHENT:
        case AT_PHNUM:
        case AT_BASE:
        case AT_ENTRY:
        case AT_EXECFN:
        case AT_SYSINFO:
            continue; /* replaced below */
        }
        aux[na++] = a[0];
        aux[na++] = v;
    }
    aux[na++] = AT_PHDR;
    aux[na++] = base + phdr_vaddr;
    aux[na++] = AT_PHENT;
    aux[na++] = sizeof(struct phdr);
    aux[na++] = AT_PHNUM;
    aux[na++] = eh.phnum;
    aux[na++] = AT_BASE;
    aux[na++] = 0;
    aux[na++] = AT_ENTRY;
    aux[na++] = base + eh.entry;
    aux[na++] = AT_EXECFN;
    aux[na++] = (u64)path;
    if (with_sysinfo) {
        aux[na++] = AT_SYSINFO;
        aux[na++] = (u64)&kml_entry;
    }
    aux[na++] = AT_NULL;
    aux[na++] = 0;

    u64 words = 1 + (u64)(argc - 1) + 1 + nenv + 1 + na;
    u64 *sp = (u64 *)(((u64)st + STACK_SIZE - words * 8) & ~15UL);
    u64 *w = sp;
    *w++ = (u64)(argc - 1);
    for (i64 i = 1; i < argc; i++)
        *w++ = (u64)argv[i];
    *w++ = 0;
    for (u64 i = 0; i < nenv; i++)
        *w++ = (u64)envp[i];
    *w++ = 0;
    for (u64 i = 0; i < na; i++)
        *w++ = aux[i];

    char line[96];
    char *p = put_str(line, "kmlrun: pid ");
    p = put_u64(p, (u64)sys3(SYS_getpid, 0, 0, 0));
    p = put_str(p, " start\n");
    emit(line, (u64)(p - line));

    enter(sp, base + eh.entry);
}

__asm__(".text\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "  xor %ebp, %ebp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call kmlrun_main\n"
        "  hlt\n"
        ".size _start, .-_start\n");
