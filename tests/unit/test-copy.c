/* SPDX-License-Identifier: MIT */
/*
 * stamp copy through the library: a local destination and one reached
 * through the protocol (stamp_copy_serve in a thread on a pipe pair) both
 * receive every snapshot byte-exact; a second copy sends nothing; a store
 * with another secret is refused; an object that does not decode to its id
 * is refused on arrival and named; the server survives garbage.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy.h"
#include "reader.h"
#include "snapshot.h"
#include "store.h"
#include "tests.h"

#define FILE_SIZE (300u * 1024)

static void check_content(const char *dir, const char *stamp, const char *name,
                          unsigned long long seed)
{
        unsigned char *want = malloc(FILE_SIZE), *got = malloc(FILE_SIZE + 1);
        struct stamp_store *s;
        struct stamp_record rec;
        struct stamp_tree_obj parent;
        struct stamp_entry e;
        struct stamp_file *f;

        CHECK_OK(stamp_store_open(dir, &s));
        fill_random(want, FILE_SIZE, seed);
        CHECK_OK(stamp_store_record_load(s, stamp, &rec));
        CHECK_OK(stamp_path_resolve(s, &rec.root, name, &parent, &e));
        CHECK_OK(stamp_file_open(s, &e, NULL, &f));
        CHECK(stamp_file_pread(f, got, FILE_SIZE + 1, 0) == (ssize_t)FILE_SIZE);
        CHECK(memcmp(got, want, FILE_SIZE) == 0);
        stamp_file_free(f);
        stamp_tree_obj_release(&parent);
        stamp_record_release(&rec);
        stamp_store_free(s);
        free(want);
        free(got);
}

static void copy_all(struct stamp_store *src, struct stamp_copy_dest *d,
                     struct stamp_copy_result *res)
{
        struct stamp_copy_options o = { 0 };

        CHECK_OK(stamp_copy(src, d, &o, res));
        stamp_copy_dest_close(d);
}

struct server {
        int in, out;
        const char *path;
        int result;
};

static void *server_main(void *arg)
{
        struct server *sv = arg;

        sv->result = stamp_copy_serve(sv->in, sv->out, sv->path, true);
        close(sv->out);
        close(sv->in);
        return NULL;
}

/* A server thread on a pipe pair; the client's ends in *ret_in / *ret_out. */
static pthread_t start_server(struct server *sv, const char *path, int *ret_in, int *ret_out)
{
        int to[2], from[2];
        pthread_t t;

        CHECK(pipe(to) == 0 && pipe(from) == 0);
        *sv = (struct server){ .in = to[0], .out = from[1], .path = path };
        *ret_out = to[1];
        *ret_in = from[0];
        CHECK(pthread_create(&t, NULL, server_main, sv) == 0);
        return t;
}

static void remote_copy_res(struct stamp_store *src, const char *path,
                            struct stamp_copy_result *res)
{
        struct stamp_copy_dest *d;
        struct server sv;
        int in, out;
        pthread_t t = start_server(&sv, path, &in, &out);

        CHECK_OK(stamp_copy_remote_open(in, out, path, STAMP_COPY_INIT, stamp_store_config(src),
                                        3, &d));
        copy_all(src, d, res);
        close(out);
        close(in);
        CHECK(pthread_join(t, NULL) == 0);
        CHECK_OK(sv.result);
}

static void remote_copy(struct stamp_store *src, const char *path, uint64_t *ret_sent,
                        uint64_t *ret_copied)
{
        struct stamp_copy_result res;

        remote_copy_res(src, path, &res);
        *ret_sent = res.bytes_sent;
        *ret_copied = res.copied;
}

/* Forgets @stamp in the store @path, as stamp forget does. */
static void forget_in(const char *path, const char *stamp)
{
        struct stamp_store *s;

        CHECK_OK(stamp_store_open(path, &s));
        CHECK_OK(stamp_store_lock(s, 0, "test", NULL, 0));
        CHECK_OK(stamp_store_record_delete(s, stamp));
        stamp_store_free(s);
}

static size_t forgotten_in(const char *path)
{
        struct stamp_store *s;
        struct stamp_strv v;
        size_t n;

        CHECK_OK(stamp_store_open(path, &s));
        CHECK_OK(stamp_store_forgotten(s, &v));
        n = v.n;
        stamp_strv_release(&v);
        stamp_store_free(s);
        return n;
}

static void send_msg(int fd, uint8_t type, const void *p, size_t len)
{
        uint8_t h[8] = { type, 0, 0, 0, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
                         (uint8_t)(len >> 24) };

        CHECK(write(fd, h, 8) == 8);
        CHECK(len == 0 || write(fd, p, len) == (ssize_t)len);
}

