/* SPDX-License-Identifier: MIT */
#include "dbcheck.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "index.h"
#include "macro.h"

bool stamp_is_sqlite_header(const uint8_t *head, size_t len)
{
        return len >= STAMP_SQLITE_MAGIC_LEN &&
               memcmp(head, STAMP_SQLITE_MAGIC, STAMP_SQLITE_MAGIC_LEN) == 0;
}

/*
 * A read-only SQLite VFS whose main database file is served by a
 * stamp_pread_fn. The database is opened with immutable=1, so SQLite takes
 * no locks and looks for no journal or WAL; any other file it opens (temp
 * files of a large check) goes to the default VFS.
 */

#define VFS_NAME "stampfs-ro"
#define DB_NAME "stampfs-check"

struct check {
        stamp_pread_fn fn;
        void *userdata;
        uint64_t size;
        int err; /* the first read error, as -errno */
};

/* The check running on this thread: sqlite3 calls the VFS on the caller's thread. */
static __thread struct check *current;

struct vfile {
        sqlite3_file base;
        struct check *c;
};

static sqlite3_vfs *default_vfs;

static int vf_close(sqlite3_file *f)
{
        (void)f;
        return SQLITE_OK;
}

static int vf_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
        struct check *c = ((struct vfile *)f)->c;
        uint8_t *p = buf;
        size_t done = 0;

        if (off < 0 || amt < 0)
                return SQLITE_IOERR_READ;
        while (done < (size_t)amt) {
                ssize_t n = c->fn(c->userdata, p + done, (size_t)amt - done,
                                  (uint64_t)off + done);
                if (n < 0) {
                        if (!c->err)
                                c->err = (int)n;
                        return SQLITE_IOERR_READ;
                }
                if (n == 0)
                        break;
                done += (size_t)n;
        }
        if (done < (size_t)amt) {
                memset(p + done, 0, (size_t)amt - done);
                return SQLITE_IOERR_SHORT_READ;
        }
        return SQLITE_OK;
}

static int vf_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
        (void)f, (void)buf, (void)amt, (void)off;
        return SQLITE_READONLY;
}

static int vf_truncate(sqlite3_file *f, sqlite3_int64 size)
{
        (void)f, (void)size;
        return SQLITE_READONLY;
}

static int vf_sync(sqlite3_file *f, int flags)
{
        (void)f, (void)flags;
        return SQLITE_OK;
}

static int vf_size(sqlite3_file *f, sqlite3_int64 *ret)
{
        *ret = (sqlite3_int64)((struct vfile *)f)->c->size;
        return SQLITE_OK;
}

static int vf_lock(sqlite3_file *f, int level)
{
        (void)f, (void)level;
        return SQLITE_OK;
}

static int vf_check_reserved(sqlite3_file *f, int *ret)
{
        (void)f;
        *ret = 0;
        return SQLITE_OK;
}

static int vf_control(sqlite3_file *f, int op, void *arg)
{
        (void)f, (void)op, (void)arg;
        return SQLITE_NOTFOUND;
}

static int vf_sector(sqlite3_file *f)
{
        (void)f;
        return 4096;
}

static int vf_device(sqlite3_file *f)
{
        (void)f;
        return SQLITE_IOCAP_IMMUTABLE;
}

static const sqlite3_io_methods vfile_methods = {
        .iVersion = 1,
        .xClose = vf_close,
        .xRead = vf_read,
        .xWrite = vf_write,
        .xTruncate = vf_truncate,
        .xSync = vf_sync,
        .xFileSize = vf_size,
        .xLock = vf_lock,
        .xUnlock = vf_lock,
        .xCheckReservedLock = vf_check_reserved,
        .xFileControl = vf_control,
        .xSectorSize = vf_sector,
        .xDeviceCharacteristics = vf_device,
};

static bool is_ours(const char *name)
{
        return name && strncmp(name, DB_NAME, strlen(DB_NAME)) == 0;
}

static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
        (void)vfs;
        if (!(flags & SQLITE_OPEN_MAIN_DB) || !is_ours(name))
                return is_ours(name) ? SQLITE_CANTOPEN
                                     : default_vfs->xOpen(default_vfs, name, f, flags, out);
        if (!current || (flags & SQLITE_OPEN_READWRITE))
                return SQLITE_CANTOPEN;
        ((struct vfile *)f)->c = current;
        f->pMethods = &vfile_methods;
        if (out)
                *out = SQLITE_OPEN_READONLY;
        return SQLITE_OK;
}

static int vfs_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
        (void)vfs;
        if (is_ours(name))
                return SQLITE_READONLY;
        return default_vfs->xDelete(default_vfs, name, sync);
}

