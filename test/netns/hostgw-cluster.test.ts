// A 3-node host-gw cluster of real namespaces, real etcd and real flanneld processes: all-pairs
// ping, a checksummed TCP transfer, route reconciliation, ip-masq rules, sd_notify and clean stop.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { until } from '../helpers/wait.js';
import { readTrace, straceAvailable, straceArgs } from '../helpers/strace.js';
import t from 'tap';
import { LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, ipIn, runTag, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { PodHost } from '../../deploy/local/topology.js';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;
const CONFIG = { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } };


const ownRoutes = async (ns: string): Promise<string> => ipIn(ns, ['route', 'show', 'proto', '241']);

t.test('3-node host-gw cluster', async (t) => {
  const cluster = await LocalCluster.create({ tag: runTag('fh'), nodes: 3 });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig(CONFIG);
  for (const node of cluster.nodes) cluster.startDaemon(node, ['--ip-masq']);
  const pods: PodHost[] = [];
  const subnets: string[] = [];
  for (const node of cluster.nodes) {
    const subnet = await cluster.waitForSubnet(node);
    subnets.push(subnet);
    pods.push(await cluster.addPod(node, subnet));
  }
  t.equal(new Set(subnets).size, 3, 'every node leased its own subnet');

  await t.test('subnet.env has flannel\'s variables', async (t) => {
    const file = cluster.subnetFileOf(cluster.nodes[0]!);
    t.same(readEnvFile(file), { FLANNEL_NETWORK: '10.244.0.0/16', FLANNEL_SUBNET: subnets[0], FLANNEL_MTU: '1500', FLANNEL_IPMASQ: 'true' });
    t.equal(statSync(file).mode & 0o777, 0o644);
  });

  await t.test('all pairs of pods ping each other', async (t) => {
    const matrix = await until('all-pairs connectivity', async () => {
      const m = await cluster.pingMatrix(pods);
      return m.flat().every(Boolean) && m;
    });
    t.ok(matrix.flat().every(Boolean), JSON.stringify(matrix));
  });

  await t.test('a 20 MB TCP transfer between pods on different nodes arrives intact', async (t) => {
    const [a, b] = [pods[0]!, pods[2]!];
    const server = spawnIn(b.ns, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'server', b.ip, '5201']);
    t.teardown(() => stopProcess(server, 'SIGKILL'));
    await until('the server to listen', async () => server.output().includes('listening'), 5000);
    const sent = (await execCheckedIn(a.ns, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'client', b.ip, '5201', String(20 * 1024 * 1024)])).trim();
    await server.exited;
    const received = server.output().split('\n').filter(Boolean).at(-1);
    t.match(sent, /^[0-9a-f]{64}$/);
    t.equal(received, sent, 'sha256 of received bytes equals sha256 of sent bytes');
  });

  await t.test('each node has exactly one route per peer: <subnet> via <peer PublicIP> dev eth0', async (t) => {
    const routes = await ownRoutes(cluster.nodes[0]!.ns);
    for (const i of [1, 2]) {
      const net = subnets[i]!.replace(/\.1\//, '.0/');
      t.match(routes, new RegExp(`^${net.replace(/\./g, '\\.')} via 192\\.0\\.2\\.${i + 1} dev eth0`, 'm'));
    }
    t.equal(routes.trim().split('\n').length, 2);
  });

  await t.test('a route deleted by hand comes back, and a stale route of ours is removed', async (t) => {
    const ns = cluster.nodes[0]!.ns;
    const peer = subnets[1]!.replace(/\.1\//, '.0/');
    await ipIn(ns, ['route', 'del', peer]);
    await ipIn(ns, ['route', 'add', '10.244.250.0/24', 'via', '192.0.2.99', 'dev', 'eth0', 'proto', '241']);
    const healed = await until('reconcile', async () => {
      const r = await ownRoutes(ns);
      return r.includes(peer) && !r.includes('10.244.250.0/24') && r;
    }, 25_000);
    t.ok(healed, 'route restored and stale route removed by the periodic reconcile');
    t.ok(await cluster.pingMatrix(pods).then((m) => m.flat().every(Boolean)), 'connectivity is back');
  });

  await t.test('--ip-masq installs flannel\'s rules once, and SIGTERM removes them', async (t) => {
    const node = cluster.nodes[0]!;
    const nat = await execCheckedIn(node.ns, 'iptables-save', ['-t', 'nat']);
    t.equal(nat.match(/-A POSTROUTING .*-j FLANNEL-POSTRTG/g)?.length, 1, 'one jump to FLANNEL-POSTRTG');
    t.match(nat, /-A FLANNEL-POSTRTG -s 10\.244\.0\.0\/16 ! -d 224\.0\.0\.0\/4 .*-j MASQUERADE/);
    const code = await cluster.stopDaemon(node, 'SIGTERM');
    t.equal(code, 0, 'clean exit on SIGTERM');
    const after = await execCheckedIn(node.ns, 'iptables-save', []);
    t.notMatch(after, /FLANNEL-/, 'no FLANNEL-* chain or rule is left');
    t.ok((await ownRoutes(node.ns)).includes(subnets[1]!.replace(/\.1\//, '.0/')), 'routes stay in place, so a restart does not cut traffic');
    cluster.startDaemon(node, ['--ip-masq']);
    await until('the same subnet after restart', async () => readEnvFile(cluster.subnetFileOf(node)).FLANNEL_SUBNET === subnets[0]);
    const jumps = async (): Promise<number> => (await execIn(node.ns, 'iptables-save', ['-t', 'nat'])).stdout.match(/-A POSTROUTING .*-j FLANNEL-POSTRTG/g)?.length ?? 0;
    await until('rules back', async () => (await jumps()) > 0);
    await sleep(1000);
    const again = await execCheckedIn(node.ns, 'iptables-save', ['-t', 'nat']);
    t.equal(again.match(/-A POSTROUTING .*-j FLANNEL-POSTRTG/g)?.length, 1, 'still one jump after a restart');
  });
});

t.test('READY=1 reaches NOTIFY_SOCKET after subnet.env is written; /healthz and /readyz answer', async (t) => {
  const cluster = await LocalCluster.create({ tag: runTag('fn'), nodes: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-notify-'));
  t.teardown(async () => { await cluster.destroy(); rmSync(dir, { recursive: true, force: true }); });
  await cluster.putConfig(CONFIG);
  const node = cluster.nodes[0]!;
  const sock = join(dir, 'notify.sock');
  const subnetFile = cluster.subnetFileOf(node);
  // The listener records, for each datagram, whether subnet.env existed when it arrived.
  const listener = spawn('ip', ['netns', 'exec', node.ns, 'python3', '-c', `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); print("bound", flush=True)
while True:
    d = s.recv(4096).decode()
    print(repr(d), os.path.exists(sys.argv[2]), flush=True)
    if "READY=1" in d: break
`, sock, subnetFile]);
  let out = '';
  listener.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  t.teardown(() => { listener.kill('SIGKILL'); });
  await until('listener', async () => out.includes('bound'), 5000);
  cluster.startDaemon(node, ['--healthz-port=18081'], { NOTIFY_SOCKET: sock });
  await until('READY=1', async () => out.includes('READY=1'), 20_000);
  t.match(out, /READY=1.*True/, 'READY=1 arrived after subnet.env existed');
  const probe = async (path: string): Promise<string> =>
    (await execCheckedIn(node.ns, process.execPath, ['-e', `fetch("http://127.0.0.1:18081${path}").then(async r=>console.log(r.status, await r.text()))`])).trim();
  t.equal(await probe('/healthz'), '200 flanneld is running');
  t.match(await probe('/readyz'), /^200/);
});

// The batch count is observed from outside: the fixture runs under `strace -f -ttt -e trace=execve`,
// and every program it starts is matched to the phase (apply, reconcile, remove) whose wall-clock
// window contains the exec.
const noStrace = (await straceAvailable()) ? false : 'strace is not installed (apt-get install strace, or deploy/local/install-deps.sh): ip -batch runs not counted';

t.test('1000 peers are programmed in one batch, reconciled and removed', async (t) => {
  const ns = `${runTag('fs')}`;
  const traceDir = mkdtempSync(join(tmpdir(), 'flannel-ts-strace-'));
  await ipIn(undefined, ['netns', 'add', ns]);
  t.teardown(() => { rmSync(traceDir, { recursive: true, force: true }); return ipIn(undefined, ['netns', 'del', ns]).catch(() => {}); });
  await ipIn(ns, ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
  await ipIn(ns, ['addr', 'add', '198.51.100.1/24', 'dev', 'eth0']);
  await ipIn(ns, ['link', 'set', 'eth0', 'up']);
  await ipIn(ns, ['link', 'set', 'eth1', 'up']);
  const fixture = join(FIXTURES, 'route-scale.ts');
  const prefix = join(traceDir, 'trace');
  const command = [process.execPath, '--import', 'tsx', fixture, '1000'];
  const out = noStrace ? await execCheckedIn(ns, command[0] as string, command.slice(1))
    : await execCheckedIn(ns, 'strace', [...straceArgs(prefix, ['execve']), '-ttt', ...command]);
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as { applyMs: number; installed: number; reconciled: { fixed: number; removed: number }; afterRemove: number; phases: Record<string, [number, number]> };
  t.equal(r.installed, 1000, 'all 1000 routes are in the kernel');
  t.same(r.reconciled, { fixed: 0, removed: 0, failed: 0 }, 'reconcile finds nothing to fix');
  t.equal(r.afterRemove, 0, 'removing the leases removes every route');
  t.comment(`programming 1000 peer routes took ${r.applyMs} ms`);
  await t.test('ip processes per phase: one `ip -batch` for 1000 adds, none for a reconcile with nothing to fix, one for 1000 removes', { skip: noStrace }, async (t) => {
    const ipRuns = readTrace(prefix, fixture).children.filter((c) => basename(c.argv[0] ?? '') === 'ip');
    const inPhase = (name: string): string[] => {
      const [start, end] = r.phases[name] as [number, number];
      return ipRuns.filter((c) => c.at >= start && c.at <= end).map((c) => c.argv.join(' '));
    };
    const batch = 'ip -force -batch -';
    t.ok(ipRuns.length > 0 && ipRuns.every((c) => Number.isFinite(c.at)), `the tracer saw the fixture's ip processes, with times (${ipRuns.length})`);
    t.same(inPhase('apply'), [batch], 'apply of 1000 added leases: exactly one ip process, `ip -batch`');
    t.same(inPhase('reconcile').filter((a) => a === batch), [], 'reconcile with nothing to fix: no `ip -batch` (it only lists the routes)');
    t.same(inPhase('remove'), [batch], 'apply of 1000 removed leases: exactly one ip process, `ip -batch`');
    t.equal(ipRuns.filter((c) => c.argv.join(' ') === batch).length, 2, 'and no other `ip -batch` in the whole run');
  });
});
