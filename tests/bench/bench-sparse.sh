#!/usr/bin/env bash
# Sparse-file benchmark: stamp against restic and borg on a 20 GiB disk
# image that holds ~200 MiB of data, a 2 GiB file that is all hole and a
# 50 MiB dense file (see README.md here).
#
#   bench-sparse.sh [--keep] [--workdir DIR] [--tools stamp,restic,borg]
#                   [--scale F]
#
# For each tool: a fresh store, a cold snapshot of DIR/sparse-data, a cold
# restore into an empty directory, then the restored tree's allocated size
# (du -k) and a byte-for-byte check against the source; for stamp also a
# cold `cp -a --sparse=auto` out of a stampfs mount.  Results: a table on
# stdout and DIR/results-sparse.md; raw figures in DIR/results/TOOL-sparse.txt,
# logs in DIR/logs/sparse-*.  Needs about 23 GiB free in DIR for restic,
# whose restore writes the holes out as zeros (--scale F: F times that).
# STAMP_BIN and STAMPFS_BIN pick ready binaries (with both set, no build).
set -euo pipefail
export LC_ALL=C   # decimal points in $EPOCHREALTIME and awk

. "$(dirname "$0")/lib.sh"
workdir=/tmp/stampfs-bench
tools=stamp,restic,borg
keep=0
# Smaller datasets (--scale) are for checking the script, not for figures.
scale=1

parse_options "keep workdir tools scale" "$@"
parse_tools stamp restic borg
if ! [[ $scale =~ ^[0-9]*\.?[0-9]+$ ]] || ! awk -v s="$scale" 'BEGIN { exit !(s > 0) }'; then
    echo "$prog: --scale needs a number above 0, not '$scale'" >&2
    exit 2
fi

mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)

# Its own stores and caches: the workdir may be shared with
# bench-snapshot.sh, whose DIR/store-TOOL (lib.sh) must survive this run.
store_of() { echo "$workdir/sparse-store-$1"; }
cache_of() { echo "$workdir/sparse-cache-$1"; }
data="$workdir/sparse-data"     # the source, the same path for every tool
target_of() { echo "$workdir/sparse-restore-$1"; }
mnt="$workdir/sparse-mnt"
cp_target="$workdir/sparse-cp-stamp"

# --- dependencies ------------------------------------------------------------
need python3 python3
need timeout coreutils
[ -x /usr/bin/time ] || missing+=(time)
if has_tool restic; then need restic restic; fi
if has_tool borg; then need borg borgbackup; fi
if has_tool stamp; then need fusermount3 fuse3; fi
install_missing
if has_tool stamp && { [ -z "${STAMP_BIN:-}" ] || [ -z "${STAMPFS_BIN:-}" ]; }; then
    "$repo_root/contrib/install-deps.sh"
fi

# --- stamp build -------------------------------------------------------------
build_stamp_and_stampfs

[ -e /dev/fuse ] || ! has_tool stamp ||
    die "/dev/fuse is missing: the stampfs step needs FUSE (modprobe fuse, or a container with --device /dev/fuse)"

mkdir -p "$workdir/logs" "$workdir/results"
export_tool_secrets

# --- cleanup -----------------------------------------------------------------
mount_pid=""
is_mounted() {  # mnt; from mountinfo, so a hung daemon cannot block it
    awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}
