// vxlan: flannel's default backend. Each node has a VTEP flannel.<VNI> (address = subnet.0/32,
// MTU = (Backend.MTU or ext) − 50) and publishes {"VNI":…,"VtepMAC":…} in its lease. Per peer, in
// flannel's order: a permanent neighbour <peer .0> → VtepMAC, the FDB entry VtepMAC → PublicIP
// (in the userspace engine's table, or the kernel's FDB), then <peer subnet> via <peer .0> dev
// flannel.<VNI> onlink. Nothing ever ARPs across the overlay. Two data paths:
//  - userspace (default): a TAP VTEP whose frames our packet engine carries, wire-compatible with
//    the kernel's VXLAN;
//  - kernel ("Datapath": "kernel"): a kernel VXLAN device exactly as flannel creates it.
// With DirectRouting, peers on our L2 segment get a host-gw route instead. State scales as one
// neighbour, one FDB entry and one route per peer; all of it goes when the lease goes.
import type { Logger } from 'pino';
import { FlannelError, errorMessage } from '../../lib/errors.js';
import { formatCidr4, formatIp4 } from '../../lib/ip.js';
import { type Lease, type LeaseAttrs, type LeaseEvent, sameAttrs } from '../backend.js';
import type { Backend, BackendContext, DatapathStats, Network, ReconcileResult } from '../backend.js';
import { datapathAddon } from '../datapath/native/datapath-addon.js';
import type { Route } from '../kernel/kernel-routes.js';
import { runCommand } from '../../lib/run-command.js';
import { syncVxlanL2 } from '../kernel/vxlan-l2.js';
import { RouteNetwork } from '../route-network.js';
import { KernelVtep } from './kernel-vtep.js';
import { UserspaceVtep } from './userspace-vtep.js';
import type { Vtep, VxlanPeer } from './vtep.js';
import { VXLAN_OVERHEAD, type VxlanConfig, encodeVxlanBackendData, parseVtepMac, parseVxlanConfig } from './vxlan-config.js';
import { stableVtepMac } from './vtep-mac.js';
import { acceptsPartialChecksums } from '../datapath/partial-checksums.js';

export class VxlanBackend implements Backend {
  readonly type = 'vxlan' as const;
  readonly mtu: number;
  private readonly cfg: VxlanConfig;
  private readonly log: Logger;
  private readonly device: string;
  private kernelVtep: KernelVtep | undefined;

  constructor(private readonly ctx: BackendContext) {
    this.cfg = parseVxlanConfig(ctx.config.backend);
    this.mtu = (this.cfg.mtu || ctx.ext.mtu) - VXLAN_OVERHEAD;
    this.log = ctx.log.child({ component: 'backend/vxlan', datapath: this.cfg.datapath });
    this.device = `flannel.${this.cfg.vni}`;
  }

  /** The kernel device is created (or reused) first, so that the lease publishes the MAC it has. */
  async prepare(): Promise<LeaseAttrs> {
    const mac = stableVtepMac(this.ctx.ext.publicIp, this.cfg.vni);
    if (this.cfg.datapath === 'kernel') {
      this.kernelVtep = new KernelVtep({
        name: this.device, mac, mtu: this.mtu, ext: this.ctx.ext, log: this.log,
        vni: this.cfg.vni, port: this.cfg.port, gbp: this.cfg.gbp, learning: this.cfg.learning,
      });
      await this.kernelVtep.ensureDevice();
    } else {
      try {
        datapathAddon();
      } catch (err) {
        throw new FlannelError('FLN_ERR_BACKEND_UNSUPPORTED', `the userspace vxlan data path needs the packet-engine addon: ${errorMessage(err)}`, { cause: err });
      }
    }
    return { publicIp: this.ctx.ext.publicIp, backendType: this.type, backendData: encodeVxlanBackendData(this.cfg.vni, this.kernelVtep?.mac ?? mac, !this.kernelVtep) };
  }

  async start(lease: Lease): Promise<Network> {
    let vtep: Vtep;
    if (this.kernelVtep) {
      this.kernelVtep.lease = lease;
      await this.kernelVtep.ensureDevice();
      vtep = this.kernelVtep;
    } else {
      const capacity = Math.min(65_536, 2 ** (this.ctx.config.subnetLen - this.ctx.config.network.prefixLen));
      vtep = await UserspaceVtep.create({
        name: this.device, mac: stableVtepMac(this.ctx.ext.publicIp, this.cfg.vni), mtu: this.mtu, ext: this.ctx.ext, lease,
        log: this.log, vni: this.cfg.vni, port: this.cfg.port, capacity, offload: this.ctx.offload ?? true, queues: this.ctx.queues ?? 1,
        ...(this.ctx.threading ? { threading: this.ctx.threading } : {}),
      });
    }
    this.log.info({ device: this.device, mtu: this.mtu, port: this.cfg.port, vni: this.cfg.vni }, 'vxlan backend running');
    return new VxlanNetwork({ lease, vtep, cfg: this.cfg, ctx: this.ctx, log: this.log });
  }
}

interface VxlanNetworkOptions {
  readonly lease: Lease;
  readonly vtep: Vtep;
  readonly cfg: VxlanConfig;
  readonly ctx: BackendContext;
  readonly log: Logger;
}

export class VxlanNetwork implements Network {
  readonly lease: Lease;
  private readonly peers = new Map<string, VxlanPeer>();
  /** The usable peer leases programmed, by subnet. */
  private readonly applied = new Map<string, Lease>();
  /** Direct-routing decisions by PublicIP, made once per peer as flannel does. */
  private readonly direct = new Map<number, boolean>();
  private readonly routes: RouteNetwork;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly pending: LeaseEvent[] = [];
  private nextBatch: Promise<void> | undefined;

