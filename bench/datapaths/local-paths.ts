// Builds each data path on this machine: two node namespaces joined by veth through the underlay
// bridge (deploy/local Topology), pods behind cni0, and for flanneld paths a LocalCluster (real etcd,
// one real flanneld per node). Each path gets its own namespaces, so all of them can stay up at once.
// The IPv6 rows (def.ipv6) get dual-stack nodes (2001:db8::<i> beside 192.0.2.<i>) and pods with an address of
// each family, and are measured between the pods' IPv6 addresses.
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster, ping, readEnvFile } from '../../deploy/local/local-cluster.js';
import { sysctlIn } from '../../deploy/local/netns.js';
import { type NodeHost, type PodHost, Topology } from '../../deploy/local/topology.js';
import { benchTag, onTeardown } from '../cli/teardown.js';
import { lastDaemonMessage, unknownBackendType } from '../lib/daemon-log.js';
import { addVtepPeer, createVtep, linkMtu, randomVtepMac, setPodMtu, VXLAN6_OVERHEAD, VXLAN_OVERHEAD } from './kernel-vxlan.js';
import { type DataPathDef, OVERLAY_NETWORK, OVERLAY_NETWORK6, type ReadyPath, UnavailableError } from './catalog.js';
import { startTunRelay } from './tun-relay.js';
import { startWireguardGo, WIREGUARD_OVERHEAD } from './wireguard-go.js';
import { runCommand } from '../../lib/run-command.js';
import { buildLatestWireguardGo, debianWireguardGo } from '../../deploy/local/wireguard-go.js';
import { buildRealFlannel } from '../../deploy/local/real-flannel.js';

/** A data path that is up, with what the control-plane benchmarks need to reach into it. */
export interface LocalPath {
  readonly ready: ReadyPath;
  readonly topo: Topology;
  readonly pods: readonly PodHost[];
  readonly cluster?: LocalCluster;
  /** Removes everything this path made (also registered with the global teardown). */
  readonly destroy: () => Promise<void>;
}

const TAG_PREFIX: Record<string, string> = {
  raw: 'br', 'kernel-vxlan': 'bk', 'host-gw': 'bh', udp: 'bu', vxlan: 'bv', 'vxlan-kernel': 'bx', 'tun-relay': 'bt',
  wireguard: 'bw', 'wireguard-go-debian': 'bd', 'wireguard-go-latest': 'bl',
  'flannel-host-gw': 'fh', 'flannel-udp': 'fu', 'flannel-vxlan': 'fv',
  // Three characters: no other run tag of the tests starts with b6 or f6 (the smoke test's leftover check relies on it).
  'kernel-vxlan6': 'b6k', 'host-gw6': 'b6h', vxlan6: 'b6v', 'vxlan-kernel6': 'b6x', 'flannel-host-gw6': 'f6h', 'flannel-vxlan6': 'f6v',
  wireguard6: 'b6w',
};

/** `daemonArgs`: more flags for our flanneld on both nodes (e.g. --healthz-port, to read its /metrics). */
export async function setupLocalPath(def: DataPathDef, o: { daemonArgs?: readonly string[] } = {}): Promise<LocalPath> {
  const tag = benchTag(TAG_PREFIX[def.id] ?? 'bb');
  if (def.backend) return setupFlanneldPath(def, tag, o.daemonArgs ?? []);
  // A wireguard-go row without its binary is unavailable, found before any namespace is made.
  const wgBin = def.id.startsWith('wireguard-go-') ? await wireguardGoBinary(def) : undefined;
  const topo = await Topology.create(tag, 2, { ipv6: def.ipv6 === true });
  const destroy = onTeardown(`${def.id} namespaces`, () => topo.destroy());
  try {
    if (def.id === 'raw') return rawPath(topo, destroy);
    if (def.id === 'kernel-vxlan6') return await kernelVxlan6Path(topo, destroy);
    if (wgBin) return await wireguardGoPath(topo, wgBin, tag, destroy);
    return def.id === 'tun-relay' ? await tunRelayPath(topo, destroy) : await kernelVxlanPath(topo, destroy);
  } catch (err) {
    await destroy();
    throw err;
  }
}

/** No overlay: the node namespaces' own underlay addresses talk over veth and the bridge. */
function rawPath(topo: Topology, destroy: () => Promise<void>): LocalPath {
  const [a, b] = topo.nodes;
  if (!a || !b) throw new Error('the raw path needs two nodes');
  const ready: ReadyPath = { client: { ns: a.ns, ip: a.underlayIp }, server: { ns: b.ns, ip: b.underlayIp }, daemonPids: () => [] };
  return { ready, topo, pods: [], destroy };
}

