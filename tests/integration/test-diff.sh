#!/bin/bash
# stamp diff: every kind of change between two real snapshots, exact human
# and JSON output (hostile names included), identical snapshots, missing
# stamps and damaged trees.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

S="$WORK/store"
SRC="$WORK/src"
"$STAMP" init "$S" >/dev/null

# The first state. Every time is fixed, so that only the changes made on
# purpose show (a directory's mtime moves when its entries change).
python3 - "$SRC" <<'PY'
import os, sys
src = sys.argv[1]
def write(p, data, mode=0o644):
    p = os.path.join(src, p)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, mode)
write("same/s1", b"same 1\n")
write("same/s2", b"same 2\n")
write("removed.txt", b"removed\n")
write("ren-a", b"renamed\n")
write("perm", b"chmod only\n")
write("owner", b"chown only\n")
write("content", b"content one\n")
write("mtime", b"mtime only\n")
write("xattr", b"xattr only\n")
write("dir/f", b"nested\n")
write("t1", b"a file that becomes a directory\n", 0o755)
write("t2/c", b"in a directory that becomes a file\n")
write("gone/sub/deep", b"in a removed directory\n")
os.symlink("target-1", os.path.join(src, "link"))
PY
XATTRS=yes
setfattr -n user.k -v v1 "$SRC/xattr" 2>/dev/null || XATTRS=no
OWNER=yes
[ "$(id -u)" = 0 ] || OWNER=no

# fix_times [NAME]: every mtime (symlinks' own too) to the same second,
# except NAME's, which gets a later one.
fix_times() {
        python3 - "$SRC" "${1:-}" <<'PY'
import os, sys
src, later = sys.argv[1:]
for root, dirs, files in os.walk(src):
    for n in dirs + files:
        t = 1700000500 if n == later else 1700000000
        os.utime(os.path.join(root, n), ns=(t * 10**9,) * 2, follow_symlinks=False)
os.utime(src, ns=(1700000000 * 10**9,) * 2)
PY
}
fix_times
A=$("$STAMP" --store "$S" -q snapshot "$SRC")

# The changes.
rm "$SRC/removed.txt"
mv "$SRC/ren-a" "$SRC/ren-b"
chmod 600 "$SRC/perm"
[ $OWNER = no ] || chown 1234:4321 "$SRC/owner"
printf 'content two\n' >"$SRC/content"                 # same size, other bytes
printf 'nested, now longer\n' >"$SRC/dir/f"
ln -sfn target-2 "$SRC/link"
[ $XATTRS = no ] || setfattr -n user.k -v v2 "$SRC/xattr"
rm "$SRC/t1" && mkdir -m 755 "$SRC/t1" && echo inner >"$SRC/t1/inner"
rm -r "$SRC/t2" && echo file >"$SRC/t2" && chmod 755 "$SRC/t2"
rm -r "$SRC/gone"
mkdir -p "$SRC/newdir/sub/deep" && echo deep >"$SRC/newdir/sub/deep/file"
python3 - "$SRC" <<'PY'
import os, sys
src = os.fsencode(sys.argv[1])
for name in [b"a\nb", b"\xff\x1b[31m", b"back\\slash"]:
    open(os.path.join(src, name), "wb").write(b"odd\n")
PY
fix_times mtime                                        # mtime only
B=$("$STAMP" --store "$S" -q snapshot "$SRC")

