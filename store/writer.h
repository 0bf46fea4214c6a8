/* SPDX-License-Identifier: MIT */
/*
 * The object writer: stores objects with dedup, compression and packing.
 * Many threads may call stamp_writer_put() at once; a background thread
 * makes full packs durable and indexes them.
 *
 * Dedup and durability: an object is found either in the index (durable,
 * indexed) or in the writer's claimed set (added in this session, in a pack
 * not yet indexed). An id leaves the claimed set only after its pack's index
 * rows are committed, so a concurrent put always finds it in one of them.
 *
 * Collisions: a dedup hit must have the same length, and a data chunk up to
 * the config's dedup_verify_max bytes is compared byte for byte; a mismatch
 * is a suspected id collision and fails the put with -EBADMSG.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "compress.h"
#include "hash.h"
#include "store.h"

struct stamp_writer;

struct stamp_writer_stats {
        uint64_t new_objects;
        uint64_t new_chunks; /* new data chunks */
        uint64_t new_bytes;  /* raw */
        uint64_t stored_bytes;
        uint64_t packs;
        uint64_t queue_peak; /* the most full packs that waited for the committer at once */
};

/* Requires the store's write lock. Caller frees with stamp_writer_free(). */
int stamp_writer_new(struct stamp_store *s, struct stamp_writer **ret);
/*
 * Frees the writer. Objects of packs not yet flushed are discarded (their
 * temporary file is removed). NULL is a no-op.
 */
void stamp_writer_free(struct stamp_writer *w);

/*
 * Stores @data as an object of @type and returns its id. @z is the calling
 * thread's compression context. After an error every later call fails too.
 */
int stamp_writer_put(struct stamp_writer *w, struct stamp_zctx *z, uint8_t type,
                     const void *data, size_t len, struct stamp_id *ret_id);

/* Flags of stamp_writer_put_flags(). */
#define STAMP_PUT_NO_COMPRESS (1u << 0) /* store raw: the caller knows it will not compress */

/*
 * Like stamp_writer_put(); sets *ret_compressed (if not NULL) to whether a
 * new object was stored compressed, or -1 if nothing new was stored.
 */
int stamp_writer_put_flags(struct stamp_writer *w, struct stamp_zctx *z, uint8_t type,
                           const void *data, size_t len, unsigned flags, int *ret_compressed,
                           struct stamp_id *ret_id);

/*
 * Stores an object that arrives already encoded (stamp copy): @payload is
 * @stored_len bytes compressed per @comp, @raw its @raw_len decoded bytes,
 * and @id their id, which the caller has verified. Dedup and collision
 * checks as for stamp_writer_put(); the payload is stored as is, so the
 * object keeps the compression it had.
 */
int stamp_writer_put_stored(struct stamp_writer *w, uint8_t type, const struct stamp_id *id,
                            const void *raw, size_t raw_len, uint8_t comp, const void *payload,
                            size_t stored_len);
/* Makes every object put so far durable and indexed. */
int stamp_writer_flush(struct stamp_writer *w);

void stamp_writer_stats(struct stamp_writer *w, struct stamp_writer_stats *ret);
/* The names of the packs made durable so far (call after stamp_writer_flush()). */
const struct stamp_strv *stamp_writer_packs(struct stamp_writer *w);
