/*
 * Kernel Mode Linux: signals, fork, threads, exec and vfork of a kernel-mode process
 * (musl, static, relinked by lupine-relink; see tests/kml.rs). Each mode prints one
 * "kml3: MODE cs=0x.. ..." line ending in " ok" when every check held, and exits 0.
 *
 * musl keeps a raw `syscall` (lupine-relink leaves it alone) for rt_sigreturn (its signal
 * restorer), clone (fork, pthread_create) and vfork: those return to CPL 0 because the kernel
 * marks the frame of a raw syscall of a kernel-mode task ("Run trusted programs at CPL 0") and
 * keeps the mode across signals and fork ("Keep kernel-mode processes at CPL 0 across signals
 * and fork").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned cs(void)
{
	unsigned short v;
	__asm__ volatile("mov %%cs, %0" : "=r"(v));
	return v;
}

static volatile unsigned long alarms;
static volatile unsigned handler_cs;
static volatile int pipe_w = -1;

static void on_alarm(int sig)
{
	(void)sig;
	handler_cs = cs();
	alarms++;
	if (pipe_w >= 0) {
		char c = 'x';
		if (write(pipe_w, &c, 1) != 1)
			handler_cs = 0xdead;
	}
}

/*
 * Spins n rounds with rbx, rsi, rdi and r8-r15 holding known values, checking each one
 * every round; returns how many mismatches it saw (0 when every interrupt and signal handler
 * gave every register back).
 */
static unsigned long checksum_loop(unsigned long n)
{
	unsigned long bad;
	__asm__ volatile(
		"mov $0x1111, %%rbx\n\t"
		"mov $0x3333, %%rsi\n\t"
		"mov $0x4444, %%rdi\n\t"
		"mov $0x8888, %%r8\n\t"
		"mov $0x9999, %%r9\n\t"
		"mov $0xaaaa, %%r10\n\t"
		"mov $0xbbbb, %%r11\n\t"
		"mov $0xcccc, %%r12\n\t"
		"mov $0xdddd, %%r13\n\t"
		"mov $0xeeee, %%r14\n\t"
		"mov $0xffff, %%r15\n\t"
		"xor %%eax, %%eax\n\t"
		"1:\n\t"
		"cmp $0x1111, %%rbx\n\tjne 2f\n\t"
		"cmp $0x3333, %%rsi\n\tjne 2f\n\t"
		"cmp $0x4444, %%rdi\n\tjne 2f\n\t"
		"cmp $0x8888, %%r8\n\tjne 2f\n\t"
		"cmp $0x9999, %%r9\n\tjne 2f\n\t"
		"cmp $0xaaaa, %%r10\n\tjne 2f\n\t"
		"cmp $0xbbbb, %%r11\n\tjne 2f\n\t"
		"cmp $0xcccc, %%r12\n\tjne 2f\n\t"
		"cmp $0xdddd, %%r13\n\tjne 2f\n\t"
		"cmp $0xeeee, %%r14\n\tjne 2f\n\t"
		"cmp $0xffff, %%r15\n\tjne 2f\n\t"
		"jmp 3f\n\t"
		"2:\n\t"
		"inc %%rax\n\t"
		"3:\n\t"
		"dec %%rcx\n\t"
		"jnz 1b\n\t"
		: "=a"(bad), "+c"(n)
		:
		: "rbx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "memory",
		  "cc");
	return bad;
}

/*
 * A child that sends SIGALRM to its parent every period_ns, count times (or until the parent
 * is gone). Lupine kernels have no CONFIG_POSIX_TIMERS (no setitimer, alarm or timer_create):
 * the child's nanosleep stands in for the interval timer.
 */
static pid_t alarm_child(long period_ns, int count)
{
	pid_t parent = getpid(), pid = fork();
	if (pid == 0) {
		struct timespec ts = { 0, period_ns };
		for (int i = 0; i < count; i++) {
			nanosleep(&ts, 0);
			if (kill(parent, SIGALRM))
				break;
		}
		_exit(0);
	}
	return pid;
}

/* A 1 kHz SIGALRM over checksum_loop until 200 signals came. */
static int mode_signal(void)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	unsigned long bad = 0, rounds = 0;
	pid_t child;

	sigaction(SIGALRM, &sa, 0);
	child = alarm_child(1000000, 1000000);
	while (alarms < 200 && rounds < 20000) {
		bad += checksum_loop(100000);
		rounds++;
	}
	kill(child, SIGKILL);
	waitpid(child, 0, 0);
	printf("kml3: signal cs=%#x handler_cs=%#x alarms>=200=%d bad=%lu %s\n", cs(), handler_cs,
	       alarms >= 200, bad, alarms >= 200 && !bad && handler_cs == cs() ? "ok" : "FAIL");
	return 0;
}

static char *alt;
static volatile int alt_ok, alt_cs;

static void on_usr1(int sig)
{
	char here;
	(void)sig;
	alt_cs = cs();
	alt_ok = &here > alt && &here < alt + 65536;
}