/* Reads one answer into @buf (NUL-terminated); returns its type. */
static uint8_t recv_msg(int fd, char *buf, size_t size)
{
        uint8_t h[8];
        size_t len, got = 0;

        CHECK(read(fd, h, 8) == 8);
        len = h[4] | (size_t)h[5] << 8 | (size_t)h[6] << 16 | (size_t)h[7] << 24;
        CHECK(len < size);
        while (got < len) {
                ssize_t n = read(fd, buf + got, len - got);
                CHECK(n > 0);
                got += (size_t)n;
        }
        buf[len] = 0;
        return h[0];
}

/*
 * A client that predates forgotten stamps (no flag 8 in HELLO) gets a LIST
 * answer without "-STAMP" lines; one that sets it gets them.
 */
static void check_list_flag(struct stamp_store *src, const char *path, unsigned flag,
                            const char *held, const char *gone)
{
        char *json = NULL;
        struct server sv;
        uint8_t hello[12] = { 1 };
        char *msg, buf[4096], line[64];
        int in, out;
        pthread_t t = start_server(&sv, path, &in, &out);

        CHECK_OK(stamp_config_encode(stamp_store_config(src), &json));
        hello[4] = (uint8_t)flag;
        msg = malloc(12 + strlen(json));
        CHECK(msg);
        memcpy(msg, hello, 12);
        memcpy(msg + 12, json, strlen(json));
        send_msg(out, 1, msg, 12 + strlen(json));
        free(msg);
        free(json);
        CHECK(recv_msg(in, buf, sizeof(buf)) == 0x80);
        send_msg(out, 2, NULL, 0);
        CHECK(recv_msg(in, buf, sizeof(buf)) == 0x80);
        snprintf(line, sizeof(line), "%s\n", held);
        CHECK(strstr(buf, line) != NULL);
        snprintf(line, sizeof(line), "-%s\n", gone);
        CHECK((strstr(buf, line) != NULL) == (flag != 0));
        CHECK((strchr(buf, '-') != NULL) == (flag != 0));
        send_msg(out, 6, NULL, 0);
        CHECK(recv_msg(in, buf, sizeof(buf)) == 0x80);
        close(out);
        CHECK(pthread_join(t, NULL) == 0);
        CHECK_OK(sv.result);
        close(in);
}

static void test_garbage(const char *path)
{
        unsigned char junk[4096];

        for (unsigned i = 0; i < 50; i++) {
                struct server sv;
                int in, out;
                pthread_t t = start_server(&sv, path, &in, &out);
                size_t n = 1 + i * 73 % sizeof(junk);

                fill_random(junk, n, i);
                if (i % 2 == 0) { /* a well-framed message of some type */
                        junk[0] = (unsigned char)(i % 8 == 6 ? 5 : i % 8); /* not BYE */
                        junk[1] = junk[2] = junk[3] = 0;
                        if (n >= 8) {
                                uint32_t len = (uint32_t)(n - 8);
                                memcpy(junk + 4, &len, 4);
                        }
                }
                CHECK(write(out, junk, n) == (ssize_t)n);
                close(out);
                CHECK(pthread_join(t, NULL) == 0);
                CHECK(sv.result < 0);
                close(in);
        }
}

