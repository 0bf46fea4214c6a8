/* SPDX-License-Identifier: MIT */
/*
 * The store as a whole: init and open, the writer (dedup, collision
 * check), snapshots of a generated tree, and reading files back at any
 * offset, including files long enough for multi-level chunk lists; the
 * readers' shared hold on gc.lock.
 */
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "backend.h"
#include "index.h"
#include "pack.h"
#include "reader.h"
#include "snapshot.h"
#include "store.h"
#include "writer.h"
#include "tests.h"

static void write_file(const char *path, const unsigned char *data, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        CHECK(fd >= 0);
        CHECK(write(fd, data, len) == (ssize_t)len);
        close(fd);
}

static struct stamp_store *make_store(const char *dir, uint32_t min, uint32_t avg, uint32_t max)
{
        struct stamp_init_options o;
        struct stamp_store *s;

        stamp_init_options_default(&o);
        o.chunker = (struct stamp_chunker_params){ min, avg, max };
        CHECK_OK(stamp_store_init(dir, &o));
        CHECK_RC(stamp_store_init(dir, &o), -EEXIST);
        CHECK_OK(stamp_store_open(dir, &s));
        CHECK_OK(stamp_store_lock(s, 0, "test", NULL, 0));
        CHECK_OK(stamp_store_recover(s));
        return s;
}

static void test_open_errors(const char *tmp)
{
        struct stamp_store *s;
        char path[600];

        snprintf(path, sizeof(path), "%s/missing", tmp);
        CHECK_RC(stamp_store_open(path, &s), -ENOENT);
        snprintf(path, sizeof(path), "%s/notastore", tmp);
        CHECK(mkdir(path, 0700) == 0);
        CHECK_RC(stamp_store_open(path, &s), -EMEDIUMTYPE);
}

static void test_writer(const char *tmp)
{
        char dir[600];
        struct stamp_store *s;
        struct stamp_writer *w;
        struct stamp_zctx *z = stamp_zctx_new(3);
        struct stamp_writer_stats st;
        struct stamp_id a, b;
        unsigned char data[3000];
        uint8_t *got;
        size_t len;

        snprintf(dir, sizeof(dir), "%s/writer", tmp);
        s = make_store(dir, 4096, 16384, 131072);
        CHECK_OK(stamp_writer_new(s, &w));
        fill_random(data, sizeof(data), 3);
        CHECK_OK(stamp_writer_put(w, z, STAMP_OBJ_DATA, data, sizeof(data), &a));
        CHECK_OK(stamp_writer_put(w, z, STAMP_OBJ_DATA, data, sizeof(data), &b));
        CHECK(stamp_id_cmp(&a, &b) == 0);
        stamp_writer_stats(w, &st);
        CHECK(st.new_objects == 1); /* deduplicated within the session */
        CHECK_RC(stamp_store_get(s, &a, STAMP_OBJ_DATA, &got, &len), -ENOENT); /* not yet durable */
        CHECK_OK(stamp_writer_flush(w));
        CHECK_OK(stamp_store_get(s, &a, STAMP_OBJ_DATA, &got, &len));
        CHECK(len == sizeof(data) && memcmp(got, data, len) == 0);
        free(got);
        /* The wrong type is corrupt, not a different object. */
        CHECK_RC(stamp_store_get(s, &a, STAMP_OBJ_TREE, &got, &len), -EBADMSG);
        /* Deduplicated against the index (and byte-compared: small chunk). */
        CHECK_OK(stamp_writer_put(w, z, STAMP_OBJ_DATA, data, sizeof(data), &b));
        stamp_writer_stats(w, &st);
        CHECK(st.new_objects == 1);
        stamp_writer_free(w);
        stamp_zctx_free(z);
        stamp_store_free(s);
}

struct hold {
        struct stamp_store *s;
        int started; /* atomic */
};

/* Holds the index's write lock for a second, so that the committer cannot commit. */
static void *hold_index(void *arg)
{
        struct hold *h = arg;
        struct stamp_index *ix;

        CHECK_OK(stamp_store_index_open(h->s, &ix));
        CHECK_OK(stamp_index_begin(ix));
        __atomic_store_n(&h->started, 1, __ATOMIC_RELEASE);
        sleep(1);
        CHECK_OK(stamp_index_commit(ix));
        stamp_index_free(ix);
        return NULL;
}

