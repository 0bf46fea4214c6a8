# shellcheck shell=bash
# What the bench-*.sh scripts share: the command line, messages, installing
# what is missing, building stamp and the dataset, the tools' environment,
# dropping the page cache, timing, and (for bench-restore.sh and
# bench-mount.sh) reusing or building the stores of bench-snapshot.sh.
# Sourced by each script right after `set -euo pipefail`:
#
#   . "$(dirname "$0")/lib.sh"
#
# It sets $here and $repo_root, $prog (bench-copy: the prefix of messages),
# $bench (copy: the prefix of log and result files) and $stamp_bin.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
prog=$(basename "$0" .sh)
bench=${prog#bench-}
# STAMP_BIN picks a ready binary (e.g. to compare two builds) and skips the
# build.
stamp_bin="${STAMP_BIN:-$repo_root/build/tools/stamp}"
read -ra stamp_init_opts <<<"${STAMP_INIT_OPTS:-}"
read -ra stamp_snap_opts <<<"${STAMP_SNAPSHOT_OPTS:-}"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$prog" "$*" >&2; }
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }

# usage STATUS: the script's head comment (from line 2 to the first line
# that is not a comment), then exit STATUS.
usage() {
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"
    exit "${1:-0}"
}

# --- command line ------------------------------------------------------------
# parse_options "TAKES" ARGS...: parses the script's ARGS. TAKES names the
# options this script accepts, of: workdir tools scale repeat (each with a
# value, as --NAME V or --NAME=V, into $NAME), keep, only-dataset,
# rebuild-dataset (set $keep, $only_dataset, $rebuild_dataset to 1) and
# no-verify (sets $verify to 0). -h/--help prints the usage; anything else
# is a usage error (exit 2).
parse_options() {
    local takes=" $1 " name
    shift
    while [ $# -gt 0 ]; do
        name=${1#--}
        name=${name%%=*}
        case "$1" in
            -h|--help) usage 0 ;;
            --workdir|--tools|--scale|--repeat)
                [[ $takes == *" $name "* ]] || unknown_argument "$1"
                case "$name" in
                    workdir) workdir=${2:?--workdir needs a directory} ;;
                    tools) tools=${2:?--tools needs a list} ;;
                    scale) scale=${2:?--scale needs a number} ;;
                    repeat) repeat=${2:?--repeat needs a number} ;;
                esac
                shift ;;
            --workdir=*|--tools=*|--scale=*|--repeat=*)
                [[ $takes == *" $name "* ]] || unknown_argument "$1"
                printf -v "$name" '%s' "${1#*=}" ;;
            --keep|--only-dataset|--rebuild-dataset|--no-verify)
                [[ $takes == *" $name "* ]] || unknown_argument "$1"
                case "$name" in
                    keep) keep=1 ;;
                    only-dataset) only_dataset=1 ;;
                    rebuild-dataset) rebuild_dataset=1 ;;
                    no-verify) verify=0 ;;
                esac ;;
            *) unknown_argument "$1" ;;
        esac
        shift
    done
}

unknown_argument() {
    echo "$prog: unknown argument: $1" >&2
    usage 2 >&2
}

# parse_tools KNOWN...: splits $tools (comma-separated) into tool_list; a
# tool not among KNOWN is a usage error (exit 2).
parse_tools() {
    local t known=" $* " names
    names=$(printf '%s, ' "$@")
    IFS=, read -ra tool_list <<<"$tools"
    for t in "${tool_list[@]}"; do
        [[ $known == *" $t "* ]] ||
            { echo "$prog: unknown tool '$t' (${names%, })" >&2; exit 2; }
    done
}
has_tool() { [[ ",$tools," == *",$1,"* ]]; }

