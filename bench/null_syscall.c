/* null_syscall: the cost of a null system call, as lmbench's `lat_syscall null`: getppid() in a
 * loop. Prints nanoseconds per call for N calls (argv[1], default 2,000,000) after a warm-up.
 * Built with musl-gcc -static by bench/relink.py, which times it original and relinked. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    volatile pid_t sink = 0;
    for (long i = 0; i < n / 10; i++)
        sink += getppid();
    double t0 = now();
    for (long i = 0; i < n; i++)
        sink += getppid();
    double t1 = now();
    printf("%.2f\n", (t1 - t0) / n);
    return sink == 0; /* getppid() is never 0 here */
}
