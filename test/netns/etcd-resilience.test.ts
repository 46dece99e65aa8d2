// flanneld against a real etcd that goes away, comes back, is compacted meanwhile, compacts past a
// stalled daemon's watch, is down when the daemon starts, or is one of several endpoints. Real
// namespaces, real etcd, the compiled daemon: the data path must keep working through an outage, every
// change made meanwhile must be seen, and the path taken (the re-list and its reason) is asserted.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, ipIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { logLines, sample, scrape } from '../helpers/probes.js';

const CONFIG = { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } };
const SUBNETS = '/coreos.com/network/subnets';
const LOOPBACK = '127.0.0.1';

type T = Test;

/** A lease value exactly as a flannel node writes it. */
const leaseValue = (publicIp: string): string => `{"PublicIP":"${publicIp}","PublicIPv6":null,"BackendType":"host-gw"}`;

/** Polls `fn` until it returns true or the deadline passes; returns the last answer. */
async function until(fn: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/** Our host-gw routes on a node (`proto 241`). */
async function ownRoutes(node: NodeHost): Promise<string> {
  return ipIn(node.ns, ['route', 'show', 'proto', '241']).catch((err: Error) => `<${err.message}>`);
}

function hasRoute(routes: string, dst: string, via: string): boolean {
  return routes.split('\n').some((l) => l.startsWith(`${dst} via ${via} `));
}

function hasRouteTo(routes: string, dst: string): boolean {
  return routes.split('\n').some((l) => l.startsWith(`${dst} `));
}

function running(cluster: LocalCluster, node: NodeHost): boolean {
  const c = cluster.daemons.get(node.name)?.proc.child;
  return c !== undefined && c.exitCode === null && c.signalCode === null;
}

function logOf(cluster: LocalCluster, node: NodeHost): string {
  return cluster.daemons.get(node.name)?.proc.output() ?? '';
}

/** Builds a cluster whose teardown is registered at once; on a failed subtest the logs go to TAP comments. */
async function newCluster(tt: T, nodes: number): Promise<LocalCluster> {
  const cluster = await LocalCluster.create({ tag: runTag('fr'), nodes });
  tt.teardown(() => cluster.destroy());
  return cluster;
}

/** Daemon and etcd logs as TAP comments when the subtest failed (or always with FLANNEL_TEST_LOGS=1). */
function dumpLogsIfFailed(tt: T, cluster: LocalCluster): void {
  if (tt.passing() && process.env.FLANNEL_TEST_LOGS !== '1') return;
  for (const node of cluster.nodes) {
    if (!cluster.daemons.has(node.name)) continue;
    tt.comment(`---- flanneld log of ${node.name} (${running(cluster, node) ? 'running' : 'exited'}) ----\n${logOf(cluster, node)}`);
  }
  tt.comment(`---- etcd log ----\n${cluster.etcd.output()}`);
}

/** Starts a daemon on every node, waits for the subnets, adds one pod per node. */
async function bringUp(cluster: LocalCluster, extraArgs: readonly string[] = []): Promise<PodHost[]> {
  await cluster.putConfig(CONFIG);
  for (const node of cluster.nodes) cluster.startDaemon(node, extraArgs);
  const pods: PodHost[] = [];
  for (const node of cluster.nodes) pods.push(await cluster.addPod(node, await cluster.waitForSubnet(node)));
  return pods;
}

/** All-pairs ping, retried until it passes or the deadline; returns the failing pairs of the last try. */
async function pingAllPairs(cluster: LocalCluster, pods: readonly PodHost[], timeoutMs: number): Promise<string[]> {
  let failing: string[] = [];
  await until(async () => {
    const m = await cluster.pingMatrix(pods);
    failing = [];
    m.forEach((row, i) => row.forEach((ok, j) => { if (!ok) failing.push(`${pods[i]?.ip} -> ${pods[j]?.ip}`); }));
    return failing.length === 0;
  }, timeoutMs, 300);
  return failing;
}

/** The etcd revision, read through `endpoint status -w json` at `ip`. */
async function etcdRevision(cluster: LocalCluster, ip: string): Promise<number> {
  const out = await cluster.etcd.ctlChecked(['endpoint', 'status', '-w', 'json'], ip);
  const status = JSON.parse(out) as Array<{ Status: { header: { revision: number | string } } }>;
  return Number(status[0]?.Status.header.revision);
}

const METRICS_PORT = 10262;
const FLOOD = join(import.meta.dirname, '../helpers/etcd-flood.mjs');
const RESYNC_REASONS = ['compacted', 'canceled', 'error', 'ended', 'periodic', 'recovery'] as const;
type Resyncs = Record<(typeof RESYNC_REASONS)[number], number>;

/** flanneld_etcd_watch_resyncs_total by reason, from the daemon's /metrics. */
async function resyncs(node: NodeHost): Promise<Resyncs> {
  const text = await scrape(node, METRICS_PORT);
  const out = {} as Resyncs;
  for (const r of RESYNC_REASONS) out[r] = sample(text, `flanneld_etcd_watch_resyncs_total{reason="${r}"}`) ?? Number.NaN;
  return out;
}

function delta(a: Resyncs, b: Resyncs): Resyncs {
  const out = {} as Resyncs;
  for (const r of RESYNC_REASONS) out[r] = b[r] - a[r];
  return out;
}

/** The daemon's "lease watch interrupted; re-listing leases" log lines: kind and reason. */
function relistLogs(output: string): Array<{ kind?: string; reason?: string }> {
  return logLines(output).filter((l) => l.msg === 'lease watch interrupted; re-listing leases') as Array<{ kind?: string; reason?: string }>;
}

function daemonPid(cluster: LocalCluster, node: NodeHost): number {
  return cluster.daemons.get(node.name)?.proc.child.pid as number;
}

/** Waits until node routes `dst` via `via` and has no route to `gone`; the last routes seen. */
async function converged(node: NodeHost, dst: string, via: string, gone: string, timeoutMs: number): Promise<{ ok: boolean; text: string }> {
  let text = '';
  const ok = await until(async () => {
    text = await ownRoutes(node);
    return hasRoute(text, dst, via) && !hasRouteTo(text, gone);
  }, timeoutMs);
  return { ok, text };
}

/** utime + stime of a process, in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from #3 (state) on
  return Number(fields[11]) + Number(fields[12]); // #14 utime, #15 stime
}

function clockTicksPerSecond(): number {
  let n = Number.NaN;
  try { n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()); } catch { /* use the usual value */ }
  return Number.isFinite(n) && n > 0 ? n : 100;
}

