#!/bin/bash
# getxattr through the mount of a name the file does not hold: "not
# supported" for a security.* or system.* name that no snapshot of the
# store holds (so that `ls -l` stops asking for security.selinux and
# system.posix_acl_access of every file), "no such attribute" otherwise,
# and for every name while some record does not list its names (older
# records). A snapshot taken while mounted that holds the name turns the
# answer within a second; with allow_other the kernel's own ACL checks
# still pass.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
need_fuse

S="$WORK/store"
MNT="$WORK/mnt"
mkdir "$MNT"
chmod 755 "$WORK"
mkdir -p "$WORK/src/d"
for i in $(seq 200); do echo "$i" >"$WORK/src/d/f$i"; done
setfattr -n user.color -v blue "$WORK/src/d/f1"
setfattr -n user.a -v 1 "$WORK/src/d" # a directory's names count too
echo grp >"$WORK/src/grp" && chgrp nogroup "$WORK/src/grp" && chmod 640 "$WORK/src/grp"
"$STAMP" init "$S" >/dev/null
A=$("$STAMP" --store "$S" -q snapshot "$WORK/src")

# The record lists the names, sorted; show prints them.
"$STAMP" --store "$S" show "$A" | grep -qx "xattrs:      user.a, user.color" ||
        { "$STAMP" --store "$S" show "$A" >&2; fail "show does not list the xattr names"; }
"$STAMP" --store "$S" show --json "$A" |
        python3 -c 'import json, sys; n = json.load(sys.stdin)["xattr_names"]; assert n == ["user.a", "user.color"], n' ||
        fail "the record's xattr_names"

# set_names RECORD JSON: the record's xattr_names made JSON ("absent": none).
set_names() {
        python3 - "$1" "$2" <<'PY'
import json, os, sys
p, names = sys.argv[1:]
with open(p) as f:
    r = json.load(f)
if names == "absent":
    del r["xattr_names"]
else:
    r["xattr_names"] = json.loads(names)
with open(p + ".tmp", "w") as f:
    json.dump(r, f)
os.rename(p + ".tmp", p)
PY
}
# err NAME FILE: getfattr's reason when NAME cannot be read.
err() { getfattr --absolute-names -n "$1" "$2" 2>&1 >/dev/null | sed 's/.*: //'; }
# requests CMD...: how many GETXATTR requests a debug mount of the store
# gets while CMD runs (MNT is mounted with -d, logging to $WORK/debug).
requests() {
        local before
        before=$(grep -c "opcode: GETXATTR" "$WORK/debug" || true)
        "$@" >/dev/null
        echo $(($(grep -c "opcode: GETXATTR" "$WORK/debug" || true) - before))
}
mount_debug() {
        "$STAMPFS" -f -d "$@" "$S" "$MNT" 2>"$WORK/debug" &
        for _ in $(seq 50); do [ -e "$MNT/latest" ] && return; sleep 0.1; done
        fail "the debug mount did not come up"
}
unmount() {
        fusermount3 -u "$MNT"
        wait
}

mount_debug
f="$MNT/$A/d/f2"
[ "$(err security.selinux "$f")" = "Operation not supported" ] || fail "security.selinux: $(err security.selinux "$f")"
[ "$(err system.posix_acl_access "$f")" = "Operation not supported" ] ||
        fail "system.posix_acl_access: $(err system.posix_acl_access "$f")"
[ "$(err security.selinux "$MNT/$A")" = "Operation not supported" ] || fail "security.selinux of the stamp"
[ "$(err security.selinux "$MNT")" = "Operation not supported" ] || fail "security.selinux of the root"
# Names of other namespaces, and names some entry holds: "no such attribute".
[ "$(err user.nothere "$f")" = "No such attribute" ] || fail "user.nothere: $(err user.nothere "$f")"
[ "$(err trusted.nothere "$f")" = "No such attribute" ] || fail "trusted.nothere: $(err trusted.nothere "$f")"
[ "$(err user.color "$f")" = "No such attribute" ] || fail "user.color of f2: $(err user.color "$f")"
[ "$(getfattr --absolute-names --only-values -n user.color "$MNT/$A/d/f1")" = blue ] || fail "user.color of f1"
# ls -l of 200 files: a few requests, not two a file.
n=$(requests ls -l "$MNT/$A/d")
[ "$n" -le 4 ] || fail "ls -l of 200 files sent $n GETXATTR requests"
[ "$(ls -l "$MNT/$A/d" | wc -l)" = 201 ] || fail "ls -l does not list 200 files"
# What copies out ACLs and xattrs takes "not supported" as "none": no
# error, no warning, the same tree.
rsync -aHAX "$MNT/$A/" "$WORK/rsync/" 2>"$WORK/err" || { cat "$WORK/err" >&2; fail "rsync -aHAX from the mount"; }
cp -a "$MNT/$A" "$WORK/cp" 2>"$WORK/err" || { cat "$WORK/err" >&2; fail "cp -a from the mount"; }
tar --acls --xattrs --selinux -cf "$WORK/t.tar" -C "$MNT/$A" . 2>"$WORK/err" &&
        [ ! -s "$WORK/err" ] || { cat "$WORK/err" >&2; fail "tar --acls --xattrs --selinux from the mount"; }
