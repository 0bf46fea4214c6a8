/* SPDX-License-Identifier: MIT */
/*
 * JSON documents of a store: the config, the snapshot records
 * (snapshots/STAMP.json) and the lines of drill.log. The only module that
 * includes <cJSON.h>.
 *
 * Parsing treats the text as untrusted: it must be NUL-terminated within
 * its length, keys are case-sensitive and unique, integers must be whole
 * numbers in [0, 2^53], strings and lists have size caps.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunker.h"
#include "hash.h"

#define STAMP_CONFIG_VERSION 1
#define STAMP_RECORD_VERSION 1
#define STAMP_JSON_MAX (16u << 20)
/* Paths listed in a record's errors and changed lists beyond this are only counted. */
#define STAMP_RECORD_LIST_MAX 1000
/* A snapshot with more distinct xattr names than this does not list them. */
#define STAMP_RECORD_XATTR_NAMES_MAX 256

/* "20260407T060000Z" */
#define STAMP_STAMP_LEN 16

struct stamp_config {
        unsigned version;
        char chunker_alg[32];
        struct stamp_chunker_params chunker;
        char chunk_id_alg[32];
        uint8_t secret[STAMP_SECRET_SEED_SIZE];
        int zstd_level;
        uint32_t pack_size;
        uint32_t dedup_verify_max; /* byte-compare dedup hits of chunks up to this size */
        char created[40];
};

struct stamp_strv {
        char **v;
        size_t n;
};

/* A --pre or --post command of a snapshot, as it ran. */
struct stamp_hook_run {
        char *stage;      /* "pre" or "post" */
        char *command;
        int exit_status;  /* as a shell reports it: 128 + N if killed by signal N; -1 if it never ran */
        double duration_s;
};

struct stamp_record {
        unsigned version;
        char stamp[STAMP_STAMP_LEN + 1];
        char created[40];
        char *host;
        struct stamp_strv sources;
        struct stamp_strv tags;
        struct stamp_strv excludes;
        bool one_file_system;
        struct stamp_id root;
        /* Attributes of the stamp's root directory (a single source's own). */
        uint32_t root_mode, root_uid, root_gid;
        int64_t root_mtime_ns;
        uint8_t *root_xattrs; /* encoded as in a tree entry; may be NULL */
        size_t root_xattrs_len;
        uint64_t files, dirs, symlinks, specials;
        uint64_t logical_bytes;   /* file sizes summed */
        uint64_t new_bytes;       /* raw bytes of new objects */
        uint64_t stored_new_bytes;/* bytes they take in packs */
        uint64_t new_chunks;      /* new data chunks */
        uint64_t new_objects;     /* new objects of any kind */
        double duration_s;
        char *tool_version;
        struct stamp_chunker_params chunker;
        int zstd_level;
        uint64_t n_errors;        /* unreadable source entries */
        struct stamp_strv errors; /* "path: reason", at most STAMP_RECORD_LIST_MAX */
        uint64_t n_changed;       /* files that changed while being read */
        struct stamp_strv changed;
        /*
         * The check of what the snapshot wrote, before its record was
         * committed (optional in the JSON): "ok", "skipped", or "" for
         * records written before validation existed.
         */
        char validation[16];
        uint64_t validated_objects; /* new objects re-read and re-hashed */
        uint64_t validated_bytes;
        double validation_s;
        /*
         * Everything below is optional in the JSON (absent from records made
         * before it existed), so the record version stays 1.
         */
        uint64_t n_sqlite;        /* databases captured through SQLite's backup API */
        struct stamp_strv sqlite; /* their paths, at most STAMP_RECORD_LIST_MAX */
        uint64_t n_warnings;      /* entries stored, but less well than asked */
        struct stamp_strv warnings; /* "path: reason" (a database copied as plain bytes) */
        struct stamp_hook_run *hooks;
        size_t n_hooks;
        char *stdin_path;         /* --stdin-name; NULL if the snapshot has none */
        char *stdin_command;
        uint64_t stdin_bytes;
        char *lock_path;          /* --lock; NULL if none was taken */
        bool lock_shared;
        double lock_wait_s;
        char sqlite_mode[8];      /* options: "auto" or "copy"; "" in older records */
        /*
         * Every distinct xattr name in the snapshot (its entries and its
         * root), sorted, when xattr_names_known: absent from older records
         * and from snapshots with more than STAMP_RECORD_XATTR_NAMES_MAX.
         */
        bool xattr_names_known;
        struct stamp_strv xattr_names;
};

