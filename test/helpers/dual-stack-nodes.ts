// The dual-stack nodes of a running LocalCluster as the IPv6 tests use them: each node's subnets from its
// subnet.env, and a pod with an address of each family.
import type { LocalCluster } from '../../deploy/local/local-cluster.js';
import { readEnvFile } from '../../deploy/local/local-cluster.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';

export interface DualStackNode {
  readonly node: NodeHost;
  /** FLANNEL_SUBNET and FLANNEL_IPV6_SUBNET (first address/len). */
  readonly subnet: string;
  readonly subnet6: string;
  /** The pod; pod6 is the same pod with its IPv6 address as `ip`. */
  readonly pod: PodHost;
  readonly pod6: PodHost;
}

/** Waits for every node's FLANNEL_IPV6_SUBNET (its daemon already started), then adds one pod per node. */
export async function dualStackNodes(cluster: LocalCluster, timeoutMs = 30_000): Promise<DualStackNode[]> {
  const nodes: DualStackNode[] = [];
  for (const node of cluster.nodes) {
    await cluster.waitForSubnet(node, timeoutMs, 'FLANNEL_IPV6_SUBNET');
    const env = readEnvFile(cluster.subnetFileOf(node));
    const pod = await cluster.addPod(node, env.FLANNEL_SUBNET as string, 2, env.FLANNEL_IPV6_SUBNET);
    nodes.push({ node, subnet: env.FLANNEL_SUBNET as string, subnet6: env.FLANNEL_IPV6_SUBNET as string, pod, pod6: { ...pod, ip: pod.ip6 as string } });
  }
  return nodes;
}
