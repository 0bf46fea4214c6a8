/* SPDX-License-Identifier: MIT */
/* stamp restore: make a live directory equal to a snapshot, safely. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check-report.h"
#include "common.h"
#include "config.h"
#include "reader.h"
#include "restore.h"
#include "snapshot.h"

/* After a full store disk stopped the pre-restore snapshot. */
#define NO_SPACE_HINT " (free space there, or restore with --no-pre-snapshot)"

static void help(void)
{
        printf("Usage: stamp [--store DIR] restore STAMP TARGET --confirm-service-stopped\n"
               "                     [--path SUBPATH] [--no-pre-snapshot] [--dry-run]\n"
               "                     [--checksum] [--verbose] [--lock-timeout S] [--json] [-q]\n"
               "\n"
               "Make the contents of directory TARGET equal to snapshot STAMP ('latest' for\n"
               "the newest), or with --path only TARGET/SUBPATH equal to SUBPATH of the\n"
               "snapshot. Files not in the snapshot are removed, changed ones rewritten,\n"
               "metadata restored (modes, owners, nanosecond times, xattrs, symlinks,\n"
               "hardlinks); files whose size and modification time already match are left\n"
               "in place (--checksum compares their content too).\n"
               "\n"
               "Safety:\n"
               "  - the service using TARGET must be stopped: a running service keeps\n"
               "    writing to files it has open, and SQLite cannot be restored under a\n"
               "    live connection; say so with --confirm-service-stopped;\n"
               "  - the snapshot is validated first (metadata level) and an invalid one\n"
               "    is refused;\n"
               "  - a pre-restore snapshot of TARGET (tag 'pre-restore') is committed\n"
               "    before anything changes; its stamp is printed: to roll back, restore\n"
               "    it with --no-pre-snapshot (none when TARGET did not exist: restore\n"
               "    creates it, and removing it undoes the restore);\n"
               "  - TARGET itself keeps its inode: it may be a bind mount or a Docker\n"
               "    volume; mount points below it are emptied and refilled, never removed,\n"
               "    and a bind-mounted single file is rewritten in place;\n"
               "  - nothing outside TARGET is written: symlinks found in TARGET are\n"
               "    replaced, never followed; unsafe names in the snapshot are refused;\n"
               "  - stale -wal, -shm and -journal files of every restored SQLite database\n"
               "    are removed and the database is checked with PRAGMA integrity_check;\n"
               "  - files are written beside their name and renamed into place; an\n"
               "    interrupted restore is completed by running the same command again.\n"
               "\n"
               "Options:\n"
               "  --confirm-service-stopped  required: the service using TARGET is stopped\n"
               "  --path SUBPATH      restore only this path of the snapshot\n"
               "  --no-pre-snapshot   do not take the pre-restore snapshot\n"
               "  --dry-run           change nothing; report what would be done\n"
               "  --checksum          compare the content of files that look unchanged\n"
               "  -v, --verbose       list every path written, removed or updated\n"
               "  --lock-timeout S    wait this long for the store lock, or for a running\n"
               "                      gc to end (default 60); gc cannot start while a\n"
               "                      restore reads the store\n"
               "  -q, --quiet         print only the pre-restore snapshot's stamp\n"
               "  --json              a JSON report: stamp, target, pre_restore_snapshot,\n"
               "                      files_restored, files_removed, files_kept,\n"
               "                      bytes_written, databases, restored_integrity_ok, ...\n"
               "\n"
               "Exit status: 0 restored and every database sound; 7 the snapshot is\n"
               "invalid or a restored database failed its check (do not start the\n"
               "service); 5 the snapshot's data is damaged (TARGET partly restored);\n"
               "3 no such snapshot, or SUBPATH not in it; 2 without\n"
               "--confirm-service-stopped; see 'stamp --help'.\n");
}

struct out {
        bool verbose;
        bool progress;
        bool drawn;
        bool test_stop; /* $STAMP_TEST_RESTORE_STOP: SIGSTOP at the first action */
};

static void clear_line(struct out *o)
{
        if (o->drawn) {
                fputs("\r\033[K", stderr);
                o->drawn = false;
        }
}

