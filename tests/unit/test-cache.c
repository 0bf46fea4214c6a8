/* SPDX-License-Identifier: MIT */
/*
 * The shared cache, the reader's spans and warm-up, and the prefetcher:
 * spans give the file's bytes exactly (also when they run out before the
 * range does), concurrent getters of one object share one load, a missing
 * object fails every getter without leaving anything behind, the cache
 * stays within its bound, and prefetched files end up in the cache. The
 * reader pool keeps what it should and no more than its budget.
 */
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "prefetch.h"
#include "reader.h"
#include "readerpool.h"
#include "store.h"
#include "tests.h"

#define BIG_SIZE (4u << 20) /* chunk-listed: more chunks than fit inline */
#define SMALL_SIZE 20000u
#define SMALLS 6

struct fixture {
        char *dir;
        struct stamp_store *s;
        struct stamp_record rec;
};

static void entry_of(struct fixture *fx, const char *name, struct stamp_tree_obj *parent,
                     struct stamp_entry *e)
{
        CHECK_OK(stamp_path_resolve(fx->s, &fx->rec.root, name, parent, e));
}

/* Every span of [0, size) in order, glued together, is the file. */
static void check_spans(struct fixture *fx, struct stamp_cache *c, size_t max_spans)
{
        struct stamp_tree_obj parent;
        struct stamp_entry e;
        struct stamp_file *f;
        struct stamp_span spans[64];
        unsigned char *want = malloc(BIG_SIZE), *got = malloc(BIG_SIZE);
        uint64_t off = 0;

        fill_random(want, BIG_SIZE, 1);
        entry_of(fx, "big", &parent, &e);
        CHECK_OK(stamp_file_open(fx->s, &e, c, &f));
        CHECK(stamp_file_chunked(f));
        while (off < BIG_SIZE) {
                size_t bytes = 0, at = 0;
                ssize_t n = stamp_file_spans(f, off, 1u << 20, spans, max_spans, &bytes);
                CHECK(n > 0 && (size_t)n <= max_spans && bytes > 0);
                for (ssize_t i = 0; i < n; i++) {
                        memcpy(got + off + at, spans[i].data, spans[i].len);
                        at += spans[i].len;
                        stamp_cache_put(c, spans[i].ref);
                }
                CHECK(at == bytes);
                off += bytes;
        }
        CHECK(off == BIG_SIZE);
        CHECK(memcmp(got, want, BIG_SIZE) == 0);
        {
                size_t bytes = 1;
                CHECK(stamp_file_spans(f, BIG_SIZE, 100, spans, max_spans, &bytes) == 0);
                CHECK(bytes == 0);
        }
        stamp_file_free(f);
        stamp_tree_obj_release(&parent);
        free(want);
        free(got);
}

struct racer {
        struct fixture *fx;
        struct stamp_cache *c;
        struct stamp_id id;
        pthread_barrier_t *start;
        struct stamp_cache_ref *ref;
        int r;
};

static void *race(void *userdata)
{
        struct racer *ra = userdata;
        const uint8_t *data;
        size_t len;

        pthread_barrier_wait(ra->start);
        ra->r = stamp_cache_get(ra->c, ra->fx->s, &ra->id, STAMP_OBJ_DATA, &ra->ref, &data, &len);
        return NULL;
}

/* @threads getters of @id at once: their results, in @ra. */
static void run_race(struct fixture *fx, struct stamp_cache *c, const struct stamp_id *id,
                     struct racer *ra, unsigned threads)
{
        pthread_t t[8];
        pthread_barrier_t start;

        CHECK(threads <= 8);
        pthread_barrier_init(&start, NULL, threads);
        for (unsigned i = 0; i < threads; i++) {
                ra[i] = (struct racer){ .fx = fx, .c = c, .id = *id, .start = &start };
                CHECK(pthread_create(&t[i], NULL, race, &ra[i]) == 0);
        }
        for (unsigned i = 0; i < threads; i++)
                pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
}

