/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the content-defined chunker (store/chunker.c). The first bytes
 * choose the parameters, the rest is cut into chunks. Every cut must be
 * 1..max bytes, at least min unless it is the last piece, the same when
 * cutting again, and the same when the chunker is shown only the next max
 * bytes (a cut never looks further than max).
 */
#include <string.h>

#include "chunker.h"
#include "fuzz.h"

#define PARAM_BYTES 5
/* Small sizes make cuts frequent; they also pass stamp_chunker_params_check(). */
#define DEFAULT_MIN 64u
#define DEFAULT_AVG 256u
#define DEFAULT_MAX 1024u

static void pick_params(const uint8_t *p, struct stamp_chunker_params *ret)
{
        struct stamp_chunker_params c;

        /* min 64..1087, avg 128..16384, max avg+1..5*avg: mostly valid, sometimes not. */
        c.min = STAMP_CHUNK_MIN_LIMIT + ((uint32_t)p[0] | (uint32_t)p[1] << 8) % 1024;
        c.avg = 1u << (7 + p[2] % 8);
        c.max = c.avg + 1 + ((uint32_t)p[3] | (uint32_t)p[4] << 8) % (4 * c.avg);
        if (stamp_chunker_params_check(&c) < 0) {
                c.min = DEFAULT_MIN;
                c.avg = DEFAULT_AVG;
                c.max = DEFAULT_MAX;
                FUZZ_CHECK(stamp_chunker_params_check(&c) == 0);
        }
        *ret = c;
}

/* Cuts all of @data; returns the number of chunks, their lengths in @cuts. */
static size_t cut_all(const struct stamp_chunker *c, const uint8_t *data, size_t n, size_t *cuts)
{
        size_t pos = 0, k = 0;

        while (pos < n) {
                size_t left = n - pos, len = c->p.max < left ? c->p.max : left;
                size_t cut = stamp_chunker_cut(c, data + pos, left);

                FUZZ_CHECK(cut >= 1);
                FUZZ_CHECK(cut <= c->p.max);
                FUZZ_CHECK(cut <= left);
                /* Shorter than min only as the last piece. */
                FUZZ_CHECK(cut >= c->p.min || cut == left);
                /* Only the next max bytes matter. */
                FUZZ_CHECK(stamp_chunker_cut(c, data + pos, len) == cut);
                cuts[k++] = cut;
                pos += cut;
        }
        FUZZ_CHECK(pos == n);
        return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct stamp_chunker_params p;
        struct stamp_chunker *c1, *c2;
        size_t *a, *b, na, nb, n;

        if (size < PARAM_BYTES)
                return 0;
        pick_params(data, &p);
        data += PARAM_BYTES;
        n = size - PARAM_BYTES;

        c1 = malloc(sizeof(*c1));
        c2 = malloc(sizeof(*c2));
        a = malloc((n + 1) * sizeof(size_t));
        b = malloc((n + 1) * sizeof(size_t));
        if (!c1 || !c2 || !a || !b)
                abort();
        stamp_chunker_init(c1, &p, NULL);
        stamp_chunker_init(c2, &p, NULL);
        /* Field by field: the struct has padding. */
        FUZZ_CHECK(memcmp(&c1->p, &p, sizeof(p)) == 0);
        FUZZ_CHECK(c1->mask_s == c2->mask_s && c1->mask_l == c2->mask_l);
        FUZZ_CHECK(memcmp(c1->gear, c2->gear, sizeof(c1->gear)) == 0);

        na = cut_all(c1, data, n, a);
        nb = cut_all(c2, data, n, b);
        FUZZ_CHECK(na == nb);
        FUZZ_CHECK(memcmp(a, b, na * sizeof(size_t)) == 0);
        FUZZ_CHECK(n == 0 || na >= 1);

        free(a);
        free(b);
        free(c1);
        free(c2);
        return 0;
}
