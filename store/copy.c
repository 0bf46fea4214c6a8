/* SPDX-License-Identifier: MIT */
/* stamp copy: the sending side, and the local receiving end. See copy.h. */
#include "copy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compress.h"
#include "macro.h"
#include "pack.h"
#include "walk.h"
#include "writer.h"

/* Ids asked about per round trip, and the most bytes read from a pack at once. */
#define BATCH 8192
#define READ_SPAN (8u << 20)
/* Problems a commit reports in full (all are counted). */
#define PROBLEMS_MAX 100

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void dest_error(struct stamp_copy_dest *d, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void dest_error(struct stamp_copy_dest *d, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(d->error, sizeof(d->error), fmt, ap);
        va_end(ap);
}

void stamp_copy_commit_release(struct stamp_copy_commit *c)
{
        stamp_strv_release(&c->problems);
        memset(c, 0, sizeof(*c));
}

void stamp_copy_dest_close(struct stamp_copy_dest *d)
{
        if (d)
                d->ops->close(d);
}

/* The local receiving end. */

struct local {
        struct stamp_copy_dest d;
        unsigned flags;
        char *path;
        struct stamp_store *s; /* NULL: dry run on a store that does not exist yet */
        struct stamp_config config;
        struct stamp_writer *w;
        struct stamp_zctx *z;  /* when objects are re-compressed at this store's level */
        bool recompress;
        uint8_t *raw;
        size_t raw_cap;
        size_t packs_checked;  /* of stamp_writer_packs(), validated by earlier commits */
};

static int local_config(struct stamp_copy_dest *d, struct stamp_config *ret)
{
        *ret = ((struct local *)d)->config;
        return 0;
}

static int local_list(struct stamp_copy_dest *d, struct stamp_strv *ret,
                      struct stamp_strv *ret_forgotten)
{
        struct local *l = (struct local *)d;
        int r;

        *ret = (struct stamp_strv){ 0 };
        *ret_forgotten = (struct stamp_strv){ 0 };
        if (!l->s)
                return 0;
        r = stamp_store_list(l->s, ret);
        /*
         * A record that is not a file (a symlink, a directory: damage) is
         * listed, so that gc refuses to run, but it is no snapshot here:
         * the copy tries to write it, and stops saying what is in the way
         * (local_commit()).
         */
        if (r == 0) {
                size_t kept = 0;
                for (size_t i = 0; i < ret->n; i++) {
                        if (stamp_store_stamp_used(l->s, ret->v[i]) == -EBADMSG)
                                free(ret->v[i]);
                        else
                                ret->v[kept++] = ret->v[i];
                }
                ret->n = kept;
        }
        if (r == 0) {
                r = stamp_store_forgotten(l->s, ret_forgotten);
                if (r < 0)
                        stamp_strv_release(ret);
        }
        if (r < 0)
                dest_error(d, "store '%s': cannot list snapshots: %s", l->path, strerror(-r));
        return r;
}

static int local_have(struct stamp_copy_dest *d, const struct stamp_id *ids, size_t n,
                      uint8_t *ret)
{
        struct local *l = (struct local *)d;
        struct stamp_index *ix = NULL;
        struct stamp_loc loc;
        int r = 0;

        memset(ret, 0, n);
        if (!l->s)
                return 0;
        r = stamp_store_index(l->s, &ix);
        if (r == 0)
                r = stamp_index_begin_read(ix);
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = stamp_index_find(ix, &ids[i], &loc);
                ret[i] = r > 0;
        }
        if (ix)
                stamp_index_end_read(ix);
        if (r < 0)
                dest_error(d, "store '%s': index lookup failed: %s", l->path, strerror(-r));
        return r < 0 ? r : 0;
}

