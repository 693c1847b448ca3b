#!/usr/bin/env bash
# Installs the Debian packages in scripts/debian-packages.txt that are not installed yet.
# Does nothing (and needs no root) when all of them are present. A package counts as present when
# it is installed or an installed package provides it (e.g. NodeSource's nodejs provides npm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# every installed package and whatever it provides (one dpkg-query, no fork per package)
declare -A have=()
while IFS='|' read -r status name provides; do
    [[ $status == ii* ]] || continue
    have[$name]=1
    IFS=',' read -ra provided <<<"$provides"
    for p in "${provided[@]}"; do
        p=${p#"${p%%[! ]*}"}
        p=${p%% *}
        [ -n "$p" ] && have[$p]=1
    done
done < <(dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Provides}\n' 2>/dev/null)
missing=()
while read -r pkg _; do
    pkg=${pkg%%#*}
    [ -n "$pkg" ] || continue
    [ -n "${have[$pkg]:-}" ] || missing+=("$pkg")
done <"$here/debian-packages.txt"
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
