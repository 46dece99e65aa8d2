// Control-plane micro-benchmark: how long a backend takes to program N peers (N = 10 … 5000). Each
// run is a child process in a fresh node namespace going through the backend registry, so any backend
// flanneld knows (host-gw today; udp and vxlan when they land) is measured with no change here. It measures our
// backend code in-process, so the real flannel's rows (flannel-*) are not listed; rows of ours that it does not
// cover (the IPv6 rows: its lease events are IPv4-only) are listed as skipped with the catalog's reason.
import { deleteNetns } from '../../deploy/local/netns.js';
import { Topology } from '../../deploy/local/topology.js';
import type { Progress } from '../cli/progress.js';
import { benchTag, onTeardown } from '../cli/teardown.js';
import { type DataPathDef, isRealFlannel } from '../datapaths/catalog.js';
import { runChildScript } from '../lib/child-script.js';
import { errorText } from '../lib/exec.js';
import { round, summarize } from '../lib/stats.js';
import type { ProgramPeersResult, ProgramPeersSample, Status } from '../report/result-types.js';
import type { ProgramPeersInput, ProgramPeersOutput } from './program-peers-child.js';

interface Entry { def: DataPathDef; status: Status; reason?: string; samples: ProgramPeersSample[] }

/** The rows whose backend is our code: a Backend JSON run by flannel-ts's flanneld. */
const ownBackend = (d: DataPathDef): boolean => d.backend !== undefined && !isRealFlannel(d);

export function programPeersSteps(defs: readonly DataPathDef[], repeats: number, peers: readonly number[]): number {
  return defs.filter((d) => ownBackend(d) && !d.noProgramPeersReason).length * repeats * peers.length;
}

export async function programPeers(defs: readonly DataPathDef[], repeats: number, peers: readonly number[], progress: Progress): Promise<ProgramPeersResult[]> {
  const entries: Entry[] = defs.filter(ownBackend).map((def) => (def.noProgramPeersReason
    ? { def, status: 'skipped', reason: def.noProgramPeersReason, samples: [] }
    : { def, status: 'measured', samples: [] }));
  const toMeasure = entries.filter((e) => e.status === 'measured');
  for (let r = 1; r <= repeats && toMeasure.length > 0; r++) {
    const topo = await Topology.create(benchTag('bc'), 0);
    const destroy = onTeardown('program-peers namespaces', () => topo.destroy());
    try {
      for (const e of toMeasure) {
        for (const n of peers) {
          progress.start(`repeat ${r}/${repeats} · program ${n} peers · ${e.def.id}`);
          if (e.status !== 'measured') {
            progress.finish(`repeat ${r}/${repeats}  program-peers ${e.def.id} N=${n}: ${e.status}`);
            continue;
          }
          const out = await runOne(topo, e.def, n);
          if (out.status === 'ok') {
            e.samples.push({ repeat: r, peers: n, setupMs: out.setupMs, applyMs: out.applyMs, reconcileMs: out.reconcileMs, removeMs: out.removeMs, routesAfterApply: out.routesAfterApply });
            progress.finish(`repeat ${r}/${repeats}  program-peers ${e.def.id.padEnd(12)} N=${String(n).padEnd(5)} apply ${out.applyMs} ms, reconcile ${out.reconcileMs} ms, remove ${out.removeMs} ms`);
          } else {
            e.status = out.status;
            e.reason = out.reason;
            progress.finish(`repeat ${r}/${repeats}  program-peers ${e.def.id} N=${n}: ${out.status}: ${out.reason}`);
          }
        }
      }
    } finally {
      await destroy();
    }
  }
  return entries.map((e) => ({
    datapath: e.def.id,
    status: e.status,
    ...(e.reason ? { reason: e.reason } : {}),
    samples: e.samples,
    summary: peers.map((n) => {
      const s = e.samples.filter((x) => x.peers === n);
      return {
        peers: n,
        applyMs: summarize(s.map((x) => x.applyMs)),
        perPeerUs: summarize(s.map((x) => round((x.applyMs * 1000) / n, 2))),
        reconcileMs: summarize(s.map((x) => x.reconcileMs)),
        removeMs: summarize(s.map((x) => x.removeMs)),
      };
    }),
  }));
}

/** One measurement in a node namespace of its own, deleted right after. */
async function runOne(topo: Topology, def: DataPathDef, peers: number): Promise<ProgramPeersOutput> {
  const node = await topo.addNode();
  try {
    const input: ProgramPeersInput = { backend: { ...def.backend }, peers, iface: 'eth0' };
    return await runChildScript<ProgramPeersOutput>(import.meta.url, 'program-peers-child', node.ns, input, 180_000);
  } catch (err) {
    return { status: 'failed', reason: errorText(err) };
  } finally {
    await deleteNetns([node.ns]);
  }
}
