// A real single-member etcd on loopback for integration tests (no root): clients talk to it on
// 127.0.0.1, the test on 127.0.0.2, so the test can cut the clients off (etcd restarted on 127.0.0.2
// only) and change etcd meanwhile, wipe its data, or let a stalled client's watch fall behind.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { EtcdServer } from '../../deploy/local/etcd-server.js';

export const CLIENT_IP = '127.0.0.1';
export const ADMIN_IP = '127.0.0.2';
const FLOOD = join(import.meta.dirname, 'etcd-flood.mjs');

/** Starts etcd on both addresses (random ports) and destroys it at the end of `t`. */
export async function startLoopbackEtcd(t: Test): Promise<EtcdServer> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const etcd = new EtcdServer({ listenIps: [ADMIN_IP, CLIENT_IP], clientPort: port, peerPort: port + 1 });
  t.teardown(() => etcd.destroy());
  await etcd.start();
  return etcd;
}

/** Client endpoints (127.0.0.1 only): what the code under test connects to. */
export const clientEndpoints = (etcd: EtcdServer): string[] => etcd.endpoints([CLIENT_IP]);

/** Runs `change` while etcd serves the test only: clients see an outage and miss whatever `change` does. */
export async function whileCutOff(etcd: EtcdServer, change: () => Promise<void>): Promise<void> {
  await etcd.stop(true);
  await etcd.start([ADMIN_IP]);
  await change();
  await etcd.stop(false);
  await etcd.start();
}

/** etcd loses its data (killed, data directory deleted, started again): same cluster, revision back to 1. */
export async function wipe(etcd: EtcdServer): Promise<void> {
  await etcd.stop(true);
  rmSync(join(etcd.dataDir, 'member'), { recursive: true, force: true });
  await etcd.start();
}

/** The current etcd revision. */
export async function revisionOf(etcd: EtcdServer): Promise<bigint> {
  const out = await etcd.ctlChecked(['endpoint', 'status', '-w', 'json']);
  return BigInt(/"revision":(\d+)/.exec(out)?.[1] ?? Number.NaN);
}

/**
 * While this process's event loop is blocked (every step is synchronous), its watch streams are not
 * read: `count` writes of `bytes` bytes under `floodPrefix` fill the stream, so etcd takes the watcher
 * off its synced set; then `after` runs (etcdctl argument lists) and etcd is compacted at its current
 * revision. When the loop runs again, etcd ends that watch with a compacted response: its slow-watcher
 * path. 400 × 4 kB is four times what was measured to be needed on loopback. Returns the compaction revision.
 */
export function stallThenCompact(etcd: EtcdServer, floodPrefix: string, after: ReadonlyArray<readonly string[]>, count = 400, bytes = 4000): bigint {
  const endpoint = etcd.endpoints([ADMIN_IP])[0] as string;
  execFileSync(process.execPath, [FLOOD, endpoint, floodPrefix, String(count), String(bytes)], { encoding: 'utf8' });
  const ctl = (args: readonly string[]): string =>
    execFileSync('etcdctl', ['--endpoints', endpoint, ...args], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
  for (const args of after) ctl(args);
  const revision = BigInt(/"revision":(\d+)/.exec(ctl(['endpoint', 'status', '-w', 'json']))?.[1] ?? Number.NaN);
  ctl(['compact', revision.toString()]);
  return revision;
}
