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

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
workdir=/tmp/stampfs-bench
tools=stamp,restic,borg
keep=0
only_dataset=0
rebuild_dataset=0
scale=1

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --keep) keep=1 ;;
        --workdir) workdir=${2:?--workdir needs a directory}; shift ;;
        --workdir=*) workdir=${1#*=} ;;
        --tools) tools=${2:?--tools needs a list}; shift ;;
        --tools=*) tools=${1#*=} ;;
        --only-dataset) only_dataset=1 ;;
        --rebuild-dataset) rebuild_dataset=1 ;;
        # Smaller datasets are for checking the script, not for figures.
        --scale) scale=${2:?--scale needs a number}; shift ;;
        --scale=*) scale=${1#*=} ;;
        -h|--help) usage 0 ;;
        *) echo "bench-snapshot: unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done

IFS=, read -ra tool_list <<<"$tools"
for t in "${tool_list[@]}"; do
    case "$t" in
        stamp|restic|borg) ;;
        *) echo "bench-snapshot: unknown tool '$t' (stamp, restic, borg)" >&2
           exit 2 ;;
    esac
done
has_tool() { [[ ",$tools," == *",$1,"* ]]; }

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'bench-snapshot: warning: %s\n' "$*" >&2; }

mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)

# --- dependencies ------------------------------------------------------------
# Machines are rebuilt from scratch, so install rather than assume.  Only
# what the selected tools need, so a stamp-only run does not pull in borg.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
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
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# --- dataset (built once, cached) --------------------------------------------
# The cache is keyed on the generator's content, the scale and the Python
# stdlib it copies from, so editing make-dataset.py invalidates it.
if [ "$scale" = 1 ]; then ds_name=dataset-day0; else ds_name=dataset-day0-scale$scale; fi
day0="$workdir/$ds_name"
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
# STAMP_BIN picks a ready binary (e.g. to compare two builds) and skips
# the build.
stamp_bin="${STAMP_BIN:-$repo_root/build/tools/stamp}"
if has_tool stamp && [ -z "${STAMP_BIN:-}" ]; then
    log "building stamp"
    # ninja is a no-op when nothing changed, so always run it: measuring a
    # stale binary would be worse than a few seconds of build.
    (cd "$repo_root" && { [ -f build/build.ninja ] || meson setup build; } &&
        ninja -C build) >&2
    [ -x "$stamp_bin" ] || { echo "bench-snapshot: $stamp_bin not built" >&2; exit 1; }
fi
read -ra stamp_init_opts <<<"${STAMP_INIT_OPTS:-}"
read -ra stamp_snap_opts <<<"${STAMP_SNAPSHOT_OPTS:-}"

# --- per-tool commands -------------------------------------------------------
data="$workdir/data"        # same path for every tool: identical inputs
mkdir -p "$workdir/logs" "$workdir/results"

export RESTIC_PASSWORD=bench
export BORG_PASSPHRASE=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

store_of() { echo "$workdir/store-$1"; }
# Client-side caches live outside the store; they are moved into the
# workdir so every run starts from nothing and their size can be reported.
cache_of() { echo "$workdir/cache-$1"; }

tool_env() {
    case "$1" in
        restic) export RESTIC_CACHE_DIR; RESTIC_CACHE_DIR=$(cache_of restic) ;;
        borg) export BORG_BASE_DIR; BORG_BASE_DIR=$(cache_of borg) ;;
    esac
}

tool_init() {
    local store; store=$(store_of "$1")
    case "$1" in
        stamp) "$stamp_bin" --store "$store" init ${stamp_init_opts[@]+"${stamp_init_opts[@]}"} ;;
        restic) restic -r "$store" init ;;
        # Unencrypted for borg: restic cannot turn encryption off, but
        # stamp does not encrypt, and borg's repokey mode only adds a fixed
        # per-chunk cost.  zstd,3 matches what restic's "auto" does.
        borg) borg init -e none "$store" ;;
    esac
}

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

# Exit codes that still mean "snapshot committed": stamp 1 = committed with
# warnings, restic 3 = some files unreadable, borg 1 = warning.
ok_rc() {
    case "$1:$2" in
        *:0|stamp:1|restic:3|borg:1) return 0 ;;
        *) return 1 ;;
    esac
}

cold=yes
drop_caches() {
    sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        warn "cannot drop the page cache (not root, or /proc/sys read-only):" \
             "first snapshots are NOT cold"
        cold=no
    fi
}

store_bytes() { du -sb "$1" 2>/dev/null | cut -f1; }

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

    drop_caches
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
python3 - "$workdir" "$tools" "$ds_files" "$ds_bytes" "$scale" <<'EOF'
import os, platform, sys, time

workdir, tools, ds_files, ds_bytes, scale = sys.argv[1:]
tools = tools.split(",")
R = {}
for t in tools:
    d = {}
    with open(os.path.join(workdir, "results", t + ".txt")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            d[k] = v
    R[t] = d


def num(t, k):
    try:
        return float(R[t][k])
    except (KeyError, ValueError):
        return None


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
