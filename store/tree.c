/* SPDX-License-Identifier: MIT */
/*
 * Tree object layout, format version 1. All integers little-endian.
 *
 *   0  4  magic "STRE"
 *   4  4  version (1)
 *   8  4  count
 *  12  4×count  offset of each entry from the start of the object,
 *               strictly increasing; entries sorted bytewise by name
 *  entries, each:
 *   0  2  name length (1..255), then the name (no '/', no NUL, not . or ..)
 *   +0  1 type   +1 1 flags   +2 2 xattr count
 *   +4  4 st_mode  +8 4 uid  +12 4 gid  +16 4 nlink
 *   +20 8 mtime ns (signed)  +28 8 ctime ns (signed)
 *   +36 8 size  +44 8 rdev  +52 8 hardlink id  +60 4 symlink target length
 *   +64   target bytes
 *         xattrs: count × (1 name length, name, 4 value length, value)
 *         content: directory: 16-byte tree id;
 *                  regular file: 1 kind, then
 *                     kind 0 (inline):    4 n, n × (16 id, 4 length)
 *                     kind 1 (chunklist): 16 id, 1 level
 *
 * Chunk-list object layout:
 *   0 4 magic "SCLS"  4 1 level  5 3 zero  8 4 count (1..4096)
 *  12   count × (16 id, 8 length covered)
 */
#include "tree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chunker.h"
#include "hash.h"
#include "macro.h"

#define TREE_HEADER 12
#define ENTRY_FIXED 64

static int name_cmp(const char *a, size_t al, const char *b, size_t bl);

static const char tree_magic[4] = "STRE";
static const char list_magic[4] = "SCLS";

uint64_t stamp_entry_content_key(const struct stamp_entry *e)
{
        struct stamp_id h;

        if (e->type != STAMP_T_REG)
                return 0;
        stamp_checksum128(e->content, e->content_len, &h);
        return le64_read(h.b) | 1;
}

bool stamp_name_valid(const char *name, size_t len)
{
        if (len == 0 || len > STAMP_NAME_MAX)
                return false;
        if (len == 1 && name[0] == '.')
                return false;
        if (len == 2 && name[0] == '.' && name[1] == '.')
                return false;
        return !memchr(name, '/', len) && !memchr(name, 0, len);
}

static uint32_t type_bits(uint8_t type)
{
        switch (type) {
        case STAMP_T_REG:
                return S_IFREG;
        case STAMP_T_DIR:
                return S_IFDIR;
        case STAMP_T_LNK:
                return S_IFLNK;
        case STAMP_T_CHR:
                return S_IFCHR;
        case STAMP_T_BLK:
                return S_IFBLK;
        case STAMP_T_FIFO:
                return S_IFIFO;
        case STAMP_T_SOCK:
                return S_IFSOCK;
        }
        return 0;
}

int stamp_content_parse(const uint8_t *p, size_t len, struct stamp_content *ret)
{
        struct stamp_content c = { 0 };

        if (len < 1)
                return -EBADMSG;
        c.kind = p[0];
        if (c.kind == STAMP_CONTENT_INLINE) {
                if (len < 5)
                        return -EBADMSG;
                c.n = le32_read(p + 1);
                if (c.n > STAMP_INLINE_CHUNKS_MAX ||
                    len != 5 + (size_t)c.n * STAMP_CHUNKREF_SIZE)
                        return -EBADMSG;
                c.chunks = p + 5;
        } else if (c.kind == STAMP_CONTENT_CHUNKLIST) {
                if (len != 1 + STAMP_ID_SIZE + 1)
                        return -EBADMSG;
                memcpy(c.list.b, p + 1, STAMP_ID_SIZE);
                c.level = p[1 + STAMP_ID_SIZE];
                if (c.level > STAMP_CHUNKLIST_LEVEL_MAX)
                        return -EBADMSG;
        } else
                return -EBADMSG;
        *ret = c;
        return 0;
}

void stamp_content_chunk(const struct stamp_content *c, uint32_t i, struct stamp_id *ret_id,
                         uint32_t *ret_len)
{
        const uint8_t *p = c->chunks + (size_t)i * STAMP_CHUNKREF_SIZE;

        memcpy(ret_id->b, p, STAMP_ID_SIZE);
        *ret_len = le32_read(p + STAMP_ID_SIZE);
}

