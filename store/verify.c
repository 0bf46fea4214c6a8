/* SPDX-License-Identifier: MIT */
#include "verify.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "compress.h"
#include "dbcheck.h"
#include "macro.h"
#include "pack.h"
#include "reader.h"
#include "tree.h"

static const char *const problem_names[_STAMP_PROBLEM_MAX] = {
        [STAMP_PROBLEM_RECORD_CORRUPT] = "record_corrupt",
        [STAMP_PROBLEM_TREE_MISSING] = "tree_missing",
        [STAMP_PROBLEM_TREE_CORRUPT] = "tree_corrupt",
        [STAMP_PROBLEM_CHUNKLIST_MISSING] = "chunklist_missing",
        [STAMP_PROBLEM_CHUNKLIST_CORRUPT] = "chunklist_corrupt",
        [STAMP_PROBLEM_CHUNK_MISSING] = "chunk_missing",
        [STAMP_PROBLEM_CHUNK_HASH_MISMATCH] = "chunk_hash_mismatch",
        [STAMP_PROBLEM_CONTENT_CORRUPT] = "content_corrupt",
        [STAMP_PROBLEM_PACK_MISSING] = "pack_missing",
        [STAMP_PROBLEM_PACK_CORRUPT] = "pack_corrupt",
        [STAMP_PROBLEM_INDEX_MISMATCH] = "index_mismatch",
        [STAMP_PROBLEM_DB_INTEGRITY] = "db_integrity_check_failed",
        [STAMP_PROBLEM_JSON_INVALID] = "json_invalid",
        [STAMP_PROBLEM_READ_ERROR] = "read_error",
};

const char *stamp_problem_name(enum stamp_problem_kind k)
{
        return (unsigned)k < _STAMP_PROBLEM_MAX ? problem_names[k] : "unknown";
}

/*
 * A set of object ids (open addressing). Used for "this tree and all below
 * it are sound" and for objects found damaged; it stops growing at
 * IDSET_MAX entries, which only costs repeated work, never a wrong answer,
 * so memory stays bounded whatever the store's size.
 */
#define IDSET_MAX (1u << 22)

struct idset {
        struct stamp_id *slots;
        uint8_t *used;
        size_t cap, n;
};

static size_t idset_slot(const struct idset *s, const struct stamp_id *id)
{
        return (size_t)le64_read(id->b) & (s->cap - 1);
}

static bool idset_has(const struct idset *s, const struct stamp_id *id)
{
        if (!s->n)
                return false;
        for (size_t i = idset_slot(s, id);; i = (i + 1) & (s->cap - 1)) {
                if (!s->used[i])
                        return false;
                if (stamp_id_cmp(&s->slots[i], id) == 0)
                        return true;
        }
}

static void idset_add(struct idset *s, const struct stamp_id *id)
{
        if (s->n >= IDSET_MAX || idset_has(s, id))
                return;
        if ((s->n + 1) * 2 > s->cap) {
                struct idset n = { .cap = s->cap ? s->cap * 2 : 1024 };
                n.slots = malloc(n.cap * sizeof(*n.slots));
                n.used = calloc(n.cap, 1);
                if (!n.slots || !n.used) {
                        free(n.slots);
                        free(n.used);
                        return; /* a set that cannot grow only costs time */
                }
                for (size_t i = 0; i < s->cap; i++)
                        if (s->used[i])
                                idset_add(&n, &s->slots[i]);
                free(s->slots);
                free(s->used);
                *s = n;
        }
        for (size_t i = idset_slot(s, id);; i = (i + 1) & (s->cap - 1))
                if (!s->used[i]) {
                        s->used[i] = 1;
                        s->slots[i] = *id;
                        s->n++;
                        return;
                }
}

static void idset_release(struct idset *s)
{
        free(s->slots);
        free(s->used);
        memset(s, 0, sizeof(*s));
}

/* What is known of each pack: its size on disk, or that it is missing or bad. */
struct packinfo {
        char name[64];
        int64_t size; /* -1: missing */
        bool bad;     /* unreadable structure (from a pack check) */
        bool checked; /* a pack check read its index */
        uint64_t scan_end; /* trailer damaged: where the walk of its records stopped (else 0) */
        uint64_t matched; /* objects the index places here that its own index lists */
        struct packinfo *next;
};

#define PACK_BUCKETS 1024

struct ctx {
        struct stamp_store *s;
        const struct stamp_check_options *o;
        struct stamp_check_stats *st;
        struct stamp_index *ix;
        pthread_mutex_t lock; /* problem reports, stats and sets from pack workers */
        const char *stamp;
        struct idset good_trees; /* trees whose whole subtree checked out */
        struct idset bad;        /* objects found damaged by a pack check */
        struct packinfo *packs[PACK_BUCKETS];
        char *path;              /* the path being walked */
        size_t path_len, path_cap;
        uint64_t progress_at;
        /*
         * The xattr names of the snapshot's entries, to compare with its
         * record's xattr_names (the mount trusts them): only on a walk
         * that skips no tree (good_trees empty when it began).
         */
        bool names_on;
        struct stamp_strv names;
};

