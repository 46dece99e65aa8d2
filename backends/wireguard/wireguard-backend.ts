// wireguard: flannel's backend type, in user space. flannel's needs the kernel's WireGuard module; ours
// runs on any kernel with TUN and speaks WireGuard v1 exactly, so its nodes and a WireGuard peer set up
// the way flannel sets one up talk to each other. As flannel: a device flannel-wg (a TUN here), address
// <subnet>.0/32, MTU = (Backend.MTU or the interface's) − 80, one route for the whole Network on it,
// FLANNEL_MTU the same; the key in /run/flannel/wgkey (WIREGUARD_KEY_FILE); the lease advertises
// {"PublicKey":…,"Port":ListenPort}. Per peer: key and port from its lease, endpoint PublicIP:Port,
// allowed IPs = its subnet, the PSK and keepalive of the config.
// Split of the work: the packet engine (C, worker threads) seals and opens every transport message with
// the keypairs published in shared memory; the handshake, cookies and timers run here on the main thread
// (session/); handshake messages reach us through a pipe from the engine's RX workers.
import type { Logger } from 'pino';
import { FlannelError } from '../../lib/errors.js';
import { formatCidr4, formatIp4, maskOf } from '../../lib/ip.js';
import type { Lease, LeaseAttrs } from '../backend.js';
import { type Backend, type BackendContext, type Network, ipv4Of } from '../backend.js';
import { EngineDataPath } from '../datapath/engine-datapath.js';
import { requireUserspaceDatapath } from '../datapath/require-datapath.js';
import { ENGINE_MODE, datapathAddon } from '../datapath/native/datapath-addon.js';
import { keyFilePath, loadOrCreateKey, type NodeKey } from './key-file.js';
import { encodeWireGuardBackendData } from './lease-data.js';
import { WgTable } from './session/wg-table.js';
import { WIREGUARD_OVERHEAD, type WireGuardConfig, parseWireGuardConfig } from './wireguard-config.js';
import { WireGuardNetwork } from './wireguard-network.js';

export const WIREGUARD_DEVICE = 'flannel-wg';
/** Keypair slots: three per peer (previous, current, next) and handshakes in flight, at most 8192 (9 MB). */
const MAX_KEYPAIRS = 8192;

export class WireGuardBackend implements Backend {
  readonly type = 'wireguard' as const;
  readonly mtu: number;
  private readonly cfg: WireGuardConfig;
  private readonly log: Logger;
  private key: NodeKey | undefined;

  constructor(private readonly ctx: BackendContext) {
    this.cfg = parseWireGuardConfig(ctx.config.backend);
    this.mtu = (this.cfg.mtu || ctx.ext.mtu) - WIREGUARD_OVERHEAD;
    this.log = ctx.log.child({ component: 'backend/wireguard' });
    if (ctx.config.ipv6) {
      throw new FlannelError('FLN_ERR_BACKEND_UNSUPPORTED',
        'IPv6 (EnableIPv6) on the wireguard backend is not supported by flannel-ts yet: use the host-gw or the vxlan backend ' +
        'for dual-stack, or set EnableIPv6 to false');
    }
  }

  async prepare(): Promise<LeaseAttrs> {
    requireUserspaceDatapath('wireguard');
    const path = keyFilePath();
    this.key = loadOrCreateKey(path);
    this.log.info({ keyFile: path, created: this.key.created }, this.key.created ? 'wireguard: generated a new private key' : 'wireguard: using the existing private key');
    return { publicIp: this.ctx.ext.publicIp, backendType: 'wireguard', backendData: encodeWireGuardBackendData(this.key.publicKey, this.cfg.listenPort) };
  }

  async start(lease: Lease): Promise<Network> {
    const { ext } = this.ctx;
    const { pool, subnet } = ipv4Of(this.ctx.config, lease);
    this.key ??= loadOrCreateKey(keyFilePath());
    const key = this.key;
    const queues = this.ctx.queues ?? 1;
    const capacity = Math.min(65_536, 2 ** (pool.subnetLen - pool.network.prefixLen));
    const table = new WgTable(keypairCapacity(capacity), capacity * 2);
    const [ctrlRead, ctrlWrite] = datapathAddon().pipeOpen();
    let dataPath: EngineDataPath;
    try {
      dataPath = await EngineDataPath.open({
        device: { name: WIREGUARD_DEVICE, tap: false, offload: this.ctx.offload ?? true, queues, bindIp: ext.ip, port: this.cfg.listenPort, sourcePortSockets: 0 },
        settings: {
          address: `${formatIp4(subnet.ip)}/32`, mtu: this.mtu,
          route: `${formatCidr4(pool.network)} dev ${WIREGUARD_DEVICE}`, sysctls: { 'ipv4/accept_local': '1', 'ipv6/disable_ipv6': '1' },
        },
        spec: {
          mode: ENGINE_MODE.WIREGUARD, devIp: subnet.ip, ownSubnet: subnet.ip, ownMask: maskOf(subnet.prefixLen),
          mtu: this.mtu, vni: 0, devMac: new Uint8Array(6), wgTable: new Uint8Array(table.buffer), ctrlFd: ctrlWrite,
        },
        capacity,
        ...(this.ctx.threading ? { threading: this.ctx.threading } : {}),
        log: this.log,
      });
    } catch (err) {
      datapathAddon().closeFd(ctrlRead);
      datapathAddon().closeFd(ctrlWrite);
      throw err;
    }
    this.log.info({ device: dataPath.name, port: this.cfg.listenPort, mtu: this.mtu, queues }, 'wireguard backend running');
    return new WireGuardNetwork({ lease, dataPath, table, cfg: this.cfg, key, ctrlRead, ctrlWrite, log: this.log });
  }
}

/** A power of two ≥ 3 per peer plus room for handshakes in flight, at most MAX_KEYPAIRS. */
export function keypairCapacity(peers: number): number {
  let n = 64;
  while (n < 3 * peers + 64 && n < MAX_KEYPAIRS) n *= 2;
  return n;
}
