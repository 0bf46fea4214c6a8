/* SPDX-License-Identifier: MIT */
#include "chunker.h"
#include "hash.h"
#include "tests.h"

#define N (4u << 20)

static size_t cut_all(const struct stamp_chunker *c, const unsigned char *p, size_t n,
                      size_t *cuts, size_t max_cuts)
{
        size_t pos = 0, k = 0;

        while (pos < n) {
                size_t len = stamp_chunker_cut(c, p + pos, n - pos);
                CHECK(len >= 1 && len <= c->p.max);
                CHECK(len >= c->p.min || pos + len == n);
                pos += len;
                CHECK(k < max_cuts);
                cuts[k++] = pos;
        }
        return k;
}

static void test_params(void)
{
        struct stamp_chunker_params ok = { 4096, 16384, 131072 };
        struct stamp_chunker_params bad_avg = { 4096, 20000, 131072 };
        struct stamp_chunker_params bad_order = { 32768, 16384, 131072 };
        struct stamp_chunker_params too_big = { 4096, 16384, 64u << 20 };

        CHECK_OK(stamp_chunker_params_check(&ok));
        CHECK_RC(stamp_chunker_params_check(&bad_avg), -EINVAL);
        CHECK_RC(stamp_chunker_params_check(&bad_order), -EINVAL);
        CHECK_RC(stamp_chunker_params_check(&too_big), -EINVAL);
}

/* An insertion near the start only changes the chunks around it. */
static void test_resync(void)
{
        struct stamp_chunker_params p = { 4096, 16384, 131072 };
        struct stamp_chunker c;
        unsigned char *a = malloc(N), *b = malloc(N + 100);
        size_t *ca = malloc(N / 4096 * sizeof(size_t)), *cb = malloc(N / 4096 * sizeof(size_t));
        size_t na, nb, common = 0;

        CHECK(a && b && ca && cb);
        stamp_chunker_init(&c, &p, NULL);
        fill_random(a, N, 1);
        memcpy(b, a, 1000);
        memset(b + 1000, 'x', 100);
        memcpy(b + 1100, a + 1000, N - 1000);
        na = cut_all(&c, a, N, ca, N / 4096);
        nb = cut_all(&c, b, N + 100, cb, N / 4096);
        /* Cut points after the insertion, shifted by 100, must mostly agree. */
        for (size_t i = 0, j = 0; i < na && j < nb;) {
                if (ca[i] + 100 == cb[j]) {
                        common++;
                        i++;
                        j++;
                } else if (ca[i] + 100 < cb[j])
                        i++;
                else
                        j++;
        }
        CHECK(na > 100);
        CHECK(common + 3 >= na);
        /* Average chunk size in the right range. */
        CHECK(N / na > 8192 && N / na < 40000);
        free(a);
        free(b);
        free(ca);
        free(cb);
}

/* Different keys give different boundaries (chunk sizes do not leak content). */
static void test_keyed(void)
{
        struct stamp_chunker_params p = { 4096, 16384, 131072 };
        uint8_t s1[STAMP_SECRET_SEED_SIZE] = { 1 }, s2[STAMP_SECRET_SEED_SIZE] = { 2 };
        struct stamp_hasher *h1 = stamp_hasher_new(s1), *h2 = stamp_hasher_new(s2);
        struct stamp_chunker c1, c2;
        unsigned char *a = malloc(1u << 20);
        int same = 0;

        CHECK(h1 && h2 && a);
        fill_random(a, 1u << 20, 7);
        stamp_chunker_init(&c1, &p, h1);
        stamp_chunker_init(&c2, &p, h2);
        for (size_t off = 0; off < (1u << 20) - 131072; off += 65536)
                same += stamp_chunker_cut(&c1, a + off, 131072) ==
                        stamp_chunker_cut(&c2, a + off, 131072);
        CHECK(same < 4);
        /* Deterministic for one key. */
        CHECK(stamp_chunker_cut(&c1, a, 131072) == stamp_chunker_cut(&c1, a, 131072));
        stamp_hasher_free(h1);
        stamp_hasher_free(h2);
        free(a);
}

static void test_short(void)
{
        struct stamp_chunker_params p = { 64, 256, 1024 };
        struct stamp_chunker c;
        unsigned char buf[2048] = { 0 };

        stamp_chunker_init(&c, &p, NULL);
        CHECK(stamp_chunker_cut(&c, buf, 0) == 0);
        CHECK(stamp_chunker_cut(&c, buf, 10) == 10);
        CHECK(stamp_chunker_cut(&c, buf, 64) == 64);
        /* All zeros never match the mask: the cut falls at max. */
        CHECK(stamp_chunker_cut(&c, buf, 2048) <= 1024);
}

/* The rolling hash as FastCDC defines it, with no shortcut: the oracle for runs of zeros. */
static size_t reference_cut(const struct stamp_chunker *c, const unsigned char *data, size_t n)
{
        size_t end = n < c->p.max ? n : c->p.max;
        size_t normal = end < c->p.avg ? end : c->p.avg;
        uint64_t h = 0;

        if (n <= c->p.min)
                return n;
        for (size_t i = c->p.min; i < end; i++) {
                h = (h << 1) + c->gear[data[i]];
                if (!(h & (i < normal ? c->mask_s : c->mask_l)))
                        return i + 1;
        }
        return end;
}

/*
 * Runs of zeros (holes of sparse files) are cut without hashing: the cuts
 * are those of the hash, for runs of every length around the cut, with
 * data before and after, and for parameters whose zeros cut early.
 */
static void test_zero_runs(void)
{
        struct stamp_chunker_params params[] = { { 4096, 16384, 131072 }, { 64, 128, 256 },
                                                 { 256, 1024, 4096 } };
        unsigned char *buf = malloc(N);

        CHECK(buf);
        for (size_t k = 0; k < sizeof(params) / sizeof(params[0]); k++) {
                struct stamp_chunker c;
                uint64_t key = 1;
                /* Keys until one cuts zeros before the largest size, for the small sets. */
                do {
                        unsigned char seed[32] = { 0 };
                        struct stamp_hasher *h;
                        memcpy(seed, &key, sizeof(key));
                        h = stamp_hasher_new(seed);
                        CHECK(h);
                        stamp_chunker_init(&c, &params[k], h);
                        stamp_hasher_free(h);
                } while (k > 0 && c.zero_cut == c.p.max && ++key < 100000);
                CHECK(c.zero_cut >= c.p.min && c.zero_cut <= c.p.max);
                for (size_t run = c.zero_cut - 3; run <= c.zero_cut + 3; run++)
                        for (size_t tail = 0; tail < 3; tail++) {
                                size_t n = run + tail * 1000 + 1, pos = 0;
                                memset(buf, 0, run);
                                fill_random(buf + run, n - run, run + tail);
                                while (pos < n) {
                                        size_t want = reference_cut(&c, buf + pos, n - pos);
                                        CHECK(stamp_chunker_cut(&c, buf + pos, n - pos) == want);
                                        pos += want;
                                }
                        }
                /* A long hole in the middle of data. */
                fill_random(buf, N, 77 + k);
                memset(buf + 1000, 0, N / 2);
                for (size_t pos = 0; pos < N;) {
                        size_t want = reference_cut(&c, buf + pos, N - pos);
                        CHECK(stamp_chunker_cut(&c, buf + pos, N - pos) == want);
                        pos += want;
                }
        }
        free(buf);
}

int main(void)
{
        test_params();
        test_resync();
        test_keyed();
        test_short();
        test_zero_runs();
        printf("test-chunker: ok\n");
        return 0;
}
