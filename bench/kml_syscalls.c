/* kml_syscalls: TSC ticks per system call for bench/kml.py, as lmbench's lat_syscall: null
 * (getppid), read (one byte from /dev/zero) and write (one byte to /dev/null), N calls each
 * (argv[1], default 200,000) after a warm-up. Ticks, not clock_gettime: rdtsc reads the same
 * clock at either privilege level, with no vDSO involved. Built with -DCANCEL_POINTS, it links
 * pthread_cancel, so that musl's read and write are cancellation points. Prints one line:
 *   kml_syscalls: cs=0xNN null=T read=T write=T */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <x86intrin.h>

static long n;

static double per_call(int what, int fd)
{
    char byte = 0;
    unsigned long long t0 = 0;
    for (long i = -n / 10; i < n; i++) {
        if (i == 0)
            t0 = __rdtsc();
        long r = what == 0 ? getppid() : what == 1 ? read(fd, &byte, 1) : write(fd, &byte, 1);
        if (r < 0) {
            perror("kml_syscalls");
            exit(1);
        }
    }
    return (double)(__rdtsc() - t0) / n;
}

#ifdef CANCEL_POINTS
#include <pthread.h>
/* Linked, never called: with pthread_cancel in the program, musl's read and write are
 * cancellation points made through __syscall_cp_asm. */
int (*volatile keep_pthread_cancel)(pthread_t) = pthread_cancel;
#endif

int main(int argc, char **argv)
{
    n = argc > 1 ? atol(argv[1]) : 200000;
    int zero = open("/dev/zero", O_RDONLY), null = open("/dev/null", O_WRONLY);
    if (zero < 0 || null < 0) {
        perror("kml_syscalls: open");
        return 1;
    }
    unsigned short cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    double t_null = per_call(0, -1), t_read = per_call(1, zero), t_write = per_call(2, null);
    printf("kml_syscalls: cs=%#x null=%.1f read=%.1f write=%.1f\n", cs, t_null, t_read, t_write);
    return 0;
}
