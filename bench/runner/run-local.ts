// Local mode: every selected data path is built in namespaces of this machine and kept up for the
// whole run; then the interleaved measurement loop, lease→first packet (needs the running clusters),
// teardown of the data paths, and last the program-peers micro-benchmark on a quiet machine, then kube mode's
// N Nodes → routes (control-plane/kube-nodes.ts).
import type { BenchOptions } from '../cli/options.js';
import type { Progress } from '../cli/progress.js';
import { kubeNodes, kubeNodesSteps } from '../control-plane/kube-nodes.js';
import { leaseToPacket, leaseToPacketSteps, type LeaseTarget } from '../control-plane/lease-to-packet.js';
import { programPeers, programPeersSteps } from '../control-plane/program-peers.js';
import { dataPathDef, UnavailableError } from '../datapaths/catalog.js';
import { type LocalPath, setupLocalPath } from '../datapaths/local-paths.js';
import { errorText } from '../lib/exec.js';
import type { KubeNodesResult, LeaseToPacketResult, ProgramPeersResult } from '../report/result-types.js';
import { measureDataPaths, measurableCount, type PathUnderTest } from './measure-datapaths.js';

export interface RunOutput {
  readonly paths: PathUnderTest[];
  readonly programPeers: ProgramPeersResult[];
  readonly leaseToPacket: LeaseToPacketResult[];
  readonly kubeNodes?: KubeNodesResult;
}

export async function runLocal(o: BenchOptions, progress: Progress): Promise<RunOutput> {
  const paths: PathUnderTest[] = o.datapaths.map((id) => ({ def: dataPathDef(id), status: 'skipped', samples: [], usage: [] }));
  const built = new Map<PathUnderTest, LocalPath>();
  // --quick measures program-peers once: it is the slowest part and the least noisy.
  const peerRepeats = o.quick ? 1 : o.repeats;
  const defs = paths.map((p) => p.def);
  const leaseEstimate = o.control.includes('lease-to-packet') ? defs.filter((d) => d.fakePeer).length * o.repeats : 0;
  const peersEstimate = o.control.includes('program-peers') ? programPeersSteps(defs, peerRepeats, o.peers) : 0;
  const kubeEstimate = o.control.includes('kube-nodes') ? 1 + kubeNodesSteps(peerRepeats, o.peers) : 0;
  progress.addSteps(paths.length + o.repeats * paths.length * o.metrics.length + leaseEstimate + peersEstimate + kubeEstimate);
  try {
    for (const p of paths) {
      progress.start(`setting up ${p.def.label}`);
      try {
        const lp = await setupLocalPath(p.def);
        built.set(p, lp);
        p.ready = lp.ready;
        p.status = 'measured';
        progress.finish(`set up ${p.def.label}: client ${lp.ready.client.ip} → server ${lp.ready.server.ip}`);
      } catch (err) {
        p.status = err instanceof UnavailableError ? 'unavailable' : 'failed';
        p.reason = errorText(err);
        progress.finish(`set up ${p.def.label}: ${p.status}: ${p.reason}`);
      }
    }
    progress.addSteps(-o.repeats * (paths.length - measurableCount(paths)) * o.metrics.length);
    if (o.metrics.length > 0) await measureDataPaths(paths, o, progress);

    let leaseResults: LeaseToPacketResult[] = [];
    if (o.control.includes('lease-to-packet')) {
      const targets: LeaseTarget[] = paths.map((p) => {
        const path = built.get(p);
        return { def: p.def, status: p.status, ...(p.reason ? { reason: p.reason } : {}), ...(path ? { path } : {}) };
      });
      progress.addSteps(leaseToPacketSteps(targets, o.repeats) - leaseEstimate);
      leaseResults = await leaseToPacket(targets, o.repeats, progress);
    }
    for (const lp of built.values()) await lp.destroy();
    built.clear();

    let peerResults: ProgramPeersResult[] = [];
    if (o.control.includes('program-peers')) {
      peerResults = await programPeers(defs, peerRepeats, o.peers, progress);
    }
    const kube = o.control.includes('kube-nodes') ? await kubeNodes(peerRepeats, o.peers, progress) : undefined;
    return { paths, programPeers: peerResults, leaseToPacket: leaseResults, ...(kube ? { kubeNodes: kube } : {}) };
  } finally {
    for (const lp of built.values()) await lp.destroy();
  }
}
