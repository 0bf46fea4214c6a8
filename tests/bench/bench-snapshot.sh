#!/usr/bin/env bash
# Snapshot benchmark: stampfs against restic and borg on the same ~1 GB
# dataset (see README.md in this directory).
#
#   bench-snapshot.sh [--keep] [--workdir DIR] [--tools stamp,restic,borg]
#                     [--only-dataset] [--scale F] [--rebuild-dataset]
#
# For each tool: day 0 cold, day 0 again (nothing changed), then day 1.
# Results: a table on stdout and WORKDIR/results.md; raw figures in
# WORKDIR/results/TOOL.txt, tool output in WORKDIR/logs/.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
workdir=/tmp/stampfs-bench
tools=stamp,restic,borg
keep=0
only_dataset=0
rebuild_dataset=0
# Smaller datasets (--scale) are for checking the script, not for figures.
scale=1

parse_options "keep workdir tools only-dataset rebuild-dataset scale" "$@"
parse_tools stamp restic borg

mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)

# --- dependencies ------------------------------------------------------------
# Only what the selected tools need, so a stamp-only run does not pull in
# borg.
need python3 python3
need sqlite3 sqlite3
[ -x /usr/bin/time ] || missing+=(time)
if [ "$only_dataset" = 0 ]; then
    if has_tool restic; then need restic restic; fi
    if has_tool borg; then need borg borgbackup; fi
    if has_tool stamp && [ -z "${STAMP_BIN:-}" ]; then
        # The build's own libraries and tools, the same list the README uses.
        "$repo_root/contrib/install-deps.sh"
    fi
fi
install_missing

# --- dataset (built once, cached) --------------------------------------------
# The cache is keyed on the generator's content, the scale and the Python
# stdlib it copies from, so editing make-dataset.py invalidates it.
day0=$(day0_dir)
ds_key=$( { sha256sum "$here/make-dataset.py" | cut -d' ' -f1
            echo "scale=$scale"
            python3 -c 'import sysconfig;print(sysconfig.get_paths()["stdlib"])'
          } | sha256sum | cut -d' ' -f1)
if [ "$rebuild_dataset" = 1 ] || [ ! -d "$day0" ] ||
   [ "$(cat "$day0.key" 2>/dev/null)" != "$ds_key" ]; then
    log "building dataset in $day0 (takes about a minute)"
    rm -rf "$day0" "$day0.tmp" "$day0.key"
    # Built under a temporary name so an interrupted build is never reused.
    python3 "$here/make-dataset.py" --scale "$scale" "$day0.tmp" |
        tee "$day0.log"
    mv "$day0.tmp" "$day0"
    echo "$ds_key" >"$day0.key"
else
    log "using cached dataset $day0"
fi
ds_files=$(find "$day0" -type f | wc -l)
ds_bytes=$(du -sb "$day0" | cut -f1)
log "dataset: $ds_files files, $ds_bytes bytes"
if [ "$only_dataset" = 1 ]; then
    exit 0
fi

# --- stamp build -------------------------------------------------------------
if has_tool stamp && [ -z "${STAMP_BIN:-}" ]; then
    log "building stamp"
    build_stamp
    [ -x "$stamp_bin" ] || die "$stamp_bin not built"
fi

# --- per-tool commands -------------------------------------------------------
data="$workdir/data"        # same path for every tool: identical inputs
mkdir -p "$workdir/logs" "$workdir/results"

export_tool_secrets

# Sets cmd=(...) rather than running, so /usr/bin/time wraps the tool
# itself and not a shell.
snapshot_cmd() {  # tool label
    local store; store=$(store_of "$1")
    case "$1" in
        stamp) cmd=("$stamp_bin" --store "$store" snapshot
                    ${stamp_snap_opts[@]+"${stamp_snap_opts[@]}"} "$data") ;;
        restic) cmd=(restic -r "$store" backup --quiet "$data") ;;
        borg) cmd=(borg create --compression "zstd,3" "$store::$2" "$data") ;;
    esac
}

