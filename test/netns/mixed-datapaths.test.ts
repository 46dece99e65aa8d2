// Issue #17: the real flannel (flannel-io/flannel v0.28.10, deploy/local/real-flannel.ts) and our flanneld on one
// etcd, carrying each other's pod traffic, per backend: host-gw, vxlan (flannel's kernel VTEP beside our userspace
// VTEP and our kernel data path) and udp (flannel's C proxy on flannel0 beside our engine). Each side's lease is
// read back from etcd and checked to be what the other side programs (routes, neighbours, FDB entries) and what
// flannel logs taking in; then traffic: all-pairs ping, nodes to pods, full-size DF pings, 100 MB with sha256 compared
// both ways, pod UDP datagram by datagram, and on the wire complete inner checksums from ours to flannel (its lease
// lacks our AcceptsPartialChecksums). No error in either side's log. Skipped with one line where flannel cannot be built.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { type DaemonHandle, LocalCluster, ping, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, ipIn, runTag, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { realFlannelOrSkipTest } from '../helpers/mixed-cluster.js';
import { allPairsPing, sha256Transfer } from '../helpers/pod-traffic.js';
import { until } from '../helpers/wait.js';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;
const NETWORK = '10.244.0.0/16';
const MB = 100;

interface Member { node: NodeHost; daemon: DaemonHandle; pod: PodHost; net: string; label: string }
type Lease = { PublicIP: string; PublicIPv6: null; BackendType?: string; BackendData?: Record<string, unknown> };

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const net0 = (subnet: string): string => subnet.replace(/\.\d+\/\d+$/, '.0');

async function lease(cluster: LocalCluster, net: string): Promise<Lease> {
  const value = await cluster.etcd.get(`${cluster.prefix}/subnets/${net}-24`);
  if (!value) throw new Error(`no lease for ${net}/24`);
  return JSON.parse(value) as Lease;
}

/** Starts each node's daemon (flannel or ours, with its flags), then waits for its subnet and gives it a pod. */
async function start(cluster: LocalCluster, bin: string, specs: ReadonlyArray<{ kind: 'flannel' | 'ours'; args?: string[]; label: string }>): Promise<Member[]> {
  const daemons = specs.map((s, i) => {
    const node = cluster.nodes[i]!;
    return s.kind === 'flannel' ? cluster.startFlannel(node, bin, s.args ?? []) : cluster.startDaemon(node, s.args ?? []);
  });
  const members: Member[] = [];
  for (const [i, daemon] of daemons.entries()) {
    const subnet = await cluster.waitForSubnet(daemon.node);
    members.push({ node: daemon.node, daemon, pod: await cluster.addPod(daemon.node, subnet), net: net0(subnet), label: specs[i]!.label });
  }
  return members;
}

/** A cluster torn down at the test's end, pass or fail; on failure each daemon's log tail goes to stderr. */
async function mixedCluster(t: Test, tag: string, nodes: number, backend: Record<string, unknown>): Promise<LocalCluster> {
  const cluster = await LocalCluster.create({ tag: runTag(tag), nodes });
  t.teardown(async () => {
    if (!t.passing()) {
      for (const d of cluster.daemons.values()) console.error(`--- ${d.kind} on ${d.node.name}:\n${d.proc.output().split('\n').slice(-40).join('\n')}`);
    }
    await cluster.destroy();
  });
  await cluster.putConfig({ Network: NETWORK, Backend: backend });
  return cluster;
}

/** flannel logs through klog: an error line starts with E and the date (E1204 06:51:00.123456 ...). */
const flannelErrors = (m: Member): string[] => m.daemon.proc.output().split('\n').filter((l) => /^E\d{4} /.test(l));
/** Our daemon logs JSON lines; warnings and errors carry "level":"warn"/"error". */
const ourComplaints = (m: Member): string[] => m.daemon.proc.output().split('\n').filter((l) => /"level":"(warn|error|fatal)"/.test(l));

