// The real flannel (flannel-io/flannel, deploy/local/real-flannel.ts) and flannel-ts on one etcd (issue #17):
// the config defaults both derive from the same config (backend, subnet length, SubnetMin/Max, subnet.env, lease
// JSON), each daemon programs the other's leases (kernel routes, neighbours, FDB entries; ours with
// AcceptsPartialChecksums included), a lease deleted in etcd is unprogrammed on every node, flannel's and ours,
// and a restarted node of either kind keeps its subnet beside the other.
import t, { type Test } from 'tap';
import { rmSync } from 'node:fs';
import { LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execIn, ipIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { freshSubnet, realFlannelOrSkipTest } from '../helpers/mixed-cluster.js';
import { allPairsPing } from '../helpers/pod-traffic.js';
import { until } from '../helpers/wait.js';

const SUBNETS = '/coreos.com/network/subnets';

// ---------------------------------------------------------------------------------------------
// Helpers

const ipNum = (ip: string): number => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
const ipStr = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
/** 10.244.7.1/24 → { net: "10.244.7.0", len: 24 }. */
const netOf = (flannelSubnet: string): { net: string; len: number } => {
  const [ip, len] = flannelSubnet.split('/') as [string, string];
  return { net: ipStr(ipNum(ip) - 1), len: Number(len) };
};
const keyOf = (flannelSubnet: string): string => { const { net, len } = netOf(flannelSubnet); return `${SUBNETS}/${net}-${len}`; };
const esc = (s: string): string => s.replace(/\./g, '\\.');


/** Every lease: key → raw value. */
async function leases(c: LocalCluster): Promise<Map<string, string>> {
  const lines = (await c.etcd.ctlChecked(['get', '--prefix', SUBNETS])).split('\n').filter(Boolean);
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) out.set(lines[i] as string, lines[i + 1] as string);
  return out;
}

async function start(c: LocalCluster, bin: string, node: NodeHost, kind: 'flannel' | 'flannel-ts', extra: readonly string[] = []): Promise<string> {
  const since = Date.now();
  const args = [`--public-ip=${node.underlayIp}`, ...extra];
  if (kind === 'flannel') c.startFlannel(node, bin, args);
  else c.startDaemon(node, args);
  return freshSubnet(c, node, since);
}

/** What a node needs to reach a vxlan peer. */
interface VxlanPeer { readonly name: string; readonly gw: string; readonly subnet: string; readonly mac: string; readonly publicIp: string }

async function vxlanPeerOf(c: LocalCluster, node: NodeHost, flannelSubnet: string): Promise<VxlanPeer> {
  const value = await c.etcd.get(keyOf(flannelSubnet));
  const { net, len } = netOf(flannelSubnet);
  const data = (JSON.parse(value ?? '{}') as { BackendData?: { VtepMAC?: string } }).BackendData;
  return { name: node.name, gw: net, subnet: `${net}/${len}`, mac: data?.VtepMAC ?? '?', publicIp: node.underlayIp };
}

/** The vxlan state a node has for a peer: neighbour, FDB entry (kernel VXLAN devices only), onlink route. */
async function vxlanState(node: NodeHost, peer: VxlanPeer, withFdb: boolean): Promise<{ neigh: boolean; fdb: boolean; route: boolean; any: boolean }> {
  const neighOut = await ipIn(node.ns, ['neigh', 'show', 'dev', 'flannel.1']);
  const fdbOut = withFdb ? (await execIn(node.ns, 'bridge', ['fdb', 'show', 'dev', 'flannel.1'])).stdout : '';
  const routeOut = await ipIn(node.ns, ['route', 'show', 'dev', 'flannel.1']);
  const neigh = new RegExp(`^${esc(peer.gw)} lladdr ${peer.mac} PERMANENT`, 'm').test(neighOut);
  const fdb = !withFdb || new RegExp(`^${peer.mac} dst ${esc(peer.publicIp)} self permanent`, 'm').test(fdbOut);
  const route = new RegExp(`^${esc(peer.subnet)} via ${esc(peer.gw)} .*onlink`, 'm').test(routeOut);
  const any = new RegExp(`^${esc(peer.gw)} `, 'm').test(neighOut) || (withFdb && fdbOut.includes(peer.mac))
    || new RegExp(`^${esc(peer.subnet)} `, 'm').test(routeOut);
  return { neigh, fdb, route, any };
}

