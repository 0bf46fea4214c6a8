#!/bin/bash
# Installs what building and testing stampfs needs on Debian 12, and only
# what is missing. Needs root (or sudo) when something is missing.
set -euo pipefail

packages=(
        gcc pkg-config meson ninja-build
        libsqlite3-dev libzstd-dev libxxhash-dev libcjson-dev libfuse3-dev fuse3
        python3 sqlite3 attr acl util-linux rsync procps openssh-client openssh-server
        scdoc groff-base man-db
)
[ "${1:-}" = --bench ] && packages+=(restic borgbackup time)

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing: ${missing[*]}"
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
