#!/bin/bash
# The manual pages render without a warning, and cannot drift from the
# programs: every verb in `stamp --help` has a page that stamp(1) points
# to, and every option named in a --help (stamp's, each verb's, stampfs's)
# appears in the page documenting it; and README.md's commands use only
# real options. Pages come from meson as MAN_PAGES (colon-separated paths
# of the built roff files), the README as README.
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
# README.md, the operator's guide: every `stamp` command it shows (in code
# blocks and inline) uses only options its verb's --help names. Verbs not
# built yet are skipped with a note.
if [ -n "${README:-}" ]; then
        python3 - "$STAMP" "$README" <<'PY' || fail "README.md shows options stamp does not have"
import re, shlex, subprocess, sys
stamp, readme = sys.argv[1], sys.argv[2]
text = open(readme).read()
lines, block = [], False
for line in text.splitlines():
    if line.startswith("```"):
        block = not block
    elif block:
        lines.append(line)
lines += re.findall(r"`(stamp [^`]*)`", text)
helps = {}
def help_of(verb):
    if verb not in helps:
        p = subprocess.run([stamp] + ([verb] if verb else []) + ["--help"],
                           capture_output=True, text=True)
        helps[verb] = p.stdout if p.returncode == 0 else ""
    return helps[verb]
listing = help_of(None).split("Commands:")[1].split("\n\n")[0]
verbs = re.findall(r"^  ([a-z]+) ", listing, re.M)
common = {"--store", "--json", "--quiet", "-q", "--help"}
bad = 0
for line in lines:
    for cmd in re.split(r"\s*(?:\||&&|;|>)\s*", line.split(" #")[0].strip()):
        if not cmd.startswith("stamp "):
            continue
        words = shlex.split(cmd.rstrip("\\"))[1:]
        verb, opts, i = None, [], 0
        while i < len(words):
            w = words[i]
            if w.startswith("-"):
                opts.append((verb, w.split("=")[0]))
                i += verb is None and w == "--store"
            elif verb is None:
                verb = w
            i += 1
        if verb not in verbs:
            print(f"README: skipped (no verb {verb!r} in stamp --help yet): {cmd}")
            continue
        for v, o in opts:
            pattern = r"(^|[^A-Za-z0-9-])" + re.escape(o) + r"([^A-Za-z0-9-]|$)"
            if o not in common and not re.search(pattern, help_of(v), re.M):
                print(f"README: '{cmd}': {o} is not in 'stamp {v or ''} --help'".replace("  ", " "))
                bad += 1
sys.exit(1 if bad else 0)
PY
fi
echo "ok: ${#page[@]} pages, verbs: $(echo $verbs)"
