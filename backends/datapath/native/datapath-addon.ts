// The typed surface of our packet-engine addon (backends/datapath/native/src). Calls are synchronous;
// failures throw an Error whose `code` is the errno name (ENOENT, EBUSY, …) and `syscall` says where.
import { loadAddon } from '../../../lib/load-addon.js';

export const TUN_FLAGS = { TAP: 1, VNET_HDR: 2, MULTI_QUEUE: 4 } as const;
/** TUNSETOFFLOAD bits from <linux/if_tun.h>. */
/** TUNSETOFFLOAD bits (<linux/if_tun.h>); the kernel takes USO4 and USO6 only together (Linux ≥ 6.2). */
export const TUN_OFFLOADS = { CSUM: 0x01, TSO4: 0x02, TSO6: 0x04, TSO_ECN: 0x08, USO4: 0x20, USO6: 0x40 } as const;
export const ENGINE_MODE = { UDP: 0, VXLAN: 1, WIREGUARD: 2 } as const;
export const PUMP = { IDLE: 0, STOPPED: 1 } as const;
/** pump() directions: device → UDP, UDP → device, or both on one thread. */
export const PUMP_DIRS = { TX: 1, RX: 2, BOTH: 3, LEAD: 4, ASSIST: 8 } as const;

/** An engine context; owned by the worker that created it. */
export type EngineHandle = { readonly __engine: unique symbol };

export interface EngineSpec {
  readonly mode: number;
  readonly devFd: number;
  readonly udpFd: number;
  readonly stopFd: number;
  readonly peerTable: Uint32Array;
  readonly stats: BigUint64Array;
  readonly devIp: number;
  readonly ownSubnet: number;
  readonly ownMask: number;
  readonly mtu: number;
  readonly vni: number;
  readonly devMac: Uint8Array;
  readonly txFds: Int32Array;
  /** The device has IFF_VNET_HDR and TSO: run the offload loops (GSO split, UDP GSO/GRO, coalescing). */
  readonly offload: boolean;
  /** USO is on too: UDP GSO packets come from the device and coalesced UDP datagrams may go to it. */
  readonly uso?: boolean;
  /** Stay busy this many µs after the last packet before sleeping in poll (0 or absent: never). */
  readonly spinUs?: number;
  /** The adaptive pair (PUMP_DIRS.LEAD/ASSIST), all three or none: one shared word, who serves RX (0 the lead,
   * 1 the assist), and the eventfds that wake the assist (join) and the lead (back). */
  readonly rxOwner?: Uint32Array;
  readonly joinFd?: number;
  readonly backFd?: number;
  /** wireguard mode: the shared keypair and peer state (layout.ts WG_*), over a SharedArrayBuffer. */
  readonly wgTable?: Uint8Array;
  /** wireguard mode: the write end of the pipe that carries handshake messages to the control plane. */
  readonly ctrlFd?: number;
  /** 4 (default) or 6: an IPv6 engine (vxlan mode: the IPv6 VTEP; wireguard mode: flannel-wg-v6) carries IPv6 frames over IPv6
   * sockets (udpOpen6) with a peer table of IPv6 entries, and needs devIp6, ownSubnet6 and ownPrefix6;
   * devIp, ownSubnet and ownMask are then unused (pass 0). */
  readonly family?: 4 | 6;
  /** wireguard mode, no offload: IPv4 and IPv6 inside one device (flannel-wg of the single-device modes),
   * `family` the outer one; needs both devIp/ownSubnet/ownMask and devIp6/ownSubnet6/ownPrefix6 and a
   * peer table of family 46. */
  readonly dual?: boolean;
  /** family 6: our device's IPv6 address (the source of ICMPv6 Packet Too Big), 16 bytes. */
  readonly devIp6?: Uint8Array;
  /** family 6: our IPv6 subnet (16 bytes) and its prefix length: received inner destinations must lie in it. */
  readonly ownSubnet6?: Uint8Array;
  readonly ownPrefix6?: number;
}

export interface EngineFeatures {
  readonly offload: boolean;
  readonly gso: boolean;
  readonly gro: boolean;
  readonly uso: boolean;
}

export interface DatapathAddon {
  tunOpen(name: string, flags: number): { fd: number; name: string };
  tunSetOffload(fd: number, offloads: number): void;
  /** net.ipv4.conf.<ifname>.<key> = value through rtnetlink, for where /proc/sys is read-only (an unprivileged container);
   * keys: accept_local, rp_filter, forwarding, send_redirects, accept_redirects. */
  ipv4DevconfSet(ifname: string, key: string, value: number): void;
  udpOpen(ip: number, port: number, reusePort: boolean, bufBytes: number): number;
  /** An AF_INET6 socket bound to ip (16 bytes, network order):port, IPV6_V6ONLY; bound to :: (all zeros) it serves
   * both families (IPv4 peers as ::ffff:a.b.c.d). Also accepts datagrams without a UDP checksum. */
  udpOpen6(ip: Uint8Array, port: number, reusePort: boolean, bufBytes: number): number;
  /** A non-blocking pipe: [readFd, writeFd]. */
  pipeOpen(): [number, number];
  /** One datagram out of the bound UDP socket `fd` to ip:port (host order), not waiting; throws with the errno (EAGAIN: buffer full). */
  udpSendTo(fd: number, bytes: Uint8Array, ip: number, port: number): number;
  /** The same out of an AF_INET6 socket (udpOpen6) to [ip]:port, ip 16 bytes in network order. */
  udpSendTo6(fd: number, bytes: Uint8Array, ip: Uint8Array, port: number): number;
  /** Keyed BLAKE2s (key 1-32 bytes, output outLen 1-32 bytes) from Node's libcrypto (EVP_MAC BLAKE2SMAC). */
  blake2sMac(key: Uint8Array, input: Uint8Array, outLen: number): Buffer;
  /** Datagrams the kernel dropped at UDP socket `fd` since it was opened (receive buffer full): SO_MEMINFO's SK_MEMINFO_DROPS. */
  socketDrops(fd: number): number;
  eventfdOpen(): number;
  eventfdSignal(fd: number): void;
  closeFd(fd: number): void;
  engineCreate(spec: EngineSpec): EngineHandle;
  engineFeatures(engine: EngineHandle): EngineFeatures;
  /** Moves packets in `dirs` (PUMP_DIRS); returns PUMP.IDLE after `timeoutMs` idle or `maxBatches` steps, PUMP.STOPPED on stop. */
  pump(engine: EngineHandle, dirs: number, timeoutMs: number, maxBatches: number): number;
  engineDestroy(engine: EngineHandle): void;
}

let addon: DatapathAddon | undefined;

export function datapathAddon(): DatapathAddon {
  addon ??= loadAddon<DatapathAddon>('flannel_datapath');
  return addon;
}
