// The running vxlan network of one address family: a VTEP (flannel.<VNI> for IPv4, flannel-v6.<VNI>
// for IPv6) and, per peer lease with this family's part, in flannel's order: a permanent neighbour
// <peer subnet address> → VtepMAC, the FDB entry VtepMAC → PublicIP(v6) (in the userspace engine's
// table, or the kernel's FDB), then <peer subnet> via <peer subnet address> dev <VTEP> onlink.
// Nothing ever ARPs or solicits across the overlay. With DirectRouting, peers on our L2 segment get a
// host-gw route instead. State scales as one neighbour, one FDB entry and one route per peer; all of
// it goes when the lease (or its part of this family) goes.
import type { Logger } from 'pino';
import type { Cidr4 } from '../../lib/ip.js';
import type { Cidr6 } from '../../lib/ip6.js';
import { type Lease, type LeaseEvent, describeSubnets, leaseIdentity, sameAttrs } from '../backend.js';
import type { DatapathStats, ExternalInterface, Network, ReconcileResult } from '../backend.js';
import type { Route } from '../kernel/kernel-routes.js';
import { runCommand } from '../../lib/run-command.js';
import { syncVxlanL2 } from '../kernel/vxlan-l2.js';
import { RouteNetwork } from '../route-network.js';
import type { Vtep, VxlanPeer, VxlanPeer6 } from './vtep.js';
import { type Family, type FamilyPart, familyPart } from './vxlan-family.js';

export interface VxlanNetworkOptions {
  readonly lease: Lease;
  readonly family: Family;
  /** The overlay network of this family: routes outside it are never touched. */
  readonly network: Cidr4 | Cidr6;
  /** The family's VTEP: it is handed only peers of its family. */
  readonly vtep: Vtep<VxlanPeer | VxlanPeer6>;
  readonly directRouting: boolean;
  readonly ext: ExternalInterface;
  readonly log: Logger;
  /** This family runs alone (IPv6-only): it logs the leases it ignores, as the IPv4 side otherwise does. */
  readonly only?: boolean;
}

export class VxlanNetwork implements Network {
  readonly lease: Lease;
  /** This family's part of each programmed peer lease, by leaseIdentity. */
  private readonly peers = new Map<string, FamilyPart>();
  /** The usable peer leases programmed, by leaseIdentity. */
  private readonly applied = new Map<string, Lease>();
  /** Direct-routing decisions by public address, made once per peer as flannel does. */
  private readonly direct = new Map<string, boolean>();
  private readonly routes: RouteNetwork;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly pending: LeaseEvent[] = [];
  private nextBatch: Promise<void> | undefined;

  constructor(private readonly o: VxlanNetworkOptions) {
    this.lease = o.lease;
    // The link: DirectRouting routes go through the external interface, which a link flap flushes.
    this.routes = new RouteNetwork({ lease: o.lease, network: o.network, family: o.family, log: o.log, routeFor: (l) => this.routeFor(l), link: o.ext.name });
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
    // The net change per lease against what is programmed: a batch can hold several events for one
    // lease ("added, removed" under churn, "removed, added" when a lease changes), and the removals
    // below run before the additions.
    const finals = new Map<string, Lease | undefined>();
    for (const ev of events) finals.set(leaseIdentity(ev.lease), ev.kind === 'added' ? ev.lease : undefined);
    const removed: LeaseEvent[] = [];
    const added: LeaseEvent[] = [];
    for (const [key, lease] of finals) {
      const target = lease && this.usable(lease) ? lease : undefined;
      const current = this.applied.get(key);
      if (current && !target) removed.push({ kind: 'removed', lease: current });
      if (target && !(current && sameAttrs(current.attrs, target.attrs) && sameV6Subnet(current, target))) added.push({ kind: 'added', lease: target });
      if (target) this.applied.set(key, target);
      else this.applied.delete(key);
    }
    if (this.o.directRouting) for (const ev of added) await this.decideDirect((familyPart(this.o.family, ev.lease) as FamilyPart).publicIp);
    // Removal: route first, then L2; addition: L2 first (neighbour, FDB), then the route (a changed
    // lease is an addition: its route is replaced in place, its L2 entries by the sync).
    await this.routes.apply(removed);
    for (const ev of removed) this.peers.delete(leaseIdentity(ev.lease));
    for (const { lease } of added) {
      const part = familyPart(this.o.family, lease) as FamilyPart;
      const key = leaseIdentity(lease);
      if (this.direct.get(part.publicIp)) this.peers.delete(key);
      else this.peers.set(key, part);
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
    return this.o.vtep.stats?.([...this.peers.values()].map((p) => p.peer.key)) ?? { counters: {}, peers: [], workerRestarts: 0 };
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
    if (familyPart(this.o.family, l)) return true;
    // The IPv4 side says why a lease is ignored; the IPv6 side only when it runs alone (IPv6-only).
    if (this.o.family === 6 ? !this.o.only : !l.subnet) return false;
    if (l.attrs.backendType !== 'vxlan') {
      this.o.log.warn({ subnet: describeSubnets(l), backendType: l.attrs.backendType ?? 'udp' }, 'Ignoring non-vxlan subnet');
    } else {
      this.o.log.warn({ subnet: describeSubnets(l), backendData: this.o.family === 6 ? l.attrs.backendV6Data : l.attrs.backendData },
        `Ignoring vxlan subnet without ${this.o.family === 6 ? 'an IPv6 subnet, a PublicIPv6 and a valid BackendV6Data VtepMAC' : 'a valid VtepMAC'}`);
    }
    return false;
  }

  private async syncL2(): Promise<{ added: number; removed: number; failed: number }> {
    const parts = [...this.peers.values()];
    await this.o.vtep.setPeers(parts.map((p) => p.peer));
    const l2 = parts.map((p) => ({ gateway: p.gateway, mac: p.mac, publicIp: p.publicIp }));
    return syncVxlanL2(this.o.vtep.device, l2, this.o.vtep.withFdb);
  }

  private routeFor(l: Lease): Route | undefined {
    const part = familyPart(this.o.family, l);
    if (!part) return undefined;
    if (this.direct.get(part.publicIp)) return { dst: part.dst, via: part.publicIp, dev: this.o.ext.name };
    return { dst: part.dst, via: part.gateway, dev: this.o.vtep.device, onlink: true };
  }

  /** flannel's DirectRouting test: exactly one route to the public address, with no gateway. */
  private async decideDirect(publicIp: string): Promise<void> {
    if (this.direct.has(publicIp)) return;
    const r = await runCommand('ip', ['-j', 'route', 'get', publicIp]);
    const rows = JSON.parse(r.code === 0 ? r.stdout : '[]') as Array<{ gateway?: string }>;
    this.direct.set(publicIp, rows.length === 1 && !rows[0]?.gateway);
  }
}

function sameV6Subnet(a: Lease, b: Lease): boolean {
  return a.ipv6Subnet?.ip === b.ipv6Subnet?.ip && a.ipv6Subnet?.prefixLen === b.ipv6Subnet?.prefixLen;
}
