/* SPDX-License-Identifier: MIT */
#include "reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "cache.h"
#include "macro.h"
#include "pack.h"

int stamp_tree_load(struct stamp_store *s, const struct stamp_id *id, struct stamp_tree_obj *ret)
{
        struct stamp_tree_obj o = { 0 };
        int r;

        r = stamp_store_get(s, id, STAMP_OBJ_TREE, &o.buf, &o.len);
        if (r < 0)
                return r;
        r = stamp_tree_parse(o.buf, o.len, &o.t);
        if (r < 0) {
                free(o.buf);
                return r;
        }
        *ret = o;
        return 0;
}

void stamp_tree_obj_release(struct stamp_tree_obj *o)
{
        free(o->buf);
        memset(o, 0, sizeof(*o));
}

int stamp_path_resolve(struct stamp_store *s, const struct stamp_id *root, const char *path,
                       struct stamp_tree_obj *ret_parent, struct stamp_entry *ret)
{
        struct stamp_tree_obj cur = { 0 };
        struct stamp_entry e = { .name = ".", .name_len = 1, .type = STAMP_T_DIR,
                                 .mode = S_IFDIR | 0755, .subtree = *root };
        const char *p = path;
        int r;

        for (;;) {
                const char *comp;
                size_t len;
                uint32_t i;

                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                comp = p;
                len = strcspn(p, "/");
                p += len;
                if (e.type != STAMP_T_DIR) {
                        stamp_tree_obj_release(&cur);
                        return -ENOTDIR;
                }
                if (!stamp_name_valid(comp, len)) {
                        stamp_tree_obj_release(&cur);
                        return -ENOENT;
                }
                {
                        struct stamp_tree_obj next;
                        r = stamp_tree_load(s, &e.subtree, &next);
                        stamp_tree_obj_release(&cur);
                        if (r < 0)
                                /* A directory the snapshot names is not in the store: damage. */
                                return r == -ENOENT ? -EBADMSG : r;
                        cur = next;
                }
                r = stamp_tree_find(&cur.t, comp, len, &i);
                if (r == 0)
                        r = -ENOENT;
                if (r > 0)
                        r = stamp_tree_entry(&cur.t, i, &e);
                if (r < 0) {
                        stamp_tree_obj_release(&cur);
                        return r;
                }
        }
        *ret_parent = cur;
        *ret = e;
        return 0;
}

/* A loaded chunk-list level on the current descent path. */
struct level {
        struct stamp_id id;
        uint8_t *buf;
        size_t buf_len;
        struct stamp_chunklist l;
        uint64_t *ends; /* cumulative end offset of each item */
        bool loaded;
};

struct stamp_file {
        struct stamp_store *s;
        struct stamp_cache *cache; /* shared; may be NULL */
        struct stamp_cache_ref *ref; /* the cached chunk held, with cache */
        uint64_t size;
        struct stamp_content c;
        uint8_t *content; /* owned copy of the content reference */
        size_t content_len;
        uint64_t inline_ends[STAMP_INLINE_CHUNKS_MAX];
        struct level levels[STAMP_CHUNKLIST_LEVEL_MAX + 1];
        /* The last chunk read, so sequential reads fetch each chunk once. */
        struct stamp_id chunk_id;
        uint8_t *chunk;
        size_t chunk_len;
};

int stamp_file_open(struct stamp_store *s, const struct stamp_entry *e, struct stamp_cache *cache,
                    struct stamp_file **ret)
{
        struct stamp_file *f;
        uint64_t sum = 0;
        int r;

        if (e->type != STAMP_T_REG)
                return -EINVAL;
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->s = s;
        f->cache = cache;
        f->size = e->size;
        f->content = malloc(e->content_len);
        if (!f->content) {
                free(f);
                return -ENOMEM;
        }
        memcpy(f->content, e->content, e->content_len);
        f->content_len = e->content_len;
        r = stamp_content_parse(f->content, e->content_len, &f->c);
        if (r < 0) {
                stamp_file_free(f);
                return r;
        }
        if (f->c.kind == STAMP_CONTENT_INLINE) {
                for (uint32_t i = 0; i < f->c.n; i++) {
                        struct stamp_id id;
                        uint32_t len;
                        stamp_content_chunk(&f->c, i, &id, &len);
                        sum += len;
                        f->inline_ends[i] = sum;
                }
                if (sum != f->size) {
                        stamp_file_free(f);
                        return -EBADMSG;
                }
        }
        *ret = f;
        return 0;
}

