/* cancel: pthread_cancel of a thread blocked in read (a cancellation point: musl decides by the
 * interrupted PC, __cp_begin..__cp_end), with a cleanup handler; a thread blocked in
 * nanosleep; one with cancellation disabled that acts on it later; asynchronous cancel type. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int fds[2];
static atomic_int stage;
static volatile int cleanups;

static void cleanup(void *what)
{
    cleanups++;
    printf("cleanup: %s\n", (const char *)what);
}

static void *reader(void *arg)
{
    (void)arg;
    char c;
    pthread_cleanup_push(cleanup, "reader");
    atomic_store(&stage, 1);
    read(fds[0], &c, 1); /* nobody writes: only cancellation ends this */
    printf("reader: read returned\n");
    pthread_cleanup_pop(0);
    return (void *)1;
}

static void *sleeper(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cleanup, "sleeper");
    atomic_store(&stage, 2);
    struct timespec ts = {30, 0};
    nanosleep(&ts, NULL);
    pthread_cleanup_pop(0);
    return (void *)2;
}

static void *deferred(void *arg)
{
    (void)arg;
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    atomic_store(&stage, 3);
    while (atomic_load(&stage) != 4) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL); /* not acted on: cancellation is disabled */
    }
    printf("deferred: still running with cancellation disabled\n");
    pthread_cleanup_push(cleanup, "deferred");
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
    pthread_testcancel();
    pthread_cleanup_pop(0);
    return (void *)3;
}

static volatile unsigned long spins;

static void *spinner(void *arg)
{
    (void)arg;
    int old;
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &old);
    atomic_store(&stage, 5);
    for (;;)
        spins++;
    return NULL;
}

static void wait_stage(int s)
{
    struct timespec ts = {0, 1000000};
    while (atomic_load(&stage) != s)
        nanosleep(&ts, NULL);
    ts.tv_nsec = 50000000; /* let the thread get into its blocking call */
    nanosleep(&ts, NULL);
}

static void finish(pthread_t t, const char *name)
{
    void *ret;
    pthread_join(t, &ret);
    printf("%s: %s\n", name, ret == PTHREAD_CANCELED ? "canceled" : "returned");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    pipe(fds);
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    wait_stage(1);
    pthread_cancel(t);
    finish(t, "reader");

    pthread_create(&t, NULL, sleeper, NULL);
    wait_stage(2);
    pthread_cancel(t);
    finish(t, "sleeper");

    pthread_create(&t, NULL, deferred, NULL);
    wait_stage(3);
    pthread_cancel(t);
    atomic_store(&stage, 4);
    finish(t, "deferred");

    pthread_create(&t, NULL, spinner, NULL);
    wait_stage(5);
    pthread_cancel(t);
    finish(t, "spinner");
    printf("cleanups %d\n", cleanups);
    return 0;
}
