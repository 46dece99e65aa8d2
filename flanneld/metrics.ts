// Prometheus metrics, served at /metrics on the healthz port. Data-path counters are read from the
// engine's shared memory at scrape time; nothing is counted per packet in JS.
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import type { Network } from '../backends/backend.js';

export interface MetricsSource {
  network(): Network | undefined;
}

const PACKET_COUNTERS: Record<string, { metric: 'packets' | 'bytes'; direction: 'tx' | 'rx' }> = {
  tx_packets: { metric: 'packets', direction: 'tx' }, tx_bytes: { metric: 'bytes', direction: 'tx' },
  rx_packets: { metric: 'packets', direction: 'rx' }, rx_bytes: { metric: 'bytes', direction: 'rx' },
};

export function createMetrics(src: MetricsSource): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'flanneld_' });
  const stats = () => src.network()?.datapathStats?.();
  const mirror = (name: string, help: string, labelNames: string[], fill: (set: (labels: Record<string, string>, v: bigint) => void) => void) =>
    new Counter({
      name, help, labelNames, registers: [registry],
      collect() {
        this.reset();
        fill((labels, v) => { if (v > 0n) this.inc(labels, Number(v)); });
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
  mirror('flanneld_datapath_icmp_unreachable_sent_total', 'ICMP net-unreachable replies sent for packets to no leased subnet', [], (set) => {
    set({}, stats()?.counters.icmp_unreachable_sent ?? 0n);
  });
  mirror('flanneld_datapath_worker_restarts_total', 'packet-engine workers restarted after a crash', [], (set) => {
    set({}, BigInt(stats()?.workerRestarts ?? 0));
  });
  return registry;
}
