/* SPDX-License-Identifier: MIT */
/* Output of the checking verbs (validate, verify, restore): problems and progress. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "verify.h"

struct check_report {
        const char *verb;   /* "validate", "verify" */
        bool json;          /* problems go to stdout as JSON array elements */
        bool quiet;
        bool progress;      /* a progress line on stderr */
        bool progress_drawn;
        unsigned long long problems;
        unsigned long long shown;
        FILE *out;          /* human output */
};

void check_report_init(struct check_report *r, const char *verb);
/* The callbacks for struct stamp_check_options (userdata: the report). */
void check_report_problem(const struct stamp_problem *p, void *userdata);
void check_report_progress(const struct stamp_check_stats *st, const char *path, void *userdata);
/* Erases the progress line, if one is drawn. */
void check_report_clear(struct check_report *r);
/* Writes "checked": {...} members of @st as JSON (no braces around the object key). */
void check_report_stats_json(FILE *f, const struct stamp_check_stats *st);
/* Writes a one-line human summary of @st. */
void check_report_stats_human(FILE *f, const struct stamp_check_stats *st, double seconds);