/** flannel.1 on each node configured by hand, pods 10.244.<i>.2 behind cni0 with MTU ext−50. */
async function kernelVxlanPath(topo: Topology, destroy: () => Promise<void>): Promise<LocalPath> {
  const macs = topo.nodes.map(() => randomVtepMac());
  const extMtu = await linkMtu(topo.nodes[0]?.ns, 'eth0');
  for (const [i, node] of topo.nodes.entries()) {
    await createVtep({ ns: node.ns, localIp: node.underlayIp, extIface: 'eth0', extMtu, mac: macs[i] as string, address: `10.244.${node.index}.0` });
  }
  for (const node of topo.nodes) {
    for (const [j, peer] of topo.nodes.entries()) {
      if (peer !== node) await addVtepPeer(node.ns, { subnet: `10.244.${peer.index}.0/24`, mac: macs[j] as string, publicIp: peer.underlayIp });
    }
  }
  const pods = await addPods(topo, extMtu - VXLAN_OVERHEAD);
  return { ready: podsReady(pods, () => []), topo, pods, destroy };
}

/** Dual-stack nodes as flannel's vxlan backend sets them up with EnableIPv6, by hand: flannel.1 as for kernel-vxlan,
 * and flannel-v6.1 (local = eth0's IPv6 address, fd00:10:244:<i>::/128, MTU ext−70, accept_ra 0) with per peer the
 * neighbour fd00:10:244:<j>:: → its MAC, the FDB entry to its IPv6 underlay address and the onlink route; pods
 * 10.244.<i>.2 and fd00:10:244:<i>::2 behind cni0 with MTU ext−70 (our FLANNEL_MTU in dual-stack), measured over IPv6. */
async function kernelVxlan6Path(topo: Topology, destroy: () => Promise<void>): Promise<LocalPath> {
  const extMtu = await linkMtu(topo.nodes[0]?.ns, 'eth0');
  const macs = topo.nodes.map(() => randomVtepMac());
  const macs6 = topo.nodes.map(() => randomVtepMac());
  const v6 = (node: NodeHost): string => {
    if (!node.underlayIp6) throw new Error(`${node.name} has no IPv6 underlay address`);
    return node.underlayIp6;
  };
  for (const [i, node] of topo.nodes.entries()) {
    await createVtep({ ns: node.ns, localIp: node.underlayIp, extIface: 'eth0', extMtu, mac: macs[i] as string, address: `10.244.${node.index}.0` });
    await createVtep({ ns: node.ns, localIp: v6(node), extIface: 'eth0', extMtu, mac: macs6[i] as string, address: `${subnet6Of(node)}::` });
  }
  for (const node of topo.nodes) {
    for (const [j, peer] of topo.nodes.entries()) {
      if (peer === node) continue;
      await addVtepPeer(node.ns, { subnet: `10.244.${peer.index}.0/24`, mac: macs[j] as string, publicIp: peer.underlayIp });
      await addVtepPeer(node.ns, { subnet: `${subnet6Of(peer)}::/64`, mac: macs6[j] as string, publicIp: v6(peer) });
    }
  }
  const pods = await addPods(topo, extMtu - VXLAN6_OVERHEAD, true);
  return { ready: podsReady(pods, () => [], true), topo, pods, destroy };
}

/** The first four groups of a node's IPv6 pod subnet in the hand-built IPv6 rows: fd00:10:244:<i> (a /64 of OVERLAY_NETWORK6). */
const subnet6Of = (node: NodeHost): string => `fd00:10:244:${node.index.toString(16)}`;

/** tun-relay.c between the nodes (see tun-relay.ts), pods as for kernel VXLAN, the same MTU. */
async function tunRelayPath(topo: Topology, destroyTopo: () => Promise<void>): Promise<LocalPath> {
  const mtu = (await linkMtu(topo.nodes[0]?.ns, 'eth0')) - VXLAN_OVERHEAD;
  const relay = await startTunRelay(topo, mtu);
  const destroy = async (): Promise<void> => {
    await relay.stop();
    await destroyTopo();
  };
  const pods = await addPods(topo, mtu).catch(async (err: unknown) => {
    await relay.stop();
    throw err;
  });
  return { ready: podsReady(pods, relay.pids), topo, pods, destroy };
}

