// Prometheus metrics, served at /metrics on the healthz port. Data-path counters are read from the
// engine's shared memory at scrape time; nothing is counted per packet in JS. Control-plane counters
// (leases, etcd, watch, reconcile) are fed by the subnet manager's events and the daemon's loops.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Network, ReconcileResult } from '../backends/backend.js';
import type { LeaseEvent } from '../subnet/lease.js';
import type { SubnetEvent } from '../subnet/subnet-manager.js';

export interface MetricsSource {
  network(): Network | undefined;
}

const PACKET_COUNTERS: Record<string, { metric: 'packets' | 'bytes'; direction: 'tx' | 'rx' }> = {
  tx_packets: { metric: 'packets', direction: 'tx' }, tx_bytes: { metric: 'bytes', direction: 'tx' },
  rx_packets: { metric: 'packets', direction: 'rx' }, rx_bytes: { metric: 'bytes', direction: 'rx' },
};

const WIREGUARD_EVENTS = ['handshakes_queued', 'keepalives_received', 'endpoint_updates', 'keypairs_confirmed'] as const;

const OFFLOAD_EVENTS = ['coalesced_super_packets', 'segmented_super_frames', 'checksums_completed', 'tx_partial_checksums', 'rx_partial_checksums', 'split_uso_packets', 'coalesced_udp_packets'] as const;

/** The registry to serve, and the hooks that feed the control-plane metrics. */
export interface DaemonMetrics {
  readonly registry: Registry;
  /** Every event of the subnet manager (SubnetManagerOptions.onEvent). */
  subnetEvent(ev: SubnetEvent): void;
  /** Lease events the backend applied (Network.apply resolved). */
  leaseEventsApplied(events: readonly LeaseEvent[]): void;
  leaseEventsFailed(events: readonly LeaseEvent[]): void;
  /** One reconcile pass: its corrections, or undefined when it threw. */
  reconciled(result: ReconcileResult | undefined): void;
}

const ETCD_OPS = ['read_config', 'list', 'get', 'grant', 'create', 'update', 'delete', 'watch'] as const;
const RESYNC_REASONS = ['compacted', 'canceled', 'error', 'ended', 'periodic', 'recovery'] as const;
const ACQUIRE_SOURCES = ['reused', 'reservation', 'previous', 'new', 'recreated'] as const;

