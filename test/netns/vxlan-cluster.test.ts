// The vxlan backend end to end, interoperability first: userspace VTEPs among themselves, a
// userspace VTEP against flannel's kernel VXLAN data path, the wire format seen by tcpdump and by a
// hand-played peer, forgeries, lease removal, and restarts.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { scrapeMetric } from '../helpers/metrics.js';
import { allPairsPing, sha256Transfer } from '../helpers/pod-traffic.js';
import { until } from '../helpers/wait.js';
import t from 'tap';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, ipIn, runTag, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;
const METRICS_PORT = 18084;
const CONFIG = { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } };
const FAKE_PEER_MAC = '0e:00:00:00:02:04';


const metric = (node: NodeHost, name: string, labels = ''): Promise<number> => scrapeMetric(node.ns, METRICS_PORT, name, labels);

const drops = (node: NodeHost, reason: string) => metric(node, 'flanneld_datapath_dropped_packets_total', `reason="${reason}"`);
const wire = async (ns: string, args: string[]): Promise<Record<string, unknown>> =>
  JSON.parse((await execCheckedIn(ns, 'python3', [join(FIXTURES, 'wire.py'), ...args])).trim()) as Record<string, unknown>;
const macOf = async (ns: string, dev: string): Promise<string> => (JSON.parse(await ipIn(ns, ['-j', 'link', 'show', dev])) as Array<{ address: string }>)[0]!.address;
const net0 = (pod: PodHost): string => pod.ip.replace(/\.\d+$/, '.0');

t.test('3 nodes, all userspace VTEPs', async (t) => {
  const cluster = await LocalCluster.create({ tag: runTag('fv'), nodes: 3 });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig(CONFIG);
  for (const node of cluster.nodes) cluster.startDaemon(node);
  const pods: PodHost[] = [];
  for (const node of cluster.nodes) pods.push(await cluster.addPod(node, await cluster.waitForSubnet(node)));
  const [n1] = cluster.nodes as [NodeHost];

  await t.test('device and lease as flannel makes them', async (t) => {
    const mac = await macOf(n1.ns, 'flannel.1');
    t.match(mac, /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/, 'a locally administered unicast MAC');
    t.match(await ipIn(n1.ns, ['link', 'show', 'flannel.1']), /mtu 1450/, 'MTU 1500 - 50');
    t.match(await ipIn(n1.ns, ['-o', 'addr', 'show', 'dev', 'flannel.1']), new RegExp(`inet ${net0(pods[0]!).replace(/\./g, '\\.')}/32`));
    t.equal(await cluster.etcd.get(`/coreos.com/network/subnets/${net0(pods[0]!)}-24`),
      `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}","AcceptsPartialChecksums":true}}`,
      'lease value byte for byte: flannel\'s, plus the userspace engine\'s AcceptsPartialChecksums (flannel ignores unknown BackendData fields)');
    const neigh = await ipIn(n1.ns, ['neigh', 'show', 'dev', 'flannel.1']);
    const routes = await ipIn(n1.ns, ['route', 'show', 'dev', 'flannel.1']);
    for (const peer of pods.slice(1)) {
      t.match(neigh, new RegExp(`${net0(peer).replace(/\./g, '\\.')} lladdr \\S+ PERMANENT`), `permanent neighbour for ${net0(peer)}`);
      t.match(routes, new RegExp(`${net0(peer).replace(/\./g, '\\.')}/24 via ${net0(peer).replace(/\./g, '\\.')} .*onlink`), `onlink route for ${net0(peer)}/24`);
    }
  });

  await t.test('all pairs ping, and 100 MB crosses intact', async (t) => {
    t.ok((await allPairsPing(cluster, pods)).flat().every(Boolean));
    await sha256Transfer(t, pods[0]!, pods[2]!, 100);
  });
});