static void on_event(enum stamp_restore_action a, const char *path, void *userdata)
{
        static const char *const tag[] = {
                [STAMP_RESTORE_WRITE] = "write ", [STAMP_RESTORE_MKDIR] = "mkdir ",
                [STAMP_RESTORE_REMOVE] = "remove", [STAMP_RESTORE_META] = "meta  ",
                [STAMP_RESTORE_KEEP_MOUNT] = "mount ",
        };
        struct out *o = userdata;

        if (o->test_stop) {
                o->test_stop = false;
                raise(SIGSTOP); /* tests: a restore caught halfway, holding the store */
        }
        if (!o->verbose)
                return;
        clear_line(o);
        fprintf(stderr, "%s %s", tag[a], "");
        fput_escaped(stderr, path);
        fputc('\n', stderr);
}

static void on_warning(const char *path, const char *what, void *userdata)
{
        struct out *o = userdata;

        clear_line(o);
        fputs("stamp: warning: ", stderr);
        fput_escaped(stderr, path);
        fprintf(stderr, ": %s\n", what);
}

static void on_progress(const struct stamp_restore_stats *st, const char *path, void *userdata)
{
        struct out *o = userdata;
        char b[32];

        if (!o->progress)
                return;
        fprintf(stderr, "\r\033[Krestore: %llu files written, %llu kept, %llu removed, %s  ",
                (unsigned long long)st->files_restored, (unsigned long long)st->files_kept,
                (unsigned long long)st->files_removed, fmt_bytes(st->bytes_written, b));
        print_escaped_max(stderr, path, 40);
        o->drawn = true;
}

/* --path SUBPATH: an entry of the snapshot, else nothing is done (EXIT_NOTFOUND). */
static int check_subpath(struct stamp_store *s, const char *stamp, const char *subpath)
{
        struct stamp_record rec;
        struct stamp_tree_obj parent;
        struct stamp_entry e;
        int r;

        r = stamp_store_record_load(s, stamp, &rec);
        if (r < 0) {
                log_error("snapshot %s: record unreadable: %s", stamp, describe(r));
                return exit_code(r);
        }
        r = stamp_path_resolve(s, &rec.root, subpath, &parent, &e);
        stamp_record_release(&rec);
        if (r == 0) {
                stamp_tree_obj_release(&parent);
                return EXIT_OK;
        }
        if (r == -ENOENT || r == -ENOTDIR) {
                log_error("--path '%s' is not in snapshot %s; TARGET was not changed", subpath,
                          stamp);
                return EXIT_NOTFOUND;
        }
        log_error("--path '%s' in snapshot %s: %s; TARGET was not changed", subpath, stamp,
                  describe(r));
        return exit_code(r);
}

/* True if @inner is @outer or below it (both canonical paths). */
static bool path_within(const char *inner, const char *outer)
{
        size_t n = strlen(outer);

        if (strcmp(outer, "/") == 0)
                return true;
        return strncmp(inner, outer, n) == 0 && (inner[n] == 0 || inner[n] == '/');
}

static int take_pre_snapshot(struct stamp_store *s, const char *target, int lock_timeout,
                        char ret[STAMP_STAMP_LEN + 1])
{
        const char *sources[] = { target };
        const char *tags[] = { STAMP_TAG_PRE_RESTORE };
        struct stamp_snapshot_options so = {
                .sources = sources, .n_sources = 1, .tags = tags, .n_tags = 1,
                .tool_version = "stamp " STAMP_VERSION,
        };
        struct stamp_record rec;
        struct check_report rep;
        const char *bad = NULL;
        int r;

        r = lock_store(s, lock_timeout, "stamp restore (pre-restore snapshot)");
        if (r != EXIT_OK)
                return r;
        r = stamp_store_recover(s);
        if (r < 0) {
                log_error("store '%s': recovery failed: %s%s", stamp_store_path(s), describe(r),
                          r == -ENOSPC ? NO_SPACE_HINT : "");
                stamp_store_unlock(s);
                return exit_code(r);
        }
        check_report_init(&rep, "snapshot");
        rep.json = false;
        rep.out = stderr;
        so.problem = check_report_problem;
        so.userdata = &rep;
        r = stamp_snapshot_create(s, &so, &rec, &bad);
        stamp_store_unlock(s);
        if (r < 0) {
                log_error("the pre-restore snapshot of '%s' failed, nothing was changed: %s%s",
                          target, describe(r), r == -ENOSPC ? NO_SPACE_HINT : "");
                return rep.problems ? EXIT_INVALID : exit_code(r) == EXIT_NOTFOUND ? EXIT_FAILED
                                                                                    : exit_code(r);
        }
        if (rec.n_errors) {
                for (size_t i = 0; i < rec.errors.n; i++)
                        log_warning("%s", rec.errors.v[i]);
                log_error("the pre-restore snapshot %s could not read %llu entries of '%s', so "
                          "it could not roll this restore back; nothing was changed (fix the "
                          "permissions, or pass --no-pre-snapshot)",
                          rec.stamp, (unsigned long long)rec.n_errors, target);
                stamp_record_release(&rec);
                return EXIT_FAILED;
        }
        memcpy(ret, rec.stamp, STAMP_STAMP_LEN + 1);
        stamp_record_release(&rec);
        return EXIT_OK;
}

