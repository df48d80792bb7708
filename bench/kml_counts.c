/* kml_counts: the app of bench/apps.py's +kml disks, in front of the real one.
 *
 *   kml_counts PORT PROGRAM [ARGS...]
 *
 * Starts PROGRAM (under /trusted: it runs in kernel mode, this program does not) as its child,
 * then answers each TCP connection to PORT with the contents of /proc/kml and /proc/meminfo,
 * so that the host reads the KML counters before and after a load, and the guest's memory. SIGTERM and SIGINT go to the program; when
 * it ends, kml_counts ends the same way. */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

static pid_t app;

static void forward(int sig)
{
    kill(app, sig);
}

static void reap(int sig)
{
    (void)sig;
    int st;
    if (waitpid(app, &st, WNOHANG) == app)
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

static void copy(const char *path, int conn)
{
    char buf[8192];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? 0 : read(fd, buf, sizeof buf);
    if (n > 0)
        write(conn, buf, (size_t)n);
    if (fd >= 0)
        close(fd);
}

/* /proc/kml, then "meminfo:" and /proc/meminfo (for bench/soak.py: memory over hours). */
static void answer(int conn)
{
    copy("/proc/kml", conn);
    write(conn, "meminfo:\n", 9);
    copy("/proc/meminfo", conn);
    close(conn);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kml_counts PORT PROGRAM [ARGS...]\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4)) {
        perror("kml_counts: listen");
        return 1;
    }
    signal(SIGCHLD, reap);
    app = fork();
    if (app == 0) {
        close(s);
        signal(SIGCHLD, SIG_DFL);
        execv(argv[2], argv + 2);
        perror("kml_counts: exec");
        _exit(127);
    }
    signal(SIGTERM, forward);
    signal(SIGINT, forward);
    for (;;) {
        int conn = accept(s, NULL, NULL);
        if (conn >= 0)
            answer(conn);
    }
}
