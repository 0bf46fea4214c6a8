/* SPDX-License-Identifier: MIT */

#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "chunker.h"
#include "compress.h"
#include "gc.h"
#include "macro.h"
#include "owner.h"
#include "pack.h"
#include "store-internal.h"
#include "tmpfile.h"

#define CONFIG_NAME "config"
#define INDEX_NAME "index.db"
#define LOCK_NAME "lock"
#define GC_LOCK_NAME "gc.lock"
/* Stored objects up to this size are read into the thread's reused buffer. */
#define SCRATCH_MAX (1u << 20)
/* Entries of each table of stamp_store_zero_chunk() and stamp_store_zero_list(). */
#define ZERO_MEMO 16

/* What says that index.db changed under a reader (reopen_if_replaced()). */
struct index_state {
        uint64_t dev, ino; /* 0, 0: no index.db */
        int64_t mtime_ns, size;
        bool wal; /* an index.db-wal with frames */
};

struct conn {
        struct stamp_index *ix;
        struct index_state opened;  /* index.db when ix was opened */
        bool frozen;                /* ix reads index.db immutable (index_open()) */
        struct stamp_index **old;   /* replaced by reopen_if_replaced(); freed with the store */
        size_t n_old;
        pthread_t thread;
        unsigned batch;             /* stamp_store_read_begin() depth */
        bool txn;                   /* a read transaction opened for the batch */
        uint8_t *scratch;           /* get_once()'s buffer for stored bytes */
        size_t scratch_size;
        struct conn *next;
};

struct stamp_store {
        char *path;
        int dirfd;
        uint64_t dev, ino;
        struct stamp_config config;
        struct stamp_hasher *hasher;
        struct stamp_backend *backend;
        int lock_fd;    /* "lock", when held */
        int gc_lock_fd; /* "gc.lock", when held; lock order: gc.lock, then lock */
        int gc_hold_fd; /* "gc.lock" held shared (stamp_store_gc_hold()) */
        bool readonly;  /* on a read-only file system (a backup disk mounted ro) */
        bool scratch_outside; /* scratch files in $TMPDIR: the store's disk is full */
        pthread_mutex_t conns_lock; /* protects conns */
        struct conn *conns;
        pthread_key_t key; /* the calling thread's struct conn */
        /*
         * What stamp_store_zero_chunk() and stamp_store_zero_list() learnt:
         * the id of a chunk of zeros, by length, and chunk lists that hold
         * only such chunks. Each table is overwritten in turn once full.
         */
        pthread_mutex_t zero_lock;
        struct zero_chunk {
                uint64_t len; /* 0: empty slot */
                struct stamp_id id;
        } zero_chunks[ZERO_MEMO];
        struct stamp_id zero_lists[ZERO_MEMO];
        unsigned zero_chunks_next, zero_lists_n, zero_lists_next;
        size_t zero_cut; /* the length the chunker cuts zeros into; 0 until asked */
        void (*wait_hook)(void); /* stamp_store_set_wait_hook() */
};

void stamp_init_options_default(struct stamp_init_options *o)
{
        /*
         * 16 KiB average chunks: a day of scattered 4 KiB SQLite page
         * updates costs about one chunk per changed page (measured in
         * tests/bench/README.md); 64 KiB or more multiplies that cost.
         */
        o->chunker = (struct stamp_chunker_params){ .min = 4096, .avg = 16384, .max = 131072 };
        /*
         * zstd level 1: on the benchmark's mix it stores 1% more than level
         * 3 for ~20% less CPU, and compression is most of a first snapshot's
         * CPU time (tests/bench/README.md).
         */
        o->zstd_level = 1;
        o->pack_size = 16u << 20;
        o->dedup_verify_max = 4096;
        o->have_secret = false;
}

/*
 * The reserve: a file of incompressible bytes that only gc gives back, so
 * that gc can run on a full disk (stamp_store_reserve_release()).
 */
#define RESERVE_NAME "reserve"
#define RESERVE_MAX (8u << 20)
#define RESERVE_MIN (64u << 10)

/* What the reserve of a store on the file system of @dirfd holds: 0 for none. */
static uint64_t reserve_size(int dirfd, uint64_t *ret_avail)
{
        struct statvfs v;
        uint64_t size;

        *ret_avail = UINT64_MAX;
        if (fstatvfs(dirfd, &v) < 0 || v.f_blocks == 0)
                return 0; /* a file system that tells nothing is never "full" */
        *ret_avail = (uint64_t)v.f_bavail * v.f_frsize;
        size = (uint64_t)v.f_blocks * v.f_frsize / 64;
        size = size > RESERVE_MAX ? RESERVE_MAX : size - size % RESERVE_MIN;
        return size < RESERVE_MIN ? 0 : size;
}

static int reserve_make_at(int dirfd)
{
        static const char tmp[] = "tmp/reserve.tmp";
        uint64_t avail, size = reserve_size(dirfd, &avail);
        uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL) << 16 ^ (uint64_t)getpid();
        _cleanup_free_ uint64_t *buf = NULL;
        _cleanup_close_ int fd = -1;
        int r = 0;

        if (faccessat(dirfd, RESERVE_NAME, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || size == 0)
                return 0;
        if (avail < 4 * size)
                return -ENOSPC; /* not the last free space: snapshots need it more */
        buf = malloc(RESERVE_MIN);
        if (!buf)
                return -ENOMEM;
        (void)stamp_tmpfile_remove_unlocked(dirfd, tmp); /* a dead gc's */
        fd = stamp_tmpfile_create_locked(dirfd, tmp, O_WRONLY);
        if (fd < 0)
                return fd;
        /* Incompressible, so that a compressing file system keeps it whole. */
        for (uint64_t off = 0; off < size && r == 0; off += RESERVE_MIN) {
                for (size_t i = 0; i < RESERVE_MIN / sizeof(*buf); i++) {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        buf[i] = x;
                }
                if (write(fd, buf, RESERVE_MIN) != (ssize_t)RESERVE_MIN)
                        r = errno ? negerrno() : -EIO;
        }
        if (r == 0 && fsync(fd) < 0)
                r = negerrno();
        if (r == 0 && renameat(dirfd, tmp, dirfd, RESERVE_NAME) < 0)
                r = negerrno();
        if (r < 0) {
                (void)unlinkat(dirfd, tmp, 0);
                return r;
        }
        return fsync(dirfd) < 0 ? negerrno() : 1;
}

int stamp_store_reserve_make(struct stamp_store *s)
{
        if (s->gc_lock_fd < 0)
                return -EINVAL;
        return reserve_make_at(s->dirfd);
}

bool stamp_store_space_low(struct stamp_store *s)
{
        uint64_t avail, size = reserve_size(s->dirfd, &avail);

        return avail < (size ? 2 * size : 2 * RESERVE_MIN);
}

