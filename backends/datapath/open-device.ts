// Opens what a userspace backend's packet engine runs on: the TUN or TAP device (one fd per queue,
// IFF_MULTI_QUEUE when there are several), one receiving UDP socket per queue (SO_REUSEPORT), and
// a small pool of sending sockets on different source ports, picked per inner flow so that the
// receiver's SO_REUSEPORT and RSS spread the load. With offloads wanted it asks for IFF_VNET_HDR
// and TSO, and USO where the kernel has it; a kernel or device that refuses TSO gets the per-packet
// path, one without USO the offload path without UDP coalescing, and the log says so.
import type { Logger } from 'pino';
import type { Ip4 } from '../../lib/ip.js';
import type { Ip6 } from '../../lib/ip6.js';
import { ip6Bytes } from './peer-table.js';
import type { EngineQueue } from './packet-engine.js';
import { TUN_FLAGS, TUN_OFFLOADS, datapathAddon } from './native/datapath-addon.js';

const SOURCE_PORT_SOCKETS = 8;
const SOCKET_BUFFER_BYTES = 4 << 20;

export interface EngineDevice {
  readonly name: string;
  /** IFF_VNET_HDR and TSO are on: the engine must run its offload loops. */
  readonly offload: boolean;
  /** USO is on as well (Linux ≥ 6.2): UDP datagrams are split and coalesced too. */
  readonly uso: boolean;
  readonly queues: EngineQueue[];
  /** Every fd opened here, to close when the network stops (the device goes with its last fd). */
  readonly fds: number[];
}

export interface OpenEngineDeviceOptions {
  readonly name: string;
  readonly tap: boolean;
  readonly offload: boolean;
  readonly queues: number;
  readonly bindIp: Ip4;
  /** An IPv6 engine (the IPv6 VTEP): its sockets are AF_INET6, bound to this address (bindIp is then
   * unused), and the device is asked for TSO6 instead of TSO4. 0n (::): sockets of both families, IPv4 peers
   * as ::ffff:a.b.c.d (wireguard's Mode auto). */
  readonly bindIp6?: Ip6;
  readonly port: number;
  /** Sending sockets on other source ports, picked per flow (default 8); 0: every datagram leaves from
   * the queue's listening socket (wireguard: a peer learns our endpoint from the source of our packets). */
  readonly sourcePortSockets?: number;
  readonly log: Logger;
}

export function openEngineDevice(o: OpenEngineDeviceOptions): EngineDevice {
  const addon = datapathAddon();
  const fds: number[] = [];
  try {
    const first = openQueue(o, o.offload, true);
    fds.push(first.fd);
    const devFds = [first.fd];
    for (let q = 1; q < o.queues; q++) {
      const more = openQueue(o, first.offload, first.uso);
      fds.push(more.fd);
      devFds.push(more.fd);
    }
    const udpOpen = (port: number, reuse: boolean): number => o.bindIp6 !== undefined
      ? addon.udpOpen6(ip6Bytes(o.bindIp6), port, reuse, SOCKET_BUFFER_BYTES)
      : addon.udpOpen(o.bindIp, port, reuse, SOCKET_BUFFER_BYTES);
    const txFds = Int32Array.from({ length: o.sourcePortSockets ?? SOURCE_PORT_SOCKETS }, () => {
      const fd = udpOpen(0, false);
      fds.push(fd);
      return fd;
    });
    const queues = devFds.map((devFd) => {
      const udpFd = udpOpen(o.port, o.queues > 1);
      fds.push(udpFd);
      return { devFd, udpFd, txFds };
    });
    return { name: first.name, offload: first.offload, uso: first.uso, queues, fds };
  } catch (err) {
    for (const fd of fds) addon.closeFd(fd);
    throw err;
  }
}

/** One queue of the device, with offloads (and USO) when wanted and available. */
function openQueue(o: OpenEngineDeviceOptions, offload: boolean, uso: boolean): { fd: number; name: string; offload: boolean; uso: boolean } {
  const addon = datapathAddon();
  const base = (o.tap ? TUN_FLAGS.TAP : 0) | (o.queues > 1 ? TUN_FLAGS.MULTI_QUEUE : 0);
  if (!offload) {
    if (!o.offload) o.log.info({ device: o.name }, 'offloads disabled by --datapath-offload=false: using the per-packet path');
    return { ...addon.tunOpen(o.name, base), offload: false, uso: false };
  }
  let dev: { fd: number; name: string };
  try {
    dev = addon.tunOpen(o.name, base | TUN_FLAGS.VNET_HDR);
  } catch (err) {
    o.log.warn({ device: o.name, err: (err as Error).message }, 'IFF_VNET_HDR is not available: falling back to the per-packet path');
    return { ...addon.tunOpen(o.name, base), offload: false, uso: false };
  }
  const tso = TUN_OFFLOADS.CSUM | (o.bindIp6 !== undefined ? TUN_OFFLOADS.TSO6 : TUN_OFFLOADS.TSO4);
  if (uso) {
    try {
      addon.tunSetOffload(dev.fd, tso | TUN_OFFLOADS.USO4 | TUN_OFFLOADS.USO6);
      return { ...dev, offload: true, uso: true };
    } catch (err) {
      o.log.info({ device: o.name, err: (err as Error).message }, 'USO is not available (Linux < 6.2): UDP datagrams are sent and written one by one');
    }
  }
  try {
    addon.tunSetOffload(dev.fd, tso);
    return { ...dev, offload: true, uso: false };
  } catch (err) {
    o.log.warn({ device: o.name, err: (err as Error).message }, `TUNSETOFFLOAD (checksum, ${o.bindIp6 !== undefined ? 'TSO6' : 'TSO4'}) was refused: falling back to the per-packet path`);
    addon.closeFd(dev.fd);
    return { ...addon.tunOpen(o.name, base), offload: false, uso: false };
  }
}