static void report(struct ctx *c, enum stamp_problem_kind kind, const char *path,
                   const char *object, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void report(struct ctx *c, enum stamp_problem_kind kind, const char *path,
                   const char *object, const char *fmt, ...)
{
        char detail[512];
        struct stamp_problem p = { .kind = kind, .stamp = c->stamp, .path = path,
                                   .object = object, .detail = detail };
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        pthread_mutex_lock(&c->lock);
        c->st->problems++;
        if (c->o->problem)
                c->o->problem(&p, c->o->userdata);
        pthread_mutex_unlock(&c->lock);
}

static void ctx_release(struct ctx *c)
{
        idset_release(&c->good_trees);
        idset_release(&c->bad);
        for (size_t i = 0; i < PACK_BUCKETS; i++)
                while (c->packs[i]) {
                        struct packinfo *p = c->packs[i];
                        c->packs[i] = p->next;
                        free(p);
                }
        free(c->path);
        stamp_strv_release(&c->names);
        pthread_mutex_destroy(&c->lock);
}

static unsigned name_bucket(const char *name)
{
        unsigned h = 5381;
        while (*name)
                h = h * 33 + (unsigned char)*name++;
        return h % PACK_BUCKETS;
}

/* The pack's info, looked up on disk the first time. NULL on out of memory. */
static struct packinfo *pack_info(struct ctx *c, const char *name)
{
        unsigned b = name_bucket(name);
        struct packinfo *p;
        uint64_t size;
        int r;

        for (p = c->packs[b]; p; p = p->next)
                if (strcmp(p->name, name) == 0)
                        return p;
        p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        snprintf(p->name, sizeof(p->name), "%s", name);
        r = stamp_backend_size(stamp_store_backend(c->s), name, &size);
        p->size = r < 0 ? -1 : (int64_t)size;
        p->next = c->packs[b];
        c->packs[b] = p;
        return p;
}

/* Path building: push a component, pop back to a length. */
static int path_push(struct ctx *c, const char *name, size_t len)
{
        size_t need = c->path_len + 1 + len + 1;

        if (need > c->path_cap) {
                size_t cap = need * 2;
                char *p = realloc(c->path, cap);
                if (!p)
                        return -ENOMEM;
                c->path = p;
                c->path_cap = cap;
        }
        if (c->path_len)
                c->path[c->path_len++] = '/';
        memcpy(c->path + c->path_len, name, len);
        c->path_len += len;
        c->path[c->path_len] = 0;
        return 0;
}

static void path_pop(struct ctx *c, size_t len)
{
        c->path_len = len;
        if (c->path)
                c->path[len] = 0;
}

static const char *cur_path(const struct ctx *c)
{
        return c->path_len ? c->path : "/";
}

static void progress(struct ctx *c)
{
        if (c->o->progress && (c->st->files + c->st->dirs) >= c->progress_at) {
                c->progress_at = c->st->files + c->st->dirs + 256;
                c->o->progress(c->st, cur_path(c), c->o->userdata);
        }
}

/* Per-file tally of chunk problems, reported once per file. */
struct file_check {
        uint64_t missing, mismatched, bad_len;
        char first_object[STAMP_ID_HEX_SIZE];
        char first_detail[160];
        uint8_t head[STAMP_SQLITE_MAGIC_LEN];
        size_t head_len;
        uint64_t at; /* byte offset of the next chunk */
};

static void note_first(struct file_check *f, const struct stamp_id *id, const char *what,
                       const char *pack)
{
        if (f->first_object[0])
                return;
        stamp_id_to_hex(id, f->first_object);
        snprintf(f->first_detail, sizeof(f->first_detail), "%s%s", what, pack);
}

/*
 * Whether a tree or chunk-list object can be read at all: 0 if its pack is
 * there and long enough, 1 if it is missing (@why says how), -errno.
 */
static int object_present(struct ctx *c, const struct stamp_id *id, char *why, size_t why_size)
{
        struct stamp_loc loc;
        struct packinfo *p;
        int r;

        r = stamp_index_find(c->ix, id, &loc);
        if (r < 0)
                return r;
        if (r == 0) {
                snprintf(why, why_size, "not in the index");
                return 1;
        }
        p = pack_info(c, loc.pack);
        if (!p)
                return -ENOMEM;
        if (p->size < 0) {
                snprintf(why, why_size, "missing pack %s", loc.pack);
                return 1;
        }
        if (loc.offset + STAMP_PACK_RECORD_HEADER_SIZE + loc.stored_len > (uint64_t)p->size) {
                snprintf(why, why_size, "truncated pack %s", loc.pack);
                return 1;
        }
        if (p->scan_end && loc.offset >= p->scan_end) {
                snprintf(why, why_size, "damaged pack %s (after its last sound record)", loc.pack);
                return 1;
        }
        return 0;
}

/* Checks one data chunk reference of @len bytes. */
static int check_chunk(struct ctx *c, struct file_check *f, const struct stamp_id *id,
                       uint64_t len)
{
        struct stamp_loc loc;
        struct packinfo *p;
        int r;

        c->st->chunks++;
        f->at += len;
        r = stamp_index_find(c->ix, id, &loc);
        if (r < 0)
                return r;
        if (r == 0) {
                f->missing++;
                note_first(f, id, "not in the index", "");
                return 0;
        }
        if (loc.type != STAMP_OBJ_DATA || loc.raw_len != len) {
                f->bad_len++;
                note_first(f, id, "the index disagrees with the file's chunk list", "");
                return 0;
        }
        if (idset_has(&c->bad, id)) {
                f->mismatched++;
                note_first(f, id, "damaged in pack ", loc.pack);
                return 0;
        }
        p = pack_info(c, loc.pack);
        if (!p)
                return -ENOMEM;
        if (p->size < 0) {
                f->missing++;
                note_first(f, id, "missing pack ", loc.pack);
                return 0;
        }
        if (p->bad || (p->scan_end && loc.offset >= p->scan_end)) {
                f->mismatched++;
                note_first(f, id, "damaged pack ", loc.pack);
                return 0;
        }
        if (loc.offset + STAMP_PACK_RECORD_HEADER_SIZE + loc.stored_len > (uint64_t)p->size) {
                f->missing++;
                note_first(f, id, "truncated pack ", loc.pack);
                return 0;
        }
        if (c->o->flags & STAMP_CHECK_READ_DATA) {
                uint8_t *data = NULL;
                size_t n;
                uint64_t start = f->at - len;
                r = stamp_store_get(c->s, id, STAMP_OBJ_DATA, &data, &n);
                if (r == -ENOMEM)
                        return r;
                if (r == -ENOENT) {
                        f->missing++;
                        note_first(f, id, "not in the index", "");
                } else if (r < 0) {
                        f->mismatched++;
                        note_first(f, id, "bytes do not match the id, in pack ", loc.pack);
                } else {
                        c->st->bytes_read += n;
                        if (start < sizeof(f->head)) {
                                size_t k = sizeof(f->head) - start < n ? sizeof(f->head) - start : n;
                                memcpy(f->head + start, data, k);
                                if (start + k > f->head_len)
                                        f->head_len = start + k;
                        }
                }
                free(data);
        }
        return 0;
}

/* Walks a chunk-list object of @level covering @expect bytes. */
static int check_list(struct ctx *c, struct file_check *f, const struct stamp_id *id,
                      uint8_t level, uint64_t expect, int depth)
{
        struct stamp_chunklist l;
        uint8_t *buf = NULL;
        size_t len;
        uint64_t sum = 0;
        char hex[STAMP_ID_HEX_SIZE], why[128];
        int r;

        stamp_id_to_hex(id, hex);
        r = object_present(c, id, why, sizeof(why));
        if (r < 0)
                return r;
        if (r > 0) {
                report(c, STAMP_PROBLEM_CHUNKLIST_MISSING, cur_path(c), hex,
                       "the file's chunk list is unreachable: %s", why);
                return 1;
        }
        r = stamp_store_get(c->s, id, STAMP_OBJ_CHUNKLIST, &buf, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                report(c, STAMP_PROBLEM_CHUNKLIST_CORRUPT, cur_path(c), hex,
                       "the file's chunk list cannot be read: %s", strerror(-r));
                return 1;
        }
        r = stamp_chunklist_parse(buf, len, &l);
        if (r < 0 || l.level != level || depth > STAMP_CHUNKLIST_LEVEL_MAX) {
                free(buf);
                report(c, STAMP_PROBLEM_CHUNKLIST_CORRUPT, cur_path(c), hex,
                       "the file's chunk list does not decode");
                return 1;
        }
        for (uint32_t i = 0; i < l.count && r >= 0; i++) {
                struct stamp_id item;
                uint64_t n;
                stamp_chunklist_item(&l, i, &item, &n);
                sum += n;
                if (level > 0)
                        r = check_list(c, f, &item, (uint8_t)(level - 1), n, depth + 1);
                else
                        r = check_chunk(c, f, &item, n);
                if (r > 0)
                        break; /* already reported */
        }
        free(buf);
        if (r != 0)
                return r;
        if (sum != expect) {
                report(c, STAMP_PROBLEM_CONTENT_CORRUPT, cur_path(c), hex,
                       "the chunk list covers %llu bytes, the file has %llu",
                       (unsigned long long)sum, (unsigned long long)expect);
                return 1;
        }
        return 0;
}

static ssize_t file_pread(void *userdata, void *buf, size_t len, uint64_t off)
{
        return stamp_file_pread(userdata, buf, len, off);
}

static bool ends_with(const char *name, size_t len, const char *suffix)
{
        size_t n = strlen(suffix);
        return len > n && strncasecmp(name + len - n, suffix, n) == 0;
}

static bool db_name(const char *name, size_t len)
{
        return ends_with(name, len, ".db") || ends_with(name, len, ".sqlite") ||
               ends_with(name, len, ".sqlite3") || ends_with(name, len, ".db3");
}

/* Content checks of a file whose chunks are all present: SQLite and JSON. */
static int check_content(struct ctx *c, const struct stamp_entry *e, struct file_check *f)
{
        struct stamp_file *sf = NULL;
        bool json = ends_with(e->name, e->name_len, ".json");
        bool db = (e->flags & STAMP_EF_SQLITE) || db_name(e->name, e->name_len) ||
                  (f->head_len == sizeof(f->head) && stamp_is_sqlite_header(f->head, f->head_len));
        char msg[256];
        int r;

        if ((!json && !db) || e->size == 0)
                return 0;
        r = stamp_file_open(c->s, e, NULL, &sf);
        if (r < 0)
                return r == -ENOMEM ? r : 0;
        if (db) {
                uint8_t head[STAMP_SQLITE_MAGIC_LEN];
                ssize_t n = stamp_file_pread(sf, head, sizeof(head), 0);
                if (n == (ssize_t)sizeof(head) && stamp_is_sqlite_header(head, sizeof(head))) {
                        c->st->databases++;
                        r = stamp_sqlite_check(file_pread, sf, e->size, msg, sizeof(msg));
                        if (r == 0)
                                report(c, STAMP_PROBLEM_DB_INTEGRITY, cur_path(c), NULL,
                                       "PRAGMA integrity_check: %s", msg);
                        else if (r < 0 && r != -ENOMEM)
                                report(c, STAMP_PROBLEM_READ_ERROR, cur_path(c), NULL,
                                       "the database could not be read to check it: %s",
                                       strerror(-r));
                }
        }
        if (json && r != -ENOMEM) {
                struct stamp_json_check *jc = stamp_json_check_new();
                uint8_t *buf = malloc(1 << 16);
                uint64_t off = 0;
                r = 0;
                if (!jc || !buf)
                        r = -ENOMEM;
                while (r == 0) {
                        ssize_t n = stamp_file_pread(sf, buf, 1 << 16, off);
                        if (n < 0) {
                                report(c, STAMP_PROBLEM_READ_ERROR, cur_path(c), NULL,
                                       "the file could not be read to parse it: %s",
                                       strerror((int)-n));
                                break;
                        }
                        if (n == 0) {
                                c->st->json_files++;
                                if (stamp_json_check_end(jc, msg, sizeof(msg)) < 0)
                                        report(c, STAMP_PROBLEM_JSON_INVALID, cur_path(c), NULL,
                                               "not valid JSON: %s", msg);
                                break;
                        }
                        if (stamp_json_check_feed(jc, buf, (size_t)n) < 0) {
                                c->st->json_files++;
                                (void)stamp_json_check_end(jc, msg, sizeof(msg));
                                report(c, STAMP_PROBLEM_JSON_INVALID, cur_path(c), NULL,
                                       "not valid JSON: %s", msg);
                                break;
                        }
                        off += (uint64_t)n;
                }
                free(buf);
                stamp_json_check_free(jc);
        }
        stamp_file_free(sf);
        return r == -ENOMEM ? r : 0;
}

static int check_file(struct ctx *c, const struct stamp_entry *e)
{
        struct stamp_content ct;
        struct file_check f = { 0 };
        int r;

        c->st->files++;
        progress(c);
        if (e->flags & STAMP_EF_UNREADABLE)
                return 0; /* stored empty on purpose; the record lists it */
        r = stamp_content_parse(e->content, e->content_len, &ct);
        if (r < 0) {
                report(c, STAMP_PROBLEM_CONTENT_CORRUPT, cur_path(c), NULL,
                       "the file's content reference does not decode");
                return 1;
        }
        if (ct.kind == STAMP_CONTENT_INLINE) {
                uint64_t sum = 0;
                for (uint32_t i = 0; i < ct.n && r == 0; i++) {
                        struct stamp_id id;
                        uint32_t len;
                        stamp_content_chunk(&ct, i, &id, &len);
                        sum += len;
                        r = check_chunk(c, &f, &id, len);
                }
                if (r < 0)
                        return r;
                if (sum != e->size) {
                        report(c, STAMP_PROBLEM_CONTENT_CORRUPT, cur_path(c), NULL,
                               "the chunks cover %llu bytes, the file has %llu",
                               (unsigned long long)sum, (unsigned long long)e->size);
                        return 1;
                }
        } else {
                r = check_list(c, &f, &ct.list, ct.level, e->size, 0);
                if (r != 0)
                        return r;
        }
        if (f.missing || f.mismatched || f.bad_len) {
                enum stamp_problem_kind k = f.missing ? STAMP_PROBLEM_CHUNK_MISSING
                                                      : STAMP_PROBLEM_CHUNK_HASH_MISMATCH;
                report(c, k, cur_path(c), f.first_object,
                       "%llu of the file's %s chunks unusable (first: %s)",
                       (unsigned long long)(f.missing + f.mismatched + f.bad_len),
                       f.missing ? "missing or damaged" : "damaged", f.first_detail);
                return 1;
        }
        if (c->o->flags & STAMP_CHECK_CONTENT)
                return check_content(c, e, &f);
        return 0;
}

/* Adds the names of encoded xattrs @x to c->names; stops past the most a record lists. */
static int add_xattr_names(struct ctx *c, const uint8_t *x, size_t len)
{
        const uint8_t *p = x, *end = x + len, *value;
        const char *name;
        size_t nl, vl;

        while (c->names.n <= STAMP_RECORD_XATTR_NAMES_MAX &&
               stamp_xattr_next(&p, end, &name, &nl, &value, &vl) == 1) {
                int r = stamp_strv_add_sorted(&c->names, name, nl);
                if (r < 0)
                        return r;
        }
        return 0; /* a damaged list was reported by the tree's decoder */
}

/* Whether sorted @a and @b hold the same strings. */
static bool strv_equal(const struct stamp_strv *a, const struct stamp_strv *b)
{
        if (a->n != b->n)
                return false;
        for (size_t i = 0; i < a->n; i++)
                if (strcmp(a->v[i], b->v[i]) != 0)
                        return false;
        return true;
}

static int walk_tree(struct ctx *c, const struct stamp_id *id, int depth)
{
        struct stamp_tree_obj t;
        uint64_t before = c->st->problems;
        char hex[STAMP_ID_HEX_SIZE], why[128];
        int r;

        if (idset_has(&c->good_trees, id))
                return 0;
        c->st->dirs++;
        c->st->trees++;
        progress(c);
        stamp_id_to_hex(id, hex);
        if (depth > 4096) {
                report(c, STAMP_PROBLEM_TREE_CORRUPT, cur_path(c), hex, "directories nested too deeply");
                return 0;
        }
        r = object_present(c, id, why, sizeof(why));
        if (r < 0)
                return r;
        if (r > 0) {
                report(c, STAMP_PROBLEM_TREE_MISSING, cur_path(c), hex,
                       "the directory's tree object is unreachable: %s", why);
                return 0;
        }
        r = stamp_tree_load(c->s, id, &t);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                report(c, STAMP_PROBLEM_TREE_CORRUPT, cur_path(c), hex,
                       "the directory's tree object cannot be read or decoded: %s",
                       strerror(-r));
                return 0;
        }
        for (uint32_t i = 0; i < t.t.count; i++) {
                struct stamp_entry e;
                size_t keep = c->path_len;

                r = stamp_tree_entry(&t.t, i, &e);
                if (r < 0) {
                        report(c, STAMP_PROBLEM_TREE_CORRUPT, cur_path(c), hex,
                               "entry %u of the directory does not decode", i);
                        r = 0;
                        break;
                }
                r = path_push(c, e.name, e.name_len);
                if (r < 0)
                        break;
                if (c->names_on && e.xattrs_len)
                        r = add_xattr_names(c, e.xattrs, e.xattrs_len);
                if (r < 0)
                        break;
                if (e.type == STAMP_T_DIR)
                        r = walk_tree(c, &e.subtree, depth + 1);
                else if (e.type == STAMP_T_REG)
                        r = check_file(c, &e);
                path_pop(c, keep);
                if (r < 0)
                        break;
                r = 0;
        }
        stamp_tree_obj_release(&t);
        if (r < 0)
                return r;
        if (c->st->problems == before)
                idset_add(&c->good_trees, id);
        return 0;
}

