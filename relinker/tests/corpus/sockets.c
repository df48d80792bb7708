/* sockets: a socketpair with datagrams and SCM_RIGHTS, a TCP connection over 127.0.0.1
 * between two threads (bind to port 0, listen, connect, accept, send, shutdown), poll, and a
 * UDP round trip on loopback. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_in server_addr;
static int listener;

static void *client(void *arg)
{
    (void)arg;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&server_addr, sizeof server_addr) != 0) {
        perror("connect");
        return (void *)1;
    }
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const char *msg = "ping over tcp";
    send(s, msg, strlen(msg), 0);
    char buf[64] = {0};
    ssize_t n = recv(s, buf, sizeof buf - 1, MSG_WAITALL);
    printf("client got %zd: %s\n", n, buf);
    close(s);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0) {
        perror("socketpair");
        return 1;
    }
    send(sv[0], "one", 3, 0);
    send(sv[0], "two!", 4, 0);
    char buf[64];
    ssize_t n1 = recv(sv[1], buf, sizeof buf, 0);
    ssize_t n2 = recv(sv[1], buf, sizeof buf, 0);
    printf("seqpacket: %zd then %zd bytes\n", n1, n2);

    int p[2];
    pipe(p);
    write(p[1], "through a passed fd", 19);
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {.iov_base = "fd", .iov_len = 2};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
    sendmsg(sv[0], &mh, 0);
    close(p[0]);
    char data[8];
    struct iovec riov = {.iov_base = data, .iov_len = sizeof data};
    char rcbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr rmh = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = rcbuf,
                         .msg_controllen = sizeof rcbuf};
    ssize_t got = recvmsg(sv[1], &rmh, 0);
    int passed = -1;
    struct cmsghdr *rcm = CMSG_FIRSTHDR(&rmh);
    if (rcm && rcm->cmsg_type == SCM_RIGHTS)
        memcpy(&passed, CMSG_DATA(rcm), sizeof(int));
    memset(buf, 0, sizeof buf);
    read(passed, buf, sizeof buf - 1);
    printf("SCM_RIGHTS: %zd bytes, fd %s, read: %s\n", got, passed >= 0 ? "received" : "missing",
           buf);

    listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    server_addr.sin_family = AF_INET;
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    server_addr.sin_port = 0;
    if (bind(listener, (struct sockaddr *)&server_addr, sizeof server_addr) != 0) {
        perror("bind");
        return 1;
    }
    socklen_t len = sizeof server_addr;
    getsockname(listener, (struct sockaddr *)&server_addr, &len);
    listen(listener, 4);
    pthread_t t;
    pthread_create(&t, NULL, client, NULL);
    struct pollfd pfd = {.fd = listener, .events = POLLIN};
    printf("poll on listener: %d\n", poll(&pfd, 1, 5000));
    struct sockaddr_in peer;
    len = sizeof peer;
    int c = accept(listener, (struct sockaddr *)&peer, &len);
    printf("accepted from %s\n", inet_ntoa(peer.sin_addr));
    memset(buf, 0, sizeof buf);
    ssize_t n = recv(c, buf, 13, MSG_WAITALL);
    printf("server got %zd: %s\n", n, buf);
    send(c, "pong", 4, 0);
    shutdown(c, SHUT_WR);
    pthread_join(t, NULL);
    n = recv(c, buf, sizeof buf, 0);
    printf("after the client closed: recv %zd\n", n);
    close(c);
    close(listener);

    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ua = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(u2, (struct sockaddr *)&ua, sizeof ua);
    len = sizeof ua;
    getsockname(u2, (struct sockaddr *)&ua, &len);
    sendto(u1, "datagram", 8, 0, (struct sockaddr *)&ua, sizeof ua);
    memset(buf, 0, sizeof buf);
    n = recvfrom(u2, buf, sizeof buf, 0, NULL, NULL);
    printf("udp: %zd bytes: %s\n", n, buf);
    return 0;
}