int stamp_store_reserve_release(struct stamp_store *s, uint64_t *ret_bytes)
{
        struct stat st;

        *ret_bytes = 0;
        if (s->gc_lock_fd < 0)
                return -EINVAL;
        s->scratch_outside = true;
        if (fstatat(s->dirfd, RESERVE_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : negerrno();
        if (!S_ISREG(st.st_mode))
                return 0;
        if (unlinkat(s->dirfd, RESERVE_NAME, 0) < 0)
                return negerrno();
        *ret_bytes = (uint64_t)st.st_size;
        return fsync(s->dirfd) < 0 ? negerrno() : 1;
}

static int write_file_at(int dirfd, const char *name, const char *data)
{
        _cleanup_close_ int fd = openat(dirfd, name,
                                        O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        size_t len = strlen(data);

        if (fd < 0)
                return negerrno();
        stamp_owner_adopt(dirfd, fd);
        if (write(fd, data, len) != (ssize_t)len)
                return errno ? negerrno() : -EIO;
        if (fsync(fd) < 0)
                return negerrno();
        return 0;
}

static int dir_is_empty(int fd)
{
        DIR *d = fdopendir(dup(fd));
        struct dirent *de;
        int empty = 1;

        if (!d)
                return negerrno();
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                        empty = 0;
                        break;
                }
        closedir(d);
        return empty;
}

void stamp_init_options_like(const struct stamp_config *c, struct stamp_init_options *o)
{
        *o = (struct stamp_init_options){
                .chunker = c->chunker,
                .zstd_level = c->zstd_level,
                .pack_size = c->pack_size,
                .dedup_verify_max = c->dedup_verify_max,
                .have_secret = true,
        };
        memcpy(o->secret, c->secret, sizeof(o->secret));
}

int stamp_config_copy_compatible(const struct stamp_config *src, const struct stamp_config *dst)
{
        if (strcmp(src->chunker_alg, dst->chunker_alg) != 0 ||
            strcmp(src->chunk_id_alg, dst->chunk_id_alg) != 0 ||
            src->chunker.min != dst->chunker.min || src->chunker.avg != dst->chunker.avg ||
            src->chunker.max != dst->chunker.max ||
            memcmp(src->secret, dst->secret, sizeof(src->secret)) != 0)
                return -EXDEV;
        return 0;
}

/* fsync()s the directory that holds @path (its last component removed). */
static int fsync_parent(const char *path)
{
        _cleanup_free_ char *copy = strdup(path);
        _cleanup_close_ int fd = -1;
        char *slash;

        if (!copy)
                return -ENOMEM;
        slash = strrchr(copy, '/');
        if (!slash)
                fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        else {
                slash[slash == copy ? 1 : 0] = 0;
                fd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        if (fd < 0 || fsync(fd) < 0)
                return negerrno();
        return 0;
}

/*
 * Makes directory @dir and its missing parents (mode 0700: a store's
 * parents are nobody else's business), each made durable in its parent.
 */
static int mkdir_parents(const char *dir)
{
        _cleanup_free_ char *p = strdup(dir);
        size_t n;

        if (!p)
                return -ENOMEM;
        n = strlen(p);
        while (n > 1 && p[n - 1] == '/')
                p[--n] = 0;
        for (char *q = p + 1;; q++) {
                bool last = *q == 0;
                if (*q != '/' && !last)
                        continue;
                *q = 0;
                if (mkdir(p, 0700) == 0) {
                        int r = fsync_parent(p);
                        if (r < 0)
                                return r;
                } else if (errno != EEXIST) {
                        return negerrno();
                }
                if (last)
                        return 0;
                *q = '/';
        }
}

int stamp_store_init(const char *dir, const struct stamp_init_options *o)
{
        struct stamp_config c = { 0 };
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -1;
        struct stamp_index *ix = NULL;
        struct timespec now;
        char path[PATH_MAX];
        int r;

        if (stamp_chunker_params_check(&o->chunker) < 0)
                return -EINVAL;
        if (o->zstd_level < STAMP_ZSTD_LEVEL_MIN || o->zstd_level > STAMP_ZSTD_LEVEL_MAX)
                return -EINVAL;
        if (o->pack_size < (1u << 20) || o->pack_size > (1u << 30))
                return -EINVAL;
        r = mkdir_parents(dir);
        if (r < 0)
                return r;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negerrno();
        r = dir_is_empty(fd);
        if (r < 0)
                return r;
        if (r == 0)
                return -EEXIST;
        if (fchmod(fd, 0700) < 0)
                return negerrno();

        c.version = STAMP_CONFIG_VERSION;
        strcpy(c.chunker_alg, "fastcdc-gear-nc2");
        strcpy(c.chunk_id_alg, "xxh3-128-keyed");
        c.chunker = o->chunker;
        c.zstd_level = o->zstd_level;
        c.pack_size = o->pack_size;
        c.dedup_verify_max = o->dedup_verify_max;
        clock_gettime(CLOCK_REALTIME, &now);
        stamp_iso8601(now.tv_sec, now.tv_nsec, c.created);
        if (o->have_secret)
                memcpy(c.secret, o->secret, sizeof(c.secret));
        else {
                r = stamp_secret_generate(c.secret);
                if (r < 0)
                        return r;
        }
        r = stamp_config_encode(&c, &text);
        if (r < 0)
                return r;

        /* An empty directory of another user's, made a store by root, stays theirs. */
        for (const char *sub = "packs\0snapshots\0tmp\0"; *sub; sub += strlen(sub) + 1) {
                if (mkdirat(fd, sub, 0700) < 0)
                        return negerrno();
                stamp_owner_adopt_at(fd, fd, sub);
        }
        r = write_file_at(fd, LOCK_NAME, "");
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "%s/" INDEX_NAME, dir);
        r = stamp_index_open(path, STAMP_INDEX_CREATE, &ix);
        if (r < 0)
                return r;
        stamp_index_free(ix);
        (void)fchmodat(fd, INDEX_NAME, 0600, 0);
        stamp_owner_adopt_at(fd, fd, INDEX_NAME);
        (void)reserve_make_at(fd); /* none on a small or nearly full disk */
        /* The config is written last: a directory without one is not a store yet. */
        r = write_file_at(fd, CONFIG_NAME ".tmp", text);
        if (r < 0)
                return r;
        if (renameat(fd, CONFIG_NAME ".tmp", fd, CONFIG_NAME) < 0)
                return negerrno();
        if (fsync(fd) < 0)
                return negerrno();
        return 0;
}

void stamp_store_free(struct stamp_store *s)
{
        if (!s)
                return;
        for (struct conn *c = s->conns, *next; c; c = next) {
                next = c->next;
                stamp_index_free(c->ix);
                for (size_t i = 0; i < c->n_old; i++)
                        stamp_index_free(c->old[i]);
                free(c->old);
                free(c->scratch);
                free(c);
        }
        pthread_key_delete(s->key);
        pthread_mutex_destroy(&s->conns_lock);
        pthread_mutex_destroy(&s->zero_lock);
        stamp_hasher_free(s->hasher);
        stamp_backend_free(s->backend);
        stamp_store_unlock(s);
        stamp_store_gc_unlock(s);
        if (s->gc_hold_fd >= 0)
                (void)close(s->gc_hold_fd); /* a shared flock: nothing written to undo */
        if (s->dirfd >= 0)
                (void)close(s->dirfd);
        free(s->path);
        free(s);
}

static int load_config(struct stamp_store *s)
{
        _cleanup_close_ int fd = openat(s->dirfd, CONFIG_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char buf[8192];
        ssize_t n;

        if (fd < 0)
                return errno == ENOENT ? -EMEDIUMTYPE : negerrno();
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return negerrno();
        buf[n] = 0;
        return stamp_config_parse(buf, (size_t)n, &s->config);
}

/*
 * On a read-only file system no -shm can be created. A store closed
 * cleanly has no WAL left: everything is in index.db, read as immutable.
 * A WAL with its -shm is read as usual; one without cannot be read at all
 * (stamp_store_open() refuses such a store with -EROFS).
 */
static bool index_has_wal(struct stamp_store *s)
{
        struct stat wal;

        return fstatat(s->dirfd, INDEX_NAME "-wal", &wal, 0) == 0 && wal.st_size > 0;
}

int stamp_store_open(const char *dir, struct stamp_store **ret)
{
        struct stamp_store *s = calloc(1, sizeof(*s));
        struct stat st;
        int r;

        if (!s)
                return -ENOMEM;
        s->dirfd = s->lock_fd = s->gc_lock_fd = s->gc_hold_fd = -1;
        pthread_mutex_init(&s->conns_lock, NULL);
        pthread_mutex_init(&s->zero_lock, NULL);
        if (pthread_key_create(&s->key, NULL) != 0) {
                free(s);
                return -ENOMEM;
        }
        s->path = strdup(dir);
        if (!s->path) {
                r = -ENOMEM;
                goto fail;
        }
        s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dirfd < 0) {
                r = errno == ENOTDIR ? -EMEDIUMTYPE : negerrno();
                goto fail;
        }
        if (fstat(s->dirfd, &st) < 0) {
                r = negerrno();
                goto fail;
        }
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        struct statvfs vfs;
        s->readonly = fstatvfs(s->dirfd, &vfs) == 0 && (vfs.f_flag & ST_RDONLY);
        if (s->readonly && index_has_wal(s) && faccessat(s->dirfd, INDEX_NAME "-shm", F_OK, 0) < 0) {
                r = -EROFS;
                goto fail;
        }
        r = load_config(s);
        if (r < 0)
                goto fail;
        /*
         * Its directories must be its own: recovery removes files of tmp/,
         * gc lists snapshots/ and deletes packs/. Through a symlink they
         * would be another directory's files (deleted, or not seen).
         */
        for (const char *sub = "packs\0snapshots\0tmp\0"; *sub; sub += strlen(sub) + 1)
                if (fstatat(s->dirfd, sub, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
                        r = -ENOTDIR;
                        goto fail;
                }
        s->hasher = stamp_hasher_new(s->config.secret);
        if (!s->hasher) {
                r = -ENOMEM;
                goto fail;
        }
        r = stamp_backend_local_open(dir, &s->backend);
        if (r < 0)
                goto fail;
        *ret = s;
        return 0;
fail:
        stamp_store_free(s);
        return r;
}

const struct stamp_config *stamp_store_config(const struct stamp_store *s)
{
        return &s->config;
}

const struct stamp_hasher *stamp_store_hasher(const struct stamp_store *s)
{
        return s->hasher;
}

bool stamp_store_zero_chunk(struct stamp_store *s, const struct stamp_id *id, uint64_t len)
{
        struct stamp_id zero;
        uint8_t *buf;
        bool found = false;

        if (len == 0 || len > STAMP_CHUNK_MAX_LIMIT)
                return false;
        pthread_mutex_lock(&s->zero_lock);
        if (!s->zero_cut) { /* where this store's chunker cuts zeros: its secret decides */
                struct stamp_chunker ch;
                pthread_mutex_unlock(&s->zero_lock);
                stamp_chunker_init(&ch, &s->config.chunker, s->hasher);
                pthread_mutex_lock(&s->zero_lock);
                if (ch.zero_cut != SIZE_MAX) /* else out of memory: asked again next time */
                        s->zero_cut = ch.zero_cut;
        }
        if (len % 4096 != 0 && len != s->config.chunker.max && len != s->zero_cut) {
                pthread_mutex_unlock(&s->zero_lock);
                return false;
        }
        for (unsigned i = 0; i < ZERO_MEMO && !found; i++)
                if (s->zero_chunks[i].len == len) {
                        zero = s->zero_chunks[i].id;
                        found = true;
                }
        pthread_mutex_unlock(&s->zero_lock);
        if (!found) {
                buf = calloc(1, len);
                if (!buf)
                        return false; /* counted as data: a copy takes more room, no more */
                stamp_hasher_id(s->hasher, buf, len, &zero);
                free(buf);
                pthread_mutex_lock(&s->zero_lock);
                s->zero_chunks[s->zero_chunks_next] = (struct zero_chunk){ .len = len, .id = zero };
                s->zero_chunks_next = (s->zero_chunks_next + 1) % ZERO_MEMO;
                pthread_mutex_unlock(&s->zero_lock);
        }
        return stamp_id_cmp(&zero, id) == 0;
}

bool stamp_store_zero_list(struct stamp_store *s, const struct stamp_id *id)
{
        bool found = false;

        pthread_mutex_lock(&s->zero_lock);
        for (unsigned i = 0; i < s->zero_lists_n && !found; i++)
                found = stamp_id_cmp(&s->zero_lists[i], id) == 0;
        pthread_mutex_unlock(&s->zero_lock);
        return found;
}

void stamp_store_zero_list_add(struct stamp_store *s, const struct stamp_id *id)
{
        if (stamp_store_zero_list(s, id))
                return;
        pthread_mutex_lock(&s->zero_lock);
        s->zero_lists[s->zero_lists_next] = *id;
        s->zero_lists_next = (s->zero_lists_next + 1) % ZERO_MEMO;
        if (s->zero_lists_n < ZERO_MEMO)
                s->zero_lists_n++;
        pthread_mutex_unlock(&s->zero_lock);
}

struct stamp_backend *stamp_store_backend(struct stamp_store *s)
{
        return s->backend;
}

const char *stamp_store_path(const struct stamp_store *s)
{
        return s->path;
}

int stamp_store_dirfd(const struct stamp_store *s)
{
        return s->dirfd;
}

static int cmp_dir_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

void stamp_free_dir_names(char **names, size_t n)
{
        if (!names)
                return;
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

int stamp_list_dir_names(int dirfd, char ***ret_names, size_t *ret_n)
{
        DIR *dir;
        struct dirent *de;
        char **v = NULL;
        size_t n = 0, cap = 0;
        int dfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3), r = 0;

        if (dfd < 0)
                return negerrno();
        dir = fdopendir(dfd);
        if (!dir) {
                r = negerrno();
                close(dfd);
                return r;
        }
        /* The dup shares the offset of @dirfd, which an earlier listing may have moved. */
        rewinddir(dir);
        while ((errno = 0, de = readdir(dir))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (n == cap) {
                        char **nv = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                }
                v[n] = strdup(de->d_name);
                if (!v[n]) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        if (r == 0 && errno)
                r = negerrno();
        closedir(dir);
        if (r < 0) {
                stamp_free_dir_names(v, n);
                return r;
        }
        if (n > 1)
                qsort(v, n, sizeof(*v), cmp_dir_names);
        *ret_names = v;
        *ret_n = n;
        return 0;
}

void stamp_store_dev_ino(const struct stamp_store *s, uint64_t *ret_dev, uint64_t *ret_ino)
{
        *ret_dev = s->dev;
        *ret_ino = s->ino;
}

/*
 * No index to read: index.db is absent, or an empty file with no WAL to
 * fold in (a truncated copy, a disk that lost it); SQLite would take the
 * latter for a new, empty index and answer "no such object" for all.
 */
static bool index_missing(struct stamp_store *s)
{
        struct stat st;

        if (fstatat(s->dirfd, INDEX_NAME, &st, 0) < 0)
                return errno == ENOENT;
        return st.st_size == 0 && !index_has_wal(s);
}

/*
 * stamp_store_index_open(); *@ret_frozen: opened immutable, blind to later
 * commits: a store on a read-only file system, or a full disk's fallback.
 */
static int index_open(struct stamp_store *s, struct stamp_index **ret, bool *ret_frozen)
{
        char path[PATH_MAX];
        int r;

        *ret_frozen = false;
        if (snprintf(path, sizeof(path), "%s/" INDEX_NAME, s->path) >= (int)sizeof(path))
                return -ENAMETOOLONG;
        /* A missing index is damage to repair (recovery rebuilds it), not an absent object. */
        if (index_missing(s))
                return -EUCLEAN;
        if (faccessat(s->dirfd, INDEX_NAME, F_OK, 0) < 0)
                return negerrno();
        if (s->readonly) {
                /*
                 * Immutable when no WAL is left, which a backup disk mounted
                 * ro has. A read-only view of a store written elsewhere (an
                 * ro bind mount of a live one) changes, though: such a
                 * reader opens again when a lookup fails and index.db or its
                 * WAL changed since (reopen_if_replaced()).
                 */
                *ret_frozen = !index_has_wal(s);
                return stamp_index_open(path, *ret_frozen ? STAMP_INDEX_IMMUTABLE
                                                          : STAMP_INDEX_READONLY, ret);
        }
        r = stamp_index_open(path, 0, ret);
        /*
         * A full disk leaves no room for index.db-shm, without which SQLite
         * reads no WAL database: restoring from a store whose disk filled
         * up would fail. A reader (no write lock: writers must fail with
         * -ENOSPC) then reads index.db as it stands, immutable, when no
         * WAL is left to fold in; reopen_if_replaced() tries the normal way
         * again after a failed lookup.
         */
        if (r == -ENOSPC && s->lock_fd < 0 && !index_has_wal(s)) {
                r = stamp_index_open(path, STAMP_INDEX_IMMUTABLE, ret);
                *ret_frozen = r == 0;
        }
        /*
         * A reader this store does not let write (another user's store,
         * readable to it: a copy from it, stats) reads as from a read-only
         * disk.
         */
        if ((r == -EACCES || r == -EPERM) && s->lock_fd < 0) {
                *ret_frozen = !index_has_wal(s);
                r = stamp_index_open(path, *ret_frozen ? STAMP_INDEX_IMMUTABLE
                                                       : STAMP_INDEX_READONLY, ret);
                if (r < 0)
                        *ret_frozen = false;
        }
        return r;
}

int stamp_store_index_open(struct stamp_store *s, struct stamp_index **ret)
{
        bool frozen;

        return index_open(s, ret, &frozen);
}

/* Creates an empty index.db if there is none (index_missing()); recovery then fills it. */
static int index_ensure(struct stamp_store *s)
{
        struct stamp_index *ix;
        char path[PATH_MAX];
        int r;

        if (!index_missing(s))
                return 0;
        snprintf(path, sizeof(path), "%s/" INDEX_NAME, s->path);
        r = stamp_index_open(path, STAMP_INDEX_CREATE, &ix);
        if (r < 0)
                return r;
        stamp_index_free(ix);
        (void)fchmodat(s->dirfd, INDEX_NAME, 0600, 0);
        stamp_owner_adopt_at(s->dirfd, s->dirfd, INDEX_NAME);
        return 0;
}

static void index_state(struct stamp_store *s, struct index_state *ret)
{
        struct stat st;

        memset(ret, 0, sizeof(*ret));
        if (fstatat(s->dirfd, INDEX_NAME, &st, 0) < 0)
                return;
        ret->dev = st.st_dev;
        ret->ino = st.st_ino;
        ret->mtime_ns = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        ret->size = st.st_size;
        ret->wal = index_has_wal(s);
}

static bool same_file(const struct index_state *a, const struct index_state *b)
{
        return a->dev == b->dev && a->ino == b->ino;
}

static bool same_state(const struct index_state *a, const struct index_state *b)
{
        return same_file(a, b) && a->mtime_ns == b->mtime_ns && a->size == b->size &&
               a->wal == b->wal;
}

static void batch_close(struct conn *c)
{
        if (c && c->txn) {
                stamp_index_end_read(c->ix);
                c->txn = false;
        }
}

/* Opens the batch's read transaction, unless the caller has one of its own. */
static void batch_open(struct conn *c)
{
        if (c && c->batch > 0 && !c->txn && stamp_index_autocommit(c->ix) &&
            stamp_index_begin_read(c->ix) == 0)
                c->txn = true;
}

/*
 * `stamp reindex` replaces index.db with a new file. A long-lived reader
 * (the mount) would go on reading the old one, which lacks whatever is
 * committed later; so when a lookup fails, the calling thread's connection
 * is reopened if index.db is no longer the file it opened. The old
 * connection is kept until the store is freed: a caller may still hold it.
 * A connection opened frozen (index_open()) sees nothing committed after
 * it: it is replaced whenever index.db or its WAL changed since, or the
 * full disk that made it frozen has room again. Returns 1 if reopened.
 */
static int reopen_if_replaced(struct stamp_store *s)
{
        struct conn *c = pthread_getspecific(s->key);
        struct stamp_index *ix, **old;
        struct index_state now;
        bool frozen;
        int r;

        if (!c)
                return 0;
        batch_close(c);
        index_state(s, &now);
        if (now.ino == 0)
                return 0;
        if (!c->frozen && same_file(&now, &c->opened))
                return 0;
        /* Frozen on a read-only disk: only a change can show anything new. */
        if (c->frozen && s->readonly && same_state(&now, &c->opened))
                return 0;
        old = realloc(c->old, (c->n_old + 1) * sizeof(*old));
        if (!old)
                return -ENOMEM;
        c->old = old;
        r = index_open(s, &ix, &frozen);
        if (r < 0)
                return r;
        if (frozen && same_state(&now, &c->opened)) {
                stamp_index_free(ix); /* the disk is still full: nothing new to see */
                return 0;
        }
        (void)stamp_index_tune_reader(ix);
        c->old[c->n_old++] = c->ix;
        c->ix = ix;
        c->opened = now;
        c->frozen = frozen;
        return 1;
}

int stamp_store_index(struct stamp_store *s, struct stamp_index **ret)
{
        struct conn *c = pthread_getspecific(s->key);
        int r;

        if (c) {
                *ret = c->ix;
                return 0;
        }
        stamp_store_will_wait(s); /* opening the index reads it */
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        index_state(s, &c->opened); /* before the open: a change after it shows */
        r = index_open(s, &c->ix, &c->frozen);
        if (r < 0) {
                free(c);
                return r;
        }
        (void)stamp_index_tune_reader(c->ix); /* one per thread: keep each small */
        c->thread = pthread_self();
        pthread_mutex_lock(&s->conns_lock);
        c->next = s->conns;
        s->conns = c;
        pthread_mutex_unlock(&s->conns_lock);
        (void)pthread_setspecific(s->key, c);
        *ret = c->ix;
        return 0;
}

static void describe_holder(int fd, char *holder, size_t size)
{
        ssize_t n;

        if (!holder || size == 0)
                return;
        n = pread(fd, holder, size - 1, 0);
        if (n > 0) {
                holder[n] = 0;
                holder[strcspn(holder, "\n")] = 0;
        } else if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
                /* Only shared holders, who write nothing (stamp_store_gc_hold()). */
                snprintf(holder, size, "a restore or drill reading it");
                (void)flock(fd, LOCK_UN);
        } else
                snprintf(holder, size, "another process");
}

/*
 * Takes the flock on @name, exclusive or (@op LOCK_SH) shared, kept in
 * *fd_slot (see stamp_store_lock()). Only an exclusive holder says who it
 * is in the file.
 */
static int lock_file(struct stamp_store *s, const char *name, int *fd_slot, int op, int timeout_s,
                     const char *what, char *holder, size_t holder_size)
{
        char info[256];
        struct timespec start, now;
        int fd, n;

        if (*fd_slot >= 0)
                return 0;
        fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0)
                stamp_owner_adopt(s->dirfd, fd);
        if (fd < 0 && op == LOCK_SH && (errno == EROFS || errno == EACCES)) {
                /* A store this process cannot write: hold it if the file is there. */
                fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0 && (errno == ENOENT || errno == EACCES))
                        return 0; /* no gc could run from here; nothing to hold */
        }
        if (fd < 0)
                return negerrno();
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (flock(fd, op | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK && errno != EINTR) {
                        int r = negerrno();
                        (void)close(fd);
                        return r;
                }
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec - start.tv_sec >= timeout_s) {
                        describe_holder(fd, holder, holder_size);
                        (void)close(fd);
                        return -EBUSY;
                }
                usleep(100 * 1000);
        }
        if (op == LOCK_EX) {
                /* Say who holds it, for the error message of the next one who waits. */
                n = snprintf(info, sizeof(info), "pid %ld: %s\n", (long)getpid(),
                             what ? what : "stamp");
                if (ftruncate(fd, 0) == 0)
                        (void)!pwrite(fd, info, (size_t)n, 0);
        }
        *fd_slot = fd;
        return 0;
}

