#!/bin/bash
# stamp validate / verify / snapshot's own validation: each kind of damage
# is caught with its specific error and the affected paths.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

S="$WORK/store"
"$STAMP" init "$S" >/dev/null
mkdir -p "$WORK/src/db" "$WORK/src/cfg"
python3 - "$WORK/src" <<'PY'
import json, os, sqlite3, sys
src = sys.argv[1]
c = sqlite3.connect(os.path.join(src, "db/app.db"))
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)")
c.execute("CREATE INDEX t_body ON t(body)")
c.executemany("INSERT INTO t(body) VALUES(?)", [("row %d " % i * 20,) for i in range(4000)])
c.commit()
c.close()
# The same database, damaged inside its b-tree pages (header intact).
data = bytearray(open(os.path.join(src, "db/app.db"), "rb").read())
for off in (4096 * 3, 4096 * 7):
    data[off:off + 64] = b"\xa5" * 64
open(os.path.join(src, "db/broken.sqlite"), "wb").write(data)
json.dump({"name": "x", "list": [1, 2.5e3, -0, True, None, {"a": "\u00e9\n"}]},
          open(os.path.join(src, "cfg/good.json"), "w"))
open(os.path.join(src, "cfg/bad.json"), "w").write('{"a": [1, 2,]}')
open(os.path.join(src, "cfg/trailing.json"), "w").write('{"a": 1} {"b": 2}')
PY
head -c 3000000 /dev/urandom >"$WORK/src/blob"

# A snapshot records its own validation; --no-validate says it skipped.
"$STAMP" --store "$S" --json snapshot "$WORK/src" >"$WORK/rec.json"
python3 - "$WORK/rec.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))["validation"]
assert v["status"] == "ok" and v["objects"] > 0 and v["bytes"] > 0, v
PY
ST=$(json_field "$WORK/rec.json" stamp)

# validate names the broken database and the two invalid JSON files, nothing else.
expect_rc 7 "$STAMP" --store "$S" --json validate "$ST"
python3 - "$WORK/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["valid"] is False
got = sorted((e["kind"], e["paths"][0]) for e in d["errors"])
want = [("db_integrity_check_failed", "db/broken.sqlite"),
        ("json_invalid", "cfg/bad.json"), ("json_invalid", "cfg/trailing.json")]
assert got == want, got
assert d["checked"]["databases"] == 2 and d["checked"]["json_files"] == 3, d["checked"]
PY

# A clean snapshot (the damaged files left out) is valid, also with --read-data.
rm "$WORK/src/db/broken.sqlite" "$WORK/src/cfg/bad.json" "$WORK/src/cfg/trailing.json"
GOOD=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
expect_rc 0 "$STAMP" --store "$S" validate "$GOOD"
grep -q "is valid" "$WORK/out" || fail "validate does not say valid"
expect_rc 0 "$STAMP" --store "$S" validate --read-data "$GOOD"
expect_rc 0 "$STAMP" --store "$S" verify --read-data
"$STAMP" --store "$S" snapshot --no-validate --json "$WORK/src" >"$WORK/rec2.json" 2>/dev/null
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["validation"]["status"] == "skipped"' \
        "$WORK/rec2.json"

