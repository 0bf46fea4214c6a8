/* SPDX-License-Identifier: MIT */
/*
 * Comparing two snapshot trees: every path added, removed or modified,
 * reported through a callback in path order.
 *
 * Trees are content-addressed, so two directories with the same tree id
 * hold the same entries: the walk never descends into them, and a small
 * change in a large store costs a few tree loads. Likewise a regular file
 * whose content reference (chunk ids and lengths, or chunk-list id) is
 * unchanged has unchanged content; no data chunk is ever read.
 *
 * Order: depth first, the entries of each directory bytewise by name, a
 * directory before what it holds ("a", "a/x", "a-b"). An added or removed
 * directory is reported, then every path below it. A path whose type
 * changed is one modification ("type"), followed by the removal of what
 * the old directory held or the addition of what the new one holds. A
 * renamed entry is a removal and an addition. The root directory's own
 * attributes (kept in the snapshot record) are not compared.
 */
#pragma once

#include <stddef.h>

#include "store.h"
#include "tree.h"

enum stamp_diff_kind {
        STAMP_DIFF_ADDED,
        STAMP_DIFF_REMOVED,
        STAMP_DIFF_MODIFIED,
};

/* What differs in a modified entry; bit i is named by stamp_diff_change_name(i). */
enum {
        STAMP_CHANGE_TYPE = 1u << 0,    /* file type (then content, size, target not compared) */
        STAMP_CHANGE_CONTENT = 1u << 1, /* regular file content */
        STAMP_CHANGE_SIZE = 1u << 2,    /* regular file size */
        STAMP_CHANGE_MODE = 1u << 3,    /* permission bits (07777) */
        STAMP_CHANGE_OWNER = 1u << 4,   /* uid or gid */
        STAMP_CHANGE_MTIME = 1u << 5,   /* modification time (ns) */
        STAMP_CHANGE_TARGET = 1u << 6,  /* symlink target */
        STAMP_CHANGE_XATTRS = 1u << 7,  /* extended attributes */
        STAMP_CHANGE_DEVICE = 1u << 8,  /* device number of a device node */
        STAMP_CHANGE_MAX = 9,
};

/* "type", "content", "size", "mode", "owner", "mtime", "target", "xattrs", "device". */
const char *stamp_diff_change_name(unsigned i);

/*
 * The STAMP_CHANGE_* bits that differ between two entries of the same
 * name. Not compared: ctime, nlink, hardlink ids, inode flags, and for
 * directories their size and contents (the walk compares those).
 */
unsigned stamp_entry_changes(const struct stamp_entry *a, const struct stamp_entry *b);

struct stamp_diff_item {
        const char *path; /* "dir/name", NUL-terminated; borrowed for the call */
        size_t path_len;
        enum stamp_diff_kind kind;
        unsigned changes;           /* MODIFIED: STAMP_CHANGE_* bits */
        const struct stamp_entry *a; /* the entry in tree A; NULL if added */
        const struct stamp_entry *b; /* the entry in tree B; NULL if removed */
};

/* Called for each change; a negative return stops the walk and is returned. */
typedef int (*stamp_diff_fn)(const struct stamp_diff_item *item, void *userdata);

/*
 * Compares tree @a (the old one) with tree @b. Returns 0, a callback's
 * negative return, or: -EBADMSG if a tree is damaged, missing from the
 * store or nested deeper than the snapshot limit; -EOPNOTSUPP for a tree
 * of an unknown version; -ENOMEM; any error of stamp_store_get(). On
 * -EBADMSG or -EOPNOTSUPP, *ret_bad_path (if not NULL) is set to the
 * directory whose tree failed ("" for the root); caller frees. Takes no
 * lock; thread-safe as stamp_store_get().
 */
int stamp_diff_trees(struct stamp_store *s, const struct stamp_id *a, const struct stamp_id *b,
                     stamp_diff_fn fn, void *userdata, char **ret_bad_path);