static int vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *ret)
{
        (void)vfs;
        if (is_ours(name)) {
                *ret = 0; /* no journal, no WAL */
                return SQLITE_OK;
        }
        return default_vfs->xAccess(default_vfs, name, flags, ret);
}

static int vfs_fullpath(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
        (void)vfs;
        if (is_ours(name)) {
                if ((int)strlen(name) >= n)
                        return SQLITE_CANTOPEN;
                strcpy(out, name);
                return SQLITE_OK;
        }
        return default_vfs->xFullPathname(default_vfs, name, n, out);
}

static int vfs_random(sqlite3_vfs *vfs, int n, char *out)
{
        (void)vfs;
        return default_vfs->xRandomness(default_vfs, n, out);
}

static int vfs_sleep(sqlite3_vfs *vfs, int us)
{
        (void)vfs;
        return default_vfs->xSleep(default_vfs, us);
}

static int vfs_time(sqlite3_vfs *vfs, double *ret)
{
        (void)vfs;
        return default_vfs->xCurrentTime(default_vfs, ret);
}

static int vfs_error(sqlite3_vfs *vfs, int n, char *out)
{
        (void)vfs;
        return default_vfs->xGetLastError(default_vfs, n, out);
}

static sqlite3_vfs check_vfs = {
        .iVersion = 1,
        .mxPathname = 512,
        .zName = VFS_NAME,
        .xOpen = vfs_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_fullpath,
        .xRandomness = vfs_random,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_time,
        .xGetLastError = vfs_error,
};

static pthread_once_t vfs_once = PTHREAD_ONCE_INIT;
static int vfs_status = SQLITE_ERROR;

static void vfs_register(void)
{
        stamp_sqlite_setup();
        default_vfs = sqlite3_vfs_find(NULL);
        if (!default_vfs)
                return;
        check_vfs.szOsFile = default_vfs->szOsFile > (int)sizeof(struct vfile)
                                     ? default_vfs->szOsFile
                                     : (int)sizeof(struct vfile);
        if (default_vfs->mxPathname > check_vfs.mxPathname)
                check_vfs.mxPathname = default_vfs->mxPathname;
        vfs_status = sqlite3_vfs_register(&check_vfs, 0);
}

static void set_msg(char *msg, size_t size, const char *text)
{
        if (size)
                snprintf(msg, size, "%s", text ? text : "unknown error");
}

int stamp_sqlite_check(stamp_pread_fn fn, void *userdata, uint64_t size, char *msg,
                       size_t msg_size)
{
        struct check c = { .fn = fn, .userdata = userdata, .size = size };
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int rc, r;

        set_msg(msg, msg_size, "");
        pthread_once(&vfs_once, vfs_register);
        if (vfs_status != SQLITE_OK)
                return -ENOSYS;
        current = &c;
        rc = sqlite3_open_v2("file:" DB_NAME "?immutable=1", &db,
                             SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, VFS_NAME);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA cache_size=-32768", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        const char *text = (const char *)sqlite3_column_text(st, 0);
                        set_msg(msg, msg_size, text);
                        rc = text && strcmp(text, "ok") == 0 ? SQLITE_DONE : SQLITE_CORRUPT;
                        if (rc == SQLITE_CORRUPT) {
                                r = 0;
                                goto out;
                        }
                }
        }
        if (c.err) {
                r = c.err; /* the reader failed: not the database's fault */
        } else if (rc == SQLITE_DONE) {
                r = 1;
        } else if (rc == SQLITE_NOMEM) {
                r = -ENOMEM;
        } else {
                /* Not a database, corrupt, or a schema SQLite cannot read. */
                set_msg(msg, msg_size, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
                r = 0;
        }
out:
        sqlite3_finalize(st);
        sqlite3_close(db);
        current = NULL;
        return r;
}

/*
 * The JSON validator: a byte-at-a-time state machine over RFC 8259, with
 * the open containers on a bit stack (1 = object), so memory does not grow
 * with the document, only with its nesting.
 */

#define JSON_DEPTH_MAX (1u << 20)

enum jstate {
        J_VALUE,         /* a value must come */
        J_VALUE_OR_END,  /* after '[': a value or ']' */
        J_KEY_OR_END,    /* after '{': a key or '}' */
        J_KEY,           /* after ',' in an object */
        J_COLON,
        J_AFTER,         /* after a value inside a container */
        J_DONE,          /* the top-level value is complete */
        J_STRING,
        J_ESCAPE,
        J_UNICODE,       /* in \uXXXX, counting hex digits */
        J_LITERAL,       /* in true, false or null */
        J_NUM_MINUS,     /* '-' seen: a digit must come */
        J_NUM_ZERO,      /* a leading 0 */
        J_NUM_INT,
        J_NUM_DOT,       /* '.' seen: a digit must come */
        J_NUM_FRAC,
        J_NUM_E,         /* 'e' seen: a sign or digit */
        J_NUM_E_SIGN,    /* sign seen: a digit must come */
        J_NUM_EXP,
        J_BAD,
};

