// wireguard: flannel's backend type, in user space. flannel's needs the kernel's WireGuard module; ours
// runs on any kernel with TUN and speaks WireGuard v1 exactly, so its nodes and a WireGuard peer set up
// the way flannel sets one up talk to each other. As flannel: a device flannel-wg (a TUN here), address
// <subnet>.0/32, MTU = (Backend.MTU or the interface's) − 80, one route for the whole Network on it,
// FLANNEL_MTU the same; the key in /run/flannel/wgkey (WIREGUARD_KEY_FILE); the lease advertises
// {"PublicKey":…,"Port":ListenPort}. Per peer: key and port from its lease, endpoint PublicIP:Port,
// allowed IPs = its subnet, the PSK and keepalive of the config.
// IPv6 (EnableIPv6) in flannel's default Mode `separate`: a second device flannel-wg-v6 (a TUN of an
// engine of family 6) carries IPv6 over IPv6 on ListenPortV6 with the same key and MTU; address
// <IPv6 subnet IP>/128, a route for the whole IPv6Network on it; the lease adds PublicIPv6 and
// BackendV6Data {"PublicKey":…,"Port":ListenPortV6}; per peer the endpoint [PublicIPv6]:Port of its
// BackendV6Data and allowed IPs = its IPv6 subnet.
// Single device (Mode auto, ipv4 or ipv6 with EnableIPv6 on a dual-stack network): one flannel-wg on
// ListenPort for both families (a dual engine), addresses <subnet>/32 and <IPv6 subnet>/128, routes for both
// Networks; per peer one WireGuard peer with both subnets as allowed IPs, dialed at PublicIP:Port (ipv4),
// [PublicIPv6]:Port (ipv6), or either, chosen per peer by flannel's rule (auto, single-device.ts). ipv4 and
// ipv6 have sockets of that family on our address; auto has one socket on [::]:ListenPort for both families
// (IPv4 peers as ::ffff:a.b.c.d), so a peer is dialed, and roams, over either. The lease has ListenPort in
// BackendData and BackendV6Data (single-device.ts says why). Without IPv6, auto and ipv4 are plain IPv4.
// Split of the work: the packet engine (C, worker threads) seals and opens every transport message with
// the keypairs published in shared memory; the handshake, cookies and timers run here on the main thread
// (session/); handshake messages reach us through a pipe from the engine's RX workers.
import type { Logger } from 'pino';
import { FlannelError } from '../../lib/errors.js';
import { formatCidr4, formatIp4, maskOf } from '../../lib/ip.js';
import { formatCidr6, formatIp6 } from '../../lib/ip6.js';
import { startFamilies } from '../composite-network.js';
import type { Lease, LeaseAttrs } from '../backend.js';
import { type Backend, type BackendContext, type Network, ipv4Of } from '../backend.js';
import { EngineDataPath } from '../datapath/engine-datapath.js';
import { ip6Bytes } from '../datapath/peer-table.js';
import { requireUserspaceDatapath } from '../datapath/require-datapath.js';
import { ENGINE_MODE, datapathAddon } from '../datapath/native/datapath-addon.js';
import { keyFilePath, loadOrCreateKey, type NodeKey } from './key-file.js';
import { encodeWireGuardBackendData } from './lease-data.js';
import { monotonicMs, WIREGUARD_TIMERS } from './session/session-timers.js';
import { WgTable } from './session/wg-table.js';
import { WIREGUARD_OVERHEAD, type WireGuardConfig, parseWireGuardConfig } from './wireguard-config.js';
import { WireGuardNetwork } from './wireguard-network.js';
import { type SingleDeviceMode, singleDeviceLeaseData, singleDeviceOuterFamily } from './single-device.js';

export const WIREGUARD_DEVICE = 'flannel-wg';
export const WIREGUARD_DEVICE_V6 = 'flannel-wg-v6';
/** RFC 8200: the smallest MTU an IPv6 link may have. */
const IPV6_MIN_MTU = 1280;
/** Keypair slots: three per peer (previous, current, next) and handshakes in flight, at most 8192 (9 MB). */
const MAX_KEYPAIRS = 8192;

export class WireGuardBackend implements Backend {
  readonly type = 'wireguard' as const;
  readonly mtu: number;
  private readonly cfg: WireGuardConfig;
  private readonly log: Logger;
  private key: NodeKey | undefined;