static void test_single_flight(struct fixture *fx)
{
        struct stamp_tree_obj parent;
        struct stamp_entry e;
        struct stamp_content ct;
        struct stamp_id id, missing;
        struct racer ra[8];
        uint32_t len;

        /* The first chunk of a small (inline) file: its id is in the entry. */
        entry_of(fx, "small0", &parent, &e);
        CHECK_OK(stamp_content_parse(e.content, e.content_len, &ct));
        CHECK(ct.kind == STAMP_CONTENT_INLINE && ct.n > 0);
        stamp_content_chunk(&ct, 0, &id, &len);
        for (int round = 0; round < 20; round++) {
                struct stamp_cache *c = stamp_cache_new(1u << 20);
                run_race(fx, c, &id, ra, 8);
                for (unsigned i = 0; i < 8; i++) {
                        CHECK_OK(ra[i].r);
                        CHECK(ra[i].ref == ra[0].ref); /* one load, one entry */
                }
                for (unsigned i = 0; i < 8; i++)
                        stamp_cache_put(c, ra[i].ref);
                stamp_cache_free(c);
        }

        /* A missing object: every getter fails, none waits forever, nothing stays. */
        missing = id;
        missing.b[0] ^= 0xff;
        {
                struct stamp_cache *c = stamp_cache_new(1u << 20);
                run_race(fx, c, &missing, ra, 8);
                for (unsigned i = 0; i < 8; i++)
                        CHECK_RC(ra[i].r, -ENOENT);
                CHECK(stamp_cache_bytes(c) == 0);
                run_race(fx, c, &missing, ra, 2);
                CHECK_RC(ra[0].r, -ENOENT);
                stamp_cache_free(c);
        }
        stamp_tree_obj_release(&parent);
}

static void test_bound_and_warm(struct fixture *fx)
{
        struct stamp_cache *c = stamp_cache_new(1u << 20);
        struct stamp_tree_obj parent;
        struct stamp_entry e;
        struct stamp_file *f;

        entry_of(fx, "big", &parent, &e);
        CHECK_OK(stamp_file_open(fx->s, &e, c, &f));
        CHECK_OK(stamp_file_warm(f, 0, UINT64_MAX)); /* the whole file, through a 1 MiB cache */
        stamp_file_drop_chunk(f);
        CHECK(stamp_cache_bytes(c) <= (1u << 20));
        CHECK(stamp_cache_bytes(c) > (1u << 19)); /* and it is full */
        CHECK_OK(stamp_file_warm(f, BIG_SIZE, 10)); /* past the end: nothing to do */
        stamp_file_free(f);

        /* Without a cache, spans are refused and warm only checks. */
        CHECK_OK(stamp_file_open(fx->s, &e, NULL, &f));
        {
                struct stamp_span sp[1];
                size_t bytes;
                CHECK_RC(stamp_file_spans(f, 0, 10, sp, 1, &bytes), -EINVAL);
        }
        CHECK_OK(stamp_file_warm(f, 0, 100000));
        stamp_file_free(f);
        stamp_tree_obj_release(&parent);
        stamp_cache_free(c);
}

/* The store's wait hook (the mount's loop hands its device over there). */
static unsigned waits; /* atomic */

static void count_wait(void)
{
        __atomic_add_fetch(&waits, 1, __ATOMIC_SEQ_CST);
}