/* A SIGUSR1 handler on a sigaltstack. */
static int mode_altstack(void)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_ONSTACK };
	stack_t ss = { .ss_size = 65536 };

	alt = malloc(65536);
	ss.ss_sp = alt;
	if (sigaltstack(&ss, 0) || sigaction(SIGUSR1, &sa, 0))
		return 1;
	raise(SIGUSR1);
	printf("kml3: altstack cs=%#x handler_cs=%#x on_altstack=%d %s\n", cs(), alt_cs, alt_ok,
	       alt_ok && alt_cs == cs() ? "ok" : "FAIL");
	return 0;
}

/* A blocking read interrupted by an SA_RESTART SIGALRM whose handler feeds the pipe. */
static int mode_restart(void)
{
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
	int fds[2];
	char c = 0;
	ssize_t n;

	if (pipe(fds) || sigaction(SIGALRM, &sa, 0))
		return 1;
	pipe_w = fds[1];
	pid_t child = alarm_child(50000000, 1);
	n = read(fds[0], &c, 1);
	waitpid(child, 0, 0);
	printf("kml3: restart cs=%#x handler_cs=%#x read=%zd alarms=%lu %s\n", cs(), handler_cs, n,
	       alarms, n == 1 && c == 'x' && alarms == 1 && handler_cs == cs() ? "ok" : "FAIL");
	return 0;
}

/* fork: the child is a kernel-mode process too. */
static int mode_fork(void)
{
	int status = 0, ok = 1;
	for (int i = 0; i < 20; i++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(cs() == 0x10 ? 42 : 1);
		if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != (cs() == 0x10 ? 42 : 1))
			ok = 0;
	}
	printf("kml3: fork cs=%#x children=20 status=%d %s\n", cs(), WEXITSTATUS(status),
	       ok ? "ok" : "FAIL");
	return 0;
}

#define MOVES 5000
static int ncpus;
static __thread long tls_id;

struct thr {
	long id;
	long moves, bad_cpu, bad_tls, bad_cs;
};

/* Moves itself between CPU 0 and CPU 1 MOVES times, checking CPU, FS (TLS) and CS. */
static void *thread_main(void *arg)
{
	struct thr *t = arg;
	tls_id = t->id;
	for (int i = 0; i < MOVES; i++) {
		int want = (i + t->id) % ncpus;
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(want, &set);
		if (sched_setaffinity(0, sizeof(set), &set) == 0) {
			t->moves++;
			if (sched_getcpu() != want)
				t->bad_cpu++;
		}
		if (tls_id != t->id)
			t->bad_tls++;
		if (cs() != 0x10 && cs() != 0x33)
			t->bad_cs++;
	}
	return 0;
}

static int mode_threads(void)
{
	pthread_t th[2];
	struct thr t[2] = { { .id = 1 }, { .id = 2 } };
	long moves = 0, bad = 0;

	ncpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpus > 2)
		ncpus = 2;
	tls_id = 99;
	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[i], 0, thread_main, &t[i]))
			return 1;
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], 0);
		moves += t[i].moves;
		bad += t[i].bad_cpu + t[i].bad_tls + t[i].bad_cs;
	}
	printf("kml3: threads cs=%#x cpus=%d moves=%ld bad=%ld tls=%ld %s\n", cs(), ncpus, moves,
	       bad, tls_id, moves == 2 * MOVES && !bad && tls_id == 99 ? "ok" : "FAIL");
	return 0;
}

static int mode_cs(void)
{
	printf("kml3: cs cs=%#x ok\n", cs());
	return 0;
}

/* Kernel mode -> /kml3test (user mode) -> /trusted/kml3test (kernel mode again). */
static int mode_exec(const char *next)
{
	printf("kml3: exec cs=%#x to %s ok\n", cs(), next);
	fflush(stdout);
	if (!strcmp(next, "/kml3test"))
		execl(next, "kml3test", "execback", (char *)0);
	else
		execl(next, "kml3test", "cs", (char *)0);
	printf("kml3: exec FAIL %s\n", strerror(errno));
	return 1;
}

/* vfork, then exec in the child (a user-mode program); the parent resumes at CPL 0. */
static int mode_vfork(void)
{
	int status = -1;
	pid_t pid = vfork();
	if (pid == 0) {
		execl("/kml3test", "kml3test", "cs", (char *)0);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		status = -1;
	printf("kml3: vfork cs=%#x status=%d %s\n", cs(), status, status == 0 ? "ok" : "FAIL");
	return 0;
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";
	setvbuf(stdout, 0, _IOLBF, 0);
	if (!strcmp(m, "signal"))
		return mode_signal();
	if (!strcmp(m, "altstack"))
		return mode_altstack();
	if (!strcmp(m, "restart"))
		return mode_restart();
	if (!strcmp(m, "fork"))
		return mode_fork();
	if (!strcmp(m, "threads"))
		return mode_threads();
	if (!strcmp(m, "cs"))
		return mode_cs();
	if (!strcmp(m, "exec"))
		return mode_exec("/kml3test");
	if (!strcmp(m, "execback"))
		return mode_exec("/trusted/kml3test");
	if (!strcmp(m, "vfork"))
		return mode_vfork();
	fprintf(stderr, "usage: kml3test MODE\n");
	return 2;
}
