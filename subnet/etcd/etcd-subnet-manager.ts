// flannel's subnet policy over the etcd registry: wait for a valid config, acquire a lease (reuse by
// PublicIP, then the previous subnet, then a random free one), renew it ahead of expiry, and watch
// the other nodes' leases, re-listing after any interruption so that nothing is missed. When etcd
// lost its data (its revision went back), our own key is re-created on the same subnet.
// With an IPv6 pool in the config (dual-stack) every lease carries an IPv4 and an IPv6 subnet, picked
// together with flannel's rules; an IPv4-only lease of this PublicIP keeps its IPv4 subnet and gains an
// IPv6 one (moved to the dual-stack key in one guarded transaction) instead of being reallocated.
// IPv6-only (no IPv4 pool): each lease has only an IPv6 subnet, under our own key fd00:…-64 (see
// subnet/lease.ts), with PublicIP 0.0.0.0; the node is found by its PublicIPv6 instead.
import type { Logger } from 'pino';
import { isCompatible, isCompatible6, pickFreeSubnet, pickFreeSubnet6, poolUsage, poolUsage6 } from '../allocator.js';
import { Backoff, sleep } from '../backoff.js';
import { FlannelError, isFlannelError } from '../../lib/errors.js';
import { type Cidr4, cidrEquals, cidrOverlaps, formatCidr4, formatIp4 } from '../../lib/ip.js';
import { type Cidr6, cidr6Overlaps, formatCidr6, formatIp6 } from '../../lib/ip6.js';
import { type Lease, type LeaseAttrs, type LeaseEvent, describeNode, describeSubnets, leaseIdentity, sameAttrs, sameNode } from '../lease.js';
import { LeaseWatcher, type WatchOutput } from '../lease-watcher.js';
import type { AcquireOptions, AcquireSource, EtcdOp, ResyncReason, SubnetEvent, SubnetManager, WatchCallbacks } from '../subnet-manager.js';
import { type Ipv4Pool, type Ipv6Pool, type NetworkConfig, parseNetworkConfig } from '../network-config.js';
import type { EtcdRegistry, LeaseLocation, StoredLease, WatchHandle } from './etcd-registry.js';

export const DEFAULT_LEASE_TTL_SEC = 24 * 3600;
/** After etcd lost its data, peers missing from it keep their routes this long while they re-register. */
export const DEFAULT_DATA_LOSS_GRACE_MS = 30_000;
/** A full re-list at least this often, a safety net under the watch (a watch can go silent). */
export const DEFAULT_RESYNC_INTERVAL_MS = 5 * 60_000;
/** Logged (stable text) when a refused renewal finds the key already held by the lease we hold now. */
export const ADOPTED_MESSAGE = 'our key is already held by our current etcd lease (the other loop renewed or re-created it); keeping it';

export type { AcquireSource, ResyncReason, SubnetEvent, WatchCallbacks } from '../subnet-manager.js';

export interface SubnetManagerOptions {
  readonly log: Logger;
  /** TTL of the etcd lease that holds our key; flannel uses 24 h. */
  readonly leaseTtlSec?: number;
  readonly random?: () => number;
  /** Called synchronously for every SubnetEvent; must not throw. */
  readonly onEvent?: (ev: SubnetEvent) => void;
  readonly dataLossGraceMs?: number;
  readonly resyncIntervalMs?: number;
}

export class EtcdSubnetManager implements SubnetManager {
  readonly leaseTtlSec: number;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly emit: (ev: SubnetEvent) => void;
  private readonly dataLossGraceMs: number;
  private readonly resyncIntervalMs: number;
  /** Our lease as last written or seen; shared by the renewal and the watch, which may both replace it. */
  private own: Lease | undefined;
  /** The highest etcd revision seen; a list or read below it means etcd lost its data. */
  private highestRevision = 0n;
  /** Until then (ms), etcd is recovering from a data loss: a missing own key is re-created, missing peers kept. */
  private dataLossUntil = 0;
  private etcdUp: boolean | undefined;
  private reclaiming: Promise<Lease> | undefined;

