// The userspace VTEP: a TAP device flannel.<VNI> whose frames our packet engine carries in VXLAN.
// The FDB (VtepMAC → PublicIP) lives in the engine's peer table. A TAP device deleted by hand is
// re-created by the next reconcile (EngineDataPath), which then replays neighbours and routes.
// A kernel VXLAN device of the same name (flannel's, or ours with the kernel data path: both outlive
// the daemon) is removed first, as TUNSETIFF refuses a name held by another kind of device; this is
// what migrating a node from flannel's vxlan to the userspace VTEP runs into.
import type { Logger } from 'pino';
import { runChecked, runCommand } from '../../lib/run-command.js';
import { type Cidr4, type Ip4, formatIp4, maskOf } from '../../lib/ip.js';
import type { Lease } from '../backend.js';
import type { DatapathStats, DatapathThreading, ExternalInterface } from '../backend.js';
import { EngineDataPath } from '../datapath/engine-datapath.js';
import { ENGINE_MODE } from '../datapath/native/datapath-addon.js';
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
  readonly threading?: DatapathThreading;
  readonly log: Logger;
}

export class UserspaceVtep implements Vtep {
  readonly withFdb = false;
  private constructor(readonly device: string, private readonly dataPath: EngineDataPath, private readonly port: number) {}

  static async create(o: UserspaceVtepOptions): Promise<UserspaceVtep> {
    await removeNonTapDevice(o.name, o.log);
    const dataPath = await EngineDataPath.open({
      device: { name: o.name, tap: true, offload: o.offload, queues: o.queues, bindIp: o.ext.ip, port: o.port },
      settings: {
        mac: o.mac, address: `${formatIp4(o.lease.subnet.ip)}/32`, mtu: o.mtu,
        sysctls: { 'ipv6/disable_ipv6': '1' }, // no IPv6 chatter (RS, MLD) to drop on an IPv4 overlay
      },
      spec: {
        mode: ENGINE_MODE.VXLAN, devIp: o.lease.subnet.ip, ownSubnet: o.lease.subnet.ip,
        ownMask: maskOf(o.lease.subnet.prefixLen), mtu: o.mtu, vni: o.vni, devMac: macToBytes(o.mac),
      },
      capacity: o.capacity,
      ...(o.threading ? { threading: o.threading } : {}),
      log: o.log,
    });
    return new UserspaceVtep(dataPath.name, dataPath, o.port);
  }

  async setPeers(peers: readonly VxlanPeer[]): Promise<void> {
    this.dataPath.replacePeers(peers.map((p) => ({
      key: p.key, subnet: (p.subnet as Cidr4).ip, prefixLen: p.subnet.prefixLen, publicIp: p.publicIp as Ip4, port: this.port, mac: macToBytes(p.mac),
      partialChecksums: p.partialChecksums,
    })));
  }

  /** The TAP device's settings; the device itself if it was deleted (the caller then replays neighbours and routes). */
  async ensureDevice(): Promise<number> {
    return this.dataPath.ensure();
  }

  stats(peers: readonly string[]): DatapathStats {
    return this.dataPath.datapathStats(peers);
  }

  crashWorker(direction: 'tx' | 'rx'): void {
    this.dataPath.crashWorker(direction);
  }

  async close(): Promise<void> {
    await this.dataPath.close();
  }
}

/** Deletes `name` if it exists and is not a TUN/TAP device (e.g. a kernel VXLAN device left by flannel). */
async function removeNonTapDevice(name: string, log: Logger): Promise<void> {
  const r = await runCommand('ip', ['-d', '-j', 'link', 'show', 'dev', name]);
  if (r.code !== 0) return;
  const kind = (JSON.parse(r.stdout || '[]') as Array<{ linkinfo?: { info_kind?: string } }>)[0]?.linkinfo?.info_kind;
  if (kind === 'tun') return;
  log.warn({ device: name, kind: kind ?? 'unknown' }, 'replacing an existing device of this name (e.g. a kernel VXLAN device left by flannel) with the userspace VTEP');
  await runChecked('ip', ['link', 'del', 'dev', name], `delete ${name}`);
}