t.test('userspace VTEP and kernel VXLAN data path together', async (t) => {
  // node1: userspace; node2: kernel data path; node3 plays a peer by hand; node4 holds no lease.
  const cluster = await LocalCluster.create({ tag: runTag('fk'), nodes: 4 });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig(CONFIG);
  const [n1, n2, n3, n4] = cluster.nodes as [NodeHost, NodeHost, NodeHost, NodeHost];
  await cluster.etcd.put('/coreos.com/network/subnets/10.244.200.0-24',
    `{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${FAKE_PEER_MAC}"}}`);
  cluster.startDaemon(n1, [`--healthz-port=${METRICS_PORT}`]);
  cluster.startDaemon(n2, ['--vxlan-datapath=kernel']);
  const p1 = await cluster.addPod(n1, await cluster.waitForSubnet(n1));
  const p2 = await cluster.addPod(n2, await cluster.waitForSubnet(n2));

  await t.test('node2 runs flannel\'s kernel device', async (t) => {
    const link = JSON.parse(await ipIn(n2.ns, ['-d', '-j', 'link', 'show', 'flannel.1'])) as Array<{ linkinfo: { info_kind: string; info_data: Record<string, unknown> } }>;
    t.match(link[0]!.linkinfo, { info_kind: 'vxlan', info_data: { id: 1, local: '192.0.2.2', link: 'eth0', port: 8472, learning: false } });
    const mac1 = await macOf(n1.ns, 'flannel.1');
    t.match(await execCheckedIn(n2.ns, 'bridge', ['fdb', 'show', 'dev', 'flannel.1']), new RegExp(`${mac1} dst 192\\.0\\.2\\.1 self permanent`), 'FDB entry for the userspace peer');
  });

  await t.test('ping and TCP both ways, with tcpdump seeing standard VXLAN on 8472', async (t) => {
    const dump = spawnIn(n2.ns, 'tcpdump', ['-n', '-l', '-i', 'eth0', '-c', '6', '-T', 'vxlan', 'udp', 'port', '8472']);
    t.teardown(() => stopProcess(dump, 'SIGKILL'));
    await sleep(500);
    t.ok((await allPairsPing(cluster, [p1, p2])).flat().every(Boolean), 'ping both ways');
    await until('tcpdump', async () => dump.child.exitCode !== null, 5000).catch(() => {});
    t.match(dump.output(), /VXLAN, flags \[I\] \(0x08\), vni 1/, `tcpdump decodes VXLAN: ${dump.output().split('\n').find((l) => l.includes('VXLAN')) ?? ''}`);
    await sha256Transfer(t, p1, p2, 50);
    await sha256Transfer(t, p2, p1, 50);
  });

  await t.test('wire format: a hand-played peer gets a standard VXLAN reply', async (t) => {
    const tapMac = await macOf(n1.ns, 'flannel.1');
    const r = await wire(n3.ns, ['vxlan-echo', n3.underlayIp, n1.underlayIp, '1', FAKE_PEER_MAC, tapMac, '10.244.200.5', p1.ip]);
    t.match(r, { reply: true, from: n1.underlayIp, vxlanFlags: 8, vni: 1, ethDst: FAKE_PEER_MAC, ethSrc: tapMac, ethType: 0x800, src: p1.ip, dst: '10.244.200.5', icmpType: 0, headerChecksumOk: true, icmpChecksumOk: true });
  });

  await t.test('forgeries and garbage are dropped and counted; the daemon stays up', async (t) => {
    const tapMac = await macOf(n1.ns, 'flannel.1');
    const before = { vni: await drops(n1, 'bad_vxlan'), src: await drops(n1, 'unknown_source'), spoof: await drops(n1, 'spoofed_source') };
    t.same(await wire(n3.ns, ['vxlan-echo', n3.underlayIp, n1.underlayIp, '2', FAKE_PEER_MAC, tapMac, '10.244.200.5', p1.ip]), { reply: null }, 'wrong VNI');
    t.same(await wire(n4.ns, ['vxlan-echo', n4.underlayIp, n1.underlayIp, '1', FAKE_PEER_MAC, tapMac, '10.244.200.5', p1.ip]), { reply: null }, 'outer source holds no lease');
    t.same(await wire(n3.ns, ['vxlan-echo', n3.underlayIp, n1.underlayIp, '1', '0e:00:00:00:09:09', tapMac, '10.244.200.5', p1.ip]), { reply: null }, 'inner source MAC is not the peer\'s');
    t.same(await wire(n3.ns, ['vxlan-echo', n3.underlayIp, n1.underlayIp, '1', FAKE_PEER_MAC, tapMac, '10.244.201.5', p1.ip]), { reply: null }, 'inner source IP outside the peer\'s subnet');
    await wire(n3.ns, ['garbage', n3.underlayIp, n1.underlayIp, '3000', '8472']);
    await wire(n4.ns, ['garbage', n4.underlayIp, n1.underlayIp, '3000', '8472']);
    t.ok((await drops(n1, 'bad_vxlan')) > before.vni, 'bad_vxlan counted');
    t.ok((await drops(n1, 'unknown_source')) > before.src, 'unknown_source counted');
    t.ok((await drops(n1, 'spoofed_source')) >= before.spoof + 2, 'spoofed_source counted (MAC and IP)');
    t.equal(cluster.daemons.get(n1.name)!.proc.child.exitCode, null, 'daemon up');
    t.ok((await cluster.pingMatrix([p1, p2])).flat().every(Boolean), 'still forwarding');
  });

  await t.test('restarting the kernel-datapath node keeps its MAC and connectivity', async (t) => {
    const mac = await macOf(n2.ns, 'flannel.1');
    const pinger = spawnIn(p1.ns, 'ping', ['-n', '-i', '0.05', '-c', '80', p2.ip]);
    t.equal(await cluster.stopDaemon(n2, 'SIGTERM'), 0);
    cluster.startDaemon(n2, ['--vxlan-datapath=kernel']);
    await until('restart', async () => cluster.daemons.get(n2.name)!.proc.output().includes('"msg":"running"'));
    const code = await pinger.exited;
    const received = Number(/(\d+) received/.exec(pinger.output())?.[1] ?? 0);
    t.equal(await macOf(n2.ns, 'flannel.1'), mac, 'same MAC');
    t.ok(received >= 76, `ping across the restart: ${received}/80 replies (exit ${code})`);
  });

  await t.test('a deleted kernel VXLAN device is re-created with its peers', async (t) => {
    await ipIn(n2.ns, ['link', 'del', 'flannel.1']);
    await until('re-creation', async () => (await execIn(n2.ns, 'ip', ['link', 'show', 'flannel.1'])).code === 0, 25_000);
    t.ok(await until('connectivity', async () => (await cluster.pingMatrix([p1, p2])).flat().every(Boolean), 25_000), 'connectivity is back');
  });

  await t.test('a peer lease that turns unusable is unprogrammed; changed back, it is programmed with its new MAC', async (t) => {
    const key = '/coreos.com/network/subnets/10.244.200.0-24';
    const state = async (node: NodeHost): Promise<string> => await ipIn(node.ns, ['neigh', 'show', 'dev', 'flannel.1'])
      + await ipIn(node.ns, ['route', 'show', 'dev', 'flannel.1']) + (node === n2 ? await execCheckedIn(n2.ns, 'bridge', ['fdb', 'show', 'dev', 'flannel.1']) : '');
    await cluster.etcd.put(key, '{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"host-gw"}');
    for (const node of [n1, n2]) {
      t.ok(await until(`${node.name} drops the peer`, async () => !(await state(node)).includes('10.244.200.0'), 5000), `${node.name}: neighbour and route gone`);
    }
    const newMac = '0e:00:00:00:02:05';
    await cluster.etcd.put(key, `{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${newMac}"}}`);
    for (const node of [n1, n2]) {
      t.ok(await until(`${node.name} programs the peer again`, async () => {
        const s = await state(node);
        return s.includes('10.244.200.0') && s.includes(newMac) && !s.includes(FAKE_PEER_MAC);
      }, 5000), `${node.name}: route and neighbour with the new VtepMAC`);
    }
    await cluster.etcd.put(key, `{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${FAKE_PEER_MAC}"}}`);
    t.ok(await until('the original MAC back', async () => (await state(n1)).includes(FAKE_PEER_MAC), 5000), 'changed back again');
  });

  await t.test('a peer\'s lease removed: neighbour, route and FDB state go, on both data paths', async (t) => {
    await cluster.etcd.ctlChecked(['del', '/coreos.com/network/subnets/10.244.200.0-24']);
    await until('node1 clean', async () => {
      const s = await ipIn(n1.ns, ['neigh', 'show', 'dev', 'flannel.1']) + await ipIn(n1.ns, ['route', 'show', 'dev', 'flannel.1']);
      return !s.includes('10.244.200.0');
    }, 5000);
    await until('node2 clean', async () => {
      const s = await ipIn(n2.ns, ['neigh', 'show', 'dev', 'flannel.1']) + await ipIn(n2.ns, ['route', 'show', 'dev', 'flannel.1'])
        + await execCheckedIn(n2.ns, 'bridge', ['fdb', 'show', 'dev', 'flannel.1']);
      return !s.includes('10.244.200.0') && !s.includes(FAKE_PEER_MAC);
    }, 5000);
    t.pass('neighbour, route (and on the kernel node the FDB entry) removed within 5 s');
    t.ok((await cluster.pingMatrix([p1, p2])).flat().every(Boolean), 'the other peers are untouched');
  });
});
