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
# list --json stays one valid document, the damaged record in it (it sorts
# first: the comma before the next one once made the array invalid).
expect_rc 5 "$STAMP" --store "$S" list --json
python3 - "$WORK/out" "$ST2" <<'PY' || { cat "$WORK/out" >&2; fail "list --json with a damaged record"; }
import json, sys
d = json.load(open(sys.argv[1]))
assert d[0] == {"stamp": "20200101T000000Z", "error": "data is corrupt"}, d[0]
assert d[-1]["stamp"] == sys.argv[2] and "created" in d[-1], d
PY
# The stored chunk of zeros damaged (a store of small chunks, so that a
# snapshot compares what it dedups against): the next snapshot of a sparse
# file fails on the store's damage, as with any chunk; it does not store
# the file empty as if the source were unreadable.
mkdir "$WORK/z1" "$WORK/z2"
head -c 65536 /dev/zero >"$WORK/z1/zeros"
Z="$WORK/zstore"
"$STAMP" init --chunk-min 256 --chunk-avg 1024 --chunk-max 4096 "$Z" >/dev/null
"$STAMP" --store "$Z" -q snapshot "$WORK/z1" >/dev/null
zpack=$(ls "$Z"/packs/*/*.pack)
python3 - "$zpack" <<'PY'
import struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
index_off, count = struct.unpack_from("<QI", b, len(b) - 40)
for i in range(count):                    # the one data chunk: the zeros
    e = b[index_off + 40 * i:index_off + 40 * i + 40]
    if e[16] == 1:
        stored, off = struct.unpack_from("<I", e, 24)[0], struct.unpack_from("<Q", e, 32)[0]
        b[off + 36 + stored - 1] ^= 0xFF
open(p, "wb").write(b)
PY
dd if=/dev/urandom of="$WORK/z2/sparse" bs=4096 count=4 seek=100 status=none
truncate -s 1M "$WORK/z2/sparse"
before=$(ls "$Z/snapshots" | wc -l)
expect_rc 5 "$STAMP" --store "$Z" snapshot "$WORK/z2"
expect_err "snapshot failed, nothing was committed: data is corrupt"
[ "$(ls "$Z/snapshots" | wc -l)" = "$before" ] || fail "a snapshot over a damaged chunk of zeros was committed"

# stamp cat into a file stops at the damage where it does into a pipe.
head -c 3000000 /dev/urandom >"$WORK/z1/big"
"$STAMP" init --chunk-min 256 --chunk-avg 1024 --chunk-max 4096 "$WORK/bstore" >/dev/null
BST=$("$STAMP" --store "$WORK/bstore" -q snapshot "$WORK/z1")
flip_byte "$(ls "$WORK"/bstore/packs/*/*.pack)" 0.6
rc_pipe=0 rc_file=0
"$STAMP" --store "$WORK/bstore" cat "$BST" big 2>"$WORK/err.pipe" | cat >"$WORK/out.pipe" || rc_pipe=$?
"$STAMP" --store "$WORK/bstore" cat "$BST" big >"$WORK/out.file" 2>"$WORK/err.file" || rc_file=$?
cmp -s "$WORK/out.pipe" "$WORK/out.file" && cmp -s "$WORK/err.pipe" "$WORK/err.file" ||
        fail "stamp cat of a damaged file: into a file $(stat -c %s "$WORK/out.file") bytes ($(cat "$WORK/err.file")), into a pipe $(stat -c %s "$WORK/out.pipe") ($(cat "$WORK/err.pipe"))"
grep -q "data is corrupt at offset" "$WORK/err.file" || fail "stamp cat: no damage reported"
echo "corrupt ok"
