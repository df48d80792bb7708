/* The benchmark's clock: prints CLOCK_MONOTONIC in nanoseconds the moment it starts, then,
 * given arguments, execs them (so it can stamp the moment just before another program). */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    printf("%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    fflush(stdout);
    if (argc > 1) {
        execv(argv[1], argv + 1);
        perror(argv[1]);
        return 127;
    }
    return 0;
}