unmount_stampfs() {
    if is_mounted "$mnt"; then
        fusermount3 -u "$mnt" 2>/dev/null ||
            { sleep 1; fusermount3 -u "$mnt" 2>/dev/null; } ||
            fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" ||
            warn "cannot unmount $mnt"
    fi
    if [ -n "$mount_pid" ]; then
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$mount_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$mount_pid" 2>/dev/null; then
            warn "stampfs (pid $mount_pid) still running 10 s after unmount; sending SIGTERM"
            kill -TERM "$mount_pid" 2>/dev/null || true
        fi
        wait "$mount_pid" 2>/dev/null || true
        mount_pid=""
    fi
    is_mounted "$mnt" || rmdir "$mnt" 2>/dev/null || true
}
cleanup() {
    local rc=$? t
    trap - EXIT INT TERM
    unmount_stampfs
    for t in stamp restic borg; do
        rm -rf "$(target_of "$t")"
    done
    rm -rf "$cp_target"
    if [ "$keep" = 0 ]; then
        for t in "${tool_list[@]}"; do
            rm -rf "$(store_of "$t")" "$(cache_of "$t")"
        done
        rm -rf "$data"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- dataset -----------------------------------------------------------------
# Made anew every run (a few seconds): deterministic content, the same for
# every tool.  The generator prints key=value figures of what it wrote.
log "making the sparse dataset in $data (scale $scale)"
rm -rf "$data"
mkdir -p "$data"
python3 - "$data" "$scale" >"$workdir/results/dataset-sparse.txt" <<'EOF' ||
import math
import os
import random
import sys

d, scale = sys.argv[1], float(sys.argv[2])
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
rng = random.Random(20261207)

image_size = int(20 * GiB * scale) // 4096 * 4096
hole_size = int(2 * GiB * scale) // 4096 * 4096
dense_size = int(50 * MiB * scale)
data_total = int(200 * MiB * scale)
N = 64
if data_total < N * 4 * KiB:
    sys.exit("--scale %g is too small: 64 extents of at least 4 KiB need "
             "--scale 0.00125 or more" % scale)

# 64 extent sizes from 4 KiB to 16 MiB (less when scaled down), log-uniform,
# then stretched to add up to data_total: the first one is 4 KiB, the
# largest is max_ext.  Every other one is rounded to 4 KiB and placed on a
# 4 KiB boundary; the rest have odd sizes at odd offsets.
max_ext = max(4 * KiB, min(16 * MiB, data_total // 8))
lo, hi = math.log(4 * KiB), math.log(max_ext)
raw = [math.exp(rng.uniform(lo, hi)) for _ in range(N - 2)]
fixed = 4 * KiB + max_ext
for _ in range(50):     # water-filling: stretch, clamp, again
    f = (data_total - fixed) / sum(raw)
    raw = [min(max(s * f, 4 * KiB), max_ext) for s in raw]
    if abs(sum(raw) + fixed - data_total) < 1:
        break
sizes = [4 * KiB, max_ext] + [int(s) for s in raw]
aligned = [True, True] + [i % 2 == 0 for i in range(N - 2)]
sizes = [s // 4096 * 4096 if a else s for s, a in zip(sizes, aligned)]
order = list(range(N))
rng.shuffle(order)
# The first extent sits at offset 0 (a partition table); the others each in
# their own slot of the image, at a random place in it.
order.remove(0)
order.insert(0, 0)
slot = image_size // N
extents = []
for k, i in enumerate(order):
    size = sizes[i]
    if size > slot:
        sys.exit("--scale %g is too small for the extents" % scale)
    start = k * slot
    if k == 0:
        off = 0
    else:
        off = start + rng.randrange(slot - size + 1)
        if aligned[i]:
            off = off // 4096 * 4096
    extents.append((off, size))

img = os.path.join(d, "vm.img")
with open(img, "wb") as f:
    f.truncate(image_size)
    for off, size in extents:
        f.seek(off)
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(rng.randbytes(n))
            left -= n
with open(os.path.join(d, "hole.img"), "wb") as f:
    f.truncate(hole_size)
with open(os.path.join(d, "dense.bin"), "wb") as f:
    left = dense_size
    while left:
        n = min(left, 4 * MiB)
        f.write(rng.randbytes(n))
        left -= n
for name in ("vm.img", "hole.img", "dense.bin"):
    fd = os.open(os.path.join(d, name), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)

print("image_bytes=%d" % image_size)
print("image_data_bytes=%d" % sum(s for _, s in extents))
print("image_extents=%d" % len(extents))
print("image_extent_min=%d" % min(s for _, s in extents))
print("image_extent_max=%d" % max(s for _, s in extents))
print("image_extents_unaligned=%d" % sum(1 for o, s in extents if o % 4096 or s % 4096))
print("hole_bytes=%d" % hole_size)
print("dense_bytes=%d" % dense_size)
EOF
    die "making the dataset failed"
ds() { sed -n "s/^$1=//p" "$workdir/results/dataset-sparse.txt"; }
kib_of() { du -k "$1" | cut -f1; }   # allocated KiB (st_blocks)

# The filesystem must keep holes, or there is nothing to measure.  Each
# extent may cost a block or two of rounding (128 KiB on file systems with
# large blocks) on each side.
img_kib=$(kib_of "$data/vm.img")
hole_kib=$(kib_of "$data/hole.img")
dense_kib=$(kib_of "$data/dense.bin")
img_data_kib=$(( $(ds image_data_bytes) / 1024 ))
img_limit=$(( img_data_kib + $(ds image_extents) * 256 + 1024 ))
fs_type=$(findmnt -n -o FSTYPE -T "$data" 2>/dev/null || stat -f -c %T "$data")
[ "$img_kib" -le "$img_limit" ] ||
    die "the file system of $data ($fs_type) did not keep vm.img sparse: $img_kib KiB" \
        "allocated for $img_data_kib KiB of data (at most $img_limit expected); use a" \
        "--workdir on a file system with holes (ext4, xfs, btrfs, tmpfs)"
[ "$hole_kib" -le 1024 ] ||
    die "the file system of $data ($fs_type) did not keep hole.img sparse: $hole_kib KiB" \
        "allocated for a file that is all hole; use a --workdir on a file system with holes"
src_kib=$(du -sk "$data" | cut -f1)
{
    echo "fs_type=$fs_type"
    echo "image_kib=$img_kib"
    echo "hole_kib=$hole_kib"
    echo "dense_kib=$dense_kib"
    echo "source_kib=$src_kib"
} >>"$workdir/results/dataset-sparse.txt"
log "dataset: vm.img $(ds image_bytes) bytes, $img_kib KiB allocated ($(ds image_extents)" \
    "extents, $(ds image_data_bytes) bytes of data); hole.img $(ds hole_bytes) bytes," \
    "$hole_kib KiB; dense.bin $(ds dense_bytes) bytes, $dense_kib KiB"

# restic 0.14 writes every hole out as zeros: room for the whole apparent
# size, with 1 GiB to spare.
if has_tool restic; then
    need_kib=$(( ($(ds image_bytes) + $(ds hole_bytes) + $(ds dense_bytes)) / 1024 + 1048576 ))
    free_kib=$(df -Pk "$workdir" | awk 'NR == 2 { print $4 }')
    [ "$free_kib" -ge "$need_kib" ] ||
        die "restic's restore writes the holes out: it needs about $((need_kib / 1048576)) GiB" \
            "free in $workdir, which has $((free_kib / 1048576)) GiB (use --workdir," \
            "a smaller --scale, or leave restic out with --tools)"
fi

# --- helpers -----------------------------------------------------------------
# Seconds that a `sync` right after a restore takes: the writeback the tool
# left to the kernel.  Reported beside the restore time, not added to it.
time_sync() {
    local t0
    t0=$EPOCHREALTIME
    sync
    sync_s=$(elapsed "$t0" "$EPOCHREALTIME" 2)
}

# Where the copy of DIR/sparse-data lands below the restore target: stamp's
# snapshot root is the source directory itself; restic and borg keep the
# full source path (borg without its leading slash, below the directory it
# extracts in).
restored_root() {  # tool
    case "$1" in
        stamp) target_of stamp ;;
        restic|borg) echo "$(target_of "$1")$data" ;;
    esac
}

# The store's size in bytes.  stamp's holds `reserve`, a fixed 8 MiB that
# init sets aside for gc on a full disk; it is left out and reported on its
# own.
store_size() {  # tool -> prints key=value lines
    local store total reserve=0
    store=$(store_of "$1")
    total=$(store_bytes "$store")
    if [ "$1" = stamp ]; then
        [ ! -f "$store/reserve" ] || reserve=$(stat -c %s "$store/reserve")
        echo "store_total_bytes=$total"
        echo "store_reserve_bytes=$reserve"
        echo "store_packs_bytes=$(store_bytes "$store/packs")"
        echo "store_index_bytes=$(stat -c %s "$store/index.db")"
        echo "store_snapshots_bytes=$(store_bytes "$store/snapshots")"
    fi
    echo "store_bytes=$((total - reserve))"
    echo "cache_bytes=$(store_bytes "$(cache_of "$1")" || echo 0)"
}

# Compares each file of the source with the same name below DIR, byte for
# byte, as cmp would, and prints key=value lines: content_ok (yes/no),
# content_detail, and each file's allocated KiB.  Ranges that are holes in
# both files are zeros in both and are not read (SEEK_DATA/SEEK_HOLE);
# where only one of them has data, that one is read and must be zeros.
# A 20 GiB image read whole, holes and all, takes cmp well over a minute
# here; this takes a second unless the copy was written out in full.
check_tree() {  # dir
    python3 - "$data" "$1" <<'EOF'
import bisect
import errno
import os
import sys

src, dst = sys.argv[1:]
BUF = 8 << 20
ZERO = bytes(BUF)


def regions(fd, size):
    """Sorted (start, end) data ranges of fd; all of it without SEEK_DATA."""
    out, off = [], 0
    try:
        while off < size:
            try:
                d = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:    # only holes from off on
                    break
                raise
            h = os.lseek(fd, d, os.SEEK_HOLE)
            out.append((d, min(h, size)))
            off = h
    except OSError:
        return [(0, size)]
    return out


def inside(regs, starts, p):
    i = bisect.bisect_right(starts, p) - 1
    return i >= 0 and regs[i][0] <= p < regs[i][1]


def compare(a, b):
    """None when equal, else where they differ."""
    sa, sb = os.stat(a), os.stat(b)
    if sa.st_size != sb.st_size:
        return "size %d, not %d" % (sb.st_size, sa.st_size)
    size = sa.st_size
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    try:
        ra, rb = regions(fa, size), regions(fb, size)
        sta, stb = [r[0] for r in ra], [r[0] for r in rb]
        cuts = sorted({0, size} | {p for r in ra + rb for p in r})
        for p, q in zip(cuts, cuts[1:]):
            ina, inb = inside(ra, sta, p), inside(rb, stb, p)
            if not (ina or inb):
                continue
            off = p
            while off < q:
                n = min(BUF, q - off)
                x = os.pread(fa, n, off) if ina else None
                y = os.pread(fb, n, off) if inb else None
                if (x is not None and len(x) != n) or (y is not None and len(y) != n):
                    return "short read at byte %d" % off
                z = ZERO if n == BUF else bytes(n)
                if (x if x is not None else z) != (y if y is not None else z):
                    x = x if x is not None else z
                    y = y if y is not None else z
                    i = next(i for i in range(n) if x[i] != y[i])
                    return "differs at byte %d" % (off + i)
                off += n
    finally:
        os.close(fa)
        os.close(fb)
    return None


bad = []
for name in sorted(os.listdir(src)):
    a, b = os.path.join(src, name), os.path.join(dst, name)
    if not os.path.isfile(b):
        bad.append("%s missing" % name)
        continue
    print("kib_%s=%d" % (name.replace(".", "_"), os.stat(b).st_blocks // 2))
    why = compare(a, b)
    if why:
        bad.append("%s %s" % (name, why))
extra = sorted(set(os.listdir(dst)) - set(os.listdir(src)))
if extra:
    bad.append("extra: " + " ".join(extra))
print("content_ok=%s" % ("no" if bad else "yes"))
print("content_detail=%s" % ("; ".join(bad) if bad else "identical"))
EOF
}

# Runs check_tree on DIR and appends its figures as KEY_... to $res.
check_step() {  # key dir
    local key=$1 dir=$2 out ok line
    out=$(check_tree "$dir") || die "$tool $key: checking $dir failed"
    while IFS= read -r line; do echo "${key}_$line"; done <<<"$out" >>"$res"
    echo "${key}_kib=$(du -sk "$dir" | cut -f1)" >>"$res"
    ok=$(sed -n 's/^content_ok=//p' <<<"$out")
    log "$tool $key: $(du -sk "$dir" | cut -f1) KiB allocated (source $src_kib);" \
        "content $(sed -n 's/^content_detail=//p' <<<"$out")"
    if [ "$ok" != yes ]; then
        warn "$tool $key: the copy in $dir differs from $data"
        bad_content+=("$tool $key")
    fi
}
bad_content=()

# Mounts the stamp store with stampfs in the foreground (so its pid is
# known) and waits until the newest snapshot can be stat'ed.
mount_stampfs() {
    local mlog="$workdir/logs/sparse-stamp-mount.log" i
    ! is_mounted "$mnt" || die "$mnt is already mounted"
    mkdir -p "$mnt"
    "$stampfs_bin" "$(store_of stamp)" "$mnt" -f ${stampfs_opts[@]+"${stampfs_opts[@]}"} \
        >"$mlog" 2>&1 &
    mount_pid=$!
    for ((i = 0; i < 6000; i++)); do
        if ! kill -0 "$mount_pid" 2>/dev/null; then
            wait "$mount_pid" 2>/dev/null || true
            mount_pid=""
            tail -n 20 "$mlog" >&2
            die "stampfs exited before $mnt was mounted (log: $mlog)"
        fi
        if is_mounted "$mnt" && timeout 30 stat -- "$mnt/latest/" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.01
    done
    tail -n 20 "$mlog" >&2
    die "stampfs: $mnt/latest did not appear within 60 s (log: $mlog)"
}

# Sets cmd=(...): the timed commands of each tool.
snapshot_cmd() {  # tool
    local store; store=$(store_of "$1")
    case "$1" in
        stamp) cmd=("$stamp_bin" --store "$store" snapshot
                    ${stamp_snap_opts[@]+"${stamp_snap_opts[@]}"} "$data") ;;
        restic) cmd=(restic -r "$store" backup "$data") ;;
        borg) cmd=(borg create --compression "zstd,3" "$store::a" "$data") ;;
    esac
}
restore_cmd() {  # tool
    local store; store=$(store_of "$1")
    case "$1" in
        stamp) cmd=("$stamp_bin" --store "$store" restore --confirm-service-stopped
                    latest "$(target_of stamp)") ;;
        restic) cmd=(restic -r "$store" restore latest --target "$(target_of restic)")
                [ "$restic_sparse" = no ] || cmd+=(--sparse) ;;
        borg) cmd=(borg extract --sparse "$store::a") ;;   # in the target
    esac
}
# restic has --sparse from 0.15 on; 0.14 writes holes out as zeros.
restic_sparse=no
if has_tool restic && restic restore --help 2>/dev/null | grep -q -- '--sparse'; then
    restic_sparse=yes
