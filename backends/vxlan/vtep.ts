// What the vxlan network needs from a VTEP, whichever data path carries the frames.
import type { Cidr4, Ip4 } from '../../lib/ip.js';
import type { Cidr6, Ip6 } from '../../lib/ip6.js';
import type { DatapathStats } from '../backend.js';

/** A peer of one VTEP: IPv4 addresses for flannel.<VNI>, IPv6 ones for flannel-v6.<VNI>. */
export interface VxlanPeer {
  /** The lease's IPv4 subnet, naming the peer in either family. */
  readonly key: string;
  readonly subnet: Cidr4 | Cidr6;
  readonly publicIp: Ip4 | Ip6;
  readonly mac: string;
  /** The peer's lease advertises AcceptsPartialChecksums (a flannel-ts userspace engine). */
  readonly partialChecksums: boolean;
}

export interface Vtep {
  /** The device name, flannel.<VNI>. */
  readonly device: string;
  /** Whether the kernel needs FDB entries (a kernel VXLAN device) or the engine holds them. */
  readonly withFdb: boolean;
  /** Hands the overlay peers to the data path (the userspace engine's table; nothing for the kernel). */
  setPeers(peers: readonly VxlanPeer[]): Promise<void>;
  /** Re-creates or re-configures the device if needed; returns how many things were fixed. */
  ensureDevice(): Promise<number>;
  stats?(peers: readonly string[]): DatapathStats;
  crashWorker?(direction: 'tx' | 'rx'): void;
  close(): Promise<void>;
}
