/* SPDX-License-Identifier: MIT */
/*
 * stampfs STORE MOUNTPOINT: every snapshot of a store as a read-only
 * directory, with libfuse's low-level API and a loop of its own (loop.c).
 *
 * Inodes. The root is FUSE_ROOT_ID; below it, one directory per stamp and
 * the symlink `latest`. Every other node is created by lookup or
 * readdirplus and lives until the kernel forgets it (lookup counts). The
 * nodeid is the node's address; st_ino is derived from stable ids, so it
 * is the same at every lookup: a stamp's root hashes its stamp and root tree, an entry
 * hashes (parent st_ino, name), and a hardlinked file hashes (stamp,
 * hardlink id) so that all its names share one st_ino.
 *
 * Caching. Snapshots never change: entries inside a stamp get day-long
 * entry and attr timeouts, files keep_cache, directories cache_readdir.
 * Listings are lean at first: readdirplus gives the kernel an inode for
 * subdirectories only, until programs show they stat what they list
 * (see struct fs, lean_misses).
 * The root's entries time out after a second, so stamps taken or pruned
 * while mounted appear and vanish. Trees and chunks come from one shared
 * cache bounded by -o cache_size (MiB).
 *
 * Errors. Damaged or missing data is EIO, never wrong bytes: every chunk
 * and tree is verified against its id on its way into the cache.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "config.h"
#include "loop.h"
#include "macro.h"
#include "pack.h"
#include "prefetch.h"
#include "reader.h"
#include "readerpool.h"
#include "store.h"
#include "tree.h"

#define ROOT_TIMEOUT 1.0       /* stamps come and go */
#define STAMP_TIMEOUT 86400.0  /* snapshot content never changes */
#define NODE_BUCKETS 65536
#define STREAMS 8              /* directories read ahead in at once */
#define PREFETCH_THREADS 2
/* Loop threads answering requests at once (loop.c). */
#define LOOP_THREADS 16
/* -o spin: how long the loop's leader polls for the next request, in us. */
#define SPIN_US 50
#define SPIN_US_MAX 100000
/* Reads of this many bytes or more are answered off the loop's leader. */
#define HAND_OVER_READ (128u << 10)
/* How long a stop waits for notifications in flight (ms). */
#define STOP_WAIT_MS 10000
#define TRIM_EVERY (64ULL << 20)
/* What the heap may hold beyond the cache before it is trimmed. */
#define RSS_SLACK (40ULL << 20)
#define PUSH_MAX (1u << 20) /* bytes handed to the kernel at once */
#define LOG_BURST 20 /* read errors logged a minute */
/* Spans of one read: 1 MiB (max_read) of the smallest chunks, 4 KiB. */
#define READ_SPANS 257
/* Subdirectories of one readdir reply whose trees are read ahead. */
#define SUBDIRS_AHEAD 64
/* What idle readers may hold over all files (struct fs, readers). */
#define IDLE_BUDGET (16u << 20)
#define IDLE_PER_NODE 4
/* Lookups of entries a lean listing left out before listings carry all. */
#define LEAN_MISSES 32
/* The most xattr names the mount keeps for xattr_unsupported(); past it, it knows none. */
#define XN_UNION_MAX 4096
#define BLOCKS_UNKNOWN UINT64_MAX
/*
 * Chunk lists a stat may load to find a file's holes (96 KiB each, about
 * 64 MiB of data or 512 MiB of holes; lists of holes only are loaded once
 * per mount): beyond, the rest counts as data. An ls -l of large files
 * then reads at most 384 KiB for each; any hole found makes st_blocks
 * smaller than the size, which is all cp and tar need to ask SEEK_DATA.
 */
#define BLOCKS_LISTS_MAX 4

enum kind {
        K_ROOT,
        K_STAMP,  /* a stamp's root directory */
        K_LATEST, /* the `latest` symlink */
        K_ENTRY,  /* anything inside a stamp */
};

struct node {
        uint64_t nlookup;   /* protected by fs.nodes_lock */
        struct node *hnext; /* fs.nodes chain; protected by fs.nodes_lock */
        enum kind kind;
        uint64_t ino; /* st_ino */
        char stamp[STAMP_STAMP_LEN + 1];
        struct stamp_id tree; /* directories */
        /* K_ENTRY: where it was found (the first name, for hardlinks), for read-ahead */
        struct stamp_id parent_tree;
        uint64_t parent_ino;
        uint32_t index;
        uint8_t type;
        bool listed_lean; /* atomic: a listing of it left entries out (dir_item()) */
        uint32_t mode, uid, gid, nlink;
        int64_t mtime_ns, ctime_ns;
        uint64_t size, rdev;
        /*
         * Regular files: the bytes that are not holes (stamp_file_allocated()),
         * for st_blocks; BLOCKS_UNKNOWN until node_blocks() asks. Atomic.
         */
        uint64_t allocated;
        uint8_t *xattrs;
        size_t xattrs_len;
        char *target; /* symlinks */
        size_t target_len;
        /*
         * Regular files: idle readers, reused by reads, newest first. With
         * open disabled (FUSE_CAP_NO_OPEN_SUPPORT) reads come without a
         * handle; parallel reads of one file each take their own reader.
         * In fs.readers.
         */
        struct stamp_pooled *idle;
};

/* The xattr names one snapshot holds, as its record lists them. */
struct xn_stamp {
        char stamp[STAMP_STAMP_LEN + 1];
        struct stamp_id root; /* a stamp forgotten and taken again is another snapshot */
        bool known; /* false: an older record, or one that cannot be read */
        struct stamp_strv names;
};

struct fs {
        struct stamp_store *s;
        struct stamp_cache *cache;
        struct node root;
        struct stat store_st;
        bool debug;
        bool no_open;    /* the kernel can skip open/release (set in init) */
        bool acl;        /* -o allow_other: other users' access checks the stored ACLs */
        bool no_opendir; /* ... and opendir/releasedir */
        bool force_open; /* STAMPFS_OPEN set: answer open and opendir anyway */
        unsigned test_stall_ms; /* STAMPFS_TEST_STALL_MS: see op_getxattr() */
        uint64_t test_stall_size; /* STAMPFS_TEST_STALL_SIZE: see prefetch_done() */
        /*
         * The root's mtime moves whenever its list of stamps changes, which
         * the kernel checks (getattr, at most once per ROOT_TIMEOUT) before
         * it trusts its cached listing of the root.
         */
        pthread_mutex_t root_lock;
        struct stamp_id root_sum; /* of the stamps listed last; protected by root_lock */
        /*
         * Nodes the kernel knows, by st_ino: a path (or a hardlinked file)
         * always gets the same nodeid, so the kernel keeps its inode and its
         * cached pages instead of replacing them at every lookup.
         */
        pthread_mutex_t nodes_lock;
        struct node *nodes[NODE_BUCKETS];
        /*
         * Read-ahead: when a file's first bytes are read, the files that
         * follow it in its directory are queued (prefetch_after()). A
         * stream remembers, per directory, how far that went.
         */
        struct stamp_prefetch *pf; /* NULL: off */
        unsigned prefetch_files;   /* how many following files */
        uint64_t prefetch_bytes;   /* how many bytes ahead, at most */
        pthread_mutex_t streams_lock;
        struct stream {
                struct stamp_id tree;
                uint32_t next; /* first index not queued yet */
                bool used;
        } streams[STREAMS];
        unsigned streams_clock;
        uint64_t served; /* bytes read, atomic (trim_now_and_then()) */
        uint64_t rss_trim; /* RSS above which trim_now_and_then() trims */
        struct fuse_session *se; /* for prefetch_done()'s notifications */
        /*
         * Listings inside a stamp are lean at first: readdirplus carries
         * an inode (attributes, a lookup count) only for subdirectories.
         * find and ls need no more, the kernel builds one inode per
         * directory instead of one per entry, and a cold find takes a
         * quarter less time. Programs that stat every entry they list
         * (ls -l, tar, cp -a, rsync) then look each one up; after
         * LEAN_MISSES such lookups, listings carry every entry for the
         * rest of the mount (-o full_listings: from the start), and the
         * lean listings the kernel cached are dropped so that it asks
         * again (drop_lean()).
         */
        unsigned lean_misses; /* atomic; LEAN_MISSES or more: listings carry all */
        bool dropper_started; /* set once, by the thread starting it */
        pthread_t dropper;
        /*
         * Notifications wait for page locks a pending READ may hold, so
         * they must end while the loop still answers: once a signal
         * stops the mount, none starts (notify_begin()), and the loop
         * waits for those in flight before its threads stop
         * (stop_notifying()).
         */
        bool stopping;      /* atomic */
        unsigned notifying; /* atomic */
        /*
         * Idle readers of all nodes, at most IDLE_PER_NODE a node and
         * IDLE_BUDGET bytes in all: without a bound, the chunk lists of
         * every large file read would stay as long as the kernel keeps
         * its inode.
         */
        struct stamp_reader_pool *readers;
        long page_size;
        /*
         * The xattr names the store's snapshots hold (their records'
         * xattr_names), for xattr_unsupported(). Checked against the list
         * of stamps at most once per ROOT_TIMEOUT (xn_build()), and told
         * of every record the mount loads (xn_see()).
         */
        struct {
                pthread_mutex_t lock;
                bool built;              /* xn_build() ran at least once */
                bool incomplete;         /* a listing or a record failed: read again */
                struct stamp_id sum;     /* of the stamps it was built for */
                struct timespec checked; /* CLOCK_MONOTONIC, of the last xn_build() */
                struct xn_stamp *per;    /* each stamp's names, by stamp */
                size_t n_per;
                bool known;              /* every record lists its names */
                struct stamp_strv names; /* their union, sorted; only if known */
        } xn;
};

struct dir_handle {
        struct stamp_strv stamps;     /* root */
        struct stamp_cache_ref *ref;  /* a stamp or directory: its tree */
        struct stamp_tree t;
};

static struct fs *fs_of(fuse_req_t req)
{
        return fuse_req_userdata(req);
}

static struct node *node_of(fuse_req_t req, fuse_ino_t ino)
{
        if (ino == FUSE_ROOT_ID)
                return &fs_of(req)->root;
        return (struct node *)(uintptr_t)ino;
}

/* Frees @n; its idle readers went with node_unref() (a node never published has none). */
static void node_free(struct node *n)
{
        free(n->xattrs);
        free(n->target);
        free(n);
}

static struct node *node_new(void)
{
        return calloc(1, sizeof(struct node));
}

static uint64_t hash_ino(const void *a, size_t alen, const void *b, size_t blen)
{
        uint8_t buf[8 + 512];
        struct stamp_id h;
        uint64_t v;

        memcpy(buf, a, alen);
        memcpy(buf + alen, b, blen);
        stamp_checksum128(buf, alen + blen, &h);
        memcpy(&v, h.b, sizeof(v));
        return v < 2 ? v + 2 : v; /* 0 and 1 mean "none" and the root */
}

