// The README's main job: a 3-node local cluster (namespaces on a bridge, a local etcd, flanneld with
// the host-gw backend on every node, a pod per node). Prints who holds which subnet and an all-pairs
// connectivity matrix, then tears everything down. Exit code 0 only if every pair connects.
import { LocalCluster } from './local-cluster.js';
import { runTag } from './netns.js';
import type { PodHost } from './topology.js';

const NODES = Number(process.env.CLUSTER_NODES ?? 3);
const BACKEND = process.env.CLUSTER_BACKEND ?? 'host-gw';

async function main(): Promise<number> {
  const tag = runTag('fc');
  console.log(`Building a ${NODES}-node cluster (tag ${tag}) with etcd and the ${BACKEND} backend...`);
  const cluster = await LocalCluster.create({ tag, nodes: NODES });
  const cleanup = (): void => { void cluster.destroy().finally(() => process.exit(130)); };
  process.once('SIGINT', cleanup);
  process.once('SIGTERM', cleanup);
  try {
    await cluster.putConfig({ Network: '10.244.0.0/16', Backend: { Type: BACKEND } });
    for (const node of cluster.nodes) cluster.startDaemon(node);
    const pods: PodHost[] = [];
    console.log('\nnode    underlay IP    subnet (FLANNEL_SUBNET)   pod');
    for (const node of cluster.nodes) {
      const subnet = await cluster.waitForSubnet(node);
      const pod = await cluster.addPod(node, subnet);
      pods.push(pod);
      console.log(`${node.name.padEnd(8)}${node.underlayIp.padEnd(15)}${subnet.padEnd(26)}${pod.ip}`);
    }
    await waitForRoutes(cluster, pods);
    const matrix = await cluster.pingMatrix(pods, 2);
    console.log('\nConnectivity (ping from row pod to column pod):');
    console.log(`${'from \\ to'.padEnd(14)}${pods.map((p) => p.ip.padEnd(14)).join('')}`);
    matrix.forEach((row, i) => console.log(`${(pods[i] as PodHost).ip.padEnd(14)}${row.map((ok) => (ok ? 'pass' : 'FAIL').padEnd(14)).join('')}`));
    const failures = matrix.flat().filter((ok) => !ok).length;
    console.log(failures === 0 ? '\nAll pairs connected.' : `\n${failures} pair(s) FAILED.`);
    if (failures > 0) for (const d of cluster.daemons.values()) console.log(`--- flanneld on ${d.node.name} ---\n${d.proc.output()}`);
    return failures === 0 ? 0 : 1;
  } finally {
    console.log('Tearing down...');
    await cluster.destroy();
  }
}

/** Gives the daemons up to 15 s to see each other's leases before the measured matrix. */
async function waitForRoutes(cluster: LocalCluster, pods: PodHost[]): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if ((await cluster.pingMatrix(pods, 1)).flat().every(Boolean)) return;
  }
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  return 1;
});