const hostGwRoute = async (node: NodeHost, subnet: string, via: string): Promise<boolean> =>
  new RegExp(`^${esc(subnet)} via ${esc(via)} dev eth0`, 'm').test(await ipIn(node.ns, ['route', 'show']));

// ---------------------------------------------------------------------------------------------

async function configDefaults(tt: Test, bin: string): Promise<void> {
  const c = await LocalCluster.create({ tag: runTag('ml'), nodes: 2 });
  tt.teardown(() => c.destroy());
  const [fl, ts] = c.nodes as [NodeHost, NodeHost];
  // Only the Network (and in two cases SubnetLen or SubnetMin/Max), no Backend: flannel's code defaults to udp.
  // Lower-case keys where flannel's Go JSON matches them case-insensitively.
  const configs: Array<{ config: Record<string, unknown>; network: string; len: number; min: string; max: string }> = [
    { config: { Network: '10.244.0.0/16' }, network: '10.244.0.0/16', len: 24, min: '10.244.1.0', max: '10.244.255.0' },
    { config: { network: '10.20.0.0/24' }, network: '10.20.0.0/24', len: 26, min: '10.20.0.64', max: '10.20.0.192' },
    { config: { Network: '10.30.0.0/16', SubnetLen: 20 }, network: '10.30.0.0/16', len: 20, min: '10.30.16.0', max: '10.30.240.0' },
    { config: { network: '10.40.0.0/20', subnetmin: '10.40.5.0', subnetmax: '10.40.6.0' }, network: '10.40.0.0/20', len: 24, min: '10.40.5.0', max: '10.40.6.0' },
  ];
  for (const k of configs) {
    const what = JSON.stringify(k.config);
    for (const n of c.nodes) { await c.stopDaemon(n); rmSync(c.subnetFileOf(n), { force: true }); }
    await c.etcd.ctlChecked(['del', '--prefix', SUBNETS]);
    await c.putConfig(k.config);
    const sFl = await start(c, bin, fl, 'flannel');
    const sTs = await start(c, bin, ts, 'flannel-ts');
    const envFl = readEnvFile(c.subnetFileOf(fl));
    const envTs = readEnvFile(c.subnetFileOf(ts));
    tt.same(Object.keys(envTs), Object.keys(envFl), `${what}: subnet.env has the same variables in the same order (${Object.keys(envFl).join(', ')})`);
    tt.equal(envFl.FLANNEL_NETWORK, k.network, `${what}: flannel's FLANNEL_NETWORK ${envFl.FLANNEL_NETWORK}`);
    tt.equal(envTs.FLANNEL_NETWORK, envFl.FLANNEL_NETWORK, `${what}: ours writes the same FLANNEL_NETWORK`);
    tt.equal(envFl.FLANNEL_MTU, '1472', `${what}: flannel's FLANNEL_MTU is udp's (1500 - 28)`);
    tt.equal(envTs.FLANNEL_MTU, envFl.FLANNEL_MTU, `${what}: ours writes the same FLANNEL_MTU`);
    tt.equal(envTs.FLANNEL_IPMASQ, envFl.FLANNEL_IPMASQ, `${what}: the same FLANNEL_IPMASQ (${envFl.FLANNEL_IPMASQ})`);
    const nFl = netOf(sFl);
    const nTs = netOf(sTs);
    tt.equal(nFl.len, k.len, `${what}: flannel leases a /${nFl.len}`);
    tt.equal(nTs.len, nFl.len, `${what}: ours leases the same length (/${nTs.len})`);
    for (const [who, s] of [['flannel', nFl], ['flannel-ts', nTs]] as const) {
      const n = ipNum(s.net);
      tt.ok(n >= ipNum(k.min) && n <= ipNum(k.max) && n % 2 ** (32 - k.len) === 0,
        `${what}: ${who}'s ${s.net}/${s.len} is aligned and within SubnetMin ${k.min} .. SubnetMax ${k.max}`);
    }
    tt.not(nTs.net, nFl.net, `${what}: the two nodes hold different subnets`);
    const hostPart = (fs: string): number => ipNum(fs.split('/')[0] as string) % 2 ** (32 - Number(fs.split('/')[1]));
    tt.ok(hostPart(sFl) === 1 && hostPart(sTs) === 1, `${what}: FLANNEL_SUBNET is the subnet's first address on both (flannel: ${sFl}, ours: ${sTs})`);
    const all = await leases(c);
    tt.same([...all.keys()].sort(), [keyOf(sFl), keyOf(sTs)].sort(), `${what}: exactly the two lease keys, in flannel's key format`);
    // Both picked udp: flannel's udp lease has no BackendType; ours adds the userspace engine's BackendData.
    tt.equal(all.get(keyOf(sFl)), `{"PublicIP":"${fl.underlayIp}","PublicIPv6":null}`, `${what}: flannel's lease value (udp: no BackendType)`);
    tt.equal(all.get(keyOf(sTs)), `{"PublicIP":"${ts.underlayIp}","PublicIPv6":null,"BackendData":{"AcceptsPartialChecksums":true}}`,
      `${what}: ours is flannel's plus BackendData {"AcceptsPartialChecksums":true} (a documented difference)`);
    for (const n of c.nodes) tt.match(await ipIn(n.ns, ['-d', 'link', 'show', 'flannel0']), /tun type tun/, `${what}: ${n.name} runs udp (TUN flannel0)`);
    // udp programs nothing per peer in the kernel; that each consumes the other's lease shows in the traffic:
    // a ping between the flannel0 addresses crosses both udp data paths.
    const ok = await until(`${what}: flannel0 ${nFl.net} → ${nTs.net}`,
      async () => (await execIn(fl.ns, 'ping', ['-n', '-q', '-c', '1', '-W', '1', nTs.net])).code === 0, 10_000).catch(() => false);
    tt.ok(ok, `${what}: flannel's node reaches ours through udp (flannel0 ${nFl.net} → ${nTs.net} and back)`);
  }
}

