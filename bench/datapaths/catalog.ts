// The data paths the harness compares, and what they need. A flanneld data path is just its
// Backend JSON: when a backend lands in the daemon, the harness measures it with no change here.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { goToolDir, pinnedVersionOf } from '../../deploy/local/go-tool.js';
import { FLANNEL_MODULE, FLANNEL_TOOL } from '../../deploy/local/real-flannel.js';
import type { DataPathId } from '../report/result-types.js';

export interface DataPathDef {
  readonly id: DataPathId;
  readonly label: string;
  /** Backend object of the network config; undefined for the paths built by hand (no daemon). */
  readonly backend?: Readonly<Record<string, unknown>>;
  /** Which daemon runs that Backend on both nodes: ours (flannel-ts's flanneld, the default) or the real flannel
   * (flannel-io/flannel's flanneld at the release pinned in deploy/local/flannel/go.mod, built with Go). */
  readonly daemon?: 'flannel-ts' | 'flannel';
  /** How the lease→first-packet benchmark fakes a peer of this backend; undefined: not measured. */
  readonly fakePeer?: 'host-gw' | 'vxlan';
  /** Why lease→first-packet does not apply. */
  readonly noFakePeerReason?: string;
  /** Why the path cannot be built between two real hosts (--underlay); undefined: it can. */
  readonly localOnly?: string;
  /** Measured over the pods' IPv6 addresses: dual-stack nodes with an IPv6 underlay (2001:db8::<i>), and for a
   * daemon the dual-stack config (EnableIPv6, IPv6Network); its ratios are against kernel-vxlan6. */
  readonly ipv6?: boolean;
  /** Why program-peers does not measure this row of ours (undefined: it does, if it has a Backend). */
  readonly noProgramPeersReason?: string;
}

export const OVERLAY_NETWORK = '10.244.0.0/16';
/** IPv6Network of the dual-stack rows' config, as in `make cluster IPV6=dual` and the dual-stack tests. */
export const OVERLAY_NETWORK6 = 'fd00:10:244::/56';

/** The real flannel's release pinned in deploy/local/flannel/go.mod (e.g. v0.28.10), for the rows' labels. */
export const REAL_FLANNEL_VERSION = ((): string => {
  try {
    return pinnedVersionOf(readFileSync(join(goToolDir(FLANNEL_TOOL.dir), 'go.mod'), 'utf8'), FLANNEL_MODULE) ?? 'real';
  } catch {
    return 'real';
  }
})();
const REAL_FLANNEL_LOCAL_ONLY = 'the harness runs the real flannel in node namespaces of this machine only (it installs nothing on a second host)';
const IPV6_LOCAL_ONLY = 'the IPv6 rows need an IPv6 underlay, which --underlay/--peer (IPv4) does not set up';
/** Lease→first packet and program-peers stay IPv4: their fake peers and lease events carry no IPv6 subnet. */
const IPV6_NO_FAKE_PEER = 'IPv6 row: the fake peer announces an IPv4-only lease, so lease→first packet is measured on the IPv4 row of this backend';
const IPV6_NO_PROGRAM_PEERS = 'IPv6 row: the lease events handed to the backend are IPv4-only, so program-peers is measured on the IPv4 row of this backend';

/** True for the rows whose daemon is the real flannel: our backend code (program-peers) does not apply to them. */
export const isRealFlannel = (def: DataPathDef): boolean => def.daemon === 'flannel';

