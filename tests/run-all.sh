#!/bin/bash
# README's second command (and .ci/run): the whole test suite, twice: a
# normal build, then an AddressSanitizer + UndefinedBehaviorSanitizer build.
# Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

contrib/install-deps.sh

run_suite() {
        local dir=$1
        shift
        [ -d "$dir" ] || meson setup "$dir" "$@" >/dev/null
        ninja -C "$dir"
        meson test -C "$dir" --print-errorlogs --num-processes 2
}

echo "=== build: gcc, warnings as errors"
run_suite build-ci --werror
echo "=== build: AddressSanitizer + UndefinedBehaviorSanitizer"
# Fewer trials of the randomised tests here: they ran in full above, and
# ASan's use is the memory errors of each code path, not the count.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
KILL_TRIALS=6 POWERLOSS_STATES=10 FULL_DISK_STEP=6 IO_ERROR_TRIALS=6 \
AUTO_TRIALS=8 ROLLBACK_TRIALS=3 CHECKPOINT_TRIALS=3 \
        run_suite build-asan --werror -Db_sanitize=address,undefined -Db_lundef=false
