// IPv6-only (EnableIPv4 false) 3-node clusters of real namespaces, a real etcd and real flanneld
// processes, on host-gw and on vxlan (kernel and userspace data paths): our IPv6-only lease keys
// (<prefix>/subnets/fd00:…-64, which flannel's key regex skips) with PublicIP 0.0.0.0 and the node's
// PublicIPv6, one distinct subnet per node (flannel's etcd mode gives them all one), subnet.env without
// the IPv4 variables, pods added by our CNI plugin with an IPv6 address only, all pairs and a transfer
// with sha256, the kernel state (no IPv4 device or route), ip6tables only, and a deleted lease unprogrammed.
import t from 'tap';
import type { Test } from 'tap';
import { type CniPod, LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execIn, ipIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost } from '../../deploy/local/topology.js';
import { allPairsPing, sha256Transfer } from '../helpers/pod-traffic.js';
import { until } from '../helpers/wait.js';

const NETWORK6 = 'fd00:10:244::/56';
const v6Config = (backend: object): object => ({ EnableIPv4: false, EnableIPv6: true, IPv6Network: NETWORK6, Backend: backend });
/** flannel's subnetRegex (pkg/subnet/subnet.go): the keys a flannel node reading this etcd would parse. */
const FLANNEL_KEY = /(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;

interface V6Node { readonly node: NodeHost; readonly subnet6: string; readonly pod: CniPod }

const subnetOf = (flannelSubnet: string): string => flannelSubnet.replace(/::1\//, '::/');
const keyOf = (flannelSubnet: string): string => `/coreos.com/network/subnets/${subnetOf(flannelSubnet).replace('/', '-')}`;

async function startIpv6Only(cluster: LocalCluster, args: readonly string[]): Promise<V6Node[]> {
  for (const node of cluster.nodes) cluster.startDaemon(node, args);
  const out: V6Node[] = [];
  for (const node of cluster.nodes) {
    await cluster.waitForSubnet(node, 30_000, 'FLANNEL_IPV6_SUBNET');
    const env = readEnvFile(cluster.subnetFileOf(node));
    out.push({ node, subnet6: env.FLANNEL_IPV6_SUBNET as string, pod: await cluster.addCniPod(node) });
  }
  return out;
}

async function checkLeases(t: Test, cluster: LocalCluster, nodes: readonly V6Node[], mtu: number, vxlan: boolean): Promise<void> {
  t.equal(new Set(nodes.map((n) => n.subnet6)).size, nodes.length, 'every node leased its own IPv6 subnet');
  const keys = (await cluster.etcd.ctlChecked(['get', '/coreos.com/network/subnets/', '--prefix', '--keys-only'])).split('\n').filter(Boolean).sort();
  t.same(keys, nodes.map((n) => keyOf(n.subnet6)).sort(), 'one IPv6-only key per node: fd00:…-64, no IPv4 part');
  for (const k of keys) t.notOk(FLANNEL_KEY.test(k), `flannel's key regex skips ${k}`);
  for (const n of nodes) {
    const env = readEnvFile(cluster.subnetFileOf(n.node));
    t.same(Object.keys(env).sort(), ['FLANNEL_IPMASQ', 'FLANNEL_IPV6_NETWORK', 'FLANNEL_IPV6_SUBNET', 'FLANNEL_MTU'], `${n.node.name}: subnet.env has no FLANNEL_NETWORK or FLANNEL_SUBNET`);
    t.equal(env.FLANNEL_IPV6_NETWORK, NETWORK6);
    t.equal(env.FLANNEL_MTU, String(mtu), `${n.node.name}: FLANNEL_MTU ${mtu}`);
    const attrs = JSON.parse((await cluster.etcd.get(keyOf(n.subnet6))) ?? '{}') as Record<string, unknown>;
    t.equal(attrs.PublicIP, '0.0.0.0', `${n.node.name}: PublicIP 0.0.0.0 (no IPv4 identity)`);
    t.equal(attrs.PublicIPv6, n.node.underlayIp6, `${n.node.name}: PublicIPv6 is eth0's IPv6 address`);
    t.notOk('BackendData' in attrs, `${n.node.name}: no IPv4 BackendData`);
    if (vxlan) t.match(attrs.BackendV6Data, { VNI: 1, VtepMAC: /^[0-9a-f:]{17}$/ }, `${n.node.name}: BackendV6Data for flannel-v6.1`);
    t.match(n.pod.ip, /^fd00:10:244:[0-9a-f]{1,4}::[0-9a-f]+$/, `${n.node.name}: the CNI pod has an IPv6 address`);
    t.notOk((await ipIn(n.pod.ns, ['-4', 'addr', 'show', 'dev', 'eth0'])).includes('inet '), `${n.node.name}: and no IPv4 one`);
  }
}

async function checkIptables(t: Test, node: NodeHost): Promise<void> {
  const nat6 = (await execIn(node.ns, 'ip6tables-save', ['-t', 'nat'])).stdout;
  t.match(nat6, `-A FLANNEL-POSTRTG -s ${NETWORK6} ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE`, `${node.name}: ip6tables masquerade rule`);
  const nat4 = (await execIn(node.ns, 'iptables-save', ['-t', 'nat'])).stdout;
  t.notMatch(nat4, 'FLANNEL-POSTRTG', `${node.name}: no IPv4 rules in an IPv6-only network`);
}

async function checkTraffic(t: Test, nodes: readonly V6Node[], cluster: LocalCluster): Promise<void> {
  t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod))).flat().every(Boolean), 'IPv6: all pairs of pods');
  await sha256Transfer(t, nodes[0]!.pod, nodes[2]!.pod, 50);
}