static void report_json(const char *stamp, const char *target, const char *pre,
                        const struct stamp_restore_options *ro,
                        const struct stamp_restore_stats *st, double secs, const char *error)
{
        printf("{\"stamp\": \"%s\", \"target\": ", stamp);
        json_string(stdout, target);
        printf(", \"path\": ");
        if (ro->subpath)
                json_string(stdout, ro->subpath);
        else
                printf("null");
        printf(", \"dry_run\": %s, \"pre_restore_snapshot\": ", ro->dry_run ? "true" : "false");
        if (pre && *pre)
                printf("\"%s\"", pre);
        else
                printf("null");
        printf(", \"files_restored\": %llu, \"files_removed\": %llu, \"files_kept\": %llu, "
               "\"dirs_created\": %llu, \"others_restored\": %llu, \"meta_updated\": %llu, "
               "\"bytes_written\": %llu, \"warnings\": %llu, \"databases\": [",
               (unsigned long long)st->files_restored, (unsigned long long)st->files_removed,
               (unsigned long long)st->files_kept, (unsigned long long)st->dirs_created,
               (unsigned long long)st->others_restored, (unsigned long long)st->meta_updated,
               (unsigned long long)st->bytes_written, (unsigned long long)st->warnings);
        for (size_t i = 0; i < st->n_dbs; i++) {
                printf("%s{\"path\": ", i ? ", " : "");
                json_string(stdout, st->dbs[i].path);
                printf(", \"integrity_ok\": %s, \"message\": ",
                       st->dbs[i].integrity_ok ? "true" : "false");
                json_string(stdout, st->dbs[i].message);
                printf(", \"sidecars_removed\": %u}", st->dbs[i].sidecars_removed);
        }
        printf("], \"restored_integrity_ok\": %s, \"duration_s\": %.3f",
               !error && st->dbs_ok ? "true" : "false", secs);
        if (error) {
                printf(", \"error\": ");
                json_string(stdout, error);
        }
        printf("}\n");
}

static void report_human(const char *stamp, const char *target, const char *pre,
                         const struct stamp_restore_options *ro,
                         const struct stamp_restore_stats *st, double secs)
{
        char b[32];

        printf("%s %s%s%s into %s: %llu files written (%s), %llu kept, %llu removed, "
               "%llu directories created, %llu links and specials, %.2f s\n",
               ro->dry_run ? "would restore" : "restored", stamp, ro->subpath ? ":" : "",
               ro->subpath ? ro->subpath : "", target, (unsigned long long)st->files_restored,
               fmt_bytes(st->bytes_written, b), (unsigned long long)st->files_kept,
               (unsigned long long)st->files_removed, (unsigned long long)st->dirs_created,
               (unsigned long long)st->others_restored, secs);
        for (size_t i = 0; i < st->n_dbs; i++) {
                printf("database ");
                fput_escaped(stdout, st->dbs[i].path);
                printf(": %s", st->dbs[i].integrity_ok ? "integrity ok" : "INTEGRITY CHECK FAILED: ");
                if (!st->dbs[i].integrity_ok)
                        fput_escaped(stdout, st->dbs[i].message);
                if (st->dbs[i].sidecars_removed)
                        printf(" (%u stale sidecar%s removed)", st->dbs[i].sidecars_removed,
                               st->dbs[i].sidecars_removed == 1 ? "" : "s");
                printf("\n");
        }
        if (pre && *pre)
                printf("pre-restore snapshot: %s (to roll back: stamp restore %s %s "
                       "--confirm-service-stopped --no-pre-snapshot)\n",
                       pre, pre, target);
}

