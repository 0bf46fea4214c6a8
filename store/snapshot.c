/* SPDX-License-Identifier: MIT */
/*
 * The snapshot pipeline.
 *
 * One walker thread (the caller) walks the sources with directory fds,
 * reads changed files and cuts them into chunks; N worker threads hash,
 * dedup, compress and pack the chunks (stamp_writer_put); the writer's own
 * thread makes packs durable. So reading, chunking, compressing and
 * writing overlap.
 *
 * Ordering: chunk ids come back through "slots". A file whose chunks fit
 * in one ring of slots is finished only when its directory is (so the
 * chunks of many small files are in flight together); a larger file
 * recycles its ring, consuming the oldest slot before reusing it. A
 * directory's tree is written after all its files are finished, so trees
 * are written bottom-up and a tree only names objects already put.
 *
 * Memory is bounded by the bytes in flight (IN_FLIGHT_MAX), the read
 * buffer, and the entries of the directories on the current path.
 *
 * Files cache: an unchanged regular file (same dev, ino, size, mtime and
 * ctime) reuses its content reference without being read. Files modified
 * within the last two seconds of the snapshot's start are not cached
 * ("racy" files), nor are files that changed while being read.
 *
 * Databases (--sqlite=auto): a file that starts with the SQLite header is
 * copied through SQLite (sqlite-capture.h) by the walker, and the copy is
 * chunked like a file. Small files are read by workers, so a worker that
 * sees the header hands the file back to the walker instead of storing it.
 * A name ending in -wal, -shm or -journal whose base name is listed in the
 * same directory is held back until the directory's files are finished:
 * if its database was captured it is not stored (the copy holds its
 * committed content), else it is read like any file. A captured database
 * is taken from the files cache only if its row says it was captured and
 * its -wal is empty: commits in the -wal change the database without
 * changing the database file, which is all the cache key sees.
 *
 * Files that vanish between the listing and the read are reported in the
 * record's errors and left out of the snapshot.
 *
 * Hardlinks: the first name of a file with several names is read like any
 * file; each later name takes the entry as that name stored it (content,
 * xattrs, size, times), without reading the file again. So every name of
 * one inode holds the same version even if the file changes between the
 * reads of its names, and its bytes are read once. A later name that comes
 * while the first one's chunks are still in flight waits for its
 * directory's files to be finished if it is in the same directory, else
 * finishes that first name there and then (its directory is on the walk's
 * path). A database in auto mode is never shared: each name is captured
 * with the -wal beside it. Nor are names past the bound on the entries
 * kept for names still to come (LINKS_BUDGET), or names of a first name
 * that vanished or could not be read: those are read like any file.
 */

#include "snapshot.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "chunker.h"
#include "compress.h"
#include "macro.h"
#include "pack.h"
#include "sqlite-capture.h"
#include "store-internal.h"
#include "tree.h"
#include "writer.h"

#define RING 64
#define IN_FLIGHT_MAX (48u << 20)
#define SPARE_MAX 16
#define DEPTH_MAX 4096
#define READ_ATTEMPTS 3
#define XATTR_LIST_MAX_BYTES (1u << 20)
#ifndef LINKS_BUDGET
#define LINKS_BUDGET (32u << 20) /* overridable to test the bound by hand */
#endif

struct slot {
        struct stamp_id id;
        uint32_t len;
        bool done; /* protected by pool.lock */
        int error; /* protected by pool.lock */
};

struct filejob;

struct task {
        uint8_t *data;
        size_t len;
        bool spare; /* @data holds the chunker's max bytes and goes back to pool.spare */
        size_t cost; /* what it counts in pool.in_flight: the bytes @data holds */
        struct slot *slot;
        struct filejob *job;
        struct task *next;
};

/* Builds a file's chunk list: inline for a few chunks, else chunk-list objects. */
struct listb {
        uint8_t *items[STAMP_CHUNKLIST_LEVEL_MAX + 1]; /* FANOUT × (id, le64 len) */
        uint32_t count[STAMP_CHUNKLIST_LEVEL_MAX + 1];
        uint64_t bytes[STAMP_CHUNKLIST_LEVEL_MAX + 1];
        uint64_t total_chunks;
        int top; /* highest level with items or flushed */
};

struct filejob {
        struct slot *slots;
        size_t nslots;
        uint64_t dispatched, consumed;
        struct listb lb;
        /*
         * New chunks in a row that did not compress. Past a few, only every
         * PROBE_EVERY-th chunk of the file is tried: zstd on random data
         * (vector segments, media) costs CPU for nothing. Protected by
         * pool.lock.
         */
        unsigned raw_streak;
        unsigned tried;

        /*
         * A small file (at most SMALL_CHUNKS minimum-size chunks, so its chunk
         * list is always inline) is opened, read, chunked and stored whole by
         * a worker: many small reads are then in flight at once, which is what
         * a cold page cache needs. The walker keeps the directory fd open and
         * the name alive until the job is finished. Results are written by the
         * worker and read by the walker after `done` (pool.lock).
         */
        bool small;
        bool done;
        int dirfd;
        const char *name;
        struct stat st;       /* fstat after the read that was kept */
        uint64_t size;        /* bytes stored */
        int source_errno;     /* open/read failed: the entry is unreadable */
        bool changed;         /* kept changing while read */
        bool sqlite_header;   /* starts like a database (then, in auto mode, nothing is stored) */
        int store_error;
        uint32_t nrefs;
        uint8_t refs[STAMP_INLINE_CHUNKS_MAX * STAMP_CHUNKREF_SIZE];
};

#define SMALL_CHUNKS STAMP_INLINE_CHUNKS_MAX

#define RAW_STREAK_SKIP 4
#define PROBE_EVERY 16

/* An entry of the directory being built, with the strings it owns. */
struct pentry {
        struct stamp_entry e;
        char *name;
        char *target;
        uint8_t *xattrs;
        uint8_t *content;
        struct filejob *job;
        struct link *link;  /* the first name of a hardlinked file, until it is finished */
        uint64_t dev, ino;
        uint64_t st_size;   /* the file's size when its stat was taken: the cache key */
        uint64_t counted;   /* bytes added to the record's logical_bytes */
        bool cacheable;
        bool sqlite_header; /* the file starts with the SQLite header */
        bool drop;          /* vanished: left out of the tree */
        bool linked;        /* took its entry from an earlier name of its file */
        bool await_link;    /* takes it once its directory's files are finished */
};

struct cache_row {
        uint64_t dev, ino, size;
        int64_t mtime, ctime;
        uint8_t *content;
        size_t len;
        uint8_t *xattrs;
        size_t xattrs_len;
        unsigned flags; /* STAMP_FILES_* */
};

struct dirlist {
        struct pentry *v;
        size_t n, cap;
};

/*
 * A file with more than one name, from its first name until its last one
 * has taken its entry. Pending while the first name's chunks are in
 * flight (@dir, @idx: where that name waits to be finished; @dir_len: the
 * length of its directory's path, a prefix of the walk's path while it
 * waits), then done, holding the entry as stored.
 */
struct link {
        uint64_t dev, ino;
        uint64_t left; /* names still to come */
        struct link *next;
        struct dirlist *dir;
        size_t idx, dir_len;
        bool done;
        struct stamp_entry e; /* name unset; content and xattrs below */
        uint8_t *content, *xattrs;
        uint64_t st_size;
        bool sqlite_header;
};

struct ctx {
        struct stamp_store *s;
        const struct stamp_snapshot_options *o;
        struct stamp_writer *w;
        struct stamp_zctx *z; /* the walker's */
        /*
         * The chunk of zeros the chunker cuts holes into, once the walker
         * has stored it (zero_slot()); its length is chunker.zero_cut.
         */
        bool zero_stored;
        struct stamp_id zero_id;
        struct stamp_index *ix;
        struct stamp_chunker chunker;
        struct stamp_record *rec;
        uint64_t store_dev, store_ino;
        uint64_t root_dev;
        bool async_small; /* directory fds outlive their files' jobs */
        int64_t racy_after; /* seconds: files changed after this are not cached */
        uint8_t *rbuf;
        size_t rbuf_size;
        char *path; /* relative path of the entry being worked on */
        size_t path_len, path_cap;
        struct cache_row *rows;
        size_t n_rows, rows_cap;
        struct link **links; /* hash table on (dev, ino) */
        size_t links_cap, n_links, links_bytes;
        struct dirlist *cur_dir; /* the directory walk_entry() adds to, or NULL */
        char *tmp_dir;       /* the store's tmp/, where databases are copied */
        struct pentry stream;/* the --stdin-from file until it is placed */
        int64_t stream_time_ns;
        bool stream_pending;
        bool stream_conflict; /* its path appeared in the sources during the walk */
        struct stamp_progress prog;
        struct timespec last_progress;

        struct {
                pthread_mutex_t lock;
                pthread_cond_t has_task, progress;
                struct task *head, **tail;
                size_t in_flight;
                /*
                 * Buffers of the largest chunk size, kept for the next large
                 * chunks: allocating and freeing them made glibc grow and
                 * trim its heap all the time, and each new page faulted in
                 * (a sparse file's holes, all largest chunks, were read 4x
                 * slower for it).
                 */
                uint8_t *spare[SPARE_MAX];
                unsigned n_spare;
                bool stop;
                pthread_t *threads;
                unsigned n_threads;
        } pool;
};

/* ---- worker pool ---- */

static bool same_file(const struct stat *a, const struct stat *b);

/* Reads a whole small file of @job into @buf (@cap bytes); the count or -errno. */
static ssize_t read_all(int fd, uint8_t *buf, size_t cap)
{
        size_t have = 0;

        while (have < cap) {
                ssize_t n = read(fd, buf + have, cap - have);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negerrno();
                }
                if (n == 0)
                        break;
                have += (size_t)n;
        }
        return (ssize_t)have;
}

/*
 * A worker's part of a small file: open, read (retrying if it changes),
 * store. @buf is the worker's own, SMALL_CHUNKS * min + 1 bytes.
 */
static void small_file(struct ctx *c, struct stamp_zctx *z, uint8_t *buf, struct filejob *job)
{
        size_t cap = (size_t)SMALL_CHUNKS * c->chunker.p.min;
        _cleanup_close_ int fd = -1;
        ssize_t n = 0;

        fd = openat(job->dirfd, job->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME | O_NONBLOCK);
        if (fd < 0 && errno == EPERM) /* O_NOATIME needs ownership */
                fd = openat(job->dirfd, job->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
                job->source_errno = errno;
                return;
        }
        for (int attempt = 1;; attempt++) {
                struct stat before;
                if (fstat(fd, &before) < 0 || (n = read_all(fd, buf, cap + 1)) < 0 ||
                    fstat(fd, &job->st) < 0) {
                        job->source_errno = n < 0 ? (int)-n : errno;
                        return;
                }
                job->sqlite_header = stamp_capture_is_sqlite(buf, (size_t)n);
                if (job->sqlite_header && c->o->sqlite == STAMP_SQLITE_AUTO)
                        return; /* the walker copies it through SQLite (finish_small) */
                if ((size_t)n > cap) /* grew past what a small file may hold */
                        n = (ssize_t)cap;
                else if (same_file(&before, &job->st) && n == job->st.st_size)
                        break;
                if (attempt == READ_ATTEMPTS) {
                        job->changed = true;
                        break;
                }
                if (lseek(fd, 0, SEEK_SET) < 0) {
                        job->source_errno = errno;
                        return;
                }
        }
        job->size = (uint64_t)n;
        for (size_t pos = 0; pos < (size_t)n;) {
                size_t cut = stamp_chunker_cut(&c->chunker, buf + pos, (size_t)n - pos);
                struct stamp_id id;
                uint8_t *ref = job->refs + (size_t)job->nrefs * STAMP_CHUNKREF_SIZE;
                int r = stamp_writer_put(c->w, z, STAMP_OBJ_DATA, buf + pos, cut, &id);
                if (r < 0) {
                        job->store_error = r;
                        return;
                }
                memcpy(ref, id.b, STAMP_ID_SIZE);
                le32_write(ref + STAMP_ID_SIZE, (uint32_t)cut);
                job->nrefs++;
                pos += cut;
        }
}