getfacl -p "$MNT/$A/grp" 2>"$WORK/err" | grep -qx "group::r--" || { cat "$WORK/err" >&2; fail "getfacl"; }
for t in rsync cp; do
        diff -r "$WORK/src" "$WORK/$t" || fail "$t copy differs from the source"
        [ "$(getfattr --absolute-names --only-values -n user.color "$WORK/$t/d/f1")" = blue ] ||
                fail "$t lost user.color"
done

# A snapshot taken while mounted that holds security.test: the mount
# answers "no such attribute" for it within a second or so, in every stamp.
[ "$(err security.test "$f")" = "Operation not supported" ] || fail "security.test before"
setfattr -n security.test -v 1 "$WORK/src/d/f3"
B=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
for _ in $(seq 40); do
        [ "$(err security.test "$f")" = "No such attribute" ] && break
        sleep 0.1
done
[ "$(err security.test "$f")" = "No such attribute" ] || fail "security.test after a snapshot holds it"
[ "$(getfattr --absolute-names --only-values -n security.test "$MNT/$B/d/f3")" = 1 ] || fail "security.test of f3"
[ "$(err security.selinux "$f")" = "Operation not supported" ] || fail "security.selinux after B"
# ... and back once that snapshot is forgotten.
"$STAMP" --store "$S" -q forget "$B"
for _ in $(seq 40); do
        [ "$(err security.test "$f")" = "Operation not supported" ] && break
        sleep 0.1
done
[ "$(err security.test "$f")" = "Operation not supported" ] || fail "security.test after B was forgotten"
# A snapshot's names count as soon as the mount looks the stamp up, not a
# second later: a file of it that lacks a name a sibling holds is never
# answered "not supported" (ls would then hide the sibling's label).
setfattr -n security.other -v 1 "$WORK/src/d/f3"
B=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
[ "$(err security.other "$MNT/$B/d/f2")" = "No such attribute" ] || fail "security.other of a new stamp, at once"
setfattr -x security.other "$WORK/src/d/f3"
"$STAMP" --store "$S" -q forget "$B"
# A stamp forgotten and taken again (stamp copy brings a stamp back by
# name) is another snapshot: its new names count once it is looked up
# again. Here T's record is replaced by one naming another tree that holds
# security.again, the way a copy would write it.
setfattr -n security.again -v 1 "$WORK/src/d/f3"
mkdir "$WORK/empty-src"
T=$("$STAMP" --store "$S" -q snapshot "$WORK/empty-src")
U=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
ls "$MNT/$T" >/dev/null
[ "$(err security.again "$MNT/$T")" = "No such attribute" ] || fail "security.again while U holds it"
python3 - "$S/snapshots" "$T" "$U" <<'PY'
import json, os, sys
d, t, u = sys.argv[1:]
with open(os.path.join(d, u + ".json")) as f:
    r = json.load(f)
r["stamp"] = t
with open(os.path.join(d, t + ".json.tmp"), "w") as f:
    json.dump(r, f)
os.rename(os.path.join(d, t + ".json.tmp"), os.path.join(d, t + ".json"))
PY
"$STAMP" --store "$S" -q forget "$U"
setfattr -x security.again "$WORK/src/d/f3"
sleep 1.5 # the kernel forgets the stamps it looked up (1 s), and the mount checks its list
[ "$(getfattr --absolute-names --only-values -n security.again "$MNT/$T/d/f3")" = 1 ] ||
        fail "T taken again: its tree is not the new one"
[ "$(err security.again "$MNT/$T/d/f2")" = "No such attribute" ] || fail "T taken again: its names are the old ones"
"$STAMP" --store "$S" -q forget "$T"
unmount

# A record the mount cannot read (here: mode 000, the mount without
# CAP_DAC_OVERRIDE) leaves the names unknown, so answers are "no such
# attribute"; it is read again about once a second, not at every request.
X=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
chmod 000 "$S/snapshots/$X.json"
setpriv --bounding-set=-dac_override,-dac_read_search --inh-caps=-dac_override,-dac_read_search \
        "$STAMPFS" -f -d "$S" "$MNT" 2>"$WORK/debug" &
