// flannel's subnet policy over the etcd registry: wait for a valid config, acquire a lease (reuse by
// PublicIP, then the previous subnet, then a random free one), renew it ahead of expiry, and watch
// the other nodes' leases, re-listing after any interruption so that nothing is missed.
import type { Logger } from 'pino';
import { isCompatible, pickFreeSubnet, poolUsage } from '../allocator.js';
import { Backoff, sleep } from '../backoff.js';
import { FlannelError, isFlannelError } from '../errors.js';
import { type Cidr4, cidrOverlaps, formatCidr4, formatIp4 } from '../ip.js';
import { type Lease, type LeaseAttrs, type LeaseEvent, sameAttrs } from '../lease.js';
import { LeaseWatcher, type WatchOutput } from '../lease-watcher.js';
import { type NetworkConfig, parseNetworkConfig } from '../network-config.js';
import type { EtcdRegistry, WatchHandle } from './etcd-registry.js';

export const DEFAULT_LEASE_TTL_SEC = 24 * 3600;

export interface SubnetManagerOptions {
  readonly log: Logger;
  /** TTL of the etcd lease that holds our key; flannel uses 24 h. */
  readonly leaseTtlSec?: number;
  readonly random?: () => number;
}

export interface WatchCallbacks {
  onEvents(events: readonly LeaseEvent[]): void;
  /** Our own key vanished or went to another node; the daemon must stop. */
  onOwnLeaseLost(reason: string): void;
  /** A full list was delivered (at start and after every interruption): a good time to reconcile. */
  onSynced?(): void;
  onResync?(reason: string): void;
}

export class EtcdSubnetManager {
  readonly leaseTtlSec: number;
  private readonly log: Logger;
  private readonly random: () => number;

