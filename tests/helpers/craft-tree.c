/* SPDX-License-Identifier: MIT */
/*
 * craft-tree STORE FROM TO: a test helper that forges a hostile snapshot.
 * It copies the newest snapshot, with every occurrence of the bytes FROM in
 * its root tree object replaced by TO (same length; e.g. a name "AA"
 * becomes ".." or "a/"), stores the forged tree under its true id, and
 * commits a record pointing at it. Prints the new stamp. Only tests use it:
 * it is how a malicious or buggy writer would look to a reader.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compress.h"
#include "pack.h"
#include "store.h"
#include "writer.h"

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

        if (argc != 4 || strlen(argv[2]) != strlen(argv[3]) || !*argv[2]) {
                fprintf(stderr, "usage: craft-tree STORE FROM TO (same length)\n");
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
        for (size_t i = 0; i + n <= len; i++)
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
