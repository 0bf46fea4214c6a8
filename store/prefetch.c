/* SPDX-License-Identifier: MIT */
#include "prefetch.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "reader.h"
#include "store.h"

#define THREADS_MAX 16
/*
 * A worker runs up to this many jobs back to back in one index read batch
 * (stamp_store_read_begin): small files are one chunk each, and a
 * transaction apiece would cost more system calls than the chunk's read.
 * The batch also ends after BATCH_NS, so that a checkpoint of the index
 * (the end of a snapshot or a gc) never waits on it for long.
 */
#define BATCH_JOBS 32
#define BATCH_NS (50 * 1000 * 1000LL)

/* What a directory job counts against the queue's bound. */
#define TREE_JOB_BYTES 4096

struct job {
        struct job *next;
        bool tree;          /* a directory's tree object, @id; else a file */
        struct stamp_id id;
        void *data;         /* for the done hook */
        uint64_t size, len; /* len: counted against the bound */
        size_t content_len;
        uint8_t content[];  /* the entry's encoded content reference */
};

struct stamp_prefetch {
        struct stamp_store *s;
        struct stamp_cache *cache;
        stamp_prefetch_done_fn *done;
        void *hook_data;
        pthread_mutex_t lock;
        pthread_cond_t work;
        struct job *head, *tail; /* protected by lock */
        uint64_t queued_bytes, max_queued; /* protected by lock */
        uint64_t n_queued, n_done;         /* protected by lock */
        bool stop;                         /* protected by lock */
        unsigned n_threads;
        pthread_t threads[THREADS_MAX];
};

static int64_t now_ns(void)
{
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void job_run(struct stamp_prefetch *p, const struct job *j)
{
        struct stamp_entry e = { 0 };
        struct stamp_file *f;

        if (j->tree) {
                struct stamp_cache_ref *ref;
                const uint8_t *data;
                size_t len;
                if (stamp_cache_get(p->cache, p->s, &j->id, STAMP_OBJ_TREE, &ref, &data, &len) == 0)
                        stamp_cache_put(p->cache, ref);
                return;
        }

        e.type = STAMP_T_REG;
        e.size = j->size;
        e.content = j->content;
        e.content_len = j->content_len;
        if (stamp_file_open(p->s, &e, p->cache, &f) < 0) {
                if (p->done)
                        p->done(p->hook_data, NULL, j->len, j->data);
                return;
        }
        /* Errors are the real read's to report. */
        if (stamp_file_warm(f, 0, j->len) < 0) {
                stamp_file_free(f);
                f = NULL;
        }
        if (f)
                stamp_file_drop_chunk(f);
        if (p->done)
                p->done(p->hook_data, f, j->len, j->data);
        stamp_file_free(f);
}

static void *worker(void *userdata)
{
        struct stamp_prefetch *p = userdata;
        unsigned batched = 0; /* jobs run in the current read batch */
        int64_t batch_start = 0;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                struct job *j;

                if (batched > 0 && (p->stop || !p->head || batched >= BATCH_JOBS ||
                                    now_ns() - batch_start > BATCH_NS)) {
                        pthread_mutex_unlock(&p->lock);
                        stamp_store_read_end(p->s);
                        batched = 0;
                        pthread_mutex_lock(&p->lock);
                }
                while (!p->stop && !p->head)
                        pthread_cond_wait(&p->work, &p->lock);
                if (p->stop)
                        break;
                j = p->head;
                p->head = j->next;
                if (!p->head)
                        p->tail = NULL;
                pthread_mutex_unlock(&p->lock);

                if (batched++ == 0) {
                        stamp_store_read_begin(p->s);
                        batch_start = now_ns();
                }
                job_run(p, j);

                pthread_mutex_lock(&p->lock);
                p->queued_bytes -= j->len;
                p->n_done++;
                free(j);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

int stamp_prefetch_new(struct stamp_store *s, struct stamp_cache *cache, unsigned threads,
                       uint64_t max_queued, stamp_prefetch_done_fn *done, void *hook_data,
                       struct stamp_prefetch **ret)
{
        struct stamp_prefetch *p;
        int r;

        if (threads < 1 || threads > THREADS_MAX || !cache)
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->s = s;
        p->cache = cache;
        p->max_queued = max_queued;
        p->done = done;
        p->hook_data = hook_data;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->work, NULL);
        for (; p->n_threads < threads; p->n_threads++) {
                r = pthread_create(&p->threads[p->n_threads], NULL, worker, p);
                if (r != 0) {
                        stamp_prefetch_free(p);
                        return -r;
                }
        }
        *ret = p;
        return 0;
}

void stamp_prefetch_free(struct stamp_prefetch *p)
{
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->work);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 0; i < p->n_threads; i++)
                pthread_join(p->threads[i], NULL);
        for (struct job *j = p->head, *next; j; j = next) {
                next = j->next;
                if (p->done && !j->tree)
                        p->done(p->hook_data, NULL, j->len, j->data);
                free(j);
        }
        pthread_cond_destroy(&p->work);
        pthread_mutex_destroy(&p->lock);
        free(p);
}

/* Queues @j, or frees it and returns -EAGAIN when there is no room. */
static int enqueue(struct stamp_prefetch *p, struct job *j)
{
        uint64_t len = j->len;

        pthread_mutex_lock(&p->lock);
        if (p->queued_bytes + len > p->max_queued) {
                pthread_mutex_unlock(&p->lock);
                free(j);
                return -EAGAIN;
        }
        if (p->tail)
                p->tail->next = j;
        else
                p->head = j;
        p->tail = j;
        p->queued_bytes += len;
        p->n_queued++;
        pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->lock);
        return 0;
}

int stamp_prefetch_file(struct stamp_prefetch *p, const struct stamp_entry *e, uint64_t len,
                        void *job_data)
{
        struct job *j;

        if (e->type != STAMP_T_REG || e->size == 0 || len == 0)
                return -EINVAL;
        if (len > e->size)
                len = e->size;
        j = calloc(1, sizeof(*j) + e->content_len);
        if (!j)
                return -ENOMEM;
        j->data = job_data;
        j->size = e->size;
        j->len = len;
        j->content_len = e->content_len;
        memcpy(j->content, e->content, e->content_len);
        return enqueue(p, j);
}

int stamp_prefetch_tree(struct stamp_prefetch *p, const struct stamp_id *id)
{
        struct job *j = calloc(1, sizeof(*j));

        if (!j)
                return -ENOMEM;
        j->tree = true;
        j->id = *id;
        j->len = TREE_JOB_BYTES;
        return enqueue(p, j);
}

void stamp_prefetch_stats(struct stamp_prefetch *p, uint64_t *ret_queued, uint64_t *ret_done)
{
        pthread_mutex_lock(&p->lock);
        *ret_queued = p->n_queued;
        *ret_done = p->n_done;
        pthread_mutex_unlock(&p->lock);
}
