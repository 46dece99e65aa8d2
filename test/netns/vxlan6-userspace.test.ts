// The IPv6 userspace VTEP (flannel-v6.<VNI>, issue #18) with real traffic through real devices, run through
// UserspaceVtep directly (fixtures/vtep-node.ts, one process per node namespace; no etcd, no daemon).
// Four nodes on an IPv6 underlay (2001:db8:ff::/64, one bridge), a pod each (2001:db8:100:<i>::2/64):
//   n1, n2  our engine with offloads (TSO6 split + UDP GSO, GRO + TCPv6 coalescing)
//   n3      a Linux kernel VXLAN device over IPv6, programmed as flannel programs it (fdb, neigh, route)
//   n4      our engine on its per-packet path (no offloads)
// The kernel side of our nodes (neighbours, routes) is programmed here as the vxlan backend would.
// Our engines accept partial inner checksums from each other (AcceptsPartialChecksums), never send them to the
// kernel peer. Checks: pings both ways between every kind of pair, 100 MB TCP transfers with equal sha256
// (offload → offload with partial checksums and coalescing, offload → per-packet which completes them, both
// ways with the kernel peer, per-packet TX, per-packet RX of the kernel peer's super-frames), DF pings at the
// exact MTU, Packet Too Big one byte above (from the kernel, and from the engine when the device MTU was raised
// by hand), multicast/NDP frames dropped and never sent, forged and malformed datagrams dropped and counted
// exactly (a zero outer UDP checksum accepted, a zero inner one carried for the receiving kernel to judge), ensureDevice() on the IPv6 device (nothing to fix; a
// deleted device re-created), and an iperf3 comparison with the IPv4 VTEP (flannel.1) on the same nodes.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { createNetns, deleteNetns, execCheckedIn, execIn, ipIn, runTag, spawnIn, stopProcess, sysctlIn, type SpawnedProcess } from '../../deploy/local/netns.js';
import { until } from '../helpers/wait.js';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;
const TSX = import.meta.resolve('tsx');
t.setTimeout(900_000);

const MTU = 1430; // underlay 1500 − 70 (IPv6 40, UDP 8, VXLAN 8, Ethernet 14)
const MB = 1024 * 1024;
const COUNT = 20;

type Kind = 'offload' | 'kernel' | 'per-packet';
interface Node {
  readonly i: number;
  readonly kind: Kind;
  readonly ns: string;
  readonly podNs: string;
  readonly under6: string;
  readonly under4: string;
  readonly subnet6: string;
  readonly devIp6: string;
  readonly podIp6: string;
  readonly podIp4: string;
  readonly mac6: string;
  readonly mac4: string;
  engine6?: SpawnedProcess;
  engine4?: SpawnedProcess;
}

const KINDS: readonly Kind[] = ['offload', 'offload', 'kernel', 'per-packet'];

function nodeOf(tag: string, i: number): Node {
  return {
    i, kind: KINDS[i - 1] as Kind, ns: `${tag}-n${i}`, podNs: `${tag}-p${i}`,
    under6: `2001:db8:ff::${i}`, under4: `192.0.2.${i}`,
    subnet6: `2001:db8:100:${i}::/64`, devIp6: `2001:db8:100:${i}::`, podIp6: `2001:db8:100:${i}::2`, podIp4: `10.244.${i}.2`,
    mac6: `0e:00:00:00:06:0${i}`, mac4: `0e:00:00:00:04:0${i}`,
  };
}

