/* SPDX-License-Identifier: MIT */
#include "stats.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "pack.h"
#include "walk.h"

/* What an object costs in a pack besides its stored bytes. */
#define OBJECT_OVERHEAD (STAMP_PACK_RECORD_HEADER_SIZE + STAMP_PACK_INDEX_ENTRY_SIZE)
#define PACK_OVERHEAD (STAMP_PACK_HEADER_SIZE + STAMP_PACK_TRAILER_SIZE)

struct ctx {
        struct stamp_store *s;
        struct stamp_index *ix;
        struct stamp_stats *st;
        size_t *pass_snap; /* pass - 1 -> index in st->snap, or SIZE_MAX (forgotten) */
        size_t n_pass;
};

static int walk_snapshot(struct ctx *c, struct stamp_walk *w, size_t i, const char *stamp)
{
        struct stamp_stats_snapshot *sn = &c->st->snap[c->st->n_snap];
        uint64_t objects = w->objects, bytes = w->bytes;
        struct stamp_record rec;
        int r;

        c->pass_snap[i] = SIZE_MAX;
        r = stamp_store_record_load(c->s, stamp, &rec);
        if (r == -ENOENT)
                return 0; /* forgotten meanwhile */
        if (r < 0)
                return r;
        w->pass = (int64_t)i + 1; /* gc uses pass 0 */
        r = stamp_walk_root(w, &rec.root);
        if (r == -ENOENT) {
                /* A tree or chunk list the store does not have: damage, unless
                 * a prune and gc took the snapshot away meanwhile. */
                struct stamp_record again;
                int k = stamp_store_record_load(c->s, stamp, &again);
                if (k == 0)
                        stamp_record_release(&again);
                if (k == -ENOENT) {
                        stamp_record_release(&rec);
                        return 0;
                }
                r = -EBADMSG;
        }
        if (r == 0) {
                c->pass_snap[i] = c->st->n_snap;
                snprintf(sn->stamp, sizeof(sn->stamp), "%s", stamp);
                sn->logical_bytes = rec.logical_bytes;
                sn->objects = w->objects - objects;
                sn->stored_bytes = w->bytes - bytes + sn->objects * OBJECT_OVERHEAD;
                c->st->logical_bytes += rec.logical_bytes;
                c->st->n_snap++;
        }
        stamp_record_release(&rec);
        return r;
}

static int exclusive(int64_t pass, uint64_t objects, uint64_t bytes, void *userdata)
{
        struct ctx *c = userdata;

        if (pass < 1 || (uint64_t)pass > c->n_pass || c->pass_snap[pass - 1] == SIZE_MAX)
                return 0;
        c->st->snap[c->pass_snap[pass - 1]].exclusive_objects = objects;
        c->st->snap[c->pass_snap[pass - 1]].exclusive_bytes = bytes + objects * OBJECT_OVERHEAD;
        return 0;
}

static int count_unindexed(const char *name, void *userdata)
{
        struct ctx *c = userdata;
        int r;

        if (strlen(name) < 5 || strcmp(name + strlen(name) - 5, ".pack") != 0)
                return 0;
        r = stamp_index_has_pack(c->ix, name);
        if (r == 0) {
                uint64_t size;
                /* No snapshot or gc ever indexes a symlink or a directory. */
                if (stamp_backend_size(stamp_store_backend(c->s), name, &size) == -EBADMSG)
                        c->st->not_file_packs++;
                else
                        c->st->unindexed_packs++;
        }
        return r < 0 ? r : 0;
}

static int totals(struct ctx *c)
{
        struct stamp_index_usage u;
        struct stamp_stats *st = c->st;
        uint64_t needed;
        int r;

        r = stamp_index_usage(c->ix, &u);
        if (r < 0)
                return r;
        st->packs = u.packs;
        st->pack_bytes = u.pack_bytes;
        st->objects = u.objects;
        st->chunks = u.chunks;
        st->referenced_objects = u.referenced;
        st->referenced_bytes = u.referenced_bytes + u.referenced * OBJECT_OVERHEAD;
        st->missing_objects = u.missing;
        st->unreferenced_packs = u.packs - u.live_packs;
        needed = st->referenced_bytes + u.live_packs * PACK_OVERHEAD;
        st->unused_bytes = u.pack_bytes > needed ? u.pack_bytes - needed : 0;
        return stamp_backend_list(stamp_store_backend(c->s), "packs/", count_unindexed, c);
}

int stamp_stats_compute(struct stamp_store *s,
                        void (*progress)(uint64_t done, uint64_t total, void *userdata),
                        void *userdata, struct stamp_stats *ret,
                        char ret_bad[STAMP_STAMP_LEN + 1])
{
        struct stamp_stats st = { 0 };
        struct ctx c = { .s = s, .st = &st };
        struct stamp_strv stamps = { 0 };
        struct stamp_walk w = { .s = s };
        char scratch[PATH_MAX];
        int fd, r;

        ret_bad[0] = 0;
        r = stamp_store_list(s, &stamps);
        if (r < 0)
                return r;
        st.snap = calloc(stamps.n ? stamps.n : 1, sizeof(*st.snap));
        c.pass_snap = calloc(stamps.n ? stamps.n : 1, sizeof(*c.pass_snap));
        c.n_pass = stamps.n;
        if (!st.snap || !c.pass_snap) {
                free(c.pass_snap);
                free(st.snap);
                stamp_strv_release(&stamps);
                return -ENOMEM;
        }
        fd = stamp_store_scratch(s, ".stats-scratch", scratch, sizeof(scratch));
        if (fd < 0) {
                r = fd;
                goto out;
        }
        r = stamp_store_index_open(s, &c.ix);
        if (r == 0)
                r = stamp_index_scratch_attach(c.ix, scratch);
        w.ix = c.ix;
        for (size_t i = 0; r == 0 && i < stamps.n; i++) {
                r = walk_snapshot(&c, &w, i, stamps.v[i]);
                if (r < 0)
                        snprintf(ret_bad, STAMP_STAMP_LEN + 1, "%s", stamps.v[i]);
                if (progress)
                        progress(i + 1, stamps.n, userdata);
        }
        st.snapshots = st.n_snap;
        if (r == 0)
                r = stamp_index_seen_exclusive(c.ix, exclusive, &c);
        if (r == 0)
                r = totals(&c);
        stamp_index_free(c.ix);
        stamp_store_scratch_remove(s, scratch);
        (void)close(fd);
out:
        free(c.pass_snap);
        stamp_strv_release(&stamps);
        if (r < 0) {
                stamp_stats_release(&st);
                return r;
        }
        *ret = st;
        return 0;
}

void stamp_stats_release(struct stamp_stats *st)
{
        free(st->snap);
        memset(st, 0, sizeof(*st));
}
