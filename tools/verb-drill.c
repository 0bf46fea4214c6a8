/* SPDX-License-Identifier: MIT */
/* stamp drill: restore a snapshot into scratch space and prove the copy right. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "drill.h"
#include "macro.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] drill [STAMP] [--scratch DIR] [--keep] [--read-data]\n"
               "                   [--json] [-q]\n"
               "       stamp [--store DIR] drill --history [--json]\n"
               "\n"
               "Rehearse a restore of snapshot STAMP (default 'latest') without touching the\n"
               "live data: restore it into an empty scratch directory, check the copy, remove\n"
               "it, and record the result in the store's drill log. Meant to run weekly from\n"
               "a timer: a backup that was never restored is only hoped to be one.\n"
               "\n"
               "Steps, each timed:\n"
               "  validate  the snapshot, at the metadata level (with --read-data: every\n"
               "            chunk read back and re-hashed); an invalid snapshot is not\n"
               "            restored, as 'stamp restore' would refuse it;\n"
               "  restore   it into the scratch directory, as 'stamp restore' does (not\n"
               "            if its files would not fit in the free space there, holes\n"
               "            left out: the drill then fails with no_space rather than\n"
               "            fill the disk);\n"
               "  check     every SQLite database of the copy (PRAGMA integrity_check) and\n"
               "            every *.json file (parsed), read from disk;\n"
               "  compare   every entry of the snapshot with the copy: type, mode, owner\n"
               "            (when run as root: only root restores owners), size,\n"
               "            modification time, symlink target, device number, hardlinks,\n"
               "            extended attributes, and content byte for byte; entries the\n"
               "            snapshot lacks are reported too.\n"
               "\n"
               "Scratch directory: by default a new STORE/tmp/drill-XXXXXX, on the store's\n"
               "filesystem (where a restore must find room) and private to the store's\n"
               "owner; one left by a drill that was killed is removed by the next drill.\n"
               "--scratch DIR restores into DIR instead: it must be empty or absent (then it\n"
               "is created, and removed afterwards; an existing DIR is emptied and kept).\n"
               "A DIR on another filesystem than the store gets a warning: the drill then\n"
               "does not show that the store's filesystem has room for a restore.\n"
               "\n"
               "Problems are listed with their kind and path: validate's kinds\n"
               "(chunk_missing, tree_corrupt, ...), and no_space, restore_failed (the file\n"
               "the restore stopped at), db_integrity_check_failed, json_invalid, missing,\n"
               "unexpected, type_mismatch, mode_mismatch, owner_mismatch, size_mismatch,\n"
               "mtime_mismatch, symlink_mismatch, rdev_mismatch, hardlink_mismatch,\n"
               "xattr_mismatch, content_mismatch, read_error. Warnings of the restore (an\n"
               "extended attribute this filesystem cannot hold, ...) are listed but do not\n"
               "fail the drill.\n"
               "\n"
               "Every drill, passed or failed, appends one JSON line to STORE/drill.log (the\n"
               "report below, plus \"v\" and \"host\"); --history prints them. On a store on\n"
               "a read-only file system nothing is logged, and a notice says so.\n"
               "\n"
               "Options:\n"
               "  --scratch DIR  restore into DIR (empty or absent) instead of STORE/tmp/\n"
               "  --keep         keep the restored copy for inspection (its path is printed;\n"
               "                 in STORE/tmp/ it is renamed drill-XXXXXX-kept, which later\n"
               "                 drills leave alone: remove it yourself)\n"
               "  --read-data    validate by re-reading and re-hashing every chunk\n"
               "  --history      print the drill log: date, stamp, result, duration and\n"
               "                 problems of every drill (a damaged line is named, and\n"
               "                 skipped); nothing if no drill ran yet\n"
               "  --json         the report as one JSON object: stamp, result (\"pass\" or\n"
               "                 \"fail\"), started, duration_s, steps (validate_s, restore_s,\n"
               "                 check_s, compare_s; null if not run), read_data, files,\n"
               "                 bytes, databases, json_files, problem_count, problems\n"
               "                 (kind, path, detail), warning_count, warnings, scratch,\n"
               "                 kept; with --history, a JSON array of the logged reports\n"
               "  -q, --quiet    no progress line; print nothing unless the drill fails\n"
               "                 (with --keep: the path of the kept copy)\n"
               "\n"
               "Exit status: 0 the drill passed; 7 it failed; 3 no such store or snapshot;\n"
               "2 a non-empty --scratch; 6 the drill log could not be written; with\n"
               "--history, 1 if a line of the log is damaged; see 'stamp --help'.\n");
}

struct progress {
        bool enabled;
        bool drawn;
};

static void clear_progress(struct progress *p)
{
        if (p->drawn) {
                fputs("\r\033[K", stderr);
                p->drawn = false;
        }
}

static void on_progress(enum stamp_drill_step step, uint64_t files, uint64_t bytes,
                        const char *path, void *userdata)
{
        struct progress *p = userdata;
        char b[32];

        if (!p->enabled)
                return;
        fprintf(stderr, "\r\033[Kdrill: %s: %llu files, %s  ", stamp_drill_step_name(step),
                (unsigned long long)files, fmt_bytes(bytes, b));
        print_escaped_max(stderr, path, 40);
        p->drawn = true;
}

/* The report as JSON; @logged: an entry read back from drill.log ("v", "host"). */
static void print_json(const struct stamp_drill_entry *e, bool logged)
{
        static const char *const keys[_STAMP_DRILL_STEP_MAX] = {
                "validate_s", "restore_s", "check_s", "compare_s"
        };

        printf("{");
        if (logged) {
                printf("\"v\": %u, \"host\": ", e->version);
                if (e->host)
                        json_string(stdout, e->host);
                else
                        printf("null");
                printf(", ");
        }
        printf("\"stamp\": \"%s\", \"result\": \"%s\", \"started\": ", e->stamp,
               e->pass ? "pass" : "fail");
        json_string(stdout, e->started);
        printf(", \"duration_s\": %.3f, \"steps\": {", e->duration_s);
        for (int i = 0; i < _STAMP_DRILL_STEP_MAX; i++) {
                printf("%s\"%s\": ", i ? ", " : "", keys[i]);
                if (e->step_ran[i])
                        printf("%.3f", e->step_s[i]);
                else
                        printf("null");
        }
        printf("}, \"read_data\": %s, \"files\": %llu, \"bytes\": %llu, \"databases\": %llu, "
               "\"json_files\": %llu, \"problem_count\": %llu, \"problems\": [",
               e->read_data ? "true" : "false", (unsigned long long)e->files,
               (unsigned long long)e->bytes, (unsigned long long)e->databases,
               (unsigned long long)e->json_files, (unsigned long long)e->n_problems);
        for (size_t i = 0; i < e->problems_len; i++) {
                printf("%s{\"kind\": ", i ? ", " : "");
                json_string(stdout, e->problems[i].kind);
                printf(", \"path\": ");
                if (e->problems[i].path)
                        json_string(stdout, e->problems[i].path);
                else
                        printf("null");
                printf(", \"detail\": ");
                json_string(stdout, e->problems[i].detail);
                printf("}");
        }
        printf("], \"warning_count\": %llu, \"warnings\": [", (unsigned long long)e->n_warnings);
        for (size_t i = 0; i < e->warnings.n; i++) {
                if (i)
                        printf(", ");
                json_string(stdout, e->warnings.v[i]);
        }
        printf("], \"scratch\": ");
        json_string(stdout, e->scratch ? e->scratch : "");
        printf(", \"kept\": %s}", e->kept ? "true" : "false");
}

