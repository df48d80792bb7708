/*
 * kml6test: KML's security model and fault containment (musl, static). Each check prints
 * "kml6: " lines; the test runs them against /trusted/kml6test (CPL 0 where allowed) and
 * /kml6test (CPL 3), which must tell the same story but for where the program runs.
 *   kml6test cs                     its CS (the program the other checks exec)
 *   kml6test traceme TARGET         as nobody: PTRACE_TRACEME, then exec TARGET: the
 *                                   tracer's view of CS at the exec stop
 *   kml6test nnp|sharefs|userns TARGET
 *                                   exec TARGET under no_new_privs, sharing its fs_struct
 *                                   with another process, or in a new user namespace
 *   kml6test dumpable TARGET HOW    TARGET runs "victim HOW" (setuid nobody, then HOW=prctl:
 *                                   PR_SET_DUMPABLE 1, HOW=setuid: with fs.suid_dumpable=1);
 *                                   who may attach to it or write its /proc/PID/mem
 *   kml6test perf TARGET            as nobody: a task-clock perf event opened on a child
 *                                   before it execs "TARGET spin" (300 ms of CPU): counted?
 *   kml6test sysctl-off TARGET      kernel.kml=0 while running: a fork's CS, an exec's CS
 *   kml6test link TARGET PATH       as nobody: hard-link TARGET (root's) to PATH
 *   kml6test execloop TARGET N      N times: a child execs "TARGET gs", which fails when the
 *                                   new program's GS base is not 0; with "TARGET hog"
 *                                   spinning beside it on the same CPU (leaving kernel mode
 *                                   at exec must leave no per-CPU GS base behind)
 *   kml6test ints                   a child per vector executes "int $N": the signal that
 *                                   ends it (0: none), for the vectors of INT_VECTORS
 *   kml6test faultloop MS           on CPU 1 for MS ms: map a page, touch it, unmap it (a page
 *                                   fault, through the frame-moving prologue, each time)
 *   kml6test badrsp|badrsp-handler|badrsp-kernel
 *                                   a child spins with RSP not a user address (set directly,
 *                                   from a SIGTRAP handler, or a mapped kernel address): the
 *                                   signal that ends it within 10 s (0: none, killed), and
 *                                   whether sleep(1) still returns
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define NOBODY 65534

static unsigned cs(void) {
    unsigned short v;
    __asm__ volatile("mov %%cs, %0" : "=r"(v));
    return v;
}

static const char *err_name(int e) {
    switch (e) {
    case -1:
        return "setup-failed";
    case 0:
        return "0";
    case EPERM:
        return "EPERM";
    case EACCES:
        return "EACCES";
    default:
        return strerror(e);
    }
}

static void become_nobody(void) {
    if (setgid(NOBODY) || setuid(NOBODY))
        _exit(126);
}

/* An attacker: nobody, and dumpable again (setuid made it not), so that its own /proc
 * files are its own and processes of its uid may be inspected by it. */
static void become_attacker(void) {
    become_nobody();
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
}

static long ms_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* "kml6: how status=N", N the exit status or 128 + the signal. */
static int reap(pid_t pid, const char *how) {
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return 2;
    int n = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    printf("kml6: %s status=%d\n", how, n);
    fflush(stdout);
    return 0;
}

static void exec_cs(const char *target) {
    fflush(stdout);
    execl(target, target, "cs", (char *)0);
    _exit(127);
}

/* As nobody: the child asks to be traced, stops, then execs TARGET; the tracer reads CS at
 * the exec stop, where it could rewrite every register. */
static int traceme(const char *target) {
    become_attacker();
    pid_t pid = fork();
    if (pid == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        exec_cs(target);
    }
    int st;
    waitpid(pid, &st, 0); /* SIGSTOP */
    ptrace(PTRACE_CONT, pid, 0, 0);
    waitpid(pid, &st, 0); /* the exec's SIGTRAP */
    struct user_regs_struct r = {0};
    ptrace(PTRACE_GETREGS, pid, 0, &r);
    printf("kml6: traceme tracer_cs=0x%lx\n", (unsigned long)r.cs);
    ptrace(PTRACE_DETACH, pid, 0, 0);
    return reap(pid, "traceme");
}

