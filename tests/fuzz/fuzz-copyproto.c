/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the copy protocol (store/copy-proto.c), the parser that reads what
 * comes over the network. The first input byte picks the side:
 *
 * - Even: the server (`stamp serve --init`; without --init if bit 1 is
 *   set). The rest is what a client sent. stamp_copy_serve() reads it from
 *   a memfd until EOF or BYE and stores into a store directory that does
 *   not exist at the start of each input (a HELLO with the init flag
 *   creates it, as `stamp copy --init` does, unless --init is missing).
 *   After a BYE the rest is served again, as the next session on the same
 *   store, at most SESSIONS_MAX times.
 * - Odd: the client (`stamp copy` to ssh://). The rest is what the server
 *   answered. The client makes the calls stamp_copy() makes of a
 *   destination: open (HELLO), config, list, have of (byte >> 1) ids, put of
 *   one object, commit, close; it stops at the first failure.
 *
 * Either way garbage must give 0 or a negative errno, never a crash, a leak
 * (of memory or of a file descriptor) or a file outside the store directory;
 * a hang shows as a libFuzzer timeout. On the server side, every snapshot
 * the sessions committed must also validate afterwards.
 *
 * The store lives in a directory made once per process ($TMPDIR, else
 * /dev/shm when writable, for cheap fsyncs; else /tmp) and removed at exit.
 * Each input starts without a store, so an input's result does not depend
 * on the inputs before it, and the store never grows.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compress.h"
#include "copy.h"
#include "fuzz.h"
#include "pack.h"
#include "record.h"
#include "store.h"
#include "verify.h"

#define SESSIONS_MAX 4

/* The client's own store config (its secret names nothing here). */
static const char client_config[] =
        "{\"format\": \"stampfs\", \"version\": 1, \"created\": \"2026-01-01T00:00:00Z\", "
        "\"chunker\": {\"algorithm\": \"fastcdc-gear-nc2\", \"min\": 4096, \"avg\": 16384, "
        "\"max\": 131072}, \"chunk_id\": \"xxh3-128-keyed\", "
        "\"secret\": \"0101010101010101010101010101010101010101010101010101010101010101\", "
        "\"pack_size\": 1048576, \"dedup_verify_max\": 4096, "
        "\"compression\": {\"algorithm\": \"zstd\", \"level\": 1}}";

static char top[PATH_MAX - 16]; /* the process's directory; the store is top/store */
static char store[PATH_MAX];
static struct stamp_config like;
static int devnull = -1, input = -1;

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        (void)remove(path);
        return 0;
}

static void remove_tree(const char *path)
{
        struct stat st;

        if (lstat(path, &st) == 0)
                (void)nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_top(void)
{
        remove_tree(top);
}

static int lowest_free_fd(void)
{
        int fd = fcntl(devnull, F_DUPFD_CLOEXEC, 0);

        FUZZ_CHECK(fd >= 0);
        close(fd);
        return fd;
}

static void setup(void)
{
        const char *base = getenv("TMPDIR");

        if (top[0])
                return;
        if (!base || !*base)
                base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        FUZZ_CHECK(snprintf(top, sizeof(top), "%s/fuzz-copyproto.XXXXXX", base) <
                   (int)sizeof(top));
        FUZZ_CHECK(mkdtemp(top));
        atexit(remove_top);
        snprintf(store, sizeof(store), "%s/store", top);
        FUZZ_CHECK(stamp_config_parse(client_config, strlen(client_config), &like) == 0);
        devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        FUZZ_CHECK(devnull >= 0);
        input = memfd_create("fuzz-copyproto", MFD_CLOEXEC);
        FUZZ_CHECK(input >= 0);
}

/* Puts @data in the memfd, read from its start. */
static void load_input(const uint8_t *data, size_t size)
{
        size_t off = 0;

        FUZZ_CHECK(ftruncate(input, 0) == 0);
        while (off < size) {
                ssize_t n = pwrite(input, data + off, size - off, (off_t)off);
                FUZZ_CHECK(n > 0);
                off += (size_t)n;
        }
        FUZZ_CHECK(lseek(input, 0, SEEK_SET) == 0);
}

/* Nothing but the store may appear in the process's directory. */
static void check_top(void)
{
        DIR *d = opendir(top);
        struct dirent *de;

        FUZZ_CHECK(d);
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (strcmp(de->d_name, "store") != 0)
                        fprintf(stderr, "fuzz-copyproto: '%s' written beside the store\n",
                                de->d_name);
                FUZZ_CHECK(strcmp(de->d_name, "store") == 0);
        }
        closedir(d);
}

