/* SPDX-License-Identifier: MIT */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"

const char *arg_store;
bool arg_json;
bool arg_quiet;

/* The last error line printed (json_failure()). */
static char *last_error;

static void remember_error(const char *msg)
{
        char *copy = strdup(msg);

        if (!copy)
                return; /* json_failure() then names the exit status only */
        free(last_error);
        last_error = copy;
}

bool common_option(int c, const char *optarg_)
{
        switch (c) {
        case 'S':
                arg_store = optarg_;
                return true;
        case 'J':
                arg_json = true;
                json_stdout_count();
                return true;
        case 'q':
                arg_quiet = true;
                return true;
        }
        return false;
}

int parse_options(int argc, char **argv, const struct option *opts, const char *verb,
                  void (*help)(void), struct verb_options *o)
{
        int c;

        while ((c = getopt_long(argc, argv, "hq", opts, NULL)) >= 0) {
                if (common_option(c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        help();
                        return EXIT_OK;
                case 'R':
                        o->read_data = true;
                        continue;
                case 'L':
                        o->lock_timeout = parse_seconds(optarg);
                        if (o->lock_timeout < 0)
                                return seconds_error(verb, "--lock-timeout", optarg);
                        continue;
                }
                return option_error(verb, "hq", opts, argv);
        }
        return -1;
}

/* The long option @name (its first @len bytes) names: exactly, or as the only one it starts; or NULL. */
static const struct option *find_long(const struct option *opts, const char *name, size_t len)
{
        const struct option *found = NULL;
        unsigned matches = 0;

        for (const struct option *o = opts; o->name; o++) {
                if (strncmp(o->name, name, len) != 0)
                        continue;
                if (strlen(o->name) == len)
                        return o;
                found = o;
                matches++;
        }
        return matches == 1 ? found : NULL;
}

bool json_unparsed;

void json_scan_unparsed(char **argv, const char *shortopts, const struct option *opts,
                        bool verb_ahead)
{
        for (size_t i = 0; argv[i] && strcmp(argv[i], "--") != 0; i++) {
                const char *a = argv[i];
                if (a[0] != '-' || !a[1]) {
                        if (verb_ahead) {
                                /*
                                 * The command (stamp --bogus list --json): its
                                 * options are its own, so its values are not
                                 * known; a --json among them is taken as one.
                                 */
                                for (i++; argv[i] && strcmp(argv[i], "--") != 0; i++)
                                        if (strcmp(argv[i], "--json") == 0)
                                                json_unparsed = true;
                                return;
                        }
                        continue;
                }
                if (strcmp(a, "--json") == 0) {
                        json_unparsed = true;
                        return;
                }
                if (a[1] == '-') {
                        const struct option *o = find_long(opts, a + 2, strcspn(a + 2, "="));
                        if (o && o->has_arg == required_argument && !strchr(a, '=') && argv[i + 1])
                                i++; /* its value, even "--json" */
                        continue;
                }
                for (size_t k = 1; a[k]; k++) {
                        const char *p = strchr(shortopts, a[k]);
                        if (p && a[k] != ':' && p[1] == ':') {
                                if (!a[k + 1] && argv[i + 1])
                                        i++; /* the value is the next argument */
                                break; /* or the rest of this one */
                        }
                }
        }
}

int option_error(const char *verb, const char *shortopts, const struct option *opts,
                 char **argv)
{
        const char *arg = argv[optind - 1];
        int n = (int)strcspn(arg, "=");
        const struct option *o;

        /* cat and serve write raw bytes: never a JSON document */
        if (strcmp(verb, "cat") != 0 && strcmp(verb, "serve") != 0)
                json_scan_unparsed(argv + 1, shortopts, opts, false);
        if (optopt == 0) { /* a long option unknown, or the start of several */
                unsigned matches = 0;
                for (o = opts; arg[0] == '-' && arg[1] == '-' && o->name; o++)
                        matches += n > 2 && strncmp(o->name, arg + 2, (size_t)n - 2) == 0;
                return usage_error(verb, matches > 1 ? "option '%.*s' is ambiguous"
                                                     : "unknown option '%.*s'",
                                   n, arg);
        }
        /*
         * A long option that takes a value and got none, or takes none and
         * got one. argv[optind - 1] is it only if it names optopt: an
         * unknown short option inside a cluster ("-zq") leaves optind on
         * the argument before.
         */
        o = arg[0] == '-' && arg[1] == '-' && n > 2 ? find_long(opts, arg + 2, (size_t)n - 2) : NULL;
        if (o && !o->flag && o->val == optopt)
                return usage_error(verb, arg[n] ? "option '%.*s' takes no value"
                                                : "option '%.*s' needs a value",
                                   n, arg);
        if (optopt != ':' && strchr(shortopts, optopt))
                return usage_error(verb, "option '-%c' needs a value", optopt);
        return usage_error(verb, "unknown option '-%c'", optopt);
}

int exit_code(int r)
{
        switch (-r) {
        case 0:
                return EXIT_OK;
        case ENOENT:
        case ENOTDIR:
        case EMEDIUMTYPE:
                return EXIT_NOTFOUND;
        case EBUSY:
                return EXIT_BUSY;
        case EBADMSG:
        case EOPNOTSUPP:
        case EUCLEAN:
                return EXIT_CORRUPT;
        case EINVAL:
                return EXIT_USAGE;
        default:
                return EXIT_FAILED;
        }
}

/*
 * One line, whatever the names in it hold: a newline or a terminal escape
 * in a file name must not forge a line of its own or reach the terminal.
 */
int parse_seconds(const char *s)
{
        unsigned long v;

        return parse_count_max(s, SECONDS_MAX, &v) < 0 ? -1 : (int)v;
}

int seconds_error(const char *verb, const char *opt, const char *arg)
{
        return usage_error(verb, "%s: '%s' is not a number of seconds (0 to %d)", opt, arg,
                           SECONDS_MAX);
}

static void vlog(const char *level, const char *fmt, va_list ap)
{
        char *msg = NULL;

        fputs("stamp: ", stderr);
        if (level)
                fputs(level, stderr);
        if (vasprintf(&msg, fmt, ap) >= 0) {
                fput_escaped(stderr, msg);
                if (!level)
                        remember_error(msg);
                free(msg);
        } else {
                fputs("(out of memory)", stderr);
        }
        fputc('\n', stderr);
}

void log_error(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vlog(NULL, fmt, ap);
        va_end(ap);
}

void log_warning(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vlog("warning: ", fmt, ap);
        va_end(ap);
}

const char *describe(int r)
{
        switch (-r) {
        case EMEDIUMTYPE:
                return "not a stampfs store (no config file)";
        case EBADMSG:
                return "data is corrupt";
        case EOPNOTSUPP:
                return "unsupported format version (made by a newer stampfs?)";
        case EBUSY:
                return "locked by another process";
        case ENOSPC:
                return "no space left on the store's device";
        case EUCLEAN:
                return "the store's index.db is missing or empty; 'stamp reindex' (or the next 'stamp snapshot') rebuilds it";
        default:
                return strerror(-r);
        }
}

int open_store_at(const char *dir, struct stamp_store **ret)
{
        int r = stamp_store_open(dir, ret);

        if (r == 0)
                return EXIT_OK;
        if (r == -ENOENT)
                log_error("store '%s': no such directory", dir);
        else if (r == -EROFS)
                log_error("store '%s': %s", dir, STAMP_STORE_EROFS_MESSAGE);
        else if (r == -EBADMSG)
                log_error("store '%s': %s", dir, STAMP_STORE_CONFIG_MESSAGE);
        else if (r == -ENOTDIR) {
                log_error("store '%s': %s", dir, STAMP_STORE_NOTDIR_MESSAGE);
                return EXIT_CORRUPT;
        } else
                log_error("store '%s': %s", dir, describe(r));
        return exit_code(r);
}

int open_store(struct stamp_store **ret)
{
        const char *dir = arg_store ? arg_store : getenv("STAMP_STORE");

        if (!dir || !*dir) {
                log_error("no store given: use --store DIR or set STAMP_STORE");
                return EXIT_USAGE;
        }
        return open_store_at(dir, ret);
}

int resolve_stamp(struct stamp_store *s, const char *arg, char ret[STAMP_STAMP_LEN + 1])
{
        int r = stamp_store_resolve(s, arg, ret);

        if (r == -EINVAL) {
                log_error("'%s' is not a stamp (expected YYYYMMDDTHHMMSSZ or 'latest')", arg);
                return EXIT_USAGE;
        }
        if (r == -ENOENT) {
                if (strcmp(arg, "latest") == 0)
                        log_error("store '%s' has no snapshots yet", stamp_store_path(s));
                else
                        log_error("snapshot '%s' does not exist in store '%s'", arg,
                                  stamp_store_path(s));
                return EXIT_NOTFOUND;
        }
        if (r < 0) {
                log_error("snapshot '%s': %s", arg, describe(r));
                return exit_code(r);
        }
        return EXIT_OK;
}

int open_store_stamp(const char *arg, struct stamp_store **ret_s,
                     char ret_stamp[STAMP_STAMP_LEN + 1])
{
        struct stamp_store *s = NULL;
        int r = open_store(&s);

        if (r != EXIT_OK)
                return r;
        r = resolve_stamp(s, arg, ret_stamp);
        if (r != EXIT_OK) {
                stamp_store_free(s);
                return r;
        }
        *ret_s = s;
        return EXIT_OK;
}

int usage_error(const char *verb, const char *fmt, ...)
{
        va_list ap;
        char *msg = NULL;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        fputs("stamp: ", stderr);
        fput_escaped(stderr, msg ? msg : "(out of memory)");
        if (verb)
                fprintf(stderr, "\nTry 'stamp %s --help'.\n", verb);
        else
                fprintf(stderr, "\nTry 'stamp --help'.\n");
        if (msg)
                remember_error(msg);
        free(msg);
        return EXIT_USAGE;
}

/* Bytes written to standard output since json_stdout_count(). */
static uint64_t stdout_bytes;

static ssize_t counted_write(void *cookie, const char *buf, size_t len)
{
        size_t done = 0;

        (void)cookie;
        while (done < len) {
                ssize_t n = write(STDOUT_FILENO, buf + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                done += (size_t)n;
        }
        stdout_bytes += done;
        return done || !len ? (ssize_t)done : -1;
}

/* A command whose standard output is raw bytes (cat, serve): no error document. */
static bool raw_stdout;

void json_raw_output(void)
{
        raw_stdout = true;
}

void json_stdout_count(void)
{
        cookie_io_functions_t io = { .write = counted_write };
        static bool counting;
        FILE *f;

        if (counting)
                return;
        f = fopencookie(NULL, "w", io);
        if (!f)
                return; /* json_failure() then never prints: as before */
        counting = true;
        fflush(stdout);
        setvbuf(f, NULL, isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF, BUFSIZ);
        stdout = f;
}

int json_failure(int code)
{
        if (code < EXIT_USAGE || raw_stdout || fflush(stdout) != 0 || stdout_bytes > 0)
                return code;
        /* Nothing written yet: a failure before the command's own document. */
        printf("{\"error\": ");
        if (last_error)
                json_string(stdout, last_error);
        else
                printf("null");
        printf(", \"exit_status\": %d}\n", code);
        fflush(stdout);
        return code;
}

const char *fmt_bytes(uint64_t n, char buf[32])
{
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double)n;
        unsigned u = 0;

        while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, 32, "%llu B", (unsigned long long)n);
        else
                snprintf(buf, 32, "%.1f %s", v, units[u]);
        return buf;
}

