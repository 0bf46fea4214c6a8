/* SPDX-License-Identifier: MIT */
/*
 * FastCDC (Xia et al., USENIX ATC '16) with normalized chunking level 2.
 *
 * The gear hash shifts left, so bit k of the hash depends on the last k+1
 * bytes only; the masks therefore use the top bits of the hash, which
 * depend on the last 64 bytes. Hashing starts at min, so the first min bytes
 * of a chunk are skipped (this is where most of FastCDC's speed comes from);
 * after an insertion the cut points resynchronise within one or two chunks.
 */
#include "chunker.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int stamp_chunker_params_check(const struct stamp_chunker_params *p)
{
        if (p->min < STAMP_CHUNK_MIN_LIMIT)
                return -EINVAL;
        if (p->max > STAMP_CHUNK_MAX_LIMIT)
                return -EINVAL;
        if (!(p->min < p->avg && p->avg < p->max))
                return -EINVAL;
        if (p->avg & (p->avg - 1))
                return -EINVAL;
        return 0;
}

static uint64_t top_bits(unsigned n)
{
        return n >= 64 ? ~0ull : ~0ull << (64 - n);
}

/* splitmix64: only for the keyless table used by tests. */
static uint64_t mix(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ull;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
}

/* The cut the rolling hash finds in the @n bytes at @data. */
static size_t cut_hash(const struct stamp_chunker *c, const uint8_t *data, size_t n)
{
        size_t end = n < c->p.max ? n : c->p.max;
        size_t normal = end < c->p.avg ? end : c->p.avg;
        size_t i = c->p.min;
        uint64_t h = 0;

        if (n <= c->p.min)
                return n;
        for (; i < normal; i++) {
                h = (h << 1) + c->gear[data[i]];
                if (!(h & c->mask_s))
                        return i + 1;
        }
        for (; i < end; i++) {
                h = (h << 1) + c->gear[data[i]];
                if (!(h & c->mask_l))
                        return i + 1;
        }
        return end;
}

void stamp_chunker_init(struct stamp_chunker *c, const struct stamp_chunker_params *p,
                        const struct stamp_hasher *h)
{
        unsigned bits = (unsigned)__builtin_ctz(p->avg);

        c->p = *p;
        c->mask_s = top_bits(bits + 2);
        c->mask_l = top_bits(bits > 2 ? bits - 2 : 1);
        for (unsigned i = 0; i < 256; i++)
                c->gear[i] = h ? stamp_hasher_u64(h, i) : mix(i);
        {
                uint8_t *zeros = calloc(1, p->max); /* untouched pages: no memory to speak of */
                c->zero_cut = zeros ? cut_hash(c, zeros, p->max) : SIZE_MAX;
                free(zeros);
        }
}

static bool leading_zeros(const uint8_t *p, size_t n)
{
        static const uint8_t zero[4096];

        for (; n >= sizeof(zero); p += sizeof(zero), n -= sizeof(zero))
                if (memcmp(p, zero, sizeof(zero)) != 0)
                        return false;
        return memcmp(p, zero, n) == 0;
}

size_t stamp_chunker_cut_zero(const struct stamp_chunker *c, const uint8_t *data, size_t n,
                              bool *ret_zero)
{
        /*
         * A cut depends only on the bytes before it, so a chunk that starts
         * with zeros up to where zeros are cut is cut there: a hole of a
         * sparse file (or a zeroed region) costs a comparison, not a hash
         * per byte.
         */
        *ret_zero = n >= c->zero_cut && n > c->p.min && leading_zeros(data, c->zero_cut);
        return *ret_zero ? c->zero_cut : cut_hash(c, data, n);
}

size_t stamp_chunker_cut(const struct stamp_chunker *c, const uint8_t *data, size_t n)
{
        bool zero;

        return stamp_chunker_cut_zero(c, data, n, &zero);
}