for _ in $(seq 50); do [ -e "$MNT/$A" ] && break; sleep 0.1; done
[ "$(err security.selinux "$f")" = "No such attribute" ] || fail "security.selinux with an unreadable record"
ls -l "$MNT/$A/d" >/dev/null
builds=$(grep -c "xattr names: .* records read: not known (a record failed" "$WORK/debug" || true)
[ "$builds" -ge 1 ] && [ "$builds" -le 3 ] || fail "an unreadable record was read again $builds times"
chmod 600 "$S/snapshots/$X.json"
for _ in $(seq 40); do
        [ "$(err security.selinux "$f")" = "Operation not supported" ] && break
        sleep 0.1
done
[ "$(err security.selinux "$f")" = "Operation not supported" ] || fail "the record, readable again, is not read"
unmount
"$STAMP" --store "$S" -q forget "$X"

# A record that does not list its names (made before they were recorded):
# nothing is known to be absent, so every answer is "no such attribute",
# and ls -l asks of every file, as before.
C=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
set_names "$S/snapshots/$C.json" absent
"$STAMP" --store "$S" show "$C" | grep -q "^xattrs:" && fail "show prints xattr names a record does not have"
"$STAMP" --store "$S" -q validate "$C" >/dev/null || fail "a record without xattr_names does not validate"
mount_debug
[ "$(err security.selinux "$f")" = "No such attribute" ] || fail "security.selinux with an older record"
[ "$(err system.posix_acl_access "$f")" = "No such attribute" ] || fail "ACL with an older record"
n=$(requests ls -l "$MNT/$A/d")
[ "$n" -ge 200 ] || fail "ls -l with an older record sent only $n GETXATTR requests"
unmount
"$STAMP" --store "$S" -q forget "$C"

# More than 256 names: the record lists none (not known), as an older one.
mkdir "$WORK/many"
python3 - "$WORK/many" <<'PY'
import os, sys
for i in range(257):
    p = os.path.join(sys.argv[1], "f%03d" % i)
    open(p, "w").close()
    os.setxattr(p, "user.n%03d" % i, b"")
PY
"$STAMP" init "$WORK/store2" >/dev/null
M=$("$STAMP" --store "$WORK/store2" -q snapshot "$WORK/many")
"$STAMP" --store "$WORK/store2" show --json "$M" | grep -q xattr_names && fail "257 names listed"
rm "$WORK/many/f256"
M=$("$STAMP" --store "$WORK/store2" -q snapshot "$WORK/many")
[ "$("$STAMP" --store "$WORK/store2" show --json "$M" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["xattr_names"]))')" = 256 ] ||
        fail "256 names are not listed"

# Damaged xattr_names make the record damaged, like any other field.
D=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
cp "$S/snapshots/$D.json" "$WORK/good.json"
for bad in '["user.b", "user.a"]' '["user.a", "user.a"]' '[""]' '"user.a"' '[1]'; do
        set_names "$S/snapshots/$D.json" "$bad"
        expect_rc 5 "$STAMP" --store "$S" show "$D"
        expect_err "record unreadable: data is corrupt"
done
cp "$WORK/good.json" "$S/snapshots/$D.json"
"$STAMP" --store "$S" -q validate "$D" || fail "a good record does not validate"
# Names that parse but are not those the files hold (the mount trusts
# them): validate says so.
for names in '["user.a"]' '["user.a", "user.color", "user.extra"]'; do
        set_names "$S/snapshots/$D.json" "$names"
        expect_rc 7 "$STAMP" --store "$S" validate "$D"
        grep -q "xattr_names do not match" "$WORK/err" "$WORK/out" ||
                { cat "$WORK/err" "$WORK/out" >&2; fail "validate does not check xattr_names ($names)"; }
done
cp "$WORK/good.json" "$S/snapshots/$D.json"
"$STAMP" --store "$S" -q forget "$D"

# allow_other: the kernel checks POSIX ACLs itself, and a file with group
# bits makes it ask for system.posix_acl_access. That must stay "no such
# attribute", or the check fails: nobody in group nogroup reads grp.
"$STAMPFS" "$S" "$MNT" -o allow_other
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
[ "$(as_nobody cat "$MNT/$A/grp")" = grp ] || fail "nobody in the file's group cannot read it with allow_other"
[ "$(err system.posix_acl_access "$MNT/$A/grp")" = "No such attribute" ] || fail "ACL with allow_other"
[ "$(err security.selinux "$MNT/$A/grp")" = "Operation not supported" ] ||
        fail "security.selinux with allow_other"
fusermount3 -u "$MNT"
echo "mount xattrs ok"
