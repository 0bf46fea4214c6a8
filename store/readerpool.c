/* SPDX-License-Identifier: MIT */
/*
 * The reader pool: one lock, one list of all idle readers from the most to
 * the least recently put, and per owner a short list (at most per_owner).
 * Readers are freed outside the lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "reader.h"
#include "readerpool.h"

struct stamp_pooled {
        struct stamp_file *f;
        struct stamp_pooled **owner;
        size_t bytes;                          /* stamp_file_mem() when put */
        struct stamp_pooled *next;             /* the owner's list */
        struct stamp_pooled *lru_prev, *lru_next; /* the pool's */
};

struct stamp_reader_pool {
        pthread_mutex_t lock;
        size_t budget;
        unsigned per_owner;
        struct stamp_pooled *lru, *lru_tail; /* most recently put first */
        size_t bytes, count;
};

int stamp_reader_pool_new(size_t budget, unsigned per_owner, struct stamp_reader_pool **ret)
{
        struct stamp_reader_pool *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        pthread_mutex_init(&p->lock, NULL);
        p->budget = budget;
        p->per_owner = per_owner;
        *ret = p;
        return 0;
}

static void pooled_free_list(struct stamp_pooled *e)
{
        while (e) {
                struct stamp_pooled *next = e->next;
                stamp_file_free(e->f);
                free(e);
                e = next;
        }
}

void stamp_reader_pool_free(struct stamp_reader_pool *p)
{
        if (!p)
                return;
        for (struct stamp_pooled *e = p->lru, *next; e; e = next) {
                next = e->lru_next;
                stamp_file_free(e->f);
                free(e);
        }
        pthread_mutex_destroy(&p->lock);
        free(p);
}

/* Takes @e out of both lists. Called with the lock held. */
static void unlink_locked(struct stamp_reader_pool *p, struct stamp_pooled *e)
{
        struct stamp_pooled **pp = e->owner;

        while (*pp != e)
                pp = &(*pp)->next;
        *pp = e->next;
        if (e->lru_prev)
                e->lru_prev->lru_next = e->lru_next;
        else
                p->lru = e->lru_next;
        if (e->lru_next)
                e->lru_next->lru_prev = e->lru_prev;
        else
                p->lru_tail = e->lru_prev;
        p->bytes -= e->bytes;
        p->count--;
        e->next = NULL;
}

struct stamp_file *stamp_reader_pool_take(struct stamp_reader_pool *p, struct stamp_pooled **owner)
{
        struct stamp_pooled *e;
        struct stamp_file *f = NULL;

        pthread_mutex_lock(&p->lock);
        e = *owner;
        if (e)
                unlink_locked(p, e);
        pthread_mutex_unlock(&p->lock);
        if (e) {
                f = e->f;
                free(e);
        }
        return f;
}

void stamp_reader_pool_put(struct stamp_reader_pool *p, struct stamp_pooled **owner,
                           struct stamp_file *f)
{
        struct stamp_pooled *e, *gone = NULL;
        unsigned held = 0;
        size_t bytes;

        if (!f)
                return;
        stamp_file_drop_chunk(f); /* a shared cache keeps it, within its own bound */
        bytes = stamp_file_mem(f);
        if (!stamp_file_chunked(f) || bytes > p->budget || p->per_owner == 0) {
                stamp_file_free(f);
                return;
        }
        e = calloc(1, sizeof(*e));
        if (!e) { /* just not kept */
                stamp_file_free(f);
                return;
        }
        e->f = f;
        e->owner = owner;
        e->bytes = bytes;
        pthread_mutex_lock(&p->lock);
        for (struct stamp_pooled *q = *owner; q; q = q->next)
                held++;
        if (held < p->per_owner) {
                e->next = *owner;
                *owner = e;
                e->lru_next = p->lru;
                if (p->lru)
                        p->lru->lru_prev = e;
                else
                        p->lru_tail = e;
                p->lru = e;
                p->bytes += e->bytes;
                p->count++;
                e = NULL;
        }
        while (p->bytes > p->budget) { /* the least recently put go */
                struct stamp_pooled *old = p->lru_tail;
                unlink_locked(p, old);
                old->next = gone;
                gone = old;
        }
        pthread_mutex_unlock(&p->lock);
        if (e) { /* the owner has enough */
                stamp_file_free(e->f);
                free(e);
        }
        pooled_free_list(gone);
}

void stamp_reader_pool_drop(struct stamp_reader_pool *p, struct stamp_pooled **owner)
{
        struct stamp_pooled *gone = NULL;

        pthread_mutex_lock(&p->lock);
        while (*owner) {
                struct stamp_pooled *e = *owner;
                unlink_locked(p, e);
                e->next = gone;
                gone = e;
        }
        pthread_mutex_unlock(&p->lock);
        pooled_free_list(gone);
}

size_t stamp_reader_pool_bytes(struct stamp_reader_pool *p, size_t *ret_count)
{
        size_t bytes;

        pthread_mutex_lock(&p->lock);
        bytes = p->bytes;
        if (ret_count)
                *ret_count = p->count;
        pthread_mutex_unlock(&p->lock);
        return bytes;
}
