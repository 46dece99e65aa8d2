// The cache of other nodes' leases. Turns registry changes and full re-lists into added/removed
// events, so a delete (which carries no value) still tells the backend what to tear down, and a
// re-list after compaction or an outage yields exactly the difference. Pure: no I/O.
// Leases are told apart by their IPv4 subnet (mandatory in every key, dual-stack or not); a lease
// moving from 10.244.1.0-24 to 10.244.1.0-24&fd00:…-64 is a change of that lease, and the delete of
// the key it left is not a removal.
import { type Cidr4, cidrEquals, formatCidr4, formatIp4 } from '../lib/ip.js';
import { type Cidr6, cidr6Equals } from '../lib/ip6.js';
import { type Lease, type LeaseEvent, sameAttrs, subnetToKeyPart } from './lease.js';

/**
 * What happened to our own key, seen through the same watch. A lost key is `missing` from a full
 * list (expired, deleted while we were away, or etcd lost its data), `deleted` by a live event, or
 * `taken` by another node.
 */
export type OwnLeaseChange =
  | { readonly kind: 'renewed'; readonly lease: Lease }
  | { readonly kind: 'lost'; readonly cause: 'missing' | 'deleted' | 'taken'; readonly reason: string };

export interface WatchOutput {
  readonly events: LeaseEvent[];
  readonly own?: OwnLeaseChange;
}

export class LeaseWatcher {
  private readonly peers = new Map<string, Lease>();

  constructor(private readonly own: { subnet: Cidr4; publicIp: number; ipv6Subnet?: Cidr6 }) {}

  /** Current peer leases, for reconcilers and metrics. */
  leases(): Lease[] {
    return [...this.peers.values()];
  }

  /**
   * Diffs a full list against the cache. With `keepMissing` (after etcd lost its data, while the
   * other nodes re-register), peers absent from the list stay cached and no removal is reported.
   */
  reset(all: readonly Lease[], o: { keepMissing?: boolean } = {}): WatchOutput {
    const events: LeaseEvent[] = [];
    let own: OwnLeaseChange | undefined = { kind: 'lost', cause: 'missing', reason: 'our lease key is missing from etcd' };
    const seen = new Set<string>();
    for (const lease of all) {
      if (cidrEquals(lease.subnet, this.own.subnet)) {
        own = this.ownPut(lease);
        continue;
      }
      const key = subnetToKeyPart(lease.subnet);
      seen.add(key);
      this.putPeer(key, lease, events);
    }
    for (const [key, lease] of this.peers) {
      if (seen.has(key) || o.keepMissing) continue;
      this.peers.delete(key);
      events.push({ kind: 'removed', lease });
    }
    return own ? { events, own } : { events };
  }

  put(lease: Lease): WatchOutput {
    if (cidrEquals(lease.subnet, this.own.subnet)) {
      const own = this.ownPut(lease);
      return own ? { events: [], own } : { events: [] };
    }
    const events: LeaseEvent[] = [];
    this.putPeer(subnetToKeyPart(lease.subnet), lease, events);
    return { events };
  }

  /** A deleted key; `ipv6Subnet` is the IPv6 part of a dual-stack key. A key we no longer know a lease by is ignored. */
  delete(subnet: Cidr4, ipv6Subnet?: Cidr6): WatchOutput {
    if (cidrEquals(subnet, this.own.subnet)) {
      if (!sameV6(ipv6Subnet, this.own.ipv6Subnet)) return { events: [] };
      return { events: [], own: { kind: 'lost', cause: 'deleted', reason: 'our lease key was deleted in etcd (expired or removed by an administrator)' } };
    }
    const key = subnetToKeyPart(subnet);
    const cached = this.peers.get(key);
    if (!cached || !sameV6(ipv6Subnet, cached.ipv6Subnet)) return { events: [] };
    this.peers.delete(key);
    return { events: [{ kind: 'removed', lease: cached }] };
  }

  private putPeer(key: string, lease: Lease, events: LeaseEvent[]): void {
    const cached = this.peers.get(key);
    this.peers.set(key, lease);
    if (cached && sameAttrs(cached.attrs, lease.attrs) && sameV6(cached.ipv6Subnet, lease.ipv6Subnet)) return; // a renewal: nothing to reprogram
    if (cached) events.push({ kind: 'removed', lease: cached });
    events.push({ kind: 'added', lease });
  }

  private ownPut(lease: Lease): OwnLeaseChange | undefined {
    if (lease.attrs.publicIp !== this.own.publicIp) {
      return { kind: 'lost', cause: 'taken', reason: `our subnet ${formatCidr4(lease.subnet)} is now leased by another node, ${formatIp4(lease.attrs.publicIp)}` };
    }
    return { kind: 'renewed', lease };
  }
}

function sameV6(a: Cidr6 | undefined, b: Cidr6 | undefined): boolean {
  return a === undefined || b === undefined ? a === b : cidr6Equals(a, b);
}
