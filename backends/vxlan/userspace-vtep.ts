// The userspace VTEP: a TAP device flannel.<VNI> whose frames our packet engine carries in VXLAN.
// The FDB (VtepMAC → PublicIP) lives in the engine's peer table.
import type { Logger } from 'pino';
import { formatIp4, maskOf } from '../../subnet/ip.js';
import type { Lease } from '../../subnet/lease.js';
import type { DatapathStats, ExternalInterface } from '../backend.js';
import { DeviceState } from '../datapath/device-state.js';
import { ENGINE_MODE, datapathAddon } from '../datapath/native/datapath-addon.js';
import { openEngineDevice } from '../datapath/open-device.js';
import { PacketEngine } from '../datapath/packet-engine.js';
import { PeerTable } from '../datapath/peer-table.js';
import type { VxlanPeer, Vtep } from './vtep.js';
import { macToBytes } from './vtep-mac.js';


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
  readonly queues: number;
  readonly log: Logger;
}

export class UserspaceVtep implements Vtep {
  readonly withFdb = false;
  private constructor(readonly device: string, private readonly state: DeviceState, private readonly engine: PacketEngine,
    private readonly fds: number[], private readonly port: number) {}

  static async create(o: UserspaceVtepOptions): Promise<UserspaceVtep> {
    const dev = openEngineDevice({ name: o.name, tap: true, offload: o.offload, queues: o.queues, bindIp: o.ext.ip, port: o.port, log: o.log });
    try {
      const state = new DeviceState({
        name: dev.name, mac: o.mac, address: `${formatIp4(o.lease.subnet.ip)}/32`, mtu: o.mtu,
        sysctls: { 'ipv6/disable_ipv6': '1' }, // no IPv6 chatter (RS, MLD) to drop on an IPv4 overlay
      });
      await state.ensure();
      const engine = new PacketEngine({
        table: new PeerTable(o.capacity, dev.queues.length), queues: dev.queues, log: o.log,
        spec: {
          mode: ENGINE_MODE.VXLAN, devIp: o.lease.subnet.ip, ownSubnet: o.lease.subnet.ip,
          ownMask: maskOf(o.lease.subnet.prefixLen), mtu: o.mtu, vni: o.vni, devMac: macToBytes(o.mac), offload: dev.offload,
        },
      });
      await engine.start();
      return new UserspaceVtep(dev.name, state, engine, dev.fds, o.port);
    } catch (err) {
      for (const fd of dev.fds) datapathAddon().closeFd(fd);
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
    return this.engine.datapathStats(peers);
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
