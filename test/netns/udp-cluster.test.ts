// The udp backend end to end: real namespaces, real etcd, real flanneld processes with TUN devices
// and the packet engine. Connectivity, a 100 MB checksummed transfer, ICMP and TTL as flannel does
// them, the bare-IPv4 wire format against a hand-played peer, forged and garbage datagrams,
// a crashed worker, and a clean shutdown.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { scrapeMetric } from '../helpers/metrics.js';
import { until } from '../helpers/wait.js';
import t from 'tap';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, ipIn, runTag, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;
const METRICS_PORT = 18083;


const metric = (node: NodeHost, name: string, labels = ''): Promise<number> => scrapeMetric(node.ns, METRICS_PORT, name, labels);

const wire = async (ns: string, args: string[]): Promise<Record<string, unknown>> =>
  JSON.parse((await execCheckedIn(ns, 'python3', [join(FIXTURES, 'wire.py'), ...args])).trim()) as Record<string, unknown>;

t.test('udp backend cluster', async (t) => {
  // node1..3 run flanneld; node4 plays a flannel udp peer by hand; node5 holds no lease.
  const cluster = await LocalCluster.create({ tag: runTag('fu'), nodes: 5 });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } });
  const [n1, n2, n3, n4, n5] = cluster.nodes as [NodeHost, NodeHost, NodeHost, NodeHost, NodeHost];
  await cluster.etcd.put('/coreos.com/network/subnets/10.244.200.0-24', '{"PublicIP":"192.0.2.4","PublicIPv6":null}');
  for (const node of [n1, n2, n3]) cluster.startDaemon(node, [`--healthz-port=${METRICS_PORT}`], { FLANNELD_FAULT_INJECTION: '1' });
  const pods: PodHost[] = [];
  for (const node of [n1, n2, n3]) pods.push(await cluster.addPod(node, await cluster.waitForSubnet(node)));
  const [p1, p2, p3] = pods as [PodHost, PodHost, PodHost];

  await t.test('flannel0 is configured as flannel does it', async (t) => {
    const link = await ipIn(n1.ns, ['-o', 'addr', 'show', 'dev', 'flannel0']);
    t.match(link, new RegExp(`inet ${p1.ip.replace(/\.2$/, '.0').replace(/\./g, '\\.')}/32`), 'address = subnet network address /32');
    t.match(await ipIn(n1.ns, ['link', 'show', 'flannel0']), /mtu 1472/, 'MTU = 1500 - 28');
    t.match(await ipIn(n1.ns, ['route', 'show', '10.244.0.0/16']), /10\.244\.0\.0\/16 dev flannel0/, 'one route for the Network');
    t.equal((await cluster.etcd.get(`/coreos.com/network/subnets/${p1.ip.replace(/\.2$/, '.0')}-24`)), '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendData":{"AcceptsPartialChecksums":true}}',
      'lease has no BackendType, as flannel udp; BackendData carries only our AcceptsPartialChecksums (flannel\'s udp never reads BackendData)');
  });

  await t.test('all pairs of pods ping each other', async (t) => {
    const m = await until('all-pairs connectivity', async () => {
      const matrix = await cluster.pingMatrix(pods);
      return matrix.flat().every(Boolean) && matrix;
    });
    t.ok(m.flat().every(Boolean), JSON.stringify(m));
  });

  await t.test('a 100 MB TCP transfer arrives intact', async (t) => {
    const server = spawnIn(p3.ns, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'server', p3.ip, '5201']);
    t.teardown(() => stopProcess(server, 'SIGKILL'));
    await until('server', async () => server.output().includes('listening'), 5000);
    const started = Date.now();
    const sent = (await execCheckedIn(p1.ns, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'client', p3.ip, '5201', String(100 * 1024 * 1024)])).trim();
    await server.exited;
    t.equal(server.output().trim().split('\n').at(-1), sent, 'sha256 matches');
    t.comment(`100 MB in ${Date.now() - started} ms through the udp backend`);
  });

  await t.test('an address in the Network that nobody leases gets ICMP net unreachable', async (t) => {
    const before = await metric(n1, 'flanneld_datapath_icmp_unreachable_sent_total');
    const r = await execIn(p1.ns, 'ping', ['-n', '-c', '1', '-W', '2', '10.244.250.1']);
    t.match(r.stdout, /Destination Net Unreachable/);
    t.ok((await metric(n1, 'flanneld_datapath_icmp_unreachable_sent_total')) > before, 'counted');
  });

  await t.test('TTL is decremented on send and on receive, as flannel does', async (t) => {
    // pod → node1 kernel (−1) → our TX (−1) → our RX on node2 (−1) → node2 kernel (−1) → pod.
    t.ok((await execIn(p1.ns, 'ping', ['-n', '-c', '1', '-W', '2', '-t', '5', p2.ip])).code === 0, 'TTL 5 arrives');
    const before = await metric(n1, 'flanneld_datapath_dropped_packets_total', 'reason="ttl_expired"');
    t.not((await execIn(p1.ns, 'ping', ['-n', '-c', '1', '-W', '1', '-t', '2', p2.ip])).code, 0, 'TTL 2 dies in our TX');
    t.ok((await metric(n1, 'flanneld_datapath_dropped_packets_total', 'reason="ttl_expired"')) > before, 'counted as ttl_expired');
  });

  await t.test('wire format: a bare IPv4 packet per datagram, both ways', async (t) => {
    const r = await wire(n4.ns, ['udp-echo', n4.underlayIp, n1.underlayIp, '10.244.200.5', p1.ip]);
    t.match(r, { reply: true, from: n1.underlayIp, version: 4, src: p1.ip, dst: '10.244.200.5', icmpType: 0, ident: 0x4242, seq: 7, headerChecksumOk: true });
    t.equal(r.datagramLength, r.totalLength, 'the payload is exactly the IPv4 packet, no header');
    // Sent to our port 8285; the source port comes from the inner flow hash (flannel peers accept any).
    t.type(r.fromPort, 'number');
  });

  await t.test('forged datagrams are dropped and counted', async (t) => {
    const unknown = await metric(n1, 'flanneld_datapath_dropped_packets_total', 'reason="unknown_source"');
    const spoofed = await metric(n1, 'flanneld_datapath_dropped_packets_total', 'reason="spoofed_source"');
    t.same(await wire(n5.ns, ['udp-echo', n5.underlayIp, n1.underlayIp, '10.244.200.5', p1.ip]), { reply: null }, 'no reply to a sender without a lease');
    t.same(await wire(n4.ns, ['udp-echo', n4.underlayIp, n1.underlayIp, '10.244.201.5', p1.ip]), { reply: null }, 'no reply to an inner source outside the sender\'s subnet');
    t.ok((await metric(n1, 'flanneld_datapath_dropped_packets_total', 'reason="unknown_source"')) > unknown, 'unknown_source counted');
    t.ok((await metric(n1, 'flanneld_datapath_dropped_packets_total', 'reason="spoofed_source"')) > spoofed, 'spoofed_source counted');
  });

  await t.test('thousands of random datagrams: the daemon stays up and keeps forwarding', async (t) => {
    await wire(n4.ns, ['garbage', n4.underlayIp, n1.underlayIp, '3000', '8285']);
    await wire(n5.ns, ['garbage', n5.underlayIp, n1.underlayIp, '3000', '8285']);
    t.equal(cluster.daemons.get(n1.name)!.proc.child.exitCode, null, 'still running');
    t.ok(await cluster.pingMatrix([p1, p2]).then((m) => m.flat().every(Boolean)), 'still forwarding');
    t.ok((await metric(n1, 'flanneld_datapath_dropped_packets_total', 'reason="rx_malformed"')) > 0, 'malformed datagrams counted');
  });

  await t.test('a crashed worker is reported and restarted, and traffic resumes', async (t) => {
    const d = cluster.daemons.get(n1.name)!;
    process.kill(d.proc.child.pid!, 'SIGUSR2');
    await until('a worker restart', async () => (await metric(n1, 'flanneld_datapath_worker_restarts_total')) >= 1);
    t.match(d.proc.output(), /packet engine (tx |lead )?worker 0 died; restarting it/);
    t.ok(await until('traffic again', async () => (await cluster.pingMatrix([p1, p3])).flat().every(Boolean)), 'forwarding after the restart');
  });

  await t.test('SIGTERM leaves no device, route or process behind', async (t) => {
    t.equal(await cluster.stopDaemon(n1, 'SIGTERM'), 0, 'exit code 0');
    t.not((await execIn(n1.ns, 'ip', ['link', 'show', 'flannel0'])).code, 0, 'flannel0 is gone');
    t.equal((await ipIn(n1.ns, ['route', 'show', '10.244.0.0/16'])).trim(), '', 'its route is gone');
    t.equal((await ipIn(undefined, ['netns', 'pids', n1.ns])).trim(), '', 'no process left in the node');
  });
});
