/* SPDX-License-Identifier: MIT */
/*
 * Taking a snapshot: walk the sources, chunk and store what changed, write
 * the trees bottom-up, then commit the snapshot record.
 *
 * Error classes: a problem with a source file (unreadable, vanished) is a
 * per-file error listed in the record, and the snapshot is still committed;
 * a problem with the store (write failure, full disk, corrupt index) is
 * fatal and nothing is committed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "store.h"
#include "verify.h"

struct stamp_progress {
        uint64_t files;
        uint64_t dirs;
        uint64_t bytes;     /* logical bytes seen */
        uint64_t read_bytes;/* bytes read from sources (cache misses) */
        uint64_t new_bytes; /* raw bytes of new objects */
        const char *path;   /* the entry being worked on; borrowed */
};

typedef void (*stamp_progress_fn)(const struct stamp_progress *p, void *userdata);

struct stamp_snapshot_options {
        const char *const *sources;
        size_t n_sources;
        const char *const *tags;
        size_t n_tags;
        const char *const *excludes; /* fnmatch() patterns; see FORMAT.md */
        size_t n_excludes;
        bool one_file_system;
        unsigned threads;            /* 0: one per online CPU */
        const char *tool_version;
        stamp_progress_fn progress;  /* called at most ~10 times a second */
        void *userdata;
        /*
         * Unless @no_validate, the packs written are read back, every new
         * object re-hashed and every new tree decoded before the record is
         * committed; a problem (reported through @problem) fails the
         * snapshot with -EBADMSG and no record is written.
         */
        bool no_validate;
        stamp_problem_fn problem;
};

/*
 * Takes a snapshot. The caller holds the store's write lock and has run
 * stamp_store_recover(). On success the record is durable and *ret holds it
 * (caller releases with stamp_record_release()); ret->n_errors tells whether
 * some source entries could not be read. Sources that do not exist, or two
 * sources with the same basename, fail with -ENOENT / -EEXIST before
 * anything is written (@ret_bad names the source, borrowed from @o).
 */
int stamp_snapshot_create(struct stamp_store *s, const struct stamp_snapshot_options *o,
                          struct stamp_record *ret, const char **ret_bad);
