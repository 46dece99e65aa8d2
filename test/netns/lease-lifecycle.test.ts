// The subnet lease lifecycle end to end: real flanneld processes (dist/flanneld/main.js) in network
// namespaces against a real etcd. Checks flannel's exact etcd key/value and subnet.env formats, lease
// reuse after a crash and from subnet.env, racing nodes, pool exhaustion and recovery, peer and own
// lease deletion, and renewal with a short TTL.
import t, { type Test } from 'tap';
import { readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { type DaemonHandle, LocalCluster } from '../../deploy/local/local-cluster.js';
import { ipIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost } from '../../deploy/local/topology.js';


const CONFIG = { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } };
const SUBNETS = '/coreos.com/network/subnets';

// ---------------------------------------------------------------------------------------------
// Helpers

/** A cluster for one subtest, destroyed in the subtest's teardown (on failure too). */
async function cluster(tt: Test, nodes: number, config: unknown = CONFIG): Promise<LocalCluster> {
  const c = await LocalCluster.create({ tag: runTag('ll'), nodes });
  tt.teardown(() => c.destroy());
  await c.putConfig(config);
  return c;
}

/** Polls `fn` until it returns something other than undefined/false, or throws after `timeoutMs`. */
async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false> | T | undefined | false, stepMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

interface LogLine { level?: string; msg?: string; [k: string]: unknown }

function logLines(d: DaemonHandle): LogLine[] {
  const out: LogLine[] = [];
  for (const line of d.proc.output().split('\n')) {
    if (!line.trim()) continue;
    try { out.push(JSON.parse(line) as LogLine); } catch { out.push({ msg: line }); }
  }
  return out;
}

function daemon(c: LocalCluster, node: NodeHost): DaemonHandle {
  const d = c.daemons.get(node.name);
  if (!d) throw new Error(`no daemon on ${node.name}`);
  return d;
}

const running = (d: DaemonHandle): boolean => d.proc.child.exitCode === null && d.proc.child.signalCode === null;

/**
 * Starts a daemon and waits for the subnet.env it writes (a fresh one: its mtime must be after the
 * start, since an old file from a previous run may be there already). Returns FLANNEL_SUBNET.
 */
async function startAndWait(c: LocalCluster, node: NodeHost, extraArgs: string[] = [], timeoutMs = 30_000): Promise<string> {
  const startedAt = Date.now();
  const d = c.startDaemon(node, extraArgs);
  const path = c.subnetFileOf(node);
  return until(`subnet.env of ${node.name}`, timeoutMs, () => {
    if (!running(d)) throw new Error(`flanneld on ${node.name} exited ${d.proc.child.exitCode ?? d.proc.child.signalCode}:\n${d.proc.output()}`);
    let st;
    try { st = statSync(path); } catch { return undefined; }
    if (st.mtimeMs < startedAt) return undefined;
    const m = /^FLANNEL_SUBNET=(.*)$/m.exec(readFileSync(path, 'utf8'));
    return m?.[1];
  });
}

/** 10.244.7.1/24 → 10.244.7.0-24 (the last element of the lease key). */
function keyPartOf(flannelSubnet: string): string {
  const [ip, len] = flannelSubnet.split('/') as [string, string];
  const o = ip.split('.').map(Number);
  const n = ((((o[0] as number) << 24) >>> 0) + ((o[1] as number) << 16) + ((o[2] as number) << 8) + (o[3] as number)) - 1;
  return `${[n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')}-${len}`;
}
/** 10.244.7.1/24 → 10.244.7.0/24. */
const networkOf = (flannelSubnet: string): string => keyPartOf(flannelSubnet).replace('-', '/');
const leaseKeyOf = (flannelSubnet: string): string => `${SUBNETS}/${keyPartOf(flannelSubnet)}`;

async function subnetKeys(c: LocalCluster): Promise<string[]> {
  const out = await c.etcd.ctlChecked(['get', '--prefix', SUBNETS, '--keys-only']);
  return out.split('\n').filter(Boolean);
}

/** The etcd lease id holding `key` (as etcd prints it: decimal int64), or undefined if the key is missing. */
async function leaseIdOf(c: LocalCluster, key: string): Promise<bigint | undefined> {
  const out = await c.etcd.ctlChecked(['get', '-w', 'json', key]);
  if (!/"kvs":/.test(out)) return undefined;
  // Parsed from the text: lease ids are int64 and lose precision in JSON.parse.
  const m = /"lease":(\d+)/.exec(out);
  return m ? BigInt(m[1] as string) : 0n;
}