/*
 * A writer faster than its committer (here: the index locked for a second)
 * waits once two full packs wait, instead of queueing every pack it fills
 * (each an open file and a buffer, and work a crash loses).
 */
static void test_writer_backpressure(const char *tmp)
{
        struct stamp_init_options o;
        struct stamp_writer_stats st;
        struct stamp_store *s;
        struct stamp_writer *w;
        struct hold h = { 0 };
        struct stamp_zctx *z = stamp_zctx_new(1);
        static unsigned char data[100000];
        char dir[600];
        pthread_t t;

        snprintf(dir, sizeof(dir), "%s/backpressure", tmp);
        stamp_init_options_default(&o);
        o.pack_size = 1u << 20;
        CHECK_OK(stamp_store_init(dir, &o));
        CHECK_OK(stamp_store_open(dir, &s));
        CHECK_OK(stamp_store_lock(s, 0, "test", NULL, 0));
        CHECK_OK(stamp_store_recover(s));
        CHECK_OK(stamp_writer_new(s, &w));
        h.s = s;
        CHECK_OK(pthread_create(&t, NULL, hold_index, &h));
        while (!__atomic_load_n(&h.started, __ATOMIC_ACQUIRE))
                usleep(1000);
        for (unsigned i = 0; i < 200; i++) { /* 20 MB, incompressible: 19 packs */
                struct stamp_id id;
                fill_random(data, sizeof(data), 1000 + i);
                CHECK_OK(stamp_writer_put(w, z, STAMP_OBJ_DATA, data, sizeof(data), &id));
        }
        CHECK_OK(stamp_writer_flush(w));
        stamp_writer_stats(w, &st);
        CHECK(st.packs >= 15);
        CHECK(st.queue_peak >= 1 && st.queue_peak <= 2);
        CHECK_OK(pthread_join(t, NULL));
        stamp_writer_free(w);
        stamp_zctx_free(z);
        stamp_store_free(s);
}

/* With ids truncated to one byte, different chunks collide: dedup must notice. */
static void test_collision(const char *tmp)
{
        char dir[600];
        struct stamp_store *s;
        struct stamp_writer *w;
        struct stamp_zctx *z = stamp_zctx_new(3);
        struct stamp_id id;
        unsigned char a[1000];
        int collided = 0;

        snprintf(dir, sizeof(dir), "%s/collide", tmp);
        setenv("STAMP_TEST_WEAK_IDS", "1", 1);
        s = make_store(dir, 4096, 16384, 131072);
        CHECK_OK(stamp_writer_new(s, &w));
        for (int i = 0; i < 600 && !collided; i++) {
                int r;
                fill_random(a, sizeof(a), (unsigned long long)i + 100);
                r = stamp_writer_put(w, z, STAMP_OBJ_DATA, a, sizeof(a), &id);
                CHECK(r == 0 || r == -EBADMSG);
                collided = r == -EBADMSG;
                if (i == 300)
                        CHECK_OK(stamp_writer_flush(w)); /* later hits are against the index */
        }
        CHECK(collided);
        unsetenv("STAMP_TEST_WEAK_IDS");
        stamp_writer_free(w);
        stamp_zctx_free(z);
        stamp_store_free(s);
}

static void check_file(struct stamp_store *s, const struct stamp_id *root, const char *path,
                       const unsigned char *data, size_t len)
{
        struct stamp_tree_obj parent;
        struct stamp_entry e;
        struct stamp_file *f;
        unsigned char *buf = malloc(len + 10);
        static const size_t offsets[] = { 0, 1, 4095, 4096, 65537, 1000000, 2000000 };

        CHECK_OK(stamp_path_resolve(s, root, path, &parent, &e));
        CHECK(e.size == len);
        CHECK_OK(stamp_file_open(s, &e, NULL, &f));
        CHECK(stamp_file_pread(f, buf, len + 10, 0) == (ssize_t)len);
        CHECK(memcmp(buf, data, len) == 0);
        for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
                size_t off = offsets[i] < len ? offsets[i] : len, want = len - off < 7777 ? len - off : 7777;
                CHECK(stamp_file_pread(f, buf, 7777, off) == (ssize_t)want);
                CHECK(memcmp(buf, data + off, want) == 0);
        }
        /* Random access backwards. */
        for (size_t off = len; off > 100; off /= 3) {
                CHECK(stamp_file_pread(f, buf, 50, off - 100) == 50);
                CHECK(memcmp(buf, data + off - 100, 50) == 0);
        }
        stamp_file_free(f);
        stamp_tree_obj_release(&parent);
        free(buf);
}

