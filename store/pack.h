/* SPDX-License-Identifier: MIT */
/*
 * Pack files: append-only containers of many objects (data chunks, trees,
 * chunk lists), self-describing so that the index can be rebuilt from the
 * packs alone. The byte layout is specified at the top of pack.c and in
 * FORMAT.md.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "hash.h"

/* Frozen on-disk constants (format version 1). */
#define STAMP_PACK_VERSION 1
#define STAMP_PACK_HEADER_SIZE 32
#define STAMP_PACK_RECORD_HEADER_SIZE 36
#define STAMP_PACK_INDEX_ENTRY_SIZE 40
#define STAMP_PACK_TRAILER_SIZE 40
/* Largest object (raw or stored) a reader accepts. */
#define STAMP_OBJECT_MAX (64u << 20)

/* Object types. Frozen. */
enum {
        STAMP_OBJ_DATA = 1,
        STAMP_OBJ_TREE = 2,
        STAMP_OBJ_CHUNKLIST = 3,
};

/* One object of a pack, as listed in its trailer index. */
struct stamp_pack_entry {
        struct stamp_id id;
        uint8_t type;
        uint8_t comp;
        uint32_t raw_len;
        uint32_t stored_len;
        uint64_t offset; /* of the record header */
};

struct stamp_pack_trailer {
        uint64_t index_offset;
        uint32_t count;
        struct stamp_id checksum;
};

/* The object name of the pack whose checksum is @sum: "packs/ab/ab...cd.pack". */
void stamp_pack_name(const struct stamp_id *sum, char ret[64]);

/*
 * Parses the last STAMP_PACK_TRAILER_SIZE bytes of a pack of @file_size
 * bytes. -EBADMSG if the magic, version or geometry is wrong.
 */
int stamp_pack_trailer_parse(const uint8_t *buf, uint64_t file_size,
                             struct stamp_pack_trailer *ret);

/*
 * Parses the trailer index (@len bytes, count entries) into a new array.
 * Checks that records are contiguous from the header to the index and that
 * lengths are within limits. -EBADMSG on any inconsistency. Caller frees.
 */
int stamp_pack_index_parse(const uint8_t *buf, size_t len,
                           const struct stamp_pack_trailer *t,
                           struct stamp_pack_entry **ret, size_t *ret_n);

/* Parses one record header (checks its magic and checksum). */
int stamp_pack_record_parse(const uint8_t buf[STAMP_PACK_RECORD_HEADER_SIZE], uint64_t offset,
                            struct stamp_pack_entry *ret);

/* Checks a pack file header. */
int stamp_pack_header_check(const uint8_t buf[STAMP_PACK_HEADER_SIZE]);

/*
 * Reads a pack's trailer and index through @b. On success *ret holds the
 * entries (caller frees) and *ret_size the pack's size.
 */
int stamp_pack_load_index(struct stamp_backend *b, const char *name,
                          struct stamp_pack_entry **ret, size_t *ret_n, uint64_t *ret_size);

/*
 * For a pack whose trailer or index is damaged: the records found by
 * walking it from its header, each header checked (magic, checksum,
 * lengths), up to the first that fails or does not fit. Payloads are not
 * checked here: every read re-hashes its object. -EBADMSG if the pack
 * header is damaged or no record is found. Caller frees *ret.
 */
int stamp_pack_scan_records(struct stamp_backend *b, const char *name,
                            struct stamp_pack_entry **ret, size_t *ret_n, uint64_t *ret_size);

/* Reads the whole pack and compares it with its checksum: 0 or -EBADMSG. */
int stamp_pack_verify(struct stamp_backend *b, const char *name);

struct stamp_pack_writer;

/* Starts a new pack. Caller ends it with _finish() or _free(). */
int stamp_pack_writer_new(struct stamp_backend *b, struct stamp_pack_writer **ret);
/* Appends one object; @payload is @stored_len bytes, compressed per @comp. */
int stamp_pack_writer_add(struct stamp_pack_writer *w, const struct stamp_id *id, uint8_t type,
                          uint8_t comp, uint32_t raw_len, const void *payload,
                          uint32_t stored_len);
uint64_t stamp_pack_writer_size(const struct stamp_pack_writer *w);
size_t stamp_pack_writer_count(const struct stamp_pack_writer *w);
/* The entries added so far; borrowed, valid until the writer is freed. */
const struct stamp_pack_entry *stamp_pack_writer_entries(const struct stamp_pack_writer *w);
/*
 * Writes the index and trailer and makes the pack durable under its name,
 * returned in @ret_name. The writer must still be freed.
 */
int stamp_pack_writer_finish(struct stamp_pack_writer *w, char ret_name[64]);
/* Frees the writer; an unfinished pack is discarded. NULL is a no-op. */
void stamp_pack_writer_free(struct stamp_pack_writer *w);
