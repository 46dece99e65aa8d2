// Pod traffic in a local cluster, for the end-to-end tests: pings until every pair of pods answers, and a TCP
// transfer with sha256 compared on both ends.
import { join } from 'node:path';
import type { Test } from 'tap';
import type { LocalCluster } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { PodHost } from '../../deploy/local/topology.js';
import { until } from './wait.js';

const FIXTURES = new URL('../netns/fixtures/', import.meta.url).pathname;

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