static int nnp(const char *target) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return 3;
    exec_cs(target);
    return 0;
}

/* The exec happens in a process that shares its fs_struct (cwd, root) with its parent. */
static int sharefs(const char *target) {
    long pid = syscall(SYS_clone, CLONE_FS | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        exec_cs(target);
    return pid < 0 ? 4 : reap(pid, "sharefs");
}

static int userns(const char *target) {
    if (unshare(CLONE_NEWUSER)) {
        printf("kml6: userns unshare: %s\n", strerror(errno));
        return 5;
    }
    exec_cs(target);
    return 0;
}

/* Run as "TARGET victim HOW" by root: become nobody, then dumpable again if it can be. */
static int victim(const char *how) {
    become_nobody();
    if (!strcmp(how, "prctl"))
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    printf("dumpable=%d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    fflush(stdout);
    pause();
    return 0;
}

/* In a child: as nobody (in a new user namespace where it is root, if in_userns), attach to
 * pid, then open its memory for writing; returns the two errno values. */
static void try_access(pid_t pid, int in_userns, int *attach, int *mem) {
    int fds[2];
    if (pipe(fds))
        exit(6);
    pid_t child = fork();
    if (child == 0) {
        become_attacker();
        if (in_userns) {
            if (unshare(CLONE_NEWUSER))
                _exit(7);
            int fd = open("/proc/self/uid_map", O_WRONLY);
            if (fd < 0 || write(fd, "0 65534 1\n", 10) != 10)
                _exit(8);
            close(fd);
        }
        int e[2];
        e[0] = ptrace(PTRACE_ATTACH, pid, 0, 0) == 0 ? 0 : errno;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/mem", pid);
        int fd = open(path, O_RDWR);
        e[1] = fd >= 0 ? 0 : errno;
        write(fds[1], e, sizeof e);
        _exit(0);
    }
    close(fds[1]);
    int e[2] = {-1, -1};
    read(fds[0], e, sizeof e);
    close(fds[0]);
    waitpid(child, 0, 0);
    *attach = e[0];
    *mem = e[1];
}

static int dumpable(const char *target, const char *how) {
    int fds[2];
    if (pipe(fds))
        return 9;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        execl(target, target, "victim", how, (char *)0);
        _exit(127);
    }
    close(fds[1]);
    char line[64] = "";
    if (read(fds[0], line, sizeof line - 1) <= 0)
        return 10;
    line[strcspn(line, "\n")] = 0;
    int attach, mem, ns_attach, ns_mem;
    try_access(pid, 0, &attach, &mem);
    try_access(pid, 1, &ns_attach, &ns_mem);
    long r = ptrace(PTRACE_ATTACH, pid, 0, 0);
    int root = r == 0 ? 0 : errno;
    kill(pid, SIGKILL);
    waitpid(pid, 0, 0);
    printf("kml6: dumpable %s %s nobody_attach=%s nobody_mem=%s userns_attach=%s "
           "userns_mem=%s root_attach=%s\n",
           how, line, err_name(attach), err_name(mem), err_name(ns_attach), err_name(ns_mem),
           err_name(root));
    return 0;
}

static int spin(void) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (ms_since(&t0) < 300)
        ;
    return 0;
}

/* perf_event_attr as of PERF_ATTR_SIZE_VER0 (musl has no kernel headers). */
struct perf_attr {
    unsigned type, size;
    unsigned long long config, sample_period, sample_type, read_format, flags;
    unsigned wakeup_events, bp_type;
    unsigned long long config1;
};
#define PERF_TYPE_SOFTWARE 1
#define PERF_COUNT_SW_TASK_CLOCK 1
#define EXCLUDE_KERNEL (1ull << 5)
#define EXCLUDE_HV (1ull << 6)

