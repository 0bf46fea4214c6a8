# bash completion for stampfs(1).                       -*- shell-script -*-
#
# STORE and MOUNTPOINT are directories; the options, and the -o values,
# are read from `stampfs --help` (once per shell), as stamp.bash does for
# stamp. Needs nothing but bash, and works under `set -u`.

declare -gA _stampfs_cache=()

_stampfs() {
        local cur=${COMP_WORDS[COMP_CWORD]} prev bin w i n=0
        local line opts="--help --version" values="" head
        COMPREPLY=()

        bin=${COMP_WORDS[0]}
        [[ $bin == "~/"* ]] && bin=$HOME${bin:1}
        [[ $bin == */* ]] || bin=$(type -P "$bin") || return 0
        [[ -x $bin ]] || return 0
        if [[ -z ${_stampfs_cache[$bin]+set} ]]; then
                while IFS= read -r line; do
                        # "  -f   text", "  -h, --help  text", "  -o cache_size=MIB   text",
                        # "  -o allow_other  text", "  -o <fuse option>  text" (-o: added once)
                        if [[ $line =~ ^\ +-o\ ([a-z_]+)(=?) ]]; then
                                values+="${BASH_REMATCH[1]}${BASH_REMATCH[2]} "
                        elif [[ $line =~ ^\ +(-[A-Za-z])[,\ ] && ${BASH_REMATCH[1]} != -o ]]; then
                                opts+=" ${BASH_REMATCH[1]}"
                        fi
                done < <("$bin" --help 2>/dev/null)
                _stampfs_cache[$bin]="$opts -o"
                _stampfs_cache[values $bin]=$values
        fi

        # Inside -o's list? "a,b=1,c" comes as the words "a,b" "=" "1,c".
        i=$COMP_CWORD
        [[ $cur == = ]] && cur=
        while ((i > 2)) && [[ ${COMP_WORDS[i]} == = || ${COMP_WORDS[i - 1]} == = ]]; do
                i=$((i - 1))
        done
        prev=${COMP_WORDS[i - 1]:-}
        if [[ $prev == -o ]]; then
                # A comma-separated list: complete its last item.
                head=
                [[ $cur == *,* ]] && head=${cur%,*},
                mapfile -t COMPREPLY < <(compgen -P "$head" -W "${_stampfs_cache[values $bin]}" -- "${cur##*,}")
                [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]] &&
                        { compopt -o nospace 2>/dev/null || true; }
                return 0
        fi
        if [[ $cur == -* ]]; then
                mapfile -t COMPREPLY < <(compgen -W "${_stampfs_cache[$bin]}" -- "$cur")
                return 0
        fi
        # STORE, then MOUNTPOINT: directories.
        for ((i = 1; i < COMP_CWORD; i++)); do
                w=${COMP_WORDS[i]}
                if [[ $w == -o ]]; then
                        i=$((i + 1))
                elif [[ $w != -* ]]; then
                        n=$((n + 1))
                fi
        done
        ((n < 2)) || return 0
        compopt -o filenames 2>/dev/null || true
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
}

complete -F _stampfs stampfs
