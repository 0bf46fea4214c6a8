#!/bin/bash
# stamp copy over a real OpenSSH: an sshd of the test's own on loopback (its
# own host key, config and authorized_keys; the system's sshd is not
# touched), reached by ssh://USER@127.0.0.1:PORT/PATH through `ssh -F`.
# Checks what the stand-in transport of test-copy.sh cannot: ssh's own
# argument and quoting rules (a path with spaces and quotes), a key limited
# to `command="stamp serve ...",restrict`, the far end's errors shown by the
# client, ssh's own failures (refused connection, unknown host key) as one
# clear line each, a client killed mid-copy leaving no `stamp serve` behind
# and resuming, and an IPv6 literal in brackets.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"

SSHD=/usr/sbin/sshd
if [ "$(id -u)" != 0 ]; then
        # sshd logs a user in only when it runs as root.
        echo "not root: skipped"
        exit 77
fi
[ -x "$SSHD" ] || fail "no $SSHD (contrib/install-deps.sh installs openssh-server)"
command -v ssh >/dev/null || fail "no ssh (contrib/install-deps.sh installs openssh-client)"

D="$WORK/ssh"
mkdir -p "$D" /run/sshd
chmod 700 "$D"
ssh-keygen -q -t ed25519 -N '' -f "$D/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$D/id_copy"
ssh-keygen -q -t ed25519 -N '' -f "$D/id_forced"
ssh-keygen -q -t ed25519 -N '' -f "$D/id_unknown"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
USER_NAME=$(id -un)

S="$WORK/src-store"
FORCED="$WORK/forced store"
"$STAMP" init --pack-size 1 "$S" >/dev/null
"$STAMP" init --like "$S" "$FORCED" >/dev/null
export STAMP_STORE="$S"
make_tree "$WORK/data" 1 40
A=$(snap "$S" "$WORK/data")
sleep 1
mutate_tree "$WORK/data" 2
B=$(snap "$S" "$WORK/data")

{
        cat "$D/id_copy.pub"
        echo "command=\"$STAMP serve '$FORCED'\",restrict $(cat "$D/id_forced.pub")"
} >"$D/authorized_keys"
listen_v6=
ip -6 addr show dev lo 2>/dev/null | grep -q "inet6 ::1/" && listen_v6="ListenAddress [::1]:$PORT"
cat >"$D/sshd_config" <<EOF
ListenAddress 127.0.0.1:$PORT
$listen_v6
HostKey $D/host_key
PidFile $D/sshd.pid
AuthorizedKeysFile $D/authorized_keys
AllowUsers $USER_NAME
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AcceptEnv ASAN_OPTIONS UBSAN_OPTIONS
LogLevel VERBOSE
EOF
"$SSHD" -t -f "$D/sshd_config" || fail "sshd rejects the test's config"
"$SSHD" -D -e -f "$D/sshd_config" 2>"$D/sshd.log" &
SSHD_PID=$!
at_exit "kill $SSHD_PID"

# Clients: stamptest (copy key), stampforced (the restricted key), both
# trusting only the test's host key; stampnokey trusts no host key.
echo "stamptest $(cat "$D/host_key.pub")" >"$D/known_hosts"
# ssh takes each setting from the first block that sets it: hosts first.
cat >"$D/ssh_config" <<EOF
Host stamptest
        HostName 127.0.0.1
        Port $PORT
        IdentityFile $D/id_copy
Host stampforced
        HostName 127.0.0.1
        Port $PORT
        IdentityFile $D/id_forced
Host stampnokey
        HostName 127.0.0.1
        Port $PORT
        IdentityFile $D/id_copy
        HostKeyAlias nosuchalias
Host stampunknown
        HostName 127.0.0.1
        Port $PORT
        IdentityFile $D/id_unknown
Host ::1 stampv6
        HostName ::1
        Port $PORT
        IdentityFile $D/id_copy
Host *
        User $USER_NAME
        BatchMode yes
        IdentitiesOnly yes
        UserKnownHostsFile $D/known_hosts
        GlobalKnownHostsFile /dev/null
        StrictHostKeyChecking yes
        HostKeyAlias stamptest
        SendEnv ASAN_OPTIONS UBSAN_OPTIONS
        LogLevel ERROR
EOF
R=(--rsh "ssh -F $D/ssh_config" --remote-stamp "$STAMP")