static void print_problem(const struct stamp_problem *p, void *userdata)
{
        (void)userdata;
        fprintf(stderr, "fuzz-copyproto: committed %s is invalid: %s %s: %s\n", p->stamp,
                stamp_problem_name(p->kind), p->path ? p->path : "", p->detail);
}

/* A record is the commit point: every snapshot the sessions committed must validate. */
static void check_store(void)
{
        struct stamp_check_options co = { .problem = print_problem };
        struct stamp_store *s;
        struct stamp_strv v;

        if (stamp_store_open(store, &s) < 0)
                return; /* none, or a half-made one */
        FUZZ_CHECK(stamp_store_list(s, &v) == 0);
        for (size_t i = 0; i < v.n; i++) {
                struct stamp_check_stats st;

                FUZZ_CHECK(stamp_check_snapshot(s, v.v[i], &co, &st) == 0);
                FUZZ_CHECK(st.problems == 0);
        }
        stamp_strv_release(&v);
        stamp_store_free(s);
}

static void fuzz_server(size_t size, bool allow_init)
{
        remove_tree(store);
        for (int i = 0; i < SESSIONS_MAX; i++) {
                int r = stamp_copy_serve(input, devnull, store, allow_init);
                off_t pos = lseek(input, 0, SEEK_CUR);

                FUZZ_CHECK(r <= 0 && r > -4096);
                FUZZ_CHECK(pos >= 0 && (size_t)pos <= size);
                if (r < 0 || (size_t)pos == size)
                        break;
        }
        check_top();
        FUZZ_CHECK(allow_init || access(store, F_OK) < 0);
        check_store();
        remove_tree(store);
}

/* The calls of stamp_copy() and copy_one(), in their order, on made-up content. */
static int client_calls(struct stamp_copy_dest *d, size_t n_have)
{
        static const char record[] = "{\"version\": 1}";
        static const uint8_t payload[] = "hello, world\n";
        struct stamp_copy_obj o = { .type = STAMP_OBJ_DATA, .comp = STAMP_COMP_NONE,
                                    .raw_len = sizeof(payload), .stored_len = sizeof(payload),
                                    .payload = payload };
        struct stamp_id ids[127] = { 0 };
        uint8_t have[127];
        struct stamp_config c;
        struct stamp_strv theirs, forgotten;
        struct stamp_copy_commit cm;
        int r;

        r = d->ops->config(d, &c);
        if (r < 0)
                return r;
        FUZZ_CHECK(stamp_chunker_params_check(&c.chunker) == 0);
        FUZZ_CHECK(memcmp(c.secret, like.secret, sizeof(c.secret)) == 0);
        r = d->ops->list(d, &theirs, &forgotten);
        if (r < 0)
                return r; /* like stamp_copy(): a failed call leaves nothing to free */
        for (size_t i = 0; i < theirs.n; i++)
                FUZZ_CHECK(stamp_stamp_valid(theirs.v[i]));
        for (size_t i = 0; i < forgotten.n; i++)
                FUZZ_CHECK(stamp_stamp_valid(forgotten.v[i]));
        stamp_strv_release(&theirs);
        stamp_strv_release(&forgotten);
        for (size_t i = 0; i < n_have; i++)
                ids[i].b[0] = (uint8_t)i;
        r = d->ops->have(d, ids, n_have, have);
        if (r < 0)
                return r;
        o.id = ids[0];
        r = d->ops->put(d, &o);
        if (r < 0)
                return r;
        r = d->ops->commit(d, "20260101T000000Z", &ids[0], record, strlen(record), &cm);
        if (r < 0)
                return r;
        stamp_copy_commit_release(&cm);
        return 0;
}

static void fuzz_client(size_t n_have)
{
        struct stamp_copy_dest *d = NULL;
        int r;

        r = stamp_copy_remote_open(input, devnull, store, STAMP_COPY_INIT, &like, 0, &d);
        if (r == 0)
                r = client_calls(d, n_have);
        FUZZ_CHECK(r <= 0 && r > -4096);
        FUZZ_CHECK(!d || memchr(d->error, 0, sizeof(d->error)));
        stamp_copy_dest_close(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        int free_fd;

        if (size < 1)
                return 0;
        setup();
        /* Taken per input: libFuzzer opens descriptors of its own between inputs. */
        free_fd = lowest_free_fd();
        load_input(data + 1, size - 1);
        if (data[0] % 2 == 0)
                fuzz_server(size - 1, !(data[0] & 2));
        else
                fuzz_client(data[0] >> 1);
        FUZZ_CHECK(lowest_free_fd() == free_fd);
        return 0;
}
