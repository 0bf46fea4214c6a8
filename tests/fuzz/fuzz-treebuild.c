/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the tree builder against the tree parser (store/tree.c), the
 * other direction of fuzz-tree: the input drives a generator of valid
 * entries (all seven types, xattrs, inline and chunk-list content, names
 * that may collide). The builder must accept every entry; the encoding
 * must fail with -EEXIST exactly when two names are equal; otherwise it
 * must parse, every entry must decode to what was added and be found by
 * name, and re-encoding the parsed tree must give the same bytes.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "chunker.h"
#include "fuzz.h"
#include "tree.h"

#define MAX_ENTRIES 24

struct src {
        const uint8_t *p;
        size_t n;
};

static uint8_t u8(struct src *s)
{
        if (s->n == 0)
                return 0;
        s->n--;
        return *s->p++;
}

static uint64_t uN(struct src *s, unsigned bytes)
{
        uint64_t v = 0;

        for (unsigned i = 0; i < bytes; i++)
                v |= (uint64_t)u8(s) << (8 * i);
        return v;
}

static int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
        int c = memcmp(a, b, al < bl ? al : bl);

        return c != 0 ? c : al < bl ? -1 : al > bl;
}

/* A byte that is neither NUL nor '/'. */
static char name_char(struct src *s)
{
        uint8_t c = u8(s);

        return c == 0 || c == '/' ? (char)('a' + c % 26) : (char)c;
}

static uint32_t type_bits(uint8_t type)
{
        static const uint32_t bits[] = { 0,       S_IFREG, S_IFDIR, S_IFLNK,
                                         S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK };
        return bits[type];
}

struct gen {
        struct stamp_entry e;
        char name[STAMP_NAME_MAX];
        char target[32];
        uint8_t xattrs[4 * (1 + 12 + 4 + 16)];
        uint8_t *content;
};

static void gen_entry(struct src *s, struct gen *g)
{
        struct stamp_entry *e = &g->e;
        size_t xl = 0;

        memset(e, 0, sizeof(*e));
        /* Short names from a small alphabet now and then, so that they collide. */
        e->name_len = 1 + u8(s) % 12;
        for (size_t i = 0; i < e->name_len; i++)
                g->name[i] = (u8(s) & 1) ? name_char(s) : (char)('a' + u8(s) % 3);
        if (e->name_len <= 2 && g->name[0] == '.' && (e->name_len == 1 || g->name[1] == '.'))
                g->name[0] = '_';
        e->name = g->name;
        FUZZ_CHECK(stamp_name_valid(e->name, e->name_len));

        e->type = 1 + u8(s) % 7;
        e->flags = u8(s) & STAMP_EF_KNOWN;
        e->mode = type_bits(e->type) | (uint32_t)(uN(s, 2) & 07777);
        e->uid = (uint32_t)uN(s, 4);
        e->gid = (uint32_t)uN(s, 4);
        e->nlink = (uint32_t)uN(s, 4);
        e->mtime_ns = (int64_t)uN(s, 8);
        e->ctime_ns = (int64_t)uN(s, 8);
        e->size = uN(s, 8);
        e->rdev = uN(s, 8);
        e->link_id = uN(s, 8);

        if (e->type == STAMP_T_LNK) {
                e->target_len = 1 + u8(s) % sizeof(g->target);
                for (size_t i = 0; i < e->target_len; i++)
                        g->target[i] = u8(s) ? (char)(1 + u8(s) % 255) : '/';
                e->target = g->target;
        }

        /* Up to 4 xattrs, sorted by name without repeats, as FORMAT.md asks. */
        {
                struct {
                        uint8_t name[12], value[16];
                        size_t nl, vl;
                } x[4], tmp;
                unsigned nx = u8(s) % 5, kept = 0;

                for (unsigned i = 0; i < nx; i++) {
                        x[i].nl = 1 + u8(s) % sizeof(x[i].name);
                        x[i].vl = u8(s) % (sizeof(x[i].value) + 1);
                        for (size_t k = 0; k < x[i].nl; k++)
                                x[i].name[k] = (uint8_t)('a' + u8(s) % 4); /* collide often */
                        for (size_t k = 0; k < x[i].vl; k++)
                                x[i].value[k] = u8(s);
                }
                for (unsigned i = 1; i < nx; i++)
                        for (unsigned k = i; k > 0 && bytes_cmp(x[k - 1].name, x[k - 1].nl,
                                                                x[k].name, x[k].nl) > 0; k--) {
                                tmp = x[k];
                                x[k] = x[k - 1];
                                x[k - 1] = tmp;
                        }
                for (unsigned i = 0; i < nx; i++) {
                        if (i > 0 && bytes_cmp(x[i - 1].name, x[i - 1].nl, x[i].name, x[i].nl) == 0)
                                continue;
                        g->xattrs[xl++] = (uint8_t)x[i].nl;
                        memcpy(g->xattrs + xl, x[i].name, x[i].nl);
                        xl += x[i].nl;
                        g->xattrs[xl++] = (uint8_t)x[i].vl;
                        g->xattrs[xl++] = 0;
                        g->xattrs[xl++] = 0;
                        g->xattrs[xl++] = 0;
                        memcpy(g->xattrs + xl, x[i].value, x[i].vl);
                        xl += x[i].vl;
                        kept++;
                }
                e->xattr_count = (uint16_t)kept;
        }
        e->xattrs = xl ? g->xattrs : NULL;
        e->xattrs_len = xl;

        if (e->type == STAMP_T_DIR) {
                for (size_t i = 0; i < STAMP_ID_SIZE; i++)
                        e->subtree.b[i] = u8(s);
        } else if (e->type == STAMP_T_REG) {
                if (u8(s) & 1) {
                        struct stamp_id id;
                        for (size_t i = 0; i < STAMP_ID_SIZE; i++)
                                id.b[i] = u8(s);
                        FUZZ_CHECK(stamp_content_encode_list(&id, u8(s) % (STAMP_CHUNKLIST_LEVEL_MAX + 1),
                                                             &g->content, &e->content_len) == 0);
                } else {
                        uint8_t chunks[STAMP_INLINE_CHUNKS_MAX * STAMP_CHUNKREF_SIZE];
                        uint32_t n = u8(s) % (STAMP_INLINE_CHUNKS_MAX + 1);
                        e->size = 0;
                        for (uint32_t i = 0; i < n; i++) {
                                uint8_t *c = chunks + (size_t)i * STAMP_CHUNKREF_SIZE;
                                uint32_t len = 1 + (uint32_t)uN(s, 3) % STAMP_CHUNK_MAX_LIMIT;
                                for (size_t k = 0; k < STAMP_ID_SIZE; k++)
                                        c[k] = u8(s);
                                c[STAMP_ID_SIZE] = (uint8_t)len;
                                c[STAMP_ID_SIZE + 1] = (uint8_t)(len >> 8);
                                c[STAMP_ID_SIZE + 2] = (uint8_t)(len >> 16);
                                c[STAMP_ID_SIZE + 3] = (uint8_t)(len >> 24);
                                e->size += len;
                        }
                        FUZZ_CHECK(stamp_content_encode_inline(chunks, n, &g->content,
                                                               &e->content_len) == 0);
                }
                e->content = g->content;
        }
}