int stamp_xattr_next(const uint8_t **p, const uint8_t *end, const char **ret_name,
                     size_t *ret_name_len, const uint8_t **ret_value, size_t *ret_value_len)
{
        const uint8_t *q = *p;
        size_t nlen, vlen;

        if (q == end)
                return 0;
        if (end - q < 1)
                return -EBADMSG;
        nlen = q[0];
        if (nlen == 0 || (size_t)(end - q) < 1 + nlen + 4)
                return -EBADMSG;
        vlen = le32_read(q + 1 + nlen);
        if (vlen > STAMP_XATTR_VALUE_MAX || (size_t)(end - q) < 1 + nlen + 4 + vlen)
                return -EBADMSG;
        if (memchr(q + 1, 0, nlen))
                return -EBADMSG;
        *ret_name = (const char *)q + 1;
        *ret_name_len = nlen;
        *ret_value = q + 1 + nlen + 4;
        *ret_value_len = vlen;
        *p = q + 1 + nlen + 4 + vlen;
        return 1;
}

/* Decodes the entry at [p, end) and sets *ret_end to the byte after it. */
static int entry_decode(const uint8_t *p, const uint8_t *end, struct stamp_entry *ret,
                        const uint8_t **ret_end)
{
        struct stamp_entry e = { 0 };
        const uint8_t *q;
        size_t avail = (size_t)(end - p);

        if (avail < 2)
                return -EBADMSG;
        e.name_len = le16_read(p);
        if (avail < 2 + e.name_len + ENTRY_FIXED)
                return -EBADMSG;
        e.name = (const char *)p + 2;
        q = p + 2 + e.name_len;
        e.type = q[0];
        e.flags = q[1];
        e.xattr_count = le16_read(q + 2);
        e.mode = le32_read(q + 4);
        e.uid = le32_read(q + 8);
        e.gid = le32_read(q + 12);
        e.nlink = le32_read(q + 16);
        e.mtime_ns = (int64_t)le64_read(q + 20);
        e.ctime_ns = (int64_t)le64_read(q + 28);
        e.size = le64_read(q + 36);
        e.rdev = le64_read(q + 44);
        e.link_id = le64_read(q + 52);
        e.target_len = le32_read(q + 60);
        q += ENTRY_FIXED;
        if (e.target_len > STAMP_TARGET_MAX || (size_t)(end - q) < e.target_len)
                return -EBADMSG;
        e.target = (const char *)q;
        q += e.target_len;

        e.xattrs = q;
        {
                const char *prev = NULL;
                size_t prev_len = 0;
                for (unsigned i = 0; i < e.xattr_count; i++) {
                        const char *n;
                        const uint8_t *v;
                        size_t nl, vl;
                        if (stamp_xattr_next(&q, end, &n, &nl, &v, &vl) != 1)
                                return -EBADMSG;
                        /* sorted and unique: one encoding per directory */
                        if (prev && name_cmp(prev, prev_len, n, nl) >= 0)
                                return -EBADMSG;
                        prev = n;
                        prev_len = nl;
                }
        }
        e.xattrs_len = (size_t)(q - e.xattrs);

        if (e.type == STAMP_T_DIR) {
                if ((size_t)(end - q) < STAMP_ID_SIZE)
                        return -EBADMSG;
                memcpy(e.subtree.b, q, STAMP_ID_SIZE);
                q += STAMP_ID_SIZE;
        } else if (e.type == STAMP_T_REG) {
                struct stamp_content c;
                size_t len;
                if (q >= end)
                        return -EBADMSG;
                if (q[0] == STAMP_CONTENT_INLINE) {
                        if ((size_t)(end - q) < 5)
                                return -EBADMSG;
                        len = 5 + (size_t)le32_read(q + 1) * STAMP_CHUNKREF_SIZE;
                } else
                        len = 1 + STAMP_ID_SIZE + 1;
                if ((size_t)(end - q) < len || stamp_content_parse(q, len, &c) < 0)
                        return -EBADMSG;
                e.content = q;
                e.content_len = len;
                q += len;
        }
        *ret = e;
        *ret_end = q;
        return 0;
}

