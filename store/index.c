/* SPDX-License-Identifier: MIT */
#include "index.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "macro.h"

enum {
        Q_ADD_PACK,
        Q_ADD_OBJECT,
        Q_HAS_PACK,
        Q_FIND,
        Q_FILES_GET,
        Q_FILES_PUT,
        Q_SNAP_PUT,
        Q_SNAP_HAS,
        Q_SNAP_DEL,
        _Q_MAX,
};

static const char *const queries[_Q_MAX] = {
        [Q_ADD_PACK] = "INSERT OR IGNORE INTO packs(name, size, objects) VALUES(?, ?, ?)",
        [Q_ADD_OBJECT] = "INSERT OR IGNORE INTO objects(id, pack, offset, raw_len, stored_len, "
                         "type, comp) VALUES(?, (SELECT id FROM packs WHERE name = ?), ?, ?, ?, ?, ?)",
        [Q_HAS_PACK] = "SELECT 1 FROM packs WHERE name = ?",
        [Q_FIND] = "SELECT o.offset, o.raw_len, o.stored_len, o.type, o.comp, p.name "
                   "FROM objects o JOIN packs p ON p.id = o.pack WHERE o.id = ?",
        [Q_FILES_GET] = "SELECT content, xattrs, flags FROM files WHERE dev = ? AND ino = ? "
                        "AND size = ? AND mtime = ? AND ctime = ?",
        [Q_FILES_PUT] = "INSERT OR REPLACE INTO files(dev, ino, size, mtime, ctime, content, xattrs, "
                        "flags) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
        [Q_SNAP_PUT] = "INSERT OR REPLACE INTO snapshots(stamp, root) VALUES(?, ?)",
        [Q_SNAP_HAS] = "SELECT 1 FROM snapshots WHERE stamp = ?",
        [Q_SNAP_DEL] = "DELETE FROM snapshots WHERE stamp = ?",
};

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS packs("
        " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " size INTEGER NOT NULL, objects INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS objects("
        " id BLOB PRIMARY KEY, pack INTEGER NOT NULL, offset INTEGER NOT NULL,"
        " raw_len INTEGER NOT NULL, stored_len INTEGER NOT NULL,"
        " type INTEGER NOT NULL, comp INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS snapshots("
        " stamp TEXT PRIMARY KEY, root BLOB NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS files("
        " dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,"
        " mtime INTEGER NOT NULL, ctime INTEGER NOT NULL, content BLOB NOT NULL, xattrs BLOB,"
        " flags INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY(dev, ino)) WITHOUT ROWID;";

/*
 * One step per schema version, from the version in the key to the next.
 * Version 0 is a new database: the schema above creates the newest tables.
 */
static const char *const upgrades[STAMP_INDEX_SCHEMA] = {
        [0] = "PRAGMA user_version = 2",
        /* Rows of version 1 get flags 0: "not looked at", which snapshot.c never trusts for a database. */
        [1] = "ALTER TABLE files ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;"
              "PRAGMA user_version = 2",
};

struct stamp_index {
        sqlite3 *db;
        sqlite3_stmt *q[_Q_MAX];
};

static int sql_errno(int rc)
{
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        default:
                return -EIO;
        }
}

static int exec(struct stamp_index *ix, const char *sql)
{
        return sql_errno(sqlite3_exec(ix->db, sql, NULL, NULL, NULL));
}

const char *stamp_index_errmsg(struct stamp_index *ix)
{
        return sqlite3_errmsg(ix->db);
}

void stamp_index_free(struct stamp_index *ix)
{
        if (!ix)
                return;
        for (unsigned i = 0; i < _Q_MAX; i++)
                sqlite3_finalize(ix->q[i]);
        sqlite3_close_v2(ix->db);
        free(ix);
}

static int migrate(struct stamp_index *ix)
{
        sqlite3_stmt *st;
        int version, r;

        r = sql_errno(sqlite3_prepare_v2(ix->db, "PRAGMA user_version", -1, &st, NULL));
        if (r < 0)
                return r;
        r = sqlite3_step(st);
        version = r == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        sqlite3_finalize(st);
        if (version < 0)
                return sql_errno(r) ?: -EIO;
        if (version > STAMP_INDEX_SCHEMA)
                return -EOPNOTSUPP;
        if (version == STAMP_INDEX_SCHEMA)
                return 0;
        r = exec(ix, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        if (version == 0)
                r = exec(ix, schema);
        if (r == 0)
                r = exec(ix, upgrades[version]);
        if (r == 0)
                return exec(ix, "COMMIT");
        (void)exec(ix, "ROLLBACK");
        return r;
}

int stamp_index_open(const char *path, unsigned flags, struct stamp_index **ret)
{
        struct stamp_index *ix = calloc(1, sizeof(*ix));
        int oflags = SQLITE_OPEN_NOMUTEX;
        int r;

        if (!ix)
                return -ENOMEM;
        if (flags & STAMP_INDEX_READONLY)
                oflags |= SQLITE_OPEN_READONLY;
        else
                oflags |= SQLITE_OPEN_READWRITE | ((flags & STAMP_INDEX_CREATE) ? SQLITE_OPEN_CREATE : 0);
        r = sql_errno(sqlite3_open_v2(path, &ix->db, oflags, NULL));
        if (r < 0)
                goto fail;
        sqlite3_busy_timeout(ix->db, 30000);
        if (!(flags & STAMP_INDEX_READONLY)) {
                r = exec(ix, "PRAGMA journal_mode=WAL");
                if (r < 0)
                        goto fail;
        }
        r = exec(ix, "PRAGMA synchronous=FULL; PRAGMA mmap_size=67108864");
        if (r < 0)
                goto fail;
        if (!(flags & STAMP_INDEX_READONLY)) {
                r = migrate(ix);
                if (r < 0)
                        goto fail;
        }
        for (unsigned i = 0; i < _Q_MAX; i++) {
                r = sql_errno(sqlite3_prepare_v3(ix->db, queries[i], -1,
                                                 SQLITE_PREPARE_PERSISTENT, &ix->q[i], NULL));
                if (r < 0)
                        goto fail;
        }
        *ret = ix;
        return 0;
fail:
        stamp_index_free(ix);
        return r == -EIO ? -EBADMSG : r; /* a file that is not an index */
}

int stamp_index_begin(struct stamp_index *ix)
{
        return exec(ix, "BEGIN IMMEDIATE");
}

int stamp_index_commit(struct stamp_index *ix)
{
        return exec(ix, "COMMIT");
}

void stamp_index_rollback(struct stamp_index *ix)
{
        (void)exec(ix, "ROLLBACK");
}

/* Steps a statement to completion and resets it. */
static int step_done(sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);
        int r = rc == SQLITE_DONE ? 0 : (sql_errno(rc) ?: -EIO);

        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return r;
}

int stamp_index_add_pack(struct stamp_index *ix, const char *name, uint64_t size,
                         const struct stamp_pack_entry *e, size_t n)
{
        sqlite3_stmt *st = ix->q[Q_ADD_PACK];
        int r;

        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)n);
        r = step_done(st);
        if (r < 0)
                return r;
        st = ix->q[Q_ADD_OBJECT];
        for (size_t i = 0; i < n; i++) {
                sqlite3_bind_blob(st, 1, e[i].id.b, STAMP_ID_SIZE, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 3, (sqlite3_int64)e[i].offset);
                sqlite3_bind_int64(st, 4, e[i].raw_len);
                sqlite3_bind_int64(st, 5, e[i].stored_len);
                sqlite3_bind_int(st, 6, e[i].type);
                sqlite3_bind_int(st, 7, e[i].comp);
                r = step_done(st);
                if (r < 0)
                        return r;
        }
        return 0;
}

