/* SPDX-License-Identifier: MIT */
/* stamp copy: snapshots to another store (a local path, or ssh://); stamp serve: its far end. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "common.h"
#include "copy.h"
#include "macro.h"

extern char **environ;

static void help(void)
{
        printf("Usage: stamp [--store SRC] copy [OPTIONS] DEST [STAMP...]\n"
               "\n"
               "Copy snapshots of the store SRC (--store or $STAMP_STORE) into the store\n"
               "DEST, sending only the data DEST does not hold yet. With no STAMP, every\n"
               "snapshot of SRC that DEST lacks is copied; snapshots DEST already has are\n"
               "skipped, so a repeated copy sends almost nothing. So are those DEST has\n"
               "forgotten (deleted there by prune or forget), so DEST may keep fewer\n"
               "snapshots than SRC; a STAMP named is copied even then.\n"
               "\n"
               "DEST is a directory (a second disk, an NFS mount) or\n"
               "ssh://[USER@]HOST[:PORT]/PATH, reached by running 'stamp serve PATH' on\n"
               "HOST through ssh (stamp must be installed there). An IPv6 HOST is written\n"
               "in brackets: ssh://[2001:db8::1]:2222/PATH.\n"
               "\n"
               "Every object is re-hashed when it arrives; DEST commits a snapshot (writes\n"
               "its record) only after the packs it received were read back and the whole\n"
               "snapshot validated there. An interrupted copy keeps what became durable:\n"
               "run it again to resume.\n"
               "\n"
               "DEST must share SRC's chunker and secret (they name every chunk): create it\n"
               "with --init, or with 'stamp init --like SRC DEST'. Its compression level\n"
               "may differ; objects are then re-compressed as they arrive.\n"
               "\n"
               "Options:\n"
               "  --init                   create DEST if it does not exist (or is an empty\n"
               "                           directory), like SRC\n"
               "  --compression-level N    with --init: DEST's zstd level (default SRC's)\n"
               "  --rsh CMD                the command that reaches HOST (default 'ssh'),\n"
               "                           split on spaces; run as CMD [-p PORT] [USER@]HOST\n"
               "                           stamp serve PATH\n"
               "  --remote-stamp PATH      the stamp program on HOST (default 'stamp')\n"
               "  --read-data              validate each copied snapshot in DEST reading back\n"
               "                           every chunk (default: every object present)\n"
               "  -n, --dry-run            show what would be copied, copy nothing\n"
               "  -q, --quiet              print nothing but errors\n"
               "  --json                   a JSON report on stdout: copied, skipped,\n"
               "                           forgotten, invalid, objects_reached,\n"
               "                           objects_sent, bytes_sent, duration_s\n"
               "\n"
               "Exit status: 0 copied (or nothing to do); 3 DEST or a STAMP missing;\n"
               "4 DEST locked; 5 damaged data in SRC; 6 failure; 7 a copied snapshot\n"
               "failed validation in DEST (its record was not written there).\n");
}

/* Where the copy goes. */
struct dest {
        const char *arg;
        bool remote;
        char *user_host; /* [user@]host */
        char *port;
        char *path;
};

static void dest_release(struct dest *d)
{
        free(d->user_host);
        free(d->port);
        free(d->path);
}