/* Whether @len bytes at @p begin or end with a 4 KiB block of zeros. */
static bool zero_edge(const uint8_t *p, size_t len)
{
        static const uint8_t zero[4096];

        return len >= 2 * sizeof(zero) &&
               (memcmp(p, zero, sizeof(zero)) == 0 ||
                memcmp(p + len - sizeof(zero), zero, sizeof(zero)) == 0);
}

static void *worker_main(void *arg)
{
        struct ctx *c = arg;
        struct stamp_zctx *z = stamp_zctx_new(stamp_store_config(c->s)->zstd_level);
        uint8_t *small_buf = malloc((size_t)SMALL_CHUNKS * c->chunker.p.min + 1);

        pthread_mutex_lock(&c->pool.lock);
        for (;;) {
                struct task *t;
                struct stamp_id id;
                unsigned flags;
                int compressed = -1, r;

                while (!c->pool.head && !c->pool.stop)
                        pthread_cond_wait(&c->pool.has_task, &c->pool.lock);
                if (!c->pool.head)
                        break;
                t = c->pool.head;
                c->pool.head = t->next;
                if (!c->pool.head)
                        c->pool.tail = &c->pool.head;
                if (t->job->small) {
                        pthread_mutex_unlock(&c->pool.lock);
                        if (z && small_buf)
                                small_file(c, z, small_buf, t->job);
                        else
                                t->job->store_error = -ENOMEM;
                        pthread_mutex_lock(&c->pool.lock);
                        t->job->done = true;
                        c->pool.in_flight -= t->len;
                        pthread_cond_broadcast(&c->pool.progress);
                        free(t);
                        continue;
                }
                flags = 0;
                if (t->job->raw_streak >= RAW_STREAK_SKIP && t->job->tried++ % PROBE_EVERY != 0)
                        flags = STAMP_PUT_NO_COMPRESS;
                pthread_mutex_unlock(&c->pool.lock);
                /*
                 * Where the data of a sparse file meets a hole, a chunk is
                 * part zeros: it compresses, however random the data beside.
                 */
                if ((flags & STAMP_PUT_NO_COMPRESS) && zero_edge(t->data, t->len))
                        flags = 0;

                r = z && small_buf ? stamp_writer_put_flags(c->w, z, STAMP_OBJ_DATA, t->data, t->len, flags,
                                               &compressed, &id)
                      : -ENOMEM;

                pthread_mutex_lock(&c->pool.lock);
                if (compressed == 1)
                        t->job->raw_streak = 0;
                else if (compressed == 0 && !(flags & STAMP_PUT_NO_COMPRESS))
                        t->job->raw_streak++;

                t->slot->done = true;
                t->slot->error = r;
                if (r == 0) {
                        t->slot->id = id;
                        t->slot->len = (uint32_t)t->len;
                }
                c->pool.in_flight -= t->cost;
                pthread_cond_broadcast(&c->pool.progress);
                if (t->spare && c->pool.n_spare < SPARE_MAX)
                        c->pool.spare[c->pool.n_spare++] = t->data;
                else
                        free(t->data);
                free(t);
        }
        pthread_mutex_unlock(&c->pool.lock);
        stamp_zctx_free(z);
        free(small_buf);
        return NULL;
}

static int pool_start(struct ctx *c, unsigned n)
{
        pthread_mutex_init(&c->pool.lock, NULL);
        pthread_cond_init(&c->pool.has_task, NULL);
        pthread_cond_init(&c->pool.progress, NULL);
        c->pool.tail = &c->pool.head;
        c->pool.threads = calloc(n, sizeof(pthread_t));
        if (!c->pool.threads)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
                if (pthread_create(&c->pool.threads[i], NULL, worker_main, c) != 0)
                        return -EAGAIN;
                c->pool.n_threads++;
        }
        return 0;
}

static void pool_stop(struct ctx *c)
{
        if (!c->pool.tail)
                return;
        pthread_mutex_lock(&c->pool.lock);
        c->pool.stop = true;
        pthread_cond_broadcast(&c->pool.has_task);
        pthread_mutex_unlock(&c->pool.lock);
        for (unsigned i = 0; i < c->pool.n_threads; i++)
                pthread_join(c->pool.threads[i], NULL);
        free(c->pool.threads);
        while (c->pool.n_spare)
                free(c->pool.spare[--c->pool.n_spare]);
        pthread_cond_destroy(&c->pool.has_task);
        pthread_cond_destroy(&c->pool.progress);
        pthread_mutex_destroy(&c->pool.lock);
}

/* Queues a copy of @data for slot @slot, waiting while too much is in flight. */
static int dispatch(struct ctx *c, struct filejob *job, const uint8_t *data, size_t len,
                    struct slot *slot)
{
        struct task *t = malloc(sizeof(*t));

        if (!t)
                return -ENOMEM;
        t->data = NULL;
        t->spare = len > c->chunker.p.max / 2;
        if (t->spare) {
                pthread_mutex_lock(&c->pool.lock);
                if (c->pool.n_spare)
                        t->data = c->pool.spare[--c->pool.n_spare];
                pthread_mutex_unlock(&c->pool.lock);
        }
        if (!t->data)
                t->data = malloc(t->spare ? c->chunker.p.max : len ? len : 1);
        if (!t->data) {
                free(t);
                return -ENOMEM;
        }
        memcpy(t->data, data, len);
        t->len = len;
        t->cost = t->spare ? c->chunker.p.max : len;
        t->slot = slot;
        t->job = job;
        t->next = NULL;
        pthread_mutex_lock(&c->pool.lock);
        while (c->pool.in_flight > 0 && c->pool.in_flight + t->cost > IN_FLIGHT_MAX)
                pthread_cond_wait(&c->pool.progress, &c->pool.lock);
        slot->done = false;
        slot->error = 0;
        c->pool.in_flight += t->cost;
        *c->pool.tail = t;
        c->pool.tail = &t->next;
        pthread_cond_signal(&c->pool.has_task);
        pthread_mutex_unlock(&c->pool.lock);
        return 0;
}

/* Queues a small file for a worker to read and store whole. */
static int dispatch_small(struct ctx *c, struct filejob *job, size_t size)
{
        struct task *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        t->job = job;
        t->len = size;
        pthread_mutex_lock(&c->pool.lock);
        while (c->pool.in_flight > 0 && c->pool.in_flight + size > IN_FLIGHT_MAX)
                pthread_cond_wait(&c->pool.progress, &c->pool.lock);
        c->pool.in_flight += size;
        *c->pool.tail = t;
        c->pool.tail = &t->next;
        pthread_cond_signal(&c->pool.has_task);
        pthread_mutex_unlock(&c->pool.lock);
        return 0;
}

static void small_wait(struct ctx *c, struct filejob *job)
{
        pthread_mutex_lock(&c->pool.lock);
        while (!job->done)
                pthread_cond_wait(&c->pool.progress, &c->pool.lock);
        pthread_mutex_unlock(&c->pool.lock);
}

static int slot_wait(struct ctx *c, struct slot *slot)
{
        int r;

        pthread_mutex_lock(&c->pool.lock);
        while (!slot->done)
                pthread_cond_wait(&c->pool.progress, &c->pool.lock);
        r = slot->error;
        pthread_mutex_unlock(&c->pool.lock);
        return r;
}

/* ---- chunk lists ---- */

static void listb_release(struct listb *lb)
{
        for (int i = 0; i <= STAMP_CHUNKLIST_LEVEL_MAX; i++)
                free(lb->items[i]);
        memset(lb, 0, sizeof(*lb));
}

static int listb_push(struct ctx *c, struct listb *lb, int level, const struct stamp_id *id,
                      uint64_t len);

/* Writes level @level as a chunk-list object and pushes it one level up. */
static int listb_flush(struct ctx *c, struct listb *lb, int level)
{
        _cleanup_free_ uint8_t *obj = NULL;
        struct stamp_id id;
        size_t n;
        uint64_t bytes = lb->bytes[level];
        int r;

        if (level >= STAMP_CHUNKLIST_LEVEL_MAX)
                return -EFBIG;
        r = stamp_chunklist_encode((uint8_t)level, lb->items[level], lb->count[level], &obj, &n);
        if (r < 0)
                return r;
        r = stamp_writer_put(c->w, c->z, STAMP_OBJ_CHUNKLIST, obj, n, &id);
        if (r < 0)
                return r;
        lb->count[level] = 0;
        lb->bytes[level] = 0;
        return listb_push(c, lb, level + 1, &id, bytes);
}

static int listb_push(struct ctx *c, struct listb *lb, int level, const struct stamp_id *id,
                      uint64_t len)
{
        uint8_t *p;

        if (!lb->items[level]) {
                lb->items[level] = malloc((size_t)STAMP_CHUNKLIST_FANOUT * STAMP_LISTREF_SIZE);
                if (!lb->items[level])
                        return -ENOMEM;
        }
        if (level > lb->top)
                lb->top = level;
        p = lb->items[level] + (size_t)lb->count[level] * STAMP_LISTREF_SIZE;
        memcpy(p, id->b, STAMP_ID_SIZE);
        le64_write(p + STAMP_ID_SIZE, len);
        lb->count[level]++;
        lb->bytes[level] += len;
        if (level == 0)
                lb->total_chunks++;
        if (lb->count[level] == STAMP_CHUNKLIST_FANOUT)
                return listb_flush(c, lb, level);
        return 0;
}

/* Produces the encoded content reference of a finished file. */
static int listb_finish(struct ctx *c, struct listb *lb, uint8_t **ret, size_t *ret_len)
{
        uint8_t refs[STAMP_INLINE_CHUNKS_MAX * STAMP_CHUNKREF_SIZE];
        int r;

        if (lb->total_chunks <= STAMP_INLINE_CHUNKS_MAX && lb->top == 0) {
                for (uint32_t i = 0; i < lb->count[0]; i++) {
                        const uint8_t *p = lb->items[0] + (size_t)i * STAMP_LISTREF_SIZE;
                        memcpy(refs + (size_t)i * STAMP_CHUNKREF_SIZE, p, STAMP_ID_SIZE);
                        le32_write(refs + (size_t)i * STAMP_CHUNKREF_SIZE + STAMP_ID_SIZE,
                                   (uint32_t)le64_read(p + STAMP_ID_SIZE));
                }
                return stamp_content_encode_inline(refs, lb->count[0], ret, ret_len);
        }
        for (int level = 0;; level++) {
                if (level == lb->top && lb->count[level] == 1 && level > 0) {
                        struct stamp_id id;
                        memcpy(id.b, lb->items[level], STAMP_ID_SIZE);
                        return stamp_content_encode_list(&id, (uint8_t)(level - 1), ret, ret_len);
                }
                if (lb->count[level] == 0)
                        continue;
                r = listb_flush(c, lb, level);
                if (r < 0)
                        return r;
        }
}

/* ---- paths, errors, progress ---- */

static int path_push(struct ctx *c, const char *name, size_t *ret_old)
{
        size_t n = strlen(name), need = c->path_len + 1 + n + 1;

        if (need > c->path_cap) {
                size_t cap = c->path_cap ? c->path_cap : 256;
                char *p;
                while (cap < need)
                        cap *= 2;
                p = realloc(c->path, cap);
                if (!p)
                        return -ENOMEM;
                c->path = p;
                c->path_cap = cap;
        }
        *ret_old = c->path_len;
        if (c->path_len > 0)
                c->path[c->path_len++] = '/';
        memcpy(c->path + c->path_len, name, n + 1);
        c->path_len += n;
        return 0;
}

static void path_pop(struct ctx *c, size_t old)
{
        c->path_len = old;
        if (c->path)
                c->path[old] = 0;
}

/* Records a source-side problem; the snapshot goes on. */
static int source_error(struct ctx *c, const char *reason)
{
        char buf[PATH_MAX + 256];

        c->rec->n_errors++;
        if (c->rec->errors.n >= STAMP_RECORD_LIST_MAX)
                return 0;
        snprintf(buf, sizeof(buf), "%s: %s", c->path_len ? c->path : ".", reason);
        return stamp_strv_push(&c->rec->errors, buf);
}

static int source_changed(struct ctx *c)
{
        c->rec->n_changed++;
        if (c->rec->changed.n >= STAMP_RECORD_LIST_MAX)
                return 0;
        return stamp_strv_push(&c->rec->changed, c->path_len ? c->path : ".");
}

