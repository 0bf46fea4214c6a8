/* SPDX-License-Identifier: MIT */
/*
 * Trees: one content-addressed object per directory, holding its entries
 * sorted bytewise by name, with an offset table so that a lookup by name is
 * a binary search over the raw object (no decoding of the other entries).
 * Chunk lists too long for a tree entry live in chunk-list objects.
 * Byte layouts: top of tree.c and FORMAT.md.
 *
 * Everything parsed here comes from the store and is untrusted:
 * stamp_tree_parse() validates a whole tree before any entry is used.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hash.h"

/* Entry types. Frozen. */
enum {
        STAMP_T_REG = 1,
        STAMP_T_DIR = 2,
        STAMP_T_LNK = 3,
        STAMP_T_CHR = 4,
        STAMP_T_BLK = 5,
        STAMP_T_FIFO = 6,
        STAMP_T_SOCK = 7,
};

/* Entry flags. Frozen. */
#define STAMP_EF_CHANGED (1u << 0)    /* the file changed while it was read */
#define STAMP_EF_UNREADABLE (1u << 1) /* content could not be read; stored empty */
#define STAMP_EF_SQLITE (1u << 2)     /* captured through SQLite's backup API */
#define STAMP_EF_KNOWN (STAMP_EF_CHANGED | STAMP_EF_UNREADABLE | STAMP_EF_SQLITE)

/* Content kinds of a regular file. Frozen. */
enum {
        STAMP_CONTENT_INLINE = 0,    /* the chunk list is in the entry */
        STAMP_CONTENT_CHUNKLIST = 1, /* the entry names a chunk-list object */
};

/* Largest encoded tree (the same as the largest pack object). */
#define STAMP_OBJ_MAX_TREE (64u << 20)
#define STAMP_NAME_MAX 255
#define STAMP_TARGET_MAX 4095
#define STAMP_XATTR_VALUE_MAX 65536
/* Chunks listed in a tree entry before a chunk-list object is used. */
#define STAMP_INLINE_CHUNKS_MAX 32
/* Entries per chunk-list object. */
#define STAMP_CHUNKLIST_FANOUT 4096
#define STAMP_CHUNKLIST_LEVEL_MAX 8

#define STAMP_CHUNKREF_SIZE (STAMP_ID_SIZE + 4)   /* inline: id, u32 length */
#define STAMP_LISTREF_SIZE (STAMP_ID_SIZE + 8)    /* chunk list: id, u64 length */

/* A regular file's content reference, parsed. Pointers borrow the tree. */
struct stamp_content {
        uint8_t kind;
        uint32_t n;              /* INLINE: number of chunks */
        const uint8_t *chunks;   /* INLINE: n × (id, le32 length) */
        struct stamp_id list;    /* CHUNKLIST: root object */
        uint8_t level;           /* CHUNKLIST: 0 = its entries are data chunks */
};

/* A decoded entry. Pointers borrow the tree buffer (or the builder's input). */
struct stamp_entry {
        const char *name;
        size_t name_len;
        uint8_t type;
        uint8_t flags;
        uint32_t mode;
        uint32_t uid, gid;
        uint32_t nlink;
        int64_t mtime_ns, ctime_ns;
        uint64_t size;
        uint64_t rdev;
        uint64_t link_id; /* hardlink group within the snapshot; 0 = none */
        const char *target;
        size_t target_len;
        uint16_t xattr_count;
        const uint8_t *xattrs; /* xattr_count × (u8 nlen, name, le32 vlen, value) */
        size_t xattrs_len;
        struct stamp_id subtree;  /* DIR */
        const uint8_t *content;   /* REG: encoded content reference */
        size_t content_len;
};

struct stamp_tree {
        const uint8_t *buf; /* borrowed */
        size_t len;
        uint32_t count;
};

/* Validates a whole tree object. -EBADMSG on anything malformed. */
int stamp_tree_parse(const uint8_t *buf, size_t len, struct stamp_tree *ret);
/* A view of a tree that already passed stamp_tree_parse() (e.g. from the cache). */
void stamp_tree_view(const uint8_t *buf, size_t len, struct stamp_tree *ret);
/* Decodes entry @i of a parsed tree. */
int stamp_tree_entry(const struct stamp_tree *t, uint32_t i, struct stamp_entry *ret);
/* Binary search by name: 1 and *ret_index if found, 0 if not. */
int stamp_tree_find(const struct stamp_tree *t, const char *name, size_t len,
                    uint32_t *ret_index);

/* Checks that @name is a valid single path component. */
bool stamp_name_valid(const char *name, size_t len);

/* Parses an encoded content reference. -EBADMSG if malformed. */
int stamp_content_parse(const uint8_t *p, size_t len, struct stamp_content *ret);
/* Inline chunk @i of @c. */
void stamp_content_chunk(const struct stamp_content *c, uint32_t i, struct stamp_id *ret_id,
                         uint32_t *ret_len);

/*
 * What a member of a hardlink group holds, as a key: equal for regular
 * files with the same content reference, 0 for any other type. Members
 * that disagree (a database captured under each of its names; stores from
 * before 2026-12-07, when each name was read on its own) are made other
 * files by their readers, one per key, so that none loses what it stored.
 */
uint64_t stamp_entry_content_key(const struct stamp_entry *e);

/* Iterates over xattrs: returns 1 with the next one, 0 at the end, -EBADMSG. */
int stamp_xattr_next(const uint8_t **p, const uint8_t *end, const char **ret_name,
                     size_t *ret_name_len, const uint8_t **ret_value, size_t *ret_value_len);

/*
 * Chunk-list objects: a level-0 list names data chunks, a level-n list names
 * level n-1 lists; each item carries the byte length it covers.
 */
struct stamp_chunklist {
        uint8_t level;
        uint32_t count;
        const uint8_t *items; /* count × (id, le64 length) */
};
int stamp_chunklist_parse(const uint8_t *buf, size_t len, struct stamp_chunklist *ret);
void stamp_chunklist_item(const struct stamp_chunklist *l, uint32_t i, struct stamp_id *ret_id,
                          uint64_t *ret_len);
/* Encodes a chunk list. Caller frees *ret. */
int stamp_chunklist_encode(uint8_t level, const uint8_t *items, uint32_t count, uint8_t **ret,
                           size_t *ret_len);

struct stamp_tree_builder;

struct stamp_tree_builder *stamp_tree_builder_new(void);
void stamp_tree_builder_free(struct stamp_tree_builder *b);
size_t stamp_tree_builder_count(const struct stamp_tree_builder *b);
/* Copies @e into the builder. -EINVAL if the entry is invalid. */
int stamp_tree_builder_add(struct stamp_tree_builder *b, const struct stamp_entry *e);
/* Sorts and encodes. -EEXIST on a duplicate name. Caller frees *ret. */
int stamp_tree_builder_encode(struct stamp_tree_builder *b, uint8_t **ret, size_t *ret_len);

/* Encodes an inline content reference for @n chunks (n × (id, le32 len) in @chunks). */
int stamp_content_encode_inline(const uint8_t *chunks, uint32_t n, uint8_t **ret,
                                size_t *ret_len);
int stamp_content_encode_list(const struct stamp_id *list, uint8_t level, uint8_t **ret,
                              size_t *ret_len);
