/* SPDX-License-Identifier: MIT */
#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "pack.h"

#define CLAIM_BUCKETS 4096
/*
 * Full packs waiting for the committer, at most. A producer faster than
 * the disk's fsyncs (a copy onto a USB disk) then waits for it: each
 * waiting pack holds an open file and a 1 MiB buffer, and all of them are
 * lost to a crash, which an interrupted copy would have to send again.
 */
#define QUEUE_MAX 2

struct claim {
        struct stamp_id id;
        uint32_t len;
        uint8_t *data; /* a copy, for data chunks small enough to compare */
        struct claim *next;
};

struct queued {
        struct stamp_pack_writer *pw;
        struct queued *next;
};

struct stamp_writer {
        struct stamp_store *s;
        const struct stamp_config *config;

        /* Lock order: lock, then nothing else. */
        pthread_mutex_t lock;
        pthread_cond_t cond;           /* queue changed or committer went idle */
        struct stamp_index *ix_lookup; /* used only under lock */
        struct stamp_pack_writer *cur; /* protected by lock */
        struct queued *queue, **queue_tail; /* protected by lock */
        unsigned queued;                    /* packs in queue; protected by lock */
        bool committing;               /* protected by lock */
        bool stop;                     /* protected by lock */
        int error;                     /* first fatal error; protected by lock */
        struct claim *claims[CLAIM_BUCKETS]; /* protected by lock */
        struct stamp_writer_stats stats;     /* protected by lock */
        struct stamp_strv packs;             /* names of packs written; protected by lock */

        pthread_t committer;
        bool committer_started;
        struct stamp_index *ix_commit; /* used only by the committer thread */
};

static unsigned bucket(const struct stamp_id *id)
{
        return (unsigned)le32_read(id->b + 4) % CLAIM_BUCKETS;
}

static struct claim *claim_find(struct stamp_writer *w, const struct stamp_id *id)
{
        for (struct claim *c = w->claims[bucket(id)]; c; c = c->next)
                if (stamp_id_cmp(&c->id, id) == 0)
                        return c;
        return NULL;
}

static void claim_drop(struct stamp_writer *w, const struct stamp_id *id)
{
        for (struct claim **p = &w->claims[bucket(id)]; *p; p = &(*p)->next)
                if (stamp_id_cmp(&(*p)->id, id) == 0) {
                        struct claim *c = *p;
                        *p = c->next;
                        free(c->data);
                        free(c);
                        return;
                }
}

static int commit_pack(struct stamp_writer *w, struct stamp_pack_writer *pw)
{
        const struct stamp_pack_entry *e = stamp_pack_writer_entries(pw);
        size_t n = stamp_pack_writer_count(pw);
        char name[64];
        int r;

        r = stamp_pack_writer_finish(pw, name);
        if (r < 0)
                return r;
        r = stamp_index_begin(w->ix_commit);
        if (r < 0)
                return r;
        r = stamp_index_add_pack(w->ix_commit, name, stamp_pack_writer_size(pw), e, n);
        if (r < 0) {
                stamp_index_rollback(w->ix_commit);
                return r;
        }
        r = stamp_index_commit(w->ix_commit);
        if (r < 0)
                return r;
        pthread_mutex_lock(&w->lock);
        for (size_t i = 0; i < n; i++)
                claim_drop(w, &e[i].id);
        w->stats.packs++;
        r = stamp_strv_push(&w->packs, name);
        pthread_mutex_unlock(&w->lock);
        return r;
}

