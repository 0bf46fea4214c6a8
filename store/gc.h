/* SPDX-License-Identifier: MIT */
/*
 * Garbage collection: deletes the objects no snapshot references and
 * rewrites packs that are mostly unused, while snapshots are taken and the
 * store is mounted. The design, its locks and every crash point are in
 * FORMAT.md, "Garbage collection and concurrency".
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "record.h"
#include "store.h"

/* The phases, in order. */
enum {
        STAMP_GC_PHASE_MARK,    /* marking what the snapshots reference */
        STAMP_GC_PHASE_PLAN,    /* deciding per pack */
        STAMP_GC_PHASE_REWRITE, /* copying live objects out of mostly unused packs */
        STAMP_GC_PHASE_WAIT,    /* waiting for the store lock (holder says who has it) */
        STAMP_GC_PHASE_COMMIT,  /* under the store lock: marking new snapshots, committing */
        STAMP_GC_PHASE_DELETE,  /* deleting pack files */
        _STAMP_GC_PHASE_MAX,
};

struct stamp_gc_progress {
        int phase;
        uint64_t done, total; /* snapshots marked, packs rewritten or deleted, of total */
        uint64_t objects;     /* objects marked so far */
        const char *holder;   /* WAIT: the lock holder ("pid 12: stamp snapshot"); borrowed */
};

struct stamp_gc_options {
        bool dry_run;            /* plan only: change nothing */
        unsigned max_unused_pct; /* rewrite a pack with more unused than this (0..100) */
        int lock_timeout_s;      /* wait this long for the store lock before committing */
        /* Called at each phase change and every few thousand objects; may be NULL. */
        void (*progress)(const struct stamp_gc_progress *p, void *userdata);
        /*
         * Test hook, called at named points of the run (FORMAT.md lists
         * them), so tests can stop or kill gc exactly there; may be NULL.
         */
        void (*hook)(const char *point, void *userdata);
        void *userdata;
};

struct stamp_gc_result {
        uint64_t snapshots;        /* records marked before the lock */
        uint64_t new_snapshots;    /* records committed meanwhile, marked under the lock */
        uint64_t live_objects;     /* objects reachable from them */
        uint64_t candidates, candidate_bytes; /* indexed, unreachable when planned */
        uint64_t dead_objects, dead_bytes;    /* deleted from the index */
        uint64_t packs_before, bytes_before;  /* indexed packs when planned */
        uint64_t packs_deleted, packs_rewritten; /* pack files removed (planned action) */
        uint64_t packs_kept_back;  /* planned for removal, kept: a concurrent snapshot uses them */
        uint64_t packs_written, objects_copied, bytes_written;
        uint64_t files_dropped;    /* files-cache rows that named dead objects */
        uint64_t pending_removed;  /* packs an interrupted gc had left behind, removed */
        uint64_t bytes_freed;      /* bytes of packs removed minus bytes of packs written */
        bool low_space;            /* the disk was (nearly) full: no pack was rewritten */
        uint64_t reserve_released; /* bytes of the store's reserve given back for this run */
        bool reserve_made;         /* the reserve was missing and is there again */
        bool lock_timed_out;       /* -EBUSY: the store lock was not free in time */
        /* dry run: what a real run would remove and write, by the plan */
        uint64_t plan_delete, plan_rewrite, plan_free_bytes;
        /* On a refusal (-EUCLEAN, -EBADMSG): what is wrong. */
        char bad_stamp[STAMP_STAMP_LEN + 1]; /* the snapshot, or "" */
        struct stamp_id bad_id;              /* the object, or zero */
        uint64_t missing;                    /* referenced objects the index lacks */
};

/*
 * Runs a gc. The caller holds the gc lock (stamp_store_gc_lock()) and not
 * the store lock; gc takes the store lock itself, for the commit only.
 *
 * Returns 0, or: -EUCLEAN if a snapshot references objects the index does
 * not have (a stale or damaged index: nothing is deleted; run reindex);
 * -EBADMSG if a record, tree or chunk list cannot be read (nothing is
 * deleted: what it references is unknown); -EBUSY if the store lock was
 * not free within the timeout (new packs stay, nothing is deleted: the
 * store is consistent). *ret is filled in every case.
 */
int stamp_gc_run(struct stamp_store *s, const struct stamp_gc_options *o,
                 struct stamp_gc_result *ret);

/*
 * Finishes the deletions an interrupted gc listed in `gc-pending`: each
 * listed pack that @ix no longer lists is deleted (the gc's index commit
 * happened); one it still lists is left (it did not). With @ix NULL every
 * listed pack is deleted: the index is being rebuilt from the packs, and
 * the listed packs hold only dead objects and copies (FORMAT.md). Then
 * `gc-pending` is removed. Requires the store lock. *ret_removed counts
 * the packs deleted.
 */
int stamp_gc_pending_complete(struct stamp_store *s, struct stamp_index *ix,
                              uint64_t *ret_removed);