static void print_problems(const struct stamp_drill_entry *e)
{
        for (size_t i = 0; i < e->problems_len; i++) {
                const struct stamp_drill_problem *p = &e->problems[i];
                printf("  %-26s ", p->kind);
                if (p->path) {
                        fput_escaped(stdout, p->path);
                        printf(": ");
                }
                fput_escaped(stdout, p->detail);
                putchar('\n');
        }
        if (e->n_problems > e->problems_len)
                printf("  ... and %llu more problems\n",
                       (unsigned long long)(e->n_problems - e->problems_len));
}

static void print_step(const struct stamp_drill_entry *e, enum stamp_drill_step step,
                       const char *what)
{
        printf("  %-9s", stamp_drill_step_name(step));
        if (e->step_ran[step])
                printf("%8.2f s  %s\n", e->step_s[step], what);
        else
                printf("%10s  %s\n", "-", "not run");
}

static void print_human(const struct stamp_drill_entry *e)
{
        char what[256], b[32];
        bool restored = e->step_ran[STAMP_DRILL_CHECK];

        printf("drill of snapshot %s: %s", e->stamp, e->pass ? "PASS" : "FAIL");
        if (!e->pass)
                printf(" (%llu problem%s)", (unsigned long long)e->n_problems,
                       e->n_problems == 1 ? "" : "s");
        printf(" in %.2f s\n", e->duration_s);
        print_problems(e);
        for (size_t i = 0; i < e->warnings.n; i++) {
                printf("  warning: ");
                fput_escaped(stdout, e->warnings.v[i]);
                putchar('\n');
        }
        if (e->n_warnings > e->warnings.n)
                printf("  ... and %llu more warnings\n",
                       (unsigned long long)(e->n_warnings - e->warnings.n));
        print_step(e, STAMP_DRILL_VALIDATE,
                   e->read_data ? "every chunk read back and re-hashed" : "metadata level");
        snprintf(what, sizeof(what), "%s%llu file%s, %s", restored ? "" : "stopped after ",
                 (unsigned long long)e->files, e->files == 1 ? "" : "s", fmt_bytes(e->bytes, b));
        print_step(e, STAMP_DRILL_RESTORE, what);
        snprintf(what, sizeof(what), "%llu SQLite database%s, %llu JSON file%s",
                 (unsigned long long)e->databases, e->databases == 1 ? "" : "s",
                 (unsigned long long)e->json_files, e->json_files == 1 ? "" : "s");
        print_step(e, STAMP_DRILL_CHECK, what);
        print_step(e, STAMP_DRILL_COMPARE, "every entry against the snapshot, byte for byte");
        printf("scratch: ");
        fput_escaped(stdout, e->scratch ? e->scratch : "");
        printf(e->kept ? " (kept)\n" : " (removed)\n");
        if (!e->pass && !e->read_data && e->step_ran[STAMP_DRILL_RESTORE] && !restored)
                printf("hint: 'stamp validate --read-data %s' lists every damaged file\n",
                       e->stamp);
}