export function createMetrics(src: MetricsSource): DaemonMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'flanneld_' });
  const stats = () => src.network()?.datapathStats?.();
  // keepZero: a series at 0 is shown too (the kernel-drop counters, present from the start for each device).
  const mirror = (name: string, help: string, labelNames: string[], fill: (set: (labels: Record<string, string>, v: bigint) => void) => void, keepZero = false) =>
    new Counter({
      name, help, labelNames, registers: [registry],
      collect() {
        this.reset();
        fill((labels, v) => { if (v > 0n || keepZero) this.inc(labels, Number(v)); });
      },
    });
  for (const metric of ['packets', 'bytes'] as const) {
    mirror(`flanneld_datapath_${metric}_total`, `${metric} carried by the userspace data path, by direction (tx = device to peers)`, ['direction'], (set) => {
      const s = stats();
      for (const [name, d] of Object.entries(PACKET_COUNTERS)) if (d.metric === metric && s) set({ direction: d.direction }, s.counters[name] ?? 0n);
    });
    mirror(`flanneld_peer_${metric}_total`, `${metric} exchanged with each peer (labelled by its subnet)`, ['peer', 'direction'], (set) => {
      for (const p of stats()?.peers ?? []) {
        for (const [name, d] of Object.entries(PACKET_COUNTERS)) if (d.metric === metric) set({ peer: p.peer, direction: d.direction }, p.counters[name] ?? 0n);
      }
    });
  }
  mirror('flanneld_datapath_dropped_packets_total', 'packets dropped by the userspace data path, by reason', ['reason'], (set) => {
    for (const [name, v] of Object.entries(stats()?.counters ?? {})) if (name.startsWith('drop_')) set({ reason: name.slice(5) }, v);
  });
  mirror('flanneld_datapath_device_dropped_packets_total', 'packets the kernel dropped at the userspace data path\'s TUN/TAP device (its tx_dropped and rx_dropped), by device and direction: tx = on their way to the engine, the device\'s queue (txqueuelen) being full because the engine did not read fast enough; rx = written by the engine and refused by the kernel', ['device', 'direction'], (set) => {
    for (const d of stats()?.kernelDrops?.devices ?? []) {
      set({ device: d.device, direction: 'tx' }, d.txDropped);
      set({ device: d.device, direction: 'rx' }, d.rxDropped);
    }
  }, true);
  mirror('flanneld_datapath_socket_receive_drops_total', 'datagrams from peers the kernel dropped at the userspace data path\'s UDP sockets before the engine read them (receive buffer full; SO_MEMINFO drops, the drops column of /proc/net/udp), summed over its sockets', [], (set) => {
    set({}, stats()?.kernelDrops?.socketReceive ?? 0n);
  });
  mirror('flanneld_datapath_offload_events_total', 'offload work of the userspace data path, by event: coalesced_super_packets (RX segments merged for the device), segmented_super_frames, checksums_completed, tx_partial_checksums (segments sent to AcceptsPartialChecksums peers without summing their payload), rx_partial_checksums (handed to the device with NEEDS_CSUM), split_uso_packets (UDP GSO packets from the device split into datagrams), coalesced_udp_packets (of the coalesced super-packets, those of UDP datagrams, written with USO)', ['event'], (set) => {
    const s = stats()?.counters;
    for (const event of OFFLOAD_EVENTS) set({ event }, s?.[event] ?? 0n);
  });
  mirror('flanneld_datapath_worker_handovers_total', 'adaptive packet workers (--datapath-threads=adaptive): RX handed to the second worker of a queue under load (to="assist") and back when the load dropped (to="lead")', ['to'], (set) => {
    const s = stats()?.counters;
    set({ to: 'assist' }, s?.assist_joins ?? 0n);
    set({ to: 'lead' }, s?.assist_leaves ?? 0n);
  });
  mirror('flanneld_datapath_busy_polls_total', 'adaptive packet workers: busy-polls for a predicted answer (a reply due within --datapath-spin-us), by how they ended: answered (traffic came, no wake-up) or expired (none came; the worker slept)', ['result'], (set) => {
    const s = stats()?.counters;
    set({ result: 'answered' }, s?.busy_polls_answered ?? 0n);
    set({ result: 'expired' }, s?.busy_polls_expired ?? 0n);
  });
  mirror('flanneld_datapath_icmp_unreachable_sent_total', 'ICMP net-unreachable replies sent for packets to no leased subnet', [], (set) => {
    set({}, stats()?.counters.icmp_unreachable_sent ?? 0n);
  });
  mirror('flanneld_datapath_wireguard_events_total', 'wireguard data-path events: handshakes_queued (handshake messages handed to the control plane), keepalives_received, endpoint_updates (a peer roamed), keypairs_confirmed (a responder\'s new keypair confirmed by the peer\'s first packet)', ['event'], (set) => {
    const s = stats()?.counters;
    for (const event of WIREGUARD_EVENTS) set({ event }, s?.[`wg_${event}`] ?? 0n);
  });
  mirror('flanneld_wireguard_handshake_messages_total', 'wireguard handshake-layer messages, by direction and type (initiation, response, cookie_reply, keepalive)', ['direction', 'type'], (set) => {
    for (const m of stats()?.handshake?.messages ?? []) set({ direction: m.direction, type: m.type }, BigInt(m.count));
  });
  mirror('flanneld_wireguard_handshake_drops_total', 'wireguard handshake messages dropped, by reason (bad_mac1, unknown_peer: a key that holds no lease, handshake_decrypt: also a wrong PSK, replayed_initiation, rate_limited, bad_mac2: answered with a cookie under load, …)', ['reason'], (set) => {
    for (const [reason, v] of Object.entries(stats()?.handshake?.drops ?? {})) set({ reason }, BigInt(v));
  });
  mirror('flanneld_wireguard_handshakes_total', 'wireguard handshakes, by result: completed, given_up (no answer for 90 s)', ['result'], (set) => {
    const h = stats()?.handshake;
    set({ result: 'completed' }, BigInt(h?.completed ?? 0));
    set({ result: 'given_up' }, BigInt(h?.givenUp ?? 0));
  });
  new Gauge({
    name: 'flanneld_wireguard_peer_last_handshake_seconds', help: 'Unix time of the last completed handshake with each peer (0: never)', labelNames: ['peer'], registers: [registry],
    collect() { this.reset(); for (const p of stats()?.handshake?.peers ?? []) this.set({ peer: p.peer }, p.lastHandshakeUnix); },
  });
  new Gauge({
    name: 'flanneld_wireguard_peer_keypair_age_seconds', help: 'age of the keypair each peer\'s packets are sent with (absent: no session)', labelNames: ['peer'], registers: [registry],
    collect() { this.reset(); for (const p of stats()?.handshake?.peers ?? []) if (p.keypairAgeSeconds !== undefined) this.set({ peer: p.peer }, p.keypairAgeSeconds); },
  });
  new Gauge({
    name: 'flanneld_wireguard_under_load', help: '1 while the wireguard handshake layer is under load (answering with cookies)', registers: [registry],
    collect() { const h = stats()?.handshake; this.reset(); if (h) this.set(h.underLoad ? 1 : 0); },
  });
  mirror('flanneld_datapath_worker_restarts_total', 'packet-engine workers restarted after a crash', [], (set) => {
    set({}, BigInt(stats()?.workerRestarts ?? 0));
  });
  return { registry, ...controlPlane(registry) };
}