function noComplaints(t: Test, members: readonly Member[]): void {
  for (const m of members) {
    const log = m.daemon.proc.output();
    t.match(log, m.daemon.kind === 'flannel' ? /^I\d{4} .*flannel is ready/m : /"level":"info".*"msg":"running"/, `${m.label}: its log is read (the running line is there)`);
    const bad = m.daemon.kind === 'flannel' ? flannelErrors(m) : ourComplaints(m);
    t.same(bad, [], `${m.label}: no error or warning about a peer in its log`);
    t.equal(m.daemon.proc.child.exitCode, null, `${m.label}: still running`);
  }
}

/** Every flannel node logged taking in every peer lease written by ours (what it logs per backend in `line`). */
function flannelConsumed(t: Test, members: readonly Member[], line: (peer: Member) => string): void {
  for (const m of members.filter((x) => x.daemon.kind === 'flannel')) {
    for (const p of members.filter((x) => x.daemon.kind !== 'flannel')) {
      t.ok(m.daemon.proc.output().includes(line(p)), `${m.label} logged ${JSON.stringify(line(p))}`);
    }
  }
}

/** Each node's own namespace (host traffic, sourced from its flannel device or eth0) reaches every other node's pod. */
async function nodesReachPods(t: Test, members: readonly Member[]): Promise<void> {
  const misses: string[] = [];
  for (const m of members) {
    for (const p of members.filter((x) => x !== m)) if (!await ping(m.node.ns, p.pod.ip, 1)) misses.push(`${m.label} → pod on ${p.label}`);
  }
  t.same(misses, [], 'every node reaches every other node\'s pod');
}

/** A full-size packet (the overlay MTU from subnet.env) with DF crosses one way; the path needs no fragmentation. */
async function fullSizePing(t: Test, cluster: LocalCluster, from: Member, to: Member): Promise<void> {
  const mtu = Number(readEnvFile(cluster.subnetFileOf(from.node)).FLANNEL_MTU);
  const r = await execIn(from.pod.ns, 'ping', ['-n', '-q', '-c', '2', '-W', '2', '-i', '0.2', '-M', 'do', '-s', String(mtu - 28), to.pod.ip]);
  t.equal(r.code, 0, `${mtu}-byte DF ping ${from.label} → ${to.label}${r.code === 0 ? '' : `: ${r.stdout}${r.stderr}`}`);
}

interface InnerChecksums { packets: number; datagrams: number; ip_bad: number; l4: number; valid: number; partial: number; bad: number }

/** Captures up to 300 tunnel packets `from` sends to `to` on `to`'s underlay while `during` runs, and classifies every
 * inner TCP/UDP checksum in them (fixtures/inner-checksums.py), whatever the receiving kernel makes of them. (Checked
 * by hand: with AcceptsPartialChecksums forced into a stopped flannel's vxlan lease, our TSO segments to it go partial
 * and the 100 MB transfer times out; this check names the cause.) */
async function innerChecksums(t: Test, from: Member, to: Member, mode: 'udp' | 'vxlan', during: () => Promise<void>): Promise<InnerChecksums> {
  const port = mode === 'udp' ? 8285 : 8472;
  const file = `/tmp/${runTag('mc')}.pcap`;
  t.teardown(() => rm(file, { force: true }));
  const dump = spawnIn(to.node.ns, 'tcpdump', ['-n', '-i', 'eth0', '-s', '0', '-c', '300', '-w', file, 'udp', 'dst', 'port', String(port), 'and', 'src', 'host', from.node.underlayIp]);
  t.teardown(() => stopProcess(dump, 'SIGKILL'));
  await until('tcpdump listening', async () => dump.output().includes('listening on'), 5000);
  await during();
  await until('capture', async () => dump.child.exitCode !== null, 3000).catch(() => stopProcess(dump, 'SIGINT'));
  return JSON.parse(await execCheckedIn(to.node.ns, 'python3', [join(FIXTURES, 'inner-checksums.py'), file, mode, String(port)])) as InnerChecksums;
}

