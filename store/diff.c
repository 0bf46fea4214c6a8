/* SPDX-License-Identifier: MIT */
/*
 * Tree comparison (see diff.h): a merge of two sorted entry lists per
 * directory, descending only where subtree ids differ.
 *
 * Each level of the walk holds its two trees in memory while it descends,
 * so memory grows with depth, not with the size of the snapshots. Depth is
 * capped at the snapshot's own limit, so a crafted store cannot exhaust
 * the stack.
 */
#include "diff.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "reader.h"

/* As deep as stamp snapshot goes (DEPTH_MAX in snapshot.c). */
#define DIFF_DEPTH_MAX 4096

static const char *const change_names[STAMP_CHANGE_MAX] = {
        "type", "content", "size", "mode", "owner", "mtime", "target", "xattrs", "device",
};

const char *stamp_diff_change_name(unsigned i)
{
        return i < STAMP_CHANGE_MAX ? change_names[i] : NULL;
}

static bool bytes_differ(const void *a, size_t al, const void *b, size_t bl)
{
        return al != bl || (al > 0 && memcmp(a, b, al) != 0);
}

unsigned stamp_entry_changes(const struct stamp_entry *a, const struct stamp_entry *b)
{
        unsigned c = 0;

        if (a->type != b->type)
                c |= STAMP_CHANGE_TYPE;
        else if (a->type == STAMP_T_REG) {
                /* Equal references name the same chunks, so the same bytes. */
                if (bytes_differ(a->content, a->content_len, b->content, b->content_len))
                        c |= STAMP_CHANGE_CONTENT;
                if (a->size != b->size)
                        c |= STAMP_CHANGE_SIZE;
        } else if (a->type == STAMP_T_LNK) {
                if (bytes_differ(a->target, a->target_len, b->target, b->target_len))
                        c |= STAMP_CHANGE_TARGET;
        } else if (a->type == STAMP_T_CHR || a->type == STAMP_T_BLK) {
                if (a->rdev != b->rdev)
                        c |= STAMP_CHANGE_DEVICE;
        }
        if ((a->mode & 07777) != (b->mode & 07777))
                c |= STAMP_CHANGE_MODE;
        if (a->uid != b->uid || a->gid != b->gid)
                c |= STAMP_CHANGE_OWNER;
        if (a->mtime_ns != b->mtime_ns)
                c |= STAMP_CHANGE_MTIME;
        /* Encoded sorted by name, so equal sets have equal bytes. */
        if (bytes_differ(a->xattrs, a->xattrs_len, b->xattrs, b->xattrs_len))
                c |= STAMP_CHANGE_XATTRS;
        return c;
}

struct walk {
        struct stamp_store *s;
        stamp_diff_fn fn;
        void *userdata;
        char *path; /* the current path, NUL-terminated */
        size_t len, cap;
        char *bad_path; /* the directory whose tree failed to load */
};

/* Appends "/name" (or "name" at the root); *ret_old is the length to go back to. */
static int path_push(struct walk *w, const char *name, size_t len, size_t *ret_old)
{
        size_t need = w->len + 1 + len + 1;

        if (need > w->cap) {
                size_t cap = w->cap * 2 > need ? w->cap * 2 : need;
                char *p = realloc(w->path, cap);
                if (!p)
                        return -ENOMEM;
                w->path = p;
                w->cap = cap;
        }
        *ret_old = w->len;
        if (w->len > 0)
                w->path[w->len++] = '/';
        memcpy(w->path + w->len, name, len);
        w->len += len;
        w->path[w->len] = 0;
        return 0;
}

static void path_pop(struct walk *w, size_t old)
{
        w->len = old;
        w->path[old] = 0;
}

static int load(struct walk *w, const struct stamp_id *id, int depth, struct stamp_tree_obj *ret)
{
        int r = depth > DIFF_DEPTH_MAX ? -EBADMSG : stamp_tree_load(w->s, id, ret);

        if (r == -ENOENT)
                r = -EBADMSG; /* the snapshot names a tree the store does not have */
        if ((r == -EBADMSG || r == -EOPNOTSUPP) && !w->bad_path)
                w->bad_path = strdup(w->path);
        return r;
}

static int emit(struct walk *w, enum stamp_diff_kind kind, unsigned changes,
                const struct stamp_entry *a, const struct stamp_entry *b)
{
        struct stamp_diff_item item = { .path = w->path, .path_len = w->len, .kind = kind,
                                        .changes = changes, .a = a, .b = b };

        return w->fn(&item, w->userdata);
}

static int one_side(struct walk *w, const struct stamp_entry *e, enum stamp_diff_kind kind,
                    int depth);

