# bash completion for stamp(1).                         -*- shell-script -*-
#
# The verbs and their options are read from `stamp --help` and
# `stamp VERB --help` (once per shell and binary), so this file never lists
# them and cannot fall behind the program; the man pages are checked
# against the same texts. What it knows itself is what the arguments are:
# an option's argument by its name in --help (DIR and STORE: a directory,
# FILE: a file, auto|copy: those words), a verb's operands from the table
# in _stamp_operands. Stamps come from `stamp list --short` on the store
# named by --store (anywhere before the word) or $STAMP_STORE.
#
# Needs nothing but bash (the bash-completion package is optional) and works
# under `set -u`.

declare -gA _stamp_cache=()

# _stamp_help BIN [VERB]: BIN's --help (of VERB), cached.
_stamp_help() {
        local key="$1 ${2:-}"
        if [[ -z ${_stamp_cache[$key]+set} ]]; then
                _stamp_cache[$key]=$("$1" ${2:+"$2"} --help 2>/dev/null)
        fi
        printf '%s\n' "${_stamp_cache[$key]}"
}

# _stamp_verbs BIN: the verbs `stamp --help` lists under "Commands:".
_stamp_verbs() {
        local line in=0
        while IFS= read -r line; do
                if [[ $line == Commands: ]]; then
                        in=1
                elif ((in)); then
                        [[ $line =~ ^\ \ ([a-z]+)\  ]] || break
                        printf '%s\n' "${BASH_REMATCH[1]}"
                fi
        done < <(_stamp_help "$1")
}

# _stamp_options BIN [VERB]: sets _stamp_opts (the options of VERB, or the
# global ones: those its --help lists, those in its usage lines, and the
# ones every verb takes) and _stamp_args (" --opt=METAVAR ..." for the
# options that take an argument). Options only named in the prose are left
# out: `copy --help` names `init --like`.
_stamp_options() {
        local key="opts $1 ${2:-}" line rest o usage=1
        if [[ -z ${_stamp_cache[$key]+set} ]]; then
                local -A seen=()
                local args=" --store=DIR "
                if [[ ${2:-} == serve ]]; then
                        seen[--help]=1 # PATH is its store; it prints nothing to read
                elif [[ -n ${2:-} ]]; then
                        for o in --store --json --quiet -q --help; do seen[$o]=1; done
                else
                        for o in --store --json --quiet -q --version --help; do seen[$o]=1; done
                fi
                while IFS= read -r line; do
                        [[ -z $line ]] && usage=0
                        if ((usage)); then
                                # "Usage: stamp ... [--lock-timeout SECONDS] [-q]"
                                rest=$line
                                while [[ $rest =~ (^|[^A-Za-z0-9-])(-[A-Za-z]|--[a-z][a-z0-9-]*)(\ ([A-Z][A-Z_]*))?(.*) ]]; do
                                        o=${BASH_REMATCH[2]}
                                        seen[$o]=1
                                        [[ -n ${BASH_REMATCH[4]} ]] && args+="$o=${BASH_REMATCH[4]} "
                                        rest=${BASH_REMATCH[5]}
                                done
                        elif [[ $line =~ ^\ +(-[A-Za-z],\ )?(--[a-z][a-z0-9-]*)([\ =]([A-Z][A-Z_]*|[a-z]+(\|[a-z]+)+))? ]]; then
                                # "  -x, --long ARG   text", "  --long=a|b   text"
                                o=${BASH_REMATCH[2]}
                                seen[$o]=1
                                [[ -n ${BASH_REMATCH[4]} ]] && args+="$o=${BASH_REMATCH[4]} "
                                if [[ -n ${BASH_REMATCH[1]} ]]; then
                                        o=${BASH_REMATCH[1]%, }
                                        seen[$o]=1
                                        [[ -n ${BASH_REMATCH[4]} ]] && args+="$o=${BASH_REMATCH[4]} "
                                fi
                        elif [[ $line =~ ^\ +(-[A-Za-z])\  ]]; then
                                seen[${BASH_REMATCH[1]}]=1 # "  -q         text"
                        fi
                done < <(_stamp_help "$1" "${2:-}")
                _stamp_cache[$key]="${!seen[*]}"
                _stamp_cache[args $1 ${2:-}]=$args
        fi
        _stamp_opts=${_stamp_cache[$key]}
        _stamp_args=${_stamp_cache[args $1 ${2:-}]}
}

