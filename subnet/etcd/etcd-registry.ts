// Raw storage operations on flannel's etcd v3 layout: the config key, lease keys held by etcd
// leases, a guarded create, and a prefix watch that reports compaction. No policy lives here.
// Dual-stack leases live under flannel's key 10.244.1.0-24&fd00:10:244:1::-64; a lease read from etcd
// is renewed and deleted under the key it was read from, whatever its spelling.
import type { Etcd3, ICompare, IRequestOp, ITxnResponse, IWatchResponse } from 'etcd3';
import { FlannelError, errorMessage } from '../../lib/errors.js';
import type { Cidr4 } from '../../lib/ip.js';
import type { Cidr6 } from '../../lib/ip6.js';
import { type KeySubnets, type Lease, type LeaseAttrs, decodeLeaseAttrs, encodeLeaseAttrs, subnetToKeyPart, subnetsFromKey } from '../lease.js';
import type { EtcdOp, WatchEndKind } from '../subnet-manager.js';

/**
 * Where a lease lives: its IPv4 subnet, its IPv6 subnet when dual-stack or IPv6-only, and the exact etcd key when
 * it is not the one subnetToKeyPart spells (a dual-stack key written with another IPv6 spelling).
 * A Lease read from this registry is its own location.
 */
export type LeaseLocation = KeySubnets & { readonly key?: string };

/**
 * A dual-stack write's extra condition: no key under <prefix>/subnets was created after `listedAt`
 * (the revision of the list the subnets were chosen from). Two nodes picking the same IPv6 subnet
 * with different IPv4 subnets write different keys, which flannel's create-if-absent cannot catch;
 * this can. Renewals (puts on existing keys) do not trip it.
 */
export interface ListGuard {
  readonly listedAt: string;
}

/** A lease as the registry returns it: `key` is set only for a dual-stack key stored in another spelling. */
export type StoredLease = Lease & { readonly key?: string };

export type RegistryChange =
  | { readonly kind: 'put'; readonly lease: StoredLease }
  /** The subnets of the deleted key: ipv6Subnet is set when it was a dual-stack or an IPv6-only one. */
  | ({ readonly kind: 'delete' } & KeySubnets);


export interface WatchHandlers {
  onChanges(changes: RegistryChange[], revision: string): void;
  /** etcd confirmed the watch (its first response arrived). */
  onEstablished?(): void;
  /** The watch ended (etcd gone, compacted past our revision, …); the caller must re-list. */
  onEnd(reason: string, kind: WatchEndKind): void;
}


type Where = Cidr4 | LeaseLocation;

/** Sees every etcd call's outcome (for metrics and availability tracking); must not throw. */
export type CallObserver = (op: EtcdOp, error: FlannelError | undefined) => void;

export interface WatchHandle { cancel(): void }

export class EtcdRegistry {
  private readonly observers: CallObserver[] = [];

  constructor(private readonly client: Etcd3, readonly prefix: string) {}

  /** Registers an observer of every call's outcome. */
  observe(fn: CallObserver): void {
    this.observers.push(fn);
  }

  get configKey(): string { return joinKey(this.prefix, 'config'); }
  get subnetsPrefix(): string { return joinKey(this.prefix, 'subnets'); }
  /** The key of a lease: as stored when known, else 10.244.1.0-24, dual-stack 10.244.1.0-24&fd00:10:244:1::-64, IPv6-only fd00:10:244:1::-64. */
  leaseKey(where: Where): string {
    const loc = locate(where);
    return loc.key ?? `${this.subnetsPrefix}/${subnetToKeyPart(loc.subnet, loc.ipv6Subnet)}`;
  }

