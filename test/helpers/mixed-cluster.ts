// Shared by the mixed-cluster tests (test/netns/mixed-*.test.ts): the real flannel or a one-line skip, whether a
// node's daemon (either kind) runs, and waiting for a fresh subnet.env. Pod traffic helpers: pod-traffic.ts.
import { statSync } from 'node:fs';
import type { Test } from 'tap';
import { type LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { realFlannelOrSkip } from '../../deploy/local/real-flannel.js';
import type { NodeHost } from '../../deploy/local/topology.js';
import { until } from './wait.js';

/** The real flanneld's path; where it cannot be built (no Go, no module proxy) the test is skipped with the reason
 * in one line (the caller returns when it gets undefined). */
export async function realFlannelOrSkipTest(t: Test): Promise<string | undefined> {
  let reason = '';
  const bin = await realFlannelOrSkip((line) => { reason = line; });
  if (!bin) t.plan(0, reason);
  return bin;
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