/** Our node's traffic to a flannel node (whose lease has no AcceptsPartialChecksums) carries complete inner checksums
 * only: captured during 100 MB of TCP ours → flannel, and during pod UDP both ways (GSO trains, fragments). */
async function completeChecksumsToFlannel(t: Test, fl: Member, ours: Member, mode: 'udp' | 'vxlan'): Promise<void> {
  const tcp = await innerChecksums(t, ours, fl, mode, () => sha256Transfer(t, ours.pod, fl.pod, MB));
  t.ok(tcp.l4 >= 200 && tcp.valid === tcp.l4 && tcp.ip_bad === 0, `TCP ${ours.label} → ${fl.label}: every inner checksum complete and valid on the wire: ${JSON.stringify(tcp)}`);
  const udp = await innerChecksums(t, ours, fl, mode, () => udpBothWays(t, fl, ours));
  t.ok(udp.l4 >= 200 && udp.valid === udp.l4 && udp.ip_bad === 0, `UDP ${ours.label} → ${fl.label}: every inner checksum complete and valid on the wire: ${JSON.stringify(udp)}`);
}

/** Pod UDP both ways, checked datagram by datagram (test/netns/fixtures/udp-gso.py): a UDP GSO train of 1400-byte
 * datagrams and 3000-byte ones the sending node fragments. Lost, merged, cut or damaged datagrams are counted. */
async function udpBothWays(t: Test, a: Member, b: Member): Promise<void> {
  for (const [from, to] of [[a, b], [b, a]] as const) {
    for (const [count, size, batch] of [[400, 1400, 16], [100, 3000, 1]] as const) {
      const recv = spawnIn(to.pod.ns, 'python3', [join(FIXTURES, 'udp-gso.py'), 'recv', to.pod.ip, '6000', '1']);
      t.teardown(() => stopProcess(recv, 'SIGKILL'));
      await until('udp receiver', async () => recv.output().includes('listening'), 5000);
      await execCheckedIn(from.pod.ns, 'python3', [join(FIXTURES, 'udp-gso.py'), 'send', to.pod.ip, '6000', String(count), String(size), String(batch)]);
      await recv.exited;
      t.same(JSON.parse(recv.output().trim().split('\n').at(-1)!), { received: count, wrong_size: 0, corrupt: 0, out_of_order: 0, duplicates: 0 },
        `UDP ${from.label} → ${to.label}: ${count} datagrams of ${size} bytes${batch > 1 ? ` in GSO trains of ${batch}` : ' (fragmented)'}, all intact`);
    }
  }
}

async function bothWays(t: Test, a: Member, b: Member): Promise<void> {
  await sha256Transfer(t, a.pod, b.pod, MB);
  await sha256Transfer(t, b.pod, a.pod, MB);
}

/** Polls `state` until `done` holds (programming follows the watch, so it may lag the subnet file); returns the last state. */
async function settled<S>(state: () => Promise<S>, done: (s: S) => boolean, timeoutMs = 10_000): Promise<S> {
  let s = await state();
  for (const deadline = Date.now() + timeoutMs; !done(s) && Date.now() < deadline; s = await state()) await new Promise((r) => setTimeout(r, 200));
  return s;
}