static void test_snapshot(const char *tmp)
{
        char dir[600], src[600], path[700];
        struct stamp_store *s;
        struct stamp_record rec, rec2, loaded;
        const char *bad = NULL;
        const char *sources[1];
        struct stamp_snapshot_options o = { 0 };
        size_t big = 3u << 20;
        unsigned char *data = malloc(big);
        struct stamp_strv list;

        /* Tiny chunks: 3 MiB gives ~12k chunks, so chunk lists of two levels. */
        snprintf(dir, sizeof(dir), "%s/snap", tmp);
        s = make_store(dir, 64, 256, 1024);
        snprintf(src, sizeof(src), "%s/src", tmp);
        CHECK(mkdir(src, 0755) == 0);
        fill_random(data, big, 9);
        snprintf(path, sizeof(path), "%s/big", src);
        write_file(path, data, big);
        snprintf(path, sizeof(path), "%s/small", src);
        write_file(path, data, 5000); /* fewer than 32 chunks: inline */
        snprintf(path, sizeof(path), "%s/empty", src);
        write_file(path, data, 0);
        snprintf(path, sizeof(path), "%s/sub", src);
        CHECK(mkdir(path, 0700) == 0);
        snprintf(path, sizeof(path), "%s/sub/same-as-big", src);
        write_file(path, data, big);

        sources[0] = src;
        o.sources = sources;
        o.n_sources = 1;
        o.threads = 2;
        CHECK_OK(stamp_snapshot_create(s, &o, &rec, &bad));
        CHECK(rec.files == 4 && rec.n_errors == 0);
        CHECK(rec.logical_bytes == 2 * big + 5000);
        /* The second copy of big is fully deduplicated. */
        CHECK(rec.new_bytes < big + big / 4);
        check_file(s, &rec.root, "big", data, big);
        check_file(s, &rec.root, "sub/same-as-big", data, big);
        check_file(s, &rec.root, "small", data, 5000);
        check_file(s, &rec.root, "empty", data, 0);

        /* A second snapshot of the unchanged tree adds only its record's trees. */
        CHECK_OK(stamp_snapshot_create(s, &o, &rec2, &bad));
        CHECK(strcmp(rec.stamp, rec2.stamp) < 0);
        CHECK(rec2.new_bytes == 0);
        CHECK(stamp_id_cmp(&rec.root, &rec2.root) == 0);
        CHECK_OK(stamp_store_record_load(s, rec2.stamp, &loaded));
        CHECK(loaded.files == 4);
        stamp_record_release(&loaded);
        CHECK_OK(stamp_store_list(s, &list));
        CHECK(list.n == 2 && strcmp(list.v[0], rec.stamp) == 0);
        stamp_strv_release(&list);

        /* An xattr change on an otherwise unchanged file reaches the next snapshot
         * (the files cache keeps xattrs, keyed by ctime). Skipped if the fs has no user xattrs. */
        snprintf(path, sizeof(path), "%s/small", src);
        if (setxattr(path, "user.k", "v1", 2, 0) == 0) {
                struct stamp_record r3, r4;
                struct stamp_tree_obj parent;
                struct stamp_entry e;
                const uint8_t *p;
                const char *n;
                const uint8_t *v;
                size_t nl, vl;

                sleep(3); /* past the racy window, so the file gets cached */
                CHECK_OK(stamp_snapshot_create(s, &o, &r3, &bad));
                CHECK_OK(stamp_snapshot_create(s, &o, &r4, &bad)); /* from the cache */
                CHECK_OK(stamp_path_resolve(s, &r4.root, "small", &parent, &e));
                p = e.xattrs;
                CHECK(e.xattr_count == 1);
                CHECK(stamp_xattr_next(&p, e.xattrs + e.xattrs_len, &n, &nl, &v, &vl) == 1);
                CHECK(vl == 2 && memcmp(v, "v1", 2) == 0);
                stamp_tree_obj_release(&parent);
                stamp_record_release(&r4);
                CHECK(setxattr(path, "user.k", "v2", 2, 0) == 0);
                CHECK_OK(stamp_snapshot_create(s, &o, &r4, &bad));
                CHECK_OK(stamp_path_resolve(s, &r4.root, "small", &parent, &e));
                p = e.xattrs;
                CHECK(stamp_xattr_next(&p, e.xattrs + e.xattrs_len, &n, &nl, &v, &vl) == 1);
                CHECK(vl == 2 && memcmp(v, "v2", 2) == 0);
                stamp_tree_obj_release(&parent);
                stamp_record_release(&r3);
                stamp_record_release(&r4);
        }

        /* Missing sources and duplicate basenames are refused up front. */
        {
                const char *two[2] = { src, src };
                o.sources = two;
                o.n_sources = 2;
                CHECK_RC(stamp_snapshot_create(s, &o, &loaded, &bad), -EEXIST);
                two[1] = "/nonexistent/x";
                CHECK_RC(stamp_snapshot_create(s, &o, &loaded, &bad), -ENOENT);
                CHECK(strcmp(bad, "/nonexistent/x") == 0);
        }
        stamp_record_release(&rec);
        stamp_record_release(&rec2);
        stamp_store_free(s);
        free(data);
}

