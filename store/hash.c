/* SPDX-License-Identifier: MIT */
/*
 * Chunk ids are XXH3-128 with a secret derived per store (see FORMAT.md,
 * "Chunk ids and their threat model"). The secret makes ids unpredictable
 * from outside the store; it is not a MAC.
 *
 * STAMP_TEST_WEAK_IDS=1 in the environment truncates ids to their first
 * byte so that tests can force collisions. It weakens dedup safety only for
 * the process that sets it, and the collision check still protects data.
 */
#include "hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Inlined: the compiler sees the whole hash, and the static-only API is there. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "macro.h"

#define SECRET_SIZE 192

struct stamp_hasher {
        uint8_t secret[SECRET_SIZE];
        bool weak;
};

struct stamp_csum {
        XXH3_state_t *state;
};

int stamp_secret_generate(uint8_t ret[STAMP_SECRET_SEED_SIZE])
{
        size_t done = 0;

        while (done < STAMP_SECRET_SEED_SIZE) {
                ssize_t n = getrandom(ret + done, STAMP_SECRET_SEED_SIZE - done, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negerrno();
                }
                done += (size_t)n;
        }
        return 0;
}

struct stamp_hasher *stamp_hasher_new(const uint8_t seed[STAMP_SECRET_SEED_SIZE])
{
        struct stamp_hasher *h = calloc(1, sizeof(*h));
        const char *weak = getenv("STAMP_TEST_WEAK_IDS");

        if (!h)
                return NULL;
        if (XXH3_generateSecret(h->secret, sizeof(h->secret), seed,
                                STAMP_SECRET_SEED_SIZE) != XXH_OK) {
                free(h);
                return NULL;
        }
        h->weak = weak && strcmp(weak, "1") == 0;
        return h;
}

void stamp_hasher_free(struct stamp_hasher *h)
{
        free(h);
}

static void canonical(XXH128_hash_t v, struct stamp_id *ret)
{
        XXH128_canonical_t c;

        XXH128_canonicalFromHash(&c, v);
        memcpy(ret->b, c.digest, STAMP_ID_SIZE);
}

void stamp_hasher_id(const struct stamp_hasher *h, const void *data, size_t len,
                     struct stamp_id *ret)
{
        canonical(XXH3_128bits_withSecret(data, len, h->secret, sizeof(h->secret)), ret);
        if (h->weak)
                memset(ret->b + 1, 0, STAMP_ID_SIZE - 1);
}

uint64_t stamp_hasher_u64(const struct stamp_hasher *h, uint64_t x)
{
        uint8_t buf[8];

        le64_write(buf, x);
        return XXH3_64bits_withSecret(buf, sizeof(buf), h->secret, sizeof(h->secret));
}

void stamp_checksum128(const void *data, size_t len, struct stamp_id *ret)
{
        canonical(XXH3_128bits(data, len), ret);
}

uint32_t stamp_checksum32(const void *data, size_t len)
{
        return (uint32_t)XXH3_64bits(data, len);
}

struct stamp_csum *stamp_csum_new(void)
{
        struct stamp_csum *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->state = XXH3_createState();
        if (!c->state) {
                free(c);
                return NULL;
        }
        XXH3_128bits_reset(c->state);
        return c;
}

void stamp_csum_free(struct stamp_csum *c)
{
        if (!c)
                return;
        XXH3_freeState(c->state);
        free(c);
}

void stamp_csum_update(struct stamp_csum *c, const void *data, size_t len)
{
        XXH3_128bits_update(c->state, data, len);
}

void stamp_csum_final(struct stamp_csum *c, struct stamp_id *ret)
{
        canonical(XXH3_128bits_digest(c->state), ret);
}

void stamp_id_to_hex(const struct stamp_id *id, char ret[STAMP_ID_HEX_SIZE])
{
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < STAMP_ID_SIZE; i++) {
                ret[2 * i] = digits[id->b[i] >> 4];
                ret[2 * i + 1] = digits[id->b[i] & 15];
        }
        ret[2 * STAMP_ID_SIZE] = 0;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

int stamp_id_from_hex(const char *hex, struct stamp_id *ret)
{
        struct stamp_id id;

        if (!hex || strlen(hex) != 2 * STAMP_ID_SIZE)
                return -EINVAL;
        for (size_t i = 0; i < STAMP_ID_SIZE; i++) {
                int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                id.b[i] = (uint8_t)(hi << 4 | lo);
        }
        *ret = id;
        return 0;
}

bool stamp_id_is_null(const struct stamp_id *id)
{
        static const struct stamp_id null;

        return memcmp(id, &null, sizeof(null)) == 0;
}