t.test('host-gw: 2 flannel + 2 flannel-ts nodes', async (t) => {
  const bin = await realFlannelOrSkipTest(t);
  if (!bin) return;
  const cluster = await mixedCluster(t, 'mh', 4, { Type: 'host-gw' });
  const members = await start(cluster, bin, [
    { kind: 'flannel', label: 'flannel node1' }, { kind: 'ours', label: 'flannel-ts node2' },
    { kind: 'flannel', label: 'flannel node3' }, { kind: 'ours', label: 'flannel-ts node4' },
  ]);

  await t.test('leases: both write flannel\'s host-gw lease', async (t) => {
    for (const m of members) {
      t.same(await lease(cluster, m.net), { PublicIP: m.node.underlayIp, PublicIPv6: null, BackendType: 'host-gw' }, `${m.label}: ${m.net}/24`);
    }
  });

  await t.test('each node routes every peer subnet via the peer\'s PublicIP on eth0', async (t) => {
    for (const m of members) {
      const peers = members.filter((p) => p !== m);
      const routes = await settled(() => ipIn(m.node.ns, ['route', 'show']), (r) => peers.every((p) => r.includes(`${p.net}/24 via`)));
      for (const p of peers) t.match(routes, new RegExp(`^${esc(p.net)}/24 via ${esc(p.node.underlayIp)} dev eth0`, 'm'), `${m.label} → ${p.label}`);
    }
    flannelConsumed(t, members, (p) => `Subnet added: ${p.net}/24 via ${p.node.underlayIp}`);
  });

  await t.test('all pairs ping (pods, and nodes to pods); 100 MB each way between flannel and ours', async (t) => {
    t.ok((await allPairsPing(cluster, members.map((m) => m.pod))).flat().every(Boolean), 'all pairs of the 4 pods');
    await nodesReachPods(t, members);
    await bothWays(t, members[0]!, members[1]!);
    noComplaints(t, members);
  });
});

t.test('vxlan: flannel\'s kernel VTEP, our userspace VTEP and our kernel data path', async (t) => {
  const bin = await realFlannelOrSkipTest(t);
  if (!bin) return;
  const cluster = await mixedCluster(t, 'mv', 3, { Type: 'vxlan' });
  const members = await start(cluster, bin, [
    { kind: 'flannel', label: 'flannel node1' },
    { kind: 'ours', label: 'flannel-ts userspace node2' },
    { kind: 'ours', label: 'flannel-ts kernel node3', args: ['--vxlan-datapath=kernel'] },
  ]);
  const [fl, us, kn] = members as [Member, Member, Member];
  const leases = new Map<Member, Lease>();
  for (const m of members) leases.set(m, await lease(cluster, m.net));
  const vtepMac = (m: Member): string => String(leases.get(m)!.BackendData?.VtepMAC);

  await t.test('leases as each side writes them, the VtepMAC the device\'s', async (t) => {
    for (const m of members) {
      const link = JSON.parse(await ipIn(m.node.ns, ['-j', 'link', 'show', 'flannel.1'])) as Array<{ address: string }>;
      t.equal(vtepMac(m), link[0]!.address, `${m.label}: lease VtepMAC = flannel.1's MAC`);
    }
    t.same(leases.get(fl), { PublicIP: fl.node.underlayIp, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: vtepMac(fl) } }, 'flannel: VNI and VtepMAC only');
    t.same(leases.get(us), { PublicIP: us.node.underlayIp, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: vtepMac(us), AcceptsPartialChecksums: true } }, 'ours, userspace: plus AcceptsPartialChecksums');
    t.same(leases.get(kn), { PublicIP: kn.node.underlayIp, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: vtepMac(kn) } }, 'ours, kernel: flannel\'s exactly');
  });

  await t.test('each side programs the others\' leases: neighbour, FDB (kernel devices), onlink route', async (t) => {
    for (const m of members) {
      const peers = members.filter((p) => p !== m);
      const kernelDevice = m !== us;
      const s = await settled(async () => ({
        neigh: await ipIn(m.node.ns, ['neigh', 'show', 'dev', 'flannel.1']),
        fdb: kernelDevice ? await execCheckedIn(m.node.ns, 'bridge', ['fdb', 'show', 'dev', 'flannel.1']) : '',
        routes: await ipIn(m.node.ns, ['route', 'show', 'dev', 'flannel.1']),
      }), (s) => peers.every((p) => s.routes.includes(`${p.net}/24`) && s.neigh.includes(vtepMac(p)) && (!kernelDevice || s.fdb.includes(vtepMac(p)))));
      for (const p of peers) {
        t.match(s.neigh, new RegExp(`^${esc(p.net)} lladdr ${esc(vtepMac(p))} PERMANENT`, 'm'), `${m.label}: neighbour ${p.net} → ${p.label}'s VtepMAC`);
        if (kernelDevice) t.match(s.fdb, new RegExp(`^${esc(vtepMac(p))} dst ${esc(p.node.underlayIp)} self permanent`, 'm'), `${m.label}: FDB ${vtepMac(p)} dst ${p.node.underlayIp}`);
        t.match(s.routes, new RegExp(`^${esc(p.net)}/24 via ${esc(p.net)} (proto \\S+ )?onlink`, 'm'), `${m.label}: ${p.net}/24 via ${p.net} dev flannel.1 onlink`);
      }
    }
    // flannel parsed our BackendData, AcceptsPartialChecksums included, as a vxlan lease (it logs "Ignoring ..." otherwise).
    flannelConsumed(t, members, (p) => `Received Subnet Event with VxLan: BackendType: vxlan, PublicIP: ${p.node.underlayIp}, PublicIPv6: (nil), BackendData: ${JSON.stringify(leases.get(p)!.BackendData)}`);
    t.notMatch(fl.daemon.proc.output(), /Ignoring/i, 'flannel ignored no lease');
  });

  await t.test('all pairs ping (pods, nodes to pods, full-size DF); 100 MB each way between flannel and each of ours; UDP with the userspace VTEP; complete inner checksums to flannel', async (t) => {
    t.ok((await allPairsPing(cluster, members.map((m) => m.pod))).flat().every(Boolean), 'all pairs of the 3 pods');
    await nodesReachPods(t, members);
    for (const [a, b] of [[fl, us], [us, fl], [fl, kn], [kn, fl]] as const) await fullSizePing(t, cluster, a, b);
    await sha256Transfer(t, fl.pod, us.pod, MB);
    await completeChecksumsToFlannel(t, fl, us, 'vxlan');
    await bothWays(t, fl, kn);
    noComplaints(t, members);
  });
});