static struct timespec ns_to_ts(int64_t ns)
{
        struct timespec t;

        t.tv_sec = ns / 1000000000;
        t.tv_nsec = ns % 1000000000;
        if (t.tv_nsec < 0) {
                t.tv_sec--;
                t.tv_nsec += 1000000000;
        }
        return t;
}

static void node_stat(const struct fs *fs, const struct node *n, struct stat *st)
{
        memset(st, 0, sizeof(*st));
        st->st_ino = n == &fs->root ? FUSE_ROOT_ID : n->ino;
        st->st_mode = n->mode;
        st->st_nlink = n->type == STAMP_T_DIR ? 1 : (n->nlink ? n->nlink : 1);
        st->st_uid = n->uid;
        st->st_gid = n->gid;
        st->st_rdev = n->rdev;
        st->st_size = (off_t)(n->type == STAMP_T_DIR ? 4096 : n->size);
        st->st_blksize = 65536;
        {
                uint64_t a = n->kind == K_ENTRY ? __atomic_load_n(&n->allocated, __ATOMIC_RELAXED)
                                                : BLOCKS_UNKNOWN;
                st->st_blocks = (blkcnt_t)(((a == BLOCKS_UNKNOWN ? n->size : a) + 511) / 512);
        }
        st->st_mtim = ns_to_ts(n->mtime_ns);
        st->st_ctim = ns_to_ts(n->ctime_ns);
        st->st_atim = st->st_mtim;
}

static double timeout_of(const struct node *n)
{
        return n->kind == K_STAMP || n->kind == K_LATEST ? ROOT_TIMEOUT : STAMP_TIMEOUT;
}

/*
 * Gives the kernel a lookup reference to the node with @n's st_ino: an
 * existing one (then @n is freed) or @n itself. Takes ownership of @n.
 */
static struct node *node_publish(struct fs *fs, struct node *n)
{
        struct node **head = &fs->nodes[n->ino % NODE_BUCKETS], *e;

        pthread_mutex_lock(&fs->nodes_lock);
        for (e = *head; e; e = e->hnext)
                if (e->ino == n->ino && e->kind == n->kind)
                        break;
        if (!e) {
                n->hnext = *head;
                *head = n;
                e = n;
                n = NULL;
        }
        e->nlookup++;
        pthread_mutex_unlock(&fs->nodes_lock);
        if (n)
                node_free(n);
        return e;
}

/* Drops @count lookup references; the last one frees the node. */
static void node_unref(struct fs *fs, struct node *n, uint64_t count)
{
        bool gone = false;

        pthread_mutex_lock(&fs->nodes_lock);
        n->nlookup = n->nlookup > count ? n->nlookup - count : 0;
        if (n->nlookup == 0) {
                for (struct node **p = &fs->nodes[n->ino % NODE_BUCKETS]; *p; p = &(*p)->hnext)
                        if (*p == n) {
                                *p = n->hnext;
                                break;
                        }
                gone = true;
        }
        pthread_mutex_unlock(&fs->nodes_lock);
        if (gone) {
                stamp_reader_pool_drop(fs->readers, &n->idle);
                node_free(n);
        }
}

/* At exit: every node left, whatever the kernel's lookup counts. */
static void nodes_free_all(struct fs *fs)
{
        for (size_t b = 0; b < NODE_BUCKETS; b++)
                for (struct node *n = fs->nodes[b], *next; n; n = next) {
                        next = n->hnext;
                        stamp_reader_pool_drop(fs->readers, &n->idle);
                        node_free(n);
                }
        memset(fs->nodes, 0, sizeof(fs->nodes));
}

static void node_blocks(struct fs *fs, struct node *n);

static void reply_entry(fuse_req_t req, struct node *n)
{
        struct fs *fs = fs_of(req);
        struct fuse_entry_param e = { 0 };

        n = node_publish(fs, n);
        e.ino = (fuse_ino_t)(uintptr_t)n;
        e.attr_timeout = e.entry_timeout = timeout_of(n);
        node_blocks(fs, n);
        node_stat(fs, n, &e.attr);
        if (fuse_reply_entry(req, &e) != 0)
                node_unref(fs, n, 1); /* the kernel never saw it */
}

static int dup_bytes(const void *p, size_t len, uint8_t **ret)
{
        *ret = NULL;
        if (len == 0)
                return 0;
        *ret = malloc(len);
        if (!*ret)
                return -ENOMEM;
        memcpy(*ret, p, len);
        return 0;
}

/* The st_ino of entry @e in snapshot @stamp, in the directory whose st_ino is @parent_ino. */
static uint64_t entry_ino(const char *stamp, uint64_t parent_ino, const struct stamp_entry *e)
{
        if (e->link_id) {
                /* Members of a group that hold other content are other inodes. */
                uint64_t key[2] = { e->link_id, stamp_entry_content_key(e) };
                return hash_ino(stamp, STAMP_STAMP_LEN, key, sizeof(key));
        }
        return hash_ino(&parent_ino, sizeof(parent_ino), e->name, e->name_len);
}

/*
 * The entry node with st_ino @ino, if the kernel knows it, with one more
 * reference (dropped with node_unref()) so that it outlives a forget.
 */
static struct node *node_hold(struct fs *fs, uint64_t ino)
{
        struct node *e;

        pthread_mutex_lock(&fs->nodes_lock);
        for (e = fs->nodes[ino % NODE_BUCKETS]; e; e = e->hnext)
                if (e->ino == ino && e->kind == K_ENTRY) {
                        e->nlookup++;
                        break;
                }
        pthread_mutex_unlock(&fs->nodes_lock);
        return e;
}

/* Fills @n (zeroed) with what entry @e of a directory of node @parent says, but its bytes. */
static void node_fill(const struct node *parent, const struct stamp_entry *e, uint32_t index,
                      struct node *n)
{
        n->kind = K_ENTRY;
        memcpy(n->stamp, parent->stamp, sizeof(n->stamp));
        n->type = e->type;
        n->mode = e->mode;
        n->uid = e->uid;
        n->gid = e->gid;
        n->nlink = e->nlink;
        n->mtime_ns = e->mtime_ns;
        n->ctime_ns = e->ctime_ns;
        n->size = e->size;
        n->allocated = e->type == STAMP_T_REG ? BLOCKS_UNKNOWN : e->size;
        n->rdev = e->rdev;
        n->tree = e->subtree;
        n->parent_tree = parent->tree;
        n->index = index;
        n->parent_ino = parent->ino;
        n->ino = entry_ino(n->stamp, parent->ino, e);
}

/* A node for entry @e of a directory of node @parent. */
static int node_from_entry(const struct node *parent, const struct stamp_entry *e,
                           uint32_t index, struct node **ret)
{
        struct node *n = node_new();

        if (!n)
                return -ENOMEM;
        node_fill(parent, e, index, n);
        if (dup_bytes(e->xattrs, e->xattrs_len, &n->xattrs) < 0 ||
            dup_bytes(e->target, e->target_len, (uint8_t **)&n->target) < 0) {
                node_free(n);
                return -ENOMEM;
        }
        n->xattrs_len = e->xattrs_len;
        n->target_len = e->target_len;
        *ret = n;
        return 0;
}

/*
 * Whether one more line about damage may be logged: at most LOG_BURST a
 * minute (a tar over a damaged snapshot would otherwise flood syslog).
 */
static bool damage_log_allowed(void)
{
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        static time_t window;
        static unsigned lines;
        time_t now = time(NULL);
        bool say;

        pthread_mutex_lock(&lock);
        if (now - window >= 60) {
                if (lines > LOG_BURST)
                        fuse_log(FUSE_LOG_ERR, "%u more read errors not logged\n",
                                 lines - LOG_BURST);
                window = now;
                lines = 0;
        }
        say = ++lines <= LOG_BURST;
        pthread_mutex_unlock(&lock);
        return say;
}

/*
 * Logs why a read of @n failed (stderr, or syslog once in the background):
 * the client sees only EIO.
 */
static void report_damage(const struct node *n, const char *what, int err)
{
        if (err == -ENOMEM || !damage_log_allowed())
                return;
        fuse_log(FUSE_LOG_ERR, "snapshot %s: %s (inode %llu) cannot be read: %s\n",
                 n->stamp[0] ? n->stamp : "?", what, (unsigned long long)n->ino,
                 err == -EBADMSG ? "damaged data (does not match its checksum)" : strerror(-err));
}

static void xn_see(struct fs *fs, struct stamp_record *rec);

static int node_stamp(struct fs *fs, const char *stamp, struct node **ret)
{
        struct stamp_record rec;
        struct node *n;
        int r;

        if (!stamp_stamp_valid(stamp))
                return -ENOENT;
        r = stamp_store_record_load(fs->s, stamp, &rec);
        if (r == -ENOENT || r == -ENOMEM)
                return r;
        if (r < 0) {
                if (damage_log_allowed())
                        fuse_log(FUSE_LOG_ERR, "snapshot %s: its record cannot be read: %s\n",
                                 stamp,
                                 r == -EBADMSG ? "damaged (not a valid snapshot record)"
                                 : r == -EOPNOTSUPP
                                         ? "unsupported format version (made by a newer stampfs?)"
                                         : strerror(-r));
                return -EIO;
        }
        xn_see(fs, &rec);
        n = node_new();
        if (!n) {
                stamp_record_release(&rec);
                return -ENOMEM;
        }
        n->kind = K_STAMP;
        strcpy(n->stamp, stamp);
        n->type = STAMP_T_DIR;
        n->mode = S_ISDIR(rec.root_mode) ? rec.root_mode : (S_IFDIR | 0755);
        n->uid = rec.root_uid;
        n->gid = rec.root_gid;
        n->mtime_ns = n->ctime_ns = rec.root_mtime_ns;
        n->tree = rec.root;
        {
                /*
                 * The stamp and its root tree: a stamp forgotten and taken
                 * again (a copy from a store that snapshotted in the same
                 * second, a clock stepped back) is another inode, so the
                 * kernel drops what it cached of the old one.
                 */
                uint8_t key[STAMP_STAMP_LEN + sizeof(rec.root.b)];
                memcpy(key, stamp, STAMP_STAMP_LEN);
                memcpy(key + STAMP_STAMP_LEN, rec.root.b, sizeof(rec.root.b));
                n->ino = hash_ino("stamp", 5, key, sizeof(key));
        }
        n->xattrs = TAKE_PTR(rec.root_xattrs);
        n->xattrs_len = rec.root_xattrs_len;
        stamp_record_release(&rec);
        *ret = n;
        return 0;
}

