/* SPDX-License-Identifier: MIT */
/*
 * Assertion helpers for the unit tests: they print the expression and the
 * place. Also the fixtures more than one test needs (util.c, linked into
 * every unit test).
 */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(expr)                                                            \
        do {                                                                   \
                if (!(expr)) {                                                 \
                        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
                                __LINE__, #expr);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

#define CHECK_RC(expr, want)                                                   \
        do {                                                                   \
                long _got = (long)(expr), _want = (long)(want);                \
                if (_got != _want) {                                           \
                        fprintf(stderr, "%s:%d: %s = %ld (%s), expected %ld (%s)\n", \
                                __FILE__, __LINE__, #expr, _got,               \
                                _got < 0 ? strerror((int)-_got) : "", _want,   \
                                _want < 0 ? strerror((int)-_want) : "");       \
                        abort();                                               \
                }                                                              \
        } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, 0)

/* A fresh temporary directory, removed by the caller with rm_rf(). */
static inline char *make_tmpdir(void)
{
        char *d = strdup("/tmp/stamp-unit-XXXXXX");

        CHECK(d && mkdtemp(d));
        return d;
}

static inline void rm_rf(const char *dir)
{
        char cmd[512];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
}

/* Deterministic pseudo-random bytes. */
static inline void fill_random(unsigned char *p, size_t n, unsigned long long seed)
{
        unsigned long long x = seed * 0x9e3779b97f4a7c15ull + 1;

        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p[i] = (unsigned char)(x >> 24);
        }
}

struct stamp_store;

/* Writes @size bytes of fill_random(@seed) to @dir/@name, replacing it. */
void write_random_file(const char *dir, const char *name, size_t size, unsigned long long seed);

/*
 * Snapshots directory @src into @s (2 threads), taking and releasing the
 * store lock around it; the new stamp goes to @ret, which holds
 * STAMP_STAMP_LEN + 1 bytes.
 */
void take_snapshot(struct stamp_store *s, const char *src, char *ret);
