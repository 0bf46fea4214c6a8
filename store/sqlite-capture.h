/* SPDX-License-Identifier: MIT */
/*
 * Consistent copies of live SQLite databases. A database that a service
 * keeps writing cannot be copied byte by byte: the copy may be torn between
 * two transactions, and in WAL mode the newest commits live in the -wal
 * file, not in the database file. This module asks SQLite itself for one
 * committed state, through the online backup API, written to a temporary
 * file that the snapshot then reads and chunks like any other file.
 *
 * One of the two store modules that include <sqlite3.h> (index.c, the
 * store's own index, is the other); no SQLite type leaves this module.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of the database header; its first 16 are "SQLite format 3\0". Frozen (SQLite's). */
#define STAMP_SQLITE_HEADER_SIZE 100
#define STAMP_SQLITE_MAGIC_SIZE 16

/* True if @head (@len bytes of a file's start) begins with the SQLite 3 magic. */
bool stamp_capture_is_sqlite(const uint8_t *head, size_t len);

struct stamp_capture_info {
        bool wal;          /* the database is in WAL mode */
        unsigned restarts; /* backups restarted because a writer committed (rollback mode) */
        bool pinned;       /* copied under one read transaction from start to end */
        uint64_t size;     /* bytes of the copy */
};

/*
 * Copies one committed state of the database at @path into a new file in
 * the directory @tmp_dir, reopens that file read-only and unlinks it.
 *
 * The source is opened with SQLITE_OPEN_READONLY and never written. In WAL
 * mode the copy runs inside one read transaction, which pins a snapshot
 * that includes every commit in the -wal file and never blocks writers. In
 * rollback-journal mode it copies STEP pages per read lock, so a writer
 * waits at most for one step; a commit restarts the copy, and after a few
 * restarts it copies under one read lock (writers then wait for the whole
 * copy). Like any SQLite reader, opening a WAL database that nobody has
 * open creates its empty -wal and -shm files.
 *
 * Returns 0 with *ret_fd (positioned at 0; the caller closes it), or 1 if
 * the database could not be captured (locked, corrupt, not a database, a
 * hot journal to roll back, cannot be opened read-only): then @reason says
 * why, for the user, and the caller copies the file as plain bytes. A
 * negative errno is a problem of the temporary file (@tmp_dir: -ENOSPC,
 * -EIO, ...), i.e. of the store. The temporary file is removed on every
 * path. Thread-safe: each call uses its own connections.
 */
int stamp_sqlite_capture(const char *path, const char *tmp_dir, int *ret_fd,
                         struct stamp_capture_info *ret_info, char *reason, size_t reason_size);