static int node_latest(struct fs *fs, struct node **ret)
{
        char stamp[STAMP_STAMP_LEN + 1];
        struct node *n;
        int r;

        r = stamp_store_resolve(fs->s, "latest", stamp);
        if (r < 0)
                return r == -ENOENT ? -ENOENT : -EIO;
        n = node_new();
        if (!n)
                return -ENOMEM;
        n->target = strdup(stamp);
        if (!n->target) {
                node_free(n);
                return -ENOMEM;
        }
        n->kind = K_LATEST;
        n->type = STAMP_T_LNK;
        n->mode = S_IFLNK | 0777;
        n->target_len = n->size = STAMP_STAMP_LEN;
        n->ino = hash_ino("latest", 6, stamp, STAMP_STAMP_LEN);
        /* mtime follows the target, so a cached link is refreshed when it moves */
        n->mtime_ns = n->ctime_ns = fs->store_st.st_mtim.tv_sec * 1000000000LL;
        *ret = n;
        return 0;
}

/* The tree of directory node @n, from the shared cache. */
static int tree_get(struct fs *fs, const struct node *n, struct stamp_cache_ref **ret_ref,
                    struct stamp_tree *ret)
{
        const uint8_t *data;
        size_t len;
        int r;

        r = stamp_cache_get(fs->cache, fs->s, &n->tree, STAMP_OBJ_TREE, ret_ref, &data, &len);
        if (r < 0) { /* a tree the snapshot needs is gone or damaged */
                report_damage(n, "directory", r);
                return -EIO;
        }
        stamp_tree_view(data, len, ret);
        return 0;
}

static int do_lookup(fuse_req_t req, struct node *parent, const char *name, struct node **ret)
{
        struct fs *fs = fs_of(req);
        struct stamp_cache_ref *ref;
        struct stamp_tree t;
        struct stamp_entry e;
        uint32_t i;
        int r;

        if (parent->kind == K_ROOT)
                return strcmp(name, "latest") == 0 ? node_latest(fs, ret) : node_stamp(fs, name, ret);
        if (parent->type != STAMP_T_DIR)
                return -ENOTDIR;
        r = tree_get(fs, parent, &ref, &t);
        if (r < 0)
                return r;
        r = stamp_tree_find(&t, name, strlen(name), &i);
        if (r == 1)
                r = stamp_tree_entry(&t, i, &e) < 0 ? -EIO : node_from_entry(parent, &e, i, ret);
        else if (r == 0)
                r = -ENOENT;
        stamp_cache_put(fs->cache, ref);
        return r;
}

/*
 * Once listings carry every entry (lean_missed()): makes the kernel drop
 * the lean listings it cached, so that a program reading one again (tar
 * after find) gets the attributes with it, not a lookup for each entry.
 */
static bool notify_begin(struct fs *fs)
{
        __atomic_add_fetch(&fs->notifying, 1, __ATOMIC_SEQ_CST);
        if (!__atomic_load_n(&fs->stopping, __ATOMIC_SEQ_CST))
                return true;
        __atomic_sub_fetch(&fs->notifying, 1, __ATOMIC_SEQ_CST);
        return false;
}

static void notify_end(struct fs *fs)
{
        __atomic_sub_fetch(&fs->notifying, 1, __ATOMIC_SEQ_CST);
}

/* The loop's before_stop: called while its threads still answer requests. */
static void stop_notifying(void *data)
{
        struct fs *fs = data;

        __atomic_store_n(&fs->stopping, true, __ATOMIC_SEQ_CST);
        for (int i = 0; i < STOP_WAIT_MS && __atomic_load_n(&fs->notifying, __ATOMIC_SEQ_CST) > 0;
             i++)
                usleep(1000);
}

static void *drop_lean(void *arg)
{
        struct fs *fs = arg;
        struct node **v = NULL;
        size_t n = 0, cap = 0;

        pthread_mutex_lock(&fs->nodes_lock);
        for (size_t b = 0; b < NODE_BUCKETS; b++)
                for (struct node *e = fs->nodes[b]; e; e = e->hnext) {
                        if (!__atomic_load_n(&e->listed_lean, __ATOMIC_RELAXED))
                                continue;
                        if (n == cap) {
                                size_t want = cap ? 2 * cap : 256;
                                struct node **nv = realloc(v, want * sizeof(*v));
                                if (!nv)
                                        goto out; /* the rest stay cached lean: slower, not wrong */
                                v = nv;
                                cap = want;
                        }
                        e->nlookup++; /* until it is done with */
                        v[n++] = e;
                }
out:
        pthread_mutex_unlock(&fs->nodes_lock);
        for (size_t i = 0; i < n; i++) {
                __atomic_store_n(&v[i]->listed_lean, false, __ATOMIC_RELAXED);
                /* A directory's cached pages are its listing. */
                if (notify_begin(fs)) {
                        fuse_lowlevel_notify_inval_inode(fs->se, (fuse_ino_t)(uintptr_t)v[i], 0, 0);
                        notify_end(fs);
                }
                node_unref(fs, v[i], 1);
        }
        free(v);
        return NULL;
}

/*
 * A lookup of an entry the lean listing of @dir left out: a program stats
 * what it lists.
 */
static void lean_missed(struct fs *fs, struct node *dir)
{
        if (__atomic_load_n(&fs->lean_misses, __ATOMIC_SEQ_CST) >= LEAN_MISSES) {
                /*
                 * Switched already, yet @dir is still listed lean: its listing
                 * was built before the switch and flagged after drop_lean()
                 * went by. Dropped here, once. Not with a single loop
                 * thread: the notification waits for the listing's pages,
                 * which a reader may hold while it faults in a page of a
                 * file on this mount, a read only this thread would answer
                 * (stampfs_loop_may_block() false: -s, or no thread could
                 * start).
                 */
                if (fs->se && __atomic_load_n(&dir->listed_lean, __ATOMIC_SEQ_CST) &&
                    stampfs_loop_may_block() && notify_begin(fs)) {
                        if (__atomic_exchange_n(&dir->listed_lean, false, __ATOMIC_SEQ_CST))
                                fuse_lowlevel_notify_inval_inode(fs->se,
                                                                 (fuse_ino_t)(uintptr_t)dir, 0, 0);
                        notify_end(fs);
                }
                return;
        }
        if (__atomic_add_fetch(&fs->lean_misses, 1, __ATOMIC_SEQ_CST) != LEAN_MISSES)
                return;
        if (fs->se && pthread_create(&fs->dropper, NULL, drop_lean, fs) == 0)
                fs->dropper_started = true; /* read once the loop's threads are joined */
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct node *dir = node_of(req, parent), *n;
        int r = do_lookup(req, dir, name, &n);

        if (r < 0) {
                fuse_reply_err(req, -r);
                return;
        }
        if (n->kind == K_ENTRY && n->type != STAMP_T_DIR &&
            __atomic_load_n(&dir->listed_lean, __ATOMIC_SEQ_CST))
                lean_missed(fs_of(req), dir);
        reply_entry(req, n);
}

static void forget_one(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
        struct node *n = node_of(req, ino);

        if (n == &fs_of(req)->root)
                return;
        node_unref(fs_of(req), n, nlookup);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
        forget_one(req, ino, nlookup);
        fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
        for (size_t i = 0; i < count; i++)
                forget_one(req, forgets[i].ino, forgets[i].nlookup);
        fuse_reply_none(req);
}

/* A checksum of the names in @v. */
static int stamps_checksum(const struct stamp_strv *v, struct stamp_id *ret)
{
        char *buf = malloc(v->n * STAMP_STAMP_LEN + 1);

        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < v->n; i++)
                memcpy(buf + i * STAMP_STAMP_LEN, v->v[i], STAMP_STAMP_LEN);
        stamp_checksum128(buf, v->n * STAMP_STAMP_LEN, ret);
        free(buf);
        return 0;
}

/* The stamps of the store and a checksum of their names. */
static int stamps_sum(struct fs *fs, struct stamp_strv *ret_list, struct stamp_id *ret)
{
        struct stamp_strv v = { 0 };
        int r;

        r = stamp_store_list(fs->s, &v);
        if (r == 0)
                r = stamps_checksum(&v, ret);
        if (r == 0 && ret_list)
                *ret_list = v;
        else
                stamp_strv_release(&v);
        return r;
}

/*
 * The root's listing or attributes now show the stamps of @sum: when they
 * are not the ones shown last time, the root's mtime moves forward (to
 * now, or 1 ns on if the clock went back). Called with root_lock held.
 */
static void root_shows(struct fs *fs, const struct stamp_id *sum)
{
        struct timespec now;
        int64_t now_ns;

        if (stamp_id_cmp(sum, &fs->root_sum) == 0)
                return;
        fs->root_sum = *sum;
        clock_gettime(CLOCK_REALTIME, &now);
        now_ns = now.tv_sec * 1000000000LL + now.tv_nsec;
        fs->root.mtime_ns = fs->root.ctime_ns =
                now_ns > fs->root.mtime_ns ? now_ns : fs->root.mtime_ns + 1;
}

/* Lists the stamps, for the root's attributes. Called with root_lock held. */
static void root_refresh(struct fs *fs)
{
        struct stamp_id sum;

        if (stamps_sum(fs, NULL, &sum) < 0)
                return; /* the next readdir reports it */
        root_shows(fs, &sum);
}

