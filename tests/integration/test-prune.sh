#!/bin/bash
# stamp prune: exact output on a small store, refusals, usage errors, the
# lock, then thousands of generated stamps against an independent oracle
# (lib/prune_oracle.py) and a real prune checked with list and cat.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

mkdir "$WORK/src"
echo hello >"$WORK/src/f"

# new_store DIR: a store with one real snapshot of src, whose record is
# the template of the synthetic ones.
new_store() {
        "$STAMP" init "$1" >/dev/null
        "$STAMP" --store "$1" -q snapshot "$WORK/src" >/dev/null
}

# records DIR STAMP[:TAG]...: replaces the store's records by copies of
# its one record under these stamps (all naming the same root tree).
records() {
        python3 - "$@" <<'PY'
import json, os, sys
d = os.path.join(sys.argv[1], "snapshots")
(name,) = os.listdir(d)
template = json.load(open(os.path.join(d, name)))
os.unlink(os.path.join(d, name))
for spec in sys.argv[2:]:
    stamp, _, tag = spec.partition(":")
    rec = dict(template, stamp=stamp, tags=[tag] if tag else [])
    rec["created"] = "%s-%s-%sT%s:%s:%s.000000000Z" % (stamp[0:4], stamp[4:6], stamp[6:8],
                                                       stamp[9:11], stamp[11:13], stamp[13:15])
    with open(os.path.join(d, stamp + ".json"), "w") as f:
        json.dump(rec, f)
    os.chmod(os.path.join(d, stamp + ".json"), 0o600)
PY
}

count() {
        "$STAMP" --store "$1" list --short | wc -l
}

S="$WORK/store"
new_store "$S"

# --help documents the rules and points at gc.
"$STAMP" prune --help >"$WORK/help"
for w in "^Usage: stamp" --keep-daily --keep-within --keep-pre-restore --allow-empty "stamp gc" \
        "stamp prune --dry-run --keep-daily 7 --keep-weekly 4 --keep-monthly 6"; do
        grep -q -- "$w" "$WORK/help" || fail "prune --help lacks '$w'"
done

# Usage errors: no rule at all (as restic, refuse to guess), bad values.
expect_rc 2 "$STAMP" --store "$S" prune
grep -q "no keep rule given" "$WORK/err" || fail "no-rule message"
expect_rc 2 "$STAMP" --store "$S" prune --dry-run
expect_rc 2 "$STAMP" --store "$S" prune --keep-pre-restore 5
expect_rc 2 "$STAMP" --store "$S" prune --keep-daily 0
for bad in "--keep-daily abc" "--keep-daily -1" "--keep-last 1x" "--keep-within 5x" \
        "--keep-within 1d1d" "--keep-within" "--keep-daily 7 extra" "--no-such-option"; do
        # shellcheck disable=SC2086
        expect_rc 2 "$STAMP" --store "$S" prune $bad
done
expect_rc 2 "$STAMP" --store "$S" prune --keep-tag ""
grep -q "a tag cannot be empty" "$WORK/err" || fail "empty tag message"
[ "$(count "$S")" = 1 ] || fail "a usage error deleted something"

# Exact decisions and output on six snapshots.
records "$S" 20260101T100000Z 20260101T120000Z 20260102T090000Z:manual \
        20260102T100000Z:pre-restore 20260103T080000Z 20260103T090000Z:pre-restore
RULES=(--keep-daily 2 --keep-tag manual --keep-pre-restore 1)
"$STAMP" --store "$S" prune --dry-run "${RULES[@]}" >"$WORK/out"
cat >"$WORK/want" <<'EOF'
remove 20260101T100000Z
remove 20260101T120000Z
keep   20260102T090000Z  daily,tag
remove 20260102T100000Z
keep   20260103T080000Z  daily
keep   20260103T090000Z  pre-restore
would keep 3 and remove 3 of 6 snapshots (dry run: nothing was deleted)
EOF
diff -u "$WORK/want" "$WORK/out" || fail "prune --dry-run output"
"$STAMP" --store "$S" -q prune -n "${RULES[@]}" >"$WORK/out"
head -n 6 "$WORK/want" | diff -u - "$WORK/out" || fail "prune -q prints a summary"
"$STAMP" --store "$S" prune --dry-run --json "${RULES[@]}" >"$WORK/out.json"
python3 - "$WORK/out.json" <<'PY' || fail "prune --json output"
import json, sys
got = json.load(open(sys.argv[1]))
want = {"dry_run": True, "kept": 3, "removed": 3, "snapshots": [
    {"stamp": "20260101T100000Z", "action": "remove", "reasons": []},
    {"stamp": "20260101T120000Z", "action": "remove", "reasons": []},
    {"stamp": "20260102T090000Z", "action": "keep", "reasons": ["daily", "tag"]},
    {"stamp": "20260102T100000Z", "action": "remove", "reasons": []},
    {"stamp": "20260103T080000Z", "action": "keep", "reasons": ["daily"]},
    {"stamp": "20260103T090000Z", "action": "keep", "reasons": ["pre-restore"]}]}
