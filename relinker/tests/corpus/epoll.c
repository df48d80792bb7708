/* epoll: pipes, an eventfd and a timerfd under one epoll set; level and edge triggering,
 * EPOLLONESHOT, epoll_pwait with a signal mask, a timeout with nothing ready. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
    const struct epoll_event *x = a, *y = b;
    return (int)x->data.u32 - (int)y->data.u32;
}

static int ep;

static void show(const char *what, int timeout)
{
    struct epoll_event ev[8];
    int n = epoll_wait(ep, ev, 8, timeout);
    qsort(ev, n > 0 ? n : 0, sizeof ev[0], cmp);
    printf("%s: %d ready", what, n);
    for (int i = 0; i < n; i++)
        printf(" [%u%s%s%s]", ev[i].data.u32, ev[i].events & EPOLLIN ? " in" : "",
               ev[i].events & EPOLLOUT ? " out" : "", ev[i].events & EPOLLHUP ? " hup" : "");
    printf("\n");
}

int main(void)
{
    int a[2], b[2];
    pipe(a);
    pipe(b);
    int efd = eventfd(0, EFD_NONBLOCK);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 1};
    epoll_ctl(ep, EPOLL_CTL_ADD, a[0], &ev);
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u32 = 2;
    epoll_ctl(ep, EPOLL_CTL_ADD, b[0], &ev);
    ev.events = EPOLLIN;
    ev.data.u32 = 3;
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u32 = 4;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    ev.events = EPOLLOUT;
    ev.data.u32 = 5;
    epoll_ctl(ep, EPOLL_CTL_ADD, a[1], &ev);

    show("only the writable end", 0);
    epoll_ctl(ep, EPOLL_CTL_DEL, a[1], NULL);
    show("nothing, 20 ms timeout", 20);
    write(a[1], "abc", 3);
    write(b[1], "xyz", 3);
    uint64_t one = 1;
    write(efd, &one, sizeof one);
    show("three written", -1);
    show("again: level-triggered stay, edge-triggered gone", 0);
    char buf[8];
    read(a[0], buf, sizeof buf);
    uint64_t cnt;
    read(efd, &cnt, sizeof cnt);
    printf("eventfd count %llu\n", (unsigned long long)cnt);
    show("after reading", 0);

    struct itimerspec its = {{0, 0}, {0, 10000000}};
    timerfd_settime(tfd, 0, &its, NULL);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    struct epoll_event got[4];
    int n = epoll_pwait(ep, got, 4, 2000, &mask);
    printf("timer: %d ready, id %u\n", n, n > 0 ? got[0].data.u32 : 0);
    uint64_t ticks;
    read(tfd, &ticks, sizeof ticks);
    printf("timer ticks %llu\n", (unsigned long long)ticks);
    timerfd_settime(tfd, 0, &its, NULL);
    show("oneshot timer fired again, disarmed in the set", 50);

    close(b[1]);
    ev.events = EPOLLIN;
    ev.data.u32 = 2;
    epoll_ctl(ep, EPOLL_CTL_MOD, b[0], &ev);
    show("writer closed", 0);
    return 0;
}
