#!/bin/bash
# SPDX-License-Identifier: MIT
#
# make-copyproto-corpus.sh [BUILDDIR]: regenerates the real-* seeds of
# fuzz-copyproto in tests/fuzz/corpus/copyproto/ from real copy traffic.
#
# It builds stamp in BUILDDIR (default /tmp/fuzzbuild; set up with meson if
# needed), snapshots a tiny tree twice into a source store and runs `stamp
# copy` to ssh://host/DEST through an --rsh stand-in that runs `stamp serve`
# here and records both directions of the connection. A server seed is a
# zero byte and what the client sent; a client seed is the byte 1 + 2 * N
# (N: the ids the client's HAVE asks about, see fuzz-copyproto.c) and what
# the server answered. Sessions (copies of one snapshot each):
#   init        --init: HELLO, LIST, HAVE, PUTs, COMMIT, BYE
#   incremental the second snapshot into the same store (its server seed
#               holds both sessions: the target serves them one after the
#               other into one store)
#   recompress  --init --compression-level 3 --read-data
#   dry-run     --init --dry-run (no PUT, no COMMIT: server seed only)
#   refused     without --init to a missing store: an ERR answer
#   forgotten   d1 again after it forgot the first snapshot: LIST answers
#               it as "-STAMP", nothing is sent (client seed only)
# and two client seeds made from the init session by editing the answer to
# its COMMIT: a snapshot invalid there, an object refused on arrival.
#
# Only files named real-* are replaced. The source store's secret is random,
# so every run gives different bytes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-/tmp/fuzzbuild}
corpus=$here/corpus/copyproto

if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$root"
fi
ninja -C "$build" tools/stamp >/dev/null
stamp=$build/tools/stamp