async function startEngine(t: Test, n: Node, nodes: readonly Node[], family: 4 | 6): Promise<SpawnedProcess> {
  const peers = nodes.filter((p) => p !== n).map((p) => family === 6
    // our engines accept partial inner checksums (AcceptsPartialChecksums in their leases); the kernel peer does not
    ? { key: p.subnet6, subnet: p.subnet6, publicIp: p.under6, mac: p.mac6, partialChecksums: p.kind !== 'kernel' }
    : { key: `10.244.${p.i}.0/24`, subnet: `10.244.${p.i}.0/24`, publicIp: p.under4, mac: p.mac4, partialChecksums: true });
  const cfg = {
    family, name: family === 6 ? 'flannel-v6.1' : 'flannel.1', mac: family === 6 ? n.mac6 : n.mac4, mtu: family === 6 ? MTU : 1450, vni: 1, port: 8472,
    bind: family === 6 ? n.under6 : n.under4, subnet: family === 6 ? n.subnet6 : `10.244.${n.i}.0/24`, offload: n.kind === 'offload', peers,
  };
  const proc = spawnIn(n.ns, process.execPath, ['--import', TSX, join(FIXTURES, 'vtep-node.ts'), JSON.stringify(cfg)]);
  t.teardown(() => stopProcess(proc, 'SIGTERM'));
  await until(`the IPv${family} engine on ${n.ns}`, async () => {
    if (proc.child.exitCode !== null) throw new Error(`vtep-node exited ${proc.child.exitCode}: ${proc.output()}`);
    return proc.output().includes('ready ');
  }, 20_000);
  return proc;
}

/** The kernel side of a VTEP as the vxlan backend programs it: a permanent neighbour and an onlink route per peer. */
async function programPeers(n: Node, nodes: readonly Node[], family: 4 | 6): Promise<void> {
  const dev = family === 6 ? 'flannel-v6.1' : 'flannel.1';
  for (const p of nodes.filter((x) => x !== n)) {
    const gw = family === 6 ? p.devIp6 : `10.244.${p.i}.0`;
    const net = family === 6 ? p.subnet6 : `10.244.${p.i}.0/24`;
    await ipIn(n.ns, [`-${family}`, 'neigh', 'replace', gw, 'lladdr', family === 6 ? p.mac6 : p.mac4, 'dev', dev, 'nud', 'permanent']);
    await ipIn(n.ns, [`-${family}`, 'route', 'replace', net, 'via', gw, 'dev', dev, 'onlink']);
    if (n.kind === 'kernel') await execCheckedIn(n.ns, 'bridge', ['fdb', 'append', p.mac6, 'dev', dev, 'dst', p.under6]);
  }
}

async function setup(t: Test): Promise<{ nodes: Node[]; tag: string }> {
  const tag = runTag('v6');
  const created: string[] = [];
  t.teardown(() => deleteNetns(created));
  const br = `${tag}-br`;
  await createNetns(br, created);
  await ipIn(br, ['link', 'add', 'br0', 'type', 'bridge']);
  await ipIn(br, ['link', 'set', 'br0', 'up']);
  const nodes = [1, 2, 3, 4].map((i) => nodeOf(tag, i));
  for (const n of nodes) {
    await createNetns(n.ns, created);
    await createNetns(n.podNs, created);
    await ipIn(undefined, ['link', 'add', `${tag}n${n.i}`, 'netns', n.ns, 'type', 'veth', 'peer', 'name', `${tag}b${n.i}`, 'netns', br]);
    await ipIn(n.ns, ['link', 'set', `${tag}n${n.i}`, 'name', 'eth0']);
    await ipIn(br, ['link', 'set', `${tag}b${n.i}`, 'master', 'br0', 'up']);
    await ipIn(n.ns, ['addr', 'add', `${n.under6}/64`, 'dev', 'eth0', 'nodad']);
    await ipIn(n.ns, ['addr', 'add', `${n.under4}/24`, 'dev', 'eth0']);
    await ipIn(n.ns, ['link', 'set', 'eth0', 'up']);
    await sysctlIn(n.ns, 'net.ipv6.conf.all.forwarding', '1');
    await sysctlIn(n.ns, 'net.ipv4.ip_forward', '1');
    // the pod: a veth into the node, default routes through it
    await ipIn(undefined, ['link', 'add', `${tag}v${n.i}`, 'netns', n.ns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.podNs]);
    await ipIn(n.ns, ['link', 'set', `${tag}v${n.i}`, 'name', 'pod0']);
    await ipIn(n.ns, ['addr', 'add', `2001:db8:100:${n.i}::1/64`, 'dev', 'pod0', 'nodad']);
    await ipIn(n.ns, ['addr', 'add', `10.244.${n.i}.1/24`, 'dev', 'pod0']);
    await ipIn(n.ns, ['link', 'set', 'pod0', 'up']);
    await ipIn(n.podNs, ['addr', 'add', `${n.podIp6}/64`, 'dev', 'eth0', 'nodad']);
    await ipIn(n.podNs, ['addr', 'add', `${n.podIp4}/24`, 'dev', 'eth0']);
    await ipIn(n.podNs, ['link', 'set', 'eth0', 'up']);
    await ipIn(n.podNs, ['-6', 'route', 'add', 'default', 'via', `2001:db8:100:${n.i}::1`]);
    await ipIn(n.podNs, ['route', 'add', 'default', 'via', `10.244.${n.i}.1`]);
  }
  for (const n of nodes) {
    if (n.kind === 'kernel') {
      await ipIn(n.ns, ['link', 'add', 'flannel-v6.1', 'type', 'vxlan', 'id', '1', 'local', n.under6, 'dev', 'eth0', 'dstport', '8472', 'nolearning']);
      await ipIn(n.ns, ['link', 'set', 'flannel-v6.1', 'address', n.mac6, 'mtu', String(MTU)]);
      await ipIn(n.ns, ['addr', 'add', `${n.devIp6}/128`, 'dev', 'flannel-v6.1', 'nodad']);
      await ipIn(n.ns, ['link', 'set', 'flannel-v6.1', 'up']);
    } else {
      n.engine6 = await startEngine(t, n, nodes, 6);
      if (n.kind === 'offload') n.engine4 = await startEngine(t, n, nodes.filter((x) => x.kind === 'offload'), 4);
    }
  }
  for (const n of nodes) {
    await programPeers(n, nodes, 6);
    if (n.engine4) await programPeers(n, nodes.filter((x) => x.kind === 'offload'), 4);
  }
  return { nodes, tag };
}