  /** The config text; throws FLN_ERR_CONFIG_NOT_FOUND when the key is missing. */
  async readConfig(): Promise<string> {
    const text = await this.call('read_config', 'read network config', () => this.client.get(this.configKey).string());
    if (text === null) {
      throw new FlannelError('FLN_ERR_CONFIG_NOT_FOUND',
        `flannel config not found in etcd store at ${this.configKey}. Did you create your config using the etcd v3 API ` +
        `(ETCDCTL_API=3 etcdctl put ${this.configKey} '{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}')?`);
    }
    return text;
  }

  /** Every parsable lease under <prefix>/subnets and the revision the list was read at. */
  async listLeases(): Promise<{ leases: StoredLease[]; revision: string }> {
    const res = await this.call('list', 'list leases', () => this.client.getAll().prefix(this.subnetsPrefix).exec());
    const leases: StoredLease[] = [];
    for (const kv of res.kvs) {
      const lease = this.toLease(kv.key.toString(), kv.value.toString(), kv.lease);
      if (lease) leases.push(lease);
    }
    return { leases, revision: res.header.revision };
  }

  /** Our key as etcd holds it now (undefined when missing or unparsable), and the revision of the read. */
  async getLease(where: Where): Promise<{ lease: StoredLease | undefined; revision: string }> {
    const key = this.leaseKey(where);
    const res = await this.call('get', `read lease ${key}`, () => this.client.get(key).exec());
    const kv = res.kvs[0];
    return { lease: kv ? this.toLease(kv.key.toString(), kv.value.toString(), kv.lease) : undefined, revision: res.header.revision };
  }

  /** Grants an etcd lease and creates the key only if it does not exist (flannel's Txn guard). */
  async createLease(where: Where, attrs: LeaseAttrs, ttlSec: number, guard?: ListGuard): Promise<StoredLease> {
    const loc = locate(where);
    const key = this.leaseKey(loc);
    const id = await this.grant(ttlSec);
    const res = await this.call('create', `create lease ${key}`, () => (guard
      ? this.guardedTxn(guard, [absent(key)], [putOp(key, encodeLeaseAttrs(attrs), id)])
      : this.client.if(key, 'Version', '==', 0).then(this.client.put(key).value(encodeLeaseAttrs(attrs)).lease(id)).commit()),
    ).catch(async (err) => { await this.revoke(id); throw err; });
    if (!res.succeeded) {
      await this.revoke(id);
      throw new FlannelError('FLN_ERR_LEASE_CONFLICT', guard
        ? `subnet ${key} already exists, or another node leased a subnet since revision ${guard.listedAt}`
        : `subnet ${key} already exists (another node took it first)`);
    }
    return made(loc, attrs, id, Date.now() + ttlSec * 1000);
  }

  /**
   * Re-puts a lease on a fresh etcd lease (flannel's renewal and reuse), then revokes the old one.
   * Unlike flannel's blind put, the write is guarded: it only happens while the key is still held by
   * `expectedId`, so a node can never overwrite a subnet that meanwhile went to another node.
   * `ttlSec` 0 keeps a reservation (a key with no etcd lease) as it is.
   */
  async updateLease(where: Where, attrs: LeaseAttrs, ttlSec: number, expectedId: string): Promise<StoredLease> {
    const loc = locate(where);
    const key = this.leaseKey(loc);
    const id = ttlSec > 0 ? await this.grant(ttlSec) : '0';
    const put = this.client.put(key).value(encodeLeaseAttrs(attrs));
    if (id !== '0') put.lease(id);
    const res = await this.call('update', `update lease ${key}`, () => this.client.if(key, 'Lease', '==', expectedId).then(put).commit())
      .catch(async (err) => { await this.revoke(id); throw err; });
    if (!res.succeeded) {
      await this.revoke(id);
      throw new FlannelError('FLN_ERR_LEASE_CONFLICT', `lease ${key} is no longer held by etcd lease ${expectedId}`);
    }
    if (expectedId !== '0' && expectedId !== id) await this.revoke(expectedId);
    return made(loc, attrs, id, id === '0' ? Infinity : Date.now() + ttlSec * 1000);
  }