  constructor(private readonly ctx: BackendContext) {
    this.cfg = parseWireGuardConfig(ctx.config.backend, { ipv6: ctx.config.ipv6 !== undefined });
    this.mtu = (this.cfg.mtu || ctx.ext.mtu) - WIREGUARD_OVERHEAD;
    this.log = ctx.log.child({ component: 'backend/wireguard' });
    if (ctx.config.ipv6 && this.cfg.mode !== 'separate' && !ctx.config.ipv4) {
      throw new FlannelError('FLN_ERR_BACKEND_UNSUPPORTED',
        `the wireguard backend's Mode ${JSON.stringify(this.cfg.mode)} on an IPv6-only network is not supported by flannel-ts: use Mode "separate" (flannel-wg-v6 alone)`);
    }
    if (ctx.config.ipv6 && this.mtu < IPV6_MIN_MTU) {
      throw new FlannelError('FLN_ERR_CONFIG_INVALID',
        `${WIREGUARD_DEVICE_V6} needs an MTU of at least ${IPV6_MIN_MTU}, not ${this.mtu} (the underlay MTU − ${WIREGUARD_OVERHEAD}): raise Backend.MTU or the interface's MTU`);
    }
  }

  async prepare(): Promise<LeaseAttrs> {
    requireUserspaceDatapath('wireguard');
    const path = keyFilePath();
    this.key = loadOrCreateKey(path);
    this.log.info({ keyFile: path, created: this.key.created }, this.key.created ? 'wireguard: generated a new private key' : 'wireguard: using the existing private key');
    const v4 = this.ctx.config.ipv4 !== undefined;
    const attrs = { publicIp: this.ctx.ext.publicIp, backendType: 'wireguard', ...(v4 ? { backendData: encodeWireGuardBackendData(this.key.publicKey, this.cfg.listenPort) } : {}) };
    if (!this.ctx.config.ipv6) return attrs;
    const { ext } = this.ctx;
    const single = this.singleMode();
    if (ext.ip6 === undefined || ext.publicIp6 === undefined) {
      throw new FlannelError('FLN_ERR_IFACE_NOT_FOUND', `IPv6 is enabled but ${ext.name} has no IPv6 address for ${single ? WIREGUARD_DEVICE : WIREGUARD_DEVICE_V6}: add one, or pass --iface`);
    }
    // single device: the one port that listens, in both (see single-device.ts)
    if (single) return { ...attrs, publicIpv6: ext.publicIp6, ...singleDeviceLeaseData(this.key.publicKey, this.cfg.listenPort, { v4, v6: true }) };
    // flannel: the same key for both devices, BackendV6Data with the IPv6 device's port.
    return { ...attrs, publicIpv6: ext.publicIp6, backendV6Data: encodeWireGuardBackendData(this.key.publicKey, this.cfg.listenPortV6) };
  }

  /** Mode auto, ipv4 or ipv6 with EnableIPv6: one flannel-wg for both families. */
  private singleMode(): SingleDeviceMode | undefined {
    return this.ctx.config.ipv6 && this.cfg.mode !== 'separate' ? this.cfg.mode : undefined;
  }

  async start(lease: Lease): Promise<Network> {
    this.key ??= loadOrCreateKey(keyFilePath());
    const single = this.singleMode();
    // auto: an engine of family 6 on a socket of both families, every endpoint an IPv6 (or IPv4-mapped) address
    if (single) return this.startFamily(lease, singleDeviceOuterFamily(single) ?? 6, single);
    const { ipv4, ipv6 } = this.ctx.config;
    return startFamilies(lease, ipv4 && (() => this.startFamily(lease, 4)), ipv6 && (() => this.startFamily(lease, 6)));
  }

  /** flannel-wg (family 4) or flannel-wg-v6 (family 6): its TUN, engine, table and sessions. */
  private async startFamily(lease: Lease, family: 4 | 6, single?: SingleDeviceMode): Promise<WireGuardNetwork> {
    const key = this.key as NodeKey;
    const queues = this.ctx.queues ?? 1;
    const f = single ? this.deviceSingle(lease, family, single === 'auto') : family === 6 ? this.device6(lease) : this.device4(lease);
    const capacity = 2 ** Math.min(16, f.poolBits);
    const table = new WgTable(keypairCapacity(capacity), capacity * 2, WIREGUARD_TIMERS, monotonicMs, family);
    const [ctrlRead, ctrlWrite] = datapathAddon().pipeOpen();
    const common = { mode: ENGINE_MODE.WIREGUARD, mtu: this.mtu, vni: 0, devMac: new Uint8Array(6), wgTable: new Uint8Array(table.buffer), ctrlFd: ctrlWrite };
    let dataPath: EngineDataPath;
    try {
      dataPath = await EngineDataPath.open({
        device: { name: f.name, tap: false, offload: single ? false : this.ctx.offload ?? true, queues, bindIp: this.ctx.ext.ip, port: f.port, sourcePortSockets: 0, ...f.device },
        settings: { mtu: this.mtu, ...f.settings },
        spec: { ...common, ...f.spec },
        capacity,
        ...(this.ctx.threading ? { threading: this.ctx.threading } : {}),
        log: this.log,
      });
    } catch (err) {
      datapathAddon().closeFd(ctrlRead);
      datapathAddon().closeFd(ctrlWrite);
      throw err;
    }
    this.log.info({ device: dataPath.name, port: f.port, mtu: this.mtu, queues, ...(single ? { mode: single } : {}) }, 'wireguard backend running');
    const own = { publicIp: this.ctx.ext.publicIp, ...(this.ctx.ext.publicIp6 !== undefined ? { publicIp6: this.ctx.ext.publicIp6 } : {}) };
    return new WireGuardNetwork({ lease, dataPath, table, cfg: this.cfg, key, ctrlRead, ctrlWrite, log: this.log, family, ...(single ? { single: { mode: single, own } } : {}) });
  }

