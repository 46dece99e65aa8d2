#!/usr/bin/env bash
# Installs flanneld (flannel-ts) as a systemd service on a bare-metal host: the built tree into
# /opt/flannel-ts (production node_modules only), the unit, and an env file example. Idempotent.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/systemd/install.sh [--destdir DIR] [--node PATH] [--with-cni]
  Run as root from a built checkout (`npm run build`). Installs:
    /opt/flannel-ts/                        dist/, the native addon, production node_modules
    /etc/systemd/system/flanneld.service    ExecStart uses --node (default: `command -v node`)
    /etc/flannel-ts/flanneld.env.example    refreshed every time
    /etc/flannel-ts/flanneld.env            created from the example only if absent (mode 0600)
  --with-cni also installs the CNI plugin /opt/cni/bin/flannel and, if absent,
    /etc/cni/net.d/10-flannel.conflist
  --destdir DIR installs under DIR instead of / (packaging, tests); systemd is then left alone.
USAGE
}

die() { echo "install.sh: $*" >&2; exit 1; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
destdir="" node=$(command -v node || true) with_cni=0
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
    --node) node=${2:?--node needs a path}; shift 2 ;;
    --with-cni) with_cni=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
done
[ -n "$destdir" ] && destdir=$(mkdir -p "$destdir" && cd "$destdir" && pwd)
[ -x "$node" ] || die "Node.js 20 was not found (pass --node /path/to/node)"
for f in dist/flanneld/main.js build/Release/flanneld_native.node package-lock.json; do
  [ -e "$repo/$f" ] || die "$repo/$f is missing: run \`npm ci && npm run build\` first"
done

# Copies $1 to $2 atomically (temporary file in the same directory, then rename), with mode $3.
install_file() {
  mkdir -p "$(dirname "$2")"
  local tmp; tmp="$(dirname "$2")/.$(basename "$2").tmp.$$"
  cp "$1" "$tmp" && chmod "$3" "$tmp" && mv -f "$tmp" "$2"
}

# The tree: staged next to the target, then swapped in with two renames.
target="$destdir/opt/flannel-ts"
stage="$target.new.$$"
rm -rf "$stage" && mkdir -p "$stage/build/Release" "$stage/node_modules"
cp -a "$repo/package.json" "$repo/package-lock.json" "$repo/README.md" "$stage/"
cp -a "$repo/dist" "$stage/dist"
cp -a "$repo/build/Release/flanneld_native.node" "$stage/build/Release/"
"$node" -e '
  const lock = require(process.argv[1]);
  for (const [path, p] of Object.entries(lock.packages)) if (path && !p.dev && !p.devOptional) console.log(path);
' "$repo/package-lock.json" | while read -r rel; do
  [ -d "$repo/$rel" ] || continue
  mkdir -p "$stage/$rel" && cp -a "$repo/$rel/." "$stage/$rel/"
done
if [ -d "$target" ]; then mv "$target" "$target.old.$$"; fi
mv "$stage" "$target"
rm -rf "$target.old.$$"

unit_tmp=$(mktemp)
sed "s#^ExecStart=/usr/bin/node #ExecStart=$node #" "$repo/deploy/systemd/flanneld.service" > "$unit_tmp"
install_file "$unit_tmp" "$destdir/etc/systemd/system/flanneld.service" 0644
rm -f "$unit_tmp"
install_file "$repo/deploy/systemd/flanneld.env.example" "$destdir/etc/flannel-ts/flanneld.env.example" 0644
env_file="$destdir/etc/flannel-ts/flanneld.env"
if [ -e "$env_file" ]; then echo "kept $env_file"; else install_file "$repo/deploy/systemd/flanneld.env.example" "$env_file" 0600; fi

if [ "$with_cni" = 1 ]; then
  install_file "$repo/dist/cni/flannel" "$destdir/opt/cni/bin/flannel" 0755
  conflist="$destdir/etc/cni/net.d/10-flannel.conflist"
  if [ -e "$conflist" ]; then echo "kept $conflist"; else install_file "$repo/deploy/cni/10-flannel.conflist" "$conflist" 0644; fi
fi

if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
echo "flanneld installed in $target. Edit $env_file, then: systemctl enable --now flanneld"
