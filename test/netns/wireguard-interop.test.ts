// Our wireguard backend checked against real WireGuard, not against ourselves (issue 16). One LocalCluster:
// node1 runs our flanneld (wireguard backend) with a pod behind it; node2 runs no flanneld and is a
// WireGuard peer built by hand the way flannel builds one (fixtures/wg-hand-peer.ts): wireguard-go on a
// TUN, configured with Debian's `wg` from node1's lease read from etcd, address 10.244.200.0/32 and the
// Network's route on it, its own lease written by hand into etcd. For Debian's wireguard-go and for the
// latest golang.zx2c4.com/wireguard (skipped with one line where it cannot be built), without and with a
// PSK (the second run also with PersistentKeepaliveInterval): our node initiates (node1 pings first),
// then wireguard-go is restarted and initiates (node2 pings first); pings both ways; a canary plaintext
// through the tunnel both ways; on node1's eth0 (tcpdump) only WireGuard messages of the right types and
// sizes on 51820 and no canary, while the same capture on cni0 does see it; keepalives of 32 bytes at
// the configured interval while idle; and TCP transfers with equal sha256: per binary 1 GiB each way
// (pod → wireguard-go without PSK, wireguard-go → pod with PSK), 64 MiB the other way.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, ipIn, runTag, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { buildLatestWireguardGo, debianWireguardGo } from '../../deploy/local/wireguard-go.js';
import { until } from '../helpers/wait.js';
import {
  HandPeer, NETWORK, WG_PORT, capture, genPsk, isKeepalive, readLease, toolsPresent, tryMetric, typeOf, udpDatagrams, wireProblem, type Datagram,
} from './fixtures/wg-hand-peer.js';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;
const METRICS_PORT = 18093;
const BIG = Number(process.env.WG_INTEROP_BYTES ?? 1024 ** 3);
const SMALL = Math.min(BIG, 64 << 20);
const KEEPALIVE = 2;
const PEER_SUBNET = '10.244.200.0/24';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces and TUN');
} else if (!toolsPresent()) {
  t.plan(0, 'wg or tcpdump missing: apt-get install wireguard-tools tcpdump (deploy/local/install-deps.sh)');
} else {
  const debian = debianWireguardGo();
  const latest = await buildLatestWireguardGo();
  // Two 1 GiB transfers per binary: ~10 s each at 1 Gbit/s, 30 s on a loaded 2-core machine; the whole
  // file takes ~2 min on an idle machine, ~4 min under load: the timeout leaves room for a busy one.
  t.setTimeout(Math.max(300_000, 300_000 * (BIG / 1024 ** 3) + 120_000));

  const tag = runTag('wi');
  const dir = mkdtempSync(join(tmpdir(), 'wg-interop-'));
  const cluster = await LocalCluster.create({ tag, nodes: 2 });
  const [n1, n2] = cluster.nodes as [NodeHost, NodeHost];
  const peer = new HandPeer({ cluster, node: n2, subnet: PEER_SUBNET, bin: debian.ok ? debian.bin : '/usr/bin/wireguard-go', dev: `${tag}g`, dir });
  t.teardown(async () => {
    await peer.destroy();
    await cluster.destroy();
    if (process.env.WG_INTEROP_KEEP) t.comment(`captures kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });

  const metric = async (name: string, labels = ''): Promise<number> => {
    const v = await tryMetric(n1.ns, METRICS_PORT, name, labels);
    if (v === undefined) throw new Error(`node1 /metrics does not answer:\n${cluster.daemons.get(n1.name)?.proc.output().slice(-2000)}`);
    return v;
  };
  const hsMsgs = (direction: string, type: string) => metric('flanneld_wireguard_handshake_messages_total', `direction="${direction}",type="${type}"`);

  /** (Re)starts our flanneld on node1 with `backend`; waits for its device, its /metrics and its first
   * (eager) initiation towards node2, which nobody answers while wireguard-go is down. */
  async function startOurs(backend: Record<string, unknown>): Promise<void> {
    await cluster.stopDaemon(n1, 'SIGTERM');
    await cluster.putConfig({ Network: NETWORK, Backend: { Type: 'wireguard', ...backend } });
    cluster.startDaemon(n1, [`--healthz-port=${METRICS_PORT}`]);
    await until('flanneld on node1 up, initiating towards node2', async () => {
      const d = cluster.daemons.get(n1.name)!;
      if (d.proc.child.exitCode !== null) throw new Error(`flanneld exited: ${d.proc.output()}`);
      const sent = await tryMetric(n1.ns, METRICS_PORT, 'flanneld_wireguard_handshake_messages_total', 'direction="sent",type="initiation"');
      return (sent ?? 0) >= 1;
    }, 30_000);
  }

  await peer.newKey();
  await peer.writeLease();
  await startOurs({});
  const p1: PodHost = await cluster.addPod(n1, await cluster.waitForSubnet(n1));

  t.test('our node as flannel sets it up: lease, flannel-wg, MTU, route', async (t) => {
    const lease = await readLease(cluster, await cluster.waitForSubnet(n1));
    t.match(lease.raw, /^\{"PublicIP":"192\.0\.2\.1","PublicIPv6":null,"BackendType":"wireguard","BackendData":\{"PublicKey":"[A-Za-z0-9+/]{43}=","Port":51820\}\}$/, 'flannel\'s lease JSON');
    t.match(await ipIn(n1.ns, ['-o', 'addr', 'show', 'dev', 'flannel-wg']), new RegExp(`inet ${lease.subnet.split('/')[0]!.replace(/\./g, '\\.')}/32`), 'address <subnet>.0/32');
    t.match(await ipIn(n1.ns, ['link', 'show', 'flannel-wg']), /mtu 1420/, 'MTU 1500 − 80');
    t.match(await ipIn(n1.ns, ['route', 'show', NETWORK]), /^10\.244\.0\.0\/16 dev flannel-wg/, 'one route for the Network');
  });

  const ping = async (ns: string, to: string, extra: string[] = []) =>
    execIn(ns, 'ping', ['-n', '-c', '3', '-i', '0.3', '-w', '15', ...extra, to]);

  /** A TCP transfer through the tunnel: server on (sns, sip), client in cns; sha256 of both ends. */
  async function transfer(sns: string, sip: string, cns: string, bytes: number, canary?: string): Promise<{ sent: string; got: string; ms: number }> {
    const port = 5300 + Math.floor(Math.random() * 600);
    const server = spawnIn(sns, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'server', sip, String(port)]);
    try {
      await until('transfer server', async () => server.output().includes('listening') || (server.child.exitCode !== null && Promise.reject(new Error(server.output()))), 10_000);
      const started = Date.now();
      const args = canary ? [join(FIXTURES, 'wg-canary.mjs'), 'client', sip, String(port), String(bytes), canary] : [join(FIXTURES, 'tcp-transfer.mjs'), 'client', sip, String(port), String(bytes)];
      const sent = (await execCheckedIn(cns, process.execPath, args)).trim();
      await Promise.race([server.exited, sleep(30_000)]);
      return { sent, got: server.output().trim().split('\n').at(-1) ?? '', ms: Date.now() - started };
    } finally {
      await stopProcess(server, 'SIGKILL', 1000);
    }
  }

  const describe = (ds: Datagram[]) => ds.map((d) => `${d.src === n1.underlayIp ? 'n1' : d.src === n2.underlayIp ? 'n2' : d.src}→ ${typeOf(d)}/${d.payload.length}`);

  async function run(t: Test, bin: string, label: string, psk: string | undefined, keepalive: number): Promise<void> {
    await peer.stop();
    await startOurs({ ...(psk ? { PSK: psk } : {}), ...(keepalive ? { PersistentKeepaliveInterval: keepalive } : {}) });
    const lease = await readLease(cluster, await cluster.waitForSubnet(n1));
    const canary = `FLANNEL-TS-WG-CANARY-${tag}-${label.replace(/\W+/g, '-')}-`;
    const pingPattern = Buffer.from(`${tag}wg`.slice(0, 12).padEnd(12, 'z')).toString('hex'); // 12 bytes, ping -p repeats them
    const wire = await capture(n1.ns, 'eth0', join(dir, `${label}-eth0.pcap`));
    const inner = await capture(n1.ns, 'cni0', join(dir, `${label}-cni0.pcap`), ['tcp', 'or', 'icmp']);
    const completedBefore = await metric('flanneld_wireguard_handshakes_total', 'result="completed"');
    peer.bin = bin;

    // 1. Our node initiates: wireguard-go up and configured from our lease; node1's pod sends first.
    await peer.start();
    await peer.addPeer(lease, psk);
    const startedPeerAt = Date.now() / 1000;
    const out1 = await ping(p1.ns, peer.devAddress);
    t.equal(out1.code, 0, `our pod pings wireguard-go's device address: ${out1.stdout.split('\n').slice(-2).join(' ')}`);
    const peerView = (await peer.peers()).get(lease.publicKey);
    t.ok(peerView && peerView.latestHandshake > 0, `wg show: wireguard-go completed a handshake with our key (${JSON.stringify(peerView)})`);
    const in1 = await ping(n2.ns, p1.ip, ['-p', pingPattern]);
    t.equal(in1.code, 0, 'wireguard-go\'s node pings our pod (pattern in the payload)');
    const out1b = await ping(p1.ns, peer.devAddress, ['-p', pingPattern]);
    t.equal(out1b.code, 0, 'and our pod pings back (pattern in the payload)');

    // 2. A canary through the tunnel in both directions.
    const c1 = await transfer(n2.ns, peer.devAddress, p1.ns, 2 << 20, canary);
    t.equal(c1.got, c1.sent, 'canary pod → wireguard-go node arrives intact');
    const c2 = await transfer(p1.ns, p1.ip, n2.ns, 2 << 20, canary);
    t.equal(c2.got, c2.sent, 'canary wireguard-go node → pod arrives intact');

    // 3. wireguard-go forgets (restart) and initiates: its node sends first.
    await peer.stop();
    const restartedAt = Date.now() / 1000;
    const responsesBefore = await hsMsgs('sent', 'response');
    await peer.start();
    await peer.addPeer(lease, psk);
    const in2 = await ping(n2.ns, p1.ip);
    t.equal(in2.code, 0, `after its restart wireguard-go's node pings our pod: ${in2.stdout.split('\n').slice(-2).join(' ')}`);
    const out2 = await ping(p1.ns, peer.devAddress);
    t.equal(out2.code, 0, 'and our pod pings it');
    t.ok((await hsMsgs('sent', 'response')) > responsesBefore, 'we sent a handshake response');

    // 4. Keepalives while idle.
    let idle: [number, number] | undefined;
    let keepalivesSent = 0;
    if (keepalive) {
      await sleep(1000);
      const k0 = await hsMsgs('sent', 'keepalive');
      const from = Date.now() / 1000;
      await sleep(keepalive * 3500 + 500);
      idle = [from, Date.now() / 1000];
      keepalivesSent = (await hsMsgs('sent', 'keepalive')) - k0;
    }

    const ethRaw = await wire.stop();
    const eth = udpDatagrams(ethRaw);
    const cni = await inner.stop();

    // The wire: every UDP datagram is a WireGuard message of the right type and size on 51820.
    const wg = eth.filter((d) => d.sport === WG_PORT || d.dport === WG_PORT);
    t.ok(wg.length > 1000, `${wg.length} WireGuard messages captured on node1's eth0 (${eth.filter((d) => d.fromTrain).length} of them out of GSO/GRO trains)`);
    t.same(eth.map((d) => wireProblem(d)).filter(Boolean).slice(0, 10), [], 'only WireGuard messages of the right types and sizes, 51820 ↔ 51820');
    const types = (tp: number, src: string) => wg.filter((d) => typeOf(d) === tp && d.src === src);
    t.same(wg.filter((d) => ![n1.underlayIp, n2.underlayIp].includes(d.src)), [], 'only node1 and node2 speak WireGuard');
    // Who initiated: the first handshake after wireguard-go came up, and the first after its restart.
    const firstHs = (after: number, before = Infinity) => describe(wg.filter((d) => d.time >= after && d.time < before && (typeOf(d) === 1 || typeOf(d) === 2)).slice(0, 4));
    const before3 = wg.filter((d) => d.time < restartedAt);
    const firstResp1 = before3.find((d) => typeOf(d) === 2 && d.time >= startedPeerAt - 2);
    t.equal(firstResp1?.src, n2.underlayIp, `first handshake: our initiation, wireguard-go's response (${firstHs(startedPeerAt - 2, restartedAt).join(', ')})`);
    const after3 = wg.filter((d) => d.time >= restartedAt);
    const firstInit2 = after3.find((d) => typeOf(d) === 1);
    const firstResp2 = after3.find((d) => typeOf(d) === 2);
    t.equal(firstInit2?.src, n2.underlayIp, 'after the restart wireguard-go initiates');
    t.equal(firstResp2?.src, n1.underlayIp, `and we respond (${firstHs(restartedAt).join(', ')})`);
    t.ok((await metric('flanneld_wireguard_handshakes_total', 'result="completed"')) - completedBefore >= 2, 'two handshakes completed, counted in /metrics');
    t.same([types(1, n1.underlayIp), types(1, n2.underlayIp), types(2, n1.underlayIp), types(2, n2.underlayIp)].map((a) => a.every((d) => d.payload.length === (typeOf(d) === 1 ? 148 : 92))), [true, true, true, true], 'initiations 148 bytes, responses 92');
    // No plaintext: the canary and the ping pattern are seen on cni0 (inside) and nowhere in the eth0 capture.
    t.ok(cni.includes(Buffer.from(canary)), 'control: the canary is in clear on cni0');
    t.ok(cni.includes(Buffer.from(pingPattern.repeat(2), 'hex')), 'control: the ping pattern is in clear on cni0');
    t.notOk(ethRaw.includes(Buffer.from(canary)), 'the canary appears nowhere in the eth0 capture');
    t.notOk(ethRaw.includes(Buffer.from(canary.slice(0, 16))), 'not even its first 16 bytes');
    t.notOk(ethRaw.includes(Buffer.from(pingPattern.repeat(2), 'hex')), 'nor the ping pattern');

    if (idle) {
      const [from, to] = idle;
      const ka = wg.filter((d) => d.time >= from && d.time <= to && d.src === n1.underlayIp);
      const gaps = ka.slice(1).map((d, i) => Number((d.time - (ka[i] as Datagram).time).toFixed(2)));
      t.ok(ka.length >= 3 && ka.every(isKeepalive), `idle ${(to - from).toFixed(1)} s: node1 sent only keepalives of 32 bytes, ${ka.length} of them (${describe(ka).join(', ')})`);
      t.ok(gaps.length >= 2 && gaps.every((g) => g >= keepalive - 0.3 && g <= keepalive + 0.7), `at the ${keepalive} s interval: gaps ${gaps.join(', ')} s`);
      t.ok(keepalivesSent >= ka.length - 1, `/metrics counted ${keepalivesSent} keepalives sent`);
      const rx = (await peer.peers()).get(lease.publicKey);
      t.ok(rx && rx.rx > 0, 'wireguard-go received them (wg show transfer rx)');
    }

    // 5. Checksummed TCP: 1 GiB in one direction (pod → wireguard-go without PSK, the other way with PSK,
    // so each binary carries 1 GiB both ways and each PSK setting 1 GiB), 64 MiB in the other.
    if (BIG > 0) {
      const outBytes = psk ? SMALL : BIG;
      const inBytes = psk ? BIG : SMALL;
      const a = await transfer(n2.ns, peer.devAddress, p1.ns, outBytes);
      t.equal(a.got, a.sent, `${outBytes} bytes pod → wireguard-go node: sha256 equal (${a.sent.slice(0, 16)}…), ${(outBytes * 8 / a.ms / 1e6).toFixed(2)} Gbit/s`);
      const b = await transfer(p1.ns, p1.ip, n2.ns, inBytes);
      t.equal(b.got, b.sent, `${inBytes} bytes wireguard-go node → pod: sha256 equal (${b.sent.slice(0, 16)}…), ${(inBytes * 8 / b.ms / 1e6).toFixed(2)} Gbit/s`);
    }
    t.equal(cluster.daemons.get(n1.name)!.proc.child.exitCode, null, 'flanneld still running');
  }

  const binaries: Array<{ name: string; short: string; bin: string }> = [];
  if (debian.ok) binaries.push({ name: 'Debian\'s wireguard-go', short: 'debian', bin: debian.bin });
  else t.comment(`Debian's wireguard-go skipped: ${debian.reason}`);
  if (latest.ok) binaries.push({ name: `the latest wireguard-go (${latest.version})`, short: 'latest', bin: latest.bin });
  else t.comment(`latest wireguard-go skipped: ${latest.reason}`);
  for (const b of binaries) {
    t.test(`${b.name}, no PSK`, (t) => run(t, b.bin, `${b.short}-nopsk`, undefined, 0));
    t.test(`${b.name}, PSK and PersistentKeepaliveInterval ${KEEPALIVE}`, async (t) => run(t, b.bin, `${b.short}-psk`, await genPsk(), KEEPALIVE));
  }
}
