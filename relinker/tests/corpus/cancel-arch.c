/* cancel-arch: the cancellation point of glibc 2.41 and later, __syscall_cancel_arch, byte for
 * byte (bounds __syscall_cancel_arch_start and _end), with a handler that acts only when the
 * interrupted PC lies in that range, as glibc's does. Debian 12's glibc (2.36) has no such
 * function, so this program brings its own; lupine-relink must move it like musl's.
 *
 * A child blocks in read through it: SIGUSR2 (SA_RESTART, a handler that does nothing)
 * interrupts it and the read is restarted and gets the parent's byte; then SIGUSR1 (the
 * "cancel": the handler sets the flag and, PC in range, sends the thread to the cancel path)
 * ends a second blocked read. A flag already set is seen by the test at the start.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

__asm__(".text\n"
        ".globl __syscall_cancel_arch\n"
        ".type __syscall_cancel_arch, @function\n"
        "__syscall_cancel_arch:\n"
        "  endbr64\n"
        ".globl __syscall_cancel_arch_start\n"
        "__syscall_cancel_arch_start:\n"
        "  mov (%rdi), %eax\n"
        "  testb $4, (%rdi)\n"
        "  jne cancel_path\n"
        "  mov %rdi, %r11\n"
        "  mov %rsi, %rax\n"
        "  mov %rdx, %rdi\n"
        "  mov %rcx, %rsi\n"
        "  mov %r8, %rdx\n"
        "  mov %r9, %r10\n"
        "  mov 8(%rsp), %r8\n"
        "  mov 16(%rsp), %r9\n"
        "  mov %r11, 8(%rsp)\n"
        "  syscall\n"
        ".globl __syscall_cancel_arch_end\n"
        "__syscall_cancel_arch_end:\n"
        "  ret\n"
        ".size __syscall_cancel_arch, .-__syscall_cancel_arch\n");

long __syscall_cancel_arch(volatile int *ch, long nr, long a1, long a2, long a3, long a4,
                           long a5, long a6);
extern const char __syscall_cancel_arch_start[], __syscall_cancel_arch_end[];

static volatile int cancelhandling;

/* Where a cancelled call goes (glibc unwinds from here; this program just says so). */
void cancel_path(void)
{
    static const char msg[] = "cancelled\n";
    write(1, msg, sizeof msg - 1);
    _exit(0);
}

static void on_cancel(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    unsigned long pc = uc->uc_mcontext.gregs[REG_RIP];
    cancelhandling |= 4;
    if (pc >= (unsigned long)__syscall_cancel_arch_start &&
        pc < (unsigned long)__syscall_cancel_arch_end)
        uc->uc_mcontext.gregs[REG_RIP] = (unsigned long)cancel_path;
}

static void on_usr2(int sig)
{
    (void)sig;
}

static long cp_read(int fd, void *buf, long n)
{
    return __syscall_cancel_arch(&cancelhandling, SYS_read, fd, (long)buf, n, 0, 0, 0);
}

static void pause_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000};
    nanosleep(&ts, NULL);
}

static void child(int fd)
{
    char c;
    long r = cp_read(fd, &c, 1);
    printf("read %ld '%c' after a restart\n", r, r == 1 ? c : '?');
    fflush(stdout);
    r = cp_read(fd, &c, 1); /* nobody writes again: only the cancel ends this */
    printf("second read returned %ld\n", r);
    _exit(1);
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_cancel;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);

    int fds[2];
    pipe(fds);
    pid_t pid = fork();
    if (pid == 0)
        child(fds[0]);
    pause_ms(100);
    kill(pid, SIGUSR2);
    pause_ms(100);
    write(fds[1], "x", 1);
    pause_ms(100);
    kill(pid, SIGUSR1);
    int st;
    waitpid(pid, &st, 0);
    printf("child: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    fflush(stdout);

    /* A flag already set: the test at the start takes the cancel path, no call is made. */
    cancelhandling = 4;
    char c;
    cp_read(fds[0], &c, 1);
    printf("not reached\n");
    return 1;
}
