/*
 * kml5test: the KML counters and ptrace checks (musl, static, relinked by the test):
 *   kml5test counters          page faults and interrupts of this process in /proc/kml
 *   kml5test ptrace TARGET     a root tracer's view of TARGET (run as "TARGET work")
 *   kml5test attach TARGET     PTRACE_ATTACH to TARGET (run as "TARGET sleep" by nobody)
 *                              from nobody and from root
 *   kml5test work | sleep      what the tracer and the attacher run
 * Each mode prints one "kml5: " line; the test compares it for /trusted and CPL 3 copies.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOBODY 65534

static unsigned cs(void) {
    unsigned short v;
    __asm__ volatile("mov %%cs, %0" : "=r"(v));
    return v;
}

struct counts {
    long calls, syscalls, interrupts, faults;
};

/* The sums over all CPUs of the /proc/kml columns. */
static void snap(struct counts *c) {
    static char buf[8192];
    int fd = open("/proc/kml", O_RDONLY);
    if (fd < 0)
        exit(10);
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        exit(11);
    buf[n] = 0;
    memset(c, 0, sizeof *c);
    for (char *line = strstr(buf, "\ncpu"); line; line = strstr(line + 1, "\ncpu")) {
        long a, b, i, f;
        if (sscanf(line, "\ncpu%*u calls %ld syscalls %ld interrupts %ld faults %ld", &a, &b,
                   &i, &f) != 4)
            exit(12);
        c->calls += a;
        c->syscalls += b;
        c->interrupts += i;
        c->faults += f;
    }
}

static long ms_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* vDSO: no system call */
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* N fresh pages touched (N page faults at CPL 0), then 300 ms of spinning with no system
 * call and no fault (only interrupts enter the kernel). */
static int counters(void) {
    enum { N = 2000 };
    struct counts a, b, c, d;
    ms_now(); /* the vDSO's first call faults its pages in */
    snap(&a);
    snap(&b); /* the first read faulted its buffer in */
    volatile char *p = mmap(0, N * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            -1, 0);
    if (p == MAP_FAILED)
        return 13;
    for (int i = 0; i < N; i++)
        p[i * 4096] = 1;
    snap(&c);
    long start = ms_now();
    while (ms_now() - start < 300)
        ;
    snap(&d);
    long spin = d.interrupts - c.interrupts;
    printf("kml5: counters cs=0x%x faults=%ld touch_interrupts>=faults=%d spin_faults=%ld "
           "spin_interrupts=%s\n",
           cs(), c.faults - b.faults, c.interrupts - b.interrupts >= c.faults - b.faults,
           d.faults - c.faults, spin == 0 ? "0" : spin >= 10 ? "many" : "few");
    return 0;
}

static const char *result(long r) {
    return r == 0 ? "0" : errno == EIO ? "EIO" : errno == EPERM ? "EPERM" : strerror(errno);
}

/* Runs "TARGET work" under ptrace: register writes, single-step, syscall stops. */
static int tracer(const char *target) {
    pid_t pid = fork();
    if (pid == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        execl(target, target, "work", (char *)0);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0); /* the exec stop */
    if (!WIFSTOPPED(st))
        return 20;
    struct user_regs_struct r, w;
    ptrace(PTRACE_GETREGS, pid, 0, &r);
    const char *same = result(ptrace(PTRACE_SETREGS, pid, 0, &r));
    w = r;
    w.cs = r.cs == 0x33 ? 0x23 : 0x33;
    const char *cs_change = result(ptrace(PTRACE_SETREGS, pid, 0, &w));
    ptrace(PTRACE_SETREGS, pid, 0, &r);
    long gs = offsetof(struct user_regs_struct, gs_base);
    const char *gsbase = result(ptrace(PTRACE_POKEUSER, pid, gs, 0x10000));
    ptrace(PTRACE_POKEUSER, pid, gs, r.gs_base);
    long fl = offsetof(struct user_regs_struct, eflags);
    const char *tf = result(ptrace(PTRACE_POKEUSER, pid, fl, r.eflags | 0x100));
    ptrace(PTRACE_POKEUSER, pid, fl, r.eflags);
    long dr0 = offsetof(struct user, u_debugreg);
    const char *dr = result(ptrace(PTRACE_POKEUSER, pid, dr0, r.rip));
    ptrace(PTRACE_POKEUSER, pid, dr0, 0);
    long s = ptrace(PTRACE_SINGLESTEP, pid, 0, 0);
    const char *step = result(s);
    if (s == 0) {
        waitpid(pid, &st, 0);
        if (!WIFSTOPPED(st) || WSTOPSIG(st) != SIGTRAP)
            return 21;
    }
    /* Syscall stops, entry and exit: count the getppid entries. */
    long getppid_stops = 0;
    for (;;) {
        if (ptrace(PTRACE_SYSCALL, pid, 0, 0) != 0)
            return 22;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) || WIFSIGNALED(st))
            break;
        ptrace(PTRACE_GETREGS, pid, 0, &w);
        getppid_stops += w.orig_rax == SYS_getppid;
    }
    printf("kml5: ptrace %s cs=0x%llx ss=0x%llx same=%s cs_change=%s gsbase=%s tf=%s dr=%s "
           "step=%s getppid_stops=%ld status=%d\n",
           target, r.cs, r.ss, same, cs_change, gsbase, tf, dr, step, getppid_stops,
           WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return 0;
}

/* "TARGET sleep" run by nobody; PTRACE_ATTACH from nobody, then from root. */
static int attacher(const char *target) {
    int fds[2];
    if (pipe(fds))
        return 30;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        if (setgid(NOBODY) || setuid(NOBODY))
            _exit(126);
        execl(target, target, "sleep", (char *)0);
        _exit(127);
    }
    close(fds[1]);
    char line[128] = "";
    if (read(fds[0], line, sizeof line - 1) <= 0) { /* the target runs */
        int st;
        waitpid(pid, &st, 0);
        printf("kml5: attach %s did not start: status 0x%x\n", target, st);
        return 31;
    }
    line[strcspn(line, "\n")] = 0;
    pid_t other = fork();
    if (other == 0) {
        if (setgid(NOBODY) || setuid(NOBODY))
            _exit(126);
        _exit(ptrace(PTRACE_ATTACH, pid, 0, 0) == 0 ? 0 : errno);
    }
    int st;
    waitpid(other, &st, 0);
    int e = WEXITSTATUS(st);
    const char *nobody = e == 0 ? "0" : e == EPERM ? "EPERM" : strerror(e);
    long r = ptrace(PTRACE_ATTACH, pid, 0, 0);
    const char *root = result(r);
    if (r == 0) {
        waitpid(pid, &st, 0);
        ptrace(PTRACE_DETACH, pid, 0, 0);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    printf("kml5: attach %s (%s) nobody=%s root=%s\n", target, line, nobody, root);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "counters"))
        return counters();
    if (!strcmp(mode, "ptrace") && argc > 2)
        return tracer(argv[2]);
    if (!strcmp(mode, "attach") && argc > 2)
        return attacher(argv[2]);
    if (!strcmp(mode, "work")) {
        pid_t parent = getppid();
        int bad = 0;
        for (int i = 0; i < 999; i++)
            bad += getppid() != parent;
        printf("kml5: work cs=0x%x bad=%d\n", cs(), bad);
        return 0;
    }
    if (!strcmp(mode, "sleep")) {
        printf("cs=0x%x uid=%d\n", cs(), getuid());
        fflush(stdout);
        sleep(60);
        return 0;
    }
    fprintf(stderr, "usage: kml5test counters | ptrace TARGET | attach TARGET | work | sleep\n");
    return 2;
}