struct stamp_json_check {
        enum jstate state;
        bool string_is_key;
        unsigned hex;            /* J_UNICODE: digits still expected */
        const char *literal;     /* J_LITERAL: the rest to match */
        uint32_t depth;
        uint8_t *stack;          /* bit i set: container i is an object */
        size_t stack_size;
        uint64_t offset;         /* bytes consumed */
        uint64_t line;
        const char *why;
};

struct stamp_json_check *stamp_json_check_new(void)
{
        struct stamp_json_check *c = calloc(1, sizeof(*c));

        if (c)
                c->line = 1;
        return c;
}

void stamp_json_check_free(struct stamp_json_check *c)
{
        if (!c)
                return;
        free(c->stack);
        free(c);
}

static bool is_ws(uint8_t b)
{
        return b == ' ' || b == '\t' || b == '\n' || b == '\r';
}

static bool in_object(const struct stamp_json_check *c)
{
        uint32_t i = c->depth - 1;
        return c->stack[i / 8] & (1u << (i % 8));
}

static int push(struct stamp_json_check *c, bool object)
{
        uint32_t i = c->depth;

        if (c->depth >= JSON_DEPTH_MAX) {
                c->why = "nested too deeply to check";
                return -EBADMSG;
        }
        if (i / 8 >= c->stack_size) {
                size_t n = c->stack_size ? c->stack_size * 2 : 64;
                uint8_t *s = realloc(c->stack, n);
                if (!s) {
                        c->why = "out of memory";
                        return -ENOMEM;
                }
                memset(s + c->stack_size, 0, n - c->stack_size);
                c->stack = s;
                c->stack_size = n;
        }
        if (object)
                c->stack[i / 8] |= (uint8_t)(1u << (i % 8));
        else
                c->stack[i / 8] &= (uint8_t)~(1u << (i % 8));
        c->depth++;
        return 0;
}

/* A value just ended. */
static void value_done(struct stamp_json_check *c)
{
        c->state = c->depth ? J_AFTER : J_DONE;
}

/* Starts a value at byte @b (the state expects one). */
static int value_start(struct stamp_json_check *c, uint8_t b)
{
        switch (b) {
        case '{':
                c->state = J_KEY_OR_END;
                return push(c, true);
        case '[':
                c->state = J_VALUE_OR_END;
                return push(c, false);
        case '"':
                c->state = J_STRING;
                c->string_is_key = false;
                return 0;
        case 't':
                c->literal = "rue";
                c->state = J_LITERAL;
                return 0;
        case 'f':
                c->literal = "alse";
                c->state = J_LITERAL;
                return 0;
        case 'n':
                c->literal = "ull";
                c->state = J_LITERAL;
                return 0;
        case '-':
                c->state = J_NUM_MINUS;
                return 0;
        case '0':
                c->state = J_NUM_ZERO;
                return 0;
        default:
                if (b >= '1' && b <= '9') {
                        c->state = J_NUM_INT;
                        return 0;
                }
                c->why = "a value was expected";
                return -EBADMSG;
        }
}

static int close_container(struct stamp_json_check *c, uint8_t b)
{
        if (!c->depth || in_object(c) != (b == '}')) {
                c->why = "mismatched bracket";
                return -EBADMSG;
        }
        c->depth--;
        value_done(c);
        return 0;
}

/* A number ended before byte @b; @b is handled in the state after it. */
static bool num_may_end(enum jstate s)
{
        return s == J_NUM_ZERO || s == J_NUM_INT || s == J_NUM_FRAC || s == J_NUM_EXP;
}

