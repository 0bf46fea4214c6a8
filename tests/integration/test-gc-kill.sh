#!/bin/bash
# kill -9 of gc at every named point of its run (STAMP_TEST_CRASH_AT) and at
# random times: every remaining snapshot reads back byte-exact with every
# object present, crashes pile up (some trials start from the previous
# trial's wreck), and the next gc completes and leaves no dead pack, no
# unindexed pack, no gc-pending and nothing in tmp/.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"

S="$WORK/store"
"$STAMP" init --pack-size 1 "$S" >/dev/null
make_tree "$WORK/src" 1 14
snap "$S" "$WORK/src" >/dev/null
sleep 1
mutate_tree "$WORK/src" 2
snap "$S" "$WORK/src" >/dev/null

# Hook points in run order (FORMAT.md, "Crash points"); "random" is a kill
# at a random moment. Those reached more than once are also hit later on.
points=(mark:1 mark:2 plan:1 rewrite-durable:1 rewrite-relocated:1 rewrite-durable:2
        rewrite-relocated:2 rewritten:1 locked:1 pending:1 committed:1 unlink:1 unlink:3
        done:1 random random)
thresholds=(0 10 50 0)
trials=32 # each named point twice, from different wrecks
[ -n "${KILL_TRIALS:-}" ] && trials=$((KILL_TRIALS * 2))
killed=0 completed=0 random_kills=0
declare -A hit=()

for t in $(seq 1 "$trials"); do
        # New garbage for this trial: a new snapshot, the oldest forgotten.
        mutate_tree "$WORK/src" $((100 + t))
        snap "$S" "$WORK/src" >/dev/null
        mapfile -t stamps < <("$STAMP" --store "$S" list --short)
        if [ "${#stamps[@]}" -gt 2 ]; then
                "$STAMP" --store "$S" -q forget "${stamps[0]}"
                rm -rf "$WORK/copies/${stamps[0]}"
        fi

        point=${points[$(( (t - 1) % ${#points[@]} ))]}
        mu=${thresholds[$((t % ${#thresholds[@]}))]}
        rc=0
        if [ "$point" = random ]; then
                # gc of this store takes some tens of milliseconds.
                timeout --foreground -s KILL "$(printf '0.%03d' $((RANDOM % 80 + 1)))" \
                        "$STAMP" --store "$S" -q gc --max-unused "$mu" >/dev/null 2>&1 || rc=$?
                [ "$rc" = 137 ] && random_kills=$((random_kills + 1))
        else
                # Through an inner shell, whose "Killed" report goes to gc.err.
                STAMP_TEST_CRASH_AT=$point bash -c '"$@"; exit $?' gc "$STAMP" --store "$S" -q gc \
                        --max-unused "$mu" >/dev/null 2>"$WORK/gc.err" || rc=$?
                if [ "$rc" = 137 ]; then
                        killed=$((killed + 1))
                        hit[$point]=1
                        # (No file when the commit removes no pack.)
                        case $point in pending:* | committed:* | unlink:*)
                                [ ! -e "$S/gc-pending" ] || [ "$(tail -n 1 "$S/gc-pending")" = end ] ||
                                        fail "trial $t: gc-pending is not complete after a kill at $point"
                        esac
                elif [ "$rc" != 0 ]; then
                        cat "$WORK/gc.err" >&2
                        fail "trial $t: gc exited $rc before its kill point $point"
                fi
        fi
        [ "$rc" = 0 ] && completed=$((completed + 1))
        check_all "$S" "trial $t (killed at $point, exit $rc)"

        # Two trials in three leave the wreck for the next one.
        if [ $((t % 3)) = 0 ]; then
                "$STAMP" --store "$S" -q gc --max-unused "$mu" ||
                        fail "trial $t: the gc after a kill at $point failed"
                check_all "$S" "trial $t, after the next gc"
                check_clean "$S" "trial $t, after the next gc"
        fi
done

"$STAMP" --store "$S" -q gc --max-unused 0 || fail "the final gc failed"
check_all "$S" "final"
check_clean "$S" "final"
[ "$(stats_field "$S" unused_bytes)" = 0 ] || fail "unused bytes after the final gc"
echo "gc kill ok: $trials trials, $killed killed at ${#hit[@]} distinct points" \
        "(${!hit[*]}), $random_kills at random times, $completed completed first"
if [ "$trials" -ge 32 ] && [ "${#hit[@]}" -lt 10 ]; then
        fail "kills reached only ${#hit[@]} distinct points: the trials do not spread over gc's phases"
fi