static int entry_check(const struct stamp_entry *e)
{
        if (!stamp_name_valid(e->name, e->name_len))
                return -EBADMSG;
        if (type_bits(e->type) == 0 || (e->mode & S_IFMT) != type_bits(e->type))
                return -EBADMSG;
        if (e->flags & ~STAMP_EF_KNOWN)
                return -EBADMSG;
        if ((e->type == STAMP_T_LNK) != (e->target_len > 0))
                return -EBADMSG;
        if (e->type == STAMP_T_LNK && memchr(e->target, 0, e->target_len))
                return -EBADMSG;
        if (e->type == STAMP_T_REG) {
                struct stamp_content c;
                uint64_t sum = 0;
                if (stamp_content_parse(e->content, e->content_len, &c) < 0)
                        return -EBADMSG;
                if (c.kind == STAMP_CONTENT_INLINE) {
                        for (uint32_t i = 0; i < c.n; i++) {
                                struct stamp_id id;
                                uint32_t l;
                                stamp_content_chunk(&c, i, &id, &l);
                                if (l == 0 || l > STAMP_CHUNK_MAX_LIMIT)
                                        return -EBADMSG;
                                sum += l;
                        }
                        if (sum != e->size)
                                return -EBADMSG;
                }
        }
        return 0;
}

static int name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
        int c = memcmp(a, b, al < bl ? al : bl);

        if (c != 0)
                return c;
        return al < bl ? -1 : al > bl;
}

int stamp_tree_parse(const uint8_t *buf, size_t len, struct stamp_tree *ret)
{
        struct stamp_entry prev = { 0 };
        uint32_t count;
        size_t table_end;

        if (len < TREE_HEADER || memcmp(buf, tree_magic, 4) != 0)
                return -EBADMSG;
        if (le32_read(buf + 4) != 1)
                return -EOPNOTSUPP;
        count = le32_read(buf + 8);
        if (count > (len - TREE_HEADER) / 4)
                return -EBADMSG;
        table_end = TREE_HEADER + (size_t)count * 4;
        for (uint32_t i = 0; i < count; i++) {
                uint32_t off = le32_read(buf + TREE_HEADER + 4 * (size_t)i);
                uint32_t next = i + 1 < count ? le32_read(buf + TREE_HEADER + 4 * (size_t)(i + 1))
                                              : (uint32_t)len;
                const uint8_t *end;
                struct stamp_entry e;

                /* Each entry fills exactly the space up to the next one. */
                if ((i == 0 && off != table_end) || off >= next || next > len)
                        return -EBADMSG;
                if (entry_decode(buf + off, buf + next, &e, &end) < 0 || end != buf + next)
                        return -EBADMSG;
                if (entry_check(&e) < 0)
                        return -EBADMSG;
                if (i > 0 && name_cmp(prev.name, prev.name_len, e.name, e.name_len) >= 0)
                        return -EBADMSG;
                prev = e;
        }
        if (count == 0 && len != TREE_HEADER)
                return -EBADMSG;
        ret->buf = buf;
        ret->len = len;
        ret->count = count;
        return 0;
}

void stamp_tree_view(const uint8_t *buf, size_t len, struct stamp_tree *ret)
{
        ret->buf = buf;
        ret->len = len;
        ret->count = le32_read(buf + 8);
}

int stamp_tree_entry(const struct stamp_tree *t, uint32_t i, struct stamp_entry *ret)
{
        uint32_t off, next;
        const uint8_t *end;

        if (i >= t->count)
                return -EINVAL;
        off = le32_read(t->buf + TREE_HEADER + 4 * (size_t)i);
        next = i + 1 < t->count ? le32_read(t->buf + TREE_HEADER + 4 * (size_t)(i + 1))
                                : (uint32_t)t->len;
        if (off >= next || next > t->len)
                return -EBADMSG;
        return entry_decode(t->buf + off, t->buf + next, ret, &end);
}

