/* SPDX-License-Identifier: MIT */
/*
 * Checks of the files users care most about, without restoring them:
 * SQLite databases (PRAGMA integrity_check, read through a read-only SQLite
 * VFS that pulls pages from any reader, such as a file of a snapshot) and
 * JSON documents (a streaming RFC 8259 validator with bounded memory).
 * One of the three store modules that include <sqlite3.h> (with index.c
 * and sqlite-capture.c); no SQLite type leaves it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STAMP_SQLITE_MAGIC "SQLite format 3"  /* the first 16 bytes, with the NUL */
#define STAMP_SQLITE_MAGIC_LEN 16

/* Reads up to @len bytes at @off into @buf: the count, 0 at the end, or -errno. */
typedef ssize_t (*stamp_pread_fn)(void *userdata, void *buf, size_t len, uint64_t off);

/* True if @head (at least 16 bytes) starts like an SQLite database. */
bool stamp_is_sqlite_header(const uint8_t *head, size_t len);

/*
 * Runs PRAGMA integrity_check on the database whose @size bytes @fn reads.
 * Returns 1 if it is sound, 0 if not (then @msg holds SQLite's first
 * complaint), or a negative errno if it could not be checked at all (a read
 * error of the underlying reader is returned as is).
 */
int stamp_sqlite_check(stamp_pread_fn fn, void *userdata, uint64_t size, char *msg,
                       size_t msg_size);

/* A streaming JSON validator: feed it the document in pieces. */
struct stamp_json_check;

struct stamp_json_check *stamp_json_check_new(void);
void stamp_json_check_free(struct stamp_json_check *c);
/* Returns 0, or -EBADMSG at the first byte that cannot be valid JSON. */
int stamp_json_check_feed(struct stamp_json_check *c, const uint8_t *p, size_t len);
/*
 * Ends the document: 0 if it was exactly one JSON value (with surrounding
 * whitespace), -EBADMSG if not; @msg says where and why.
 */
int stamp_json_check_end(struct stamp_json_check *c, char *msg, size_t msg_size);