if got != want:
    sys.exit("got  %s\nwant %s" % (got, want))
PY
[ "$(count "$S")" = 6 ] || fail "a dry run deleted something"

# Refusals: removing every snapshot, or every one but pre-restore ones.
expect_rc 2 "$STAMP" --store "$S" prune --keep-tag no-such-tag
expect_err "would remove all 4 snapshots but the pre-restore ones; nothing was deleted"
expect_rc 2 "$STAMP" --store "$S" prune --keep-tag no-such-tag --keep-pre-restore 0
expect_err "would remove all 6 snapshots; nothing was deleted"
expect_rc 2 "$STAMP" --store "$S" prune --dry-run --keep-tag no-such-tag
[ "$(count "$S")" = 6 ] || fail "a refused prune deleted something"

# The lock: a real prune waits for it and names the holder; a dry run needs none.
python3 - "$S/lock" "$WORK/locked" <<'PY' &
import fcntl, sys, time
f = open(sys.argv[1], "r+")
fcntl.flock(f, fcntl.LOCK_EX)
f.write("pid 4242: test holder\n"); f.flush()
open(sys.argv[2], "w").close()
time.sleep(4)
PY
holder=$!
for _ in $(seq 100); do [ -e "$WORK/locked" ] && break; sleep 0.1; done
[ -e "$WORK/locked" ] || fail "lock holder did not start"
expect_rc 4 "$STAMP" --store "$S" prune --keep-last 1 --lock-timeout 1
expect_err "store '$S' is locked by pid 4242: test holder"
"$STAMP" --store "$S" prune --dry-run --keep-last 1 >/dev/null
wait "$holder"
[ "$(count "$S")" = 6 ] || fail "prune deleted without the lock"

# A real prune: what it removes is gone, what it keeps still reads.
"$STAMP" --store "$S" prune "${RULES[@]}" >"$WORK/out"
head -n 6 "$WORK/want" | diff -u - <(head -n 6 "$WORK/out") || fail "prune output"
grep -q "^kept 3, removed 3 of 6 snapshots; 'stamp gc' reclaims their space$" "$WORK/out" ||
        fail "prune summary"
[ "$("$STAMP" --store "$S" list --short | tr '\n' ' ')" = \
        "20260102T090000Z 20260103T080000Z 20260103T090000Z " ] || fail "list after prune"
[ "$("$STAMP" --store "$S" cat 20260102T090000Z f)" = hello ] || fail "cat after prune"
# --allow-empty: every regular snapshot may go; pre-restore ones keep their rule.
"$STAMP" --store "$S" -q prune --allow-empty --keep-tag no-such-tag >/dev/null
[ "$("$STAMP" --store "$S" list --short)" = 20260103T090000Z ] || fail "prune --allow-empty"
"$STAMP" --store "$S" -q prune --allow-empty --keep-last 1 --keep-pre-restore 0 >/dev/null
[ "$(count "$S")" = 0 ] || fail "prune --allow-empty of everything"
# An empty store: nothing to do.
"$STAMP" --store "$S" prune --keep-last 1 >"$WORK/out"
[ "$(cat "$WORK/out")" = "no snapshots: nothing to do" ] || fail "prune of an empty store"
"$STAMP" --store "$S" prune --json --keep-last 1 >"$WORK/out"
[ "$(cat "$WORK/out")" = '{"dry_run": false, "snapshots": [], "kept": 0, "removed": 0}' ] ||
        fail "prune --json of an empty store: $(cat "$WORK/out")"

# A damaged record: prune cannot know its tags, so it deletes nothing.
S2="$WORK/store2"
new_store "$S2"
records "$S2" 20260101T000000Z 20260102T000000Z 20260103T000000Z
echo '{"version": 1' >"$S2/snapshots/20260102T000000Z.json"
expect_rc 5 "$STAMP" --store "$S2" prune --keep-last 1
expect_err "snapshot '20260102T000000Z': record unreadable (data is corrupt)"
[ "$(count "$S2")" = 3 ] || fail "prune deleted with a damaged record"

# Two years of irregular stamps, many rule combinations, against the oracle.
S3="$WORK/store3"
new_store "$S3"
python3 "$LIB/prune_oracle.py" "$STAMP" "$S3" "${PRUNE_SEED:-20260407}"
echo "prune ok"
