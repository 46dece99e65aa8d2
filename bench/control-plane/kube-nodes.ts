// Control-plane benchmark of kube mode: N Nodes appear in the Kubernetes API → flanneld --kube-subnet-mgr
// has programmed a route to each. One node namespace runs our flanneld (host-gw, kube mode) against a real
// kube-apiserver (deploy/local/kube-apiserver.ts; unavailable where it can be neither found nor built); a
// child on that node creates N Node objects as flannel nodes (podCIDR and flannel's annotations), times
// the creates and the routes, then deletes them and times the routes' removal. host-gw: a route per Node,
// via its public-ip, which must be on the node's own /24 (192.0.2.0/24), so N is at most MAX_KUBE_NODES.
import { kubeApiserverOrSkip } from '../../deploy/local/kube-apiserver.js';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import type { Progress } from '../cli/progress.js';
import { benchTag, onTeardown } from '../cli/teardown.js';
import { OVERLAY_NETWORK } from '../datapaths/catalog.js';
import { runChildScript } from '../lib/child-script.js';
import { errorText } from '../lib/exec.js';
import { round, summarize } from '../lib/stats.js';
import type { KubeNodesResult, KubeNodesSample } from '../report/result-types.js';
import type { KubeNodesInput, KubeNodesOutput } from './kube-nodes-child.js';

/** The fake Nodes' public-ips are 192.0.2.2 … 192.0.2.251 (node1 is .1, the switch .254). */
export const MAX_KUBE_NODES = 250;

/** The counts of --peers this benchmark takes (those ≤ MAX_KUBE_NODES). */
export const kubeNodeCounts = (peers: readonly number[]): number[] => peers.filter((n) => n <= MAX_KUBE_NODES);

export function kubeNodesSteps(repeats: number, peers: readonly number[]): number {
  return repeats * kubeNodeCounts(peers).length;
}

export async function kubeNodes(repeats: number, peers: readonly number[], progress: Progress): Promise<KubeNodesResult> {
  const counts = kubeNodeCounts(peers);
  const result = (status: KubeNodesResult['status'], samples: KubeNodesSample[], reason?: string): KubeNodesResult => ({
    backend: 'host-gw', status, ...(reason ? { reason } : {}), samples,
    summary: counts.map((n) => {
      const s = samples.filter((x) => x.nodes === n);
      return {
        nodes: n,
        createMs: summarize(s.map((x) => x.createMs)),
        routedMs: summarize(s.map((x) => x.routedMs)),
        perNodeUs: summarize(s.map((x) => round((x.routedMs * 1000) / n, 2))),
        removedMs: summarize(s.map((x) => x.removedMs)),
      };
    }),
  });
  if (counts.length === 0) return result('skipped', [], `no --peers count ≤ ${MAX_KUBE_NODES} (the fake Nodes' public-ips share node1's /24)`);
  let skip = '';
  const bin = await kubeApiserverOrSkip((line) => { skip = line; });
  if (!bin) {
    progress.start('kube-nodes');
    progress.finish(`kube-nodes: unavailable: ${skip || 'no kube-apiserver'}`);
    progress.addSteps(-kubeNodesSteps(repeats, peers));
    return result('unavailable', [], skip || 'no kube-apiserver');
  }
  const samples: KubeNodesSample[] = [];
  let cluster: LocalCluster | undefined;
  const destroy = onTeardown('kube-nodes cluster', async () => cluster?.destroy());
  try {
    progress.start('kube-nodes: starting a kube-apiserver and flanneld --kube-subnet-mgr (host-gw)');
    cluster = await LocalCluster.create({ tag: benchTag('bkn'), nodes: 1, kube: { bin } });
    const api = cluster.kube;
    if (!api) throw new Error('the cluster has no kube-apiserver');
    await cluster.putConfig({ Network: OVERLAY_NETWORK, Backend: { Type: 'host-gw' } });
    const [node] = cluster.nodes;
    if (!node) throw new Error('the cluster has no node');
    cluster.startDaemon(node);
    await cluster.waitForSubnet(node, 60_000);
    progress.finish('kube-nodes: flanneld has its podCIDR');
    for (let r = 1; r <= repeats; r++) {
      for (const n of counts) {
        progress.start(`repeat ${r}/${repeats} · ${n} Nodes in the API → routes · kube mode`);
        const input: KubeNodesInput = {
          server: api.url, caFile: api.caFile, token: api.adminToken, nodes: n,
          firstThird: 2, publicPrefix: '192.0.2', firstHost: 2, label: `bench-r${r}-n${n}`, timeoutMs: 60_000,
        };
        const out = await runChildScript<KubeNodesOutput>(import.meta.url, 'kube-nodes-child', node.ns, input, 180_000);
        if (!out.ok) throw new Error(out.error);
        samples.push({ repeat: r, nodes: n, createMs: out.createMs, routedMs: out.routedMs, removedMs: out.removedMs });
        progress.finish(`repeat ${r}/${repeats}  kube-nodes N=${String(n).padEnd(5)} created ${out.createMs} ms, routed ${out.routedMs} ms, removed ${out.removedMs} ms`);
      }
    }
    return result('measured', samples);
  } catch (err) {
    progress.finish(`kube-nodes: failed: ${errorText(err)}`);
    return result('failed', samples, errorText(err));
  } finally {
    await destroy();
  }
}