fi

# --- the runs ----------------------------------------------------------------
for tool in "${tool_list[@]}"; do
    store=$(store_of "$tool")
    target=$(target_of "$tool")
    res="$workdir/results/$tool-sparse.txt"
    rm -rf "$store" "$(cache_of "$tool")" "$target"
    tool_env "$tool"
    {
        echo "version=$(tool_version "$tool")"
        if [ "$tool" = stamp ]; then
            echo "init_opts=${STAMP_INIT_OPTS:-}"
            echo "snapshot_opts=${STAMP_SNAPSHOT_OPTS:-}"
            echo "stampfs_opts=${STAMPFS_OPTS:-}"
        fi
        [ "$tool" != restic ] || echo "restore_sparse=$restic_sparse"
    } >"$res"

    log "[$tool] init"
    tool_init "$tool" >"$workdir/logs/sparse-$tool-init.log" 2>&1 ||
        { echo "$prog: $tool init failed; its output:" >&2
          tail -n 20 "$workdir/logs/sparse-$tool-init.log" >&2; exit 1; }

    log "[$tool] snapshot (page cache dropped first)"
    snapshot_cmd "$tool"
    drop_caches "cold figures"
    run_timed "$tool" snapshot "${cmd[@]}"
    {
        echo "snapshot_time=$run_time"
        echo "snapshot_rss=$run_rss"
        store_size "$tool"
    } >>"$res"
    log "$tool snapshot: $run_time s, peak RSS $run_rss KiB," \
        "store $(sed -n 's/^store_bytes=//p' "$res") bytes"

    log "[$tool] restore into an empty directory (page cache dropped first)"
    mkdir -p "$target"
    restore_cmd "$tool"
    drop_caches "cold figures"
    if [ "$tool" = borg ]; then
        cd "$target"
        run_timed "$tool" restore "${cmd[@]}"
        cd "$workdir"
    else
        run_timed "$tool" restore "${cmd[@]}"
    fi
    time_sync
    {
        echo "restore_time=$run_time"
        echo "restore_rss=$run_rss"
        echo "restore_sync_time=$sync_s"
    } >>"$res"
    log "$tool restore: $run_time s, peak RSS $run_rss KiB; sync after it $sync_s s"
    [ -d "$(restored_root "$tool")" ] ||
        die "$tool: $(restored_root "$tool") does not exist after the restore"
    check_step restore "$(restored_root "$tool")"
    rm -rf "$target"

    if [ "$tool" = stamp ]; then
        log "[stamp] stampfs mount, then cp -a --sparse=auto of the snapshot (page cache dropped after mounting)"
        rm -rf "$cp_target"
        mount_stampfs
        # latest: the newest snapshot that is not a pre-restore one.
        newest=$(readlink "$mnt/latest")
        drop_caches "cold figures"
        run_timed stamp mountcp cp -a --sparse=auto "$mnt/$newest" "$cp_target"
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$mount_pid/status" 2>/dev/null || echo "")
        time_sync
        {
            echo "mount_stamp=$newest"
            echo "mountcp_time=$run_time"
            echo "mountcp_sync_time=$sync_s"
            echo "mountcp_stampfs_rss=$hwm"
        } >>"$res"
        log "stamp mount cp: $run_time s; stampfs peak RSS $hwm KiB; sync after it $sync_s s"
        check_step mountcp "$cp_target"
        unmount_stampfs
        rm -rf "$cp_target"
    fi