static int step(struct stamp_json_check *c, uint8_t b)
{
        bool digit = b >= '0' && b <= '9';

        switch (c->state) {
        case J_STRING:
                if (b == '"') {
                        if (c->string_is_key)
                                c->state = J_COLON;
                        else
                                value_done(c);
                } else if (b == '\\') {
                        c->state = J_ESCAPE;
                } else if (b < 0x20) {
                        c->why = "control character in a string";
                        return -EBADMSG;
                }
                return 0;
        case J_ESCAPE:
                if (b == 'u') {
                        c->hex = 4;
                        c->state = J_UNICODE;
                        return 0;
                }
                if (!strchr("\"\\/bfnrt", b) || b == 0) {
                        c->why = "bad escape in a string";
                        return -EBADMSG;
                }
                c->state = J_STRING;
                return 0;
        case J_UNICODE:
                if (!digit && !((b | 0x20) >= 'a' && (b | 0x20) <= 'f')) {
                        c->why = "bad \\u escape in a string";
                        return -EBADMSG;
                }
                if (--c->hex == 0)
                        c->state = J_STRING;
                return 0;
        case J_LITERAL:
                if (b != (uint8_t)*c->literal) {
                        c->why = "bad literal";
                        return -EBADMSG;
                }
                if (!*++c->literal)
                        value_done(c);
                return 0;
        case J_NUM_MINUS:
                if (b == '0')
                        c->state = J_NUM_ZERO;
                else if (digit)
                        c->state = J_NUM_INT;
                else
                        break;
                return 0;
        case J_NUM_ZERO:
        case J_NUM_INT:
                if (digit && c->state == J_NUM_INT)
                        return 0;
                if (b == '.') {
                        c->state = J_NUM_DOT;
                        return 0;
                }
                if (b == 'e' || b == 'E') {
                        c->state = J_NUM_E;
                        return 0;
                }
                if (digit)
                        break; /* a leading zero followed by a digit */
                value_done(c);
                return step(c, b);
        case J_NUM_DOT:
                if (!digit)
                        break;
                c->state = J_NUM_FRAC;
                return 0;
        case J_NUM_FRAC:
                if (digit)
                        return 0;
                if (b == 'e' || b == 'E') {
                        c->state = J_NUM_E;
                        return 0;
                }
                value_done(c);
                return step(c, b);
        case J_NUM_E:
                if (b == '+' || b == '-') {
                        c->state = J_NUM_E_SIGN;
                        return 0;
                }
                if (!digit)
                        break;
                c->state = J_NUM_EXP;
                return 0;
        case J_NUM_E_SIGN:
                if (!digit)
                        break;
                c->state = J_NUM_EXP;
                return 0;
        case J_NUM_EXP:
                if (digit)
                        return 0;
                value_done(c);
                return step(c, b);
        default:
                break;
        }
        if (c->state >= J_NUM_MINUS && c->state <= J_NUM_EXP) {
                c->why = "malformed number";
                return -EBADMSG;
        }
        if (is_ws(b))
                return 0;
        switch (c->state) {
        case J_VALUE:
                return value_start(c, b);
        case J_VALUE_OR_END:
                if (b == ']')
                        return close_container(c, b);
                return value_start(c, b);
        case J_KEY_OR_END:
                if (b == '}')
                        return close_container(c, b);
                /* fall through */
        case J_KEY:
                if (b != '"') {
                        c->why = "an object key (a string) was expected";
                        return -EBADMSG;
                }
                c->state = J_STRING;
                c->string_is_key = true;
                return 0;
        case J_COLON:
                if (b != ':') {
                        c->why = "':' was expected after an object key";
                        return -EBADMSG;
                }
                c->state = J_VALUE;
                return 0;
        case J_AFTER:
                if (b == ',') {
                        c->state = in_object(c) ? J_KEY : J_VALUE;
                        return 0;
                }
                if (b == ']' || b == '}')
                        return close_container(c, b);
                c->why = "',' or a closing bracket was expected";
                return -EBADMSG;
        case J_DONE:
                c->why = "text after the end of the document";
                return -EBADMSG;
        default:
                c->why = "invalid state";
                return -EBADMSG;
        }
}

int stamp_json_check_feed(struct stamp_json_check *c, const uint8_t *p, size_t len)
{
        if (c->state == J_BAD)
                return -EBADMSG;
        for (size_t i = 0; i < len; i++) {
                int r = step(c, p[i]);
                if (r < 0) {
                        c->state = J_BAD;
                        return r;
                }
                c->offset++;
                if (p[i] == '\n')
                        c->line++;
        }
        return 0;
}

int stamp_json_check_end(struct stamp_json_check *c, char *msg, size_t msg_size)
{
        if (c->state != J_BAD) {
                if (c->depth == 0 && num_may_end(c->state))
                        c->state = J_DONE;
                if (c->state == J_DONE) {
                        set_msg(msg, msg_size, "");
                        return 0;
                }
                c->why = c->offset == 0 ? "empty document" : "unexpected end of the document";
        }
        if (msg_size)
                snprintf(msg, msg_size, "%s at line %llu (byte %llu)", c->why,
                         (unsigned long long)c->line, (unsigned long long)c->offset);
        return -EBADMSG;
}
