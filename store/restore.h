/* SPDX-License-Identifier: MIT */
/*
 * Restoring a snapshot into a live directory tree: makes TARGET's contents
 * equal to the snapshot (or to one path of it) in place.
 *
 * Safety rules, each kept by construction:
 *  - TARGET itself is never unlinked or renamed; a mount point below it
 *    (a directory or a single bind-mounted file) is emptied and refilled or
 *    rewritten in place, never removed (EBUSY is expected and handled).
 *  - Nothing outside TARGET is written: every file operation is relative to
 *    a directory fd opened with O_NOFOLLOW, symlinks found in TARGET are
 *    removed or replaced as entries, never followed; names from the
 *    snapshot are re-checked (no '/', no '.', no '..', no NUL).
 *  - A file is replaced by writing a temporary file beside it and renaming
 *    it over the old one, so a crash leaves either version, never a torn
 *    file; the next run removes leftover temporaries.
 *  - The store's own directory, if met below TARGET, is refused.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* What happened to one path, for listings (dry runs) and verbose output. */
enum stamp_restore_action {
        STAMP_RESTORE_WRITE,   /* a file, link or special written (new or replaced) */
        STAMP_RESTORE_MKDIR,   /* a directory created */
        STAMP_RESTORE_REMOVE,  /* an entry not in the snapshot removed */
        STAMP_RESTORE_META,    /* only metadata changed */
        STAMP_RESTORE_KEEP_MOUNT, /* a mount point not in the snapshot: emptied, kept */
};

struct stamp_restore_db {
        char *path;         /* relative to TARGET */
        bool integrity_ok;
        char message[256];  /* SQLite's first complaint, or an error */
        unsigned sidecars_removed;
};

struct stamp_restore_stats {
        uint64_t files_restored;  /* regular files written */
        uint64_t files_kept;      /* regular files already equal, left in place */
        uint64_t files_removed;   /* entries removed (a directory counts its contents) */
        uint64_t dirs_created;
        uint64_t others_restored; /* symlinks, hardlinks, devices, fifos, sockets */
        uint64_t meta_updated;
        uint64_t bytes_written;
        uint64_t warnings;
        /*
         * On failure: the path the error is about (relative to TARGET, "."
         * for TARGET itself), or NULL; freed by stamp_restore_stats_release().
         */
        char *error_path;
        bool store_error;         /* on failure: the store could not give the data */
        struct stamp_restore_db *dbs;
        size_t n_dbs;
        bool dbs_ok;              /* every restored database passed integrity_check */
};

typedef void (*stamp_restore_event_fn)(enum stamp_restore_action a, const char *path,
                                       void *userdata);
typedef void (*stamp_restore_warning_fn)(const char *path, const char *what, void *userdata);
typedef void (*stamp_restore_progress_fn)(const struct stamp_restore_stats *st, const char *path,
                                          void *userdata);

struct stamp_restore_options {
        const char *stamp;
        const char *subpath;     /* restore only this path of the snapshot; NULL: all */
        bool dry_run;            /* change nothing; report what would be done */
        bool checksum;           /* compare the content of files whose size and mtime match */
        unsigned threads;        /* file writers; 0: a default */
        /*
         * Leave restored databases unchecked (integrity_ok true, message
         * "not checked"): for a caller that checks them itself (stamp drill).
         * Stale sidecars are still removed.
         */
        bool no_db_check;
        stamp_restore_event_fn event;
        stamp_restore_warning_fn warning;
        stamp_restore_progress_fn progress;
        void *userdata;
};

/*
 * Restores into the directory open at @target_fd (-1 in a dry run: a target
 * that does not exist yet, so everything would be created). On failure returns a
 * negative errno and puts "path: reason" into @err; TARGET may then be
 * partly restored, and running the restore again completes it. Caller
 * frees @st with stamp_restore_stats_release().
 */
int stamp_restore(struct stamp_store *s, int target_fd, const struct stamp_restore_options *o,
                  struct stamp_restore_stats *st, char *err, size_t err_size);
void stamp_restore_stats_release(struct stamp_restore_stats *st);

/*
 * Checks a database file on disk (relative to @dirfd, not following
 * symlinks) with PRAGMA integrity_check, without creating any sidecar:
 * 1 sound, 0 not (with @msg), negative errno if it cannot be read.
 */
int stamp_sqlite_check_file(int dirfd, const char *name, char *msg, size_t msg_size);
