#!/bin/bash
# SPDX-License-Identifier: MIT
#
# make-corpus.sh [BUILDDIR]: regenerates the seed corpus of the fuzz targets
# in tests/fuzz/corpus/{pack,tree,record,chunker}/ from a real store.
#
# It builds stamp and fuzz-extract in BUILDDIR (default /tmp/fuzzbuild;
# set up with meson if needed), creates a tiny store (64/128/256-byte
# chunks so that a small file needs a chunk-list object), snapshots a small
# tree (text, empty and random files, a subdirectory, a symlink, a hardlink,
# a fifo, an xattr if setfattr works here) and copies its pack, snapshot
# record and config, and its tree and chunk-list objects (via fuzz-extract).
# Then it writes a few hand-made malformed seeds.
#
# Only files named real-* and bad-* are replaced: other files (for example
# regression inputs added by hand) are kept. The store's secret is random,
# so every run gives different bytes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-/tmp/fuzzbuild}
corpus=$here/corpus

if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$root"
fi
ninja -C "$build" tools/stamp tests/fuzz/fuzz-extract >/dev/null
stamp=$build/tools/stamp
extract=$build/tests/fuzz/fuzz-extract

tmp=$(mktemp -d /tmp/stamp-corpus.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
src=$tmp/src
store=$tmp/store

mkdir -p "$src/sub/deeper"
printf 'hello, world\n' >"$src/hello.txt"
: >"$src/empty"
for i in $(seq 1 60); do echo "line $i of a compressible text file"; done >"$src/sub/text.txt"
# > 32 chunks of ~128 bytes: the file's chunk list becomes a chunk-list object.
head -c 8192 /dev/urandom >"$src/big.bin"
printf 'nested\n' >"$src/sub/deeper/nested.txt"
ln -s hello.txt "$src/link"
ln -s ../../does/not/exist "$src/sub/dangling"
ln "$src/hello.txt" "$src/sub/hardlink"
mkfifo "$src/fifo"
# Device nodes need root, a socket needs python3: skipped when not possible.
mknod "$src/sub/chr" c 1 3 2>/dev/null || true
mknod "$src/sub/blk" b 7 200 2>/dev/null || true
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
        "$src/sub/sock" 2>/dev/null || true
if command -v setfattr >/dev/null &&
        setfattr -n user.fuzz -v 'seed value' "$src/hello.txt" 2>/dev/null; then
        setfattr -n user.another -v 2 "$src/hello.txt" 2>/dev/null || true
        setfattr -n user.empty "$src/sub/text.txt" 2>/dev/null || true
        setfattr -n user.dir -v d "$src/sub" 2>/dev/null || true
else
        echo "make-corpus: no user xattrs here, the seeds have none" >&2
fi

"$stamp" -q init --chunk-min 64 --chunk-avg 128 --chunk-max 256 --pack-size 1 "$store" >/dev/null
"$stamp" -q --store "$store" snapshot -t fuzz -e '*.tmp' "$src" >/dev/null
# A second snapshot (a second record and a small second pack): several
# sources, --one-file-system, a changed file.
sleep 1.1 # stamps have a one-second resolution
printf 'changed\n' >>"$src/sub/deeper/nested.txt"
"$stamp" -q --store "$store" snapshot -x -t a -t b "$src/sub" "$src/hello.txt" >/dev/null

for d in pack tree record chunker; do
        mkdir -p "$corpus/$d"
        rm -f "$corpus/$d"/real-* "$corpus/$d"/bad-*
done

# pack: the real pack(s), and broken copies of the first one.
n=0
for p in "$store"/packs/*/*.pack; do
        n=$((n + 1))
        cp "$p" "$corpus/pack/real-$n.pack"
done
first=$corpus/pack/real-1.pack
size=$(stat -c %s "$first")
: >"$corpus/pack/bad-empty"
head -c 32 "$first" >"$corpus/pack/bad-header-only"
head -c 100 "$first" >"$corpus/pack/bad-truncated-head"
tail -c +33 "$first" >"$corpus/pack/bad-no-header"
head -c $((size - 1)) "$first" >"$corpus/pack/bad-truncated-tail"
{ printf 'STAMPPAX'; tail -c +9 "$first"; } >"$corpus/pack/bad-magic"
# header + an empty index + trailer (index_offset 32, count 0, version 1, zero checksum)
{ head -c 32 "$first"; printf '\x20\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0'; head -c 16 /dev/zero
  printf 'STAMPEND'; } >"$corpus/pack/bad-empty-index"

# tree: every tree and chunk-list object (the target runs both parsers on each).
mkdir "$tmp/objects"
"$extract" "$store" "$tmp/objects" >/dev/null
for f in "$tmp"/objects/*; do
        cp "$f" "$corpus/tree/real-$(basename "$f")"
done
: >"$corpus/tree/bad-empty"
printf 'STRE\x01\0\0\0\0\0\0\0' >"$corpus/tree/real-empty-tree"
printf 'STRE\x02\0\0\0\0\0\0\0' >"$corpus/tree/bad-version"
printf 'STRE\x01\0\0\0\x01\0\0\0' >"$corpus/tree/bad-count"
t=$(ls "$tmp"/objects/tree-* | head -1)
head -c $(($(stat -c %s "$t") - 3)) "$t" >"$corpus/tree/bad-truncated-tree"
l=$(ls "$tmp"/objects/chunklist-* 2>/dev/null | head -1 || true)
if [ -n "$l" ]; then
        head -c 40 "$l" >"$corpus/tree/bad-truncated-chunklist"
fi

# record: the snapshot record and the config, valid and broken.
n=0
for r in "$store"/snapshots/*.json; do
        n=$((n + 1))
        cp "$r" "$corpus/record/real-record-$n.json"
done
rec=$(ls "$store"/snapshots/*.json | head -1)
cp "$store/config" "$corpus/record/real-config.json"
sed -e 's/"error_count":\t0/"error_count":\t2/' \
    -e 's/"errors":\t\[\]/"errors":\t["\/a: Permission denied", "\/b\\u00e9\\n: I\/O error"]/' \
    -e 's/"changed_count":\t0/"changed_count":\t1/' \
    -e 's/"changed_during_snapshot":\t\[\]/"changed_during_snapshot":\t["\/var\/log\/x"]/' \
    "$rec" >"$corpus/record/real-record-errors.json"
: >"$corpus/record/bad-empty"
printf '{}' >"$corpus/record/bad-empty-object"
printf '[1, 2, 3]' >"$corpus/record/bad-array"
head -c 200 "$rec" >"$corpus/record/bad-truncated-record"
sed 's/"version":\t1/"version":\t2/' "$rec" >"$corpus/record/bad-record-version"
sed 's/"version":\t1/"version":\t1,\n\t"version":\t1/' "$store/config" \
        >"$corpus/record/bad-config-duplicate-key"

# chunker: 5 parameter bytes (see fuzz-chunker.c), then the data to cut.
{ printf '\0\0\0\0\0'; head -c 4096 "$src/big.bin"; } >"$corpus/chunker/real-random-default"
{ printf '\x40\x01\x03\x00\x02'; head -c 8192 "$src/big.bin"; } >"$corpus/chunker/real-random-1024"
{ printf '\x00\x00\x00\x00\x00'; cat "$src/sub/text.txt"; } >"$corpus/chunker/real-text"
{ printf '\x10\0\x02\xff\xff'; head -c 3000 /dev/zero; } >"$corpus/chunker/real-zeros"
: >"$corpus/chunker/bad-empty"
printf '\x01\x02\x03' >"$corpus/chunker/bad-short"
{ printf '\xff\xff\x00\x00\x00'; head -c 100 "$src/big.bin"; } >"$corpus/chunker/real-below-min"

chmod 0644 "$corpus"/*/*
du -sb --apparent-size "$corpus"/*
