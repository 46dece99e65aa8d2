// Pod traffic in a local cluster, for the end-to-end tests: pings until every pair of pods answers, and a TCP
// transfer with sha256 compared on both ends.
import { join } from 'node:path';
import type { Test } from 'tap';
import type { LocalCluster } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, spawnIn, stopProcess } from '../../deploy/local/netns.js';
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

/** DF pings of exactly `mtu` bytes from `from` pass to `to.pod` (IPv4) and `to.pod6` (IPv6); one byte more over
 * IPv6 is refused with the MTU named (`tooBig`: Packet Too Big, or the sender's own "message too long"). */
export async function checkPodMtu(t: Test, from: PodHost, to: { readonly pod: PodHost; readonly pod6: PodHost }, mtu: number, tooBig: RegExp): Promise<void> {
  const ping = (ip: string, size: number) => execIn(from.ns, 'ping', ['-n', '-c', '2', '-W', '2', '-i', '0.2', '-M', 'do', '-s', String(size), ip]);
  const v4 = await ping(to.pod.ip, mtu - 28);
  t.equal(v4.code, 0, `IPv4: a ${mtu}-byte DF ping crosses${v4.code ? `: ${v4.stdout}${v4.stderr}` : ''}`);
  const v6 = await ping(to.pod6.ip, mtu - 48);
  t.equal(v6.code, 0, `IPv6: a ${mtu}-byte ping (IPv6 never fragments in flight) crosses${v6.code ? `: ${v6.stdout}${v6.stderr}` : ''}`);
  const over = await ping(to.pod6.ip, mtu - 47);
  t.not(over.code, 0, `IPv6: ${mtu + 1} bytes do not cross`);
  t.match(`${over.stdout}${over.stderr}`, tooBig, `IPv6: ${mtu + 1} bytes get Packet Too Big naming the MTU`);
}
