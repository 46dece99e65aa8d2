// Dual-stack (EnableIPv6) wireguard in flannel's single-device Modes ipv4, ipv6 and auto, on 3 nodes of our own
// flanneld in real namespaces with a real etcd: one flannel-wg on ListenPort (51820) carries IPv4 and IPv6
// pods, over IPv4 (Mode ipv4: PublicIP:51820) or IPv6 (Mode ipv6: [PublicIPv6]:51820); no flannel-wg-v6.
// Checked per Mode: the lease (BackendData and BackendV6Data both with the key and Port 51820, the one port
// that listens), flannel-wg's addresses <subnet>/32 and <IPv6 subnet>/128, both Networks routed into it,
// one socket of the Mode's family on 51820 and none on 51821; pods of all pairs ping over IPv4 and IPv6; a
// sha256 TCP transfer over IPv6 and one over IPv4; DF pings at the exact MTU (1420) on both families and
// Packet Too Big one byte above; on node1's eth0 (tcpdump) every UDP datagram is a
// WireGuard message on 51820 ↔ 51820 over the Mode's outer family only, and no ping pattern appears in it;
// reconcile restores a deleted IPv6 address and route; a clean stop removes flannel-wg.
// Mode auto: one socket on [::]:51820 for both families, and the outer family flannel's rule picks per peer
// seen on the wire (the handshake initiations), both ways, with every pair talking on both families.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execIn, ipIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost } from '../../deploy/local/topology.js';
import { type DualStackNode, dualStackNodes } from '../helpers/dual-stack-nodes.js';
import { allPairsPing, checkPodMtu, sha256Transfer } from '../helpers/pod-traffic.js';
import { until } from '../helpers/wait.js';
import { WG_PORT, capture, toolsPresent, typeOf, udpDatagrams, wireProblem } from './fixtures/wg-hand-peer.js';

