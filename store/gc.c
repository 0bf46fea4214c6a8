/* SPDX-License-Identifier: MIT */
/*
 * Garbage collection. FORMAT.md, "Garbage collection and concurrency",
 * gives the design and the crash-point table; in short:
 *
 *   without the store lock (gc.lock held, snapshots may run):
 *     mark     every object reachable from the records listed now (R0),
 *              into a scratch set (walk.h): bounded memory
 *     plan     candidates = indexed and not marked; per pack: delete it
 *              (nothing live), rewrite it (too much unused), or keep it
 *     rewrite  copy the live objects of rewrite packs, stored bytes as they
 *              are, into new packs; each new pack durable, then its objects'
 *              index rows moved to it in one transaction
 *   under the store lock (no snapshot runs):
 *     finish an earlier gc's gc-pending; mark from records committed since
 *     R0; keep every planned pack that still holds a row that is not dead
 *     (read from the pack's own trailer); list files-cache rows that name
 *     an unmarked object; write gc-pending (the packs to delete); one index
 *     transaction deletes dead rows, those files-cache rows and the pack
 *     rows; then the pack files are unlinked and gc-pending removed.
 *
 * A snapshot only adds to the index, and holds the store lock from its
 * first dedup lookup to its files-cache update, so everything it could
 * have deduplicated against is either marked by the second marking or
 * still present when it ends.
 */
#include "gc.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress.h"
#include "macro.h"
#include "pack.h"
#include "tree.h"
#include "walk.h"

#define PENDING_NAME "gc-pending"
#define PENDING_MAGIC "stampfs-gc-pending 1\n"
#define PENDING_END "end\n"
#define PENDING_MAX (64u << 20)
#define COPY_BATCH 256

struct gc {
        struct stamp_store *s;
        const struct stamp_gc_options *o;
        struct stamp_gc_result *res;
        struct stamp_index *ix; /* our own connection, with the scratch attached */
        char scratch[PATH_MAX];
        int scratch_fd;
        struct stamp_strv r0; /* the stamps marked before the lock, sorted */
        struct stamp_walk walk;
        struct stamp_gc_progress prog;
        uint64_t copy_total;
};

static void hook(struct gc *g, const char *point)
{
        if (g->o->hook)
                g->o->hook(point, g->o->userdata);
}

static void report(struct gc *g)
{
        if (g->o->progress)
                g->o->progress(&g->prog, g->o->userdata);
}

static void phase(struct gc *g, int p, uint64_t total)
{
        g->prog.phase = p;
        g->prog.done = 0;
        g->prog.total = total;
        g->prog.holder = NULL;
        report(g);
}

static void walk_progress(const struct stamp_walk *w, void *userdata)
{
        struct gc *g = userdata;

        g->prog.objects = w->objects;
        report(g);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool in_r0(struct gc *g, const char *stamp)
{
        return g->r0.n && bsearch(&stamp, g->r0.v, g->r0.n, sizeof(char *), cmp_str);
}

/* Marks everything snapshot @stamp references. A record forgotten meanwhile is skipped. */
static int mark_snapshot(struct gc *g, const char *stamp)
{
        struct stamp_record rec;
        uint64_t missing = g->walk.missing;
        int r;

        r = stamp_store_record_load(g->s, stamp, &rec);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                snprintf(g->res->bad_stamp, sizeof(g->res->bad_stamp), "%s", stamp);
                return r == -EOPNOTSUPP ? r : -EBADMSG;
        }
        memset(&g->walk.bad, 0, sizeof(g->walk.bad));
        r = stamp_walk_root(&g->walk, &rec.root);
        stamp_record_release(&rec);
        if (r < 0) {
                snprintf(g->res->bad_stamp, sizeof(g->res->bad_stamp), "%s", stamp);
                g->res->bad_id = g->walk.bad;
        } else if (g->walk.missing > missing && !g->res->bad_stamp[0]) {
                snprintf(g->res->bad_stamp, sizeof(g->res->bad_stamp), "%s", stamp);
                g->res->bad_id = g->walk.first_missing;
        }
        if (r == -ENOENT)
                return -EUCLEAN; /* a tree or chunk list the index does not have */
        return r;
}