/** Debian's wireguard-go, or the latest one (built from the pinned module on first use); else unavailable. */
async function wireguardGoBinary(def: DataPathDef): Promise<string> {
  const wg = await runCommand('wg', ['--version']).catch(() => undefined);
  if (wg?.code !== 0) throw new UnavailableError('wg is missing: apt-get install wireguard-tools (deploy/local/install-deps.sh)');
  const b = def.id === 'wireguard-go-latest' ? await buildLatestWireguardGo() : debianWireguardGo();
  if (!b.ok) throw new UnavailableError(b.reason);
  return b.bin;
}

/** wireguard-go on both nodes as flannel's wireguard backend sets up a node (wireguard-go.ts), pods behind
 * cni0 with the backend's FLANNEL_MTU, underlay − 80. */
async function wireguardGoPath(topo: Topology, bin: string, tag: string, destroyTopo: () => Promise<void>): Promise<LocalPath> {
  const extMtu = await linkMtu(topo.nodes[0]?.ns, 'eth0');
  const wg = await startWireguardGo(topo, bin, tag, extMtu);
  const destroy = async (): Promise<void> => {
    await wg.stop();
    await destroyTopo();
  };
  const pods = await addPods(topo, extMtu - WIREGUARD_OVERHEAD).catch(async (err: unknown) => {
    await wg.stop();
    throw err;
  });
  return { ready: podsReady(pods, wg.pids), topo, pods, destroy };
}

/** Pod 10.244.<i>.2 behind cni0 (10.244.<i>.1) on each node, forwarding on, the given pod MTU; with `ipv6` also
 * fd00:10:244:<i>::2 behind fd00:10:244:<i>::1/64 (the nodes of a dual-stack topology forward IPv6 already). */
async function addPods(topo: Topology, mtu: number, ipv6 = false): Promise<PodHost[]> {
  const pods: PodHost[] = [];
  for (const node of topo.nodes) {
    await sysctlIn(node.ns, 'net.ipv4.ip_forward', '1');
    const v6 = ipv6 ? { gatewayCidr: `${subnet6Of(node)}::1/64`, ip: `${subnet6Of(node)}::2` } : undefined;
    const pod = await topo.addPod(node, `10.244.${node.index}.1/24`, `10.244.${node.index}.2`, v6);
    await setPodMtu(node.ns, pod.ns, mtu);
    pods.push(pod);
  }
  await waitForPing(pods, ipv6);
  return pods;
}

/** A LocalCluster with the data path's config and, on both nodes, our flanneld (exiting 69 means "not in this
 * build") or the real flannel (unavailable where it can be neither found nor built, found before any namespace). */