static int ctx_init(struct ctx *c, struct stamp_store *s, const struct stamp_check_options *o,
                    struct stamp_check_stats *st)
{
        memset(c, 0, sizeof(*c));
        c->s = s;
        c->o = o;
        c->st = st;
        pthread_mutex_init(&c->lock, NULL);
        return stamp_store_index(s, &c->ix);
}

static int check_one_snapshot(struct ctx *c, const char *stamp)
{
        struct stamp_record rec;
        uint64_t before;
        int r;

        c->stamp = stamp;
        r = stamp_store_record_load(c->s, stamp, &rec);
        if (r == -ENOENT)
                return r;
        if (r < 0) {
                report(c, STAMP_PROBLEM_RECORD_CORRUPT, NULL, NULL,
                       "the snapshot record cannot be read or parsed: %s", strerror(-r));
                return 0;
        }
        path_pop(c, 0);
        /* One read transaction per snapshot, begun after its record was read. */
        if (stamp_index_begin_read(c->ix) < 0) {
                stamp_record_release(&rec);
                return -EIO;
        }
        before = c->st->problems;
        c->names_on = rec.xattr_names_known && c->good_trees.n == 0;
        r = c->names_on && rec.root_xattrs_len
                    ? add_xattr_names(c, rec.root_xattrs, rec.root_xattrs_len)
                    : 0;
        if (r == 0)
                r = walk_tree(c, &rec.root, 0);
        stamp_index_end_read(c->ix);
        /* Only a walk that read every tree knows every name. */
        if (r == 0 && c->names_on && c->st->problems == before &&
            !strv_equal(&c->names, &rec.xattr_names))
                report(c, STAMP_PROBLEM_RECORD_CORRUPT, NULL, NULL,
                       "its xattr_names do not match the extended attributes its files hold "
                       "(%zu names listed, %s%zu held)",
                       rec.xattr_names.n, c->names.n > STAMP_RECORD_XATTR_NAMES_MAX ? "over " : "",
                       c->names.n);
        c->names_on = false;
        stamp_strv_release(&c->names);
        stamp_record_release(&rec);
        return r;
}