/* Phase 1: marks from every record listed now (R0). */
static int mark(struct gc *g)
{
        int r;

        r = stamp_store_list(g->s, &g->r0);
        if (r < 0)
                return r;
        phase(g, STAMP_GC_PHASE_MARK, g->r0.n);
        for (size_t i = 0; i < g->r0.n; i++) {
                r = mark_snapshot(g, g->r0.v[i]);
                if (r < 0)
                        return r;
                g->prog.done = i + 1;
                g->prog.objects = g->walk.objects;
                report(g);
                hook(g, "mark");
        }
        g->res->snapshots = g->r0.n;
        g->res->missing = g->walk.missing;
        return g->walk.missing ? -EUCLEAN : 0;
}

/* Phase 2: the plan, and what it would do. */
static int plan(struct gc *g)
{
        struct stamp_gc_plan_pack p;
        int64_t after = -1;
        int r;

        phase(g, STAMP_GC_PHASE_PLAN, 0);
        r = stamp_index_gc_plan(g->ix, g->o->max_unused_pct);
        if (r < 0)
                return r;
        r = stamp_index_gc_cand_totals(g->ix, &g->res->candidates, &g->res->candidate_bytes);
        if (r < 0)
                return r;
        while ((r = stamp_index_gc_plan_next(g->ix, after, &p)) == 1) {
                after = p.pack;
                g->res->packs_before++;
                g->res->bytes_before += p.size;
                if (p.action == STAMP_GC_DELETE) {
                        g->res->plan_delete++;
                        g->res->plan_free_bytes += p.size;
                } else if (p.action == STAMP_GC_REWRITE) {
                        g->res->plan_rewrite++;
                        g->copy_total += p.live_objects;
                        /* The live objects move to a new pack with its own header and trailer. */
                        if (p.size > p.live_bytes)
                                g->res->plan_free_bytes += p.size - p.live_bytes;
                }
        }
        hook(g, "plan");
        return r;
}

