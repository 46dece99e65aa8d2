// Dual-stack (EnableIPv6) wireguard in flannel's default Mode separate, on 3 nodes of our own flanneld in
// real namespaces with a real etcd: flannel-wg (IPv4 over IPv4, 51820) and flannel-wg-v6 (IPv6 over IPv6,
// 51821, the same key). Checked: the lease JSON (BackendV6Data with BackendData's PublicKey and Port 51821,
// PublicIPv6), flannel-wg-v6's /128 address, MTU and IPv6Network route, its socket on the node's IPv6
// address; pods of all pairs ping over IPv4 and IPv6; a TCP transfer over IPv6 with an equal sha256 and a
// canary transfer; DF pings of exactly 1420 bytes on both families (1420 + 80 fills the IPv6 underlay's
// 1500) and Packet Too Big one byte above; on node1's eth0 (tcpdump) every IPv6 UDP datagram is a WireGuard message of a valid type
// and size on 51821 ↔ 51821 and no canary or ping pattern appears, while cni0 sees them in clear; the
// engine's per-family counters in /metrics; a node restarted on the per-packet path (no offloads) talks
// IPv6 again; reconcile fixes nothing while all is in place and restores a deleted IPv6Network route; a
// clean stop removes both devices. (Modes auto, ipv4 and ipv6: wireguard-single-device.test.ts.)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, ipIn, runTag, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import { type DualStackNode, dualStackNodes } from '../helpers/dual-stack-nodes.js';
import { allPairsPing, checkPodMtu, sha256Transfer } from '../helpers/pod-traffic.js';
import { until } from '../helpers/wait.js';
import { WG_PORT, WG_PORT_V6, capture, metricsDump, toolsPresent, typeOf, udpDatagrams, wireProblem } from './fixtures/wg-hand-peer.js';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;
const NETWORK = '10.244.0.0/16';
const NETWORK6 = 'fd00:10:244::/56';
const METRICS_PORT = 18094;
const MB = Number(process.env.WG6_TRANSFER_MB ?? 64);

type Node6 = DualStackNode;