# --- what the scripts need ---------------------------------------------------
# Machines are rebuilt from scratch, so install rather than assume.
# need CMD PACKAGE: PACKAGE is installed by install_missing unless CMD is on
# the PATH.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
install_missing() {
    [ ${#missing[@]} -gt 0 ] || return 0
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    missing=()
}

# ninja is a no-op when nothing changed, so always run it: measuring a stale
# binary would be worse than a few seconds of build.
build_stamp() {
    (cd "$repo_root" && { [ -f build/build.ninja ] || meson setup build; } &&
        ninja -C build) >&2
}

# tool_version TOOL: the version a report names. stamp's is the checkout's
# commit, +dirty when store/, fs/ or tools/ differ from it, and the ready
# binaries used (which may not come from that commit).
tool_version() {
    case "$1" in
        stamp)
            echo "git:$(cd "$repo_root" && git rev-parse --short HEAD 2>/dev/null || echo none)$(
                cd "$repo_root" && git diff --quiet HEAD -- store fs tools 2>/dev/null || echo +dirty)${STAMP_BIN:+ (STAMP_BIN=$STAMP_BIN)}${STAMPFS_BIN:+ (STAMPFS_BIN=$STAMPFS_BIN)}" ;;
        restic) restic version | cut -d' ' -f2 ;;
        borg) borg --version | cut -d' ' -f2 ;;
    esac
}

# build_stamp_and_stampfs: for the scripts that mount. STAMP_BIN and
# STAMPFS_BIN pick ready binaries; with both set, no build. Sets
# $stampfs_bin and $stampfs_opts (STAMPFS_OPTS, word-split).
build_stamp_and_stampfs() {
    stampfs_bin="${STAMPFS_BIN:-$repo_root/build/fs/stampfs}"
    if has_tool stamp; then
        if [ -z "${STAMP_BIN:-}" ] || [ -z "${STAMPFS_BIN:-}" ]; then
            log "building stamp and stampfs"
            build_stamp
        fi
        [ -x "$stamp_bin" ] || die "$stamp_bin not built"
        [ -x "$stampfs_bin" ] || die "$stampfs_bin not built"
    fi
    read -ra stampfs_opts <<<"${STAMPFS_OPTS:-}"
}

# day0_dir: where bench-snapshot.sh caches the day-0 dataset of $scale.
day0_dir() {
    if [ "$scale" = 1 ]; then echo "$workdir/dataset-day0"; else echo "$workdir/dataset-day0-scale$scale"; fi
}

# build_dataset [OPTIONS...]: the day-0 dataset, built (or reused) by
# bench-snapshot.sh in the same workdir, in $day0.
build_dataset() {
    "$here/bench-snapshot.sh" --only-dataset --workdir "$workdir" --scale "$scale" "$@"
    day0=$(day0_dir)
}

# Passwords and consent for restic and borg (stores are unencrypted or use
# the password "bench").
export_tool_secrets() {
    export RESTIC_PASSWORD=bench
    export BORG_PASSPHRASE=bench
    export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
    export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
}

# --- measuring ---------------------------------------------------------------
# drop_caches WHAT: empties the page cache; where it cannot (not root),
# warns once that WHAT are not cold and sets cold=no.
cold=yes
drop_caches() {
    sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        [ "$cold" = no ] ||
            warn "cannot drop the page cache (not root?): $1 are NOT cold"
        cold=no
    fi
}

store_bytes() { du -sb "$1" 2>/dev/null | cut -f1; }

# elapsed T0 T1 [DECIMALS]: seconds between two $EPOCHREALTIME values
# (3 decimals unless told).
elapsed() { awk -v a="$1" -v b="$2" -v d="${3:-3}" 'BEGIN { printf "%." d "f", b - a }'; }

# Exit codes that still mean "done": stamp 1 = committed with warnings,
# restic 3 = some files unreadable, borg 1 = warning.
ok_rc() {
    case "$1:$2" in
        *:0|stamp:1|restic:3|borg:1) return 0 ;;
        *) return 1 ;;
    esac
}

