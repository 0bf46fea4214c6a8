#!/bin/bash
# A generated tree with every file type and hostile names: snapshot it,
# read every file back with `stamp cat`, snapshot it again unchanged.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

python3 "$LIB/gentree.py" "$WORK/src" --seed 7 >/dev/null 2>&1
S="$WORK/store"
"$STAMP" init "$S" >/dev/null

"$STAMP" --store "$S" --json snapshot "$WORK/src" >"$WORK/rec1.json" 2>"$WORK/err1" ||
        { cat "$WORK/err1"; fail "first snapshot failed"; }
STAMP1=$(json_field "$WORK/rec1.json" stamp)
[ "$(json_field "$WORK/rec1.json" error_count)" = 0 ] || fail "errors in first snapshot"
FILES=$(find "$WORK/src" -type f -printf x | wc -c)
[ "$(json_field "$WORK/rec1.json" files)" = "$FILES" ] || fail "file count differs"
cat_compare "$S" "$STAMP1" "$WORK/src"
# Into a file (not a pipe), stamp cat keeps a sparse file's holes (4 KiB
# blocks of zeros are skipped: at most a partial block each side of its 3
# runs of data is written); appended
# (>>) or after other bytes in the file, it writes them as zeros.
for f in sparse/holes sparse/all_hole sparse/data_then_hole; do
        rm -f "$WORK/cat.out"
        "$STAMP" --store "$S" cat "$STAMP1" "$f" >"$WORK/cat.out"
        cmp "$WORK/cat.out" "$WORK/src/$f" || fail "stamp cat $f > file differs"
        [ "$(du -k "$WORK/cat.out" | cut -f1)" -le $(($(du -k "$WORK/src/$f" | cut -f1) + 3 * 2 * 4)) ] ||
                fail "stamp cat $f > file wrote its holes"
done
mkdir "$WORK/z" && truncate -s 1M "$WORK/z/zeros" # all holes, ending in one: only the size is set
ZST=$("$STAMP" --store "$S" -q snapshot "$WORK/z")
rm -f "$WORK/cat.out" && "$STAMP" --store "$S" cat "$ZST" zeros >"$WORK/cat.out"
cmp "$WORK/cat.out" "$WORK/z/zeros" && [ "$(du -k "$WORK/cat.out" | cut -f1)" = 0 ] ||
        fail "stamp cat of a file of holes only: $(du -k "$WORK/cat.out")"
"$STAMP" --store "$S" forget --quiet "$ZST" >/dev/null
echo x >"$WORK/cat.out"
"$STAMP" --store "$S" cat "$STAMP1" sparse/holes >>"$WORK/cat.out"
{ echo x; cat "$WORK/src/sparse/holes"; } | cmp - "$WORK/cat.out" || fail "stamp cat >> file differs"

# Unchanged tree: nothing new, same root tree, distinct stamp.
"$STAMP" --store "$S" --json snapshot "$WORK/src" >"$WORK/rec2.json" 2>/dev/null
STAMP2=$(json_field "$WORK/rec2.json" stamp)
[ "$STAMP1" != "$STAMP2" ] || fail "two snapshots got the same stamp"
[ "$(json_field "$WORK/rec2.json" new_bytes)" = 0 ] || fail "unchanged snapshot added bytes"
[ "$(json_field "$WORK/rec1.json" root)" = "$(json_field "$WORK/rec2.json" root)" ] ||
        fail "unchanged tree got a different root"

# The store is private: nothing readable by others.
[ -z "$(find "$S" -perm /077 | head -1)" ] || fail "store files readable by others"

# list and show agree with the records.
"$STAMP" --store "$S" list --short >"$WORK/list"
printf '%s\n%s\n' "$STAMP1" "$STAMP2" | cmp -s - "$WORK/list" || fail "list output"
"$STAMP" --store "$S" --json list | python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d)==2'
"$STAMP" --store "$S" show latest | grep -q "^stamp: *$STAMP2" || fail "show latest"

# Several sources: one top-level entry each, named by basename.
mkdir -p "$WORK/two/a" "$WORK/two/b"
echo one >"$WORK/two/a/f"
echo two >"$WORK/two/b/f"
ST=$("$STAMP" --store "$S" -q snapshot "$WORK/two/a" "$WORK/two/b")
[ "$("$STAMP" --store "$S" cat "$ST" a/f)" = one ] || fail "multi-source a/f"
[ "$("$STAMP" --store "$S" cat "$ST" b/f)" = two ] || fail "multi-source b/f"
echo "roundtrip ok"
