// Issue #18 with the real flannel (v0.28.10, deploy/local/real-flannel.ts): a dual-stack flannel node and ours on one
// etcd, on host-gw and on vxlan (flannel's kernel flannel.1/flannel-v6.1 beside our kernel data path). Each side's
// dual-stack lease (key, PublicIPv6, BackendV6Data) is read back and found programmed on the other side; then pods talk
// on both families, with 50 MB and sha256 over IPv6 each way. vxlan runs twice: our kernel data path, then our userspace
// engine's flannel-v6.1 (its lease adds AcceptsPartialChecksums, which flannel ignores; to flannel it sends complete
// inner checksums, or the transfer to flannel's kernel would fail). Skipped with one line where flannel cannot be built.
import t, { type Test } from 'tap';
import { type DaemonHandle, LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execIn, ipIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { realFlannelOrSkipTest } from '../helpers/mixed-cluster.js';
import { allPairsPing, sha256Transfer } from '../helpers/pod-traffic.js';
import { until } from '../helpers/wait.js';

const NETWORK = '10.244.0.0/16';
const NETWORK6 = 'fd00:10:244::/56';

interface Member { node: NodeHost; daemon: DaemonHandle; pod: PodHost; pod6: PodHost; subnet: string; subnet6: string; label: string }

const net6 = (subnet6: string): string => subnet6.replace(/::1\//, '::/');
const gw6 = (subnet6: string): string => subnet6.replace(/::1\/\d+$/, '::');

async function start(t: Test, cluster: LocalCluster, bin: string, kinds: ReadonlyArray<'flannel' | 'ours'>): Promise<Member[]> {
  const daemons = kinds.map((k, i) => (k === 'flannel' ? cluster.startFlannel(cluster.nodes[i]!, bin) : cluster.startDaemon(cluster.nodes[i]!)));
  const members: Member[] = [];
  for (const [i, daemon] of daemons.entries()) {
    const env = await until(`${daemon.node.name}'s FLANNEL_IPV6_SUBNET`, async () => {
      if (daemon.proc.child.exitCode !== null) throw new Error(`${daemon.kind} on ${daemon.node.name} exited ${daemon.proc.child.exitCode}:\n${daemon.proc.output()}`);
      const e = readEnvFile(cluster.subnetFileOf(daemon.node));
      return e.FLANNEL_IPV6_SUBNET ? e : undefined;
    }, 30_000);
    const pod = await cluster.addPod(daemon.node, env.FLANNEL_SUBNET as string, 2, env.FLANNEL_IPV6_SUBNET);
    members.push({
      node: daemon.node, daemon, pod, pod6: { ...pod, ip: pod.ip6 as string }, subnet: env.FLANNEL_SUBNET as string,
      subnet6: env.FLANNEL_IPV6_SUBNET as string, label: `${kinds[i] === 'flannel' ? 'flannel' : 'ours'} (${daemon.node.name})`,
    });
  }
  t.equal(new Set(members.map((m) => m.subnet6)).size, members.length, 'every node leased its own IPv6 subnet');
  return members;
}

async function leaseOf(cluster: LocalCluster, m: Member): Promise<Record<string, unknown>> {
  const key = `${cluster.prefix}/subnets/${m.subnet.replace(/\.1\//, '.0-')}&${gw6(m.subnet6)}-64`;
  const value = await cluster.etcd.get(key);
  if (!value) throw new Error(`${m.label}: no dual-stack lease at ${key}`);
  return JSON.parse(value) as Record<string, unknown>;
}

async function traffic(t: Test, cluster: LocalCluster, members: readonly Member[]): Promise<void> {
  t.ok((await allPairsPing(cluster, members.map((m) => m.pod))).flat().every(Boolean), 'IPv4: all pairs of pods');
  t.ok((await allPairsPing(cluster, members.map((m) => m.pod6))).flat().every(Boolean), 'IPv6: all pairs of pods');
  const [fl, ours] = members as [Member, Member];
  await sha256Transfer(t, fl.pod6, ours.pod6, 50, 5211);
  await sha256Transfer(t, ours.pod6, fl.pod6, 50, 5212);
}

async function mixed(t: Test, tag: string, backend: Record<string, unknown>): Promise<{ cluster: LocalCluster; members: Member[] } | undefined> {
  const bin = await realFlannelOrSkipTest(t);
  if (!bin) return undefined;
  const cluster = await LocalCluster.create({ tag: runTag(tag), nodes: 2, ipv6: true });
  t.teardown(async () => {
    if (!t.passing()) for (const d of cluster.daemons.values()) console.error(`--- ${d.kind} on ${d.node.name}:\n${d.proc.output().split('\n').slice(-40).join('\n')}`);
    await cluster.destroy();
  });
  await cluster.putConfig({ Network: NETWORK, EnableIPv6: true, IPv6Network: NETWORK6, Backend: backend });
  return { cluster, members: await start(t, cluster, bin, ['flannel', 'ours']) };
}

t.test('dual-stack host-gw: a flannel node and ours', async (t) => {
  const run = await mixed(t, 'x6h', { Type: 'host-gw' });
  if (!run) return;
  const { cluster, members } = run;
  const [fl, ours] = members as [Member, Member];
  for (const [m, peer] of [[fl, ours], [ours, fl]] as const) {
    const lease = await leaseOf(cluster, m);
    t.equal(lease.PublicIPv6, m.node.underlayIp6, `${m.label}: PublicIPv6 in its dual-stack lease`);
    t.match(await ipIn(peer.node.ns, ['-6', 'route', 'show', net6(m.subnet6)]), `via ${m.node.underlayIp6} dev eth0`, `${peer.label} routes ${m.label}'s IPv6 subnet via its PublicIPv6`);
  }
  await traffic(t, cluster, members);
});

for (const datapath of ['kernel', 'userspace'] as const) t.test(`dual-stack vxlan: flannel's kernel VTEPs and our ${datapath} data path`, async (t) => {
  const userspace = datapath === 'userspace';
  const run = await mixed(t, userspace ? 'x6u' : 'x6v', { Type: 'vxlan', Datapath: datapath });
  if (!run) return;
  const { cluster, members } = run;
  const [fl, ours] = members as [Member, Member];
  for (const [m, peer] of [[fl, ours], [ours, fl]] as const) {
    const lease = await leaseOf(cluster, m);
    const mac = JSON.parse(await ipIn(m.node.ns, ['-j', 'link', 'show', 'flannel-v6.1']))[0].address as string;
    t.equal(lease.PublicIPv6, m.node.underlayIp6, `${m.label}: PublicIPv6 in its dual-stack lease`);
    const partial = userspace && m === ours ? { AcceptsPartialChecksums: true } : {};
    t.same(lease.BackendV6Data, { VNI: 1, VtepMAC: mac, ...partial }, `${m.label}: BackendV6Data names its flannel-v6.1 MAC`);
    t.match(await ipIn(peer.node.ns, ['-6', 'neigh', 'show', 'dev', 'flannel-v6.1']), `${gw6(m.subnet6)} lladdr ${mac} PERMANENT`, `${peer.label}: neighbour for ${m.label}`);
    if (!(userspace && peer === ours)) {
      t.match((await execIn(peer.node.ns, 'bridge', ['fdb', 'show', 'dev', 'flannel-v6.1'])).stdout, `${mac} dst ${m.node.underlayIp6} self permanent`, `${peer.label}: FDB entry for ${m.label}`);
    }
    t.match(await ipIn(peer.node.ns, ['-6', 'route', 'show', net6(m.subnet6)]), `via ${gw6(m.subnet6)} dev flannel-v6.1`, `${peer.label}: route to ${m.label}'s IPv6 subnet`);
  }
  const mtu = (m: Member): number => Number(readEnvFile(cluster.subnetFileOf(m.node)).FLANNEL_MTU);
  const devMtu = async (m: Member): Promise<number> => JSON.parse(await ipIn(m.node.ns, ['-j', 'link', 'show', 'flannel-v6.1']))[0].mtu as number;
  t.equal(await devMtu(fl), 1430, 'flannel\'s flannel-v6.1: 1500 - 70');
  t.equal(mtu(fl), 1450, 'but flannel\'s FLANNEL_MTU (the pods\' MTU) is 1500 - 50: its pods\' full-size IPv6 packets are 20 bytes too big (its latent bug)');
  t.equal(await devMtu(ours), 1430, 'ours: flannel-v6.1 1500 - 70');
  t.equal(mtu(ours), 1430, 'ours: FLANNEL_MTU 1500 - 70, so that full-size IPv6 packets fit');
  await traffic(t, cluster, members);
});