/* Records an entry that was stored, but less well than asked. */
static int source_warning(struct ctx *c, const char *reason)
{
        char buf[PATH_MAX + 1024];

        c->rec->n_warnings++;
        if (c->rec->warnings.n >= STAMP_RECORD_LIST_MAX)
                return 0;
        snprintf(buf, sizeof(buf), "%s: %s", c->path_len ? c->path : ".", reason);
        return stamp_strv_push(&c->rec->warnings, buf);
}

/* Records a database captured through SQLite. */
static int source_sqlite(struct ctx *c)
{
        c->rec->n_sqlite++;
        if (c->rec->sqlite.n >= STAMP_RECORD_LIST_MAX)
                return 0;
        return stamp_strv_push(&c->rec->sqlite, c->path_len ? c->path : ".");
}

/* A regular file that vanished after it was listed: reported and left out. */
static int file_vanished(struct ctx *c, struct pentry *pe)
{
        c->rec->files--;
        c->rec->logical_bytes -= pe->counted;
        pe->counted = 0;
        pe->drop = true;
        return source_error(c, "vanished during the snapshot");
}

/* Sets the size of a file's entry, keeping the record's logical_bytes in step. */
static void set_size(struct ctx *c, struct pentry *pe, uint64_t size)
{
        c->rec->logical_bytes += size - pe->counted;
        pe->counted = size;
        pe->e.size = size;
}

static void progress(struct ctx *c)
{
        struct timespec now;
        struct stamp_writer_stats st;

        if (!c->o->progress)
                return;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
        if ((now.tv_sec - c->last_progress.tv_sec) * 1000000000L +
                    (now.tv_nsec - c->last_progress.tv_nsec) < 100000000L)
                return;
        c->last_progress = now;
        stamp_writer_stats(c->w, &st);
        c->prog.new_bytes = st.new_bytes;
        c->prog.path = c->path;
        c->o->progress(&c->prog, c->o->userdata);
}

static bool excluded(struct ctx *c, const char *name)
{
        for (size_t i = 0; i < c->o->n_excludes; i++) {
                const char *pat = c->o->excludes[i];
                if (strchr(pat, '/')) {
                        if (fnmatch(pat[0] == '/' ? pat + 1 : pat, c->path, FNM_PATHNAME) == 0)
                                return true;
                } else if (fnmatch(pat, name, 0) == 0)
                        return true;
        }
        return false;
}

/* ---- reading entries ---- */

/* Nanoseconds since the epoch; int64 holds 1677-09-21 to 2262-04-11, clamped there. */
static int64_t ts_ns(struct timespec t)
{
        if (t.tv_sec >= INT64_MAX / 1000000000 - 1)
                return INT64_MAX / 1000000000 * 1000000000 - 1000000000;
        if (t.tv_sec <= INT64_MIN / 1000000000 + 1)
                return INT64_MIN / 1000000000 * 1000000000 + 1000000000;
        return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static bool ts_in_range(struct timespec t)
{
        return t.tv_sec < INT64_MAX / 1000000000 - 1 && t.tv_sec > INT64_MIN / 1000000000 + 1;
}

struct xattr_item {
        char *name;
        uint8_t *value;
        size_t len;
};

static int cmp_xattr(const void *a, const void *b)
{
        return strcmp(((const struct xattr_item *)a)->name, ((const struct xattr_item *)b)->name);
}

/*
 * Reads the xattrs of @path (not following symlinks) into the encoded form.
 * Returns the number of attributes left out (a name over 255 bytes, a value
 * over STAMP_XATTR_VALUE_MAX, one that vanished or could not be read), or
 * a negative error.
 */
static int read_xattrs(const char *path, struct pentry *pe)
{
        _cleanup_free_ char *list = NULL;
        _cleanup_free_ struct xattr_item *items = NULL;
        size_t n = 0, total = 0, names = 0;
        ssize_t len;
        uint8_t *out, *q;
        int r = 0, skipped = 0;

        len = llistxattr(path, NULL, 0);
        if (len <= 0)
                return len < 0 && errno != ENOTSUP && errno != ENODATA ? negerrno() : 0;
        if ((size_t)len > XATTR_LIST_MAX_BYTES)
                return -E2BIG;
        list = malloc((size_t)len);
        if (!list)
                return -ENOMEM;
        len = llistxattr(path, list, (size_t)len);
        if (len < 0)
                return negerrno();
        for (char *p = list; p < list + len; p += strlen(p) + 1)
                names++;
        if (names > UINT16_MAX)
                return -E2BIG;
        items = calloc(names ? names : 1, sizeof(*items));
        if (!items)
                return -ENOMEM;
        for (char *p = list; p < list + len; p += strlen(p) + 1) {
                ssize_t vl;
                if (!*p)
                        continue;
                if (strlen(p) > 255) {
                        skipped++;
                        continue;
                }
                /* The value's size, then the value: again if it grew meanwhile. */
                for (int tries = 0;; tries++) {
                        vl = lgetxattr(path, p, NULL, 0);
                        if (vl < 0 || vl > STAMP_XATTR_VALUE_MAX)
                                break;
                        items[n].value = malloc(vl ? (size_t)vl : 1);
                        if (!items[n].value) {
                                r = -ENOMEM;
                                break;
                        }
                        vl = lgetxattr(path, p, items[n].value, (size_t)vl);
                        if (vl >= 0 || errno != ERANGE || tries == 3)
                                break;
                        free(items[n].value);
                        items[n].value = NULL;
                }
                if (r < 0)
                        break;
                if (vl < 0 || vl > STAMP_XATTR_VALUE_MAX) {
                        skipped += !(vl < 0 && errno == ENODATA); /* removed meanwhile */
                        free(items[n].value);
                        items[n].value = NULL;
                        continue;
                }
                items[n].name = p;
                items[n].len = (size_t)vl;
                total += 1 + strlen(p) + 4 + (size_t)vl;
                n++;
        }
        if (r == 0 && n > 0) {
                qsort(items, n, sizeof(items[0]), cmp_xattr);
                out = malloc(total);
                if (!out)
                        r = -ENOMEM;
                else {
                        q = out;
                        for (size_t i = 0; i < n; i++) {
                                size_t nl = strlen(items[i].name);
                                *q++ = (uint8_t)nl;
                                memcpy(q, items[i].name, nl);
                                q += nl;
                                le32_write(q, (uint32_t)items[i].len);
                                q += 4;
                                memcpy(q, items[i].value, items[i].len);
                                q += items[i].len;
                        }
                        pe->xattrs = out;
                        pe->e.xattrs = out;
                        pe->e.xattrs_len = total;
                        pe->e.xattr_count = (uint16_t)n;
                }
        }
        for (size_t i = 0; i < n; i++)
                free(items[i].value);
        return r < 0 ? r : skipped;
}

static uint8_t type_of(mode_t m)
{
        switch (m & S_IFMT) {
        case S_IFREG:
                return STAMP_T_REG;
        case S_IFDIR:
                return STAMP_T_DIR;
        case S_IFLNK:
                return STAMP_T_LNK;
        case S_IFCHR:
                return STAMP_T_CHR;
        case S_IFBLK:
                return STAMP_T_BLK;
        case S_IFIFO:
                return STAMP_T_FIFO;
        case S_IFSOCK:
                return STAMP_T_SOCK;
        }
        return 0;
}

static void fill_stat(struct ctx *c, struct pentry *pe, const struct stat *st)
{
        (void)c;
        pe->e.type = type_of(st->st_mode);
        pe->e.mode = st->st_mode;
        pe->e.uid = st->st_uid;
        pe->e.gid = st->st_gid;
        pe->e.nlink = (uint32_t)st->st_nlink;
        pe->e.mtime_ns = ts_ns(st->st_mtim);
        pe->e.ctime_ns = ts_ns(st->st_ctim);
        pe->e.rdev = (pe->e.type == STAMP_T_CHR || pe->e.type == STAMP_T_BLK) ? st->st_rdev : 0;
        pe->dev = st->st_dev;
        pe->ino = st->st_ino;
        pe->st_size = (uint64_t)st->st_size;
        if (pe->e.type != STAMP_T_DIR && st->st_nlink > 1) {
                /* Stable across snapshots, so unchanged trees stay identical. */
                uint8_t key[16];
                struct stamp_id h;
                le64_write(key, st->st_dev);
                le64_write(key + 8, st->st_ino);
                stamp_checksum128(key, sizeof(key), &h);
                pe->e.link_id = le64_read(h.b) | 1;
        }
}

/* Consumes finished slots of @job in order, up to @upto dispatched chunks. */
static int job_consume(struct ctx *c, struct filejob *job, uint64_t upto)
{
        while (job->consumed < upto) {
                struct slot *sl = &job->slots[job->consumed % job->nslots];
                int r = slot_wait(c, sl);
                if (r < 0)
                        return r;
                r = listb_push(c, &job->lb, 0, &sl->id, sl->len);
                if (r < 0)
                        return r;
                job->consumed++;
        }
        return 0;
}

static void job_free(struct filejob *job)
{
        if (!job)
                return;
        listb_release(&job->lb);
        free(job->slots);
        free(job);
}

/* Drops what a failed read attempt dispatched, so the file can be read again. */
static int job_reset(struct ctx *c, struct filejob *job)
{
        if (job->small) {
                small_wait(c, job);
                return 0;
        }
        while (job->consumed < job->dispatched) {
                (void)slot_wait(c, &job->slots[job->consumed % job->nslots]);
                job->consumed++;
        }
        listb_release(&job->lb);
        job->consumed = job->dispatched = 0;
        return 0;
}

/*
 * Cuts the first @have bytes of c->rbuf into chunks and dispatches them:
 * every chunk at @eof, else only those that a later byte cannot change.
 * The rest is moved to the start of rbuf; returns its length or -errno.
 */
/*
 * Fills @slot with the chunk of zeros at @data, without a worker: a hole
 * of 20 GiB is 160,000 such chunks, and handing each to a worker and back
 * cost more than all else. The walker stores it once per snapshot, then
 * only names it; the writer dedups that one put like any other.
 */
static void zero_slot(struct ctx *c, const uint8_t *data, size_t len, struct slot *slot)
{
        int r = 0;

        if (!c->zero_stored) {
                r = c->z ? stamp_writer_put(c->w, c->z, STAMP_OBJ_DATA, data, len, &c->zero_id)
                         : -ENOMEM;
                c->zero_stored = r == 0;
        }
        /* A failed put is the store's error, in the slot as a worker's would be. */
        pthread_mutex_lock(&c->pool.lock);
        slot->done = true;
        slot->error = r;
        slot->id = c->zero_id;
        slot->len = (uint32_t)len;
        pthread_mutex_unlock(&c->pool.lock);
}

static ssize_t cut_chunks(struct ctx *c, struct filejob *job, size_t have, bool eof)
{
        size_t pos = 0, max = c->chunker.p.max;

        while (have - pos >= max || (eof && pos < have)) {
                bool zero;
                size_t cut = stamp_chunker_cut_zero(&c->chunker, c->rbuf + pos, have - pos, &zero);
                struct slot *sl;
                int r;
                if (job->dispatched - job->consumed == job->nslots) {
                        r = job_consume(c, job, job->consumed + 1);
                        if (r < 0)
                                return r;
                }
                sl = &job->slots[job->dispatched % job->nslots];
                if (zero)
                        zero_slot(c, c->rbuf + pos, cut, sl);
                r = zero ? 0 : dispatch(c, job, c->rbuf + pos, cut, sl);
                if (r < 0)
                        return r;
                job->dispatched++;
                pos += cut;
        }
        memmove(c->rbuf, c->rbuf + pos, have - pos);
        return (ssize_t)(have - pos);
}

/*
 * Where the next bytes of a sparse file come from: a hole (zeros, not
 * read) or data, as SEEK_DATA and SEEK_HOLE tell. Sets *ret_zero and
 * returns how many bytes from @off are of that kind (0 at the end of the
 * file), or -EOPNOTSUPP where the file system cannot tell.
 */
static int64_t region_at(int fd, uint64_t off, bool *ret_zero)
{
        struct stat st;
        off_t d = lseek(fd, (off_t)off, SEEK_DATA), h;

        if (d < 0 && errno == ENXIO) { /* a hole to the end, or the end */
                if (fstat(fd, &st) < 0)
                        return negerrno();
                *ret_zero = true;
                return (uint64_t)st.st_size > off ? (int64_t)((uint64_t)st.st_size - off) : 0;
        }
        if (d < 0)
                return errno == EINVAL ? -EOPNOTSUPP : negerrno();
        if ((uint64_t)d > off) {
                *ret_zero = true;
                return (int64_t)((uint64_t)d - off);
        }
        h = lseek(fd, (off_t)off, SEEK_HOLE);
        if (h < 0 && errno == ENXIO)
                return 0; /* cut short meanwhile: read() finds the end, the caller the change */
        if (h < 0)
                return negerrno();
        *ret_zero = false;
        return (uint64_t)h > off ? (int64_t)((uint64_t)h - off) : 0;
}

/*
 * Reads @fd to the end, dispatching its chunks. With @sparse (a file with
 * fewer blocks than bytes), holes are not read but taken as the zeros
 * they are: a 100 GB disk image with 1 GB of data is read as 1 GB. They
 * are still chunked like any zeros, so the snapshot is the same.
 * Returns the bytes read, or a negative errno: -EIO-like errors of the
 * source are returned as they are, store errors come back through the slots.
 */
static int64_t read_chunks(struct ctx *c, int fd, struct filejob *job, bool sparse)
{
        size_t have = 0;
        uint64_t total = 0;
        uint64_t region = 0; /* sparse: bytes left in the current region */
        bool zero = false, eof = false;

        for (;;) {
                ssize_t kept;
                while (!eof && have < c->rbuf_size) {
                        size_t want = c->rbuf_size - have;
                        ssize_t n;
                        if (sparse && region == 0) {
                                int64_t m = region_at(fd, total, &zero);
                                if (m == -EOPNOTSUPP) {
                                        /* read() goes on from the file offset, which lseek() moved. */
                                        if (lseek(fd, (off_t)total, SEEK_SET) < 0)
                                                return negerrno();
                                        sparse = false;
                                        continue;
                                }
                                if (m < 0)
                                        return m;
                                /* At the end by SEEK_DATA's account: read() says for sure. */
                                region = m > 0 ? (uint64_t)m : UINT64_MAX;
                                zero = zero && m > 0;
                        }
                        if (sparse && region < want)
                                want = (size_t)region;
                        if (sparse && zero) {
                                memset(c->rbuf + have, 0, want);
                                n = (ssize_t)want;
                        } else if (sparse)
                                n = pread(fd, c->rbuf + have, want, (off_t)total);
                        else
                                n = read(fd, c->rbuf + have, want);
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                return negerrno();
                        }
                        if (n == 0)
                                eof = true;
                        if (sparse)
                                region = n == 0 || region == UINT64_MAX ? 0 : region - (uint64_t)n;
                        have += (size_t)n;
                        total += (uint64_t)n;
                        c->prog.read_bytes += (uint64_t)n;
                }
                kept = cut_chunks(c, job, have, eof);
                if (kept < 0)
                        return kept;
                have = (size_t)kept;
                if (eof && have == 0)
                        return (int64_t)total;
        }
}

