/* threads: joinable threads returning values, detached threads that exit on their own
 * (musl ends those with __unmapself), pthread_exit, TLS per thread, a mutex and a condvar. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define JOINABLE 4
#define DETACHED 4

static __thread long tls_value;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long total;
static atomic_int detached_done;

static void *worker(void *arg)
{
    long n = (long)arg;
    tls_value = n * 100;
    long sum = 0;
    for (long i = 1; i <= 1000 * (n + 1); i++)
        sum += i;
    pthread_mutex_lock(&lock);
    total += sum;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    if (n == 2)
        pthread_exit((void *)(tls_value + 2));
    return (void *)(tls_value + sum % 97);
}

static void *detached(void *arg)
{
    char *buf = malloc(4096); /* give the thread some state of its own to free */
    buf[0] = (char)(long)arg;
    free(buf);
    atomic_fetch_add(&detached_done, 1);
    return NULL; /* the thread ends itself: its stack is unmapped by the exiting thread */
}

/* Threads of this process according to the kernel. */
static int thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

int main(void)
{
    pthread_t t[JOINABLE];
    tls_value = -1;
    for (long i = 0; i < JOINABLE; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    for (int i = 0; i < JOINABLE; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        printf("joined %d: %ld\n", i, (long)ret);
    }
    printf("total %ld, main tls %ld\n", total, tls_value);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (long i = 0; i < DETACHED; i++) {
        pthread_t d;
        if (pthread_create(&d, &attr, detached, (void *)i) != 0) {
            perror("pthread_create detached");
            return 1;
        }
    }
    pthread_attr_destroy(&attr);
    /* Wait until the detached threads have really gone (not just said so): at most 5 s. */
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 5000 && (atomic_load(&detached_done) < DETACHED || thread_count() != 1); i++)
        nanosleep(&ms, NULL);
    printf("detached done %d, threads left %d\n", atomic_load(&detached_done), thread_count());
    return 0;
}
