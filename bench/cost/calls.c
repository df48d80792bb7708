/* calls: the per-call rows of bench/cost.py. N getppid() calls, N one-byte reads of /dev/zero,
 * N one-byte writes to /dev/null, each loop between two executions of the marker instruction
 * that bench/cost/lupine_cost.c counts intervals by (after a warm-up of each). Built with
 * musl-gcc -static and relinked or not by bench/cost.py. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define MARK() __asm__ volatile(".byte 0x0f, 0x1f, 0x84, 0x00, 0x4c, 0x55, 0x50, 0x4e")

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000;
    int in = open("/dev/zero", O_RDONLY), out = open("/dev/null", O_WRONLY);
    char c;
    if (in < 0 || out < 0)
        return 1;
    for (int i = 0; i < 100; i++)
        if (getppid() < 0 || read(in, &c, 1) != 1 || write(out, &c, 1) != 1)
            return 2;
    MARK();
    for (long i = 0; i < n; i++)
        getppid();
    MARK();
    for (long i = 0; i < n; i++)
        if (read(in, &c, 1) != 1)
            return 3;
    MARK();
    for (long i = 0; i < n; i++)
        if (write(out, &c, 1) != 1)
            return 4;
    MARK();
    return 0;
}