/* Decodes @o and checks it against its id; *ret points at its raw bytes. */
static int local_decode(struct local *l, const struct stamp_copy_obj *o, const uint8_t **ret)
{
        struct stamp_id check;
        int r;

        if (o->type < STAMP_OBJ_DATA || o->type > STAMP_OBJ_CHUNKLIST ||
            o->raw_len > STAMP_OBJECT_MAX || o->stored_len > STAMP_OBJECT_MAX)
                return -EBADMSG;
        if (o->comp == STAMP_COMP_NONE) {
                if (o->raw_len != o->stored_len)
                        return -EBADMSG;
                *ret = o->payload;
        } else if (o->comp == STAMP_COMP_ZSTD) {
                if (l->raw_cap < o->raw_len + 1) {
                        uint8_t *p = realloc(l->raw, o->raw_len + 1);
                        if (!p)
                                return -ENOMEM;
                        l->raw = p;
                        l->raw_cap = o->raw_len + 1;
                }
                r = stamp_decompress(o->payload, o->stored_len, l->raw, o->raw_len);
                if (r < 0)
                        return -EBADMSG;
                *ret = l->raw;
        } else
                return -EBADMSG;
        stamp_hasher_id(stamp_store_hasher(l->s), *ret, o->raw_len, &check);
        return stamp_id_cmp(&check, &o->id) == 0 ? 0 : -EBADMSG;
}

static int local_put(struct stamp_copy_dest *d, const struct stamp_copy_obj *o)
{
        struct local *l = (struct local *)d;
        char hex[STAMP_ID_HEX_SIZE];
        const uint8_t *raw;
        struct stamp_id id;
        int r;

        if (!l->s || (l->flags & STAMP_COPY_DRY_RUN))
                return -EINVAL;
        stamp_id_to_hex(&o->id, hex);
        r = local_decode(l, o, &raw);
        if (r < 0)
                d->bad_id = o->id;
        if (r < 0) {
                dest_error(d, "object %s arrived damaged: %s", hex,
                           r == -EBADMSG ? "it does not decode to its id" : strerror(-r));
                return r;
        }
        if (!l->w) {
                r = stamp_writer_new(l->s, &l->w);
                if (r < 0) {
                        dest_error(d, "store '%s': %s", l->path, strerror(-r));
                        return r;
                }
        }
        if (l->recompress)
                r = stamp_writer_put(l->w, l->z, o->type, raw, o->raw_len, &id);
        else
                r = stamp_writer_put_stored(l->w, o->type, &o->id, raw, o->raw_len, o->comp,
                                            o->payload, o->stored_len);
        if (r < 0)
                d->bad_id = o->id;
        if (r == -EBADMSG) {
                dest_error(d, "store '%s': object %s differs from the object of the same id "
                           "it already holds (a suspected id collision, or damage there)",
                           l->path, hex);
                r = -ENOTUNIQ; /* not the source's fault */
        }
        else if (r < 0)
                dest_error(d, "store '%s': cannot store object %s: %s", l->path, hex,
                           strerror(-r));
        return r;
}

static void commit_problem(const struct stamp_problem *p, void *userdata)
{
        struct stamp_copy_commit *c = userdata;
        char *line;

        if (c->n_problems++ >= PROBLEMS_MAX)
                return;
        if (asprintf(&line, "%s\t%s\t%s", stamp_problem_name(p->kind), p->path ? p->path : "",
                     p->detail ? p->detail : "") < 0)
                return;
        /* Tabs and newlines inside the fields would break the line format. */
        for (char *q = line + strlen(stamp_problem_name(p->kind)) + 1; *q; q++)
                if (*q == '\n')
                        *q = ' ';
        (void)stamp_strv_push(&c->problems, line);
        free(line);
}