tmp=$(mktemp -d /tmp/stamp-copyproto.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
src=$tmp/src
store=$tmp/store

mkdir -p "$src/sub"
printf 'hello, world\n' >"$src/hello.txt"
: >"$src/empty"
for i in $(seq 1 20); do echo "line $i of a small text file"; done >"$src/sub/text.txt"
ln -s hello.txt "$src/link"

"$stamp" -q init --pack-size 1 "$store" >/dev/null
"$stamp" -q --store "$store" snapshot "$src" >/dev/null
sleep 1.1 # stamps have a one-second resolution
printf 'changed\n' >>"$src/sub/text.txt"
"$stamp" -q --store "$store" snapshot "$src" >/dev/null
mapfile -t stamps < <("$stamp" --store "$store" list --short)
[ ${#stamps[@]} = 2 ] || { echo "make-copyproto-corpus: expected 2 snapshots" >&2; exit 1; }

# Stands in for ssh: drops "-p PORT" and the host, runs the command here and
# records its stdin in $CAPTURE.in and its stdout in $CAPTURE.out.
cat >"$tmp/rsh" <<'EOF'
#!/bin/sh
[ "$1" = -p ] && shift 2
shift
tee "$CAPTURE.in" | sh -c "$1" | tee "$CAPTURE.out"
EOF
chmod +x "$tmp/rsh"

# capture NAME ARGS...: one `stamp copy` session recorded as $tmp/NAME.{in,out}.
capture() {
        local name=$1
        shift
        CAPTURE=$tmp/$name "$stamp" -q --store "$store" copy --rsh "$tmp/rsh" \
                --remote-stamp "$stamp" "$@" 2>"$tmp/$name.err" || true
}

capture init --init "ssh://host/$tmp/d1" "${stamps[0]}"
capture incremental "ssh://host/$tmp/d1"
"$stamp" -q --store "$tmp/d1" forget "${stamps[0]}"
capture forgotten "ssh://host/$tmp/d1"
capture recompress --init --compression-level 3 --read-data "ssh://host/$tmp/d2" "${stamps[0]}"
capture dry-run --init --dry-run "ssh://host/$tmp/d3" "${stamps[0]}"
capture refused "ssh://host/$tmp/d4"
if [ ! -f "$tmp/d1/snapshots/${stamps[1]}.json" ] || [ ! -f "$tmp/d2/snapshots/${stamps[0]}.json" ] ||
        [ -f "$tmp/d1/snapshots/${stamps[0]}.json" ] || ! grep -q -- "-${stamps[0]}" "$tmp/forgotten.out"; then
        echo "make-copyproto-corpus: a copy failed" >&2
        exit 1
fi

# u32 FILE OFFSET: the little-endian u32 at OFFSET.
u32() {
        od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '
}

# le N BYTES: N as a little-endian integer of BYTES bytes.
le() {
        local i
        for ((i = 0; i < $2; i++)); do
                printf '%b' "\\0$(printf '%03o' $((($1 >> (8 * i)) & 255)))"
        done
}

# answer_at FILE N: the offset of answer N (from 0) in FILE.
answer_at() {
        local off=0 i
        for ((i = 0; i < $2; i++)); do
                off=$((off + 8 + $(u32 "$1" $((off + 4)))))
        done
        echo $off
}

# selector FILE: the client seed's first byte for the answers in FILE: the
# third answer (to HAVE, after HELLO's and LIST's) has one byte per id.
selector() {
        local n
        n=$(u32 "$1" $(($(answer_at "$1" 2) + 4)))
        [ "$n" -le 127 ] || { echo "make-copyproto-corpus: $n ids in a HAVE" >&2; exit 1; }
        le $((1 + 2 * n)) 1
}

mkdir -p "$corpus"
rm -f "$corpus"/real-*
{ printf '\0'; cat "$tmp/init.in"; } >"$corpus/real-server-init"
{ printf '\0'; cat "$tmp/init.in" "$tmp/incremental.in"; } >"$corpus/real-server-incremental"
{ printf '\0'; cat "$tmp/recompress.in"; } >"$corpus/real-server-recompress"
{ printf '\0'; cat "$tmp/dry-run.in"; } >"$corpus/real-server-dry-run"
{ printf '\0'; cat "$tmp/refused.in"; } >"$corpus/real-server-refused"
for s in init incremental recompress forgotten; do
        { selector "$tmp/$s.out"; cat "$tmp/$s.out"; } >"$corpus/real-client-$s"
done
{ printf '\1'; cat "$tmp/refused.out"; } >"$corpus/real-client-refused"

# The init session's answers with the COMMIT answer (the fourth) edited, as
# a server would send them for a snapshot that failed validation there, and
# for an object refused on arrival (ERR: errno, object id, message).
head -c "$(answer_at "$tmp/init.out" 3)" "$tmp/init.out" >"$tmp/before-commit"
problems=$'tree_missing\t/sub\tthe tree object is not in the index\n'
problems+=$'chunk_missing\t/hello.txt\tchunk 1 of 1 is not in the index\n'
{
        selector "$tmp/init.out"
        cat "$tmp/before-commit"
        printf '\x80\0\0\0'; le $((41 + ${#problems})) 4
        printf '\0'; le 4 8; le 512 8; le 6 8; le 1500 8; le 2 8 # valid, counts, µs, problems
        printf '%s' "$problems"
        printf '\x80\0\0\0\0\0\0\0' # BYE's
} >"$corpus/real-client-commit-invalid"
msg="object 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a arrived damaged: it does not decode to its id"
{
        selector "$tmp/init.out"
        cat "$tmp/before-commit"
        printf '\x81\0\0\0'; le $((20 + ${#msg} + 1)) 4
        le 74 4; printf 'ZZZZZZZZZZZZZZZZ'; printf '%s\0' "$msg" # EBADMSG, the id
        printf '\x80\0\0\0\0\0\0\0'
} >"$corpus/real-client-commit-refused"

chmod 0644 "$corpus"/*
ls -l "$corpus"
