// The explicit map from Backend.Type to a backend. No import side effects, no global registration.
import { FlannelError } from '../lib/errors.js';
import type { BackendType } from './backend.js';
import type { Backend, BackendContext } from './backend.js';
import { HostGwBackend } from './host-gw/host-gw-backend.js';
import { UdpBackend } from './udp/udp-backend.js';
import { VxlanBackend } from './vxlan/vxlan-backend.js';
import { WireGuardBackend } from './wireguard/wireguard-backend.js';

const FACTORIES: Partial<Record<BackendType, (ctx: BackendContext) => Backend>> = {
  'host-gw': (ctx) => new HostGwBackend(ctx),
  udp: (ctx) => new UdpBackend(ctx),
  vxlan: (ctx) => new VxlanBackend(ctx),
  wireguard: (ctx) => new WireGuardBackend(ctx),
};

export function createBackend(type: BackendType, ctx: BackendContext): Backend {
  const factory = FACTORIES[type];
  if (!factory) {
    const available = Object.keys(FACTORIES).join(', ');
    throw new FlannelError('FLN_ERR_BACKEND_UNSUPPORTED',
      `the ${type} backend is not available in this build of flannel-ts (available: ${available}); ` +
      `set Backend.Type in the network config to one of those`);
  }
  return factory(ctx);
}