# Damage in the pack holding blob: flipped byte (found by --read-data only),
# then truncation, then the pack missing. Each names blob.
cp -a "$S" "$WORK/pristine"
# The pack holding the middle of blob (random, so stored as it is), and
# where: not the largest pack, which may hold only part of blob (blob's
# chunks can be split over two packs, in the order the workers finished
# them), nor the middle of a pack, which may hold app.db's chunks instead
# (validate reads those, and would find the damage without --read-data).
blobspot() {
        python3 - "$WORK/src/blob" "$S"/packs/*/*.pack <<'PY'
import sys
needle = open(sys.argv[1], "rb").read()[1500000:1500064]
spots = [(p, open(p, "rb").read().find(needle)) for p in sys.argv[2:]]
spots = [(p, i) for p, i in spots if i >= 0]
assert len(spots) == 1, "blob's bytes are not stored once as they are: %r" % spots
print(spots[0][0], spots[0][1])
PY
}
blobpack() { blobspot | cut -d' ' -f1; }
read -r P AT < <(blobspot)
python3 - "$P" "$AT" <<'PY'
import sys
pack, at = sys.argv[1], int(sys.argv[2]) + 10
with open(pack, "r+b") as f:
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 0xff]))
PY
expect_rc 0 "$STAMP" --store "$S" validate "$GOOD"
expect_rc 7 "$STAMP" --store "$S" --json validate --read-data "$GOOD"
python3 - "$WORK/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
kinds = {(e["kind"], e["paths"][0]) for e in d["errors"]}
assert ("chunk_hash_mismatch", "blob") in kinds, kinds
PY
for deep in --read-data ""; do
        # Without --read-data the pack's checksum finds it, and that pack's
        # objects are re-hashed: the damage is traced all the same.
        expect_rc 7 "$STAMP" --store "$S" --json verify $deep
        python3 - "$WORK/out" "$GOOD" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is False
assert sys.argv[2] in d["damaged_snapshots"], d["damaged_snapshots"]
kinds = {e["kind"] for e in d["errors"]}
assert "pack_corrupt" in kinds and "chunk_hash_mismatch" in kinds, kinds
assert any(e["kind"] == "chunk_hash_mismatch" and e["paths"] == ["blob"] for e in d["errors"])
PY
done
# A restore of it passes the structural check, then stops at blob (5): the
# message says the snapshot is damaged and offers the rollback, not "run
# the same command again", which would fail the same way.
mkdir "$WORK/tgt" # an existing TARGET gets a pre-restore snapshot
expect_rc 5 "$STAMP" --store "$S" restore "$GOOD" "$WORK/tgt" --confirm-service-stopped
grep -q "snapshot $GOOD is damaged" "$WORK/err" || { cat "$WORK/err"; fail "restore: damage not said"; }
grep -q "roll back with: stamp restore" "$WORK/err" || fail "restore: no rollback offered"
! grep -q "run the same command again" "$WORK/err" || fail "restore: 'run again' for damaged data"
# A --path that is not there: exit 3 before anything is made or snapshotted.
N=$("$STAMP" --store "$S" list --short | wc -l)
expect_rc 3 "$STAMP" --store "$S" restore "$GOOD" "$WORK/tgt2" --confirm-service-stopped --path nope
expect_err "is not in snapshot"
[ ! -e "$WORK/tgt2" ] || fail "restore --path nope created TARGET"
[ "$("$STAMP" --store "$S" list --short | wc -l)" = "$N" ] || fail "restore --path nope took a snapshot"

rm -rf "$S" && cp -a "$WORK/pristine" "$S"
read -r P AT < <(blobspot)
truncate -s "$AT" "$P" # in the middle of blob's chunks
expect_rc 7 "$STAMP" --store "$S" --json validate "$GOOD"
grep -Eq '"kind": "chunk(list)?_missing", "stamp": "[0-9TZ]*", "paths": \["blob"\]' "$WORK/out" ||
        { cat "$WORK/out"; fail "truncated pack not reported for blob"; }
grep -q "truncated pack" "$WORK/out" || fail "truncation not named"
expect_rc 7 "$STAMP" --store "$S" verify
grep -q "pack_corrupt" "$WORK/out" || fail "verify does not report the truncated pack"
grep -q "^damaged snapshots:.*$GOOD" "$WORK/out" || fail "verify does not list the damaged snapshot"

# Its tail zeroed, trailer included (no truncation): the records before the
# damage are walked, and the objects past it still count as damaged.
rm -rf "$S" && cp -a "$WORK/pristine" "$S"
read -r P AT < <(blobspot)
python3 - "$P" "$AT" <<'PY'
import os, sys
n, at = os.path.getsize(sys.argv[1]), int(sys.argv[2])
with open(sys.argv[1], "r+b") as f:
    f.seek(at)
    f.write(b"\0" * (n - at))
PY
expect_rc 7 "$STAMP" --store "$S" verify
grep -q "^damaged snapshots:.*$GOOD" "$WORK/out" || { cat "$WORK/out"; fail "verify: a zeroed tail not traced"; }

rm -rf "$S" && cp -a "$WORK/pristine" "$S"
P=$(blobpack)
rm "$P"
expect_rc 7 "$STAMP" --store "$S" validate "$GOOD"
grep -Eq "chunk(list)?_missing .*blob: .*missing pack" "$WORK/out" || { cat "$WORK/out"; fail "missing pack"; }
expect_rc 7 "$STAMP" --store "$S" verify
grep -q "pack_missing" "$WORK/out" || fail "verify does not report the missing pack"

# A record whose root tree is not in the store: damage (5), not "no such
# file" (3), for cat, stats, gc and restore --path; gc's advice goes past
# reindex, and names no count of missing data chunks it did not count.
rm -rf "$S" && cp -a "$WORK/pristine" "$S"
sed -i 's/"root":\t"[0-9a-f]*"/"root":\t"00112233445566778899aabbccddeeff"/' "$S/snapshots/$GOOD.json"
grep -q 00112233445566778899aabbccddeeff "$S/snapshots/$GOOD.json" || fail "record not forged"
expect_rc 5 "$STAMP" --store "$S" cat "$GOOD" blob
expect_err "data is corrupt (a directory on its path is damaged or missing"
expect_rc 5 "$STAMP" --store "$S" stats
expect_err "snapshot '$GOOD' is damaged"
expect_rc 5 "$STAMP" --store "$S" gc
expect_err "'stamp forget' removes them"
! grep -q "missing)" "$WORK/err" || fail "gc: a count of missing chunks for a missing tree"
expect_rc 5 "$STAMP" --store "$S" restore "$GOOD" "$WORK/tgt3" --confirm-service-stopped --path blob
expect_err "data is corrupt; TARGET was not changed"

# A forged tree with an unsafe name is invalid, not a crash.
rm -rf "$S" && cp -a "$WORK/pristine" "$S"
"$CRAFT" "$S" blob b/ob >"$WORK/forged" || fail "craft-tree failed"
expect_rc 7 "$STAMP" --store "$S" validate "$(cat "$WORK/forged")"
grep -q "tree_corrupt" "$WORK/out" || fail "forged tree not reported"

# Usage and lookups.
expect_rc 3 "$STAMP" --store "$S" validate 20200101T000000Z
expect_err "does not exist"
expect_rc 2 "$STAMP" --store "$S" validate
expect_rc 3 "$STAMP" --store "$WORK/nowhere" verify
echo "validate ok"