/* A file's bytes pushed to the walker (a database copy): they go through rbuf. */
struct feed {
        struct ctx *c;
        struct filejob *job;
        size_t have; /* bytes in c->rbuf */
};

static int feed_bytes(void *userdata, const void *buf, size_t len)
{
        struct feed *f = userdata;
        struct ctx *c = f->c;

        while (len > 0) {
                size_t n = c->rbuf_size - f->have < len ? c->rbuf_size - f->have : len;
                memcpy(c->rbuf + f->have, buf, n);
                f->have += n;
                buf = (const uint8_t *)buf + n;
                len -= n;
                c->prog.read_bytes += n;
                if (f->have == c->rbuf_size) {
                        ssize_t kept = cut_chunks(c, f->job, f->have, false);
                        if (kept < 0)
                                return (int)kept;
                        f->have = (size_t)kept;
                }
        }
        return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
        return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
               a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
               a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static struct filejob *job_new(struct ctx *c, uint64_t size)
{
        struct filejob *job = calloc(1, sizeof(*job));
        uint64_t est = size / c->chunker.p.min + 1;

        if (!job)
                return NULL;
        job->nslots = est < RING ? (size_t)est : RING;
        job->slots = calloc(job->nslots, sizeof(struct slot));
        if (!job->slots) {
                free(job);
                return NULL;
        }
        return job;
}

static int open_source(int dirfd, const char *name)
{
        int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME | O_NONBLOCK);

        if (fd < 0 && errno == EPERM) /* O_NOATIME needs ownership */
                fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        return fd;
}

/*
 * A regular file that could not be read (@err): one that vanished is left
 * out (1), any other is recorded and stored empty, marked UNREADABLE.
 */
static int file_unreadable(struct ctx *c, struct pentry *pe, int err)
{
        int r;

        if (pe->job)
                (void)job_reset(c, pe->job); /* no task may point at it once freed */
        job_free(pe->job);
        pe->job = NULL;
        pe->cacheable = false;
        if (err == ENOENT) {
                r = file_vanished(c, pe);
                return r < 0 ? r : 1;
        }
        r = source_error(c, strerror(err));
        pe->e.flags |= STAMP_EF_UNREADABLE;
        set_size(c, pe, 0);
        if (r < 0)
                return r;
        r = stamp_content_encode_inline(NULL, 0, &pe->content, &pe->e.content_len);
        pe->e.content = pe->content;
        return r;
}

/*
 * Reads @fd as plain bytes, again while the file changes (READ_ATTEMPTS),
 * then marks it. Store errors are returned; source errors are recorded.
 */
static int read_plain(struct ctx *c, int fd, struct pentry *pe, struct stat *st)
{
        struct filejob *job;
        int r;

        job = job_new(c, (uint64_t)st->st_size);
        if (!job)
                return -ENOMEM;
        pe->job = job;
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

        for (int attempt = 1;; attempt++) {
                struct stat before, after;
                int64_t n;

                if (fstat(fd, &before) < 0)
                        return file_unreadable(c, pe, errno);
                n = read_chunks(c, fd, job,
                                (uint64_t)before.st_blocks * 512 < (uint64_t)before.st_size);
                if (n < 0) {
                        /* A failed slot means a store error; a failed read, a source one. */
                        if (job->dispatched > job->consumed) {
                                r = job_consume(c, job, job->dispatched);
                                if (r < 0)
                                        return r;
                        }
                        return file_unreadable(c, pe, (int)-n);
                }
                if (fstat(fd, &after) < 0)
                        return file_unreadable(c, pe, errno);
                *st = after;
                set_size(c, pe, (uint64_t)n);
                if (same_file(&before, &after) && (uint64_t)n == (uint64_t)after.st_size)
                        break;
                if (attempt == READ_ATTEMPTS) {
                        pe->e.flags |= STAMP_EF_CHANGED;
                        pe->cacheable = false;
                        return source_changed(c);
                }
                r = job_reset(c, job);
                if (r < 0)
                        return r;
                if (lseek(fd, 0, SEEK_SET) < 0)
                        return file_unreadable(c, pe, errno);
        }
        fill_stat(c, pe, st);
        pe->cacheable = st->st_mtim.tv_sec < c->racy_after && st->st_ctim.tv_sec < c->racy_after;
        return 0;
}

/* True if database @name has a -wal file with something in it. */
static bool wal_has_content(int dirfd, const char *name)
{
        char wal[NAME_MAX + 8];
        struct stat st;

        if (snprintf(wal, sizeof(wal), "%s-wal", name) >= (int)sizeof(wal))
                return false; /* no such name can exist */
        return fstatat(dirfd, wal, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
               st.st_size > 0;
}

/*
 * Copies database @name through SQLite and chunks the copy into @pe, with
 * @st (taken before the copy) as its metadata. 0 if captured; 1 if it
 * could not be (a warning is recorded, the caller reads the plain bytes);
 * a negative errno for a store problem, the temporary copy included.
 */
static int capture_db(struct ctx *c, int dirfd, const char *name, struct pentry *pe,
                      const struct stat *st)
{
        char proc[64 + NAME_MAX], reason[512], msg[600];
        struct stamp_capture_info info;
        bool wal = wal_has_content(dirfd, name);
        struct feed f = { .c = c };
        ssize_t kept;
        int r;

        f.job = pe->job = job_new(c, (uint64_t)st->st_size);
        if (!pe->job)
                return -ENOMEM;
        /* SQLite opens it by name; through the directory fd it is this directory's file. */
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dirfd, name);
        r = stamp_sqlite_capture(proc, c->tmp_dir, feed_bytes, &f, &info, reason, sizeof(reason));
        if (r == 0) {
                kept = cut_chunks(c, f.job, f.have, true);
                r = kept < 0 ? (int)kept : 0;
        }
        if (r < 0)
                return r; /* the store's: the copy in tmp/ or the chunks' */
        if (r > 0) {
                /* What was passed on so far is not wanted. */
                (void)job_reset(c, pe->job);
                job_free(pe->job);
                pe->job = NULL;
                snprintf(msg, sizeof(msg), "not captured through SQLite (%s); stored as plain bytes",
                         reason);
                r = source_warning(c, msg);
                return r < 0 ? r : 1;
        }
        fill_stat(c, pe, st);
        set_size(c, pe, info.size);
        pe->e.flags |= STAMP_EF_SQLITE;
        pe->sqlite_header = true;
        /* A hit is stored with the file's size, so the copy must have the same. */
        pe->cacheable = !wal && info.size == (uint64_t)st->st_size &&
                        st->st_mtim.tv_sec < c->racy_after && st->st_ctim.tv_sec < c->racy_after;
        return source_sqlite(c);
}

/*
 * Reads a regular file in the walker: a database through SQLite if
 * @capture, anything else (or a database SQLite refused) as plain bytes.
 * Store errors are returned; source errors are recorded and the entry
 * marked (content empty, UNREADABLE); 1 if the file vanished.
 */
static int read_file(struct ctx *c, int dirfd, const char *name, struct pentry *pe,
                     struct stat *st, bool capture)
{
        uint8_t head[STAMP_SQLITE_HEADER_SIZE];
        _cleanup_close_ int fd = -1;
        ssize_t n;
        int r;

        fd = open_source(dirfd, name);
        if (fd < 0)
                return file_unreadable(c, pe, errno);
        n = pread(fd, head, sizeof(head), 0);
        pe->sqlite_header = n > 0 && stamp_capture_is_sqlite(head, (size_t)n);
        if (pe->sqlite_header && capture) {
                /*
                 * Closing any fd of a file drops every POSIX lock this process
                 * holds on it, SQLite's included: ours is closed before SQLite
                 * opens the database, and opened again only after it is done.
                 */
                closep(&fd);
                fd = -1;
                r = capture_db(c, dirfd, name, pe, st);
                if (r <= 0)
                        return r;
                fd = open_source(dirfd, name);
                if (fd < 0)
                        return file_unreadable(c, pe, errno);
        }
        return read_plain(c, fd, pe, st);
}

/* Reads a regular file: a small one by a worker, any other by the walker. */
static int read_regular(struct ctx *c, int dirfd, const char *name, struct pentry *pe,
                        struct stat *st)
{
        struct filejob *job;
        int r;

        if (c->async_small && (uint64_t)st->st_size <= (uint64_t)SMALL_CHUNKS * c->chunker.p.min) {
                job = calloc(1, sizeof(*job));
                if (!job)
                        return -ENOMEM;
                job->small = true;
                job->dirfd = dirfd;
                job->name = pe->name;
                pe->job = job;
                r = dispatch_small(c, job, (size_t)st->st_size);
                if (r < 0)
                        job->done = true; /* never queued: nothing to wait for */
                return r;
        }
        return read_file(c, dirfd, name, pe, st, c->o->sqlite == STAMP_SQLITE_AUTO);
}