# run_timed TOOL KEY CMD...: runs CMD under /usr/bin/time, its output in
# WORKDIR/logs/BENCH-TOOL-KEY.{out,err,time}; sets run_time (s) and run_rss
# (KiB). Stops the benchmark unless ok_rc.
run_timed() {
    local tool=$1 key=$2 tf line rc=0
    shift 2
    tf="$workdir/logs/$bench-$tool-$key.time"
    /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$workdir/logs/$bench-$tool-$key.out" \
        2>"$workdir/logs/$bench-$tool-$key.err" || rc=$?
    if ! ok_rc "$tool" "$rc"; then
        echo "$prog: $tool $key failed (exit $rc):" >&2
        tail -n 20 "$workdir/logs/$bench-$tool-$key.err" >&2
        exit 1
    fi
    # /usr/bin/time prefixes a line when the command exits non-zero.
    line=$(tail -n 1 "$tf")
    run_time=${line% *}
    run_rss=${line#* }
}

# --- the stores of bench-snapshot.sh -----------------------------------------
# DIR/store-TOOL. Client-side caches live outside the store; they are moved
# into the workdir (DIR/cache-TOOL) so every run starts from nothing and
# their size can be reported.
store_of() { echo "$workdir/store-$1"; }
cache_of() { echo "$workdir/cache-$1"; }

tool_env() {
    case "$1" in
        restic) export RESTIC_CACHE_DIR; RESTIC_CACHE_DIR=$(cache_of restic) ;;
        borg) export BORG_BASE_DIR; BORG_BASE_DIR=$(cache_of borg) ;;
    esac
}

tool_init() {  # tool
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

# dataset_day: the day of the dataset in $data ("none" without one).
dataset_day() {
    python3 -c 'import json,sys
try:
    print(json.load(open(sys.argv[1]))["meta"]["dataset_day"])
except Exception:
    print("none")' "$data/config/project-registry.json"
}

# store_reusable TOOL RECORD... -> prints the record used. A store is
# reused when a record of a complete run sits next to it: a script's marker
# or bench-snapshot.sh's results/TOOL.txt (its day1_bytes line is written
# only after the day-1 snapshot).  The record must be newer than every file
# in the store (bench-snapshot.sh starts each tool with a fresh store), its
# day1_bytes must equal `du -sb DIR/data` (the data is what was
# snapshotted), and for stamp its init_opts must equal STAMP_INIT_OPTS.
store_reusable() {
    local tool=$1 store rec want got opts
    shift
    store=$(store_of "$tool")
    [ -d "$store" ] && [ -d "$data" ] || return 1
    for rec in "$@"; do
        [ -f "$rec" ] || continue
        want=$(sed -n 's/^day1_bytes=//p' "$rec" | tail -n 1)
        [ -n "$want" ] || continue
        [ -z "$(find "$store" -type f -newer "$rec" -print -quit)" ] || continue
        got=$(du -sb "$data" | cut -f1)
        [ "$got" = "$want" ] || continue
        if [ "$tool" = stamp ]; then
            opts=$(sed -n 's/^init_opts=//p' "$rec" | tail -n 1)
            [ "$opts" = "${STAMP_INIT_OPTS:-}" ] || continue
        fi
        echo "$rec"
        return 0
    done
    return 1
}

# stamp reads a WAL database through SQLite, read-only: at rest (no -wal
# and -shm beside it) SQLite creates both, and a read-only connection
# leaves them. A service running would have them anyway; at rest they make
# DATA differ from what was snapshotted (two files, the directory's mtime)
# and the reference manifests wrong. at_rest_before notes the directories
# without them; at_rest_after removes the empty pair SQLite left there and
# gives the directory its mtime back.
at_rest_before() {
    local db i=0
    at_rest_dbs=()
    mkdir -p "$workdir/at-rest"
    while IFS= read -r -d '' db; do
        { [ -e "$db-wal" ] || [ -e "$db-shm" ]; } && continue
        touch -r "$(dirname "$db")" "$workdir/at-rest/$i"
        at_rest_dbs+=("$db")
        i=$((i + 1))
    done < <(find "$data" -name '*.db' -type f -print0)
}
at_rest_after() {
    local rc=$? i=0 db
    for db in ${at_rest_dbs[@]+"${at_rest_dbs[@]}"}; do
        if [ -f "$db-wal" ] && [ ! -s "$db-wal" ]; then
            rm -f "$db-wal" "$db-shm"
            touch -r "$workdir/at-rest/$i" "$(dirname "$db")"
        fi
        i=$((i + 1))
    done
    rm -rf "$workdir/at-rest"
    return "$rc"
}

build_snapshot() {  # tool label; untimed, logs in WORKDIR/logs/BENCH-build-*
    local tool=$1 label=$2 store rc=0 out err
    store=$(store_of "$tool")
    out="$workdir/logs/$bench-build-$tool-$label.out"
    err="$workdir/logs/$bench-build-$tool-$label.err"
    case "$tool" in
        stamp) at_rest_before
               "$stamp_bin" --store "$store" -q snapshot \
                   ${stamp_snap_opts[@]+"${stamp_snap_opts[@]}"} "$data"
               at_rest_after ;;
        restic) restic -r "$store" backup --quiet "$data" ;;
        borg) borg create --compression "zstd,3" "$store::$label" "$data" ;;
    esac >"$out" 2>"$err" || rc=$?
    if ! ok_rc "$tool" "$rc"; then
        echo "$prog: $tool snapshot '$label' failed (exit $rc); last lines of $err:" >&2
        tail -n 20 "$err" >&2
        exit 1
    fi
    [ "$rc" = 0 ] || warn "$tool $label exited $rc (committed with warnings)"
}