  /**
   * Moves a lease to another key in one transaction (an IPv4 lease becoming dual-stack with the same
   * IPv4 subnet, or the reverse): the new key is written and the old one deleted only while the old
   * key is still held by `expectedId` and the new key does not exist, so no other node's lease is
   * ever overwritten. The new key is written first, so a watcher sees the lease change, then the
   * removal of a key it no longer holds. `ttlSec` 0 keeps a reservation.
   */
  async moveLease(from: LeaseLocation, to: LeaseLocation, attrs: LeaseAttrs, ttlSec: number, expectedId: string, guard?: ListGuard): Promise<StoredLease> {
    const fromKey = this.leaseKey(from);
    const toKey = this.leaseKey(to);
    if (fromKey === toKey) return this.updateLease(from, attrs, ttlSec, expectedId);
    const id = ttlSec > 0 ? await this.grant(ttlSec) : '0';
    const heldBy: ICompare = { key: Buffer.from(fromKey), target: 'Lease', result: 'Equal', lease: expectedId };
    const res = await this.call('update', `move lease ${fromKey} to ${toKey}`, () =>
      this.guardedTxn(guard, [heldBy, absent(toKey)],
        [putOp(toKey, encodeLeaseAttrs(attrs), id), { request_delete_range: { key: Buffer.from(fromKey) } }]),
    ).catch(async (err) => { await this.revoke(id); throw err; });
    if (!res.succeeded) {
      await this.revoke(id);
      throw new FlannelError('FLN_ERR_LEASE_CONFLICT',
        `cannot move lease ${fromKey} to ${toKey}: the old key is no longer held by etcd lease ${expectedId}, or the new key exists` +
        (guard ? `, or another node leased a subnet since revision ${guard.listedAt}` : ''));
    }
    if (expectedId !== '0' && expectedId !== id) await this.revoke(expectedId);
    return made(to, attrs, id, id === '0' ? Infinity : Date.now() + ttlSec * 1000);
  }

  async deleteLease(where: Where): Promise<void> {
    await this.call('delete', 'delete lease', () => this.client.delete().key(this.leaseKey(where)).exec());
  }

  /** Watches <prefix>/subnets from `fromRevision`; any end of the stream is reported once via onEnd. */
  async watch(fromRevision: string, h: WatchHandlers): Promise<WatchHandle> {
    const stream = await this.call('watch', 'watch leases', () => this.client.watchClient.watch());
    let ended = false;
    let established = false;
    const end = (reason: string, kind: WatchEndKind): void => {
      if (ended) return;
      ended = true;
      stream.cancel();
      if (kind === 'error') this.notify('watch', new FlannelError('FLN_ERR_ETCD_UNAVAILABLE', `etcd: watch failed: ${reason}`));
      h.onEnd(reason, kind);
    };
    stream.on('data', (res: IWatchResponse) => {
      if (ended) return;
      if (res.compact_revision !== '0') {
        end(`compacted at revision ${res.compact_revision}`, 'compacted');
        return;
      }
      if (res.canceled) {
        end(`canceled: ${res.cancel_reason}`, 'canceled');
        return;
      }
      if (!established) {
        established = true;
        h.onEstablished?.();
      }
      const changes = (res.events ?? []).flatMap((ev): RegistryChange[] => {
        const key = ev.kv.key.toString();
        if (ev.type === 'Delete') {
          const s = subnetsFromKey(key);
          return s ? [{ kind: 'delete', ...s }] : [];
        }
        const lease = this.toLease(key, ev.kv.value.toString(), ev.kv.lease);
        return lease ? [{ kind: 'put', lease }] : [];
      });
      if (changes.length > 0) h.onChanges(changes, res.header.revision);
    });
    stream.on('error', (err: unknown) => end(errorMessage(err), 'error'));
    stream.on('end', () => end('stream ended', 'ended'));
    const key = Buffer.from(this.subnetsPrefix);
    stream.write({ create_request: { key, range_end: prefixEnd(key), start_revision: fromRevision, progress_notify: true } });
    return { cancel: () => { ended = true; stream.cancel(); } };
  }

