/* SPDX-License-Identifier: MIT */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int child_status(int wstatus)
{
        if (WIFEXITED(wstatus))
                return WEXITSTATUS(wstatus);
        if (WIFSIGNALED(wstatus))
                return 128 + WTERMSIG(wstatus);
        return -1;
}

/* Our environment with @extra added; a NAME in @extra replaces ours. Caller frees the array only. */
static char **make_env(char *const *extra)
{
        size_t n = 0, m = 0, k = 0;
        char **v;

        while (environ[n])
                n++;
        while (extra && extra[m])
                m++;
        v = calloc(n + m + 1, sizeof(char *));
        if (!v)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                size_t len = strcspn(environ[i], "=");
                bool replaced = false;
                for (size_t j = 0; j < m && !replaced; j++)
                        replaced = strncmp(environ[i], extra[j], len) == 0 && extra[j][len] == '=';
                if (!replaced)
                        v[k++] = environ[i];
        }
        for (size_t j = 0; j < m; j++)
                v[k++] = extra[j];
        return v;
}

/* posix_spawn of sh -c @cmd; @out becomes its stdout. */
static int start(const char *cmd, char *const *env, int out, int close_fd, bool own_group,
                 pid_t *ret_pid)
{
        char *argv[] = { "sh", "-c", (char *)cmd, NULL };
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        char **envp = make_env(env);
        int r;

        if (!envp)
                return -ENOMEM;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
        if (close_fd >= 0)
                posix_spawn_file_actions_addclose(&fa, close_fd);
        if (own_group) {
                posix_spawnattr_setpgroup(&attr, 0);
                posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
        }
        r = posix_spawn(ret_pid, "/bin/sh", &fa, &attr, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        free(envp);
        return -r;
}

int child_wait(pid_t pid)
{
        int wstatus;

        while (waitpid(pid, &wstatus, 0) < 0)
                if (errno != EINTR)
                        return -1;
        return child_status(wstatus);
}

int child_run(const char *cmd, char *const *env, double *ret_seconds)
{
        struct timespec t0, t1;
        pid_t pid;
        int r;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = start(cmd, env, STDERR_FILENO, -1, false, &pid);
        if (r < 0) {
                *ret_seconds = 0;
                errno = -r;
                return -1;
        }
        r = child_wait(pid);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        *ret_seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        return r;
}

int child_pipe(const char *cmd, char *const *env, pid_t *ret_pid)
{
        int p[2], r;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        r = start(cmd, env, p[1], p[0], true, ret_pid);
        (void)close(p[1]);
        if (r < 0) {
                (void)close(p[0]);
                return r;
        }
        return p[0];
}

void child_kill(pid_t pid)
{
        (void)kill(-pid, SIGTERM);
        (void)child_wait(pid);
}
