/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "compress.h"
#include "pack.h"
#include "tests.h"

#define OBJECTS 50

static char pack_path[512];

/* Writes a pack of OBJECTS objects; returns its name. */
static void write_pack(struct stamp_backend *b, const char *dir, char name[64],
                       struct stamp_id ids[OBJECTS])
{
        struct stamp_pack_writer *w;
        struct stamp_zctx *z = stamp_zctx_new(3);
        unsigned char buf[5000], cbuf[6000];

        CHECK(z);
        CHECK_OK(stamp_pack_writer_new(b, &w));
        for (int i = 0; i < OBJECTS; i++) {
                size_t len = 100 + (size_t)i * 97, clen;
                int r;
                if (i % 2)
                        memset(buf, 'a' + i % 26, len); /* compressible */
                else
                        fill_random(buf, len, (unsigned long long)i);
                stamp_checksum128(buf, len, &ids[i]);
                r = stamp_compress(z, buf, len, cbuf, sizeof(cbuf), &clen);
                CHECK(r >= 0);
                if (r == 1)
                        CHECK_OK(stamp_pack_writer_add(w, &ids[i], STAMP_OBJ_DATA, STAMP_COMP_ZSTD,
                                                       (uint32_t)len, cbuf, (uint32_t)clen));
                else
                        CHECK_OK(stamp_pack_writer_add(w, &ids[i], STAMP_OBJ_DATA, STAMP_COMP_NONE,
                                                       (uint32_t)len, buf, (uint32_t)len));
        }
        CHECK(stamp_pack_writer_count(w) == OBJECTS);
        CHECK_OK(stamp_pack_writer_finish(w, name));
        stamp_pack_writer_free(w);
        stamp_zctx_free(z);
        snprintf(pack_path, sizeof(pack_path), "%s/%s", dir, name);
}

/*
 * A backend whose writers fail their Nth write (once, with ENOSPC), as a
 * full disk does, and pass everything else to the local backend.
 */
struct failing {
        struct stamp_backend base;
        struct stamp_backend *inner;
        int writes, fail_at;
};

struct failing_writer {
        struct stamp_backend *b; /* first, as backend.c expects */
        struct stamp_backend_writer *inner;
};

static int failing_writer_open(struct stamp_backend *b, struct stamp_backend_writer **ret)
{
        struct failing *f = (struct failing *)b;
        struct failing_writer *w = calloc(1, sizeof(*w));
        int r;

        CHECK(w);
        w->b = b;
        r = stamp_backend_writer_open(f->inner, &w->inner);
        if (r < 0) {
                free(w);
                return r;
        }
        *ret = (struct stamp_backend_writer *)w;
        return 0;
}

static int failing_writer_write(struct stamp_backend_writer *bw, const void *data, size_t len)
{
        struct failing_writer *w = (struct failing_writer *)bw;
        struct failing *f = (struct failing *)w->b;

        if (++f->writes == f->fail_at)
                return -ENOSPC;
        return stamp_backend_writer_write(w->inner, data, len);
}

static int failing_writer_commit(struct stamp_backend_writer *bw, const char *name)
{
        struct failing_writer *w = (struct failing_writer *)bw;
        int r = stamp_backend_writer_commit(w->inner, name);

        free(w);
        return r;
}

static void failing_writer_abort(struct stamp_backend_writer *bw)
{
        struct failing_writer *w = (struct failing_writer *)bw;

        if (!w)
                return;
        stamp_backend_writer_abort(w->inner);
        free(w);
}

static const struct stamp_backend_ops failing_ops = {
        .writer_open = failing_writer_open,
        .writer_write = failing_writer_write,
        .writer_commit = failing_writer_commit,
        .writer_abort = failing_writer_abort,
};

/*
 * A write that fails halfway through a pack poisons its writer: the adds
 * after it, and finish, fail with that error, so that a pack lacking bytes
 * is never committed (whoever holds it, and whatever space comes back).
 */
static void test_failed_write_poisons(struct stamp_backend *b)
{
        struct failing f = { .base = { .ops = &failing_ops }, .inner = b, .fail_at = 2 };
        struct stamp_pack_writer *w;
        static unsigned char big[600 << 10];
        char name[64];
        struct stamp_id id;
        int r = 0;

        fill_random(big, sizeof(big), 7);
        CHECK_OK(stamp_pack_writer_new(&f.base, &w));
        /* 600 KiB objects: the second one overflows the 1 MiB buffer: write 1, */
        /* the third write 2, which fails; the objects after it would fit. */
        for (int i = 0; i < 8 && r == 0; i++) {
                big[0] = (unsigned char)i;
                stamp_checksum128(big, sizeof(big), &id);
                r = stamp_pack_writer_add(w, &id, STAMP_OBJ_DATA, STAMP_COMP_NONE,
                                          sizeof(big), big, sizeof(big));
        }
        CHECK_RC(r, -ENOSPC);
        CHECK(f.writes == 2);
        stamp_checksum128("x", 1, &id);
        CHECK_RC(stamp_pack_writer_add(w, &id, STAMP_OBJ_DATA, STAMP_COMP_NONE, 1, "x", 1),
                 -ENOSPC);
        CHECK_RC(stamp_pack_writer_finish(w, name), -ENOSPC);
        CHECK(f.writes == 2); /* nothing written after the failure */
        stamp_pack_writer_free(w);
}

static void copy_file(const char *from, const char *to)
{
        char cmd[1200];

        snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod u+w '%s'", from, to, to);
        CHECK(system(cmd) == 0);
}

