/* SPDX-License-Identifier: MIT */
/* stamp snapshot: take a snapshot of one or more sources. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "check-report.h"
#include "common.h"
#include "config.h"
#include "snapshot.h"

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
               "Before the snapshot is committed, the packs it wrote are read back, every\n"
               "new object is re-hashed and every new directory tree decoded; the result\n"
               "is in the record (\"validation\"). A snapshot that fails this check is not\n"
               "committed and the command exits with status 7.\n"
               "\n"
               "Exit status 1 means the snapshot was committed but some entries could\n"
               "not be read (they are listed on stderr and in the record).\n");
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

static int take(struct stamp_store *s, struct stamp_snapshot_options *o, int lock_timeout)
{
        struct stamp_record rec;
        char holder[256] = "";
        const char *bad = NULL;
        struct check_report rep;
        int r;

        r = stamp_store_lock(s, lock_timeout, "stamp snapshot", holder, sizeof(holder));
        if (r == -EBUSY) {
                log_error("store '%s' is locked by %s (waited %d s)", stamp_store_path(s), holder,
                          lock_timeout);
                return EXIT_BUSY;
        }
        if (r < 0) {
                log_error("cannot lock store '%s': %s", stamp_store_path(s), describe(r));
                return exit_code(r);
        }
        r = stamp_store_recover(s);
        if (r < 0) {
                log_error("store '%s': recovery failed: %s", stamp_store_path(s), describe(r));
                return exit_code(r);
        }
        if (progress_enabled()) {
                o->progress = show_progress;
        }
        check_report_init(&rep, "snapshot");
        rep.json = false; /* problems are errors here: stderr */
        rep.out = stderr;
        o->problem = check_report_problem;
        o->userdata = &rep;
        r = stamp_snapshot_create(s, o, &rec, &bad);
        if (o->progress)
                fputs("\r\033[K", stderr);
        if (r < 0) {
                if (bad && r == -EEXIST)
                        log_error("source '%s': another source has the same name; "
                                  "snapshot them from a common parent instead", bad);
                else if (bad)
                        log_error("source '%s': %s", bad, describe(r));
                else if (rep.problems) {
                        log_error("snapshot failed validation (%llu problems above), nothing was "
                                  "committed; run 'stamp verify --read-data'",
                                  rep.problems);
                        return EXIT_INVALID;
                } else
                        log_error("snapshot failed, nothing was committed: %s", describe(r));
                if (bad) /* a problem with the command line's sources */
                        return r == -ENOENT ? EXIT_NOTFOUND : EXIT_USAGE;
                /* Anything else is a store failure, even a missing file in it. */
                return exit_code(r) == EXIT_NOTFOUND ? EXIT_FAILED : exit_code(r);
        }
        for (size_t i = 0; i < rec.errors.n; i++)
                log_warning("%s", rec.errors.v[i]);
        if (rec.n_errors > rec.errors.n)
                log_warning("%llu more errors not listed",
                            (unsigned long long)(rec.n_errors - rec.errors.n));
        for (size_t i = 0; i < rec.changed.n; i++)
                log_warning("%s: changed while it was read, stored as read (marked)",
                            rec.changed.v[i]);
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
        r = rec.n_errors > 0 || rec.n_changed > 0 ? EXIT_WARNINGS : EXIT_OK;
        stamp_record_release(&rec);
        return r;
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
                {}
        };
        struct stamp_snapshot_options o = { .tool_version = "stamp " STAMP_VERSION };
        struct list tags = { 0 }, excludes = { 0 };
        struct stamp_store *s = NULL;
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
                case 'T':
                        o.threads = (unsigned)strtoul(optarg, &end, 10);
                        if (*end || o.threads < 1 || o.threads > 256)
                                return usage_error("snapshot", "--threads must be 1..256");
                        break;
                case 'L':
                        lock_timeout = (int)strtol(optarg, &end, 10);
                        if (*end || lock_timeout < 0)
                                return usage_error("snapshot", "--lock-timeout must be >= 0");
                        break;
                case 'V':
                        o.no_validate = true;
                        break;
                default:
                        return usage_error("snapshot", "unknown option");
                }
        }
        if (optind >= argc) {
                free(tags.v);
                free(excludes.v);
                return usage_error("snapshot", "no source given");
        }
        o.sources = (const char *const *)argv + optind;
        o.n_sources = (size_t)(argc - optind);
        o.tags = tags.v;
        o.n_tags = tags.n;
        o.excludes = excludes.v;
        o.n_excludes = excludes.n;
        r = open_store(&s);
        if (r == EXIT_OK)
                r = take(s, &o, lock_timeout);
        stamp_store_free(s);
        free(tags.v);
        free(excludes.v);
        return r;
}
