/* SPDX-License-Identifier: MIT */
/*
 * The session loop of stampfs: libfuse's multi-threaded loop, but one
 * thread (the leader) reads the device at a time and answers what it
 * reads itself, polling for a while before it sleeps. See loop.c.
 */
#pragma once
#include <fuse_lowlevel.h>

struct stampfs_loop_cfg {
        unsigned max_threads; /* answering requests at once, at least 1 */
        unsigned spin_us;     /* how long the leader polls before it sleeps; 0: never */
};

/*
 * Runs @se until it is unmounted or a signal ends it (fuse_session_exit()).
 * Returns 0, or -errno if the loop could not start.
 */
int stampfs_loop(struct fuse_session *se, const struct stampfs_loop_cfg *cfg);

/*
 * Called by a request's handler before it may wait (for the disk, another
 * thread's load, a notification the kernel answers only once other
 * requests are answered): if the calling thread is the leader, another
 * thread takes over reading the device. No-op elsewhere.
 */
void stampfs_loop_may_block(void);
