/* SPDX-License-Identifier: MIT */
#include "check-report.h"

#include <string.h>

#include "common.h"

void check_report_init(struct check_report *r, const char *verb)
{
        memset(r, 0, sizeof(*r));
        r->verb = verb;
        r->json = arg_json;
        r->quiet = arg_quiet;
        r->progress = progress_enabled();
        r->out = stdout;
}

void check_report_clear(struct check_report *r)
{
        if (r->progress_drawn) {
                fputs("\r\033[K", stderr);
                r->progress_drawn = false;
        }
}

void check_report_problem(const struct stamp_problem *p, void *userdata)
{
        struct check_report *r = userdata;

        r->problems++;
        if (r->json) {
                printf("%s\n    {\"kind\": \"%s\"", r->shown++ ? "," : "", stamp_problem_name(p->kind));
                if (p->stamp) {
                        printf(", \"stamp\": ");
                        json_string(stdout, p->stamp);
                }
                printf(", \"paths\": [");
                if (p->path)
                        json_string(stdout, p->path);
                printf("]");
                printf(", \"object\": ");
                if (p->object)
                        json_string(stdout, p->object);
                else
                        printf("null");
                printf(", \"detail\": ");
                json_string(stdout, p->detail ? p->detail : "");
                printf("}");
                return;
        }
        check_report_clear(r);
        fprintf(r->out, "  %-26s ", stamp_problem_name(p->kind));
        if (p->stamp && strcmp(r->verb, "validate") != 0)
                fprintf(r->out, "%s:", p->stamp);
        if (p->path) {
                fput_escaped(r->out, p->path);
                fputs(": ", r->out);
        }
        fputs(p->detail ? p->detail : "", r->out);
        if (p->object && (!p->detail || !strstr(p->detail, p->object)))
                fprintf(r->out, " [%s]", p->object);
        fputc('\n', r->out);
        fflush(r->out);
}

void check_report_progress(const struct stamp_check_stats *st, const char *path, void *userdata)
{
        struct check_report *r = userdata;
        char b[32];

        if (!r->progress)
                return;
        fprintf(stderr, "\r\033[K%s: %llu files, %llu chunks, %s read  ", r->verb,
                (unsigned long long)st->files, (unsigned long long)st->chunks,
                fmt_bytes(st->bytes_read, b));
        print_escaped_max(stderr, path, 40);
        r->progress_drawn = true;
}

void check_report_stats_json(FILE *f, const struct stamp_check_stats *st)
{
        fprintf(f,
                "\"checked\": {\"files\": %llu, \"directories\": %llu, \"chunks\": %llu, "
                "\"bytes_read\": %llu, \"databases\": %llu, \"json_files\": %llu, "
                "\"packs\": %llu, \"objects\": %llu}",
                (unsigned long long)st->files, (unsigned long long)st->dirs,
                (unsigned long long)st->chunks, (unsigned long long)st->bytes_read,
                (unsigned long long)st->databases, (unsigned long long)st->json_files,
                (unsigned long long)st->packs, (unsigned long long)st->objects);
}

void check_report_stats_human(FILE *f, const struct stamp_check_stats *st, double seconds)
{
        char b[32];

        fprintf(f, "checked %llu files, %llu directories, %llu chunk references",
                (unsigned long long)st->files, (unsigned long long)st->dirs,
                (unsigned long long)st->chunks);
        if (st->packs)
                fprintf(f, ", %llu packs (%llu objects)", (unsigned long long)st->packs,
                        (unsigned long long)st->objects);
        if (st->bytes_read)
                fprintf(f, ", %s of data re-hashed", fmt_bytes(st->bytes_read, b));
        if (st->databases || st->json_files)
                fprintf(f, ", %llu SQLite databases, %llu JSON files",
                        (unsigned long long)st->databases, (unsigned long long)st->json_files);
        fprintf(f, " in %.2f s\n", seconds);
}
