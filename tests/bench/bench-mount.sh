#!/usr/bin/env bash
# Mount benchmark: stampfs against `restic mount` and `borg mount`, reading
# the newest (day 1) snapshot of the bench dataset (see README.md here).
#
#   bench-mount.sh [--keep] [--workdir DIR] [--tools stamp,restic,borg]
#                  [--no-verify] [--scale F]
#
# Stores: DIR/store-TOOL, reused when bench-snapshot.sh --keep (or this
# script with --keep) left a complete one for the current DIR/data, else
# built the way bench-snapshot.sh builds them.  Results: a table on stdout
# and DIR/results-mount.md; raw figures in DIR/results/mount-*.txt, logs in
# DIR/logs/mount-*.
set -euo pipefail
export LC_ALL=C   # decimal points in $EPOCHREALTIME, sort order of manifests

. "$(dirname "$0")/lib.sh"
workdir=/tmp/stampfs-bench
tools=stamp,restic,borg
keep=0
verify=1
# Smaller datasets (--scale) are for checking the script, not for figures.
scale=1

parse_options "keep workdir tools no-verify scale" "$@"
parse_tools stamp restic borg

mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)

# --- dependencies ------------------------------------------------------------
need python3 python3
need fusermount3 fuse3
need timeout coreutils
if has_tool restic; then need restic restic; fi
if has_tool borg; then need borg borgbackup; fi
install_missing
if has_tool borg; then
    # borg mount needs pyfuse3 or llfuse in borg's own interpreter (the
    # python3 on PATH may be another one, e.g. pyenv's).
    borg_py=$(head -n 1 "$(command -v borg)" | sed -n 's/^#! *//p' | cut -d' ' -f1)
    [ -n "$borg_py" ] || borg_py=/usr/bin/python3
    if ! "$borg_py" -c 'import pyfuse3' 2>/dev/null &&
       ! "$borg_py" -c 'import llfuse' 2>/dev/null; then
        log "installing python3-pyfuse3 (for borg mount)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pyfuse3
    fi
    borg mount --help >/dev/null || die "borg mount does not work"
fi
if has_tool stamp && { [ -z "${STAMP_BIN:-}" ] || [ -z "${STAMPFS_BIN:-}" ]; }; then
    "$repo_root/contrib/install-deps.sh"
fi

# --- dataset (built once, cached, by bench-snapshot.sh) ----------------------
build_dataset

# --- stamp build -------------------------------------------------------------
build_stamp_and_stampfs
# The RSS target is 64 MiB plus the chunk cache; 128 MiB is stampfs's default.
cache_mib=$(grep -o 'cache_size=[0-9]*' <<<"${STAMPFS_OPTS:-}" | tail -n 1 | cut -d= -f2 || true)
cache_mib=${cache_mib:-128}

# --- common ------------------------------------------------------------------
data="$workdir/data"        # the path every store was snapshotted from
mkdir -p "$workdir/logs" "$workdir/results"

export_tool_secrets

mnt_of() { echo "$workdir/mnt-$1"; }
# Written next to a store this script built or used, when --keep; see
# store_reusable.
marker_of() { echo "$workdir/store-$1.mount-ok"; }

# --- stores ------------------------------------------------------------------
# A store is reused (store_reusable, lib.sh) when a record of a complete
# run sits next to it: this script's marker or bench-snapshot.sh's
# results/TOOL.txt.
store_records() {  # tool
    printf '%s\n' "$(marker_of "$1")" "$workdir/results/$1.txt"
}

# The same three snapshots as bench-snapshot.sh, untimed.
make_store() {  # tool
    build_store "$1" "$(marker_of "$1")"
}

# --- mounts ------------------------------------------------------------------
declare -A mount_pid=()     # tool -> pid of the process serving the mount
mounted=()                  # mountpoints to release at exit
built=()                    # stores this run built (removed at exit unless --keep)

is_mounted() {  # mnt; from mountinfo, so a hung daemon cannot block it
    awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}