/** The engine's counters (SIGUSR1 → a "stats" line). */
async function stats(proc: SpawnedProcess): Promise<Record<string, number>> {
  const before = proc.output().split('\nstats ').length;
  proc.child.kill('SIGUSR1');
  await until('engine stats', async () => proc.output().split('\nstats ').length > before, 5000, 20);
  const last = proc.output().split('\nstats ').at(-1) as string;
  return JSON.parse(last.split('\n')[0] as string) as Record<string, number>;
}

function delta(a: Record<string, number>, b: Record<string, number>, keep: (k: string) => boolean): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(b)) if (keep(k) && (b[k] ?? 0) !== (a[k] ?? 0)) out[k] = (b[k] ?? 0) - (a[k] ?? 0);
  return out;
}

const ping6 = (ns: string, to: string, args: string[] = []) => execIn(ns, 'ping', ['-6', '-n', '-c', '2', '-i', '0.2', '-W', '2', ...args, to]);

async function transfer(t: Test, from: Node, to: Node, mb: number, port: number): Promise<number> {
  const server = spawnIn(to.podNs, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'server', to.podIp6, String(port)]);
  t.teardown(() => stopProcess(server, 'SIGKILL'));
  await until('transfer server', async () => server.output().includes('listening'), 5000);
  const started = Date.now();
  const sent = (await execCheckedIn(from.podNs, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'client', to.podIp6, String(port), String(mb * MB)])).trim();
  await server.exited;
  const s = (Date.now() - started) / 1000;
  t.equal(server.output().trim().split('\n').at(-1), sent, `${mb} MB over IPv6 ${from.kind} n${from.i} → ${to.kind} n${to.i}: sha256 matches (${s.toFixed(1)} s)`);
  t.match(sent, /^[0-9a-f]{64}$/, 'the sender printed a sha256');
  return s;
}