void stamp_file_free(struct stamp_file *f)
{
        if (!f)
                return;
        for (int i = 0; i <= STAMP_CHUNKLIST_LEVEL_MAX; i++) {
                free(f->levels[i].buf);
                free(f->levels[i].ends);
        }
        if (f->cache)
                stamp_cache_put(f->cache, f->ref);
        else
                free(f->chunk);
        free(f->content);
        free(f);
}

uint64_t stamp_file_size(const struct stamp_file *f)
{
        return f->size;
}

size_t stamp_file_mem(const struct stamp_file *f)
{
        size_t sum = sizeof(*f) + f->content_len;

        for (int i = 0; i <= STAMP_CHUNKLIST_LEVEL_MAX; i++)
                if (f->levels[i].buf)
                        sum += f->levels[i].buf_len + f->levels[i].l.count * sizeof(uint64_t);
        if (!f->cache && f->chunk)
                sum += f->chunk_len; /* owned; with a cache, the cache's */
        return sum;
}

static int level_load(struct stamp_file *f, int level, const struct stamp_id *id,
                      uint64_t expect_bytes)
{
        struct level *lv = &f->levels[level];
        size_t len;
        uint64_t sum = 0;
        int r;

        if (lv->loaded && stamp_id_cmp(&lv->id, id) == 0)
                return 0;
        free(lv->buf);
        free(lv->ends);
        memset(lv, 0, sizeof(*lv));
        r = stamp_store_get(f->s, id, STAMP_OBJ_CHUNKLIST, &lv->buf, &len);
        if (r < 0)
                return r;
        lv->buf_len = len;
        r = stamp_chunklist_parse(lv->buf, len, &lv->l);
        if (r < 0 || lv->l.level != level)
                return r < 0 ? r : -EBADMSG;
        lv->ends = malloc(lv->l.count * sizeof(uint64_t));
        if (!lv->ends)
                return -ENOMEM;
        for (uint32_t i = 0; i < lv->l.count; i++) {
                struct stamp_id cid;
                uint64_t n;
                stamp_chunklist_item(&lv->l, i, &cid, &n);
                if (sum + n < sum)
                        return -EBADMSG;
                sum += n;
                lv->ends[i] = sum;
        }
        if (expect_bytes != UINT64_MAX && sum != expect_bytes)
                return -EBADMSG;
        lv->id = *id;
        lv->loaded = true;
        return 0;
}