t.test('udp: flannel\'s C proxy on flannel0 beside our engine', async (t) => {
  const bin = await realFlannelOrSkipTest(t);
  if (!bin) return;
  const cluster = await mixedCluster(t, 'mu', 2, { Type: 'udp' });
  const members = await start(cluster, bin, [{ kind: 'flannel', label: 'flannel node1' }, { kind: 'ours', label: 'flannel-ts node2' }]);
  const [fl, ours] = members as [Member, Member];

  await t.test('leases: flannel\'s has no BackendType; ours adds only AcceptsPartialChecksums; flannel0 alike', async (t) => {
    t.same(await lease(cluster, fl.net), { PublicIP: fl.node.underlayIp, PublicIPv6: null }, 'flannel');
    t.same(await lease(cluster, ours.net), { PublicIP: ours.node.underlayIp, PublicIPv6: null, BackendData: { AcceptsPartialChecksums: true } }, 'ours');
    for (const m of members) {
      t.match(await ipIn(m.node.ns, ['route', 'show', NETWORK]), new RegExp(`^${esc(NETWORK)} dev flannel0`, 'm'), `${m.label}: the Network via flannel0`);
      t.match(await ipIn(m.node.ns, ['link', 'show', 'flannel0']), /mtu 1472/, `${m.label}: flannel0 MTU 1472`);
    }
    await until('flannel takes in our lease', async () => fl.daemon.proc.output().includes(`Subnet added: ${ours.net}/24`), 10_000).catch(() => false);
    flannelConsumed(t, members, (p) => `Subnet added: ${p.net}/24`);
  });

  await t.test('ping both ways (pods, nodes to pods, full-size DF); 100 MB and UDP each way; complete inner checksums to flannel', async (t) => {
    t.ok((await allPairsPing(cluster, [fl.pod, ours.pod])).flat().every(Boolean), 'both ways');
    await nodesReachPods(t, members);
    await fullSizePing(t, cluster, fl, ours);
    await fullSizePing(t, cluster, ours, fl);
    await sha256Transfer(t, fl.pod, ours.pod, MB);
    await completeChecksumsToFlannel(t, fl, ours, 'udp');
    noComplaints(t, members);
  });
});