# The pid of the process serving MNT: its command line names MNT, and its
# program is stampfs, restic or borg.
find_mount_pid() {  # tool mnt
    local tool=$1 mnt=$2 p argv
    for p in $(pgrep -f -- "$mnt" || true); do
        [ "$p" != $$ ] || continue
        argv=$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null) || continue
        grep -qxF -- "$mnt" <<<"$argv" || continue
        case "$tool" in
            stamp) [ "$(basename "$(head -n 1 <<<"$argv")")" = stampfs ] ;;
            restic) [ "$(basename "$(head -n 1 <<<"$argv")")" = restic ] ;;
            borg) grep -qx mount <<<"$argv" && grep -q 'borg$' <<<"$argv" ;;
        esac || continue
        echo "$p"
        return 0
    done
    return 1
}

# Path whose successful stat means "mounted and usable", and the directory
# that holds the dataset (DIR/data) inside the newest snapshot.  restic and
# borg keep the full source path (borg without its leading slash); stamp's
# snapshot root is the source directory itself.
ready_path() {  # tool
    local mnt; mnt=$(mnt_of "$1")
    case "$1" in
        stamp) echo "$mnt/latest/db" ;;
        restic) echo "$mnt/snapshots/latest${data}/db" ;;
        borg) echo "$mnt/day1${data}/db" ;;
    esac
}
dataset_root() {  # tool
    local mnt; mnt=$(mnt_of "$1")
    case "$1" in
        stamp) echo "$mnt/$(readlink "$mnt/latest")" ;;
        restic) echo "$mnt/snapshots/$(readlink "$mnt/snapshots/latest")${data}" ;;
        borg) echo "$mnt/day1${data}" ;;
    esac
}

# Starts the mount and polls (every 10 ms) until ready_path can be
# stat'ed; sets ready_s to the seconds from starting the command.  Not to
# be called in $(...): it records the mount and its pid for the exit trap.
mount_tool() {  # tool
    local tool=$1 mnt store path t0 t1 rc=0 pid="" deadline mlog
    mnt=$(mnt_of "$tool"); store=$(store_of "$tool")
    mlog="$workdir/logs/mount-$tool.log"
    path=$(ready_path "$tool")
    ! is_mounted "$mnt" || die "$mnt is already mounted"
    mkdir -p "$mnt"
    mounted+=("$mnt")
    echo "--- $(date '+%F %T') mount" >>"$mlog"
    t0=$EPOCHREALTIME
    case "$tool" in
        stamp) "$stampfs_bin" "$store" "$mnt" ${stampfs_opts[@]+"${stampfs_opts[@]}"} \
                   >>"$mlog" 2>&1 || rc=$? ;;
        # restic mount serves in the foreground.
        restic) restic -r "$store" mount "$mnt" >>"$mlog" 2>&1 &
                pid=$!
                mount_pid[$tool]=$pid ;;
        borg) borg mount "$store" "$mnt" >>"$mlog" 2>&1 || rc=$? ;;
    esac
    if [ "$rc" != 0 ]; then
        tail -n 20 "$mlog" >&2
        die "$tool: mount command exited $rc (log: $mlog)"
    fi
    deadline=$(( ${t0%.*} + 600 ))
    until timeout 30 stat -- "$path" >/dev/null 2>&1; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$mlog" >&2
            die "$tool: the mount process exited before $path appeared (log: $mlog)"
        fi
        if [ "${EPOCHREALTIME%.*}" -ge "$deadline" ]; then
            tail -n 20 "$mlog" >&2
            ls -la "$mnt" >&2 || true
            die "$tool: $path did not appear within 600 s (log: $mlog)"
        fi
        sleep 0.01
    done
    t1=$EPOCHREALTIME
    [ -n "$pid" ] || pid=$(find_mount_pid "$tool" "$mnt") ||
        die "$tool: cannot find the process serving $mnt"
    mount_pid[$tool]=$pid
    ready_s=$(elapsed "$t0" "$t1")
}

release_mnt() {  # mnt
    is_mounted "$1" || return 0
    fusermount3 -u "$1" 2>/dev/null ||
        { sleep 1; fusermount3 -u "$1" 2>/dev/null; } ||
        fusermount3 -uz "$1" 2>/dev/null || umount -l "$1" ||
        warn "cannot unmount $1"
}

