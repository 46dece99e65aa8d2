#!/bin/sh
# Atomic copy for the DaemonSet's init containers: SRC goes to a temporary file in DST's directory,
# is synced and renamed over DST, so the kubelet never runs a half-written CNI plugin or conflist.
set -eu
if [ $# -ne 3 ]; then echo "usage: install-file SRC DST MODE" >&2; exit 64; fi
src=$1 dst=$2 mode=$3
dir=$(dirname "$dst")
tmp="$dir/.$(basename "$dst").tmp"
mkdir -p "$dir"
trap 'rm -f "$tmp"' EXIT
cp "$src" "$tmp"
chmod "$mode" "$tmp"
sync "$tmp"
mv -f "$tmp" "$dst"
echo "installed $dst"
