/* SPDX-License-Identifier: MIT */
/*
 * stamp copy: snapshots from one store into another, sending only the
 * objects the destination lacks.
 *
 * The source walks each snapshot (walk.h, bounded memory), asks the
 * destination which of the objects it reaches it already has, and sends
 * the others as they are stored (compressed bytes, no re-encoding), in
 * pack and offset order so the source is read sequentially.
 *
 * The receiving end (a local store here, or a remote one through `stamp
 * serve`, copy-proto.c) decodes and re-hashes every object that arrives,
 * writes it to its own packs (re-compressed only if its compression level
 * differs), and commits the snapshot only after its new packs were read
 * back and the whole snapshot validated: the record, written last, is the
 * commit point, exactly as for a snapshot taken there. Packs made durable
 * before an interruption stay, so the next copy does not send them again.
 *
 * Both stores must share the chunker and its secret (the secret names
 * every object): create a destination with `stamp copy --init` or
 * stamp_init_options_like().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "verify.h"

/* An object as it travels: its pack record fields and stored bytes. */
struct stamp_copy_obj {
        struct stamp_id id;
        uint8_t type;
        uint8_t comp;
        uint32_t raw_len;
        uint32_t stored_len;
        const uint8_t *payload; /* @stored_len bytes */
};

/* What the destination did with one snapshot. */
struct stamp_copy_commit {
        bool valid;             /* validation found no problem; the record was written */
        uint64_t new_objects;   /* objects stored by this copy session so far */
        uint64_t new_bytes;     /* and their stored bytes */
        uint64_t checked_objects;
        double validate_s;
        struct stamp_strv problems; /* "kind\tpath\tdetail" lines, at most 100 */
        uint64_t n_problems;
};

void stamp_copy_commit_release(struct stamp_copy_commit *c);

/* Flags of the receiving end. */
#define STAMP_COPY_INIT (1u << 0)      /* create the destination store if it does not exist */
#define STAMP_COPY_READ_DATA (1u << 1) /* validate every chunk by reading it back */
#define STAMP_COPY_DRY_RUN (1u << 2)   /* no lock, no writes; an absent store counts as empty */

/* The receiving end of a copy. All calls return 0 or a negative errno. */
struct stamp_copy_dest;
struct stamp_copy_dest_ops {
        /* The destination's config (a missing one with INIT: the one it will get). */
        int (*config)(struct stamp_copy_dest *d, struct stamp_config *ret);
        /*
         * Its stamps, sorted, and those it has forgotten (deleted there by
         * forget or prune; a destination that cannot tell gives none).
         */
        int (*list)(struct stamp_copy_dest *d, struct stamp_strv *ret,
                    struct stamp_strv *ret_forgotten);
        /* For each of @n ids, ret[i] = 1 if the destination has it, else 0. */
        int (*have)(struct stamp_copy_dest *d, const struct stamp_id *ids, size_t n,
                    uint8_t *ret);
        /*
         * Stores one object (verified on arrival: -EBADMSG if it does not
         * decode to its id; -ENOTUNIQ if the destination holds different
         * bytes under that id). May report an earlier failure.
         */
        int (*put)(struct stamp_copy_dest *d, const struct stamp_copy_obj *o);
        /*
         * Makes everything put so far durable, validates snapshot @stamp
         * (root @root) in the destination and, if it is valid, writes its
         * record @record (the source's record, byte for byte).
         */
        int (*commit)(struct stamp_copy_dest *d, const char *stamp, const struct stamp_id *root,
                      const char *record, size_t record_len, struct stamp_copy_commit *ret);
        void (*close)(struct stamp_copy_dest *d);
};

struct stamp_copy_dest {
        const struct stamp_copy_dest_ops *ops;
        char error[512]; /* the last failure explained (names the thing and the reason) */
        struct stamp_id bad_id; /* the object a failure concerns, if one does */
};

/*
 * Opens the local store @path as a destination (taking its write lock, no
 * wait: -EBUSY). With STAMP_COPY_INIT a missing or empty @path is created
 * like @init_like with zstd level @zstd_level (0: @init_like's). -ENOENT:
 * missing (without INIT); -EXDEV: its chunker or secret differs from
 * @init_like's (when given).
 */
int stamp_copy_local_open(const char *path, unsigned flags, const struct stamp_config *init_like,
                          int zstd_level, struct stamp_copy_dest **ret);
void stamp_copy_dest_close(struct stamp_copy_dest *d);

/*
 * The client of the copy protocol over a pipe pair to `stamp serve PATH`
 * (@in: its stdout, @out: its stdin). The fds are the caller's to close.
 */
int stamp_copy_remote_open(int in, int out, const char *path, unsigned flags,
                           const struct stamp_config *init_like, int zstd_level,
                           struct stamp_copy_dest **ret);

/*
 * `stamp serve`: answers one client on @in/@out, storing into @path.
 * Returns when the client says goodbye (0) or the connection fails.
 * @allow_init: whether the client may create @path.
 */
int stamp_copy_serve(int in, int out, const char *path, bool allow_init);

/* Progress of a copy. */
struct stamp_copy_progress {
        const char *stamp;
        size_t index, count;       /* snapshot index (from 0) of count to copy */
        uint64_t reached;          /* objects reached in this snapshot's walk */
        uint64_t sent, sent_bytes; /* objects sent (whole run), their stored bytes */
        const char *phase;         /* "walk", "validate" */
};

struct stamp_copy_options {
        /*
         * NULL or empty: every snapshot of the source, but those the
         * destination has or forgot. Named ones are copied even if it forgot
         * them.
         */
        const struct stamp_strv *stamps;
        bool dry_run;
        void (*progress)(const struct stamp_copy_progress *p, void *userdata);
        /*
         * Called after each snapshot: @result is 0 copied, 1 skipped (the
         * destination has it), 2 skipped (the destination forgot it), or a
         * negative errno; @c is set when the destination validated it (also
         * when invalid).
         */
        void (*done)(const char *stamp, int result, const struct stamp_copy_commit *c,
                     uint64_t objects, uint64_t bytes, double seconds, void *userdata);
        /* Tests: called after each object sent ("sent", count so far). May be NULL. */
        void (*hook)(const char *point, uint64_t n, void *userdata);
        void *userdata;
};

struct stamp_copy_result {
        uint64_t copied, skipped, invalid;
        uint64_t forgotten; /* not copied: the destination forgot them (not in skipped) */
        uint64_t objects_sent, bytes_sent; /* stored bytes sent */
        uint64_t objects_reached;
        char bad_stamp[STAMP_STAMP_LEN + 1]; /* the snapshot a failure concerns */
        struct stamp_id bad_id;              /* the source object a failure concerns */
        char bad_pack[64];
};

/*
 * Copies snapshots of @src (the named ones, else all) into @d. Snapshots
 * the destination already has are skipped, and so are, unless named, those
 * it forgot: a destination pruned by its own rules stays pruned. Returns 0 when every snapshot
 * was copied and valid, -EBADMSG if one failed validation in the
 * destination (the others are still copied), or the first error that
 * stopped the copy (-EXDEV: incompatible stores).
 */
int stamp_copy(struct stamp_store *src, struct stamp_copy_dest *d,
               const struct stamp_copy_options *o, struct stamp_copy_result *ret);