static int dest_parse(const char *arg, struct dest *d)
{
        const char *p, *slash;

        *d = (struct dest){ .arg = arg };
        if (strncmp(arg, "ssh://", 6) != 0) {
                if (strstr(arg, "://"))
                        return -EINVAL;
                d->path = strdup(arg);
                return d->path ? 0 : -ENOMEM;
        }
        d->remote = true;
        p = arg + 6;
        slash = strchr(p, '/');
        if (!slash || slash == p || !slash[1])
                return -EINVAL;
        d->user_host = strndup(p, (size_t)(slash - p));
        d->path = strdup(slash);
        if (!d->user_host || !d->path)
                return -ENOMEM;
        /* host:port (an IPv6 literal is bracketed: [::1]:22). */
        char *colon = strrchr(d->user_host, ':');
        if (colon && (!strchr(d->user_host, ']') || colon > strchr(d->user_host, ']'))) {
                *colon = 0;
                d->port = strdup(colon + 1);
                if (!d->port)
                        return -ENOMEM;
                if (!*d->port || strspn(d->port, "0123456789") != strlen(d->port))
                        return -EINVAL;
        }
        /* ssh wants an IPv6 literal bare: user@[::1] becomes user@::1. */
        char *host = strrchr(d->user_host, '@');
        host = host ? host + 1 : d->user_host;
        if (host[0] == '[') {
                size_t n = strlen(host);
                if (n < 3 || host[n - 1] != ']')
                        return -EINVAL;
                memmove(host, host + 1, n - 2);
                host[n - 2] = 0;
        } else if (strpbrk(host, "[]"))
                return -EINVAL;
        if (!*d->user_host || d->user_host[0] == '-' || !*host)
                return -EINVAL;
        return 0;
}

/* 'text' quoted for a POSIX shell (ssh runs the remote command through one). */
static char *shell_quote(const char *s)
{
        size_t n = 2;
        char *q, *p;

        for (const char *c = s; *c; c++)
                n += *c == '\'' ? 4 : 1;
        q = p = malloc(n + 1);
        if (!q)
                return NULL;
        *p++ = '\'';
        for (const char *c = s; *c; c++) {
                if (*c == '\'') {
                        memcpy(p, "'\\''", 4);
                        p += 4;
                } else
                        *p++ = *c;
        }
        *p++ = '\'';
        *p = 0;
        return q;
}

/* Starts `RSH [-p PORT] HOST STAMP serve PATH [--init]` with pipes to its stdin and stdout. */
static int spawn_remote(const struct dest *d, const char *rsh, const char *remote_stamp,
                        bool init, pid_t *ret_pid, int *ret_in, int *ret_out)
{
        _cleanup_free_ char *words = strdup(rsh), *qstamp = shell_quote(remote_stamp),
                            *qpath = shell_quote(d->path), *cmd = NULL;
        char *argv[64];
        size_t argc = 0;
        int to[2] = { -1, -1 }, from[2] = { -1, -1 };
        posix_spawn_file_actions_t fa;
        int r;

        if (!words || !qstamp || !qpath)
                return -ENOMEM;
        if (asprintf(&cmd, "%s serve%s %s", qstamp, init ? " --init" : "", qpath) < 0)
                return -ENOMEM;
        for (char *save = NULL, *w = strtok_r(words, " \t", &save); w && argc < 56;
             w = strtok_r(NULL, " \t", &save))
                argv[argc++] = w;
        if (argc == 0)
                return -EINVAL;
        if (d->port) {
                argv[argc++] = (char *)"-p";
                argv[argc++] = d->port;
        }
        argv[argc++] = d->user_host;
        argv[argc++] = cmd;
        argv[argc] = NULL;
        if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail;
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, to[0], 0);
        posix_spawn_file_actions_adddup2(&fa, from[1], 1);
        r = -posix_spawnp(ret_pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r < 0)
                goto fail;
        close(to[0]);
        close(from[1]);
        *ret_out = to[1];
        *ret_in = from[0];
        return 0;
fail:
        for (int i = 0; i < 2; i++) {
                if (to[i] >= 0)
                        close(to[i]);
                if (from[i] >= 0)
                        close(from[i]);
        }
        return r;
}

/*
 * The connection broke without a word from the far end: ssh's status (and
 * its own message, already on stderr) says why better than "ended the
 * connection". Reaps the transport. Returns true if it reported, false if
 * the transport ended well and the caller's own message should stand.
 */
static bool transport_failed(const struct dest *dst, const char *rsh, pid_t *pid, int *in,
                             int *out)
{
        int st;

        if (*out >= 0)
                close(*out);
        if (*in >= 0)
                close(*in);
        *in = *out = -1;
        st = child_wait(*pid);
        *pid = 0;
        if (st == 0)
                return false;
        log_error("%s: '%s' ended with status %d%s", dst->user_host, rsh, st,
                  st == 127 ? " (is stamp installed there? --remote-stamp names it)" : "");
        return true;
}

