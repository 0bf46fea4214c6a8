#!/bin/bash
# gc reclaims exactly what a forgotten snapshot alone held, and everything
# that remains reads back; dry runs change nothing; a second gc is refused
# while one runs; a stale index is refused; a busy store lock times out
# cleanly; `stamp stats` agrees with what gc frees.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"

S="$WORK/store"
"$STAMP" init --pack-size 1 "$S" >/dev/null
make_tree "$WORK/src" 1
A=$(snap "$S" "$WORK/src")
sleep 1
mutate_tree "$WORK/src" 2
B=$(snap "$S" "$WORK/src")
cp "$S/index.db" "$WORK/index-before-c.db" # for the stale-index case below
sleep 1
mutate_tree "$WORK/src" 3
C=$(snap "$S" "$WORK/src")
check_all "$S" "before gc"

# What forgetting A alone frees, by stats.
"$STAMP" --store "$S" stats --json "$A" >"$WORK/a.json"
a_only=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["per_snapshot"][0]["exclusive_bytes"])' "$WORK/a.json")
[ "$a_only" -gt 1000000 ] || fail "snapshot A holds only $a_only bytes alone"
"$STAMP" --store "$S" stats >/dev/null
"$STAMP" --store "$S" stats "$B" | grep -q "^$B " || fail "stats STAMP does not show STAMP"

expect_rc 0 "$STAMP" --store "$S" forget "$A"
before=$(pack_bytes "$S")

# A dry run reports and changes nothing.
(cd "$S" && find . -type f ! -name lock ! -name gc.lock -printf '%p %s\n' | sort) >"$WORK/files.1"
expect_rc 0 "$STAMP" --store "$S" gc --dry-run --max-unused 0 --json
cp "$WORK/out" "$WORK/dry.json"
[ "$(json_field "$WORK/dry.json" dry_run)" = True ] || fail "dry run not reported as such"
[ "$(json_field "$WORK/dry.json" plan_free_bytes)" -gt 0 ] || fail "dry run frees nothing"
(cd "$S" && find . -type f ! -name lock ! -name gc.lock -printf '%p %s\n' | sort) >"$WORK/files.2"
diff "$WORK/files.1" "$WORK/files.2" >&2 || fail "gc --dry-run changed the store"
"$STAMP" --store "$S" gc --dry-run | grep -q "^would delete" || fail "dry-run summary"

# The real thing, rewriting every pack with anything dead in it.
expect_rc 0 "$STAMP" --store "$S" gc --max-unused 0 --json
cp "$WORK/out" "$WORK/gc.json"
after=$(pack_bytes "$S")
freed=$((before - after))
echo "A alone held $a_only bytes; gc freed $freed ($(json_field "$WORK/gc.json" bytes_freed) by its count)"
[ "$freed" = "$(json_field "$WORK/gc.json" bytes_freed)" ] || fail "gc's bytes_freed is not what left the disk"
# Within pack overhead: each pack has a 72-byte header and trailer.
packs=$(find "$S/packs" -name '*.pack' | wc -l)
slack=$(( (packs + $(json_field "$WORK/gc.json" packs_deleted) + $(json_field "$WORK/gc.json" packs_rewritten)) * 72 ))
diff=$((freed - a_only))
[ "${diff#-}" -le "$slack" ] || fail "gc freed $freed bytes, A alone held $a_only (slack $slack)"
[ "$(json_field "$WORK/gc.json" packs_rewritten)" -gt 0 ] || fail "no pack was rewritten"
check_all "$S" "after gc"
check_clean "$S" "after gc"
[ "$(stats_field "$S" unused_bytes)" = 0 ] || fail "unused bytes left after gc --max-unused 0"

# A second gc finds nothing to do.
expect_rc 0 "$STAMP" --store "$S" gc --json
cp "$WORK/out" "$WORK/gc2.json"
[ "$(json_field "$WORK/gc2.json" dead_objects)" = 0 ] || fail "second gc deleted objects"
[ "$(json_field "$WORK/gc2.json" packs_written)" = 0 ] || fail "second gc wrote packs"
"$STAMP" --store "$S" gc | grep -q "^removed 0 packs" || fail "summary of an idle gc"

# The default threshold keeps packs with little unused in them.
expect_rc 0 "$STAMP" --store "$S" forget "$B"
expect_rc 0 "$STAMP" --store "$S" gc --json
cp "$WORK/out" "$WORK/gc3.json"
check_all "$S" "after the second forget"
check_clean "$S" "after the second forget"

