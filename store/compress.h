/* SPDX-License-Identifier: MIT */
/*
 * Per-object compression with zstd. The only module that includes <zstd.h>.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Compression ids stored in pack records. Frozen. */
enum {
        STAMP_COMP_NONE = 0,
        STAMP_COMP_ZSTD = 1,
};

#define STAMP_ZSTD_LEVEL_MIN (-7)
#define STAMP_ZSTD_LEVEL_MAX 19

struct stamp_zctx;

/* One per thread. NULL on out of memory. */
struct stamp_zctx *stamp_zctx_new(int level);
void stamp_zctx_free(struct stamp_zctx *z);

size_t stamp_compress_bound(size_t len);

/*
 * Compresses @src into @dst (capacity from stamp_compress_bound()).
 * Returns 1 and sets *ret_len if it saved at least 1/32 of the size, 0 if
 * the data should be stored raw, or a negative errno.
 */
int stamp_compress(struct stamp_zctx *z, const void *src, size_t len, void *dst,
                   size_t cap, size_t *ret_len);

/*
 * Decompresses exactly @raw_len bytes into @dst. -EBADMSG if the frame is
 * corrupt or does not decode to exactly @raw_len bytes. Thread-safe.
 */
int stamp_decompress(const void *src, size_t len, void *dst, size_t raw_len);