/*
 * A line of drill.log: the result of one `stamp drill` (FORMAT.md,
 * "drill.log"). Version history of the line format ("v"):
 *   1  first version
 */
#define STAMP_DRILL_LOG_VERSION 1
/* Problems and warnings a drill.log line lists; its counts say how many there were. */
#define STAMP_DRILL_LOG_LIST_MAX 20

/* The timed steps of a drill, in the order they run. Frozen (drill.log keys). */
enum stamp_drill_step {
        STAMP_DRILL_VALIDATE, /* "validate_s" */
        STAMP_DRILL_RESTORE,  /* "restore_s" */
        STAMP_DRILL_CHECK,    /* "check_s" */
        STAMP_DRILL_COMPARE,  /* "compare_s" */
        _STAMP_DRILL_STEP_MAX,
};

struct stamp_drill_problem {
        char *kind;   /* "restore_failed", "content_mismatch", ...: see drill.h */
        char *path;   /* relative to the snapshot's root, or NULL */
        char *detail;
};

struct stamp_drill_entry {
        unsigned version;         /* "v" of a parsed line */
        char stamp[STAMP_STAMP_LEN + 1];
        bool pass;
        char started[40];         /* ISO 8601 UTC, as stamp_iso8601() */
        double duration_s;
        bool step_ran[_STAMP_DRILL_STEP_MAX]; /* a step not run is null in the JSON */
        double step_s[_STAMP_DRILL_STEP_MAX];
        bool read_data;
        uint64_t files, bytes;    /* regular files restored, and their bytes */
        uint64_t databases, json_files;
        uint64_t n_problems;
        struct stamp_drill_problem *problems; /* the first ones (how many: the caller's cap) */
        size_t problems_len;
        uint64_t n_warnings;
        struct stamp_strv warnings; /* "path: what", the first ones */
        char *scratch;            /* where the copy was restored */
        bool kept;                /* ... and left for inspection */
        char *host;               /* may be NULL */
};

/*
 * Appends a copy of a problem to @e->problems if it holds fewer than @max,
 * and counts it in @e->n_problems either way. @path may be NULL.
 */
int stamp_drill_entry_add_problem(struct stamp_drill_entry *e, const char *kind, const char *path,
                                  const char *detail, size_t max);
/*
 * Encodes @e as one drill.log line (no newline): "v", the host if any, and
 * at most STAMP_DRILL_LOG_LIST_MAX problems and warnings. Caller frees *ret.
 */
int stamp_drill_entry_encode(const struct stamp_drill_entry *e, char **ret);
/* -EBADMSG if @text is not a drill.log line, -EOPNOTSUPP if its "v" is unknown. */
int stamp_drill_entry_parse(const char *text, size_t len, struct stamp_drill_entry *ret);
/* Frees what an entry owns and zeroes it. */
void stamp_drill_entry_release(struct stamp_drill_entry *e);

int stamp_config_encode(const struct stamp_config *c, char **ret);
/* -EBADMSG if malformed, -EOPNOTSUPP for an unknown version or algorithm. */
int stamp_config_parse(const char *text, size_t len, struct stamp_config *ret);

int stamp_record_encode(const struct stamp_record *r, char **ret);
int stamp_record_parse(const char *text, size_t len, struct stamp_record *ret);
/* Frees the strings a record owns and zeroes it. */
void stamp_record_release(struct stamp_record *r);
/* Appends a copy of a hook run to @r->hooks. */
int stamp_record_add_hook(struct stamp_record *r, const char *stage, const char *command,
                          int exit_status, double duration_s);

/* Appends a copy of @s. */
int stamp_strv_push(struct stamp_strv *v, const char *s);
/*
 * Inserts a copy of the @len bytes at @s (no NUL among them) into sorted
 * @v unless it holds them: 1 if added, 0 if there, -ENOMEM.
 */
int stamp_strv_add_sorted(struct stamp_strv *v, const char *s, size_t len);
void stamp_strv_release(struct stamp_strv *v);

/* True if @s is a well-formed stamp (YYYYMMDDTHHMMSSZ with a valid date). */
bool stamp_stamp_valid(const char *s);
/* Writes the stamp of @t (UTC). */
void stamp_stamp_from_time(int64_t t, char ret[STAMP_STAMP_LEN + 1]);
/* ISO 8601 UTC with nanoseconds: "2026-04-07T06:00:00.123456789Z". */
void stamp_iso8601(int64_t sec, long nsec, char ret[40]);