static void test_wait_hook(struct fixture *fx)
{
        struct stamp_cache *c = stamp_cache_new(1u << 20);
        struct stamp_tree_obj parent;
        struct stamp_entry e;
        struct stamp_content ct;
        struct stamp_cache_ref *ref;
        struct stamp_record rec;
        struct stamp_strv stamps = { 0 };
        struct racer ra[8];
        const uint8_t *data;
        struct stamp_id id;
        uint32_t clen;
        size_t len;

        entry_of(fx, "small1", &parent, &e);
        CHECK_OK(stamp_content_parse(e.content, e.content_len, &ct));
        stamp_content_chunk(&ct, 0, &id, &clen);
        stamp_store_set_wait_hook(fx->s, count_wait);

        waits = 0;
        CHECK_OK(stamp_cache_get(c, fx->s, &id, STAMP_OBJ_DATA, &ref, &data, &len));
        CHECK(waits == 1); /* a miss reads the store */
        stamp_cache_put(c, ref);
        CHECK_OK(stamp_cache_get(c, fx->s, &id, STAMP_OBJ_DATA, &ref, &data, &len));
        CHECK(waits == 1); /* a hit never waits */
        stamp_cache_put(c, ref);

        /*
         * Getters of one chunk at once: one reads (and, on a new thread,
         * opens the index: twice), the others wait for it or find it, at
         * most once each.
         */
        stamp_cache_free(c);
        c = stamp_cache_new(1u << 20);
        waits = 0;
        run_race(fx, c, &id, ra, 8);
        CHECK(waits >= 1 && waits <= 9);
        for (unsigned i = 0; i < 8; i++) {
                CHECK_OK(ra[i].r);
                stamp_cache_put(c, ra[i].ref);
        }

        waits = 0;
        CHECK_OK(stamp_store_list(fx->s, &stamps));
        CHECK_OK(stamp_store_record_load(fx->s, stamps.v[0], &rec));
        CHECK(waits == 2);
        stamp_record_release(&rec);
        stamp_strv_release(&stamps);

        stamp_store_set_wait_hook(fx->s, NULL);
        waits = 0;
        stamp_cache_free(c);
        c = stamp_cache_new(1u << 20);
        CHECK_OK(stamp_cache_get(c, fx->s, &id, STAMP_OBJ_DATA, &ref, &data, &len));
        CHECK(waits == 0);
        stamp_cache_put(c, ref);
        stamp_cache_free(c);
        stamp_tree_obj_release(&parent);
}

struct hook_counts {
        pthread_mutex_t lock;
        struct stamp_cache *cache;
        unsigned loaded, not_loaded, readable;
};

/* The done hook: each job comes back once, loaded (its bytes then in the cache) or not. */
static void hook(void *hook_data, struct stamp_file *f, uint64_t len, void *job_data)
{
        struct hook_counts *hc = hook_data;
        unsigned *seen = job_data;
        bool readable = false;

        if (f) {
                struct stamp_span sp[64];
                size_t bytes = 0;
                ssize_t n = stamp_file_spans(f, 0, len, sp, 64, &bytes);
                readable = n > 0 && bytes == len;
                for (ssize_t i = 0; i < n; i++)
                        stamp_cache_put(hc->cache, sp[i].ref);
        }
        pthread_mutex_lock(&hc->lock);
        if (f)
                hc->loaded++;
        else
                hc->not_loaded++;
        hc->readable += readable;
        (*seen)++;
        pthread_mutex_unlock(&hc->lock);
}

