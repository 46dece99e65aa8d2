// The userspace VTEP: a TAP device flannel.<VNI> whose frames our packet engine carries in VXLAN.
// The FDB (VtepMAC → PublicIP) lives in the engine's peer table; outer source ports come from
// a small pool of sockets picked by inner-flow hash, as the kernel spreads flows for RSS.
import type { Logger } from 'pino';
import { formatIp4, maskOf } from '../../subnet/ip.js';
import type { Lease } from '../../subnet/lease.js';
import type { DatapathStats, ExternalInterface } from '../backend.js';
import { DeviceState } from '../datapath/device-state.js';
import { ENGINE_MODE, datapathAddon } from '../datapath/native/datapath-addon.js';
import { openDevice } from '../datapath/open-device.js';
import { PacketEngine } from '../datapath/packet-engine.js';
import { PeerTable } from '../datapath/peer-table.js';
import type { VxlanPeer, Vtep } from './vtep.js';
import { macToBytes } from './vtep-mac.js';

const SOURCE_PORT_SOCKETS = 8;
const SOCKET_BUFFER_BYTES = 4 << 20;

export interface UserspaceVtepOptions {
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
  readonly vni: number;
  readonly port: number;
  readonly ext: ExternalInterface;
  readonly lease: Lease;
  readonly capacity: number;
  readonly offload: boolean;
  readonly log: Logger;
}

export class UserspaceVtep implements Vtep {
  readonly withFdb = false;
  private constructor(readonly device: string, private readonly state: DeviceState, private readonly engine: PacketEngine,
    private readonly fds: number[], private readonly port: number) {}

  static async create(o: UserspaceVtepOptions): Promise<UserspaceVtep> {
    const addon = datapathAddon();
    const tap = openDevice({ name: o.name, tap: true, offload: o.offload, log: o.log });
    const fds = [tap.fd];
    try {
      const state = new DeviceState({
        name: tap.name, mac: o.mac, address: `${formatIp4(o.lease.subnet.ip)}/32`, mtu: o.mtu,
        sysctls: { 'ipv6/disable_ipv6': '1' }, // no IPv6 chatter (RS, MLD) to drop on an IPv4 overlay
      });
      await state.ensure();
      const udpFd = addon.udpOpen(o.ext.ip, o.port, false, SOCKET_BUFFER_BYTES);
      fds.push(udpFd);
      const txFds = Int32Array.from({ length: SOURCE_PORT_SOCKETS }, () => {
        const fd = addon.udpOpen(o.ext.ip, 0, false, SOCKET_BUFFER_BYTES);
        fds.push(fd);
        return fd;
      });
      const engine = new PacketEngine({
        table: new PeerTable(o.capacity), log: o.log,
        spec: {
          mode: ENGINE_MODE.VXLAN, devFd: tap.fd, udpFd, devIp: o.lease.subnet.ip, ownSubnet: o.lease.subnet.ip,
          ownMask: maskOf(o.lease.subnet.prefixLen), mtu: o.mtu, vni: o.vni, devMac: macToBytes(o.mac), txFds, offload: tap.offload,
        },
      });
      await engine.start();
      return new UserspaceVtep(tap.name, state, engine, fds, o.port);
    } catch (err) {
      for (const fd of fds) addon.closeFd(fd);
      throw err;
    }
  }

  async setPeers(peers: readonly VxlanPeer[]): Promise<void> {
    this.engine.replacePeers(peers.map((p) => ({
      key: p.key, subnet: p.subnet.ip, prefixLen: p.subnet.prefixLen, publicIp: p.publicIp, port: this.port, mac: macToBytes(p.mac),
    })));
  }

  async ensureDevice(): Promise<number> {
    return this.state.ensure();
  }

  stats(peers: readonly string[]): DatapathStats {
    return {
      counters: this.engine.stats(),
      peers: peers.flatMap((peer) => {
        const counters = this.engine.peerStats(peer);
        return counters ? [{ peer, counters }] : [];
      }),
      workerRestarts: this.engine.restarts,
    };
  }

  crashWorker(direction: 'tx' | 'rx'): void {
    this.engine.crashWorker(direction);
  }

  async close(): Promise<void> {
    await this.engine.stop();
    const addon = datapathAddon();
    for (const fd of this.fds.splice(0)) addon.closeFd(fd);
  }
}
