/* hello: output on both streams, argv, environment, and an exit code taken from argv[1]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static __thread int tls_counter = 41; /* initialised TLS: libc sets it up through AT_PHDR */

int main(int argc, char **argv)
{
    tls_counter++;
    printf("hello, world (tls %d)\n", tls_counter);
    for (int i = 1; i < argc; i++)
        printf("argv[%d] = %s\n", i, argv[i]);
    const char *v = getenv("CORPUS_VAR");
    printf("CORPUS_VAR = %s\n", v ? v : "(unset)");
    fprintf(stderr, "to stderr: %zu\n", strlen(argv[0]) > 0 ? (size_t)1 : (size_t)0);
    char *p = malloc(1 << 20); /* mmap-sized allocation */
    char *q = malloc(100);     /* brk or small-chunk allocation */
    memset(p, 7, 1 << 20);
    snprintf(q, 100, "%d", p[12345]);
    printf("heap %s\n", q);
    free(p);
    free(q);
    fflush(stdout);
    int code = argc > 1 ? atoi(argv[1]) : 0;
    if (argc > 2 && strcmp(argv[2], "_exit") == 0)
        _exit(code);
    return code;
}