# Runs one snapshot under /usr/bin/time and appends its figures to the
# tool's result file as KEY_time, KEY_rss (KiB), KEY_bytes, KEY_rc.
measure() {  # tool key label
    local tool=$1 key=$2 label=$3 tf rc=0 line cmd
    tf="$workdir/logs/$tool-$key.time"
    snapshot_cmd "$tool" "$label"
    /usr/bin/time -f '%e %M' -o "$tf" "${cmd[@]}" \
        >"$workdir/logs/$tool-$key.out" 2>"$workdir/logs/$tool-$key.err" || rc=$?
    if ! ok_rc "$tool" "$rc"; then
        echo "bench-snapshot: $tool snapshot '$key' failed (exit $rc); last lines of" \
             "$workdir/logs/$tool-$key.err:" >&2
        tail -n 20 "$workdir/logs/$tool-$key.err" >&2
        exit 1
    fi
    [ "$rc" = 0 ] || warn "$tool $key exited $rc (committed with warnings)"
    # /usr/bin/time prefixes a line when the command exits non-zero.
    line=$(tail -n 1 "$tf")
    {
        echo "${key}_time=${line% *}"
        echo "${key}_rss=${line#* }"
        echo "${key}_bytes=$(store_bytes "$(store_of "$tool")")"
        echo "${key}_rc=$rc"
    } >>"$workdir/results/$tool.txt"
    log "$tool $key: ${line% *} s, peak RSS ${line#* } KiB," \
        "store $(store_bytes "$(store_of "$tool")") bytes"
}

# --- the runs ----------------------------------------------------------------
for tool in "${tool_list[@]}"; do
    log "[$tool] resetting dataset to day 0"
    rm -rf "$data" "$(store_of "$tool")" "$(cache_of "$tool")"
    cp -a "$day0" "$data"
    tool_env "$tool"
    res="$workdir/results/$tool.txt"
    : >"$res"
    case "$tool" in
        stamp)
            echo "version=git:$(cd "$repo_root" && git rev-parse --short HEAD 2>/dev/null || echo none)"
            echo "init_opts=${STAMP_INIT_OPTS:-}"
            echo "snapshot_opts=${STAMP_SNAPSHOT_OPTS:-}" ;;
        restic) echo "version=$(restic version | cut -d' ' -f2)" ;;
        borg) echo "version=$(borg --version | cut -d' ' -f2)" ;;
    esac >>"$res"

    tool_init "$tool" >"$workdir/logs/$tool-init.log" 2>&1 ||
        { cat "$workdir/logs/$tool-init.log" >&2; exit 1; }
    echo "init_bytes=$(store_bytes "$(store_of "$tool")")" >>"$res"

    drop_caches "first snapshots"
    echo "cold=$cold" >>"$res"
    measure "$tool" first day0
    measure "$tool" unchanged day0-again

    python3 "$here/make-dataset.py" --scale "$scale" --next-day "$data" \
        >"$workdir/logs/$tool-next-day.log"
    measure "$tool" nextday day1

    {
        echo "cache_bytes=$(store_bytes "$(cache_of "$tool")" || true)"
        echo "day1_files=$(find "$data" -type f | wc -l)"
        echo "day1_bytes=$(du -sb "$data" | cut -f1)"
    } >>"$res"
    if [ "$keep" = 0 ]; then
        rm -rf "$(store_of "$tool")" "$(cache_of "$tool")"
    fi
done
[ "$keep" = 1 ] || rm -rf "$data"
cp "$workdir/logs/${tool_list[0]}-next-day.log" "$workdir/next-day.log"

# --- report ------------------------------------------------------------------
PYTHONPATH="$here" python3 - "$workdir" "$tools" "$ds_files" "$ds_bytes" "$scale" <<'EOF'
import os, platform, sys, time

import benchreport

workdir, tools, ds_files, ds_bytes, scale = sys.argv[1:]
tools = tools.split(",")
R = benchreport.load(workdir, "%s", tools)


def num(t, k):
    return benchreport.number(R, t, k)


def added(t, k, prev):
    a, b = num(t, k), num(t, prev)
    return None if a is None or b is None else a - b


def human(n):
    if n is None:
        return "-"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= div:
            return "%.1f %s" % (n / div, unit)
    return "%d B" % n


