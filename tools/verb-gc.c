/* SPDX-License-Identifier: MIT */
/* stamp gc: reclaim the space of objects no snapshot references. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "gc.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] gc [OPTIONS]\n"
               "\n"
               "Delete the objects that no snapshot references any more (after 'stamp\n"
               "forget') and reclaim their space: packs with nothing live are deleted,\n"
               "packs with more than PERCENT unused are rewritten (their live objects are\n"
               "copied to new packs) and deleted. gc runs beside snapshots and mounts: it\n"
               "holds the store lock only for its short final commit. A kill at any point\n"
               "loses nothing; the next gc finishes the job.\n"
               "\n"
               "On a full disk gc gives back the store's reserve (STORE/reserve, set aside\n"
               "by 'stamp init', at most 8 MiB) to make room for its own bookkeeping, keeps\n"
               "its scratch database in $TMPDIR, and only deletes packs with nothing live;\n"
               "the reserve is set aside again once there is room.\n"
               "\n"
               "Options:\n"
               "  -n, --dry-run            only report what would be freed\n"
               "  --max-unused PERCENT     rewrite packs with more unused than this\n"
               "                           (default 10; 0 rewrites every pack with any)\n"
               "  --lock-timeout SECONDS   wait this long for the store lock before the\n"
               "                           commit, and as long for a restore or drill that\n"
               "                           reads the store to end (default 3600); nothing\n"
               "                           is deleted if it runs out\n"
               "  --json                   print the result as JSON\n"
               "\n"
               "Exit status: 0 done; 4 another gc runs, or a restore or drill reading the\n"
               "store or the store lock was not free in time; 5 the store is damaged (a\n"
               "snapshot references missing or unreadable objects: nothing is deleted;\n"
               "see 'stamp reindex').\n");
}

struct ui {
        bool progress;
        bool waited;
        char holder[256];
        /* Test hooks (hidden): STAMP_TEST_CRASH_AT=point:n, STAMP_TEST_GC_PAUSE=point:dir. */
        char crash_point[64];
        long crash_n;
        char pause_point[64];
        const char *pause_dir;
};

static const char *const phase_names[_STAMP_GC_PHASE_MAX] = {
        [STAMP_GC_PHASE_MARK] = "marking",
        [STAMP_GC_PHASE_PLAN] = "planning",
        [STAMP_GC_PHASE_REWRITE] = "rewriting",
        [STAMP_GC_PHASE_WAIT] = "waiting",
        [STAMP_GC_PHASE_COMMIT] = "committing",
        [STAMP_GC_PHASE_DELETE] = "deleting",
};

static void show_progress(const struct stamp_gc_progress *p, void *userdata)
{
        struct ui *u = userdata;

        if (p->phase == STAMP_GC_PHASE_WAIT && p->holder) {
                snprintf(u->holder, sizeof(u->holder), "%s", p->holder);
                u->waited = true;
                if (u->progress)
                        fputs("\r\033[K", stderr);
                if (!arg_quiet)
                        fprintf(stderr, "stamp: waiting for %s\n", p->holder);
                return;
        }
        if (!u->progress)
                return;
        fprintf(stderr, "\r\033[K%s", phase_names[p->phase]);
        if (p->phase == STAMP_GC_PHASE_MARK)
                fprintf(stderr, ": %llu/%llu snapshots, %llu objects",
                        (unsigned long long)p->done, (unsigned long long)p->total,
                        (unsigned long long)p->objects);
        else if (p->phase == STAMP_GC_PHASE_REWRITE)
                fprintf(stderr, ": %llu/%llu objects copied", (unsigned long long)p->done,
                        (unsigned long long)p->total);
        else if (p->phase == STAMP_GC_PHASE_DELETE)
                fprintf(stderr, ": %llu/%llu packs", (unsigned long long)p->done,
                        (unsigned long long)p->total);
        fflush(stderr);
}

static void pause_here(const char *dir)
{
        char path[4096];

        snprintf(path, sizeof(path), "%s/paused", dir);
        (void)close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        snprintf(path, sizeof(path), "%s/resume", dir);
        for (int i = 0; i < 6000 && access(path, F_OK) < 0; i++)
                usleep(100 * 1000);
}

static void test_hook(const char *point, void *userdata)
{
        struct ui *u = userdata;

        if (u->pause_dir && strcmp(point, u->pause_point) == 0) {
                pause_here(u->pause_dir);
                u->pause_dir = NULL; /* once */
        }
        if (u->crash_n > 0 && strcmp(point, u->crash_point) == 0 && --u->crash_n == 0)
                raise(SIGKILL); /* as a kill -9 would, exactly here */
}