/* As nobody: count a child's task clock with an event opened before it execs TARGET. */
static int perf(const char *target) {
    become_attacker();
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGSTOP);
        execl(target, target, "spin", (char *)0);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, WUNTRACED);
    struct perf_attr a = {
        .type = PERF_TYPE_SOFTWARE,
        .size = sizeof a,
        .config = PERF_COUNT_SW_TASK_CLOCK,
        .flags = EXCLUDE_KERNEL | EXCLUDE_HV,
    };
    int fd = syscall(SYS_perf_event_open, &a, pid, -1, -1, 0);
    if (fd < 0) {
        printf("kml6: perf_event_open: %s\n", strerror(errno));
        return 11;
    }
    kill(pid, SIGCONT);
    waitpid(pid, &st, 0);
    unsigned long long ns = 0;
    if (read(fd, &ns, sizeof ns) != sizeof ns)
        return 12;
    /* The exec itself takes well under 100 ms; the spin 300. */
    printf("kml6: perf counted_spin=%s\n", ns >= 100000000 ? "yes" : "no");
    return 0;
}

static int write_kml(const char *v) {
    int fd = open("/proc/sys/kernel/kml", O_WRONLY);
    int ok = fd >= 0 && write(fd, v, 1) == 1;
    close(fd);
    return ok;
}

/* Switching KML off does not take running processes out of kernel mode: their forks stay,
 * their execs leave it. */
static int sysctl_off(const char *target) {
    if (!write_kml("0"))
        return 13;
    unsigned self = cs();
    pid_t pid = fork();
    if (pid == 0) {
        printf("kml6: sysctl-off self=0x%x fork=0x%x\n", self, cs());
        exec_cs(target);
    }
    int r = reap(pid, "sysctl-off");
    return write_kml("1") ? r : 14;
}

static int link_as_nobody(const char *target, const char *path) {
    become_nobody();
    printf("kml6: link %s\n", err_name(link(target, path) ? errno : 0));
    return 0;
}

static int gs_base_is_zero(void) {
    unsigned long v = 1;
    syscall(SYS_arch_prctl, 0x1004 /* ARCH_GET_GS */, &v);
    return v == 0 ? 0 : 1;
}

static void pin_to_cpu0(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static int execloop(const char *target, int n) {
    pin_to_cpu0();
    pid_t hog = fork();
    if (hog == 0) {
        execl(target, target, "hog", (char *)0);
        _exit(127);
    }
    int leaks = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execl(target, target, "gs", (char *)0);
            _exit(127);
        }
        int st;
        waitpid(pid, &st, 0);
        leaks += WIFEXITED(st) && WEXITSTATUS(st) == 1;
        failed += !WIFEXITED(st) || WEXITSTATUS(st) > 1;
    }
    kill(hog, SIGKILL);
    waitpid(hog, 0, 0);
    printf("kml6: execloop n=%d gs_leaks=%d failed=%d\n", n, leaks, failed);
    return 0;
}

static int faultloop(int ms) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    if (sched_setaffinity(0, sizeof set, &set))
        return 15;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long n = 0;
    while (ms_since(&t0) < ms) {
        volatile char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 16;
        p[0] = 1;
        munmap((void *)p, 4096);
        n++;
    }
    printf("kml6: faultloop done (%ld faults)\n", n);
    return 0;
}

static void hog(void) {
    pin_to_cpu0();
    for (;;)
        ;
}

/* Exceptions with and without an error code, NMI, #MC, the gates open to CPL 3 (int3, into),
 * and the external range: device interrupts, 0x80, the timer, the reboot IPI, spurious. */
#define INT_VECTORS(X)                                                                         \
    X(0x00) X(0x02) X(0x03) X(0x04) X(0x06) X(0x07) X(0x08) X(0x0d) X(0x0e) X(0x12) X(0x14)      \
    X(0x1f) X(0x20) X(0x30) X(0x80) X(0xec) X(0xf8) X(0xff)