/** GET http://127.0.0.1:port/<path> from inside the node's namespace; the status code, or an error text. */
async function httpStatus(ns: string, port: number, path: string): Promise<string> {
  const script = `fetch("http://127.0.0.1:${port}${path}").then(r=>console.log(r.status),e=>console.log("error "+e.message))`;
  const r = await execIn(ns, process.execPath, ['-e', script]);
  return `${r.stdout.trim()}${r.stderr.trim() ? ` ${r.stderr.trim()}` : ''}`;
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces');
} else {
  t.test('etcd stopped and restarted under a running cluster', async (tt) => {
    const cluster = await newCluster(tt, 3);
    try {
      const pods = await bringUp(cluster);
      tt.same(await pingAllPairs(cluster, pods, 20_000), [], 'all-pairs ping passes before the outage');

      const [a, b] = [pods[0] as PodHost, pods[2] as PodHost];
      const count = 120; // 12 s at -i 0.1, covering the ~8 s outage on both sides
      const pinging = execIn(a.ns, 'ping', ['-n', '-q', '-i', '0.1', '-c', String(count), '-W', '1', b.ip]);
      await sleep(1000);

      const outageStart = Date.now();
      await cluster.etcd.stop(true);
      await sleep(2500);
      // Back, but only on its loopback: the daemons still cannot reach it, the test can.
      await cluster.etcd.start([LOOPBACK]);
      await cluster.etcd.ctlChecked(['put', `${SUBNETS}/10.244.200.0-24`, leaseValue('192.0.2.200')], LOOPBACK);
      await sleep(Math.max(0, 8000 - (Date.now() - outageStart)));
      for (const node of cluster.nodes) tt.ok(running(cluster, node), `${node.name}: flanneld still runs after ~8 s without etcd`);
      await cluster.etcd.stop(true);
      await cluster.etcd.start();
      const outageMs = Date.now() - outageStart;

      const r = await pinging;
      const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
      const [sent, received] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
      tt.comment(`continuous ping ${a.ip} -> ${b.ip} across a ${outageMs} ms etcd outage: ${sent} sent, ${received} received, ${sent - received} lost`);
      tt.ok(m, `ping summary parsed: ${r.stdout.trim().split('\n').at(-2) ?? r.stdout}`);
      tt.ok(received >= Math.ceil(0.95 * count), `≥ 95 % of ${count} replies received (got ${received}/${sent})`);

      const back = Date.now();
      const routeOk = await until(async () => {
        for (const node of cluster.nodes) if (!hasRoute(await ownRoutes(node), '10.244.200.0/24', '192.0.2.200')) return false;
        return true;
      }, 15_000);
      tt.comment(`every node routed the lease made during the outage ${Date.now() - back} ms after etcd came back`);
      for (const node of cluster.nodes) {
        const routes = await ownRoutes(node);
        tt.ok(hasRoute(routes, '10.244.200.0/24', '192.0.2.200'), `${node.name}: the lease made during the outage is routed:\n${routes}`);
      }
      tt.ok(routeOk, 'every node routed 10.244.200.0/24 within 15 s of etcd coming back');
      tt.same(await pingAllPairs(cluster, pods, 10_000), [], 'all-pairs ping passes after the outage');
      for (const node of cluster.nodes) tt.ok(running(cluster, node), `${node.name}: flanneld still runs at the end`);
    } finally {
      dumpLogsIfFailed(tt, cluster);
    }
  });

  t.test('etcd outage with a compaction meanwhile: the same daemon re-lists after the outage (reason error) and applies the difference', async (tt) => {
    const cluster = await newCluster(tt, 2);
    try {
      await bringUp(cluster, [`--healthz-port=${METRICS_PORT}`]);
      const node1 = cluster.nodes[0] as NodeHost;
      const pid = daemonPid(cluster, node1);
      await cluster.etcd.put(`${SUBNETS}/10.244.201.0-24`, leaseValue('192.0.2.201'));
      tt.ok(await until(async () => hasRoute(await ownRoutes(node1), '10.244.201.0/24', '192.0.2.201'), 15_000),
        `node1 routes lease A before the outage:\n${await ownRoutes(node1)}`);
      const before = await resyncs(node1);

      await cluster.etcd.stop(true);
      await cluster.etcd.start([LOOPBACK]);
      const rev0 = await etcdRevision(cluster, LOOPBACK);
      await cluster.etcd.ctlChecked(['del', `${SUBNETS}/10.244.201.0-24`], LOOPBACK);
      await cluster.etcd.ctlChecked(['put', `${SUBNETS}/10.244.202.0-24`, leaseValue('192.0.2.202')], LOOPBACK);
      for (let i = 0; i < 5; i++) await cluster.etcd.ctlChecked(['put', `/resilience-test/k${i}`, `v${i}`], LOOPBACK);
      const rev = await etcdRevision(cluster, LOOPBACK);
      tt.ok(rev > rev0, `revision moved from ${rev0} to ${rev}`);
      await cluster.etcd.ctlChecked(['compact', String(rev), '--physical'], LOOPBACK);
      const old = await cluster.etcd.ctl(['get', `${SUBNETS}/10.244.201.0-24`, '--rev', String(rev0)], LOOPBACK);
      tt.match(`${old.stdout}${old.stderr}`, /compacted/, `history before revision ${rev} is gone (compacted): no watch can replay the delete`);
      await cluster.etcd.stop(false);
      await cluster.etcd.start();

      const back = Date.now();
      const routes = await converged(node1, '10.244.202.0/24', '192.0.2.202', '10.244.201.0/24', 15_000);
      tt.comment(`node1 converged ${Date.now() - back} ms after etcd came back`);
      tt.ok(routes.ok, `within 15 s node1 routes lease B and no longer lease A:\n${routes.text}`);
      tt.equal(daemonPid(cluster, node1), pid, `the same daemon process (pid ${pid}): not a restart`);
      const d = delta(before, await resyncs(node1));
      tt.ok(d.error >= 1, `the watch ended with the outage and the leases were re-listed: resyncs ${JSON.stringify(d)}`);
      tt.equal(d.compacted, 0, 'no watch was resumed from the compacted revision (it would have ended as compacted)');
      tt.ok(relistLogs(logOf(cluster, node1)).some((l) => l.kind === 'error'), 'the daemon logs the re-list with kind error');

      // The watch must be live again after the re-list, not only the one-off diff.
      await cluster.etcd.put(`${SUBNETS}/10.244.203.0-24`, leaseValue('192.0.2.203'));
      const liveSince = Date.now();
      tt.ok(await until(async () => hasRoute(await ownRoutes(node1), '10.244.203.0/24', '192.0.2.203'), 5000),
        `a lease created after the recovery (C) is routed within 5 s (watch live again):\n${await ownRoutes(node1)}`);
      tt.comment(`lease C routed after ${Date.now() - liveSince} ms`);
      tt.same(delta(before, await resyncs(node1)), d, 'lease C came as a live event (no further re-list)');
      for (const node of cluster.nodes) tt.ok(running(cluster, node), `${node.name}: flanneld did not exit`);
    } finally {
      dumpLogsIfFailed(tt, cluster);
    }
  });

  t.test('etcd compacts past a stalled daemon\'s watch: the watch ends as compacted and the re-list applies the difference', async (tt) => {
    const cluster = await newCluster(tt, 2);
    const node1 = cluster.nodes[0] as NodeHost;
    let stalled: number | undefined;
    try {
      await bringUp(cluster, [`--healthz-port=${METRICS_PORT}`]);
      const pid = daemonPid(cluster, node1);
      await cluster.etcd.put(`${SUBNETS}/10.244.201.0-24`, leaseValue('192.0.2.201'));
      tt.ok(await until(async () => hasRoute(await ownRoutes(node1), '10.244.201.0/24', '192.0.2.201'), 15_000),
        `node1 routes lease A first:\n${await ownRoutes(node1)}`);
      const before = await resyncs(node1);

      // node1's daemon stops reading (SIGSTOP, as a process stalled by the host) while etcd, up all along,
      // is flooded under the watched prefix (unparsable keys: 400 × 4 kB fills its watch stream, so etcd
      // takes the watcher off its synced set), lease A is deleted, lease B created, and etcd compacted.
      process.kill(pid, 'SIGSTOP');
      stalled = pid;
      await execCheckedIn(cluster.topo.underlayNs, process.execPath,
        [FLOOD, `http://${LOOPBACK}:${cluster.etcd.clientPort}`, `${SUBNETS}/flood-`, '400', '4000']);
      await cluster.etcd.ctlChecked(['del', `${SUBNETS}/10.244.201.0-24`], LOOPBACK);
      await cluster.etcd.ctlChecked(['put', `${SUBNETS}/10.244.202.0-24`, leaseValue('192.0.2.202')], LOOPBACK);
      const rev = await etcdRevision(cluster, LOOPBACK);
      await cluster.etcd.ctlChecked(['compact', String(rev)], LOOPBACK);
      process.kill(pid, 'SIGCONT');
      stalled = undefined;

      const resumed = Date.now();
      const routes = await converged(node1, '10.244.202.0/24', '192.0.2.202', '10.244.201.0/24', 15_000);
      tt.comment(`node1 converged ${Date.now() - resumed} ms after it resumed`);
      tt.ok(routes.ok, `within 15 s node1 routes lease B and no longer lease A:\n${routes.text}`);
      tt.equal(daemonPid(cluster, node1), pid, `the same daemon process (pid ${pid}): not a restart`);
      const d = delta(before, await resyncs(node1));
      tt.equal(d.compacted, 1, `the watch ended once as compacted and the leases were re-listed: resyncs ${JSON.stringify(d)}`);
      tt.equal(d.error + d.ended + d.canceled, 0, 'no other interruption (etcd never went away)');
      const logged = relistLogs(logOf(cluster, node1)).filter((l) => l.kind === 'compacted').map((l) => l.reason);
      tt.same(logged, [`compacted at revision ${rev}`], 'the daemon logs the re-list with kind compacted, at the revision etcd was compacted at');
      for (const node of cluster.nodes) tt.ok(running(cluster, node), `${node.name}: flanneld did not exit`);
    } finally {
      if (stalled !== undefined) process.kill(stalled, 'SIGCONT');
      dumpLogsIfFailed(tt, cluster);
    }
  });

  t.test('etcd down at start: the daemon waits quietly, then comes up', async (tt) => {
    const cluster = await newCluster(tt, 1);
    try {
      const node = cluster.nodes[0] as NodeHost;
      const port = 9000 + Math.floor(Math.random() * 1000);
      await cluster.putConfig(CONFIG);
      await cluster.etcd.stop(true);
      const d = cluster.startDaemon(node, [`--healthz-port=${port}`]);
      const pid = d.proc.child.pid as number;

      // Let node start and the health server bind before measuring.
      tt.ok(await until(async () => /^\d{3}/.test(await httpStatus(node.ns, port, '/healthz')), 10_000), 'the health server answers');
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      tt.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /flanneld\/main\.js/, `pid ${pid} (${comm}) is the daemon itself`);
      const hz = clockTicksPerSecond();
      const t0 = cpuTicks(pid);
      const w0 = Date.now();
      await sleep(5000);
      const cpuSec = (cpuTicks(pid) - t0) / hz;
      const wallSec = (Date.now() - w0) / 1000;
      const share = cpuSec / wallSec;
      tt.comment(`CPU while waiting for etcd: ${cpuSec.toFixed(2)} s over ${wallSec.toFixed(1)} s = ${(share * 100).toFixed(1)} %`);
      tt.ok(share < 0.05, `CPU use < 5 % of one core while etcd is down (${(share * 100).toFixed(1)} %)`);
      tt.ok(running(cluster, node), 'the daemon keeps running without etcd');
      tt.equal(await httpStatus(node.ns, port, '/readyz'), '503', '/readyz is 503 while there is no lease');

      await cluster.etcd.start();
      const subnet = await cluster.waitForSubnet(node, 20_000).catch((err: Error) => `error: ${err.message}`);
      tt.match(subnet, /^10\.244\.\d+\.1\/24$/, 'a subnet once etcd is up');
      tt.ok(await until(async () => (await httpStatus(node.ns, port, '/readyz')) === '200', 10_000), '/readyz turns 200');
    } finally {
      dumpLogsIfFailed(tt, cluster);
    }
  });

  t.test('several endpoints, the first one unserved: still a subnet', async (tt) => {
    const cluster = await newCluster(tt, 1);
    try {
      const node = cluster.nodes[0] as NodeHost;
      await cluster.putConfig(CONFIG);
      const start = Date.now();
      cluster.startDaemon(node, ['--etcd-endpoints=http://192.0.2.253:2379,http://192.0.2.254:2379']);
      const subnet = await cluster.waitForSubnet(node, 25_000).catch((err: Error) => `error: ${err.message}`);
      tt.match(subnet, /^10\.244\.\d+\.1\/24$/, 'a subnet through the second endpoint');
      tt.comment(`subnet after ${Date.now() - start} ms`);
      tt.ok(running(cluster, node), 'the daemon runs');
    } finally {
      dumpLogsIfFailed(tt, cluster);
    }
  });
}