static void check_same(const struct stamp_entry *a, const struct stamp_entry *b)
{
        FUZZ_CHECK(a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0);
        FUZZ_CHECK(a->type == b->type && a->flags == b->flags && a->mode == b->mode);
        FUZZ_CHECK(a->uid == b->uid && a->gid == b->gid && a->nlink == b->nlink);
        FUZZ_CHECK(a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns);
        FUZZ_CHECK(a->size == b->size && a->rdev == b->rdev && a->link_id == b->link_id);
        FUZZ_CHECK(a->target_len == b->target_len &&
                   (a->target_len == 0 || memcmp(a->target, b->target, a->target_len) == 0));
        FUZZ_CHECK(a->xattr_count == b->xattr_count && a->xattrs_len == b->xattrs_len &&
                   (a->xattrs_len == 0 || memcmp(a->xattrs, b->xattrs, a->xattrs_len) == 0));
        if (a->type == STAMP_T_DIR)
                FUZZ_CHECK(stamp_id_cmp(&a->subtree, &b->subtree) == 0);
        FUZZ_CHECK(a->content_len == b->content_len &&
                   (a->content_len == 0 || memcmp(a->content, b->content, a->content_len) == 0));
}

static int name_eq(const struct stamp_entry *a, const struct stamp_entry *b)
{
        return a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct gen g[MAX_ENTRIES];
        struct src s = { data, size };
        struct stamp_tree_builder *b, *b2;
        struct stamp_tree t;
        uint8_t *enc = NULL, *enc2 = NULL;
        size_t n, enc_len = 0, enc2_len = 0;
        int dup = 0, r;

        n = u8(&s) % (MAX_ENTRIES + 1);
        b = stamp_tree_builder_new();
        FUZZ_CHECK(b);
        for (size_t i = 0; i < n; i++) {
                g[i].content = NULL;
                gen_entry(&s, &g[i]);
                for (size_t k = 0; k < i; k++)
                        dup |= name_eq(&g[k].e, &g[i].e);
                FUZZ_CHECK(stamp_tree_builder_add(b, &g[i].e) == 0);
        }
        FUZZ_CHECK(stamp_tree_builder_count(b) == n);

        r = stamp_tree_builder_encode(b, &enc, &enc_len);
        stamp_tree_builder_free(b);
        if (dup) {
                FUZZ_CHECK(r == -EEXIST);
                goto out;
        }
        FUZZ_CHECK(r == 0);

        /* What the builder wrote from valid entries, the parser accepts... */
        FUZZ_CHECK(stamp_tree_parse(enc, enc_len, &t) == 0);
        FUZZ_CHECK(t.count == n);
        b2 = stamp_tree_builder_new();
        FUZZ_CHECK(b2);
        for (size_t i = 0; i < n; i++) {
                struct stamp_entry e;
                uint32_t idx = UINT32_MAX;
                /* ...with every entry as it was added, found by its name... */
                FUZZ_CHECK(stamp_tree_find(&t, g[i].e.name, g[i].e.name_len, &idx) == 1);
                FUZZ_CHECK(stamp_tree_entry(&t, idx, &e) == 0);
                check_same(&g[i].e, &e);
                /* ...and in sorted order. */
                FUZZ_CHECK(stamp_tree_entry(&t, (uint32_t)i, &e) == 0);
                FUZZ_CHECK(stamp_tree_builder_add(b2, &e) == 0);
        }
        /* ...and encoding it again gives the same bytes. */
        FUZZ_CHECK(stamp_tree_builder_encode(b2, &enc2, &enc2_len) == 0);
        FUZZ_CHECK(enc2_len == enc_len && memcmp(enc, enc2, enc_len) == 0);
        stamp_tree_builder_free(b2);
out:
        for (size_t i = 0; i < n; i++)
                free(g[i].content);
        free(enc);
        free(enc2);
        return 0;
}