# (label, value getter, formatter, ratio kind).  Ratio kinds follow the
# README: "time" = restic/stamp (>1: stamp faster or leaner), "size" =
# stamp/restic (<1: stamp stores less).
rows = [
    ("first snapshot, cold (s)", lambda t: num(t, "first_time"), "%.1f", "time"),
    ("unchanged snapshot (s)", lambda t: num(t, "unchanged_time"), "%.1f", "time"),
    ("next-day snapshot (s)", lambda t: num(t, "nextday_time"), "%.1f", "time"),
    ("store after first", lambda t: num(t, "first_bytes"), human, "size"),
    ("store after unchanged", lambda t: num(t, "unchanged_bytes"), human, "size"),
    ("store after next day", lambda t: num(t, "nextday_bytes"), human, "size"),
    # No ratio: both sides are a few hundred bytes of metadata, and the
    # quotient of two noise figures reads like a result.
    ("added by unchanged", lambda t: added(t, "unchanged_bytes", "first_bytes"), human, None),
    ("added by next day", lambda t: added(t, "nextday_bytes", "unchanged_bytes"), human, "size"),
    ("peak RSS first (MiB)", lambda t: num(t, "first_rss") and num(t, "first_rss") / 1024, "%.0f", "time"),
    ("peak RSS unchanged (MiB)", lambda t: num(t, "unchanged_rss") and num(t, "unchanged_rss") / 1024, "%.0f", "time"),
    ("peak RSS next day (MiB)", lambda t: num(t, "nextday_rss") and num(t, "nextday_rss") / 1024, "%.0f", "time"),
    ("client cache outside store", lambda t: num(t, "cache_bytes"), human, None),
]

cols = [t for t in ("stamp", "restic", "borg") if t in R]
with_ratio = "stamp" in R and "restic" in R
header = ["", *cols] + (["restic vs stamp"] if with_ratio else [])
table = []
for label, get, fmt, kind in rows:
    vals = {t: get(t) for t in cols}
    cells = [label]
    for t in cols:
        v = vals[t]
        cells.append("-" if v is None else (fmt(v) if callable(fmt) else fmt % v))
    if with_ratio:
        s, r = vals["stamp"], vals["restic"]
        if kind == "time" and s and r is not None:
            cells.append("%.2f" % (r / s))
        elif kind == "size" and r and s is not None:
            cells.append("%.2f" % (s / r))
        else:
            cells.append("")
    table.append(cells)

widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
def fmt_line(cells):
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths)))
print()
print(fmt_line(header))
for r in table:
    print(fmt_line(r))

notes = []
if with_ratio:
    notes.append("restic vs stamp: times and RSS are restic/stamp (>1 means stamp "
                 "is faster / leaner); byte rows are stamp/restic (<1 means stamp "
                 "stores less).")
cold = {t: R[t].get("cold", "?") for t in cols}
if any(v != "yes" for v in cold.values()):
    notes.append("page cache could NOT be dropped before the first snapshot: "
                 + ", ".join("%s=%s" % kv for kv in cold.items()))
for n in notes:
    print(n)

day1 = next((R[t] for t in cols if "day1_files" in R[t]), {})
md = ["# stampfs snapshot benchmark", "",
      "- date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"),
      "- machine: %s, %d CPUs, %.1f GiB RAM" % (
          platform.platform(), os.cpu_count(),
          os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
      "- dataset (scale %s): day 0 %s files, %s bytes; day 1 %s files, %s bytes"
      % (scale, ds_files, ds_bytes, day1.get("day1_files", "?"),
         day1.get("day1_bytes", "?")),
      ]
for t in cols:
    extra = ""
    if t == "stamp":
        extra = " (STAMP_INIT_OPTS=%r, STAMP_SNAPSHOT_OPTS=%r)" % (
            R[t].get("init_opts", ""), R[t].get("snapshot_opts", ""))
    md.append("- %s %s%s" % (t, R[t].get("version", "?"), extra))
md += ["", "| " + " | ".join(header) + " |",
       "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
md += ["| " + " | ".join(r) + " |" for r in table]
md += [""] + notes
with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write("\n".join(md) + "\n")
print("\nwritten to %s" % os.path.join(workdir, "results.md"))
EOF