cat >"$WORK/want" <<'EOF'
+ a\nb
+ back\\slash
M content  content
M dir/f  content,size
- gone/
- gone/sub/
- gone/sub/deep
M link  target
M mtime  mtime
+ newdir/
+ newdir/sub/
+ newdir/sub/deep/
+ newdir/sub/deep/file
M owner  owner
M perm  mode
- removed.txt
- ren-a
+ ren-b
M t1/  type
+ t1/inner
M t2  type
- t2/c
M xattr  xattrs
+ \xff\x1b[31m
EOF
[ $OWNER = yes ] || sed -i '/^M owner/d' "$WORK/want"
[ $XATTRS = yes ] || sed -i '/^M xattr/d' "$WORK/want"
"$STAMP" --store "$S" -q diff "$A" "$B" >"$WORK/out"
diff -u "$WORK/want" "$WORK/out" || fail "diff output"
"$STAMP" --store "$S" diff "$A" latest >"$WORK/out"
MODIFIED=$(grep -c '^M' "$WORK/want")
[ "$(tail -n 1 "$WORK/out")" = "9 added, 6 removed, $MODIFIED modified" ] ||
        fail "diff summary: $(tail -n 1 "$WORK/out")"

"$STAMP" --store "$S" diff --json "$A" "$B" >"$WORK/out.json"
python3 - "$WORK/out.json" "$A" "$B" $OWNER $XATTRS <<'PY' || fail "diff --json output"
import json, os, sys
path, a, b, owner, xattrs = sys.argv[1:]
got = json.load(open(path))
mod = [("content", ["content"]), ("dir/f", ["content", "size"]), ("link", ["target"]),
       ("mtime", ["mtime"]), ("owner", ["owner"]), ("perm", ["mode"]), ("t1", ["type"]),
       ("t2", ["type"]), ("xattr", ["xattrs"])]
mod = [m for m in mod if (m[0] != "owner" or owner == "yes") and (m[0] != "xattr" or xattrs == "yes")]
want = {
    "a": a, "b": b,
    "added": ["a\nb", "back\\slash", "newdir", "newdir/sub", "newdir/sub/deep",
              "newdir/sub/deep/file", "ren-b", "t1/inner", "\udcff\x1b[31m"],
    "removed": ["gone", "gone/sub", "gone/sub/deep", "removed.txt", "ren-a", "t2/c"],
    "modified": [{"path": p, "changes": c} for p, c in mod],
}
want["counts"] = {k: len(want[k]) for k in ["added", "removed", "modified"]}
if got != want:
    sys.exit("got  %s\nwant %s" % (got, want))
# Names that are not UTF-8 come back byte for byte.
assert os.fsencode(got["added"][-1]) == b"\xff\x1b[31m"
PY

# Identical snapshots: nothing. (The unchanged tree has the same root id.)
C=$("$STAMP" --store "$S" -q snapshot "$SRC")
[ -z "$("$STAMP" --store "$S" -q diff "$B" "$C")" ] || fail "diff of identical trees"
[ -z "$("$STAMP" --store "$S" -q diff "$A" "$A")" ] || fail "diff of a snapshot with itself"
[ "$("$STAMP" --store "$S" diff "$B" "$C")" = "0 added, 0 removed, 0 modified" ] ||
        fail "summary of an empty diff"
"$STAMP" --store "$S" diff --json "$B" "$C" >"$WORK/out.json"
python3 - "$WORK/out.json" <<'PY' || fail "diff --json of identical trees"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["added"] == d["removed"] == d["modified"] == [], d
assert d["counts"] == {"added": 0, "removed": 0, "modified": 0}, d
PY

# Usage errors and missing stamps.
"$STAMP" diff --help | grep -q "^Usage: stamp" || fail "diff --help"
expect_rc 2 "$STAMP" --store "$S" diff "$A"
expect_rc 2 "$STAMP" --store "$S" diff "$A" "$B" "$C"
expect_rc 2 "$STAMP" --store "$S" diff --no-such-option "$A" "$B"
expect_rc 2 "$STAMP" --store "$S" diff "$A" yesterday
expect_err "'yesterday' is not a stamp"
expect_rc 3 "$STAMP" --store "$S" diff "$A" 20200101T000000Z
expect_err "snapshot '20200101T000000Z' does not exist in store"
expect_rc 3 "$STAMP" --store "$WORK/nostore" diff "$A" "$B"

# A record naming a tree the store does not have.
python3 - "$S/snapshots" "$B" <<'PY'
import json, os, sys
d, b = sys.argv[1:]
rec = json.load(open(os.path.join(d, b + ".json")))
rec["stamp"] = "20200101T000000Z"
rec["root"] = "0123456789abcdef0123456789abcdef"
with open(os.path.join(d, "20200101T000000Z.json"), "w") as f:
    json.dump(rec, f)
PY
expect_rc 5 "$STAMP" --store "$S" diff "$A" 20200101T000000Z
expect_err "cannot compare snapshots $A and 20200101T000000Z: the tree of '/' is damaged: data is corrupt"

# A damaged tree in a pack. Empty files have no chunks, so each snapshot's
# pack holds nothing but its root tree.
S2="$WORK/store2"
mkdir "$WORK/src2"
touch "$WORK/src2/e1"
"$STAMP" init "$S2" >/dev/null
X=$("$STAMP" --store "$S2" -q snapshot "$WORK/src2")
touch "$WORK/src2/e2"
Y=$("$STAMP" --store "$S2" -q snapshot "$WORK/src2")
[ "$("$STAMP" --store "$S2" -q diff "$X" "$Y")" = "+ e2" ] || fail "diff before the damage"
for p in "$S2"/packs/*/*.pack; do flip_byte "$p" 0.3; done
expect_rc 5 "$STAMP" --store "$S2" diff "$X" "$Y"
expect_err "the tree of '/' is damaged: data is corrupt"
echo "diff ok"
