#!/bin/sh
# Lays out what the image holds under DEST/opt/flannel-ts, from a built checkout SRC (npm run build done) and a
# production-only node_modules NODE_MODULES: package.json (it makes dist/ ES modules), dist/ for the daemon, the
# seed-net-conf init step and the self-contained CNI plugin, EVERY addon in build/Release (binding.gyp's targets),
# and the init containers' install-file. Used by the Containerfile's from-source stage and by build-image.
# No source maps, tests, bench, compilers, npm cache or dev dependencies.
set -eu
if [ $# -ne 3 ]; then echo "usage: assemble-payload.sh SRC NODE_MODULES DEST" >&2; exit 64; fi
src=$1 nm=$2 dest=$3/opt/flannel-ts
mkdir -p "$dest/dist/deploy" "$dest/dist/cni" "$dest/build/Release" "$dest/bin"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
for d in flanneld subnet backends lib; do cp -R "$src/dist/$d" "$dest/dist/"; done
cp -R "$src/dist/deploy/kubernetes" "$dest/dist/deploy/"
cp "$src/dist/cni/flannel" "$dest/dist/cni/flannel"
targets=$(sed -n 's/.*"target_name": *"\([^"]*\)".*/\1/p' "$src/binding.gyp")
[ -n "$targets" ] || { echo "assemble-payload: no target_name in $src/binding.gyp" >&2; exit 1; }
for t in $targets; do
  [ -f "$src/build/Release/$t.node" ] || { echo "assemble-payload: $src/build/Release/$t.node is missing: run npm run build" >&2; exit 1; }
  cp "$src/build/Release/$t.node" "$dest/build/Release/"
done
cp -R "$nm" "$dest/node_modules"
cp "$src/deploy/container/install-file.sh" "$dest/bin/install-file"
chmod 0755 "$dest/bin/install-file" "$dest/dist/cni/flannel"
find "$dest/dist" -name '*.map' -type f -exec rm -f {} +