static void test_prefetch(struct fixture *fx)
{
        struct stamp_cache *c = stamp_cache_new(64u << 20);
        struct hook_counts hc = { .cache = c };
        struct stamp_prefetch *p;
        struct stamp_tree_obj parent;
        struct stamp_entry e;
        uint64_t queued, done;
        unsigned seen[SMALLS + 10] = { 0 };
        char name[32];

        pthread_mutex_init(&hc.lock, NULL);
        CHECK_RC(stamp_prefetch_new(fx->s, c, 0, 1u << 20, NULL, NULL, &p), -EINVAL);
        CHECK_OK(stamp_prefetch_new(fx->s, c, 2, 1u << 20, hook, &hc, &p));
        for (int i = 0; i < SMALLS; i++) {
                snprintf(name, sizeof(name), "small%d", i);
                entry_of(fx, name, &parent, &e);
                CHECK_OK(stamp_prefetch_file(p, &e, UINT64_MAX, &seen[i]));
                stamp_tree_obj_release(&parent);
        }
        entry_of(fx, "big", &parent, &e);
        /* more than the queue holds */
        CHECK_RC(stamp_prefetch_file(p, &e, 2u << 20, &seen[SMALLS]), -EAGAIN);
        stamp_tree_obj_release(&parent);
        entry_of(fx, "empty", &parent, &e);
        CHECK_RC(stamp_prefetch_file(p, &e, 100, &seen[SMALLS]), -EINVAL);
        stamp_tree_obj_release(&parent);

        for (int i = 0; i < 500; i++) {
                stamp_prefetch_stats(p, &queued, &done);
                if (done == queued)
                        break;
                usleep(10000);
        }
        CHECK(queued == SMALLS && done == SMALLS);
        /* Every byte of the small files is in the cache now. */
        CHECK(stamp_cache_bytes(c) >= (size_t)SMALLS * SMALL_SIZE);
        stamp_prefetch_free(p);
        CHECK(hc.loaded == SMALLS && hc.readable == SMALLS && hc.not_loaded == 0);
        for (int i = 0; i < SMALLS; i++)
                CHECK(seen[i] == 1);
        CHECK(seen[SMALLS] == 0); /* refused jobs never come back */

        /* Freed with work still queued: every job still comes back once, nothing hangs. */
        hc.loaded = hc.not_loaded = 0;
        CHECK_OK(stamp_prefetch_new(fx->s, c, 1, 64u << 20, hook, &hc, &p));
        entry_of(fx, "big", &parent, &e);
        for (int i = 0; i < 10; i++)
                CHECK_OK(stamp_prefetch_file(p, &e, UINT64_MAX, &seen[SMALLS + i]));
        stamp_tree_obj_release(&parent);
        stamp_prefetch_free(p);
        CHECK(hc.loaded + hc.not_loaded == 10);
        for (int i = 0; i < 10; i++)
                CHECK(seen[SMALLS + i] == 1);

        /* Directory jobs: the tree lands in the cache; the hook never hears of them. */
        {
                struct stamp_cache *tc = stamp_cache_new(64u << 20);
                struct stamp_id missing;
                struct stamp_cache_ref *ref;
                const uint8_t *data;
                size_t len;

                hc.loaded = hc.not_loaded = 0;
                memset(&missing, 0x5a, sizeof(missing));
                CHECK_OK(stamp_prefetch_new(fx->s, tc, 1, 1000, hook, &hc, &p));
                CHECK_RC(stamp_prefetch_tree(p, &fx->rec.root), -EAGAIN); /* bound: 1000 bytes */
                stamp_prefetch_free(p);
                CHECK_OK(stamp_prefetch_new(fx->s, tc, 2, 1u << 20, hook, &hc, &p));
                CHECK_OK(stamp_prefetch_tree(p, &missing));
                CHECK_OK(stamp_prefetch_tree(p, &fx->rec.root));
                for (int i = 0; i < 500; i++) {
                        stamp_prefetch_stats(p, &queued, &done);
                        if (done == queued)
                                break;
                        usleep(10000);
                }
                CHECK(queued == 2 && done == 2);
                stamp_prefetch_free(p);
                CHECK(hc.loaded == 0 && hc.not_loaded == 0);
                len = stamp_cache_bytes(tc);
                CHECK(len > 0);
                CHECK_OK(stamp_cache_get(tc, fx->s, &fx->rec.root, STAMP_OBJ_TREE, &ref, &data,
                                         &len));
                stamp_cache_put(tc, ref);
                CHECK(stamp_cache_bytes(tc) == len); /* a hit: the one tree, nothing else */
                stamp_cache_free(tc);
        }
        pthread_mutex_destroy(&hc.lock);
        stamp_cache_free(c);
}

/* A reader of "big" (chunk-listed) with its lists loaded, or of a small file. */
static struct stamp_file *open_loaded(struct fixture *fx, const char *name)
{
        struct stamp_tree_obj parent;
        struct stamp_entry e;
        struct stamp_file *f;
        unsigned char byte;

        entry_of(fx, name, &parent, &e);
        CHECK_OK(stamp_file_open(fx->s, &e, NULL, &f));
        stamp_tree_obj_release(&parent);
        CHECK(stamp_file_pread(f, &byte, 1, stamp_file_size(f) - 1) == 1);
        stamp_file_drop_chunk(f); /* as the pool does: its size is its lists' */
        return f;
}

