/* SPDX-License-Identifier: MIT */
/*
 * Consistent copies of live SQLite databases. A database that a service
 * keeps writing cannot be copied byte by byte: the copy may be torn between
 * two transactions, and in WAL mode the newest commits live in the -wal
 * file, not in the database file. This module asks SQLite itself for one
 * committed state and passes its bytes on, to be chunked like a file's.
 *
 * One of the three store modules that include <sqlite3.h> (with index.c,
 * the store's own index, and dbcheck.c, the integrity checks); no SQLite
 * type leaves this module.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of the database header; its first 16 are "SQLite format 3\0". Frozen (SQLite's). */
#define STAMP_SQLITE_HEADER_SIZE 100

/* True if @head (@len bytes of a file's start) begins with the SQLite 3 magic. */
bool stamp_capture_is_sqlite(const uint8_t *head, size_t len);

struct stamp_capture_info {
        bool wal;          /* the database is in WAL mode */
        bool direct;       /* streamed from the database file itself (WAL mode, empty -wal) */
        unsigned restarts; /* backups restarted because a writer committed (rollback mode) */
        bool pinned;       /* read under one read transaction from start to end */
        uint64_t size;     /* bytes of the copy */
};

/* Receives the copy's bytes, in order. A negative errno stops the capture and is returned. */
typedef int (*stamp_capture_write_fn)(void *userdata, const void *buf, size_t len);

/*
 * Passes one committed state of the database at @path to @fn, as the bytes
 * of a database file.
 *
 * The source is opened with SQLITE_OPEN_READONLY and never written. In WAL
 * mode everything happens inside one read transaction, which pins a
 * snapshot that includes every commit in the -wal file and never blocks
 * writers: if the -wal is empty, the database file itself is that snapshot
 * and is streamed as it is; otherwise SQLite's online backup API copies it
 * into a temporary file in @tmp_dir, which is then streamed and removed.
 * In rollback-journal mode the backup copies STEP pages per read lock, so a
 * writer waits at most for one step; a commit restarts the copy, and after
 * a few restarts it copies under one read lock (writers then wait for the
 * whole copy). Like any SQLite reader, opening a WAL database that nobody
 * has open creates its empty -wal and -shm files.
 *
 * Returns 0 when the whole copy was passed to @fn; 1 if the database could
 * not be captured (locked, corrupt, not a database, a hot journal to roll
 * back, cannot be opened read-only): then @reason says why, for the user,
 * and whatever @fn already received must be discarded; a negative errno if
 * @fn failed or the temporary file did (-ENOSPC, -EIO: the store's
 * problem). The temporary file is removed on every path. Thread-safe: each
 * call uses its own connections; @fn runs in the calling thread.
 */
int stamp_sqlite_capture(const char *path, const char *tmp_dir, stamp_capture_write_fn fn,
                         void *userdata, struct stamp_capture_info *ret_info, char *reason,
                         size_t reason_size);