static void parse_test_env(struct ui *u)
{
        const char *crash = getenv("STAMP_TEST_CRASH_AT");
        const char *pause = getenv("STAMP_TEST_GC_PAUSE");
        const char *colon;

        if (crash && (colon = strchr(crash, ':')) &&
            (size_t)(colon - crash) < sizeof(u->crash_point)) {
                snprintf(u->crash_point, sizeof(u->crash_point), "%.*s", (int)(colon - crash),
                         crash);
                u->crash_n = atol(colon + 1);
        }
        if (pause && (colon = strchr(pause, ':')) &&
            (size_t)(colon - pause) < sizeof(u->pause_point)) {
                snprintf(u->pause_point, sizeof(u->pause_point), "%.*s", (int)(colon - pause),
                         pause);
                u->pause_dir = colon + 1;
        }
}

#define F(name) fprintf(f, "%s\"" #name "\": %llu", first ? "" : ", ", \
                        (unsigned long long)res->name), first = false

static void print_json(const struct stamp_gc_result *res, bool dry_run)
{
        FILE *f = stdout;
        bool first = true;

        fputc('{', f);
        F(snapshots);
        F(new_snapshots);
        F(live_objects);
        F(candidates);
        F(candidate_bytes);
        F(dead_objects);
        F(dead_bytes);
        F(packs_before);
        F(bytes_before);
        F(packs_deleted);
        F(packs_rewritten);
        F(packs_kept_back);
        F(packs_written);
        F(objects_copied);
        F(bytes_written);
        F(files_dropped);
        F(pending_removed);
        F(bytes_freed);
        F(plan_delete);
        F(plan_rewrite);
        F(plan_free_bytes);
        F(reserve_released);
        fprintf(f, ", \"low_space\": %s, \"reserve_made\": %s, \"dry_run\": %s}\n",
                res->low_space ? "true" : "false", res->reserve_made ? "true" : "false",
                dry_run ? "true" : "false");
}

#undef F

static void print_summary(const struct stamp_gc_result *res, bool dry_run)
{
        char b1[32], b2[32], b3[32];

        if (dry_run) {
                printf("would delete %llu unreferenced objects (%s stored) of %llu snapshots' "
                       "%llu live ones;\n"
                       "would delete %llu packs and rewrite %llu, freeing about %s of %s\n",
                       (unsigned long long)res->candidates, fmt_bytes(res->candidate_bytes, b1),
                       (unsigned long long)res->snapshots, (unsigned long long)res->live_objects,
                       (unsigned long long)res->plan_delete, (unsigned long long)res->plan_rewrite,
                       fmt_bytes(res->plan_free_bytes, b2), fmt_bytes(res->bytes_before, b3));
                return;
        }
        if (res->low_space)
                printf("the store's disk was full: %s%s, and only packs with nothing live were "
                       "deleted (none rewritten)\n",
                       res->reserve_released ? "gave back its reserve of " : "no reserve left",
                       res->reserve_released ? fmt_bytes(res->reserve_released, b3) : "");
        printf("deleted %llu unreferenced objects (%s stored); %llu snapshots, %llu live objects\n",
               (unsigned long long)res->dead_objects, fmt_bytes(res->dead_bytes, b1),
               (unsigned long long)(res->snapshots + res->new_snapshots),
               (unsigned long long)res->live_objects);
        if (res->candidates > res->dead_objects)
                printf("%llu unreferenced objects stay in packs below the --max-unused threshold\n",
                       (unsigned long long)(res->candidates - res->dead_objects));
        printf("removed %llu packs (%llu deleted, %llu rewritten into %llu new), freed %s\n",
               (unsigned long long)(res->packs_deleted + res->packs_rewritten),
               (unsigned long long)res->packs_deleted, (unsigned long long)res->packs_rewritten,
               (unsigned long long)res->packs_written, fmt_bytes(res->bytes_freed, b2));
        if (res->packs_kept_back)
                printf("kept %llu packs a snapshot taken meanwhile uses (the next gc frees them)\n",
                       (unsigned long long)res->packs_kept_back);
        if (res->pending_removed)
                printf("finished an interrupted gc: %llu packs deleted\n",
                       (unsigned long long)res->pending_removed);
        if (res->files_dropped)
                printf("dropped %llu files-cache entries of deleted data\n",
                       (unsigned long long)res->files_dropped);
        if (res->reserve_made)
                printf("set the store's reserve aside again\n");
}

