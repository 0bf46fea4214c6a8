/* SPDX-License-Identifier: MIT */
/*
 * The session loop of stampfs, in place of libfuse's multi-threaded loop:
 * one thread (the leader) reads the device at a time and answers what it
 * reads itself, polling for a while before it sleeps. See loop.c.
 */
#pragma once
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>

struct stampfs_loop_cfg {
        unsigned max_threads; /* answering requests at once, at least 1 */
        unsigned spin_us;     /* how long the leader polls before it sleeps; 0: never */
        /*
         * Called (if set) on stampfs_loop()'s caller when a signal ended
         * the session, while the loop's threads still answer requests:
         * for what must finish first (notifications in flight).
         */
        void (*before_stop)(void *data);
        void *data;
};

/*
 * Runs @se until it is unmounted or a signal ends it (fuse_session_exit()):
 * 0 then. -errno if the loop could not start, or the first error reading
 * the device.
 */
int stampfs_loop(struct fuse_session *se, const struct stampfs_loop_cfg *cfg);

/*
 * Called by a request's handler before it may wait (for the disk, another
 * thread's load or lock, a notification the kernel answers only once other
 * requests are answered): if the calling thread is the leader, another
 * thread takes over reading the device. Returns whether another thread
 * answers requests meanwhile: false outside the loop, with one thread
 * (-s), or if no thread could be started, when a handler must not wait
 * for the kernel.
 */
bool stampfs_loop_may_block(void);

/* pthread_mutex_lock(), handing the device over first if @m is busy. */
void stampfs_loop_lock(pthread_mutex_t *m);