static int local_commit(struct stamp_copy_dest *d, const char *stamp, const struct stamp_id *root,
                        const char *record, size_t record_len, struct stamp_copy_commit *ret)
{
        struct local *l = (struct local *)d;
        struct stamp_check_options co = { .problem = commit_problem, .userdata = ret };
        struct stamp_check_stats st;
        struct stamp_writer_stats ws = { 0 };
        double t0 = now_s();
        int r = 0;

        memset(ret, 0, sizeof(*ret));
        if (!l->s || (l->flags & STAMP_COPY_DRY_RUN))
                return -EINVAL;
        if (l->w) {
                r = stamp_writer_flush(l->w);
                if (r < 0) {
                        dest_error(d, "store '%s': cannot write packs: %s", l->path,
                                   strerror(-r));
                        return r;
                }
                stamp_writer_stats(l->w, &ws);
        }
        ret->new_objects = ws.new_objects;
        ret->new_bytes = ws.stored_bytes;
        /* What arrived since the last commit, read back from disk and re-hashed. */
        if (l->w && stamp_writer_packs(l->w)->n > l->packs_checked) {
                const struct stamp_strv *all = stamp_writer_packs(l->w);
                struct stamp_strv fresh = { .v = all->v + l->packs_checked,
                                            .n = all->n - l->packs_checked };

                r = stamp_check_packs(l->s, &fresh, &co, &st);
                if (r < 0) {
                        dest_error(d, "store '%s': cannot check new packs: %s", l->path,
                                   strerror(-r));
                        return r;
                }
                ret->checked_objects += st.objects;
                if (st.problems == 0)
                        l->packs_checked = all->n;
        }
        /* The whole snapshot, as a restore would need it. */
        if (ret->n_problems == 0) {
                co.flags = (l->flags & STAMP_COPY_READ_DATA) ? STAMP_CHECK_READ_DATA : 0;
                r = stamp_check_root(l->s, stamp, root, &co, &st);
                if (r < 0) {
                        dest_error(d, "store '%s': cannot validate %s: %s", l->path, stamp,
                                   strerror(-r));
                        return r;
                }
                ret->checked_objects += st.trees + st.chunks;
        }
        ret->validate_s = now_s() - t0;
        if (ret->n_problems)
                return 0;
        r = stamp_store_record_write_text(l->s, stamp, root, record, record_len);
        if (r == -EEXIST && stamp_store_stamp_used(l->s, stamp) == -EBADMSG) {
                dest_error(d, "store '%s': snapshots/%s.json is not a file (a symlink or a "
                           "directory, put there by hand or by damage): move it out of the "
                           "store and copy again", l->path, stamp);
                return -EBADMSG;
        }
        if (r < 0) {
                dest_error(d, "store '%s': cannot write the record of %s: %s", l->path, stamp,
                           r == -EEXIST    ? "a snapshot of that stamp exists"
                           : r == -EBADMSG ? "it is not a record of that stamp and root"
                                           : strerror(-r));
                return r;
        }
        ret->valid = true;
        return 0;
}

static void local_close(struct stamp_copy_dest *d)
{
        struct local *l = (struct local *)d;
        struct stamp_index *ix;

        stamp_writer_free(l->w);
        if (l->s && !(l->flags & STAMP_COPY_DRY_RUN) && stamp_store_index(l->s, &ix) == 0)
                (void)stamp_index_checkpoint(ix);
        stamp_zctx_free(l->z);
        stamp_store_free(l->s);
        free(l->raw);
        free(l->path);
        free(l);
}

static const struct stamp_copy_dest_ops local_ops = {
        .config = local_config,
        .list = local_list,
        .have = local_have,
        .put = local_put,
        .commit = local_commit,
        .close = local_close,
};

