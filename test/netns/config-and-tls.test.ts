// End to end, against the compiled daemon (dist/flanneld/main.js) and a real etcd in throwaway network
// namespaces: bad network configs are reported (log and /readyz) and fixed ones picked up without a
// restart; mutual TLS to etcd; command-line flags, environment variables and secret redaction.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../lib/run-command.js';
import { EtcdServer } from '../../deploy/local/etcd-server.js';
import { LocalCluster, daemonPath, readEnvFile } from '../../deploy/local/local-cluster.js';
import { type SpawnedProcess, execIn, runTag, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import { Topology, UNDERLAY_GATEWAY } from '../../deploy/local/topology.js';
import { makeEtcdTestCerts } from '../helpers/etcd-test-certs.js';

const HEALTHZ_PORT = 10256;
const VALID = { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } };
const DEFAULT_KEY = '/coreos.com/network/config';

// ---------------------------------------------------------------------------------------------
// helpers

interface LogLine { level?: string; msg?: string; [k: string]: unknown }

/** The daemon's pino JSON lines (non-JSON lines are skipped). */
function logLines(output: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try { out.push(JSON.parse(line) as LogLine); } catch { /* a partial line */ }
  }
  return out;
}

/** Polls `fn` until it returns something other than undefined; throws with `what` on timeout. */
async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000, stepMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

/** GET http://127.0.0.1:port/path from inside a namespace; undefined when nothing answers. */
async function httpIn(ns: string, path: string, port = HEALTHZ_PORT): Promise<{ status: number; body: string } | undefined> {
  const script = `fetch("http://127.0.0.1:${port}${path}").then(async r => console.log(JSON.stringify({ status: r.status, body: await r.text() })), () => process.exit(3))`;
  const r = await execIn(ns, process.execPath, ['-e', script]);
  if (r.code !== 0) return undefined;
  try { return JSON.parse(r.stdout.trim()) as { status: number; body: string }; } catch { return undefined; }
}

function running(p: SpawnedProcess): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

/** Waits for a "Couldn't fetch network config" log line, written after `from`, whose msg passes `ok`. */
async function waitConfigLog(p: SpawnedProcess, from: number, ok: (msg: string) => boolean, what: string): Promise<string> {
  return waitFor(`log line: ${what}`, () => {
    if (!running(p)) throw new Error(`daemon exited ${String(p.child.exitCode)} while waiting for ${what}:\n${p.output()}`);
    return logLines(p.output().slice(from)).map((l) => String(l.msg ?? ''))
      .find((m) => m.startsWith("Couldn't fetch network config: ") && ok(m));
  }, 10_000);
}

/** Waits until /readyz is 503 with a body that passes `ok`; returns that body. */
async function waitReadyz503(ns: string, ok: (body: string) => boolean, what: string): Promise<string> {
  let last: unknown;
  try {
    return await waitFor(`/readyz 503 ${what}`, async () => {
      const r = await httpIn(ns, '/readyz');
      last = r;
      return r && r.status === 503 && ok(r.body) ? r.body : undefined;
    }, 10_000, 300);
  } catch (err) {
    throw new Error(`${(err as Error).message}; last /readyz answer: ${JSON.stringify(last)}`);
  }
}

