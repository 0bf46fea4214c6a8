/* SPDX-License-Identifier: MIT */
/*
 * Entries live in a hash table (chained) and a doubly linked LRU list. An
 * entry in use (refs > 0) is never freed: eviction skips it and drops it
 * from the table, and the last stamp_cache_put() frees it. So the cache may
 * briefly exceed its bound by what readers hold.
 *
 * A miss puts a placeholder (loading) in the table before it reads, so a
 * second reader of the same object (a read racing the prefetcher, or two
 * readers of one file) waits for that load instead of doing it again.
 */
#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "pack.h"
#include "tree.h"

/*
 * One bucket per 4 KiB of the bound (the smallest chunk): chains stay
 * short however small the chunks, and a lookup touches one or two entries
 * (with a table of 4096, a cold read of the bench store spent 3% of the
 * mount's CPU walking chains).
 */
#define BUCKETS_MIN 4096u
#define BUCKETS_MAX (1u << 22)

struct stamp_cache_ref {
        struct stamp_id id;
        uint8_t type;
        uint8_t *data;
        size_t len;
        unsigned refs;   /* protected by lock */
        bool cached;     /* in the table and the LRU list; protected by lock */
        bool loading;    /* a placeholder: in the table only; protected by lock */
        struct stamp_cache_ref *hnext, **hpprev; /* the chain; *hpprev == this */
        struct stamp_cache_ref *prev, *next;
};

struct stamp_cache {
        pthread_mutex_t lock;
        pthread_cond_t loaded; /* a placeholder was filled or dropped */
        size_t max, bytes; /* protected by lock */
        struct stamp_cache_ref *head, *tail; /* most recent first */
        unsigned mask; /* buckets - 1, a power of two */
        struct stamp_cache_ref **buckets;
};

static struct stamp_cache_ref **bucket(struct stamp_cache *c, const struct stamp_id *id)
{
        return &c->buckets[le32_read(id->b + 8) & c->mask];
}

struct stamp_cache *stamp_cache_new(size_t max_bytes)
{
        struct stamp_cache *c = calloc(1, sizeof(*c));
        unsigned n = BUCKETS_MIN;

        if (!c)
                return NULL;
        while (n < BUCKETS_MAX && (size_t)n * 4096 < max_bytes)
                n *= 2;
        c->buckets = calloc(n, sizeof(*c->buckets));
        if (!c->buckets) {
                free(c);
                return NULL;
        }
        c->mask = n - 1;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->loaded, NULL);
        c->max = max_bytes;
        return c;
}

static void entry_free(struct stamp_cache_ref *e)
{
        free(e->data);
        free(e);
}

void stamp_cache_free(struct stamp_cache *c)
{
        if (!c)
                return;
        for (struct stamp_cache_ref *e = c->head, *n; e; e = n) {
                n = e->next;
                entry_free(e);
        }
        pthread_cond_destroy(&c->loaded);
        pthread_mutex_destroy(&c->lock);
        free(c->buckets);
        free(c);
}

static void lru_unlink(struct stamp_cache *c, struct stamp_cache_ref *e)
{
        if (e->prev)
                e->prev->next = e->next;
        else
                c->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                c->tail = e->prev;
        e->prev = e->next = NULL;
}

static void lru_push(struct stamp_cache *c, struct stamp_cache_ref *e)
{
        e->next = c->head;
        e->prev = NULL;
        if (c->head)
                c->head->prev = e;
        c->head = e;
        if (!c->tail)
                c->tail = e;
}

static void table_add(struct stamp_cache *c, struct stamp_cache_ref *e)
{
        struct stamp_cache_ref **head = bucket(c, &e->id);

        e->hnext = *head;
        if (e->hnext)
                e->hnext->hpprev = &e->hnext;
        e->hpprev = head;
        *head = e;
}

static void table_remove(struct stamp_cache_ref *e)
{
        *e->hpprev = e->hnext;
        if (e->hnext)
                e->hnext->hpprev = e->hpprev;
        e->hnext = NULL;
        e->hpprev = NULL;
}

/* Drops entries from the LRU tail until under the bound. Called with lock held. */
static void evict(struct stamp_cache *c)
{
        struct stamp_cache_ref *e = c->tail;

        while (c->bytes > c->max && e) {
                struct stamp_cache_ref *prev = e->prev;
                lru_unlink(c, e);
                table_remove(e);
                e->cached = false;
                c->bytes -= e->len;
                if (e->refs == 0)
                        entry_free(e);
                e = prev;
        }
}

int stamp_cache_get(struct stamp_cache *c, struct stamp_store *s, const struct stamp_id *id,
                    uint8_t type, struct stamp_cache_ref **ret, const uint8_t **ret_data,
                    size_t *ret_len)
{
        struct stamp_cache_ref *e, *ph = NULL;
        bool told = false; /* the store's wait hook ran */
        int r;

        pthread_mutex_lock(&c->lock);
again:
        for (e = *bucket(c, id); e; e = e->hnext)
                if (stamp_id_cmp(&e->id, id) == 0 && e->type == type) {
                        if (e->loading && !told) {
                                pthread_mutex_unlock(&c->lock);
                                stamp_store_will_wait(s);
                                told = true;
                                pthread_mutex_lock(&c->lock);
                                goto again;
                        }
                        if (e->loading) {
                                pthread_cond_wait(&c->loaded, &c->lock);
                                goto again; /* filled, or dropped after a failure */
                        }
                        e->refs++;
                        lru_unlink(c, e);
                        lru_push(c, e);
                        pthread_mutex_unlock(&c->lock);
                        free(ph);
                        goto found;
                }
        if (!ph) { /* a miss: allocated unlocked, then looked for again */
                pthread_mutex_unlock(&c->lock);
                ph = calloc(1, sizeof(*ph));
                if (!ph)
                        return -ENOMEM;
                pthread_mutex_lock(&c->lock);
                goto again;
        }
        /* Announce the load, then read outside the lock. */
        e = ph;
        e->id = *id;
        e->type = type;
        e->refs = 1;
        e->loading = true;
        table_add(c, e);
        pthread_mutex_unlock(&c->lock);

        r = stamp_store_get(s, id, type, &e->data, &e->len);
        if (r == 0 && type == STAMP_OBJ_TREE) {
                /* Trees are validated once, here: users of the cache then trust them. */
                struct stamp_tree t;
                r = stamp_tree_parse(e->data, e->len, &t);
                if (r < 0)
                        free(e->data);
        }
        pthread_mutex_lock(&c->lock);
        e->loading = false;
        if (r == 0 && e->len <= c->max) {
                e->cached = true;
                lru_push(c, e);
                c->bytes += e->len;
                evict(c);
        } else
                table_remove(e); /* failed (a waiter tries itself), or too big to keep */
        pthread_cond_broadcast(&c->loaded);
        pthread_mutex_unlock(&c->lock);
        if (r < 0) {
                free(e);
                return r;
        }
found:
        *ret = e;
        *ret_data = e->data;
        *ret_len = e->len;
        return 0;
}

void stamp_cache_put(struct stamp_cache *c, struct stamp_cache_ref *e)
{
        bool gone;

        if (!e)
                return;
        pthread_mutex_lock(&c->lock);
        gone = --e->refs == 0 && !e->cached;
        pthread_mutex_unlock(&c->lock);
        if (gone)
                entry_free(e);
}

size_t stamp_cache_bytes(struct stamp_cache *c)
{
        size_t n;

        pthread_mutex_lock(&c->lock);
        n = c->bytes;
        pthread_mutex_unlock(&c->lock);
        return n;
}