int stamp_index_has_pack(struct stamp_index *ix, const char *name)
{
        sqlite3_stmt *st = ix->q[Q_HAS_PACK];
        int rc;

        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : (sql_errno(rc) ?: -EIO);
}

int stamp_index_find(struct stamp_index *ix, const struct stamp_id *id, struct stamp_loc *ret)
{
        sqlite3_stmt *st = ix->q[Q_FIND];
        const unsigned char *name;
        int rc, r = 0;

        sqlite3_bind_blob(st, 1, id->b, STAMP_ID_SIZE, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                sqlite3_int64 off = sqlite3_column_int64(st, 0);
                sqlite3_int64 raw = sqlite3_column_int64(st, 1);
                sqlite3_int64 stored = sqlite3_column_int64(st, 2);
                name = sqlite3_column_text(st, 5);
                if (off < 0 || raw < 0 || raw > STAMP_OBJECT_MAX || stored < 0 ||
                    stored > STAMP_OBJECT_MAX || !name || strlen((const char *)name) >= 64) {
                        r = -EBADMSG;
                } else {
                        ret->id = *id;
                        ret->offset = (uint64_t)off;
                        ret->raw_len = (uint32_t)raw;
                        ret->stored_len = (uint32_t)stored;
                        ret->type = (uint8_t)sqlite3_column_int(st, 3);
                        ret->comp = (uint8_t)sqlite3_column_int(st, 4);
                        strcpy(ret->pack, (const char *)name);
                        r = 1;
                }
        } else if (rc != SQLITE_DONE)
                r = sql_errno(rc) ?: -EIO;
        sqlite3_reset(st);
        return r;
}

