/* SPDX-License-Identifier: MIT */
/*
 * Store statistics: sizes, dedup, and per snapshot the bytes only it holds
 * (what forgetting it alone, then gc, would free). One reachability walk
 * per snapshot into a scratch set (walk.h) that counts, per object, the
 * snapshots that hold it: memory is bounded whatever the store's size.
 *
 * "Stored bytes" of an object are what it takes in its pack: its stored
 * (compressed) length, its record header and its pack-index entry.
 */
#pragma once

#include <stdint.h>

#include "record.h"
#include "store.h"

struct stamp_stats_snapshot {
        char stamp[STAMP_STAMP_LEN + 1];
        uint64_t logical_bytes;   /* file sizes summed (from its record) */
        uint64_t objects;         /* objects it references */
        uint64_t stored_bytes;    /* their stored bytes */
        uint64_t exclusive_objects; /* objects no other snapshot references */
        uint64_t exclusive_bytes;   /* their stored bytes */
};

struct stamp_stats {
        uint64_t snapshots;
        uint64_t logical_bytes;     /* summed over snapshots */
        uint64_t packs, pack_bytes; /* indexed packs and their sizes */
        uint64_t objects, chunks;   /* indexed objects, data chunks among them */
        uint64_t referenced_objects, referenced_bytes; /* reachable from some snapshot */
        uint64_t unused_bytes;      /* pack bytes not needed by any snapshot */
        uint64_t unreferenced_packs;/* indexed packs holding nothing reachable */
        uint64_t unindexed_packs;   /* pack files on disk the index does not list */
        uint64_t not_file_packs;    /* entries with a pack's name that are no files (symlinks...) */
        uint64_t missing_objects;   /* reachable, but not in the index */
        struct stamp_stats_snapshot *snap; /* one per snapshot, in stamp order */
        size_t n_snap;
};

/*
 * Computes the statistics. Takes no lock; a snapshot forgotten meanwhile
 * is left out. @progress (may be NULL) is called as snapshots are walked.
 * On -EBADMSG/-ENOENT (a tree that cannot be read), @ret_bad names the
 * snapshot. Caller releases *ret with stamp_stats_release().
 */
int stamp_stats_compute(struct stamp_store *s,
                        void (*progress)(uint64_t done, uint64_t total, void *userdata),
                        void *userdata, struct stamp_stats *ret,
                        char ret_bad[STAMP_STAMP_LEN + 1]);
void stamp_stats_release(struct stamp_stats *st);
