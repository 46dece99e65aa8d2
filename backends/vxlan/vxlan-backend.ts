// vxlan: flannel's default backend. Each node has a VTEP flannel.<VNI> (address = subnet.0/32,
// MTU = (Backend.MTU or ext) − 50) and publishes {"VNI":…,"VtepMAC":…} in its lease; the per-peer
// neighbours, FDB entries and routes are VxlanNetwork's (vxlan-network.ts). Two data paths:
//  - userspace (default): a TAP VTEP whose frames our packet engine carries, wire-compatible with
//    the kernel's VXLAN;
//  - kernel ("Datapath": "kernel"): a kernel VXLAN device exactly as flannel creates it.
// Dual-stack (EnableIPv6), as flannel: a second VTEP flannel-v6.<VNI> carries IPv6 over the IPv6
// underlay, advertised as PublicIPv6 and BackendV6Data {"VNI":…,"VtepMAC":…}. Its MTU is 70 bytes
// under the underlay's (an IPv6 outer header is 20 bytes longer), and pods get that smaller MTU
// (FLANNEL_MTU; flannel leaves it 50 under, so its pods' full-size IPv6 packets do not fit its device).
// On the userspace data path flannel-v6.<VNI> is a second TAP VTEP carried by an engine of family 6
// (IPv6 inside and outside), wire-compatible with flannel's kernel device.
// IPv6-only (EnableIPv4 false): flannel-v6.<VNI> alone; the lease has BackendV6Data and no BackendData.
import type { Logger } from 'pino';
import { FlannelError, errorMessage } from '../../lib/errors.js';
import { type Cidr4, formatIp4 } from '../../lib/ip.js';
import { type Cidr6, formatIp6 } from '../../lib/ip6.js';
import type { LeaseAttrs } from '../backend.js';
import type { Backend, BackendContext, Lease, Network } from '../backend.js';
import { startFamilies } from '../composite-network.js';
import { datapathAddon } from '../datapath/native/datapath-addon.js';
import { KernelVtep } from './kernel-vtep.js';
import { UserspaceVtep } from './userspace-vtep.js';
import type { Vtep, VxlanPeer, VxlanPeer6 } from './vtep.js';
import { VXLAN_OVERHEAD, VXLAN_OVERHEAD_V6, type VxlanConfig, encodeVxlanBackendData, parseVxlanConfig } from './vxlan-config.js';
import { DEVICE_PREFIX } from './vxlan-family.js';
import { VxlanNetwork } from './vxlan-network.js';
import { stableVtepMac } from './vtep-mac.js';

export class VxlanBackend implements Backend {
  readonly type = 'vxlan' as const;
  readonly mtu: number;
  private readonly cfg: VxlanConfig;
  private readonly log: Logger;
  private readonly device: string;
  private readonly underlayMtu: number;
  private kernelVtep: KernelVtep | undefined;
  private kernelVtep6: KernelVtep | undefined;

  constructor(private readonly ctx: BackendContext) {
    this.cfg = parseVxlanConfig(ctx.config.backend);
    this.underlayMtu = this.cfg.mtu || ctx.ext.mtu;
    const dualStack = ctx.config.ipv6 !== undefined;
    this.mtu = this.underlayMtu - (dualStack ? VXLAN_OVERHEAD_V6 : VXLAN_OVERHEAD);
    this.log = ctx.log.child({ component: 'backend/vxlan', datapath: this.cfg.datapath });
    this.device = `${DEVICE_PREFIX[4]}${this.cfg.vni}`;
  }

  /** The kernel devices are created (or reused) first, so that the lease publishes the MACs they have. */
  async prepare(): Promise<LeaseAttrs> {
    const { ext } = this.ctx;
    const mac = stableVtepMac(ext.publicIp, this.cfg.vni);
    const common = { vni: this.cfg.vni, port: this.cfg.port, gbp: this.cfg.gbp, learning: this.cfg.learning, ext, log: this.log };
    const v4 = this.ctx.config.ipv4 !== undefined;
    if (this.cfg.datapath === 'kernel' && v4) {
      this.kernelVtep = new KernelVtep({ ...common, name: this.device, family: 4, local: formatIp4(ext.ip), mac, mtu: this.underlayMtu - VXLAN_OVERHEAD });
      await this.kernelVtep.ensureDevice();
    } else if (this.cfg.datapath !== 'kernel') {
      try {
        datapathAddon();
      } catch (err) {
        throw new FlannelError('FLN_ERR_BACKEND_UNSUPPORTED', `the userspace vxlan data path needs the packet-engine addon: ${errorMessage(err)}`, { cause: err });
      }
    }
    const userspace = !this.kernelVtep;
    const attrs = { publicIp: ext.publicIp, backendType: this.type, ...(v4 ? { backendData: encodeVxlanBackendData(this.cfg.vni, this.kernelVtep?.mac ?? mac, userspace) } : {}) };
    if (!this.ctx.config.ipv6) return attrs;
    if (ext.ip6 === undefined || ext.publicIp6 === undefined) {
      throw new FlannelError('FLN_ERR_IFACE_NOT_FOUND', `IPv6 is enabled but ${ext.name} has no IPv6 address for ${DEVICE_PREFIX[6]}${this.cfg.vni}: add one, or pass --iface`);
    }
    const mac6 = stableVtepMac(ext.publicIp6, this.cfg.vni);
    if (this.cfg.datapath === 'kernel') {
      this.kernelVtep6 = new KernelVtep({ ...common, name: this.device6, family: 6, local: formatIp6(ext.ip6), mac: mac6, mtu: this.underlayMtu - VXLAN_OVERHEAD_V6 });
      await this.kernelVtep6.ensureDevice();
    }
    return { ...attrs, publicIpv6: ext.publicIp6, backendV6Data: encodeVxlanBackendData(this.cfg.vni, this.kernelVtep6?.mac ?? mac6, userspace) };
  }