int stamp_check_snapshot(struct stamp_store *s, const char *stamp,
                         const struct stamp_check_options *o, struct stamp_check_stats *st)
{
        struct ctx c;
        int r;

        memset(st, 0, sizeof(*st));
        r = ctx_init(&c, s, o, st);
        if (r == 0)
                r = check_one_snapshot(&c, stamp);
        ctx_release(&c);
        return r;
}

int stamp_check_root(struct stamp_store *s, const char *stamp, const struct stamp_id *root,
                     const struct stamp_check_options *o, struct stamp_check_stats *st)
{
        struct ctx c;
        int r;

        memset(st, 0, sizeof(*st));
        r = ctx_init(&c, s, o, st);
        if (r == 0) {
                c.stamp = stamp;
                path_pop(&c, 0);
                if (stamp_index_begin_read(c.ix) < 0)
                        r = -EIO;
                else {
                        r = walk_tree(&c, root, 0);
                        stamp_index_end_read(c.ix);
                }
        }
        ctx_release(&c);
        return r;
}

/*
 * Pack checks. A pack is read whole (packs are a few MiB; the size is
 * capped), its checksum compared, every record header matched with the
 * trailer index, every object decoded and re-hashed.
 */

static uint64_t pack_read_max(struct stamp_store *s)
{
        return (uint64_t)stamp_store_config(s)->pack_size + 2ull * STAMP_OBJECT_MAX + (64u << 20);
}

