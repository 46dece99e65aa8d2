// Control-plane benchmark: time from a peer's lease appearing in etcd to the first packet forwarded
// to it. flanneld runs on node 1 of a data path's cluster; a fake peer (a real namespace that answers)
// is announced by a lease written by hand; a pod on node 1 pings it every millisecond meanwhile.
import type { Progress } from '../cli/progress.js';
import type { DataPathDef } from '../datapaths/catalog.js';
import type { LocalPath } from '../datapaths/local-paths.js';
import { runChildScript } from '../lib/child-script.js';
import { errorText } from '../lib/exec.js';
import { summarize } from '../lib/stats.js';
import type { LeaseToPacketResult, Status } from '../report/result-types.js';
import { createFakePeer, type FakePeer } from './fake-peer.js';
import type { LeaseProbeInput, LeaseProbeOutput } from './lease-probe-child.js';

export interface LeaseTarget {
  readonly def: DataPathDef;
  /** The data path's setup, when it is up. */
  readonly path?: LocalPath;
  readonly status: Status;
  readonly reason?: string;
}

interface Entry { target: LeaseTarget; status: Status; reason?: string; peer?: FakePeer; samples: LeaseToPacketResult['samples'][number][] }

export function leaseToPacketSteps(targets: readonly LeaseTarget[], repeats: number): number {
  return targets.filter((t) => t.path?.cluster && t.def.fakePeer).length * repeats;
}

export async function leaseToPacket(targets: readonly LeaseTarget[], repeats: number, progress: Progress): Promise<LeaseToPacketResult[]> {
  const entries: Entry[] = targets.filter((t) => t.def.backend).map((target) => {
    if (!target.def.fakePeer) return { target, status: 'skipped', reason: target.def.noFakePeerReason ?? 'not measured', samples: [] };
    if (!target.path?.cluster) return { target, status: target.status === 'measured' ? 'failed' : target.status, reason: target.reason ?? 'not set up', samples: [] };
    return { target, status: 'measured', samples: [] };
  });
  for (let r = 1; r <= repeats; r++) {
    for (const e of entries) {
      if (e.status !== 'measured') continue;
      progress.start(`repeat ${r}/${repeats} · lease → first packet · ${e.target.def.id}`);
      const sample = await measureOne(e, 199 + r).then(
        (ms) => ({ repeat: r, ms }),
        (err: unknown) => ({ repeat: r, ms: null, error: errorText(err) }),
      );
      e.samples.push(sample);
      progress.finish(`repeat ${r}/${repeats}  lease→packet  ${e.target.def.id.padEnd(12)} ${sample.ms === null ? `error: ${sample.error}` : `${sample.ms} ms`}`);
    }
  }
  return entries.map((e) => ({
    datapath: e.target.def.id,
    status: e.status === 'measured' && e.samples.length > 0 && e.samples.every((s) => s.ms === null) ? 'failed' : e.status,
    ...(e.reason ? { reason: e.reason } : {}),
    samples: e.samples,
    summary: summarize(e.samples.map((s) => s.ms)),
  }));
}

async function measureOne(e: Entry, third: number): Promise<number> {
  if (third > 254) throw new Error('out of fake subnets (at most 55 repeats)');
  const path = e.target.path as LocalPath;
  const cluster = path.cluster as NonNullable<LocalPath['cluster']>;
  const node = cluster.nodes[0];
  const pod = path.pods[0];
  if (!node || !pod) throw new Error('the data path has no node 1 pod');
  const daemonSubnet = await cluster.waitForSubnet(node, 5000);
  e.peer ??= await createFakePeer(e.target.def.fakePeer as 'host-gw' | 'vxlan', cluster, node, daemonSubnet);
  const subnet = `10.244.${third}.0/24`;
  const key = `${cluster.prefix}/subnets/10.244.${third}.0-24`;
  if ((await cluster.etcd.get(key)) !== undefined) throw new Error(`${key} is already leased`);
  const value = await e.peer.serve(subnet);
  const input: LeaseProbeInput = { etcd: cluster.etcdEndpoint, key, value, podNs: pod.ns, target: `10.244.${third}.1`, timeoutMs: 30_000 };
  const out = await runChildScript<LeaseProbeOutput>(import.meta.url, 'lease-probe-child', node.ns, input, 60_000);
  if (!out.ok) throw new Error(out.error);
  return out.ms;
}