/** Counters and gauges of the control plane, each label value present (at 0) from the start. */
function controlPlane(registry: Registry): Omit<DaemonMetrics, 'registry'> {
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = [], values: Partial<Record<L, readonly string[]>> = {}) => {
    const c = new Counter<L>({ name, help, labelNames: [...labelNames], registers: [registry] });
    const [label] = labelNames;
    if (label === undefined) c.inc(0);
    else for (const v of values[label] ?? []) c.inc({ [label]: v } as Partial<Record<L, string>>, 0);
    return c;
  };
  const gauge = (name: string, help: string) => new Gauge({ name, help, registers: [registry] });

  const acquisitions = counter('flanneld_lease_acquisitions_total', 'subnet leases acquired, by source: reused (held by this PublicIP), reservation, previous (subnet.env), new, recreated (after etcd lost its data)', ['source'], { source: ACQUIRE_SOURCES });
  const renewals = counter('flanneld_lease_renewals_total', 'lease renewals, by result (a failure is retried)', ['result'], { result: ['success', 'failure'] });
  const expiry = gauge('flanneld_lease_expiry_timestamp_seconds', 'when our lease expires in etcd unless renewed (Unix time; +Inf for a reservation; 0 before the first lease)');
  const etcdErrors = counter('flanneld_etcd_request_errors_total', 'etcd requests that failed (unreachable, timed out, refused), by operation', ['op'], { op: ETCD_OPS });
  const unavailable = counter('flanneld_etcd_unavailable_total', 'times etcd went from reachable to unreachable (the first failed request after a success)');
  const etcdUp = gauge('flanneld_etcd_up', '1 when the last etcd request succeeded, 0 when it failed');
  const resyncs = counter('flanneld_etcd_watch_resyncs_total', 'full re-lists of the leases after the watch ended, by reason: compacted, canceled, error (etcd unreachable), ended, periodic (safety net), recovery (end of the grace period after a data loss)', ['reason'], { reason: RESYNC_REASONS });
  const dataLoss = counter('flanneld_etcd_data_loss_total', 'times etcd\'s revision went back (its data was wiped or restored from a backup); our lease is then re-created on the same subnet');
  const peers = gauge('flanneld_peers', 'peer leases known from etcd (other nodes\' subnets)');
  const leaseEvents = counter('flanneld_lease_events_total', 'peer lease events applied to the data path, by kind', ['kind'], { kind: ['added', 'removed'] });
  const leaseEventErrors = counter('flanneld_lease_event_errors_total', 'peer lease events whose application to the data path failed');
  const routes = counter('flanneld_routes_programmed_total', 'peer routes programmed from lease events (one per added peer lease applied to the backend)');
  const reconciles = counter('flanneld_reconcile_runs_total', 'periodic data-path reconcile passes, by result', ['result'], { result: ['ok', 'error'] });
  const corrections = counter('flanneld_reconcile_corrections_total', 'data-path state corrected by reconcile, by kind: fixed (missing or wrong state restored), removed (stale state of ours deleted), failed (a correction that did not apply)', ['kind'], { kind: ['fixed', 'removed', 'failed'] });
  expiry.set(0);
  peers.set(0);

  return {
    subnetEvent(ev) {
      switch (ev.type) {
        case 'etcd-request':
          if (!ev.ok) etcdErrors.inc({ op: ev.op });
          etcdUp.set(ev.ok ? 1 : 0);
          break;
        case 'etcd-unavailable': unavailable.inc(); break;
        case 'etcd-available': break;
        case 'lease-acquired':
          acquisitions.inc({ source: ev.source });
          expiry.set(ev.lease.expiresAtMs / 1000);
          break;
        case 'lease-renewed':
          renewals.inc({ result: 'success' });
          expiry.set(ev.lease.expiresAtMs / 1000);
          break;
        case 'lease-renewal-failed': renewals.inc({ result: 'failure' }); break;
        case 'watch-resync': resyncs.inc({ reason: ev.reason }); break;
        case 'peers': peers.set(ev.count); break;
        case 'data-loss': dataLoss.inc(); break;
      }
    },
    leaseEventsApplied(events) {
      for (const ev of events) leaseEvents.inc({ kind: ev.kind });
      const added = events.filter((ev) => ev.kind === 'added').length;
      if (added > 0) routes.inc(added);
    },
    leaseEventsFailed(events) {
      if (events.length > 0) leaseEventErrors.inc(events.length);
    },
    reconciled(result) {
      reconciles.inc({ result: result ? 'ok' : 'error' });
      if (!result) return;
      for (const kind of ['fixed', 'removed', 'failed'] as const) if (result[kind] > 0) corrections.inc({ kind }, result[kind]);
    },
  };
}
