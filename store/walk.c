/* SPDX-License-Identifier: MIT */
#include "walk.h"

#include <errno.h>
#include <stdlib.h>

#include "macro.h"
#include "pack.h"
#include "reader.h"
#include "tree.h"

/* Scratch writes are committed this often, so the walk holds no long read snapshot. */
#define BATCH 20000

struct ctx {
        struct stamp_walk *w;
        unsigned batch;
        bool trees_only; /* stamp_walk_mark_trees(): marks, counts nothing, no news */
};

static int batch_tick(struct ctx *c)
{
        int r;

        if (++c->batch < BATCH)
                return 0;
        c->batch = 0;
        if (c->w->progress)
                c->w->progress(c->w, c->w->userdata);
        r = stamp_index_scratch_commit(c->w->ix);
        return r < 0 ? r : stamp_index_scratch_begin(c->w->ix);
}

/* Marks @id reached: 1 if news (walk below it), 0 if already reached. */
static int visit(struct ctx *c, const struct stamp_id *id)
{
        int64_t stored;
        int r;

        r = stamp_index_seen_visit(c->w->ix, id, c->w->pass, &stored);
        if (r <= 0)
                return r;
        if (c->trees_only) {
                r = batch_tick(c);
                return r < 0 ? r : 1;
        }
        c->w->objects++;
        if (stored >= 0)
                c->w->bytes += (uint64_t)stored;
        else if (c->w->missing++ == 0)
                c->w->first_missing = *id;
        if (c->w->news) {
                r = c->w->news(id, stored, c->w->userdata);
                if (r < 0)
                        return r;
        }
        r = batch_tick(c);
        return r < 0 ? r : 1;
}

static int walk_list(struct ctx *c, const struct stamp_id *id, unsigned level)
{
        _cleanup_free_ uint8_t *buf = NULL;
        struct stamp_chunklist l;
        size_t len;
        int r;

        r = stamp_store_get(c->w->s, id, STAMP_OBJ_CHUNKLIST, &buf, &len);
        if (r == 0)
                r = stamp_chunklist_parse(buf, len, &l);
        if (r == 0 && l.level != level)
                r = -EBADMSG;
        if (r < 0) {
                c->w->bad = *id;
                return r;
        }
        for (uint32_t i = 0; i < l.count; i++) {
                struct stamp_id item;
                uint64_t n;

                stamp_chunklist_item(&l, i, &item, &n);
                r = visit(c, &item);
                if (r > 0 && level > 0)
                        r = walk_list(c, &item, level - 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int walk_content(struct ctx *c, const struct stamp_entry *e)
{
        struct stamp_content ct;
        int r;

        r = stamp_content_parse(e->content, e->content_len, &ct);
        if (r < 0)
                return r;
        if (ct.kind == STAMP_CONTENT_CHUNKLIST) {
                r = visit(c, &ct.list);
                return r > 0 ? walk_list(c, &ct.list, ct.level) : r;
        }
        for (uint32_t i = 0; i < ct.n; i++) {
                struct stamp_id id;
                uint32_t len;

                stamp_content_chunk(&ct, i, &id, &len);
                r = visit(c, &id);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int walk_tree(struct ctx *c, const struct stamp_id *id)
{
        struct stamp_tree_obj t;
        int r;

        r = stamp_tree_load(c->w->s, id, &t);
        if (r < 0) {
                c->w->bad = *id;
                return r;
        }
        if (!c->trees_only)
                c->w->trees++;
        for (uint32_t i = 0; i < t.t.count && r >= 0; i++) {
                struct stamp_entry e;

                r = stamp_tree_entry(&t.t, i, &e);
                if (r < 0)
                        break;
                if (e.type == STAMP_T_DIR) {
                        r = visit(c, &e.subtree);
                        if (r > 0)
                                r = stamp_index_stack_push(c->w->ix, &e.subtree);
                } else if (e.type == STAMP_T_REG && !c->trees_only)
                        r = walk_content(c, &e);
        }
        if (r < 0 && stamp_id_is_null(&c->w->bad))
                c->w->bad = *id; /* (a chunk list below it may have named itself) */
        stamp_tree_obj_release(&t);
        return r < 0 ? r : 0;
}

static int walk(struct ctx *c, const struct stamp_id *root)
{
        struct stamp_id id;
        int r;

        r = visit(c, root);
        if (r > 0)
                r = stamp_index_stack_push(c->w->ix, root);
        while (r >= 0 && (r = stamp_index_stack_pop(c->w->ix, &id)) == 1)
                r = walk_tree(c, &id);
        return r;
}

static int walk_root(struct ctx *c, const struct stamp_id *root)
{
        struct stamp_walk *w = c->w;
        int r;

        r = stamp_index_scratch_begin(w->ix);
        if (r < 0)
                return r;
        r = walk(c, root);
        if (r < 0) {
                /* Leave the stack empty for the next walk; the marks so far are right. */
                (void)stamp_index_scratch_commit(w->ix);
                while (stamp_index_stack_pop(w->ix, &(struct stamp_id){ { 0 } }) == 1)
                        ;
                return r;
        }
        r = stamp_index_scratch_commit(w->ix);
        if (r == 0 && w->progress && !c->trees_only)
                w->progress(w, w->userdata);
        return r;
}

int stamp_walk_root(struct stamp_walk *w, const struct stamp_id *root)
{
        return walk_root(&(struct ctx){ .w = w }, root);
}

int stamp_walk_mark_trees(struct stamp_walk *w, const struct stamp_id *root)
{
        return walk_root(&(struct ctx){ .w = w, .trees_only = true }, root);
}
