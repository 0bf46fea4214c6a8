/* SPDX-License-Identifier: MIT */
/*
 * Content-defined chunking, FastCDC style: a gear rolling hash with
 * normalized chunking (a harder mask before the average size, an easier
 * one after it). The gear table is derived from the store secret, so chunk
 * boundaries (and so chunk sizes) cannot be predicted from outside.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hash.h"

/* Limits an input (a store config) may ask for. */
#define STAMP_CHUNK_MIN_LIMIT 64u
#define STAMP_CHUNK_MAX_LIMIT (16u << 20)

struct stamp_chunker_params {
        uint32_t min;
        uint32_t avg; /* a power of two */
        uint32_t max;
};

struct stamp_chunker {
        struct stamp_chunker_params p;
        uint64_t mask_s; /* before the average size: avg bits + 2 */
        uint64_t mask_l; /* after it: avg bits - 2 */
        uint64_t gear[256];
        size_t zero_cut; /* where a chunk of zeros only is cut (stamp_chunker_cut()) */
};

/* -EINVAL unless 64 <= min < avg < max <= 16 MiB and avg is a power of two. */
int stamp_chunker_params_check(const struct stamp_chunker_params *p);

/*
 * Sets up @c. With @h NULL the gear table comes from a fixed key (tests
 * only). @p must have passed stamp_chunker_params_check().
 */
void stamp_chunker_init(struct stamp_chunker *c, const struct stamp_chunker_params *p,
                        const struct stamp_hasher *h);

/*
 * Returns the length of the chunk that starts at @data: a cut point found
 * by the rolling hash, or min(n, max). The caller passes at least max bytes
 * unless the input ends first, so a returned n < max with more input to
 * come means the caller gave too little.
 */
size_t stamp_chunker_cut(const struct stamp_chunker *c, const uint8_t *data, size_t n);
/* Same; *ret_zero tells whether the chunk is zeros only (a hole of a sparse file). */
size_t stamp_chunker_cut_zero(const struct stamp_chunker *c, const uint8_t *data, size_t n,
                              bool *ret_zero);