/* Reports everything below directory @id (at the current path) as @kind. */
static int list_below(struct walk *w, const struct stamp_id *id, enum stamp_diff_kind kind,
                      int depth)
{
        struct stamp_tree_obj t = { 0 };
        int r = load(w, id, depth, &t);

        for (uint32_t i = 0; r == 0 && i < t.t.count; i++) {
                struct stamp_entry e;
                r = stamp_tree_entry(&t.t, i, &e);
                if (r == 0)
                        r = one_side(w, &e, kind, depth);
        }
        stamp_tree_obj_release(&t);
        return r;
}

/* An entry present on one side only: it and, for a directory, all below it. */
static int one_side(struct walk *w, const struct stamp_entry *e, enum stamp_diff_kind kind,
                    int depth)
{
        size_t old;
        int r = path_push(w, e->name, e->name_len, &old);

        if (r < 0)
                return r;
        r = kind == STAMP_DIFF_ADDED ? emit(w, kind, 0, NULL, e) : emit(w, kind, 0, e, NULL);
        if (r == 0 && e->type == STAMP_T_DIR)
                r = list_below(w, &e->subtree, kind, depth + 1);
        path_pop(w, old);
        return r;
}

static int diff_dirs(struct walk *w, const struct stamp_id *a, const struct stamp_id *b,
                     int depth);

/* An entry present on both sides. */
static int both_sides(struct walk *w, const struct stamp_entry *a, const struct stamp_entry *b,
                      int depth)
{
        unsigned changes = stamp_entry_changes(a, b);
        bool dirs = a->type == STAMP_T_DIR && b->type == STAMP_T_DIR;
        bool same_tree = dirs && stamp_id_cmp(&a->subtree, &b->subtree) == 0;
        size_t old;
        int r;

        if (!changes && (!dirs || same_tree))
                return 0;
        r = path_push(w, a->name, a->name_len, &old);
        if (r < 0)
                return r;
        if (changes)
                r = emit(w, STAMP_DIFF_MODIFIED, changes, a, b);
        if (r == 0 && dirs && !same_tree)
                r = diff_dirs(w, &a->subtree, &b->subtree, depth + 1);
        if (r == 0 && !dirs && a->type == STAMP_T_DIR)
                r = list_below(w, &a->subtree, STAMP_DIFF_REMOVED, depth + 1);
        if (r == 0 && !dirs && b->type == STAMP_T_DIR)
                r = list_below(w, &b->subtree, STAMP_DIFF_ADDED, depth + 1);
        path_pop(w, old);
        return r;
}

static int name_cmp(const struct stamp_entry *a, const struct stamp_entry *b)
{
        int c = memcmp(a->name, b->name, a->name_len < b->name_len ? a->name_len : b->name_len);

        if (c != 0)
                return c;
        return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

/* Merges two directories' sorted entries. */
static int merge(struct walk *w, const struct stamp_tree *ta, const struct stamp_tree *tb,
                 int depth)
{
        uint32_t i = 0, j = 0;
        int r = 0;

        while (r == 0 && (i < ta->count || j < tb->count)) {
                struct stamp_entry ea = { 0 }, eb = { 0 };
                int c;
                if (i < ta->count && (r = stamp_tree_entry(ta, i, &ea)) < 0)
                        break;
                if (j < tb->count && (r = stamp_tree_entry(tb, j, &eb)) < 0)
                        break;
                c = i == ta->count ? 1 : j == tb->count ? -1 : name_cmp(&ea, &eb);
                if (c < 0)
                        r = one_side(w, &ea, STAMP_DIFF_REMOVED, depth);
                else if (c > 0)
                        r = one_side(w, &eb, STAMP_DIFF_ADDED, depth);
                else
                        r = both_sides(w, &ea, &eb, depth);
                i += c <= 0;
                j += c >= 0;
        }
        return r;
}

static int diff_dirs(struct walk *w, const struct stamp_id *a, const struct stamp_id *b,
                     int depth)
{
        struct stamp_tree_obj ta = { 0 }, tb = { 0 };
        int r;

        r = load(w, a, depth, &ta);
        if (r == 0)
                r = load(w, b, depth, &tb);
        if (r == 0)
                r = merge(w, &ta.t, &tb.t, depth);
        stamp_tree_obj_release(&ta);
        stamp_tree_obj_release(&tb);
        return r;
}

int stamp_diff_trees(struct stamp_store *s, const struct stamp_id *a, const struct stamp_id *b,
                     stamp_diff_fn fn, void *userdata, char **ret_bad_path)
{
        struct walk w = { .s = s, .fn = fn, .userdata = userdata, .cap = 256 };
        int r;

        w.path = calloc(1, w.cap);
        if (!w.path)
                return -ENOMEM;
        r = stamp_id_cmp(a, b) == 0 ? 0 : diff_dirs(&w, a, b, 0);
        if (r < 0 && ret_bad_path && w.bad_path)
                *ret_bad_path = w.bad_path;
        else
                free(w.bad_path);
        free(w.path);
        return r;
}