int stamp_tree_find(const struct stamp_tree *t, const char *name, size_t len,
                    uint32_t *ret_index)
{
        uint32_t lo = 0, hi = t->count;

        while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                uint32_t off = le32_read(t->buf + TREE_HEADER + 4 * (size_t)mid);
                size_t nl = le16_read(t->buf + off);
                int c = name_cmp((const char *)t->buf + off + 2, nl, name, len);
                if (c == 0) {
                        *ret_index = mid;
                        return 1;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return 0;
}

int stamp_chunklist_parse(const uint8_t *buf, size_t len, struct stamp_chunklist *ret)
{
        struct stamp_chunklist l;

        if (len < 12 || memcmp(buf, list_magic, 4) != 0)
                return -EBADMSG;
        if (buf[5] || buf[6] || buf[7])
                return -EBADMSG; /* zero padding: one encoding per list */
        l.level = buf[4];
        l.count = le32_read(buf + 8);
        if (l.level > STAMP_CHUNKLIST_LEVEL_MAX || l.count == 0 ||
            l.count > STAMP_CHUNKLIST_FANOUT ||
            len != 12 + (size_t)l.count * STAMP_LISTREF_SIZE)
                return -EBADMSG;
        l.items = buf + 12;
        for (uint32_t i = 0; i < l.count; i++) {
                struct stamp_id id;
                uint64_t n;
                stamp_chunklist_item(&l, i, &id, &n);
                if (n == 0 || (l.level == 0 && n > STAMP_CHUNK_MAX_LIMIT))
                        return -EBADMSG;
        }
        *ret = l;
        return 0;
}

void stamp_chunklist_item(const struct stamp_chunklist *l, uint32_t i, struct stamp_id *ret_id,
                          uint64_t *ret_len)
{
        const uint8_t *p = l->items + (size_t)i * STAMP_LISTREF_SIZE;

        memcpy(ret_id->b, p, STAMP_ID_SIZE);
        *ret_len = le64_read(p + STAMP_ID_SIZE);
}

int stamp_chunklist_encode(uint8_t level, const uint8_t *items, uint32_t count, uint8_t **ret,
                           size_t *ret_len)
{
        size_t len = 12 + (size_t)count * STAMP_LISTREF_SIZE;
        uint8_t *buf;

        if (count == 0 || count > STAMP_CHUNKLIST_FANOUT)
                return -EINVAL;
        buf = calloc(1, len);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, list_magic, 4);
        buf[4] = level;
        le32_write(buf + 8, count);
        memcpy(buf + 12, items, (size_t)count * STAMP_LISTREF_SIZE);
        *ret = buf;
        *ret_len = len;
        return 0;
}

int stamp_content_encode_inline(const uint8_t *chunks, uint32_t n, uint8_t **ret,
                                size_t *ret_len)
{
        size_t len = 5 + (size_t)n * STAMP_CHUNKREF_SIZE;
        uint8_t *buf;

        if (n > STAMP_INLINE_CHUNKS_MAX)
                return -EINVAL;
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        buf[0] = STAMP_CONTENT_INLINE;
        le32_write(buf + 1, n);
        if (n)
                memcpy(buf + 5, chunks, (size_t)n * STAMP_CHUNKREF_SIZE);
        *ret = buf;
        *ret_len = len;
        return 0;
}

int stamp_content_encode_list(const struct stamp_id *list, uint8_t level, uint8_t **ret,
                              size_t *ret_len)
{
        uint8_t *buf = malloc(1 + STAMP_ID_SIZE + 1);

        if (!buf)
                return -ENOMEM;
        buf[0] = STAMP_CONTENT_CHUNKLIST;
        memcpy(buf + 1, list->b, STAMP_ID_SIZE);
        buf[1 + STAMP_ID_SIZE] = level;
        *ret = buf;
        *ret_len = 1 + STAMP_ID_SIZE + 1;
        return 0;
}

/* The builder encodes each entry as it is added and sorts an index at the end. */
struct slot {
        size_t off, len;
};

struct stamp_tree_builder {
        uint8_t *buf;
        size_t len, cap;
        struct slot *slots;
        size_t n, slots_cap;
};

struct stamp_tree_builder *stamp_tree_builder_new(void)
{
        return calloc(1, sizeof(struct stamp_tree_builder));
}

void stamp_tree_builder_free(struct stamp_tree_builder *b)
{
        if (!b)
                return;
        free(b->buf);
        free(b->slots);
        free(b);
}

size_t stamp_tree_builder_count(const struct stamp_tree_builder *b)
{
        return b->n;
}

static int reserve(struct stamp_tree_builder *b, size_t more)
{
        if (b->len + more > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                uint8_t *p;
                while (cap < b->len + more)
                        cap *= 2;
                p = realloc(b->buf, cap);
                if (!p)
                        return -ENOMEM;
                b->buf = p;
                b->cap = cap;
        }
        return 0;
}