/* Collects what a worker made of a small file. Source problems are recorded here. */
static int finish_small(struct ctx *c, struct pentry *pe)
{
        struct filejob *job = pe->job;
        size_t old;
        int r;

        small_wait(c, job);
        if (job->store_error)
                return job->store_error;
        r = path_push(c, pe->name, &old);
        if (r < 0)
                return r;
        if (job->source_errno == ENOENT) {
                r = file_vanished(c, pe);
                path_pop(c, old);
                return r;
        }
        if (job->sqlite_header && !job->source_errno && c->o->sqlite == STAMP_SQLITE_AUTO) {
                /* A database: the walker reads it again, through SQLite. */
                struct stat st = job->st;
                int dirfd = job->dirfd;
                job_free(job);
                pe->job = NULL;
                r = read_file(c, dirfd, pe->name, pe, &st, true);
                path_pop(c, old);
                return r < 0 ? r : 0; /* 1: vanished, pe->drop is set */
        }
        pe->sqlite_header = job->sqlite_header;
        if (job->source_errno) {
                pe->e.flags |= STAMP_EF_UNREADABLE;
                set_size(c, pe, 0);
                job->nrefs = 0;
                r = source_error(c, strerror(job->source_errno));
        } else {
                fill_stat(c, pe, &job->st);
                set_size(c, pe, job->size);
                pe->cacheable = !job->changed && job->st.st_mtim.tv_sec < c->racy_after &&
                                job->st.st_ctim.tv_sec < c->racy_after;
                if (job->changed) {
                        pe->e.flags |= STAMP_EF_CHANGED;
                        r = source_changed(c);
                }
        }
        path_pop(c, old);
        if (r < 0)
                return r;
        r = stamp_content_encode_inline(job->refs, job->nrefs, &pe->content, &pe->e.content_len);
        pe->e.content = pe->content;
        return r;
}

/* ---- hardlinks ---- */

static size_t link_hash(uint64_t dev, uint64_t ino, size_t cap)
{
        uint64_t h = dev * 0x9e3779b97f4a7c15ull ^ ino * 0xc2b2ae3d27d4eb4full;

        return (size_t)(h ^ h >> 31) & (cap - 1);
}

/* Where the link of (@dev, @ino) hangs in its chain, or NULL if there is none. */
static struct link **link_slot(struct ctx *c, uint64_t dev, uint64_t ino)
{
        struct link **p;

        if (c->links_cap == 0)
                return NULL;
        for (p = &c->links[link_hash(dev, ino, c->links_cap)]; *p; p = &(*p)->next)
                if ((*p)->dev == dev && (*p)->ino == ino)
                        return p;
        return NULL;
}

static size_t link_bytes(const struct link *l)
{
        return sizeof(*l) + (l->done ? l->e.content_len + l->e.xattrs_len : 0);
}

static void link_remove(struct ctx *c, struct link *l)
{
        struct link **p = link_slot(c, l->dev, l->ino);

        assert(p && *p == l);
        *p = l->next;
        c->links_bytes -= link_bytes(l);
        c->n_links--;
        free(l->content);
        free(l->xattrs);
        free(l);
}

static int links_grow(struct ctx *c)
{
        size_t cap = c->links_cap ? 2 * c->links_cap : 1024;
        struct link **v = calloc(cap, sizeof(*v));

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < c->links_cap; i++) {
                struct link *l = c->links[i], *next;
                for (; l; l = next) {
                        size_t b = link_hash(l->dev, l->ino, cap);
                        next = l->next;
                        l->next = v[b];
                        v[b] = l;
                }
        }
        free(c->links);
        c->links = v;
        c->links_cap = cap;
        return 0;
}

static void links_free(struct ctx *c)
{
        for (size_t i = 0; i < c->links_cap; i++) {
                struct link *l = c->links[i], *next;
                for (; l; l = next) {
                        next = l->next;
                        free(l->content);
                        free(l->xattrs);
                        free(l);
                }
        }
        free(c->links);
        c->links = NULL;
        c->links_cap = c->n_links = c->links_bytes = 0;
}

/*
 * Keeps the entry of @pe, a first name now finished, for the later names
 * of its file. One that vanished or could not be read is forgotten: the
 * later names are then read themselves, as they are past the budget, and
 * for a database in auto mode (what a capture holds depends on the -wal
 * beside each name).
 */
static int link_publish(struct ctx *c, struct pentry *pe)
{
        struct link *l = pe->link;
        size_t need;

        if (!l)
                return 0;
        pe->link = NULL;
        need = pe->e.content_len + pe->e.xattrs_len;
        if (pe->drop || (pe->e.flags & STAMP_EF_UNREADABLE) ||
            (pe->sqlite_header && c->o->sqlite == STAMP_SQLITE_AUTO) ||
            c->links_bytes + need > LINKS_BUDGET) {
                link_remove(c, l);
                return 0;
        }
        l->content = malloc(pe->e.content_len ? pe->e.content_len : 1);
        l->xattrs = pe->e.xattrs_len ? malloc(pe->e.xattrs_len) : NULL;
        if (!l->content || (pe->e.xattrs_len && !l->xattrs)) {
                link_remove(c, l);
                return -ENOMEM;
        }
        memcpy(l->content, pe->e.content, pe->e.content_len);
        if (pe->e.xattrs_len)
                memcpy(l->xattrs, pe->e.xattrs, pe->e.xattrs_len);
        l->e = pe->e;
        l->e.name = NULL;
        l->e.name_len = 0;
        l->e.content = l->content;
        l->e.xattrs = l->xattrs;
        l->st_size = pe->st_size;
        l->sqlite_header = pe->sqlite_header;
        l->dir = NULL;
        l->done = true;
        c->links_bytes += need;
        return 0;
}

/*
 * Notes entry @idx of @d, in the directory whose path is the first
 * @dir_len bytes of c->path, if it is the first name of a file with
 * several names. Nothing to do for any other entry, or past the budget.
 */
static int link_note(struct ctx *c, struct dirlist *d, size_t idx, size_t dir_len)
{
        struct pentry *pe = &d->v[idx];
        struct link *l;
        size_t b;
        int r;

        if (pe->e.type != STAMP_T_REG || !pe->e.link_id || pe->e.nlink < 2 || pe->linked ||
            pe->drop ||
            (pe->e.flags & STAMP_EF_UNREADABLE) || c->links_bytes + sizeof(*l) > LINKS_BUDGET ||
            link_slot(c, pe->dev, pe->ino))
                return 0;
        if (c->n_links >= c->links_cap / 2) {
                r = links_grow(c);
                if (r < 0)
                        return r;
        }
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->dev = pe->dev;
        l->ino = pe->ino;
        l->left = pe->e.nlink - 1;
        b = link_hash(l->dev, l->ino, c->links_cap);
        l->next = c->links[b];
        c->links[b] = l;
        c->n_links++;
        c->links_bytes += sizeof(*l);
        pe->link = l;
        if (!pe->job) /* taken from the files cache: finished already */
                return link_publish(c, pe);
        l->dir = d;
        l->idx = idx;
        l->dir_len = dir_len;
        return 0;
}

/* Finishes a file whose chunks were dispatched: waits for them, builds its content. */
static int finish_file(struct ctx *c, struct pentry *pe)
{
        struct filejob *job;
        int r;

        if (pe->job->small) {
                /* A database found by a worker comes back with a walker's job, or none. */
                r = finish_small(c, pe);
                if (r < 0)
                        return r;
        }
        job = pe->job;
        if (job && !job->small) {
                r = job_consume(c, job, job->dispatched);
                if (r < 0)
                        return r;
                r = listb_finish(c, &job->lb, &pe->content, &pe->e.content_len);
                if (r < 0)
                        return r;
                pe->e.content = pe->content;
        }
        if (pe->cacheable && !pe->drop) {
                struct cache_row *row;
                if (c->n_rows == c->rows_cap) {
                        size_t cap = c->rows_cap ? 2 * c->rows_cap : 256;
                        struct cache_row *v = realloc(c->rows, cap * sizeof(*v));
                        if (!v)
                                return -ENOMEM;
                        c->rows = v;
                        c->rows_cap = cap;
                }
                row = &c->rows[c->n_rows];
                row->content = malloc(pe->e.content_len);
                row->xattrs = pe->e.xattrs_len ? malloc(pe->e.xattrs_len) : NULL;
                if (!row->content || (pe->e.xattrs_len && !row->xattrs)) {
                        free(row->content);
                        free(row->xattrs);
                        return -ENOMEM;
                }
                memcpy(row->content, pe->content, pe->e.content_len);
                row->len = pe->e.content_len;
                if (pe->e.xattrs_len)
                        memcpy(row->xattrs, pe->e.xattrs, pe->e.xattrs_len);
                row->xattrs_len = pe->e.xattrs_len;
                row->dev = pe->dev;
                row->ino = pe->ino;
                row->size = pe->st_size;
                row->flags = STAMP_FILES_CHECKED | (pe->sqlite_header ? STAMP_FILES_SQLITE : 0) |
                             (pe->e.flags & STAMP_EF_SQLITE ? STAMP_FILES_CAPTURED : 0);
                row->mtime = pe->e.mtime_ns;
                row->ctime = pe->e.ctime_ns;
                c->n_rows++;
        }
        job_free(job);
        pe->job = NULL;
        return link_publish(c, pe);
}

/* Gives @pe, a later name of the file of @l (done), the entry its first name stored. */
static int link_copy(struct ctx *c, struct pentry *pe, struct link *l)
{
        struct stamp_entry e;
        int r = 0;

        pe->content = malloc(l->e.content_len ? l->e.content_len : 1);
        pe->xattrs = l->e.xattrs_len ? malloc(l->e.xattrs_len) : NULL;
        if (!pe->content || (l->e.xattrs_len && !pe->xattrs))
                return -ENOMEM;
        memcpy(pe->content, l->content, l->e.content_len);
        if (l->e.xattrs_len)
                memcpy(pe->xattrs, l->xattrs, l->e.xattrs_len);
        e = l->e;
        e.name = pe->e.name;
        e.name_len = pe->e.name_len;
        e.content = pe->content;
        e.xattrs = pe->xattrs;
        pe->e = e;
        pe->st_size = l->st_size;
        pe->sqlite_header = l->sqlite_header;
        pe->linked = true;
        c->prog.files++;
        c->rec->files++;
        c->rec->logical_bytes += e.size;
        c->prog.bytes += e.size;
        pe->counted = e.size;
        if (e.flags & STAMP_EF_CHANGED)
                r = source_changed(c);
        if (--l->left == 0)
                link_remove(c, l);
        return r;
}

/*
 * Gives @pe, a later name of a file with several names, the entry that
 * its first name stored, now or (first name in flight in this same
 * directory) once the directory's files are finished: see links_resolve().
 * 1 if it will; 0 if the file is to be read.
 */
static int link_take(struct ctx *c, struct pentry *pe)
{
        struct link **p = link_slot(c, pe->dev, pe->ino), *l;
        int r;

        if (!p)
                return 0;
        l = *p;
        if (!l->done && l->dir == c->cur_dir) {
                /* Waiting here would stall the small files queued before it. */
                pe->linked = true;
                pe->await_link = true;
                return 1;
        }
        if (!l->done) {
                /* Finish the first name now, under its own path for what it reports. */
                struct pentry *first = &l->dir->v[l->idx];
                size_t len = c->path_len, dir_len = l->dir_len;
                _cleanup_free_ char *tail = strdup(c->path + dir_len);

                if (!tail)
                        return -ENOMEM;
                path_pop(c, dir_len);
                r = first->job ? finish_file(c, first) : link_publish(c, first);
                memcpy(c->path + dir_len, tail, len - dir_len + 1);
                c->path_len = len;
                if (r < 0)
                        return r;
                p = link_slot(c, pe->dev, pe->ino);
                if (!p || !(*p)->done)
                        return 0; /* not kept: it vanished, could not be read, ... */
                l = *p;
        }
        r = link_copy(c, pe, l);
        return r < 0 ? r : 1;
}

/* Counts encoded xattrs; -EBADMSG if malformed. */
static int xattr_count(const uint8_t *p, size_t len)
{
        const uint8_t *end = p + len;
        const char *n;
        const uint8_t *v;
        size_t nl, vl;
        int count = 0, r;

        while ((r = stamp_xattr_next(&p, end, &n, &nl, &v, &vl)) == 1)
                if (++count > UINT16_MAX)
                        return -EBADMSG;
        return r < 0 ? r : count;
}