const NETWORK = '10.244.0.0/16';
const NETWORK6 = 'fd00:10:244::/56';
const MB = Number(process.env.WG_SINGLE_TRANSFER_MB ?? 24);

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

  for (const mode of ['ipv4', 'ipv6'] as const) {
    t.test(`dual-stack wireguard, Mode ${mode}: one flannel-wg for both families over IPv${mode === 'ipv4' ? 4 : 6}`, async (t) => {
      const tag = runTag(`wgs${mode === 'ipv4' ? 4 : 6}`);
      const dir = mkdtempSync(join(tmpdir(), 'wgs-'));
      const cluster = await LocalCluster.create({ tag, nodes: 3, ipv6: true });
      t.teardown(async () => {
        await cluster.destroy();
        rmSync(dir, { recursive: true, force: true });
      });
      await cluster.putConfig({ Network: NETWORK, EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'wireguard', Mode: mode } });
      for (const node of cluster.nodes) cluster.startDaemon(node, ['--ip-masq']);
      const nodes = await dualStackNodes(cluster);
      const [a, b, c] = nodes as [Node6, Node6, Node6];
      const outer6 = mode === 'ipv6';

      await t.test('leases: the same key and Port 51820 in BackendData and BackendV6Data', async (t) => {
        for (const n of nodes) {
          const raw = await cluster.etcd.get(leaseKey(cluster.prefix, n.subnet, n.subnet6));
          const lease = JSON.parse(raw ?? '{}') as { PublicIPv6?: string; BackendData?: { PublicKey?: string; Port?: number }; BackendV6Data?: { PublicKey?: string; Port?: number } };
          t.equal(lease.PublicIPv6, n.node.underlayIp6, `${n.node.name}: PublicIPv6`);
          t.match(lease.BackendData?.PublicKey, /^[A-Za-z0-9+/]{43}=$/, `${n.node.name}: a key`);
          t.same(lease.BackendData, { PublicKey: lease.BackendData?.PublicKey, Port: WG_PORT }, `${n.node.name}: BackendData on 51820`);
          t.same(lease.BackendV6Data, lease.BackendData, `${n.node.name}: BackendV6Data the same: the one port that listens`);
        }
        t.equal(readEnvFile(cluster.subnetFileOf(a.node)).FLANNEL_MTU, '1420', 'FLANNEL_MTU: 1500 − 80');
      });

      await t.test('flannel-wg only: /32 and /128, both Networks routed into it, one socket of the Mode\'s family', async (t) => {
        for (const n of nodes) {
          const ns = n.node.ns;
          t.not((await execIn(ns, 'ip', ['link', 'show', 'flannel-wg-v6'])).code, 0, `${n.node.name}: no flannel-wg-v6`);
          const addr4 = n.subnet.replace(/\.1\/24$/, '.0');
          const addr6 = n.subnet6.replace(/::1\/64$/, '::');
          t.match(await ipIn(ns, ['-4', '-o', 'addr', 'show', 'dev', 'flannel-wg']), `inet ${addr4}/32`, `${n.node.name}: ${addr4}/32`);
          t.match(await ipIn(ns, ['-6', '-o', 'addr', 'show', 'dev', 'flannel-wg']), `inet6 ${addr6}/128`, `${n.node.name}: ${addr6}/128`);
          t.match(await ipIn(ns, ['-4', 'route', 'show', NETWORK]), /dev flannel-wg\b/, `${n.node.name}: the Network on flannel-wg`);
          t.match(await ipIn(ns, ['-6', 'route', 'show', NETWORK6]), /dev flannel-wg\b(?!-)/, `${n.node.name}: the IPv6Network on flannel-wg`);
          const link = JSON.parse(await ipIn(ns, ['-d', '-j', 'link', 'show', 'flannel-wg']))[0];
          t.equal(link.mtu, 1420, `${n.node.name}: MTU 1500 − 80`);
          const sockets = (await execIn(ns, 'ss', ['-u', '-l', '-n'])).stdout;
          t.match(sockets, outer6 ? `[${n.node.underlayIp6}]:${WG_PORT}` : `${n.node.underlayIp}:${WG_PORT}`, `${n.node.name}: listening on 51820 over IPv${outer6 ? 6 : 4}`);
          t.notMatch(sockets, /:51821\b/, `${n.node.name}: nothing on 51821`);
        }
      });

      await t.test(`pods: all pairs on both families, transfers, only WireGuard over IPv${outer6 ? 6 : 4} on 51820`, async (t) => {
        const pattern = Buffer.from(`${tag}sd`.slice(0, 12).padEnd(12, 'z')).toString('hex');
        const wire = await capture(a.node.ns, 'eth0', join(dir, 'eth0.pcap'), ['udp']);
        let ethRaw = Buffer.alloc(0);
        try {
          t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod))).flat().every(Boolean), 'IPv4: all pairs');
          t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod6))).flat().every(Boolean), 'IPv6: all pairs');
          t.equal((await execIn(a.pod.ns, 'ping', ['-6', '-n', '-c', '3', '-i', '0.3', '-w', '10', '-p', pattern, b.pod6.ip])).code, 0, 'an IPv6 ping with a pattern crosses');
          t.equal((await execIn(a.pod.ns, 'ping', ['-4', '-n', '-c', '3', '-i', '0.3', '-w', '10', '-p', pattern, c.pod.ip])).code, 0, 'an IPv4 ping with a pattern crosses');
          await sha256Transfer(t, a.pod6, c.pod6, MB, 5206);
          await sha256Transfer(t, c.pod, a.pod, Math.min(MB, 8), 5207);
          await checkPodMtu(t, a.pod, c, 1420, /mtu[=:] ?1420/i);
        } finally {
          ethRaw = await wire.stop();
        }
        const all = udpDatagrams(ethRaw);
        t.ok(all.length > 1000, `${all.length} UDP datagrams on ${a.node.name}'s eth0`);
        t.same(all.filter((d) => d.src.includes(':') !== outer6).map((d) => `${d.src} > ${d.dst}`).slice(0, 5), [], `no UDP over IPv${outer6 ? 4 : 6}`);
        t.same(all.map((d) => wireProblem(d, 1420, WG_PORT)).filter(Boolean).slice(0, 10), [], 'every datagram is a WireGuard message of a valid type and size, 51820 ↔ 51820');
        t.ok(all.some((d) => typeOf(d) === 4 && d.payload.length > 1000), 'full-size transport messages');
        const peers = new Set([b, c].map((n) => (outer6 ? n.node.underlayIp6 : n.node.underlayIp)));
        const own = outer6 ? a.node.underlayIp6 : a.node.underlayIp;
        t.same([...new Set(all.map((d) => (d.src === own ? d.dst : d.src)))].filter((x) => !peers.has(x as string)), [], 'only the nodes speak WireGuard');
        t.notOk(ethRaw.includes(Buffer.from(pattern.repeat(2), 'hex')), 'no ping pattern in the eth0 capture');
      });

      await t.test('reconcile puts back a deleted /128 and IPv6Network route on flannel-wg', async (t) => {
        const addr6 = a.subnet6.replace(/::1\/64$/, '::');
        await ipIn(a.node.ns, ['-6', 'route', 'del', NETWORK6, 'dev', 'flannel-wg']);
        await ipIn(a.node.ns, ['-6', 'addr', 'del', `${addr6}/128`, 'dev', 'flannel-wg']);
        await until('the IPv6 address and route back on flannel-wg', async () =>
          (await ipIn(a.node.ns, ['-6', 'route', 'show', NETWORK6])).includes('dev flannel-wg') &&
          (await ipIn(a.node.ns, ['-6', '-o', 'addr', 'show', 'dev', 'flannel-wg'])).includes(`${addr6}/128`), 30_000);
        t.match(await ipIn(a.node.ns, ['-4', 'route', 'show', NETWORK]), /dev flannel-wg\b/, 'the Network route is still there');
        t.ok((await allPairsPing(cluster, [a.pod6, b.pod6])).flat().every(Boolean), 'IPv6 flows again');
      });

      await t.test('a clean stop removes flannel-wg; the others keep talking on both families', async (t) => {
        t.equal(await cluster.stopDaemon(c.node), 0, `${c.node.name}: clean stop`);
        t.not((await execIn(c.node.ns, 'ip', ['link', 'show', 'flannel-wg'])).code, 0, `${c.node.name}: flannel-wg is gone`);
        t.ok((await allPairsPing(cluster, [a.pod6, b.pod6])).flat().every(Boolean), 'IPv6 between the other two');
        t.ok((await allPairsPing(cluster, [a.pod, b.pod])).flat().every(Boolean), 'IPv4 between the other two');
      });
    });
  }

  // Mode auto: flannel's selectPublicEndpoint per peer. node3 advertises an RFC 1918 PublicIP (--public-ip
  // 10.99.0.3, on no interface: the rule must never dial it), so the others dial its PublicIPv6, which is
  // not RFC 4193; node3 dials the others' PublicIP (not RFC 1918, and it has an IPv4 address of its own).
  t.test('dual-stack wireguard, Mode auto: one flannel-wg, one socket of both families, the outer family chosen per peer', async (t) => {
    const tag = runTag('wgsa');
    const dir = mkdtempSync(join(tmpdir(), 'wgs-'));
    const cluster = await LocalCluster.create({ tag, nodes: 3, ipv6: true });
    t.teardown(async () => {
      await cluster.destroy();
      rmSync(dir, { recursive: true, force: true });
    });
    const PRIVATE_IP = '10.99.0.3';
    await cluster.putConfig({ Network: NETWORK, EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'wireguard', Mode: 'auto' } });
    // From before the start: a new peer gets a handshake at once, and the first initiation each way shows
    // the address its sender chose (later ones may follow a roamed endpoint).
    const [, , node3] = cluster.nodes as [NodeHost, NodeHost, NodeHost];
    const wire = await capture(node3.ns, 'eth0', join(dir, 'auto.pcap'), ['udp']);
    cluster.nodes.forEach((node, i) => cluster.startDaemon(node, i === 2 ? ['--public-ip', PRIVATE_IP] : []));
    const nodes = await dualStackNodes(cluster);
    const [a, b, c] = nodes as [Node6, Node6, Node6];

    await t.test('leases and sockets: both families in the lease, one socket on [::]:51820', async (t) => {
      const raw = await cluster.etcd.get(leaseKey(cluster.prefix, c.subnet, c.subnet6));
      const lease = JSON.parse(raw ?? '{}') as { PublicIP?: string; PublicIPv6?: string; BackendData?: unknown; BackendV6Data?: unknown };
      t.equal(lease.PublicIP, PRIVATE_IP, `${c.node.name}: PublicIP from --public-ip`);
      t.equal(lease.PublicIPv6, c.node.underlayIp6, `${c.node.name}: PublicIPv6`);
      t.same(lease.BackendV6Data, lease.BackendData, 'BackendV6Data the same as BackendData');
      for (const n of nodes) {
        t.not((await execIn(n.node.ns, 'ip', ['link', 'show', 'flannel-wg-v6'])).code, 0, `${n.node.name}: no flannel-wg-v6`);
        const sockets = (await execIn(n.node.ns, 'ss', ['-u', '-l', '-n'])).stdout.split('\n').filter((l) => /:5182\d\b/.test(l));
        t.equal(sockets.length, 1, `${n.node.name}: one socket on 51820 (${sockets.join(' | ').replace(/\s+/g, ' ')})`);
        t.match(sockets[0] ?? '', /(\[::\]|\*):51820\b/, `${n.node.name}: bound to [::]:51820, both families`);
      }
    });

    await t.test('the rule on the wire: the others dial node3 over IPv6, node3 dials them over IPv4; pods on both families', async (t) => {
      let raw = Buffer.alloc(0);
      try {
        t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod))).flat().every(Boolean), 'IPv4: all pairs');
        t.ok((await allPairsPing(cluster, nodes.map((n) => n.pod6))).flat().every(Boolean), 'IPv6: all pairs');
        await sha256Transfer(t, a.pod6, c.pod6, Math.min(MB, 8), 5208);
        await sha256Transfer(t, c.pod, b.pod, Math.min(MB, 8), 5209);
        // both outer families at the exact MTU: a → c over IPv6, c → b over IPv4
        await checkPodMtu(t, a.pod, c, 1420, /mtu[=:] ?1420/i);
        await checkPodMtu(t, c.pod, b, 1420, /mtu[=:] ?1420/i);
      } finally {
        raw = await wire.stop();
      }
      const all = udpDatagrams(raw);
      const addrs = (n: Node6) => [n.node.underlayIp, n.node.underlayIp6, ...(n === c ? [PRIVATE_IP] : [])];
      const first = (from: Node6, to: Node6) => {
        const d = all.find((x) => typeOf(x) === 1 && addrs(from).includes(x.src) && addrs(to).includes(x.dst));
        return d && `${d.src} > ${d.dst}`;
      };
      for (const n of [a, b]) {
        t.equal(first(n, c), `${n.node.underlayIp6} > ${c.node.underlayIp6}`, `${n.node.name} dials ${c.node.name} at its PublicIPv6 (its PublicIP is RFC 1918)`);
        t.equal(first(c, n), `${c.node.underlayIp} > ${n.node.underlayIp}`, `${c.node.name} dials ${n.node.name} at its PublicIP (public, and ${c.node.name} has IPv4)`);
      }
      t.notOk(all.some((d) => d.dst === PRIVATE_IP), `nothing is sent to ${PRIVATE_IP}`);
      t.ok(all.length > 1000, `${all.length} UDP datagrams on ${c.node.name}'s eth0`);
      t.same(all.map((d) => wireProblem(d, 1420, WG_PORT)).filter(Boolean).slice(0, 10), [], 'every datagram is a WireGuard message of a valid type and size, 51820 ↔ 51820');
    });

    await t.test('between a and b (both PublicIPs public) only IPv4 crosses', async (t) => {
      const wire = await capture(a.node.ns, 'eth0', join(dir, 'ab.pcap'), ['udp']);
      let raw = Buffer.alloc(0);
      try {
        t.ok((await allPairsPing(cluster, [a.pod6, b.pod6])).flat().every(Boolean), 'IPv6 pods a ↔ b');
        t.ok((await allPairsPing(cluster, [a.pod, b.pod])).flat().every(Boolean), 'IPv4 pods a ↔ b');
      } finally {
        raw = await wire.stop();
      }
      const ab = udpDatagrams(raw).filter((d) => [d.src, d.dst].some((x) => x === b.node.underlayIp || x === b.node.underlayIp6));
      t.ok(ab.length > 0, `${ab.length} datagrams between a and b`);
      t.same(ab.filter((d) => d.src.includes(':')).map((d) => `${d.src} > ${d.dst}`).slice(0, 5), [], 'none over IPv6');
    });

    await t.test('a clean stop removes flannel-wg and the socket', async (t) => {
      t.equal(await cluster.stopDaemon(c.node), 0, `${c.node.name}: clean stop`);
      t.not((await execIn(c.node.ns, 'ip', ['link', 'show', 'flannel-wg'])).code, 0, `${c.node.name}: flannel-wg is gone`);
      t.notMatch((await execIn(c.node.ns, 'ss', ['-u', '-l', '-n'])).stdout, /:51820\b/, 'no socket left on 51820');
    });
  });
}
