// The userspace VTEP: a TAP device flannel.<VNI> whose frames our packet engine carries in VXLAN.
// The FDB (VtepMAC → PublicIP) lives in the engine's peer table.
//
// IPv6 (dual-stack, issue #18): a second VTEP flannel-v6.<VNI>, carried by a second engine of family 6,
// wire-compatible with flannel's kernel device of that name (VXLAN over IPv6, same VNI and port):
//
//   const v6 = await UserspaceVtep.create({
//     family: 6, name: `flannel-v6.${vni}`, mac: <IPv6 VtepMAC>, mtu: <underlay MTU − 70>, vni, port: 8472,
//     bindIp6: <the node's external IPv6 address>, subnet6: <the lease's IPv6Subnet (Cidr6)>,
//     capacity, offload, queues, threading?, log });          // → UserspaceVtep<VxlanPeer6>
//   await v6.setPeers([{ key, subnet: <peer IPv6Subnet>, publicIp: <peer PublicIPv6>, mac: <peer IPv6 VtepMAC>, partialChecksums }]);
//
// The device gets <own IPv6 subnet IP>/128 (nodad), accept_ra 0 and IPv6 enabled; its sockets are
// AF_INET6 (IPV6_V6ONLY) bound to bindIp6 and the port. The backend programs the kernel side as flannel
// does for its kernel device, minus the FDB (withFdb is false; the engine holds it): a permanent
// neighbour <peer IPv6 subnet IP> lladdr <peer IPv6 VtepMAC> and a route <peer IPv6 subnet> via <peer IPv6
// subnet IP> dev flannel-v6.<VNI> onlink. The MTU must be at least 1280 (IPv6's minimum; else
// FLN_ERR_CONFIG_INVALID). setPeers of the IPv6 VTEP takes VxlanPeer6 (vtep.ts); stats(), ensureDevice(),
// crashWorker() and close() are as for the IPv4 VTEP, and the two engines' counters are separate.
//
// Both: a TAP device deleted by hand is re-created by the next reconcile (EngineDataPath), which then
// replays neighbours and routes.
// A kernel VXLAN device of the same name (flannel's, or ours with the kernel data path: both outlive
// the daemon) is removed first, as TUNSETIFF refuses a name held by another kind of device; this is
// what migrating a node from flannel's vxlan to the userspace VTEP runs into.
import type { Logger } from 'pino';
import { runChecked, runCommand } from '../../lib/run-command.js';
import { type Cidr4, formatIp4, maskOf } from '../../lib/ip.js';
import { type Cidr6, type Ip6, formatIp6 } from '../../lib/ip6.js';
import { FlannelError } from '../../lib/errors.js';
import type { DatapathStats, DatapathThreading, ExternalInterface } from '../backend.js';
import { EngineDataPath } from '../datapath/engine-datapath.js';
import { ENGINE_MODE } from '../datapath/native/datapath-addon.js';
import { ip6Bytes } from '../datapath/peer-table.js';
import type { VxlanPeer, VxlanPeer6, Vtep } from './vtep.js';
import { macToBytes } from './vtep-mac.js';


export interface UserspaceVtepOptions {
  readonly family?: 4;
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
  readonly vni: number;
  readonly port: number;
  readonly ext: ExternalInterface;
  /** Our lease's IPv4 subnet: the device address is its first address /32. */
  readonly subnet: Cidr4;
  readonly capacity: number;
  readonly offload: boolean;
  readonly queues: number;
  readonly threading?: DatapathThreading;
  readonly log: Logger;
}

/** The IPv6 VTEP (flannel-v6.<VNI>): see the file header. */
export interface UserspaceVtep6Options {
  readonly family: 6;
  /** flannel-v6.<VNI> */
  readonly name: string;
  /** The IPv6 VtepMAC (locally administered, unicast). */
  readonly mac: string;
  /** At least 1280; flannel: the underlay MTU − 70 (IPv6 40 + UDP 8 + VXLAN 8 + Ethernet 14). */
  readonly mtu: number;
  readonly vni: number;
  readonly port: number;
  /** The node's external IPv6 address: the sockets' bind address (the kernel device's `local`). */
  readonly bindIp6: Ip6;
  /** The lease's IPv6 subnet: the device gets its first address (the subnet IP)/128; received inner
   * destinations must lie in it. */
  readonly subnet6: Cidr6;
  readonly capacity: number;
  readonly offload: boolean;
  readonly queues: number;
  readonly threading?: DatapathThreading;
  readonly log: Logger;
}

