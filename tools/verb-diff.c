/* SPDX-License-Identifier: MIT */
/* stamp diff: what changed between two snapshots. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "diff.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] diff [--json] A B\n"
               "\n"
               "Show what changed from snapshot A to snapshot B ('latest' is the newest):\n"
               "  + PATH          added (in B only)\n"
               "  - PATH          removed (in A only)\n"
               "  M PATH  WHAT    modified; WHAT lists what differs: type, content, size,\n"
               "                  mode, owner, mtime, target (of a symlink), xattrs, device\n"
               "\n"
               "Directories end in '/'. An added or removed directory is listed with\n"
               "every path below it. A renamed path is a removal and an addition. A path\n"
               "whose type changed (a file that became a directory, ...) is 'M PATH  type',\n"
               "followed by what the old directory held (-) or the new one holds (+).\n"
               "Paths are sorted, each directory's contents right after it. Control\n"
               "characters, backslashes and bytes that are not UTF-8 in names are shown\n"
               "escaped (\\n, \\t, \\\\, \\x1b).\n"
               "\n"
               "Only trees are read, never file data: a directory with the same tree id\n"
               "in both snapshots is skipped whole, and files with the same chunks have\n"
               "the same content, so a diff costs a few tree reads however large the\n"
               "snapshots are. Not compared: ctimes, link counts, and the attributes of\n"
               "the snapshot's root directory itself (they are in its record).\n"
               "\n"
               "Options:\n"
               "  --json     {\"a\", \"b\", \"added\": [PATH...], \"removed\": [PATH...],\n"
               "             \"modified\": [{\"path\", \"changes\": [WHAT...]}],\n"
               "             \"counts\": {\"added\", \"removed\", \"modified\"}}; paths have no\n"
               "             trailing '/', and bytes that are not UTF-8 appear as\n"
               "             \\udc80..\\udcff (Python's os.fsencode() restores them)\n"
               "  -q, --quiet  no summary line\n"
               "\n"
               "Examples:\n"
               "  stamp diff 20260406T060000Z latest\n"
               "  stamp diff --json 20260406T060000Z 20260407T060000Z\n"
               "\n"
               "Exit status: 0 whether or not the snapshots differ; 2 usage error; 3 no\n"
               "such store or snapshot; 5 damaged data in the store.\n");
}

/*
 * Per kind of change: a count, and for --json the array's elements, written
 * to memory so that the three arrays come out apart.
 */
struct change_list {
        size_t n;
        FILE *f;
        char *buf;
        size_t len;
};

struct diff_out {
        struct change_list lists[3]; /* indexed by enum stamp_diff_kind */
};

static const char *const list_names[3] = {
        [STAMP_DIFF_ADDED] = "added",
        [STAMP_DIFF_REMOVED] = "removed",
        [STAMP_DIFF_MODIFIED] = "modified",
};

static void out_release(struct diff_out *o)
{
        for (int i = 0; i < 3; i++) {
                if (o->lists[i].f)
                        fclose(o->lists[i].f);
                free(o->lists[i].buf);
        }
        memset(o, 0, sizeof(*o));
}

static int out_open_json(struct diff_out *o)
{
        for (int i = 0; i < 3; i++) {
                struct change_list *l = &o->lists[i];
                l->f = open_memstream(&l->buf, &l->len);
                if (!l->f)
                        return -ENOMEM;
        }
        return 0;
}

static void print_changes(FILE *f, unsigned changes, const char *sep, const char *quote)
{
        bool first = true;

        for (unsigned i = 0; i < STAMP_CHANGE_MAX; i++)
                if (changes & (1u << i)) {
                        fprintf(f, "%s%s%s%s", first ? "" : sep, quote,
                                stamp_diff_change_name(i), quote);
                        first = false;
                }
}

static int human_change(const struct stamp_diff_item *it, void *userdata)
{
        static const char marks[3] = { [STAMP_DIFF_ADDED] = '+', [STAMP_DIFF_REMOVED] = '-',
                                       [STAMP_DIFF_MODIFIED] = 'M' };
        struct diff_out *o = userdata;
        const struct stamp_entry *e = it->b ? it->b : it->a;

        o->lists[it->kind].n++;
        printf("%c ", marks[it->kind]);
        fput_escaped(stdout, it->path);
        if (e->type == STAMP_T_DIR)
                putchar('/');
        if (it->kind == STAMP_DIFF_MODIFIED) {
                fputs("  ", stdout);
                print_changes(stdout, it->changes, ",", "");
        }
        putchar('\n');
        return 0;
}

