// host-gw: no encapsulation, the kernel forwards. Each peer's subnet gets one route,
//   <peer subnet> via <peer PublicIP> dev <external interface>
// so every node must share one L2 segment with its peers (the next hop must be directly reachable).
// With IPv6 (dual-stack or IPv6-only): likewise <peer IPv6 subnet> via <peer PublicIPv6> for peers
// whose lease has both.
// Owned kernel state: one main-table route per peer, marked with our protocol number; reconciled
// every 10 s (routes deleted by hand come back) and at once when the interface comes back up after
// a link flap, which flushes them. Pods get the full interface MTU. Leases of other backend types
// are ignored, as flannel does.
import type { Logger } from 'pino';
import { FlannelError } from '../../lib/errors.js';
import { formatCidr4, formatIp4 } from '../../lib/ip.js';
import { formatCidr6, formatIp6 } from '../../lib/ip6.js';
import { combineNetworks } from '../composite-network.js';
import { type Lease, type LeaseAttrs, describeSubnets } from '../backend.js';
import type { Backend, BackendContext, Network } from '../backend.js';
import type { Route } from '../kernel/kernel-routes.js';
import { RouteNetwork } from '../route-network.js';

export class HostGwBackend implements Backend {
  readonly type = 'host-gw' as const;
  readonly mtu: number;
  private readonly log: Logger;

  constructor(private readonly ctx: BackendContext) {
    this.mtu = ctx.ext.mtu;
    this.log = ctx.log.child({ component: 'backend/host-gw' });
  }

  async prepare(): Promise<LeaseAttrs> {
    const { ext } = this.ctx;
    if (ext.publicIp !== ext.ip) {
      throw new FlannelError('FLN_ERR_BACKEND_UNSUPPORTED',
        `the host-gw backend needs --public-ip (${formatIp4(ext.publicIp)}) to equal the address of ${ext.name} ` +
        `(${formatIp4(ext.ip)}); probably you're on a NAT: use the vxlan or udp backend, or drop --public-ip`);
    }
    if (ext.publicIp6 !== undefined && ext.publicIp6 !== ext.ip6) {
      throw new FlannelError('FLN_ERR_BACKEND_UNSUPPORTED',
        `the host-gw backend needs --public-ipv6 (${formatIp6(ext.publicIp6)}) to equal the IPv6 address of ${ext.name} ` +
        `(${ext.ip6 === undefined ? 'none' : formatIp6(ext.ip6)}): use the vxlan backend, or drop --public-ipv6`);
    }
    return { publicIp: ext.publicIp, backendType: this.type, ...(ext.publicIp6 !== undefined ? { publicIpv6: ext.publicIp6 } : {}) };
  }

  async start(lease: Lease): Promise<Network> {
    const { config, ext } = this.ctx;
    const parts: RouteNetwork[] = [];
    if (config.ipv4) parts.push(new RouteNetwork({ lease, network: config.ipv4.network, log: this.log, routeFor: (peer) => this.routeFor(peer), link: ext.name }));
    if (config.ipv6) parts.push(new RouteNetwork({ lease, network: config.ipv6.network, family: 6, log: this.log, routeFor: (peer) => this.routeFor6(peer), link: ext.name }));
    return combineNetworks(lease, parts);
  }

  private routeFor(peer: Lease): Route | undefined {
    if (peer.attrs.backendType !== this.type) {
      this.log.warn({ subnet: describeSubnets(peer), backendType: peer.attrs.backendType ?? 'udp' }, 'Ignoring non-host-gw subnet');
      return undefined;
    }
    if (!peer.subnet) return undefined;
    return { dst: formatCidr4(peer.subnet), via: formatIp4(peer.attrs.publicIp), dev: this.ctx.ext.name };
  }

  /** The IPv6 route of a dual-stack host-gw peer; none for a peer without an IPv6 subnet and PublicIPv6. */
  private routeFor6(peer: Lease): Route | undefined {
    const { ipv6Subnet } = peer;
    const via = peer.attrs.publicIpv6;
    if (peer.attrs.backendType !== this.type || ipv6Subnet === undefined || via === undefined) return undefined;
    return { dst: formatCidr6(ipv6Subnet), via: formatIp6(via), dev: this.ctx.ext.name };
  }
}