done
echo "cold=$cold" >>"$workdir/results/dataset-sparse.txt"

# --- report ------------------------------------------------------------------
PYTHONPATH="$here" python3 - "$workdir" "$tools" "$scale" <<'EOF'
import os, platform, sys, time

import benchreport

workdir, tools, scale, R = benchreport.start("%s-sparse", ["dataset"])
D = R.pop("dataset")
secs, mib = benchreport.secs, benchreport.mib


def num(t, k):
    return benchreport.number(R, t, k)


def whole(v):
    return "{:,}".format(int(v))


cols = [t for t in ("stamp", "restic", "borg") if t in R]
peers = [t for t in ("restic", "borg") if t in R] if "stamp" in R else []
src_kib = D.get("source_kib", "?")

# (label, key, formatter, ratio?, stamp only?)
rows = [
    ("snapshot (s)", "snapshot_time", secs, True, False),
    ("store bytes", "store_bytes", whole, False, False),
    ("restore (s)", "restore_time", secs, True, False),
    ("sync after restore (s)", "restore_sync_time", secs, False, False),
    ("restored allocated KiB (source %s)" % whole(float(src_kib)) if src_kib != "?"
     else "restored allocated KiB", "restore_kib", whole, False, False),
    ("restored content ok", "restore_content_ok", None, False, False),
    ("peak RSS snapshot (MiB)", "snapshot_rss", mib, False, False),
    ("peak RSS restore (MiB)", "restore_rss", mib, False, False),
    ("stampfs mount, cp -a (s)", "mountcp_time", secs, False, True),
    ("stampfs mount, allocated KiB", "mountcp_kib", whole, False, True),
    ("stampfs mount, content ok", "mountcp_content_ok", None, False, True),
    ("stampfs peak RSS (MiB)", "mountcp_stampfs_rss", mib, False, True),
]
header = [""] + cols + ["%s/stamp" % t for t in peers]
table = []
for label, key, fmt, ratio, only_stamp in rows:
    if only_stamp and "stamp" not in R:
        continue
    cells = [label]
    for t in cols:
        if only_stamp and t != "stamp":
            cells.append("n/a")
        elif fmt is None:
            cells.append(R[t].get(key, "-"))
        else:
            v = num(t, key)
            cells.append("-" if v is None else fmt(v))
    for t in peers:
        s, v = num("stamp", key), num(t, key)
        cells.append("%.1f" % (v / s) if ratio and s and v is not None else "")
    table.append(cells)