  /** flannel-wg: <subnet>/32, the Network's route, ListenPort. */
  private device4(lease: Lease) {
    const { pool, subnet } = ipv4Of(this.ctx.config, lease);
    return {
      name: WIREGUARD_DEVICE, port: this.cfg.listenPort, poolBits: pool.subnetLen - pool.network.prefixLen, device: {},
      settings: { address: `${formatIp4(subnet.ip)}/32`, route: `${formatCidr4(pool.network)} dev ${WIREGUARD_DEVICE}`, sysctls: { 'ipv4/accept_local': '1', 'ipv6/disable_ipv6': '1' } },
      spec: { devIp: subnet.ip, ownSubnet: subnet.ip, ownMask: maskOf(subnet.prefixLen) },
    };
  }

  /** flannel-wg of a single-device mode: <subnet>/32 and <IPv6 subnet>/128, both Networks' routes, ListenPort,
   * a dual engine whose sockets are of the Mode's outer family (IPv6: bound to the interface's IPv6 address),
   * or for auto (`anyFamily`) of both, on [::]. */
  private deviceSingle(lease: Lease, outer: 4 | 6, anyFamily: boolean) {
    const v4 = this.device4(lease), v6 = this.device6(lease);
    const { config } = this.ctx;
    return {
      name: WIREGUARD_DEVICE, port: this.cfg.listenPort, poolBits: Math.max(v4.poolBits, v6.poolBits),
      device: anyFamily ? { bindIp6: 0n } : outer === 6 ? v6.device : {},
      settings: {
        address: v4.settings.address, route: v4.settings.route,
        more: [{ address: v6.settings.address, route: `${formatCidr6(v6.network)} dev ${WIREGUARD_DEVICE}` }],
        sysctls: { 'ipv4/accept_local': '1', 'ipv6/disable_ipv6': '0', 'ipv6/accept_ra': '0' },
      },
      spec: { ...v4.spec, family: outer, dual: true, devIp6: v6.spec.devIp6, ownSubnet6: v6.spec.ownSubnet6, ownPrefix6: v6.spec.ownPrefix6 },
    };
  }

  /** flannel-wg-v6: <IPv6 subnet>/128, the IPv6Network's route, ListenPortV6, bound to the interface's IPv6 address. */
  private device6(lease: Lease) {
    const { config, ext } = this.ctx;
    if (!lease.ipv6Subnet || !config.ipv6 || ext.ip6 === undefined) {
      throw new FlannelError('FLN_ERR_KERNEL_OP', `${WIREGUARD_DEVICE_V6} needs our lease's IPv6 subnet and an IPv6 address on ${ext.name}`);
    }
    const subnet = lease.ipv6Subnet;
    return {
      name: WIREGUARD_DEVICE_V6, port: this.cfg.listenPortV6, poolBits: config.ipv6.subnetLen - config.ipv6.network.prefixLen, device: { bindIp6: ext.ip6 }, network: config.ipv6.network,
      settings: { address: `${formatIp6(subnet.ip)}/128`, route: `${formatCidr6(config.ipv6.network)} dev ${WIREGUARD_DEVICE_V6}`, sysctls: { 'ipv6/disable_ipv6': '0', 'ipv6/accept_ra': '0' } },
      spec: { family: 6 as const, devIp: 0, ownSubnet: 0, ownMask: 0, devIp6: ip6Bytes(subnet.ip), ownSubnet6: ip6Bytes(subnet.ip), ownPrefix6: subnet.prefixLen },
    };
  }
}

/** A power of two ≥ 3 per peer plus room for handshakes in flight, at most MAX_KEYPAIRS. */
export function keypairCapacity(peers: number): number {
  let n = 64;
  while (n < 3 * peers + 64 && n < MAX_KEYPAIRS) n *= 2;
  return n;
}
