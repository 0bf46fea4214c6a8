/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the content checks of store/dbcheck.c, which read files of a
 * snapshot: the streaming JSON validator (fed whole, then in two pieces
 * split at a point taken from the input; both must agree) and the SQLite
 * integrity check through the read-only VFS (garbage must give an answer,
 * never a crash or a read outside the buffer).
 */
#include <errno.h>
#include <string.h>
#include <sys/types.h>

#include "dbcheck.h"
#include "fuzz.h"

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

static int json_verdict(const uint8_t *data, size_t size, size_t split)
{
        struct stamp_json_check *c = stamp_json_check_new();
        char msg[128];
        int r;

        FUZZ_CHECK(c);
        r = stamp_json_check_feed(c, data, split);
        if (r == 0)
                r = stamp_json_check_feed(c, data + split, size - split);
        if (r == 0)
                r = stamp_json_check_end(c, msg, sizeof(msg));
        stamp_json_check_free(c);
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct mem m = { data, size };
        char msg[256];
        int r;

        r = json_verdict(data, size, 0);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        if (size > 1)
                FUZZ_CHECK(json_verdict(data, size, data[0] % size) == r);
        if (size >= STAMP_SQLITE_MAGIC_LEN && stamp_is_sqlite_header(data, size)) {
                r = stamp_sqlite_check(mem_pread, &m, size, msg, sizeof(msg));
                FUZZ_CHECK(r == 0 || r == 1 || r < 0);
        }
        return 0;
}
