#!/bin/bash
# gc while the store is mounted: readers hashing files through the mount
# (page cache dropped, a 1 MiB chunk cache, so reads go to the packs) get
# exact bytes and no error while gc moves their objects to new packs and
# deletes the old ones; after `stamp reindex` replaces index.db, the mount
# follows it and serves a snapshot taken afterwards.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"
need_fuse

S="$WORK/store"
MNT="$WORK/mnt"
mkdir "$MNT"
"$STAMP" init --pack-size 1 "$S" >/dev/null
"$STAMPFS" "$S" "$MNT" -o cache_size=1

# reader DIR...: hashes every file below each DIR (a stamp directory of the
# mount) against its copy, again and again, until $WORK/stop appears.
reader() {
        python3 - "$MNT" "$WORK/copies" "$WORK/stop" "$@" <<'PY'
import hashlib, os, sys
mnt, copies, stop, stamps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
want = {}
for st in stamps:
    for root, _, files in os.walk(os.path.join(copies, st)):
        for f in files:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, copies)
            want[rel] = hashlib.sha256(open(p, "rb").read()).hexdigest()
n = 0
while True:
    for rel, h in sorted(want.items()):
        p = os.path.join(mnt, rel)
        with open(p, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            got = hashlib.sha256(f.read()).hexdigest()
        if got != h:
            sys.exit("FAIL: %s read through the mount differs" % rel)
        n += 1
    if os.path.exists(stop):
        break
print("%d files read" % n)
PY
}

make_tree "$WORK/src" 1
for round in 1 2 3; do
        sleep 1
        A=$(snap "$S" "$WORK/src")
        sleep 1
        mutate_tree "$WORK/src" $((10 + round))
        B=$(snap "$S" "$WORK/src")
        rm -f "$WORK/stop"
        reader "$B" >"$WORK/reader1.out" 2>&1 &
        r1=$!
        reader "$B" >"$WORK/reader2.out" 2>&1 &
        r2=$!
        sleep 0.5
        # A's data (and the last round's B) shares packs with B's: gc moves
        # B's objects out of them.
        for old in $A ${prev:-}; do
                expect_rc 0 "$STAMP" --store "$S" forget "$old"
                rm -rf "$WORK/copies/$old"
        done
        prev=$B
        expect_rc 0 "$STAMP" --store "$S" gc --max-unused 0 --json
        [ "$(json_field "$WORK/out" objects_copied)" -gt 0 ] || fail "round $round: gc moved nothing"
        sleep 0.5
        touch "$WORK/stop"
        wait "$r1" || fail "round $round: reader 1: $(cat "$WORK/reader1.out")"
        wait "$r2" || fail "round $round: reader 2: $(cat "$WORK/reader2.out")"
        echo "round $round: $(cat "$WORK/reader1.out"), $(cat "$WORK/reader2.out") during gc"
done
check_all "$S" "after gc while mounted"

# reindex under the mount; a snapshot taken after it is served too.
expect_rc 0 "$STAMP" --store "$S" reindex
sleep 1
mutate_tree "$WORK/src" 20
C=$(snap "$S" "$WORK/src")
for _ in $(seq 50); do [ -d "$MNT/$C" ] && break; sleep 0.1; done
touch "$WORK/stop"
reader "$C" >"$WORK/reader3.out" 2>&1 || fail "after reindex: $(cat "$WORK/reader3.out")"
fusermount3 -u "$MNT"
check_all "$S" "final"
echo "gc while mounted ok"