static uint32_t find_end(const uint64_t *ends, uint32_t n, uint64_t off)
{
        uint32_t lo = 0, hi = n;

        while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (ends[mid] <= off)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Finds the data chunk covering @off: its id, length and start offset. */
static int locate(struct stamp_file *f, uint64_t off, struct stamp_id *ret_id,
                  uint32_t *ret_len, uint64_t *ret_start)
{
        struct stamp_id id;
        uint64_t base = 0, span = f->size;
        uint32_t i;
        int r;

        if (f->c.kind == STAMP_CONTENT_INLINE) {
                i = find_end(f->inline_ends, f->c.n, off);
                if (i >= f->c.n)
                        return -EBADMSG;
                stamp_content_chunk(&f->c, i, ret_id, ret_len);
                *ret_start = i ? f->inline_ends[i - 1] : 0;
                return 0;
        }
        id = f->c.list;
        for (int level = f->c.level; level >= 0; level--) {
                struct level *lv = &f->levels[level];
                uint64_t n;
                r = level_load(f, level, &id, span);
                if (r < 0)
                        return r;
                i = find_end(lv->ends, lv->l.count, off - base);
                if (i >= lv->l.count)
                        return -EBADMSG;
                stamp_chunklist_item(&lv->l, i, &id, &n);
                base += i ? lv->ends[i - 1] : 0;
                span = n;
        }
        if (span > UINT32_MAX)
                return -EBADMSG;
        *ret_id = id;
        *ret_len = (uint32_t)span;
        *ret_start = base;
        return 0;
}

void stamp_file_drop_chunk(struct stamp_file *f)
{
        if (f->cache) {
                stamp_cache_put(f->cache, f->ref);
                f->ref = NULL;
        } else
                free(f->chunk);
        f->chunk = NULL;
        f->chunk_len = 0;
}

/* Makes @id the file's current chunk. */
static int chunk_load(struct stamp_file *f, const struct stamp_id *id)
{
        int r;

        if (f->cache) {
                const uint8_t *data;
                stamp_cache_put(f->cache, f->ref);
                f->ref = NULL;
                f->chunk = NULL;
                r = stamp_cache_get(f->cache, f->s, id, STAMP_OBJ_DATA, &f->ref, &data,
                                    &f->chunk_len);
                if (r < 0)
                        return r;
                f->chunk = (uint8_t *)data; /* read only: owned by the cache */
        } else {
                free(f->chunk);
                f->chunk = NULL;
                r = stamp_store_get(f->s, id, STAMP_OBJ_DATA, &f->chunk, &f->chunk_len);
                if (r < 0)
                        return r;
        }
        f->chunk_id = *id;
        return 0;
}

/*
 * Makes the chunk covering @off (< size) the current one, checked against
 * the length its list gives; *ret_start is where it starts in the file.
 */
static int chunk_at(struct stamp_file *f, uint64_t off, uint64_t *ret_start)
{
        struct stamp_id id;
        uint32_t clen;
        int r;

        r = locate(f, off, &id, &clen, ret_start);
        if (r < 0)
                return r;
        if (!f->chunk || stamp_id_cmp(&id, &f->chunk_id) != 0) {
                r = chunk_load(f, &id);
                if (r < 0)
                        return r;
        }
        if (f->chunk_len != clen || off < *ret_start || off - *ret_start >= clen)
                return -EBADMSG;
        return 0;
}

bool stamp_file_chunked(const struct stamp_file *f)
{
        return f->c.kind != STAMP_CONTENT_INLINE;
}

int stamp_file_warm(struct stamp_file *f, uint64_t off, uint64_t len)
{
        uint64_t end = len > f->size - (off < f->size ? off : f->size) ? f->size : off + len;
        int r = 0;

        stamp_store_read_begin(f->s);
        while (off < end) {
                uint64_t start;

                r = chunk_at(f, off, &start);
                if (r < 0)
                        break;
                off = start + f->chunk_len;
        }
        stamp_store_read_end(f->s);
        return r < 0 ? r : 0;
}

ssize_t stamp_file_spans(struct stamp_file *f, uint64_t off, size_t len, struct stamp_span *spans,
                         size_t max, size_t *ret_bytes)
{
        size_t n = 0, done = 0;
        int r = 0;

        if (!f->cache)
                return -EINVAL;
        stamp_store_read_begin(f->s);
        while (done < len && off < f->size && n < max) {
                struct stamp_span *sp = &spans[n];
                struct stamp_id id;
                uint32_t clen;
                uint64_t start;
                size_t skip;

                r = locate(f, off, &id, &clen, &start);
                if (r < 0)
                        break;
                r = stamp_cache_get(f->cache, f->s, &id, STAMP_OBJ_DATA, &sp->ref, &sp->data,
                                    &sp->len);
                if (r < 0)
                        break;
                n++;
                if (sp->len != clen || off < start || off - start >= clen) {
                        r = -EBADMSG;
                        break;
                }
                skip = (size_t)(off - start);
                sp->data += skip;
                sp->len = clen - skip;
                if (sp->len > len - done)
                        sp->len = len - done;
                done += sp->len;
                off += sp->len;
        }
        stamp_store_read_end(f->s);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        stamp_cache_put(f->cache, spans[i].ref);
                return r;
        }
        *ret_bytes = done;
        return (ssize_t)n;
}

/*
 * Holes. A walk over the file's chunks from an offset, which stops at the
 * first chunk of the kind it looks for (stamp_file_seek()) or adds up the
 * bytes of data (stamp_file_allocated()). A chunk list that names only
 * chunks of zeros is remembered by the store, so the many equal lists of
 * a large hole are loaded once.
 */
enum scan_stop { STOP_AT_DATA, STOP_AT_HOLE, STOP_NEVER };

struct scan {
        struct stamp_file *f;
        uint64_t from;     /* items ending at or before it are passed over */
        enum scan_stop stop;
        unsigned lists_left; /* STOP_NEVER: lists it may still load; the rest counts as data */
        uint64_t at;         /* where it stopped */
        uint64_t data;       /* bytes of data seen (STOP_NEVER) */
};

/*
 * One item, [@start, @start + @len), known to be data or zeros: 1 if the
 * walk stops at it, else 0.
 */
static int scan_item(struct scan *sc, uint64_t start, uint64_t len, bool zero)
{
        if ((sc->stop == STOP_AT_DATA && !zero) || (sc->stop == STOP_AT_HOLE && zero)) {
                sc->at = start > sc->from ? start : sc->from;
                return 1;
        }
        if (!zero)
                sc->data += len;
        return 0;
}

