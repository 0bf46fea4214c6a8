/* SPDX-License-Identifier: MIT */
/*
 * craft-tree STORE FROM TO: a test helper that forges a hostile snapshot.
 * It copies the newest snapshot, with every occurrence of the bytes FROM in
 * its root tree object replaced by TO (same length; e.g. a name "AA"
 * becomes ".." or "a/"), stores the forged tree under its true id, and
 * commits a record pointing at it. Prints the new stamp. Only tests use it:
 * it is how a malicious or buggy writer would look to a reader.
 *
 * craft-tree STORE --link NAME1 NAME2: the same, but the root tree is
 * rebuilt with its entries NAME1 and NAME2 in one hardlink group (one
 * link id, nlink 2) whatever their contents: what a snapshot of a
 * hardlinked file that changed between the reads of its two names gives.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compress.h"
#include "pack.h"
#include "store.h"
#include "tree.h"
#include "writer.h"

/* The root tree @buf rebuilt with @a and @b in one hardlink group. */
static int link_two(const uint8_t *buf, size_t len, const char *a, const char *b,
                    uint8_t **ret, size_t *ret_len)
{
        struct stamp_tree_builder *tb = stamp_tree_builder_new();
        struct stamp_tree t;
        unsigned found = 0;
        int r;

        if (!tb)
                return -ENOMEM;
        r = stamp_tree_parse(buf, len, &t);
        for (uint32_t i = 0; r == 0 && i < t.count; i++) {
                struct stamp_entry e;

                r = stamp_tree_entry(&t, i, &e);
                if (r < 0)
                        break;
                if ((e.name_len == strlen(a) && memcmp(e.name, a, e.name_len) == 0) ||
                    (e.name_len == strlen(b) && memcmp(e.name, b, e.name_len) == 0)) {
                        e.nlink = 2;
                        e.link_id = 0x5eed5eed5eed5eedULL | 1;
                        found++;
                }
                r = stamp_tree_builder_add(tb, &e);
        }
        if (r == 0 && found != 2)
                r = -ENOENT;
        if (r == 0)
                r = stamp_tree_builder_encode(tb, ret, ret_len);
        stamp_tree_builder_free(tb);
        return r;
}

int main(int argc, char **argv)
{
        struct stamp_store *s = NULL;
        struct stamp_writer *w = NULL;
        struct stamp_zctx *z = NULL;
        struct stamp_record rec;
        char stamp[STAMP_STAMP_LEN + 1];
        uint8_t *buf = NULL;
        size_t len, n, hits = 0;
        int r;

        bool link = argc == 5 && strcmp(argv[2], "--link") == 0;

        if (!link && (argc != 4 || strlen(argv[2]) != strlen(argv[3]) || !*argv[2])) {
                fprintf(stderr, "usage: craft-tree STORE FROM TO (same length)\n"
                                "       craft-tree STORE --link NAME1 NAME2\n");
                return 2;
        }
        n = strlen(argv[2]);
        r = stamp_store_open(argv[1], &s);
        if (r == 0)
                r = stamp_store_lock(s, 10, "craft-tree", NULL, 0);
        if (r == 0)
                r = stamp_store_resolve(s, "latest", stamp);
        if (r == 0)
                r = stamp_store_record_load(s, stamp, &rec);
        if (r == 0)
                r = stamp_store_get(s, &rec.root, STAMP_OBJ_TREE, &buf, &len);
        if (r < 0) {
                fprintf(stderr, "craft-tree: %s\n", strerror(-r));
                return 1;
        }
        if (link) {
                uint8_t *linked;

                r = link_two(buf, len, argv[3], argv[4], &linked, &len);
                if (r < 0) {
                        fprintf(stderr, "craft-tree: cannot link '%s' and '%s': %s\n", argv[3],
                                argv[4], strerror(-r));
                        return 1;
                }
                free(buf);
                buf = linked;
                hits = 1;
        }
        for (size_t i = 0; !link && i + n <= len; i++)
                if (memcmp(buf + i, argv[2], n) == 0) {
                        memcpy(buf + i, argv[3], n);
                        hits++;
                }
        if (!hits) {
                fprintf(stderr, "craft-tree: '%s' not found in the root tree\n", argv[2]);
                return 1;
        }
        z = stamp_zctx_new(1);
        r = z ? stamp_writer_new(s, &w) : -ENOMEM;
        if (r == 0)
                r = stamp_writer_put(w, z, STAMP_OBJ_TREE, buf, len, &rec.root);
        if (r == 0)
                r = stamp_writer_flush(w);
        stamp_writer_free(w);
        stamp_zctx_free(z);
        if (r == 0) {
                do {
                        sleep(1);
                        stamp_stamp_from_time(time(NULL), rec.stamp);
                        r = stamp_store_record_write(s, &rec);
                } while (r == -EEXIST);
        }
        if (r < 0) {
                fprintf(stderr, "craft-tree: %s\n", strerror(-r));
                return 1;
        }
        printf("%s\n", rec.stamp);
        stamp_record_release(&rec);
        free(buf);
        stamp_store_free(s);
        return 0;
}