  constructor(private readonly registry: EtcdRegistry, o: SubnetManagerOptions) {
    this.log = o.log;
    this.leaseTtlSec = o.leaseTtlSec ?? DEFAULT_LEASE_TTL_SEC;
    this.random = o.random ?? Math.random;
    this.dataLossGraceMs = o.dataLossGraceMs ?? DEFAULT_DATA_LOSS_GRACE_MS;
    this.resyncIntervalMs = o.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    const onEvent = o.onEvent;
    this.emit = onEvent ? (ev) => { try { onEvent(ev); } catch { /* metrics never break the manager */ } } : () => {};
    registry.observe((op, error) => this.observeCall(op, error));
  }

  /** Our lease as the manager holds it now (it changes on renewal and after a re-creation). */
  get currentLease(): Lease | undefined { return this.own; }

  private observeCall(op: EtcdOp, error: FlannelError | undefined): void {
    this.emit({ type: 'etcd-request', op, ok: !error });
    if (error && this.etcdUp !== false) {
      const wasUp = this.etcdUp === true; // not at start: etcd was never reachable then
      this.etcdUp = false;
      if (wasUp) this.emit({ type: 'etcd-unavailable', op, error: error.message });
    } else if (!error && this.etcdUp !== true) {
      if (this.etcdUp === false) this.log.info('etcd is reachable again');
      this.etcdUp = true;
      this.emit({ type: 'etcd-available' });
    }
  }

  /**
   * Records the revision of a full read. Returns true when it went back: etcd lost its data (a
   * wipe, or a restore from an older backup). etcd keeps its cluster ID through a wipe, so the
   * revision is the one sign; a watch from the old revision would stay silent forever.
   */
  private noteRevision(revision: string): boolean {
    const r = BigInt(revision);
    const before = this.highestRevision;
    this.highestRevision = r;
    if (r >= before) return false;
    this.dataLossUntil = Date.now() + this.dataLossGraceMs;
    this.log.warn({ fromRevision: before.toString(), toRevision: revision },
      `etcd lost its data (its revision went back from ${before} to ${revision}): re-registering our subnet; ` +
      `peers missing from etcd keep their routes for ${Math.round(this.dataLossGraceMs / 1000)} s while they re-register`);
    this.emit({ type: 'data-loss', fromRevision: before.toString(), toRevision: revision });
    return true;
  }

  private get recoveringFromDataLoss(): boolean { return Date.now() < this.dataLossUntil; }

  /** Reads and validates the config, retrying every second (as flannel does) until it is usable. */
  async waitForNetworkConfig(signal: AbortSignal, onProblem: (err: FlannelError) => void): Promise<NetworkConfig> {
    for (;;) {
      try {
        return parseNetworkConfig(await this.registry.readConfig(), `etcd key ${this.registry.configKey}`);
      } catch (err) {
        if (!(err instanceof FlannelError)) throw err;
        onProblem(err);
        this.log.error({ code: err.code }, `Couldn't fetch network config: ${err.message}`);
      }
      await sleep(1000, signal);
    }
  }

  /** Acquires our lease, retrying lost races at once and outages or a full pool with backoff. */
  async acquireLease(cfg: NetworkConfig, attrs: LeaseAttrs, o: AcquireOptions): Promise<Lease> {
    const backoff = new Backoff(500, 30_000, this.random);
    for (;;) {
      try {
        const { lease, source } = await this.tryAcquire(cfg, attrs, o.previousSubnet, o.previousIpv6Subnet);
        this.log.info({ ...(lease.subnet ? { subnet: formatCidr4(lease.subnet) } : {}), ...(lease.ipv6Subnet ? { ipv6Subnet: formatCidr6(lease.ipv6Subnet) } : {}),
          publicIp: describeNode(attrs), source }, 'acquired lease');
        this.own = lease;
        this.emit({ type: 'lease-acquired', lease, source });
        return lease;
      } catch (err) {
        if (isFlannelError(err, 'FLN_ERR_LEASE_CONFLICT')) {
          this.log.info(`${err.message}; trying again`);
          await sleep(50 + this.random() * 200, o.signal);
          continue;
        }
        if (!isFlannelError(err, 'FLN_ERR_SUBNETS_EXHAUSTED') && !isFlannelError(err, 'FLN_ERR_ETCD_UNAVAILABLE')) throw err;
        const delayMs = backoff.next();
        this.log.error({ code: err.code }, `failed to acquire lease: ${err.message} (trying again in ${(delayMs / 1000).toFixed(1)} s)`);
        await sleep(delayMs, o.signal);
      }
    }
  }

