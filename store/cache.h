/* SPDX-License-Identifier: MIT */
/*
 * A bounded cache of decompressed, verified objects shared by many readers
 * (the mount's threads): LRU by bytes. Thread-safe.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "store.h"

struct stamp_cache;

/* A cache of at most @max_bytes. NULL on out of memory. */
struct stamp_cache *stamp_cache_new(size_t max_bytes);
void stamp_cache_free(struct stamp_cache *c);

/*
 * Returns object @id of @type, from the cache or read through
 * stamp_store_get() (and then kept). A tree is returned only if
 * stamp_tree_parse() accepts it, so cached trees need no further check. *ret is a reference the caller drops
 * with stamp_cache_put(); *ret_data and *ret_len stay valid until then.
 */
struct stamp_cache_ref;
int stamp_cache_get(struct stamp_cache *c, struct stamp_store *s, const struct stamp_id *id,
                    uint8_t type, struct stamp_cache_ref **ret, const uint8_t **ret_data,
                    size_t *ret_len);
void stamp_cache_put(struct stamp_cache *c, struct stamp_cache_ref *ref);

/* Bytes currently held (for tests and statistics). */
size_t stamp_cache_bytes(struct stamp_cache *c);
