// The data paths the harness compares, and what they need. A flanneld data path is just its
// Backend JSON: when a backend lands in the daemon, the harness measures it with no change here.
import type { DataPathId } from '../report/result-types.js';

export interface DataPathDef {
  readonly id: DataPathId;
  readonly label: string;
  /** Backend object of the network config; undefined for the paths built by hand (no daemon). */
  readonly backend?: Readonly<Record<string, unknown>>;
  /** How the lease→first-packet benchmark fakes a peer of this backend; undefined: not measured. */
  readonly fakePeer?: 'host-gw' | 'vxlan';
  /** Why lease→first-packet does not apply. */
  readonly noFakePeerReason?: string;
  /** Why the path cannot be built between two real hosts (--underlay); undefined: it can. */
  readonly localOnly?: string;
}

export const OVERLAY_NETWORK = '10.244.0.0/16';

export const DATAPATHS: readonly DataPathDef[] = [
  { id: 'raw', label: 'raw veth (no overlay)', noFakePeerReason: 'no daemon' },
  { id: 'kernel-vxlan', label: 'kernel VXLAN by hand (ref)', noFakePeerReason: 'no daemon' },
  { id: 'host-gw', label: 'flanneld host-gw', backend: { Type: 'host-gw' }, fakePeer: 'host-gw' },
  {
    id: 'tun-relay', label: 'TUN relay (user ceiling)', noFakePeerReason: 'no daemon',
    localOnly: 'one process holds a TUN device on both nodes, so both must be namespaces of one machine',
  },
  {
    id: 'udp', label: 'flanneld udp', backend: { Type: 'udp' },
    noFakePeerReason: 'a udp peer is a userspace endpoint (a flanneld), not something a lease alone can fake',
  },
  { id: 'vxlan', label: 'flanneld vxlan (userspace)', backend: { Type: 'vxlan' }, fakePeer: 'vxlan' },
  { id: 'vxlan-kernel', label: 'flanneld vxlan (kernel)', backend: { Type: 'vxlan', Datapath: 'kernel' }, fakePeer: 'vxlan' },
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