/* Checks that every object a tree or chunk list names is indexed. */
static void check_refs(struct ctx *c, struct stamp_index *ix, const char *pack, uint8_t type,
                       const uint8_t *raw, size_t len, const char *hex)
{
        struct stamp_loc loc;
        uint64_t missing = 0;
        struct stamp_id first;

        if (type == STAMP_OBJ_TREE) {
                struct stamp_tree t;
                if (stamp_tree_parse(raw, len, &t) < 0)
                        return;
                for (uint32_t i = 0; i < t.count; i++) {
                        struct stamp_entry e;
                        struct stamp_content ct;
                        if (stamp_tree_entry(&t, i, &e) < 0)
                                continue;
                        if (e.type == STAMP_T_DIR) {
                                if (stamp_index_find(ix, &e.subtree, &loc) == 0 && !missing++)
                                        first = e.subtree;
                        } else if (e.type == STAMP_T_REG &&
                                   stamp_content_parse(e.content, e.content_len, &ct) == 0) {
                                if (ct.kind == STAMP_CONTENT_CHUNKLIST) {
                                        if (stamp_index_find(ix, &ct.list, &loc) == 0 && !missing++)
                                                first = ct.list;
                                        continue;
                                }
                                for (uint32_t k = 0; k < ct.n; k++) {
                                        struct stamp_id id;
                                        uint32_t n;
                                        stamp_content_chunk(&ct, k, &id, &n);
                                        if (stamp_index_find(ix, &id, &loc) == 0 && !missing++)
                                                first = id;
                                }
                        }
                }
        } else if (type == STAMP_OBJ_CHUNKLIST) {
                struct stamp_chunklist l;
                if (stamp_chunklist_parse(raw, len, &l) < 0)
                        return;
                for (uint32_t i = 0; i < l.count; i++) {
                        struct stamp_id id;
                        uint64_t n;
                        stamp_chunklist_item(&l, i, &id, &n);
                        if (stamp_index_find(ix, &id, &loc) == 0 && !missing++)
                                first = id;
                }
        }
        if (missing) {
                char fhex[STAMP_ID_HEX_SIZE];
                stamp_id_to_hex(&first, fhex);
                report(c, STAMP_PROBLEM_CHUNK_MISSING, NULL, hex,
                       "%s in pack %s names %llu objects the index lacks (first: %s)",
                       type == STAMP_OBJ_TREE ? "tree" : "chunk list", pack,
                       (unsigned long long)missing, fhex);
        }
}

