/* SPDX-License-Identifier: MIT */
/* stamp snapshot: take a snapshot of one or more sources. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "check-report.h"
#include "common.h"
#include "config.h"
#include "snapshot.h"
#include "child.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] snapshot [OPTIONS] SRC...\n"
               "\n"
               "Take a snapshot of SRC and print its stamp (its UTC time, YYYYMMDDTHHMMSSZ).\n"
               "With one source directory the snapshot's root holds its contents; with\n"
               "several, one entry per source named by its basename. Regular files,\n"
               "directories, symlinks, hardlinks, device nodes, fifos and sockets are\n"
               "captured with owners, modes, nanosecond times and extended attributes.\n"
               "Unchanged files are not read again (files cache).\n"
               "\n"
               "Options:\n"
               "  -t, --tag TAG            tag the snapshot (repeatable)\n"
               "  -e, --exclude PATTERN    skip entries matching PATTERN (repeatable); a\n"
               "                           pattern without '/' matches names anywhere, one\n"
               "                           with '/' matches the path from the source root\n"
               "  -x, --one-file-system    do not cross into other filesystems\n"
               "  --threads N              worker threads (default: one per CPU)\n"
               "  --lock-timeout SECONDS   wait this long for the store lock (default 60)\n"
               "  --no-validate            do not read back what was written (recorded as\n"
               "                           \"validation\": {\"status\": \"skipped\"})\n"
               "  --json                   print the snapshot record as JSON\n"
               "\n"
               "Live services:\n"
               "  --sqlite=auto|copy       auto (default): read SQLite databases (files that\n"
               "                           start with the SQLite header) through SQLite's\n"
               "                           online backup API, one committed state including\n"
               "                           the -wal, without stopping writers; their -wal,\n"
               "                           -shm and -journal files are not stored. A database\n"
               "                           SQLite cannot read (locked, corrupt, hot journal)\n"
               "                           is copied as bytes with a warning. copy: plain\n"
               "                           bytes, like any file (not safe while written)\n"
               "  --lock FILE              hold flock(FILE) for the whole snapshot, hooks\n"
               "                           included (created if missing), e.g. a service's\n"
               "                           ingestion lock\n"
               "  --lock-mode MODE         exclusive (default) or shared\n"
               "  --lock-wait SECONDS      wait this long for --lock (default 60), then fail\n"
               "                           (status 4) without a snapshot\n"
               "  --pre CMD                run 'sh -c CMD' before the snapshot (e.g. stop a\n"
               "                           container); if it fails, no snapshot is taken\n"
               "  --post CMD               run 'sh -c CMD' after it, always, even when the\n"
               "                           snapshot or --pre failed (e.g. start it again);\n"
               "                           on success it runs once the data is stored, just\n"
               "                           before the record is committed\n"
               "  --stdin-from CMD         store the output of 'sh -c CMD' (e.g. a database\n"
               "  --stdin-name PATH        dump) as file PATH (relative, mode 0600) in the\n"
               "                           snapshot; if CMD fails, no snapshot is taken\n"
               "\n"
               "Hooks and CMD get STAMP_STORE; --post also STAMP_STATUS (ok or failed) and,\n"
               "on success, STAMP_STAMP. The hooks' stdout goes to stderr. All run after\n"
               "the locks are taken. A file that changes while read is read up to 3 times,\n"
               "then stored as read and listed in the record (changed_during_snapshot).\n"
               "\n"
               "Before the snapshot is committed, the packs it wrote are read back, every\n"
               "new object is re-hashed and every new directory tree decoded; the result\n"
               "is in the record (\"validation\"). A snapshot that fails this check is not\n"
               "committed and the command exits with status 7.\n"
               "\n"
               "Exit status 1 means the snapshot was committed with warnings: entries that\n"
               "could not be read or vanished, files that changed while read, databases\n"
               "copied as bytes, or a failed --post (all listed on stderr and in the\n"
               "record). A failed --pre or --stdin-from command exits 6, no snapshot.\n");
}

struct list {
        const char **v;
        size_t n;
};

static int list_add(struct list *l, const char *s)
{
        const char **n = realloc(l->v, (l->n + 1) * sizeof(char *));

        if (!n)
                return -ENOMEM;
        l->v = n;
        l->v[l->n++] = s;
        return 0;
}

static void show_progress(const struct stamp_progress *p, void *userdata)
{
        char b1[32], b2[32];

        (void)userdata;
        fprintf(stderr, "\r\033[K%llu files, %llu dirs, %s seen, %s new  %.60s",
                (unsigned long long)p->files, (unsigned long long)p->dirs,
                fmt_bytes(p->bytes, b1), fmt_bytes(p->new_bytes, b2), p->path ? p->path : "");
        fflush(stderr);
}

static void summary(const struct stamp_record *rec)
{
        char b1[32], b2[32], b3[32];

        fprintf(stderr, "snapshot %s: %llu files, %llu dirs, %s; %s new, %s stored, %.2f s\n",
                rec->stamp, (unsigned long long)rec->files, (unsigned long long)rec->dirs,
                fmt_bytes(rec->logical_bytes, b1), fmt_bytes(rec->new_bytes, b2),
                fmt_bytes(rec->stored_new_bytes, b3), rec->duration_s);
}

/* What the live-service options asked for, and what happened. */
struct live {
        const char *lock_path;
        bool lock_shared;
        int lock_wait;
        double lock_waited;
        int lock_fd;
        const char *pre, *post;
        int pre_status;
        double pre_s;
        bool post_ran;
        int post_status;
        double post_s;
        const char *stdin_from;
        pid_t stdin_pid;
        int stdin_status;
        char store_env[PATH_MAX + 16];
        struct check_report rep; /* problems found by the snapshot's own validation */
};