async function timeToLive(c: LocalCluster, id: bigint): Promise<{ granted: number; remaining: number } | undefined> {
  const out = await c.etcd.ctlChecked(['lease', 'timetolive', id.toString(16)]);
  const m = /granted with TTL\((\d+)s\), remaining(?: TTL)?\((-?\d+)s\)/.exec(out);
  return m ? { granted: Number(m[1]), remaining: Number(m[2]) } : undefined;
}

async function ownRoutes(node: NodeHost): Promise<string[]> {
  return (await ipIn(node.ns, ['route', 'show', 'proto', '241'])).split('\n').map((l) => l.trim()).filter(Boolean);
}

const routeRe = (subnet: string, via: string): RegExp => new RegExp(`^${subnet.replace(/\./g, '\\.')} via ${via.replace(/\./g, '\\.')} dev eth0\\b`);

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces');
} else {
  // -------------------------------------------------------------------------------------------
  // 1–3 share one single-node cluster: they run in order and each starts from the state the
  // previous one left (a running daemon on node1).
  t.test('single node: formats, reuse after SIGKILL, previous subnet from subnet.env', async (tp) => {
    const c = await cluster(tp, 1);
    const node = c.nodes[0] as NodeHost;
    let subnet = '';

    await tp.test('1. formats, byte for byte', async (tt) => {
      subnet = await startAndWait(c, node);
      tt.match(subnet, /^10\.244\.(\d{1,3})\.1\/24$/, 'FLANNEL_SUBNET is a /24 of 10.244.0.0/16 ending in .1');
      const x = Number(/^10\.244\.(\d+)\./.exec(subnet)?.[1]);
      tt.ok(x >= 1 && x <= 255, `third octet ${x} is within SubnetMin..SubnetMax (1..255)`);

      const key = `${SUBNETS}/10.244.${x}.0-24`;
      const listing = (await c.etcd.ctlChecked(['get', '--prefix', SUBNETS])).split('\n').filter((l) => l !== '');
      tt.same(listing, [key, '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"host-gw"}'],
        'exactly one key under subnets/, with flannel\'s exact value');

      const id = await leaseIdOf(c, key);
      tt.ok(id !== undefined && id !== 0n, `the key is attached to an etcd lease (id ${id?.toString(16)})`);
      if (id) {
        const ttl = await timeToLive(c, id);
        tt.ok(ttl, 'etcdctl lease timetolive answers');
        tt.equal(ttl?.granted, 86400, 'granted TTL is 24 h');
        tt.ok(ttl && ttl.remaining > 86400 - 120 && ttl.remaining <= 86400, `remaining TTL ${ttl?.remaining} s is about 86400 s`);
      }

      const path = c.subnetFileOf(node);
      tt.equal(readFileSync(path, 'utf8'),
        `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.${x}.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n`,
        'subnet.env has exactly flannel\'s lines, in order');
      tt.equal((statSync(path).mode & 0o7777).toString(8), '644', 'subnet.env mode is 0644');
      tt.ok(running(daemon(c, node)), 'daemon still running');
    });

    await tp.test('2. reuse after SIGKILL', async (tt) => {
      if (!subnet) { tt.fail('no subnet from subtest 1'); return; }
      const before = await leaseIdOf(c, leaseKeyOf(subnet));
      await c.stopDaemon(node, 'SIGKILL');
      const again = await startAndWait(c, node);
      tt.equal(again, subnet, 'same subnet after SIGKILL and restart');
      tt.same(await subnetKeys(c), [leaseKeyOf(subnet)], 'still exactly one key');
      const after = await leaseIdOf(c, leaseKeyOf(subnet));
      tt.ok(after !== undefined && after !== 0n, 'the key is still held by an etcd lease');
      tt.comment(`etcd lease before ${before?.toString(16)}, after ${after?.toString(16)}`);
      tt.ok(running(daemon(c, node)), 'daemon running');
    });

    await tp.test('3. previous subnet from subnet.env', async (tt) => {
      if (!subnet) { tt.fail('no subnet from subtest 1'); return; }
      // a) The real old subnet.env: the key is deleted, so only the file can bring the subnet back.
      tt.equal(await c.stopDaemon(node, 'SIGTERM'), 0, 'SIGTERM stops the daemon with exit code 0');
      await c.etcd.ctlChecked(['del', leaseKeyOf(subnet)]);
      tt.same(await subnetKeys(c), [], 'no key left after etcdctl del');
      const again = await startAndWait(c, node);
      tt.equal(again, subnet, 'takes the subnet named in its old subnet.env');
      tt.same(await subnetKeys(c), [leaseKeyOf(subnet)], 'exactly one key, the old subnet');

      // b) Deterministic: a previous subnet that a random pick can never choose (the random pick is
      //    among the first 100 free subnets, 10.244.1..101.0/24).
      const far = '10.244.201.1/24';
      await c.stopDaemon(node, 'SIGTERM');
      await c.etcd.ctlChecked(['del', leaseKeyOf(subnet)]);
      const path = c.subnetFileOf(node);
      writeFileSync(path, readFileSync(path, 'utf8').replace(/^FLANNEL_SUBNET=.*$/m, `FLANNEL_SUBNET=${far}`));
      const past = new Date(Date.now() - 60_000);
      utimesSync(path, past, past); // so that startAndWait does not take our edit for the daemon's write
      tt.equal(await startAndWait(c, node), far, 'takes 10.244.201.0/24 from the edited subnet.env');
      tt.same(await subnetKeys(c), [leaseKeyOf(far)], 'exactly one key, 10.244.201.0-24');

      // c) The previous subnet is taken by another node: it must not be stolen.
      const other = '{"PublicIP":"192.0.2.99","PublicIPv6":null,"BackendType":"host-gw"}';
      await c.stopDaemon(node, 'SIGTERM');
      await c.etcd.ctlChecked(['del', leaseKeyOf(far)]);
      await c.etcd.put(leaseKeyOf(far), other);
      const third = await startAndWait(c, node);
      tt.not(third, far, `a taken previous subnet is not reused (got ${third})`);
      tt.equal(await c.etcd.get(leaseKeyOf(far)), other, 'the other node\'s key is untouched');
      tt.same((await subnetKeys(c)).sort(), [leaseKeyOf(far), leaseKeyOf(third)].sort(), 'two keys: the other node\'s and ours');
      tt.ok(running(daemon(c, node)), 'daemon running');
    });
  });

  // -------------------------------------------------------------------------------------------
  t.test('4. 10 daemons racing', async (tp) => {
    const c = await cluster(tp, 10);

    /** Starts all 10 daemons at once and checks the outcome. */
    const race = async (tt: Test, network: RegExp): Promise<void> => {
      for (const n of c.nodes) c.startDaemon(n);
      const subnets = await Promise.all(c.nodes.map((n) => c.waitForSubnet(n, 45_000)));
      tt.ok(subnets.every((s) => network.test(s)), `all subnets in the network: ${subnets.join(' ')}`);
      tt.equal(new Set(subnets).size, 10, '10 distinct subnets');
      const keys = await subnetKeys(c);
      tt.same([...keys].sort(), subnets.map(leaseKeyOf).sort(), 'exactly 10 keys, one per node subnet');
      for (const [i, n] of c.nodes.entries()) {
        const v = await c.etcd.get(leaseKeyOf(subnets[i] as string));
        tt.equal(v, `{"PublicIP":"${n.underlayIp}","PublicIPv6":null,"BackendType":"host-gw"}`, `${n.name}'s key carries its PublicIP`);
      }
      // Every node ends up with a route to each of the 9 others.
      await until('9 peer routes on every node', 20_000, async () => {
        const counts = await Promise.all(c.nodes.map(async (n) => (await ownRoutes(n)).length));
        return counts.every((k) => k === 9) ? counts : undefined;
      }, 250).then(() => tt.pass('every node has 9 peer routes'), (err: Error) => tt.fail(err.message));
      const exited = c.nodes.filter((n) => daemon(c, n).proc.child.exitCode !== null);
      tt.same(exited.map((n) => `${n.name}: exit ${daemon(c, n).proc.child.exitCode}`), [], 'no daemon exited');
      const conflicts = c.nodes.reduce((sum, n) => sum + logLines(daemon(c, n)).filter((l) => /already exists/.test(l.msg ?? '')).length, 0);
      tt.comment(`lost creation races (retried): ${conflicts}`);
    };

    await tp.test('in 10.244.0.0/16', (tt) => race(tt, /^10\.244\.\d+\.1\/24$/));

    // The same race in a pool of only 15 subnets, where lost creation races are near certain:
    // they must be retried, never fatal (flannel itself exits 1 on them).
    await tp.test('in 10.244.0.0/20 (15 subnets: lost races are near certain)', async (tt) => {
      await Promise.all(c.nodes.map((n) => c.stopDaemon(n, 'SIGTERM')));
      await c.etcd.ctlChecked(['del', '--prefix', SUBNETS]);
      for (const n of c.nodes) {
        rmSync(c.subnetFileOf(n), { force: true });
        await ipIn(n.ns, ['route', 'flush', 'proto', '241']);
      }
      await c.putConfig({ Network: '10.244.0.0/20', Backend: { Type: 'host-gw' } });
      await race(tt, /^10\.244\.([1-9]|1[0-5])\.1\/24$/);
    });
  });

  // -------------------------------------------------------------------------------------------
  t.test('5. pool exhaustion and recovery', async (tt) => {
    const c = await cluster(tt, 4, { Network: '10.250.0.0/28', Backend: { Type: 'host-gw' } });
    for (const n of c.nodes) c.startDaemon(n);
    const pool = ['10.250.0.4/30', '10.250.0.8/30', '10.250.0.12/30'];
    const env = (n: NodeHost): string | undefined => /^FLANNEL_SUBNET=(.*)$/m.exec((() => { try { return readFileSync(c.subnetFileOf(n), 'utf8'); } catch { return ''; } })())?.[1];

    const have = await until('3 nodes with a subnet', 30_000, () => {
      const got = c.nodes.filter((n) => env(n) !== undefined);
      return got.length >= 3 ? got : undefined;
    });
    tt.equal(have.length, 3, 'exactly 3 nodes got a subnet');
    const loser = c.nodes.find((n) => !have.includes(n)) as NodeHost;
    tt.ok(loser, `the 4th node is ${loser?.name}`);
    const got = have.map((n) => networkOf(env(n) as string)).sort();
    tt.same(got, [...pool].sort(), 'the three /30s of 10.250.0.0/28 (the first, .0/30, is skipped)');
    tt.equal((await subnetKeys(c)).length, 3, '3 keys');

    const ld = daemon(c, loser);
    const isExhaustedLine = (l: LogLine): boolean => (l.level === 'error' || l.level === 'warn')
      && (l.msg ?? '').includes('10.250.0.0/28') && /\b3\b[^.;]*taken|taken[^.;]*\b3\b/.test(l.msg ?? '');
    const line = await until('the exhaustion error on the 4th node', 15_000, () => logLines(ld).find(isExhaustedLine))
      .catch((err: Error) => { tt.fail(`${err.message}; its log:\n${ld.proc.output()}`); return undefined; });
    if (line) tt.pass(`clear error logged: ${line.msg}`);
    tt.ok(running(ld), 'the 4th daemon keeps running');
    tt.equal(env(loser), undefined, 'the 4th daemon wrote no subnet.env');
    // Let the backoff grow (0.5, 1, 2, 4 s → the next wait is about 8 s) so that recovery is tested
    // from a long wait, not from the first quick retry; the gaps must grow, never a busy loop.
    const errs = await until('5 exhaustion errors on the 4th node', 20_000, () => {
      const l = logLines(ld).filter(isExhaustedLine);
      return l.length >= 5 ? l : undefined;
    }, 200).catch((err: Error) => { tt.fail(err.message); return logLines(ld).filter(isExhaustedLine); });
    const at = errs.map((l) => Date.parse(String(l.time)));
    const gaps = at.slice(1).map((v, i) => (v - (at[i] as number)) / 1000);
    tt.ok(gaps.length >= 4 && (gaps.at(-1) as number) > (gaps[0] as number) * 2 && gaps.every((g) => g >= 0.3 && g <= 36),
      `retries back off (gaps ${gaps.map((g) => g.toFixed(1)).join(', ')} s)`);
    tt.ok(running(ld), 'the 4th daemon is still running');
    tt.equal(env(loser), undefined, 'and still has no subnet.env');

    // Free one subnet: stop its holder first so it does not come back, then delete its key.
    const victim = have[0] as NodeHost;
    const freed = networkOf(env(victim) as string);
    await c.stopDaemon(victim, 'SIGTERM');
    await c.etcd.ctlChecked(['del', `${SUBNETS}/${freed.replace('/', '-')}`]);
    const t0 = Date.now();
    const taken = await until('the 4th node to acquire the freed subnet', 40_000, () => {
      if (!running(ld)) throw new Error(`the 4th daemon exited ${ld.proc.child.exitCode}:\n${ld.proc.output()}`);
      return env(loser);
    }, 200).catch((err: Error) => { tt.fail(err.message); return undefined; });
    const secs = (Date.now() - t0) / 1000;
    tt.ok(taken !== undefined && secs <= 36, `acquired within ~35 s (${secs.toFixed(1)} s)`);
    if (taken) tt.equal(networkOf(taken), freed, 'it got the freed subnet');
    tt.equal((await subnetKeys(c)).length, 3, 'still 3 keys');
  });

  // -------------------------------------------------------------------------------------------
  // 6 and 7 share a two-node cluster: 6 kills node2, 7 then works on node1.
  t.test('two nodes: peer lease deleted, own lease deleted', async (tp) => {
    const c = await cluster(tp, 2);
    const [n1, n2] = c.nodes as [NodeHost, NodeHost];
    for (const n of c.nodes) c.startDaemon(n);
    const [s1, s2] = await Promise.all([c.waitForSubnet(n1), c.waitForSubnet(n2)]);

    await tp.test('6. a peer\'s lease deleted', async (tt) => {
      const want = routeRe(networkOf(s2), n2.underlayIp);
      const routes = await until('node1\'s route to node2', 10_000, async () => {
        const r = await ownRoutes(n1);
        return r.some((l) => want.test(l)) ? r : undefined;
      }).catch((err: Error) => { tt.fail(err.message); return [] as string[]; });
      tt.ok(routes.some((l) => want.test(l)), `node1 has "${networkOf(s2)} via ${n2.underlayIp} dev eth0 proto 241": ${JSON.stringify(routes)}`);

      await c.stopDaemon(n2, 'SIGKILL');
      await c.etcd.ctlChecked(['del', leaseKeyOf(s2)]);
      const t0 = Date.now();
      const gone = await until('the route to disappear', 5_000, async () => !(await ownRoutes(n1)).some((l) => want.test(l)), 100)
        .catch(() => false);
      tt.ok(gone, `route to ${networkOf(s2)} removed from node1 within 5 s (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      if (!gone) tt.comment(`node1 routes: ${JSON.stringify(await ownRoutes(n1))}\nnode1 log:\n${daemon(c, n1).proc.output()}`);
      tt.ok(running(daemon(c, n1)), 'node1 keeps running');
    });

    await tp.test('7. own lease deleted', async (tt) => {
      const d = daemon(c, n1);
      tt.ok(running(d), 'node1 is running');
      await c.etcd.ctlChecked(['del', leaseKeyOf(s1)]);
      const t0 = Date.now();
      const code = await Promise.race([d.proc.exited, sleep(8_000).then(() => 'timeout' as const)]);
      const secs = (Date.now() - t0) / 1000;
      tt.not(code, 'timeout', `the daemon exits within 8 s (${secs.toFixed(1)} s)`);
      tt.ok(typeof code === 'number' && code !== 0, `exit code is non-zero (${code})`);
      tt.ok(logLines(d).some((l) => (l.msg ?? '').includes('Lease has been revoked')), 'logs "Lease has been revoked"');
      if (code === 'timeout' || code === 0) tt.comment(`node1 log:\n${d.proc.output()}`);
    });
  });

  // -------------------------------------------------------------------------------------------
  t.test('8. renewal with --subnet-lease-ttl=6', async (tt) => {
    const c = await cluster(tt, 1);
    const node = c.nodes[0] as NodeHost;
    const subnet = await startAndWait(c, node, ['--subnet-lease-ttl=6']);
    const key = leaseKeyOf(subnet);
    const first = await leaseIdOf(c, key);
    tt.ok(first !== undefined && first !== 0n, `key held by etcd lease ${first?.toString(16)}`);
    if (first) tt.equal((await timeToLive(c, first))?.granted, 6, 'granted TTL is 6 s');

    // 15 s, sampling all along: the key must never vanish (a 6 s TTL that is not renewed would).
    const end = Date.now() + 15_000;
    const missing: number[] = [];
    const ids = new Set<string>();
    while (Date.now() < end) {
      const id = await leaseIdOf(c, key);
      if (id === undefined) missing.push(Math.round((Date.now() - end + 15_000) / 100) / 10);
      else ids.add(id.toString(16));
      await sleep(500);
    }
    tt.same(missing, [], 'the key never disappeared during 15 s');
    tt.same(await subnetKeys(c), [key], 'the key still exists, same subnet, the only one');
    const now = await leaseIdOf(c, key);
    tt.ok(now !== undefined && now !== 0n && now !== first, `its etcd lease id changed: ${first?.toString(16)} → ${now?.toString(16)}`);
    tt.comment(`distinct lease ids seen: ${ids.size}`);
    if (now) {
      const ttl = await timeToLive(c, now);
      tt.ok(ttl && ttl.remaining > 0 && ttl.remaining <= 6, `remaining TTL ${ttl?.remaining} s is ≤ 6`);
    }
    tt.ok(running(daemon(c, node)), 'daemon running');
    tt.equal(readFileSync(c.subnetFileOf(node), 'utf8').match(/^FLANNEL_SUBNET=(.*)$/m)?.[1], subnet, 'subnet.env unchanged');
  });
}