/* True if @inner is @outer or below it (both canonical paths). */
static bool path_within(const char *inner, const char *outer)
{
        size_t n = strlen(outer);

        if (strcmp(outer, "/") == 0)
                return true;
        return strncmp(inner, outer, n) == 0 && (inner[n] == 0 || inner[n] == '/');
}

static bool dir_empty(int fd)
{
        int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
        struct dirent *de;
        bool empty = true;

        if (!d) {
                if (dfd >= 0)
                        close(dfd);
                return false;
        }
        rewinddir(d); /* the dup shares @fd's offset */
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                        empty = false;
                        break;
                }
        closedir(d);
        return empty;
}

struct scratch {
        char *path;     /* as opened */
        char *real;     /* canonical, for the report */
        int fd;
        bool is_default; /* in STORE/tmp/ */
        bool created;
};

/* --scratch DIR: empty or absent, not in or around the store. An exit code. */
static int scratch_open_user(struct stamp_store *s, const char *dir, struct scratch *sc)
{
        _cleanup_free_ char *store_real = realpath(stamp_store_path(s), NULL);
        uint64_t dev, ino;
        struct stat st;

        sc->created = mkdir(dir, 0700) == 0;
        if (!sc->created && errno != EEXIST) {
                log_error("scratch directory '%s': %s", dir, strerror(errno));
                return errno == ENOENT ? EXIT_NOTFOUND : EXIT_FAILED;
        }
        sc->path = strdup(dir);
        sc->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        sc->real = realpath(dir, NULL);
        if (!sc->path || sc->fd < 0 || !sc->real) {
                log_error("scratch directory '%s': %s", dir,
                          errno == ENOTDIR ? "not a directory" : strerror(errno));
                return EXIT_FAILED;
        }
        if (store_real && (path_within(sc->real, store_real) || path_within(store_real, sc->real))) {
                log_error("scratch directory '%s' %s the store '%s'; refusing (leave --scratch "
                          "out to use the store's tmp/)",
                          sc->real, path_within(sc->real, store_real) ? "is inside" : "contains",
                          store_real);
                return EXIT_USAGE;
        }
        if (!sc->created && !dir_empty(sc->fd)) {
                log_error("scratch directory '%s' is not empty; refusing (the drill removes "
                          "everything in it afterwards): give an empty or a new directory",
                          dir);
                return EXIT_USAGE;
        }
        stamp_store_dev_ino(s, &dev, &ino);
        if (fstat(sc->fd, &st) == 0 && (uint64_t)st.st_dev != dev)
                log_warning("scratch directory '%s' is on another filesystem than the store: "
                            "this drill does not show that the store's filesystem has room "
                            "for a restore",
                            sc->real);
        return EXIT_OK;
}

