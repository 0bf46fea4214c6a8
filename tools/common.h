/* SPDX-License-Identifier: MIT */
/* Shared by the verbs of `stamp`: options, errors, exit codes, output. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "store.h"

/* Exit codes (documented in README.md and `stamp --help`). */
enum {
        EXIT_OK = 0,
        EXIT_WARNINGS = 1, /* done, with warnings (e.g. unreadable source files) */
        EXIT_USAGE = 2,    /* bad command line */
        EXIT_NOTFOUND = 3, /* no such store, stamp or path */
        EXIT_BUSY = 4,     /* the store is locked by another process */
        EXIT_CORRUPT = 5,  /* damaged or unsupported data in the store */
        EXIT_FAILED = 6,   /* any other failure (I/O, disk full, permissions) */
        EXIT_INVALID = 7,  /* checked and found invalid: a snapshot, the store, a restored db */
};

extern const char *arg_store;
extern bool arg_json;
extern bool arg_quiet;

/* Long options every verb accepts, and their handling. */
#define COMMON_LONG_OPTIONS                                                    \
        { "store", required_argument, NULL, 'S' },                             \
                { "json", no_argument, NULL, 'J' },                            \
                { "quiet", no_argument, NULL, 'q' },                           \
                { "help", no_argument, NULL, 'h' }

/* Handles a common option; returns true if @c was one. */
bool common_option(int c, const char *optarg_);

struct option;

/*
 * A verb's own options that parse_options() handles. It can only meet those
 * the verb lists in its option table.
 */
struct verb_options {
        bool read_data;   /* --read-data ('R') */
        int lock_timeout; /* --lock-timeout S ('L'); the caller sets the default */
};

/*
 * The option loop of a verb whose own options are at most --read-data and
 * --lock-timeout: runs getopt_long() with @opts (COMMON_LONG_OPTIONS and
 * the verb's own), handles the common ones, prints @help for --help, and
 * makes anything else a usage error of @verb. Returns -1 when the verb goes
 * on with its operands (from optind), else the exit code to return now.
 */
int parse_options(int argc, char **argv, const struct option *opts, const char *verb,
                  void (*help)(void), struct verb_options *o);

/* Maps a negative errno to an exit code. */
int exit_code(int r);

/* Prints "stamp: " + message to stderr. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Describes an errno the way a user needs it ("not a stampfs store", ...). */
const char *describe(int r);

/*
 * Opens the store named by --store or $STAMP_STORE, printing one clear
 * error line on failure; returns an exit code (EXIT_OK on success).
 */
int open_store(struct stamp_store **ret);
/* Opens store @dir (init --like's), with the same error lines as open_store(). */
int open_store_at(const char *dir, struct stamp_store **ret);

/*
 * Takes the store's write lock for @what ("stamp forget"), waiting up to
 * @timeout_s; on failure prints one line naming the holder. An exit code.
 */
int lock_store(struct stamp_store *s, int timeout_s, const char *what);
/*
 * The warning of forget and prune when stamp_store_record_delete() deleted
 * @stamp but had no space left to remember it as forgotten.
 */
void warn_unmarked(const char *stamp);
/* Keeps gc and reindex from starting until the store is freed (stamp_store_gc_hold()). */
int hold_store_against_gc(struct stamp_store *s, int timeout_s);

/* Resolves a stamp argument ("latest" too), printing an error line on failure. */
int resolve_stamp(struct stamp_store *s, const char *arg, char ret[STAMP_STAMP_LEN + 1]);

/*
 * open_store(), then resolve_stamp() of @arg: on success the store goes to
 * *ret_s (caller frees with stamp_store_free()) and the stamp to @ret_stamp.
 * An exit code; on failure the error is printed and nothing is kept open.
 */
int open_store_stamp(const char *arg, struct stamp_store **ret_s,
                     char ret_stamp[STAMP_STAMP_LEN + 1]);

/* Usage error for a verb (NULL: of stamp itself): one line, then a hint. */
int usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * The usage error of an option getopt_long() refused (it returned '?',
 * with opterr 0), named: unknown, missing its value, or given one it does
 * not take, or ambiguous. @shortopts and @opts: what getopt_long() was
 * given.
 */
int option_error(const char *verb, const char *shortopts, const struct option *opts,
                 char **argv);
/*
 * Set when a usage error came before getopt reached a "--json" among the
 * arguments (json_scan_unparsed()): main() then prints the JSON error
 * document all the same.
 */
extern bool json_unparsed;
/*
 * Looks for "--json" as an option (spelled out; not the value of an
 * option that takes one) in NULL-terminated @argv, up to "--". With
 * @verb_ahead (stamp's own options, before the command), @opts are known
 * only up to the command: after it, any "--json" counts.
 */
void json_scan_unparsed(char **argv, const char *shortopts, const struct option *opts,
                        bool verb_ahead);

/* The longest wait an option takes, in seconds (115 days). */
#define SECONDS_MAX 10000000
/*
 * A whole number of seconds, 0..SECONDS_MAX, digits only; -1 otherwise
 * ("abc", "-5", "1x", "4294967296").
 */
int parse_seconds(const char *s);
/* The usage error of a bad --OPT SECONDS. */
int seconds_error(const char *verb, const char *opt, const char *arg);

/*
 * Once --json is parsed: standard output goes through a stream that counts
 * what it writes, so that json_failure() knows whether a command's document
 * began. Direct writes to fd 1 are not counted: commands that write raw
 * bytes there (cat, serve) call json_raw_output(), and get no error document.
 */
void json_stdout_count(void);
void json_raw_output(void);
/*
 * For exit code @code of a command run with --json: a failure (2 or more)
 * before anything was written to standard output prints
 * {"error": LAST ERROR LINE, "exit_status": CODE}, so that a script reading
 * the output always gets one JSON document. Returns @code.
 */
int json_failure(int code);

/* Human-readable byte counts ("1.2 GiB"). */
const char *fmt_bytes(uint64_t n, char buf[32]);

/*
 * Writes @s as a JSON string (quoted, escaped) to @f. Bytes that are not
 * UTF-8 become \udc80..\udcff (Python's surrogateescape), so any file
 * name survives a round trip through json.loads() and os.fsencode().
 */
void json_string(FILE *f, const char *s);

/*
 * Writes @s for a human on a terminal: backslash, control characters (C0,
 * DEL, C1) and bytes that are not UTF-8 become visible escapes (\\, \n,
 * \t, \r, \x1b, \u009b), so a file name cannot move the cursor or hide
 * a newline. Other text, UTF-8 included, is written as is.
 */
void fput_escaped(FILE *f, const char *s);
/* Same, keeping only the last @max bytes of long paths ("..." first). */
void print_escaped_max(FILE *f, const char *s, size_t max);

/* True when a progress line may be drawn on stderr. */
bool progress_enabled(void);

int verb_init(int argc, char **argv);
int verb_snapshot(int argc, char **argv);
int verb_list(int argc, char **argv);
int verb_show(int argc, char **argv);
int verb_cat(int argc, char **argv);
int verb_forget(int argc, char **argv);
int verb_validate(int argc, char **argv);
int verb_verify(int argc, char **argv);
int verb_restore(int argc, char **argv);
int verb_prune(int argc, char **argv);
int verb_diff(int argc, char **argv);
int verb_gc(int argc, char **argv);
int verb_stats(int argc, char **argv);
int verb_reindex(int argc, char **argv);
int verb_copy(int argc, char **argv);
int verb_serve(int argc, char **argv);
int verb_drill(int argc, char **argv);