async function setupFlanneldPath(def: DataPathDef, tag: string, daemonArgs: readonly string[]): Promise<LocalPath> {
  let realFlannel: string | undefined;
  if (def.daemon === 'flannel') {
    const b = await buildRealFlannel();
    if (!b.ok) throw new UnavailableError(b.reason);
    realFlannel = b.bin;
  }
  const ipv6 = def.ipv6 === true;
  const cluster = await LocalCluster.create({ tag, nodes: 2, ipv6 });
  const destroy = onTeardown(`${def.id} cluster`, () => cluster.destroy());
  try {
    await cluster.putConfig({ Network: OVERLAY_NETWORK, ...(ipv6 ? { EnableIPv6: true, IPv6Network: OVERLAY_NETWORK6 } : {}), Backend: def.backend });
    const leased = (node: NodeHost): Promise<string> => waitForLease(cluster, node, def).catch((err: unknown) => { throw unavailableOr(cluster, node.name, err); });
    for (const node of cluster.nodes) {
      if (realFlannel) cluster.startFlannel(node, realFlannel);
      else cluster.startDaemon(node, ['--log-level=warn', ...daemonArgs]);
      // The real flannel picks a node's IPv6 subnet at random among the free ones, and etcd guards only the lease's
      // key, which two nodes' different IPv4 subnets already make distinct: started together, two nodes can take
      // the same IPv6 subnet (seen once in a CI run: both pods had one address). So one at a time, as a rolling
      // start would; our flanneld guards the IPv6 subnet itself (subnet/etcd).
      if (realFlannel && ipv6) await leased(node);
    }
    const pods: PodHost[] = [];
    for (const node of cluster.nodes) {
      const subnet = await leased(node);
      const subnet6 = ipv6 ? await waitForIpv6Subnet(cluster, node) : undefined;
      await sysctlIn(node.ns, 'net.ipv4.ip_forward', '1');
      const pod = await cluster.addPod(node, subnet, 2, subnet6);
      const mtu = Number(readEnvFile(cluster.subnetFileOf(node)).FLANNEL_MTU);
      if (mtu > 0) await setPodMtu(node.ns, pod.ns, mtu);
      pods.push(pod);
    }
    const addresses = pods.map((p) => podIp(p, ipv6));
    if (new Set(addresses).size < addresses.length) throw new Error(`two nodes were leased the same subnet (pods ${addresses.join(', ')}): nothing between them would cross the tunnel`);
    await waitForPing(pods, ipv6);
    const pids = (): number[] => [...cluster.daemons.values()].flatMap((d) => (d.proc.child.pid && d.proc.child.exitCode === null ? [d.proc.child.pid] : []));
    return { ready: podsReady(pods, pids, ipv6), topo: cluster.topo, pods, cluster, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}

/** Client pod 1, server pod 2, by their IPv6 addresses for the IPv6 rows. */
function podsReady(pods: readonly PodHost[], daemonPids: () => number[], ipv6 = false): ReadyPath {
  const [a, b] = pods;
  if (!a || !b) throw new Error('a data path needs two pods');
  return { client: { ns: a.ns, ip: podIp(a, ipv6) }, server: { ns: b.ns, ip: podIp(b, ipv6) }, daemonPids };
}

function podIp(pod: PodHost, ipv6: boolean): string {
  if (!ipv6) return pod.ip;
  if (!pod.ip6) throw new Error(`pod ${pod.ns} has no IPv6 address`);
  return pod.ip6;
}

/** Pod 1 must reach pod 2 (and back) before anything is measured, over IPv6 for the IPv6 rows. */
async function waitForPing(pods: readonly PodHost[], ipv6 = false, timeoutMs = 30_000): Promise<void> {
  const [a, b] = pods as [PodHost, PodHost];
  const [from, to] = [podIp(a, ipv6), podIp(b, ipv6)];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await ping(a.ns, to, 1, 1)) return;
  }
  throw new Error(`pod ${from} cannot reach pod ${to} after ${timeoutMs / 1000} s`);
}

/** FLANNEL_IPV6_SUBNET of a dual-stack node (e.g. fd00:10:244:2f::1/64), written with FLANNEL_SUBNET. */
async function waitForIpv6Subnet(cluster: LocalCluster, node: NodeHost, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const subnet6 = readEnvFile(cluster.subnetFileOf(node)).FLANNEL_IPV6_SUBNET;
    if (subnet6) return subnet6;
    if (Date.now() > deadline) throw new Error(`the daemon on ${node.name} wrote FLANNEL_SUBNET but no FLANNEL_IPV6_SUBNET (EnableIPv6 is set)`);
    await sleep(100);
  }
}

/** The node's subnet once flanneld has written subnet.env; an UnavailableError as soon as flanneld says that it
 * does not know the data path's Backend.Type at all (it keeps retrying then instead of exiting 69). */
async function waitForLease(cluster: LocalCluster, node: NodeHost, def: DataPathDef): Promise<string> {
  const type = String(def.backend?.Type ?? '');
  const proc = cluster.daemons.get(node.name)?.proc;
  const lease = cluster.waitForSubnet(node, 30_000);
  lease.catch(() => { /* the watcher below may have won the race; the daemon is stopped by the caller */ });
  let done = false;
  const watcher = (async (): Promise<never> => {
    while (!done) {
      const words = proc ? unknownBackendType(proc.output(), type) : undefined;
      if (words) throw new UnavailableError(`flanneld does not know this backend (it retries the config, no exit 69): ${words}`);
      await sleep(200);
    }
    return new Promise<never>(() => { /* the lease won */ });
  })();
  try {
    return await Promise.race([lease, watcher]);
  } finally {
    done = true;
  }
}

/** The daemon's own words when it exited 69 (the backend is not in this build), else the error. */
function unavailableOr(cluster: LocalCluster, nodeName: string, err: unknown): Error {
  const d = cluster.daemons.get(nodeName);
  if (d?.proc.child.exitCode !== 69) return err instanceof Error ? err : new Error(String(err));
  return new UnavailableError(`flanneld exited 69: ${lastDaemonMessage(d.proc.output())}`);
}