struct pool_worker {
        struct stamp_reader_pool *pool;
        struct stamp_pooled **owners;
        struct fixture *fx;
        const unsigned char *want; /* big's bytes */
        unsigned seed;
};

static void *pool_worker(void *arg)
{
        struct pool_worker *w = arg;

        for (int i = 0; i < 300; i++) {
                struct stamp_pooled **o = &w->owners[rand_r(&w->seed) % 8];
                struct stamp_file *f = stamp_reader_pool_take(w->pool, o);
                unsigned char buf[64];
                if (!f)
                        f = open_loaded(w->fx, "big");
                /* a reader out of the pool reads right */
                uint64_t off = rand_r(&w->seed) % (BIG_SIZE - sizeof(buf));
                CHECK(stamp_file_pread(f, buf, sizeof(buf), off) == (ssize_t)sizeof(buf));
                CHECK(memcmp(buf, w->want + off, sizeof(buf)) == 0);
                stamp_reader_pool_put(w->pool, o, f);
        }
        return NULL;
}

/*
 * The reader pool: the most recently put reader of an owner comes back,
 * with its lists still loaded; the least recently put go once the budget
 * is full; an owner keeps at most per_owner; inline readers are not kept;
 * dropping an owner frees its readers; under threads the bound holds.
 */
static void test_reader_pool(struct fixture *fx)
{
        struct stamp_reader_pool *pool;
        struct stamp_pooled *own[8] = { 0 };
        struct stamp_file *f, *g;
        unsigned char *want = malloc(BIG_SIZE), buf[4096];
        size_t mem, count;

        fill_random(want, BIG_SIZE, 1);
        f = open_loaded(fx, "big");
        mem = stamp_file_mem(f);
        CHECK(mem > 40 * (BIG_SIZE >> 16)); /* its chunk list is in it */
        CHECK_OK(stamp_reader_pool_new(mem * 7 / 2, 2, &pool));

        stamp_reader_pool_put(pool, &own[0], f);
        stamp_reader_pool_put(pool, &own[1], open_loaded(fx, "big"));
        stamp_reader_pool_put(pool, &own[2], open_loaded(fx, "big"));
        CHECK(stamp_reader_pool_bytes(pool, &count) == 3 * mem && count == 3);
        /* a fourth: over the budget, owner 0's (the oldest) goes */
        stamp_reader_pool_put(pool, &own[3], open_loaded(fx, "big"));
        CHECK(stamp_reader_pool_bytes(pool, &count) == 3 * mem && count == 3);
        CHECK(own[0] == NULL && stamp_reader_pool_take(pool, &own[0]) == NULL);

        /* taken back: loaded (same size), reads right, and out of the pool */
        g = stamp_reader_pool_take(pool, &own[1]);
        CHECK(g && own[1] == NULL && stamp_file_mem(g) == mem);
        CHECK(stamp_reader_pool_bytes(pool, &count) == 2 * mem && count == 2);
        CHECK(stamp_file_pread(g, buf, sizeof(buf), BIG_SIZE / 2) == (ssize_t)sizeof(buf));
        CHECK(memcmp(buf, want + BIG_SIZE / 2, sizeof(buf)) == 0);
        /* put back, it is the newest: the next to go is owner 2's */
        stamp_reader_pool_put(pool, &own[1], g);
        stamp_reader_pool_put(pool, &own[4], open_loaded(fx, "big"));
        CHECK(own[2] == NULL && own[1] != NULL && own[3] != NULL && own[4] != NULL);

        /*
         * an owner keeps at most 2: a third would fit the budget only by
         * pushing out owner 1's, which stays
         */
        stamp_reader_pool_drop(pool, &own[3]);
        stamp_reader_pool_drop(pool, &own[4]);
        CHECK(own[3] == NULL && own[4] == NULL);
        CHECK(stamp_reader_pool_bytes(pool, &count) == mem && count == 1);
        stamp_reader_pool_put(pool, &own[5], open_loaded(fx, "big"));
        stamp_reader_pool_put(pool, &own[5], open_loaded(fx, "big"));
        stamp_reader_pool_put(pool, &own[5], open_loaded(fx, "big"));
        CHECK(stamp_reader_pool_bytes(pool, &count) == 3 * mem && count == 3);
        CHECK(own[1] != NULL);
        for (int i = 0; i < 2; i++) {
                g = stamp_reader_pool_take(pool, &own[5]);
                CHECK(g != NULL);
                stamp_file_free(g);
        }
        CHECK(stamp_reader_pool_take(pool, &own[5]) == NULL);
        stamp_reader_pool_put(pool, &own[5], open_loaded(fx, "big"));
        stamp_reader_pool_put(pool, &own[5], open_loaded(fx, "big"));
        CHECK(stamp_reader_pool_bytes(pool, &count) == 3 * mem && count == 3);
        /* an inline reader opens for free: not kept */
        f = open_loaded(fx, "small0");
        CHECK(!stamp_file_chunked(f));
        stamp_reader_pool_put(pool, &own[6], f);
        CHECK(own[6] == NULL);
        CHECK(stamp_reader_pool_bytes(pool, &count) == 3 * mem && count == 3);
        stamp_reader_pool_free(pool); /* frees the three left (ASan checks) */

        /* threads taking and putting for 8 owners: the bound holds */
        {
                struct stamp_pooled *owners[8] = { 0 };
                struct pool_worker w[4];
                pthread_t t[4];

                CHECK_OK(stamp_reader_pool_new(mem * 5, 4, &pool));
                for (int i = 0; i < 4; i++) {
                        w[i] = (struct pool_worker){ pool, owners, fx, want, 7u * (unsigned)i + 1 };
                        CHECK(pthread_create(&t[i], NULL, pool_worker, &w[i]) == 0);
                }
                for (int i = 0; i < 4; i++)
                        pthread_join(t[i], NULL);
                CHECK(stamp_reader_pool_bytes(pool, &count) <= mem * 5 && count >= 1 && count <= 5);
                for (int i = 0; i < 8; i++)
                        stamp_reader_pool_drop(pool, &owners[i]);
                CHECK(stamp_reader_pool_bytes(pool, &count) == 0 && count == 0);
                stamp_reader_pool_free(pool);
        }
        free(want);
}

