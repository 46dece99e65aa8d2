// Our flannel-wg-v6 (wireguard over IPv6, Mode separate) against real WireGuard: the IPv6 twin of
// wireguard-interop.test.ts. One dual-stack LocalCluster: node1 runs our flanneld (wireguard, EnableIPv6,
// a PSK) with a pod behind it; node2 runs no flanneld but Debian's wireguard-go on a TUN configured with
// Debian's `wg` the way flannel configures flannel-wg-v6: listen-port 51821, address <its IPv6 subnet>/128,
// the IPv6Network's route on it, one peer from node1's lease (PublicKey of BackendV6Data, endpoint
// [PublicIPv6]:51821, allowed-ips node1's IPv6 subnet, the PSK); its own dual-stack lease is written by hand
// into etcd. Our node initiates first (node1's pod pings), then wireguard-go is restarted and initiates
// (node2 pings first); pings both ways over IPv6; TCP transfers of a few MiB each way with equal sha256; on
// node1's eth0 every IPv6 datagram is a WireGuard message of a valid type and size on 51821 ↔ 51821 and
// the ping pattern never appears, while cni0 sees it in clear.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, ipIn, runTag, spawnIn, stopProcess, type SpawnedProcess } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { debianWireguardGo } from '../../deploy/local/wireguard-go.js';
import { until } from '../helpers/wait.js';
import {
  UAPI_DIR, WG_PORT, WG_PORT_V6, capture, genKey, genPsk, toolsPresent, tryMetric, typeOf, udpDatagrams, wireProblem, writeLease, type Datagram,
} from './fixtures/wg-hand-peer.js';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;
const NETWORK = '10.244.0.0/16';
const NETWORK6 = 'fd00:10:244::/56';
const PEER_SUBNET = '10.244.200.0/24';
const PEER_SUBNET6 = 'fd00:10:244:c8::/64';
const PEER_DEV_ADDRESS6 = 'fd00:10:244:c8::';
const METRICS_PORT = 18095;
const MIB = Number(process.env.WG6_INTEROP_MIB ?? 32);

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces and TUN');
} else if (!toolsPresent()) {
  t.plan(0, 'wg or tcpdump missing: apt-get install wireguard-tools tcpdump (deploy/local/install-deps.sh)');
} else if (!debianWireguardGo().ok) {
  t.plan(0, `Debian's wireguard-go is missing: ${debianWireguardGo().reason}`);
} else {
  t.setTimeout(240_000);
  const tag = runTag('wi6');
  const dev = `${tag}g`;
  const dir = mkdtempSync(join(tmpdir(), 'wg-interop-v6-'));
  const cluster = await LocalCluster.create({ tag, nodes: 2, ipv6: true });
  const [n1, n2] = cluster.nodes as [NodeHost, NodeHost];
  const procs: SpawnedProcess[] = [];
  t.teardown(async () => {
    for (const p of procs) await stopProcess(p, 'SIGKILL', 1000).catch(() => null);
    rmSync(join(UAPI_DIR, `${dev}.sock`), { force: true });
    await cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const secret = (name: string, b64: string): string => {
    const path = join(dir, name);
    writeFileSync(path, `${b64}\n`, { mode: 0o600 });
    return path;
  };

  const key = await genKey();
  const psk = await genPsk();
  // node2's dual-stack lease, as flannel writes one (its IPv4 part is never answered: no flannel-wg on node2).
  // writeLease splits at the first '/': "10.244.200.0/24&fd00:10:244:c8::-64" makes the key …/10.244.200.0-24&fd00:10:244:c8::-64.
  await writeLease(cluster, `${PEER_SUBNET}&${PEER_SUBNET6.replace('/', '-')}`,
    `{"PublicIP":"${n2.underlayIp}","PublicIPv6":"${n2.underlayIp6}","BackendType":"wireguard","BackendData":{"PublicKey":"${key.pub}","Port":${WG_PORT}},"BackendV6Data":{"PublicKey":"${key.pub}","Port":${WG_PORT_V6}}}`);
  await cluster.putConfig({ Network: NETWORK, EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'wireguard', PSK: psk } });
  cluster.startDaemon(n1, [`--healthz-port=${METRICS_PORT}`]);
  const env = await until('node1\'s FLANNEL_IPV6_SUBNET', async () => {
    const d = cluster.daemons.get(n1.name)!;
    if (d.proc.child.exitCode !== null) throw new Error(`flanneld exited: ${d.proc.output()}`);
    const e = readEnvFile(cluster.subnetFileOf(n1));
    return e.FLANNEL_IPV6_SUBNET ? e : undefined;
  }, 30_000);
  const pod = await cluster.addPod(n1, env.FLANNEL_SUBNET as string, 2, env.FLANNEL_IPV6_SUBNET);
  const p1: PodHost = { ...pod, ip: pod.ip6 as string };
  const subnet6 = (env.FLANNEL_IPV6_SUBNET as string).replace(/::1\/64$/, '::/64');
  const leaseKey = `${cluster.prefix}/subnets/${(env.FLANNEL_SUBNET as string).replace(/\.1\/24$/, '.0-24')}&${subnet6.replace('/', '-')}`;
  const ours = JSON.parse((await cluster.etcd.get(leaseKey)) ?? '{}') as { PublicIPv6: string; BackendData: { PublicKey: string }; BackendV6Data: { PublicKey: string; Port: number } };

  const metric = async (name: string, labels = ''): Promise<number> => (await tryMetric(n1.ns, METRICS_PORT, name, labels)) ?? Number.NaN;

  /** wireguard-go on node2, configured as flannel configures flannel-wg-v6, with node1 as its one peer. */
  async function startPeer(): Promise<SpawnedProcess> {
    rmSync(join(UAPI_DIR, `${dev}.sock`), { force: true });
    const proc = spawnIn(n2.ns, debianWireguardGo().bin, ['-f', dev], { LOG_LEVEL: 'error', WG_PROCESS_FOREGROUND: '1' });
    procs.push(proc);
    await until(`${dev}'s UAPI socket`, async () => {
      if (proc.child.exitCode !== null) throw new Error(`wireguard-go exited: ${proc.output()}`);
      return (await execIn(n2.ns, 'wg', ['show', dev])).code === 0;
    }, 15_000);
    await ipIn(n2.ns, ['addr', 'add', `${PEER_DEV_ADDRESS6}/128`, 'dev', dev, 'nodad']);
    await ipIn(n2.ns, ['link', 'set', dev, 'mtu', '1420', 'up']);
    await ipIn(n2.ns, ['-6', 'route', 'replace', NETWORK6, 'dev', dev]);
    await execCheckedIn(n2.ns, 'wg', ['set', dev, 'private-key', secret('key', key.priv), 'listen-port', String(WG_PORT_V6),
      'peer', ours.BackendV6Data.PublicKey, 'preshared-key', secret('psk', psk), 'endpoint', `[${ours.PublicIPv6}]:${ours.BackendV6Data.Port}`, 'allowed-ips', subnet6]);
    return proc;
  }
  async function stopPeer(proc: SpawnedProcess): Promise<void> {
    await stopProcess(proc, 'SIGTERM', 3000);
    rmSync(join(UAPI_DIR, `${dev}.sock`), { force: true });
    for (let i = 0; i < 50 && (await execIn(n2.ns, 'ip', ['link', 'show', dev])).code === 0; i++) await sleep(50);
  }
  const ping = (ns: string, to: string, extra: string[] = []) => execIn(ns, 'ping', ['-6', '-n', '-c', '3', '-i', '0.3', '-w', '15', ...extra, to]);

  async function transfer(sns: string, sip: string, cns: string, bytes: number): Promise<{ sent: string; got: string; ms: number }> {
    const port = 5300 + Math.floor(Math.random() * 600);
    const server = spawnIn(sns, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'server', sip, String(port)]);
    try {
      await until('transfer server', async () => server.output().includes('listening'), 10_000);
      const started = Date.now();
      const sent = (await execCheckedIn(cns, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'client', sip, String(port), String(bytes)])).trim();
      await Promise.race([server.exited, sleep(30_000)]);
      return { sent, got: server.output().trim().split('\n').at(-1) ?? '', ms: Date.now() - started };
    } finally {
      await stopProcess(server, 'SIGKILL', 1000);
    }
  }

  t.test('our lease as flannel writes it for flannel-wg-v6', async (t) => {
    t.equal(ours.PublicIPv6, n1.underlayIp6, 'PublicIPv6: eth0\'s IPv6 address');
    t.same(ours.BackendV6Data, { PublicKey: ours.BackendData.PublicKey, Port: WG_PORT_V6 }, 'BackendV6Data: the key of BackendData, Port 51821');
  });

  t.test('Debian\'s wireguard-go over IPv6, both sides initiating, PSK', async (t) => {
    const pattern = Buffer.from(`${tag}w6`.slice(0, 12).padEnd(12, 'z')).toString('hex');
    const wire = await capture(n1.ns, 'eth0', join(dir, 'eth0.pcap'), ['udp']);
    const inner = await capture(n1.ns, 'cni0', join(dir, 'cni0.pcap'), ['ip6']);
    let ethRaw = Buffer.alloc(0);
    let cni = Buffer.alloc(0);
    let startedPeerAt = 0;
    let restartedAt = 0;
    try {
      // 1. We initiate: wireguard-go comes up; our pod sends first.
      let peer = await startPeer();
      startedPeerAt = Date.now() / 1000;
      const out1 = await ping(p1.ns, PEER_DEV_ADDRESS6, ['-p', pattern]);
      t.equal(out1.code, 0, `our pod pings wireguard-go's IPv6 device address: ${out1.stdout.split('\n').slice(-2).join(' ')}`);
      const dump = await execCheckedIn(n2.ns, 'wg', ['show', dev, 'dump']);
      const line = dump.trim().split('\n').slice(1).find((l) => l.startsWith(ours.BackendV6Data.PublicKey));
      t.ok(line && Number(line.split('\t')[4]) > 0, `wg show: a handshake with our key (${line?.split('\t').slice(2, 5).join(' ')})`);
      t.equal(line?.split('\t')[2], `[${n1.underlayIp6}]:${WG_PORT_V6}`, 'wireguard-go sees us at [PublicIPv6]:51821');
      const in1 = await ping(n2.ns, p1.ip, ['-p', pattern]);
      t.equal(in1.code, 0, 'wireguard-go\'s node pings our pod over IPv6');
      // 2. wireguard-go forgets (restart) and initiates: its node sends first.
      await stopPeer(peer);
      restartedAt = Date.now() / 1000;
      const responsesBefore = await metric('flanneld_wireguard_handshake_messages_total', 'direction="sent",type="response"');
      peer = await startPeer();
      const in2 = await ping(n2.ns, p1.ip);
      t.equal(in2.code, 0, `after its restart wireguard-go's node pings our pod: ${in2.stdout.split('\n').slice(-2).join(' ')}`);
      const out2 = await ping(p1.ns, PEER_DEV_ADDRESS6);
      t.equal(out2.code, 0, 'and our pod pings it');
      t.ok((await metric('flanneld_wireguard_handshake_messages_total', 'direction="sent",type="response"')) > responsesBefore, 'we sent a handshake response');
      // 3. TCP both ways, sha256 equal.
      const a = await transfer(n2.ns, PEER_DEV_ADDRESS6, p1.ns, MIB << 20);
      t.equal(a.got, a.sent, `${MIB} MiB pod → wireguard-go over IPv6: sha256 equal, ${((MIB << 20) * 8 / a.ms / 1e6).toFixed(2)} Gbit/s`);
      const b = await transfer(p1.ns, p1.ip, n2.ns, MIB << 20);
      t.equal(b.got, b.sent, `${MIB} MiB wireguard-go → pod over IPv6: sha256 equal, ${((MIB << 20) * 8 / b.ms / 1e6).toFixed(2)} Gbit/s`);
    } finally {
      ethRaw = await wire.stop();
      cni = await inner.stop();
    }
    const v6 = udpDatagrams(ethRaw).filter((d) => d.src.includes(':'));
    const describe = (ds: Datagram[]) => ds.map((d) => `${d.src === n1.underlayIp6 ? 'n1' : d.src === n2.underlayIp6 ? 'n2' : d.src}→ ${typeOf(d)}/${d.payload.length}`);
    t.ok(v6.length > 1000, `${v6.length} IPv6 WireGuard datagrams on node1's eth0`);
    t.same(v6.map((d) => wireProblem(d, 1420, WG_PORT_V6)).filter(Boolean).slice(0, 10), [], 'only WireGuard messages of valid types and sizes, 51821 ↔ 51821');
    t.same(v6.filter((d) => ![n1.underlayIp6, n2.underlayIp6].includes(d.src)).length, 0, 'only node1 and node2');
    const firstResp1 = v6.find((d) => d.time >= startedPeerAt - 2 && d.time < restartedAt && typeOf(d) === 2);
    t.equal(firstResp1?.src, n2.underlayIp6, `first handshake: our initiation, wireguard-go's response (${describe(v6.filter((d) => d.time >= startedPeerAt - 2 && d.time < restartedAt && typeOf(d) <= 2).slice(0, 4)).join(', ')})`);
    const after = v6.filter((d) => d.time >= restartedAt);
    t.equal(after.find((d) => typeOf(d) === 1)?.src, n2.underlayIp6, 'after its restart wireguard-go initiates');
    t.equal(after.find((d) => typeOf(d) === 2)?.src, n1.underlayIp6, `and we respond (${describe(after.filter((d) => typeOf(d) <= 2).slice(0, 4)).join(', ')})`);
    t.ok(cni.includes(Buffer.from(pattern.repeat(2), 'hex')), 'control: the ping pattern is in clear on cni0');
    t.notOk(ethRaw.includes(Buffer.from(pattern.repeat(2), 'hex')), 'and nowhere in the eth0 capture');
    t.equal(cluster.daemons.get(n1.name)!.proc.child.exitCode, null, 'flanneld still running');
  });
}