static uint8_t *column_copy(sqlite3_stmt *st, int col, size_t *ret_len)
{
        const void *p = sqlite3_column_blob(st, col);
        int n = sqlite3_column_bytes(st, col);
        uint8_t *copy;

        *ret_len = 0;
        if (!p || n <= 0)
                return NULL;
        copy = malloc((size_t)n);
        if (copy) {
                memcpy(copy, p, (size_t)n);
                *ret_len = (size_t)n;
        }
        return copy;
}

int stamp_index_files_get(struct stamp_index *ix, uint64_t dev, uint64_t ino, uint64_t size,
                          int64_t mtime_ns, int64_t ctime_ns, struct stamp_files_row *ret)
{
        sqlite3_stmt *st = ix->q[Q_FILES_GET];
        int rc, r = 0;

        sqlite3_bind_int64(st, 1, (sqlite3_int64)dev);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)ino);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)size);
        sqlite3_bind_int64(st, 4, mtime_ns);
        sqlite3_bind_int64(st, 5, ctime_ns);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                struct stamp_files_row row;
                row.content = column_copy(st, 0, &row.content_len);
                row.xattrs = column_copy(st, 1, &row.xattrs_len);
                if (!row.content || (sqlite3_column_bytes(st, 1) > 0 && !row.xattrs)) {
                        free(row.content);
                        free(row.xattrs);
                        r = row.content ? -ENOMEM : 0; /* an empty content is a miss */
                } else {
                        row.flags = (unsigned)sqlite3_column_int(st, 2);
                        *ret = row;
                        r = 1;
                }
        } else if (rc != SQLITE_DONE)
                r = sql_errno(rc) ?: -EIO;
        sqlite3_reset(st);
        return r;
}

int stamp_index_files_put(struct stamp_index *ix, uint64_t dev, uint64_t ino, uint64_t size,
                          int64_t mtime_ns, int64_t ctime_ns, const uint8_t *content,
                          size_t len, const uint8_t *xattrs, size_t xattrs_len, unsigned flags)
{
        sqlite3_stmt *st = ix->q[Q_FILES_PUT];

        sqlite3_bind_int64(st, 1, (sqlite3_int64)dev);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)ino);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)size);
        sqlite3_bind_int64(st, 4, mtime_ns);
        sqlite3_bind_int64(st, 5, ctime_ns);
        sqlite3_bind_blob(st, 6, content, (int)len, SQLITE_STATIC);
        if (xattrs_len)
                sqlite3_bind_blob(st, 7, xattrs, (int)xattrs_len, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, 7);
        sqlite3_bind_int(st, 8, (int)flags);
        return step_done(st);
}

int stamp_index_snapshot_put(struct stamp_index *ix, const char *stamp,
                             const struct stamp_id *root)
{
        sqlite3_stmt *st = ix->q[Q_SNAP_PUT];

        sqlite3_bind_text(st, 1, stamp, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, root->b, STAMP_ID_SIZE, SQLITE_STATIC);
        return step_done(st);
}

int stamp_index_snapshot_del(struct stamp_index *ix, const char *stamp)
{
        sqlite3_stmt *st = ix->q[Q_SNAP_DEL];

        sqlite3_bind_text(st, 1, stamp, -1, SQLITE_STATIC);
        return step_done(st);
}

int stamp_index_snapshot_has(struct stamp_index *ix, const char *stamp)
{
        sqlite3_stmt *st = ix->q[Q_SNAP_HAS];
        int rc;

        sqlite3_bind_text(st, 1, stamp, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : (sql_errno(rc) ?: -EIO);
}

int stamp_index_counts(struct stamp_index *ix, uint64_t *ret_packs, uint64_t *ret_objects,
                       uint64_t *ret_pack_bytes)
{
        sqlite3_stmt *st;
        int rc;

        rc = sqlite3_prepare_v2(ix->db,
                                "SELECT (SELECT count(*) FROM packs), (SELECT count(*) FROM objects),"
                                " (SELECT coalesce(sum(size), 0) FROM packs)",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sql_errno(rc) ?: -EIO;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret_packs = (uint64_t)sqlite3_column_int64(st, 0);
                *ret_objects = (uint64_t)sqlite3_column_int64(st, 1);
                *ret_pack_bytes = (uint64_t)sqlite3_column_int64(st, 2);
        }
        sqlite3_finalize(st);
        return rc == SQLITE_ROW ? 0 : (sql_errno(rc) ?: -EIO);
}

int stamp_index_checkpoint(struct stamp_index *ix)
{
        return exec(ix, "PRAGMA wal_checkpoint(TRUNCATE)");
}

int stamp_index_tune_reader(struct stamp_index *ix)
{
        return exec(ix, "PRAGMA cache_size=-512; PRAGMA mmap_size=8388608");
}