  constructor(private readonly o: VxlanNetworkOptions) {
    this.lease = o.lease;
    // The link: DirectRouting routes go through the external interface, which a link flap flushes.
    this.routes = new RouteNetwork({ lease: o.lease, network: o.ctx.config.network, log: o.log, routeFor: (l) => this.routeFor(l), link: o.ctx.ext.name });
  }

  /**
   * One batch at a time, in call order, with reconcile(): two interleaved L2 syncs could each undo the
   * other's work. Events that arrive while a batch runs (a watch delivers a transaction's keys one by
   * one) are applied together in the next batch.
   */
  apply(events: readonly LeaseEvent[]): Promise<void> {
    this.pending.push(...events);
    this.nextBatch ??= this.serial(async () => {
      this.nextBatch = undefined;
      await this.applyBatch(this.pending.splice(0));
    });
    return this.nextBatch;
  }

  reconcile(): Promise<ReconcileResult> {
    return this.serial(async () => {
      const device = await this.o.vtep.ensureDevice();
      const l2 = await this.syncL2();
      const r = await this.routes.reconcile();
      return { fixed: device + l2.added + r.fixed, removed: l2.removed + r.removed, failed: l2.failed + r.failed };
    });
  }

  private async applyBatch(events: readonly LeaseEvent[]): Promise<void> {
    // The net change per subnet against what is programmed: a batch can hold several events for one
    // subnet ("added, removed" under churn, "removed, added" when a lease changes), and the removals
    // below run before the additions.
    const finals = new Map<string, Lease | undefined>();
    for (const ev of events) finals.set(formatCidr4(ev.lease.subnet), ev.kind === 'added' ? ev.lease : undefined);
    const removed: LeaseEvent[] = [];
    const added: LeaseEvent[] = [];
    for (const [key, lease] of finals) {
      const target = lease && this.usable(lease) ? lease : undefined;
      const current = this.applied.get(key);
      if (current && !target) removed.push({ kind: 'removed', lease: current });
      if (target && !(current && sameAttrs(current.attrs, target.attrs))) added.push({ kind: 'added', lease: target });
      if (target) this.applied.set(key, target);
      else this.applied.delete(key);
    }
    if (this.o.cfg.directRouting) for (const ev of added) await this.decideDirect(ev.lease.attrs.publicIp);
    // Removal: route first, then L2; addition: L2 first (neighbour, FDB), then the route (a changed
    // lease is an addition: its route is replaced in place, its L2 entries by the sync).
    await this.routes.apply(removed);
    for (const ev of removed) this.peers.delete(formatCidr4(ev.lease.subnet));
    for (const { lease } of added) {
      const key = formatCidr4(lease.subnet);
      if (this.direct.get(lease.attrs.publicIp)) this.peers.delete(key);
      else {
        const data = lease.attrs.backendData;
        this.peers.set(key, { key, subnet: lease.subnet, publicIp: lease.attrs.publicIp, mac: parseVtepMac(data) as string, partialChecksums: acceptsPartialChecksums(data) });
      }
    }
    await this.syncL2();
    await this.routes.apply(added);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  datapathStats(): DatapathStats {
    return this.o.vtep.stats?.([...this.peers.keys()]) ?? { counters: {}, peers: [], workerRestarts: 0 };
  }

  crashWorker(direction: 'tx' | 'rx'): void {
    this.o.vtep.crashWorker?.(direction);
  }

  async close(): Promise<void> {
    await this.queue.catch(() => {});
    await this.routes.close();
    await this.o.vtep.close();
  }

  private usable(l: Lease): boolean {
    if (l.attrs.backendType !== 'vxlan') {
      this.o.log.warn({ subnet: formatCidr4(l.subnet), backendType: l.attrs.backendType ?? 'udp' }, 'Ignoring non-vxlan subnet');
      return false;
    }
    if (!parseVtepMac(l.attrs.backendData)) {
      this.o.log.warn({ subnet: formatCidr4(l.subnet), backendData: l.attrs.backendData }, 'Ignoring vxlan subnet without a valid VtepMAC');
      return false;
    }
    return true;
  }

  private async syncL2(): Promise<{ added: number; removed: number; failed: number }> {
    const peers = [...this.peers.values()];
    await this.o.vtep.setPeers(peers);
    const l2 = peers.map((p) => ({ gateway: formatIp4(p.subnet.ip), mac: p.mac, publicIp: formatIp4(p.publicIp) }));
    return syncVxlanL2(this.o.vtep.device, l2, this.o.vtep.withFdb);
  }

  private routeFor(l: Lease): Route | undefined {
    if (l.attrs.backendType !== 'vxlan') return undefined;
    const dst = formatCidr4(l.subnet);
    if (this.direct.get(l.attrs.publicIp)) return { dst, via: formatIp4(l.attrs.publicIp), dev: this.o.ctx.ext.name };
    return { dst, via: formatIp4(l.subnet.ip), dev: this.o.vtep.device, onlink: true };
  }

  /** flannel's DirectRouting test: exactly one route to the PublicIP, with no gateway. */
  private async decideDirect(publicIp: number): Promise<void> {
    if (this.direct.has(publicIp)) return;
    const r = await runCommand('ip', ['-j', 'route', 'get', formatIp4(publicIp)]);
    const rows = JSON.parse(r.code === 0 ? r.stdout : '[]') as Array<{ gateway?: string }>;
    this.direct.set(publicIp, rows.length === 1 && !rows[0]?.gateway);
  }
}