md_table = benchreport.md_table(header, table, {0})
print()
print("\n".join(md_table))

notes = []
if peers:
    notes.append("TOOL/stamp: the tool's time divided by stamp's; above 1, stamp is faster.")
notes.append("snapshot and restore: page cache dropped first; restore into an empty "
             "directory; wall time and peak RSS from /usr/bin/time. sync after restore: "
             "a sync right after it, not included in the restore time.")
if "stamp" in R:
    notes.append("stamp's store bytes leave out its 8 MiB `reserve` file (space set aside "
                 "for gc on a full disk): packs %s, index.db %s, snapshots %s bytes; "
                 "du -sb of the whole store %s."
                 % tuple(R["stamp"].get(k, "?") for k in (
                     "store_packs_bytes", "store_index_bytes", "store_snapshots_bytes",
                     "store_total_bytes")))
    notes.append("stampfs mount: the newest snapshot copied out with "
                 "`cp -a --sparse=auto`, page cache dropped after mounting; stampfs "
                 "peak RSS is VmHWM of the mount process after the copy.")
if "restic" in R and R["restic"].get("restore_sparse") != "yes":
    notes.append("restic %s has no `restore --sparse` (it came in 0.15): it writes "
                 "every hole out as zeros." % R["restic"].get("version", "?"))