static int local_setup(struct local *l, const struct stamp_config *init_like, int zstd_level)
{
        struct stamp_init_options io;
        char holder[256] = "";
        int r;

        r = stamp_store_open(l->path, &l->s);
        if ((r == -ENOENT || r == -EMEDIUMTYPE) && (l->flags & STAMP_COPY_INIT) && init_like) {
                stamp_init_options_like(init_like, &io);
                if (zstd_level)
                        io.zstd_level = zstd_level;
                if (l->flags & STAMP_COPY_DRY_RUN) {
                        /* Nothing is created; the store it would be. */
                        l->config = *init_like;
                        l->config.zstd_level = io.zstd_level;
                        return 0;
                }
                r = stamp_store_init(l->path, &io);
                if (r < 0) {
                        dest_error(&l->d, "cannot create store '%s': %s", l->path,
                                   r == -EEXIST ? "the directory is not empty and not a store"
                                                : strerror(-r));
                        return r;
                }
                r = stamp_store_open(l->path, &l->s);
        }
        if (r < 0) {
                dest_error(&l->d, "store '%s': %s", l->path,
                           r == -ENOENT        ? "no such store (use --init to create it)"
                           : r == -EMEDIUMTYPE ? "not a stampfs store (use --init on an empty "
                                                 "directory)"
                           : r == -ENOTDIR     ? STAMP_STORE_NOTDIR_MESSAGE
                           : r == -EBADMSG     ? STAMP_STORE_CONFIG_MESSAGE
                                               : strerror(-r));
                return r;
        }
        l->config = *stamp_store_config(l->s);
        if (init_like && stamp_config_copy_compatible(init_like, &l->config) < 0) {
                dest_error(&l->d,
                           "store '%s' has another chunker or secret than the source: its "
                           "objects would not match (create it with stamp copy --init)",
                           l->path);
                return -EXDEV;
        }
        if (l->flags & STAMP_COPY_DRY_RUN)
                return 0;
        r = stamp_store_lock(l->s, 0, "stamp copy", holder, sizeof(holder));
        if (r < 0) {
                dest_error(&l->d, "store '%s' is locked by %s", l->path,
                           r == -EBUSY ? holder : strerror(-r));
                return r;
        }
        r = stamp_store_recover(l->s);
        if (r < 0) {
                dest_error(&l->d, "store '%s': recovery failed: %s", l->path, strerror(-r));
                return r;
        }
        if (init_like && init_like->zstd_level != l->config.zstd_level) {
                l->recompress = true;
                l->z = stamp_zctx_new(l->config.zstd_level);
                if (!l->z)
                        return -ENOMEM;
        }
        return 0;
}

int stamp_copy_local_open(const char *path, unsigned flags, const struct stamp_config *init_like,
                          int zstd_level, struct stamp_copy_dest **ret)
{
        struct local *l = calloc(1, sizeof(*l));
        int r;

        *ret = NULL;
        if (!l)
                return -ENOMEM;
        l->d.ops = &local_ops;
        l->flags = flags;
        l->path = strdup(path);
        if (!l->path) {
                free(l);
                return -ENOMEM;
        }
        r = local_setup(l, init_like, zstd_level);
        *ret = &l->d; /* also on failure: d->error explains it; the caller closes */
        return r;
}

/* The sending side. */

struct cp {
        struct stamp_store *src;
        struct stamp_copy_dest *d;
        const struct stamp_copy_options *o;
        struct stamp_copy_result *res;
        struct stamp_index *ix; /* the walk's connection, with a scratch attached */
        struct stamp_walk walk;
        struct stamp_id *batch;
        size_t n;
        uint8_t *have;
        struct stamp_loc *locs;
        uint8_t *buf;
        size_t buf_cap;
        struct stamp_copy_progress prog;
        double last_progress;
        uint64_t snap_objects, snap_bytes; /* sent for the current snapshot */
        bool based; /* the walk's pass has the trees of a destination's snapshot marked */
};