int verb_restore(int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "confirm-service-stopped", no_argument, NULL, 'C' },
                { "path", required_argument, NULL, 'P' },
                { "no-pre-snapshot", no_argument, NULL, 'N' },
                { "dry-run", no_argument, NULL, 'n' },
                { "checksum", no_argument, NULL, 'c' },
                { "verbose", no_argument, NULL, 'v' },
                { "lock-timeout", required_argument, NULL, 'L' },
                {}
        };
        struct stamp_restore_options ro = { 0 };
        struct stamp_restore_stats st = { 0 };
        struct stamp_check_stats cs;
        struct check_report rep;
        struct stamp_check_options co = { 0 };
        struct stamp_store *s = NULL;
        struct out out = { 0 };
        char stamp[STAMP_STAMP_LEN + 1], pre[STAMP_STAMP_LEN + 1] = "", err[512] = "";
        char *target = NULL, *store_real = NULL;
        bool confirmed = false, pre_snapshot = true, created = false;
        struct timespec t0, t1;
        int lock_timeout = 60, c, r, tfd = -1;
        double secs;

        while ((c = getopt_long(argc, argv, "hqv", opts, NULL)) >= 0) {
                if (common_option(c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        help();
                        return EXIT_OK;
                case 'C':
                        confirmed = true;
                        break;
                case 'P':
                        ro.subpath = optarg;
                        break;
                case 'N':
                        pre_snapshot = false;
                        break;
                case 'n':
                        ro.dry_run = true;
                        break;
                case 'c':
                        ro.checksum = true;
                        break;
                case 'v':
                        out.verbose = true;
                        break;
                case 'L':
                        lock_timeout = parse_seconds(optarg);
                        if (lock_timeout < 0)
                                return seconds_error("restore", "--lock-timeout", optarg);
                        break;
                default:
                        return option_error("restore", "hqv", opts, argv);
                }
        }
        if (optind + 2 != argc)
                return usage_error("restore", "expected STAMP and TARGET");
        if (!confirmed && !ro.dry_run) {
                log_error("refusing to restore without --confirm-service-stopped: stop the "
                          "service that uses '%s' first (a running service keeps writing to "
                          "the files it has open, and an SQLite database restored under a live "
                          "connection is corrupted), then pass --confirm-service-stopped",
                          argv[optind + 1]);
                return EXIT_USAGE;
        }
        if (ro.subpath && (strstr(ro.subpath, "/../") || strncmp(ro.subpath, "../", 3) == 0 ||
                           strcmp(ro.subpath, "..") == 0 ||
                           (strlen(ro.subpath) >= 3 &&
                            strcmp(ro.subpath + strlen(ro.subpath) - 3, "/..") == 0)))
                return usage_error("restore", "--path must not contain '..'");
        r = open_store(&s);
        if (r != EXIT_OK)
                return r;
        if (pre_snapshot && !ro.dry_run && stamp_store_readonly(s)) {
                log_error("store '%s' is on a read-only file system: it cannot take the "
                          "pre-restore snapshot (restore with --no-pre-snapshot)",
                          stamp_store_path(s));
                r = EXIT_FAILED;
                goto out;
        }
        /* No gc may take the snapshot's data away halfway through. */
        r = hold_store_against_gc(s, lock_timeout);
        if (r != EXIT_OK)
                goto out;
        r = resolve_stamp(s, argv[optind], stamp);
        if (r != EXIT_OK)
                goto out;
        ro.stamp = stamp;
        /* SUBPATH must be there before anything is created, snapshotted or changed. */
        if (ro.subpath && ro.subpath[strspn(ro.subpath, "/")]) {
                r = check_subpath(s, stamp, ro.subpath);
                if (r != EXIT_OK)
                        goto out;
        }

        /* TARGET: created if missing (its parent must exist), never inside or around the store. */
        if (!ro.dry_run && mkdir(argv[optind + 1], 0700) == 0) {
                created = true; /* nothing to roll back to: no pre-restore snapshot */
                if (!arg_quiet && !arg_json)
                        fprintf(stderr, "stamp: created '%s' (no pre-restore snapshot: to undo, "
                                "remove it)\n", argv[optind + 1]);
        }
        tfd = open(argv[optind + 1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (tfd < 0 && errno == ENOENT && ro.dry_run) {
                /* A dry run into a directory that restore would create. */
                char *parent = realpath(".", NULL);
                if (parent && asprintf(&target, "%s%s%s", argv[optind + 1][0] == '/' ? "" : parent,
                                       argv[optind + 1][0] == '/' ? "" : "/", argv[optind + 1]) < 0)
                        target = NULL;
                free(parent);
        } else {
                target = realpath(argv[optind + 1], NULL);
        }
        store_real = realpath(stamp_store_path(s), NULL);
        if ((tfd < 0 && !ro.dry_run) || !target) {
                log_error("target '%s': %s", argv[optind + 1],
                          errno == ENOTDIR ? "not a directory" : strerror(errno));
                r = errno == ENOENT ? EXIT_NOTFOUND : EXIT_FAILED;
                goto out;
        }
        if (store_real && (path_within(store_real, target) || path_within(target, store_real))) {
                log_error("target '%s' %s the store '%s'; refusing", target,
                          path_within(store_real, target) ? "contains" : "is inside",
                          store_real);
                r = EXIT_USAGE;
                goto out;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);

        /* Validate first: an invalid snapshot is never restored. */
        check_report_init(&rep, "validate");
        rep.json = false;
        rep.out = stderr;
        co.problem = check_report_problem;
        co.userdata = &rep;
        r = stamp_check_snapshot(s, stamp, &co, &cs);
        if (r < 0 || cs.problems) {
                if (r < 0)
                        log_error("snapshot %s: cannot validate: %s", stamp, describe(r));
                else
                        log_error("snapshot %s is invalid (%llu problems above); refusing to "
                                  "restore it; TARGET was not changed",
                                  stamp, (unsigned long long)cs.problems);
                r = r < 0 ? exit_code(r) : EXIT_INVALID;
                goto out;
        }

        if (pre_snapshot && !ro.dry_run && !created) {
                r = take_pre_snapshot(s, target, lock_timeout, pre);
                if (r != EXIT_OK)
                        goto out;
                if (!arg_quiet && !arg_json)
                        fprintf(stderr, "stamp: pre-restore snapshot %s taken\n", pre);
        }

        out.progress = progress_enabled();
        out.test_stop = getenv("STAMP_TEST_RESTORE_STOP") != NULL;
        ro.event = on_event;
        ro.warning = on_warning;
        ro.progress = on_progress;
        ro.userdata = &out;
        r = stamp_restore(s, tfd, &ro, &st, err, sizeof(err));
        clear_line(&out);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (r < 0) {
                log_error("restore into '%s' failed: %s", target, err[0] ? err : describe(r));
                if (!ro.dry_run) {
                        /* The rollback, as a command to paste. */
                        char rollback[PATH_MAX + 128] = "";
                        if (pre[0])
                                snprintf(rollback, sizeof(rollback),
                                         "roll back with: stamp restore %s '%s' "
                                         "--confirm-service-stopped --no-pre-snapshot",
                                         pre, target);
                        if (exit_code(r) == EXIT_CORRUPT && st.store_error)
                                /* Damaged data: the same command fails at the same place. */
                                log_error("snapshot %s is damaged ('stamp verify --read-data' "
                                          "lists what else is); TARGET is partly restored: "
                                          "%s%srestore another snapshot",
                                          stamp, rollback, pre[0] ? ", or " : "");
                        else
                                log_error("TARGET is partly restored: %s%s%s",
                                          r == -EBUSY ? "move the mount point out of the way "
                                                        "(see above), then run the same "
                                                        "command again to finish"
                                                      : "run the same command again to finish",
                                          pre[0] ? ", or " : "", rollback);
                }
                if (arg_json)
                        report_json(stamp, target, pre, &ro, &st, secs, err[0] ? err : describe(r));
                /* 3 and 4 would say no such snapshot, a locked store: it failed halfway. */
                r = exit_code(r) == EXIT_NOTFOUND || exit_code(r) == EXIT_BUSY ? EXIT_FAILED
                                                                                : exit_code(r);
                goto out;
        }
        if (arg_json)
                report_json(stamp, target, pre, &ro, &st, secs, NULL);
        else if (!arg_quiet || !st.dbs_ok)
                report_human(stamp, target, pre, &ro, &st, secs);
        else if (pre[0])
                printf("%s\n", pre); /* quiet: only the rollback stamp, like snapshot's stamp */
        if (!st.dbs_ok) {
                log_error("a restored database FAILED its integrity check: do not start the "
                          "service; validate the snapshot (stamp validate %s), try an older one, "
                          "or roll back%s%s",
                          stamp, pre[0] ? " to the pre-restore snapshot " : "", pre);
                r = EXIT_INVALID;
        } else {
                r = st.warnings ? EXIT_WARNINGS : EXIT_OK;
        }
out:
        if (tfd >= 0)
                close(tfd);
        stamp_restore_stats_release(&st);
        free(target);
        free(store_real);
        stamp_store_free(s);
        return r;
}