  async start(lease: Lease): Promise<Network> {
    const { ipv4, ipv6 } = this.ctx.config;
    return startFamilies(lease,
      ipv4 && (async () => this.startFamily(lease, await this.vtep4(lease), 4, ipv4.network)),
      ipv6 && (async (withV4) => this.startFamily(lease, await this.vtep6(lease), 6, ipv6.network, !withV4)));
  }

  private get device6(): string { return `${DEVICE_PREFIX[6]}${this.cfg.vni}`; }

  /** flannel-v6.<VNI>: the kernel device made in prepare(), or the userspace engine's TAP of family 6. */
  private async vtep6(lease: Lease): Promise<Vtep<VxlanPeer6>> {
    if (this.kernelVtep6) {
      this.kernelVtep6.lease = lease;
      await this.kernelVtep6.ensureDevice();
      return this.kernelVtep6;
    }
    const { ext, config } = this.ctx;
    if (!lease.ipv6Subnet || ext.ip6 === undefined || ext.publicIp6 === undefined || !config.ipv6) {
      throw new FlannelError('FLN_ERR_KERNEL_OP', `${this.device6} needs our lease's IPv6 subnet and an IPv6 address on ${ext.name}`);
    }
    const capacity = 2 ** Math.min(16, config.ipv6.subnetLen - config.ipv6.network.prefixLen); // peers the pool can hold, at most 65536
    return UserspaceVtep.create({
      family: 6, name: this.device6, mac: stableVtepMac(ext.publicIp6, this.cfg.vni), mtu: this.underlayMtu - VXLAN_OVERHEAD_V6,
      vni: this.cfg.vni, port: this.cfg.port, bindIp6: ext.ip6, subnet6: lease.ipv6Subnet, capacity,
      offload: this.ctx.offload ?? true, queues: this.ctx.queues ?? 1, ...(this.ctx.threading ? { threading: this.ctx.threading } : {}), log: this.log,
    });
  }

  private async vtep4(lease: Lease): Promise<Vtep> {
    if (this.kernelVtep) {
      this.kernelVtep.lease = lease;
      await this.kernelVtep.ensureDevice();
      return this.kernelVtep;
    }
    const pool = this.ctx.config.ipv4;
    if (!pool || !lease.subnet) throw new FlannelError('FLN_ERR_KERNEL_OP', `${this.device} needs our lease's IPv4 subnet`);
    const capacity = Math.min(65_536, 2 ** (pool.subnetLen - pool.network.prefixLen));
    return UserspaceVtep.create({
      name: this.device, mac: stableVtepMac(this.ctx.ext.publicIp, this.cfg.vni), mtu: this.underlayMtu - VXLAN_OVERHEAD, ext: this.ctx.ext, subnet: lease.subnet,
      log: this.log, vni: this.cfg.vni, port: this.cfg.port, capacity, offload: this.ctx.offload ?? true, queues: this.ctx.queues ?? 1,
      ...(this.ctx.threading ? { threading: this.ctx.threading } : {}),
    });
  }

  /** `vtep` is handed only this family's peers (method parameters are bivariant, so either VTEP fits). */
  private startFamily(lease: Lease, vtep: Vtep<VxlanPeer | VxlanPeer6>, family: 4 | 6, network: Cidr4 | Cidr6, only = false): VxlanNetwork {
    this.log.info({ device: vtep.device, port: this.cfg.port, vni: this.cfg.vni }, 'vxlan backend running');
    return new VxlanNetwork({ lease, family, network, vtep, directRouting: this.cfg.directRouting, ext: this.ctx.ext, log: this.log, only });
  }
}