  private async tryAcquire(cfg: NetworkConfig, attrs: LeaseAttrs, previous: Cidr4 | undefined,
    previous6: Cidr6 | undefined): Promise<{ lease: Lease; source: AcquireSource }> {
    const listed = await this.registry.listLeases();
    this.highestRevision = BigInt(listed.revision);
    const v4 = cfg.ipv4;
    const v6 = cfg.ipv6;
    if (!v4) return this.tryAcquire6Only(v6 as Ipv6Pool, attrs, listed.leases, previous6);
    let leases = listed.leases;
    const mine = leases.find((l) => l.attrs.publicIp === attrs.publicIp);
    if (mine?.subnet && isCompatible(v4, mine.subnet)) {
      const ttl = mine.etcdLeaseId === '0' ? 0 : this.leaseTtlSec;
      const source = mine.etcdLeaseId === '0' ? 'reservation' : 'reused';
      // flannel's isIPv6SubnetConfigCompat: a v6 subnet exactly when IPv6 is on, inside the pool.
      const v6Fits = v6 ? mine.ipv6Subnet !== undefined && isCompatible6(v6, mine.ipv6Subnet) : mine.ipv6Subnet === undefined;
      if (v6Fits) {
        if (mine.etcdLeaseId === '0' && sameAttrs(mine.attrs, attrs)) return { lease: mine, source: 'reservation' }; // kept as is
        this.log.info({ subnet: formatCidr4(mine.subnet) }, 'reusing the lease held by this PublicIP');
        const lease = await this.registry.updateLease(locationOf(mine), attrs, ttl, mine.etcdLeaseId);
        return { lease, source };
      }
      // Unlike flannel (which deletes the lease and allocates anew, moving the node's IPv4 subnet), the
      // IPv4 subnet is kept and only the IPv6 part is added, replaced or dropped.
      let ipv6Subnet: Cidr6 | undefined;
      if (v6) {
        const taken6 = leases.flatMap((l) => (l !== mine && l.ipv6Subnet ? [l.ipv6Subnet] : []));
        ipv6Subnet = choosePrevious6(v6, previous6, taken6) ?? pickFreeSubnet6(v6, taken6, this.random);
        if (!ipv6Subnet) throw exhausted6Error(v6, taken6);
      }
      this.log.info({ subnet: formatCidr4(mine.subnet), from: mine.ipv6Subnet ? formatCidr6(mine.ipv6Subnet) : null,
        to: ipv6Subnet ? formatCidr6(ipv6Subnet) : null }, 'keeping the IPv4 subnet of the lease held by this PublicIP; changing its IPv6 subnet');
      const from = { subnet: mine.subnet, ...(mine.ipv6Subnet ? { ipv6Subnet: mine.ipv6Subnet } : {}), ...(mine.key !== undefined ? { key: mine.key } : {}) };
      const lease = await this.registry.moveLease(from, { subnet: mine.subnet, ...(ipv6Subnet ? { ipv6Subnet } : {}) }, attrs, ttl, mine.etcdLeaseId,
        ipv6Subnet ? { listedAt: listed.revision } : undefined);
      return { lease, source };
    }
    if (mine) {
      this.log.warn({ subnet: describeSubnets(mine) }, 'deleting our old lease: it does not fit the current network config');
      await this.registry.deleteLease(locationOf(mine));
      leases = leases.filter((l) => l !== mine);
    }
    const taken = leases.flatMap((l) => (l.subnet ? [l.subnet] : []));
    const taken6 = leases.flatMap((l: StoredLease) => (l.ipv6Subnet ? [l.ipv6Subnet] : []));
    let subnet: Cidr4 | undefined;
    if (previous) {
      if (isCompatible(v4, previous) && !taken.some((s) => cidrOverlaps(s, previous))) {
        this.log.info({ subnet: formatCidr4(previous) }, 'reusing the previously leased subnet from the subnet file');
        subnet = previous;
      } else {
        this.log.info({ subnet: formatCidr4(previous) }, 'found previously leased subnet, but it is taken or not compatible with the config');
      }
    }
    const source = subnet ? 'previous' : 'new';
    subnet ??= pickFreeSubnet(v4, taken, this.random);
    if (!subnet) throw exhaustedError(v4, v6 !== undefined, taken);
    if (!v6) return { lease: await this.registry.createLease(subnet, attrs, this.leaseTtlSec), source };
    const ipv6Subnet = choosePrevious6(v6, previous6, taken6) ?? pickFreeSubnet6(v6, taken6, this.random);
    if (!ipv6Subnet) throw exhausted6Error(v6, taken6);
    // Guarded by the list's revision: another node may have taken this IPv6 subnet under another IPv4 one.
    return { lease: await this.registry.createLease({ subnet, ipv6Subnet }, attrs, this.leaseTtlSec, { listedAt: listed.revision }), source };
  }