/*
 * The length (1..4) of the well-formed UTF-8 sequence at @p and its code
 * point, or 0 if @p does not start one (overlong forms, surrogates and
 * values above U+10FFFF are not well-formed). Stops at a NUL.
 */
static size_t utf8_decode(const unsigned char *p, uint32_t *ret_cp)
{
        uint32_t cp, min;
        size_t n;

        if (p[0] < 0x80) {
                *ret_cp = p[0];
                return 1;
        }
        if (p[0] >= 0xc2 && p[0] <= 0xdf)
                n = 2;
        else if ((p[0] & 0xf0) == 0xe0)
                n = 3;
        else if (p[0] >= 0xf0 && p[0] <= 0xf4)
                n = 4;
        else
                return 0;
        cp = p[0] & (0x7f >> n);
        min = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret_cp = cp;
        return n;
}

void json_string(FILE *f, const char *s)
{
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                uint32_t cp;
                size_t n;
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p < 0x20)
                        fprintf(f, "\\u%04x", *p);
                else if ((n = utf8_decode(p, &cp)) > 0) {
                        fwrite(p, 1, n, f);
                        p += n - 1;
                } else {
                        /*
                         * Not UTF-8: JSON text cannot hold the byte, so it
                         * becomes a lone surrogate U+DC80..U+DCFF, the
                         * convention of Python's "surrogateescape" (and so
                         * os.fsencode() gives the byte back).
                         */
                        fprintf(f, "\\udc%02x", *p);
                }
        }
        fputc('"', f);
}

