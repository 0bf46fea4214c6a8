#!/bin/bash
# Snapshots beside gc lose nothing. gc is held between its marking and its
# commit while snapshots commit that reuse exactly the data gc has judged
# dead: through the files cache (unchanged files, not read again) and
# through chunk dedup (the same bytes under other names). After gc they
# read back byte-exact with every object present, and a snapshot taken
# after gc is not fooled by files-cache rows that named deleted data. A
# restore or drill keeps gc from starting until it ends.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"

S="$WORK/store"
"$STAMP" init --pack-size 1 "$S" >/dev/null
make_tree "$WORK/a" 1
make_tree "$WORK/other" 2 8
# Changed more than two seconds before the snapshot starts (mtime and
# ctime), so not "racy": the files cache keeps their rows.
sleep 3
A=$(snap "$S" "$WORK/a")
files_rows() {
        python3 -c 'import sqlite3,sys; print(sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True).execute("select count(*) from files").fetchone()[0])' "$S/index.db"
}
[ "$(files_rows)" -gt 20 ] || fail "snapshot A left no files-cache rows"
sleep 1
O=$(snap "$S" "$WORK/other")
expect_rc 0 "$STAMP" --store "$S" forget "$A"

# Round 1: the files cache. gc pauses after its plan (A's data is all
# candidates), a snapshot of the same, unchanged directory commits.
pause() { # pause POINT DIR: starts a gc that waits at POINT; its pid in gc_pid
        mkdir -p "$2"
        STAMP_TEST_GC_PAUSE="$1:$2" "$STAMP" --store "$S" --json gc --max-unused 0 >"$2/out" 2>"$2/err" &
        gc_pid=$!
}
wait_paused() {
        for _ in $(seq 200); do [ -e "$1/paused" ] && return 0; sleep 0.1; done
        fail "gc did not reach its pause ($(cat "$1/err"))"
}
pause plan "$WORK/p1"
wait_paused "$WORK/p1"
"$STAMP" --store "$S" --json -q snapshot "$WORK/a" >"$WORK/c1.json"
C1=$(json_field "$WORK/c1.json" stamp)
cp -a "$WORK/a" "$WORK/copies/$C1"
[ "$(json_field "$WORK/c1.json" new_chunks)" = 0 ] || fail "the files-cache snapshot stored new chunks"
touch "$WORK/p1/resume"
wait "$gc_pid" || fail "gc failed: $(cat "$WORK/p1/err")"
[ "$(json_field "$WORK/p1/out" new_snapshots)" = 1 ] || fail "gc did not mark the new snapshot"
[ "$(json_field "$WORK/p1/out" candidates)" -gt 0 ] || fail "gc saw no candidates"
echo "round 1: $(json_field "$WORK/p1/out" packs_kept_back) packs kept back, $(json_field "$WORK/p1/out" dead_objects) objects deleted"
check_all "$S" "files-cache snapshot beside gc"

# Round 2: chunk dedup. A's bytes come back under new names while gc waits
# after rewriting, just before it takes the lock.
expect_rc 0 "$STAMP" --store "$S" forget "$C1"
pause rewritten "$WORK/p2"
wait_paused "$WORK/p2"
mkdir "$WORK/b"
cp -r "$WORK/a" "$WORK/b/renamed" # new inodes: no files-cache hit, only dedup
"$STAMP" --store "$S" --json -q snapshot "$WORK/b" >"$WORK/c2.json"
C2=$(json_field "$WORK/c2.json" stamp)
cp -a "$WORK/b" "$WORK/copies/$C2"
new=$(json_field "$WORK/c2.json" new_chunks)
[ "$new" -le 2 ] || fail "the dedup snapshot stored $new new chunks: it did not reuse A's"
touch "$WORK/p2/resume"
wait "$gc_pid" || fail "gc failed: $(cat "$WORK/p2/err")"
check_all "$S" "dedup snapshot beside gc"

