# The two quick-start commands. Each installs what it needs first (Debian packages, npm, build).
SHELL := /bin/bash
.PHONY: cluster test deps build image

deps:
	@bash deploy/local/install-deps.sh

build:
	@npm run --silent build

## The DaemonSet's image (deploy/container), built here without any registry: `make image`; cached by its inputs.
image: deps
	@npm run --silent image

## The main job: a 3-node local cluster with etcd and the host-gw backend, then teardown.
## `make cluster BACKEND=udp` picks the backend; ARGS passes more, e.g. ARGS=--keep or ARGS="--destroy <tag>".
## `make cluster MIXED=1` runs the real flannel (built with Go) on every second node (backends host-gw, udp, vxlan).
## `make cluster IPV6=dual` makes the network dual-stack and pings every pair on both families; IPV6=only makes it IPv6-only (host-gw, vxlan).
## `make cluster CONTAINERS=1` runs every flanneld in a container of the image (deploy/kubernetes/kube-flannel-ts.yml's pod spec, kube mode).
## `make cluster KUBE=1` is Kubernetes mode: a real kube-apiserver (built with Go) and flanneld --kube-subnet-mgr, each subnet its Node's podCIDR (with IPV6=dual and MIXED=1 too).
cluster: deps
	@node dist/deploy/local/cluster-main.js $(if $(BACKEND),--backend=$(BACKEND)) $(if $(filter-out 0 no false,$(MIXED)),--mixed) $(if $(IPV6),--ipv6=$(IPV6)) $(if $(filter-out 0 no false,$(KUBE)),--kube) $(if $(filter-out 0 no false,$(CONTAINERS)),--containers) $(ARGS)

## The full test suite; the last line reads "N passed, N failed".
test: deps
	@set -o pipefail; npx tap --reporter=tap 2>&1 | node test/helpers/tap-summary.mjs
