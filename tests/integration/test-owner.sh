#!/bin/bash
# A store kept by another user (the account `stamp serve` runs as on a
# copy's host), written by root: everything root's commands create there
# (packs, records, forgotten marks, the index, lock files, drill.log, new
# directories) goes to the store's owner, so that the owner's own
# commands -- a copy arriving, gc, verify, a drill -- still work after
# root ran snapshot, forget, prune, gc, reindex, drill and a copy into it.
# And root's `stamp init` in an empty directory of that user's makes a
# store that user owns.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"

if [ "$(id -u)" != 0 ]; then
        echo "not root: skipped"
        exit 77
fi
U=65534 # nobody, nogroup
as_user() { setpriv --reuid $U --regid $U --clear-groups "$@"; }
chmod 755 "$WORK"

# not_owned DIR WHAT: nothing below DIR belongs to anyone but the user.
not_owned() {
        local bad
        bad=$(find "$1" \( ! -uid $U -o ! -gid $U \) -printf '%u:%g %p\n')
        [ -z "$bad" ] || { echo "$bad" >&2; fail "$2: files the store's owner does not own"; }
}

S="$WORK/store"
make_tree "$WORK/data" 1 8
chmod -R a+rX "$WORK/data"
mkdir "$WORK/kept" "$S"
chown $U:$U "$WORK/kept" "$S"
as_user "$STAMP" init "$S" >/dev/null
A=$(as_user "$STAMP" --store "$S" -q snapshot "$WORK/data")
mkdir -p "$WORK/copies" && cp -a "$WORK/data" "$WORK/copies/$A"

# Root at work in the user's store.
sleep 1
mutate_tree "$WORK/data" 2
B=$(snap "$S" "$WORK/data")
sleep 1
mutate_tree "$WORK/data" 3
C=$(snap "$S" "$WORK/data")
"$STAMP" --store "$S" -q forget "$A"
"$STAMP" --store "$S" -q gc --max-unused 0 >/dev/null
"$STAMP" --store "$S" -q reindex >/dev/null
"$STAMP" --store "$S" -q drill >/dev/null
"$STAMP" --store "$S" -q prune --keep-last 2 >/dev/null
O="$WORK/other"
"$STAMP" init --like "$S" "$O" >/dev/null
sleep 1
mutate_tree "$WORK/data" 4
D=$(snap "$O" "$WORK/data")
"$STAMP" --store "$O" -q copy "$S" "$D"
[ -e "$S/forgotten/$A" ] && [ -e "$S/drill.log" ] && [ -e "$S/gc.lock" ] ||
        fail "the workload did not make the files this test is about"
not_owned "$S" "after root's commands"

# The owner's own commands still work, a copy into the store among them.
sleep 1
mutate_tree "$WORK/data" 5
E=$(as_user "$STAMP" --store "$S" -q snapshot "$WORK/data") ||
        fail "the owner cannot snapshot after root's commands"
cp -a "$WORK/data" "$WORK/copies/$E"
as_user "$STAMP" --store "$S" -q gc --max-unused 0 >/dev/null || fail "the owner cannot gc"
as_user "$STAMP" --store "$S" -q drill >/dev/null || fail "the owner cannot drill"
"$STAMP" --store "$O" -q forget "$D"
sleep 1
mutate_tree "$WORK/data" 6
F=$(snap "$O" "$WORK/data")
chmod -R a+rX "$O"
as_user "$STAMP" --store "$O" -q copy "$S" "$F" || fail "a copy into the store, as its owner, failed"
as_user "$STAMP" --store "$S" -q verify --read-data >/dev/null || fail "the owner's verify failed"
not_owned "$S" "after the owner's commands"
check_all "$S" "the store root wrote in"

# Root's init in an empty directory of the user's.
"$STAMP" init "$WORK/kept" >/dev/null
not_owned "$WORK/kept" "after root's init"
as_user "$STAMP" --store "$WORK/kept" -q snapshot "$WORK/data" >/dev/null ||
        fail "the owner cannot use the store root made in their directory"

# A store of root's own stays root's (nothing is given away).
"$STAMP" --store "$O" -q gc >/dev/null
bad=$(find "$O" ! -uid 0 -printf '%u %p\n')
[ -z "$bad" ] || { echo "$bad" >&2; fail "files of root's own store were given away"; }
echo "stores of another user: OK"