for _ in $(seq 100); do
        ssh -F "$D/ssh_config" stamptest true 2>/dev/null && break
        kill -0 $SSHD_PID 2>/dev/null || { cat "$D/sshd.log" >&2; fail "sshd did not start"; }
        sleep 0.1
done
ssh -F "$D/ssh_config" stamptest true || { cat "$D/sshd.log" >&2; fail "cannot log in to the test's sshd"; }

# sent_field KEY: a number of the last `copy --json` report.
sent_field() {
        json_field "$WORK/out" "$1"
}

# no_serve_left: no `stamp serve` process outlives its client for long.
no_serve_left() {
        for _ in $(seq 50); do
                pgrep -f -- "$STAMP serve" >/dev/null || return 0
                sleep 0.1
        done
        pgrep -af -- "$STAMP serve" >&2
        fail "$1: a 'stamp serve' outlived its client"
}

# A path with a space and a quote in it: ssh joins the remote command into
# one line run by the remote user's shell, so it must arrive quoted.
DEST="$WORK/dest it's"
expect_rc 3 "$STAMP" copy "${R[@]}" "ssh://stamptest/$DEST"
expect_err "no such store"
[ ! -e "$DEST" ] || fail "a copy without --init created the destination"
expect_rc 0 "$STAMP" copy "${R[@]}" --init --json "ssh://stamptest/$DEST"
[ "$(sent_field copied)" = 2 ] || fail "not 2 snapshots copied over ssh"
[ "$("$STAMP" --store "$DEST" list --short | tr '\n' ' ')" = "$A $B " ] ||
        fail "the destination does not list A B"
check_all "$DEST" "copy over ssh"
expect_rc 0 "$STAMP" copy "${R[@]}" --json "ssh://stamptest/$DEST"
[ "$(sent_field bytes_sent)" = 0 ] && [ "$(sent_field skipped)" = 2 ] ||
        fail "a second copy over ssh sent $(sent_field bytes_sent) bytes"
no_serve_left "after the copies"

# USER@HOST:PORT in the URL, the port handed to ssh as -p.
sleep 1
mutate_tree "$WORK/data" 3
C=$(snap "$S" "$WORK/data")
expect_rc 0 "$STAMP" copy "${R[@]}" --json "ssh://$USER_NAME@stamptest:$PORT/$DEST" "$C"
[ "$(sent_field copied)" = 1 ] || fail "USER@HOST:PORT did not copy $C"
check_all "$DEST" "copy over ssh to USER@HOST:PORT"

# Pruned at the far end by its own rules: the next copy does not send it
# again (the far end lists it as forgotten), unless it is named.
"$STAMP" --store "$DEST" forget "$A" >/dev/null
expect_rc 0 "$STAMP" copy "${R[@]}" --json "ssh://stamptest/$DEST"
[ "$(sent_field copied)" = 0 ] && [ "$(sent_field forgotten)" = 1 ] ||
        fail "a snapshot forgotten at the far end was copied again over ssh"
expect_rc 0 "$STAMP" copy "${R[@]}" "ssh://stamptest/$DEST"
grep -q "^$A: forgotten in the destination" "$WORK/out" ||
        { cat "$WORK/out" >&2; fail "the forgotten snapshot is not reported as such"; }
expect_rc 0 "$STAMP" copy "${R[@]}" --json "ssh://stamptest/$DEST" "$A"
[ "$(sent_field copied)" = 1 ] || fail "a forgotten snapshot named over ssh was not copied"
[ ! -e "$DEST/forgotten/$A" ] || fail "copying $A back left its forgotten mark"

# The far end's refusal, as the far end words it: a locked store.
flock "$DEST/lock" sleep 30 &
LOCKER=$!
at_exit "kill $LOCKER"
sleep 0.3
sleep 1
mutate_tree "$WORK/data" 4
snap "$S" "$WORK/data" >/dev/null # something to send
expect_rc 4 "$STAMP" copy "${R[@]}" "ssh://stamptest/$DEST"
expect_err "is locked by"
kill $LOCKER
wait $LOCKER 2>/dev/null || true
no_serve_left "after a refused copy"

# A key limited to `stamp serve 'FORCED'`: whatever path the client names,
# the copy lands in FORCED; --init is not the client's to give.
expect_rc 0 "$STAMP" copy "${R[@]}" --json "ssh://stampforced/somewhere/else" "$A"
[ "$(sent_field copied)" = 1 ] || fail "the restricted key did not copy $A"
[ ! -e /somewhere ] || fail "the restricted key wrote where the client said"
[ "$("$STAMP" --store "$FORCED" list --short)" = "$A" ] || fail "$A is not in the forced store"
check_all "$FORCED" "copy through a restricted key"
# That key can run nothing else.
out=$(ssh -F "$D/ssh_config" stampforced "touch $WORK/pwned" </dev/null 2>&1) || true
[ ! -e "$WORK/pwned" ] || fail "the restricted key ran another command"
echo "restricted key asked for another command: ${out:-nothing}"

