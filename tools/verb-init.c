/* SPDX-License-Identifier: MIT */
/* stamp init: create a store. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] init [OPTIONS] [DIR]\n"
               "\n"
               "Create a new, empty store in DIR (or --store, or $STAMP_STORE). DIR must\n"
               "not exist or be an empty directory (missing parents are made, mode 0700).\n"
               "A secret is generated for the store: it keys chunk ids and chunk\n"
               "boundaries, and is kept in DIR/config (0600).\n"
               "DIR/reserve (at most 8 MiB) is set aside for gc to use on a full disk.\n"
               "\n"
               "Options:\n"
               "  --chunk-min BYTES          smallest chunk (default 4096)\n"
               "  --chunk-avg BYTES          average chunk, a power of two (default 16384)\n"
               "  --chunk-max BYTES          largest chunk (default 131072)\n"
               "  --compression-level N      zstd level, -7..19 (default 1)\n"
               "  --pack-size MIB            target pack size in MiB (default 16)\n"
               "  --like STORE               take the chunker, secret and pack size of\n"
               "                             STORE (and its level unless --compression-level\n"
               "                             is given): a store that can receive\n"
               "                             'stamp copy' from STORE with full dedup\n"
               "  --json                     print the result as JSON\n");
}

static int parse_u32(const char *s, uint32_t *ret)
{
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end || !*s || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t)v;
        return 0;
}

int verb_init(int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "chunk-min", required_argument, NULL, 'm' },
                { "chunk-avg", required_argument, NULL, 'a' },
                { "chunk-max", required_argument, NULL, 'M' },
                { "compression-level", required_argument, NULL, 'l' },
                { "pack-size", required_argument, NULL, 'p' },
                { "like", required_argument, NULL, 'L' },
                {}
        };
        struct stamp_init_options o;
        const char *dir, *like = NULL;
        uint32_t pack_mib = 16;
        bool chunker_set = false, level_set = false, pack_set = false;
        int c, r;

        stamp_init_options_default(&o);
        while ((c = getopt_long(argc, argv, "hq", opts, NULL)) >= 0) {
                uint32_t v = 0;
                if (common_option(c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        help();
                        return EXIT_OK;
                case 'm':
                case 'a':
                case 'M':
                case 'p':
                        if (parse_u32(optarg, &v) < 0)
                                return usage_error("init", "'%s' is not a number", optarg);
                        chunker_set |= c != 'p';
                        pack_set |= c == 'p';
                        if (c == 'm')
                                o.chunker.min = v;
                        else if (c == 'a')
                                o.chunker.avg = v;
                        else if (c == 'M')
                                o.chunker.max = v;
                        else
                                pack_mib = v;
                        break;
                case 'l': {
                        char *end;
                        long l = strtol(optarg, &end, 10);
                        if (*end || !*optarg)
                                return usage_error("init", "'%s' is not a number", optarg);
                        o.zstd_level = (int)l;
                        level_set = true;
                        break;
                }
                case 'L':
                        like = optarg;
                        break;
                default:
                        return option_error("init", "hq", opts, argv);
                }
        }
        if (optind + 1 < argc)
                return usage_error("init", "too many arguments");
        dir = optind < argc ? argv[optind] : arg_store ? arg_store : getenv("STAMP_STORE");
        if (!dir || !*dir)
                return usage_error("init", "no store directory given");
        if (like) {
                struct stamp_store *src = NULL;
                int level = o.zstd_level;

                if (chunker_set || pack_set)
                        return usage_error("init", "--like takes the chunk and pack sizes of "
                                                   "its store; do not give them too");
                r = open_store_at(like, &src);
                if (r != EXIT_OK)
                        return r;
                stamp_init_options_like(stamp_store_config(src), &o);
                stamp_store_free(src);
                if (level_set)
                        o.zstd_level = level;
        }
        if (stamp_chunker_params_check(&o.chunker) < 0)
                return usage_error("init",
                                   "bad chunk sizes %u/%u/%u: need 64 <= min < avg < max <= 16 MiB, "
                                   "avg a power of two",
                                   o.chunker.min, o.chunker.avg, o.chunker.max);
        if (pack_mib < 1 || pack_mib > 1024)
                return usage_error("init", "pack size must be 1..1024 MiB");
        if (!like)
                o.pack_size = pack_mib << 20;

        r = stamp_store_init(dir, &o);
        if (r == -EEXIST) {
                log_error("cannot create a store in '%s': directory is not empty", dir);
                return EXIT_FAILED;
        }
        if (r == -EINVAL)
                return usage_error("init", "bad option value");
        if (r < 0) {
                log_error("cannot create a store in '%s': %s", dir, describe(r));
                return EXIT_FAILED; /* stamp-init(1): "cannot be created" is 6 */
        }
        {
                /* The reserve init set aside, if the disk had room (stamp-init(1)). */
                char path[PATH_MAX], b[32];
                struct stat st;
                uint64_t reserve = 0;

                if (snprintf(path, sizeof(path), "%s/reserve", dir) < (int)sizeof(path) &&
                    lstat(path, &st) == 0 && S_ISREG(st.st_mode))
                        reserve = (uint64_t)st.st_size;
                if (arg_json) {
                        printf("{\"store\": ");
                        json_string(stdout, dir);
                        printf(", \"chunk_min\": %u, \"chunk_avg\": %u, \"chunk_max\": %u, "
                               "\"compression_level\": %d, \"pack_size\": %u, "
                               "\"reserve_bytes\": %llu}\n",
                               o.chunker.min, o.chunker.avg, o.chunker.max, o.zstd_level,
                               o.pack_size, (unsigned long long)reserve);
                } else if (!arg_quiet)
                        printf("Created store '%s' (chunks %u/%u/%u bytes, zstd level %d; %s "
                               "set aside for gc on a full disk)\n",
                               dir, o.chunker.min, o.chunker.avg, o.chunker.max, o.zstd_level,
                               reserve ? fmt_bytes(reserve, b) : "nothing");
        }
        return EXIT_OK;
}
