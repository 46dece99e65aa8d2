// The kernel data path, as flannel programs it: a kernel VXLAN device flannel.<VNI> (nolearning,
// local = the interface's IPv4 address, dev = external interface, dstport), with neighbour, FDB and
// route per peer; in dual-stack also flannel-v6.<VNI> (local = the interface's IPv6 address, address
// <IPv6 subnet>/128, accept_ra 0) for IPv6 over an IPv6 underlay.
// A compatible existing device is reused, so its MAC survives a restart; a deleted one is re-created
// by the next reconcile, and the per-peer state is then replayed by the same pass.
import type { Logger } from 'pino';
import { FlannelError } from '../../lib/errors.js';
import { formatIp4 } from '../../lib/ip.js';
import { canonicalIp6Text, formatIp6 } from '../../lib/ip6.js';
import type { Lease } from '../backend.js';
import type { ExternalInterface } from '../backend.js';
import { DeviceState } from '../datapath/device-state.js';
import { runChecked, runCommand } from '../../lib/run-command.js';
import type { Vtep, VxlanPeer, VxlanPeer6 } from './vtep.js';

export interface KernelVtepOptions {
  readonly name: string;
  /** 4: flannel.<VNI>, IPv4 inside and outside; 6: flannel-v6.<VNI>, IPv6 inside and outside. */
  readonly family: 4 | 6;
  /** The local underlay address (the external interface's address of this family). */
  readonly local: string;
  readonly vni: number;
  readonly port: number;
  readonly mac: string;
  readonly mtu: number;
  readonly gbp: boolean;
  readonly learning: boolean;
  readonly ext: ExternalInterface;
  readonly log: Logger;
}

interface VxlanLinkJson {
  address?: string;
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; local6?: string; port?: number; learning?: boolean; gbp?: boolean; link?: string } };
}

/** Either family's kernel device: it takes no peers (the kernel forwards by its FDB and neighbours). */
export class KernelVtep implements Vtep<VxlanPeer | VxlanPeer6> {
  readonly withFdb = true;
  /** The device's MAC: ours when we created it, the existing one when we reused it. */
  mac = '';
  /** Set once our lease is known; the device then gets the subnet's network address. */
  lease: Lease | undefined;

  constructor(private readonly o: KernelVtepOptions) {}

  get device(): string { return this.o.name; }

  async setPeers(): Promise<void> { /* the kernel device forwards by the FDB and neighbour entries */ }

  /** Creates the device (or reuses a compatible one) and configures it. Returns what was fixed. */
  async ensureDevice(): Promise<number> {
    const existing = await this.read();
    let fixed = 0;
    if (existing && !this.compatible(existing)) {
      this.o.log.warn({ device: this.o.name }, 'existing VXLAN device is not compatible with the config; re-creating it');
      await runChecked('ip', ['link', 'del', this.o.name], `delete ${this.o.name}`);
    }
    if (!existing || !this.compatible(existing)) {
      const args = ['link', 'add', this.o.name, 'address', this.o.mac, 'type', 'vxlan', 'id', String(this.o.vni),
        'local', this.o.local, 'dev', this.o.ext.name, 'dstport', String(this.o.port),
        this.o.learning ? 'learning' : 'nolearning', ...(this.o.gbp ? ['gbp'] : [])];
      await runChecked('ip', args, `create VXLAN device ${this.o.name}`);
      fixed++;
      this.mac = this.o.mac;
    } else {
      this.mac = existing.address ?? this.o.mac;
    }
    if (!this.lease) return fixed;
    const subnet = this.o.family === 6 ? this.lease.ipv6Subnet : this.lease.subnet;
    if (!subnet) throw new FlannelError('FLN_ERR_KERNEL_OP', `${this.o.name} needs our lease's IPv${this.o.family} subnet, and the lease has none`);
    const address = typeof subnet.ip === 'bigint' ? `${formatIp6(subnet.ip)}/128` : `${formatIp4(subnet.ip)}/32`;
    const state = new DeviceState({ name: this.o.name, address, mtu: this.o.mtu, ...(this.o.family === 6 ? { sysctls: { 'ipv6/accept_ra': '0' } } : {}) });
    return fixed + (await state.ensure());
  }

  async close(): Promise<void> { /* the device stays: traffic keeps flowing across a restart, as in flannel */ }

  private async read(): Promise<VxlanLinkJson | undefined> {
    const r = await runCommand('ip', ['-d', '-j', 'link', 'show', this.o.name]);
    if (r.code !== 0) return undefined;
    const link = (JSON.parse(r.stdout || '[]') as VxlanLinkJson[])[0];
    if (!link) throw new FlannelError('FLN_ERR_KERNEL_OP', `cannot read device ${this.o.name}`);
    return link;
  }

  private compatible(l: VxlanLinkJson): boolean {
    const d = l.linkinfo?.info_data;
    return l.linkinfo?.info_kind === 'vxlan' && d?.id === this.o.vni && sameAddress(d.local ?? d.local6, this.o.local)
      && d.port === this.o.port && Boolean(d.learning) === this.o.learning && Boolean(d.gbp) === this.o.gbp
      && d.link === this.o.ext.name;
  }
}

function sameAddress(kernel: string | undefined, want: string): boolean {
  return kernel !== undefined && canonicalIp6Text(kernel) === canonicalIp6Text(want);
}