export const DATAPATHS: readonly DataPathDef[] = [
  { id: 'raw', label: 'raw veth (no overlay)', noFakePeerReason: 'no daemon' },
  { id: 'kernel-vxlan', label: 'kernel VXLAN by hand (ref)', noFakePeerReason: 'no daemon' },
  { id: 'host-gw', label: 'flanneld host-gw', backend: { Type: 'host-gw' }, fakePeer: 'host-gw' },
  // The real flannel with the same Backend JSON on both nodes, each row right after ours (unavailable without Go).
  {
    id: 'flannel-host-gw', label: `flannel ${REAL_FLANNEL_VERSION} host-gw`, backend: { Type: 'host-gw' }, daemon: 'flannel',
    fakePeer: 'host-gw', localOnly: REAL_FLANNEL_LOCAL_ONLY,
  },
  {
    id: 'tun-relay', label: 'TUN relay (user ceiling)', noFakePeerReason: 'no daemon',
    localOnly: 'one process holds a TUN device on both nodes, so both must be namespaces of one machine',
  },
  {
    id: 'udp', label: 'flanneld udp', backend: { Type: 'udp' },
    noFakePeerReason: 'a udp peer is a userspace endpoint (a flanneld), not something a lease alone can fake',
  },
  {
    id: 'flannel-udp', label: `flannel ${REAL_FLANNEL_VERSION} udp`, backend: { Type: 'udp' }, daemon: 'flannel',
    noFakePeerReason: 'a udp peer is a userspace endpoint (a flanneld), not something a lease alone can fake',
    localOnly: REAL_FLANNEL_LOCAL_ONLY,
  },
  { id: 'vxlan', label: 'flanneld vxlan (userspace)', backend: { Type: 'vxlan' }, fakePeer: 'vxlan' },
  { id: 'vxlan-kernel', label: 'flanneld vxlan (kernel)', backend: { Type: 'vxlan', Datapath: 'kernel' }, fakePeer: 'vxlan' },
  // flannel's vxlan is the kernel VXLAN device (flannel.1), as vxlan-kernel and kernel-vxlan.
  {
    id: 'flannel-vxlan', label: `flannel ${REAL_FLANNEL_VERSION} vxlan`, backend: { Type: 'vxlan' }, daemon: 'flannel',
    fakePeer: 'vxlan', localOnly: REAL_FLANNEL_LOCAL_ONLY,
  },
  // WireGuard: flanneld's backend, then the references built by hand with wireguard-go (wireguard-go.ts), the
  // latest module (built with Go; unavailable without it) and Debian's package. In the order of DATAPATH_IDS.
  {
    id: 'wireguard', label: 'flanneld wireguard', backend: { Type: 'wireguard' },
    noFakePeerReason: 'a wireguard peer must answer a handshake, which a lease alone cannot fake',
  },
  {
    id: 'wireguard-go-latest', label: 'wireguard-go (latest)', noFakePeerReason: 'no flanneld',
    localOnly: 'built by hand in two node namespaces of one machine',
  },
  {
    id: 'wireguard-go-debian', label: 'wireguard-go (Debian)', noFakePeerReason: 'no flanneld',
    localOnly: 'built by hand in two node namespaces of one machine',
  },
  // IPv6, measured between the pods' IPv6 addresses of dual-stack nodes; ratios against kernel-vxlan6 (the reference
  // of this family, in the same run). No udp row (IPv4-only, as flannel's).
  {
    id: 'kernel-vxlan6', label: 'kernel VXLAN IPv6 by hand (ref)', noFakePeerReason: 'no daemon', ipv6: true,
    localOnly: IPV6_LOCAL_ONLY,
  },
  {
    id: 'host-gw6', label: 'flanneld host-gw IPv6', backend: { Type: 'host-gw' }, ipv6: true,
    noFakePeerReason: IPV6_NO_FAKE_PEER, noProgramPeersReason: IPV6_NO_PROGRAM_PEERS, localOnly: IPV6_LOCAL_ONLY,
  },
  {
    id: 'flannel-host-gw6', label: `flannel ${REAL_FLANNEL_VERSION} host-gw IPv6`, backend: { Type: 'host-gw' }, daemon: 'flannel', ipv6: true,
    noFakePeerReason: IPV6_NO_FAKE_PEER, localOnly: REAL_FLANNEL_LOCAL_ONLY,
  },
  {
    id: 'vxlan6', label: 'flanneld vxlan (userspace) IPv6', backend: { Type: 'vxlan' }, ipv6: true,
    noFakePeerReason: IPV6_NO_FAKE_PEER, noProgramPeersReason: IPV6_NO_PROGRAM_PEERS, localOnly: IPV6_LOCAL_ONLY,
  },
  {
    id: 'vxlan-kernel6', label: 'flanneld vxlan (kernel) IPv6', backend: { Type: 'vxlan', Datapath: 'kernel' }, ipv6: true,
    noFakePeerReason: IPV6_NO_FAKE_PEER, noProgramPeersReason: IPV6_NO_PROGRAM_PEERS, localOnly: IPV6_LOCAL_ONLY,
  },
  {
    id: 'flannel-vxlan6', label: `flannel ${REAL_FLANNEL_VERSION} vxlan IPv6`, backend: { Type: 'vxlan' }, daemon: 'flannel', ipv6: true,
    noFakePeerReason: IPV6_NO_FAKE_PEER, localOnly: REAL_FLANNEL_LOCAL_ONLY,
  },
  {
    // flannel's default Mode separate: flannel-wg-v6 on ListenPortV6 over the IPv6 underlay
    id: 'wireguard6', label: 'flanneld wireguard IPv6', backend: { Type: 'wireguard' }, ipv6: true,
    noFakePeerReason: IPV6_NO_FAKE_PEER, noProgramPeersReason: IPV6_NO_PROGRAM_PEERS, localOnly: IPV6_LOCAL_ONLY,
  },
];

export function dataPathDef(id: DataPathId): DataPathDef {
  const def = DATAPATHS.find((d) => d.id === id);
  if (!def) throw new Error(`unknown data path ${id}`);
  return def;
}

/** One side of a measurement: where a program runs (namespace, or this host) and its address. */
export interface Endpoint {
  readonly ns: string | undefined;
  readonly ip: string;
}

/** A data path set up and ready to carry traffic from client to server. */
export interface ReadyPath {
  readonly client: Endpoint;
  readonly server: Endpoint;
  /** Process ids of every flanneld on this machine (empty for kernel-only paths). */
  readonly daemonPids: () => number[];
  /** Underlay mode: CPU seconds so far and peak RSS of the daemon on the other host. */
  readonly remoteUsage?: () => Promise<DaemonUsage>;
}

/** A snapshot of daemon cost: cumulative CPU seconds and peak RSS (MiB); null without a daemon. */
export interface DaemonUsage {
  readonly cpuSec: number | null;
  readonly peakRssMB: number | null;
}

/** Setup found that this build cannot run the data path (flanneld exit 69): not an error. */
export class UnavailableError extends Error {
  override readonly name = 'UnavailableError';
}
