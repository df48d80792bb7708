/* signals: a read interrupted by SIGALRM restarts under SA_RESTART and fails with EINTR
 * without it; SA_SIGINFO, sigqueue values, blocked and pending signals, sigtimedwait, an
 * alternate signal stack, nanosleep interrupted, a handler that modifies errno. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms;
static int pipe_w = -1;

static void on_alarm(int sig)
{
    int saved = errno;
    (void)sig;
    alarms++;
    if (pipe_w >= 0 && alarms == 2) /* the second alarm feeds the read the first one broke */
        write(pipe_w, "x", 1);
    errno = saved;
}

static void timer(long usec)
{
    struct itimerval it = {{0, usec}, {0, usec}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void restart_case(int restart)
{
    int fds[2];
    pipe(fds);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarms = 0;
    pipe_w = restart ? fds[1] : -1;
    char c = 0;
    timer(50000);
    ssize_t n = read(fds[0], &c, 1);
    int err = errno;
    timer(0);
    if (restart)
        printf("SA_RESTART: read returned %zd '%c' after %d alarms\n", n, c, (int)alarms);
    else
        printf("no SA_RESTART: read returned %zd (%s), alarms %s\n", n,
               n < 0 && err == EINTR ? "EINTR" : strerror(err), alarms > 0 ? "seen" : "none");
    pipe_w = -1;
    close(fds[0]);
    close(fds[1]);
}

static volatile int info_signo, info_code, info_value;

static void on_info(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    info_signo = si->si_signo;
    info_code = si->si_code;
    info_value = si->si_value.sival_int;
}

static volatile uintptr_t handler_stack;

static void on_altstack(int sig)
{
    int here;
    (void)sig;
    handler_stack = (uintptr_t)&here;
}

static void on_usr2(int sig)
{
    (void)sig;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    restart_case(1);
    restart_case(0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_info;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    printf("raise: signo %d code %s\n", info_signo, info_code == SI_TKILL ? "SI_TKILL" : "other");
    union sigval v = {.sival_int = 1234};
    sigqueue(getpid(), SIGUSR1, v);
    printf("sigqueue: signo %d code %s value %d\n", info_signo,
           info_code == SI_QUEUE ? "SI_QUEUE" : "other", info_value);
    sigaction(SIGRTMIN + 1, &sa, NULL);
    v.sival_int = 77;
    sigqueue(getpid(), SIGRTMIN + 1, v);
    printf("realtime: offset %d value %d\n", info_signo - SIGRTMIN, info_value);

    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    info_signo = 0;
    raise(SIGUSR1);
    sigpending(&pending);
    printf("blocked: pending %d, handled %d\n", sigismember(&pending, SIGUSR1), info_signo);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    printf("unblocked: handled %d\n", info_signo);

    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGUSR1);
    struct timespec ts = {1, 0};
    siginfo_t si;
    int got = sigtimedwait(&set, &si, &ts);
    printf("sigtimedwait: %d (code %s)\n", got, si.si_code == SI_TKILL ? "SI_TKILL" : "other");
    sigprocmask(SIG_UNBLOCK, &set, NULL);

    static char altstack[1 << 16];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_altstack;
    sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
    sigaction(SIGWINCH, &sa, NULL);
    raise(SIGWINCH);
    printf("alternate stack used: %d\n", handler_stack >= (uintptr_t)altstack &&
                                             handler_stack < (uintptr_t)altstack + sizeof altstack);
    struct sigaction old;
    sigaction(SIGWINCH, NULL, &old);
    printf("SA_RESETHAND reset the handler: %d\n", old.sa_handler == SIG_DFL);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    alarms = 0;
    timer(30000);
    struct timespec longsleep = {5, 0}, rem = {0, 0};
    int r = nanosleep(&longsleep, &rem);
    int err = errno;
    timer(0);
    printf("nanosleep: %d %s, time left %s\n", r, r < 0 && err == EINTR ? "EINTR" : "?",
           rem.tv_sec >= 3 ? "most" : "little");

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    errno = 0;
    kill(getpid(), SIGUSR2);
    printf("errno after a handler: %d\n", errno);
    return 0;
}
