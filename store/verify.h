/* SPDX-License-Identifier: MIT */
/*
 * Validation: is a snapshot restorable, is a store sound? Problems are
 * reported one by one through a callback, each with a kind, the affected
 * snapshot path (when there is one) and the object involved; the walk goes
 * on after a problem so that one run lists all the damage.
 *
 * Levels: the metadata level checks that the record, every tree and every
 * chunk-list object exist and decode (they are read and verified against
 * their ids), and that every data chunk is indexed in a pack that exists
 * and is long enough. STAMP_CHECK_READ_DATA also reads every data chunk
 * and verifies it against its id. STAMP_CHECK_CONTENT runs PRAGMA
 * integrity_check on every SQLite database and parses every *.json file of
 * the snapshot, reading them from the store.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

enum stamp_problem_kind {
        STAMP_PROBLEM_RECORD_CORRUPT,
        STAMP_PROBLEM_TREE_MISSING,
        STAMP_PROBLEM_TREE_CORRUPT,
        STAMP_PROBLEM_CHUNKLIST_MISSING,
        STAMP_PROBLEM_CHUNKLIST_CORRUPT,
        STAMP_PROBLEM_CHUNK_MISSING,
        STAMP_PROBLEM_CHUNK_HASH_MISMATCH,
        STAMP_PROBLEM_CONTENT_CORRUPT,   /* chunk lengths do not add up to the size */
        STAMP_PROBLEM_PACK_MISSING,
        STAMP_PROBLEM_PACK_CORRUPT,
        STAMP_PROBLEM_INDEX_MISMATCH,    /* an index row disagrees with its pack */
        STAMP_PROBLEM_DB_INTEGRITY,      /* db_integrity_check_failed */
        STAMP_PROBLEM_JSON_INVALID,
        STAMP_PROBLEM_READ_ERROR,        /* an I/O error while checking */
        _STAMP_PROBLEM_MAX,
};

/* The stable name of a kind, used in output: "chunk_missing", ... */
const char *stamp_problem_name(enum stamp_problem_kind k);

struct stamp_problem {
        enum stamp_problem_kind kind;
        const char *stamp;  /* the snapshot, or NULL for store-level problems */
        const char *path;   /* the affected path in the snapshot, or NULL */
        const char *object; /* the object (hex id) or pack name involved, or NULL */
        const char *detail; /* a human explanation */
};

typedef void (*stamp_problem_fn)(const struct stamp_problem *p, void *userdata);

#define STAMP_CHECK_READ_DATA (1u << 0)
#define STAMP_CHECK_CONTENT (1u << 1)

struct stamp_check_stats {
        uint64_t problems;
        uint64_t files, dirs, trees;
        uint64_t chunks;         /* data chunk references checked */
        uint64_t bytes_read;     /* raw bytes of data chunks read and verified */
        uint64_t databases;      /* SQLite databases checked */
        uint64_t json_files;     /* JSON files checked */
        uint64_t packs;
        uint64_t objects;
};

/* Called now and then with the path being worked on. */
typedef void (*stamp_check_progress_fn)(const struct stamp_check_stats *st, const char *path,
                                        void *userdata);

struct stamp_check_options {
        unsigned flags;
        stamp_problem_fn problem;
        stamp_check_progress_fn progress;
        void *userdata;
};

/*
 * Validates snapshot @stamp. Returns 0 once the whole snapshot was walked
 * (st->problems says whether it is valid), -ENOENT if there is no such
 * snapshot, or a negative errno when checking could not go on (-ENOMEM).
 */
int stamp_check_snapshot(struct stamp_store *s, const char *stamp,
                         const struct stamp_check_options *o, struct stamp_check_stats *st);

/*
 * Validates the tree @root as if it were snapshot @stamp's (whose record
 * is not written yet: stamp copy checks what arrived before committing).
 */
int stamp_check_root(struct stamp_store *s, const char *stamp, const struct stamp_id *root,
                     const struct stamp_check_options *o, struct stamp_check_stats *st);

/*
 * Checks the packs named in @packs (e.g. the ones a snapshot just wrote):
 * reads each whole, checks its checksum, decodes and re-hashes every object,
 * parses every tree and chunk list, and checks that every object they refer
 * to is indexed.
 */
int stamp_check_packs(struct stamp_store *s, const struct stamp_strv *packs,
                      const struct stamp_check_options *o, struct stamp_check_stats *st);

/*
 * Checks the whole store: every pack's structure and checksum (with
 * READ_DATA also every object decompressed and re-hashed), the index
 * against the packs, and every snapshot at the metadata level.
 */
int stamp_check_store(struct stamp_store *s, const struct stamp_check_options *o,
                      struct stamp_check_stats *st);