# build_store TOOL [FILE...]: the same three snapshots as bench-snapshot.sh
# (day 0, day 0 again, day 1), untimed; FILE... are removed with the old
# store.
build_store() {
    local tool=$1 store
    shift
    store=$(store_of "$tool")
    log "[$tool] building the store: day 0, day 0 again, day 1"
    rm -rf "$data" "$store" "$(cache_of "$tool")" "$@"
    cp -a "$day0" "$data"
    tool_init "$tool" >"$workdir/logs/$bench-build-$tool-init.log" 2>&1 ||
        { cat "$workdir/logs/$bench-build-$tool-init.log" >&2; exit 1; }
    build_snapshot "$tool" day0
    build_snapshot "$tool" day0-again
    python3 "$here/make-dataset.py" --scale "$scale" --next-day "$data" \
        >"$workdir/logs/$bench-build-$tool-next-day.log"
    build_snapshot "$tool" day1
}

# Every build ends with DIR/data at day 1; a reused store needs it too.
data_at_day1() {
    if [ ! -d "$data" ] || [ "$(dataset_day)" != 1 ]; then
        log "rebuilding $data at day 1"
        rm -rf "$data"
        cp -a "$day0" "$data"
        python3 "$here/make-dataset.py" --scale "$scale" --next-day "$data" \
            >"$workdir/logs/$bench-next-day.log"
    fi
}

# reuse_or_build_stores: for each tool, reuses its store when
# store_reusable finds one of the records the script's store_records TOOL
# prints (one a line), else builds it with the script's make_store TOOL.
# Sets store_origin[TOOL], store_init_opts (stamp's) and built (the stores
# built).
declare -A store_origin=()
reuse_or_build_stores() {
    local tool rec records
    for tool in "${tool_list[@]}"; do
        tool_env "$tool"
        mapfile -t records < <(store_records "$tool")
        if rec=$(store_reusable "$tool" "${records[@]}"); then
            log "[$tool] reusing $(store_of "$tool") (complete per $rec)"
            store_origin[$tool]="reused ($rec)"
            if [ "$tool" = stamp ]; then
                store_init_opts=$(sed -n 's/^init_opts=//p' "$rec" | tail -n 1)
            fi
        else
            built+=("$tool")
            make_store "$tool"
            store_origin[$tool]="built by this run"
            [ "$tool" != stamp ] || store_init_opts=${STAMP_INIT_OPTS:-}
        fi
    done
}
