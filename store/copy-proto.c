/* SPDX-License-Identifier: MIT */
/*
 * The copy protocol between `stamp copy` and `stamp serve` (over ssh's
 * stdin/stdout, or any pipe pair). Documented in FORMAT.md ("The copy
 * protocol"). Each message is an 8-byte header (u8 type, 3 zero bytes,
 * u32 payload length) and the payload; integers are little-endian.
 *
 * The client sends requests; the server answers each request except PUT
 * with one OK or ERR. PUTs stream without answers: a failure is kept and
 * reported in the answer to the next request, so a copy never waits for a
 * round trip per object.
 */
#include "copy.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "pack.h"

#define PROTO_VERSION 1
#define HEADER_SIZE 8
#define PAYLOAD_MAX (STAMP_OBJECT_MAX + (1u << 20) > STAMP_JSON_MAX + 64u ? \
                     STAMP_OBJECT_MAX + (1u << 20) : STAMP_JSON_MAX + 64u)
#define WBUF_SIZE (1u << 20)
/*
 * A HELLO flag beside the STAMP_COPY_* ones: the client understands
 * forgotten stamps ("-STAMP" lines) in the LIST answer. A server that
 * predates it ignores it and sends none; one that knows it sends them only
 * to a client that set it, since an older client would take "-STAMP" for
 * a malformed answer.
 */
#define WIRE_FORGOTTEN (1u << 3)

enum {
        MSG_HELLO = 1,  /* u32 version, u32 flags, i32 zstd level, config JSON of the source */
        MSG_LIST = 2,   /* (empty) -> OK: stamps, each followed by '\n' ("-STAMP": forgotten) */
        MSG_HAVE = 3,   /* n x 16-byte ids -> OK: n bytes, 1 if the server has the id */
        MSG_PUT = 4,    /* 16 id, u8 type, u8 comp, u16 0, u32 raw, u32 stored, payload */
        MSG_COMMIT = 5, /* 16 root, 16 stamp, record text -> OK: see commit_encode() */
        MSG_BYE = 6,    /* -> OK */
        MSG_OK = 0x80,
        MSG_ERR = 0x81, /* u32 errno, 16-byte id of the object concerned (or zeros), message */
};

struct conn {
        int in, out;
        uint8_t *wbuf;
        size_t wlen;
        uint8_t *rbuf;
        size_t rcap;
};

