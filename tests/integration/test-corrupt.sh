#!/bin/bash
# Damaged packs give errors naming the file, never wrong bytes; other files
# still read.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

mkdir "$WORK/src"
head -c 2000000 /dev/urandom >"$WORK/src/a"
S="$WORK/store"
"$STAMP" init "$S" >/dev/null
ST=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
head -c 2000000 /dev/urandom >"$WORK/src/b"
ST2=$("$STAMP" --store "$S" -q snapshot "$WORK/src")

# b's data is in the second pack only: damage that one.
newest=$(ls -t "$S"/packs/*/*.pack | head -1)
flip_byte "$newest" 0.5
expect_rc 5 "$STAMP" --store "$S" cat "$ST2" b
expect_err "'b' in snapshot $ST2: data is corrupt"
[ ! -s "$WORK/out" ] || [ "$(cmp "$WORK/out" "$WORK/src/b" 2>&1 | grep -c differ)" = 0 ] ||
        fail "wrong bytes were written before the error"
"$STAMP" --store "$S" cat "$ST2" a | cmp -s - "$WORK/src/a" || fail "undamaged file unreadable"

# A missing pack.
rm "$newest"
expect_rc 5 "$STAMP" --store "$S" cat "$ST2" b
"$STAMP" --store "$S" cat "$ST" a | cmp -s - "$WORK/src/a" || fail "older snapshot unreadable"

# A malformed record: reported, not a crash.
echo '{"version": 1, "stamp": ' >"$S/snapshots/20200101T000000Z.json"
expect_rc 5 "$STAMP" --store "$S" show 20200101T000000Z
expect_err "record unreadable: data is corrupt"
echo "corrupt ok"