int main(void)
{
        char *tmp = make_tmpdir();
        char src_dir[600], store[600], local[600], remote[600], other[600], junk[600];
        char a[STAMP_STAMP_LEN + 1], b[STAMP_STAMP_LEN + 1];
        struct stamp_init_options io;
        struct stamp_store *s;
        struct stamp_copy_dest *d;
        struct stamp_copy_result res;
        uint64_t sent, copied;

        snprintf(src_dir, sizeof(src_dir), "%s/src", tmp);
        snprintf(store, sizeof(store), "%s/store", tmp);
        snprintf(local, sizeof(local), "%s/local", tmp);
        snprintf(remote, sizeof(remote), "%s/remote", tmp);
        snprintf(other, sizeof(other), "%s/other", tmp);
        snprintf(junk, sizeof(junk), "%s/junk", tmp);
        CHECK(mkdir(src_dir, 0755) == 0);
        stamp_init_options_default(&io);
        io.pack_size = 1u << 20;
        CHECK_OK(stamp_store_init(store, &io));
        CHECK_OK(stamp_store_open(store, &s));
        write_random_file(src_dir, "one", FILE_SIZE, 1);
        write_random_file(src_dir, "two", FILE_SIZE, 2);
        take_snapshot(s, src_dir, a);
        sleep(1);
        write_random_file(src_dir, "two", FILE_SIZE, 3);
        take_snapshot(s, src_dir, b);

        /* Local: missing without INIT, then created, then nothing to send. */
        CHECK_RC(stamp_copy_local_open(local, 0, stamp_store_config(s), 0, &d), -ENOENT);
        CHECK(strstr(d->error, "no such store"));
        stamp_copy_dest_close(d);
        CHECK_OK(stamp_copy_local_open(local, STAMP_COPY_INIT, stamp_store_config(s), 0, &d));
        copy_all(s, d, &res);
        CHECK(res.copied == 2 && res.skipped == 0 && res.bytes_sent > 2 * FILE_SIZE);
        check_content(local, a, "two", 2);
        check_content(local, b, "two", 3);
        check_content(local, b, "one", 1);
        CHECK_OK(stamp_copy_local_open(local, 0, stamp_store_config(s), 0, &d));
        copy_all(s, d, &res);
        CHECK(res.copied == 0 && res.skipped == 2 && res.bytes_sent == 0);

        /* Through the protocol, into a store with its own compression level. */
        remote_copy(s, remote, &sent, &copied);
        CHECK(copied == 2 && sent > 2 * FILE_SIZE);
        check_content(remote, b, "two", 3);
        check_content(remote, a, "two", 2);
        remote_copy(s, remote, &sent, &copied);
        CHECK(copied == 0 && sent == 0);

        /*
         * A destination pruned by its own rules stays pruned: what it forgot
         * is not copied again, unless named; a copy named clears the mark.
         */
        forget_in(local, a);
        CHECK(forgotten_in(local) == 1);
        CHECK_OK(stamp_copy_local_open(local, 0, stamp_store_config(s), 0, &d));
        copy_all(s, d, &res);
        CHECK(res.copied == 0 && res.skipped == 1 && res.forgotten == 1 && res.bytes_sent == 0);
        {
                struct stamp_copy_options o = { 0 };
                struct stamp_strv named = { 0 };
                CHECK_OK(stamp_strv_push(&named, a));
                o.stamps = &named;
                CHECK_OK(stamp_copy_local_open(local, 0, stamp_store_config(s), 0, &d));
                CHECK_OK(stamp_copy(s, d, &o, &res));
                stamp_copy_dest_close(d);
                CHECK(res.copied == 1 && res.forgotten == 0);
                stamp_strv_release(&named);
        }
        CHECK(forgotten_in(local) == 0);
        check_content(local, a, "two", 2);
        forget_in(remote, a);
        remote_copy_res(s, remote, &res);
        CHECK(res.copied == 0 && res.skipped == 1 && res.forgotten == 1);
        check_list_flag(s, remote, 0, b, a);
        check_list_flag(s, remote, 8, b, a);

        /* A store with its own secret. */
        stamp_init_options_default(&io);
        CHECK_OK(stamp_store_init(other, &io));
        CHECK_RC(stamp_copy_local_open(other, 0, stamp_store_config(s), 0, &d), -EXDEV);
        stamp_copy_dest_close(d);

        /* An object that does not decode to its id is refused and named. */
        {
                struct stamp_copy_obj o = { .type = STAMP_OBJ_DATA, .comp = 0, .raw_len = 5,
                                            .stored_len = 5,
                                            .payload = (const uint8_t *)"hello" };
                memset(o.id.b, 0x5a, sizeof(o.id.b));
                CHECK_OK(stamp_copy_local_open(local, 0, stamp_store_config(s), 0, &d));
                CHECK_RC(d->ops->put(d, &o), -EBADMSG);
                CHECK(stamp_id_cmp(&d->bad_id, &o.id) == 0);
                CHECK(strstr(d->error, "arrived damaged"));
                stamp_copy_dest_close(d);
        }

        /* A stamp names one snapshot for the life of a store: not reused after a forget. */
        {
                char x[STAMP_STAMP_LEN + 1], y[STAMP_STAMP_LEN + 1];
                take_snapshot(s, src_dir, x);
                CHECK_OK(stamp_store_lock(s, 0, "test", NULL, 0));
                CHECK_OK(stamp_store_record_delete(s, x));
                CHECK(stamp_store_stamp_used(s, x) == 1);
                stamp_store_unlock(s);
                take_snapshot(s, src_dir, y);
                CHECK(strcmp(x, y) < 0);
        }

        test_garbage(junk);
        stamp_store_free(s);
        rm_rf(tmp);
        free(tmp);
        printf("ok\n");
        return 0;
}