static void check_get(struct stamp_store *s, const struct stamp_id *id, const unsigned char *data,
                      size_t len)
{
        uint8_t *got;
        size_t got_len;

        CHECK_OK(stamp_store_get(s, id, STAMP_OBJ_DATA, &got, &got_len));
        CHECK(got_len == len && memcmp(got, data, len) == 0);
        free(got);
}

static bool in_txn(struct stamp_store *s)
{
        struct stamp_index *ix;

        CHECK_OK(stamp_store_index(s, &ix));
        return !stamp_index_autocommit(ix);
}

/*
 * A read batch shares one index transaction, which shows the index as it
 * was when the batch began. An object committed since, or moved to another
 * pack since (gc's way: copy, relocate, delete the old pack), must still
 * read; and a transaction of the caller's own is left alone.
 */
static void test_read_batch(const char *tmp)
{
        char dir[600], moved[128], scratch[600];
        struct stamp_store *s, *r;
        struct stamp_writer *w;
        struct stamp_zctx *z = stamp_zctx_new(3);
        struct stamp_index *wix, *rix;
        struct stamp_pack_entry *ents;
        struct stamp_loc loc;
        struct stamp_id a, b;
        unsigned char da[5000], db[7000];
        uint8_t *pack;
        size_t n, pack_len;
        uint64_t size;

        snprintf(dir, sizeof(dir), "%s/batch", tmp);
        s = make_store(dir, 4096, 16384, 131072);
        CHECK_OK(stamp_writer_new(s, &w));
        fill_random(da, sizeof(da), 11);
        fill_random(db, sizeof(db), 12);
        CHECK_OK(stamp_writer_put(w, z, STAMP_OBJ_DATA, da, sizeof(da), &a));
        CHECK_OK(stamp_writer_flush(w));
        CHECK_OK(stamp_store_open(dir, &r));

        stamp_store_read_end(r); /* without a begin: nothing happens */
        CHECK(!in_txn(r));
        stamp_store_read_begin(r);
        stamp_store_read_begin(r); /* nested */
        CHECK(!in_txn(r)); /* opened by the first lookup, not before */
        check_get(r, &a, da, sizeof(da));
        CHECK(in_txn(r));
        stamp_store_read_end(r);
        CHECK(in_txn(r)); /* the outer batch still runs */

        /* Committed after the batch began. */
        CHECK_OK(stamp_writer_put(w, z, STAMP_OBJ_DATA, db, sizeof(db), &b));
        CHECK_OK(stamp_writer_flush(w));
        check_get(r, &b, db, sizeof(db));
        check_get(r, &a, da, sizeof(da));
        CHECK(in_txn(r)); /* a fresh transaction */

        /* Moved after the batch's transaction began. */
        CHECK_OK(stamp_store_index(s, &wix));
        CHECK(stamp_index_find(wix, &a, &loc) == 1);
        CHECK_OK(stamp_pack_load_index(stamp_store_backend(s), loc.pack, &ents, &n, &size));
        CHECK_OK(stamp_backend_get(stamp_store_backend(s), loc.pack, size, &pack, &pack_len));
        CHECK(strlen(loc.pack) + 6 < sizeof(moved)); /* and < 64, the index's bound */
        snprintf(moved, sizeof(moved), "%s.moved", loc.pack);
        CHECK_OK(stamp_backend_put(stamp_store_backend(s), moved, pack, pack_len));
        snprintf(scratch, sizeof(scratch), "%s/scratch.db", tmp);
        close(open(scratch, O_WRONLY | O_CREAT | O_TRUNC, 0600));
        CHECK_OK(stamp_index_scratch_attach(wix, scratch)); /* gc's statements */
        CHECK_OK(stamp_index_relocate(wix, moved, size, ents, n));
        CHECK_OK(stamp_backend_remove(stamp_store_backend(s), loc.pack));
        check_get(r, &a, da, sizeof(da));
        check_get(r, &b, db, sizeof(db));
        stamp_store_read_end(r);
        CHECK(!in_txn(r));
        free(pack);
        free(ents);

        /* The caller's own transaction stays open through a batch. */
        CHECK_OK(stamp_store_index(r, &rix));
        CHECK_OK(stamp_index_begin_read(rix));
        stamp_store_read_begin(r);
        check_get(r, &a, da, sizeof(da));
        stamp_store_read_end(r);
        CHECK(in_txn(r));
        stamp_index_end_read(rix);
        CHECK(!in_txn(r));

        stamp_store_free(r);
        stamp_writer_free(w);
        stamp_zctx_free(z);
        stamp_store_free(s);
}

