#!/usr/bin/env bash
# Installs what flannel-ts needs on a Debian host, idempotently: the Debian packages for the daemon,
# its tests and the local cluster, the pinned npm packages (from package-lock.json), and the build.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
for pair in etcd:etcd-server etcdctl:etcd-client ip:iproute2 iptables:iptables iperf3:iperf3 \
            ping:iputils-ping socat:socat openssl:openssl python3:python3 make:make g++:g++ \
            tcpdump:tcpdump bridge:iproute2 systemd-analyze:systemd clang:clang strace:strace \
            wireguard-go:wireguard-go wg:wireguard-tools podman:podman runc:runc mmdebstrap:mmdebstrap \
            sockperf:sockperf; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
# The real peers built from Go modules (flannel, the latest wireguard-go); skipped with a reason where Go is missing.
node dist/deploy/local/build-go-tools.js
# The DaemonSet's image (podman, mmdebstrap; no registry): started in the background when its inputs changed, so the
# container tests of `make test` wait for it instead of building it themselves.
node dist/deploy/container/build-image.js --background