static int scratch_open(struct stamp_store *s, const char *dir, struct scratch *sc)
{
        unsigned stale = 0;

        if (dir)
                return scratch_open_user(s, dir, sc);
        sc->is_default = true;
        sc->fd = stamp_drill_scratch_new(s, &sc->path, &stale);
        if (sc->fd < 0) {
                log_error("cannot create a scratch directory in '%s/tmp': %s", stamp_store_path(s),
                          describe(sc->fd));
                return exit_code(sc->fd) == EXIT_NOTFOUND ? EXIT_FAILED : exit_code(sc->fd);
        }
        if (stale && !arg_quiet && !arg_json)
                fprintf(stderr, "stamp: removed %u scratch director%s of interrupted drills\n",
                        stale, stale == 1 ? "y" : "ies");
        sc->real = realpath(sc->path, NULL);
        return sc->real ? EXIT_OK : EXIT_FAILED;
}

/* Removes (or keeps) the scratch copy; sets e->scratch and e->kept. */
static void scratch_close(struct scratch *sc, bool keep, struct stamp_drill_entry *e)
{
        const char *path = sc->real ? sc->real : sc->path;
        int r = 0;

        if (keep && sc->is_default) {
                char *kept = NULL;
                r = stamp_drill_scratch_keep(path, &kept);
                if (r < 0)
                        log_warning("cannot rename '%s' to keep it: %s; the next drill will "
                                    "remove it",
                                    path, describe(r));
                else {
                        free(sc->real);
                        sc->real = kept;
                        path = kept;
                }
        } else if (!keep) {
                if (sc->created || sc->is_default)
                        r = stamp_drill_remove_tree(AT_FDCWD, path);
                else
                        r = stamp_drill_empty_dir(sc->fd);
                if (r < 0)
                        log_warning("cannot remove the scratch copy in '%s': %s; remove it by "
                                    "hand%s",
                                    path, describe(r),
                                    sc->is_default ? " (or let the next drill do it)" : "");
        }
        if (sc->fd >= 0)
                close(sc->fd);
        sc->fd = -1;
        e->scratch = strdup(path);
        e->kept = keep || r < 0;
}

/* drill --history */

struct history {
        const char *log;
        bool json;
        unsigned long shown;
        bool damaged;
};

static int on_history(unsigned long line, const struct stamp_drill_entry *e, int error,
                      void *userdata)
{
        struct history *h = userdata;
        char date[40];

        if (!e) {
                log_warning("%s line %lu: %s, ignoring", h->log, line,
                            error == -EOPNOTSUPP ? "written by a newer stampfs (unknown \"v\")"
                            : error == -E2BIG    ? "too long to be a drill record"
                                                 : "damaged (not a drill record)");
                h->damaged = true;
                return 0;
        }
        if (h->json) {
                printf("%s\n  ", h->shown ? "," : "");
                print_json(e, true);
        } else {
                if (!h->shown)
                        printf("%-19s  %-16s  %-6s  %10s  %8s\n", "STARTED (UTC)", "STAMP",
                               "RESULT", "DURATION", "PROBLEMS");
                /* "2026-04-07T06:00:00.123Z" -> "2026-04-07 06:00:00" */
                memcpy(date, e->started, sizeof(date));
                date[19] = 0;
                if (date[10] == 'T')
                        date[10] = ' ';
                printf("%-19s  %-16s  %-6s  %8.1f s  %8llu\n", date, e->stamp,
                       e->pass ? "pass" : "FAIL", e->duration_s, (unsigned long long)e->n_problems);
        }
        h->shown++;
        return 0;
}

static int history(struct stamp_store *s)
{
        _cleanup_free_ char *log = NULL;
        struct history h = { .json = arg_json };
        int r;

        if (asprintf(&log, "%s/drill.log", stamp_store_path(s)) < 0)
                return EXIT_FAILED;
        h.log = log;
        if (h.json)
                printf("[");
        r = stamp_drill_log_read(s, on_history, &h);
        if (h.json)
                printf("%s]\n", h.shown ? "\n" : "");
        if (r == -ENOENT)
                return EXIT_OK; /* no drill ran yet */
        if (r < 0) {
                log_error("cannot read '%s': %s", log, describe(r));
                return exit_code(r);
        }
        return h.damaged ? EXIT_WARNINGS : EXIT_OK;
}

struct args {
        const char *scratch;
        bool keep, read_data, history;
};