#define CHECK_REFS (1u << 16) /* internal: also check the references of trees */

/* Checks one pack; marks it or its objects bad in @c. */
static int check_pack(struct ctx *c, struct stamp_index *ix, const char *name, unsigned flags)
{
        struct stamp_store *s = c->s;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ struct stamp_pack_entry *v = NULL;
        _cleanup_free_ uint8_t *raw = NULL;
        size_t len, n = 0, raw_cap = 0;
        uint64_t matched = 0;
        struct stamp_pack_trailer t;
        struct stamp_id sum;
        struct stamp_csum *cs;
        bool deep = false;
        uint64_t scan_end = 0;
        int r;

        r = stamp_backend_get(stamp_store_backend(s), name, pack_read_max(s), &buf, &len);
        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT) {
                report(c, STAMP_PROBLEM_PACK_MISSING, NULL, name, "the pack file is missing");
                goto bad_pack;
        }
        if (r < 0) {
                report(c, STAMP_PROBLEM_READ_ERROR, NULL, name, "cannot read the pack: %s",
                       strerror(-r));
                goto bad_pack;
        }
        if (len < STAMP_PACK_HEADER_SIZE + STAMP_PACK_TRAILER_SIZE ||
            stamp_pack_header_check(buf) < 0 ||
            stamp_pack_trailer_parse(buf + len - STAMP_PACK_TRAILER_SIZE, len, &t) < 0 ||
            stamp_pack_index_parse(buf + t.index_offset, len - STAMP_PACK_TRAILER_SIZE - t.index_offset,
                                   &t, &v, &n) < 0) {
                report(c, STAMP_PROBLEM_PACK_CORRUPT, NULL, name,
                       "the pack's header, trailer or index is damaged or truncated (%zu bytes)",
                       len);
                /*
                 * Its records, walked from the header (as reindex indexes
                 * them), are each checked below: only the damaged objects
                 * are counted against the snapshots that use them.
                 */
                free(v);
                v = NULL;
                r = stamp_pack_scan_records(stamp_store_backend(s), name, &v, &n, &(uint64_t){ 0 });
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        goto bad_pack;
                deep = true;
                scan_end = v[n - 1].offset + STAMP_PACK_RECORD_HEADER_SIZE + v[n - 1].stored_len;
        }
        pthread_mutex_lock(&c->lock);
        c->st->packs++;
        c->st->objects += n;
        pthread_mutex_unlock(&c->lock);
        if (!deep) {
                /* The pack was read whole anyway: its checksum costs little. */
                cs = stamp_csum_new();
                if (!cs)
                        return -ENOMEM;
                stamp_csum_update(cs, buf, len - 24);
                stamp_csum_final(cs, &sum);
                stamp_csum_free(cs);
                if (stamp_id_cmp(&sum, &t.checksum) != 0) {
                        report(c, STAMP_PROBLEM_PACK_CORRUPT, NULL, name,
                               "the pack's checksum does not match its bytes");
                        /*
                         * Which objects? Each one is decompressed and re-hashed,
                         * so that the damage is traced to the snapshots that
                         * use them; only in this pack, without --read-data.
                         */
                        deep = true;
                }
        }
        for (size_t i = 0; i < n; i++) {
                const struct stamp_pack_entry *e = &v[i];
                struct stamp_pack_entry h;
                struct stamp_loc loc;
                char hex[STAMP_ID_HEX_SIZE];
                bool bad = false;

                stamp_id_to_hex(&e->id, hex);
                r = stamp_index_find(ix, &e->id, &loc);
                if (r < 0)
                        return r;
                if (r > 0 && strcmp(loc.pack, name) == 0)
                        matched++;
                if (r > 0 && strcmp(loc.pack, name) == 0 &&
                    (loc.offset != e->offset || loc.type != e->type || loc.comp != e->comp ||
                     loc.raw_len != e->raw_len || loc.stored_len != e->stored_len))
                        report(c, STAMP_PROBLEM_INDEX_MISMATCH, NULL, hex,
                               "the index places the object in pack %s differently from the pack's own index",
                               name);
                if (stamp_pack_record_parse(buf + e->offset, e->offset, &h) < 0 ||
                    stamp_id_cmp(&h.id, &e->id) != 0 || h.type != e->type || h.comp != e->comp ||
                    h.raw_len != e->raw_len || h.stored_len != e->stored_len) {
                        report(c, STAMP_PROBLEM_PACK_CORRUPT, NULL, name,
                               "object %s: its record header is damaged", hex);
                        bad = true;
                } else if ((flags & STAMP_CHECK_READ_DATA) || deep) {
                        const uint8_t *payload = buf + e->offset + STAMP_PACK_RECORD_HEADER_SIZE;
                        const uint8_t *obj = payload;
                        struct stamp_id check = { { 0 } };
                        if (e->comp != STAMP_COMP_NONE) {
                                if (raw_cap < e->raw_len + 1u) {
                                        free(raw);
                                        raw_cap = e->raw_len + 1u;
                                        raw = malloc(raw_cap);
                                        if (!raw)
                                                return -ENOMEM;
                                }
                                r = stamp_decompress(payload, e->stored_len, raw, e->raw_len);
                                obj = raw;
                        } else {
                                r = 0;
                        }
                        if (r == -ENOMEM)
                                return r;
                        if (r == 0)
                                stamp_hasher_id(stamp_store_hasher(s), obj, e->raw_len, &check);
                        if (r < 0 || stamp_id_cmp(&check, &e->id) != 0) {
                                report(c, e->type == STAMP_OBJ_TREE ? STAMP_PROBLEM_TREE_CORRUPT
                                          : e->type == STAMP_OBJ_CHUNKLIST
                                                  ? STAMP_PROBLEM_CHUNKLIST_CORRUPT
                                                  : STAMP_PROBLEM_CHUNK_HASH_MISMATCH,
                                       NULL, hex, "in pack %s: %s", name,
                                       r < 0 ? "does not decompress" : "its bytes do not match its id");
                                bad = true;
                        } else if (e->type == STAMP_OBJ_TREE || e->type == STAMP_OBJ_CHUNKLIST) {
                                struct stamp_tree tt;
                                struct stamp_chunklist cl;
                                if ((e->type == STAMP_OBJ_TREE
                                             ? stamp_tree_parse(obj, e->raw_len, &tt)
                                             : stamp_chunklist_parse(obj, e->raw_len, &cl)) < 0) {
                                        report(c, e->type == STAMP_OBJ_TREE
                                                          ? STAMP_PROBLEM_TREE_CORRUPT
                                                          : STAMP_PROBLEM_CHUNKLIST_CORRUPT,
                                               NULL, hex, "in pack %s: does not decode", name);
                                        bad = true;
                                } else if (flags & CHECK_REFS) {
                                        check_refs(c, ix, name, e->type, obj, e->raw_len, hex);
                                }
                        }
                }
                if (bad) {
                        pthread_mutex_lock(&c->lock);
                        idset_add(&c->bad, &e->id);
                        pthread_mutex_unlock(&c->lock);
                } else if (flags & STAMP_CHECK_READ_DATA) {
                        pthread_mutex_lock(&c->lock);
                        c->st->bytes_read += e->raw_len;
                        pthread_mutex_unlock(&c->lock);
                }
        }
        pthread_mutex_lock(&c->lock);
        {
                struct packinfo *p = pack_info(c, name);
                if (p) {
                        p->checked = true;
                        p->matched = matched;
                        p->scan_end = scan_end;
                }
        }
        pthread_mutex_unlock(&c->lock);
        return 0;