# Round 3: gc waits for the store lock while a snapshot runs; the snapshot
# started after gc's marking, reusing candidates again.
expect_rc 0 "$STAMP" --store "$S" forget "$C2"
pause locked "$WORK/p3"
wait_paused "$WORK/p3"
# gc now holds the store lock: a snapshot waits for it, then commits.
"$STAMP" --store "$S" -q snapshot --lock-timeout 60 "$WORK/b" >"$WORK/c3.out" &
snap_pid=$!
sleep 1
kill -0 "$snap_pid" 2>/dev/null || fail "the snapshot did not wait for gc's lock"
touch "$WORK/p3/resume"
wait "$gc_pid" || fail "gc failed: $(cat "$WORK/p3/err")"
wait "$snap_pid" || fail "the snapshot after gc failed"
C3=$(cat "$WORK/c3.out")
cp -a "$WORK/b" "$WORK/copies/$C3"
check_all "$S" "snapshot after gc's commit"

# After gc deleted A's data for good, the files cache must not hand its
# references to a new snapshot of the same files.
# (Round 3's gc deleted A's data: C2 was forgotten, C3 not yet committed.)
[ "$(json_field "$WORK/p3/out" dead_objects)" -gt 0 ] || fail "round 3 deleted nothing"
[ "$(json_field "$WORK/p3/out" files_dropped)" -gt 20 ] || fail "gc dropped no files-cache rows"
expect_rc 0 "$STAMP" --store "$S" forget "$C3"
expect_rc 0 "$STAMP" --store "$S" gc --max-unused 0
D=$(snap "$S" "$WORK/a")
check_all "$S" "snapshot of files whose data gc deleted"
expect_rc 0 "$STAMP" --store "$S" gc --max-unused 0
check_all "$S" "final"
check_clean "$S" "final"

# A restore holds gc off from start to end: its snapshot, forgotten while
# it runs, still restores whole; gc gives up after --lock-timeout deleting
# nothing, or waits for it, then deletes the data.
make_tree "$WORK/r" 9 30
sleep 1
R=$(snap "$S" "$WORK/r")
STAMP_TEST_RESTORE_STOP=1 "$STAMP" --store "$S" -q restore --no-pre-snapshot \
        --confirm-service-stopped "$R" "$WORK/restored-r" >"$WORK/r.out" 2>&1 &
r_pid=$!
at_exit "kill -9 $r_pid"
stopped() { [ "$(ps -o stat= -p "$1" | cut -c1)" = T ]; }
for _ in $(seq 200); do
        stopped $r_pid && break
        sleep 0.05
done
stopped $r_pid || fail "the restore did not stop at its test hook"
expect_rc 0 "$STAMP" --store "$S" forget "$R"
expect_rc 4 "$STAMP" --store "$S" gc --max-unused 0 --lock-timeout 1
grep -q "is locked by a restore or drill reading it" "$WORK/err" ||
        { cat "$WORK/err" >&2; fail "gc does not say that a restore holds the store"; }
"$STAMP" --store "$S" gc --max-unused 0 --json >"$WORK/gcw.out" 2>"$WORK/gcw.err" &
gcw_pid=$!
sleep 1
kill -0 $gcw_pid 2>/dev/null || fail "gc did not wait for the restore"
kill -CONT $r_pid
wait $r_pid || { cat "$WORK/r.out" >&2; fail "the restore of a forgotten snapshot failed"; }
wait $gcw_pid || { cat "$WORK/gcw.err" >&2; fail "the gc that waited for the restore failed"; }
grep -q "waiting for a restore or drill" "$WORK/gcw.err" || fail "gc did not say why it waited"
diff -r "$WORK/restored-r" "$WORK/r" >&2 || fail "the restore of a forgotten snapshot differs"
[ "$(json_field "$WORK/gcw.out" dead_objects)" -gt 0 ] ||
        fail "the gc after the restore deleted nothing of the forgotten snapshot"
rm -rf "$WORK/copies/$R"
check_all "$S" "after the restore and the gc"
check_clean "$S" "after the restore and the gc"

# A drill holds it too: one started while gc.lock is held waits for it.
flock -x "$S/gc.lock" sleep 1.5 &
sleep 0.2
t0=$(date +%s%N)
expect_rc 0 "$STAMP" --store "$S" -q drill
waited=$((($(date +%s%N) - t0) / 1000000))
[ "$waited" -ge 1000 ] || fail "the drill did not wait for gc.lock ($waited ms)"
echo "gc beside snapshots, restores and drills ok"