wait_exit() {  # pid tenths-of-a-second
    local i
    for ((i = 0; i < $2; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    ! kill -0 "$1" 2>/dev/null
}

unmount_tool() {  # tool
    local tool=$1 mnt pid
    mnt=$(mnt_of "$tool")
    pid=${mount_pid[$tool]:-}
    release_mnt "$mnt"
    # Wait for the server to exit: borg holds the repository lock until
    # then.  A restic still starting up is not mounted yet: SIGTERM makes
    # it give up (and unmount, if it got that far).
    if [ -n "$pid" ]; then
        if ! wait_exit "$pid" 100; then
            warn "$tool (pid $pid) still running 10 s after unmount; sending SIGTERM"
            kill -TERM "$pid" 2>/dev/null || true
            wait_exit "$pid" 50 || kill -KILL "$pid" 2>/dev/null || true
            release_mnt "$mnt"
        fi
        [ "$tool" != restic ] || wait "$pid" 2>/dev/null || true
    fi
    mount_pid[$tool]=""
}

cleanup() {
    local rc=$? t mnt
    trap - EXIT INT TERM
    for t in stamp restic borg; do
        mnt=$(mnt_of "$t")
        if is_mounted "$mnt" || [ -n "${mount_pid[$t]:-}" ]; then
            unmount_tool "$t" || true
        fi
    done
    for mnt in ${mounted[@]+"${mounted[@]}"}; do
        if is_mounted "$mnt"; then
            warn "$mnt is still mounted"
        else
            rmdir "$mnt" 2>/dev/null || true
        fi
    done
    if [ "$keep" = 0 ]; then
        for t in ${built[@]+"${built[@]}"}; do
            rm -rf "$(store_of "$t")" "$(cache_of "$t")"
        done
        # DIR/data is this run's own only when no store was reused.
        if [ "${#built[@]}" = "${#tool_list[@]}" ]; then
            rm -rf "$data"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo ""; }

clk_tck=$(getconf CLK_TCK)
# CPU seconds (user + system, all threads) that process PID has used so far.
proc_cpu() {  # pid
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null |
        awk -v hz="$clk_tck" '{ printf "%.2f\n", ($12 + $13) / hz }'
}

# CPU seconds of the commands a subshell ran, from its `times` output in
# FILE (second line: children's user and system time, as "1m2.345s").
children_cpu() {  # file
    awk 'NR == 2 { t = 0
                   for (i = 1; i <= 2; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] }
                   printf "%.2f\n", t }' "$1"
}

# Times `find . | wc -l` in DIR; sets find_s, find_n, and find_cpu: the CPU
# time of find and wc themselves (the kernel's work for them included),
# which no file system can take below.
time_find() {  # dir
    local t0 t1 tf
    tf=$(mktemp)
    t0=$EPOCHREALTIME
    find_n=$(cd "$1" && find . | wc -l; times >"$tf")
    t1=$EPOCHREALTIME
    find_s=$(elapsed "$t0" "$t1")
    find_cpu=$(children_cpu "$tf")
    rm -f "$tf"
}

# Times `ls -lR DIR >/dev/null` (a stat, security.selinux and
# system.posix_acl_access of every entry); sets ls_s.
time_lslr() {  # dir
    local t0
    t0=$EPOCHREALTIME
    ls -lR "$1" >/dev/null 2>>"$workdir/logs/mount-ls.err" || warn "ls -lR $1 failed (see $workdir/logs/mount-ls.err)"
    ls_s=$(elapsed "$t0" "$EPOCHREALTIME")
}

# Times `tar -cf - . | wc -c` in DIR; sets tar_s, tar_bytes, tar_rc, and
# tar_cpu (the CPU time of tar and wc themselves).
time_tar() {  # dir errlog
    local t0 t1 tf
    tf=$(mktemp)
    tar_rc=0
    t0=$EPOCHREALTIME
    tar_bytes=$( rc=0; (cd "$1" && tar -cf - .) 2>>"$2" | wc -c || rc=$?
                 times >"$tf"; exit "$rc") || tar_rc=$?
    t1=$EPOCHREALTIME
    tar_s=$(elapsed "$t0" "$t1")
    tar_cpu=$(children_cpu "$tf")
    rm -f "$tf"
    [ "$tar_rc" = 0 ] || warn "tar in $1 exited $tar_rc (see $2)"
}