static void do_int(int v) {
    switch (v) {
#define CASE(n)                                                                                \
    case n:                                                                                    \
        __asm__ volatile("int $" #n ::: "memory");                                             \
        break;
        INT_VECTORS(CASE)
#undef CASE
    }
}

static int ints(void) {
    static const int vectors[] = {
#define ITEM(n) n,
        INT_VECTORS(ITEM)
#undef ITEM
    };
    printf("kml6: ints");
    for (unsigned i = 0; i < sizeof vectors / sizeof *vectors; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            do_int(vectors[i]);
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        printf(" 0x%02x:%d", vectors[i], WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    }
    printf("\n");
    return 0;
}

void spin_forever(void);
__asm__(".text\n.globl spin_forever\nspin_forever:\n1: jmp 1b\n");

static volatile unsigned long bad_rsp;

static void set_rsp(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    uc->uc_mcontext.gregs[REG_RSP] = bad_rsp;
    uc->uc_mcontext.gregs[REG_RIP] = (unsigned long)spin_forever;
}

/* A child spins with RSP = rsp (directly or from a handler); how it ends, and whether
 * the machine still keeps time afterwards. */
static int badrsp(unsigned long rsp, int from_handler, const char *name) {
    bad_rsp = rsp;
    pid_t pid = fork();
    if (pid == 0) {
        if (from_handler) {
            struct sigaction sa = {.sa_sigaction = set_rsp, .sa_flags = SA_SIGINFO};
            sigaction(SIGTRAP, &sa, 0);
            __asm__ volatile("int3");
        }
        __asm__ volatile("mov %0, %%rsp\n\tjmp spin_forever" : : "r"(rsp) : "memory");
    }
    /* 10 s at most: a child that is never stopped is killed, and reported as signal=0. */
    int st = 0;
    struct timespec t0, one = {1, 0}, tick = {0, 10000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (ms_since(&t0) > 10000) {
            kill(pid, SIGKILL);
            waitpid(pid, 0, 0);
            st = 0;
            break;
        }
        nanosleep(&tick, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    nanosleep(&one, 0);
    long ms = ms_since(&t0);
    printf("kml6: %s signal=%d sleep_1s=%s\n", name, WIFSIGNALED(st) ? WTERMSIG(st) : 0,
           ms >= 1000 && ms < 5000 ? "ok" : "late");
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    const char *target = argc > 2 ? argv[2] : "";
    setvbuf(stdout, 0, _IOLBF, 0);
    if (!strcmp(mode, "cs"))
        return printf("kml6: cs=0x%x\n", cs()) < 0;
    if (!strcmp(mode, "spin"))
        return spin();
    if (!strcmp(mode, "gs"))
        return gs_base_is_zero();
    if (!strcmp(mode, "hog"))
        hog();
    if (!strcmp(mode, "victim"))
        return victim(target);
    if (!strcmp(mode, "faultloop"))
        return faultloop(atoi(target));
    if (!strcmp(mode, "ints"))
        return ints();
    if (!strcmp(mode, "badrsp"))
        return badrsp(0x8000000000000000ul, 0, mode);
    if (!strcmp(mode, "badrsp-handler"))
        return badrsp(0x8000000000000000ul, 1, mode);
    /* The direct map's start: kernel memory, mapped and writable at CPL 0. */
    if (!strcmp(mode, "badrsp-kernel"))
        return badrsp(0xffff888000100000ul, 0, mode);
    if (argc < 3)
        return 2;
    if (!strcmp(mode, "traceme"))
        return traceme(target);
    if (!strcmp(mode, "nnp"))
        return nnp(target);
    if (!strcmp(mode, "sharefs"))
        return sharefs(target);
    if (!strcmp(mode, "userns"))
        return userns(target);
    if (!strcmp(mode, "dumpable") && argc > 3)
        return dumpable(target, argv[3]);
    if (!strcmp(mode, "perf"))
        return perf(target);
    if (!strcmp(mode, "link") && argc > 3)
        return link_as_nobody(target, argv[3]);
    if (!strcmp(mode, "execloop") && argc > 3)
        return execloop(target, atoi(argv[3]));
    if (!strcmp(mode, "sysctl-off"))
        return sysctl_off(target);
    return 2;
}