static int cmp_loc(const void *a, const void *b)
{
        const struct stamp_loc *x = a, *y = b;
        int c = strcmp(x->pack, y->pack);

        if (c)
                return c;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int ensure_buf(struct cp *c, size_t len)
{
        uint8_t *p;

        if (c->buf_cap >= len)
                return 0;
        p = realloc(c->buf, len);
        if (!p)
                return -ENOMEM;
        c->buf = p;
        c->buf_cap = len;
        return 0;
}

static void progress(struct cp *c, bool force)
{
        double t = now_s();

        if (!c->o->progress || (!force && t - c->last_progress < 0.25))
                return;
        c->last_progress = t;
        c->prog.reached = c->walk.objects;
        c->prog.sent = c->res->objects_sent;
        c->prog.sent_bytes = c->res->bytes_sent;
        c->o->progress(&c->prog, c->o->userdata);
}

static int send_one(struct cp *c, const struct stamp_loc *l, const uint8_t *rec)
{
        struct stamp_pack_entry e;
        struct stamp_copy_obj o;
        int r;

        r = stamp_pack_record_parse(rec, l->offset, &e);
        if (r == 0 && (stamp_id_cmp(&e.id, &l->id) != 0 || e.type != l->type ||
                       e.comp != l->comp || e.raw_len != l->raw_len ||
                       e.stored_len != l->stored_len))
                r = -EBADMSG;
        if (r == 0) {
                o = (struct stamp_copy_obj){ .id = l->id, .type = l->type, .comp = l->comp,
                                             .raw_len = l->raw_len, .stored_len = l->stored_len,
                                             .payload = rec + STAMP_PACK_RECORD_HEADER_SIZE };
                r = c->d->ops->put(c->d, &o);
        }
        if (r < 0) {
                c->res->bad_id = l->id;
                snprintf(c->res->bad_pack, sizeof(c->res->bad_pack), "%s", l->pack);
                return r;
        }
        c->res->objects_sent++;
        c->res->bytes_sent += l->stored_len;
        c->snap_objects++;
        c->snap_bytes += l->stored_len;
        if (c->o->hook)
                c->o->hook("sent", c->res->objects_sent, c->o->userdata);
        progress(c, false);
        return 0;
}

/* Reads one object alone, looking it up again if gc moved it meanwhile. */
static int send_alone(struct cp *c, struct stamp_loc *l)
{
        size_t len = STAMP_PACK_RECORD_HEADER_SIZE + (size_t)l->stored_len;
        int r;

        r = ensure_buf(c, len);
        if (r < 0)
                return r;
        r = stamp_backend_read(stamp_store_backend(c->src), l->pack, l->offset, c->buf, len);
        if (r == -ENOENT) {
                struct stamp_index *ix;

                if (stamp_store_index(c->src, &ix) == 0 && stamp_index_find(ix, &l->id, l) > 0) {
                        len = STAMP_PACK_RECORD_HEADER_SIZE + (size_t)l->stored_len;
                        r = ensure_buf(c, len);
                        if (r == 0)
                                r = stamp_backend_read(stamp_store_backend(c->src), l->pack,
                                                       l->offset, c->buf, len);
                }
        }
        if (r < 0) {
                c->res->bad_id = l->id;
                snprintf(c->res->bad_pack, sizeof(c->res->bad_pack), "%s", l->pack);
                return r == -ENOENT ? -EBADMSG : r;
        }
        return send_one(c, l, c->buf);
}

/* Sends @n located objects, sorted by pack and offset, reading neighbours together. */
static int send_locs(struct cp *c, struct stamp_loc *locs, size_t n)
{
        size_t i = 0;
        int r;

        qsort(locs, n, sizeof(*locs), cmp_loc);
        while (i < n) {
                uint64_t start = locs[i].offset;
                uint64_t end = start + STAMP_PACK_RECORD_HEADER_SIZE + locs[i].stored_len;
                size_t j = i + 1;

                /* A run of objects of one pack that lie close together. */
                while (j < n && strcmp(locs[j].pack, locs[i].pack) == 0 &&
                       locs[j].offset >= end && locs[j].offset - end < 65536 &&
                       locs[j].offset + STAMP_PACK_RECORD_HEADER_SIZE + locs[j].stored_len -
                                       start <= READ_SPAN) {
                        end = locs[j].offset + STAMP_PACK_RECORD_HEADER_SIZE + locs[j].stored_len;
                        j++;
                }
                if (j == i + 1) {
                        r = send_alone(c, &locs[i]);
                        if (r < 0)
                                return r;
                        i = j;
                        continue;
                }
                r = ensure_buf(c, end - start);
                if (r < 0)
                        return r;
                r = stamp_backend_read(stamp_store_backend(c->src), locs[i].pack, start, c->buf,
                                       end - start);
                if (r == -ENOENT) {
                        /* gc moved them: one by one, each looked up again. */
                        for (; i < j; i++) {
                                r = send_alone(c, &locs[i]);
                                if (r < 0)
                                        return r;
                        }
                        continue;
                }
                if (r < 0) {
                        c->res->bad_id = locs[i].id;
                        snprintf(c->res->bad_pack, sizeof(c->res->bad_pack), "%s", locs[i].pack);
                        return r;
                }
                for (; i < j; i++) {
                        r = send_one(c, &locs[i], c->buf + (locs[i].offset - start));
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* Asks the destination about the batch and sends what it lacks. */
static int flush_batch(struct cp *c)
{
        size_t m = 0;
        int r;

        if (c->n == 0)
                return 0;
        r = c->d->ops->have(c->d, c->batch, c->n, c->have);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n; i++) {
                if (c->have[i])
                        continue;
                r = stamp_index_find(c->ix, &c->batch[i], &c->locs[m]);
                if (r < 0)
                        return r;
                if (r == 0) {
                        c->res->bad_id = c->batch[i];
                        return -EUCLEAN; /* reached but not indexed in the source */
                }
                m++;
        }
        c->n = 0;
        if (c->o->dry_run) {
                for (size_t i = 0; i < m; i++) {
                        c->res->objects_sent++;
                        c->res->bytes_sent += c->locs[i].stored_len;
                        c->snap_objects++;
                        c->snap_bytes += c->locs[i].stored_len;
                }
                return 0;
        }
        return send_locs(c, c->locs, m);
}

static int on_news(const struct stamp_id *id, int64_t stored_len, void *userdata)
{
        struct cp *c = userdata;

        (void)stored_len;
        c->batch[c->n++] = *id;
        if (c->n < BATCH)
                return 0;
        return flush_batch(c);
}

static void on_walk_progress(const struct stamp_walk *w, void *userdata)
{
        (void)w;
        progress(userdata, false);
}

static bool strv_has(const struct stamp_strv *v, const char *s)
{
        for (size_t i = 0; i < v->n; i++)
                if (strcmp(v->v[i], s) == 0)
                        return true;
        return false;
}

/*
 * Marks the trees of the newest snapshot the destination holds (as the
 * source has it) reached, so that the walks skip every directory that did
 * not change since: the destination validated all below them when it took
 * that snapshot, and keeps it. A daily copy then costs what changed, not
 * the size of the snapshot. Without such a snapshot, or if its trees
 * cannot be read here, the walks reach everything.
 */
static void mark_base(struct cp *c, const struct stamp_strv *theirs,
                      const struct stamp_strv *mine)
{
        struct stamp_record rec;
        const char *base = NULL;

        for (size_t i = 0; i < theirs->n; i++)
                if ((!base || strcmp(theirs->v[i], base) > 0) && strv_has(mine, theirs->v[i]))
                        base = theirs->v[i];
        if (base && stamp_store_record_load(c->src, base, &rec) == 0) {
                if (stamp_walk_mark_trees(&c->walk, &rec.root) == 0)
                        c->based = true;
                else { /* a clean slate: a new pass, and no object named bad */
                        c->walk.pass++;
                        c->walk.bad = (struct stamp_id){ { 0 } };
                }
                stamp_record_release(&rec);
        }
}

static int copy_one(struct cp *c, const char *stamp)
{
        _cleanup_free_ uint8_t *text = NULL;
        struct stamp_copy_commit cm = { 0 };
        struct stamp_record rec;
        char name[64];
        size_t len;
        double t0 = now_s();
        int r;

        c->snap_objects = c->snap_bytes = 0;
        snprintf(name, sizeof(name), "snapshots/%s.json", stamp);
        r = stamp_backend_get(stamp_store_backend(c->src), name, STAMP_JSON_MAX, &text, &len);
        if (r == 0)
                r = stamp_record_parse((const char *)text, len, &rec);
        if (r < 0)
                return r == -ENOENT ? r : -EBADMSG;
again:
        c->prog.phase = "walk";
        progress(c, true);
        r = stamp_walk_root(&c->walk, &rec.root);
        if (r == 0)
                r = flush_batch(c);
        c->n = 0;
        if (r == 0 && c->walk.missing) {
                c->res->bad_id = c->walk.first_missing;
                r = -EUCLEAN;
        }
        if (r < 0 && stamp_id_is_null(&c->res->bad_id))
                c->res->bad_id = stamp_id_is_null(&c->d->bad_id) ? c->walk.bad : c->d->bad_id;
        if (r < 0 || c->o->dry_run) {
                stamp_record_release(&rec);
                c->res->copied += r == 0;
                if (r == 0 && c->o->done)
                        c->o->done(stamp, 0, NULL, c->snap_objects, c->snap_bytes,
                                   now_s() - t0, c->o->userdata);
                return r;
        }
        c->prog.phase = "validate";
        progress(c, true);
        r = c->d->ops->commit(c->d, stamp, &rec.root, (const char *)text, len, &cm);
        if (r == 0 && !cm.valid && c->based) {
                /*
                 * The destination lacks something below a directory it was
                 * taken to hold whole (damaged, or repaired, since): walk
                 * everything again in a new pass, sending what it lacks.
                 */
                stamp_copy_commit_release(&cm);
                c->based = false;
                c->walk.pass++;
                goto again;
        }
        stamp_record_release(&rec);
        if (r < 0)
                return r;
        if (cm.valid)
                c->res->copied++;
        else
                c->res->invalid++;
        if (c->o->done)
                c->o->done(stamp, 0, &cm, c->snap_objects, c->snap_bytes, now_s() - t0,
                           c->o->userdata);
        stamp_copy_commit_release(&cm);
        return 0;
}

int stamp_copy(struct stamp_store *src, struct stamp_copy_dest *d,
               const struct stamp_copy_options *o, struct stamp_copy_result *ret)
{
        struct cp c = { .src = src, .d = d, .o = o, .res = ret };
        struct stamp_strv all = { 0 }, theirs = { 0 }, forgotten = { 0 };
        const struct stamp_strv *want;
        struct stamp_config dc;
        char scratch[4096];
        bool named = o->stamps && o->stamps->n;
        int fd = -1, r;

        memset(ret, 0, sizeof(*ret));
        r = d->ops->config(d, &dc);
        if (r < 0)
                return r;
        if (stamp_config_copy_compatible(stamp_store_config(src), &dc) < 0) {
                snprintf(d->error, sizeof(d->error),
                         "the destination has another chunker or secret than the source: its "
                         "objects would not match (create it with stamp copy --init)");
                return -EXDEV;
        }
        r = d->ops->list(d, &theirs, &forgotten);
        if (r < 0)
                return r;
        r = stamp_store_list(src, &all);
        if (r < 0)
                goto out;
        want = named ? o->stamps : &all;
        c.batch = calloc(BATCH, sizeof(*c.batch));
        c.have = calloc(BATCH, 1);
        c.locs = calloc(BATCH, sizeof(*c.locs));
        if (!c.batch || !c.have || !c.locs) {
                r = -ENOMEM;
                goto out;
        }
        fd = stamp_store_scratch(src, ".copy-scratch", scratch, sizeof(scratch));
        if (fd < 0) {
                r = fd;
                goto out;
        }
        r = stamp_store_index_open(src, &c.ix);
        if (r == 0)
                r = stamp_index_scratch_attach(c.ix, scratch);
        if (r < 0)
                goto out;
        c.walk = (struct stamp_walk){ .s = src, .ix = c.ix, .pass = 0, .news = on_news,
                                      .progress = on_walk_progress, .userdata = &c };
        mark_base(&c, &theirs, &all);
        c.prog.count = want->n;
        for (size_t i = 0; i < want->n; i++) {
                c.prog.index = i;
                c.prog.stamp = want->v[i];
                if (strv_has(&theirs, want->v[i])) {
                        ret->skipped++;
                        if (o->done)
                                o->done(want->v[i], 1, NULL, 0, 0, 0, o->userdata);
                        continue;
                }
                if (!named && strv_has(&forgotten, want->v[i])) {
                        ret->forgotten++;
                        if (o->done)
                                o->done(want->v[i], 2, NULL, 0, 0, 0, o->userdata);
                        continue;
                }
                r = copy_one(&c, want->v[i]);
                if (r < 0 && stamp_id_is_null(&ret->bad_id))
                        ret->bad_id = d->bad_id;
                if (r < 0) {
                        snprintf(ret->bad_stamp, sizeof(ret->bad_stamp), "%s", want->v[i]);
                        goto out;
                }
        }
        ret->objects_reached = c.walk.objects;
        r = ret->invalid ? -EBADMSG : 0;
out:
        stamp_index_free(c.ix);
        if (fd >= 0) {
                stamp_store_scratch_remove(src, scratch);
                (void)close(fd);
        }
        free(c.batch);
        free(c.have);
        free(c.locs);
        free(c.buf);
        stamp_strv_release(&all);
        stamp_strv_release(&theirs);
        stamp_strv_release(&forgotten);
        return r;
}
