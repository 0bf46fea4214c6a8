#!/bin/bash
# The shell completions (contrib/completion/): the bash scripts load under
# `set -u` without a message and register themselves; they complete verbs,
# every option each verb's --help lists, option values, directories, and
# the stamps of a real store named by --store (either spelling) or
# $STAMP_STORE; _stamp is valid zsh and offers the same. Needs no
# bash-completion package: the scripts use only bash itself.
set -euo pipefail
export LC_ALL=C
: "${STAMP:?STAMP must point at the stamp binary}"
: "${COMPLETION_DIR:?COMPLETION_DIR must point at contrib/completion}"
WORK=$(mktemp -d /tmp/stamp-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
BASH_STAMP=$COMPLETION_DIR/stamp.bash
BASH_STAMPFS=$COMPLETION_DIR/stampfs.bash

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

# complete SCRIPT FUNCTION WORD...: what bash offers for the last WORD (the
# word under the cursor), sorted, one per line; in a fresh shell under set -u.
complete_words() {
        bash -c 'set -u
                source "$1" || exit 1
                fn=$2
                shift 2
                COMP_WORDS=("$@")
                COMP_CWORD=$(($# - 1))
                COMP_LINE="$*"
                COMP_POINT=${#COMP_LINE}
                "$fn" || exit 1
                for w in ${COMPREPLY[@]+"${COMPREPLY[@]}"}; do printf "%s\n" "$w"; done' \
                _ "$@" | sort
}
comp() { complete_words "$BASH_STAMP" _stamp "$STAMP" "$@"; }

# expect WANT WORD...: the completions of WORD... are exactly WANT (space separated).
expect() {
        local want got
        want=$(printf '%s\n' $1 | sort)
        shift
        got=$(comp "$@")
        [ "$got" = "$want" ] || fail "stamp $* <TAB>: got '$(echo $got)', expected '$(echo $want)'"
}

# 1. Syntax, and loading under set -u with nothing on stderr.
for f in "$BASH_STAMP" "$BASH_STAMPFS"; do
        bash -n "$f" || fail "bash -n $f"
done
bash -c 'set -euo pipefail; source "$1"; source "$2"; complete -p stamp stampfs' \
        _ "$BASH_STAMP" "$BASH_STAMPFS" >"$WORK/out" 2>"$WORK/err" || fail "sourcing failed"
[ ! -s "$WORK/err" ] || { cat "$WORK/err" >&2; fail "sourcing printed messages"; }
grep -qx 'complete -F _stamp stamp' "$WORK/out" || fail "stamp.bash did not register _stamp"
grep -qx 'complete -F _stampfs stampfs' "$WORK/out" || fail "stampfs.bash did not register _stampfs"

# 2. A real store with two snapshots, a source directory and a plain file.
mkdir -p "$WORK/src/db"
echo hello >"$WORK/src/a.txt"
touch "$WORK/somefile"
"$STAMP" init -q "$WORK/store"
"$STAMP" --store "$WORK/store" snapshot -q "$WORK/src" >/dev/null
sleep 1 # stamps are seconds
"$STAMP" --store "$WORK/store" snapshot -q "$WORK/src" >/dev/null
stamps=$("$STAMP" --store "$WORK/store" list --short)
[ "$(echo "$stamps" | wc -l)" = 2 ] || fail "expected two snapshots"

# 3. Verbs: every verb of `stamp --help`, and a prefix.
verbs=$("$STAMP" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z]\+\) .*/\1/p')
expect "$verbs" ''
expect snapshot sna
expect "--store --json --quiet -q --help --version" -

# 4. Options: every option each verb's --help lists is offered.
for v in $verbs; do
        comp "$v" - >"$WORK/offered"
        "$STAMP" "$v" --help | grep -oE -- '^ +(-[A-Za-z], )?(--[a-z][a-z0-9-]*|-[A-Za-z]\b)' |
                grep -oE -- '--?[A-Za-z][a-z0-9-]*' | sort -u >"$WORK/listed" || true
        missing=$(comm -23 "$WORK/listed" "$WORK/offered" | tr '\n' ' ')
        [ -z "$missing" ] || fail "stamp $v -<TAB> lacks $missing"
done
expect --one-file-system snapshot --one
# serve documents only --init and --help: it is run by copy, not by hand.
expect "--help --init" serve -
expect --confirm-service-stopped restore --conf
expect "--keep-daily" --store "$WORK/store" prune --keep-d

# 5. Option values and directories.
expect "auto copy" snapshot --sqlite = ''
expect "exclusive shared" snapshot --tag x --lock-mode ''
expect "$WORK/src $WORK/store" --store "$WORK/s"
expect "$WORK/src $WORK/store" restore latest "$WORK/s"
expect "$WORK/src $WORK/store" snapshot "$WORK/src" "$WORK/s"
if [[ " $(echo $verbs) " == *" drill "* ]]; then
        expect "$WORK/src $WORK/store" drill --scratch "$WORK/s"
fi
expect "" list ''

# 6. Stamps, from the store named anywhere before the word.
expect "$stamps latest" --store "$WORK/store" show ''
expect "$stamps latest" --store = "$WORK/store" validate ''
expect "$stamps latest" --store="$WORK/store" forget ''
expect "$stamps" diff --store "$WORK/store" 2
expect "$stamps latest" diff --store "$WORK/store" latest ''
expect "" --store "$WORK/store" diff latest latest ''
STAMP_STORE=$WORK/store expect "$stamps latest" restore ''
STAMP_STORE=$WORK/store expect "$stamps latest" copy "$WORK/elsewhere" ''
expect "" show '' # no store known: nothing to offer

# 7. stampfs: options, -o values, directories.
if [ -n "${STAMPFS:-}" ]; then
        fscomp() { complete_words "$BASH_STAMPFS" _stampfs "$STAMPFS" "$@"; }
        [ "$(fscomp -o al)" = allow_other ] || fail "stampfs -o al<TAB>: got '$(fscomp -o al)'"
        [ "$(fscomp -o allow_other,ca)" = allow_other,cache_size= ] ||
                fail "stampfs -o allow_other,ca<TAB>: got '$(fscomp -o allow_other,ca)'"
        fscomp - | grep -qx -- -f || fail "stampfs -<TAB> lacks -f"
        # Each option once, short forms of "-h, --help" included.
        [ "$(fscomp - | sort | tr '\n' ' ')" = "--help --version -V -d -f -h -o -s " ] ||
                fail "stampfs -<TAB>: got '$(fscomp - | sort | tr '\n' ' ')'"
        [ "$(fscomp "$WORK/sto")" = "$WORK/store" ] || fail "stampfs STORE<TAB>: not the directory"
fi

# 8. zsh: _stamp parses, and offers verbs and stamps (completion system
# functions replaced by stubs that print what they are given).
if command -v zsh >/dev/null; then
        zsh -n "$COMPLETION_DIR/_stamp" || fail "zsh -n _stamp"
        cat >"$WORK/zcomp.zsh" <<'ZSH'
setopt extendedglob
script=$1 service=$2
shift 2
words=("$@")
CURRENT=$#
compadd() { while [[ $1 == -* && $1 != -- ]]; do [[ $1 == -[SPJ] ]] && shift; shift; done; [[ $1 == -- ]] && shift; print -rl -- "$@"; }
_describe() { print -rl -- ${(P)4}; }
_directories() { print -r -- DIRECTORIES; }
_files() { print -r -- FILES; }
compset() { :; }
source $script
ZSH
        zc() { zsh -f "$WORK/zcomp.zsh" "$COMPLETION_DIR/_stamp" stamp "$STAMP" "$@" | sort; }
        [ "$(zc '')" = "$(printf '%s\n' $verbs | sort)" ] || fail "zsh: stamp <TAB> is not the verbs"
        [ "$(zc --store "$WORK/store" show '')" = "$(printf '%s\n' $stamps latest | sort)" ] ||
                fail "zsh: stamp --store S show <TAB>: got '$(zc --store "$WORK/store" show '')'"
        zc snapshot - | grep -qx -- --one-file-system || fail "zsh: snapshot options"
        [ "$(zc restore latest '')" = DIRECTORIES ] || fail "zsh: restore TARGET is not a directory"
else
        echo "zsh not installed: _stamp not checked"
fi
echo "ok: bash$(command -v zsh >/dev/null && echo ' and zsh') completions"
