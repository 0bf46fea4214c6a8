/* SPDX-License-Identifier: MIT */
/*
 * gc, stats, walks and reindex through the library: what gc deletes is
 * exactly what only a forgotten snapshot held (by stats' count), a dry run
 * changes nothing, gc-pending is finished only for packs the index no
 * longer lists, and a reader whose index.db was replaced by reindex
 * reopens it and finds what was committed afterwards.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gc.h"
#include "reader.h"
#include "snapshot.h"
#include "stats.h"
#include "store.h"
#include "tests.h"

#define FILE_SIZE (200u * 1024)

static void check_content(struct stamp_store *s, const char *stamp, const char *name,
                          unsigned long long seed)
{
        unsigned char *want = malloc(FILE_SIZE), *got = malloc(FILE_SIZE + 1);
        struct stamp_record rec;
        struct stamp_tree_obj parent;
        struct stamp_entry e;
        struct stamp_file *f;

        fill_random(want, FILE_SIZE, seed);
        CHECK_OK(stamp_store_record_load(s, stamp, &rec));
        CHECK_OK(stamp_path_resolve(s, &rec.root, name, &parent, &e));
        CHECK_OK(stamp_file_open(s, &e, NULL, &f));
        CHECK(stamp_file_pread(f, got, FILE_SIZE + 1, 0) == (ssize_t)FILE_SIZE);
        CHECK(memcmp(got, want, FILE_SIZE) == 0);
        stamp_file_free(f);
        stamp_tree_obj_release(&parent);
        stamp_record_release(&rec);
        free(want);
        free(got);
}

static struct stamp_store *open_store(const char *dir)
{
        struct stamp_store *s;

        CHECK_OK(stamp_store_open(dir, &s));
        return s;
}

static void gc(struct stamp_store *s, bool dry_run, unsigned pct, struct stamp_gc_result *res)
{
        struct stamp_gc_options o = { .dry_run = dry_run, .max_unused_pct = pct,
                                      .lock_timeout_s = 5 };

        CHECK_RC(stamp_gc_run(s, &o, res), -EINVAL); /* needs the gc lock */
        CHECK_OK(stamp_store_gc_lock(s, 0, "test gc", NULL, 0));
        CHECK_OK(stamp_gc_run(s, &o, res));
        stamp_store_gc_unlock(s);
}

static void stats(struct stamp_store *s, struct stamp_stats *st)
{
        char bad[STAMP_STAMP_LEN + 1];

        CHECK_OK(stamp_stats_compute(s, NULL, NULL, st, bad));
        CHECK(st->missing_objects == 0 && st->unindexed_packs == 0);
}

static bool exists(const char *dir, const char *name)
{
        char path[700];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return access(path, F_OK) == 0;
}

static int first_name(const char *name, void *userdata)
{
        char *ret = userdata;

        if (!ret[0])
                snprintf(ret, 64, "%s", name);
        return 0;
}

/* gc-pending: packs the index still lists stay; others go; the list goes. */
static void test_pending(const char *dir)
{
        struct stamp_store *s = open_store(dir);
        struct stamp_backend *b = stamp_store_backend(s);
        struct stamp_index *ix;
        struct stamp_stats st;
        const char *fake = "packs/00/00000000000000000000000000000000.pack";
        char text[512], indexed[64] = "";
        uint64_t removed;

        /* An indexed pack: any pack file on disk (they are all indexed). */
        CHECK_OK(stamp_backend_list(b, "packs/", first_name, indexed));
        CHECK(indexed[0]);
        CHECK_OK(stamp_backend_put(b, fake, "x", 1));
        snprintf(text, sizeof(text), "stampfs-gc-pending 1\n%s\n%s\nend\n", indexed, fake);
        CHECK_OK(stamp_backend_put(b, "gc-pending", text, strlen(text)));
        CHECK_OK(stamp_store_index_open(s, &ix));
        CHECK_RC(stamp_gc_pending_complete(s, ix, &removed), -EINVAL); /* needs the lock */
        CHECK_OK(stamp_store_lock(s, 0, "test", NULL, 0));
        CHECK_OK(stamp_gc_pending_complete(s, ix, &removed));
        CHECK(removed == 1);
        CHECK(exists(dir, indexed) && !exists(dir, fake) && !exists(dir, "gc-pending"));

        /* A list without its end line is dropped whole: nothing is unlinked. */
        CHECK_OK(stamp_backend_put(b, fake, "x", 1));
        snprintf(text, sizeof(text), "stampfs-gc-pending 1\n%s\n", fake);
        CHECK_OK(stamp_backend_put(b, "gc-pending", text, strlen(text)));
        CHECK_OK(stamp_gc_pending_complete(s, ix, &removed));
        CHECK(removed == 0 && exists(dir, fake) && !exists(dir, "gc-pending"));
        /* Recovery finishes a list before it indexes unknown packs. */
        snprintf(text, sizeof(text), "stampfs-gc-pending 1\n%s\nend\n", fake);
        CHECK_OK(stamp_backend_put(b, "gc-pending", text, strlen(text)));
        CHECK_OK(stamp_store_recover(s));
        CHECK(!exists(dir, fake) && !exists(dir, "gc-pending"));
        stamp_index_free(ix);
        stamp_store_unlock(s);
        stats(s, &st);
        stamp_stats_release(&st);
        stamp_store_free(s);
}