function leaseKey(prefix: string, subnet: string, subnet6: string): string {
  const [ip4, len4] = subnet.split('/') as [string, string];
  const [ip6, len6] = subnet6.split('/') as [string, string];
  return `${prefix}/subnets/${ip4.replace(/\.1$/, '.0')}-${len4}&${ip6.replace(/::1$/, '::')}-${len6}`;
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces and TUN');
} else if (!toolsPresent()) {
  t.plan(0, 'wg or tcpdump missing: apt-get install wireguard-tools tcpdump (deploy/local/install-deps.sh)');
} else {
  t.setTimeout(300_000);

  t.test('dual-stack wireguard, Mode separate: flannel-wg and flannel-wg-v6', async (t) => {
    const tag = runTag('wg6');
    const dir = mkdtempSync(join(tmpdir(), 'wg6-'));
    const cluster = await LocalCluster.create({ tag, nodes: 3, ipv6: true });
    t.teardown(async () => {
      await cluster.destroy();
      rmSync(dir, { recursive: true, force: true });
    });
    await cluster.putConfig({ Network: NETWORK, EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'wireguard' } });
    for (const node of cluster.nodes) cluster.startDaemon(node, ['--ip-masq', `--healthz-port=${METRICS_PORT}`]);
    const nodes = await dualStackNodes(cluster);
    const [a, b, c] = nodes as [Node6, Node6, Node6];

    await t.test('leases: BackendV6Data with the same key and port 51821, PublicIPv6', async (t) => {
      for (const n of nodes) {
        const raw = await cluster.etcd.get(leaseKey(cluster.prefix, n.subnet, n.subnet6));
        t.ok(raw, `${n.node.name}: the dual-stack lease key is in etcd`);
        const lease = JSON.parse(raw ?? '{}') as { PublicIPv6?: string; BackendType?: string; BackendData?: { PublicKey?: string; Port?: number }; BackendV6Data?: { PublicKey?: string; Port?: number } };
        t.equal(lease.BackendType, 'wireguard');
        t.equal(lease.PublicIPv6, n.node.underlayIp6, `${n.node.name}: PublicIPv6 is eth0's IPv6 address`);
        t.match(lease.BackendData?.PublicKey, /^[A-Za-z0-9+/]{43}=$/, `${n.node.name}: BackendData has a key`);
        t.same(lease.BackendV6Data, { PublicKey: lease.BackendData?.PublicKey, Port: WG_PORT_V6 }, `${n.node.name}: BackendV6Data: the same PublicKey, Port 51821`);
        t.equal(lease.BackendData?.Port, WG_PORT, `${n.node.name}: BackendData keeps Port 51820`);
        t.match(raw ?? '', /^\{"PublicIP":"[0-9.]+","PublicIPv6":"[0-9a-f:]+","BackendType":"wireguard","BackendData":\{"PublicKey":"[^"]+","Port":51820\},"BackendV6Data":\{"PublicKey":"[^"]+","Port":51821\}\}$/, `${n.node.name}: flannel's field order`);
      }
      t.equal(readEnvFile(cluster.subnetFileOf(a.node)).FLANNEL_MTU, '1420', 'FLANNEL_MTU: 1500 − 80');
    });

    await t.test('flannel-wg-v6: address /128, MTU, the IPv6Network route, the socket on 51821', async (t) => {
      for (const n of nodes) {
        const ns = n.node.ns;
        const addr = n.subnet6.replace(/::1\/64$/, '::');
        t.match(await ipIn(ns, ['-6', '-o', 'addr', 'show', 'dev', 'flannel-wg-v6']), `inet6 ${addr}/128`, `${n.node.name}: ${addr}/128`);
        const link = JSON.parse(await ipIn(ns, ['-d', '-j', 'link', 'show', 'flannel-wg-v6']))[0];
        t.equal(link.mtu, 1420, `${n.node.name}: MTU 1500 − 80, as flannel-wg`);
        t.equal(link.linkinfo?.info_kind, 'tun', `${n.node.name}: a TUN of our engine`);
        t.match(await ipIn(ns, ['-6', 'route', 'show', NETWORK6]), new RegExp(`^${NETWORK6.replace(/[/.]/g, '\\$&')} dev flannel-wg-v6`), `${n.node.name}: the IPv6Network's route on flannel-wg-v6`);
        t.match(await ipIn(ns, ['-4', 'route', 'show', NETWORK]), /dev flannel-wg/, `${n.node.name}: and the Network's on flannel-wg`);
        const sockets = (await execIn(ns, 'ss', ['-u', '-l', '-n'])).stdout;
        t.match(sockets, `[${n.node.underlayIp6}]:${WG_PORT_V6}`, `${n.node.name}: listening on [${n.node.underlayIp6}]:51821`);
        t.match(sockets, `${n.node.underlayIp}:${WG_PORT}`, `${n.node.name}: and on ${n.node.underlayIp}:51820`);
      }
    });

    await t.test('pods: all pairs on both families, IPv6 transfers, only WireGuard on the wire', async (t) => {
      const canary = `FLANNEL-TS-WG6-CANARY-${tag}-`;
      const pattern = Buffer.from(`${tag}v6`.slice(0, 12).padEnd(12, 'z')).toString('hex');
      const wire = await capture(a.node.ns, 'eth0', join(dir, 'eth0.pcap'), ['udp']);
      const inner = await capture(a.node.ns, 'cni0', join(dir, 'cni0.pcap'), ['ip6']);
      let ethRaw = Buffer.alloc(0);
      let cni = Buffer.alloc(0);
      try {
        t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod))).flat().every(Boolean), 'IPv4: all pairs');
        t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod6))).flat().every(Boolean), 'IPv6: all pairs');
        const p = await execIn(a.pod.ns, 'ping', ['-6', '-n', '-c', '3', '-i', '0.3', '-w', '10', '-p', pattern, b.pod6.ip]);
        t.equal(p.code, 0, 'an IPv6 ping with a pattern crosses');
        // The canary over IPv6, a → b, through tcp-transfer.mjs's server.
        const port = 5300 + Math.floor(Math.random() * 600);
        const server = spawnIn(b.pod.ns, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'server', b.pod6.ip, String(port)]);
        try {
          await until('transfer server', async () => server.output().includes('listening'), 10_000);
          const sent = (await execCheckedIn(a.pod.ns, process.execPath, [join(FIXTURES, 'wg-canary.mjs'), 'client', b.pod6.ip, String(port), String(2 << 20), canary])).trim();
          await Promise.race([server.exited, sleep(30_000)]);
          t.equal(server.output().trim().split('\n').at(-1), sent, 'the canary crosses over IPv6 intact');
        } finally {
          await stopProcess(server, 'SIGKILL', 1000);
        }
        const started = Date.now();
        await sha256Transfer(t, a.pod6, c.pod6, MB);
        t.comment(`${MB} MiB over IPv6 ${a.node.name} → ${c.node.name}: ${(MB * 8 * 1.048576 / (Date.now() - started)).toFixed(2)} Gbit/s (including start-up)`);
        await sha256Transfer(t, c.pod6, a.pod6, Math.min(MB, 16), 5203);
        // flannel-wg's 1420 fills the IPv6 underlay's 1500 exactly: 1420 + 32 (WireGuard) + 8 (UDP) + 40 (IPv6)
        await checkPodMtu(t, a.pod, c, 1420, /mtu[=:] ?1420/i);
      } finally {
        ethRaw = await wire.stop();
        cni = await inner.stop();
      }
      const all = udpDatagrams(ethRaw);
      const v6 = all.filter((d) => d.src.includes(':'));
      t.ok(v6.length > 1000, `${v6.length} IPv6 UDP datagrams on ${a.node.name}'s eth0 (${v6.filter((d) => d.fromTrain).length} out of GSO/GRO trains)`);
      t.same(v6.map((d) => wireProblem(d, 1420, WG_PORT_V6)).filter(Boolean).slice(0, 10), [], 'every IPv6 datagram is a WireGuard message of a valid type and size, 51821 ↔ 51821');
      t.ok(v6.some((d) => typeOf(d) === 4 && d.payload.length > 1000), 'full-size transport messages over IPv6');
      const peers6 = new Set([b, c].map((n) => n.node.underlayIp6));
      t.same([...new Set(v6.map((d) => (d.src === a.node.underlayIp6 ? d.dst : d.src)))].filter((x) => !peers6.has(x)), [], 'only the nodes speak WireGuard over IPv6');
      t.same(all.filter((d) => !d.src.includes(':')).map((d) => wireProblem(d)).filter(Boolean).slice(0, 10), [], 'and the IPv4 datagrams are WireGuard on 51820');
      t.ok(cni.includes(Buffer.from(canary)), 'control: the canary is in clear on cni0');
      t.ok(cni.includes(Buffer.from(pattern.repeat(2), 'hex')), 'control: the ping pattern is in clear on cni0');
      t.notOk(ethRaw.includes(Buffer.from(canary.slice(0, 16))), 'no canary (not even 16 bytes of it) in the eth0 capture');
      t.notOk(ethRaw.includes(Buffer.from(pattern.repeat(2), 'hex')), 'nor the ping pattern');
    });

    await t.test('/metrics: both engines\' counters, IPv6 peers named by their IPv6 subnet', async (t) => {
      const m = await metricsDump(a.node.ns, METRICS_PORT, 'flanneld_');
      const peer6 = b.subnet6.replace(/::1\/64$/, '::/64');
      const key = Object.keys(m).find((k) => k.startsWith('flanneld_peer_') && k.includes(`peer="${peer6}"`));
      t.ok(key, `a per-peer series for ${peer6}`);
      const completed = Object.entries(m).find(([k]) => k.startsWith('flanneld_wireguard_handshakes_total') && k.includes('completed'));
      // Two peers per family: the handshake counters of flannel-wg and flannel-wg-v6 add up.
      t.ok(completed && completed[1] >= 4, `handshakes completed on both devices: ${completed?.[1]}`);
      const lastHs = Object.keys(m).filter((k) => k.startsWith('flanneld_wireguard_peer_last_handshake'));
      t.ok(lastHs.some((k) => k.includes(`peer="${peer6}"`)), `the last handshake of the IPv6 peer ${peer6} is reported`);
    });

    await t.test('node2 restarted on the per-packet path (--datapath-offload=false): IPv6 sessions again, transfers both ways', async (t) => {
      t.equal(await cluster.stopDaemon(b.node), 0, `${b.node.name}: clean stop`);
      cluster.startDaemon(b.node, ['--ip-masq', `--healthz-port=${METRICS_PORT}`, '--datapath-offload=false']);
      await until(`${b.node.name} back, IPv6 pings crossing`, async () => {
        const d = cluster.daemons.get(b.node.name)!;
        if (d.proc.child.exitCode !== null) throw new Error(`flanneld on ${b.node.name} exited: ${d.proc.output()}`);
        return (await execIn(a.pod.ns, 'ping', ['-6', '-n', '-c', '1', '-W', '1', b.pod6.ip])).code === 0;
      }, 30_000);
      const lines = cluster.daemons.get(b.node.name)!.proc.output().split('\n');
      t.ok(lines.some((l) => l.includes('flannel-wg-v6') && l.includes('offloads disabled by --datapath-offload=false')), `${b.node.name}: flannel-wg-v6 on the per-packet path`);
      await sha256Transfer(t, a.pod6, b.pod6, 16, 5204);
      await sha256Transfer(t, b.pod6, a.pod6, 16, 5205);
      t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod))).flat().every(Boolean), 'IPv4: all pairs still');
    });

    await t.test('reconcile: nothing to fix while all is in place; a deleted IPv6Network route comes back', async (t) => {
      const fixed = async () => (await metricsDump(a.node.ns, METRICS_PORT, 'flanneld_reconcile_'))['flanneld_reconcile_corrections_total{kind="fixed"}'] ?? 0;
      const runs = async () => (await metricsDump(a.node.ns, METRICS_PORT, 'flanneld_reconcile_'))['flanneld_reconcile_runs_total{result="ok"}'] ?? 0;
      const [f0, r0] = [await fixed(), await runs()];
      await until('two reconcile passes', async () => (await runs()) >= r0 + 2, 40_000);
      t.equal(await fixed(), f0, 'two passes over both devices fixed nothing');
      await ipIn(a.node.ns, ['-6', 'route', 'del', NETWORK6, 'dev', 'flannel-wg-v6']);
      await until('the IPv6Network route back on flannel-wg-v6', async () => (await ipIn(a.node.ns, ['-6', 'route', 'show', NETWORK6])).includes('dev flannel-wg-v6'), 30_000);
      t.ok((await fixed()) > f0, 'counted as a fix');
      t.ok((await allPairsPing(cluster, [a.pod6, b.pod6])).flat().every(Boolean), 'IPv6 traffic flows again');
    });

    await t.test('a clean stop removes flannel-wg and flannel-wg-v6', async (t) => {
      t.equal(await cluster.stopDaemon(c.node), 0, `${c.node.name}: clean stop`);
      for (const dev of ['flannel-wg', 'flannel-wg-v6']) {
        t.not((await execIn(c.node.ns, 'ip', ['link', 'show', dev])).code, 0, `${c.node.name}: ${dev} is gone`);
      }
      t.notMatch((await execIn(c.node.ns, 'ss', ['-u', '-l', '-n'])).stdout, /:5182[01]\b/, 'no socket left on 51820 or 51821');
      t.ok((await allPairsPing(cluster, [a.pod6, b.pod6])).flat().every(Boolean), 'the other two still talk over IPv6');
    });
  });
}