struct ui {
        uint64_t kill_at; /* tests: $STAMP_TEST_COPY_KILL_AT, SIGKILL after that many objects */
        bool progress;
        bool dry_run;
        bool first_json;
        const char *dest;
        uint64_t invalid_shown;
};

static void on_progress(const struct stamp_copy_progress *p, void *userdata)
{
        struct ui *u = userdata;
        char b[32];

        if (!u->progress)
                return;
        fprintf(stderr, "\r\033[Kcopy %zu/%zu %s: %s, %llu objects reached, %llu sent (%s)",
                p->index + 1, p->count, p->stamp, p->phase,
                (unsigned long long)p->reached, (unsigned long long)p->sent,
                fmt_bytes(p->sent_bytes, b));
}

static void on_hook(const char *point, uint64_t n, void *userdata)
{
        struct ui *u = userdata;

        if (u->kill_at && n >= u->kill_at && strcmp(point, "sent") == 0)
                raise(SIGKILL); /* a crash halfway, for the resume tests */
}

static void print_problems(const struct stamp_copy_commit *c, FILE *f)
{
        for (size_t i = 0; i < c->problems.n; i++) {
                fputs("  ", f);
                fput_escaped(f, c->problems.v[i]);
                fputc('\n', f);
        }
        if (c->n_problems > c->problems.n)
                fprintf(f, "  ... and %llu more\n",
                        (unsigned long long)(c->n_problems - c->problems.n));
}

static void on_done(const char *stamp, int result, const struct stamp_copy_commit *c,
                    uint64_t objects, uint64_t bytes, double seconds, void *userdata)
{
        struct ui *u = userdata;
        char b[32];

        if (u->progress)
                fputs("\r\033[K", stderr);
        if (arg_json) {
                printf("%s\n    {\"stamp\": \"%s\", \"result\": \"%s\", \"objects\": %llu, "
                       "\"bytes\": %llu, \"duration_s\": %.3f",
                       u->first_json ? "" : ",", stamp,
                       result == 1           ? "skipped"
                       : result == 2         ? "forgotten"
                       : u->dry_run          ? "would-copy"
                       : c && !c->valid      ? "invalid"
                                             : "copied",
                       (unsigned long long)objects, (unsigned long long)bytes, seconds);
                if (c) {
                        printf(", \"validate_s\": %.3f, \"checked_objects\": %llu, "
                               "\"problems\": [",
                               c->validate_s, (unsigned long long)c->checked_objects);
                        for (size_t i = 0; i < c->problems.n; i++) {
                                if (i)
                                        fputs(", ", stdout);
                                json_string(stdout, c->problems.v[i]);
                        }
                        putchar(']');
                }
                putchar('}');
                u->first_json = false;
                return;
        }
        if (c && !c->valid) {
                log_error("snapshot %s is not valid in '%s' after the copy; its record was not "
                          "written there (%llu problems):",
                          stamp, u->dest, (unsigned long long)c->n_problems);
                print_problems(c, stderr);
                return;
        }
        if (arg_quiet)
                return;
        if (result == 1)
                printf("%s: already in the destination\n", stamp);
        else if (result == 2)
                printf("%s: forgotten in the destination (pruned there), not copied again\n",
                       stamp);
        else if (u->dry_run)
                printf("%s: would send %llu objects (%s)\n", stamp, (unsigned long long)objects,
                       fmt_bytes(bytes, b));
        else
                printf("%s: copied, %llu objects sent (%s), validated in %.1f s (%.1f s)\n",
                       stamp, (unsigned long long)objects, fmt_bytes(bytes, b),
                       c ? c->validate_s : 0.0, seconds);
}

