/* SPDX-License-Identifier: MIT */
/*
 * Holes: stamp_file_seek() (SEEK_DATA / SEEK_HOLE) and
 * stamp_file_allocated() over snapshots of sparse, dense and all-zero
 * files. A store with 4 KiB chunks makes a 64 MiB sparse file chunk-listed
 * on two levels, with whole chunk lists of zeros in it. Every answer is
 * checked against the file's bytes: a hole holds only zeros, and no byte
 * that is not zero is ever in one.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunker.h"
#include "hash.h"
#include "reader.h"
#include "store.h"
#include "tests.h"

#define MiB (1u << 20)
#define SPARSE_SIZE (64u * MiB)
#define ZERO_SIZE (2u * MiB)
#define DENSE_SIZE (300u * 1000)

/* Where the sparse file has data: offset and length. */
static const struct {
        uint64_t off;
        size_t len;
} data_at[] = { { 0, 10000 }, { 20 * MiB + 3, 5000 }, { 63 * MiB, 4096 } };

static void write_sparse(const char *dir)
{
        char path[700];
        unsigned char buf[10000];
        int fd;

        snprintf(path, sizeof(path), "%s/sparse", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0);
        CHECK(ftruncate(fd, SPARSE_SIZE) == 0);
        for (size_t i = 0; i < sizeof(data_at) / sizeof(data_at[0]); i++) {
                fill_random(buf, data_at[i].len, 7 + i);
                CHECK(pwrite(fd, buf, data_at[i].len, (off_t)data_at[i].off) ==
                      (ssize_t)data_at[i].len);
        }
        close(fd);
        /* The same bytes, every one written: the snapshot must not tell them apart. */
        {
                unsigned char *all = calloc(1, SPARSE_SIZE);
                CHECK(all);
                for (size_t i = 0; i < sizeof(data_at) / sizeof(data_at[0]); i++)
                        fill_random(all + data_at[i].off, data_at[i].len, 7 + i);
                snprintf(path, sizeof(path), "%s/sparse-written", dir);
                fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                CHECK(fd >= 0);
                CHECK(write(fd, all, SPARSE_SIZE) == (ssize_t)SPARSE_SIZE);
                close(fd);
                free(all);
        }
        snprintf(path, sizeof(path), "%s/zeros", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0);
        CHECK(ftruncate(fd, ZERO_SIZE) == 0);
        close(fd);
}

static struct stamp_file *open_file(struct stamp_store *s, const struct stamp_id *root,
                                    const char *name, struct stamp_tree_obj *parent)
{
        struct stamp_entry e;
        struct stamp_file *f;

        CHECK_OK(stamp_path_resolve(s, root, name, parent, &e));
        CHECK_OK(stamp_file_open(s, &e, NULL, &f));
        return f;
}

/* The bytes of a file, as the starts of its runs of bytes that are not zero. */
struct runs {
        uint64_t *start, *end;
        size_t n;
        uint64_t size;
};

static void runs_of(const unsigned char *p, uint64_t size, struct runs *ret)
{
        struct runs r = { .size = size };
        size_t cap = 0;

        for (uint64_t i = 0; i < size;) {
                uint64_t j;
                if (!p[i]) {
                        i++;
                        continue;
                }
                for (j = i; j < size && p[j]; j++)
                        ;
                if (r.n == cap) {
                        cap = cap ? 2 * cap : 64;
                        r.start = realloc(r.start, cap * sizeof(uint64_t));
                        r.end = realloc(r.end, cap * sizeof(uint64_t));
                        CHECK(r.start && r.end);
                }
                r.start[r.n] = i;
                r.end[r.n++] = j;
                i = j;
        }
        *ret = r;
}

/* The first byte at or after @off that is not zero, or the size. */
static uint64_t next_nonzero(const struct runs *r, uint64_t off)
{
        size_t lo = 0, hi = r->n;

        while (lo < hi) { /* the first run ending after @off */
                size_t mid = lo + (hi - lo) / 2;
                if (r->end[mid] <= off)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo == r->n)
                return r->size;
        return r->start[lo] > off ? r->start[lo] : off;
}

static bool all_zero(const struct runs *r, uint64_t from, uint64_t to)
{
        return next_nonzero(r, from) >= to;
}

/* Every SEEK_DATA and SEEK_HOLE answer agrees with the bytes @want. */
static void check_seeks(struct stamp_file *f, const unsigned char *bytes, uint64_t size,
                        uint64_t step)
{
        struct runs rs, *want = &rs;

        runs_of(bytes, size, &rs);
        for (uint64_t off = 0; off < size; off += step) {
                int64_t d = stamp_file_seek(f, off, true);
                int64_t h = stamp_file_seek(f, off, false);
                uint64_t nz = next_nonzero(want, off);

                /* Data: not before @off, and no byte that is not zero is skipped. */
                if (d == -ENXIO)
                        CHECK(nz == size);
                else {
                        CHECK(d >= (int64_t)off && (uint64_t)d <= nz);
                        CHECK(all_zero(want, off, (uint64_t)d));
                }
                /* A hole: only zeros, up to the data after it. */
                CHECK(h >= (int64_t)off && (uint64_t)h <= size);
                if ((uint64_t)h < size) {
                        int64_t after = stamp_file_seek(f, (uint64_t)h, true);
                        uint64_t end = after == -ENXIO ? size : (uint64_t)after;
                        CHECK(after == -ENXIO || after > h);
                        CHECK(all_zero(want, (uint64_t)h, end));
                }
        }
        CHECK(stamp_file_seek(f, size, true) == -ENXIO);
        CHECK(stamp_file_seek(f, size, false) == -ENXIO);
        CHECK(stamp_file_seek(f, size + 12345, false) == -ENXIO);
        free(rs.start);
        free(rs.end);
}