const IPV6_MIN_MTU = 1280;

export class UserspaceVtep<P extends VxlanPeer | VxlanPeer6 = VxlanPeer> implements Vtep<P> {
  readonly withFdb = false;
  private constructor(readonly device: string, private readonly dataPath: EngineDataPath, private readonly port: number, readonly family: 4 | 6) {}

  static create(o: UserspaceVtepOptions): Promise<UserspaceVtep<VxlanPeer>>;
  static create(o: UserspaceVtep6Options): Promise<UserspaceVtep<VxlanPeer6>>;
  static async create(o: UserspaceVtepOptions | UserspaceVtep6Options): Promise<UserspaceVtep<VxlanPeer> | UserspaceVtep<VxlanPeer6>> {
    if (o.family === 6) return UserspaceVtep.create6(o);
    await removeNonTapDevice(o.name, o.log);
    const dataPath = await EngineDataPath.open({
      device: { name: o.name, tap: true, offload: o.offload, queues: o.queues, bindIp: o.ext.ip, port: o.port },
      settings: {
        mac: o.mac, address: `${formatIp4(o.subnet.ip)}/32`, mtu: o.mtu,
        sysctls: { 'ipv6/disable_ipv6': '1' }, // no IPv6 chatter (RS, MLD) to drop on an IPv4 overlay
      },
      spec: {
        mode: ENGINE_MODE.VXLAN, devIp: o.subnet.ip, ownSubnet: o.subnet.ip,
        ownMask: maskOf(o.subnet.prefixLen), mtu: o.mtu, vni: o.vni, devMac: macToBytes(o.mac),
      },
      capacity: o.capacity,
      ...(o.threading ? { threading: o.threading } : {}),
      log: o.log,
    });
    return new UserspaceVtep<VxlanPeer>(dataPath.name, dataPath, o.port, 4);
  }

  private static async create6(o: UserspaceVtep6Options): Promise<UserspaceVtep<VxlanPeer6>> {
    if (o.mtu < IPV6_MIN_MTU) throw new FlannelError('FLN_ERR_CONFIG_INVALID', `the IPv6 VTEP ${o.name} needs an MTU of at least ${IPV6_MIN_MTU}, not ${o.mtu}: raise the underlay MTU`);
    await removeNonTapDevice(o.name, o.log);
    const dataPath = await EngineDataPath.open({
      device: { name: o.name, tap: true, offload: o.offload, queues: o.queues, bindIp: 0, bindIp6: o.bindIp6, port: o.port },
      settings: {
        mac: o.mac, address: `${formatIp6(o.subnet6.ip)}/128`, mtu: o.mtu,
        sysctls: { 'ipv6/disable_ipv6': '0', 'ipv6/accept_ra': '0' },
      },
      spec: {
        mode: ENGINE_MODE.VXLAN, family: 6, devIp: 0, ownSubnet: 0, ownMask: 0,
        devIp6: ip6Bytes(o.subnet6.ip), ownSubnet6: ip6Bytes(o.subnet6.ip), ownPrefix6: o.subnet6.prefixLen,
        mtu: o.mtu, vni: o.vni, devMac: macToBytes(o.mac),
      },
      capacity: o.capacity,
      ...(o.threading ? { threading: o.threading } : {}),
      log: o.log,
    });
    return new UserspaceVtep<VxlanPeer6>(dataPath.name, dataPath, o.port, 6);
  }

  async setPeers(peers: readonly P[]): Promise<void> {
    if (this.family === 6) {
      this.dataPath.replacePeers((peers as readonly VxlanPeer6[]).map((p) => ({
        key: p.key, subnet: p.subnet.ip, prefixLen: p.subnet.prefixLen, publicIp: p.publicIp, port: this.port, mac: macToBytes(p.mac),
        partialChecksums: p.partialChecksums,
      })));
      return;
    }
    this.dataPath.replacePeers((peers as readonly VxlanPeer[]).map((p) => ({
      key: p.key, subnet: p.subnet.ip, prefixLen: p.subnet.prefixLen, publicIp: p.publicIp, port: this.port, mac: macToBytes(p.mac),
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
