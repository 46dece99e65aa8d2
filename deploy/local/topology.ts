// A cluster of hosts on one machine: an underlay namespace with a bridge (the "switch", which also
// hosts etcd), N node namespaces each with eth0 on that bridge, and pod namespaces behind a node's
// cni0 bridge. Underlay addresses come from 192.0.2.0/24 (TEST-NET-1) and, with IPv6 (dual-stack),
// 2001:db8::/64 (the documentation prefix); they never leave the machine.
import { createNetns, deleteNetns, ipIn, sysctlIn } from './netns.js';

export const UNDERLAY_PREFIX = '192.0.2';
export const UNDERLAY_GATEWAY = `${UNDERLAY_PREFIX}.254`;
export const UNDERLAY6_PREFIX = '2001:db8::';
export const UNDERLAY6_GATEWAY = `${UNDERLAY6_PREFIX}fe`;

export interface NodeHost {
  readonly index: number;
  readonly name: string;
  /** Namespace name. */
  readonly ns: string;
  readonly underlayIp: string;
  /** Dual-stack topologies: the node's IPv6 underlay address, 2001:db8::<index>. */
  readonly underlayIp6?: string;
}

export interface PodHost {
  readonly ns: string;
  readonly ip: string;
  /** A dual-stack pod's IPv6 address. */
  readonly ip6?: string;
  readonly node: NodeHost;
}

/** A pod's IPv6 side: the cni0 gateway address with its prefix length, and the pod's address. */
export interface PodIpv6 {
  readonly gatewayCidr: string;
  readonly ip: string;
}

export class Topology {
  readonly nodes: NodeHost[] = [];
  readonly pods: PodHost[] = [];
  private readonly namespaces: string[] = [];
  private readonly podCounts = new Map<string, number>();

  private constructor(readonly tag: string, readonly ipv6: boolean) {}

  get underlayNs(): string { return `${this.tag}-u`; }

  /** Builds the underlay and `nodeCount` nodes (dual-stack with `ipv6`). On failure everything made so far is removed. */
  static async create(tag: string, nodeCount: number, o: { ipv6?: boolean } = {}): Promise<Topology> {
    const topo = new Topology(tag, o.ipv6 ?? false);
    try {
      await createNetns(topo.underlayNs, topo.namespaces);
      await ipIn(topo.underlayNs, ['link', 'add', 'br0', 'type', 'bridge']);
      await ipIn(topo.underlayNs, ['addr', 'add', `${UNDERLAY_GATEWAY}/24`, 'dev', 'br0']);
      if (topo.ipv6) await ipIn(topo.underlayNs, ['addr', 'add', `${UNDERLAY6_GATEWAY}/64`, 'dev', 'br0', 'nodad']);
      await ipIn(topo.underlayNs, ['link', 'set', 'br0', 'up']);
      for (let i = 1; i <= nodeCount; i++) await topo.addNode();
    } catch (err) {
      await topo.destroy();
      throw err;
    }
    return topo;
  }

  /** Adds one node host: eth0 on the underlay bridge, forwarding on, a default route to the switch. */
  async addNode(): Promise<NodeHost> {
    const index = this.nodes.length + 1;
    const node: NodeHost = {
      index, name: `node${index}`, ns: `${this.tag}-n${index}`, underlayIp: `${UNDERLAY_PREFIX}.${index}`,
      ...(this.ipv6 ? { underlayIp6: `${UNDERLAY6_PREFIX}${index.toString(16)}` } : {}),
    };
    await createNetns(node.ns, this.namespaces);
    const peer = `${this.tag}n${index}`;
    await ipIn(this.underlayNs, ['link', 'add', peer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', node.ns]);
    await ipIn(this.underlayNs, ['link', 'set', peer, 'master', 'br0', 'up']);
    await ipIn(node.ns, ['addr', 'add', `${node.underlayIp}/24`, 'dev', 'eth0']);
    await ipIn(node.ns, ['link', 'set', 'eth0', 'up']);
    await ipIn(node.ns, ['route', 'add', 'default', 'via', UNDERLAY_GATEWAY]);
    await sysctlIn(node.ns, 'net.ipv4.ip_forward', '1');
    if (node.underlayIp6) {
      await ipIn(node.ns, ['addr', 'add', `${node.underlayIp6}/64`, 'dev', 'eth0', 'nodad']);
      await ipIn(node.ns, ['-6', 'route', 'add', 'default', 'via', UNDERLAY6_GATEWAY]);
      await sysctlIn(node.ns, 'net.ipv6.conf.all.forwarding', '1');
    }
    this.nodes.push(node);
    return node;
  }

  /**
   * Gives a node a pod: bridge cni0 holding the subnet's .1 (as the CNI bridge plugin does) and a pod
   * namespace with `podIp` behind it, its default route through cni0.
   */
  async addPod(node: NodeHost, subnetGatewayCidr: string, podIp: string, v6?: PodIpv6): Promise<PodHost> {
    const [gw, len] = subnetGatewayCidr.split('/') as [string, string];
    const existing = await ipIn(node.ns, ['-o', 'link', 'show', 'cni0']).catch(() => '');
    if (!existing) {
      await ipIn(node.ns, ['link', 'add', 'cni0', 'type', 'bridge']);
      await ipIn(node.ns, ['addr', 'add', subnetGatewayCidr, 'dev', 'cni0']);
      if (v6) await ipIn(node.ns, ['addr', 'add', v6.gatewayCidr, 'dev', 'cni0', 'nodad']);
      await ipIn(node.ns, ['link', 'set', 'cni0', 'up']);
    }
    const n = this.nextPodIndex(node);
    const pod: PodHost = { ns: `${node.ns}-p${n}`, ip: podIp, node, ...(v6 ? { ip6: v6.ip } : {}) };
    await createNetns(pod.ns, this.namespaces);
    const hostEnd = `${this.tag}${node.index}p${n}`;
    await ipIn(node.ns, ['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.ns]);
    await ipIn(node.ns, ['link', 'set', hostEnd, 'master', 'cni0', 'up']);
    await ipIn(pod.ns, ['addr', 'add', `${podIp}/${len}`, 'dev', 'eth0']);
    await ipIn(pod.ns, ['link', 'set', 'eth0', 'up']);
    await ipIn(pod.ns, ['route', 'add', 'default', 'via', gw]);
    if (v6) {
      const [gw6, len6] = v6.gatewayCidr.split('/') as [string, string];
      await ipIn(pod.ns, ['addr', 'add', `${v6.ip}/${len6}`, 'dev', 'eth0', 'nodad']);
      await ipIn(pod.ns, ['-6', 'route', 'add', 'default', 'via', gw6]);
    }
    this.pods.push(pod);
    return pod;
  }

  /** Creates an empty pod namespace on a node, for a CNI plugin to wire up; removed with the rest. */
  async addPodNamespace(node: NodeHost): Promise<string> {
    const ns = `${node.ns}-p${this.nextPodIndex(node)}`;
    await createNetns(ns, this.namespaces);
    return ns;
  }

  private nextPodIndex(node: NodeHost): number {
    const n = (this.podCounts.get(node.ns) ?? 0) + 1;
    this.podCounts.set(node.ns, n);
    return n;
  }

  /** Removes every namespace this topology made, and with them their links and processes. */
  async destroy(): Promise<void> {
    await deleteNetns(this.namespaces);
    this.namespaces.length = 0;
  }
}
