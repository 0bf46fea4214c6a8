/* SPDX-License-Identifier: MIT */
/*
 * Running the shell commands of `stamp snapshot --pre/--post/--stdin-from`.
 * Commands run as `/bin/sh -c CMD` with stdin from /dev/null and our
 * environment plus the given variables. posix_spawn(), not fork(): the
 * post command runs while the snapshot's threads are alive, and a forked
 * child of a threaded process may not call malloc() (setenv) before exec.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/* A status as a shell reports it: 0-255, 128 + N if killed by signal N; -1 if not started. */
int child_status(int wstatus);

/*
 * Runs @cmd to its end with its stdout sent to our stderr (our stdout is
 * for the stamp). @env: NULL-terminated "NAME=value" strings added to the
 * environment. Returns the shell-style status, -1 if it could not be
 * started (errno set); *ret_seconds is how long it ran.
 */
int child_run(const char *cmd, char *const *env, double *ret_seconds);

/*
 * Starts @cmd with its stdout on a pipe, in a process group of its own.
 * Returns the pipe's read end (close-on-exec), or -errno.
 */
int child_pipe(const char *cmd, char *const *env, pid_t *ret_pid);

/* Waits for a child started by child_pipe(); the shell-style status. */
int child_wait(pid_t pid);

/* Ends a child of child_pipe() that is no longer wanted: SIGTERM to its group, then waits. */
void child_kill(pid_t pid);