static int write_full(int fd, const void *p, size_t len)
{
        const uint8_t *b = p;

        while (len) {
                ssize_t n = write(fd, b, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                b += n;
                len -= (size_t)n;
        }
        return 0;
}

static int read_full(int fd, void *p, size_t len)
{
        uint8_t *b = p;

        while (len) {
                ssize_t n = read(fd, b, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET; /* the other end went away */
                b += n;
                len -= (size_t)n;
        }
        return 0;
}

static int conn_flush(struct conn *c)
{
        int r = write_full(c->out, c->wbuf, c->wlen);

        c->wlen = 0;
        return r;
}

/* Queues one message made of two parts (either may be empty). */
static int conn_send(struct conn *c, uint8_t type, const void *a, size_t alen, const void *b,
                     size_t blen)
{
        uint8_t h[HEADER_SIZE] = { type };
        int r;

        if (alen + blen > PAYLOAD_MAX)
                return -EFBIG;
        le32_write(h + 4, (uint32_t)(alen + blen));
        if (c->wlen + HEADER_SIZE + alen + blen > WBUF_SIZE) {
                r = conn_flush(c);
                if (r < 0)
                        return r;
        }
        if (HEADER_SIZE + alen + blen > WBUF_SIZE) {
                r = write_full(c->out, h, sizeof(h));
                if (r == 0)
                        r = write_full(c->out, a, alen);
                return r < 0 ? r : write_full(c->out, b, blen);
        }
        memcpy(c->wbuf + c->wlen, h, sizeof(h));
        c->wlen += sizeof(h);
        if (alen)
                memcpy(c->wbuf + c->wlen, a, alen);
        c->wlen += alen;
        if (blen)
                memcpy(c->wbuf + c->wlen, b, blen);
        c->wlen += blen;
        return 0;
}

/* Reads one message into c->rbuf (NUL-terminated for text payloads). */
static int conn_recv(struct conn *c, uint8_t *ret_type, size_t *ret_len)
{
        uint8_t h[HEADER_SIZE];
        uint32_t len;
        int r;

        r = read_full(c->in, h, sizeof(h));
        if (r < 0)
                return r;
        len = le32_read(h + 4);
        if (h[1] || h[2] || h[3] || len > PAYLOAD_MAX)
                return -EPROTO;
        if (c->rcap < (size_t)len + 1) {
                uint8_t *p = realloc(c->rbuf, (size_t)len + 1);
                if (!p)
                        return -ENOMEM;
                c->rbuf = p;
                c->rcap = (size_t)len + 1;
        }
        r = read_full(c->in, c->rbuf, len);
        if (r < 0)
                return r;
        c->rbuf[len] = 0;
        *ret_type = h[0];
        *ret_len = len;
        return 0;
}

static int conn_init(struct conn *c, int in, int out)
{
        *c = (struct conn){ .in = in, .out = out, .wbuf = malloc(WBUF_SIZE) };
        return c->wbuf ? 0 : -ENOMEM;
}

static void conn_release(struct conn *c)
{
        free(c->wbuf);
        free(c->rbuf);
}

/* The commit answer: u8 valid, u64 new objects, new bytes, checked, validate µs, problems. */
#define COMMIT_FIXED (1 + 5 * 8)

/* The client. */

struct remote {
        struct stamp_copy_dest d;
        struct conn c;
        struct stamp_config config;
        bool broken; /* the connection failed: no goodbye */
};

static int remote_fail(struct remote *rm, int r, const char *what)
{
        rm->broken = true;
        snprintf(rm->d.error, sizeof(rm->d.error), "%s: %s", what,
                 r == -ECONNRESET || r == -EPIPE ? "the remote stamp serve ended the connection"
                 : r == -EPROTO                  ? "the remote stamp serve sent garbage"
                                                 : strerror(-r));
        return r;
}

/* Sends a request and waits for its answer; an ERR becomes its errno and message. */
static int remote_call(struct remote *rm, uint8_t type, const void *a, size_t alen, const void *b,
                       size_t blen, size_t *ret_len)
{
        uint8_t t;
        int r;

        r = conn_send(&rm->c, type, a, alen, b, blen);
        if (r == 0)
                r = conn_flush(&rm->c);
        if (r == 0)
                r = conn_recv(&rm->c, &t, ret_len);
        if (r < 0)
                return remote_fail(rm, r, "copy connection");
        if (t == MSG_ERR && *ret_len >= 20) {
                uint32_t e = le32_read(rm->c.rbuf);
                memcpy(rm->d.bad_id.b, rm->c.rbuf + 4, 16);
                snprintf(rm->d.error, sizeof(rm->d.error), "%s", (char *)rm->c.rbuf + 20);
                return e > 0 && e < 4096 ? -(int)e : -EIO;
        }
        if (t != MSG_OK)
                return remote_fail(rm, -EPROTO, "copy connection");
        return 0;
}

static int remote_config(struct stamp_copy_dest *d, struct stamp_config *ret)
{
        *ret = ((struct remote *)d)->config;
        return 0;
}

static int remote_list(struct stamp_copy_dest *d, struct stamp_strv *ret,
                       struct stamp_strv *ret_forgotten)
{
        struct remote *rm = (struct remote *)d;
        size_t len;
        int r;

        *ret = (struct stamp_strv){ 0 };
        *ret_forgotten = (struct stamp_strv){ 0 };
        r = remote_call(rm, MSG_LIST, NULL, 0, NULL, 0, &len);
        if (r < 0)
                return r;
        for (char *p = (char *)rm->c.rbuf, *nl; *p; p = nl + 1) {
                bool gone = *p == '-';

                nl = strchr(p, '\n');
                if (nl)
                        *nl = 0;
                if (!nl || !stamp_stamp_valid(p + gone))
                        r = remote_fail(rm, -EPROTO, "copy connection");
                else
                        r = stamp_strv_push(gone ? ret_forgotten : ret, p + gone);
                if (r < 0) {
                        /* a failed call hands nothing over */
                        stamp_strv_release(ret);
                        stamp_strv_release(ret_forgotten);
                        return r;
                }
        }
        return 0;
}

static int remote_have(struct stamp_copy_dest *d, const struct stamp_id *ids, size_t n,
                       uint8_t *ret)
{
        struct remote *rm = (struct remote *)d;
        size_t len;
        int r;

        r = remote_call(rm, MSG_HAVE, ids, n * sizeof(*ids), NULL, 0, &len);
        if (r < 0)
                return r;
        if (len != n)
                return remote_fail(rm, -EPROTO, "copy connection");
        memcpy(ret, rm->c.rbuf, n);
        return 0;
}

static int remote_put(struct stamp_copy_dest *d, const struct stamp_copy_obj *o)
{
        struct remote *rm = (struct remote *)d;
        uint8_t h[28] = { 0 };
        int r;

        memcpy(h, o->id.b, 16);
        h[16] = o->type;
        h[17] = o->comp;
        le32_write(h + 20, o->raw_len);
        le32_write(h + 24, o->stored_len);
        r = conn_send(&rm->c, MSG_PUT, h, sizeof(h), o->payload, o->stored_len);
        return r < 0 ? remote_fail(rm, r, "copy connection") : 0;
}

static int remote_commit(struct stamp_copy_dest *d, const char *stamp, const struct stamp_id *root,
                         const char *record, size_t record_len, struct stamp_copy_commit *ret)
{
        struct remote *rm = (struct remote *)d;
        uint8_t h[16 + STAMP_STAMP_LEN];
        const uint8_t *p;
        size_t len;
        int r;

        memset(ret, 0, sizeof(*ret));
        if (strlen(stamp) != STAMP_STAMP_LEN)
                return -EINVAL;
        memcpy(h, root->b, 16);
        memcpy(h + 16, stamp, STAMP_STAMP_LEN);
        r = remote_call(rm, MSG_COMMIT, h, sizeof(h), record, record_len, &len);
        if (r < 0)
                return r;
        if (len < COMMIT_FIXED)
                return remote_fail(rm, -EPROTO, "copy connection");
        p = rm->c.rbuf;
        ret->valid = p[0] == 1;
        ret->new_objects = le64_read(p + 1);
        ret->new_bytes = le64_read(p + 9);
        ret->checked_objects = le64_read(p + 17);
        ret->validate_s = (double)le64_read(p + 25) / 1e6;
        ret->n_problems = le64_read(p + 33);
        for (char *q = (char *)rm->c.rbuf + COMMIT_FIXED, *nl; *q; q = nl + 1) {
                nl = strchr(q, '\n');
                if (!nl)
                        break;
                *nl = 0;
                r = stamp_strv_push(&ret->problems, q);
                if (r < 0) {
                        stamp_copy_commit_release(ret); /* a failed call hands nothing over */
                        return r;
                }
        }
        if (!ret->valid && ret->n_problems == 0)
                ret->n_problems = 1;
        return 0;
}

static void remote_close(struct stamp_copy_dest *d)
{
        struct remote *rm = (struct remote *)d;
        size_t len;

        if (!rm->broken)
                (void)remote_call(rm, MSG_BYE, NULL, 0, NULL, 0, &len);
        conn_release(&rm->c);
        free(rm);
}

static const struct stamp_copy_dest_ops remote_ops = {
        .config = remote_config,
        .list = remote_list,
        .have = remote_have,
        .put = remote_put,
        .commit = remote_commit,
        .close = remote_close,
};

int stamp_copy_remote_open(int in, int out, const char *path, unsigned flags,
                           const struct stamp_config *init_like, int zstd_level,
                           struct stamp_copy_dest **ret)
{
        struct remote *rm = calloc(1, sizeof(*rm));
        _cleanup_free_ char *json = NULL;
        uint8_t h[12];
        size_t len;
        int r;

        (void)path; /* named on the server's command line */
        if (!rm)
                return -ENOMEM;
        rm->d.ops = &remote_ops;
        *ret = &rm->d;
        r = conn_init(&rm->c, in, out);
        if (r < 0)
                return r;
        r = stamp_config_encode(init_like, &json);
        if (r < 0)
                return r;
        le32_write(h, PROTO_VERSION);
        le32_write(h + 4, flags | WIRE_FORGOTTEN);
        le32_write(h + 8, (uint32_t)zstd_level);
        r = remote_call(rm, MSG_HELLO, h, sizeof(h), json, strlen(json), &len);
        if (r < 0) {
                rm->broken = true;
                return r;
        }
        r = stamp_config_parse((const char *)rm->c.rbuf, len, &rm->config);
        if (r < 0)
                return remote_fail(rm, -EPROTO, "copy connection");
        /* The server checked that the secrets agree; it does not send its own. */
        memcpy(rm->config.secret, init_like->secret, sizeof(rm->config.secret));
        return 0;
}

/* The server. */

struct server {
        struct conn c;
        const char *path;
        bool allow_init;
        bool forgotten; /* the client takes "-STAMP" lines in LIST (WIRE_FORGOTTEN) */
        struct stamp_copy_dest *d;
        int put_error; /* the first failed PUT, reported at the next request */
        char put_msg[512];
        struct stamp_id put_id;
};

static int reply_err_id(struct server *sv, int r, const struct stamp_id *id, const char *msg)
{
        uint8_t e[20] = { 0 };

        le32_write(e, (uint32_t)-r);
        if (id)
                memcpy(e + 4, id->b, 16);
        return conn_send(&sv->c, MSG_ERR, e, sizeof(e), msg, strlen(msg) + 1);
}

static int reply_err(struct server *sv, int r, const char *msg)
{
        return reply_err_id(sv, r, NULL, msg);
}

static int serve_hello(struct server *sv, size_t len)
{
        struct stamp_config like, mine;
        _cleanup_free_ char *json = NULL;
        const uint8_t *p = sv->c.rbuf;
        unsigned flags;
        int level, r;

        if (sv->d)
                return reply_err(sv, -EPROTO, "hello twice");
        if (len < 12 || le32_read(p) != PROTO_VERSION)
                return reply_err(sv, -EPROTONOSUPPORT,
                                 "the remote stamp speaks another copy protocol version");
        flags = le32_read(p + 4) & (STAMP_COPY_INIT | STAMP_COPY_READ_DATA | STAMP_COPY_DRY_RUN);
        sv->forgotten = le32_read(p + 4) & WIRE_FORGOTTEN;
        level = (int)le32_read(p + 8);
        if (stamp_config_parse((const char *)p + 12, len - 12, &like) < 0)
                return reply_err(sv, -EPROTO, "the source's config did not parse");
        if ((flags & STAMP_COPY_INIT) && !sv->allow_init)
                flags &= ~STAMP_COPY_INIT;
        r = stamp_copy_local_open(sv->path, flags, &like, level, &sv->d);
        if (r < 0) {
                char msg[sizeof(sv->d->error)];

                /* No destination at all when it ran out of memory first. */
                snprintf(msg, sizeof(msg), "%s", sv->d ? sv->d->error : "out of memory");
                stamp_copy_dest_close(sv->d);
                sv->d = NULL;
                return reply_err(sv, r, msg);
        }
        r = sv->d->ops->config(sv->d, &mine);
        if (r < 0)
                return reply_err(sv, r, "no config");
        memset(mine.secret, 0, sizeof(mine.secret)); /* never sent */
        r = stamp_config_encode(&mine, &json);
        if (r < 0)
                return reply_err(sv, r, "cannot encode the config");
        return conn_send(&sv->c, MSG_OK, json, strlen(json), NULL, 0);
}

/* Replies with the kept PUT failure, if any: 1 if it did. */
static int put_failure(struct server *sv)
{
        int r;

        if (!sv->put_error)
                return 0;
        r = reply_err_id(sv, sv->put_error, &sv->put_id, sv->put_msg);
        return r < 0 ? r : 1;
}

static int serve_put(struct server *sv, size_t len)
{
        const uint8_t *p = sv->c.rbuf;
        struct stamp_copy_obj o;
        int r;

        if (sv->put_error)
                return 0;
        if (len < 28 || p[18] || p[19] || le32_read(p + 24) != len - 28) {
                sv->put_error = -EPROTO;
                snprintf(sv->put_msg, sizeof(sv->put_msg), "a malformed object message");
                return 0;
        }
        memcpy(o.id.b, p, 16);
        o.type = p[16];
        o.comp = p[17];
        o.raw_len = le32_read(p + 20);
        o.stored_len = le32_read(p + 24);
        o.payload = p + 28;
        r = sv->d->ops->put(sv->d, &o);
        if (r < 0) {
                sv->put_error = r;
                sv->put_id = o.id;
                snprintf(sv->put_msg, sizeof(sv->put_msg), "%s", sv->d->error);
        }
        return 0;
}

static int serve_commit(struct server *sv, size_t len)
{
        const uint8_t *p = sv->c.rbuf;
        struct stamp_copy_commit cm;
        char stamp[STAMP_STAMP_LEN + 1];
        struct stamp_id root;
        uint8_t fixed[COMMIT_FIXED];
        _cleanup_free_ char *lines = NULL;
        size_t total = 0;
        int r;

        if (len < 16 + STAMP_STAMP_LEN)
                return reply_err(sv, -EPROTO, "a malformed commit message");
        memcpy(root.b, p, 16);
        memcpy(stamp, p + 16, STAMP_STAMP_LEN);
        stamp[STAMP_STAMP_LEN] = 0;
        if (!stamp_stamp_valid(stamp))
                return reply_err(sv, -EPROTO, "a malformed stamp");
        r = sv->d->ops->commit(sv->d, stamp, &root, (const char *)p + 16 + STAMP_STAMP_LEN,
                               len - 16 - STAMP_STAMP_LEN, &cm);
        if (r < 0)
                return reply_err(sv, r, sv->d->error);
        for (size_t i = 0; i < cm.problems.n; i++)
                total += strlen(cm.problems.v[i]) + 1;
        lines = malloc(total + 1);
        if (!lines) {
                stamp_copy_commit_release(&cm);
                return reply_err(sv, -ENOMEM, "out of memory");
        }
        total = 0;
        for (size_t i = 0; i < cm.problems.n; i++) {
                size_t n = strlen(cm.problems.v[i]);
                memcpy(lines + total, cm.problems.v[i], n);
                lines[total + n] = '\n';
                total += n + 1;
        }
        fixed[0] = cm.valid;
        le64_write(fixed + 1, cm.new_objects);
        le64_write(fixed + 9, cm.new_bytes);
        le64_write(fixed + 17, cm.checked_objects);
        le64_write(fixed + 25, (uint64_t)(cm.validate_s * 1e6));
        le64_write(fixed + 33, cm.n_problems);
        stamp_copy_commit_release(&cm);
        return conn_send(&sv->c, MSG_OK, fixed, sizeof(fixed), lines, total);
}

static int serve_one(struct server *sv, uint8_t type, size_t len)
{
        int r;

        if (type != MSG_HELLO && !sv->d)
                return reply_err(sv, -EPROTO, "no hello");
        switch (type) {
        case MSG_HELLO:
                return serve_hello(sv, len);
        case MSG_PUT:
                return serve_put(sv, len);
        case MSG_LIST: {
                struct stamp_strv v, gone;
                _cleanup_free_ char *text = NULL;
                size_t n = 0;

                r = put_failure(sv);
                if (r)
                        return r < 0 ? r : 0;
                r = sv->d->ops->list(sv->d, &v, &gone);
                if (r < 0)
                        return reply_err(sv, r, sv->d->error);
                if (!sv->forgotten)
                        stamp_strv_release(&gone);
                text = malloc((v.n + gone.n) * (STAMP_STAMP_LEN + 2) + 1);
                if (!text) {
                        stamp_strv_release(&v);
                        stamp_strv_release(&gone);
                        return reply_err(sv, -ENOMEM, "out of memory");
                }
                for (size_t i = 0; i < v.n; i++)
                        n += (size_t)sprintf(text + n, "%s\n", v.v[i]);
                for (size_t i = 0; i < gone.n; i++)
                        n += (size_t)sprintf(text + n, "-%s\n", gone.v[i]);
                stamp_strv_release(&v);
                stamp_strv_release(&gone);
                return conn_send(&sv->c, MSG_OK, text, n, NULL, 0);
        }
        case MSG_HAVE: {
                _cleanup_free_ uint8_t *have = NULL;
                size_t n = len / sizeof(struct stamp_id);

                r = put_failure(sv);
                if (r)
                        return r < 0 ? r : 0;
                if (len % sizeof(struct stamp_id))
                        return reply_err(sv, -EPROTO, "a malformed have message");
                have = malloc(n + 1);
                if (!have)
                        return reply_err(sv, -ENOMEM, "out of memory");
                r = sv->d->ops->have(sv->d, (const struct stamp_id *)sv->c.rbuf, n, have);
                if (r < 0)
                        return reply_err(sv, r, sv->d->error);
                return conn_send(&sv->c, MSG_OK, have, n, NULL, 0);
        }
        case MSG_COMMIT:
                r = put_failure(sv);
                if (r)
                        return r < 0 ? r : 0;
                return serve_commit(sv, len);
        default:
                return reply_err(sv, -EPROTO, "an unknown message");
        }
}

int stamp_copy_serve(int in, int out, const char *path, bool allow_init)
{
        struct server sv = { .path = path, .allow_init = allow_init };
        int r;

        /* A vanished client must give an error from write(), not kill us mid-pack. */
        signal(SIGPIPE, SIG_IGN);
        r = conn_init(&sv.c, in, out);
        while (r == 0) {
                uint8_t type;
                size_t len;

                r = conn_recv(&sv.c, &type, &len);
                if (r < 0)
                        break;
                if (type == MSG_BYE) {
                        r = conn_send(&sv.c, MSG_OK, NULL, 0, NULL, 0);
                        if (r == 0)
                                r = conn_flush(&sv.c);
                        r = r < 0 ? r : 1;
                        break;
                }
                r = serve_one(&sv, type, len);
                if (r == 0 && type != MSG_PUT)
                        r = conn_flush(&sv.c);
                if (r == 0 && type == MSG_HELLO && !sv.d)
                        r = 2; /* refused: the client has the reason and will hang up */
        }
        stamp_copy_dest_close(sv.d);
        conn_release(&sv.c);
        return r == 1 ? 0 : r == 2 ? -ECONNABORTED : r;
}