  /**
   * IPv6-only: reuse the IPv6-only lease of our PublicIPv6 when it fits the pool, else the subnet.env
   * subnet, else a random free one. The key is the subnet itself, so etcd's create-if-absent keeps two
   * nodes off one subnet, as it does for IPv4 keys; subnets of any other key count as taken.
   */
  private async tryAcquire6Only(v6: Ipv6Pool, attrs: LeaseAttrs, all: readonly StoredLease[], previous6: Cidr6 | undefined):
    Promise<{ lease: Lease; source: AcquireSource }> {
    let leases = all;
    const mine = leases.find((l) => l.subnet === undefined && sameNode(l.attrs, attrs));
    if (mine?.ipv6Subnet && isCompatible6(v6, mine.ipv6Subnet)) {
      if (mine.etcdLeaseId === '0' && sameAttrs(mine.attrs, attrs)) return { lease: mine, source: 'reservation' };
      this.log.info({ ipv6Subnet: formatCidr6(mine.ipv6Subnet) }, 'reusing the lease held by this PublicIPv6');
      const ttl = mine.etcdLeaseId === '0' ? 0 : this.leaseTtlSec;
      return { lease: await this.registry.updateLease(locationOf(mine), attrs, ttl, mine.etcdLeaseId), source: mine.etcdLeaseId === '0' ? 'reservation' : 'reused' };
    }
    if (mine) {
      this.log.warn({ subnet: describeSubnets(mine) }, 'deleting our old lease: it does not fit the current network config');
      await this.registry.deleteLease(locationOf(mine));
      leases = leases.filter((l) => l !== mine);
    }
    const taken6 = leases.flatMap((l) => (l.ipv6Subnet ? [l.ipv6Subnet] : []));
    const previous = choosePrevious6(v6, previous6, taken6);
    if (previous6) {
      this.log.info({ ipv6Subnet: formatCidr6(previous6) }, previous ? 'reusing the previously leased IPv6 subnet from the subnet file'
        : 'found previously leased IPv6 subnet, but it is taken or not compatible with the config');
    }
    const ipv6Subnet = previous ?? pickFreeSubnet6(v6, taken6, this.random);
    if (!ipv6Subnet) throw exhausted6Error(v6, taken6);
    return { lease: await this.registry.createLease({ ipv6Subnet }, attrs, this.leaseTtlSec), source: previous ? 'previous' : 'new' };
  }