int main(void)
{
        struct fixture fx = { 0 };
        struct stamp_init_options io;
        char src[600], store[600], stamp[STAMP_STAMP_LEN + 1], name[32];

        fx.dir = make_tmpdir();
        snprintf(src, sizeof(src), "%s/src", fx.dir);
        snprintf(store, sizeof(store), "%s/store", fx.dir);
        CHECK(mkdir(src, 0755) == 0);
        write_random_file(src, "big", BIG_SIZE, 1);
        for (int i = 0; i < SMALLS; i++) {
                snprintf(name, sizeof(name), "small%d", i);
                write_random_file(src, name, SMALL_SIZE, 100 + i);
        }
        write_random_file(src, "empty", 0, 0);
        stamp_init_options_default(&io);
        CHECK_OK(stamp_store_init(store, &io));
        CHECK_OK(stamp_store_open(store, &fx.s));
        take_snapshot(fx.s, src, stamp);
        CHECK_OK(stamp_store_record_load(fx.s, stamp, &fx.rec));

        {
                struct stamp_cache *c = stamp_cache_new(64u << 20);
                check_spans(&fx, c, 64); /* spans enough for a whole 1 MiB */
                check_spans(&fx, c, 3);  /* spans run out first: fewer bytes, still exact */
                stamp_cache_free(c);
        }
        test_single_flight(&fx);
        test_bound_and_warm(&fx);
        test_prefetch(&fx);
        test_reader_pool(&fx);
        test_wait_hook(&fx);

        stamp_record_release(&fx.rec);
        stamp_store_free(fx.s);
        rm_rf(fx.dir);
        free(fx.dir);
        printf("cache ok\n");
        return 0;
}