  async close(): Promise<void> {
    this.client.close();
  }

  /** A transaction of raw compares and operations, plus the ListGuard's range compare when given. */
  private guardedTxn(guard: ListGuard | undefined, compare: ICompare[], success: IRequestOp[]): Promise<ITxnResponse> {
    if (guard) {
      const key = Buffer.from(`${this.subnetsPrefix}/`);
      // Every key in the range was created at or before listedAt (an empty range passes).
      compare.push({ key, range_end: prefixEnd(key), target: 'Create', result: 'Less', create_revision: (BigInt(guard.listedAt) + 1n).toString() });
    }
    return this.client.kv.txn({ compare, success, failure: [] });
  }

  private async grant(ttlSec: number): Promise<string> {
    const res = await this.call('grant', 'grant etcd lease', () => this.client.leaseClient.leaseGrant({ TTL: ttlSec, ID: 0 }));
    return res.ID;
  }

  private async revoke(id: string): Promise<void> {
    if (id === '0') return;
    await this.client.leaseClient.leaseRevoke({ ID: id }).catch(() => { /* it expires on its own */ });
  }

  private async call<T>(op: EtcdOp, what: string, fn: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      const e = new FlannelError('FLN_ERR_ETCD_UNAVAILABLE', `etcd: ${what} failed: ${errorMessage(err)}`, { cause: err });
      this.notify(op, e);
      throw e;
    }
    this.notify(op, undefined);
    return result;
  }

  private notify(op: EtcdOp, error: FlannelError | undefined): void {
    for (const fn of this.observers) {
      try { fn(op, error); } catch { /* an observer never breaks a call */ }
    }
  }

  /** A key and value as a lease; a dual-stack key keeps its exact text when we would spell it otherwise. */
  private toLease(key: string, value: string, leaseId: string): StoredLease | undefined {
    const s = subnetsFromKey(key);
    const attrs = s && decodeLeaseAttrs(value);
    if (!s || !attrs) return undefined;
    const expiresAtMs = leaseId === '0' ? Infinity : Number.NaN;
    if (!s.ipv6Subnet) return { subnet: s.subnet, attrs, etcdLeaseId: leaseId, expiresAtMs };
    return made(this.leaseKey(s) === key ? s : { ...s, key }, attrs, leaseId, expiresAtMs);
  }
}

function absent(key: string): ICompare {
  return { key: Buffer.from(key), target: 'Version', result: 'Equal', version: 0 };
}

function putOp(key: string, value: string, leaseId: string): IRequestOp {
  return { request_put: { key: Buffer.from(key), value: Buffer.from(value), ...(leaseId !== '0' ? { lease: leaseId } : {}) } };
}

function locate(where: Where): LeaseLocation {
  return 'prefixLen' in where ? { subnet: where } : where;
}

/** A lease at `loc`: IPv4-only leases have exactly the fields they always had. */
function made(loc: LeaseLocation, attrs: LeaseAttrs, etcdLeaseId: string, expiresAtMs: number): StoredLease {
  return {
    ...(loc.subnet ? { subnet: loc.subnet } : {}),
    ...(loc.ipv6Subnet ? { ipv6Subnet: loc.ipv6Subnet } : {}),
    ...(loc.key !== undefined ? { key: loc.key } : {}),
    attrs, etcdLeaseId, expiresAtMs,
  };
}

function joinKey(prefix: string, name: string): string {
  return `${prefix.replace(/\/+$/, '')}/${name}`;
}

/** The end of the key range holding every key that starts with `key`. */
function prefixEnd(key: Buffer): Buffer {
  const end = Buffer.from(key);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