  /**
   * Renews the lease at expiry minus the margin (at most half the TTL) until the signal fires.
   * Failures are retried. When etcd refuses the guarded renewal, the key is looked at again: re-created
   * if etcd lost its data, else the loop ends with FLN_ERR_LEASE_REVOKED (deleted, expired or taken).
   */
  async runRenewal(lease: Lease, o: { renewMarginMs: number; signal: AbortSignal; onRenewed?: (l: Lease) => void }): Promise<void> {
    this.adopt(lease);
    const ttlMs = this.leaseTtlSec * 1000;
    const marginMs = Math.min(o.renewMarginMs, ttlMs / 2);
    const retryMs = Math.min(60_000, Math.max(1000, marginMs / 10));
    const waitFor = (l: Lease): number => l.expiresAtMs - marginMs - Date.now();
    let current = this.own as Lease;
    if (current.expiresAtMs === Infinity) return; // a reservation never expires
    let waitMs = waitFor(current);
    this.log.info(`waiting ${Math.round(waitMs / 1000)} s to renew the lease`);
    for (;;) {
      await sleep(waitMs, o.signal);
      current = this.own as Lease;
      if (current.expiresAtMs === Infinity) return;
      try {
        try {
          current = await this.registry.updateLease(locationOf(current), current.attrs, this.leaseTtlSec, current.etcdLeaseId);
          if (this.own?.etcdLeaseId !== current.etcdLeaseId) this.own = current;
          this.emit({ type: 'lease-renewed', lease: current });
          this.log.info({ subnet: describeSubnets(current) }, 'lease renewed');
        } catch (err) {
          if (!isFlannelError(err, 'FLN_ERR_LEASE_CONFLICT')) throw err;
          current = await this.reclaim(err.message);
        }
        o.onRenewed?.(current);
        waitMs = waitFor(current);
      } catch (err) {
        if (!isFlannelError(err, 'FLN_ERR_ETCD_UNAVAILABLE')) throw err;
        this.emit({ type: 'lease-renewal-failed', error: err.message });
        this.log.warn(`Error renewing lease (trying again in ${Math.round(retryMs / 1000)} s): ${err.message}`);
        waitMs = retryMs;
      }
    }
  }

  /** Makes `lease` the one we hold, unless we already hold a newer one of the same subnet. */
  private adopt(lease: Lease): void {
    if (!this.own || leaseIdentity(this.own) !== leaseIdentity(lease)) this.own = lease;
  }

  /**
   * Our key is no longer held by our etcd lease (a refused renewal, or missing from a list). Reads it:
   * still ours under another etcd lease → keep it; taken by another node → revoked; missing → if etcd
   * lost its data, re-create it on the same subnet with a create-if-absent, else revoked (it was
   * deleted or expired, and flannel's answer is to stop). One reclaim at a time.
   */
  private reclaim(why: string): Promise<Lease> {
    this.reclaiming ??= this.doReclaim(why).finally(() => { this.reclaiming = undefined; });
    return this.reclaiming;
  }

  private async doReclaim(why: string): Promise<Lease> {
    const own = this.own as Lease;
    const where = describeSubnets(own);
    for (let attempt = 1; ; attempt++) {
      const { lease, revision } = await this.registry.getLease(locationOf(own));
      const lostData = this.noteRevision(revision) || this.recoveringFromDataLoss;
      if (lease && !sameNode(lease.attrs, own.attrs)) {
        throw revokedError(`our subnet ${where} is now leased by ${describeNode(lease.attrs)} (${why})`);
      }
      if (lease) {
        const current = this.own as Lease;
        if (lease.etcdLeaseId === current.etcdLeaseId) {
          // The other loop (renewal or watch) already renewed or re-created the key: adopt, no revocation.
          this.log.info({ subnet: where, etcdLease: lease.etcdLeaseId, why }, ADOPTED_MESSAGE);
          return current;
        }
        // Our PublicIP holds it under an etcd lease we do not know: keep it, and renew it at once.
        this.log.warn({ subnet: where, etcdLease: lease.etcdLeaseId }, 'our key is held by another etcd lease of this PublicIP; taking it over');
        this.own = { ...lease, expiresAtMs: lease.etcdLeaseId === '0' ? Infinity : Date.now() };
        return this.own;
      }
      if (!lostData) throw revokedError(`our lease key ${where} is missing from etcd: it expired or was deleted (${why})`);
      try {
        const created = await this.registry.createLease(locationOf(own), own.attrs, this.leaseTtlSec);
        this.own = created;
        this.log.warn({ subnet: where }, 're-created our lease on the same subnet after etcd lost its data');
        this.emit({ type: 'lease-acquired', lease: created, source: 'recreated' });
        return created;
      } catch (err) {
        // Someone created the key between our read and our create: read it again.
        if (!isFlannelError(err, 'FLN_ERR_LEASE_CONFLICT') || attempt >= 3) throw err;
      }
    }
  }