/** A stopped node's lease deleted in etcd: its peers drop their route to its subnet. */
async function checkLeaseDeleted(t: Test, cluster: LocalCluster, nodes: readonly V6Node[]): Promise<void> {
  const [a, , c] = nodes as [V6Node, V6Node, V6Node];
  t.equal(await cluster.stopDaemon(c.node), 0, `${c.node.name}: clean stop`);
  await cluster.etcd.ctlChecked(['del', keyOf(c.subnet6)]);
  const dst = subnetOf(c.subnet6);
  await until(`${a.node.name}'s route to ${dst} to go`, async () => !(await ipIn(a.node.ns, ['-6', 'route', 'show', dst])).trim(), 15_000);
  t.pass(`${a.node.name}: no route to ${dst} any more`);
  t.equal(await cluster.stopDaemon(a.node), 0, `${a.node.name}: clean stop`);
  t.notMatch((await execIn(a.node.ns, 'ip6tables-save', ['-t', 'nat'])).stdout, 'FLANNEL-POSTRTG', 'a clean stop removes the ip6tables rules');
}

t.test('IPv6-only host-gw: routes via PublicIPv6, no IPv4 at all', async (t) => {
  const cluster = await LocalCluster.create({ tag: runTag('v6h'), nodes: 3, ipv6: true });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig(v6Config({ Type: 'host-gw' }));
  const nodes = await startIpv6Only(cluster, ['--ip-masq']);
  await checkLeases(t, cluster, nodes, 1500, false);
  const [a, b, c] = nodes as [V6Node, V6Node, V6Node];
  const routes6 = await ipIn(a.node.ns, ['-6', 'route', 'show', 'proto', '241']);
  for (const peer of [b, c]) t.match(routes6, `${subnetOf(peer.subnet6)} via ${peer.node.underlayIp6} dev eth0`, `route to ${peer.node.name} via its PublicIPv6`);
  t.equal(routes6.trim().split('\n').length, 2, 'exactly the two peers\' routes');
  t.equal((await ipIn(a.node.ns, ['-4', 'route', 'show', 'proto', '241'])).trim(), '', 'no IPv4 routes');
  for (const n of nodes) await checkIptables(t, n.node);
  await checkTraffic(t, nodes, cluster);
  await ipIn(a.node.ns, ['-6', 'route', 'del', subnetOf(b.subnet6)]);
  await until('the deleted route to come back', async () => (await ipIn(a.node.ns, ['-6', 'route', 'show', subnetOf(b.subnet6)])).includes('via'), 15_000);
  t.pass('a route deleted by hand is restored by the reconcile');
  await checkLeaseDeleted(t, cluster, nodes);
});