# A client killed -9 halfway through the second snapshot: sshd ends the far
# end, which leaves nothing half-written; the next copy resumes without
# sending again what the first snapshot's commit made durable.
K="$WORK/k-ssh"
"$STAMP" copy --init --dry-run --json "$K" >"$WORK/out"
read -r total first second < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(j["objects_sent"], j["snapshots"][0]["objects"], j["snapshots"][1]["objects"])' "$WORK/out")
[ "$second" -ge 2 ] || fail "the second snapshot has $second objects to send"
kill_at=$((first + second / 2))
rc=0
STAMP_TEST_COPY_KILL_AT=$kill_at "$STAMP" copy "${R[@]}" --init "ssh://stamptest/$K" \
        >/dev/null 2>"$WORK/err" || rc=$?
[ $rc = 137 ] || { cat "$WORK/err" >&2; fail "the copy over ssh was not killed ($rc)"; }
no_serve_left "after kill -9 of the client"
expect_rc 0 "$STAMP" copy "${R[@]}" --json "ssh://stamptest/$K"
resent=$(sent_field objects_sent)
echo "over ssh: $total objects in all, $first in the first snapshot; after a kill at $kill_at, the resume sent $resent"
[ "$resent" -le $((total - first)) ] || fail "the resume over ssh sent again what the first commit made durable"
[ "$(sent_field skipped)" = 1 ] || fail "the first snapshot was not found committed over ssh"
check_all "$K" "copy over ssh after kill -9 and resume"
[ -z "$(ls -A "$K/tmp")" ] || fail "temporary files left in $K/tmp"

# ssh's own failures: exit 6 and one line naming ssh and its status, after
# ssh's own message (which the client does not hide).
expect_rc 6 "$STAMP" copy "${R[@]}" "ssh://stampnokey/$DEST"
grep -q "ended with status 255" "$WORK/err" || { cat "$WORK/err" >&2; fail "an unknown host key is not reported"; }
grep -qi "host key" "$WORK/err" || { cat "$WORK/err" >&2; fail "ssh's own reason is hidden"; }
expect_rc 6 "$STAMP" copy "${R[@]}" "ssh://stampunknown/$DEST"
grep -q "ended with status 255" "$WORK/err" || { cat "$WORK/err" >&2; fail "a refused key is not reported"; }
# No stamp at the far end: the shell there says so, and the client names the fix.
expect_rc 6 "$STAMP" copy --rsh "ssh -F $D/ssh_config" --remote-stamp /nonexistent/stamp \
        "ssh://stamptest/$DEST"
grep -q "ended with status 127 (is stamp installed there" "$WORK/err" ||
        { cat "$WORK/err" >&2; fail "a missing remote stamp is not explained"; }
kill $SSHD_PID
wait $SSHD_PID 2>/dev/null || true
expect_rc 6 "$STAMP" copy "${R[@]}" "ssh://stamptest/$DEST"
grep -q "ended with status 255" "$WORK/err" || { cat "$WORK/err" >&2; fail "a refused connection is not reported"; }
grep -qi "refused" "$WORK/err" || { cat "$WORK/err" >&2; fail "ssh's 'connection refused' is hidden"; }

# An IPv6 literal in brackets: ssh://[::1]:PORT/PATH.
if [ -n "$listen_v6" ]; then
        "$SSHD" -D -e -f "$D/sshd_config" 2>>"$D/sshd.log" &
        SSHD_PID=$!
        at_exit "kill $SSHD_PID"
        for _ in $(seq 100); do
                ssh -F "$D/ssh_config" stampv6 true 2>/dev/null && break
                sleep 0.1
        done
        expect_rc 0 "$STAMP" copy "${R[@]}" --init --json "ssh://$USER_NAME@[::1]:$PORT/$WORK/v6"
        [ "$(sent_field copied)" = 4 ] || fail "not 4 snapshots copied to [::1]"
        check_all "$WORK/v6" "copy over ssh to [::1]"
else
        echo "no ::1 on lo: the IPv6 case was not run"
fi
echo "copy over a real sshd: OK"