/*
 * Whether a files-cache row may stand for file @name now. For a database
 * the row must have been made the way this snapshot reads databases
 * (captured in auto mode, plain bytes in copy mode), and a captured one
 * holds only while the -wal is empty: its commits change the database
 * without changing the database file, and so without changing the key.
 */
static bool cache_usable(struct ctx *c, int dirfd, const char *name, unsigned flags)
{
        if (c->o->sqlite == STAMP_SQLITE_COPY)
                return !(flags & STAMP_FILES_CAPTURED);
        if (!(flags & STAMP_FILES_CHECKED))
                return false;
        if (!(flags & STAMP_FILES_SQLITE))
                return true;
        return (flags & STAMP_FILES_CAPTURED) && !wal_has_content(dirfd, name);
}

/* Tries the files cache. 1 on a hit (content and xattrs set), 0 on a miss. */
static int cache_lookup(struct ctx *c, int dirfd, const char *name, struct pentry *pe,
                        const struct stat *st)
{
        struct stamp_content parsed;
        struct stamp_files_row row;
        int r, n = 0;

        r = stamp_index_files_get(c->ix, st->st_dev, st->st_ino, (uint64_t)st->st_size,
                                  ts_ns(st->st_mtim), ts_ns(st->st_ctim), &row);
        if (r <= 0)
                return r;
        if (!cache_usable(c, dirfd, name, row.flags) ||
            stamp_content_parse(row.content, row.content_len, &parsed) < 0 ||
            (row.xattrs && (n = xattr_count(row.xattrs, row.xattrs_len)) < 0)) {
                free(row.content); /* a bad row is a miss */
                free(row.xattrs);
                return 0;
        }
        pe->content = row.content;
        pe->e.content = row.content;
        pe->e.content_len = row.content_len;
        pe->xattrs = row.xattrs;
        pe->e.xattrs = row.xattrs;
        pe->e.xattrs_len = row.xattrs_len;
        pe->e.xattr_count = (uint16_t)n;
        pe->e.size = (uint64_t)st->st_size;
        pe->sqlite_header = row.flags & STAMP_FILES_SQLITE;
        if (row.flags & STAMP_FILES_CAPTURED) {
                pe->e.flags |= STAMP_EF_SQLITE;
                r = source_sqlite(c);
                if (r < 0)
                        return r;
        }
        return 1;
}

static void pentry_release(struct pentry *pe)
{
        free(pe->name);
        free(pe->target);
        free(pe->xattrs);
        free(pe->content);
        job_free(pe->job);
}

/*
 * Waits until no worker uses the jobs of @d any more, so that they can be
 * freed (needed when a directory is abandoned on an error).
 */
static void dirlist_drain(struct ctx *c, struct dirlist *d, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (d->v[i].job)
                        (void)job_reset(c, d->v[i].job);
}

static void dirlist_release(struct ctx *c, struct dirlist *d)
{
        for (size_t i = 0; i < d->n; i++) {
                if (d->v[i].link) /* never finished: later names read the file */
                        link_remove(c, d->v[i].link);
                pentry_release(&d->v[i]);
        }
        free(d->v);
}

static int walk_dir(struct ctx *c, int fd, int depth, struct stamp_id *ret);

/* Reads one entry of directory @dirfd into @pe. 0, or 1 to skip it. */
static int read_entry(struct ctx *c, int dirfd, const char *name, struct pentry *pe, int depth)
{
        char proc[64 + NAME_MAX];
        struct stat st;
        int r;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT) {
                        r = source_error(c, "vanished during the snapshot");
                        return r < 0 ? r : 1;
                }
                r = source_error(c, strerror(errno));
                return r < 0 ? r : 1;
        }
        if (excluded(c, name))
                return 1;
        if (S_ISDIR(st.st_mode) && st.st_dev == c->store_dev && st.st_ino == c->store_ino)
                return 1; /* never snapshot the store into itself */
        pe->name = strdup(name);
        if (!pe->name)
                return -ENOMEM;
        pe->e.name = pe->name;
        pe->e.name_len = strlen(name);
        fill_stat(c, pe, &st);
        if (!ts_in_range(st.st_mtim)) {
                r = source_warning(c, "modification time outside 1677-2262, which the format "
                                      "holds: stored as the nearest one it can");
                if (r < 0)
                        return r;
        }
        if (pe->e.type == 0)
                return 1;
        if (pe->e.type == STAMP_T_REG && pe->e.link_id) {
                r = link_take(c, pe);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        if (pe->e.type == STAMP_T_REG) {
                r = cache_lookup(c, dirfd, name, pe, &st);
                if (r < 0)
                        return r;
                if (r > 0) {
                        c->prog.files++;
                        c->rec->files++;
                        c->rec->logical_bytes += (uint64_t)st.st_size;
                        pe->counted = (uint64_t)st.st_size;
                        c->prog.bytes += (uint64_t)st.st_size;
                        return 0;
                }
        }
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dirfd, name);
        r = read_xattrs(proc, pe);
        if (r == -ENOMEM)
                return r;
        if (r < 0 && r != -ENOENT) {
                errno = -r;
                r = source_error(c, "cannot read extended attributes");
                if (r < 0)
                        return r;
        } else if (r > 0) {
                char why[128];
                snprintf(why, sizeof(why), "%d extended attributes not stored (a name over "
                         "255 bytes, or a value that could not be read)", r);
                r = source_error(c, why);
                if (r < 0)
                        return r;
        }

        switch (pe->e.type) {
        case STAMP_T_REG:
                c->prog.files++;
                c->rec->files++;
                c->rec->logical_bytes += (uint64_t)st.st_size;
                pe->counted = (uint64_t)st.st_size;
                c->prog.bytes += (uint64_t)st.st_size;
                return read_regular(c, dirfd, name, pe, &st);
        case STAMP_T_DIR: {
                _cleanup_close_ int sub = -1;
                c->prog.dirs++;
                c->rec->dirs++;
                if (c->o->one_file_system && st.st_dev != c->root_dev)
                        return walk_dir(c, -1, depth + 1, &pe->e.subtree);
                sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0 && errno == ENOENT) {
                        c->rec->dirs--;
                        r = source_error(c, "vanished during the snapshot");
                        return r < 0 ? r : 1;
                }
                if (sub < 0) {
                        r = source_error(c, strerror(errno));
                        if (r < 0)
                                return r;
                        pe->e.flags |= STAMP_EF_UNREADABLE; /* stored empty */
                }
                return walk_dir(c, sub, depth + 1, &pe->e.subtree);
        }
        case STAMP_T_LNK: {
                char buf[STAMP_TARGET_MAX + 1];
                ssize_t n = readlinkat(dirfd, name, buf, sizeof(buf));
                c->rec->symlinks++;
                if (n <= 0 || n > STAMP_TARGET_MAX) {
                        c->rec->symlinks--;
                        r = source_error(c, n >= 0           ? "symlink target too long"
                                            : errno == ENOENT ? "vanished during the snapshot"
                                                              : strerror(errno));
                        return r < 0 ? r : 1;
                }
                pe->target = malloc((size_t)n);
                if (!pe->target)
                        return -ENOMEM;
                memcpy(pe->target, buf, (size_t)n);
                pe->e.target = pe->target;
                pe->e.target_len = (size_t)n;
                pe->e.size = (uint64_t)n;
                return 0;
        }
        default:
                c->rec->specials++;
                return 0;
        }
}

/*
 * Adds the names of encoded xattrs @x to the record's xattr_names (sorted,
 * no duplicates). Past STAMP_RECORD_XATTR_NAMES_MAX names the list is
 * dropped and the record lists none (unknown, like an older record).
 */
static int note_xattr_names(struct stamp_record *rec, const uint8_t *x, size_t len)
{
        const uint8_t *p = x, *end = x + len, *value;
        const char *name;
        size_t nl, vl;
        int r = 0;

        while (rec->xattr_names_known && p &&
               (r = stamp_xattr_next(&p, end, &name, &nl, &value, &vl)) == 1) {
                r = stamp_strv_add_sorted(&rec->xattr_names, name, nl);
                if (r < 0)
                        return r;
                if (rec->xattr_names.n > STAMP_RECORD_XATTR_NAMES_MAX) {
                        stamp_strv_release(&rec->xattr_names);
                        rec->xattr_names_known = false;
                }
        }
        return r < 0 ? r : 0;
}

/* Writes the tree of a finished directory. */
static int put_tree(struct ctx *c, struct dirlist *d, struct stamp_id *ret)
{
        struct stamp_tree_builder *b = stamp_tree_builder_new();
        _cleanup_free_ uint8_t *obj = NULL;
        size_t len;
        int r = 0;

        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < d->n && r == 0; i++)
                if (!d->v[i].drop) {
                        r = stamp_tree_builder_add(b, &d->v[i].e);
                        if (r == 0 && d->v[i].e.xattrs_len)
                                r = note_xattr_names(c->rec, d->v[i].e.xattrs,
                                                     d->v[i].e.xattrs_len);
                }
        if (r == 0)
                r = stamp_tree_builder_encode(b, &obj, &len);
        stamp_tree_builder_free(b);
        if (r < 0)
                return r;
        return stamp_writer_put(c->w, c->z, STAMP_OBJ_TREE, obj, len, ret);
}

