// The narrow contract between flanneld and a backend. A backend never sees etcd: flanneld hands it
// the network config, the chosen interface, and lease events; it returns what our lease advertises.
import type { Logger } from 'pino';
import { FlannelError } from '../lib/errors.js';
import type { Cidr4, Ip4 } from '../lib/ip.js';
import type { Ip6 } from '../lib/ip6.js';
import type { Lease, LeaseAttrs, LeaseEvent } from '../subnet/lease.js';
import type { BackendType, Ipv4Pool, NetworkConfig } from '../subnet/network-config.js';

// The one door from backends/ to subnet/: what a backend may know of leases and the network config.
export type { Lease, LeaseAttrs, LeaseEvent, BackendType, Ipv4Pool, NetworkConfig };
export { describeSubnets, leaseIdentity, sameAttrs } from '../subnet/lease.js';

/** The IPv4 pool and our lease's IPv4 subnet, for a backend that runs IPv4; FLN_ERR_BACKEND_UNSUPPORTED without them (IPv6-only). */
export function ipv4Of(config: NetworkConfig, lease: Lease): { pool: Ipv4Pool; subnet: Cidr4 } {
  if (!config.ipv4 || !lease.subnet) {
    throw new FlannelError('FLN_ERR_BACKEND_UNSUPPORTED', 'this backend needs IPv4 (EnableIPv4), but the network config is IPv6-only: use host-gw or vxlan for IPv6-only, or enable IPv4');
  }
  return { pool: config.ipv4, subnet: lease.subnet };
}

export interface ExternalInterface {
  readonly name: string;
  readonly index: number;
  /** The interface's own IPv4 address (flannel's IfaceAddr); 0 (0.0.0.0) in an IPv6-only network. */
  readonly ip: Ip4;
  /** The node's identity in etcd: --public-ip, or the interface address; 0 (0.0.0.0) in an IPv6-only network. */
  readonly publicIp: Ip4;
  /** With IPv6 enabled: the interface's own IPv6 address (flannel's IfaceV6Addr). */
  readonly ip6?: Ip6;
  /** With IPv6 enabled: PublicIPv6 in our lease, --public-ipv6 or ip6 (the node's identity in an IPv6-only network). */
  readonly publicIp6?: Ip6;
  readonly mtu: number;
}

export interface BackendContext {
  readonly ext: ExternalInterface;
  readonly config: NetworkConfig;
  readonly log: Logger;
  /** Userspace data paths: whether to try the offload loops (--datapath-offload); default true. */
  readonly offload?: boolean;
  /** Userspace data paths: device queues (--datapath-queues); default 1. */
  readonly queues?: number;
  /** Userspace data paths: how each queue's packets are moved (--datapath-threads, --datapath-spin-us). */
  readonly threading?: DatapathThreading;
}

/** Per device queue: one worker serving both directions ('shared'), a TX and an RX worker ('pair'), or
 * one worker that serves both directions while traffic is light and lends RX to a second one under load
 * ('adaptive'); `spinUs`: how long a worker stays busy after traffic before it sleeps in poll. */
export interface DatapathThreading {
  readonly workers: 'shared' | 'pair' | 'adaptive';
  readonly spinUs: number;
}

export interface Backend {
  readonly type: BackendType;
  /** MTU for pods (FLANNEL_MTU): the interface MTU minus this backend's encapsulation. */
  readonly mtu: number;
  /** Sets up local devices if any, and returns what our lease must advertise. */
  prepare(): Promise<LeaseAttrs>;
  /** Our lease is held: finish local setup and return the running network. */
  start(lease: Lease): Promise<Network>;
}

export interface ReconcileResult {
  readonly fixed: number;
  readonly removed: number;
  readonly failed: number;
}

export interface Network {
  readonly lease: Lease;
  /** Brings the data path in step with peer lease events. Idempotent; applied in call order. */
  apply(events: readonly LeaseEvent[]): Promise<void>;
  /** Converges kernel state to the desired peer set: re-adds what vanished, removes stale state we own. */
  reconcile(): Promise<ReconcileResult>;
  /** Stops background work; kernel state is left in place so a restart does not interrupt traffic. */
  close(): Promise<void>;
  /** Userspace data paths only: counters read from shared memory (no call into the packet loops). */
  datapathStats?(): DatapathStats;
  /** Userspace data paths only, fault injection for tests: makes a packet-engine worker crash. */
  crashWorker?(direction: 'tx' | 'rx'): void;
}

export interface DatapathStats {
  /** Engine-wide counters by name: tx_packets, rx_bytes, drop_<reason>, … */
  readonly counters: Readonly<Record<string, bigint>>;
  readonly peers: ReadonlyArray<{ readonly peer: string; readonly counters: Readonly<Record<string, bigint>> }>;
  readonly workerRestarts: number;
  /** Backends with a handshake (wireguard): its counters and each peer's last handshake. */
  readonly handshake?: HandshakeStats;
  /** What the kernel dropped on the data path's doorsteps, read when asked: each TUN/TAP device's
   * tx_dropped (its queue towards the engine was full) and rx_dropped, and the datagrams dropped at the
   * engine's UDP sockets (receive buffer full; SO_MEMINFO), all since the data path started. */
  readonly kernelDrops?: KernelDrops;
}

export interface KernelDrops {
  readonly devices: ReadonlyArray<{ readonly device: string; readonly txDropped: bigint; readonly rxDropped: bigint }>;
  readonly socketReceive: bigint;
}

export interface HandshakeStats {
  /** Handshake-layer messages by direction ('sent' | 'received') and type (initiation, response, cookie_reply, keepalive, …). */
  readonly messages: ReadonlyArray<{ readonly direction: 'sent' | 'received'; readonly type: string; readonly count: number }>;
  /** Dropped handshake messages by reason. */
  readonly drops: Readonly<Record<string, number>>;
  readonly completed: number;
  /** Handshakes given up after REKEY_ATTEMPT_TIME without an answer. */
  readonly givenUp: number;
  readonly underLoad: boolean;
  readonly peers: ReadonlyArray<{ readonly peer: string; readonly lastHandshakeUnix: number; readonly keypairAgeSeconds: number | undefined }>;
}