bad_pack:
        pthread_mutex_lock(&c->lock);
        {
                struct packinfo *p = pack_info(c, name);
                if (p)
                        p->bad = true;
        }
        pthread_mutex_unlock(&c->lock);
        return 0;
}

/* Pack workers: each takes the next pack name until none is left. */
struct pack_job {
        struct ctx *c;
        const struct stamp_strv *names;
        unsigned flags;
        atomic_size_t next;
        atomic_int error;
};

static void *pack_worker(void *arg)
{
        struct pack_job *j = arg;
        struct stamp_index *ix = NULL;
        int r;

        r = stamp_store_index_open(j->c->s, &ix);
        if (r < 0) {
                atomic_store(&j->error, r);
                return NULL;
        }
        for (;;) {
                size_t i = atomic_fetch_add(&j->next, 1);
                if (i >= j->names->n || atomic_load(&j->error))
                        break;
                r = stamp_index_begin_read(ix);
                if (r == 0) {
                        r = check_pack(j->c, ix, j->names->v[i], j->flags);
                        stamp_index_end_read(ix);
                }
                if (r < 0) {
                        atomic_store(&j->error, r);
                        break;
                }
                if (j->c->o->progress) {
                        pthread_mutex_lock(&j->c->lock);
                        j->c->o->progress(j->c->st, j->names->v[i], j->c->o->userdata);
                        pthread_mutex_unlock(&j->c->lock);
                }
        }
        stamp_index_free(ix);
        return NULL;
}

