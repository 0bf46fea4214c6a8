/* SPDX-License-Identifier: MIT */
/*
 * index.db: the SQLite index of a store. One of the two modules that
 * include <sqlite3.h> (sqlite-capture.c, which reads the live databases of
 * a snapshot's sources, is the other). It maps object ids to their place
 * in a pack, lists packs and snapshots, and holds the files cache. It is a
 * cache of what the packs and snapshot records say: `stamp reindex` can
 * rebuild it from them.
 *
 * One connection per thread: a struct stamp_index must never be used by two
 * threads at once. WAL mode, synchronous=FULL, a busy timeout.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "pack.h"

/*
 * Schema version in PRAGMA user_version. History: 1 = first; 2 = files.flags
 * (whether a cached file is an SQLite database, and how it was stored).
 */
#define STAMP_INDEX_SCHEMA 2

struct stamp_index;

/* Where an object lives. */
struct stamp_loc {
        struct stamp_id id;
        uint8_t type;
        uint8_t comp;
        uint32_t raw_len;
        uint32_t stored_len;
        uint64_t offset; /* of the record header */
        char pack[64];   /* the pack's object name */
};

enum {
        STAMP_INDEX_CREATE = 1u << 0,
        STAMP_INDEX_READONLY = 1u << 1,
};

/* Opens (and with CREATE, creates) the index at @path. Caller frees. */
int stamp_index_open(const char *path, unsigned flags, struct stamp_index **ret);
void stamp_index_free(struct stamp_index *ix);
/* The last SQLite error message of this connection (for debug output). */
const char *stamp_index_errmsg(struct stamp_index *ix);

int stamp_index_begin(struct stamp_index *ix);
int stamp_index_commit(struct stamp_index *ix);
void stamp_index_rollback(struct stamp_index *ix);

/* Records a durable pack and its objects. Objects already indexed keep their place. */
int stamp_index_add_pack(struct stamp_index *ix, const char *name, uint64_t size,
                         const struct stamp_pack_entry *e, size_t n);
/* 1 if the pack is indexed, 0 if not. */
int stamp_index_has_pack(struct stamp_index *ix, const char *name);
/* 1 and *ret if @id is indexed, 0 if not. */
int stamp_index_find(struct stamp_index *ix, const struct stamp_id *id, struct stamp_loc *ret);

/*
 * The files cache. A row holds a file's encoded content reference and its
 * encoded xattrs (a change to either bumps ctime, part of the key), and
 * flags saying how the content was made.
 */
struct stamp_files_row {
        uint8_t *content; /* caller frees */
        size_t content_len;
        uint8_t *xattrs;  /* caller frees; NULL if none */
        size_t xattrs_len;
        unsigned flags;   /* STAMP_FILES_* */
};

/* Files-cache row flags. Frozen. */
#define STAMP_FILES_CHECKED (1u << 0)  /* the header was looked at (rows of schema 1 have 0) */
#define STAMP_FILES_SQLITE (1u << 1)   /* the file starts with the SQLite header */
#define STAMP_FILES_CAPTURED (1u << 2) /* the content is a copy made through SQLite's backup API */
/* 1 and *ret on a hit, 0 on a miss. */
int stamp_index_files_get(struct stamp_index *ix, uint64_t dev, uint64_t ino, uint64_t size,
                          int64_t mtime_ns, int64_t ctime_ns, struct stamp_files_row *ret);
int stamp_index_files_put(struct stamp_index *ix, uint64_t dev, uint64_t ino, uint64_t size,
                          int64_t mtime_ns, int64_t ctime_ns, const uint8_t *content,
                          size_t len, const uint8_t *xattrs, size_t xattrs_len, unsigned flags);

int stamp_index_snapshot_put(struct stamp_index *ix, const char *stamp,
                             const struct stamp_id *root);
int stamp_index_snapshot_del(struct stamp_index *ix, const char *stamp);
/* 1 if @stamp is indexed, 0 if not. */
int stamp_index_snapshot_has(struct stamp_index *ix, const char *stamp);

/*
 * Shrinks the connection's memory for a thread that only does point
 * lookups (the mount has one per thread): a 512 KiB page cache, 8 MiB mmap.
 */
int stamp_index_tune_reader(struct stamp_index *ix);

/* Folds the WAL back into index.db and truncates it (end of a write session). */
int stamp_index_checkpoint(struct stamp_index *ix);

/* Statistics for `stamp show`/tests: counts of packs and objects, and pack bytes. */
int stamp_index_counts(struct stamp_index *ix, uint64_t *ret_packs, uint64_t *ret_objects,
                       uint64_t *ret_pack_bytes);