async function etcdKeys(etcd: EtcdServer, prefix: string): Promise<string[]> {
  const r = await etcd.ctl(['get', '--prefix', prefix, '--keys-only']);
  if (r.code !== 0) throw new Error(`etcdctl get ${prefix}: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean);
}

/** "10.244.3.1/24" → "10.244.3.0-24", the last element of flannel's lease key. */
function keyPartOf(flannelSubnet: string): string {
  const [ip, len] = flannelSubnet.split('/') as [string, string];
  return `${ip.split('.').slice(0, 3).join('.')}.0-${len}`;
}

/** A clean environment for direct runs of the daemon: no FLANNELD_* leaking in from the test's. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLANNELD_') && !k.startsWith('NOTIFY_SOCKET')) env[k] = v;
  return { ...env, ...extra };
}

/** Runs the daemon outside any namespace, to completion (bounded). */
function runDaemonDirect(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 10_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [daemonPath(), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv(env) });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

// ---------------------------------------------------------------------------------------------

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces');
} else {
  t.test('bad network configs: logged, reported by /readyz, fixed without a restart', async (t) => {
    const cluster = await LocalCluster.create({ tag: runTag('fc'), nodes: 3 });
    t.teardown(() => cluster.destroy());
    const [n1, n2, n3] = cluster.nodes as [typeof cluster.nodes[0], typeof cluster.nodes[0], typeof cluster.nodes[0]];

    // node2 and node3 use their own prefixes and recover from their first problem, in parallel
    // with node1's walk through every bad config.
    await cluster.etcd.put('/second/network/config', '{"Network": "10.244.0.0/16", "Backend": ');
    const d1 = cluster.startDaemon(n1, [`--healthz-port=${HEALTHZ_PORT}`]).proc;
    const d2 = cluster.startDaemon(n2, [`--healthz-port=${HEALTHZ_PORT}`, '--etcd-prefix=/second/network']).proc;
    const d3 = cluster.startDaemon(n3, [`--healthz-port=${HEALTHZ_PORT}`, '--etcd-prefix=/third/network']).proc;

    const cases: Array<{ name: string; config?: string | object; log: RegExp[]; body: RegExp[] }> = [
      {
        name: 'no config key at all',
        log: [/flannel config not found/, new RegExp(DEFAULT_KEY)],
        body: [/flannel config not found/, new RegExp(DEFAULT_KEY)],
      },
      {
        name: 'invalid JSON',
        config: '{"Network": "10.244.0.0/16", "Backend": ',
        log: [/not valid JSON/i, new RegExp(DEFAULT_KEY)],
        body: [/not valid JSON/i],
      },
      {
        name: 'Network 10.244.0.0/33',
        config: { Network: '10.244.0.0/33' },
        log: [/\bNetwork\b/, /10\.244\.0\.0\/33/, /CIDR/i],
        body: [/\bNetwork\b/, /10\.244\.0\.0\/33/],
      },
      {
        name: 'Backend.Type vxlan2',
        config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan2' } },
        log: [/Backend\.Type/, /vxlan2/, /\budp\b/, /\bvxlan\b(?!2)/, /host-gw/],
        body: [/Backend\.Type/, /vxlan2/, /\budp\b/, /host-gw/],
      },
      {
        name: 'SubnetLen 31',
        config: { Network: '10.244.0.0/16', SubnetLen: 31 },
        log: [/SubnetLen/, /\b31\b/],
        body: [/SubnetLen/, /\b31\b/],
      },
      {
        name: 'two problems at once (SubnetMin and Backend.Type)',
        config: { Network: '10.244.0.0/16', SubnetMin: '10.245.0.0', Backend: { Type: 'nope' } },
        log: [/SubnetMin/, /10\.245\.0\.0/, /Backend\.Type/, /nope/, /2 problems/],
        body: [/SubnetMin/, /Backend\.Type/, /nope/],
      },
    ];

    for (const c of cases) {
      await t.test(c.name, async (t) => {
        const from = d1.output().length;
        if (c.config !== undefined) await cluster.putConfig(c.config);
        const msg = await waitConfigLog(d1, from, (m) => c.log.every((re) => re.test(m)), c.name);
        t.pass(`logged: ${msg.replace(/\n/g, ' | ')}`);
        const body = await waitReadyz503(n1.ns, (b) => c.body.every((re) => re.test(b)), c.name);
        t.pass(`/readyz 503: ${body.replace(/\n/g, ' | ')}`);
        t.ok(running(d1), 'the daemon keeps running');
        t.same(await httpIn(n1.ns, '/healthz'), { status: 200, body: 'flanneld is running' }, '/healthz is 200');
        t.same(readEnvFile(cluster.subnetFileOf(n1)), {}, 'no subnet.env yet');
      });
    }

    await t.test('node2 (invalid JSON at start) and node3 (no key) report their own prefix', async (t) => {
      await waitConfigLog(d2, 0, (m) => /not valid JSON/i.test(m) && m.includes('/second/network/config'), 'node2 invalid JSON');
      await waitReadyz503(n2.ns, (b) => /not valid JSON/i.test(b), 'node2 invalid JSON');
      await waitConfigLog(d3, 0, (m) => m.includes('flannel config not found') && m.includes('/third/network/config'), 'node3 no key');
      await waitReadyz503(n3.ns, (b) => b.includes('flannel config not found'), 'node3 no key');
      t.ok(running(d2) && running(d3), 'both keep running');
    });

    await t.test('a valid config is picked up without a restart (node1 from two problems, node2 from bad JSON, node3 from no key)', async (t) => {
      const pids = [d1.child.pid, d2.child.pid, d3.child.pid];
      await cluster.putConfig(VALID);
      await cluster.etcd.put('/second/network/config', JSON.stringify(VALID));
      await cluster.etcd.put('/third/network/config', JSON.stringify(VALID));
      const subnets = await Promise.all([n1, n2, n3].map((n) => cluster.waitForSubnet(n, 15_000)));
      t.match(subnets, [/^10\.244\.\d+\.1\/24$/, /^10\.244\.\d+\.1\/24$/, /^10\.244\.\d+\.1\/24$/], 'each wrote subnet.env');
      for (const [i, n] of [n1, n2, n3].entries()) {
        const r = await waitFor(`${n.name} /readyz 200`, async () => {
          const x = await httpIn(n.ns, '/readyz');
          return x?.status === 200 ? x : undefined;
        }, 5000, 200).catch((err: Error) => err);
        t.same(r, { status: 200, body: 'flanneld is ready' }, `${n.name}: /readyz turns 200`);
        t.ok(running([d1, d2, d3][i] as SpawnedProcess), `${n.name}: same process still running`);
      }
      t.same([d1.child.pid, d2.child.pid, d3.child.pid], pids, 'no restart');
      t.ok((await etcdKeys(cluster.etcd, '/coreos.com/network/subnets/')).some((k) => k.endsWith(keyPartOf(subnets[0] as string))), 'node1 lease in etcd');
      t.ok((await etcdKeys(cluster.etcd, '/second/network/subnets/')).some((k) => k.endsWith(keyPartOf(subnets[1] as string))), 'node2 lease under its prefix');
      t.ok((await etcdKeys(cluster.etcd, '/third/network/subnets/')).some((k) => k.endsWith(keyPartOf(subnets[2] as string))), 'node3 lease under its prefix');
    });
  });

  t.test('TLS end to end: client certificates against etcd with --client-cert-auth', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-tls-'));
    const procs: SpawnedProcess[] = [];
    let topo: Topology | undefined;
    let etcd: EtcdServer | undefined;
    t.teardown(async () => {
      for (const p of procs) await stopProcess(p, 'SIGTERM', 3000).catch(() => null);
      await etcd?.destroy().catch(() => {});
      await topo?.destroy();
      rmSync(dir, { recursive: true, force: true });
    });

    const f = await makeEtcdTestCerts(dir);

    topo = await Topology.create(runTag('ft'), 2);
    etcd = new EtcdServer({ ns: topo.underlayNs, listenIps: [UNDERLAY_GATEWAY, '127.0.0.1'], tls: { certFile: f('server.crt'), keyFile: f('server.key'), caFile: f('ca.crt') } });
    await etcd.start();
    await etcd.put(`${DEFAULT_KEY}`, JSON.stringify(VALID));
    const [n1, n2] = topo.nodes as [typeof topo.nodes[0], typeof topo.nodes[0]];

    // Sanity: etcd really demands a client certificate (plain https with only the CA is refused).
    const noCert = await runCommand('ip', ['netns', 'exec', topo.underlayNs, 'env', 'ETCDCTL_API=3', 'etcdctl', '--endpoints', `https://${UNDERLAY_GATEWAY}:2379`,
      '--cacert', f('ca.crt'), '--dial-timeout', '2s', '--command-timeout', '3s', 'get', DEFAULT_KEY]);
    t.not(noCert.code, 0, 'etcdctl without a client certificate is refused');

    const base = (n: typeof n1): string[] => [daemonPath(), `--etcd-endpoints=https://${UNDERLAY_GATEWAY}:2379`, `--etcd-cafile=${f('ca.crt')}`,
      `--subnet-file=${join(dir, n.name, 'subnet.env')}`, '--iface=eth0', `--healthz-port=${HEALTHZ_PORT}`];
    mkdirSync(join(dir, n1.name));
    mkdirSync(join(dir, n2.name));

    const good = spawnIn(n1.ns, process.execPath, [...base(n1), `--etcd-certfile=${f('client.crt')}`, `--etcd-keyfile=${f('client.key')}`], cleanEnv());
    procs.push(good);
    const bad = spawnIn(n2.ns, process.execPath, base(n2), cleanEnv());
    procs.push(bad);
    const started = Date.now();

    await t.test('with the client certificate the daemon gets a subnet', async (t) => {
      const subnet = await waitFor('subnet.env on node1', () => {
        if (!running(good)) throw new Error(`daemon exited ${String(good.child.exitCode)}:\n${good.output()}`);
        return readEnvFile(join(dir, n1.name, 'subnet.env')).FLANNEL_SUBNET;
      }, 20_000).catch((err: Error) => { t.fail(`${err.message}\n${good.output()}`); return undefined; });
      if (!subnet) return;
      t.match(subnet, /^10\.244\.\d+\.1\/24$/, `FLANNEL_SUBNET=${subnet}`);
      const key = `/coreos.com/network/subnets/${keyPartOf(subnet)}`;
      t.same(await etcdKeys(etcd as EtcdServer, '/coreos.com/network/subnets/'), [key], 'the lease key exists in etcd (read over TLS)');
      t.match(await (etcd as EtcdServer).get(key), /^\{"PublicIP":"192\.0\.2\.1","PublicIPv6":null,"BackendType":"host-gw"/, 'with flannel\'s value');
      t.same(await httpIn(n1.ns, '/readyz'), { status: 200, body: 'flanneld is ready' }, '/readyz is 200');
    });

    await t.test('with only the CA (no client certificate) the daemon never becomes ready', async (t) => {
      const wait = 8000 - (Date.now() - started);
      if (wait > 0) await sleep(wait);
      t.ok(running(bad), 'still running after ~8 s');
      t.same(readEnvFile(join(dir, n2.name, 'subnet.env')), {}, 'no subnet.env');
      const r = await httpIn(n2.ns, '/readyz');
      t.equal(r?.status, 503, `/readyz is 503: ${JSON.stringify(r?.body)}`);
      const errors = logLines(bad.output()).filter((l) => /etcd/i.test(String(l.msg ?? '')) && (l.level === 'error' || l.level === 'warn'));
      t.ok(errors.length >= 2, `logs etcd errors repeatedly (${errors.length}), e.g. ${JSON.stringify(errors[0]?.msg)}`);
      const leases = await etcdKeys(etcd as EtcdServer, '/coreos.com/network/subnets/');
      t.equal(leases.length, 1, 'only node1 holds a lease');
    });
  });

  t.test('flags: usage errors, --version and --help (no namespaces)', async (t) => {
    const usageCases: Array<[string[], RegExp]> = [
      [['--no-such-flag=1'], /--no-such-flag/],
      [['--subnet-lease-renew-margin=0'], /subnet-lease-renew-margin/],
      [['--subnet-lease-renew-margin=1440'], /subnet-lease-renew-margin/],
      [['--healthz-port=abc'], /healthz-port/],
      [['--etcd-endpoints=ftp://x'], /etcd-endpoints/],
    ];
    await Promise.all(usageCases.map(async ([args, re]) => {
      const r = await runDaemonDirect(args);
      t.equal(r.code, 64, `${args.join(' ')} exits 64`);
      t.match(r.stderr, re, `${args.join(' ')}: stderr names the flag: ${r.stderr.trim()}`);
    }));

    const v = await runDaemonDirect(['--version']);
    t.equal(v.code, 0, '--version exits 0');
    t.match(v.stdout, /\d+\.\d+\.\d+/, `--version prints a version: ${v.stdout.trim()}`);

    const h = await runDaemonDirect(['--help']);
    t.equal(h.code, 0, '--help exits 0');
    for (const flag of ['--etcd-endpoints', '--etcd-prefix', '--etcd-certfile', '--etcd-keyfile', '--etcd-cafile', '--etcd-username',
      '--etcd-password', '--iface', '--iface-regex', '--public-ip', '--subnet-file', '--subnet-lease-renew-margin', '--ip-masq',
      '--healthz-ip', '--healthz-port']) {
      t.match(h.stdout, new RegExp(`^\\s*${flag}(\\s|$)`, 'm'), `--help lists ${flag}`);
    }
  });

  t.test('flags: env FLANNELD_ETCD_PREFIX, repeated --iface, secrets never printed', async (t) => {
    const cluster = await LocalCluster.create({ tag: runTag('fg'), nodes: 4 });
    const extra: SpawnedProcess[] = [];
    const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-flags-'));
    t.teardown(async () => {
      for (const p of extra) await stopProcess(p, 'SIGTERM', 3000).catch(() => null);
      await cluster.destroy();
      rmSync(dir, { recursive: true, force: true });
    });
    const [n1, n2, n3, n4] = cluster.nodes as [typeof cluster.nodes[0], typeof cluster.nodes[0], typeof cluster.nodes[0], typeof cluster.nodes[0]];
    await cluster.etcd.put('/custom/network/config', JSON.stringify(VALID));
    await cluster.putConfig(VALID);
    const subnetFile = (n: typeof n1): string => join(dir, n.name, 'subnet.env');
    for (const n of [n1, n2]) mkdirSync(join(dir, n.name));

    // node1: prefix only from the environment (no --etcd-prefix on the command line).
    const envDaemon = spawnIn(n1.ns, process.execPath, [daemonPath(), `--etcd-endpoints=${cluster.etcdEndpoint}`, `--subnet-file=${subnetFile(n1)}`, '--iface=eth0'],
      cleanEnv({ FLANNELD_ETCD_PREFIX: '/custom/network' }));
    extra.push(envDaemon);
    // node2: --iface twice; the first does not exist, the second does.
    const ifaceDaemon = spawnIn(n2.ns, process.execPath, [daemonPath(), `--etcd-endpoints=${cluster.etcdEndpoint}`, `--subnet-file=${subnetFile(n2)}`,
      '--iface=nonexistent', '--iface=eth0'], cleanEnv());
    extra.push(ifaceDaemon);
    // node3: the command line wins over the environment.
    const cliWins = cluster.startDaemon(n3, [], cleanEnv({ FLANNELD_ETCD_PREFIX: '/wrong/network' })).proc;
    // node4: credentials; etcd has no auth enabled, so it may refuse or ignore them.
    const secret = cluster.startDaemon(n4, ['--etcd-username=u', '--etcd-password=s3cr3t-value'], cleanEnv()).proc;
    const secretStarted = Date.now();

    await t.test('FLANNELD_ETCD_PREFIX puts the lease under /custom/network/subnets/', async (t) => {
      const subnet = await waitFor('node1 subnet.env', () => {
        if (!running(envDaemon)) throw new Error(`daemon exited ${String(envDaemon.child.exitCode)}:\n${envDaemon.output()}`);
        return readEnvFile(subnetFile(n1)).FLANNEL_SUBNET;
      }, 20_000).catch((err: Error) => { t.fail(`${err.message}\n${envDaemon.output()}`); return undefined; });
      if (!subnet) return;
      const keys = await etcdKeys(cluster.etcd, '/custom/network/subnets/');
      t.same(keys, [`/custom/network/subnets/${keyPartOf(subnet)}`], 'lease key under the custom prefix');
      t.match(await cluster.etcd.get(keys[0] as string), /"PublicIP":"192\.0\.2\.1"/, 'held by node1');
    });

    await t.test('--iface=nonexistent --iface=eth0 uses eth0', async (t) => {
      const subnet = await waitFor('node2 subnet.env', () => {
        if (!running(ifaceDaemon)) throw new Error(`daemon exited ${String(ifaceDaemon.child.exitCode)}:\n${ifaceDaemon.output()}`);
        return readEnvFile(subnetFile(n2)).FLANNEL_SUBNET;
      }, 20_000).catch((err: Error) => { t.fail(`${err.message}\n${ifaceDaemon.output()}`); return undefined; });
      if (!subnet) return;
      const iface = logLines(ifaceDaemon.output()).find((l) => l.msg === 'using external interface');
      t.equal(iface?.iface, 'eth0', 'logs eth0 as the external interface');
      const key = `/coreos.com/network/subnets/${keyPartOf(subnet)}`;
      t.match(await cluster.etcd.get(key), /"PublicIP":"192\.0\.2\.2"/, 'lease with eth0\'s address');
    });

    await t.test('--etcd-prefix on the command line beats FLANNELD_ETCD_PREFIX', async (t) => {
      const subnet = await cluster.waitForSubnet(n3, 20_000);
      t.ok((await etcdKeys(cluster.etcd, '/coreos.com/network/subnets/')).includes(`/coreos.com/network/subnets/${keyPartOf(subnet)}`), 'lease under the flag\'s prefix');
      t.same(await etcdKeys(cluster.etcd, '/wrong/'), [], 'nothing under the env prefix');
    });

    await t.test('--etcd-password never appears in the output', async (t) => {
      const wait = 3500 - (Date.now() - secretStarted);
      if (wait > 0) await sleep(wait);
      // Let it get at least one answer from etcd (a refusal or the config) past the start-up line.
      await waitFor('a second log line', () => (logLines(secret.output()).length >= 2 ? true : undefined), 10_000).catch(() => undefined);
      const out = secret.output();
      t.ok(logLines(out).length >= 2, `the daemon talked to etcd (${logLines(out).length} lines; running: ${running(secret)}; last: ${JSON.stringify(logLines(out).at(-1)?.msg)})`);
      t.notOk(out.includes('s3cr3t-value'), 'the password is not in stdout/stderr');
      const start = logLines(out).find((l) => l.msg === 'starting flanneld');
      t.equal((start?.flags as Record<string, unknown> | undefined)?.['etcd-password'], '[redacted]', 'the start-up flags show it redacted');
      // A usage error must not echo it either.
      const r = await runDaemonDirect(['--etcd-password=s3cr3t-value', '--etcd-username=u', '--etcd-endpoints=ftp://x']);
      t.equal(r.code, 64, 'usage error exits 64');
      t.notOk((r.stdout + r.stderr).includes('s3cr3t-value'), 'nor in a usage error');
    });
  });
}