t.test('IPv6 userspace VTEP: real traffic, interop with kernel VXLAN over IPv6, forgery', async (t) => {
  const { nodes } = await setup(t);
  const [n1, n2, n3, n4] = nodes as [Node, Node, Node, Node];
  const e1 = n1.engine6 as SpawnedProcess;

  await t.test('pods ping each other both ways, every kind of pair', async (t) => {
    for (const [a, b] of [[n1, n2], [n1, n3], [n1, n4], [n3, n4], [n2, n4]] as const) {
      await until(`ping ${a.podIp6} → ${b.podIp6}`, async () => (await ping6(a.podNs, b.podIp6)).code === 0, 20_000);
      t.equal((await ping6(a.podNs, b.podIp6, ['-c', '3'])).code, 0, `${a.kind} n${a.i} → ${b.kind} n${b.i}`);
      t.equal((await ping6(b.podNs, a.podIp6, ['-c', '3'])).code, 0, `${b.kind} n${b.i} → ${a.kind} n${a.i}`);
    }
    const s = await stats(e1);
    t.ok(s.rx_packets > 0 && s.tx_packets > 0, `n1 engine carried them: tx ${s.tx_packets}, rx ${s.rx_packets}`);
    t.equal(s.drop_bad_checksum + s.drop_rx_malformed + s.drop_spoofed_source + s.drop_unknown_source, 0, 'no honest packet dropped');
  });

  await t.test('multicast and NDP frames from the kernel are dropped, never sent', async (t) => {
    const before = await stats(e1);
    const r = await execIn(n1.ns, 'ping', ['-6', '-n', '-c', '3', '-i', '0.2', '-W', '1', 'ff02::1%flannel-v6.1']);
    t.comment(`ping ff02::1 on the TAP: exit ${r.code} (the node answers its own multicast echo)`);
    // ping may end on its own looped-back replies before the engine has read the last request from the TAP
    let after = before;
    await until('3 echo requests dropped', async () => (after = await stats(e1)).drop_broadcast - before.drop_broadcast >= 3, 3000, 100).catch(() => undefined);
    t.ok(after.drop_broadcast - before.drop_broadcast >= 3, `echo requests to 33:33:00:00:00:01 dropped as broadcast: ${after.drop_broadcast - before.drop_broadcast}`);
    t.equal(after.tx_packets - before.tx_packets, 0, 'nothing sent to any peer');
    t.ok(after.drop_broadcast > 0, 'router solicitations, MLD reports and DAD probes of the link-local address were dropped too');
  });

  await t.test('100 MB TCP transfers over IPv6 with equal sha256', async (t) => {
    const rx2 = await stats(n2.engine6 as SpawnedProcess);
    const tx1 = await stats(e1);
    await transfer(t, n1, n2, 100, 5301);
    const after2 = await stats(n2.engine6 as SpawnedProcess);
    const after1 = await stats(e1);
    t.ok(after2.coalesced_super_packets - rx2.coalesced_super_packets > 100, `n2 coalesced TCPv6 segments into super-packets: ${after2.coalesced_super_packets - rx2.coalesced_super_packets}`);
    t.ok(after1.tx_packets - tx1.tx_packets > 60_000, `n1 split TSO6 super-packets into segments: ${after1.tx_packets - tx1.tx_packets} sent`);
    t.ok(after1.tx_partial_checksums - tx1.tx_partial_checksums > 60_000, `n1 left inner checksums partial for n2, which accepts them: ${after1.tx_partial_checksums - tx1.tx_partial_checksums}`);
    t.ok(after2.rx_partial_checksums - rx2.rx_partial_checksums > 60_000, `n2 handed them to its device with NEEDS_CSUM: ${after2.rx_partial_checksums - rx2.rx_partial_checksums}`);
    const before4 = await stats(n4.engine6 as SpawnedProcess);
    await transfer(t, n1, n4, 100, 5306);
    const after4p = await stats(n4.engine6 as SpawnedProcess);
    t.ok(after4p.checksums_completed - before4.checksums_completed > 60_000, `per-packet n4 completed n1's partial checksums in place: ${after4p.checksums_completed - before4.checksums_completed}`);
    const toKernel = await stats(e1);
    await transfer(t, n1, n3, 100, 5302);
    t.equal((await stats(e1)).tx_partial_checksums - toKernel.tx_partial_checksums, 0, 'the kernel peer got complete inner checksums only');
    const beforeKernel = await stats(e1);
    await transfer(t, n3, n1, 100, 5303);
    const afterKernel = await stats(e1);
    t.comment(`kernel → n1: super-frames handed on as GSO ${afterKernel.segmented_super_frames - beforeKernel.segmented_super_frames}, partial checksums handed on ${afterKernel.rx_partial_checksums - beforeKernel.rx_partial_checksums}, coalesced ${afterKernel.coalesced_super_packets - beforeKernel.coalesced_super_packets}`);
    await transfer(t, n4, n1, 100, 5304);
    const before4k = await stats(n4.engine6 as SpawnedProcess);
    await transfer(t, n3, n4, 100, 5305);
    const after4 = await stats(n4.engine6 as SpawnedProcess);
    t.ok(after4.segmented_super_frames - before4k.segmented_super_frames > 0, `kernel → per-packet n4: the kernel's TSO6 super-frames segmented in software: ${after4.segmented_super_frames - before4k.segmented_super_frames}`);
    const s = await stats(e1);
    t.equal(s.drop_bad_checksum + s.drop_rx_malformed + s.drop_oversize + s.tx_send_errors, 0, 'n1: no drops or send errors on the way');
  });

  await t.test('UDP GSO sends over IPv6: split into their datagrams (USO), trains coalesced, a kernel peer\'s UDP GSO super-frames handed on; every datagram arrives as sent', async (t) => {
    interface UdpGsoStats { received: number; wrong_size: number; corrupt: number; out_of_order: number; duplicates: number }
    const count = 10_000;
    const udpGso = async (from: Node, to: Node, port: number): Promise<void> => {
      const recv = spawnIn(to.podNs, 'python3', [join(FIXTURES, 'udp-gso.py'), 'recv', to.podIp6, String(port), '2']);
      t.teardown(() => stopProcess(recv, 'SIGKILL'));
      await until('receiver', async () => recv.output().includes('listening'), 5000);
      await execCheckedIn(from.podNs, 'python3', [join(FIXTURES, 'udp-gso.py'), 'send', to.podIp6, String(port), String(count), '1200', '20']);
      await recv.exited;
      const got = JSON.parse(recv.output().trim().split('\n').at(-1) as string) as UdpGsoStats;
      const what = `${from.kind} n${from.i} → ${to.kind} n${to.i}`;
      t.same({ ...got, received: 0 }, { received: 0, wrong_size: 0, corrupt: 0, out_of_order: 0, duplicates: 0 }, `${what}: no datagram merged, cut, damaged, reordered or repeated`);
      t.ok(got.received >= count * 0.99, `${what}: ${got.received}/${count} datagrams arrived`);
    };
    const before = await stats(e1);
    const before2 = await stats(n2.engine6 as SpawnedProcess);
    await udpGso(n1, n2, 7101);
    const split = (await stats(e1)).split_uso_packets - before.split_uso_packets;
    t.ok(split >= (count / 20) * 0.9, `n1 read the pod's UDP GSO sends whole and split them: ${split} for ${count / 20} sends`);
    const coalesced = (await stats(n2.engine6 as SpawnedProcess)).coalesced_udp_packets - before2.coalesced_udp_packets;
    t.ok(coalesced > 100, `n2 wrote datagram trains as one USO packet: ${coalesced}`);
    await udpGso(n1, n3, 7102);
    const fromKernel = await stats(e1);
    await udpGso(n3, n1, 7103);
    const superFrames = (await stats(e1)).segmented_super_frames - fromKernel.segmented_super_frames;
    t.ok(superFrames > 100, `the kernel peer's UDP GSO super-frames handed on as USO: ${superFrames}`);
    await udpGso(n3, n4, 7104);
  });

  await t.test('DF pings at the exact MTU pass; one byte more gets a Packet Too Big with the MTU', async (t) => {
    for (const to of [n2, n3]) {
      await execCheckedIn(n1.podNs, 'ip', ['-6', 'route', 'flush', 'cache']);
      t.equal((await ping6(n1.podNs, to.podIp6, ['-M', 'do', '-s', String(MTU - 48)])).code, 0, `${MTU}-byte DF ping to ${to.kind} n${to.i} passes`);
      const over = await ping6(n1.podNs, to.podIp6, ['-M', 'do', '-s', String(MTU - 47)]);
      t.not(over.code, 0, 'one byte more does not');
      t.match(over.stdout + over.stderr, new RegExp(`mtu[ =:]+${MTU}`, 'i'), `and the pod learns the MTU ${MTU} (the forwarding kernel's Packet Too Big)`);
    }
    // The engine's own Packet Too Big: with the device's MTU raised by hand, a frame above the engine's MTU reaches it.
    for (const n of [n1, n4]) {
      await ipIn(n.ns, ['link', 'set', 'flannel-v6.1', 'mtu', '1500']);
      await execCheckedIn(n.podNs, 'ip', ['-6', 'route', 'flush', 'cache']);
      const before = await stats(n.engine6 as SpawnedProcess);
      const over = await ping6(n.podNs, n2 === n ? n1.podIp6 : n2.podIp6, ['-M', 'do', '-s', String(MTU - 47)]);
      const after = await stats(n.engine6 as SpawnedProcess);
      await ipIn(n.ns, ['link', 'set', 'flannel-v6.1', 'mtu', String(MTU)]);
      t.not(over.code, 0, `${n.kind} n${n.i}: a ${MTU + 1}-byte DF ping does not pass`);
      t.match(over.stdout + over.stderr, new RegExp(`from ${n.devIp6}.*too big.*mtu[ =:]+${MTU}`, 'i'), `${n.kind} n${n.i}: the engine answers with Packet Too Big, MTU ${MTU}, from ${n.devIp6}`);
      t.ok(after.icmp_unreachable_sent - before.icmp_unreachable_sent >= 1 && after.drop_oversize - before.drop_oversize >= 1, `${n.kind} n${n.i}: counted (icmp_unreachable_sent +${after.icmp_unreachable_sent - before.icmp_unreachable_sent}, drop_oversize +${after.drop_oversize - before.drop_oversize})`);
      await execCheckedIn(n.podNs, 'ip', ['-6', 'route', 'flush', 'cache']);
    }
  });

  await t.test('forged and malformed datagrams: each dropped and counted exactly, nothing crashes', async (t) => {
    await ipIn(n3.ns, ['addr', 'add', '2001:db8:ff::99/64', 'dev', 'eth0', 'nodad']);
    const keys = [`dmac=${n1.mac6}`, `smac=${n3.mac6}`, `src=${n3.podIp6}`, `dst=${n1.podIp6}`, `other=${n2.podIp6}`, 'outside=2001:db8:999::1', 'foreign=2001:db8:100:2::5'];
    const cases: ReadonlyArray<readonly [string, string, string]> = [
      ['valid', 'rx_packets', n3.under6], ['valid-zero-outer-checksum', 'rx_packets', n3.under6],
      ['trunc-vxlan', 'drop_rx_malformed', n3.under6], ['trunc-eth', 'drop_rx_malformed', n3.under6], ['trunc-ip', 'drop_rx_malformed', n3.under6],
      ['bad-payload-length', 'drop_rx_malformed', n3.under6], ['not-ipv6', 'drop_rx_malformed', n3.under6], ['ipv4-ethertype', 'drop_rx_malformed', n3.under6],
      ['bad-tcp-header', 'drop_rx_malformed', n3.under6], ['bad-udp-length', 'drop_rx_malformed', n3.under6],
      ['wrong-vni', 'drop_bad_vxlan', n3.under6], ['wrong-dst-mac', 'drop_unknown_mac', n3.under6], ['wrong-src-mac', 'drop_spoofed_source', n3.under6],
      ['outside-source', 'drop_spoofed_source', n3.under6], ['other-peer-source', 'drop_spoofed_source', n3.under6],
      ['foreign-destination', 'drop_foreign_destination', n3.under6], ['bad-checksum', 'drop_bad_checksum', n3.under6],
      ['udp-zero-checksum', 'rx_packets', n3.under6], ['unknown-source', 'drop_unknown_source', '2001:db8:ff::99'],
      ['ext-chain', 'rx_packets', n3.under6],
    ];
    for (const [name, counter, from] of cases) {
      const before = await stats(e1);
      await execCheckedIn(n3.ns, 'python3', [join(FIXTURES, 'forge6.py'), name, from, n1.under6, String(COUNT), ...keys]);
      let got: Record<string, number> = {};
      await until(`${name}: counted`, async () => {
        got = delta(before, await stats(e1), (k) => (k.startsWith('drop_') && k !== 'drop_broadcast') || k === 'rx_packets');
        return (got[counter] ?? 0) >= COUNT;
      }, 5000, 100).catch(() => undefined);
      t.same(got, { [counter]: COUNT }, `${name}: ${counter} +${COUNT}, nothing else`);
    }
    t.equal(e1.child.exitCode, null, 'the engine process is still running');
    t.equal((await ping6(n1.podNs, n3.podIp6)).code, 0, 'and still carries traffic');
  });

  await t.test('ensureDevice keeps the IPv6 device; a device deleted by hand is re-created', async (t) => {
    const e2 = n2.engine6 as SpawnedProcess;
    const ensure = async (): Promise<string> => {
      const before = e2.output().split('\nensure ').length;
      e2.child.kill('SIGUSR2');
      await until('ensureDevice', async () => e2.output().split('\nensure ').length > before, 10_000, 50);
      return (e2.output().split('\nensure ').at(-1) as string).split('\n')[0] as string;
    };
    t.equal(await ensure(), '0', 'nothing to fix on a configured device (address, MTU, MAC, sysctls)');
    const addr = JSON.parse(await ipIn(n2.ns, ['-j', '-6', 'addr', 'show', 'dev', 'flannel-v6.1'])) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>;
    t.ok(addr[0]?.addr_info.some((a) => a.local === n2.devIp6 && a.prefixlen === 128), `the device has ${n2.devIp6}/128`);
    t.equal((await execCheckedIn(n2.ns, 'cat', ['/proc/sys/net/ipv6/conf/flannel-v6.1/accept_ra'])).trim(), '0', 'accept_ra 0');
    t.equal((await execCheckedIn(n2.ns, 'cat', ['/proc/sys/net/ipv6/conf/flannel-v6.1/disable_ipv6'])).trim(), '0', 'IPv6 enabled');
    await ipIn(n2.ns, ['link', 'del', 'flannel-v6.1']);
    t.equal(await ensure(), '1', 'the deleted device is re-created');
    await programPeers(n2, nodes, 6); // the backend replays neighbours and routes after a re-creation
    await until('traffic over the re-created device', async () => (await ping6(n2.podNs, n1.podIp6)).code === 0, 20_000);
    t.pass('pods reach each other again');
  });

  await t.test('iperf3 over the IPv6 and the IPv4 VTEP of the same nodes (offload ↔ offload)', async (t) => {
    // interleaved (6, 4, 4, 6), 4 s each, so that background load on the VM weighs on both families alike
    const runs: Record<'ipv6' | 'ipv4', number[]> = { ipv6: [], ipv4: [] };
    let port = 5401;
    for (const family of [6, 4, 4, 6] as const) {
      const dst = family === 6 ? n2.podIp6 : n2.podIp4;
      const server = spawnIn(n2.podNs, 'iperf3', ['-s', '-1', '-p', String(++port)]);
      t.teardown(() => stopProcess(server, 'SIGKILL'));
      await sleep(500);
      const r = await execCheckedIn(n1.podNs, 'iperf3', [`-${family}`, '-c', dst, '-p', String(port), '-t', '4', '--json']);
      const bps = (JSON.parse(r) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
      runs[`ipv${family}`].push(bps / 1e9);
      t.ok(bps > 0, `IPv${family}: ${(bps / 1e9).toFixed(2)} Gbit/s`);
    }
    const mean = (xs: number[]) => (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(2);
    t.comment(`single TCP stream pod → pod, 2 × 4 s each: IPv6 ${mean(runs.ipv6)} Gbit/s (${runs.ipv6.map((x) => x.toFixed(2)).join(', ')}), IPv4 ${mean(runs.ipv4)} Gbit/s (${runs.ipv4.map((x) => x.toFixed(2)).join(', ')})`);
  });
});