static void flip_byte(const char *path, long off)
{
        int fd = open(path, O_RDWR);
        unsigned char c;

        CHECK(fd >= 0);
        if (off < 0)
                off += lseek(fd, 0, SEEK_END);
        CHECK(pread(fd, &c, 1, off) == 1);
        c ^= 0x40;
        CHECK(pwrite(fd, &c, 1, off) == 1);
        close(fd);
}

int main(void)
{
        char *dir = make_tmpdir(), name[64], copy[600];
        struct stamp_backend *b;
        struct stamp_id ids[OBJECTS];
        struct stamp_pack_entry *e;
        size_t n;
        uint64_t size;

        CHECK_OK(stamp_backend_local_open(dir, &b));
        write_pack(b, dir, name, ids);

        /* Round trip: the index lists every object in order, and records decode. */
        CHECK_OK(stamp_pack_load_index(b, name, &e, &n, &size));
        CHECK(n == OBJECTS);
        for (size_t i = 0; i < n; i++) {
                unsigned char hdr[STAMP_PACK_RECORD_HEADER_SIZE];
                struct stamp_pack_entry rec;
                unsigned char *payload = malloc(e[i].stored_len), raw[5000];
                struct stamp_id check;
                CHECK(stamp_id_cmp(&e[i].id, &ids[i]) == 0);
                CHECK_OK(stamp_backend_read(b, name, e[i].offset, hdr, sizeof(hdr)));
                CHECK_OK(stamp_pack_record_parse(hdr, e[i].offset, &rec));
                CHECK(rec.raw_len == e[i].raw_len && rec.stored_len == e[i].stored_len);
                CHECK_OK(stamp_backend_read(b, name, e[i].offset + sizeof(hdr), payload,
                                            e[i].stored_len));
                if (rec.comp == STAMP_COMP_ZSTD)
                        CHECK_OK(stamp_decompress(payload, rec.stored_len, raw, rec.raw_len));
                else
                        memcpy(raw, payload, rec.raw_len);
                stamp_checksum128(raw, rec.raw_len, &check);
                CHECK(stamp_id_cmp(&check, &ids[i]) == 0);
                free(payload);
        }
        free(e);
        CHECK_OK(stamp_pack_verify(b, name));

        /* A flipped byte anywhere fails the checksum; in a header, the record too. */
        snprintf(copy, sizeof(copy), "%s/packs/copy.pack", dir);
        copy_file(pack_path, copy);
        flip_byte(copy, 500);
        CHECK_RC(stamp_pack_verify(b, "packs/copy.pack"), -EBADMSG);
        {
                unsigned char hdr[STAMP_PACK_RECORD_HEADER_SIZE];
                struct stamp_pack_entry rec;
                snprintf(copy, sizeof(copy), "%s/packs/copyh.pack", dir);
                copy_file(pack_path, copy);
                flip_byte(copy, STAMP_PACK_HEADER_SIZE + 9);
                CHECK_OK(stamp_backend_read(b, "packs/copyh.pack", STAMP_PACK_HEADER_SIZE, hdr,
                                            sizeof(hdr)));
                CHECK_RC(stamp_pack_record_parse(hdr, STAMP_PACK_HEADER_SIZE, &rec), -EBADMSG);
        }
        /* A flipped byte in the trailer index breaks the index's consistency checks. */
        snprintf(copy, sizeof(copy), "%s/packs/copy2.pack", dir);
        copy_file(pack_path, copy);
        flip_byte(copy, -STAMP_PACK_TRAILER_SIZE - 5);
        CHECK_RC(stamp_pack_load_index(b, "packs/copy2.pack", &e, &n, &size), -EBADMSG);
        /* Truncation: no trailer. */
        snprintf(copy, sizeof(copy), "%s/packs/copy3.pack", dir);
        copy_file(pack_path, copy);
        CHECK(truncate(copy, 1000) == 0);
        CHECK_RC(stamp_pack_load_index(b, "packs/copy3.pack", &e, &n, &size), -EBADMSG);
        CHECK_RC(stamp_pack_verify(b, "packs/copy3.pack"), -EBADMSG);
        /* Wrong magic. */
        snprintf(copy, sizeof(copy), "%s/packs/copy4.pack", dir);
        copy_file(pack_path, copy);
        flip_byte(copy, 0);
        CHECK_RC(stamp_pack_load_index(b, "packs/copy4.pack", &e, &n, &size), -EBADMSG);
        /* An empty file. */
        CHECK(truncate(copy, 0) == 0);
        CHECK_RC(stamp_pack_load_index(b, "packs/copy4.pack", &e, &n, &size), -EBADMSG);

        test_failed_write_poisons(b);

        /* A pack that is abandoned leaves nothing behind (the poisoned one too). */
        {
                struct stamp_pack_writer *w;
                struct stamp_backend_writer *bw;
                CHECK_OK(stamp_pack_writer_new(b, &w));
                CHECK_OK(stamp_pack_writer_add(w, &ids[0], STAMP_OBJ_DATA, 0, 3, "abc", 3));
                stamp_pack_writer_free(w);
                /* and a temporary object of a "crashed" writer is cleaned up */
                CHECK_OK(stamp_backend_writer_open(b, &bw));
                CHECK_OK(stamp_backend_writer_write(bw, "x", 1));
                CHECK_OK(stamp_backend_cleanup(b));
                stamp_backend_writer_abort(bw);
                snprintf(copy, sizeof(copy), "rmdir '%s/tmp'", dir);
                CHECK(system(copy) == 0); /* fails unless tmp/ is empty */
        }
        stamp_backend_free(b);
        rm_rf(dir);
        free(dir);
        printf("test-pack: ok\n");
        return 0;
}
