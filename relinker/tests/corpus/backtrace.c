/* backtrace: unwinding from a signal handler through the signal frame into the interrupted
 * code. main -> level1 -> level2, and level2 is interrupted by a signal:
 *   fault    level2 executes ud2 (SIGILL); the handler skips it and returns
 *   raise    level2 calls raise(SIGUSR1)
 *   syscall  level2 is blocked in read() when SIGALRM arrives
 * The handler walks the stack with libgcc's _Unwind_Backtrace (and glibc's backtrace()) and
 * prints which of level2, level1, main it found, in order. Unwinding past the handler needs
 * the signal frame to be recognised: by __restore_rt's FDE (glibc) or by its bytes (libgcc's
 * fallback for musl, whose libc has no unwind tables; so only "fault" finds frames there).
 * Built with -O1 -fno-inline -funwind-tables; musl needs -Wl,--eh-frame-hdr as well. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>
#include <unwind.h>
#ifdef __GLIBC__
#include <execinfo.h>
#else
#include <elf.h>
#include <link.h>

/* Debian's libgcc_eh.a is built for glibc: its FDE lookup calls glibc's _dl_find_object, which
 * musl lacks. This stand-in gives libgcc the program's .eh_frame_hdr (PT_GNU_EH_FRAME), found
 * with dl_iterate_phdr, in the layout of glibc's <dlfcn.h>. */
struct link_map_head {
    ElfW(Addr) l_addr;
};
struct dl_find_object {
    unsigned long long dlfo_flags;
    void *dlfo_map_start;
    void *dlfo_map_end;
    struct link_map_head *dlfo_link_map;
    void *dlfo_eh_frame;
    unsigned long long reserved[7];
};
static struct link_map_head main_map;
struct eh_search {
    void *eh_frame;
    ElfW(Addr) bias;
};

static int find_eh(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct eh_search *s = arg;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME) {
            s->eh_frame = (void *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
            s->bias = info->dlpi_addr;
            return 1;
        }
    return 0;
}

int _dl_find_object(void *pc, struct dl_find_object *out)
{
    (void)pc;
    struct eh_search s = {0, 0};
    dl_iterate_phdr(find_eh, &s);
    if (!s.eh_frame)
        return -1;
    main_map.l_addr = s.bias;
    memset(out, 0, sizeof *out);
    out->dlfo_link_map = &main_map;
    out->dlfo_eh_frame = s.eh_frame;
    return 0;
}
#endif

#define MAXF 64
static void *ips[MAXF];
static int nips;

static _Unwind_Reason_Code collect(struct _Unwind_Context *ctx, void *arg)
{
    (void)arg;
    if (nips >= MAXF)
        return _URC_END_OF_STACK;
    ips[nips++] = (void *)_Unwind_GetIP(ctx);
    return _URC_NO_REASON;
}

__attribute__((noinline)) int level1(int depth);
__attribute__((noinline)) int level2(int depth);
int main(int argc, char **argv);

static const char *name_of(void *ip, int is_return_address)
{
    /* A return address may be one past its call, at the start of the next function. */
    void *f = _Unwind_FindEnclosingFunction((char *)ip - (is_return_address ? 1 : 0));
    if (f == (void *)level2)
        return "level2";
    if (f == (void *)level1)
        return "level1";
    if (f == (void *)main)
        return "main";
    return NULL;
}

static void print_chain(const char *how, void **frames, int n, int exact_first)
{
    printf("%s:", how);
    const char *last = NULL;
    for (int i = 0; i < n; i++) {
        const char *nm = name_of(frames[i], !(exact_first && i == 0));
        if (nm && nm != last)
            printf(" %s", nm);
        if (nm)
            last = nm;
    }
    printf("\n");
}

static char mode[16];
static int pipefd[2];

static void handler(int sig, siginfo_t *si, void *ucv)
{
    (void)si;
    nips = 0;
    _Unwind_Backtrace(collect, NULL);
    print_chain("_Unwind_Backtrace", ips, nips, 0);
#ifdef __GLIBC__
    void *bt[MAXF];
    int n = backtrace(bt, MAXF);
    print_chain("backtrace()", bt, n, 0);
#endif
    if (sig == SIGILL) {
        ucontext_t *uc = ucv;
        uc->uc_mcontext.gregs[REG_RIP] += 2; /* past the ud2 */
    }
    if (sig == SIGALRM)
        write(pipefd[1], "x", 1); /* let the read finish */
}

__attribute__((noinline)) int level2(int depth)
{
    if (strcmp(mode, "fault") == 0)
        __asm__ volatile("ud2");
    else if (strcmp(mode, "raise") == 0)
        raise(SIGUSR1);
    else if (strcmp(mode, "syscall") == 0) {
        char c;
        struct itimerval it = {{0, 0}, {0, 30000}};
        setitimer(ITIMER_REAL, &it, NULL);
        if (read(pipefd[0], &c, 1) != 1)
            printf("read failed\n");
    }
    return depth + 1;
}

__attribute__((noinline)) int level1(int depth)
{
    int r = level2(depth + 1);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
    return r + 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(mode, sizeof mode, "%s", argc > 1 ? argv[1] : "fault");
    pipe(pipefd);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGILL, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    printf("mode %s\n", mode);
    int r = level1(0);
    printf("returned %d\n", r);
    return 0;
}