static int parse_args(int argc, char **argv, struct args *a)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                               { "scratch", required_argument, NULL, 'D' },
                                               { "keep", no_argument, NULL, 'K' },
                                               { "read-data", no_argument, NULL, 'R' },
                                               { "history", no_argument, NULL, 'H' },
                                               {} };
        int c;

        while ((c = getopt_long(argc, argv, "hq", opts, NULL)) >= 0) {
                if (common_option(c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        help();
                        return -1;
                case 'D':
                        a->scratch = optarg;
                        break;
                case 'K':
                        a->keep = true;
                        break;
                case 'R':
                        a->read_data = true;
                        break;
                case 'H':
                        a->history = true;
                        break;
                default:
                        return option_error("drill", "hq", opts, argv);
                }
        }
        if (optind + 1 < argc)
                return usage_error("drill", "expected at most one STAMP");
        if (a->history && (optind < argc || a->scratch || a->keep || a->read_data))
                return usage_error("drill", "--history takes no STAMP, --scratch, --keep or "
                                            "--read-data");
        return EXIT_OK;
}

/* Runs the drill and reports it; an exit code. */
static int drill(struct stamp_store *s, const char *stamp, const struct args *a)
{
        struct scratch sc = { .fd = -1 };
        struct progress p = { .enabled = progress_enabled() };
        struct stamp_drill_options o = {
                .stamp = stamp, .read_data = a->read_data, .progress = on_progress, .userdata = &p,
        };
        struct stamp_drill_entry e;
        char host[256];
        int r;

        r = scratch_open(s, a->scratch, &sc);
        if (r != EXIT_OK) {
                if (sc.fd >= 0)
                        close(sc.fd);
                if (sc.created)
                        (void)rmdir(sc.path);
                free(sc.path);
                free(sc.real);
                return r;
        }
        r = stamp_drill_run(s, sc.fd, &o, &e);
        clear_progress(&p);
        if (r < 0) {
                struct stamp_drill_entry none = { 0 };
                log_error("drill of snapshot %s: %s", stamp, describe(r));
                scratch_close(&sc, a->keep, &none);
                stamp_drill_entry_release(&none);
                free(sc.path);
                free(sc.real);
                return exit_code(r) == EXIT_NOTFOUND ? EXIT_FAILED : exit_code(r);
        }
        scratch_close(&sc, a->keep, &e);
        if (gethostname(host, sizeof(host)) == 0) {
                host[sizeof(host) - 1] = 0;
                e.host = strdup(host);
        }
        /* A store on a read-only disk (how a backup disk should be mounted
         * on the day it is needed) cannot keep a log; the drill still counts. */
        if (stamp_store_readonly(s)) {
                log_warning("drill not logged: '%s' is on a read-only file system", stamp_store_path(s));
                r = EXIT_OK;
        } else {
                r = stamp_drill_log_append(s, &e);
                if (r < 0)
                        log_error("cannot append to '%s/drill.log': %s", stamp_store_path(s),
                                  describe(r));
                r = r < 0 ? EXIT_FAILED : EXIT_OK;
        }
        if (arg_json) {
                print_json(&e, false);
                putchar('\n');
        } else if (!arg_quiet || !e.pass) {
                print_human(&e);
        } else if (e.kept) {
                /* Quiet: only where the copy is, as quiet restore prints only its rollback stamp. */
                fput_escaped(stdout, e.scratch);
                putchar('\n');
        }
        if (!e.pass)
                r = EXIT_INVALID;
        stamp_drill_entry_release(&e);
        free(sc.path);
        free(sc.real);
        return r;
}

int verb_drill(int argc, char **argv)
{
        struct args a = { 0 };
        struct stamp_store *s = NULL;
        char stamp[STAMP_STAMP_LEN + 1];
        int r;

        r = parse_args(argc, argv, &a);
        if (r != EXIT_OK)
                return r < 0 ? EXIT_OK : r;
        r = open_store(&s);
        if (r != EXIT_OK)
                return r;
        if (a.history)
                r = history(s);
        else {
                /* As restore: no gc takes the snapshot's data away mid-drill. */
                r = hold_store_against_gc(s, 3600);
                if (r == EXIT_OK)
                        r = resolve_stamp(s, optind < argc ? argv[optind] : "latest", stamp);
                if (r == EXIT_OK)
                        r = drill(s, stamp, &a);
        }
        stamp_store_free(s);
        return r;
}
