#!/bin/bash
# stamp reindex rebuilds index.db from the packs and records alone: after
# the index is deleted or overwritten with garbage every snapshot reads
# back and `stamp stats` says exactly what it said before; the files cache
# starts empty; an interrupted gc's leftovers are finished; a damaged pack
# is reported.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"

S="$WORK/store"
"$STAMP" init --pack-size 1 "$S" >/dev/null
make_tree "$WORK/src" 1
snap "$S" "$WORK/src" >/dev/null
sleep 1
mutate_tree "$WORK/src" 2
A=$(snap "$S" "$WORK/src")
mutate_tree "$WORK/src" 3
sleep 3 # files older than two seconds get files-cache rows
snap "$S" "$WORK/src" >/dev/null
expect_rc 0 "$STAMP" --store "$S" forget "$A"
expect_rc 0 "$STAMP" --store "$S" gc # the default threshold: some dead objects stay
check_all "$S" "before"
"$STAMP" --store "$S" stats --json >"$WORK/stats.before"

files_rows() {
        python3 -c 'import sqlite3,sys; print(sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True).execute("select count(*) from files").fetchone()[0])' "$S/index.db"
}
[ "$(files_rows)" -gt 0 ] || fail "no files-cache rows to lose"

# Deleted index.
rm -f "$S/index.db" "$S/index.db-wal" "$S/index.db-shm"
expect_rc 5 "$STAMP" --store "$S" cat latest "$(cd "$WORK/src" && ls note*.txt | head -1)"
expect_rc 0 "$STAMP" --store "$S" reindex --json
cp "$WORK/out" "$WORK/reindex.json"
[ "$(json_field "$WORK/reindex.json" snapshots)" = 2 ] || fail "reindex found the wrong snapshots"
[ "$(json_field "$WORK/reindex.json" damaged_packs)" = 0 ] || fail "clean packs reported damaged"
check_all "$S" "after reindex"
"$STAMP" --store "$S" stats --json >"$WORK/stats.after"
diff "$WORK/stats.before" "$WORK/stats.after" >&2 || fail "stats differ after reindex"
[ "$(files_rows)" = 0 ] || fail "the files cache survived reindex"
[ ! -e "$S/index.db.new" ] || fail "index.db.new left behind"

# Garbage over index.db (and a stale WAL beside it).
head -c 100000 /dev/urandom >"$S/index.db"
head -c 5000 /dev/urandom >"$S/index.db-wal"
expect_rc 0 "$STAMP" --store "$S" reindex
check_all "$S" "after reindex over garbage"
"$STAMP" --store "$S" stats --json >"$WORK/stats.after"
diff "$WORK/stats.before" "$WORK/stats.after" >&2 || fail "stats differ after reindex over garbage"

# A gc killed after its index commit leaves packs for gc-pending; reindex
# finishes them instead of indexing them again.
sleep 1
mutate_tree "$WORK/src" 4
snap "$S" "$WORK/src" >/dev/null
mapfile -t stamps < <("$STAMP" --store "$S" list --short)
expect_rc 0 "$STAMP" --store "$S" forget "${stamps[0]}"
rm -rf "$WORK/copies/${stamps[0]}"
rc=0
STAMP_TEST_CRASH_AT=committed:1 bash -c '"$@"; exit $?' gc "$STAMP" --store "$S" -q gc \
        --max-unused 0 2>/dev/null || rc=$?
[ "$rc" = 137 ] || fail "gc was not killed at its commit (exit $rc)"
[ -e "$S/gc-pending" ] || fail "no gc-pending after a kill at the commit"
expect_rc 0 "$STAMP" --store "$S" reindex --json
[ "$(json_field "$WORK/out" pending_removed)" -gt 0 ] || fail "reindex did not finish gc-pending"
check_all "$S" "after reindex of an interrupted gc"
check_clean "$S" "after reindex of an interrupted gc"

# The next snapshot rereads (the files cache is empty) and stores nothing new.
sleep 1
"$STAMP" --store "$S" --json -q snapshot "$WORK/src" >"$WORK/rec.json"
[ "$(json_field "$WORK/rec.json" new_chunks)" = 0 ] || fail "unchanged files stored again"
cp -a "$WORK/src" "$WORK/copies/$(json_field "$WORK/rec.json" stamp)"
check_all "$S" "snapshot after reindex"

# A damaged pack: reported, indexed anyway.
P=$(find "$S/packs" -name '*.pack' | sort | head -1)
flip_byte "$P" 0.5
expect_rc 1 "$STAMP" --store "$S" reindex --json
grep -q "1 packs fail their checksum" "$WORK/err" || fail "damaged pack not reported"
[ "$(json_field "$WORK/out" damaged_packs)" = 1 ] || fail "damaged pack not counted"
flip_byte "$P" 0.5
expect_rc 0 "$STAMP" --store "$S" reindex
check_all "$S" "after repairing the byte"
# A pack whose trailer is damaged (its last byte, in the end magic): its
# records are walked, every object is indexed again, and every snapshot
# still reads back whole. It used to be dropped, with all its objects.
P=$(ls -S "$S"/packs/*/*.pack | head -1)
flip_byte "$P" 1.0
expect_rc 1 "$STAMP" --store "$S" reindex --json
grep -q "1 of them have a damaged trailer" "$WORK/err" || { cat "$WORK/err"; fail "scanned pack not reported"; }
[ "$(json_field "$WORK/out" scanned_packs)" = 1 ] || fail "scanned pack not counted"
[ "$(json_field "$WORK/out" unreadable_packs)" = 0 ] || fail "a pack with a damaged trailer dropped"
for st in $("$STAMP" --store "$S" list --short); do
        restore_compare "$S" "$st" "$WORK/copies/$st" || fail "snapshot $st lost with the trailer"
        expect_rc 0 "$STAMP" --store "$S" validate --read-data "$st"
done
[ "$(stats_field "$S" missing_objects)" = 0 ] || fail "objects of the scanned pack missing"
# verify still names the pack (its trailer is damaged), but walks its
# records: no object of it is damaged, so no snapshot is.
expect_rc 7 "$STAMP" --store "$S" --json verify
python3 - "$WORK/out" <<'PY' || fail "verify of a pack with a damaged trailer"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["damaged_snapshots"] == [], d["damaged_snapshots"]
assert {e["kind"] for e in d["errors"]} == {"pack_corrupt"}, d["errors"]
PY
flip_byte "$P" 1.0
expect_rc 0 "$STAMP" --store "$S" reindex
expect_rc 0 "$STAMP" reindex --help
echo "reindex ok"
