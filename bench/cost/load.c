/* load: the per-request rows of bench/cost.py. Inside the guest, it starts a server (the words
 * after "--"), waits until it accepts on 127.0.0.1:PORT, and runs two loads of N requests each,
 * one connection at a time, each between executions of the marker instruction that
 * bench/cost/lupine_cost.c counts intervals by (after a warm-up of each):
 *   redis PORT N -- SERVER...   N SETs, then N GETs of the same key (RESP, as redis-benchmark
 *                               sends them), on one connection;
 *   http PORT N -- SERVER...    N GET /index.html on a new connection each (HTTP/1.0, as ab
 *                               sends them), then N on keep-alive connections (HTTP/1.1; a new
 *                               connection when the server closes one).
 * Then it stops the server with SIGTERM and exits 0; any unexpected answer exits 1. Built with
 * musl-gcc -static. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MARK() __asm__ volatile(".byte 0x0f, 0x1f, 0x84, 0x00, 0x4c, 0x55, 0x50, 0x4e")
#define WARMUP 100

static int port;

static void fail(const char *what)
{
    fprintf(stderr, "load: %s\n", what);
    exit(1);
}

/* A connection to the server, or -1 (with `quiet`) if it does not accept yet. */
static int dial(int quiet)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
        fail("socket");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
        return fd;
    close(fd);
    if (!quiet)
        fail("connect");
    return -1;
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            fail("write");
        s += w, n -= w;
    }
}

/* Reads exactly `n` bytes and checks them against `want` (NULL: any). */
static void expect(int fd, const char *want, size_t n)
{
    char buf[4096];
    size_t got = 0;
    if (n > sizeof buf)
        fail("answer too long");
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            fail("read");
        got += r;
    }
    if (want && memcmp(buf, want, n))
        fail("unexpected answer");
}

static const char SET[] = "*3\r\n$3\r\nSET\r\n$8\r\nkey:0001\r\n$3\r\nxxx\r\n";
static const char GET[] = "*2\r\n$3\r\nGET\r\n$8\r\nkey:0001\r\n";

static void redis(long n)
{
    int fd = dial(0);
    for (long i = 0; i < WARMUP; i++) {
        send_all(fd, SET, sizeof SET - 1);
        expect(fd, "+OK\r\n", 5);
    }
    MARK();
    for (long i = 0; i < n; i++) {
        send_all(fd, SET, sizeof SET - 1);
        expect(fd, "+OK\r\n", 5);
    }
    MARK();
    for (long i = 0; i < n; i++) {
        send_all(fd, GET, sizeof GET - 1);
        expect(fd, "$3\r\nxxx\r\n", 9);
    }
    MARK();
    close(fd);
}

/* One HTTP answer, read in as few reads as it comes in: its headers, then Content-Length bytes
 * of body (the client sends one request at a time, so nothing follows). Returns whether the
 * server keeps the connection open. */
static int http_answer(int fd)
{
    char buf[16384];
    size_t n = 0, want = 0;
    char *end = NULL;
    while (!end || n < want) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0)
            fail("read");
        n += r;
        buf[n] = 0;
        if (!end && (end = strstr(buf, "\r\n\r\n"))) {
            const char *len = strstr(buf, "Content-Length: ");
            if (strncmp(buf, "HTTP/1.1 200 ", 13) || !len || len > end)
                fail("not 200 OK with a Content-Length");
            want = end + 4 - buf + strtoul(len + 16, NULL, 10);
            if (want >= sizeof buf)
                fail("answer too long");
        }
    }
    if (n != want)
        fail("more than one answer");
    *end = 0;
    return !strstr(buf, "Connection: close");
}

static const char CONN[] = "GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                           "User-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n";
static const char KEEP[] = "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "User-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n";

static void http_conn(void)
{
    int fd = dial(0);
    send_all(fd, CONN, sizeof CONN - 1);
    if (http_answer(fd))
        fail("HTTP/1.0 connection kept open");
    close(fd);
}

static void http(long n)
{
    for (long i = 0; i < WARMUP; i++)
        http_conn();
    MARK();
    for (long i = 0; i < n; i++)
        http_conn();
    MARK();
    int fd = -1;
    for (long i = 0; i < n; i++) {
        if (fd < 0)
            fd = dial(0);
        send_all(fd, KEEP, sizeof KEEP - 1);
        if (!http_answer(fd)) {
            close(fd);
            fd = -1;
        }
    }
    MARK();
    if (fd >= 0)
        close(fd);
}

int main(int argc, char **argv)
{
    if (argc < 6 || strcmp(argv[4], "--")) {
        fprintf(stderr, "usage: load redis|http PORT N -- SERVER [ARG...]\n");
        return 2;
    }
    port = atoi(argv[2]);
    long n = atol(argv[3]);
    pid_t server = fork();
    if (server == 0) {
        execv(argv[5], argv + 5);
        perror(argv[5]);
        _exit(127);
    }
    int fd;
    for (int i = 0; (fd = dial(1)) < 0; i++) {
        struct timespec ms = {0, 10 * 1000 * 1000};
        if (i == 3000 || waitpid(server, NULL, WNOHANG) == server)
            fail("the server does not accept");
        nanosleep(&ms, NULL);
    }
    close(fd);
    if (!strcmp(argv[1], "redis"))
        redis(n);
    else if (!strcmp(argv[1], "http"))
        http(n);
    else
        fail("unknown load");
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
    printf("load: %ld requests of each kind answered\n", n);
    return 0;
}