static int json_change(const struct stamp_diff_item *it, void *userdata)
{
        struct diff_out *o = userdata;
        struct change_list *l = &o->lists[it->kind];

        fputs(l->n++ ? ",\n    " : "\n    ", l->f);
        if (it->kind == STAMP_DIFF_MODIFIED) {
                fputs("{\"path\": ", l->f);
                json_string(l->f, it->path);
                fputs(", \"changes\": [", l->f);
                print_changes(l->f, it->changes, ", ", "\"");
                fputs("]}", l->f);
        } else
                json_string(l->f, it->path);
        return ferror(l->f) ? -ENOMEM : 0;
}

static void print_json(const char *a, const char *b, struct diff_out *o)
{
        printf("{\n  \"a\": \"%s\",\n  \"b\": \"%s\",\n", a, b);
        for (int i = 0; i < 3; i++) {
                struct change_list *l = &o->lists[i];
                fflush(l->f);
                printf("  \"%s\": [", list_names[i]);
                fwrite(l->buf, 1, l->len, stdout);
                printf("%s],\n", l->n ? "\n  " : "");
        }
        printf("  \"counts\": {\"added\": %zu, \"removed\": %zu, \"modified\": %zu}\n}\n",
               o->lists[STAMP_DIFF_ADDED].n, o->lists[STAMP_DIFF_REMOVED].n,
               o->lists[STAMP_DIFF_MODIFIED].n);
}

/* One error line for a failed comparison, naming the damaged directory. */
static int diff_error(const char *a, const char *b, int r, const char *bad_path)
{
        char *shown = NULL;
        size_t len = 0;
        FILE *f;

        if (!bad_path) {
                log_error("cannot compare snapshots %s and %s: %s", a, b, describe(r));
                return exit_code(r);
        }
        f = open_memstream(&shown, &len);
        if (f) {
                fputc('/', f);
                fput_escaped(f, bad_path);
                fclose(f);
        }
        log_error("cannot compare snapshots %s and %s: the tree of '%s' is damaged: %s", a, b,
                  shown ? shown : "?", describe(r));
        free(shown);
        return exit_code(r);
}

static int load_root(struct stamp_store *s, const char *stamp, struct stamp_id *ret)
{
        struct stamp_record rec;
        int r = stamp_store_record_load(s, stamp, &rec);

        if (r < 0) {
                log_error("snapshot '%s': record unreadable: %s", stamp, describe(r));
                return r == -ENOENT ? EXIT_NOTFOUND : exit_code(r);
        }
        *ret = rec.root;
        stamp_record_release(&rec);
        return EXIT_OK;
}

static int run_diff(struct stamp_store *s, const char *a, const char *b)
{
        struct diff_out o = { 0 };
        struct stamp_id ra, rb;
        char *bad = NULL;
        int r;

        r = load_root(s, a, &ra);
        if (r == EXIT_OK)
                r = load_root(s, b, &rb);
        if (r != EXIT_OK)
                return r;
        if (arg_json && out_open_json(&o) < 0) {
                log_error("out of memory");
                r = EXIT_FAILED;
                goto out;
        }
        r = stamp_diff_trees(s, &ra, &rb, arg_json ? json_change : human_change, &o, &bad);
        if (r < 0) {
                fflush(stdout);
                r = diff_error(a, b, r, bad);
                goto out;
        }
        if (arg_json)
                print_json(a, b, &o);
        else if (!arg_quiet)
                printf("%zu added, %zu removed, %zu modified\n", o.lists[STAMP_DIFF_ADDED].n,
                       o.lists[STAMP_DIFF_REMOVED].n, o.lists[STAMP_DIFF_MODIFIED].n);
        r = EXIT_OK;
out:
        free(bad);
        out_release(&o);
        return r;
}

int verb_diff(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS, {} };
        struct stamp_store *s = NULL;
        struct verb_options vo = { 0 };
        char a[STAMP_STAMP_LEN + 1], b[STAMP_STAMP_LEN + 1];
        int r;

        r = parse_options(argc, argv, opts, "diff", help, &vo);
        if (r >= 0)
                return r;
        if (optind + 2 != argc)
                return usage_error("diff", "expected two stamps, A and B");
        r = open_store_stamp(argv[optind], &s, a);
        if (r != EXIT_OK)
                return r;
        r = resolve_stamp(s, argv[optind + 1], b);
        if (r == EXIT_OK)
                r = run_diff(s, a, b);
        stamp_store_free(s);
        return r;
}
