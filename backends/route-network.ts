// A Network made of one kernel route per peer and address family (host-gw, vxlan's onlink and direct
// routes). Keeps the desired routes, programs changes in one batch, and reconciles against the kernel:
// routes deleted by hand come back, and routes we own that no lease wants any more are removed. A lease
// is known by leaseIdentity (its IPv4 subnet, as the lease watcher knows it; the IPv6 one when it is
// IPv6-only), so a lease that drops or changes its IPv6 subnet has its old IPv6 route removed.
import type { Logger } from 'pino';
import { type Cidr4, cidrContains, formatCidr4, parseCidr4 } from '../lib/ip.js';
import { type Cidr6, cidr6Contains, parseCidr6 } from '../lib/ip6.js';
import { type Lease, type LeaseEvent, leaseIdentity } from './backend.js';
import type { Network, ReconcileResult } from './backend.js';
import { type BatchResult, type Route, ipBatch, listOwnRoutes, routeSpec, sameRoute } from './kernel/kernel-routes.js';
import { LinkWatch } from './kernel/link-watch.js';

export interface RouteNetworkOptions {
  readonly lease: Lease;
  /** The overlay network of this family; we never touch routes outside it. */
  readonly network: Cidr4 | Cidr6;
  /** The address family of `network` and of every route: 4 (the default) or 6. */
  readonly family?: 4 | 6;
  readonly log: Logger;
  /** The route a peer lease needs, or undefined to ignore the lease (e.g. another backend type). */
  readonly routeFor: (lease: Lease) => Route | undefined;
  /** The interface the routes go through: when it comes back up (the kernel flushed them), reconcile at once. */
  readonly link?: string;
}

export class RouteNetwork implements Network {
  readonly lease: Lease;
  private readonly desired = new Map<string, Route>();
  /** The destination of each lease's route, by leaseIdentity. */
  private readonly byLease = new Map<string, string>();
  private readonly family: 4 | 6;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly pending: LeaseEvent[] = [];
  private nextBatch: Promise<void> | undefined;
  private readonly linkWatch: LinkWatch | undefined;

  constructor(private readonly o: RouteNetworkOptions) {
    this.lease = o.lease;
    this.family = o.family ?? 4;
    this.linkWatch = o.link === undefined ? undefined : new LinkWatch(o.link, () => {
      o.log.info({ link: o.link }, 'link is up again: reconciling routes');
      this.reconcile().catch((err: unknown) => o.log.warn(`reconcile after link-up failed: ${String(err)}`));
    });
  }

  /** Number of peers with a desired route. */
  get peerCount(): number { return this.desired.size; }

  /**
   * Events that arrive while a batch is being programmed (a watch delivers a transaction's keys one by
   * one) wait for the next batch together: 1000 new leases cost a few `ip -batch` runs, not 1000.
   */
  apply(events: readonly LeaseEvent[]): Promise<void> {
    this.pending.push(...events);
    this.nextBatch ??= this.serial(async () => {
      this.nextBatch = undefined; // from here on, new events go to the batch after this one
      const batch = this.pending.splice(0);
      const commands: string[] = [];
      for (const ev of batch) {
        const key = leaseIdentity(ev.lease);
        const route = this.o.routeFor(ev.lease);
        if (ev.kind === 'removed') {
          if (route && this.desired.get(route.dst) && sameRoute(this.desired.get(route.dst) as Route, route)) {
            this.desired.delete(route.dst);
            if (this.byLease.get(key) === route.dst) this.byLease.delete(key);
            commands.push(`route del ${routeSpec(route)}`);
          }
          continue;
        }
        const before = this.byLease.get(key);
        const old = before === undefined ? undefined : this.desired.get(before);
        if (old && old.dst !== route?.dst) {
          // The lease no longer wants this route (it lost or changed its subnet of this family).
          this.desired.delete(old.dst);
          this.byLease.delete(key);
          commands.push(`route del ${routeSpec(old)}`);
        }
        if (!route) continue;
        this.desired.set(route.dst, route);
        this.byLease.set(key, route.dst);
        commands.push(`route replace ${routeSpec(route)}`);
      }
      this.report(await ipBatch(commands), 'programming routes');
      if (commands.length > 0) this.o.log.info({ changes: commands.length, peers: this.desired.size }, 'routes updated');
    });
    return this.nextBatch;
  }

  reconcile(): Promise<ReconcileResult> {
    return this.serial(async () => {
      const actual = await listOwnRoutes(this.family);
      const commands: string[] = [];
      let fixed = 0;
      let removed = 0;
      for (const want of this.desired.values()) {
        if (actual.some((r) => sameRoute(r, want))) continue;
        commands.push(`route replace ${routeSpec(want)}`);
        fixed++;
      }
      for (const have of actual) {
        const want = this.desired.get(have.dst);
        if ((want && sameRoute(want, have)) || !this.inNetwork(have.dst)) continue;
        if (!want) removed++;
        commands.push(`route del ${routeSpec(have)}`);
      }
      // Deletions of wrong routes go first, then the replacements.
      commands.sort((a, b) => Number(a.startsWith('route replace')) - Number(b.startsWith('route replace')));
      const { failed } = this.report(await ipBatch(commands), 'reconciling routes');
      if (fixed + removed > 0) this.o.log.info({ fixed, removed }, 'Route recovered: kernel routes reconciled');
      return { fixed, removed, failed: failed.length };
    });
  }

  async close(): Promise<void> {
    this.linkWatch?.stop();
    await this.queue.catch(() => {});
  }

  private inNetwork(dst: string): boolean {
    if (this.family === 6) {
      const c = parseCidr6(dst);
      const net = this.o.network as Cidr6;
      return c !== undefined && c.prefixLen >= net.prefixLen && cidr6Contains(net, c.ip);
    }
    const c = parseCidr4(dst);
    const net = this.o.network as Cidr4;
    return c !== undefined && c.prefixLen >= net.prefixLen && cidrContains(net, c.ip);
  }

  private report(result: BatchResult, what: string): BatchResult {
    for (const f of result.failed) this.o.log.warn({ command: f.command }, `${what}: ${f.error}; will retry on the next reconcile`);
    return result;
  }

  /** Runs kernel work one batch at a time, in call order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}
