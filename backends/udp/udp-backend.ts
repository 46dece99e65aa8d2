// udp: flannel's "debugging" backend, made real. A TUN device flannel0 (subnet.0/32, MTU ext−28,
// one route for the whole Network) and a UDP socket on the interface address, port 8285. Each
// datagram carries exactly one inner IPv4 packet, no header: wire-compatible with flannel's udp.
// Owned state: the TUN device (gone when its fd closes, taking its address and route along; if it
// is deleted by hand, the next reconcile re-creates it), the sockets, the packet-engine workers.
// Peers: one entry per lease in the engine's peer table; no
// kernel state per peer, so 1000 peers cost one table swap. Like flannel, leases of any backend
// type are used (flannel's udp publishes no BackendType and filters none).
import type { Logger } from 'pino';
import { ConfigError } from '../../lib/errors.js';
import { type Cidr4, formatCidr4, formatIp4, maskOf } from '../../lib/ip.js';
import { pickFields } from '../../lib/json-fields.js';
import type { Lease, LeaseAttrs, LeaseEvent } from '../backend.js';
import { type Backend, type BackendContext, type DatapathStats, type Network, type ReconcileResult, ipv4Of } from '../backend.js';
import { EngineDataPath } from '../datapath/engine-datapath.js';
import { EventBatcher } from '../datapath/event-batch.js';
import { requireUserspaceDatapath } from '../datapath/require-datapath.js';
import { ENGINE_MODE } from '../datapath/native/datapath-addon.js';
import { PARTIAL_CHECKSUMS_FIELD, acceptsPartialChecksums } from '../datapath/partial-checksums.js';

export const UDP_OVERHEAD = 28;
const DEVICE_NAME = 'flannel0';

export function parseUdpPort(backend: Readonly<Record<string, unknown>>): number {
  const { Port: port } = pickFields(backend, ['Port']);
  if (port === undefined || port === null || port === 0) return 8285;
  if (typeof port === 'number' && Number.isInteger(port) && port > 0 && port < 65536) return port;
  throw new ConfigError('the Backend section', [{ field: 'Backend.Port', value: port, expected: 'must be a UDP port from 1 to 65535 (default 8285)' }]);
}

export class UdpBackend implements Backend {
  readonly type = 'udp' as const;
  readonly mtu: number;
  private readonly port: number;
  private readonly log: Logger;

  constructor(private readonly ctx: BackendContext) {
    this.mtu = ctx.ext.mtu - UDP_OVERHEAD;
    this.port = parseUdpPort(ctx.config.backend);
    this.log = ctx.log.child({ component: 'backend/udp' });
  }

  async prepare(): Promise<LeaseAttrs> {
    requireUserspaceDatapath('udp');
    return { publicIp: this.ctx.ext.publicIp, backendData: `{"${PARTIAL_CHECKSUMS_FIELD}":true}` };
  }

  async start(lease: Lease): Promise<Network> {
    const { ext } = this.ctx;
    const { pool, subnet } = ipv4Of(this.ctx.config, lease);
    const queues = this.ctx.queues ?? 1;
    const dataPath = await EngineDataPath.open({
      device: { name: DEVICE_NAME, tap: false, offload: this.ctx.offload ?? true, queues, bindIp: ext.ip, port: this.port },
      // accept_local: our ICMP errors come from flannel0's own address, which the kernel would
      // otherwise drop as a martian when it arrives on flannel0.
      settings: {
        address: `${formatIp4(subnet.ip)}/32`, mtu: this.mtu,
        route: `${formatCidr4(pool.network)} dev ${DEVICE_NAME}`, sysctls: { 'ipv4/accept_local': '1', 'ipv6/disable_ipv6': '1' },
      },
      spec: {
        mode: ENGINE_MODE.UDP, devIp: subnet.ip, ownSubnet: subnet.ip, ownMask: maskOf(subnet.prefixLen),
        mtu: this.mtu, vni: 0, devMac: new Uint8Array(6),
      },
      capacity: Math.min(65_536, 2 ** (pool.subnetLen - pool.network.prefixLen)),
      ...(this.ctx.threading ? { threading: this.ctx.threading } : {}),
      log: this.log,
    });
    this.log.info({ device: dataPath.name, port: this.port, mtu: this.mtu, queues }, 'udp backend running');
    return new UdpNetwork(lease, dataPath, this.port, this.log);
  }
}

export class UdpNetwork implements Network {
  private readonly peers = new Map<string, Lease>();
  private readonly batch = new EventBatcher((events) => this.swap(events));

  constructor(readonly lease: Lease, private readonly dataPath: EngineDataPath, private readonly port: number, private readonly log: Logger) {}

  /** Events handed over in one go (a watch delivers a transaction's keys one by one) make one table swap. */
  apply(events: readonly LeaseEvent[]): Promise<void> {
    return this.batch.push(events);
  }

  private swap(events: readonly LeaseEvent[]): void {
    for (const ev of events) {
      if (!ev.lease.subnet) continue; // an IPv6-only lease: nothing for an IPv4-only backend
      const key = formatCidr4(ev.lease.subnet);
      if (ev.kind === 'added') this.peers.set(key, ev.lease);
      else if (this.peers.get(key) === ev.lease || this.peers.get(key)?.attrs.publicIp === ev.lease.attrs.publicIp) this.peers.delete(key);
    }
    this.dataPath.replacePeers([...this.peers.entries()].map(([key, l]) => ({
      key, subnet: (l.subnet as Cidr4).ip, prefixLen: (l.subnet as Cidr4).prefixLen, publicIp: l.attrs.publicIp, port: this.port,
      partialChecksums: acceptsPartialChecksums(l.attrs.backendData),
    })));
    this.log.info({ peers: this.peers.size }, 'peer table updated');
  }

  /** flannel0's address, MTU, state and route; flannel0 itself if it was deleted. */
  async reconcile(): Promise<ReconcileResult> {
    const fixed = await this.dataPath.ensure();
    return { fixed, removed: 0, failed: 0 };
  }

  datapathStats(): DatapathStats {
    return this.dataPath.datapathStats(this.peers.keys());
  }

  crashWorker(direction: 'tx' | 'rx'): void {
    this.dataPath.crashWorker(direction);
  }

  async close(): Promise<void> {
    await this.dataPath.close();
  }
}