static int check_pack_list(struct ctx *c, const struct stamp_strv *names, unsigned flags)
{
        struct pack_job j = { .c = c, .names = names, .flags = flags };
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        size_t nthreads = ncpu > 1 ? (size_t)(ncpu > 8 ? 8 : ncpu) : 1;
        pthread_t th[8];
        size_t started = 0;

        if (nthreads > names->n)
                nthreads = names->n ? names->n : 1;
        for (; started < nthreads; started++)
                if (pthread_create(&th[started], NULL, pack_worker, &j) != 0)
                        break;
        if (started == 0)
                pack_worker(&j);
        for (size_t i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        return atomic_load(&j.error);
}

int stamp_check_packs(struct stamp_store *s, const struct stamp_strv *packs,
                      const struct stamp_check_options *o, struct stamp_check_stats *st)
{
        struct ctx c;
        int r;

        memset(st, 0, sizeof(*st));
        r = ctx_init(&c, s, o, st);
        if (r == 0)
                r = check_pack_list(&c, packs, STAMP_CHECK_READ_DATA | CHECK_REFS);
        ctx_release(&c);
        return r;
}

/* Store check: packs on disk, then index rows against them, then snapshots. */

static int collect_pack(const char *name, void *userdata)
{
        size_t n = strlen(name);

        if (n < 5 || strcmp(name + n - 5, ".pack") != 0)
                return 0;
        return stamp_strv_push(userdata, name);
}

struct index_walk {
        struct ctx *c;
        uint64_t unindexed;
};

static int check_index_pack(const char *name, uint64_t size, uint64_t objects, uint64_t located,
                            void *userdata)
{
        struct index_walk *w = userdata;
        struct packinfo *p = pack_info(w->c, name);

        if (!p)
                return -ENOMEM;
        if (p->size < 0) {
                if (located)
                        report(w->c, STAMP_PROBLEM_PACK_MISSING, NULL, name,
                               "the index places %llu objects in this pack, which is missing",
                               (unsigned long long)located);
        } else if ((uint64_t)p->size != size) {
                report(w->c, STAMP_PROBLEM_INDEX_MISMATCH, NULL, name,
                       "the index records %llu bytes for this pack, it has %lld",
                       (unsigned long long)size, (long long)p->size);
        } else if (p->checked && located > p->matched) {
                report(w->c, STAMP_PROBLEM_INDEX_MISMATCH, NULL, name,
                       "the index places %llu objects in this pack, its own index lists %llu of them",
                       (unsigned long long)located, (unsigned long long)p->matched);
        }
        (void)objects;
        return 0;
}

int stamp_check_store(struct stamp_store *s, const struct stamp_check_options *o,
                      struct stamp_check_stats *st)
{
        struct stamp_strv packs = { 0 }, stamps = { 0 };
        struct index_walk w;
        struct ctx c;
        int r;

        memset(st, 0, sizeof(*st));
        r = ctx_init(&c, s, o, st);
        if (r < 0)
                goto out;
        r = stamp_backend_list(stamp_store_backend(s), "packs/", collect_pack, &packs);
        if (r < 0)
                goto out;
        r = check_pack_list(&c, &packs, o->flags & STAMP_CHECK_READ_DATA);
        if (r < 0)
                goto out;
        w = (struct index_walk){ .c = &c };
        r = stamp_index_foreach_pack(c.ix, check_index_pack, &w);
        if (r < 0)
                goto out;
        r = stamp_store_list(s, &stamps);
        if (r < 0)
                goto out;
        /* Snapshots at the metadata level: the packs' objects were just checked. */
        {
                struct stamp_check_options so = *o;
                so.flags &= ~STAMP_CHECK_READ_DATA;
                c.o = &so;
                for (size_t i = 0; i < stamps.n && r >= 0; i++) {
                        r = check_one_snapshot(&c, stamps.v[i]);
                        if (r == -ENOENT)
                                r = 0; /* deleted meanwhile */
                }
                c.o = o;
        }
out:
        stamp_strv_release(&packs);
        stamp_strv_release(&stamps);
        ctx_release(&c);
        return r;
}
