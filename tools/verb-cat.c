/* SPDX-License-Identifier: MIT */
/* stamp cat: a file of a snapshot to standard output. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "reader.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] cat STAMP PATH\n"
               "\n"
               "Write the content of file PATH of snapshot STAMP ('latest' for the newest)\n"
               "to standard output. PATH is relative to the snapshot's root. Every chunk is\n"
               "verified against its id: damaged data is an error, never wrong bytes.\n"
               "Into a file (> FILE, not >>), blocks of zeros are left as holes.\n");
}

/*
 * Whether standard output is a regular file written at its end, not in
 * append mode: then a hole can be skipped with lseek() past the end
 * instead of written, and reads back as the zeros it is.
 */
static bool stdout_at_end(void)
{
        struct stat st;
        int fl = fcntl(STDOUT_FILENO, F_GETFL);
        off_t pos = lseek(STDOUT_FILENO, 0, SEEK_CUR);

        return fl >= 0 && !(fl & O_APPEND) && fstat(STDOUT_FILENO, &st) == 0 &&
               S_ISREG(st.st_mode) && pos >= 0 && pos == st.st_size;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/*
 * Writes @n bytes to standard output, skipping (lseek) each whole 4 KiB
 * block of zeros instead of writing it; *skipped tells whether the last
 * bytes were skipped.
 */
static int write_holes(const uint8_t *p, size_t n, bool *skipped)
{
        static const uint8_t zero[4096];

        for (size_t k = 0; k < n;) {
                size_t run = 0;
                bool z = n - k >= sizeof(zero) && memcmp(p + k, zero, sizeof(zero)) == 0;
                /* The run of blocks of one kind from k (a partial last block is data). */
                while (k + run < n) {
                        size_t m = n - k - run < sizeof(zero) ? n - k - run : sizeof(zero);
                        if ((m == sizeof(zero) && memcmp(p + k + run, zero, m) == 0) != z)
                                break;
                        run += m;
                }
                if (z && lseek(STDOUT_FILENO, (off_t)run, SEEK_CUR) < 0)
                        return -errno;
                if (!z) {
                        int r = write_all(STDOUT_FILENO, p + k, run);
                        if (r < 0)
                                return r;
                }
                *skipped = z;
                k += run;
        }
        return 0;
}

static int cat_file(struct stamp_store *s, const char *stamp, const char *path)
{
        struct stamp_record rec;
        struct stamp_tree_obj parent = { 0 };
        struct stamp_entry e;
        struct stamp_file *f = NULL;
        uint8_t *buf = NULL;
        uint64_t off = 0;
        bool sparse, skipped = false; /* skipped: the last bytes were a hole, not written */
        int r;

        r = stamp_store_record_load(s, stamp, &rec);
        if (r < 0) {
                log_error("snapshot '%s': record unreadable: %s", stamp, describe(r));
                return exit_code(r);
        }
        r = stamp_path_resolve(s, &rec.root, path, &parent, &e);
        stamp_record_release(&rec);
        if (r == -EBADMSG) {
                /* Not damage if a prune and gc took the snapshot away meanwhile. */
                struct stamp_record again;
                int k = stamp_store_record_load(s, stamp, &again);
                if (k == 0)
                        stamp_record_release(&again);
                if (k == -ENOENT) {
                        log_error("snapshot %s was forgotten while it was read", stamp);
                        return EXIT_NOTFOUND;
                }
        }
        if (r == -ENOENT || r == -ENOTDIR) {
                log_error("'%s' does not exist in snapshot %s", path, stamp);
                return EXIT_NOTFOUND;
        }
        if (r < 0) {
                log_error("'%s' in snapshot %s: %s%s", path, stamp, describe(r),
                          r == -EBADMSG ? " (a directory on its path is damaged or missing "
                                          "from the store; 'stamp verify' lists the damage)"
                                        : "");
                return exit_code(r);
        }
        if (e.type != 1 /* STAMP_T_REG */) {
                log_error("'%s' in snapshot %s is not a regular file", path, stamp);
                stamp_tree_obj_release(&parent);
                return EXIT_USAGE;
        }
        r = stamp_file_open(s, &e, NULL, &f);
        stamp_tree_obj_release(&parent);
        buf = malloc(1 << 20);
        if (r == 0 && !buf)
                r = -ENOMEM;
        sparse = stdout_at_end();
        while (r == 0 && off < e.size) {
                ssize_t n;
                if (sparse) { /* a hole from here on is skipped, not read */
                        int64_t d = stamp_file_seek(f, off, true);
                        if (d == -ENXIO)
                                d = (int64_t)e.size;
                        if (d < 0) {
                                r = (int)d;
                                break;
                        }
                        if ((uint64_t)d > off) {
                                if (lseek(STDOUT_FILENO, (off_t)((uint64_t)d - off), SEEK_CUR) < 0) {
                                        r = -errno;
                                        log_error("cannot seek in standard output: %s", describe(r));
                                        free(buf);
                                        stamp_file_free(f);
                                        return EXIT_FAILED;
                                }
                                skipped = true;
                                off = (uint64_t)d;
                                continue;
                        }
                }
                n = stamp_file_pread(f, buf, 1 << 20, off);
                if (n < 0) {
                        r = (int)n;
                        break;
                }
                if (n == 0)
                        break;
                r = sparse ? write_holes(buf, (size_t)n, &skipped)
                           : write_all(STDOUT_FILENO, buf, (size_t)n);
                if (r < 0) {
                        log_error("cannot write to standard output: %s", describe(r));
                        free(buf);
                        stamp_file_free(f);
                        return EXIT_FAILED;
                }
                off += (uint64_t)n;
        }
        /* A hole at the end: the size is set, the bytes are not written. */
        if (r == 0 && skipped && ftruncate(STDOUT_FILENO, lseek(STDOUT_FILENO, 0, SEEK_CUR)) < 0) {
                log_error("cannot set the size of standard output: %s", describe(-errno));
                free(buf);
                stamp_file_free(f);
                return EXIT_FAILED;
        }
        free(buf);
        stamp_file_free(f);
        if (r < 0) {
                log_error("'%s' in snapshot %s: %s at offset %llu", path, stamp, describe(r),
                          (unsigned long long)off);
                return exit_code(r);
        }
        return EXIT_OK;
}

int verb_cat(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS, {} };
        struct stamp_store *s = NULL;
        struct verb_options vo = { 0 };
        char stamp[STAMP_STAMP_LEN + 1];
        int r;

        json_raw_output(); /* the file's bytes, whatever --json says */
        r = parse_options(argc, argv, opts, "cat", help, &vo);
        if (r >= 0)
                return r;
        if (optind + 2 != argc)
                return usage_error("cat", "expected STAMP and PATH");
        r = open_store_stamp(argv[optind], &s, stamp);
        if (r != EXIT_OK)
                return r;
        r = cat_file(s, stamp, argv[optind + 1]);
        stamp_store_free(s);
        return r;
}
