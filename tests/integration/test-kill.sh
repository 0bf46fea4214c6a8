#!/bin/bash
# kill -9 during a snapshot at many points: every earlier snapshot stays
# readable, the next snapshot succeeds, no lock or temporary file survives.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

mkdir -p "$WORK/src/d"
for i in $(seq 1 40); do head -c $((RANDOM * 20)) /dev/urandom >"$WORK/src/d/f$i"; done
head -c 30000000 /dev/urandom >"$WORK/src/big"
S="$WORK/store"
"$STAMP" init "$S" >/dev/null
FIRST=$("$STAMP" --store "$S" -q snapshot "$WORK/src")

trials=${KILL_TRIALS:-12}
for t in $(seq 1 "$trials"); do
        # Change some data so each run writes new packs.
        head -c 3000000 /dev/urandom >"$WORK/src/d/changing"
        "$STAMP" --store "$S" -q snapshot "$WORK/src" >/dev/null 2>&1 &
        pid=$!
        sleep "0.0$((t % 10))$((RANDOM % 10))"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        # Earlier snapshots read back byte-exact (the first one against a copy).
        "$STAMP" --store "$S" cat "$FIRST" big | cmp -s - "$WORK/src/big" ||
                fail "trial $t: first snapshot unreadable after kill"
        # Every listed snapshot has a readable record and root.
        for st in $("$STAMP" --store "$S" list --short); do
                "$STAMP" --store "$S" cat "$st" big >/dev/null || fail "trial $t: $st broken"
        done
done
# The next snapshot succeeds at once (no stale lock) and cleans temporary files.
LAST=$("$STAMP" --store "$S" -q snapshot --lock-timeout 0 "$WORK/src")
cat_compare "$S" "$LAST" "$WORK/src" >/dev/null
[ -z "$(ls -A "$S/tmp")" ] || fail "temporary files left after recovery"
echo "kill ok ($trials trials)"