# Runs `stamp verify --read-data --json` on STORE (its report in FILE) and
# prints verify_cpu (user + system seconds), verify_time and verify_bytes
# (the raw bytes of the objects it decompressed and re-hashed).
time_verify() {  # store file
    local t0 t1 tf rc=0
    tf=$(mktemp)
    t0=$EPOCHREALTIME
    ( rc=0; "$stamp_bin" --store "$1" verify --read-data --json >"$2" || rc=$?
      times >"$tf"; exit "$rc" ) || rc=$?
    t1=$EPOCHREALTIME
    [ "$rc" = 0 ] || warn "stamp verify --read-data exited $rc (see $2)"
    echo "verify_time=$(elapsed "$t0" "$t1")"
    echo "verify_cpu=$(children_cpu "$tf")"
    echo "verify_bytes=$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["checked"]["bytes_read"])' "$2" 2>/dev/null || echo "")"
    rm -f "$tf"
}

# sha256 of every regular file, sorted by name: the content check. SQLite
# files are hashed with the three header fields zeroed that SQLite's backup
# API rewrites when stamp snapshots a rollback-journal database (see
# content-manifest.py).
manifest() {  # dir out
    python3 "$here/content-manifest.py" "$1" >"$2"
}

# --- the source directory, and the stores ------------------------------------
reuse_or_build_stores
data_at_day1
day1_bytes=$(du -sb "$data" | cut -f1)
day1_files=$(find "$data" -type f | wc -l)
log "day-1 data: $day1_files files, $day1_bytes bytes"

res="$workdir/results/mount-source.txt"
log "[source] $data"
drop_caches "cold reads"
time_find "$data"
time_lslr "$data"
drop_caches "cold reads"
time_tar "$data" "$workdir/logs/mount-source-tar.err"; cold_s=$tar_s; cold_bytes=$tar_bytes
cold_reader_cpu=$tar_cpu
time_tar "$data" "$workdir/logs/mount-source-tar.err"
{
    echo "find_time=$find_s"
    echo "find_entries=$find_n"
    echo "find_cpu=$find_cpu"
    echo "ls_time=$ls_s"
    echo "cold_time=$cold_s"
    echo "cold_tar_bytes=$cold_bytes"
    echo "cold_reader_cpu=$cold_reader_cpu"
    echo "warm_time=$tar_s"
    echo "warm_tar_bytes=$tar_bytes"
    echo "day1_files=$day1_files"
    echo "day1_bytes=$day1_bytes"
} >"$res"
log "source: find ${find_s} s ($find_n entries), tar cold $cold_s s, warm $tar_s s, $tar_bytes bytes"
if [ "$verify" = 1 ]; then
    manifest "$data" "$workdir/logs/mount-source.sha256"
fi

