/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the pack parsers (store/pack.c) with the input as a whole pack
 * file: the header, the trailer, the trailer index, and record headers
 * both at every 36-byte step from offset 32 and along the chain a recovery
 * scan would follow (each record's stored length leads to the next).
 */
#include <string.h>

#include "fuzz.h"
#include "pack.h"

/* Bounds the work per input for large seeds (a real pack in the corpus). */
#define MAX_WINDOWS 65536

static void check_index(const uint8_t *data, size_t size, const struct stamp_pack_trailer *t)
{
        struct stamp_pack_entry *v = NULL;
        size_t n = 0, index_len;
        uint64_t expect = STAMP_PACK_HEADER_SIZE;
        int r;

        /* Our own bounds check before slicing; a parsed trailer must pass it. */
        FUZZ_CHECK(size >= STAMP_PACK_HEADER_SIZE + STAMP_PACK_TRAILER_SIZE);
        FUZZ_CHECK(t->index_offset >= STAMP_PACK_HEADER_SIZE);
        FUZZ_CHECK(t->index_offset <= size - STAMP_PACK_TRAILER_SIZE);
        index_len = size - STAMP_PACK_TRAILER_SIZE - (size_t)t->index_offset;
        FUZZ_CHECK((uint64_t)t->count * STAMP_PACK_INDEX_ENTRY_SIZE == index_len);

        r = stamp_pack_index_parse(data + t->index_offset, index_len, t, &v, &n);
        if (r < 0) {
                FUZZ_CHECK(v == NULL);
                return;
        }
        FUZZ_CHECK(n == t->count);
        /* What the index parser promises: records contiguous from the header to the index. */
        for (size_t i = 0; i < n; i++) {
                struct stamp_pack_entry rec;
                const struct stamp_pack_entry *e = &v[i];

                FUZZ_CHECK(e->type >= STAMP_OBJ_DATA && e->type <= STAMP_OBJ_CHUNKLIST);
                FUZZ_CHECK(e->comp <= 1);
                FUZZ_CHECK(e->raw_len <= STAMP_OBJECT_MAX && e->stored_len <= STAMP_OBJECT_MAX);
                FUZZ_CHECK(e->comp != 0 || e->raw_len == e->stored_len);
                FUZZ_CHECK(e->offset == expect);
                expect += STAMP_PACK_RECORD_HEADER_SIZE + (uint64_t)e->stored_len;
                FUZZ_CHECK(expect <= t->index_offset);
                /* So the record header it names lies inside the file: parse it. */
                if (stamp_pack_record_parse(data + e->offset, e->offset, &rec) == 0)
                        FUZZ_CHECK(rec.offset == e->offset);
        }
        FUZZ_CHECK(expect == t->index_offset);
        free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct stamp_pack_entry rec;
        size_t windows = 0;

        if (size >= STAMP_PACK_HEADER_SIZE)
                (void)stamp_pack_header_check(data);

        if (size >= STAMP_PACK_TRAILER_SIZE) {
                struct stamp_pack_trailer t;
                if (stamp_pack_trailer_parse(data + size - STAMP_PACK_TRAILER_SIZE, size, &t) == 0)
                        check_index(data, size, &t);
        }

        /* Every record-sized window from the end of the header. */
        for (size_t off = STAMP_PACK_HEADER_SIZE;
             size >= STAMP_PACK_RECORD_HEADER_SIZE &&
             off <= size - STAMP_PACK_RECORD_HEADER_SIZE && windows < MAX_WINDOWS;
             off += STAMP_PACK_RECORD_HEADER_SIZE, windows++) {
                memset(&rec, 0, sizeof(rec));
                if (stamp_pack_record_parse(data + off, off, &rec) == 0) {
                        FUZZ_CHECK(rec.offset == off);
                        FUZZ_CHECK(rec.type >= STAMP_OBJ_DATA && rec.type <= STAMP_OBJ_CHUNKLIST);
                        FUZZ_CHECK(rec.comp <= 1);
                        FUZZ_CHECK(rec.comp != 0 || rec.raw_len == rec.stored_len);
                }
        }

        /* The record chain, as a scan of a pack without a usable index walks it. */
        windows = 0;
        for (uint64_t off = STAMP_PACK_HEADER_SIZE;
             size >= STAMP_PACK_RECORD_HEADER_SIZE &&
             off <= size - STAMP_PACK_RECORD_HEADER_SIZE && windows < MAX_WINDOWS;
             windows++) {
                if (stamp_pack_record_parse(data + off, off, &rec) < 0)
                        break;
                off += STAMP_PACK_RECORD_HEADER_SIZE + (uint64_t)rec.stored_len;
        }
        return 0;
}