/* Index of @name in sorted @v, or where it would go; *ret_found says which. */
static size_t strv_find(const struct stamp_strv *v, const char *name, bool *ret_found)
{
        size_t lo = 0, hi = v->n;

        *ret_found = false;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int cmp = strcmp(v->v[mid], name);
                if (cmp == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (cmp < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Adds @names to the sorted union @u; false past XN_UNION_MAX names or out of memory. */
static bool xn_merge(struct stamp_strv *u, const struct stamp_strv *names)
{
        for (size_t i = 0; i < names->n; i++)
                if (stamp_strv_add_sorted(u, names->v[i], strlen(names->v[i])) < 0 ||
                    u->n > XN_UNION_MAX)
                        return false;
        return true;
}

static int cmp_xn_stamp(const void *a, const void *b)
{
        return strcmp(((const struct xn_stamp *)a)->stamp, ((const struct xn_stamp *)b)->stamp);
}

static void xn_stamps_free(struct xn_stamp *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                stamp_strv_release(&v[i].names);
        free(v);
}

/* The union of fs->xn.per's names, and whether it is known. Called with xn.lock held. */
static void xn_union(struct fs *fs)
{
        stamp_strv_release(&fs->xn.names);
        fs->xn.known = !fs->xn.incomplete;
        for (size_t i = 0; i < fs->xn.n_per && fs->xn.known; i++)
                fs->xn.known = fs->xn.per[i].known &&
                               xn_merge(&fs->xn.names, &fs->xn.per[i].names);
        if (!fs->xn.known)
                stamp_strv_release(&fs->xn.names);
}

/* Fills @e from @rec, taking its names. */
static void xn_fill(struct xn_stamp *e, struct stamp_record *rec)
{
        stamp_strv_release(&e->names);
        e->root = rec->root;
        e->known = rec->xattr_names_known;
        if (e->known) {
                e->names = rec->xattr_names;
                memset(&rec->xattr_names, 0, sizeof(rec->xattr_names));
        }
}

/*
 * Builds fs->xn for the stamps listed now, reading only the records of
 * stamps it has not seen (a snapshot never changes; one forgotten and
 * taken again under its stamp is told by xn_see()). A listing or a record
 * that fails (EACCES, EMFILE, EIO) leaves the names unknown, and is tried
 * again at the next check, not at every question. Called with xn.lock
 * held.
 */
static void xn_build(struct fs *fs)
{
        struct stamp_strv stamps = { 0 };
        struct xn_stamp *per;
        struct stamp_id sum;
        size_t n = 0, loaded = 0;

        if (stamps_sum(fs, &stamps, &sum) < 0) {
                if (fs->debug)
                        fuse_log(FUSE_LOG_DEBUG, "   xattr names: the stamps cannot be listed\n");
                fs->xn.incomplete = true;
                fs->xn.known = false;
                return;
        }
        if (!fs->xn.incomplete && fs->xn.built && stamp_id_cmp(&sum, &fs->xn.sum) == 0) {
                stamp_strv_release(&stamps);
                return;
        }
        per = calloc(stamps.n ? stamps.n : 1, sizeof(*per));
        if (!per) {
                stamp_strv_release(&stamps);
                fs->xn.incomplete = true;
                fs->xn.known = false;
                return;
        }
        fs->xn.incomplete = false;
        for (size_t i = 0; i < stamps.n; i++) {
                struct xn_stamp key = { 0 }, *old;
                struct stamp_record rec;
                int r;

                if (strlen(stamps.v[i]) != STAMP_STAMP_LEN)
                        continue;
                strcpy(key.stamp, stamps.v[i]);
                old = fs->xn.per ? bsearch(&key, fs->xn.per, fs->xn.n_per, sizeof(key), cmp_xn_stamp)
                                 : NULL;
                if (old) {
                        per[n++] = *old; /* taken over: the old array goes below */
                        memset(&old->names, 0, sizeof(old->names));
                        continue;
                }
                r = stamp_store_record_load(fs->s, key.stamp, &rec);
                loaded++;
                if (r == -ENOENT)
                        continue; /* forgotten since the listing: it holds nothing */
                if (r < 0 && r != -EBADMSG && r != -EOPNOTSUPP) {
                        fs->xn.incomplete = true; /* maybe not for good: not kept */
                        continue;
                }
                per[n] = key; /* damaged or too new: known stays false for good */
                if (r == 0) {
                        xn_fill(&per[n], &rec);
                        stamp_record_release(&rec);
                }
                n++;
        }
        stamp_strv_release(&stamps);
        qsort(per, n, sizeof(*per), cmp_xn_stamp);
        xn_stamps_free(fs->xn.per, fs->xn.n_per);
        fs->xn.per = per;
        fs->xn.n_per = n;
        fs->xn.sum = sum;
        xn_union(fs);
        if (fs->debug)
                fuse_log(FUSE_LOG_DEBUG, "   xattr names: %zu stamps, %zu records read: %s\n", n,
                         loaded,
                         fs->xn.known        ? "known"
                         : fs->xn.incomplete ? "not known (a record failed: read again later)"
                                             : "not known");
}

/*
 * Tells fs->xn of a record the mount loaded (node_stamp(), before anything
 * of the stamp is read): a stamp not seen yet, or forgotten and taken
 * again with another root, has its names counted at once, not at the next
 * check, so that no file of it is answered EOPNOTSUPP for a name a sibling
 * holds. May take @rec's names.
 */
static void xn_see(struct fs *fs, struct stamp_record *rec)
{
        struct xn_stamp key = { 0 }, *e;

        strcpy(key.stamp, rec->stamp);
        stampfs_loop_lock(&fs->xn.lock);
        if (!fs->xn.built) /* the first xn_build() reads it */
                goto out;
        e = fs->xn.per ? bsearch(&key, fs->xn.per, fs->xn.n_per, sizeof(key), cmp_xn_stamp) : NULL;
        if (e && stamp_id_cmp(&e->root, &rec->root) == 0)
                goto out;
        if (!e) {
                struct xn_stamp *v = realloc(fs->xn.per, (fs->xn.n_per + 1) * sizeof(*v));
                size_t at = 0;
                if (!v) {
                        fs->xn.incomplete = true; /* read again at the next check */
                        fs->xn.known = false;
                        stamp_strv_release(&fs->xn.names);
                        goto out;
                }
                fs->xn.per = v;
                while (at < fs->xn.n_per && strcmp(v[at].stamp, key.stamp) < 0)
                        at++;
                memmove(&v[at + 1], &v[at], (fs->xn.n_per - at) * sizeof(*v));
                fs->xn.n_per++;
                e = &v[at];
                *e = key;
        }
        xn_fill(e, rec);
        xn_union(fs);
out:
        pthread_mutex_unlock(&fs->xn.lock);
}

/*
 * Whether getxattr of @name, which the entry asked about does not hold,
 * is answered EOPNOTSUPP rather than ENODATA: a security.* or system.*
 * name that no snapshot of the store holds (the records say so). ls -l
 * asks security.selinux and system.posix_acl_access of every file it
 * lists, two round trips each, unless an answer says the file system does
 * not support the name: then it stops asking for the rest of the device.
 * Other names, and any name while a record does not list its names
 * (older records), get ENODATA. With -o allow_other the kernel handles
 * POSIX ACLs itself (and caches them): EOPNOTSUPP would fail its
 * permission checks, so those get ENODATA too.
 */
static bool xattr_unsupported(struct fs *fs, const char *name)
{
        struct timespec now;
        bool ret = false;

        if (strncmp(name, "security.", 9) != 0 && strncmp(name, "system.", 7) != 0)
                return false;
        if (fs->acl && strncmp(name, "system.posix_acl_", 17) == 0)
                return false;
        clock_gettime(CLOCK_MONOTONIC, &now);
        stampfs_loop_lock(&fs->xn.lock);
        if (!fs->xn.built ||
            (now.tv_sec - fs->xn.checked.tv_sec) * 1000000000LL +
                            (now.tv_nsec - fs->xn.checked.tv_nsec) >=
                    (int64_t)(ROOT_TIMEOUT * 1e9)) {
                xn_build(fs);
                fs->xn.built = true;
                fs->xn.checked = now;
        }
        if (fs->xn.known) {
                bool found;
                (void)strv_find(&fs->xn.names, name, &found);
                ret = !found;
        }
        pthread_mutex_unlock(&fs->xn.lock);
        return ret;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct node *n = node_of(req, ino);
        struct stat st;

        if (n == &fs->root) {
                stampfs_loop_lock(&fs->root_lock);
                root_refresh(fs);
                node_stat(fs, n, &st);
                pthread_mutex_unlock(&fs->root_lock);
        } else {
                node_blocks(fs, n);
                node_stat(fs, n, &st);
        }
        fuse_reply_attr(req, &st, n->kind == K_ROOT ? ROOT_TIMEOUT : timeout_of(n));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
        struct node *n = node_of(req, ino);
        char buf[STAMP_TARGET_MAX + 1];

        if (n->type != STAMP_T_LNK) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        memcpy(buf, n->target, n->target_len);
        buf[n->target_len] = 0;
        fuse_reply_readlink(req, buf);
}

/*
 * A reader for node @n: an idle one, or a new one. Nodes do not keep what
 * a reader needs (a file's chunk list, up to 660 bytes, would cost that
 * much for every file the kernel knows): it is read again from the entry
 * in the directory's tree, which the cache mostly still holds.
 */
static int reader_get(struct fs *fs, struct node *n, struct stamp_file **ret)
{
        struct stamp_cache_ref *ref;
        struct stamp_entry e;
        struct stamp_tree t;
        const uint8_t *data;
        size_t len;
        int r;

        *ret = stamp_reader_pool_take(fs->readers, &n->idle);
        if (*ret)
                return 0;
        r = stamp_cache_get(fs->cache, fs->s, &n->parent_tree, STAMP_OBJ_TREE, &ref, &data, &len);
        if (r < 0)
                return r;
        stamp_tree_view(data, len, &t);
        r = stamp_tree_entry(&t, n->index, &e);
        if (r == 0 && (e.type != STAMP_T_REG || e.size != n->size))
                r = -EBADMSG; /* not the entry the node was made from: never serve it */
        if (r == 0)
                r = stamp_file_open(fs->s, &e, fs->cache, ret);
        stamp_cache_put(fs->cache, ref);
        return r;
}

/*
 * Hands @f back: kept for the next read of @n, within the pool's bounds,
 * or freed. Called before the read is answered: until then the kernel
 * holds @n's inode, so @n cannot be forgotten (and dropped) meanwhile.
 */
static void reader_put(struct fs *fs, struct node *n, struct stamp_file *f)
{
        stamp_reader_pool_put(fs->readers, &n->idle, f);
}

/*
 * Fills in what a regular file allocates, for st_blocks: a file copied
 * from the mount by cp or tar is copied sparse only if st_blocks says
 * it has holes (then they ask where, with SEEK_DATA and SEEK_HOLE: op_lseek()).
 * Done once the node is the kernel's, when it first asks for attributes,
 * not for lean listings (find needs none): a file's chunk lists are loaded
 * by the reader its reads take next. A file that cannot be read counts as
 * all data.
 */
static void node_blocks(struct fs *fs, struct node *n)
{
        struct stamp_file *f;
        uint64_t a = n->size;
        int r;

        if (n->kind != K_ENTRY || __atomic_load_n(&n->allocated, __ATOMIC_RELAXED) != BLOCKS_UNKNOWN)
                return;
        r = reader_get(fs, n, &f);
        if (r == 0) {
                r = stamp_file_allocated(f, BLOCKS_LISTS_MAX, &a);
                reader_put(fs, n, f);
        }
        if (r < 0 && r != -EBADMSG && r != -ENOENT && r != -EIO)
                return; /* out of memory, of descriptors...: all data this time, asked again */
        __atomic_store_n(&n->allocated, r < 0 ? n->size : a, __ATOMIC_RELAXED);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                     struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct node *n = node_of(req, ino);
        struct stamp_file *f;
        int64_t r;

        (void)fi;
        if (n->type != STAMP_T_REG || (whence != SEEK_DATA && whence != SEEK_HOLE)) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        if (off < 0 || (uint64_t)off >= n->size) {
                fuse_reply_err(req, ENXIO);
                return;
        }
        r = reader_get(fs, n, &f);
        if (r == 0) {
                r = stamp_file_seek(f, (uint64_t)off, whence == SEEK_DATA);
                reader_put(fs, n, f);
        }
        if (r >= 0)
                fuse_reply_lseek(req, (off_t)r);
        else if (r == -ENXIO || r == -ENOMEM)
                fuse_reply_err(req, (int)-r);
        else {
                report_damage(n, "file", (int)r);
                fuse_reply_err(req, EIO);
        }
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct node *n = node_of(req, ino);

        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
                fuse_reply_err(req, EROFS);
                return;
        }
        if (n->type != STAMP_T_REG) {
                fuse_reply_err(req, n->type == STAMP_T_DIR ? EISDIR : EACCES);
                return;
        }
        /*
         * ENOSYS tells the kernel (FUSE_CAP_NO_OPEN_SUPPORT) to stop sending
         * open and release and keep file contents cached: reads need no
         * handle here. Where the kernel lacks it, a plain success does.
         */
        if (fs_of(req)->no_open && !fs_of(req)->force_open) {
                fuse_reply_err(req, ENOSYS);
                return;
        }
        fi->keep_cache = 1;
        fuse_reply_open(req, fi);
}

/* The stream of directory @tree; with @take, a new one replaces the oldest. */
static struct stream *stream_of(struct fs *fs, const struct stamp_id *tree, bool take)
{
        struct stream *st;

        for (unsigned i = 0; i < STREAMS; i++)
                if (fs->streams[i].used && stamp_id_cmp(&fs->streams[i].tree, tree) == 0)
                        return &fs->streams[i];
        if (!take)
                return NULL;
        st = &fs->streams[fs->streams_clock++ % STREAMS];
        st->used = true;
        st->tree = *tree;
        st->next = 0;
        return st;
}

/*
 * The first read of @n: queue the regular files that follow it in its
 * directory, up to fs->prefetch_files of them and fs->prefetch_bytes
 * counted from @n on (so what is read ahead stays within the cache).
 */
static void prefetch_after(struct fs *fs, const struct node *n)
{
        struct stamp_cache_ref *ref;
        struct stamp_tree t;
        struct stream *st = NULL;
        const uint8_t *data;
        uint64_t ahead = 0;
        uint32_t from, to, j;
        size_t len;

        if (stamp_cache_get(fs->cache, fs->s, &n->parent_tree, STAMP_OBJ_TREE, &ref, &data,
                            &len) < 0)
                return;
        stamp_tree_view(data, len, &t);
        to = n->index + 1 + fs->prefetch_files;
        if (to > t.count || to < n->index)
                to = t.count;

        pthread_mutex_lock(&fs->streams_lock);
        st = stream_of(fs, &n->parent_tree, true);
        from = st->next > n->index + 1 ? st->next : n->index + 1;
        pthread_mutex_unlock(&fs->streams_lock);

        for (j = n->index + 1; j < to; j++) {
                struct stamp_entry e;
                if (stamp_tree_entry(&t, j, &e) < 0)
                        break;
                if (e.type != STAMP_T_REG || e.size == 0)
                        continue;
                if (ahead >= fs->prefetch_bytes)
                        break;
                if (j >= from) {
                        /*
                         * Its node, if the kernel knows it: prefetch_done() fills its
                         * pages. Only a node made from this very entry: names of a
                         * hardlink group that share the inode hold the same content
                         * reference, but a stray hash collision must not mix bytes.
                         */
                        struct node *held = node_hold(fs, entry_ino(n->stamp, n->parent_ino, &e));
                        if (held && (held->index != j ||
                                     stamp_id_cmp(&held->parent_tree, &n->parent_tree) != 0)) {
                                node_unref(fs, held, 1);
                                held = NULL;
                        }
                        int r = stamp_prefetch_file(fs->pf, &e, fs->prefetch_bytes - ahead, held);
                        if (r < 0 && held)
                                node_unref(fs, held, 1);
                        if (r == -EAGAIN)
                                break; /* the workers are behind: enough queued */
                }
                ahead += e.size;
        }
        pthread_mutex_lock(&fs->streams_lock);
        st = stream_of(fs, &n->parent_tree, false);
        if (st && st->next < j)
                st->next = j; /* two threads may queue a file twice: the cache loads it once */
        pthread_mutex_unlock(&fs->streams_lock);
        stamp_cache_put(fs->cache, ref);
}

/*
 * A file read ahead is in the cache: hand its first @len bytes to the
 * kernel's page cache too (FUSE_NOTIFY_STORE), so that the read which
 * comes next needs no request at all. Only whole pages, or the file's
 * last; failures (the kernel forgot the inode, the mount is going) only
 * mean the read will ask.
 */
static void prefetch_done(void *hook_data, struct stamp_file *f, uint64_t len, void *job_data)
{
        struct fs *fs = hook_data;
        struct node *n = job_data;
        uint64_t off = 0;
        char *buf = NULL;

        if (!n)
                return;
        /* For test-mount: a push that comes late, after a SIGTERM (stop_notifying()). */
        if (fs->test_stall_size && n->size == fs->test_stall_size)
                usleep(fs->test_stall_ms * 1000u);
        if (len < n->size)
                len -= len % (uint64_t)fs->page_size;
        while (f && fs->se && off < len) {
                size_t want = len - off > PUSH_MAX ? PUSH_MAX : (size_t)(len - off), bytes = 0;
                struct fuse_bufvec bv = FUSE_BUFVEC_INIT(want);
                struct stamp_span span;
                ssize_t got;
                int r;

                /*
                 * Straight from the cache when one chunk holds it all (most
                 * small files): libfuse would copy a vector of several.
                 */
                got = stamp_file_spans(f, off, want, &span, 1, &bytes);
                if (got == 1 && bytes == want) {
                        bv.buf[0].mem = (void *)span.data;
                } else {
                        if (got == 1)
                                stamp_cache_put(fs->cache, span.ref);
                        span.ref = NULL;
                        if (!buf && !(buf = malloc(PUSH_MAX)))
                                break;
                        if (stamp_file_pread(f, buf, want, off) != (ssize_t)want)
                                break;
                        bv.buf[0].mem = buf;
                }
                r = -ESHUTDOWN;
                if (notify_begin(fs)) {
                        r = fuse_lowlevel_notify_store(fs->se, (fuse_ino_t)(uintptr_t)n,
                                                       (off_t)off, &bv, 0);
                        notify_end(fs);
                }
                stamp_cache_put(fs->cache, span.ref);
                if (r != 0)
                        break;
                off += want;
        }
        free(buf);
        node_unref(fs, n, 1);
}

/*
 * The cache frees chunks in whatever order they age, so the heap fills
 * with holes that malloc keeps mapped: after a few GB read, RSS would be
 * far above the cache's bound. Every TRIM_EVERY bytes served, RSS is
 * checked, and above fs->rss_trim the free pages go back to the system (a
 * few milliseconds). Not every time: each page given back costs a fault
 * when malloc hands it out again, and on a VM faults are dear (a tenth of
 * a cold read's CPU when trimming every 64 MiB).
 */
static void trim_now_and_then(struct fs *fs, size_t bytes)
{
        uint64_t before = __atomic_fetch_add(&fs->served, bytes, __ATOMIC_RELAXED);
        unsigned long size, resident;
        FILE *f;

        if (before / TRIM_EVERY == (before + bytes) / TRIM_EVERY)
                return;
        f = fopen("/proc/self/statm", "re");
        if (!f)
                return;
        if (fscanf(f, "%lu %lu", &size, &resident) == 2 &&
            (uint64_t)resident * (uint64_t)fs->page_size > fs->rss_trim) {
                stampfs_loop_may_block(); /* a few milliseconds */
                (void)malloc_trim(0);
        }
        fclose(f);
}

/* op_read() through a buffer; puts @f back. */
static void read_copy(fuse_req_t req, struct node *n, struct stamp_file *f, size_t size, off_t off)
{
        char *buf = malloc(size ? size : 1);
        ssize_t got = buf ? stamp_file_pread(f, buf, size, (uint64_t)off) : -ENOMEM;

        reader_put(fs_of(req), n, f);
        if (got < 0) {
                report_damage(n, "file", (int)got);
                fuse_reply_err(req, got == -ENOMEM ? ENOMEM : EIO);
        } else
                fuse_reply_buf(req, buf, (size_t)got);
        free(buf);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct node *n = node_of(req, ino);
        struct stamp_span spans[READ_SPANS];
        struct iovec iov[READ_SPANS];
        struct stamp_file *f;
        size_t bytes = 0;
        ssize_t got;
        int r;

        if (n->type != STAMP_T_REG || off < 0) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        r = reader_get(fs, n, &f);
        if (r < 0) {
                report_damage(n, "file", r);
                fuse_reply_err(req, r == -ENOMEM ? ENOMEM : EIO);
                return;
        }
        if (off == 0 && fs->pf && n->kind == K_ENTRY)
                prefetch_after(fs, n);
        /* Copying a large reply takes a while: readers in parallel, in parallel. */
        if (size >= HAND_OVER_READ)
                stampfs_loop_may_block();
        /* The reply is written straight from the cached chunks: no copy here. */
        got = stamp_file_spans(f, (uint64_t)off, size, spans, READ_SPANS, &bytes);
        if (got == READ_SPANS && bytes < size && (uint64_t)off + bytes < n->size) {
                /* Chunks too small for the spans: a short reply would read as EOF. */
                for (ssize_t i = 0; i < got; i++)
                        stamp_cache_put(fs->cache, spans[i].ref);
                read_copy(req, n, f, size, off);
                return;
        }
        reader_put(fs, n, f);
        if (got < 0) {
                report_damage(n, "file", (int)got);
                fuse_reply_err(req, got == -ENOMEM ? ENOMEM : EIO);
                return;
        }
        for (ssize_t i = 0; i < got; i++) {
                iov[i].iov_base = (void *)spans[i].data;
                iov[i].iov_len = spans[i].len;
        }
        fuse_reply_iov(req, iov, (int)got);
        for (ssize_t i = 0; i < got; i++)
                stamp_cache_put(fs->cache, spans[i].ref);
        trim_now_and_then(fs, bytes);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        fuse_reply_err(req, 0);
}

/* What a listing of directory node @n reads: the stamps, or its tree. */
static int dir_handle_fill(struct fs *fs, const struct node *n, struct dir_handle *d)
{
        if (n->kind == K_ROOT) {
                struct stamp_id sum;

                if (stamp_store_list(fs->s, &d->stamps) < 0)
                        return -EIO;
                /*
                 * The kernel keeps this listing until the root's mtime
                 * moves. Listed here and not yet seen by getattr (a stamp
                 * taken a moment ago), then gone again: without this, the
                 * mtime would never move and the listing would keep it.
                 */
                if (stamps_checksum(&d->stamps, &sum) == 0) {
                        stampfs_loop_lock(&fs->root_lock);
                        root_shows(fs, &sum);
                        pthread_mutex_unlock(&fs->root_lock);
                }
                return 0;
        }
        if (n->type != STAMP_T_DIR)
                return -ENOTDIR;
        return tree_get(fs, n, &d->ref, &d->t);
}

static void dir_handle_release(struct fs *fs, struct dir_handle *d)
{
        stamp_strv_release(&d->stamps);
        stamp_cache_put(fs->cache, d->ref);
        d->ref = NULL;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct node *n = node_of(req, ino);
        struct dir_handle *d = calloc(1, sizeof(*d));
        int r;

        /*
         * As for files: ENOSYS stops opendir and releasedir for good
         * (FUSE_CAP_NO_OPENDIR_SUPPORT), half of the requests a `find`
         * makes. The kernel then caches every listing (FOPEN_CACHE_DIR);
         * the root's stays right through its mtime (root_refresh()).
         */
        if (fs->no_opendir && !fs->force_open) {
                free(d);
                fuse_reply_err(req, ENOSYS);
                return;
        }
        if (!d) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        r = dir_handle_fill(fs, n, d);
        if (r < 0) {
                free(d);
                fuse_reply_err(req, -r);
                return;
        }
        if (n->kind != K_ROOT) {
                fi->cache_readdir = 1;
                fi->keep_cache = 1;
        }
        fi->fh = (uint64_t)(uintptr_t)d;
        if (fuse_reply_open(req, fi) != 0) {
                dir_handle_release(fs, d);
                free(d);
        }
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;

        dir_handle_release(fs_of(req), d);
        free(d);
        fuse_reply_err(req, 0);
}

/*
 * Entry @i of a directory listing (after "." and ".."): its name and a
 * node. In a lean listing, an entry that is not a directory is described
 * in @tmp instead, which *@ret then points to: the kernel gets no inode
 * for it.
 */
static int dir_item(fuse_req_t req, struct node *dir, struct dir_handle *d, size_t i, bool lean,
                    struct node *tmp, char *name, size_t name_size, struct node **ret)
{
        struct stamp_entry e;
        int r;

        if (dir->kind == K_ROOT) {
                if (i >= d->stamps.n) {
                        snprintf(name, name_size, "latest");
                        return node_latest(fs_of(req), ret);
                }
                snprintf(name, name_size, "%s", d->stamps.v[i]);
                r = node_stamp(fs_of(req), name, ret);
                if (r == -EIO) {
                        /*
                         * Its record cannot be read (node_stamp() said why): it is
                         * listed all the same, without an inode, so that the stamps
                         * after it are too and a lookup of it fails with EIO.
                         */
                        memset(tmp, 0, sizeof(*tmp));
                        tmp->kind = K_STAMP;
                        tmp->type = STAMP_T_DIR;
                        tmp->mode = S_IFDIR;
                        tmp->ino = hash_ino("stamp", 5, name, STAMP_STAMP_LEN);
                        *ret = tmp;
                        return 0;
                }
                return r;
        }
        r = stamp_tree_entry(&d->t, (uint32_t)i, &e);
        if (r < 0)
                return -EIO;
        memcpy(name, e.name, e.name_len);
        name[e.name_len] = 0;
        if (lean && e.type != STAMP_T_DIR) {
                memset(tmp, 0, sizeof(*tmp));
                node_fill(dir, &e, (uint32_t)i, tmp);
                *ret = tmp;
                return 0;
        }
        return node_from_entry(dir, &e, (uint32_t)i, ret);
}

static size_t dir_count(struct node *dir, struct dir_handle *d)
{
        if (dir->kind == K_ROOT)
                return d->stamps.n + (d->stamps.n > 0); /* `latest` once there is one */
        return d->t.count;
}

/*
 * Listing offsets. In a tree, an entry's is its position (+1, after "."
 * and ".."). The root's list of stamps is read anew by each call when the
 * kernel skips opendir, and a stamp taken or pruned between two calls
 * would shift positions (a stamp listed twice, or skipped): there an
 * entry's offset is its stamp read as a number (stamps are times, so these
 * sort as they do), and `latest`, last, gets the largest.
 */
static off_t stamp_offset(const char *stamp)
{
        off_t v = 0;

        for (const char *p = stamp; *p; p++)
                if (*p >= '0' && *p <= '9')
                        v = v * 10 + (*p - '0');
        return v; /* YYYYMMDDhhmmss: above 2 ("." and "..") for any valid stamp */
}

static off_t dir_offset(const struct node *dir, const struct dir_handle *d, size_t pos)
{
        if (dir->kind != K_ROOT || pos < 2)
                return (off_t)(pos + 1);
        if (pos - 2 < d->stamps.n)
                return stamp_offset(d->stamps.v[pos - 2]);
        return INT64_MAX;
}

/* Where a listing resumes after the entry whose offset was @off. */
static size_t dir_resume(const struct node *dir, const struct dir_handle *d, off_t off)
{
        size_t lo = 0, hi = d->stamps.n;

        if (off < 0)
                return 0;
        if (dir->kind != K_ROOT || off < 2)
                return (size_t)off;
        if (off == INT64_MAX)
                return SIZE_MAX; /* after `latest` */
        while (lo < hi) { /* the first stamp above @off */
                size_t mid = lo + (hi - lo) / 2;
                if (stamp_offset(d->stamps.v[mid]) <= off)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo + 2;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
        struct fs *fs = fs_of(req);
        struct node *dir = node_of(req, ino);
        struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh, own = { 0 };
        char *buf, name[STAMP_NAME_MAX + 1];
        struct stamp_id subdirs[SUBDIRS_AHEAD];
        size_t used = 0, count, n_subdirs = 0;
        bool lean = plus && dir->kind != K_ROOT &&
                    __atomic_load_n(&fs->lean_misses, __ATOMIC_RELAXED) < LEAN_MISSES;
        bool left_out = false;
        struct node tmp;
        int err = 0;

        if (!d) { /* no opendir (see op_opendir): each call reads its own */
                d = &own;
                err = dir_handle_fill(fs, dir, d);
                if (err < 0) {
                        fuse_reply_err(req, -err);
                        return;
                }
        }
        count = dir_count(dir, d);
        buf = malloc(size ? size : 1); /* libfuse fills each entry and its padding */
        if (!buf) {
                dir_handle_release(fs, &own);
                fuse_reply_err(req, ENOMEM);
                return;
        }
        for (size_t pos = dir_resume(dir, d, off); pos < count + 2; pos++) {
                struct fuse_entry_param e = { 0 };
                struct node *n = NULL;
                size_t need;

                if (pos < 2) {
                        /* "." and "..": no lookup counts for them */
                        snprintf(name, sizeof(name), pos == 0 ? "." : "..");
                        e.attr.st_ino = pos == 0 ? dir->ino
                                        : dir->kind == K_ENTRY ? dir->parent_ino : FUSE_ROOT_ID;
                        e.attr.st_mode = S_IFDIR;
                } else {
                        int r = dir_item(req, dir, d, pos - 2, lean, &tmp, name, sizeof(name), &n);
                        if (r == -ENOENT)
                                continue; /* a stamp pruned since opendir */
                        if (r < 0) {
                                err = -r;
                                break;
                        }
                        if (plus && n != &tmp) {
                                n = node_publish(fs, n); /* counted as a lookup */
                                node_blocks(fs, n);
                        }
                        node_stat(fs, n, &e.attr);
                        /* nodeid 0: the kernel takes only d_ino and d_type */
                        e.ino = n == &tmp ? 0 : (fuse_ino_t)(uintptr_t)n;
                        e.attr_timeout = e.entry_timeout = timeout_of(n);
                }
                if (plus)
                        need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e,
                                                      dir_offset(dir, d, pos));
                else
                        need = fuse_add_direntry(req, buf + used, size - used, name, &e.attr,
                                                 dir_offset(dir, d, pos));
                if (need > size - used) {
                        if (n && n != &tmp && plus)
                                node_unref(fs, n, 1); /* not sent: no lookup */
                        else if (n && n != &tmp)
                                node_free(n);
                        break;
                }
                used += need;
                left_out |= n == &tmp && dir->kind != K_ROOT;
                if (n && n->type == STAMP_T_DIR && n->kind == K_ENTRY &&
                    n_subdirs < SUBDIRS_AHEAD)
                        subdirs[n_subdirs++] = n->tree;
                if (n && n != &tmp && !plus)
                        node_free(n);
        }
        if (left_out) /* before the kernel can look them up */
                __atomic_store_n(&dir->listed_lean, true, __ATOMIC_SEQ_CST);
        if (err && used == 0)
                fuse_reply_err(req, err);
        else
                fuse_reply_buf(req, buf, used);
        free(buf);
        dir_handle_release(fs, &own);
        /*
         * The subdirectories just listed are likely listed next (find,
         * cp -a, du descend into them): load their trees meanwhile.
         */
        for (size_t i = 0; i < n_subdirs && fs->pf; i++)
                if (stamp_prefetch_tree(fs->pf, &subdirs[i]) < 0)
                        break;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
        do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
        do_readdir(req, ino, size, off, fi, true);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
        struct node *n = node_of(req, ino);
        const uint8_t *p = n->xattrs, *end = n->xattrs + n->xattrs_len;
        const char *xn;
        const uint8_t *v;
        size_t nl, vl;

        /* For test-mount: a handler that waits without saying so (fs/loop.c's watchdog). */
        if (fs_of(req)->test_stall_ms && strcmp(name, "user.stampfs.test-stall") == 0)
                usleep(fs_of(req)->test_stall_ms * 1000u);
        while (p && stamp_xattr_next(&p, end, &xn, &nl, &v, &vl) == 1) {
                if (nl != strlen(name) || memcmp(xn, name, nl) != 0)
                        continue;
                if (size == 0)
                        fuse_reply_xattr(req, vl);
                else if (size < vl)
                        fuse_reply_err(req, ERANGE);
                else
                        fuse_reply_buf(req, (const char *)v, vl);
                return;
        }
        fuse_reply_err(req, xattr_unsupported(fs_of(req), name) ? EOPNOTSUPP : ENODATA);
}

/*
 * Whether the caller holds CAP_SYS_ADMIN, as the kernel asks before it
 * lists trusted.* names on a local file system. Read from its /proc
 * status (only when a trusted.* name is there to hide); uid 0 if that is
 * gone.
 */
static bool caller_sys_admin(fuse_req_t req)
{
        const struct fuse_ctx *ctx = fuse_req_ctx(req);
        char path[64], line[256];
        bool ret = ctx->uid == 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%ld/status", (long)ctx->pid);
        f = ctx->pid > 0 ? fopen(path, "re") : NULL;
        if (!f)
                return ret;
        while (fgets(line, sizeof(line), f)) {
                unsigned long long caps;
                if (sscanf(line, "CapEff: %llx", &caps) == 1) {
                        ret = caps & (1ull << 21); /* CAP_SYS_ADMIN */
                        break;
                }
        }
        fclose(f);
        return ret;
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
        struct node *n = node_of(req, ino);
        const uint8_t *p = n->xattrs, *end = n->xattrs + n->xattrs_len;
        char *buf = malloc(n->xattrs_len + 1);
        size_t used = 0;
        const char *xn;
        const uint8_t *v;
        size_t nl, vl;
        int admin = -1;

        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        while (p && stamp_xattr_next(&p, end, &xn, &nl, &v, &vl) == 1) {
                /* trusted.* are listed to CAP_SYS_ADMIN only, as ext4 does. */
                if (nl > 8 && memcmp(xn, "trusted.", 8) == 0) {
                        if (admin < 0)
                                admin = caller_sys_admin(req);
                        if (!admin)
                                continue;
                }
                memcpy(buf + used, xn, nl);
                used += nl;
                buf[used++] = 0;
        }
        if (size == 0)
                fuse_reply_xattr(req, used);
        else if (size < used)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, buf, used);
        free(buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
        struct statvfs st;

        stampfs_loop_may_block(); /* the store's file system may be slow to answer */
        if (statvfs(stamp_store_path(fs_of(req)->s), &st) < 0) {
                fuse_reply_err(req, errno);
                return;
        }
        st.f_bfree = st.f_bavail = 0; /* read-only: nothing can be written */
        st.f_ffree = st.f_favail = 0;
        st.f_namemax = STAMP_NAME_MAX;
        fuse_reply_statfs(req, &st);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
        struct fs *fs = userdata;

        fs->no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
        /* The root's listing may be cached only if readdir checks its mtime. */
        fs->no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) &&
                         (conn->capable & FUSE_CAP_AUTO_INVAL_DATA);
        if (fs->no_opendir)
                conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
        if (conn->capable & FUSE_CAP_READDIRPLUS)
                conn->want |= FUSE_CAP_READDIRPLUS;
        if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
                conn->want |= FUSE_CAP_CACHE_SYMLINKS;
        /*
         * default_permissions checks the stored POSIX ACLs too (read from
         * system.posix_acl_access, cached by the kernel), not only the mode
         * bits: a named user denied in the source is denied here. Only
         * with allow_other: otherwise only the mounting user gets in, whose
         * snapshot held only what it could read (root passes any ACL), and
         * the first access of each inode would cost a GETXATTR round trip.
         */
        if (fs->acl && (conn->capable & FUSE_CAP_POSIX_ACL))
                conn->want |= FUSE_CAP_POSIX_ACL;
        conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO; /* plus always: one call fills the dcache */
        conn->max_readahead = 1u << 20;
        conn->max_read = 1u << 20; /* must equal the max_read mount option */
        conn->max_write = 1u << 20; /* negotiates 1 MiB requests (max_pages) */
}

static void op_erofs(fuse_req_t req)
{
        fuse_reply_err(req, EROFS);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
        op_erofs(req);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
        op_erofs(req);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
        op_erofs(req);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        op_erofs(req);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
        op_erofs(req);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
        op_erofs(req);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
        op_erofs(req);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
        op_erofs(req);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
        op_erofs(req);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
        op_erofs(req);
}

static const struct fuse_lowlevel_ops ops = {
        .init = op_init,
        .lookup = op_lookup,
        .forget = op_forget,
        .forget_multi = op_forget_multi,
        .getattr = op_getattr,
        .readlink = op_readlink,
        .open = op_open,
        .read = op_read,
        .lseek = op_lseek,
        .release = op_release,
        .opendir = op_opendir,
        .readdir = op_readdir,
        .readdirplus = op_readdirplus,
        .releasedir = op_releasedir,
        .getxattr = op_getxattr,
        .listxattr = op_listxattr,
        .statfs = op_statfs,
        .setattr = op_setattr,
        .mknod = op_mknod,
        .mkdir = op_mkdir,
        .unlink = op_unlink,
        .rmdir = op_unlink,
        .symlink = op_symlink,
        .rename = op_rename,
        .link = op_link,
        .setxattr = op_setxattr,
        .removexattr = op_removexattr,
        .create = op_create,
};

/* The store is about to read or to wait for another thread's read. */
static void store_waits(void)
{
        (void)stampfs_loop_may_block();
}

/* ---- command line ---- */

struct options {
        unsigned cache_mib;
        unsigned prefetch;
        unsigned spin_us;
        char *cache_mib_arg, *prefetch_arg, *spin_arg; /* as given; parsed strictly */
        int full_listings;
        int help, version;
};

#define OPT(t, p) { t, offsetof(struct options, p), 1 }
static const struct fuse_opt opt_spec[] = {
        { "cache_size=%s", offsetof(struct options, cache_mib_arg), 0 },
        { "prefetch=%s", offsetof(struct options, prefetch_arg), 0 },
        { "spin=%s", offsetof(struct options, spin_arg), 0 },
        OPT("full_listings", full_listings),
        OPT("-h", help),
        OPT("--help", help),
        OPT("-V", version),
        OPT("--version", version),
        FUSE_OPT_END
};

static void usage(const char *prog)
{
        printf("Usage: %s STORE MOUNTPOINT [-f] [-d] [-s] [-o OPTION[,OPTION...]]\n"
               "\n"
               "Mount every snapshot of a stampfs store at MOUNTPOINT, read-only: one\n"
               "directory per stamp, and `latest`, a symlink to the newest that is not a\n"
               "pre-restore snapshot. Snapshots taken or pruned while mounted appear and\n"
               "vanish within a second.\n"
               "Unmount with `fusermount3 -u MOUNTPOINT` (or umount as root).\n"
               "\n"
               "Options:\n"
               "  -f                  stay in the foreground\n"
               "  -d                  debug output (implies -f)\n"
               "  -s                  answer requests on one thread only (for debugging)\n"
               "  -o cache_size=MIB   shared cache of decompressed chunks and trees (default 128)\n"
               "  -o prefetch=N       when a file is first read, read the next N files of its\n"
               "                      directory ahead into the cache (default 32, 0 = off)\n"
               "  -o spin=USEC        after answering a request, poll for the next one this\n"
               "                      long before sleeping (default 50, 0 = sleep at once)\n"
               "  -o full_listings    listings carry every entry's attributes from the start\n"
               "                      (by default, only once programs stat what they list)\n"
               "  -o allow_other      let other users in (permissions are still checked)\n"
               "  -o <fuse option>    any other FUSE mount option (see fuse(8))\n"
               "  -h, --help          this help\n"
               "  -V, --version       print the version\n"
               "\n"
               "Always mounted ro,default_permissions,nosuid,nodev.\n"
               "\n"
               "Exit status: 0 mounted (in the background), or unmounted cleanly (-f);\n"
               "1 the mount failed; 2 usage error; 3 no such store, not a store, or the\n"
               "mountpoint is missing or in use.\n",
               prog);
}

/* Set once daemonized: stderr is /dev/null from then on. */
static bool log_to_syslog;

static void log_func(enum fuse_log_level level, const char *fmt, va_list ap)
{
        if (log_to_syslog) {
                /* fuse_log_level has syslog's numbering */
                vsyslog(LOG_DAEMON | (int)level, fmt, ap);
                return;
        }
        /* libfuse writes some lines in pieces: the name goes before a line only */
        static bool mid_line;
        char buf[1024];
        int n;

        n = vsnprintf(buf, sizeof(buf), fmt, ap);
        if (n <= 0)
                return;
        if ((size_t)n >= sizeof(buf)) { /* cut: end the line all the same */
                memcpy(buf + sizeof(buf) - 5, "...\n", 5);
                n = (int)sizeof(buf) - 1;
        }
        flockfile(stderr);
        if (!mid_line)
                fputs("stampfs: ", stderr);
        fputs(buf, stderr);
        mid_line = buf[n - 1] != '\n';
        funlockfile(stderr);
}

/* Undoes mountinfo's escapes in place: space, tab, newline and backslash as \ooo. */
static void unescape_mountinfo(char *s)
{
        char *w = s;

        for (const char *r = s; *r; w++) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
                    r[3] >= '0' && r[3] <= '7') {
                        *w = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
                        r += 4;
                } else
                        *w = *r++;
        }
        *w = 0;
}

