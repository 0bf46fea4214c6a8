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

/* How files that start with the SQLite header are read. */
enum stamp_sqlite_mode {
        /*
         * Through SQLite's online backup API (sqlite-capture.h): one committed
         * state, -wal content included. Their -wal, -shm and -journal files
         * are then not stored. A database that cannot be captured is copied
         * as plain bytes, with a warning in the record.
         */
        STAMP_SQLITE_AUTO = 0,
        STAMP_SQLITE_COPY, /* as plain bytes, like any other file */
};

/*
 * A file made of a command's output (`--stdin-from`). @open starts the
 * producer and returns a readable fd, which the snapshot reads to its end
 * (in bounded memory) and closes; then @close is called (always, once @open
 * succeeded) and returns 0 if the producer succeeded, or a negative errno
 * that fails the snapshot: a failed export never looks like a good backup.
 */
typedef int (*stamp_stream_open_fn)(void *userdata);
typedef int (*stamp_stream_close_fn)(void *userdata);

struct stamp_snapshot_stream {
        /*
         * Where the file goes, relative to the snapshot's root: components
         * are valid names (no empty, "." or ".." ones); missing directories
         * are made (0700). It must not exist in the sources.
         */
        const char *path;
        const char *command; /* for the record */
        stamp_stream_open_fn open;
        stamp_stream_close_fn close;
        void *userdata;              /* for progress, problem and before_commit */
};

/*
 * Called once every source is read and all data is durable, just before
 * the record is committed (the snapshot is complete but does not exist
 * yet). It may add to the record. A negative return fails the snapshot.
 */
typedef int (*stamp_before_commit_fn)(struct stamp_record *rec, void *userdata);

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
        void *userdata;              /* for progress, problem and before_commit */
        /*
         * Unless @no_validate, the packs written are read back, every new
         * object re-hashed and every new tree decoded before the record is
         * committed; a problem (reported through @problem) fails the
         * snapshot with -EBADMSG and no record is written.
         */
        bool no_validate;
        stamp_problem_fn problem;
        enum stamp_sqlite_mode sqlite;
        const struct stamp_snapshot_stream *stream; /* NULL: none */
        stamp_before_commit_fn before_commit;       /* NULL: none */
};

/*
 * Takes a snapshot. The caller holds the store's write lock and has run
 * stamp_store_recover(). On success the record is durable and *ret holds it
 * (caller releases with stamp_record_release()); ret->n_errors tells whether
 * some source entries could not be read. Sources that do not exist, or two
 * sources with the same basename, or one of several without a name of its
 * own ("/", ".."), fail with -ENOENT / -EEXIST / -EDOM before anything is
 * written (@ret_bad names the source, borrowed from @o); so do
 * a stream path that is malformed (-EINVAL), exists in the sources
 * (-EEXIST) or lies below a non-directory (-ENOTDIR), with @ret_bad set to
 * @o->stream->path. A stream whose directory is excluded or unreadable
 * cannot be placed: -ENOTDIR, nothing committed, @ret_bad set likewise.
 */
int stamp_snapshot_create(struct stamp_store *s, const struct stamp_snapshot_options *o,
                          struct stamp_record *ret, const char **ret_bad);
