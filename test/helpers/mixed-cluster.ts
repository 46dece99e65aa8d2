// Shared by the mixed-cluster tests (test/netns/mixed-*.test.ts): the real flannel or a one-line skip, pod pings
// until every pair answers, and a TCP transfer with sha256 compared on both ends.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { type LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import { realFlannelOrSkip } from '../../deploy/local/real-flannel.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { until } from './wait.js';

const FIXTURES = new URL('../netns/fixtures/', import.meta.url).pathname;

/** The real flanneld's path; where it cannot be built (no Go, no module proxy) the test is skipped with the reason
 * in one line (the caller returns when it gets undefined). */
export async function realFlannelOrSkipTest(t: Test): Promise<string | undefined> {
  let reason = '';
  const bin = await realFlannelOrSkip((line) => { reason = line; });
  if (!bin) t.plan(0, reason);
  return bin;
}

/** Pings every pair of pods until all answer (or throws after `timeoutMs`); returns the matrix. */
export async function allPairsPing(cluster: LocalCluster, pods: readonly PodHost[], timeoutMs = 20_000): Promise<boolean[][]> {
  return until('all-pairs connectivity', async () => {
    const m = await cluster.pingMatrix(pods);
    return m.flat().every(Boolean) && m;
  }, timeoutMs);
}

/** Sends `mb` MiB of random bytes over TCP from one pod to another; asserts equal sha256 on both ends. */
export async function sha256Transfer(t: Test, from: PodHost, to: PodHost, mb: number, port = 5202): Promise<void> {
  const server = spawnIn(to.ns, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'server', to.ip, String(port)]);
  t.teardown(() => stopProcess(server, 'SIGKILL'));
  await until('transfer server', async () => server.output().includes('listening'), 5000);
  const sent = (await execCheckedIn(from.ns, process.execPath, [join(FIXTURES, 'tcp-transfer.mjs'), 'client', to.ip, String(port), String(mb * 1024 * 1024)])).trim();
  await server.exited;
  t.equal(server.output().trim().split('\n').at(-1), sent, `${mb} MB ${from.ip} (${from.node.name}) → ${to.ip} (${to.node.name}): sha256 matches`);
}

/** Whether the node's daemon (either kind) is still running. */
export const running = (c: LocalCluster, node: NodeHost): boolean => {
  const d = c.daemons.get(node.name);
  return Boolean(d && d.proc.child.exitCode === null && d.proc.child.signalCode === null);
};

/** Waits for a subnet.env written after `since` (ms since the epoch); returns FLANNEL_SUBNET. Fails at once,
 * with its output, if the node's daemon exits meanwhile. */
export async function freshSubnet(c: LocalCluster, node: NodeHost, since: number): Promise<string> {
  return until(`subnet.env of ${node.name}`, async () => {
    const d = c.daemons.get(node.name);
    if (!running(c, node)) throw new Error(`${d?.kind} on ${node.name} exited ${d?.proc.child.exitCode}:\n${d?.proc.output()}`);
    let mtime = 0;
    try { mtime = statSync(c.subnetFileOf(node)).mtimeMs; } catch { return undefined; }
    return mtime >= since ? readEnvFile(c.subnetFileOf(node)).FLANNEL_SUBNET : undefined;
  }, 30_000);
}
