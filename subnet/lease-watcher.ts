// The cache of other nodes' leases. Turns registry changes and full re-lists into added/removed
// events, so a delete (which carries no value) still tells the backend what to tear down, and a
// re-list after compaction or an outage yields exactly the difference. Pure: no I/O.
// Leases are told apart by leaseIdentity: their IPv4 subnet (in every key but an IPv6-only one), so a
// lease moving from 10.244.1.0-24 to 10.244.1.0-24&fd00:…-64 is a change of that lease, and the delete
// of the key it left is not a removal; an IPv6-only lease by its IPv6 subnet.
import type { Cidr4 } from '../lib/ip.js';
import { type Cidr6, cidr6Equals } from '../lib/ip6.js';
import { type KeySubnets, type Lease, type LeaseAttrs, type LeaseEvent, describeNode, describeSubnets, leaseIdentity, sameAttrs, sameNode } from './lease.js';

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

  private readonly ownId: string;

  constructor(private readonly own: { subnet?: Cidr4; ipv6Subnet?: Cidr6; attrs: LeaseAttrs }) {
    this.ownId = leaseIdentity(own);
  }

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
      const key = leaseIdentity(lease);
      if (key === this.ownId) {
        own = this.ownPut(lease);
        continue;
      }
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
    const key = leaseIdentity(lease);
    if (key === this.ownId) {
      const own = this.ownPut(lease);
      return own ? { events: [], own } : { events: [] };
    }
    const events: LeaseEvent[] = [];
    this.putPeer(key, lease, events);
    return { events };
  }

  /** A deleted key's subnets. A key we no longer know a lease by is ignored. */
  delete(deleted: KeySubnets): WatchOutput {
    const { ipv6Subnet } = deleted;
    const key = leaseIdentity(deleted);
    if (key === this.ownId) {
      if (!sameV6(ipv6Subnet, this.own.ipv6Subnet)) return { events: [] };
      return { events: [], own: { kind: 'lost', cause: 'deleted', reason: 'our lease key was deleted in etcd (expired or removed by an administrator)' } };
    }
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
    if (!sameNode(lease.attrs, this.own.attrs)) {
      return { kind: 'lost', cause: 'taken', reason: `our subnet ${describeSubnets(lease)} is now leased by another node, ${describeNode(lease.attrs)}` };
    }
    return { kind: 'renewed', lease };
  }
}

function sameV6(a: Cidr6 | undefined, b: Cidr6 | undefined): boolean {
  return a === undefined || b === undefined ? a === b : cidr6Equals(a, b);
}