static int report_failure(struct stamp_store *s, const struct stamp_gc_result *res, int r,
                          const struct ui *u, int lock_timeout)
{
        char hex[STAMP_ID_HEX_SIZE];

        stamp_id_to_hex(&res->bad_id, hex);
        if (r == -EUCLEAN && res->bad_stamp[0]) {
                char more[64] = "";
                if (res->missing > 1)
                        snprintf(more, sizeof(more), " (%llu objects are missing in all)",
                                 (unsigned long long)res->missing);
                log_error("refusing to collect garbage: snapshot '%s' references object %s, "
                          "which the index does not have%s; nothing was deleted. Run 'stamp "
                          "reindex' (a stale or damaged index); if gc then names it again, the "
                          "object is gone from the packs: 'stamp verify' lists the damaged "
                          "snapshots, and 'stamp forget' removes them",
                          res->bad_stamp, hex, more);
                return EXIT_CORRUPT;
        }
        if ((r == -EBADMSG || r == -EOPNOTSUPP) && res->bad_stamp[0]) {
                if (stamp_id_is_null(&res->bad_id))
                        log_error("refusing to collect garbage: snapshot '%s': record "
                                  "unreadable (%s); nothing was deleted", res->bad_stamp,
                                  describe(r));
                else
                        log_error("refusing to collect garbage: snapshot '%s': object %s is "
                                  "unreadable (%s); nothing was deleted", res->bad_stamp, hex,
                                  describe(r));
                return EXIT_CORRUPT;
        }
        if (r == -EBADMSG && !stamp_id_is_null(&res->bad_id)) {
                log_error("gc stopped: live object %s is damaged (%s); nothing was deleted",
                          hex, describe(r));
                return EXIT_CORRUPT;
        }
        if (r == -EBUSY && res->lock_timed_out) {
                log_error("gc stopped: the store lock of '%s' was not free within %d s (held by "
                          "%s); nothing was deleted and the store is consistent, run gc again",
                          stamp_store_path(s), lock_timeout,
                          u->waited ? u->holder : "another process");
                return EXIT_BUSY;
        }
        log_error("gc of store '%s' failed: %s; nothing more was deleted, the next gc "
                  "finishes the job", stamp_store_path(s), describe(r));
        return exit_code(r);
}

static int parse_percent(const char *s, unsigned *ret)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || !*s || *end || v > 100)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

int verb_gc(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                               { "dry-run", no_argument, NULL, 'n' },
                                               { "max-unused", required_argument, NULL, 'U' },
                                               { "lock-timeout", required_argument, NULL, 'L' },
                                               {} };
        struct stamp_gc_options o = { .max_unused_pct = 10, .lock_timeout_s = 3600 };
        struct stamp_gc_result res;
        struct stamp_store *s = NULL;
        struct ui u = { 0 };
        char holder[256] = "";
        int c, r;

        while ((c = getopt_long(argc, argv, "hqn", opts, NULL)) >= 0) {
                if (common_option(c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        help();
                        return EXIT_OK;
                case 'n':
                        o.dry_run = true;
                        continue;
                case 'U':
                        if (parse_percent(optarg, &o.max_unused_pct) < 0)
                                return usage_error("gc", "--max-unused: '%s' is not a percentage "
                                                   "from 0 to 100", optarg);
                        continue;
                case 'L':
                        o.lock_timeout_s = parse_seconds(optarg);
                        if (o.lock_timeout_s < 0)
                                return seconds_error("gc", "--lock-timeout", optarg);
                        continue;
                }
                return option_error("gc", "hqn", opts, argv);
        }
        if (optind != argc)
                return usage_error("gc", "unexpected argument '%s'", argv[optind]);
        r = open_store(&s);
        if (r != EXIT_OK)
                return r;
        /* Another gc: fail at once (it does the work). A restore or drill: wait for it. */
        const char *what = o.dry_run ? "stamp gc --dry-run" : "stamp gc";
        r = stamp_store_gc_lock(s, 0, what, holder, sizeof(holder));
        if (r == -EBUSY && stamp_store_gc_held_by_readers(s)) {
                if (!arg_quiet)
                        fprintf(stderr, "stamp: waiting for a restore or drill reading the "
                                        "store (up to %d s)\n", o.lock_timeout_s);
                r = stamp_store_gc_lock(s, o.lock_timeout_s, what, holder, sizeof(holder));
        }
        if (r == -EBUSY) {
                log_error("store '%s' is locked by %s", stamp_store_path(s), holder);
                r = EXIT_BUSY;
                goto out;
        }
        if (r < 0) {
                log_error("cannot lock store '%s': %s", stamp_store_path(s), describe(r));
                r = exit_code(r);
                goto out;
        }
        u.progress = progress_enabled();
        parse_test_env(&u);
        o.progress = show_progress;
        o.hook = test_hook;
        o.userdata = &u;
        r = stamp_gc_run(s, &o, &res);
        if (u.progress)
                fputs("\r\033[K", stderr);
        if (r < 0) {
                r = report_failure(s, &res, r, &u, o.lock_timeout_s);
                goto out;
        }
        if (arg_json)
                print_json(&res, o.dry_run);
        else if (!arg_quiet)
                print_summary(&res, o.dry_run);
        r = EXIT_OK;
out:
        stamp_store_free(s);
        return r;
}