static void unlock_file(int *fd_slot)
{
        if (*fd_slot < 0)
                return;
        (void)!ftruncate(*fd_slot, 0);
        (void)close(*fd_slot); /* drops the flock */
        *fd_slot = -1;
}

int stamp_store_lock(struct stamp_store *s, int timeout_s, const char *what, char *holder,
                     size_t holder_size)
{
        return lock_file(s, LOCK_NAME, &s->lock_fd, LOCK_EX, timeout_s, what, holder,
                         holder_size);
}

void stamp_store_unlock(struct stamp_store *s)
{
        unlock_file(&s->lock_fd);
}

bool stamp_store_locked(const struct stamp_store *s)
{
        return s->lock_fd >= 0;
}

int stamp_store_gc_lock(struct stamp_store *s, int timeout_s, const char *what, char *holder,
                        size_t holder_size)
{
        return lock_file(s, GC_LOCK_NAME, &s->gc_lock_fd, LOCK_EX, timeout_s, what, holder,
                         holder_size);
}

int stamp_store_gc_hold(struct stamp_store *s, int timeout_s, char *holder, size_t holder_size)
{
        return lock_file(s, GC_LOCK_NAME, &s->gc_hold_fd, LOCK_SH, timeout_s, NULL, holder,
                         holder_size);
}