  /**
   * Watches the other nodes' leases until the signal fires: list, deliver the diff, watch from the
   * next revision; after any interruption (etcd down, compaction) list again and deliver the diff.
   * A list also runs every resyncIntervalMs. A list whose revision went back means etcd lost its data:
   * our key is re-created (see reclaim) and missing peers are kept for the grace period.
   */
  async runLeaseWatch(own: Lease, cb: WatchCallbacks, signal: AbortSignal): Promise<void> {
    this.adopt(own);
    const watcher = new LeaseWatcher(own);
    const backoff = new Backoff(250, 5000, this.random);
    const lost = (reason: string): void => {
      cb.onOwnLeaseLost(reason);
    };
    const deliver = (out: WatchOutput): void => {
      if (out.events.length > 0) {
        cb.onEvents(out.events);
        this.emit({ type: 'peers', count: watcher.leases().length });
      }
      if (out.own?.kind === 'lost') lost(out.own.reason);
    };
    while (!signal.aborted) {
      try {
        const { leases, revision } = await this.registry.listLeases();
        this.noteRevision(revision);
        const out = watcher.reset(leases, { keepMissing: this.recoveringFromDataLoss });
        if (out.own?.kind === 'lost' && out.own.cause === 'missing') {
          deliver({ events: out.events }); // the cache already holds them
          try {
            await this.reclaim(out.own.reason);
          } catch (err) {
            if (!isFlannelError(err, 'FLN_ERR_LEASE_REVOKED')) throw err;
            lost(err.message.replace(/^Lease has been revoked: /, ''));
          }
        } else {
          deliver(out);
        }
        this.emit({ type: 'peers', count: watcher.leases().length });
        if (signal.aborted) return;
        cb.onSynced?.();
        const untilMs = this.recoveringFromDataLoss ? this.dataLossUntil - Date.now() : this.resyncIntervalMs;
        const end = await this.watchOnce(watcher, BigInt(revision) + 1n, deliver, signal, untilMs, () => backoff.reset());
        if (signal.aborted) return;
        if (end.kind === 'periodic' || end.kind === 'recovery') {
          this.log.info({ kind: end.kind, reason: end.reason }, 're-listing leases');
        } else {
          this.log.warn({ kind: end.kind, reason: end.reason }, 'lease watch interrupted; re-listing leases');
        }
        this.emit({ type: 'watch-resync', reason: end.kind as ResyncReason, detail: end.reason });
        cb.onResync?.(end.reason);
        if (end.kind === 'periodic' || end.kind === 'recovery') continue;
      } catch (err) {
        if (!isFlannelError(err, 'FLN_ERR_ETCD_UNAVAILABLE')) throw err;
        this.log.warn({ code: err.code }, `lease watch: ${err.message}`);
      }
      await sleep(backoff.next(), signal);
    }
  }