/* Reads one object's stored bytes and checks them against its id before copying them. */
static int read_verified(struct gc *g, const struct stamp_loc *l, uint8_t **ret)
{
        size_t len = STAMP_PACK_RECORD_HEADER_SIZE + (size_t)l->stored_len;
        _cleanup_free_ uint8_t *buf = malloc(len);
        _cleanup_free_ uint8_t *raw = NULL;
        struct stamp_pack_entry rec;
        struct stamp_id check;
        int r;

        if (!buf)
                return -ENOMEM;
        r = stamp_backend_read(stamp_store_backend(g->s), l->pack, l->offset, buf, len);
        if (r == -ENOENT)
                r = -EBADMSG; /* the index names a pack that is not there */
        if (r < 0)
                return r;
        r = stamp_pack_record_parse(buf, l->offset, &rec);
        if (r < 0)
                return r;
        if (stamp_id_cmp(&rec.id, &l->id) != 0 || rec.type != l->type || rec.comp != l->comp ||
            rec.raw_len != l->raw_len || rec.stored_len != l->stored_len)
                return -EBADMSG;
        if (rec.comp == STAMP_COMP_ZSTD) {
                raw = malloc(rec.raw_len ? rec.raw_len : 1);
                if (!raw)
                        return -ENOMEM;
                r = stamp_decompress(buf + STAMP_PACK_RECORD_HEADER_SIZE, rec.stored_len, raw,
                                     rec.raw_len);
                if (r < 0)
                        return r;
                stamp_hasher_id(stamp_store_hasher(g->s), raw, rec.raw_len, &check);
        } else
                stamp_hasher_id(stamp_store_hasher(g->s), buf + STAMP_PACK_RECORD_HEADER_SIZE,
                                rec.raw_len, &check);
        if (stamp_id_cmp(&check, &l->id) != 0)
                return -EBADMSG;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Makes a new pack durable, then moves its objects' index rows to it. */
static int finish_pack(struct gc *g, struct stamp_pack_writer **pw)
{
        const struct stamp_pack_entry *e = stamp_pack_writer_entries(*pw);
        size_t n = stamp_pack_writer_count(*pw);
        uint64_t size = 0;
        char name[64];
        int r;

        r = stamp_pack_writer_finish(*pw, name);
        if (r == 0) {
                size = stamp_pack_writer_size(*pw); /* with its index and trailer */
                hook(g, "rewrite-durable");
                r = stamp_index_relocate(g->ix, name, size, e, n);
        }
        stamp_pack_writer_free(*pw);
        *pw = NULL;
        if (r < 0)
                return r;
        g->res->packs_written++;
        g->res->bytes_written += size;
        hook(g, "rewrite-relocated");
        return 0;
}

static int copy_one(struct gc *g, struct stamp_pack_writer **pw, const struct stamp_loc *l)
{
        _cleanup_free_ uint8_t *buf = NULL;
        int r;

        r = read_verified(g, l, &buf);
        if (r < 0) {
                g->res->bad_id = l->id;
                return r;
        }
        if (!*pw) {
                r = stamp_pack_writer_new(stamp_store_backend(g->s), pw);
                if (r < 0)
                        return r;
        }
        r = stamp_pack_writer_add(*pw, &l->id, l->type, l->comp, l->raw_len,
                                  buf + STAMP_PACK_RECORD_HEADER_SIZE, l->stored_len);
        if (r < 0)
                return r;
        g->res->objects_copied++;
        if (stamp_pack_writer_size(*pw) >= stamp_store_config(g->s)->pack_size)
                return finish_pack(g, pw);
        return 0;
}

/* Phase 3: copies the live objects of REWRITE packs into new packs. */
static int rewrite(struct gc *g)
{
        _cleanup_free_ struct stamp_loc *batch = calloc(COPY_BATCH, sizeof(*batch));
        struct stamp_pack_writer *pw = NULL;
        int64_t pos = 0;
        size_t n;
        int r;

        if (!batch)
                return -ENOMEM;
        phase(g, STAMP_GC_PHASE_REWRITE, g->copy_total);
        for (;;) {
                r = stamp_index_gc_copy_next(g->ix, pos, batch, COPY_BATCH, &n, &pos);
                if (r < 0 || n == 0)
                        break;
                for (size_t i = 0; i < n && r == 0; i++)
                        r = copy_one(g, &pw, &batch[i]);
                if (r < 0)
                        break;
                g->prog.done = g->res->objects_copied;
                report(g);
        }
        if (r == 0 && pw)
                r = finish_pack(g, &pw);
        stamp_pack_writer_free(pw); /* an unfinished pack is discarded */
        if (r == 0)
                hook(g, "rewritten");
        return r;
}

/* Under the lock: marks from the records committed since R0. */
static int mark_new(struct gc *g)
{
        struct stamp_strv now = { 0 };
        uint64_t missing = g->walk.missing;
        int r;

        r = stamp_store_list(g->s, &now);
        for (size_t i = 0; r == 0 && i < now.n; i++) {
                if (in_r0(g, now.v[i]))
                        continue;
                r = mark_snapshot(g, now.v[i]);
                g->res->new_snapshots++;
        }
        stamp_strv_release(&now);
        if (r == 0 && g->walk.missing > missing) {
                g->res->missing = g->walk.missing - missing;
                r = -EUCLEAN;
        }
        return r;
}

/*
 * Under the lock: a planned pack may be deleted only if every index row
 * that points at it is dead. Its own trailer lists every object it holds,
 * so no other list is needed: a candidate a new snapshot references, or a
 * pack a rewrite wrote again under the same name, keeps the pack.
 */
static int check_pack(struct gc *g, const struct stamp_gc_plan_pack *p)
{
        _cleanup_free_ struct stamp_pack_entry *e = NULL;
        size_t n;
        uint64_t size;
        int r;

        r = stamp_pack_load_index(stamp_store_backend(g->s), p->name, &e, &n, &size);
        if (r < 0)
                return 1; /* unreadable: what it holds is unknown, so it stays */
        for (size_t i = 0; i < n; i++) {
                r = stamp_index_gc_row_live(g->ix, p->pack, &e[i].id);
                if (r != 0)
                        return r;
        }
        return 0;
}

static int check_packs(struct gc *g)
{
        struct stamp_gc_plan_pack p;
        int64_t after = -1;
        int r;

        while ((r = stamp_index_gc_plan_next(g->ix, after, &p)) == 1) {
                after = p.pack;
                if (p.action == STAMP_GC_KEEP)
                        continue;
                r = check_pack(g, &p);
                if (r < 0)
                        return r;
                if (r == 1) {
                        g->res->packs_kept_back++;
                        r = stamp_index_gc_plan_set(g->ix, p.pack, STAMP_GC_KEEP);
                        if (r < 0)
                                return r;
                }
        }
        return r;
}

/* 1 if a files-cache row names an object that is not marked: it must go. */
static int files_row_dead(const uint8_t *content, size_t len, void *userdata)
{
        struct gc *g = userdata;
        struct stamp_content c;
        int r;

        if (stamp_content_parse(content, len, &c) < 0)
                return 1;
        if (c.kind == STAMP_CONTENT_CHUNKLIST) {
                r = stamp_index_seen_has(g->ix, &c.list);
                return r < 0 ? r : !r;
        }
        for (uint32_t i = 0; i < c.n; i++) {
                struct stamp_id id;
                uint32_t l;

                stamp_content_chunk(&c, i, &id, &l);
                r = stamp_index_seen_has(g->ix, &id);
                if (r <= 0)
                        return r < 0 ? r : 1;
        }
        return 0;
}

/* Writes gc-pending: the packs the commit removes. 0 packs: no file. */
static int write_pending(struct gc *g, uint64_t *ret_n)
{
        struct stamp_backend *b = stamp_store_backend(g->s);
        struct stamp_backend_writer *w;
        struct stamp_gc_plan_pack p;
        int64_t after = -1;
        uint64_t n = 0;
        int r;

        r = stamp_backend_writer_open(b, &w);
        if (r < 0)
                return r;
        r = stamp_backend_writer_write(w, PENDING_MAGIC, strlen(PENDING_MAGIC));
        while (r == 0 && (r = stamp_index_gc_plan_next(g->ix, after, &p)) == 1) {
                after = p.pack;
                r = 0;
                if (p.action == STAMP_GC_KEEP)
                        continue;
                r = stamp_backend_writer_write(w, p.name, strlen(p.name));
                if (r == 0)
                        r = stamp_backend_writer_write(w, "\n", 1);
                n++;
        }
        if (r == 0)
                r = stamp_backend_writer_write(w, PENDING_END, strlen(PENDING_END));
        if (r < 0 || n == 0) {
                stamp_backend_writer_abort(w);
                *ret_n = 0;
                return r;
        }
        r = stamp_backend_writer_commit(w, PENDING_NAME);
        if (r == 0)
                *ret_n = n;
        return r;
}

/* After the index commit: unlinks the packs it dropped. */
static int delete_packs(struct gc *g, uint64_t n)
{
        struct stamp_gc_plan_pack p;
        int64_t after = -1;
        uint64_t removed = 0;
        int r;

        phase(g, STAMP_GC_PHASE_DELETE, n);
        while ((r = stamp_index_gc_plan_next(g->ix, after, &p)) == 1) {
                after = p.pack;
                if (p.action == STAMP_GC_KEEP)
                        continue;
                r = stamp_backend_remove(stamp_store_backend(g->s), p.name);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (p.action == STAMP_GC_DELETE)
                        g->res->packs_deleted++;
                else
                        g->res->packs_rewritten++;
                removed += p.size;
                g->prog.done++;
                report(g);
                hook(g, "unlink");
        }
        if (r < 0)
                return r;
        g->res->bytes_freed = removed > g->res->bytes_written ? removed - g->res->bytes_written : 0;
        return 0;
}

/* Phase 4, under the store lock. */
static int commit(struct gc *g)
{
        uint64_t n = 0;
        int r;

        phase(g, STAMP_GC_PHASE_COMMIT, 0);
        r = stamp_gc_pending_complete(g->s, g->ix, &g->res->pending_removed);
        if (r == 0)
                r = mark_new(g);
        if (r == 0)
                r = check_packs(g);
        if (r == 0)
                r = stamp_index_gc_files_scan(g->ix, files_row_dead, g, &g->res->files_dropped);
        if (r == 0)
                r = write_pending(g, &n);
        if (r < 0)
                return r;
        hook(g, "pending");
        r = stamp_index_gc_commit(g->ix, &g->res->dead_objects, &g->res->dead_bytes);
        if (r < 0) {
                /* Its packs are all still listed: the next completion would keep them anyway. */
                if (n)
                        (void)stamp_backend_remove(stamp_store_backend(g->s), PENDING_NAME);
                return r;
        }
        hook(g, "committed");
        r = delete_packs(g, n);
        if (r < 0)
                return r;
        if (n) {
                r = stamp_backend_remove(stamp_store_backend(g->s), PENDING_NAME);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        hook(g, "done");
        return 0;
}

static int take_lock(struct gc *g)
{
        char holder[256] = "";
        int r;

        r = stamp_store_lock(g->s, 0, "stamp gc", holder, sizeof(holder));
        if (r != -EBUSY)
                return r;
        phase(g, STAMP_GC_PHASE_WAIT, 0);
        g->prog.holder = holder;
        report(g);
        r = stamp_store_lock(g->s, g->o->lock_timeout_s, "stamp gc", holder, sizeof(holder));
        g->prog.holder = NULL;
        g->res->lock_timed_out = r == -EBUSY;
        return r;
}

static int open_scratch(struct gc *g)
{
        int r;

        g->scratch_fd = stamp_store_scratch(g->s, ".gc-scratch", g->scratch, sizeof(g->scratch));
        if (g->scratch_fd < 0)
                return g->scratch_fd;
        r = stamp_store_index_open(g->s, &g->ix);
        if (r < 0)
                return r;
        return stamp_index_scratch_attach(g->ix, g->scratch);
}

static void release(struct gc *g)
{
        stamp_index_free(g->ix);
        if (g->scratch_fd >= 0) {
                stamp_store_scratch_remove(g->s, g->scratch);
                (void)close(g->scratch_fd);
        }
        stamp_strv_release(&g->r0);
}

/* Indexes what a crashed writer left, if no writer is busy (one that is has done it). */
static int recover_if_idle(struct gc *g)
{
        int r;

        if (stamp_store_lock(g->s, 0, "stamp gc", NULL, 0) < 0)
                return 0;
        r = stamp_store_recover(g->s);
        stamp_store_unlock(g->s);
        return r;
}

int stamp_gc_run(struct stamp_store *s, const struct stamp_gc_options *o,
                 struct stamp_gc_result *ret)
{
        struct gc g = { .s = s, .o = o, .res = ret, .scratch_fd = -1 };
        struct stamp_gc_options low;
        int r;

        memset(ret, 0, sizeof(*ret));
        if (!stamp_store_gc_locked(s) || stamp_store_locked(s) || o->max_unused_pct > 100)
                return -EINVAL;
        /*
         * A full disk: the reserve makes room for the index's changes and
         * gc-pending, the scratch database goes to $TMPDIR, and no pack is
         * rewritten (that needs room for the copies): only packs with
         * nothing live go.
         */
        if (!o->dry_run && stamp_store_space_low(s)) {
                r = stamp_store_reserve_release(s, &ret->reserve_released);
                if (r < 0)
                        return r;
                ret->low_space = true;
                low = *o;
                low.max_unused_pct = 100;
                g.o = o = &low;
        }
        g.walk = (struct stamp_walk){ .s = s, .pass = 0, .progress = walk_progress,
                                      .userdata = &g };
        r = o->dry_run ? 0 : recover_if_idle(&g);
        if (r == 0)
                r = open_scratch(&g);
        g.walk.ix = g.ix;
        if (r == 0)
                r = mark(&g);
        if (r == 0)
                r = plan(&g);
        ret->live_objects = g.walk.objects;
        if (r < 0 || o->dry_run) {
                release(&g);
                return r;
        }
        r = rewrite(&g);
        if (r == 0)
                r = take_lock(&g);
        if (r == 0) {
                hook(&g, "locked");
                r = commit(&g);
                stamp_store_unlock(s);
        }
        ret->live_objects = g.walk.objects;
        if (r == 0)
                (void)stamp_index_checkpoint(g.ix); /* keep index.db-wal from growing */
        release(&g);
        if (r == 0)
                ret->reserve_made = stamp_store_reserve_make(s) > 0;
        return r;
}

/* Parses gc-pending and calls @fn for each pack it names. -EBADMSG if malformed. */
static int pending_parse(char *text, size_t len, int (*fn)(const char *name, void *u), void *u)
{
        size_t magic = strlen(PENDING_MAGIC), end = strlen(PENDING_END);
        char *p, *stop;
        int r;

        if (len < magic + end || memcmp(text, PENDING_MAGIC, magic) != 0 ||
            memcmp(text + len - end, PENDING_END, end) != 0 || memchr(text, 0, len))
                return -EBADMSG;
        text[len - end] = 0;
        for (p = text + magic; *p; p = stop + 1) {
                stop = strchr(p, '\n');
                if (!stop)
                        return -EBADMSG;
                *stop = 0;
                if (!stamp_backend_name_valid(p) || strncmp(p, "packs/", 6) != 0 ||
                    strlen(p) < 5 || strcmp(p + strlen(p) - 5, ".pack") != 0)
                        return -EBADMSG;
                r = fn(p, u);
                if (r < 0)
                        return r;
        }
        return 0;
}

struct pending_ctx {
        struct stamp_store *s;
        struct stamp_index *ix;
        uint64_t removed;
};

static int pending_one(const char *name, void *userdata)
{
        struct pending_ctx *c = userdata;
        int r;

        if (c->ix) {
                r = stamp_index_has_pack(c->ix, name);
                if (r != 0)
                        return r < 0 ? r : 0; /* still indexed: that gc did not commit */
        }
        r = stamp_backend_remove(stamp_store_backend(c->s), name);
        if (r == 0)
                c->removed++;
        return r == -ENOENT ? 0 : r;
}

int stamp_gc_pending_complete(struct stamp_store *s, struct stamp_index *ix,
                              uint64_t *ret_removed)
{
        struct pending_ctx c = { .s = s, .ix = ix };
        _cleanup_free_ uint8_t *text = NULL;
        size_t len;
        int r;

        if (!stamp_store_locked(s))
                return -EINVAL;
        r = stamp_backend_get(stamp_store_backend(s), PENDING_NAME, PENDING_MAX, &text, &len);
        if (r == -ENOENT) {
                *ret_removed = 0;
                return 0;
        }
        if (r < 0 && r != -EFBIG)
                return r;
        /*
         * A damaged list is dropped: the packs it named stay, are indexed
         * again by recovery if the commit had happened, and go in the next
         * gc. Wasteful, never unsafe.
         */
        if (r == 0)
                r = pending_parse((char *)text, len, pending_one, &c);
        if (r < 0 && r != -EBADMSG && r != -EFBIG)
                return r;
        r = stamp_backend_remove(stamp_store_backend(s), PENDING_NAME);
        if (r < 0 && r != -ENOENT)
                return r;
        *ret_removed = c.removed;
        return 0;
}