int stamp_tree_builder_add(struct stamp_tree_builder *b, const struct stamp_entry *e)
{
        size_t need = 2 + e->name_len + ENTRY_FIXED + e->target_len + e->xattrs_len +
                      STAMP_ID_SIZE + e->content_len;
        uint8_t *q;
        int r;

        if (!stamp_name_valid(e->name, e->name_len) || e->target_len > STAMP_TARGET_MAX)
                return -EINVAL;
        if (type_bits(e->type) == 0 || b->len + need > STAMP_OBJ_MAX_TREE)
                return -EINVAL;
        /* Refuse what the parser would refuse: the builder never writes a bad tree. */
        if ((e->mode & S_IFMT) != type_bits(e->type) || (e->flags & ~STAMP_EF_KNOWN) ||
            (e->type == STAMP_T_LNK) != (e->target_len > 0) ||
            (e->type == STAMP_T_REG && !e->content))
                return -EINVAL;
        r = reserve(b, need);
        if (r < 0)
                return r;
        if (b->n == b->slots_cap) {
                size_t cap = b->slots_cap ? 2 * b->slots_cap : 64;
                struct slot *s = realloc(b->slots, cap * sizeof(*s));
                if (!s)
                        return -ENOMEM;
                b->slots = s;
                b->slots_cap = cap;
        }
        q = b->buf + b->len;
        le16_write(q, (uint16_t)e->name_len);
        memcpy(q + 2, e->name, e->name_len);
        q += 2 + e->name_len;
        memset(q, 0, ENTRY_FIXED);
        q[0] = e->type;
        q[1] = e->flags;
        le16_write(q + 2, e->xattr_count);
        le32_write(q + 4, e->mode);
        le32_write(q + 8, e->uid);
        le32_write(q + 12, e->gid);
        le32_write(q + 16, e->nlink);
        le64_write(q + 20, (uint64_t)e->mtime_ns);
        le64_write(q + 28, (uint64_t)e->ctime_ns);
        le64_write(q + 36, e->size);
        le64_write(q + 44, e->rdev);
        le64_write(q + 52, e->link_id);
        le32_write(q + 60, (uint32_t)e->target_len);
        q += ENTRY_FIXED;
        if (e->target_len)
                memcpy(q, e->target, e->target_len);
        q += e->target_len;
        if (e->xattrs_len)
                memcpy(q, e->xattrs, e->xattrs_len);
        q += e->xattrs_len;
        if (e->type == STAMP_T_DIR) {
                memcpy(q, e->subtree.b, STAMP_ID_SIZE);
                q += STAMP_ID_SIZE;
        } else if (e->type == STAMP_T_REG) {
                memcpy(q, e->content, e->content_len);
                q += e->content_len;
        }
        b->slots[b->n].off = b->len;
        b->slots[b->n].len = (size_t)(q - (b->buf + b->len));
        b->n++;
        b->len = (size_t)(q - b->buf);
        return 0;
}

static int slot_cmp_r(const void *x, const void *y, void *buf)
{
        const struct slot *a = x, *b = y;
        const uint8_t *pa = (const uint8_t *)buf + a->off, *pb = (const uint8_t *)buf + b->off;

        return name_cmp((const char *)pa + 2, le16_read(pa), (const char *)pb + 2,
                        le16_read(pb));
}

int stamp_tree_builder_encode(struct stamp_tree_builder *b, uint8_t **ret, size_t *ret_len)
{
        size_t len = TREE_HEADER + 4 * b->n + b->len, off;
        uint8_t *out;

        if (b->n > 1)
                qsort_r(b->slots, b->n, sizeof(struct slot), slot_cmp_r, b->buf);
        for (size_t i = 1; i < b->n; i++)
                if (slot_cmp_r(&b->slots[i - 1], &b->slots[i], b->buf) == 0)
                        return -EEXIST;
        if (len > STAMP_OBJ_MAX_TREE)
                return -EFBIG;
        out = malloc(len);
        if (!out)
                return -ENOMEM;
        memcpy(out, tree_magic, 4);
        le32_write(out + 4, 1);
        le32_write(out + 8, (uint32_t)b->n);
        off = TREE_HEADER + 4 * b->n;
        for (size_t i = 0; i < b->n; i++) {
                le32_write(out + TREE_HEADER + 4 * i, (uint32_t)off);
                memcpy(out + off, b->buf + b->slots[i].off, b->slots[i].len);
                off += b->slots[i].len;
        }
        *ret = out;
        *ret_len = len;
        return 0;
}