  constructor(private readonly registry: EtcdRegistry, o: SubnetManagerOptions) {
    this.log = o.log;
    this.leaseTtlSec = o.leaseTtlSec ?? DEFAULT_LEASE_TTL_SEC;
    this.random = o.random ?? Math.random;
  }

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
  async acquireLease(cfg: NetworkConfig, attrs: LeaseAttrs, o: { previousSubnet?: Cidr4; signal: AbortSignal }): Promise<Lease> {
    const backoff = new Backoff(500, 30_000, this.random);
    for (;;) {
      try {
        const lease = await this.tryAcquire(cfg, attrs, o.previousSubnet);
        this.log.info({ subnet: formatCidr4(lease.subnet), publicIp: formatIp4(attrs.publicIp) }, 'acquired lease');
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

  private async tryAcquire(cfg: NetworkConfig, attrs: LeaseAttrs, previous: Cidr4 | undefined): Promise<Lease> {
    let { leases } = await this.registry.listLeases();
    const mine = leases.find((l) => l.attrs.publicIp === attrs.publicIp);
    if (mine && isCompatible(cfg, mine.subnet)) {
      if (mine.etcdLeaseId === '0' && sameAttrs(mine.attrs, attrs)) return mine; // a reservation, kept as is
      this.log.info({ subnet: formatCidr4(mine.subnet) }, 'reusing the lease held by this PublicIP');
      return this.registry.updateLease(mine.subnet, attrs, mine.etcdLeaseId === '0' ? 0 : this.leaseTtlSec, mine.etcdLeaseId);
    }
    if (mine) {
      this.log.warn({ subnet: formatCidr4(mine.subnet) }, 'deleting our old lease: it does not fit the current network config');
      await this.registry.deleteLease(mine.subnet);
      leases = leases.filter((l) => l !== mine);
    }
    const taken = leases.map((l) => l.subnet);
    if (previous) {
      if (isCompatible(cfg, previous) && !taken.some((s) => cidrOverlaps(s, previous))) {
        this.log.info({ subnet: formatCidr4(previous) }, 'reusing the previously leased subnet from the subnet file');
        return this.registry.createLease(previous, attrs, this.leaseTtlSec);
      }
      this.log.info({ subnet: formatCidr4(previous) }, 'found previously leased subnet, but it is taken or not compatible with the config');
    }
    const subnet = pickFreeSubnet(cfg, taken, this.random);
    if (!subnet) throw exhaustedError(cfg, taken);
    return this.registry.createLease(subnet, attrs, this.leaseTtlSec);
  }

  /**
   * Renews the lease at expiry minus the margin (at most half the TTL) until the signal fires.
   * Failures are retried; a lease that went to someone else ends the loop with FLN_ERR_LEASE_REVOKED.
   */
  async runRenewal(lease: Lease, o: { renewMarginMs: number; signal: AbortSignal; onRenewed?: (l: Lease) => void }): Promise<void> {
    const ttlMs = this.leaseTtlSec * 1000;
    const marginMs = Math.min(o.renewMarginMs, ttlMs / 2);
    const retryMs = Math.min(60_000, Math.max(1000, marginMs / 10));
    let current = lease;
    if (current.expiresAtMs === Infinity) return; // a reservation never expires
    let waitMs = current.expiresAtMs - marginMs - Date.now();
    this.log.info(`waiting ${Math.round(waitMs / 1000)} s to renew the lease`);
    for (;;) {
      await sleep(waitMs, o.signal);
      try {
        current = await this.registry.updateLease(current.subnet, current.attrs, this.leaseTtlSec, current.etcdLeaseId);
        o.onRenewed?.(current);
        waitMs = current.expiresAtMs - marginMs - Date.now();
        this.log.info({ subnet: formatCidr4(current.subnet) }, 'lease renewed');
      } catch (err) {
        if (isFlannelError(err, 'FLN_ERR_LEASE_CONFLICT')) {
          throw new FlannelError('FLN_ERR_LEASE_REVOKED', `Lease has been revoked: ${err.message}`, { cause: err });
        }
        if (!isFlannelError(err, 'FLN_ERR_ETCD_UNAVAILABLE')) throw err;
        this.log.warn(`Error renewing lease (trying again in ${Math.round(retryMs / 1000)} s): ${err.message}`);
        waitMs = retryMs;
      }
    }
  }

  /**
   * Watches the other nodes' leases until the signal fires: list, deliver the diff, watch from the
   * next revision; after any interruption (etcd down, compaction) list again and deliver the diff.
   */
  async runLeaseWatch(own: Lease, cb: WatchCallbacks, signal: AbortSignal): Promise<void> {
    const watcher = new LeaseWatcher({ subnet: own.subnet, publicIp: own.attrs.publicIp });
    const backoff = new Backoff(250, 5000, this.random);
    const deliver = (out: WatchOutput): void => {
      if (out.events.length > 0) cb.onEvents(out.events);
      if (out.own?.kind === 'lost') cb.onOwnLeaseLost(out.own.reason);
    };
    while (!signal.aborted) {
      try {
        const { leases, revision } = await this.registry.listLeases();
        deliver(watcher.reset(leases));
        cb.onSynced?.();
        const reason = await this.watchOnce(watcher, BigInt(revision) + 1n, deliver, signal);
        if (signal.aborted) return;
        this.log.warn({ reason }, 'lease watch interrupted; re-listing leases');
        cb.onResync?.(reason);
      } catch (err) {
        if (!isFlannelError(err, 'FLN_ERR_ETCD_UNAVAILABLE')) throw err;
        this.log.warn({ code: err.code }, `lease watch: ${err.message}`);
      }
      await sleep(backoff.next(), signal);
    }
  }

  private async watchOnce(watcher: LeaseWatcher, from: bigint, deliver: (o: WatchOutput) => void, signal: AbortSignal): Promise<string> {
    let finish: (reason: string) => void = () => {};
    const ended = new Promise<string>((resolve) => { finish = resolve; });
    const onAbort = (): void => finish('stopped');
    signal.addEventListener('abort', onAbort, { once: true });
    let handle: WatchHandle | undefined;
    try {
      handle = await this.registry.watch(from.toString(), {
        onChanges: (changes) => {
          for (const c of changes) deliver(c.kind === 'put' ? watcher.put(c.lease) : watcher.delete(c.subnet));
        },
        onEnd: finish,
      });
      return await ended;
    } finally {
      signal.removeEventListener('abort', onAbort);
      handle?.cancel();
    }
  }

  async close(): Promise<void> {
    await this.registry.close();
  }
}

function exhaustedError(cfg: NetworkConfig, taken: readonly Cidr4[]): FlannelError {
  const usage = poolUsage(cfg, taken);
  return new FlannelError('FLN_ERR_SUBNETS_EXHAUSTED',
    `out of subnets: network ${formatCidr4(cfg.network)} has ${usage.total} subnets of /${cfg.subnetLen} ` +
    `(${formatIp4(cfg.subnetMin)} to ${formatIp4(cfg.subnetMax)}) and ${usage.taken} of them are taken; ` +
    'delete stale leases or use a larger Network', { details: { network: formatCidr4(cfg.network), ...usage } });
}