/* Appends @pe to @d, taking over what it owns. */
static int dirlist_push(struct dirlist *d, struct pentry *pe)
{
        if (d->n == d->cap) {
                size_t cap = d->cap ? 2 * d->cap : 4;
                struct pentry *v = realloc(d->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                d->v = v;
                d->cap = cap;
        }
        d->v[d->n++] = *pe;
        memset(pe, 0, sizeof(*pe));
        return 0;
}

/* Reads entry @name of the directory open at @fd into @d, which has room for it. */
static int walk_entry(struct ctx *c, int fd, const char *name, struct dirlist *d, int depth)
{
        struct pentry *pe = &d->v[d->n];
        size_t old;
        int r;

        assert(d->n < d->cap);
        r = path_push(c, name, &old);
        if (r < 0)
                return r;
        c->cur_dir = d;
        r = read_entry(c, fd, name, pe, depth);
        c->cur_dir = NULL;
        if (r == 0) {
                d->n++;
                r = link_note(c, d, d->n - 1, old);
        } else {
                if (pe->job) /* skipped or failed: no worker may keep it */
                        (void)job_reset(c, pe->job);
                pentry_release(pe);
                memset(pe, 0, sizeof(*pe));
        }
        progress(c);
        path_pop(c, old);
        return r;
}

/*
 * Reads again, as any file, entry @pe of the directory open at @fd: a
 * later name whose first name was not kept. Left out if it vanished.
 */
static int read_again(struct ctx *c, int fd, struct pentry *pe, int depth)
{
        _cleanup_free_ char *name = strdup(pe->name);
        bool async = c->async_small;
        int r;

        if (!name)
                return -ENOMEM;
        pentry_release(pe);
        memset(pe, 0, sizeof(*pe));
        c->async_small = false; /* finished right here */
        r = read_entry(c, fd, name, pe, depth);
        c->async_small = async;
        if (r == 0 && pe->job)
                r = finish_file(c, pe);
        if (r == 1) { /* vanished: kept, named, but left out */
                free(pe->name);
                pe->name = TAKE_PTR(name);
                pe->e.name = pe->name;
                pe->e.name_len = strlen(pe->name);
                pe->drop = true;
                r = 0;
        }
        return r;
}

/*
 * Fills in the later names of @d (from @from) held back for a first name
 * in the same directory: its files are finished, so it is kept or not.
 */
static int links_resolve(struct ctx *c, int fd, struct dirlist *d, size_t from, int depth)
{
        for (size_t i = from; i < d->n; i++) {
                struct pentry *pe = &d->v[i];
                struct link **p;
                size_t old;
                int r;

                if (!pe->await_link)
                        continue;
                pe->await_link = false;
                r = path_push(c, pe->name, &old);
                if (r < 0)
                        return r;
                p = link_slot(c, pe->dev, pe->ino);
                if (p && (*p)->done)
                        r = link_copy(c, pe, *p);
                else
                        r = read_again(c, fd, pe, depth);
                path_pop(c, old);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int finish_files(struct ctx *c, struct dirlist *d, size_t from)
{
        int r = 0;

        for (size_t i = from; i < d->n && r >= 0; i++)
                if (d->v[i].job)
                        r = finish_file(c, &d->v[i]);
        return r;
}

/* The length of @name without a -wal, -shm or -journal suffix, or 0 if it has none. */
static size_t sidecar_base(const char *name)
{
        static const char *const suffixes[] = { "-wal", "-shm", "-journal" };
        size_t len = strlen(name);

        for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
                size_t sl = strlen(suffixes[i]);
                if (len > sl && strcmp(name + len - sl, suffixes[i]) == 0)
                        return len - sl;
        }
        return 0;
}

/* strcmp() of the first @len bytes of @key, taken as a whole name, with @name. */
static int cmp_prefix(const char *key, size_t len, const char *name)
{
        int d = strncmp(key, name, len);

        if (d != 0)
                return d;
        return name[len] ? -1 : 0;
}

/* Binary search of a name in sorted @names. */
static bool names_have(char *const *names, size_t n, const char *key, size_t len)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int d = cmp_prefix(key, len, names[mid]);
                if (d == 0)
                        return true;
                if (d < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return false;
}

/* Binary search of a name in the first @n entries of @d (added in name order). */
static struct pentry *entries_find(struct dirlist *d, size_t n, const char *key, size_t len)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int r = cmp_prefix(key, len, d->v[mid].name);
                if (r == 0)
                        return &d->v[mid];
                if (r < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return NULL;
}

/*
 * Reads the held-back -wal, -shm and -journal files (@later indexes
 * @names) once their databases are finished: those of a database captured
 * through SQLite are left out, the others are read like any file.
 */
static int walk_sidecars(struct ctx *c, int fd, struct dirlist *d, char *const *names,
                         const size_t *later, size_t n_later, int depth)
{
        size_t n0 = d->n;
        bool async = c->async_small;
        int r = 0;

        c->async_small = false; /* read here, then finished below */
        for (size_t k = 0; k < n_later && r >= 0; k++) {
                const char *name = names[later[k]];
                struct pentry *db = entries_find(d, n0, name, sidecar_base(name));
                if (db && !db->drop && (db->e.flags & STAMP_EF_SQLITE))
                        continue;
                r = walk_entry(c, fd, name, d, depth);
        }
        c->async_small = async;
        if (r >= 0)
                r = finish_files(c, d, n0);
        if (r >= 0)
                r = links_resolve(c, fd, d, n0, depth);
        return r;
}

/* The entry for @rest ("dir/.../file"): the stream's file, or a new directory on its way. */
static int stream_entry(struct ctx *c, const char *rest, struct pentry *ret)
{
        const char *slash = strchr(rest, '/');
        struct pentry child = { 0 };
        struct dirlist sub = { .v = &child, .n = 1, .cap = 1 };
        int r;

        if (!slash) {
                *ret = c->stream;
                memset(&c->stream, 0, sizeof(c->stream));
                c->stream_pending = false;
                return 0;
        }
        r = stream_entry(c, slash + 1, &child);
        if (r == 0)
                r = put_tree(c, &sub, &ret->e.subtree);
        pentry_release(&child);
        if (r < 0)
                return r;
        ret->name = strndup(rest, (size_t)(slash - rest));
        if (!ret->name)
                return -ENOMEM;
        ret->e.name = ret->name;
        ret->e.name_len = (size_t)(slash - rest);
        ret->e.type = STAMP_T_DIR;
        ret->e.mode = S_IFDIR | 0700;
        ret->e.uid = geteuid();
        ret->e.gid = getegid();
        ret->e.nlink = 2;
        ret->e.mtime_ns = ret->e.ctime_ns = c->stream_time_ns;
        c->rec->dirs++;
        return 0;
}

/*
 * Puts the --stdin-from file into directory @d (the one at c->path) if its
 * path leads here and no directory of the sources below placed it: the
 * file itself, or the first of the directories made on the way to it.
 */
static int place_stream(struct ctx *c, struct dirlist *d)
{
        struct pentry pe = { 0 };
        const char *rest;
        size_t len;
        int r;

        if (!c->stream_pending)
                return 0;
        rest = c->o->stream->path;
        if (c->path_len > 0) {
                if (strncmp(rest, c->path, c->path_len) != 0 || rest[c->path_len] != '/')
                        return 0;
                rest += c->path_len + 1;
        }
        len = strcspn(rest, "/");
        for (size_t i = 0; i < d->n; i++) {
                struct pentry *e = &d->v[i];
                if (e->drop || e->e.name_len != len || memcmp(e->name, rest, len) != 0)
                        continue;
                /* It appeared after stamp_snapshot_create() checked. */
                c->stream_conflict = true;
                return rest[len] && e->e.type != STAMP_T_DIR ? -ENOTDIR : -EEXIST;
        }
        r = stream_entry(c, rest, &pe);
        if (r == 0)
                r = dirlist_push(d, &pe);
        pentry_release(&pe);
        return r;
}

/*
 * Snapshots the directory open at @fd (or an empty one for fd < 0) and
 * returns its tree id. Source errors are recorded; store errors returned.
 */
static int walk_dir(struct ctx *c, int fd, int depth, struct stamp_id *ret)
{
        struct dirlist d = { 0 };
        char **names = NULL;
        size_t n_names = 0, n_later = 0;
        _cleanup_free_ size_t *later = NULL;
        int r = 0;

        if (depth > DEPTH_MAX) {
                r = source_error(c, "directory tree too deep; stored empty");
                fd = -1;
        }
        if (fd >= 0) {
                int k = stamp_list_dir_names(fd, &names, &n_names);
                if (k < 0)
                        r = source_error(c, strerror(-k));
        }
        if (r == 0 && n_names > 0) {
                d.v = calloc(n_names, sizeof(struct pentry));
                later = calloc(n_names, sizeof(size_t));
                d.cap = n_names;
                if (!d.v || !later)
                        r = -ENOMEM;
        }
        for (size_t i = 0; i < n_names && r >= 0; i++) {
                size_t base = c->o->sqlite == STAMP_SQLITE_AUTO ? sidecar_base(names[i]) : 0;
                if (base && names_have(names, n_names, names[i], base)) {
                        later[n_later++] = i; /* after its database */
                        continue;
                }
                r = walk_entry(c, fd, names[i], &d, depth);
        }
        if (r >= 0)
                r = finish_files(c, &d, 0);
        if (r >= 0)
                r = links_resolve(c, fd, &d, 0, depth);
        if (r >= 0)
                r = walk_sidecars(c, fd, &d, names, later, n_later, depth);
        if (r >= 0)
                r = place_stream(c, &d);
        stamp_free_dir_names(names, n_names);
        if (r >= 0)
                r = put_tree(c, &d, ret);
        else
                dirlist_drain(c, &d, d.n);
        dirlist_release(c, &d);
        return r < 0 ? r : 0;
}

/* ---- sources and the record ---- */

static const char *base_name(const char *path)
{
        size_t len = strlen(path);
        const char *p;

        while (len > 1 && path[len - 1] == '/')
                len--;
        for (p = path + len; p > path && p[-1] != '/'; p--)
                ;
        return p;
}

static int check_sources(const struct stamp_snapshot_options *o, const char **ret_bad)
{
        for (size_t i = 0; i < o->n_sources; i++) {
                struct stat st;
                if (lstat(o->sources[i], &st) < 0) {
                        *ret_bad = o->sources[i];
                        return negerrno();
                }
                if (o->n_sources == 1)
                        continue;
                {
                        /* With several sources each is stored under its name: "/" has none. */
                        const char *a = base_name(o->sources[i]);
                        if (!stamp_name_valid(a, strcspn(a, "/"))) {
                                *ret_bad = o->sources[i];
                                return -EDOM;
                        }
                }
                for (size_t j = 0; j < i; j++) {
                        const char *a = base_name(o->sources[i]), *b = base_name(o->sources[j]);
                        size_t al = strcspn(a, "/"), bl = strcspn(b, "/");
                        if (al == bl && memcmp(a, b, al) == 0) {
                                *ret_bad = o->sources[i];
                                return -EEXIST;
                        }
                }
        }
        return 0;
}

/* A stream path: relative, its components valid names. */
static bool stream_path_valid(const char *p)
{
        size_t len = strlen(p);

        if (len == 0 || len >= PATH_MAX || p[0] == '/')
                return false;
        for (const char *q = p; *q;) {
                size_t n = strcspn(q, "/");
                if (!stamp_name_valid(q, n))
                        return false;
                q += n;
                if (*q == '/' && !*++q)
                        return false; /* a trailing slash: an empty last component */
        }
        return true;
}

/*
 * Where the stream's path already is in the sources: -EEXIST if it exists,
 * -ENOTDIR if something on its way is not a directory, 0 if it is free.
 * @dir is the source directory the path is relative to, @rel the rest.
 */
static int stream_path_free(const char *dir, const char *rel)
{
        char path[PATH_MAX];
        struct stat st;
        size_t len;

        if (snprintf(path, sizeof(path), "%s/%s", dir, rel) >= (int)sizeof(path))
                return -ENAMETOOLONG;
        len = strlen(dir) + 1;
        for (;;) {
                size_t n = strcspn(path + len, "/");
                bool last = path[len + n] == 0;
                path[len + n] = 0;
                if (lstat(path, &st) < 0)
                        return errno == ENOENT ? 0 : negerrno();
                if (last)
                        return -EEXIST;
                if (!S_ISDIR(st.st_mode))
                        return -ENOTDIR;
                path[len + n] = '/';
                len += n + 1;
        }
}

/* Checks the stream's path against the sources, as snapshot_sources() maps them. */
static int check_stream(const struct stamp_snapshot_options *o, const char **ret_bad)
{
        const char *p = o->stream->path;
        struct stat st;
        size_t first = strcspn(p, "/");
        int r = 0;

        if (!stream_path_valid(p) || !o->stream->open || !o->stream->close)
                r = -EINVAL;
        else if (o->n_sources == 1 && stat(o->sources[0], &st) == 0 && S_ISDIR(st.st_mode))
                r = stream_path_free(o->sources[0], p);
        else
                for (size_t i = 0; i < o->n_sources && r == 0; i++) {
                        const char *b = base_name(o->sources[i]);
                        if (strcspn(b, "/") != first || memcmp(b, p, first) != 0)
                                continue;
                        if (!p[first])
                                r = -EEXIST;
                        else if (stat(o->sources[i], &st) < 0 || !S_ISDIR(st.st_mode))
                                r = -ENOTDIR;
                        else
                                r = stream_path_free(o->sources[i], p + first + 1);
                }
        if (r < 0)
                *ret_bad = p;
        return r;
}

/*
 * Reads the --stdin-from command's output to its end into c->stream, which
 * the walk then places. Fails if the command fails.
 */
static int read_stream(struct ctx *c)
{
        const struct stamp_snapshot_stream *s = c->o->stream;
        const char *base = strrchr(s->path, '/');
        struct pentry *pe = &c->stream;
        struct timespec now;
        int64_t n;
        int fd, r;

        pe->name = strdup(base ? base + 1 : s->path);
        pe->job = job_new(c, UINT64_MAX);
        if (!pe->name || !pe->job)
                return -ENOMEM;
        fd = s->open(s->userdata);
        if (fd < 0)
                return fd;
        n = read_chunks(c, fd, pe->job, false);
        (void)close(fd);
        r = s->close(s->userdata);
        if (n < 0)
                return (int)n; /* in-flight chunks are drained by pool_stop() */
        if (r < 0)
                return r;
        r = job_consume(c, pe->job, pe->job->dispatched);
        if (r == 0)
                r = listb_finish(c, &pe->job->lb, &pe->content, &pe->e.content_len);
        if (r < 0)
                return r;
        job_free(TAKE_PTR(pe->job));
        clock_gettime(CLOCK_REALTIME, &now);
        c->stream_time_ns = ts_ns(now);
        pe->e.name = pe->name;
        pe->e.name_len = strlen(pe->name);
        pe->e.content = pe->content;
        pe->e.type = STAMP_T_REG;
        pe->e.mode = S_IFREG | 0600;
        pe->e.uid = geteuid();
        pe->e.gid = getegid();
        pe->e.nlink = 1;
        pe->e.mtime_ns = pe->e.ctime_ns = c->stream_time_ns;
        pe->e.size = (uint64_t)n;
        c->rec->files++;
        c->rec->logical_bytes += (uint64_t)n;
        c->rec->stdin_bytes = (uint64_t)n;
        c->rec->stdin_path = strdup(s->path);
        c->rec->stdin_command = strdup(s->command ? s->command : "");
        if (!c->rec->stdin_path || !c->rec->stdin_command)
                return -ENOMEM;
        c->stream_pending = true;
        return 0;
}

static int snapshot_sources(struct ctx *c, struct stamp_id *ret_root)
{
        const struct stamp_snapshot_options *o = c->o;
        struct dirlist d = { 0 };
        struct stat st;
        int r = 0;

        if (o->stream) {
                r = read_stream(c);
                if (r < 0)
                        return r;
        }

        if (o->n_sources == 1 && stat(o->sources[0], &st) == 0 && S_ISDIR(st.st_mode)) {
                _cleanup_close_ int fd = open(o->sources[0],
                                              O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        return negerrno();
                c->root_dev = st.st_dev;
                c->rec->root_mode = st.st_mode;
                c->rec->root_uid = st.st_uid;
                c->rec->root_gid = st.st_gid;
                c->rec->root_mtime_ns = ts_ns(st.st_mtim);
                c->rec->dirs++;
                {
                        struct pentry root = { 0 };
                        char proc[64];
                        /* "/." : the directory itself, not the fd's magic link */
                        snprintf(proc, sizeof(proc), "/proc/self/fd/%d/.", fd);
                        if (read_xattrs(proc, &root) >= 0 && root.xattrs) {
                                c->rec->root_xattrs = TAKE_PTR(root.xattrs);
                                c->rec->root_xattrs_len = root.e.xattrs_len;
                                r = note_xattr_names(c->rec, c->rec->root_xattrs,
                                                     c->rec->root_xattrs_len);
                                if (r < 0) {
                                        pentry_release(&root);
                                        return r;
                                }
                        }
                        pentry_release(&root);
                }
                return walk_dir(c, fd, 0, ret_root);
        }

        /* Several sources (or a file): a synthesized root with one entry each.
         * Their parents' fds are closed as we go, so top-level files are read here. */
        c->rec->root_mode = S_IFDIR | 0755;
        c->rec->root_mtime_ns = (int64_t)time(NULL) * 1000000000;
        d.v = calloc(o->n_sources, sizeof(struct pentry));
        if (!d.v)
                return -ENOMEM;
        d.cap = o->n_sources;
        for (size_t i = 0; i < o->n_sources && r >= 0; i++) {
                _cleanup_free_ char *copy = strdup(o->sources[i]);
                _cleanup_close_ int parent = -1;
                char *slash, *name;
                size_t old;

                if (!copy) {
                        r = -ENOMEM;
                        break;
                }
                while (strlen(copy) > 1 && copy[strlen(copy) - 1] == '/')
                        copy[strlen(copy) - 1] = 0;
                slash = strrchr(copy, '/');
                if (slash == copy) {
                        parent = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        name = copy + 1;
                } else if (slash) {
                        *slash = 0;
                        parent = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        name = slash + 1;
                } else {
                        parent = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        name = copy;
                }
                if (parent < 0) {
                        r = negerrno();
                        break;
                }
                if (!stamp_name_valid(name, strlen(name))) {
                        r = -EINVAL;
                        break;
                }
                if (lstat(o->sources[i], &st) == 0)
                        c->root_dev = st.st_dev;
                r = path_push(c, name, &old);
                if (r < 0)
                        break;
                c->async_small = false;
                r = read_entry(c, parent, name, &d.v[d.n], 0);
                c->async_small = true;
                if (r == 0) {
                        d.n++;
                        r = link_note(c, &d, d.n - 1, old);
                } else {
                        if (d.v[d.n].job) /* skipped or failed: no worker may keep it */
                                (void)job_reset(c, d.v[d.n].job);
                        pentry_release(&d.v[d.n]);
                        memset(&d.v[d.n], 0, sizeof(d.v[d.n]));
                }
                path_pop(c, old);
        }
        if (r >= 0)
                r = finish_files(c, &d, 0);
        if (r >= 0)
                r = place_stream(c, &d);
        if (r >= 0)
                r = put_tree(c, &d, ret_root);
        else
                dirlist_drain(c, &d, d.n);
        dirlist_release(c, &d);
        return r < 0 ? r : 0;
}

static int write_cache_rows(struct ctx *c)
{
        int r;

        if (c->n_rows == 0)
                return 0;
        r = stamp_index_begin(c->ix);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_rows && r == 0; i++) {
                struct cache_row *row = &c->rows[i];
                r = stamp_index_files_put(c->ix, row->dev, row->ino, row->size, row->mtime,
                                          row->ctime, row->content, row->len, row->xattrs,
                                          row->xattrs_len, row->flags);
        }
        if (r < 0) {
                stamp_index_rollback(c->ix);
                return r;
        }
        return stamp_index_commit(c->ix);
}

/*
 * Picks a stamp for now that this store never used (not even for a
 * snapshot it forgot), waiting for the next second if it is taken.
 */
static int pick_stamp(struct stamp_store *s, char ret[STAMP_STAMP_LEN + 1])
{
        for (int tries = 0; tries < 120; tries++) {
                char stamp[STAMP_STAMP_LEN + 1];
                int r;

                stamp_stamp_from_time(time(NULL), stamp);
                r = stamp_store_stamp_used(s, stamp);
                if (r == 0) {
                        strcpy(ret, stamp);
                        return 0;
                }
                if (r < 0)
                        return r;
                usleep(100 * 1000);
        }
        return -EBUSY;
}

static int fill_record(struct ctx *c, const struct stamp_snapshot_options *o)
{
        struct stamp_record *rec = c->rec;
        const struct stamp_config *cfg = stamp_store_config(c->s);
        char host[256] = "";
        int r = 0;

        rec->version = STAMP_RECORD_VERSION;
        rec->xattr_names_known = true; /* until note_xattr_names() meets too many */
        (void)gethostname(host, sizeof(host) - 1);
        rec->host = strdup(host);
        rec->tool_version = strdup(o->tool_version ? o->tool_version : "unknown");
        if (!rec->host || !rec->tool_version)
                return -ENOMEM;
        for (size_t i = 0; i < o->n_sources && r == 0; i++) {
                char *abs = realpath(o->sources[i], NULL);
                r = stamp_strv_push(&rec->sources, abs ? abs : o->sources[i]);
                free(abs);
        }
        for (size_t i = 0; i < o->n_tags && r == 0; i++)
                r = stamp_strv_push(&rec->tags, o->tags[i]);
        for (size_t i = 0; i < o->n_excludes && r == 0; i++)
                r = stamp_strv_push(&rec->excludes, o->excludes[i]);
        rec->one_file_system = o->one_file_system;
        strcpy(rec->sqlite_mode, o->sqlite == STAMP_SQLITE_COPY ? "copy" : "auto");
        rec->chunker = cfg->chunker;
        rec->zstd_level = cfg->zstd_level;
        return r;
}

static void raise_fd_limit(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
}

static void ctx_release(struct ctx *c)
{
        pool_stop(c); /* no worker uses a job after this */
        pentry_release(&c->stream);
        free(c->tmp_dir);
        stamp_writer_free(c->w);
        stamp_zctx_free(c->z);
        for (size_t i = 0; i < c->n_rows; i++) {
                free(c->rows[i].content);
                free(c->rows[i].xattrs);
        }
        free(c->rows);
        links_free(c);
        free(c->rbuf);
        free(c->path);
}

int stamp_snapshot_create(struct stamp_store *s, const struct stamp_snapshot_options *o,
                          struct stamp_record *ret, const char **ret_bad)
{
        struct stamp_record rec = { 0 };
        struct ctx c = { .s = s, .o = o, .rec = &rec };
        struct stamp_writer_stats ws;
        struct timespec t0, t1, wall;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        int r;

        if (o->n_sources == 0)
                return -EINVAL;
        r = check_sources(o, ret_bad);
        if (r < 0)
                return r;
        if (o->stream) {
                r = check_stream(o, ret_bad);
                if (r < 0)
                        return r;
        }
        raise_fd_limit();
        stamp_store_dev_ino(s, &c.store_dev, &c.store_ino);
        stamp_chunker_init(&c.chunker, &stamp_store_config(s)->chunker, stamp_store_hasher(s));
        c.async_small = true;
        c.rbuf_size = 8u << 20;
        if (c.rbuf_size < 2 * (size_t)c.chunker.p.max)
                c.rbuf_size = 2 * (size_t)c.chunker.p.max;
        c.rbuf = malloc(c.rbuf_size);
        c.z = stamp_zctx_new(stamp_store_config(s)->zstd_level);
        if (asprintf(&c.tmp_dir, "%s/tmp", stamp_store_path(s)) < 0)
                c.tmp_dir = NULL;
        if (!c.rbuf || !c.z || !c.tmp_dir) {
                r = -ENOMEM;
                goto out;
        }
        r = stamp_store_index(s, &c.ix);
        if (r < 0)
                goto out;
        r = pick_stamp(s, rec.stamp);
        if (r < 0)
                goto out;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_REALTIME, &wall);
        c.racy_after = wall.tv_sec - 2;
        stamp_iso8601(wall.tv_sec, wall.tv_nsec, rec.created);
        r = fill_record(&c, o);
        if (r < 0)
                goto out;
        r = stamp_writer_new(s, &c.w);
        if (r < 0)
                goto out;
        /* More workers than CPUs: small-file reads wait on the disk when cold. */
        r = pool_start(&c, o->threads ? o->threads
                                      : (unsigned)(ncpu > 2 ? (ncpu > 8 ? 16 : 2 * ncpu) : 4));
        if (r < 0)
                goto out;

        r = snapshot_sources(&c, &rec.root);
        if (r == 0 && c.stream_pending)
                r = -ENOTDIR; /* every directory on its way places it: not reached */
        if (r < 0) {
                if (o->stream && (c.stream_conflict || c.stream_pending))
                        *ret_bad = o->stream->path;
                goto out;
        }
        r = stamp_writer_flush(c.w);
        if (r < 0)
                goto out;
        stamp_writer_stats(c.w, &ws);
        rec.new_objects = ws.new_objects;
        rec.new_chunks = ws.new_chunks;
        rec.new_bytes = ws.new_bytes;
        rec.stored_new_bytes = ws.stored_bytes;
        if (o->no_validate) {
                strcpy(rec.validation, "skipped");
        } else {
                struct stamp_check_options co = { .flags = STAMP_CHECK_READ_DATA,
                                                  .problem = o->problem,
                                                  .userdata = o->userdata };
                struct stamp_check_stats cs;
                struct timespec v0, v1;
                clock_gettime(CLOCK_MONOTONIC, &v0);
                r = stamp_check_packs(s, stamp_writer_packs(c.w), &co, &cs);
                if (r < 0)
                        goto out;
                if (cs.problems) {
                        r = -EBADMSG;
                        goto out;
                }
                clock_gettime(CLOCK_MONOTONIC, &v1);
                strcpy(rec.validation, "ok");
                rec.validated_objects = cs.objects;
                rec.validated_bytes = cs.bytes_read;
                rec.validation_s = (double)(v1.tv_sec - v0.tv_sec) +
                                   (double)(v1.tv_nsec - v0.tv_nsec) / 1e9;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        rec.duration_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (o->before_commit) {
                r = o->before_commit(&rec, o->userdata);
                if (r < 0)
                        goto out;
        }
        /* The commit point: everything it names is durable and indexed. */
        r = stamp_store_record_write(s, &rec);
        if (r < 0)
                goto out;
        /* Only now may the files cache point at the new chunks. */
        (void)write_cache_rows(&c);
        (void)stamp_index_checkpoint(c.ix); /* keep index.db-wal from growing */
        *ret = rec;
        memset(&rec, 0, sizeof(rec));
out:
        ctx_release(&c);
        stamp_record_release(&rec);
        return r;
}