notes.append("content ok: every file compared byte for byte with the source (as cmp "
             "does; ranges that are holes in both files are not read); allocated KiB: "
             "du -sk of the restored directory.")
if D.get("cold") != "yes":
    notes.append("page cache could NOT be dropped: cold figures are not cold.")
for n in notes:
    print(n)


def mb(k):
    return "%.1f MiB" % (float(D.get(k, "nan")) / 2**20)


md = ["# stampfs sparse-file benchmark", "",
      "- date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"),
      "- machine: %s, %d CPUs, %.1f GiB RAM; workdir on %s" % (
          platform.platform(), os.cpu_count(),
          os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
          D.get("fs_type", "?")),
      "- dataset (scale %s): vm.img %s bytes with %s extents of data (%s, %s to %s "
      "bytes, %s not 4 KiB-aligned), %s KiB allocated; hole.img %s bytes, all hole; "
      "dense.bin %s bytes; %s KiB allocated in all"
      % (scale, D.get("image_bytes"), D.get("image_extents"), mb("image_data_bytes"),
         D.get("image_extent_min"), D.get("image_extent_max"),
         D.get("image_extents_unaligned"), D.get("image_kib"), D.get("hole_bytes"),
         D.get("dense_bytes"), src_kib),
      ]
for t in cols:
    extra = ""
    if t == "stamp":
        extra = " (STAMP_INIT_OPTS=%r, STAMP_SNAPSHOT_OPTS=%r, STAMPFS_OPTS=%r)" % (
            R[t].get("init_opts", ""), R[t].get("snapshot_opts", ""),
            R[t].get("stampfs_opts", ""))
    md.append("- %s %s%s" % (t, R[t].get("version", "?"), extra))
md += [""] + md_table + [""] + notes
bad = ["%s %s: %s" % (t, k, R[t].get(k + "_content_detail", "?"))
       for t in cols for k in ("restore", "mountcp")
       if R[t].get(k + "_content_ok") == "no"]
if bad:
    md += ["", "CONTENT DIFFERS: " + "; ".join(bad)]
    print("CONTENT DIFFERS: " + "; ".join(bad))
with open(os.path.join(workdir, "results-sparse.md"), "w") as f:
    f.write("\n".join(md) + "\n")
print("\nwritten to %s" % os.path.join(workdir, "results-sparse.md"))
EOF

if [ "${#bad_content[@]}" -gt 0 ]; then
    echo "$prog: the content of these copies differs from the source: ${bad_content[*]}" >&2
    exit 1
fi
