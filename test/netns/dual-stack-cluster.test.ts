// Dual-stack (EnableIPv6) 3-node clusters of real namespaces, a real etcd and real flanneld processes, on
// host-gw and on vxlan's kernel data path: flannel's lease keys and values, subnet.env, pod traffic on
// both families (all pairs, 100 MB with sha256 over IPv6, DF pings at the exact MTU and Packet Too Big
// one byte above), the kernel state per family, ip6tables rules with their lifecycle, reconcile, and a
// deleted lease unprogrammed. host-gw starts IPv4-only and turns IPv6 on: no node's IPv4 subnet moves.
import { statSync } from 'node:fs';
import t from 'tap';
import type { Test } from 'tap';
import { LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execIn, ipIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { allPairsPing, checkPodMtu, sha256Transfer } from '../helpers/pod-traffic.js';
import { until } from '../helpers/wait.js';
import { scrapeMetric } from '../helpers/metrics.js';

const NETWORK = '10.244.0.0/16';
const NETWORK6 = 'fd00:10:244::/56';
const METRICS_PORT = 9472;
const dualConfig = (backend: object): object => ({ Network: NETWORK, EnableIPv6: true, IPv6Network: NETWORK6, Backend: backend });

interface Node6 {
  readonly node: NodeHost;
  readonly subnet: string;   // FLANNEL_SUBNET, e.g. 10.244.3.1/24
  readonly subnet6: string;  // FLANNEL_IPV6_SUBNET, e.g. fd00:10:244:3e::1/64
  readonly pod: PodHost;
  readonly pod6: PodHost;    // the same pod, addressed by its IPv6 address
}

/** The lease key flannel writes for a dual-stack lease: 10.244.3.0-24&fd00:10:244:3e::-64. */
function leaseKey(subnet: string, subnet6: string): string {
  const [ip4, len4] = subnet.split('/') as [string, string];
  const [ip6, len6] = subnet6.split('/') as [string, string];
  return `/coreos.com/network/subnets/${ip4.replace(/\.1$/, '.0')}-${len4}&${ip6.replace(/::1$/, '::')}-${len6}`;
}

async function waitForIpv6Subnet(cluster: LocalCluster, node: NodeHost): Promise<Record<string, string>> {
  return until(`${node.name}'s FLANNEL_IPV6_SUBNET`, async () => {
    const env = readEnvFile(cluster.subnetFileOf(node));
    const d = cluster.daemons.get(node.name);
    if (d && d.proc.child.exitCode !== null) throw new Error(`flanneld on ${node.name} exited ${d.proc.child.exitCode}:\n${d.proc.output()}`);
    return env.FLANNEL_IPV6_SUBNET ? env : undefined;
  }, 30_000);
}

async function startDualStack(cluster: LocalCluster, args: readonly string[]): Promise<Node6[]> {
  for (const node of cluster.nodes) cluster.startDaemon(node, args);
  const out: Node6[] = [];
  for (const node of cluster.nodes) {
    const env = await waitForIpv6Subnet(cluster, node);
    const pod = await cluster.addPod(node, env.FLANNEL_SUBNET as string, 2, env.FLANNEL_IPV6_SUBNET);
    out.push({ node, subnet: env.FLANNEL_SUBNET as string, subnet6: env.FLANNEL_IPV6_SUBNET as string, pod, pod6: { ...pod, ip: pod.ip6 as string } });
  }
  return out;
}

async function checkLeases(t: Test, cluster: LocalCluster, nodes: readonly Node6[], vxlan: boolean, userspace = false): Promise<void> {
  t.equal(new Set(nodes.map((n) => n.subnet6)).size, nodes.length, 'every node leased its own IPv6 subnet');
  for (const n of nodes) {
    const env = readEnvFile(cluster.subnetFileOf(n.node));
    t.equal(env.FLANNEL_IPV6_NETWORK, NETWORK6, `${n.node.name}: FLANNEL_IPV6_NETWORK`);
    t.match(n.subnet6, /^fd00:10:244:[0-9a-f]{1,4}::1\/64$/, `${n.node.name}: FLANNEL_IPV6_SUBNET is the subnet's first address`);
    const value = await cluster.etcd.get(leaseKey(n.subnet, n.subnet6));
    t.ok(value, `${n.node.name}: the dual-stack key ${leaseKey(n.subnet, n.subnet6)} is in etcd`);
    const attrs = JSON.parse(value ?? '{}') as Record<string, unknown>;
    t.equal(attrs.PublicIPv6, n.node.underlayIp6, `${n.node.name}: PublicIPv6 is the interface's IPv6 address`);
    if (vxlan) {
      const mac = JSON.parse(await ipIn(n.node.ns, ['-j', 'link', 'show', 'flannel-v6.1']))[0].address as string;
      t.same(attrs.BackendV6Data, { VNI: 1, VtepMAC: mac, ...(userspace ? { AcceptsPartialChecksums: true } : {}) }, `${n.node.name}: BackendV6Data has flannel-v6.1's MAC`);
    } else {
      t.notOk('BackendV6Data' in attrs, `${n.node.name}: host-gw writes no BackendV6Data`);
    }
  }
}

async function checkIp6tables(t: Test, node: NodeHost): Promise<void> {
  const nat = await execIn(node.ns, 'ip6tables-save', ['-t', 'nat']);
  t.match(nat.stdout, new RegExp(`-A FLANNEL-POSTRTG -s ${NETWORK6.replace(/[/.]/g, '\\$&')} ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE`), `${node.name}: ip6tables masquerade rule for the IPv6 network`);
  t.equal(nat.stdout.split('\n').filter((l) => l === '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG').length, 1, `${node.name}: one ip6tables POSTROUTING jump`);
  const filter = await execIn(node.ns, 'ip6tables-save', ['-t', 'filter']);
  t.match(filter.stdout, `-A FLANNEL-FWD -s ${NETWORK6} -m comment --comment "flanneld forward" -j ACCEPT`, `${node.name}: ip6tables forward accept`);
  const v4 = await execIn(node.ns, 'iptables-save', ['-t', 'nat']);
  t.match(v4.stdout, `-A FLANNEL-POSTRTG -s ${NETWORK} ! -d 224.0.0.0/4`, `${node.name}: the IPv4 rules are there too`);
}

t.test('dual-stack host-gw: IPv6 turned on in a running cluster keeps every IPv4 subnet', async (t) => {
  const cluster = await LocalCluster.create({ tag: runTag('d6h'), nodes: 3, ipv6: true });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig({ Network: NETWORK, Backend: { Type: 'host-gw' } });
  for (const node of cluster.nodes) cluster.startDaemon(node);
  const before = new Map<string, string>();
  for (const node of cluster.nodes) before.set(node.name, await cluster.waitForSubnet(node));
  for (const node of cluster.nodes) t.equal(await cluster.stopDaemon(node), 0, `${node.name}: IPv4-only daemon stops cleanly`);

  await cluster.putConfig(dualConfig({ Type: 'host-gw' }));
  const nodes = await startDualStack(cluster, ['--ip-masq']);
  for (const n of nodes) t.equal(n.subnet, before.get(n.node.name), `${n.node.name}: IPv4 subnet ${n.subnet} kept when IPv6 was turned on`);
  await checkLeases(t, cluster, nodes, false);
  t.equal(readEnvFile(cluster.subnetFileOf(nodes[0]!.node)).FLANNEL_MTU, '1500', 'FLANNEL_MTU: host-gw has no overhead');

  await t.test('kernel routes per family', async (t) => {
    const [a, b, c] = nodes as [Node6, Node6, Node6];
    const routes6 = await ipIn(a.node.ns, ['-6', 'route', 'show', 'proto', '241']);
    for (const peer of [b, c]) {
      t.match(routes6, `${peer.subnet6.replace(/::1\//, '::/')} via ${peer.node.underlayIp6} dev eth0`, `IPv6 route to ${peer.node.name} via its PublicIPv6`);
    }
    t.equal(routes6.trim().split('\n').length, 2, 'exactly the two peers\' IPv6 routes');
    const routes4 = await ipIn(a.node.ns, ['-4', 'route', 'show', 'proto', '241']);
    t.equal(routes4.trim().split('\n').length, 2, 'and their two IPv4 routes');
  });

  await t.test('pods: all pairs on both families, 100 MB over IPv6, the exact MTU', async (t) => {
    t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod))).flat().every(Boolean), 'IPv4: all pairs');
    t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod6))).flat().every(Boolean), 'IPv6: all pairs');
    await sha256Transfer(t, nodes[0]!.pod6, nodes[2]!.pod6, 100);
    // host-gw: pods have the interface MTU; one byte more is refused by the pod's own link.
    await checkPodMtu(t, nodes[0]!.pod, nodes[1]!, 1500, /mtu[=:] ?1500/i);
  });

  await t.test('ip6tables rules for the IPv6 network, beside the IPv4 ones', async (t) => {
    for (const n of nodes) await checkIp6tables(t, n.node);
  });

  await t.test('an IPv6 route deleted by hand comes back', async (t) => {
    const [a, b] = nodes as [Node6, Node6];
    const dst = b.subnet6.replace(/::1\//, '::/');
    await ipIn(a.node.ns, ['-6', 'route', 'del', dst]);
    await until('the IPv6 route to come back', async () => (await ipIn(a.node.ns, ['-6', 'route', 'show', dst])).includes(`via ${b.node.underlayIp6}`), 15_000);
    t.pass(`${dst} restored by the reconcile`);
  });

  await t.test('ip6tables rules removed by hand are restored by the resync', async (t) => {
    const { node } = nodes[1]!;
    await execIn(node.ns, 'ip6tables', ['-w', '-t', 'nat', '-F', 'FLANNEL-POSTRTG']);
    await execIn(node.ns, 'ip6tables', ['-w', '-D', 'FORWARD', '-m', 'comment', '--comment', 'flanneld forward', '-j', 'FLANNEL-FWD']);
    await until('the ip6tables rules to come back', async () => {
      const nat = (await execIn(node.ns, 'ip6tables-save', ['-t', 'nat'])).stdout;
      const filter = (await execIn(node.ns, 'ip6tables-save', ['-t', 'filter'])).stdout;
      return nat.includes('-A FLANNEL-POSTRTG -s fd00:10:244::/56 ! -d ff00::/8') && filter.includes('-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD');
    }, 15_000);
    await checkIp6tables(t, node);
  });

  await t.test('a peer lease that changes, then drops, its IPv6 subnet: the old IPv6 route goes, the IPv4 one stays', async (t) => {
    const [a, b] = nodes as [Node6, Node6, Node6];
    t.equal(await cluster.stopDaemon(b.node), 0, `${b.node.name}: clean stop, so its lease can be rewritten by hand`);
    const oldKey = leaseKey(b.subnet, b.subnet6);
    const value = await cluster.etcd.get(oldKey) as string;
    const moved6 = 'fd00:10:244:ee::1/64';
    await cluster.etcd.put(leaseKey(b.subnet, moved6), value);
    await cluster.etcd.ctlChecked(['del', oldKey]);
    const old6 = b.subnet6.replace(/::1\//, '::/');
    const net4 = b.subnet.replace(/\.1\//, '.0/');
    await until('the route to the new IPv6 subnet', async () => (await ipIn(a.node.ns, ['-6', 'route', 'show', 'fd00:10:244:ee::/64'])).includes(`via ${b.node.underlayIp6}`), 15_000);
    t.equal((await ipIn(a.node.ns, ['-6', 'route', 'show', old6])).trim(), '', `the route to the old IPv6 subnet ${old6} is gone`);
    t.match(await ipIn(a.node.ns, ['-4', 'route', 'show', net4]), `via ${b.node.underlayIp}`, 'the IPv4 route stays');
    const v4Only = JSON.stringify({ ...JSON.parse(value) as object, PublicIPv6: null });
    await cluster.etcd.put(`/coreos.com/network/subnets/${net4.replace('/', '-')}`, v4Only);
    await cluster.etcd.ctlChecked(['del', leaseKey(b.subnet, moved6)]);
    await until('the IPv6 route of the dropped IPv6 subnet to go', async () => !(await ipIn(a.node.ns, ['-6', 'route', 'show', 'fd00:10:244:ee::/64'])).trim(), 15_000);
    t.pass('dropping the IPv6 subnet removes its route');
    t.match(await ipIn(a.node.ns, ['-4', 'route', 'show', net4]), `via ${b.node.underlayIp}`, 'the IPv4 route still stays');
  });

  await t.test('a deleted lease takes its IPv6 route with it; a clean stop removes the ip6tables rules', async (t) => {
    const [a, , c] = nodes as [Node6, Node6, Node6];
    await cluster.etcd.ctlChecked(['del', leaseKey(c.subnet, c.subnet6)]);
    const dst = c.subnet6.replace(/::1\//, '::/');
    await until('the IPv6 route to go', async () => !(await ipIn(a.node.ns, ['-6', 'route', 'show', dst])).trim(), 15_000);
    t.pass(`${a.node.name}: no route to ${dst} any more`);
    t.equal(await cluster.stopDaemon(a.node), 0, `${a.node.name}: clean stop`);
    const nat = await execIn(a.node.ns, 'ip6tables-save', ['-t', 'nat']);
    t.notMatch(nat.stdout, 'FLANNEL-POSTRTG', 'ip6tables nat rules removed');
    const filter = await execIn(a.node.ns, 'ip6tables-save', ['-t', 'filter']);
    t.notMatch(filter.stdout, 'FLANNEL-FWD', 'ip6tables filter rules removed');
  });
});

for (const datapath of ['kernel', 'userspace'] as const) t.test(`dual-stack vxlan, ${datapath} data path: flannel.1 and flannel-v6.1`, async (t) => {
  const userspace = datapath === 'userspace';
  const cluster = await LocalCluster.create({ tag: runTag(userspace ? 'd6u' : 'd6v'), nodes: 3, ipv6: true });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig(dualConfig({ Type: 'vxlan', Datapath: datapath }));
  const nodes = await startDualStack(cluster, ['--ip-masq', ...(userspace ? [`--healthz-port=${METRICS_PORT}`] : [])]);
  await checkLeases(t, cluster, nodes, true, userspace);
  t.equal(readEnvFile(cluster.subnetFileOf(nodes[0]!.node)).FLANNEL_MTU, '1430', 'FLANNEL_MTU: 1500 - 70, so that IPv6 over the IPv6 underlay fits');

  await t.test('the VTEPs and their per-peer state', async (t) => {
    const [a, b, c] = nodes as [Node6, Node6, Node6];
    const link6 = JSON.parse(await ipIn(a.node.ns, ['-d', '-j', 'link', 'show', 'flannel-v6.1']))[0];
    if (userspace) {
      t.equal(link6.linkinfo.info_kind, 'tun', 'flannel-v6.1 is our engine\'s TAP device');
      const sockets = (await execIn(a.node.ns, 'ss', ['-u', '-l', '-n', '-6'])).stdout;
      t.match(sockets, `[${a.node.underlayIp6}]:8472`, 'the engine listens on the IPv6 address of eth0, port 8472');
    } else {
      t.equal(link6.linkinfo.info_data.local6, a.node.underlayIp6, 'flannel-v6.1: local is the IPv6 address of eth0');
      t.equal(link6.linkinfo.info_data.port, 8472, 'flannel-v6.1: port 8472');
    }
    t.equal(link6.mtu, 1430, 'flannel-v6.1: MTU 1500 - 70');
    const link4 = JSON.parse(await ipIn(a.node.ns, ['-d', '-j', 'link', 'show', 'flannel.1']))[0];
    t.equal(link4.mtu, 1450, 'flannel.1: MTU 1500 - 50');
    t.match(await ipIn(a.node.ns, ['-6', 'addr', 'show', 'dev', 'flannel-v6.1']), `${a.subnet6.replace(/::1\/64/, '::')}/128`, 'flannel-v6.1 holds its subnet address /128');
    const fdb6 = userspace ? { stdout: '' } : await execIn(a.node.ns, 'bridge', ['fdb', 'show', 'dev', 'flannel-v6.1']);
    for (const peer of [b, c]) {
      const mac = JSON.parse(await ipIn(peer.node.ns, ['-j', 'link', 'show', 'flannel-v6.1']))[0].address as string;
      if (!userspace) t.match(fdb6.stdout, `${mac} dst ${peer.node.underlayIp6} self permanent`, `FDB: ${peer.node.name}'s v6 VtepMAC → its PublicIPv6`);
      const gw = peer.subnet6.replace(/::1\/64/, '::');
      t.match(await ipIn(a.node.ns, ['-6', 'neigh', 'show', 'dev', 'flannel-v6.1']), `${gw} lladdr ${mac} PERMANENT`, `neighbour: ${gw} → ${peer.node.name}'s v6 VtepMAC`);
      t.match(await ipIn(a.node.ns, ['-6', 'route', 'show', peer.subnet6.replace(/::1\//, '::/')]), `via ${gw} dev flannel-v6.1`, `route to ${peer.node.name}'s IPv6 subnet through flannel-v6.1, onlink`);
    }
  });

  await t.test('pods: all pairs on both families, 100 MB over IPv6, the exact MTU and Packet Too Big', async (t) => {
    t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod))).flat().every(Boolean), 'IPv4: all pairs');
    t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod6))).flat().every(Boolean), 'IPv6: all pairs');
    await sha256Transfer(t, nodes[0]!.pod6, nodes[2]!.pod6, 100);
    await sha256Transfer(t, nodes[2]!.pod, nodes[1]!.pod, 20, 5203);
    if (userspace) {
      const [a, b, c] = nodes as [Node6, Node6, Node6];
      const sent6 = await scrapeMetric(a.node.ns, METRICS_PORT, 'flanneld_peer_bytes_total', `peer="${c.subnet6.replace(/::1\//, '::/')}",direction="tx"`);
      t.ok(sent6 > 100e6, `/metrics: ${sent6} bytes sent to ${c.node.name}'s IPv6 subnet by the IPv6 engine`);
      const received4 = await scrapeMetric(b.node.ns, METRICS_PORT, 'flanneld_peer_bytes_total', `peer="${c.subnet.replace(/\.1\//, '.0/')}",direction="rx"`);
      t.ok(received4 > 20e6, `/metrics: ${received4} bytes received from ${c.node.name}'s IPv4 subnet by the IPv4 engine, beside it`);
    }
    await checkPodMtu(t, nodes[0]!.pod, nodes[1]!, 1430, /mtu[=:] ?1430/i);
  });

  await t.test('ip6tables rules for the IPv6 network, beside the IPv4 ones', async (t) => {
    for (const n of nodes) await checkIp6tables(t, n.node);
  });

  await t.test('a restarted node keeps both subnets and both VTEP MACs; traffic resumes on both families', async (t) => {
    const b = nodes[1]!;
    const macs = async (): Promise<string[]> => Promise.all(['flannel.1', 'flannel-v6.1'].map(async (d) => JSON.parse(await ipIn(b.node.ns, ['-j', 'link', 'show', d]))[0].address as string));
    const before = await macs();
    t.equal(await cluster.stopDaemon(b.node), 0, 'clean stop');
    const since = Date.now();
    cluster.startDaemon(b.node, ['--ip-masq']);
    const env = await until('a fresh subnet.env', async () => {
      const e = readEnvFile(cluster.subnetFileOf(b.node));
      return statSync(cluster.subnetFileOf(b.node)).mtimeMs >= since && e.FLANNEL_IPV6_SUBNET ? e : undefined;
    }, 30_000);
    t.equal(env.FLANNEL_SUBNET, b.subnet, 'the IPv4 subnet is kept');
    t.equal(env.FLANNEL_IPV6_SUBNET, b.subnet6, 'the IPv6 subnet is kept');
    t.same(await macs(), before, 'flannel.1 and flannel-v6.1 keep their MACs');
    t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod6))).flat().every(Boolean), 'IPv6: all pairs again');
    t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod))).flat().every(Boolean), 'IPv4: all pairs again');
  });

  await t.test('a deleted flannel-v6.1 is re-created with its peers; a deleted lease is unprogrammed', async (t) => {
    const [a, b, c] = nodes as [Node6, Node6, Node6];
    const mac = JSON.parse(await ipIn(a.node.ns, ['-j', 'link', 'show', 'flannel-v6.1']))[0].address as string;
    await ipIn(a.node.ns, ['link', 'del', 'flannel-v6.1']);
    await until('flannel-v6.1 and its routes to come back', async () => (await ipIn(a.node.ns, ['-6', 'route', 'show', 'dev', 'flannel-v6.1']).catch(() => '')).includes(b.subnet6.replace(/::1\//, '::/')), 20_000);
    const again = JSON.parse(await ipIn(a.node.ns, ['-j', 'link', 'show', 'flannel-v6.1']))[0].address as string;
    t.equal(again, mac, 'the re-created device has the same (stable) MAC, so peers stay valid');
    t.ok((await allPairsPing(cluster, [a.pod6, b.pod6])).flat().every(Boolean), 'IPv6 traffic flows again');

    await cluster.etcd.ctlChecked(['del', leaseKey(c.subnet, c.subnet6)]);
    const gw = c.subnet6.replace(/::1\/64/, '::');
    await until('the IPv6 neighbour of the deleted lease to go', async () => !(await ipIn(a.node.ns, ['-6', 'neigh', 'show', 'dev', 'flannel-v6.1'])).includes(gw), 15_000);
    t.equal((await ipIn(a.node.ns, ['-6', 'route', 'show', c.subnet6.replace(/::1\//, '::/')])).trim(), '', 'its IPv6 route is gone');
    // The neighbours go in one batch, the FDB entries in the next: wait for those too.
    if (!userspace) {
      await until('its FDB entry to go', async () => !(await execIn(a.node.ns, 'bridge', ['fdb', 'show', 'dev', 'flannel-v6.1'])).stdout.includes(`dst ${c.node.underlayIp6} `), 5_000);
      t.pass('its FDB entry is gone');
    }
  });
});

t.test('dual-stack vxlan with DirectRouting: peers on the same link get direct routes in both families', async (t) => {
  const cluster = await LocalCluster.create({ tag: runTag('d6d'), nodes: 2, ipv6: true });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig(dualConfig({ Type: 'vxlan', Datapath: 'kernel', DirectRouting: true }));
  const nodes = await startDualStack(cluster, []);
  const [a, b] = nodes as [Node6, Node6];
  t.match(await ipIn(a.node.ns, ['-6', 'route', 'show', b.subnet6.replace(/::1\//, '::/')]), `via ${b.node.underlayIp6} dev eth0`, 'IPv6: a direct route via the peer\'s PublicIPv6');
  t.match(await ipIn(a.node.ns, ['-4', 'route', 'show', b.subnet.replace(/\.1\//, '.0/')]), `via ${b.node.underlayIp} dev eth0`, 'IPv4: a direct route via the peer\'s PublicIP');
  t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod6))).flat().every(Boolean), 'IPv6 pods talk');
  t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod))).flat().every(Boolean), 'IPv4 pods talk');
});