/*
 * Walks the items of the list loaded at @level, which starts at file
 * offset @base. Returns 1 if it stopped, 0 at the end (*ret_zero: every
 * item was zeros, and none was passed over), or a negative errno.
 */
static int scan_list(struct scan *sc, int level, uint64_t base, bool *ret_zero)
{
        struct level *lv = &sc->f->levels[level];
        bool all_zero = sc->from <= base;
        uint32_t i = sc->from > base ? find_end(lv->ends, lv->l.count, sc->from - base) : 0;
        int r;

        for (; i < lv->l.count; i++) {
                uint64_t start = base + (i ? lv->ends[i - 1] : 0), n;
                struct stamp_id id;
                bool zero;

                stamp_chunklist_item(&lv->l, i, &id, &n);
                if (level == 0)
                        zero = stamp_store_zero_chunk(sc->f->s, &id, n);
                else if (stamp_store_zero_list(sc->f->s, &id))
                        zero = true;
                else if (sc->stop == STOP_NEVER && sc->lists_left == 0)
                        zero = false; /* not looked at: counted as data */
                else {
                        if (sc->lists_left)
                                sc->lists_left--;
                        r = level_load(sc->f, level - 1, &id, n);
                        if (r < 0)
                                return r;
                        r = scan_list(sc, level - 1, start, &zero);
                        if (r != 0)
                                return r;
                        if (zero)
                                stamp_store_zero_list_add(sc->f->s, &id);
                        all_zero &= zero;
                        continue; /* its items were counted one by one */
                }
                all_zero &= zero;
                r = scan_item(sc, start, n, zero);
                if (r != 0)
                        return r;
        }
        *ret_zero = all_zero;
        return 0;
}

/* 1 if the walk stopped (at sc->at), 0 at the end of the file, or a negative errno. */
static int scan(struct scan *sc)
{
        bool zero;
        int r = 0;

        if (sc->f->c.kind == STAMP_CONTENT_INLINE) {
                uint32_t i = find_end(sc->f->inline_ends, sc->f->c.n, sc->from);
                for (; i < sc->f->c.n && r == 0; i++) {
                        uint64_t start = i ? sc->f->inline_ends[i - 1] : 0;
                        struct stamp_id id;
                        uint32_t len;
                        stamp_content_chunk(&sc->f->c, i, &id, &len);
                        r = scan_item(sc, start, len,
                                      stamp_store_zero_chunk(sc->f->s, &id, len));
                }
                return r;
        }
        stamp_store_read_begin(sc->f->s);
        r = level_load(sc->f, sc->f->c.level, &sc->f->c.list, sc->f->size);
        if (r == 0)
                r = scan_list(sc, sc->f->c.level, 0, &zero);
        stamp_store_read_end(sc->f->s);
        return r;
}

int64_t stamp_file_seek(struct stamp_file *f, uint64_t off, bool data)
{
        struct scan sc = { .f = f, .from = off, .stop = data ? STOP_AT_DATA : STOP_AT_HOLE };
        int r;

        if (off >= f->size)
                return -ENXIO;
        r = scan(&sc);
        if (r < 0)
                return r;
        if (r == 0) /* no data after @off; the end of the file is a hole */
                return data ? -ENXIO : (int64_t)f->size;
        return (int64_t)sc.at;
}

int stamp_file_allocated(struct stamp_file *f, unsigned max_lists, uint64_t *ret)
{
        struct scan sc = { .f = f, .stop = STOP_NEVER, .lists_left = max_lists };
        int r;

        if (f->size == 0) {
                *ret = 0;
                return 0;
        }
        r = scan(&sc);
        if (r < 0)
                return r;
        *ret = sc.data;
        return 0;
}

ssize_t stamp_file_pread(struct stamp_file *f, void *buf, size_t len, uint64_t off)
{
        uint8_t *out = buf;
        size_t done = 0;
        int r = 0;

        stamp_store_read_begin(f->s);
        while (done < len && off < f->size) {
                uint64_t start;
                size_t n;

                r = chunk_at(f, off, &start);
                if (r < 0)
                        break;
                n = f->chunk_len - (size_t)(off - start);
                if (n > len - done)
                        n = len - done;
                memcpy(out + done, f->chunk + (off - start), n);
                done += n;
                off += n;
        }
        stamp_store_read_end(f->s);
        return r < 0 ? r : (ssize_t)done;
}