# --- the runs ----------------------------------------------------------------
for tool in "${tool_list[@]}"; do
    tool_env "$tool"
    res="$workdir/results/mount-$tool.txt"
    errlog="$workdir/logs/mount-$tool-tar.err"
    : >"$errlog"
    {
        echo "version=$(tool_version "$tool")"
        echo "store=${store_origin[$tool]}"
        if [ "$tool" = stamp ]; then
            echo "init_opts=${store_init_opts:-}"
            echo "stampfs_opts=${STAMPFS_OPTS:-}"
            echo "cache_mib=$cache_mib"
        fi
    } >"$res"

    log "[$tool] mount (page cache dropped first)"
    drop_caches "cold reads"
    mount_tool "$tool"; ready=$ready_s
    root=$(dataset_root "$tool")
    if [ ! -f "$root/db/app.db" ] || [ ! -d "$root/chroma" ]; then
        ls -la "$(mnt_of "$tool")" >&2 || true
        die "$tool: $root does not look like the dataset root"
    fi
    time_find "$root"
    time_lslr "$root"
    {
        echo "mount_ready_time=$ready"
        echo "find_time=$find_s"
        echo "find_entries=$find_n"
        echo "find_cpu=$find_cpu"
        echo "ls_time=$ls_s"
        echo "root=$root"
    } >>"$res"
    if [ "$tool" = stamp ]; then
        newest=$("$stamp_bin" --store "$(store_of stamp)" list --short | tail -n 1)
        [ "$(basename "$root")" = "$newest" ] ||
            warn "stamp: latest -> $(basename "$root"), but the newest stamp listed is $newest"
        # The cost of one request to the mount and back, its work aside:
        # O_DIRECT reads of 4 KiB each go to the server, the chunks cached.
        dd if="$root/db/app.db" of=/dev/null iflag=direct bs=4k count=5000 status=none
        t0=$EPOCHREALTIME
        dd if="$root/db/app.db" of=/dev/null iflag=direct bs=4k count=5000 status=none
        echo "request_us=$(awk -v s="$(elapsed "$t0" "$EPOCHREALTIME" 6)" \
                             'BEGIN { printf "%.1f", s * 1e6 / 5000 }')" >>"$res"
        echo "find_dirs=$(find "$data" -type d | wc -l)" >>"$res"
    fi
    log "$tool: ready in $ready s; find $find_s s ($find_n entries); ls -lR $ls_s s"
    unmount_tool "$tool"

    # A fresh mount, so the tool's own caches are empty too.
    drop_caches "cold reads"
    mount_tool "$tool"; ready2=$ready_s
    root=$(dataset_root "$tool")
    drop_caches "cold reads"
    cpu0=$(proc_cpu "${mount_pid[$tool]}")
    time_tar "$root" "$errlog"; cold_s=$tar_s; cold_bytes=$tar_bytes; cold_rc=$tar_rc
    cpu1=$(proc_cpu "${mount_pid[$tool]}")
    cold_reader_cpu=$tar_cpu
    time_tar "$root" "$errlog"
    rss=$(rss_kib "${mount_pid[$tool]}")
    {
        echo "remount_ready_time=$ready2"
        echo "cold_time=$cold_s"
        echo "cold_tar_bytes=$cold_bytes"
        echo "cold_tar_rc=$cold_rc"
        echo "cold_reader_cpu=$cold_reader_cpu"
        [ -z "$cpu0" ] || [ -z "$cpu1" ] ||
            echo "cold_mount_cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')"
        echo "warm_time=$tar_s"
        echo "warm_tar_bytes=$tar_bytes"
        echo "warm_tar_rc=$tar_rc"
        echo "rss_kib=$rss"
        echo "pid=${mount_pid[$tool]}"
    } >>"$res"
    log "$tool: tar cold $cold_s s, warm $tar_s s, $tar_bytes bytes; RSS $rss KiB"

    if [ "$verify" = 1 ]; then
        log "$tool: checking every file's sha256 against the source"
        manifest "$root" "$workdir/logs/mount-$tool.sha256"
        ndiff=$(diff "$workdir/logs/mount-source.sha256" "$workdir/logs/mount-$tool.sha256" |
                    tee "$workdir/logs/mount-$tool.sha256.diff" | grep -c '^[<>]' || true)
        echo "verify_diff_lines=$ndiff" >>"$res"
        [ "$ndiff" = 0 ] ||
            warn "$tool: $ndiff manifest lines differ from the source (see $workdir/logs/mount-$tool.sha256.diff)"
    fi
    unmount_tool "$tool"
    if [ "$tool" = stamp ]; then
        # What serving the content costs before any FUSE work: reading,
        # decompressing and re-hashing every object of the store once.
        log "stamp: stamp verify --read-data (page cache dropped), for the CPU it takes"
        drop_caches "cold reads"
        time_verify "$(store_of stamp)" "$workdir/logs/mount-stamp-verify.json" >>"$res"
    fi
    if [ "$keep" = 1 ]; then
        printf 'day1_bytes=%s\ninit_opts=%s\n' "$day1_bytes" \
            "$( [ "$tool" = stamp ] && echo "${store_init_opts:-}" )" >"$(marker_of "$tool")"
    fi
done
echo "cold=$cold" >>"$workdir/results/mount-source.txt"

# --- report ------------------------------------------------------------------
PYTHONPATH="$here" python3 - "$workdir" "$tools" "$scale" "$verify" <<'EOF'
import os, platform, sys, time

import benchreport

workdir, tools, scale, verify = sys.argv[1:]
tools = tools.split(",")
R = benchreport.load(workdir, "mount-%s", tools + ["source"])


def num(t, k):
    return benchreport.number(R, t, k)


secs = benchreport.secs


cols = [t for t in ("stamp", "restic", "borg") if t in tools] + ["source"]
names = {"source": "source dir"}
ratio_cols = [t for t in ("borg", "restic") if t in tools and "stamp" in tools]

rows = []  # (label, key, formatter, ratio?)
rows.append(("mount-to-ready (s)", lambda t: num(t, "mount_ready_time"), secs, True))
rows.append(("find (s) (entries)", lambda t: num(t, "find_time"),
             lambda v, t: "%s (%s)" % (secs(v), R[t].get("find_entries", "?")), True))
