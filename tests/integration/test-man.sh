#!/bin/bash
# The manual pages render without a warning, and cannot drift from the
# programs: every verb in `stamp --help` has a page that stamp(1) points
# to, and every option named in a --help (stamp's, each verb's, stampfs's)
# appears in the page documenting it. Pages come from meson as MAN_PAGES
# (colon-separated paths of the built roff files).
set -euo pipefail
export LC_ALL=C # one collation for sort and comm
: "${STAMP:?STAMP must point at the stamp binary}"
: "${MAN_PAGES:?MAN_PAGES must list the built manual pages}"
command -v groff >/dev/null || { echo "groff is missing (contrib/install-deps.sh installs it)"; exit 77; }
WORK=$(mktemp -d /tmp/stamp-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

declare -A page
IFS=: read -r -a pages <<<"$MAN_PAGES"
for p in "${pages[@]}"; do
        [ -s "$p" ] || fail "page '$p' was not built"
        page[$(basename "$p")]=$p
done

# text PAGE: the page's roff with font changes and escapes removed, so
# options can be searched for as they are written (never hyphenated).
text() {
        sed -e 's/\\f[BIRP]//g' -e 's/\\&//g' -e 's/\\-/-/g' -e "s/\\\\(aq/'/g" "$1"
}

# words FILE: the options (-x, --long-name) and option values (cache_size)
# FILE mentions, one per line, sorted. Whole words only: the page naming
# --lock-mode does not document --lock.
words() {
        grep -oE -- '(^|[^A-Za-z0-9_-])-{0,2}[A-Za-z][A-Za-z0-9_-]*' "$1" |
                sed 's/^[^A-Za-z-]//' | sort -u
}

# Every page renders without warnings, and has the sections an operator
# looks for. (Forks are slow here: few commands per page.)
for name in "${!page[@]}"; do
        p=${page[$name]}
        groff -man -Tutf8 -ww -z "$p" 2>"$WORK/err" || fail "$name: groff failed"
        [ ! -s "$WORK/err" ] || { cat "$WORK/err" >&2; fail "$name: groff warnings"; }
        grep -x '\.SH .*' "$p" >"$WORK/sections"
        for sec in NAME SYNOPSIS DESCRIPTION OPTIONS 'EXIT STATUS' FILES EXAMPLES 'SEE ALSO'; do
                grep -qx "\.SH $sec" "$WORK/sections" || fail "$name: no $sec section"
        done
done
# The same through man(1), as a reader sees them, and the NAME lines that
# whatis(1) and apropos(1) index.
if command -v man >/dev/null; then
        MANWIDTH=80 man --warnings -l "${pages[@]}" >/dev/null 2>"$WORK/err" || fail "man -l failed"
        [ ! -s "$WORK/err" ] || { cat "$WORK/err" >&2; fail "man -l warnings"; }
fi
if command -v lexgrog >/dev/null; then
        lexgrog "${pages[@]}" >/dev/null || fail "lexgrog cannot parse a NAME section"
fi

# check_help PAGE HELP-COMMAND...: every long option the help text names,
# every short option it lists, and every -o value it lists, is in PAGE.
check_help() {
        local name=$1 missing
        shift
        [ -n "${page[$name]:-}" ] || fail "no manual page $name for '$*'"
        "$@" --help >"$WORK/help" || fail "'$* --help' failed"
        {
                grep -oE -- '--[a-z][a-z0-9-]*' "$WORK/help" || true
                grep -oE -- '^ +-[A-Za-z]\b' "$WORK/help" | tr -d ' ' || true
                grep -oE -- '-o [a-z_]+' "$WORK/help" | cut -c4- || true
        } | sort -u >"$WORK/wanted"
        text "${page[$name]}" >"$WORK/text"
        words "$WORK/text" >"$WORK/have"
        missing=$(comm -23 "$WORK/wanted" "$WORK/have" | tr '\n' ' ')
        [ -z "$missing" ] || fail "$name does not document $missing(named by '$* --help')"
}

check_help stamp.1 "$STAMP"
verbs=$("$STAMP" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z]\+\) .*/\1/p')
[ -n "$verbs" ] || fail "no verbs found in 'stamp --help'"
text "${page[stamp.1]}" >"$WORK/stamp.txt"
for v in $verbs; do
        check_help "stamp-$v.1" "$STAMP" "$v"
        grep -qF "stamp-$v(1)" "$WORK/stamp.txt" || fail "stamp.1 does not point to stamp-$v(1)"
done
if [ -n "${STAMPFS:-}" ]; then
        check_help stampfs.1 "$STAMPFS"
fi
echo "ok: ${#page[@]} pages, verbs: $(echo $verbs)"
