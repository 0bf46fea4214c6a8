/* SPDX-License-Identifier: MIT */
/*
 * Reachability walks: everything a snapshot's root tree names, down to the
 * data chunks (trees, chunk lists of every level, chunks), recorded in the
 * scratch set "seen" of an index connection (index.h). gc marks with them,
 * stats counts with them.
 *
 * Each object is walked at most once per pass: an object the pass has
 * already reached is skipped with everything below it, so a second
 * snapshot that shares most of its trees with the first costs only what
 * differs. Trees still to walk wait in the scratch stack, not in memory,
 * so memory does not grow with the store or the tree's shape.
 */
#pragma once

#include <stdint.h>

#include "store.h"

struct stamp_walk {
        struct stamp_store *s;
        struct stamp_index *ix; /* a connection with a scratch attached; no transaction open */
        int64_t pass;           /* see stamp_index_seen_visit() */
        /* Out, accumulated over walks: */
        uint64_t objects;       /* objects newly reached by this pass */
        uint64_t bytes;         /* their stored bytes (as the index says) */
        uint64_t trees;         /* trees read */
        uint64_t missing;       /* reached, but not in the index */
        struct stamp_id first_missing; /* the first of them */
        struct stamp_id bad;    /* the object that failed the walk */
        /*
         * Called for each object this pass reaches for the first time, with
         * the stored length the index gives (-1: not indexed); may be NULL.
         * A negative return stops the walk with that error.
         */
        int (*news)(const struct stamp_id *id, int64_t stored_len, void *userdata);
        /* Called every few thousand objects; may be NULL. */
        void (*progress)(const struct stamp_walk *w, void *userdata);
        void *userdata;
};

/*
 * Walks everything below @root in pass w->pass. A data chunk missing from
 * the index is counted in w->missing; a tree or chunk list that cannot be
 * read fails the walk (its error, w->bad naming it): what it names is
 * unknown.
 */
int stamp_walk_root(struct stamp_walk *w, const struct stamp_id *root);

/*
 * Marks @root and every tree below it (not the chunk lists and chunks of
 * their files) reached in pass w->pass, without counting them or calling
 * news: a later stamp_walk_root() in that pass skips each of those trees
 * with everything below it. stamp copy marks so the trees of a snapshot
 * the destination already holds, and then walks only what changed.
 */
int stamp_walk_mark_trees(struct stamp_walk *w, const struct stamp_id *root);