rows.append(("  CPU of find + wc (s)", lambda t: num(t, "find_cpu"), secs, False))
rows.append(("ls -lR, after find (s)", lambda t: num(t, "ls_time"), secs, True))
rows.append(("cold read (s)", lambda t: num(t, "cold_time"), secs, True))
rows.append(("  CPU of the mount process (s)", lambda t: num(t, "cold_mount_cpu"), secs, True))
rows.append(("  CPU of tar + wc (s)", lambda t: num(t, "cold_reader_cpu"), secs, False))
rows.append(("warm read (s)", lambda t: num(t, "warm_time"), secs, True))
rows.append(("RSS after reads (MiB)",
             lambda t: num(t, "rss_kib") and num(t, "rss_kib") / 1024, lambda v: "%.0f" % v, True))
rows.append(("tar bytes (warm read)", lambda t: num(t, "warm_tar_bytes"), lambda v: "%d" % v, False))


def cell(fmt, v, t):
    if v is None:
        return "-"
    try:
        return fmt(v, t)
    except TypeError:
        return fmt(v)


def ratio(a, b):
    return None if a is None or not b else a / b


S = lambda k: num("stamp", k) if "stamp" in R else None
targets = {}
if "stamp" in R:
    r = ratio(num("borg", "cold_time"), S("cold_time")) if "borg" in R else None
    targets["cold read (s)"] = ("borg/stamp >= 10", r, r is not None and r >= 10)
    r = ratio(S("warm_time"), num("source", "warm_time"))
    targets["warm read (s)"] = ("stamp/source <= 2", r, r is not None and r <= 2)
    r = ratio(num("restic", "find_time"), S("find_time")) if "restic" in R else None
    targets["find (s) (entries)"] = ("restic/stamp >= 5", r, r is not None and r >= 5)
    cache = float(R["stamp"].get("cache_mib", 128))
    rss = S("rss_kib")
    r = rss / 1024 if rss else None
    targets["RSS after reads (MiB)"] = ("stamp <= 64+%d MiB" % cache, r,
                                        r is not None and r <= 64 + cache)

header = [""] + [names.get(t, t) for t in cols] + ["%s/stamp" % t for t in ratio_cols]
if targets:
    header.append("target")
table = []
for label, get, fmt, with_ratio in rows:
    vals = {t: get(t) for t in cols}
    cells = [label] + [cell(fmt, vals[t], t) for t in cols]
    for t in ratio_cols:
        r = ratio(vals[t], vals["stamp"]) if with_ratio else None
        cells.append("" if r is None else "%.1f" % r)
    if targets:
        tg = targets.get(label)
        if tg is None:
            cells.append("")
        elif tg[1] is None:
            cells.append("%s: n/a" % tg[0])
        else:
            cells.append("%s: %.2f %s" % (tg[0], tg[1], "met" if tg[2] else "MISSED"))
    table.append(cells)

# Content row: tar byte counts against the source's, and the sha256 check
# (content-manifest.py: SQLite files with the backup's header counters masked).
checks = ["content vs source (SQLite header counters masked)" if verify == "1"
          else "content vs source"]
src_bytes = R["source"].get("warm_tar_bytes")
for t in cols:
    if t == "source":
        checks.append("reference")
        continue
    parts = []
    parts.append("tar bytes %s" % ("equal" if R[t].get("warm_tar_bytes") == src_bytes
                                   and R[t].get("cold_tar_bytes") == src_bytes else "DIFFER"))
    if R[t].get("cold_tar_rc", "0") != "0" or R[t].get("warm_tar_rc", "0") != "0":
        parts.append("tar exit %s/%s" % (R[t].get("cold_tar_rc"), R[t].get("warm_tar_rc")))
    if "verify_diff_lines" in R[t]:
        n = R[t]["verify_diff_lines"]
        parts.append("sha256 ok" if n == "0" else "sha256: %s lines DIFFER" % n)
    checks.append(", ".join(parts))
checks += [""] * (len(header) - len(checks))
table.append(checks)

left = {0} | ({len(header) - 1} if targets else set())
md_table = benchreport.md_table(header, table, left)
print()
print("\n".join(md_table))

