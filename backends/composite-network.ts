// One Network made of per-family parts (dual-stack: an IPv4 part and an IPv6 part, each with its own
// devices and routes). Lease events go to every part, each taking the family it serves; reconcile
// results add up; the data-path hooks come from the parts that have them.
import { FlannelError } from '../lib/errors.js';
import type { DatapathStats, HandshakeStats, Lease, LeaseEvent, Network, ReconcileResult } from './backend.js';

export class CompositeNetwork implements Network {
  constructor(readonly lease: Lease, private readonly parts: readonly Network[]) {}

  async apply(events: readonly LeaseEvent[]): Promise<void> {
    const results = await Promise.allSettled(this.parts.map((p) => p.apply(events)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async reconcile(): Promise<ReconcileResult> {
    const results = await Promise.all(this.parts.map((p) => p.reconcile()));
    return results.reduce((a, r) => ({ fixed: a.fixed + r.fixed, removed: a.removed + r.removed, failed: a.failed + r.failed }), { fixed: 0, removed: 0, failed: 0 });
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.parts.map((p) => p.close()));
  }

  /** The parts' data-path counters together: global counters added up, each part's peers (named apart by the parts). */
  get datapathStats(): (() => DatapathStats) | undefined {
    const parts = this.parts.filter((p) => p.datapathStats);
    if (parts.length === 0) return undefined;
    return () => mergeStats(parts.map((p) => (p.datapathStats as () => DatapathStats).call(p)));
  }

  get crashWorker(): ((direction: 'tx' | 'rx') => void) | undefined {
    const part = this.parts.find((p) => p.crashWorker);
    return part?.crashWorker ? (d) => part.crashWorker?.(d) : undefined;
  }
}

/** The network itself when there is one part, else a composite of them. */
export function combineNetworks(lease: Lease, parts: readonly Network[]): Network {
  return parts.length === 1 ? (parts[0] as Network) : new CompositeNetwork(lease, parts);
}

/**
 * A backend's per-family parts started in order, IPv4 then IPv6 (`undefined`: that family is off; the
 * network config has at least one on), as one Network. `v6` learns whether an IPv4 part runs; when it fails,
 * the IPv4 part is closed again.
 */
export async function startFamilies(lease: Lease, v4: (() => Promise<Network>) | undefined, v6: ((withV4: boolean) => Promise<Network>) | undefined): Promise<Network> {
  const first = v4 ? await v4() : undefined;
  if (!v6) {
    if (!first) throw new FlannelError('FLN_ERR_CONFIG_INVALID', 'the network config enables neither IPv4 nor IPv6');
    return first;
  }
  try {
    const second = await v6(first !== undefined);
    return combineNetworks(lease, first ? [first, second] : [second]);
  } catch (err) {
    await first?.close();
    throw err;
  }
}

function mergeStats(all: readonly DatapathStats[]): DatapathStats {
  if (all.length === 1) return all[0] as DatapathStats;
  const counters: Record<string, bigint> = {};
  for (const s of all) for (const [name, v] of Object.entries(s.counters)) counters[name] = (counters[name] ?? 0n) + v;
  const handshake = mergeHandshakes(all.flatMap((s) => (s.handshake ? [s.handshake] : [])));
  const drops = all.flatMap((s) => (s.kernelDrops ? [s.kernelDrops] : []));
  return {
    counters,
    peers: all.flatMap((s) => s.peers),
    workerRestarts: all.reduce((n, s) => n + s.workerRestarts, 0),
    ...(handshake ? { handshake } : {}),
    ...(drops.length > 0 ? { kernelDrops: { devices: drops.flatMap((d) => d.devices), socketReceive: drops.reduce((n, d) => n + d.socketReceive, 0n) } } : {}),
  };
}

/** wireguard's two networks (flannel-wg and flannel-wg-v6): message and drop counts added up by their
 * labels, handshakes added, under load if either is, each part's peers. */
function mergeHandshakes(all: readonly HandshakeStats[]): HandshakeStats | undefined {
  if (all.length <= 1) return all[0];
  const messages = new Map<string, { direction: 'sent' | 'received'; type: string; count: number }>();
  const drops: Record<string, number> = {};
  for (const h of all) {
    for (const m of h.messages) {
      const key = `${m.direction}/${m.type}`;
      const had = messages.get(key);
      messages.set(key, { direction: m.direction, type: m.type, count: (had?.count ?? 0) + m.count });
    }
    for (const [reason, n] of Object.entries(h.drops)) drops[reason] = (drops[reason] ?? 0) + n;
  }
  return {
    messages: [...messages.values()],
    drops,
    completed: all.reduce((n, h) => n + h.completed, 0),
    givenUp: all.reduce((n, h) => n + h.givenUp, 0),
    underLoad: all.some((h) => h.underLoad),
    peers: all.flatMap((h) => h.peers),
  };
}