/*
 * Lets the kernel read ahead 1 MiB on this mount (it defaults to 128 KiB
 * for FUSE). The device number comes from mountinfo: a stat() of the
 * mountpoint would wait for this very process to answer it.
 */
static void raise_readahead(const char *mountpoint)
{
        char line[4096], path[128];
        unsigned maj = 0, min = 0;
        bool found = false;
        FILE *f = fopen("/proc/self/mountinfo", "re");

        if (!f)
                return;
        while (!found && fgets(line, sizeof(line), f)) {
                char mnt[PATH_MAX];
                if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &maj, &min, mnt) != 3)
                        continue;
                unescape_mountinfo(mnt);
                found = strcmp(mnt, mountpoint) == 0 && strstr(line, " fuse.stampfs ");
        }
        fclose(f);
        if (!found)
                return;
        snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
        f = fopen(path, "we");
        if (!f)
                return;
        fputs("1024", f);
        fclose(f);
}

/* Checks the mountpoint before libfuse does, to give a clear message. */
/* A whole number 0..@max, digits only. */
static int parse_count(const char *s, unsigned max, unsigned *ret)
{
        unsigned long v;

        if (parse_count_max(s, max, &v) < 0)
                return -1;
        *ret = (unsigned)v;
        return 0;
}

/* Whether the -o options left in @a hold @opt. */
static bool has_mount_opt(const struct fuse_args *a, const char *opt)
{
        for (int i = 0; i < a->argc; i++) {
                const char *list = NULL;
                if (strcmp(a->argv[i], "-o") == 0 && i + 1 < a->argc)
                        list = a->argv[++i];
                else if (strncmp(a->argv[i], "-o", 2) == 0)
                        list = a->argv[i] + 2;
                for (const char *p = list; p && *p;) {
                        size_t n = strcspn(p, ",");
                        if (n == strlen(opt) && strncmp(p, opt, n) == 0)
                                return true;
                        p += n + (p[n] == ',');
                }
        }
        return false;
}

