/* epoll, eventfd, timerfd and an AF_UNIX socketpair: what lupine-config must find. */
#include <stdio.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>
int main(void) {
    int ep = epoll_create1(0), ev = eventfd(0, 0), tf = timerfd_create(CLOCK_MONOTONIC, 0);
    int sv[2];
    if (ep < 0 || ev < 0 || tf < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        perror("setup");
        return 1;
    }
    struct epoll_event e = {.events = EPOLLIN, .data.fd = ev}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e);
    uint64_t one = 1;
    struct itimerspec its = {.it_value = {.tv_nsec = 1000000}};
    timerfd_settime(tf, 0, &its, 0);
    char c = 0;
    if (write(ev, &one, 8) != 8 || write(sv[0], "x", 1) != 1 || read(sv[1], &c, 1) != 1)
        return 2;
    int n = epoll_wait(ep, &out, 1, 1000);
    uint64_t ticks = 0;
    if (read(tf, &ticks, 8) != 8) return 3;
    printf("epoll: events %d fd-ok %d byte %c timer %d\n", n, out.data.fd == ev, c, ticks > 0);
    return 0;
}