/* Problems found by the snapshot's check of what it wrote: errors on stderr. */
static void on_problem(const struct stamp_problem *p, void *userdata)
{
        struct live *l = userdata;
        check_report_problem(p, &l->rep);
}

/* Takes the --lock flock, waiting up to --lock-wait seconds. An exit code. */
static int take_lock(struct live *l)
{
        struct timespec t0, now;
        int op = (l->lock_shared ? LOCK_SH : LOCK_EX) | LOCK_NB;

        l->lock_fd = open(l->lock_path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
        if (l->lock_fd < 0 && (errno == EROFS || errno == EACCES))
                l->lock_fd = open(l->lock_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (l->lock_fd < 0) {
                int e = errno;
                log_error("lock file '%s': %s; no snapshot taken", l->lock_path, strerror(e));
                return e == ENOENT ? EXIT_NOTFOUND : EXIT_FAILED;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
                if (flock(l->lock_fd, op) == 0)
                        break;
                if (errno != EWOULDBLOCK && errno != EINTR) {
                        log_error("lock file '%s': %s; no snapshot taken", l->lock_path,
                                  strerror(errno));
                        return EXIT_FAILED;
                }
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec - t0.tv_sec >= l->lock_wait) {
                        log_error("lock file '%s' is still held by another process after %d s "
                                  "(--lock-wait); no snapshot taken",
                                  l->lock_path, l->lock_wait);
                        return EXIT_BUSY;
                }
                usleep(50 * 1000);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        l->lock_waited = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
        return EXIT_OK;
}

/* Runs --post once: @stamp is NULL unless the snapshot is stored. */
static void run_post(struct live *l, const char *stamp)
{
        char status[32], stamp_env[64];
        char *env[4] = { l->store_env, status, NULL, NULL };
        double secs;

        if (!l->post || l->post_ran)
                return;
        l->post_ran = true;
        snprintf(status, sizeof(status), "STAMP_STATUS=%s", stamp ? "ok" : "failed");
        if (stamp) {
                snprintf(stamp_env, sizeof(stamp_env), "STAMP_STAMP=%s", stamp);
                env[2] = stamp_env;
        }
        l->post_status = child_run(l->post, env, &secs);
        if (l->post_status < 0)
                log_warning("--post command could not be started: %s", strerror(errno));
        else if (l->post_status != 0)
                log_warning("--post command failed (exit status %d)", l->post_status);
        l->post_s = secs;
}

/* Just before the commit: the service may start again; the hooks and lock go in the record. */
static int before_commit(struct stamp_record *rec, void *userdata)
{
        struct live *l = userdata;
        int r = 0;

        run_post(l, rec->stamp);
        if (l->pre)
                r = stamp_record_add_hook(rec, "pre", l->pre, l->pre_status, l->pre_s);
        if (r == 0 && l->post)
                r = stamp_record_add_hook(rec, "post", l->post, l->post_status, l->post_s);
        if (r == 0 && l->lock_path) {
                rec->lock_path = strdup(l->lock_path);
                rec->lock_shared = l->lock_shared;
                rec->lock_wait_s = l->lock_waited;
                if (!rec->lock_path)
                        r = -ENOMEM;
        }
        return r;
}

static int stdin_open(void *userdata)
{
        struct live *l = userdata;
        char *env[] = { l->store_env, NULL };

        return child_pipe(l->stdin_from, env, &l->stdin_pid);
}

/* At the end of the output: a failed export fails the snapshot. */
static int stdin_close(void *userdata)
{
        struct live *l = userdata;

        l->stdin_status = child_wait(l->stdin_pid);
        l->stdin_pid = 0;
        return l->stdin_status == 0 ? 0 : -ECANCELED;
}

/* Logs why stamp_snapshot_create() failed; returns the exit code. */
static int snapshot_failed(const struct stamp_snapshot_options *o, const struct live *l, int r,
                           const char *bad)
{
        const char *stream = o->stream ? o->stream->path : NULL;

        if (bad && bad == stream) {
                if (r == -EINVAL)
                        log_error("--stdin-name '%s': not a relative path of names (no empty, "
                                  "'.' or '..' components)", bad);
                else if (r == -EEXIST)
                        log_error("--stdin-name '%s': exists in the sources", bad);
                else
                        log_error("--stdin-name '%s': a parent is not a directory in the sources",
                                  bad);
                return EXIT_USAGE;
        }
        if (bad && r == -EEXIST)
                log_error("source '%s': another source has the same name; "
                          "snapshot them from a common parent instead", bad);
        else if (bad && r == -EDOM)
                log_error("source '%s': with several sources each is stored under its own "
                          "name, and this one has none (a root, '.' or '..'); snapshot it alone, "
                          "or name its directory", bad);
        else if (bad)
                log_error("source '%s': %s", bad, describe(r));
        else if (r == -ECANCELED && l->stdin_status != 0)
                log_error("--stdin-from command failed (exit status %d); no snapshot taken",
                          l->stdin_status);
        else if (l->rep.problems) {
                log_error("snapshot failed validation (%llu problems above), nothing was "
                          "committed; run 'stamp verify --read-data'",
                          l->rep.problems);
                return EXIT_INVALID;
        } else
                log_error("snapshot failed, nothing was committed: %s", describe(r));
        if (bad) /* a problem with the command line's sources */
                return r == -ENOENT ? EXIT_NOTFOUND : EXIT_USAGE;
        /* Anything else is a store failure, even a missing file in it. */
        return exit_code(r) == EXIT_NOTFOUND ? EXIT_FAILED : exit_code(r);
}

/* Everything after the store lock and recovery: --pre, the snapshot. --post runs in it or after. */
static int run_snapshot(struct stamp_store *s, struct stamp_snapshot_options *o, struct live *l)
{
        struct stamp_record rec;
        const char *bad = NULL;
        char *env[] = { l->store_env, NULL };
        int r;

        if (l->pre) {
                l->pre_status = child_run(l->pre, env, &l->pre_s);
                if (l->pre_status != 0) {
                        if (l->pre_status < 0)
                                log_error("--pre command could not be started: %s; no snapshot "
                                          "taken", strerror(errno));
                        else
                                log_error("--pre command failed (exit status %d); no snapshot "
                                          "taken", l->pre_status);
                        return EXIT_FAILED;
                }
        }
        if (progress_enabled())
                o->progress = show_progress;
        o->before_commit = before_commit;
        o->userdata = l;
        check_report_init(&l->rep, "snapshot");
        l->rep.json = false; /* problems are errors here: stderr */
        l->rep.out = stderr;
        o->problem = on_problem;
        r = stamp_snapshot_create(s, o, &rec, &bad);
        if (o->progress)
                fputs("\r\033[K", stderr);
        if (l->stdin_pid > 0) { /* the snapshot stopped reading it */
                child_kill(l->stdin_pid);
                l->stdin_pid = 0;
        }
        if (r < 0)
                return snapshot_failed(o, l, r, bad);
        for (size_t i = 0; i < rec.errors.n; i++)
                log_warning("%s", rec.errors.v[i]);
        if (rec.n_errors > rec.errors.n)
                log_warning("%llu more errors not listed",
                            (unsigned long long)(rec.n_errors - rec.errors.n));
        for (size_t i = 0; i < rec.changed.n; i++)
                log_warning("%s: changed while it was read, stored as read (marked)",
                            rec.changed.v[i]);
        if (rec.n_changed > rec.changed.n)
                log_warning("%llu more changed files not listed",
                            (unsigned long long)(rec.n_changed - rec.changed.n));
        for (size_t i = 0; i < rec.warnings.n; i++)
                log_warning("%s", rec.warnings.v[i]);
        if (rec.n_warnings > rec.warnings.n)
                log_warning("%llu more warnings not listed",
                            (unsigned long long)(rec.n_warnings - rec.warnings.n));
        if (arg_json) {
                char *text = NULL;
                r = stamp_record_encode(&rec, &text);
                if (r == 0)
                        printf("%s\n", text);
                free(text);
        } else
                printf("%s\n", rec.stamp);
        if (!arg_quiet)
                summary(&rec);
        r = rec.n_errors > 0 || rec.n_changed > 0 || rec.n_warnings > 0 ||
                            (l->post && l->post_status != 0)
                    ? EXIT_WARNINGS
                    : EXIT_OK;
        stamp_record_release(&rec);
        return r;
}

static int take(struct stamp_store *s, struct stamp_snapshot_options *o, int lock_timeout,
                struct live *l)
{
        int r;

        r = lock_store(s, lock_timeout, "stamp snapshot");
        if (r != EXIT_OK)
                return r;
        if (l->lock_path) {
                r = take_lock(l);
                if (r != EXIT_OK)
                        return r;
        }
        r = stamp_store_recover(s);
        if (r < 0) {
                log_error("store '%s': recovery failed: %s", stamp_store_path(s), describe(r));
                return exit_code(r);
        }
        return run_snapshot(s, o, l);
}

int verb_snapshot(int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "tag", required_argument, NULL, 't' },
                { "exclude", required_argument, NULL, 'e' },
                { "one-file-system", no_argument, NULL, 'x' },
                { "threads", required_argument, NULL, 'T' },
                { "lock-timeout", required_argument, NULL, 'L' },
                { "no-validate", no_argument, NULL, 'V' },
                { "sqlite", required_argument, NULL, 'Q' },
                { "lock", required_argument, NULL, 'K' },
                { "lock-mode", required_argument, NULL, 'M' },
                { "lock-wait", required_argument, NULL, 'W' },
                { "pre", required_argument, NULL, 'P' },
                { "post", required_argument, NULL, 'O' },
                { "stdin-from", required_argument, NULL, 'F' },
                { "stdin-name", required_argument, NULL, 'N' },
                {}
        };
        struct stamp_snapshot_options o = { .tool_version = "stamp " STAMP_VERSION };
        struct stamp_snapshot_stream stream = { .open = stdin_open, .close = stdin_close };
        struct live l = { .lock_wait = 60, .lock_fd = -1 };
        struct list tags = { 0 }, excludes = { 0 };
        struct stamp_store *s = NULL;
        const char *store_dir;
        char *abs;
        int lock_timeout = 60, c, r;

        while ((c = getopt_long(argc, argv, "ht:e:xq", opts, NULL)) >= 0) {
                char *end;
                if (common_option(c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        help();
                        return EXIT_OK;
                case 't':
                        if (!*optarg || strlen(optarg) > 255)
                                return usage_error("snapshot", "a tag must be 1..255 bytes");
                        if (list_add(&tags, optarg) < 0)
                                return EXIT_FAILED;
                        break;
                case 'e':
                        if (list_add(&excludes, optarg) < 0)
                                return EXIT_FAILED;
                        break;
                case 'x':
                        o.one_file_system = true;
                        break;
                case 'T': {
                        unsigned long v;
                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        if (*optarg < '0' || *optarg > '9' || *end || errno || v < 1 || v > 256)
                                return usage_error("snapshot", "--threads must be 1..256");
                        o.threads = (unsigned)v;
                        break;
                }
                case 'L':
                        lock_timeout = parse_seconds(optarg);
                        if (lock_timeout < 0)
                                return seconds_error("snapshot", "--lock-timeout", optarg);
                        break;
                case 'V':
                        o.no_validate = true;
                        break;
                case 'Q':
                        if (strcmp(optarg, "auto") == 0)
                                o.sqlite = STAMP_SQLITE_AUTO;
                        else if (strcmp(optarg, "copy") == 0)
                                o.sqlite = STAMP_SQLITE_COPY;
                        else
                                return usage_error("snapshot", "--sqlite must be auto or copy");
                        break;
                case 'K':
                        if (!*optarg)
                                return usage_error("snapshot", "--lock needs a file");
                        l.lock_path = optarg;
                        break;
                case 'M':
                        if (strcmp(optarg, "shared") != 0 && strcmp(optarg, "exclusive") != 0)
                                return usage_error("snapshot",
                                                   "--lock-mode must be shared or exclusive");
                        l.lock_shared = strcmp(optarg, "shared") == 0;
                        break;
                case 'W':
                        l.lock_wait = parse_seconds(optarg);
                        if (l.lock_wait < 0)
                                return seconds_error("snapshot", "--lock-wait", optarg);
                        break;
                case 'P':
                        l.pre = optarg;
                        break;
                case 'O':
                        l.post = optarg;
                        break;
                case 'F':
                        l.stdin_from = optarg;
                        break;
                case 'N':
                        stream.path = optarg;
                        break;
                default:
                        return option_error("snapshot", "ht:e:xq", opts, argv);
                }
        }
        if (optind >= argc) {
                free(tags.v);
                free(excludes.v);
                return usage_error("snapshot", "no source given");
        }
        if (!l.stdin_from != !stream.path) {
                free(tags.v);
                free(excludes.v);
                return usage_error("snapshot", "--stdin-from and --stdin-name go together");
        }
        o.sources = (const char *const *)argv + optind;
        o.n_sources = (size_t)(argc - optind);
        o.tags = tags.v;
        o.n_tags = tags.n;
        o.excludes = excludes.v;
        o.n_excludes = excludes.n;
        if (l.stdin_from) {
                stream.command = l.stdin_from;
                stream.userdata = &l;
                o.stream = &stream;
        }
        store_dir = arg_store ? arg_store : getenv("STAMP_STORE");
        abs = store_dir ? realpath(store_dir, NULL) : NULL;
        snprintf(l.store_env, sizeof(l.store_env), "STAMP_STORE=%s",
                 abs ? abs : store_dir ? store_dir : "");
        free(abs);
        r = open_store(&s);
        if (r == EXIT_OK)
                r = take(s, &o, lock_timeout, &l);
        /* --post always runs, whatever failed (a stopped service must start again). */
        run_post(&l, NULL);
        if (l.post && l.post_status != 0 && r == EXIT_OK)
                r = EXIT_WARNINGS;
        if (l.lock_fd >= 0)
                (void)close(l.lock_fd);
        stamp_store_free(s);
        free(tags.v);
        free(excludes.v);
        return r;
}