/* One line for a copy that stopped. */
static int report_failure(struct stamp_store *s, struct stamp_copy_dest *d,
                          const struct stamp_copy_result *res, int r)
{
        char hex[STAMP_ID_HEX_SIZE] = "", pack[64];
        struct stamp_index *ix;
        struct stamp_loc loc;

        snprintf(pack, sizeof(pack), "%s", res->bad_pack);
        if (!stamp_id_is_null(&res->bad_id)) {
                stamp_id_to_hex(&res->bad_id, hex);
                if (!pack[0] && stamp_store_index(s, &ix) == 0 &&
                    stamp_index_find(ix, &res->bad_id, &loc) > 0)
                        snprintf(pack, sizeof(pack), "%s", loc.pack);
        }
        if (r == -EUCLEAN) {
                log_error("snapshot %s of the source names object %s, which the source's "
                          "index does not have (run 'stamp verify')",
                          res->bad_stamp, hex);
                return EXIT_CORRUPT;
        }
        if (r == -EBADMSG && hex[0]) {
                /* Read from the source, or refused on arrival: the source's bytes are bad. */
                log_error("snapshot %s: object %s of the source (%s) is damaged; nothing of "
                          "that snapshot was committed (run 'stamp verify' on the source)",
                          res->bad_stamp, hex, pack[0] ? pack : "not in its index");
                return EXIT_CORRUPT;
        }
        if (r == -ENOTUNIQ) {
                log_error("snapshot %s: %s", res->bad_stamp, d->error);
                return EXIT_CORRUPT;
        }
        if (r == -ENOENT && !d->error[0]) {
                log_error("snapshot %s: no such snapshot in the source", res->bad_stamp);
                return EXIT_NOTFOUND;
        }
        if (!d->error[0] && res->bad_stamp[0])
                log_error("snapshot %s: %s", res->bad_stamp, describe(r));
        else if (!d->error[0]) /* the destination names its own failures */
                log_error("source store '%s': %s", stamp_store_path(s), describe(r));
        else if (res->bad_stamp[0])
                log_error("snapshot %s: %s", res->bad_stamp, d->error);
        else
                log_error("%s", d->error);
        return r == -EXDEV ? EXIT_FAILED : exit_code(r);
}

