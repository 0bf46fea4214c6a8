/* SPDX-License-Identifier: MIT */
/*
 * Reading ahead into a shared cache: worker threads load the chunks of
 * files a reader is expected to read next (the mount queues the files that
 * follow, in directory order, the one a `cp -a` or `tar` just started), and
 * the trees of directories it is expected to list next, so that the read
 * itself finds them decompressed and verified in the cache.
 *
 * Best effort: a chunk that cannot be read is skipped here, and the real
 * read reports it. Jobs wait in a FIFO bounded by bytes; a full queue
 * refuses more rather than blocking the caller.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "tree.h"

struct stamp_cache;
struct stamp_file;
struct stamp_prefetch;

/*
 * Called once for every queued file job, on a worker thread: with the file's
 * reader (on the cache) once its first @len bytes are in the cache, or with
 * @f NULL when they could not be loaded or the job was dropped (then from
 * stamp_prefetch_free()). @job_data is what stamp_prefetch_file() got.
 */
typedef void stamp_prefetch_done_fn(void *hook_data, struct stamp_file *f, uint64_t len,
                                    void *job_data);

/*
 * Starts @threads workers (1..16) that fill @cache from @s. At most
 * @max_queued bytes wait at any time. @done (may be NULL) is called as
 * above. -ENOMEM, -EINVAL, or the errno of pthread_create().
 */
int stamp_prefetch_new(struct stamp_store *s, struct stamp_cache *cache, unsigned threads,
                       uint64_t max_queued, stamp_prefetch_done_fn *done, void *hook_data,
                       struct stamp_prefetch **ret);
/* Drops what is queued, waits for the loads in flight, joins the workers. */
void stamp_prefetch_free(struct stamp_prefetch *p);

/*
 * Queues the first @len bytes (at most the file's size) of regular file
 * entry @e, whose content reference is copied. 0 when queued (the done
 * hook will see @job_data), -EAGAIN when the queue has no room for them,
 * -EINVAL for anything but a non-empty regular file, -ENOMEM; on error
 * @job_data stays the caller's.
 */
int stamp_prefetch_file(struct stamp_prefetch *p, const struct stamp_entry *e, uint64_t len,
                        void *job_data);

/*
 * Queues the load of directory tree object @id (a listing that the reader
 * is expected to ask for next, as `find` or `cp -a` descend). The done hook
 * is not called for it. 0, -EAGAIN (no room), -ENOMEM.
 */
int stamp_prefetch_tree(struct stamp_prefetch *p, const struct stamp_id *id);

/* Statistics (for tests): jobs queued, and jobs whose loads have ended. */
void stamp_prefetch_stats(struct stamp_prefetch *p, uint64_t *ret_queued, uint64_t *ret_done);