bool stamp_store_readonly(const struct stamp_store *s)
{
        return s->readonly;
}

bool stamp_store_gc_held_by_readers(struct stamp_store *s)
{
        int fd = openat(s->dirfd, GC_LOCK_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        bool readers;

        if (fd < 0)
                return false;
        readers = flock(fd, LOCK_EX | LOCK_NB) < 0 && flock(fd, LOCK_SH | LOCK_NB) == 0;
        (void)close(fd);
        return readers;
}

void stamp_store_gc_unlock(struct stamp_store *s)
{
        unlock_file(&s->gc_lock_fd);
}

bool stamp_store_gc_locked(const struct stamp_store *s)
{
        return s->gc_lock_fd >= 0;
}

int stamp_store_tmpfile(struct stamp_store *s, const char *suffix, char *ret_path, size_t size)
{
        uint8_t rnd[STAMP_SECRET_SEED_SIZE];
        char hex[STAMP_ID_HEX_SIZE], name[128];
        struct stamp_id id;
        int fd, r;

        r = stamp_secret_generate(rnd);
        if (r < 0)
                return r;
        stamp_checksum128(rnd, sizeof(rnd), &id);
        stamp_id_to_hex(&id, hex);
        if (snprintf(name, sizeof(name), "tmp/%s%s", hex, suffix) >= (int)sizeof(name) ||
            snprintf(ret_path, size, "%s/%s", s->path, name) >= (int)size)
                return -ENAMETOOLONG;
        fd = stamp_tmpfile_create_locked(s->dirfd, name, O_RDWR);
        return fd;
}

/* The name below the store of @path if it is a file of the store's tmp/, else NULL. */
static const char *tmp_name(struct stamp_store *s, const char *path)
{
        size_t len = strlen(s->path);

        if (strncmp(path, s->path, len) != 0 || path[len] != '/')
                return NULL;
        path += len + 1;
        return strncmp(path, "tmp/", 4) == 0 && !strchr(path + 4, '/') ? path : NULL;
}

void stamp_store_tmpfile_remove(struct stamp_store *s, const char *path)
{
        const char *name = tmp_name(s, path);

        if (name)
                (void)unlinkat(s->dirfd, name, 0);
}

int stamp_store_scratch(struct stamp_store *s, const char *suffix, char *ret_path, size_t size)
{
        const char *tmp = getenv("TMPDIR");
        int fd;

        /*
         * In the store's tmp/ if this process may write there; else (a
         * read-only disk, another user's store read by this one) in $TMPDIR.
         */
        if (!s->readonly && !s->scratch_outside) {
                fd = stamp_store_tmpfile(s, suffix, ret_path, size);
                if (fd != -EACCES && fd != -EPERM && fd != -EROFS)
                        return fd;
        }
        if (snprintf(ret_path, size, "%s/stamp-XXXXXX%s", tmp && *tmp ? tmp : "/tmp", suffix) >=
            (int)size)
                return -ENAMETOOLONG;
        fd = mkostemps(ret_path, (int)strlen(suffix), O_CLOEXEC);
        return fd < 0 ? negerrno() : fd;
}

void stamp_store_scratch_remove(struct stamp_store *s, const char *path)
{
        if (tmp_name(s, path))
                stamp_store_tmpfile_remove(s, path);
        else
                (void)unlink(path);
}

struct recover_ctx {
        struct stamp_store *s;
        struct stamp_index *ix;
        int error;
};

/*
 * A pack's entries from its trailer, or, when the trailer or index is
 * damaged, from walking its records (*@ret_scanned set): the objects before
 * the damage stay reachable, and every read re-hashes what it gets.
 */
static int pack_entries(struct stamp_store *s, const char *name, struct stamp_pack_entry **ret,
                        size_t *ret_n, uint64_t *ret_size, bool *ret_scanned)
{
        int r = stamp_pack_load_index(s->backend, name, ret, ret_n, ret_size);

        *ret_scanned = false;
        if (r == -EBADMSG) {
                r = stamp_pack_scan_records(s->backend, name, ret, ret_n, ret_size);
                *ret_scanned = r == 0;
        }
        return r;
}

static int recover_pack(const char *name, void *userdata)
{
        struct recover_ctx *c = userdata;
        _cleanup_free_ struct stamp_pack_entry *e = NULL;
        size_t n;
        uint64_t size;
        int r;

        if (strlen(name) < 5 || strcmp(name + strlen(name) - 5, ".pack") != 0)
                return 0;
        r = stamp_index_has_pack(c->ix, name);
        if (r != 0)
                return r < 0 ? r : 0;
        bool scanned;

        r = pack_entries(c->s, name, &e, &n, &size, &scanned);
        if (r == -EBADMSG || r == -EOPNOTSUPP)
                return 0; /* damaged: left for verify to report, never indexed */
        if (r < 0)
                return r;
        r = stamp_index_add_pack(c->ix, name, size, e, n);
        return r;
}

/* The stamp of a record's object name ("snapshots/STAMP.json"); false if it is not one. */
static bool record_stamp(const char *name, char ret[STAMP_STAMP_LEN + 1])
{
        const char *base = strrchr(name, '/');

        base = base ? base + 1 : name;
        if (strlen(base) != STAMP_STAMP_LEN + 5 || strcmp(base + STAMP_STAMP_LEN, ".json") != 0)
                return false;
        memcpy(ret, base, STAMP_STAMP_LEN);
        ret[STAMP_STAMP_LEN] = 0;
        return stamp_stamp_valid(ret);
}

static int recover_record(const char *name, void *userdata)
{
        struct recover_ctx *c = userdata;
        struct stamp_record rec;
        char stamp[STAMP_STAMP_LEN + 1];
        int r;

        if (!record_stamp(name, stamp))
                return 0;
        r = stamp_index_snapshot_has(c->ix, stamp);
        if (r != 0)
                return r < 0 ? r : 0;
        r = stamp_store_record_load(c->s, stamp, &rec);
        if (r == -EBADMSG || r == -EOPNOTSUPP)
                return 0;
        if (r < 0)
                return r;
        r = stamp_index_snapshot_put(c->ix, stamp, &rec.root);
        stamp_record_release(&rec);
        return r;
}

struct reindex_ctx {
        struct stamp_store *s;
        struct stamp_index *ix;
        struct stamp_reindex_result *res;
};

static int reindex_pack(const char *name, void *userdata)
{
        struct reindex_ctx *c = userdata;
        _cleanup_free_ struct stamp_pack_entry *e = NULL;
        size_t n;
        uint64_t size;
        bool scanned;
        int r;

        if (strlen(name) < 5 || strcmp(name + strlen(name) - 5, ".pack") != 0)
                return 0;
        r = pack_entries(c->s, name, &e, &n, &size, &scanned);
        if (r == -EBADMSG || r == -EOPNOTSUPP) {
                c->res->unreadable_packs++; /* left for verify to report, never indexed */
                return 0;
        }
        if (r < 0)
                return r;
        /*
         * A pack whose checksum fails is indexed anyway (its trailer sound,
         * or its records walked): its sound objects stay readable, and
         * every read of a damaged one fails its own checks.
         */
        r = scanned ? -EBADMSG : stamp_pack_verify(c->s->backend, name);
        if (r == -EBADMSG) {
                c->res->damaged_packs++;
                c->res->scanned_packs += scanned;
        } else if (r < 0) {
                return r;
        }
        r = stamp_index_add_pack(c->ix, name, size, e, n);
        if (r < 0)
                return r;
        c->res->packs++;
        c->res->objects += n;
        c->res->pack_bytes += size;
        return 0;
}

static int reindex_record(const char *name, void *userdata)
{
        struct reindex_ctx *c = userdata;
        struct stamp_record rec;
        char stamp[STAMP_STAMP_LEN + 1];
        int r;

        if (!record_stamp(name, stamp))
                return 0;
        r = stamp_store_record_load(c->s, stamp, &rec);
        if (r == -EBADMSG || r == -EOPNOTSUPP) {
                c->res->unreadable_records++;
                return 0;
        }
        if (r < 0)
                return r;
        r = stamp_index_snapshot_put(c->ix, stamp, &rec.root);
        stamp_record_release(&rec);
        if (r == 0)
                c->res->snapshots++;
        return r;
}

/* Removes the -wal, -shm and -journal of database @base, and @base too if @main_file. */
static void remove_db_files(struct stamp_store *s, const char *base, bool main_file)
{
        static const char *const sides[] = { "-wal", "-shm", "-journal" };
        char name[64];

        if (main_file)
                (void)unlinkat(s->dirfd, base, 0);
        for (size_t i = 0; i < ARRAY_SIZE(sides); i++) {
                snprintf(name, sizeof(name), "%s%s", base, sides[i]);
                (void)unlinkat(s->dirfd, name, 0);
        }
}

static int build_index(struct stamp_store *s, const char *path, struct stamp_reindex_result *ret)
{
        struct reindex_ctx c = { .s = s, .res = ret };
        int r;

        r = stamp_index_open(path, STAMP_INDEX_CREATE, &c.ix);
        if (r < 0)
                return r;
        r = stamp_index_begin(c.ix);
        if (r == 0)
                r = stamp_backend_list(s->backend, "packs/", reindex_pack, &c);
        if (r == 0)
                r = stamp_backend_list(s->backend, "snapshots/", reindex_record, &c);
        if (r == 0)
                r = stamp_index_commit(c.ix);
        else
                stamp_index_rollback(c.ix);
        if (r == 0)
                r = stamp_index_checkpoint(c.ix);
        /* The last connection's close folds the WAL in and removes -wal and -shm. */
        stamp_index_free(c.ix);
        return r;
}

/* Empties the old index's WAL, so nothing of it can be read as the new one's. */
static void retire_old_index(struct stamp_store *s)
{
        struct stamp_index *ix;
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/" INDEX_NAME, s->path);
        if (faccessat(s->dirfd, INDEX_NAME, F_OK, 0) == 0 && stamp_index_open(path, 0, &ix) == 0) {
                (void)stamp_index_checkpoint(ix);
                stamp_index_free(ix);
        }
        remove_db_files(s, INDEX_NAME, false);
}

int stamp_store_reindex(struct stamp_store *s, struct stamp_reindex_result *ret)
{
        char path[PATH_MAX];
        int r;

        memset(ret, 0, sizeof(*ret));
        if (s->lock_fd < 0 || s->gc_lock_fd < 0 || s->conns)
                return -EINVAL;
        r = stamp_backend_cleanup(s->backend);
        if (r < 0)
                return r;
        /* No index to ask: every pack an interrupted gc listed goes (gc.h). */
        r = stamp_gc_pending_complete(s, NULL, &ret->pending_removed);
        if (r < 0)
                return r;
        remove_db_files(s, INDEX_NAME ".new", true);
        if (snprintf(path, sizeof(path), "%s/" INDEX_NAME ".new", s->path) >= (int)sizeof(path))
                return -ENAMETOOLONG;
        r = build_index(s, path, ret);
        if (r < 0) {
                remove_db_files(s, INDEX_NAME ".new", true);
                return r;
        }
        (void)fchmodat(s->dirfd, INDEX_NAME ".new", 0600, 0);
        stamp_owner_adopt_at(s->dirfd, s->dirfd, INDEX_NAME ".new");
        /*
         * The new file is complete and durable (SQLite fsynced it). The old
         * -wal and -shm must go before the rename: a connection opening the
         * new index.db next to the old index.db-wal would read that WAL's
         * pages as its own.
         */
        retire_old_index(s);
        if (renameat(s->dirfd, INDEX_NAME ".new", s->dirfd, INDEX_NAME) < 0)
                return negerrno();
        return fsync(s->dirfd) < 0 ? negerrno() : 0;
}

int stamp_store_recover(struct stamp_store *s)
{
        struct recover_ctx c = { .s = s };
        uint64_t removed;
        int r;

        if (s->lock_fd < 0)
                return -EINVAL;
        r = stamp_backend_cleanup(s->backend);
        if (r < 0)
                return r;
        r = index_ensure(s);
        if (r < 0)
                return r;
        r = stamp_store_index(s, &c.ix);
        if (r < 0)
                return r;
        /*
         * Before unknown packs are indexed: a pack an interrupted gc had
         * dropped from the index but not yet unlinked would otherwise come
         * back with its dead objects.
         */
        r = stamp_gc_pending_complete(s, c.ix, &removed);
        if (r < 0)
                return r;
        r = stamp_index_begin(c.ix);
        if (r < 0)
                return r;
        r = stamp_backend_list(s->backend, "packs/", recover_pack, &c);
        if (r == 0)
                r = stamp_backend_list(s->backend, "snapshots/", recover_record, &c);
        if (r < 0) {
                stamp_index_rollback(c.ix);
                return r;
        }
        return stamp_index_commit(c.ix);
}

/*
 * A buffer for @len bytes of stored object: the thread's own (kept, so
 * that reading a chunk costs no malloc, no free and no fresh pages), or a
 * new one in *@big for an object larger than SCRATCH_MAX.
 */
static uint8_t *stored_buffer(struct conn *c, size_t len, uint8_t **big)
{
        uint8_t *p;

        if (!c || len > SCRATCH_MAX)
                return *big = malloc(len);
        if (len > c->scratch_size) {
                p = realloc(c->scratch, len);
                if (!p)
                        return NULL;
                c->scratch = p;
                c->scratch_size = len;
        }
        return c->scratch;
}

/*
 * One attempt of stamp_store_get(): looks @id up and reads it. -ESTALE if
 * the pack the index named has vanished.
 */
static int get_once(struct stamp_store *s, struct stamp_index *ix, const struct stamp_id *id,
                    uint8_t type, uint8_t **ret, size_t *ret_len)
{
        struct stamp_loc loc;
        struct stamp_pack_entry rec;
        struct stamp_id check;
        _cleanup_free_ uint8_t *big = NULL;
        _cleanup_free_ uint8_t *raw = NULL;
        uint8_t *stored;
        int r;

        r = stamp_index_find(ix, id, &loc);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        if (loc.type != type)
                return -EBADMSG;
        stored = stored_buffer(pthread_getspecific(s->key),
                               STAMP_PACK_RECORD_HEADER_SIZE + (size_t)loc.stored_len, &big);
        if (!stored)
                return -ENOMEM;
        r = stamp_backend_read(s->backend, loc.pack, loc.offset, stored,
                               STAMP_PACK_RECORD_HEADER_SIZE + (size_t)loc.stored_len);
        if (r == -ENOENT)
                return -ESTALE;
        if (r < 0)
                return r;
        r = stamp_pack_record_parse(stored, loc.offset, &rec);
        if (r < 0)
                return r;
        if (stamp_id_cmp(&rec.id, id) != 0 || rec.type != type || rec.comp != loc.comp ||
            rec.raw_len != loc.raw_len || rec.stored_len != loc.stored_len)
                return -EBADMSG;
        raw = malloc(rec.raw_len ? rec.raw_len : 1);
        if (!raw)
                return -ENOMEM;
        if (rec.comp == STAMP_COMP_NONE)
                memcpy(raw, stored + STAMP_PACK_RECORD_HEADER_SIZE, rec.raw_len);
        else {
                r = stamp_decompress(stored + STAMP_PACK_RECORD_HEADER_SIZE, rec.stored_len,
                                     raw, rec.raw_len);
                if (r < 0)
                        return r;
        }
        /* End-to-end check: never hand out bytes that do not match their id. */
        stamp_hasher_id(s->hasher, raw, rec.raw_len, &check);
        if (stamp_id_cmp(&check, id) != 0)
                return -EBADMSG;
        *ret = TAKE_PTR(raw);
        *ret_len = rec.raw_len;
        return 0;
}

void stamp_store_read_begin(struct stamp_store *s)
{
        struct stamp_index *ix;

        if (stamp_store_index(s, &ix) == 0)
                ((struct conn *)pthread_getspecific(s->key))->batch++;
}

void stamp_store_read_end(struct stamp_store *s)
{
        struct conn *c = pthread_getspecific(s->key);

        if (c && c->batch > 0 && --c->batch == 0)
                batch_close(c);
}

void stamp_store_set_wait_hook(struct stamp_store *s, void (*hook)(void))
{
        s->wait_hook = hook;
}

void stamp_store_will_wait(struct stamp_store *s)
{
        if (s->wait_hook)
                s->wait_hook();
}

int stamp_store_get(struct stamp_store *s, const struct stamp_id *id, uint8_t type,
                    uint8_t **ret, size_t *ret_len)
{
        struct stamp_index *ix;
        struct conn *c;
        int r;

        stamp_store_will_wait(s);
        r = stamp_store_index(s, &ix);
        if (r < 0)
                return r;
        c = pthread_getspecific(s->key);
        batch_open(c);
        r = get_once(s, ix, id, type, ret, ret_len);
        /*
         * gc moves live objects out of a pack (new pack durable and indexed
         * first) and then deletes the old pack, all while readers run: a
         * reader that looked the object up just before the move finds the
         * pack gone, and a fresh lookup names the new one (FORMAT.md,
         * "Garbage collection and concurrency"). A batch's transaction
         * shows the index as it was when the batch began (the old place,
         * or no object committed since): it ends, and the lookup is redone.
         */
        if ((r == -ESTALE || r == -ENOENT) && c->txn) {
                batch_close(c);
                r = get_once(s, ix, id, type, ret, ret_len);
        }
        if (r == -ESTALE)
                r = get_once(s, ix, id, type, ret, ret_len);
        if ((r == -ENOENT || r == -ESTALE) && reopen_if_replaced(s) == 1 &&
            stamp_store_index(s, &ix) == 0)
                r = get_once(s, ix, id, type, ret, ret_len);
        return r == -ESTALE ? -EBADMSG : r; /* still gone: the index names a missing pack */
}

static int collect_stamp(const char *name, void *userdata)
{
        struct stamp_strv *v = userdata;
        char stamp[STAMP_STAMP_LEN + 1];

        if (!record_stamp(name, stamp))
                return 0;
        return stamp_strv_push(v, stamp);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The stamps @fn collects from the objects under @prefix, sorted. */
static int list_sorted(struct stamp_store *s, const char *prefix, stamp_backend_list_fn fn,
                       struct stamp_strv *ret)
{
        struct stamp_strv v = { 0 };
        int r;

        r = stamp_backend_list(s->backend, prefix, fn, &v);
        if (r < 0) {
                stamp_strv_release(&v);
                return r;
        }
        if (v.n > 1)
                qsort(v.v, v.n, sizeof(char *), cmp_str);
        *ret = v;
        return 0;
}

int stamp_store_list(struct stamp_store *s, struct stamp_strv *ret)
{
        stamp_store_will_wait(s);
        return list_sorted(s, "snapshots/", collect_stamp, ret);
}

static void record_name(const char *stamp, char ret[64])
{
        snprintf(ret, 64, "snapshots/%s.json", stamp);
}

/* forgotten/STAMP marks a snapshot deleted here (stamp_store_record_delete()). */
#define FORGOTTEN_DIR "forgotten/"

static void forgotten_name(const char *stamp, char ret[64])
{
        snprintf(ret, 64, FORGOTTEN_DIR "%s", stamp);
}

/* A record of @stamp exists again: its mark of a forget no longer applies. */
static void forgotten_clear(struct stamp_store *s, const char *stamp)
{
        char name[64];

        forgotten_name(stamp, name);
        (void)stamp_backend_remove(s->backend, name); /* usually -ENOENT; a stale mark is harmless */
}

static int collect_forgotten(const char *name, void *userdata)
{
        const char *base = name + strlen(FORGOTTEN_DIR);

        if (strncmp(name, FORGOTTEN_DIR, strlen(FORGOTTEN_DIR)) != 0 || !stamp_stamp_valid(base))
                return 0;
        return stamp_strv_push(userdata, base);
}

int stamp_store_stamp_used(struct stamp_store *s, const char *stamp)
{
        char name[64];
        uint64_t size;
        int r;

        if (!stamp_stamp_valid(stamp))
                return -EINVAL;
        record_name(stamp, name);
        r = stamp_backend_size(s->backend, name, &size);
        if (r == -ENOENT) {
                forgotten_name(stamp, name);
                r = stamp_backend_size(s->backend, name, &size);
        }
        return r == -ENOENT ? 0 : r < 0 ? r : 1;
}

int stamp_store_forgotten(struct stamp_store *s, struct stamp_strv *ret)
{
        return list_sorted(s, FORGOTTEN_DIR, collect_forgotten, ret);
}

int stamp_store_record_load(struct stamp_store *s, const char *stamp, struct stamp_record *ret)
{
        _cleanup_free_ uint8_t *buf = NULL;
        char name[64];
        size_t len;
        int r;

        stamp_store_will_wait(s);
        if (!stamp_stamp_valid(stamp))
                return -EINVAL;
        record_name(stamp, name);
        r = stamp_backend_get(s->backend, name, STAMP_JSON_MAX, &buf, &len);
        if (r == -EFBIG)
                return -EBADMSG;
        if (r < 0)
                return r;
        r = stamp_record_parse((const char *)buf, len, ret);
        if (r < 0)
                return r;
        if (strcmp(ret->stamp, stamp) != 0) {
                stamp_record_release(ret);
                return -EBADMSG;
        }
        return 0;
}

int stamp_store_record_write_text(struct stamp_store *s, const char *stamp,
                                  const struct stamp_id *root, const char *text, size_t len)
{
        struct stamp_record rec;
        struct stamp_index *ix;
        char name[64];
        int e;

        if (!stamp_stamp_valid(stamp))
                return -EINVAL;
        e = stamp_record_parse(text, len, &rec);
        if (e < 0)
                return e;
        if (strcmp(rec.stamp, stamp) != 0 || stamp_id_cmp(&rec.root, root) != 0) {
                stamp_record_release(&rec);
                return -EBADMSG;
        }
        record_name(stamp, name);
        e = stamp_backend_put(s->backend, name, text, len);
        if (e == 0) {
                forgotten_clear(s, stamp);
                if (stamp_store_index(s, &ix) == 0)
                        (void)stamp_index_snapshot_put(ix, stamp, &rec.root);
        }
        stamp_record_release(&rec);
        return e;
}

int stamp_store_record_write(struct stamp_store *s, const struct stamp_record *r)
{
        _cleanup_free_ char *text = NULL;
        struct stamp_index *ix;
        char name[64];
        int e;

        if (!stamp_stamp_valid(r->stamp))
                return -EINVAL;
        e = stamp_record_encode(r, &text);
        if (e < 0)
                return e;
        record_name(r->stamp, name);
        e = stamp_backend_put(s->backend, name, text, strlen(text));
        if (e < 0)
                return e;
        forgotten_clear(s, r->stamp);
        /* The record is the commit point; the index row is a cache of it. */
        if (stamp_store_index(s, &ix) == 0)
                (void)stamp_index_snapshot_put(ix, r->stamp, &r->root);
        return 0;
}

int stamp_store_resolve(struct stamp_store *s, const char *name,
                        char ret[STAMP_STAMP_LEN + 1])
{
        struct stamp_strv v;
        char rec[64];
        uint64_t size;
        int r;

        if (strcmp(name, "latest") == 0) {
                r = stamp_store_list(s, &v);
                if (r < 0)
                        return r;
                if (v.n == 0) {
                        stamp_strv_release(&v);
                        return -ENOENT;
                }
                /* The newest regular snapshot: pre-restore safety snapshots are skipped. */
                strcpy(ret, v.v[v.n - 1]);
                for (size_t i = v.n; i-- > 0;) {
                        struct stamp_record rr;
                        bool pre = false;
                        if (stamp_store_record_load(s, v.v[i], &rr) < 0) {
                                strcpy(ret, v.v[i]); /* let the caller meet the damage */
                                break;
                        }
                        for (size_t k = 0; k < rr.tags.n; k++)
                                if (strcmp(rr.tags.v[k], STAMP_TAG_PRE_RESTORE) == 0)
                                        pre = true;
                        stamp_record_release(&rr);
                        if (!pre) {
                                strcpy(ret, v.v[i]);
                                break;
                        }
                }
                stamp_strv_release(&v);
                return 0;
        }
        if (!stamp_stamp_valid(name))
                return -EINVAL;
        record_name(name, rec);
        r = stamp_backend_size(s->backend, rec, &size);
        if (r < 0)
                return r;
        strcpy(ret, name);
        return 0;
}

int stamp_store_record_delete(struct stamp_store *s, const char *stamp)
{
        char name[64], mark[64];
        struct stamp_index *ix;
        int r, unmarked = 0;
        uint64_t size;

        if (s->lock_fd < 0)
                return -EINVAL;
        if (!stamp_stamp_valid(stamp))
                return -EINVAL;
        record_name(stamp, name);
        r = stamp_backend_size(s->backend, name, &size);
        if (r < 0)
                return r;
        /*
         * The mark first, so that no crash leaves the snapshot gone but
         * unmarked (stamp copy would bring it back from the source). It is
         * empty, so that it fits on a disk with no block left but an inode;
         * if it does not, the delete goes on, since freeing space comes
         * first, and the caller is told (1).
         */
        forgotten_name(stamp, mark);
        r = stamp_backend_put(s->backend, mark, "", 0);
        if (r == -ENOSPC || r == -EDQUOT)
                unmarked = 1;
        else if (r < 0 && r != -EEXIST)
                return r;
        r = stamp_backend_remove(s->backend, name);
        if (r < 0)
                return r;
        r = stamp_store_index(s, &ix);
        if (r == 0)
                (void)stamp_index_snapshot_del(ix, stamp); /* the record was the truth */
        return unmarked;
}