int verb_copy(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                               { "init", no_argument, NULL, 'I' },
                                               { "compression-level", required_argument, NULL, 'l' },
                                               { "rsh", required_argument, NULL, 'r' },
                                               { "remote-stamp", required_argument, NULL, 'R' },
                                               { "read-data", no_argument, NULL, 'D' },
                                               { "dry-run", no_argument, NULL, 'n' },
                                               {} };
        const char *rsh = NULL, *remote_stamp = "stamp";
        struct stamp_strv stamps = { 0 };
        struct stamp_store *s = NULL;
        struct stamp_copy_dest *d = NULL;
        struct stamp_copy_options o = { 0 };
        struct stamp_copy_result res;
        struct ui u = { .first_json = true };
        struct dest dst = { 0 };
        unsigned flags = 0;
        int level = 0, c, r, in = -1, out = -1;
        pid_t pid = 0;
        struct timespec t0, t1;

        while ((c = getopt_long(argc, argv, "hqn", opts, NULL)) >= 0) {
                if (common_option(c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        help();
                        return EXIT_OK;
                case 'I':
                        flags |= STAMP_COPY_INIT;
                        break;
                case 'l': {
                        char *end;
                        long l = strtol(optarg, &end, 10);
                        if (*end || !*optarg || l < -7 || l > 19 || l == 0)
                                return usage_error("copy", "--compression-level: '%s' is not "
                                                           "a zstd level (-7..19, not 0)",
                                                   optarg);
                        level = (int)l;
                        break;
                }
                case 'r':
                        rsh = optarg;
                        break;
                case 'R':
                        remote_stamp = optarg;
                        break;
                case 'D':
                        flags |= STAMP_COPY_READ_DATA;
                        break;
                case 'n':
                        flags |= STAMP_COPY_DRY_RUN;
                        break;
                default:
                        return option_error("copy", "hqn", opts, argv);
                }
        }
        if (optind >= argc)
                return usage_error("copy", "expected DEST");
        if (level && !(flags & STAMP_COPY_INIT))
                return usage_error("copy", "--compression-level is for a DEST made by --init");
        r = dest_parse(argv[optind], &dst);
        if (r == -ENOMEM)
                return EXIT_FAILED;
        if (r < 0) {
                dest_release(&dst);
                return usage_error("copy", "'%s' is not a path or ssh://[USER@]HOST[:PORT]/PATH",
                                   argv[optind]);
        }
        if (rsh && !dst.remote) {
                dest_release(&dst);
                return usage_error("copy", "--rsh needs an ssh:// destination");
        }
        r = open_store(&s);
        if (r != EXIT_OK)
                goto out;
        for (int i = optind + 1; i < argc; i++) {
                char st[STAMP_STAMP_LEN + 1];
                r = resolve_stamp(s, argv[i], st);
                if (r != EXIT_OK)
                        goto out;
                if (stamp_strv_push(&stamps, st) < 0) {
                        r = EXIT_FAILED;
                        goto out;
                }
        }
        if (!dst.remote) {
                char *src_real = realpath(stamp_store_path(s), NULL);
                char *dst_real = realpath(dst.path, NULL);
                bool same = src_real && dst_real && strcmp(src_real, dst_real) == 0;
                free(src_real);
                free(dst_real);
                if (same) {
                        log_error("'%s' is the source store itself", dst.path);
                        r = EXIT_USAGE;
                        goto out;
                }
        }

        clock_gettime(CLOCK_MONOTONIC, &t0);
        signal(SIGPIPE, SIG_IGN);
        if (dst.remote) {
                r = spawn_remote(&dst, rsh ? rsh : "ssh", remote_stamp,
                                 flags & STAMP_COPY_INIT, &pid, &in, &out);
                if (r < 0) {
                        log_error("cannot run '%s': %s", rsh ? rsh : "ssh", describe(r));
                        r = EXIT_FAILED;
                        goto out;
                }
                r = stamp_copy_remote_open(in, out, dst.path, flags, stamp_store_config(s), level,
                                           &d);
        } else
                r = stamp_copy_local_open(dst.path, flags, stamp_store_config(s), level, &d);
        if (dst.remote && (r == -ECONNRESET || r == -EPIPE) &&
            transport_failed(&dst, rsh ? rsh : "ssh", &pid, &in, &out)) {
                r = EXIT_FAILED;
                goto out;
        }
        if (r < 0) {
                if (d && d->error[0])
                        log_error("%s", d->error);
                else
                        log_error("destination '%s': %s", dst.arg, describe(r));
                r = r == -EXDEV ? EXIT_FAILED : exit_code(r);
                goto out;
        }

        u.progress = progress_enabled() && !arg_quiet;
        u.dry_run = flags & STAMP_COPY_DRY_RUN;
        u.dest = dst.arg;
        o.stamps = &stamps;
        o.dry_run = u.dry_run;
        o.progress = on_progress;
        o.done = on_done;
        o.hook = on_hook;
        o.userdata = &u;
        if (getenv("STAMP_TEST_COPY_KILL_AT"))
                u.kill_at = strtoull(getenv("STAMP_TEST_COPY_KILL_AT"), NULL, 10);
        if (arg_json) {
                printf("{\"dest\": ");
                json_string(stdout, dst.arg);
                printf(", \"dry_run\": %s, \"snapshots\": [", u.dry_run ? "true" : "false");
        }
        r = stamp_copy(s, d, &o, &res);
        if (u.progress)
                fputs("\r\033[K", stderr);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (arg_json) {
                printf("%s], \"copied\": %llu, \"skipped\": %llu, \"forgotten\": %llu, "
                       "\"invalid\": %llu, \"objects_reached\": %llu, \"objects_sent\": %llu, "
                       "\"bytes_sent\": %llu, \"duration_s\": %.3f, \"ok\": %s}\n",
                       u.first_json ? "" : "\n  ", (unsigned long long)res.copied,
                       (unsigned long long)res.skipped, (unsigned long long)res.forgotten,
                       (unsigned long long)res.invalid, (unsigned long long)res.objects_reached,
                       (unsigned long long)res.objects_sent, (unsigned long long)res.bytes_sent,
                       secs, r == 0 ? "true" : "false");
        }
        if (dst.remote && (r == -ECONNRESET || r == -EPIPE) &&
            transport_failed(&dst, rsh ? rsh : "ssh", &pid, &in, &out)) {
                r = EXIT_FAILED;
                goto out;
        }
        if (r < 0 && !(r == -EBADMSG && res.invalid)) {
                r = report_failure(s, d, &res, r);
                goto out;
        }
        if (res.invalid) {
                r = EXIT_INVALID;
                goto out;
        }
        if (!arg_json && !arg_quiet) {
                char b[32], gone[64] = "";
                if (res.forgotten)
                        snprintf(gone, sizeof(gone), ", %llu forgotten there",
                                 (unsigned long long)res.forgotten);
                printf("%s %llu snapshot%s to '%s', %llu already there%s; %llu objects (%s) "
                       "%s in %.1f s\n",
                       u.dry_run ? "Would copy" : "Copied", (unsigned long long)res.copied,
                       res.copied == 1 ? "" : "s", dst.arg, (unsigned long long)res.skipped,
                       gone, (unsigned long long)res.objects_sent, fmt_bytes(res.bytes_sent, b),
                       u.dry_run ? "to send" : "sent", secs);
        }
        r = EXIT_OK;
out:
        stamp_copy_dest_close(d);
        if (out >= 0)
                close(out);
        if (in >= 0)
                close(in);
        if (pid > 0) {
                int st = child_wait(pid);
                if (st != 0 && r == EXIT_OK) {
                        log_error("'%s' ended with status %d", rsh ? rsh : "ssh", st);
                        r = EXIT_FAILED;
                }
        }
        stamp_strv_release(&stamps);
        dest_release(&dst);
        stamp_store_free(s);
        return r;
}