  /** One watch from `from` until it ends, the signal fires, or `untilMs` passes (a planned re-list). */
  private async watchOnce(watcher: LeaseWatcher, from: bigint, deliver: (o: WatchOutput) => void, signal: AbortSignal,
    untilMs: number, onEstablished: () => void): Promise<{ kind: ResyncReason | 'stopped'; reason: string }> {
    if (signal.aborted) return { kind: 'stopped', reason: 'stopped' };
    let finish: (end: { kind: ResyncReason | 'stopped'; reason: string }) => void = () => {};
    const ended = new Promise<{ kind: ResyncReason | 'stopped'; reason: string }>((resolve) => { finish = resolve; });
    const onAbort = (): void => finish({ kind: 'stopped', reason: 'stopped' });
    signal.addEventListener('abort', onAbort, { once: true });
    const planned = this.recoveringFromDataLoss
      ? { kind: 'recovery' as const, reason: 'the grace period after etcd lost its data is over' }
      : { kind: 'periodic' as const, reason: `periodic re-list every ${Math.round(this.resyncIntervalMs / 1000)} s` };
    const timer = setTimeout(() => finish(planned), Math.max(0, untilMs));
    let handle: WatchHandle | undefined;
    try {
      handle = await this.registry.watch(from.toString(), {
        onChanges: (changes, revision) => {
          if (BigInt(revision) > this.highestRevision) this.highestRevision = BigInt(revision);
          for (const c of changes) deliver(c.kind === 'put' ? watcher.put(c.lease) : watcher.delete(c));
        },
        onEstablished,
        onEnd: (reason, kind) => finish({ kind, reason }),
      });
      return await ended;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      handle?.cancel();
    }
  }

  async close(): Promise<void> {
    await this.registry.close();
  }
}

function revokedError(detail: string): FlannelError {
  return new FlannelError('FLN_ERR_LEASE_REVOKED', `Lease has been revoked: ${detail}`);
}

function exhaustedError(cfg: Ipv4Pool, dualStack: boolean, taken: readonly Cidr4[]): FlannelError {
  const usage = poolUsage(cfg, taken);
  return new FlannelError('FLN_ERR_SUBNETS_EXHAUSTED',
    `out of ${dualStack ? 'IPv4 ' : ''}subnets: network ${formatCidr4(cfg.network)} has ${usage.total} subnets of /${cfg.subnetLen} ` +
    `(${formatIp4(cfg.subnetMin)} to ${formatIp4(cfg.subnetMax)}) and ${usage.taken} of them are taken; ` +
    'delete stale leases or use a larger Network',
    { details: { ...(dualStack ? { family: 'ipv4' } : {}), network: formatCidr4(cfg.network), ...usage } });
}

/** The subnet.env IPv6 subnet when it still fits the pool and no other lease holds it. */
function choosePrevious6(pool: Ipv6Pool, previous6: Cidr6 | undefined, taken6: readonly Cidr6[]): Cidr6 | undefined {
  if (!previous6 || !isCompatible6(pool, previous6) || taken6.some((s) => cidr6Overlaps(s, previous6))) return undefined;
  return previous6;
}

function exhausted6Error(pool: Ipv6Pool, taken6: readonly Cidr6[]): FlannelError {
  const usage = poolUsage6(pool, taken6);
  return new FlannelError('FLN_ERR_SUBNETS_EXHAUSTED',
    `out of IPv6 subnets: IPv6Network ${formatCidr6(pool.network)} has ${usage.total} subnets of /${pool.subnetLen} ` +
    `(${formatIp6(pool.subnetMin)} to ${formatIp6(pool.subnetMax)}) and ${usage.taken} of them are taken; ` +
    'delete stale leases or use a larger IPv6Network or a longer IPv6SubnetLen',
    { details: { family: 'ipv6', network: formatCidr6(pool.network), total: usage.total.toString(), taken: usage.taken.toString() } });
}

/** Where a lease lives, as the registry takes it: an IPv4-only lease by its subnet (as always), else its location. */
function locationOf(l: StoredLease): Cidr4 | LeaseLocation {
  if (l.subnet && !l.ipv6Subnet && l.key === undefined) return l.subnet;
  const key = l.key !== undefined ? { key: l.key } : {};
  if (!l.subnet) return { ipv6Subnet: l.ipv6Subnet as Cidr6, ...key };
  return { subnet: l.subnet, ...(l.ipv6Subnet ? { ipv6Subnet: l.ipv6Subnet } : {}), ...key };
}
