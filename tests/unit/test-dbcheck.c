/* SPDX-License-Identifier: MIT */
/* Unit tests of store/dbcheck.c: the JSON validator and the SQLite check. */
#include <errno.h>
#include <string.h>
#include <sys/types.h>

#include "dbcheck.h"
#include "tests.h"

static int json(const char *text, size_t split)
{
        struct stamp_json_check *c = stamp_json_check_new();
        size_t n = strlen(text);
        char msg[128];
        int r;

        CHECK(c);
        if (split > n)
                split = n;
        r = stamp_json_check_feed(c, (const uint8_t *)text, split);
        if (r == 0)
                r = stamp_json_check_feed(c, (const uint8_t *)text + split, n - split);
        if (r == 0)
                r = stamp_json_check_end(c, msg, sizeof(msg));
        stamp_json_check_free(c);
        return r;
}

static void test_json(void)
{
        static const char *const valid[] = {
                "{}", "[]", "0", "-0", "1.5e10", "-2E-3", "\"a\\u00e9\\n\"", "true", " null ",
                "{\"a\": [1, {\"b\": false}], \"c\": \"\"}", "[[[[[]]]]]", "\n\t[1,2]\r\n",
                "123", "{\"k\":{\"k\":{\"k\":[0.0]}}}",
        };
        static const char *const invalid[] = {
                "", " ", "{", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "+1", "1e", "tru",
                "nulls", "\"abc", "\"\\x\"", "\"\\u12g4\"", "[1 2]", "{\"a\" 1}", "{1: 2}",
                "[}", "{]", "{} {}", "\"tab\there\"", "'single'", "NaN", "[1,,2]", "-",
        };

        for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
                for (size_t split = 0; split <= strlen(valid[i]); split++)
                        CHECK(json(valid[i], split) == 0);
        for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
                for (size_t split = 0; split <= strlen(invalid[i]); split++)
                        CHECK(json(invalid[i], split) == -EBADMSG);
}

struct mem {
        const uint8_t *p;
        size_t n;
};

static ssize_t mem_pread(void *userdata, void *buf, size_t len, uint64_t off)
{
        const struct mem *m = userdata;

        if (off >= m->n)
                return 0;
        if (len > m->n - off)
                len = m->n - off;
        memcpy(buf, m->p + off, len);
        return (ssize_t)len;
}

static ssize_t failing_pread(void *userdata, void *buf, size_t len, uint64_t off)
{
        (void)userdata, (void)buf, (void)len, (void)off;
        return -EIO;
}

static void test_sqlite(void)
{
        /* Not a database at all: a failed check with SQLite's reason, not an error. */
        static const uint8_t junk[4096] = "SQLite format 3";
        struct mem m = { junk, sizeof(junk) };
        char msg[256];
        int r;

        CHECK(stamp_is_sqlite_header(junk, sizeof(junk)));
        CHECK(!stamp_is_sqlite_header((const uint8_t *)"SQLite format 2\0", 16));
        r = stamp_sqlite_check(mem_pread, &m, sizeof(junk), msg, sizeof(msg));
        CHECK(r == 0);
        CHECK(msg[0]);
        /* A reader that fails: its error comes back, the database is not blamed. */
        r = stamp_sqlite_check(failing_pread, NULL, 8192, msg, sizeof(msg));
        CHECK(r == -EIO);
}

int main(void)
{
        test_json();
        test_sqlite();
        return 0;
}