# _stamp_operands VERB: what each operand is, in order; the last one with
# "..." repeats. Unknown verbs: none.
_stamp_operands() {
        case $1 in
        init | serve) echo dir ;;
        snapshot) echo dir... ;;
        show | validate | stats | drill) echo stamp ;;
        cat) echo stamp path ;;
        forget) echo stamp... ;;
        restore) echo stamp dir ;;
        diff) echo stamp stamp ;;
        copy) echo dir stamp... ;;
        esac
}

# _stamp_expand WORD: WORD with a leading ~/ expanded (the shell has not yet).
_stamp_expand() {
        local w=$1
        [[ $w == "~" || $w == "~/"* ]] && w=$HOME${w:1}
        printf '%s' "$w"
}

_stamp_compopt() {
        compopt "$@" 2>/dev/null || true # outside readline (tests): no-op
}

# _stamp_complete KIND CUR: completions of one kind of argument.
_stamp_complete() {
        local kind=$1 cur=$2 w
        case $kind in
        DIR | STORE | SRC | dir | dir...)
                _stamp_compopt -o filenames
                mapfile -t COMPREPLY < <(compgen -d -- "$cur")
                ;;
        FILE)
                _stamp_compopt -o filenames
                mapfile -t COMPREPLY < <(compgen -f -- "$cur")
                ;;
        stamp | stamp...)
                [[ -n $_stamp_store ]] || return 0
                w=$("$_stamp_bin" --store "$_stamp_store" list --short 2>/dev/null)
                mapfile -t COMPREPLY < <(compgen -W "$w latest" -- "$cur")
                ;;
        *\|*)
                mapfile -t COMPREPLY < <(compgen -W "${kind//|/ }" -- "$cur")
                ;;
        MODE)
                mapfile -t COMPREPLY < <(compgen -W "exclusive shared" -- "$cur")
                ;;
        esac
}

_stamp() {
        local cur=${COMP_WORDS[COMP_CWORD]} w i verb= expect= n=0 kind
        local -a operands
        local _stamp_bin _stamp_store=${STAMP_STORE:-} _stamp_opts _stamp_args
        COMPREPLY=()

        _stamp_bin=$(_stamp_expand "${COMP_WORDS[0]}")
        [[ $_stamp_bin == */* ]] || _stamp_bin=$(type -P "$_stamp_bin") || return 0
        [[ -x $_stamp_bin ]] || return 0
        # "--opt=value" comes as three words, "--opt" "=" "value"; readline
        # replaces only what follows the "=".
        [[ $cur == = ]] && cur=

        # The words before the current one: the verb, --store, the operands.
        _stamp_options "$_stamp_bin"
        for ((i = 1; i < COMP_CWORD; i++)); do
                w=${COMP_WORDS[i]}
                [[ $w == = ]] && continue
                if [[ -n $expect ]]; then
                        [[ $expect == --store ]] && _stamp_store=$(_stamp_expand "$w")
                        expect=
                elif [[ $w == -- ]]; then
                        expect=--
                        break
                elif [[ $w == --*=* ]]; then # one word where "=" does not break words
                        [[ ${w%%=*} == --store ]] && _stamp_store=$(_stamp_expand "${w#*=}")
                elif [[ $w == -* ]]; then
                        [[ $_stamp_args == *" $w="* ]] && expect=$w
                elif [[ -z $verb ]]; then
                        verb=$w
                        _stamp_options "$_stamp_bin" "$verb"
                else
                        n=$((n + 1))
                fi
        done
        [[ $expect == -- ]] && expect=

        # The argument of the option before: "--opt value", "--opt=value".
        if [[ -n $expect ]]; then
                kind=${_stamp_args#* $expect=}
                [[ $kind != "$_stamp_args" ]] && _stamp_complete "${kind%% *}" "$cur"
                return 0
        fi

        if [[ $cur == -* ]]; then
                mapfile -t COMPREPLY < <(compgen -W "$_stamp_opts" -- "$cur")
                return 0
        fi
        if [[ -z $verb ]]; then
                mapfile -t COMPREPLY < <(compgen -W "$(_stamp_verbs "$_stamp_bin")" -- "$cur")
                return 0
        fi
        read -r -a operands <<<"$(_stamp_operands "$verb")"
        ((${#operands[@]})) || return 0
        if ((n < ${#operands[@]})); then
                kind=${operands[n]}
        else
                kind=${operands[-1]}
                [[ $kind == *... ]] || return 0
        fi
        _stamp_complete "$kind" "$cur"
}

complete -F _stamp stamp