static int check_mountpoint(const char *mnt)
{
        char parent[PATH_MAX];
        struct stat st, pst;

        if (stat(mnt, &st) < 0) {
                if (errno == ENOTCONN)
                        fprintf(stderr, "stampfs: mountpoint '%s': %s (a mount whose server "
                                        "died is still there: fusermount3 -u it first)\n",
                                mnt, strerror(errno));
                else
                        fprintf(stderr, "stampfs: mountpoint '%s': %s\n", mnt, strerror(errno));
                return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
                fprintf(stderr, "stampfs: mountpoint '%s': not a directory\n", mnt);
                return -1;
        }
        snprintf(parent, sizeof(parent), "%s/..", mnt);
        if (stat(parent, &pst) == 0 && (pst.st_dev != st.st_dev || pst.st_ino == st.st_ino) &&
            strcmp(mnt, "/") != 0) {
                fprintf(stderr, "stampfs: mountpoint '%s': already in use (something is mounted there)\n",
                        mnt);
                return -1;
        }
        if (access("/dev/fuse", R_OK | W_OK) < 0) {
                fprintf(stderr, "stampfs: /dev/fuse: %s (is the fuse module loaded, and are you "
                                "allowed to use it?)\n",
                        strerror(errno));
                return -1;
        }
        /* The kernel's misc device 10:229; anything else bound there fails later, unclearly. */
        if (stat("/dev/fuse", &st) < 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 10 ||
            minor(st.st_rdev) != 229) {
                fprintf(stderr, "stampfs: /dev/fuse: not the FUSE device (a character device "
                                "10:229); something else is there, or bound over it\n");
                return -1;
        }
        return 0;
}