notes = []
if ratio_cols:
    notes.append("TOOL/stamp columns: the tool's figure divided by stamp's; above 1, "
                 "stamp is faster or leaner.")
notes.append("mount-to-ready: page cache dropped, then from starting the mount command "
             "until stat of the newest snapshot's db/ succeeds (polled every 10 ms). "
             "find: right after that, in the same mount (source dir: page cache dropped). "
             "ls -lR: right after find, in the same mount (a stat, security.selinux and "
             "system.posix_acl_access of every entry). "
             "cold read: a fresh mount, page cache dropped after it was ready. "
             "warm read: again at once. RSS: VmRSS of the mount process after both reads.")
notes.append("CPU rows: user + system time, the kernel's work on the process's behalf "
             "included. find cannot end before find has run, and with %d CPUs a cold read "
             "cannot take less than (mount CPU + tar + wc CPU) / %d: the floors below."
             % (os.cpu_count(), os.cpu_count()))
for t in cols:
    if t == "source":
        continue
    fc, mc, rc = num(t, "find_cpu"), num(t, "cold_mount_cpu"), num(t, "cold_reader_cpu")
    if fc is None or mc is None or rc is None:
        continue
    notes.append("%s: find floor %.2f s (took %s s); cold read floor %.2f s (took %s s), "
                 "%.2f s for a mount that used no CPU at all."
                 % (t, fc, secs(num(t, "find_time")), (mc + rc) / os.cpu_count(),
                    secs(num(t, "cold_time")), rc / os.cpu_count()))
us, nd, fc = num("stamp", "request_us"), num("stamp", "find_dirs"), num("stamp", "find_cpu")
if us and nd and fc is not None:
    notes.append("stamp: one request to the mount and back takes %.1f us (4 KiB O_DIRECT reads "
                 "of a cached file); find's listing of %d directories is at least 2 requests each (the "
                 "entries, then the end), so find cannot take less than its CPU + %d x %.1f us "
                 "= %.2f s here."
                 % (us, nd, 2 * nd, us, fc + 2 * nd * us / 1e6))
vc, vb, rc = num("stamp", "verify_cpu"), num("stamp", "verify_bytes"), num("stamp", "cold_reader_cpu")
if "stamp" in R and vc is not None and vb and rc is not None:
    notes.append("stamp: reading, decompressing and re-hashing every object of its store once, "
                 "without FUSE (stamp verify --read-data, %.0f MB raw, page cache dropped), "
                 "used %.2f s of CPU; with tar's and wc's, a cold read that verifies what it "
                 "serves cannot take less than %.2f s here."
                 % (vb / 1e6, vc, (vc + rc) / os.cpu_count()))
if "stamp" in R and "restic" in R and "borg" in R:
    rf, bc = num("restic", "find_time"), num("borg", "cold_time")
    if rf and bc:
        notes.append("targets: find <= %.2f s (restic / 5), cold read <= %.2f s (borg / 10)."
                     % (rf / 5, bc / 10))
if R["source"].get("cold") != "yes":
    notes.append("page cache could NOT be dropped: cold figures are not cold.")
if verify != "1":
    notes.append("content check skipped (--no-verify).")
for n in notes:
    print(n)

md = ["# stampfs mount benchmark", "",
      "- date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"),
      "- machine: %s, %d CPUs, %.1f GiB RAM" % (
          platform.platform(), os.cpu_count(),
          os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
      "- dataset (scale %s), newest snapshot = day 1: %s files, %s bytes"
      % (scale, R["source"].get("day1_files", "?"), R["source"].get("day1_bytes", "?")),
      ]
for t in cols:
    if t == "source":
        continue
    extra = ""
    if t == "stamp":
        extra = " (STAMP_INIT_OPTS=%r, STAMPFS_OPTS=%r, cache_size %s MiB)" % (
            R[t].get("init_opts", ""), R[t].get("stampfs_opts", ""), R[t].get("cache_mib"))
    md.append("- %s %s%s; store %s" % (t, R[t].get("version", "?"), extra,
                                       R[t].get("store", "?")))
md += [""] + md_table
md += [""] + notes
with open(os.path.join(workdir, "results-mount.md"), "w") as f:
    f.write("\n".join(md) + "\n")
print("\nwritten to %s" % os.path.join(workdir, "results-mount.md"))
EOF