async function hostGw(tt: Test, bin: string): Promise<void> {
  const c = await LocalCluster.create({ tag: runTag('mh'), nodes: 2 });
  tt.teardown(() => c.destroy());
  await c.putConfig({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
  const [fl, ts] = c.nodes as [NodeHost, NodeHost];
  const sFl = await start(c, bin, fl, 'flannel');
  const sTs = await start(c, bin, ts, 'flannel-ts');
  const subFl = `${netOf(sFl).net}/${netOf(sFl).len}`;
  const subTs = `${netOf(sTs).net}/${netOf(sTs).len}`;
  tt.equal(await c.etcd.get(keyOf(sTs)), `{"PublicIP":"${ts.underlayIp}","PublicIPv6":null,"BackendType":"host-gw"}`, 'our host-gw lease is byte for byte flannel\'s');
  tt.equal(await c.etcd.get(keyOf(sFl)), `{"PublicIP":"${fl.underlayIp}","PublicIPv6":null,"BackendType":"host-gw"}`, 'flannel\'s host-gw lease');
  tt.ok(await until('flannel routes our subnet', () => hostGwRoute(fl, subTs, ts.underlayIp), 15_000).catch(() => false), `flannel programs ${subTs} via ${ts.underlayIp}`);
  tt.ok(await until('ours routes flannel\'s subnet', () => hostGwRoute(ts, subFl, fl.underlayIp), 15_000).catch(() => false), `ours programs ${subFl} via ${fl.underlayIp}`);

  // Deleted in etcd: the other side removes the route; the owner of the deleted lease exits, and comes back on
  // its previous subnet (from subnet.env) when started again. Ours first, then flannel's.
  await c.etcd.ctlChecked(['del', keyOf(sTs)]);
  tt.ok(await until('flannel drops our route', async () => !(await hostGwRoute(fl, subTs, ts.underlayIp)), 15_000).catch(() => false), 'our lease deleted: flannel removes its route');
  tt.equal(await c.daemons.get(ts.name)!.proc.exited, 1, 'ours exits 1 when its lease is deleted');
  tt.equal(await start(c, bin, ts, 'flannel-ts'), sTs, 'ours comes back on its previous subnet');
  tt.ok(await until('flannel routes our subnet again', () => hostGwRoute(fl, subTs, ts.underlayIp), 15_000).catch(() => false), 'flannel routes our subnet again');

  await c.etcd.ctlChecked(['del', keyOf(sFl)]);
  tt.ok(await until('ours drops flannel\'s route', async () => !(await hostGwRoute(ts, subFl, fl.underlayIp)), 15_000).catch(() => false), 'flannel\'s lease deleted: ours removes its route');
  const flExit = await c.daemons.get(fl.name)!.proc.exited;
  tt.comment(`flannel exits ${flExit} when its own lease is deleted (ours: 1)`);
  tt.not(flExit, null, 'flannel exits when its lease is deleted');
  tt.equal(await start(c, bin, fl, 'flannel'), sFl, 'flannel comes back on its previous subnet');
  tt.ok(await until('ours routes flannel\'s subnet again', () => hostGwRoute(ts, subFl, fl.underlayIp), 15_000).catch(() => false), 'ours routes flannel\'s subnet again');
  tt.ok(await hostGwRoute(fl, subTs, ts.underlayIp), 'flannel still routes our subnet');
}

async function vxlan(tt: Test, bin: string): Promise<void> {
  // node1, node4: flannel (kernel VXLAN); node2: ours, userspace VTEP (AcceptsPartialChecksums); node3: ours, kernel.
  const c = await LocalCluster.create({ tag: runTag('mv'), nodes: 4 });
  tt.teardown(() => c.destroy());
  await c.putConfig({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } });
  const [n1, n2, n3, n4] = c.nodes as [NodeHost, NodeHost, NodeHost, NodeHost];
  const kinds = new Map<NodeHost, { kind: 'flannel' | 'flannel-ts'; extra: string[]; fdb: boolean; label: string }>([
    [n1, { kind: 'flannel', extra: [], fdb: true, label: 'node1 (flannel)' }],
    [n2, { kind: 'flannel-ts', extra: ['--vxlan-datapath=userspace'], fdb: false, label: 'node2 (ours, userspace)' }],
    [n3, { kind: 'flannel-ts', extra: ['--vxlan-datapath=kernel'], fdb: true, label: 'node3 (ours, kernel)' }],
    [n4, { kind: 'flannel', extra: [], fdb: true, label: 'node4 (flannel)' }],
  ]);
  const info = (n: NodeHost) => kinds.get(n)!;
  const subnets = new Map<NodeHost, string>();
  for (const n of c.nodes) subnets.set(n, await start(c, bin, n, info(n).kind, info(n).extra));
  const peers = new Map<NodeHost, VxlanPeer>();
  for (const n of c.nodes) peers.set(n, await vxlanPeerOf(c, n, subnets.get(n)!));
  tt.match(await c.etcd.get(keyOf(subnets.get(n2)!)), /"BackendData":\{"VNI":1,"VtepMAC":"[0-9a-f:]{17}","AcceptsPartialChecksums":true\}/, 'node2\'s lease carries AcceptsPartialChecksums');
  tt.equal(await c.etcd.get(keyOf(subnets.get(n1)!)), `{"PublicIP":"${n1.underlayIp}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${peers.get(n1)!.mac}"}}`, 'flannel\'s vxlan lease');

  const programmedEverywhere = async (label: string, holders: readonly NodeHost[], targets: readonly NodeHost[]): Promise<void> => {
    for (const h of holders) for (const p of targets) {
      if (h === p) continue;
      const st = await until(`${info(h).label} programs ${info(p).label}`, async () => {
        const s = await vxlanState(h, peers.get(p)!, info(h).fdb);
        return s.neigh && s.fdb && s.route && s;
      }, 15_000).catch(() => vxlanState(h, peers.get(p)!, info(h).fdb));
      tt.ok(st.neigh && st.fdb && st.route, `${label}: ${info(h).label} programs ${info(p).label}'s lease (neighbour ${st.neigh}, fdb ${st.fdb}, route ${st.route})`);
    }
  };
  const unprogrammedEverywhere = async (label: string, holders: readonly NodeHost[], gone: NodeHost): Promise<void> => {
    for (const h of holders) {
      const st = await until(`${info(h).label} unprograms ${info(gone).label}`, async () => {
        const s = await vxlanState(h, peers.get(gone)!, info(h).fdb);
        return !s.any && s;
      }, 15_000).catch(() => vxlanState(h, peers.get(gone)!, info(h).fdb));
      tt.notOk(st.any, `${label}: ${info(h).label} has no neighbour, FDB entry or route left for ${info(gone).label}`);
    }
  };

  await programmedEverywhere('start', c.nodes, c.nodes);
  const pods: PodHost[] = [];
  for (const n of c.nodes) pods.push(await c.addPod(n, subnets.get(n)!));
  tt.ok((await allPairsPing(c, pods, 20_000)).flat().every(Boolean), 'all 12 pod pairs ping across flannel, userspace and kernel VTEPs');

  // A flannel node's lease deleted in etcd.
  await c.etcd.ctlChecked(['del', keyOf(subnets.get(n1)!)]);
  await unprogrammedEverywhere('node1\'s (flannel) lease deleted', [n2, n3, n4], n1);
  const n1Exit = await c.daemons.get(n1.name)!.proc.exited;
  tt.comment(`flannel on node1 exited ${n1Exit} after its lease was deleted`);
  // One of ours (the userspace VTEP's lease, with AcceptsPartialChecksums) deleted in etcd.
  await c.etcd.ctlChecked(['del', keyOf(subnets.get(n2)!)]);
  await unprogrammedEverywhere('node2\'s (ours) lease deleted', [n3, n4], n2);
  tt.equal(await c.daemons.get(n2.name)!.proc.exited, 1, 'ours exits 1 when its lease is deleted');

  // Both come back, from subnet.env, on the subnet they had; everyone programs them again.
  tt.equal(await start(c, bin, n1, 'flannel'), subnets.get(n1), 'flannel on node1 comes back on its previous subnet');
  tt.equal(await start(c, bin, n2, 'flannel-ts', info(n2).extra), subnets.get(n2), 'ours on node2 comes back on its previous subnet');
  for (const n of [n1, n2]) peers.set(n, await vxlanPeerOf(c, n, subnets.get(n)!));

  // Restarts (SIGTERM, start again) keep the lease and the subnet: flannel's node4, then our node3.
  for (const n of [n4, n3]) {
    tt.equal(await c.stopDaemon(n, 'SIGTERM'), 0, `${info(n).label} exits 0 on SIGTERM`);
    tt.ok(await c.etcd.get(keyOf(subnets.get(n)!)), `${info(n).label}'s lease stays in etcd after SIGTERM`);
    tt.equal(await start(c, bin, n, info(n).kind, info(n).extra), subnets.get(n), `${info(n).label} restarted keeps its subnet ${subnets.get(n)}`);
    peers.set(n, await vxlanPeerOf(c, n, subnets.get(n)!));
  }
  tt.equal(new Set([...subnets.values()]).size, 4, 'four distinct subnets');
  await programmedEverywhere('after deletions and restarts', c.nodes, c.nodes);
  tt.ok((await allPairsPing(c, pods, 20_000)).flat().every(Boolean), 'all 12 pod pairs ping again');
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces');
} else {
  const bin = await realFlannelOrSkipTest(t);
  if (bin) {
    await t.test('config defaults: flannel and ours derive the same network, subnet length, range, subnet.env and lease (udp)', (tt) => configDefaults(tt, bin));
    await t.test('host-gw: each routes the other\'s lease; deleted leases are unrouted; both come back on their subnet', (tt) => hostGw(tt, bin));
    await t.test('vxlan: flannel, userspace and kernel VTEPs program each other; deletions unprogram everywhere; restarts keep subnets', (tt) => vxlan(tt, bin));
  }
}