for (const datapath of ['kernel', 'userspace'] as const) t.test(`IPv6-only vxlan, ${datapath} data path: flannel-v6.1 alone`, async (t) => {
  const cluster = await LocalCluster.create({ tag: runTag(datapath === 'kernel' ? 'v6k' : 'v6u'), nodes: 3, ipv6: true });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig(v6Config({ Type: 'vxlan', Datapath: datapath }));
  const nodes = await startIpv6Only(cluster, ['--ip-masq']);
  await checkLeases(t, cluster, nodes, 1430, true);
  const [a, b, c] = nodes as [V6Node, V6Node, V6Node];
  const link6 = JSON.parse(await ipIn(a.node.ns, ['-d', '-j', 'link', 'show', 'flannel-v6.1']))[0];
  t.equal(link6.linkinfo.info_kind, datapath === 'kernel' ? 'vxlan' : 'tun', `flannel-v6.1 is ${datapath === 'kernel' ? 'a kernel VXLAN device' : 'our engine\'s TAP'}`);
  t.equal(link6.mtu, 1430, 'flannel-v6.1: MTU 1500 - 70');
  t.not((await execIn(a.node.ns, 'ip', ['link', 'show', 'flannel.1'])).code, 0, 'no flannel.1 in an IPv6-only network');
  for (const peer of [b, c]) {
    const attrs = JSON.parse((await cluster.etcd.get(keyOf(peer.subnet6))) ?? '{}') as { BackendV6Data: { VtepMAC: string } };
    const gw = subnetOf(peer.subnet6).replace('/64', '');
    t.match(await ipIn(a.node.ns, ['-6', 'neigh', 'show', 'dev', 'flannel-v6.1']), `${gw} lladdr ${attrs.BackendV6Data.VtepMAC} PERMANENT`, `neighbour of ${peer.node.name}`);
    t.match(await ipIn(a.node.ns, ['-6', 'route', 'show', subnetOf(peer.subnet6)]), `via ${gw} dev flannel-v6.1`, `route to ${peer.node.name} through flannel-v6.1`);
  }
  for (const n of nodes) await checkIptables(t, n.node);
  await checkTraffic(t, nodes, cluster);
  await checkLeaseDeleted(t, cluster, nodes);
});

t.test('IPv6-only wireguard: flannel-wg-v6 alone, only WireGuard messages on the underlay', async (t) => {
  const cluster = await LocalCluster.create({ tag: runTag('v6w'), nodes: 3, ipv6: true });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig(v6Config({ Type: 'wireguard' }));
  const nodes = await startIpv6Only(cluster, ['--ip-masq']);
  await checkLeases(t, cluster, nodes, 1420, false);
  const [a] = nodes as [V6Node, V6Node, V6Node];
  for (const n of nodes) {
    const attrs = JSON.parse((await cluster.etcd.get(keyOf(n.subnet6))) ?? '{}') as { BackendV6Data?: { PublicKey?: string; Port?: number } };
    t.match(attrs.BackendV6Data, { PublicKey: /^[A-Za-z0-9+/]{43}=$/, Port: 51821 }, `${n.node.name}: BackendV6Data with its key and ListenPortV6`);
  }
  const link = JSON.parse(await ipIn(a.node.ns, ['-j', 'link', 'show', 'flannel-wg-v6']))[0];
  t.equal(link.mtu, 1420, 'flannel-wg-v6: MTU 1500 - 80');
  t.not((await execIn(a.node.ns, 'ip', ['link', 'show', 'flannel-wg'])).code, 0, 'no flannel-wg in an IPv6-only network');
  t.match(await ipIn(a.node.ns, ['-6', 'route', 'show', NETWORK6]), 'dev flannel-wg-v6', 'the IPv6Network is routed into flannel-wg-v6');
  t.match((await execIn(a.node.ns, 'ss', ['-u', '-l', '-n', '-6'])).stdout, `[${a.node.underlayIp6}]:51821`, 'the engine listens on eth0\'s IPv6 address, port 51821');
  for (const n of nodes) await checkIptables(t, n.node);
  await checkTraffic(t, nodes, cluster);
  for (const n of [...nodes].reverse()) t.equal(await cluster.stopDaemon(n.node), 0, `${n.node.name}: clean stop`);
});
