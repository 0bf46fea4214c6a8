#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run-fuzzers.sh [SECONDS] [BUILDDIR] [TARGET...]
#
# Builds the libFuzzer targets (clang, -Dfuzzing=true, ASan + UBSan) in
# BUILDDIR (default /tmp/stampfs-fuzz; set up if it has no build.ninja) and
# runs each TARGET (default: all of them) for SECONDS (default
# 60) on a copy of tests/fuzz/corpus/TARGET, so the committed corpus is
# never changed. Exits 1 if any target crashed, leaked, timed out or failed
# a check; the inputs that did are left in BUILDDIR/fuzz-work/TARGET/ as
# crash-*, leak-*, timeout-* or oom-*, and the log in .../TARGET.log.
#
# Extra libFuzzer options can be given in $FUZZ_ARGS, e.g.
#   FUZZ_ARGS='-jobs=4 -workers=4' tests/fuzz/run-fuzzers.sh 300
# Reproduce a finding with:  BUILDDIR/tests/fuzz/fuzz-TARGET FILE
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-60}
build=${2:-/tmp/stampfs-fuzz}
shift 2 2>/dev/null || shift $#
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pack tree treebuild record chunker dbcheck copyproto)

case "$seconds" in
''|*[!0-9]*) echo "run-fuzzers: SECONDS must be a number, not '$seconds'" >&2; exit 2 ;;
esac

if [ ! -f "$build/build.ninja" ]; then
        CC=${CC_FUZZ:-clang} meson setup "$build" "$root" -Dfuzzing=true -Dtests=true \
                -Dbuildtype=debugoptimized || exit 1
else
        meson configure "$build" -Dfuzzing=true || exit 1
fi
exes=()
for t in "${targets[@]}"; do exes+=("tests/fuzz/fuzz-$t"); done
ninja -C "$build" "${exes[@]}" || exit 1


# Defaults (halt_on_error, the suppressions) are built in: sanitizer-options.c.
if [ -f "$here/ubsan.supp" ] && grep -v "^#" "$here/ubsan.supp" | grep -q .; then
        echo "run-fuzzers: known findings suppressed (ubsan.supp):"
        grep -v "^#" "$here/ubsan.supp" | grep . | sed "s/^/   /"
fi

work=$build/fuzz-work
failed=()
for t in "${targets[@]}"; do
        exe=$build/tests/fuzz/fuzz-$t
        dir=$work/$t
        rm -rf "$dir"
        mkdir -p "$dir/corpus"
        cp "$here/corpus/$t"/* "$dir/corpus/" 2>/dev/null || true
        dict=()
        [ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
        echo "== fuzz-$t for ${seconds}s (log: $dir.log)"
        # shellcheck disable=SC2086
        "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
                -print_final_stats=1 -artifact_prefix="$dir/" "${dict[@]}" ${FUZZ_ARGS:-} \
                "$dir/corpus" >"$dir.log" 2>&1
        rc=$?
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb):' \
                "$dir.log" | sed 's/^/   /'
        grep -E '^#[0-9]+[[:space:]]+DONE' "$dir.log" | tail -1 | sed 's/^/   /'
        grep -E '^Done [0-9]+ runs' "$dir.log" | tail -1 | sed 's/^/   /'
        if [ $rc -ne 0 ] || ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* \
                >/dev/null 2>&1; then
                echo "   FAILED (exit $rc):"
                ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* 2>/dev/null |
                        sed 's/^/     /'
                grep -E 'ERROR: |check failed|runtime error|SUMMARY' "$dir.log" | head -5 |
                        sed 's/^/     /'
                failed+=("$t")
        fi
done

if [ ${#failed[@]} -gt 0 ]; then
        echo "run-fuzzers: failures in: ${failed[*]}" >&2
        exit 1
fi
echo "run-fuzzers: all ${#targets[@]} targets ran ${seconds}s without a finding"