/* gc.lock: readers hold it shared and together; gc cannot take it meanwhile. */
static void test_gc_hold(const char *tmp)
{
        struct stamp_store *gc, *r1, *r2, *s;
        char dir[600], holder[128];

        snprintf(dir, sizeof(dir), "%s/hold", tmp);
        s = make_store(dir, 1024, 4096, 16384);
        stamp_store_free(s);
        CHECK_OK(stamp_store_open(dir, &gc));
        CHECK_OK(stamp_store_open(dir, &r1));
        CHECK_OK(stamp_store_open(dir, &r2));
        CHECK(!stamp_store_gc_held_by_readers(gc));

        CHECK_OK(stamp_store_gc_hold(r1, 0, holder, sizeof(holder)));
        CHECK_OK(stamp_store_gc_hold(r2, 0, holder, sizeof(holder)));
        CHECK_OK(stamp_store_gc_hold(r2, 0, holder, sizeof(holder))); /* held already */
        CHECK(stamp_store_gc_held_by_readers(gc));
        CHECK_RC(stamp_store_gc_lock(gc, 0, "gc", holder, sizeof(holder)), -EBUSY);
        CHECK(strcmp(holder, "a restore or drill reading it") == 0);
        CHECK(!stamp_store_gc_locked(gc));
        CHECK(!stamp_store_gc_locked(r1)); /* a hold is not the gc lock */

        stamp_store_free(r1);
        CHECK_RC(stamp_store_gc_lock(gc, 0, "gc", holder, sizeof(holder)), -EBUSY);
        stamp_store_free(r2);
        CHECK(!stamp_store_gc_held_by_readers(gc));
        CHECK_OK(stamp_store_gc_lock(gc, 0, "gc", holder, sizeof(holder)));
        CHECK(!stamp_store_gc_held_by_readers(gc)); /* held, but by gc */

        /* A reader waits for gc, then says who held it. */
        CHECK_OK(stamp_store_open(dir, &r1));
        CHECK_RC(stamp_store_gc_hold(r1, 0, holder, sizeof(holder)), -EBUSY);
        CHECK(strstr(holder, ": gc") != NULL);
        stamp_store_gc_unlock(gc);
        CHECK_OK(stamp_store_gc_hold(r1, 0, holder, sizeof(holder)));
        stamp_store_free(r1);
        stamp_store_free(gc);
}

int main(void)
{
        char *tmp = make_tmpdir();

        test_open_errors(tmp);
        test_writer(tmp);
        test_writer_backpressure(tmp);
        test_collision(tmp);
        test_snapshot(tmp);
        test_read_batch(tmp);
        test_gc_hold(tmp);
        rm_rf(tmp);
        free(tmp);
        printf("test-store: ok\n");
        return 0;
}
