// The real flannel (flannel-io/flannel's flanneld) at the release pinned in deploy/local/flannel/go.mod, built
// from its published module by go-tool.ts (cgo on: flannel's udp backend is C). The mixed-cluster tests, the
// bench's flannel rows and `make cluster MIXED=1` run it beside ours on the same etcd.
import { type GoTool, type GoToolBinary, buildGoTool, goToolOrSkip } from './go-tool.js';

export const FLANNEL_MODULE = 'github.com/flannel-io/flannel';
export const FLANNEL_TOOL: GoTool = {
  dir: 'flannel', module: FLANNEL_MODULE, name: 'flanneld', cgo: true,
  // As flannel's Makefile stamps it, so `flanneld --version` and its log name the release.
  ldflags: (version) => `-X ${FLANNEL_MODULE}/pkg/version.Version=${version}`,
};

/** The pinned flanneld: the cached binary, or built now (about 80 s on 2 cores); or why not. */
export function buildRealFlannel(): Promise<GoToolBinary> { return buildGoTool(FLANNEL_TOOL); }

/** flanneld's path, building it if needed; undefined (and one line on stderr saying why) where it cannot be had. */
export function realFlannelOrSkip(log?: (line: string) => void): Promise<string | undefined> {
  return goToolOrSkip(FLANNEL_TOOL, 'the real flannel', log);
}

/** The flags a real flanneld gets on a local-cluster node: the same etcd, prefix, subnet file and interface as
 * ours (flannel's own names for them), then the caller's. */
export function realFlannelArgs(o: { etcdEndpoint: string; prefix: string; subnetFile: string }, extra: readonly string[] = []): string[] {
  return [`--etcd-endpoints=${o.etcdEndpoint}`, `--etcd-prefix=${o.prefix}`, `--subnet-file=${o.subnetFile}`, '--iface=eth0', ...extra];
}
