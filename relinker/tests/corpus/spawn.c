/* spawn: vfork + execve, vfork + _exit, and posix_spawn of this same program (argv[0] must be
 * a path to it), with the children's exit codes and output. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void report(const char *what, int status)
{
    if (WIFEXITED(status))
        printf("%s: exited %d\n", what, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", what, WTERMSIG(status));
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "child") == 0) {
        printf("child says %s\n", argv[2]);
        return atoi(argv[2]);
    }
    int status;
    volatile int touched = 0;

    fflush(stdout);
    pid_t pid = vfork();
    if (pid == 0) {
        char *args[] = {argv[0], "child", "7", NULL};
        execve(argv[0], args, environ);
        _exit(127);
    }
    if (pid < 0) {
        perror("vfork");
        return 1;
    }
    waitpid(pid, &status, 0);
    report("vfork+execve", status);

    pid = vfork();
    if (pid == 0) {
        touched = 1; /* the child shares the parent's memory until it exits */
        _exit(3);
    }
    waitpid(pid, &status, 0);
    report("vfork+_exit", status);
    printf("vfork child wrote to shared memory: %d\n", touched);

    pid = vfork();
    if (pid == 0) {
        char *args[] = {"/nonexistent/program", NULL};
        execve(args[0], args, environ);
        _exit(126);
    }
    waitpid(pid, &status, 0);
    report("vfork+failed execve", status);

    for (int i = 0; i < 3; i++) {
        char code[8];
        snprintf(code, sizeof code, "%d", 30 + i);
        char *args[] = {argv[0], "child", code, NULL};
        fflush(stdout);
        int err = posix_spawn(&pid, argv[0], NULL, NULL, args, environ);
        if (err != 0) {
            printf("posix_spawn: error %d\n", err);
            return 1;
        }
        waitpid(pid, &status, 0);
        report("posix_spawn", status);
    }

    char *bad[] = {"/nonexistent/program", NULL};
    int err = posix_spawn(&pid, bad[0], NULL, NULL, bad, environ);
    if (err == 0) {
        waitpid(pid, &status, 0);
        report("posix_spawn of a missing file", status);
    } else {
        printf("posix_spawn of a missing file: %s\n", strerror(err));
    }
    return 0;
}