static void serve_help(void)
{
        printf("Usage: stamp serve [--init] PATH\n"
               "\n"
               "The far end of 'stamp copy' to ssh://HOST/PATH: speaks the copy protocol on\n"
               "standard input and output and stores what arrives in the store PATH. It is\n"
               "started by 'stamp copy' through ssh, not by hand. To limit an ssh key to\n"
               "receiving copies, force the command in authorized_keys:\n"
               "  command=\"stamp serve /srv/backup/store\",restrict ssh-ed25519 AAAA...\n"
               "\n"
               "Options:\n"
               "  --init    allow the client to create PATH (stamp copy --init)\n"
               "\n"
               "Exit status: 0 when the client said goodbye; 2 usage error (or run on a\n"
               "terminal); 6 if the connection failed or the client was refused.\n");
}

int verb_serve(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                               { "init", no_argument, NULL, 'I' },
                                               {} };
        bool init = false;
        int c, r;

        json_raw_output(); /* standard output is the copy protocol */
        while ((c = getopt_long(argc, argv, "hq", opts, NULL)) >= 0) {
                if (common_option(c, optarg))
                        continue;
                if (c == 'h') {
                        serve_help();
                        return EXIT_OK;
                }
                if (c == 'I') {
                        init = true;
                        continue;
                }
                return option_error("serve", "hq", opts, argv);
        }
        if (optind + 1 != argc)
                return usage_error("serve", "expected one PATH");
        if (isatty(STDIN_FILENO) || isatty(STDOUT_FILENO)) {
                log_error("serve speaks the copy protocol on stdin/stdout; it is started by "
                          "'stamp copy ssh://...', not by hand");
                return EXIT_USAGE;
        }
        r = stamp_copy_serve(STDIN_FILENO, STDOUT_FILENO, argv[optind], init);
        if (r == -ECONNABORTED)
                return EXIT_FAILED; /* the client was told why */
        if (r == -ECONNRESET) {
                log_error("serve '%s': the client went away before saying goodbye",
                          argv[optind]);
                return EXIT_FAILED;
        }
        if (r < 0) {
                log_error("serve '%s': the connection failed: %s", argv[optind], describe(r));
                return EXIT_FAILED;
        }
        return EXIT_OK;
}