void fput_escaped(FILE *f, const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                uint32_t cp;
                size_t n = utf8_decode(p, &cp);
                if (*p == '\\')
                        fputs("\\\\", f);
                else if (*p == '\n')
                        fputs("\\n", f);
                else if (*p == '\t')
                        fputs("\\t", f);
                else if (*p == '\r')
                        fputs("\\r", f);
                else if (*p < 0x20 || *p == 0x7f || n == 0)
                        fprintf(f, "\\x%02x", *p);
                else if (cp >= 0x80 && cp <= 0x9f) {
                        /* C1 controls: U+009B is a terminal's CSI, as ESC [ is. */
                        fprintf(f, "\\u%04x", (unsigned)cp);
                        p += n - 1;
                } else {
                        fwrite(p, 1, n, f);
                        p += n - 1;
                }
        }
}

bool progress_enabled(void)
{
        return !arg_quiet && !arg_json && isatty(STDERR_FILENO);
}

void print_escaped_max(FILE *f, const char *s, size_t max)
{
        size_t n = strlen(s);

        if (n > max && max > 3) {
                fputs("...", f);
                s += n - (max - 3);
                /* Do not start inside a UTF-8 sequence. */
                while ((*(const unsigned char *)s & 0xc0) == 0x80)
                        s++;
        }
        fput_escaped(f, s);
}

static int lock_result(struct stamp_store *s, int r, const char *holder, int timeout_s)
{
        if (r == -EBUSY) {
                log_error("store '%s' is locked by %s (waited %d s)", stamp_store_path(s), holder,
                          timeout_s);
                return EXIT_BUSY;
        }
        if (r < 0) {
                log_error("cannot lock store '%s': %s", stamp_store_path(s), describe(r));
                return exit_code(r);
        }
        return EXIT_OK;
}

int lock_store(struct stamp_store *s, int timeout_s, const char *what)
{
        char holder[256] = "";

        return lock_result(s, stamp_store_lock(s, timeout_s, what, holder, sizeof(holder)), holder,
                           timeout_s);
}

void warn_unmarked(const char *stamp)
{
        log_warning("snapshot %s was deleted, but with no space left it is not remembered as "
                    "forgotten: a 'stamp copy' into this store would bring it back",
                    stamp);
}

int hold_store_against_gc(struct stamp_store *s, int timeout_s)
{
        char holder[256] = "";

        return lock_result(s, stamp_store_gc_hold(s, timeout_s, holder, sizeof(holder)), holder,
                           timeout_s);
}
