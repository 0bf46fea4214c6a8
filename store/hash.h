/* SPDX-License-Identifier: MIT */
/*
 * Hashing: the keyed 128-bit chunk id (XXH3-128 with a per-store secret)
 * and the unkeyed checksums that protect pack files. The only module that
 * includes <xxhash.h>.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STAMP_ID_SIZE 16
#define STAMP_ID_HEX_SIZE (2 * STAMP_ID_SIZE + 1)
/* Bytes of random seed material kept in the store config. Frozen. */
#define STAMP_SECRET_SEED_SIZE 32

/* An object id or a checksum, in XXH3's canonical (big-endian) byte order. */
struct stamp_id {
        uint8_t b[STAMP_ID_SIZE];
};

struct stamp_hasher;
struct stamp_csum;

/* Fills @ret with fresh random seed bytes from getrandom(). */
int stamp_secret_generate(uint8_t ret[STAMP_SECRET_SEED_SIZE]);

/*
 * A keyed chunk-id hasher whose secret is derived from @seed. Returns NULL
 * on out of memory. Caller frees with stamp_hasher_free(). Thread-safe to
 * use from many threads at once (it is read-only after creation).
 */
struct stamp_hasher *stamp_hasher_new(const uint8_t seed[STAMP_SECRET_SEED_SIZE]);
void stamp_hasher_free(struct stamp_hasher *h);
void stamp_hasher_id(const struct stamp_hasher *h, const void *data, size_t len,
                     struct stamp_id *ret);
/* A 64-bit keyed value, used to derive the chunker's gear table. */
uint64_t stamp_hasher_u64(const struct stamp_hasher *h, uint64_t x);

/* Unkeyed XXH3-128 of a buffer (pack checksums). */
void stamp_checksum128(const void *data, size_t len, struct stamp_id *ret);
/* Unkeyed XXH3-64 truncated to 32 bits (pack record header checksums). */
uint32_t stamp_checksum32(const void *data, size_t len);

/* Streaming unkeyed XXH3-128. NULL on out of memory. */
struct stamp_csum *stamp_csum_new(void);
void stamp_csum_free(struct stamp_csum *c);
void stamp_csum_update(struct stamp_csum *c, const void *data, size_t len);
void stamp_csum_final(struct stamp_csum *c, struct stamp_id *ret);

void stamp_id_to_hex(const struct stamp_id *id, char ret[STAMP_ID_HEX_SIZE]);
/* Returns 0, or -EINVAL if @hex is not exactly 32 lowercase hex digits. */
int stamp_id_from_hex(const char *hex, struct stamp_id *ret);
bool stamp_id_is_null(const struct stamp_id *id);
static inline int stamp_id_cmp(const struct stamp_id *a, const struct stamp_id *b)
{
        return __builtin_memcmp(a->b, b->b, STAMP_ID_SIZE);
}
