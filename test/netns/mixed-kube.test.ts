// Issue #19 with the real flannel (v0.28.10, deploy/local/real-flannel.ts): flannel in Kubernetes mode
// (--kube-subnet-mgr, its kubeconfig holding flannel's service-account token under kube-flannel.yml's RBAC, its
// net-conf.json, NODE_NAME) on node1 and ours on node2, on one real kube-apiserver (deploy/local/kube-apiserver.ts).
// On host-gw and on vxlan (flannel's kernel flannel.1 against our default userspace VTEP): each side's Node
// annotations are read by the other and programmed (routes; on vxlan also the neighbour and, on flannel's kernel
// VTEP, the FDB entry), both Nodes carry the same annotation names, pods ping both ways and 20 MB go each way with
// equal sha256. Skipped with one line where flannel or the apiserver cannot be built.
import t, { type Test } from 'tap';
import { kubeApiserverOrSkip } from '../../deploy/local/kube-apiserver.js';
import { type DaemonHandle, LocalCluster } from '../../deploy/local/local-cluster.js';
import { execIn, ipIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { freshSubnet, realFlannelOrSkipTest } from '../helpers/mixed-cluster.js';
import { allPairsPing, sha256Transfer } from '../helpers/pod-traffic.js';
import { until } from '../helpers/wait.js';

const ANN = 'flannel.alpha.coreos.com/';

interface Member { node: NodeHost; daemon: DaemonHandle; pod: PodHost; subnet: string; label: string }

const flannelAnnotations = (node: any): Record<string, string> =>
  Object.fromEntries(Object.entries(node.metadata.annotations ?? {}).filter(([k]) => k.startsWith(ANN)).map(([k, v]) => [k.slice(ANN.length), v as string]));

const net = (subnet: string): string => subnet.replace(/\.1\//, '.0/');

async function mixed(t: Test, tag: string, backend: Record<string, unknown>): Promise<{ cluster: LocalCluster; members: [Member, Member] } | undefined> {
  const flannel = await realFlannelOrSkipTest(t);
  if (!flannel) return undefined;
  let skip = '';
  const apiserver = await kubeApiserverOrSkip((line) => { skip = line; });
  if (!apiserver) { t.plan(0, skip); return undefined; }
  const cluster = await LocalCluster.create({ tag: runTag(tag), nodes: 2, kube: { bin: apiserver } });
  t.teardown(async () => {
    if (!t.passing()) for (const d of cluster.daemons.values()) console.error(`--- ${d.kind} on ${d.node.name}:\n${d.proc.output().split('\n').slice(-40).join('\n')}`);
    await cluster.destroy();
  });
  await cluster.putConfig({ Network: '10.244.0.0/16', Backend: backend });
  const [n1, n2] = cluster.nodes as [NodeHost, NodeHost];
  // flannel v0.28.10's AcquireLease assigns into n.Annotations without creating the map: on a Node with no
  // annotations at all it panics ("assignment to entry in nil map", kube.go:431). A real Node always has some (the
  // kubelet writes this one when it registers), so give both Nodes the kubelet's annotation first.
  for (const n of [n1, n2]) {
    await cluster.kubeChecked('PATCH', `/api/v1/nodes/${n.name}`, { metadata: { annotations: { 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' } } },
      { contentType: 'application/merge-patch+json' });
  }
  const since = Date.now() - 1000;
  const daemons = [cluster.startFlannel(n1, flannel), cluster.startDaemon(n2)];
  const members: Member[] = [];
  for (const daemon of daemons) {
    const subnet = await freshSubnet(cluster, daemon.node, since);
    t.equal(subnet, `10.244.${daemon.node.index}.1/24`, `${daemon.kind} on ${daemon.node.name}: FLANNEL_SUBNET is its Node's podCIDR`);
    members.push({ node: daemon.node, daemon, subnet, pod: await cluster.addPod(daemon.node, subnet), label: `${daemon.kind === 'flannel' ? 'flannel' : 'ours'} (${daemon.node.name})` });
  }
  return { cluster, members: members as [Member, Member] };
}

async function annotationsOf(cluster: LocalCluster, m: Member, backendType: string): Promise<Record<string, string>> {
  // flannel patches its Node once its backend is up; subnet.env is written after that, but wait to be sure.
  return until(`${m.label}'s annotations`, async () => {
    const ann = flannelAnnotations(await cluster.kubeChecked('GET', `/api/v1/nodes/${m.node.name}`));
    return ann['backend-type'] === backendType && ann;
  }, 15_000);
}

async function commonChecks(t: Test, cluster: LocalCluster, members: [Member, Member], backendType: string): Promise<Array<Record<string, string>>> {
  const anns = [await annotationsOf(cluster, members[0], backendType), await annotationsOf(cluster, members[1], backendType)];
  t.same(Object.keys(anns[1] as object).sort(), Object.keys(anns[0] as object).sort(), `the same annotation names on both Nodes: ${Object.keys(anns[0] as object).sort().join(', ')}`);
  for (const [i, m] of members.entries()) {
    const ann = anns[i] as Record<string, string>;
    t.equal(ann['kube-subnet-manager'], 'true', `${m.label}: kube-subnet-manager`);
    t.equal(ann['public-ip'], m.node.underlayIp, `${m.label}: public-ip`);
    const obj = await cluster.kubeChecked('GET', `/api/v1/nodes/${m.node.name}`);
    const cond = (obj.status?.conditions ?? []).find((c: any) => c.type === 'NetworkUnavailable');
    t.match(cond, { status: 'False', reason: 'FlannelIsUp', message: 'Flannel is running on this node' }, `${m.label}: NetworkUnavailable=False condition`);
  }
  t.notMatch(members[0].daemon.proc.output(), /forbidden/i, 'flannel needed no permission beyond kube-flannel.yml\'s ClusterRole');
  return anns;
}

async function traffic(t: Test, cluster: LocalCluster, members: [Member, Member]): Promise<void> {
  const m = await allPairsPing(cluster, members.map((x) => x.pod), 30_000).catch((err: Error) => err.message);
  t.ok(Array.isArray(m) && m.flat().every(Boolean), `pods ping both ways: ${JSON.stringify(m)}`);
  const [fl, ours] = members;
  await sha256Transfer(t, fl.pod, ours.pod, 20, 5241);
  await sha256Transfer(t, ours.pod, fl.pod, 20, 5242);
}

t.test('kube mode host-gw: a flannel node and ours on one apiserver', async (t) => {
  const run = await mixed(t, 'xkh', { Type: 'host-gw' });
  if (!run) return;
  const { cluster, members } = run;
  const anns = await commonChecks(t, cluster, members, 'host-gw');
  for (const [i, m] of members.entries()) t.equal(anns[i]?.['backend-data'], 'null', `${m.label}: backend-data null`);
  for (const [m, peer] of [[members[0], members[1]], [members[1], members[0]]] as const) {
    const r = await until(`${peer.label}'s route to ${m.label}`, async () => {
      const s = await ipIn(peer.node.ns, ['route', 'show', net(m.subnet)]);
      return s.includes(`via ${m.node.underlayIp} dev eth0`) && s;
    }, 20_000).catch(() => 'none');
    t.match(r, `${net(m.subnet)} via ${m.node.underlayIp} dev eth0`, `${peer.label} routes ${m.label}'s podCIDR via its public-ip`);
  }
  await traffic(t, cluster, members);
});

t.test('kube mode vxlan: flannel\'s kernel flannel.1 and our userspace VTEP on one apiserver', async (t) => {
  const run = await mixed(t, 'xkv', { Type: 'vxlan' });
  if (!run) return;
  const { cluster, members } = run;
  const anns = await commonChecks(t, cluster, members, 'vxlan');
  const [fl, ours] = members;
  for (const [i, m] of members.entries()) {
    const peer = m === fl ? ours : fl;
    const data = JSON.parse(anns[i]?.['backend-data'] ?? '{}');
    const mac = JSON.parse(await ipIn(m.node.ns, ['-j', 'link', 'show', 'flannel.1']))[0].address as string;
    t.equal(data.VNI, 1, `${m.label}: VNI 1`);
    t.equal(data.VtepMAC, mac, `${m.label}: backend-data's VtepMAC is its flannel.1 MAC`);
    const gw = net(m.subnet).replace(/\/24$/, '');
    const neigh = await until(`${peer.label}'s neighbour for ${m.label}`, async () => {
      const s = await ipIn(peer.node.ns, ['neigh', 'show', 'dev', 'flannel.1']);
      return s.includes(`${gw} lladdr ${mac}`) && s;
    }, 20_000).catch(() => 'none');
    t.match(neigh, `${gw} lladdr ${mac} PERMANENT`, `${peer.label}: neighbour ${gw} → ${m.label}'s VtepMAC`);
    if (peer === fl) {
      t.match((await execIn(peer.node.ns, 'bridge', ['fdb', 'show', 'dev', 'flannel.1'])).stdout, `${mac} dst ${m.node.underlayIp} self permanent`, `${peer.label}: FDB entry for ${m.label}`);
    }
    // Ours tags its routes with its own protocol number (proto 241); flannel's carry none.
    t.match(await ipIn(peer.node.ns, ['route', 'show', net(m.subnet)]), new RegExp(`^${net(m.subnet).replace(/\./g, '\\.')} via ${gw.replace(/\./g, '\\.')} dev flannel\\.1 (proto \\S+ )?onlink`),
      `${peer.label}: route ${net(m.subnet)} via ${gw} dev flannel.1 onlink`);
  }
  await traffic(t, cluster, members);
});