static int open_store(const char *dir, struct stamp_store **ret)
{
        int r = stamp_store_open(dir, ret);

        if (r == -ENOENT)
                fprintf(stderr, "stampfs: store '%s': no such directory\n", dir);
        else if (r == -EMEDIUMTYPE)
                fprintf(stderr, "stampfs: store '%s': not a stampfs store (no config file)\n", dir);
        else if (r == -EOPNOTSUPP)
                fprintf(stderr, "stampfs: store '%s': unsupported format version\n", dir);
        else if (r == -EROFS)
                fprintf(stderr, "stampfs: store '%s': %s\n", dir, STAMP_STORE_EROFS_MESSAGE);
        else if (r == -ENOTDIR)
                fprintf(stderr, "stampfs: store '%s': %s\n", dir, STAMP_STORE_NOTDIR_MESSAGE);
        else if (r < 0)
                fprintf(stderr, "stampfs: store '%s': %s\n", dir,
                        r == -EBADMSG ? STAMP_STORE_CONFIG_MESSAGE : strerror(-r));
        return r;
}

/* Positional arguments: STORE then MOUNTPOINT; everything else goes to libfuse. */
struct positional {
        char *store, *mountpoint;
        int extra;
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
        struct positional *p = data;

        if (key != FUSE_OPT_KEY_NONOPT)
                return 1;
        if (!p->store)
                p->store = strdup(arg);
        else if (!p->mountpoint)
                p->mountpoint = strdup(arg);
        else
                p->extra++;
        return 0;
}

