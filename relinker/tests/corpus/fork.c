/* fork: children that exit with codes, one killed by a signal, one that forks itself, a pipe
 * from child to parent, wait/waitpid status decoding. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *what, int status)
{
    if (WIFEXITED(status))
        printf("%s: exited %d\n", what, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", what, WTERMSIG(status));
    else
        printf("%s: status %#x\n", what, status);
}

int main(void)
{
    int status;
    for (int i = 0; i < 3; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            printf("child %d running\n", i);
            exit(10 + i); /* flushes the child's stdio */
        }
        if (waitpid(pid, &status, 0) != pid) {
            perror("waitpid");
            return 1;
        }
        char what[32];
        snprintf(what, sizeof what, "child %d", i);
        report(what, status);
    }

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGTERM);
        _exit(99);
    }
    waitpid(pid, &status, 0);
    report("signalled child", status);

    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return 1;
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        pid_t grandchild = fork();
        if (grandchild == 0) {
            const char msg[] = "from the grandchild";
            write(fds[1], msg, sizeof msg);
            _exit(0);
        }
        int st;
        waitpid(grandchild, &st, 0);
        _exit(WIFEXITED(st) ? 20 + WEXITSTATUS(st) : 1);
    }
    close(fds[1]);
    char buf[64] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    printf("pipe: %zd bytes: %s\n", n, buf);
    wait(&status);
    report("middle child", status);
    if (wait(&status) != -1)
        printf("unexpected extra child\n");
    return 0;
}
