// Raw storage operations on flannel's etcd v3 layout: the config key, lease keys held by etcd
// leases, a guarded create, and a prefix watch that reports compaction. No policy lives here.
import type { Etcd3, IWatchResponse } from 'etcd3';
import { FlannelError, errorMessage } from '../../lib/errors.js';
import type { Cidr4 } from '../../lib/ip.js';
import { type Lease, type LeaseAttrs, decodeLeaseAttrs, encodeLeaseAttrs, subnetFromKey, subnetToKeyPart } from '../lease.js';

export type RegistryChange =
  | { readonly kind: 'put'; readonly lease: Lease }
  | { readonly kind: 'delete'; readonly subnet: Cidr4 };

/** Why a watch stream ended: etcd compacted past our revision, cancelled it, the stream failed, or it closed. */
export type WatchEndKind = 'compacted' | 'canceled' | 'error' | 'ended';

export interface WatchHandlers {
  onChanges(changes: RegistryChange[], revision: string): void;
  /** etcd confirmed the watch (its first response arrived). */
  onEstablished?(): void;
  /** The watch ended (etcd gone, compacted past our revision, …); the caller must re-list. */
  onEnd(reason: string, kind: WatchEndKind): void;
}

/** The etcd operations, as metric labels. */
export type EtcdOp = 'read_config' | 'list' | 'get' | 'grant' | 'create' | 'update' | 'delete' | 'watch';

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
  leaseKey(subnet: Cidr4): string { return `${this.subnetsPrefix}/${subnetToKeyPart(subnet)}`; }

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
  async listLeases(): Promise<{ leases: Lease[]; revision: string }> {
    const res = await this.call('list', 'list leases', () => this.client.getAll().prefix(this.subnetsPrefix).exec());
    const leases: Lease[] = [];
    for (const kv of res.kvs) {
      const lease = toLease(kv.key.toString(), kv.value.toString(), kv.lease);
      if (lease) leases.push(lease);
    }
    return { leases, revision: res.header.revision };
  }

  /** Our key as etcd holds it now (undefined when missing or unparsable), and the revision of the read. */
  async getLease(subnet: Cidr4): Promise<{ lease: Lease | undefined; revision: string }> {
    const key = this.leaseKey(subnet);
    const res = await this.call('get', `read lease ${key}`, () => this.client.get(key).exec());
    const kv = res.kvs[0];
    return { lease: kv ? toLease(kv.key.toString(), kv.value.toString(), kv.lease) : undefined, revision: res.header.revision };
  }

  /** Grants an etcd lease and creates the key only if it does not exist (flannel's Txn guard). */
  async createLease(subnet: Cidr4, attrs: LeaseAttrs, ttlSec: number): Promise<Lease> {
    const key = this.leaseKey(subnet);
    const id = await this.grant(ttlSec);
    const res = await this.call('create', `create lease ${key}`, () =>
      this.client.if(key, 'Version', '==', 0).then(this.client.put(key).value(encodeLeaseAttrs(attrs)).lease(id)).commit(),
    ).catch(async (err) => { await this.revoke(id); throw err; });
    if (!res.succeeded) {
      await this.revoke(id);
      throw new FlannelError('FLN_ERR_LEASE_CONFLICT', `subnet ${key} already exists (another node took it first)`);
    }
    return { subnet, attrs, etcdLeaseId: id, expiresAtMs: Date.now() + ttlSec * 1000 };
  }

  /**
   * Re-puts a lease on a fresh etcd lease (flannel's renewal and reuse), then revokes the old one.
   * Unlike flannel's blind put, the write is guarded: it only happens while the key is still held by
   * `expectedId`, so a node can never overwrite a subnet that meanwhile went to another node.
   * `ttlSec` 0 keeps a reservation (a key with no etcd lease) as it is.
   */
  async updateLease(subnet: Cidr4, attrs: LeaseAttrs, ttlSec: number, expectedId: string): Promise<Lease> {
    const key = this.leaseKey(subnet);
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
    return { subnet, attrs, etcdLeaseId: id, expiresAtMs: id === '0' ? Infinity : Date.now() + ttlSec * 1000 };
  }

  async deleteLease(subnet: Cidr4): Promise<void> {
    await this.call('delete', 'delete lease', () => this.client.delete().key(this.leaseKey(subnet)).exec());
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
          const subnet = subnetFromKey(key);
          return subnet ? [{ kind: 'delete', subnet }] : [];
        }
        const lease = toLease(key, ev.kv.value.toString(), ev.kv.lease);
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
}

function toLease(key: string, value: string, leaseId: string): Lease | undefined {
  const subnet = subnetFromKey(key);
  const attrs = subnet && decodeLeaseAttrs(value);
  if (!subnet || !attrs) return undefined;
  return { subnet, attrs, etcdLeaseId: leaseId, expiresAtMs: leaseId === '0' ? Infinity : Number.NaN };
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
