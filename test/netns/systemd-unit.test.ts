// deploy/systemd: the install script (into a temporary root, twice), `systemd-analyze verify` on the
// installed unit, the unit's settings and flags, and the installed flanneld run as systemd runs it:
// READY=1 after subnet.env, WATCHDOG=1 every WATCHDOG_USEC/2 (also with etcd down), STOPPING=1.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { runTag, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import { parseFlags, usage } from '../../flanneld/options.js';

const REPO = new URL('../../', import.meta.url).pathname;
const dest = mkdtempSync(join(tmpdir(), 'flannel-ts-install-'));
t.teardown(() => rmSync(dest, { recursive: true, force: true }));
const unitPath = join(dest, 'etc/systemd/system/flanneld.service');
const envPath = join(dest, 'etc/flannel-ts/flanneld.env');

function install(): string {
  const r = spawnSync('bash', [join(REPO, 'deploy/systemd/install.sh'), '--destdir', dest, '--node', process.execPath, '--with-cni'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`install.sh failed: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Every file under the root with its mode and a content hash. */
function snapshot(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(`${relative(root, p)} ${(statSync(p).mode & 0o777).toString(8)} ${createHash('sha1').update(readFileSync(p)).digest('hex')}`);
    }
  };
  walk(root);
  return out.sort();
}

function verify(path: string): string {
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', path], { encoding: 'utf8' });
  return `${r.stdout}${r.stderr}${r.status === 0 ? '' : `(exit ${r.status})`}`;
}

/** The unit as key → values (a key may repeat). */
function unitSettings(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && !line.startsWith('#')) m.set(line.slice(0, eq), [...(m.get(line.slice(0, eq)) ?? []), line.slice(eq + 1)]);
  }
  return m;
}

function envFile(path: string): Record<string, string> {
  return Object.fromEntries(readFileSync(path, 'utf8').split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

t.before(() => { install(); });

t.test('install.sh is idempotent and keeps an edited env file', async (t) => {
  const first = snapshot(dest);
  t.ok(first.some((f) => f.startsWith('opt/flannel-ts/build/Release/flanneld_native.node ')), 'the native addon');
  t.ok(first.some((f) => f.startsWith('opt/flannel-ts/node_modules/etcd3/package.json ')), 'production dependencies');
  t.notOk(first.some((f) => f.startsWith('opt/flannel-ts/node_modules/tap/')), 'no dev dependencies');
  t.ok(first.some((f) => f.startsWith('opt/cni/bin/flannel 755 ')), '--with-cni: the plugin');
  t.ok(first.includes(`etc/flannel-ts/flanneld.env 600 ${first.find((f) => f.startsWith('etc/flannel-ts/flanneld.env.example'))?.split(' ')[2]}`), 'the env file starts as the example, mode 0600');
  install();
  t.same(snapshot(dest), first, 'a second run changes nothing');
  appendFileSync(envPath, 'FLANNELD_IFACE=eth9\n');
  t.match(install(), /kept .*flanneld\.env/);
  t.match(readFileSync(envPath, 'utf8'), /FLANNELD_IFACE=eth9/, 'the edited env file is kept');
  t.same(readdirSync(join(dest, 'opt')).sort(), ['cni', 'flannel-ts'], 'no staging directory is left');
});

t.test('systemd-analyze verify prints nothing for the installed unit', async (t) => {
  t.match(readFileSync(unitPath, 'utf8'), new RegExp(`^ExecStart=${process.execPath} /opt/flannel-ts/dist/flanneld/main\\.js$`, 'm'), 'ExecStart names this node');
  t.equal(verify(unitPath), '');
  const bad = join(dest, 'bad.service');
  writeFileSync(bad, readFileSync(unitPath, 'utf8').replace('Type=notify', 'Type=notifyy'));
  t.match(verify(bad), /Failed to parse service type/, 'the check does catch a broken unit');
});

t.test('the unit: notify, restart policy, runtime directory, capabilities, ordering', async (t) => {
  const u = unitSettings(readFileSync(unitPath, 'utf8'));
  const one = (k: string): string | undefined => u.get(k)?.join(' ');
  t.equal(one('Type'), 'notify');
  t.equal(one('Restart'), 'on-failure');
  t.same(one('RestartPreventExitStatus')?.split(' ').sort(), ['64', '69', '78']);
  t.equal(one('EnvironmentFile'), '/etc/flannel-ts/flanneld.env');
  t.equal(one('RuntimeDirectory'), 'flannel');
  t.equal(one('RuntimeDirectoryPreserve'), 'yes');
  t.match(one('WatchdogSec'), /^\d+s$/);
  t.match(one('After'), /network-online\.target/);
  t.match(one('Wants'), /network-online\.target/);
  t.same(one('CapabilityBoundingSet')?.split(' ').sort(), ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
});

t.test('every flag the unit and its env file set is one flanneld accepts', async (t) => {
  const known = new Set([...usage().matchAll(/^ {2}--([a-z0-9-]+)/gm)].map((m) => m[1]));
  const env = { ...envFile(join(REPO, 'deploy/systemd/flanneld.env.example')) };
  for (const line of readFileSync(join(REPO, 'deploy/systemd/flanneld.env.example'), 'utf8').split('\n')) {
    const m = /^#(FLANNELD_[A-Z_]+)=(.*)$/.exec(line); // the commented-out examples too
    if (m) env[m[1] as string] = m[2] as string;
  }
  const argv = Object.entries(env).map(([k, v]) => `--${k.replace(/^FLANNELD_/, '').toLowerCase().replace(/_/g, '-')}=${v}`);
  for (const a of argv) t.ok(known.has(a.slice(2, a.indexOf('='))), `${a.split('=')[0]} is a flanneld flag`);
  t.doesNotThrow(() => parseFlags(argv, {}), 'parseFlags accepts them as flags');
  const execArgs = (unitSettings(readFileSync(unitPath, 'utf8')).get('ExecStart')?.[0] ?? '').split(' ').slice(2);
  t.doesNotThrow(() => parseFlags(execArgs, envFile(join(REPO, 'deploy/systemd/flanneld.env.example'))), 'and as the environment of ExecStart');
  t.throws(() => parseFlags(['--no-such-flag=1'], {}), 'a wrong flag would be caught');
});

t.test('the installed flanneld, run as systemd runs it: READY=1 after subnet.env, watchdog pings, STOPPING=1', async (t) => {
  const cluster = await LocalCluster.create({ tag: runTag('sd'), nodes: 1 });
  t.teardown(() => cluster.destroy());
  await cluster.putConfig({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
  const node = cluster.nodes[0]!;
  const subnetFile = join(dest, 'run/flannel/subnet.env');
  const sock = join(dest, 'notify.sock');
  const listener = spawn('ip', ['netns', 'exec', node.ns, 'python3', '-c', `
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); print("bound", flush=True)
t0 = time.monotonic()
while True:
    d = s.recv(4096).decode()
    print(int((time.monotonic() - t0) * 1000), os.path.exists(sys.argv[2]), repr(d), flush=True)
`, sock, subnetFile]);
  let out = '';
  listener.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  t.teardown(() => { listener.kill('SIGKILL'); });
  for (let i = 0; i < 100 && !out.includes('bound'); i++) await sleep(50);
  const env = { ...envFile(envPath), FLANNELD_ETCD_ENDPOINTS: cluster.etcdEndpoint, FLANNELD_SUBNET_FILE: subnetFile, FLANNELD_IFACE: 'eth0', NOTIFY_SOCKET: sock, WATCHDOG_USEC: '400000' };
  const daemon = spawnIn(node.ns, process.execPath, [join(dest, 'opt/flannel-ts/dist/flanneld/main.js')], env);
  t.teardown(() => stopProcess(daemon, 'SIGKILL'));
  const lines = (): string[] => out.split('\n').filter((l) => /^\d+ /.test(l));
  const pings = (): number => lines().filter((l) => l.endsWith("'WATCHDOG=1'")).length;
  for (let i = 0; i < 300 && !out.includes('READY=1'); i++) await sleep(100);
  t.match(out, /^\d+ True 'READY=1\\nSTATUS=subnet 10\.244\.\d+\.0\/24'$/m, `READY=1 arrived after subnet.env existed\n${daemon.output()}`);
  t.notMatch(lines()[0], /WATCHDOG/, 'no watchdog ping before READY');
  await sleep(1100);
  t.ok(pings() >= 3, `watchdog pings every 200 ms (${pings()} in 1.1 s)`);
  await cluster.etcd.stop();
  const before = pings();
  await sleep(1100);
  t.ok(pings() - before >= 3, `pings go on while etcd is down (${pings() - before} in 1.1 s)`);
  t.equal(await stopProcess(daemon, 'SIGTERM'), 0, 'a clean exit on SIGTERM');
  await sleep(300);
  const all = lines();
  const stopping = all.findIndex((l) => l.includes('STOPPING=1'));
  t.ok(stopping > 0, 'STOPPING=1 was sent');
  t.same(all.slice(stopping + 1), [], 'nothing after STOPPING=1');
});