int main(void)
{
        char *tmp = make_tmpdir(), dir[600], src[600];
        char a[STAMP_STAMP_LEN + 1], b[STAMP_STAMP_LEN + 1], c[STAMP_STAMP_LEN + 1];
        struct stamp_init_options io;
        struct stamp_store *s, *reader;
        struct stamp_stats st;
        struct stamp_gc_result res;
        struct stamp_reindex_result rr;
        uint64_t a_only, a_only_bytes;

        snprintf(dir, sizeof(dir), "%s/store", tmp);
        snprintf(src, sizeof(src), "%s/src", tmp);
        stamp_init_options_default(&io);
        io.chunker = (struct stamp_chunker_params){ 64, 256, 1024 }; /* chunk lists */
        io.pack_size = 1u << 20;
        CHECK_OK(stamp_store_init(dir, &io));
        CHECK(mkdir(src, 0755) == 0);
        write_random_file(src, "a", FILE_SIZE, 1);
        write_random_file(src, "b", FILE_SIZE, 2);
        s = open_store(dir);
        take_snapshot(s, src, a);
        CHECK(unlink(strcat(strcpy((char[700]){ 0 }, src), "/a")) == 0);
        write_random_file(src, "c", FILE_SIZE, 3);
        take_snapshot(s, src, b);

        /* Stats: everything indexed is referenced; each snapshot holds some alone. */
        stats(s, &st);
        CHECK(st.snapshots == 2 && st.n_snap == 2);
        CHECK(st.objects == st.referenced_objects && st.unused_bytes == 0);
        CHECK(st.unreferenced_packs == 0);
        CHECK(st.snap[0].exclusive_objects > 0 && st.snap[1].exclusive_objects > 0);
        CHECK(st.snap[0].objects + st.snap[1].objects - st.snap[0].exclusive_objects -
                      st.snap[1].exclusive_objects ==
              2 * (st.referenced_objects - st.snap[0].exclusive_objects -
                   st.snap[1].exclusive_objects));
        CHECK(st.logical_bytes == 4 * FILE_SIZE);
        a_only = st.snap[0].exclusive_objects;
        a_only_bytes = st.snap[0].exclusive_bytes;
        stamp_stats_release(&st);

        /* Nothing to collect yet. */
        gc(s, false, 0, &res);
        CHECK(res.candidates == 0 && res.dead_objects == 0 && res.packs_written == 0);

        CHECK_OK(stamp_store_lock(s, 0, "test", NULL, 0));
        CHECK_OK(stamp_store_record_delete(s, a));
        stamp_store_unlock(s);
        /* A dry run sees exactly what only A held, and changes nothing. */
        gc(s, true, 0, &res);
        CHECK(res.candidates == a_only);
        CHECK(res.dead_objects == 0 && res.plan_free_bytes > 0);
        stats(s, &st);
        CHECK(st.objects - st.referenced_objects == a_only);
        stamp_stats_release(&st);
        /* The real run deletes exactly that. */
        gc(s, false, 0, &res);
        CHECK(res.snapshots == 1 && res.candidates == a_only && res.dead_objects == a_only);
        CHECK(res.dead_bytes + a_only * (STAMP_PACK_RECORD_HEADER_SIZE +
                                         STAMP_PACK_INDEX_ENTRY_SIZE) == a_only_bytes);
        CHECK(res.packs_rewritten + res.packs_deleted > 0 && res.bytes_freed > 0);
        CHECK(!exists(dir, "gc-pending"));
        stats(s, &st);
        CHECK(st.objects == st.referenced_objects && st.unused_bytes == 0);
        CHECK(st.unreferenced_packs == 0 && st.n_snap == 1);
        CHECK(st.snap[0].exclusive_objects == st.snap[0].objects);
        stamp_stats_release(&st);
        check_content(s, b, "b", 2);
        check_content(s, b, "c", 3);

        test_pending(dir);

        /* A reader with index.db open follows a reindex. */
        reader = open_store(dir);
        check_content(reader, b, "b", 2); /* its thread now has the old index.db open */
        stamp_store_free(s);
        s = open_store(dir);
        CHECK_OK(stamp_store_gc_lock(s, 0, "test", NULL, 0));
        CHECK_OK(stamp_store_lock(s, 0, "test", NULL, 0));
        CHECK_OK(stamp_store_reindex(s, &rr));
        CHECK(rr.snapshots == 1 && rr.damaged_packs == 0 && rr.unreadable_packs == 0);
        stamp_store_free(s);
        s = open_store(dir);
        write_random_file(src, "d", FILE_SIZE, 4);
        take_snapshot(s, src, c);
        check_content(reader, c, "d", 4); /* committed after the reindex */
        check_content(reader, b, "b", 2);
        stamp_store_free(reader);
        stamp_store_free(s);
        rm_rf(tmp);
        free(tmp);
        printf("test-gc: ok\n");
        return 0;
}