/*
 * "-ofsname=stampfs:STORE", with the commas and backslashes of STORE
 * escaped: libfuse splits -o at unescaped commas.
 */
static int fsname_arg(const char *store, char **ret)
{
        static const char head[] = "-ofsname=stampfs:";
        size_t n = strlen(store);
        char *s = malloc(sizeof(head) + 2 * n), *w;

        if (!s)
                return -ENOMEM;
        w = stpcpy(s, head);
        for (const char *r = store; *r; r++) {
                if (*r == ',' || *r == '\\')
                        *w++ = '\\';
                *w++ = *r;
        }
        *w = 0;
        *ret = s;
        return 0;
}

int main(int argc, char **argv)
{
        struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
        struct options o = { .cache_mib = 128, .prefetch = 32, .spin_us = SPIN_US };
        struct positional pos = { 0 };
        struct fuse_cmdline_opts cl = { 0 };
        struct fuse_session *se = NULL;
        struct fs fs = { 0 };
        char *fsname = NULL, *mnt_abs = NULL;
        int ret = 1;

        fuse_set_log_func(log_func);
        /* 16 loop threads would otherwise get 16 malloc arenas of their own. */
        (void)mallopt(M_ARENA_MAX, 2);
        ret = 2;
        if (fuse_opt_parse(&args, &o, opt_spec, NULL) < 0)
                goto out;
        if (o.help || o.version) {
                if (o.help)
                        usage(argv[0]);
                else
                        printf("stampfs %s (libfuse %s)\n", STAMP_VERSION, fuse_pkgversion());
                ret = 0;
                goto out;
        }
        if (fuse_opt_parse(&args, &pos, NULL, opt_proc) < 0)
                goto out;
        if (!pos.store || !pos.mountpoint || pos.extra) {
                fprintf(stderr, "stampfs: expected STORE and MOUNTPOINT\nTry 'stampfs --help'.\n");
                goto out;
        }
        /* Digits only: sscanf's %u took 4294967297 for 1. */
        if (o.cache_mib_arg && parse_count(o.cache_mib_arg, 65536, &o.cache_mib) < 0)
                o.cache_mib = 0;
        if (o.cache_mib < 1) {
                fprintf(stderr, "stampfs: cache_size must be 1..65536 MiB\n");
                goto out;
        }
        if (o.prefetch_arg && parse_count(o.prefetch_arg, 4096, &o.prefetch) < 0) {
                fprintf(stderr, "stampfs: prefetch must be 0..4096 files\n");
                goto out;
        }
        if (o.spin_arg && parse_count(o.spin_arg, SPIN_US_MAX, &o.spin_us) < 0) {
                fprintf(stderr, "stampfs: spin must be 0..%u microseconds\n", SPIN_US_MAX);
                goto out;
        }
        /* The daemon's cwd becomes /: a relative STORE must not stay relative. */
        char *store_abs = realpath(pos.store, NULL);
        if (store_abs) {
                free(pos.store);
                pos.store = store_abs;
        }
        /*
         * FUSE's own options are checked here, before the store is opened:
         * an unknown -o is a usage error. Nothing is mounted yet.
         */
        if (fsname_arg(pos.store, &fsname) < 0 ||
            fuse_opt_add_arg(&args, "-oro,nosuid,nodev,default_permissions,subtype=stampfs,max_read=1048576") < 0 ||
            fuse_opt_add_arg(&args, fsname) < 0) {
                ret = 1;
                goto out;
        }
        if (fuse_parse_cmdline(&args, &cl) != 0)
                goto out;
        fs.debug = cl.debug;
        fs.acl = has_mount_opt(&args, "allow_other");
        se = fuse_session_new(&args, &ops, sizeof(ops), &fs);
        if (!se) {
                fprintf(stderr, "Try 'stampfs --help'.\n");
                goto out;
        }
        ret = 3;
        if (open_store(pos.store, &fs.s) < 0)
                goto out;
        if (check_mountpoint(pos.mountpoint) < 0)
                goto out;
        ret = 1;
        mnt_abs = realpath(pos.mountpoint, NULL);
        (void)stat(pos.store, &fs.store_st);
        /* Handlers about to wait for the store let another loop thread lead. */
        stamp_store_set_wait_hook(fs.s, store_waits);
        fs.cache = stamp_cache_new((size_t)o.cache_mib << 20);
        if (!fs.cache || stamp_reader_pool_new(IDLE_BUDGET, IDLE_PER_NODE, &fs.readers) < 0)
                goto out;
        fs.rss_trim = ((uint64_t)o.cache_mib << 20) + RSS_SLACK;
        fs.root.kind = K_ROOT;
        fs.root.type = STAMP_T_DIR;
        fs.root.mode = S_IFDIR | 0755;
        fs.root.ino = FUSE_ROOT_ID;
        pthread_mutex_init(&fs.nodes_lock, NULL);
        pthread_mutex_init(&fs.root_lock, NULL);
        pthread_mutex_init(&fs.streams_lock, NULL);
        pthread_mutex_init(&fs.xn.lock, NULL);
        fs.prefetch_files = o.prefetch;
        fs.lean_misses = o.full_listings ? LEAN_MISSES : 0;
        /* A quarter of the cache: what is read ahead is still there when read. */
        fs.prefetch_bytes = ((uint64_t)o.cache_mib << 20) / 4;
        fs.force_open = getenv("STAMPFS_OPEN") != NULL;
        if (getenv("STAMPFS_TEST_STALL_MS"))
                fs.test_stall_ms = (unsigned)strtoul(getenv("STAMPFS_TEST_STALL_MS"), NULL, 10) % 60000;
        if (getenv("STAMPFS_TEST_STALL_SIZE"))
                fs.test_stall_size = strtoull(getenv("STAMPFS_TEST_STALL_SIZE"), NULL, 10);
        root_refresh(&fs); /* the stamps as mounted; the mtime stays the store's */
        fs.root.mtime_ns = fs.store_st.st_mtim.tv_sec * 1000000000LL + fs.store_st.st_mtim.tv_nsec;
        fs.root.ctime_ns = fs.root.mtime_ns;

        fs.se = se;
        fs.page_size = sysconf(_SC_PAGESIZE);
        if (fs.page_size <= 0)
                fs.page_size = 4096;
        if (fuse_set_signal_handlers(se) != 0)
                goto out;
        if (fuse_session_mount(se, mnt_abs ? mnt_abs : pos.mountpoint) != 0) {
                fprintf(stderr, "stampfs: cannot mount on '%s'\n", pos.mountpoint);
                goto out_signals;
        }
        raise_readahead(mnt_abs ? mnt_abs : pos.mountpoint);
        /* Returns in the parent only once the mount is usable. */
        if (fuse_daemonize(cl.foreground) != 0)
                goto out_unmount;
        if (!cl.foreground) {
                openlog("stampfs", LOG_PID, LOG_DAEMON);
                log_to_syslog = true;
        }
        /*
         * Threads start after fuse_daemonize(): they would not survive its
         * fork. They block signals, which then reach the loop's caller.
         */
        if (fs.prefetch_files > 0) {
                sigset_t all, old;
                int r;

                sigfillset(&all);
                pthread_sigmask(SIG_BLOCK, &all, &old);
                r = stamp_prefetch_new(fs.s, fs.cache, PREFETCH_THREADS, fs.prefetch_bytes,
                                       prefetch_done, &fs, &fs.pf);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                if (r < 0)
                        goto out_unmount;
        }
        {
                /*
                 * -s: one thread answers, and waits where a handler waits.
                 * Still this loop, not libfuse's: at a signal it answers
                 * the reads that the read-ahead's notifications wait for.
                 */
                struct stampfs_loop_cfg cfg = {
                        .max_threads = cl.singlethread ? 1 : LOOP_THREADS,
                        .spin_us = o.spin_us,
                        .before_stop = stop_notifying,
                        .data = &fs,
                };
                ret = stampfs_loop(se, &cfg);
        }
        /* A signal (SIGTERM, SIGINT, SIGHUP) is a clean stop: 0; -errno a failure. */
        ret = ret < 0;
        if (fs.dropper_started)
                pthread_join(fs.dropper, NULL);
out_unmount:
        stamp_prefetch_free(fs.pf); /* before the cache and the store go */
        fs.pf = NULL;
        fuse_session_unmount(se);
        nodes_free_all(&fs); /* the kernel does not forget what it knew at unmount */
out_signals:
        fuse_remove_signal_handlers(se);
out:
        if (se)
                fuse_session_destroy(se);
        free(cl.mountpoint);
        fuse_opt_free_args(&args);
        stamp_reader_pool_free(fs.readers);
        stamp_strv_release(&fs.xn.names);
        xn_stamps_free(fs.xn.per, fs.xn.n_per);
        stamp_cache_free(fs.cache);
        stamp_store_free(fs.s);
        free(pos.store);
        free(pos.mountpoint);
        free(o.cache_mib_arg);
        free(o.prefetch_arg);
        free(o.spin_arg);
        free(mnt_abs);
        free(fsname);
        return ret;
}
