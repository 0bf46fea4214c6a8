/* SPDX-License-Identifier: MIT */
/*
 * fuzz-extract STORE OUTDIR: writes every tree and chunk-list object of the
 * store's packs to OUTDIR/tree-<id> and OUTDIR/chunklist-<id>, for the fuzz
 * corpus (see make-corpus.sh). Packs are listed from the backend and read
 * through their trailer index; objects are read (decompressed, verified)
 * through stamp_store_get().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pack.h"
#include "store.h"

struct ctx {
        struct stamp_store *s;
        const char *outdir;
        size_t n_trees, n_lists;
        int error;
};

static int write_file(const char *path, const uint8_t *buf, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        size_t off = 0;

        if (fd < 0)
                return -errno;
        while (off < len) {
                ssize_t n = write(fd, buf + off, len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
                off += (size_t)n;
        }
        return close(fd) < 0 ? -errno : 0;
}

static int dump_pack(const char *name, void *userdata)
{
        struct ctx *c = userdata;
        struct stamp_pack_entry *v = NULL;
        size_t n = 0;
        uint64_t size;
        int r;

        if (strlen(name) < 5 || strcmp(name + strlen(name) - 5, ".pack") != 0)
                return 0;
        r = stamp_pack_load_index(stamp_store_backend(c->s), name, &v, &n, &size);
        if (r < 0) {
                fprintf(stderr, "%s: cannot load index: %s\n", name, strerror(-r));
                c->error = 1;
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                char hex[STAMP_ID_HEX_SIZE], path[4096];
                const char *kind;
                uint8_t *buf = NULL;
                size_t len = 0;

                if (v[i].type == STAMP_OBJ_TREE)
                        kind = "tree";
                else if (v[i].type == STAMP_OBJ_CHUNKLIST)
                        kind = "chunklist";
                else
                        continue;
                stamp_id_to_hex(&v[i].id, hex);
                r = stamp_store_get(c->s, &v[i].id, v[i].type, &buf, &len);
                if (r < 0) {
                        fprintf(stderr, "%s: object %s: %s\n", name, hex, strerror(-r));
                        c->error = 1;
                        continue;
                }
                snprintf(path, sizeof(path), "%s/%s-%s", c->outdir, kind, hex);
                r = write_file(path, buf, len);
                free(buf);
                if (r < 0) {
                        fprintf(stderr, "%s: %s\n", path, strerror(-r));
                        c->error = 1;
                        continue;
                }
                if (v[i].type == STAMP_OBJ_TREE)
                        c->n_trees++;
                else
                        c->n_lists++;
        }
        free(v);
        return 0;
}

int main(int argc, char **argv)
{
        struct ctx c = { 0 };
        int r;

        if (argc != 3) {
                fprintf(stderr, "Usage: %s STORE OUTDIR\n", argv[0]);
                return 2;
        }
        r = stamp_store_open(argv[1], &c.s);
        if (r < 0) {
                fprintf(stderr, "%s: cannot open store: %s\n", argv[1], strerror(-r));
                return 1;
        }
        c.outdir = argv[2];
        r = stamp_backend_list(stamp_store_backend(c.s), "packs/", dump_pack, &c);
        stamp_store_free(c.s);
        if (r < 0) {
                fprintf(stderr, "%s: cannot list packs: %s\n", argv[1], strerror(-r));
                return 1;
        }
        printf("%zu trees, %zu chunk lists\n", c.n_trees, c.n_lists);
        return c.error;
}
