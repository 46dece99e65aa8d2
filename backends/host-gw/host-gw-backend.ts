// host-gw: no encapsulation, the kernel forwards. Each peer's subnet gets one route,
//   <peer subnet> via <peer PublicIP> dev <external interface>
// so every node must share one L2 segment with its peers (the next hop must be directly reachable).
// Owned kernel state: one main-table route per peer, marked with our protocol number; reconciled
// every 10 s (routes deleted by hand come back) and at once when the interface comes back up after
// a link flap, which flushes them. Pods get the full interface MTU. Leases of other backend types
// are ignored, as flannel does.
import type { Logger } from 'pino';
import { FlannelError } from '../../lib/errors.js';
import { formatCidr4, formatIp4 } from '../../lib/ip.js';
import type { Lease, LeaseAttrs } from '../backend.js';
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
    return { publicIp: ext.publicIp, backendType: this.type };
  }

  async start(lease: Lease): Promise<Network> {
    return new RouteNetwork({
      lease,
      network: this.ctx.config.network,
      log: this.log,
      routeFor: (peer) => this.routeFor(peer),
      link: this.ctx.ext.name,
    });
  }

  private routeFor(peer: Lease): Route | undefined {
    if (peer.attrs.backendType !== this.type) {
      this.log.warn({ subnet: formatCidr4(peer.subnet), backendType: peer.attrs.backendType ?? 'udp' }, 'Ignoring non-host-gw subnet');
      return undefined;
    }
    return { dst: formatCidr4(peer.subnet), via: formatIp4(peer.attrs.publicIp), dev: this.ctx.ext.name };
  }
}