# Usage errors.
expect_rc 2 "$STAMP" --store "$S" gc --max-unused 101
grep -q "not a percentage" "$WORK/err" || fail "--max-unused 101: $(cat "$WORK/err")"
expect_rc 2 "$STAMP" --store "$S" gc extra
expect_rc 0 "$STAMP" gc --help

# A second gc while one runs: refused at once, naming the first.
mkdir "$WORK/pause"
STAMP_TEST_GC_PAUSE="mark:$WORK/pause" "$STAMP" --store "$S" -q gc &
gc_pid=$!
for _ in $(seq 100); do [ -e "$WORK/pause/paused" ] && break; sleep 0.1; done
[ -e "$WORK/pause/paused" ] || fail "gc did not reach its pause"
expect_rc 4 "$STAMP" --store "$S" gc
expect_err "store '$S' is locked by pid $gc_pid: stamp gc"
expect_rc 4 "$STAMP" --store "$S" reindex --lock-timeout 0
touch "$WORK/pause/resume"
wait "$gc_pid" || fail "paused gc failed"

# A busy store lock: gc waits, says for whom, and gives up cleanly.
sleep 1
make_tree "$WORK/src2" 4 6
D=$(snap "$S" "$WORK/src2")
expect_rc 0 "$STAMP" --store "$S" forget "$D"
printf 'pid 4242: stamp snapshot\n' >"$S/lock"
flock "$S/lock" sleep 4 &
holder=$!
sleep 0.3
expect_rc 4 "$STAMP" --store "$S" gc --lock-timeout 1
grep -q "waiting for pid 4242: stamp snapshot" "$WORK/err" || fail "gc did not say whom it waits for"
grep -q "nothing was deleted and the store is consistent" "$WORK/err" || fail "timeout message"
check_all "$S" "after a lock timeout"
wait "$holder"
# With time to wait, it waits and then finishes. (A new holder: check_all
# may take longer than the first one held the lock on a busy machine.)
flock "$S/lock" sleep 2 &
holder=$!
sleep 0.3
expect_rc 0 "$STAMP" --store "$S" gc --max-unused 0
grep -q "waiting for pid 4242: stamp snapshot" "$WORK/err" || fail "no waiting message"
wait "$holder"
check_all "$S" "after waiting for the lock"
check_clean "$S" "after waiting for the lock"

# Index rows of referenced chunks lost: gc refuses, naming one, and deletes
# nothing; stats counts them.
python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("delete from objects where type = 1"); c.commit()' "$S/index.db"
before=$(pack_bytes "$S")
expect_rc 5 "$STAMP" --store "$S" gc
expect_err "refusing to collect garbage: snapshot '[0-9TZ]*' references object [0-9a-f]\{32\}, which the index does not have ([0-9]* objects are missing in all); nothing was deleted. Run 'stamp reindex' (a stale or damaged index)"
[ "$(pack_bytes "$S")" = "$before" ] || fail "gc deleted data on an index missing rows"
[ "$(stats_field "$S" missing_objects)" -gt 0 ] || fail "stats does not count missing objects"
expect_rc 0 "$STAMP" --store "$S" reindex
check_all "$S" "after reindex of lost rows"

# A stale index (an old copy put back): gc refuses and deletes nothing.
sleep 1
mutate_tree "$WORK/src" 5
E=$(snap "$S" "$WORK/src")
rm -f "$S/index.db-wal" "$S/index.db-shm"
cp "$WORK/index-before-c.db" "$S/index.db"
before=$(pack_bytes "$S")
expect_rc 5 "$STAMP" --store "$S" gc
# (Which object it trips on first decides the words: one the old index
# lacks, or one it places in a pack an earlier gc deleted.)
expect_err "refusing to collect garbage: snapshot '.*'.*object [0-9a-f]*.*nothing was deleted"
[ "$(pack_bytes "$S")" = "$before" ] || fail "gc deleted data on a stale index"
# reindex repairs it, and gc works again.
expect_rc 0 "$STAMP" --store "$S" reindex
expect_rc 0 "$STAMP" --store "$S" gc --max-unused 0
check_all "$S" "after reindex and gc"
check_clean "$S" "after reindex and gc"
echo "gc ok"
