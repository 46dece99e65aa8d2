// What flanneld needs of a subnet store, whichever it is (etcd today; the Kubernetes API next): the network
// config, our lease, the other nodes' leases as events, and keeping our lease alive. The daemon and the
// metrics see only this; each store lives in its own folder behind it (subnet/etcd/, …).
import type { Cidr4 } from '../lib/ip.js';
import type { Cidr6 } from '../lib/ip6.js';
import type { FlannelError } from '../lib/errors.js';
import type { Lease, LeaseAttrs, LeaseEvent } from './lease.js';
import type { NetworkConfig } from './network-config.js';

/** The etcd operations, as metric labels (the vocabulary of the etcd store's events below). */
export type EtcdOp = 'read_config' | 'list' | 'get' | 'grant' | 'create' | 'update' | 'delete' | 'watch';

/** Why a watch stream ended: the store compacted past our revision, cancelled it, the stream failed, or it closed. */
export type WatchEndKind = 'compacted' | 'canceled' | 'error' | 'ended';

/** Why the lease watch listed again: how the watch ended, the periodic safety net, or the end of a data-loss grace period. */
export type ResyncReason = WatchEndKind | 'periodic' | 'recovery';

/** How a lease was obtained: an existing one of this PublicIP, the subnet.env subnet, a free one, or re-created after etcd lost its data. */
export type AcquireSource = 'reused' | 'reservation' | 'previous' | 'new' | 'recreated';

/** What the subnet manager reports for metrics; subnet/ itself counts nothing. */
export type SubnetEvent =
  | { readonly type: 'etcd-request'; readonly op: EtcdOp; readonly ok: boolean }
  | { readonly type: 'etcd-unavailable'; readonly op: EtcdOp; readonly error: string }
  | { readonly type: 'etcd-available' }
  | { readonly type: 'lease-acquired'; readonly lease: Lease; readonly source: AcquireSource }
  | { readonly type: 'lease-renewed'; readonly lease: Lease }
  | { readonly type: 'lease-renewal-failed'; readonly error: string }
  | { readonly type: 'watch-resync'; readonly reason: ResyncReason; readonly detail: string }
  | { readonly type: 'peers'; readonly count: number }
  | { readonly type: 'data-loss'; readonly fromRevision: string; readonly toRevision: string };

export interface WatchCallbacks {
  onEvents(events: readonly LeaseEvent[]): void;
  /** Our own key was deleted, expired, or went to another node; the daemon must stop. */
  onOwnLeaseLost(reason: string): void;
  /** A full list was delivered (at start and after every interruption): a good time to reconcile. */
  onSynced?(): void;
  onResync?(reason: string): void;
}

export interface AcquireOptions {
  /** FLANNEL_SUBNET of the previous run (subnet.env), to be reused when it is free and fits. */
  readonly previousSubnet?: Cidr4;
  /** FLANNEL_IPV6_SUBNET of the previous run. */
  readonly previousIpv6Subnet?: Cidr6;
  readonly signal: AbortSignal;
}

export interface SubnetManager {
  /** Reads and validates the network config, retrying until it is usable; each problem goes to onProblem. */
  waitForNetworkConfig(signal: AbortSignal, onProblem: (err: FlannelError) => void): Promise<NetworkConfig>;
  /** Our lease, advertising `attrs`. */
  acquireLease(cfg: NetworkConfig, attrs: LeaseAttrs, o: AcquireOptions): Promise<Lease>;
  /** The other nodes' leases as events until the signal fires; rejects when it cannot go on. */
  runLeaseWatch(own: Lease, cb: WatchCallbacks, signal: AbortSignal): Promise<void>;
  /** Keeps our lease alive until the signal fires (a store without expiry returns at once); rejects with FLN_ERR_LEASE_REVOKED when it is lost. */
  runRenewal(lease: Lease, o: { renewMarginMs: number; signal: AbortSignal }): Promise<void>;
  close(): Promise<void>;
}
