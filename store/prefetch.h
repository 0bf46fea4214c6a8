/* SPDX-License-Identifier: MIT */
/*
 * Reading ahead into a shared cache: worker threads load the chunks of
 * files a reader is expected to read next (the mount queues the files that
 * follow, in directory order, the one a `cp -a` or `tar` just started), so
 * that the read itself finds them decompressed and verified in the cache.
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
struct stamp_prefetch;

/*
 * Starts @threads workers (1..16) that fill @cache from @s. At most
 * @max_queued bytes wait at any time. -ENOMEM, -EINVAL, or the errno of
 * pthread_create().
 */
int stamp_prefetch_new(struct stamp_store *s, struct stamp_cache *cache, unsigned threads,
                       uint64_t max_queued, struct stamp_prefetch **ret);
/* Drops what is queued, waits for the loads in flight, joins the workers. */
void stamp_prefetch_free(struct stamp_prefetch *p);

/*
 * Queues the first @len bytes (at most the file's size) of regular file
 * entry @e, whose content reference is copied. 0 when queued, -EAGAIN when
 * the queue has no room for them, -EINVAL for anything but a non-empty
 * regular file, -ENOMEM.
 */
int stamp_prefetch_file(struct stamp_prefetch *p, const struct stamp_entry *e, uint64_t len);

/* Statistics (for tests): files queued, and files whose loads have ended. */
void stamp_prefetch_stats(struct stamp_prefetch *p, uint64_t *ret_queued, uint64_t *ret_done);