/*
 * Walking data and holes in turn, as cp does, and reading only the data,
 * gives the file back; returns the bytes of data read.
 */
static uint64_t copy_sparse(struct stamp_file *f, const unsigned char *want, uint64_t size)
{
        unsigned char *got = calloc(1, size ? size : 1);
        uint64_t off = 0, data = 0;

        CHECK(got);
        while (off < size) {
                int64_t d = stamp_file_seek(f, off, true), h;
                if (d == -ENXIO)
                        break;
                CHECK(d >= 0);
                h = stamp_file_seek(f, (uint64_t)d, false);
                CHECK(h > d);
                CHECK(stamp_file_pread(f, got + d, (size_t)(h - d), (uint64_t)d) == h - d);
                data += (uint64_t)(h - d);
                off = (uint64_t)h;
        }
        CHECK(memcmp(got, want, size) == 0);
        free(got);
        return data;
}

static unsigned char *read_all(struct stamp_file *f, uint64_t size)
{
        unsigned char *p = malloc(size);

        CHECK(p);
        CHECK(stamp_file_pread(f, p, size, 0) == (ssize_t)size);
        return p;
}

int main(void)
{
        char *dir = make_tmpdir();
        char src[600], store[600], stamp[STAMP_STAMP_LEN + 1];
        struct stamp_init_options io;
        struct stamp_store *s;
        struct stamp_record rec;
        struct stamp_tree_obj parent;
        struct stamp_file *f;
        unsigned char *want;
        uint64_t a, a_full, data, nonzero = 0;

        snprintf(src, sizeof(src), "%s/src", dir);
        snprintf(store, sizeof(store), "%s/store", dir);
        CHECK(mkdir(src, 0755) == 0);
        write_sparse(src);
        write_random_file(src, "dense", DENSE_SIZE, 3);
        write_random_file(src, "empty", 0, 0);
        stamp_init_options_default(&io);
        io.chunker = (struct stamp_chunker_params){ .min = 256, .avg = 1024, .max = 4096 };
        CHECK_OK(stamp_store_init(store, &io));
        CHECK_OK(stamp_store_open(store, &s));
        take_snapshot(s, src, stamp);
        CHECK_OK(stamp_store_record_load(s, stamp, &rec));

        /*
         * The snapshot read the sparse file's holes as zeros without reading
         * them (SEEK_DATA): its content is that of the file written in full.
         */
        {
                struct stamp_tree_obj p2;
                struct stamp_entry e1, e2;
                struct stat st;
                char path[700];
                snprintf(path, sizeof(path), "%s/sparse", src);
                CHECK(stat(path, &st) == 0);
                CHECK((uint64_t)st.st_blocks * 512 < SPARSE_SIZE / 2); /* or this checks nothing */
                CHECK_OK(stamp_path_resolve(s, &rec.root, "sparse", &parent, &e1));
                CHECK_OK(stamp_path_resolve(s, &rec.root, "sparse-written", &p2, &e2));
                CHECK(e1.size == e2.size && e1.content_len == e2.content_len);
                CHECK(memcmp(e1.content, e2.content, e1.content_len) == 0);
                stamp_tree_obj_release(&parent);
                stamp_tree_obj_release(&p2);
        }

        /* The sparse file: two levels of chunk lists, and lists of zeros only. */
        f = open_file(s, &rec.root, "sparse", &parent);
        CHECK(stamp_file_chunked(f));
        want = read_all(f, SPARSE_SIZE);
        for (uint64_t i = 0; i < SPARSE_SIZE; i++)
                nonzero += want[i] != 0;
        /* Before any walk the store knows no list of zeros: unlooked-at lists are data. */
        CHECK_OK(stamp_file_allocated(f, 0, &a));
        CHECK(a == SPARSE_SIZE);
        CHECK_OK(stamp_file_allocated(f, 1000, &a_full));
        CHECK(a_full >= nonzero);
        /* Each data run costs at most two chunks of zeros around it. */
        CHECK(a_full <= 10000 + 5000 + 4096 + 3 * 2 * 4096);
        /*
         * Now the lists of zeros are known and need no loading: at least one
         * leaf list (4096 chunks of 4 KiB) lies between 20 and 63 MiB.
         */
        CHECK_OK(stamp_file_allocated(f, 0, &a));
        CHECK(a <= SPARSE_SIZE - 4096u * 4096u && a >= a_full);
        check_seeks(f, want, SPARSE_SIZE, 12289);
        for (size_t i = 0; i < sizeof(data_at) / sizeof(data_at[0]); i++)
                CHECK(stamp_file_seek(f, data_at[i].off, true) == (int64_t)data_at[i].off);
        data = copy_sparse(f, want, SPARSE_SIZE);
        CHECK(data == a_full);
        free(want);
        stamp_file_free(f);
        stamp_tree_obj_release(&parent);

        /* All zeros, in whole chunks: one hole, no data at all. */
        f = open_file(s, &rec.root, "zeros", &parent);
        CHECK(stamp_file_seek(f, 0, true) == -ENXIO);
        CHECK(stamp_file_seek(f, 0, false) == 0);
        CHECK(stamp_file_seek(f, ZERO_SIZE - 1, false) == ZERO_SIZE - 1);
        CHECK_OK(stamp_file_allocated(f, 1000, &a));
        CHECK(a == 0);
        stamp_file_free(f);
        stamp_tree_obj_release(&parent);

        /* Dense: data everywhere, the only hole is the end. */
        f = open_file(s, &rec.root, "dense", &parent);
        want = read_all(f, DENSE_SIZE);
        CHECK(stamp_file_seek(f, 0, true) == 0);
        CHECK(stamp_file_seek(f, 5, true) == 5);
        CHECK(stamp_file_seek(f, 0, false) == DENSE_SIZE);
        CHECK_OK(stamp_file_allocated(f, 1000, &a));
        CHECK(a == DENSE_SIZE);
        check_seeks(f, want, DENSE_SIZE, 997);
        CHECK(copy_sparse(f, want, DENSE_SIZE) == DENSE_SIZE);
        free(want);
        stamp_file_free(f);
        stamp_tree_obj_release(&parent);

        /* Empty: nothing to seek to, nothing allocated. */
        f = open_file(s, &rec.root, "empty", &parent);
        CHECK(stamp_file_seek(f, 0, true) == -ENXIO);
        CHECK(stamp_file_seek(f, 0, false) == -ENXIO);
        CHECK_OK(stamp_file_allocated(f, 1000, &a));
        CHECK(a == 0);
        stamp_file_free(f);
        stamp_tree_obj_release(&parent);

        /* Only the id of zeros of that very length is a chunk of zeros. */
        {
                unsigned char *z = calloc(1, 8192);
                struct stamp_id id;
                CHECK(z);
                stamp_hasher_id(stamp_store_hasher(s), z, 8192, &id);
                CHECK(stamp_store_zero_chunk(s, &id, 8192));
                CHECK(!stamp_store_zero_chunk(s, &id, 4096));
                stamp_hasher_id(stamp_store_hasher(s), z, 5000, &id);
                CHECK(!stamp_store_zero_chunk(s, &id, 5000)); /* not a length holes are cut into */
                z[100] = 1;
                stamp_hasher_id(stamp_store_hasher(s), z, 8192, &id);
                CHECK(!stamp_store_zero_chunk(s, &id, 8192));
                free(z);
        }

        stamp_record_release(&rec);
        stamp_store_free(s);

        /*
         * A store whose secret makes its chunker cut zeros before the largest
         * size (at an odd length): its holes are holes too.
         */
        {
                struct stamp_chunker ch;
                struct stamp_hasher *h;
                char store2[700], src2[600], path2[700];
                uint64_t key = 0;
                int fd;
                io.chunker = (struct stamp_chunker_params){ .min = 64, .avg = 128, .max = 256 };
                io.have_secret = true;
                do {
                        memset(io.secret, 0, sizeof(io.secret));
                        key++;
                        memcpy(io.secret, &key, sizeof(key));
                        h = stamp_hasher_new(io.secret);
                        CHECK(h);
                        stamp_chunker_init(&ch, &io.chunker, h);
                        stamp_hasher_free(h);
                } while ((ch.zero_cut == io.chunker.max || ch.zero_cut % 4096 == 0) && key < 100000);
                CHECK(ch.zero_cut < io.chunker.max);
                snprintf(store2, sizeof(store2), "%s/store-early", dir);
                snprintf(src2, sizeof(src2), "%s/src-early", dir);
                CHECK(mkdir(src2, 0755) == 0);
                snprintf(path2, sizeof(path2), "%s/zeros", src2);
                fd = open(path2, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                CHECK(fd >= 0 && ftruncate(fd, ch.zero_cut * 1000) == 0);
                close(fd);
                CHECK_OK(stamp_store_init(store2, &io));
                CHECK_OK(stamp_store_open(store2, &s));
                take_snapshot(s, src2, stamp);
                CHECK_OK(stamp_store_record_load(s, stamp, &rec));
                f = open_file(s, &rec.root, "zeros", &parent);
                CHECK_OK(stamp_file_allocated(f, 1000, &a));
                CHECK(a == 0);
                CHECK(stamp_file_seek(f, 0, true) == -ENXIO);
                stamp_file_free(f);
                stamp_tree_obj_release(&parent);
                stamp_record_release(&rec);
                stamp_store_free(s);
        }
        rm_rf(dir);
        free(dir);
        printf("ok\n");
        return 0;
}
