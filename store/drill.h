/* SPDX-License-Identifier: MIT */
/*
 * Restore drills: prove that a snapshot restores, without touching the live
 * data. A drill restores the snapshot into an empty scratch directory and
 * checks the copy, in four timed steps:
 *
 *  1. validate  the snapshot at the metadata level (with read_data: every
 *               chunk read back and re-hashed), as `stamp restore` does
 *               first; an invalid snapshot is not restored (a real restore
 *               would refuse it), and the other steps do not run;
 *  2. restore   it into the scratch directory with stamp_restore(), if its
 *               files fit in the free space there;
 *  3. check     every SQLite database (PRAGMA integrity_check) and every
 *               *.json file of the restored copy, read from disk;
 *  4. compare   every entry of the snapshot with the copy: type, mode, owner
 *               (when root: only root restores owners), size, modification
 *               time, symlink target, device number, hardlink groups,
 *               extended attributes, and content byte for byte (the
 *               snapshot's side read through the store reader); entries of
 *               the copy the snapshot lacks are reported too.
 *
 * Steps 3 and 4 run only after a restore that succeeded. Every problem has
 * a kind: validate's (stamp_problem_name()), or one of
 *   no_space        the snapshot's files do not fit in the scratch
 *                   filesystem's free space: not restored (a restore
 *                   that fills the disk would fail snapshots beside it)
 *   restore_failed  the restore stopped: the path it stopped at
 *   db_integrity_check_failed, json_invalid   (as validate names them)
 *   missing, unexpected, type_mismatch, mode_mismatch, owner_mismatch,
 *   size_mismatch, mtime_mismatch, symlink_mismatch, rdev_mismatch,
 *   hardlink_mismatch, xattr_mismatch, content_mismatch
 *   read_error      something could not be read to be checked
 *
 * The drill log, STORE/drill.log, keeps one line per drill (record.h,
 * FORMAT.md "drill.log").
 *
 * Locking: none. A drill only reads the store (like restore and validate,
 * it runs beside snapshots, gc and mounts) and appends to drill.log.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "store.h"

/* Problems and warnings a drill keeps (in its entry); more are only counted. */
#define STAMP_DRILL_PROBLEMS_MAX 1000

/* The name of a step: "validate", "restore", "check", "compare". */
const char *stamp_drill_step_name(enum stamp_drill_step step);

/* Called now and then: the step, its files and bytes so far, the current path. */
typedef void (*stamp_drill_progress_fn)(enum stamp_drill_step step, uint64_t files,
                                        uint64_t bytes, const char *path, void *userdata);

struct stamp_drill_options {
        const char *stamp;
        bool read_data;
        stamp_drill_progress_fn progress; /* may be NULL */
        void *userdata;
};

/*
 * Runs a drill of snapshot @o->stamp into the empty directory open at
 * @scratch_fd, filling @ret (caller releases it with
 * stamp_drill_entry_release(); the caller sets scratch, kept and host).
 * Returns 0 once the drill ran, whatever it found (ret->pass), or a
 * negative errno when it could not go on (-ENOMEM).
 */
int stamp_drill_run(struct stamp_store *s, int scratch_fd, const struct stamp_drill_options *o,
                    struct stamp_drill_entry *ret);

/*
 * Step 3 alone: checks every SQLite database and JSON file below the
 * directory open at @dirfd, adding problems to @e (paths relative to
 * @dirfd) and counting e->databases and e->json_files. 0, or -ENOMEM.
 */
int stamp_drill_check_tree(int dirfd, struct stamp_drill_entry *e);

/*
 * Step 4 alone: compares the directory open at @dirfd (a restored copy)
 * with snapshot @stamp, adding a problem to @e for every difference.
 * 0, or -ENOMEM.
 */
int stamp_drill_compare_tree(struct stamp_store *s, const char *stamp, int dirfd,
                             struct stamp_drill_entry *e);

/*
 * The default scratch directory: a new STORE/tmp/drill-XXXXXX, mode 0700,
 * on the store's filesystem and private to the store's owner. Its fd (the
 * return value) holds an flock() on it until closed; scratch directories
 * whose lock is free belonged to drills that died, and are removed first
 * (*ret_stale says how many). *ret_path: its path (caller frees).
 */
int stamp_drill_scratch_new(struct stamp_store *s, char **ret_path, unsigned *ret_stale);

/*
 * Renames the default scratch directory @path (from stamp_drill_scratch_new)
 * to @path + "-kept", which later drills leave alone. *ret_path: the new
 * path (caller frees).
 */
int stamp_drill_scratch_keep(const char *path, char **ret_path);

/*
 * Removes @name in @dirfd and everything below it. Never follows a symlink;
 * directories the copy made read-only are made writable first.
 */
int stamp_drill_remove_tree(int dirfd, const char *name);
/* Removes everything in the directory open at @fd, the same way. */
int stamp_drill_empty_dir(int fd);

/*
 * Appends @e as one line to STORE/drill.log, durably: the file is opened
 * O_APPEND (created 0600, and then its directory fsynced), the line is
 * written in one write() and fsynced. A torn last line (a crash in an
 * earlier append) is ended first, so it cannot swallow this one.
 */
int stamp_drill_log_append(struct stamp_store *s, const struct stamp_drill_entry *e);

/*
 * Called for each line of drill.log, in order (blank lines skipped), with
 * its number (from 1) and the parsed entry, or NULL and why it does not
 * parse (-EBADMSG damaged, -EOPNOTSUPP a newer version, -E2BIG too long).
 * A non-zero return stops the reading and is returned.
 */
typedef int (*stamp_drill_log_fn)(unsigned long line, const struct stamp_drill_entry *e, int error,
                                  void *userdata);

/* Reads drill.log: 0 at its end, -ENOENT if there is none. */
int stamp_drill_log_read(struct stamp_store *s, stamp_drill_log_fn fn, void *userdata);