static void *committer_main(void *arg)
{
        struct stamp_writer *w = arg;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                struct queued *q;
                int r;

                while (!w->queue && !w->stop)
                        pthread_cond_wait(&w->cond, &w->lock);
                if (!w->queue)
                        break;
                q = w->queue;
                w->queue = q->next;
                w->queued--;
                if (!w->queue)
                        w->queue_tail = &w->queue;
                w->committing = true;
                pthread_mutex_unlock(&w->lock);

                r = commit_pack(w, q->pw);
                stamp_pack_writer_free(q->pw);
                free(q);

                pthread_mutex_lock(&w->lock);
                w->committing = false;
                if (r < 0 && w->error == 0)
                        w->error = r;
                pthread_cond_broadcast(&w->cond);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

int stamp_writer_new(struct stamp_store *s, struct stamp_writer **ret)
{
        struct stamp_writer *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        w->s = s;
        w->config = stamp_store_config(s);
        w->queue_tail = &w->queue;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        r = stamp_store_index_open(s, &w->ix_lookup);
        if (r == 0)
                r = stamp_store_index_open(s, &w->ix_commit);
        if (r == 0 && pthread_create(&w->committer, NULL, committer_main, w) != 0)
                r = -EAGAIN;
        if (r < 0) {
                stamp_writer_free(w);
                return r;
        }
        w->committer_started = true;
        *ret = w;
        return 0;
}

void stamp_writer_free(struct stamp_writer *w)
{
        if (!w)
                return;
        if (w->committer_started) {
                pthread_mutex_lock(&w->lock);
                w->stop = true;
                pthread_cond_broadcast(&w->cond);
                pthread_mutex_unlock(&w->lock);
                pthread_join(w->committer, NULL);
        }
        stamp_pack_writer_free(w->cur);
        for (struct queued *q = w->queue, *n; q; q = n) {
                n = q->next;
                stamp_pack_writer_free(q->pw);
                free(q);
        }
        for (unsigned i = 0; i < CLAIM_BUCKETS; i++)
                for (struct claim *c = w->claims[i], *n; c; c = n) {
                        n = c->next;
                        free(c->data);
                        free(c);
                }
        stamp_index_free(w->ix_lookup);
        stamp_index_free(w->ix_commit);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        stamp_strv_release(&w->packs);
        free(w);
}

/*
 * Hands the current pack to the committer, once fewer than QUEUE_MAX wait
 * for it. Called with lock held (given up while waiting: other threads
 * meanwhile fill a new current pack).
 */
static int enqueue_current(struct stamp_writer *w)
{
        struct queued *q;

        if (!w->cur)
                return 0;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->pw = TAKE_PTR(w->cur);
        while (w->queued >= QUEUE_MAX && !w->error)
                pthread_cond_wait(&w->cond, &w->lock);
        *w->queue_tail = q;
        w->queue_tail = &q->next;
        if (++w->queued > w->stats.queue_peak)
                w->stats.queue_peak = w->queued;
        pthread_cond_broadcast(&w->cond);
        return w->error;
}

static int compare_stored(struct stamp_writer *w, const struct stamp_id *id, uint8_t type,
                          const void *data, size_t len)
{
        _cleanup_free_ uint8_t *old = NULL;
        size_t old_len;
        int r;

        r = stamp_store_get(w->s, id, type, &old, &old_len);
        if (r < 0)
                return r;
        return old_len == len && memcmp(old, data, len) == 0 ? 0 : -EBADMSG;
}

/*
 * Looks @id up under lock. Returns 1 if already stored (after the collision
 * checks that can be done under the lock), 2 if stored in the index and the
 * bytes must still be compared, 0 if claimed now for the caller to add.
 */
static int dedup_or_claim(struct stamp_writer *w, uint8_t type, const struct stamp_id *id,
                          const void *data, size_t len)
{
        bool compare = type == STAMP_OBJ_DATA && len <= w->config->dedup_verify_max;
        struct stamp_loc loc;
        struct claim *c;
        int r;

        c = claim_find(w, id);
        if (c) {
                if (c->len != len || (c->data && memcmp(c->data, data, len) != 0))
                        return -EBADMSG;
                return 1;
        }
        r = stamp_index_find(w->ix_lookup, id, &loc);
        if (r < 0)
                return r;
        if (r > 0) {
                if (loc.raw_len != len || loc.type != type)
                        return -EBADMSG;
                return compare ? 2 : 1;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->id = *id;
        c->len = (uint32_t)len;
        if (compare) {
                c->data = malloc(len ? len : 1);
                if (!c->data) {
                        free(c);
                        return -ENOMEM;
                }
                memcpy(c->data, data, len);
        }
        c->next = w->claims[bucket(id)];
        w->claims[bucket(id)] = c;
        return 0;
}

static int append(struct stamp_writer *w, const struct stamp_id *id, uint8_t type,
                  uint8_t comp, size_t raw_len, const void *payload, size_t stored_len)
{
        int r;

        if (!w->cur) {
                r = stamp_pack_writer_new(stamp_store_backend(w->s), &w->cur);
                if (r < 0)
                        return r;
        }
        r = stamp_pack_writer_add(w->cur, id, type, comp, (uint32_t)raw_len, payload,
                                  (uint32_t)stored_len);
        if (r < 0) {
                /*
                 * Failed under the lock, before another worker can append:
                 * the pack may lack bytes (a full disk), so it is dropped,
                 * never finished, and every later put fails.
                 */
                if (w->error == 0)
                        w->error = r;
                stamp_pack_writer_free(TAKE_PTR(w->cur));
                return r;
        }
        w->stats.new_objects++;
        w->stats.new_bytes += raw_len;
        w->stats.stored_bytes += stored_len + STAMP_PACK_RECORD_HEADER_SIZE;
        if (type == STAMP_OBJ_DATA)
                w->stats.new_chunks++;
        if (stamp_pack_writer_size(w->cur) >= w->config->pack_size)
                return enqueue_current(w);
        return 0;
}

static int compress_and_append(struct stamp_writer *w, struct stamp_zctx *z,
                               const struct stamp_id *id, uint8_t type, const void *data,
                               size_t len, unsigned flags, int *ret_compressed)
{
        size_t cap = stamp_compress_bound(len), stored = len;
        _cleanup_free_ uint8_t *cbuf = NULL;
        const void *payload = data;
        uint8_t comp = STAMP_COMP_NONE;
        int r = 0;

        if (!(flags & STAMP_PUT_NO_COMPRESS)) {
                cbuf = malloc(cap);
                if (!cbuf)
                        return -ENOMEM;
                r = stamp_compress(z, data, len, cbuf, cap, &stored);
                if (r < 0)
                        return r;
        }
        if (ret_compressed)
                *ret_compressed = r == 1;
        if (r == 1) {
                payload = cbuf;
                comp = STAMP_COMP_ZSTD;
        } else
                stored = len;
        pthread_mutex_lock(&w->lock);
        r = w->error ? w->error : append(w, id, type, comp, len, payload, stored);
        pthread_mutex_unlock(&w->lock);
        return r;
}

int stamp_writer_put(struct stamp_writer *w, struct stamp_zctx *z, uint8_t type,
                     const void *data, size_t len, struct stamp_id *ret_id)
{
        return stamp_writer_put_flags(w, z, type, data, len, 0, NULL, ret_id);
}

/* A failure other than a suspected collision fails every later put too. */
static int put_failed(struct stamp_writer *w, int r)
{
        if (r != -EBADMSG) {
                pthread_mutex_lock(&w->lock);
                if (w->error == 0)
                        w->error = r;
                pthread_mutex_unlock(&w->lock);
        }
        return r;
}

int stamp_writer_put_flags(struct stamp_writer *w, struct stamp_zctx *z, uint8_t type,
                           const void *data, size_t len, unsigned flags, int *ret_compressed,
                           struct stamp_id *ret_id)
{
        struct stamp_id id;
        int r;

        if (ret_compressed)
                *ret_compressed = -1;
        if (len > STAMP_OBJECT_MAX)
                return -EFBIG;
        stamp_hasher_id(stamp_store_hasher(w->s), data, len, &id);

        pthread_mutex_lock(&w->lock);
        r = w->error ? w->error : dedup_or_claim(w, type, &id, data, len);
        pthread_mutex_unlock(&w->lock);
        if (r == 0)
                r = compress_and_append(w, z, &id, type, data, len, flags,
                                        ret_compressed); /* claimed: ours to add */
        else if (r == 2)
                r = compare_stored(w, &id, type, data, len);
        else if (r == 1)
                r = 0;
        if (r < 0)
                return put_failed(w, r);
        *ret_id = id;
        return 0;
}

int stamp_writer_put_stored(struct stamp_writer *w, uint8_t type, const struct stamp_id *id,
                            const void *raw, size_t raw_len, uint8_t comp, const void *payload,
                            size_t stored_len)
{
        int r;

        if (raw_len > STAMP_OBJECT_MAX || stored_len > STAMP_OBJECT_MAX)
                return -EFBIG;
        pthread_mutex_lock(&w->lock);
        r = w->error ? w->error : dedup_or_claim(w, type, id, raw, raw_len);
        if (r == 0)
                r = w->error ? w->error : append(w, id, type, comp, raw_len, payload, stored_len);
        pthread_mutex_unlock(&w->lock);
        if (r == 2)
                r = compare_stored(w, id, type, raw, raw_len);
        else if (r == 1)
                r = 0;
        return r < 0 ? put_failed(w, r) : 0;
}

int stamp_writer_flush(struct stamp_writer *w)
{
        int r;

        pthread_mutex_lock(&w->lock);
        r = w->error ? w->error : enqueue_current(w);
        while (r == 0 && (w->queue || w->committing) && !w->error)
                pthread_cond_wait(&w->cond, &w->lock);
        if (r == 0)
                r = w->error;
        pthread_mutex_unlock(&w->lock);
        return r;
}

void stamp_writer_stats(struct stamp_writer *w, struct stamp_writer_stats *ret)
{
        pthread_mutex_lock(&w->lock);
        *ret = w->stats;
        pthread_mutex_unlock(&w->lock);
}

const struct stamp_strv *stamp_writer_packs(struct stamp_writer *w)
{
        return &w->packs;
}
