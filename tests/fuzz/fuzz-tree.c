/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the tree and chunk-list parsers (store/tree.c). For a tree that
 * parses: every entry decodes, its content reference and xattrs parse,
 * a binary search finds each name at its own index, and re-encoding the
 * entries with the tree builder gives back the input byte for byte (the
 * encoding is canonical). For a chunk list that parses: every item is in
 * its limits and re-encoding gives back the input.
 */
#include <string.h>

#include "chunker.h"
#include "fuzz.h"
#include "tree.h"

/*
 * Known findings (reported against store/tree.c, see findings/README.md):
 * while one is 1 the check it names is left out, so that the fuzzer keeps
 * looking for other problems. Set it to 0 once tree.c is fixed.
 *
 * KNOWN_XATTR_ORDER: stamp_tree_parse() accepts xattrs that are not sorted
 * by name or repeat a name (FORMAT.md: "sorted by name"; "a tree that
 * breaks any rule is rejected whole"). Reproducers: findings/tree/xattrs-*.
 *
 * KNOWN_CHUNKLIST_PAD: stamp_chunklist_parse() does not check that bytes
 * 5..7 ("3 zero bytes") are zero, so a chunk list does not re-encode to
 * itself when they are not.
 */
#define KNOWN_XATTR_ORDER 0
#define KNOWN_CHUNKLIST_PAD 0

static void check_content(const struct stamp_entry *e)
{
        struct stamp_content c;
        uint64_t sum = 0;

        FUZZ_CHECK(e->content && e->content_len > 0);
        FUZZ_CHECK(stamp_content_parse(e->content, e->content_len, &c) == 0);
        if (c.kind == STAMP_CONTENT_INLINE) {
                FUZZ_CHECK(c.n <= STAMP_INLINE_CHUNKS_MAX);
                FUZZ_CHECK(e->content_len == 5 + (size_t)c.n * STAMP_CHUNKREF_SIZE);
                for (uint32_t i = 0; i < c.n; i++) {
                        struct stamp_id id;
                        uint32_t len;
                        stamp_content_chunk(&c, i, &id, &len);
                        FUZZ_CHECK(len >= 1 && len <= STAMP_CHUNK_MAX_LIMIT);
                        sum += len;
                }
                FUZZ_CHECK(sum == e->size);
        } else {
                FUZZ_CHECK(c.kind == STAMP_CONTENT_CHUNKLIST);
                FUZZ_CHECK(e->content_len == 1 + STAMP_ID_SIZE + 1);
                FUZZ_CHECK(c.level <= STAMP_CHUNKLIST_LEVEL_MAX);
        }
}

static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
        int c = memcmp(a, b, al < bl ? al : bl);

        return c != 0 ? c : al < bl ? -1 : al > bl;
}

static void check_xattrs(const struct stamp_entry *e)
{
        const uint8_t *p = e->xattrs, *end = e->xattrs + e->xattrs_len;
        const char *prev = NULL;
        size_t prev_len = 0;
        unsigned n = 0;
        int r;

        for (;;) {
                const char *name;
                const uint8_t *value;
                size_t nl, vl;

                r = stamp_xattr_next(&p, end, &name, &nl, &value, &vl);
                if (r <= 0)
                        break;
                FUZZ_CHECK(nl >= 1 && nl <= 255 && !memchr(name, 0, nl));
                FUZZ_CHECK(vl <= STAMP_XATTR_VALUE_MAX);
                FUZZ_CHECK((const uint8_t *)name > e->xattrs && value + vl <= end);
                /* Strictly increasing names (FORMAT.md: sorted by name). */
                if (!KNOWN_XATTR_ORDER && prev)
                        FUZZ_CHECK(bytes_cmp(prev, prev_len, name, nl) < 0);
                prev = name;
                prev_len = nl;
                n++;
        }
        /* A parsed tree's xattrs are exactly xattr_count well-formed ones. */
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(p == end);
        FUZZ_CHECK(n == e->xattr_count);
}

static void fuzz_tree(const uint8_t *data, size_t size)
{
        struct stamp_tree t;
        struct stamp_tree_builder *b;
        uint8_t *enc = NULL;
        size_t enc_len = 0;
        uint32_t idx;

        if (stamp_tree_parse(data, size, &t) < 0)
                return;
        FUZZ_CHECK(t.buf == data && t.len == size);

        b = stamp_tree_builder_new();
        FUZZ_CHECK(b);
        for (uint32_t i = 0; i < t.count; i++) {
                struct stamp_entry e;

                FUZZ_CHECK(stamp_tree_entry(&t, i, &e) == 0);
                FUZZ_CHECK(stamp_name_valid(e.name, e.name_len));
                FUZZ_CHECK((e.type == STAMP_T_LNK) == (e.target_len > 0));
                if (e.type == STAMP_T_REG)
                        check_content(&e);
                else
                        FUZZ_CHECK(e.content == NULL && e.content_len == 0);
                check_xattrs(&e);

                /* Determinism: the binary search lands on this very entry. */
                idx = UINT32_MAX;
                FUZZ_CHECK(stamp_tree_find(&t, e.name, e.name_len, &idx) == 1);
                FUZZ_CHECK(idx == i);

                FUZZ_CHECK(stamp_tree_builder_add(b, &e) == 0);
        }
        FUZZ_CHECK(stamp_tree_builder_count(b) == t.count);
        /* No entry has an empty name, so this never matches. */
        FUZZ_CHECK(stamp_tree_find(&t, "", 0, &idx) == 0);
        if (t.count > 0)
                FUZZ_CHECK(stamp_tree_find(&t, "/", 1, &idx) == 0);

        /* Canonical encoding: parse then build gives back the same bytes. */
        FUZZ_CHECK(stamp_tree_builder_encode(b, &enc, &enc_len) == 0);
        FUZZ_CHECK(enc_len == size);
        FUZZ_CHECK(memcmp(enc, data, size) == 0);
        free(enc);
        stamp_tree_builder_free(b);
}

static void fuzz_chunklist(const uint8_t *data, size_t size)
{
        struct stamp_chunklist l;
        uint64_t total = 0;
        uint8_t *enc = NULL;
        size_t enc_len = 0;

        if (stamp_chunklist_parse(data, size, &l) < 0)
                return;
        FUZZ_CHECK(l.level <= STAMP_CHUNKLIST_LEVEL_MAX);
        FUZZ_CHECK(l.count >= 1 && l.count <= STAMP_CHUNKLIST_FANOUT);
        FUZZ_CHECK(size == 12 + (size_t)l.count * STAMP_LISTREF_SIZE);
        for (uint32_t i = 0; i < l.count; i++) {
                struct stamp_id id;
                uint64_t n;
                stamp_chunklist_item(&l, i, &id, &n);
                FUZZ_CHECK(n >= 1);
                FUZZ_CHECK(l.level > 0 || n <= STAMP_CHUNK_MAX_LIMIT);
                total += n; /* may wrap at level > 0: only exercised, not checked */
        }
        (void)total;

        FUZZ_CHECK(stamp_chunklist_encode(l.level, l.items, l.count, &enc, &enc_len) == 0);
        FUZZ_CHECK(enc_len == size);
        if (KNOWN_CHUNKLIST_PAD) {
                /* Bytes 5..7 are zero in the layout but not checked by the parser. */
                FUZZ_CHECK(memcmp(enc, data, 5) == 0);
                FUZZ_CHECK(memcmp(enc + 8, data + 8, size - 8) == 0);
        } else
                FUZZ_CHECK(memcmp(enc, data, size) == 0);
        free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        fuzz_tree(data, size);
        fuzz_chunklist(data, size);
        return 0;
}
