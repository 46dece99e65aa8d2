// The userspace ceiling, measured beside the real paths: pods behind cni0 on two node namespaces whose
// routes point into a TUN device each, and tun-relay.c (one process, built with cc at setup) copying
// every read of one device, virtio-net header and all, into the other. TSO super-packets pass whole.
// A real tunnel does strictly more per byte (two more copies, a UDP socket on each side, the underlay),
// so no userspace udp or vxlan path can beat this row on the same machine in the same run.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { Topology } from '../../deploy/local/topology.js';
import { repoRoot } from '../cli/options.js';
import { onTeardown } from '../cli/teardown.js';
import { buildCProgram } from '../lib/c-program.js';
import { errorText, ipBatchOn } from '../lib/exec.js';
import { UnavailableError } from './catalog.js';

export const RELAY_DEV = 'trelay0';

export interface TunRelay {
  /** The relay process, for the "daemon CPU" column; empty once it has exited. */
  readonly pids: () => number[];
  readonly stop: () => Promise<void>;
}

/** Builds and starts the relay between the two nodes' namespaces, and routes each node's peer subnet
 * (10.244.<peer>.0/24) into its device with the given MTU. */
export async function startTunRelay(topo: Topology, mtu: number): Promise<TunRelay> {
  const [a, b] = topo.nodes;
  if (!a || !b) throw new Error('the TUN relay needs two nodes');
  const program = await buildCProgram(join(repoRoot(), 'bench', 'datapaths', 'tun-relay.c')).catch((err: unknown) => {
    throw new UnavailableError(errorText(err));
  });
  const proc = spawnIn(undefined, program.bin, [a.ns, b.ns, RELAY_DEV]);
  const stop = onTeardown('TUN relay', async () => {
    await stopProcess(proc, 'SIGKILL');
    program.remove();
  });
  try {
    const deadline = Date.now() + 10_000;
    while (!/^ready$/m.test(proc.output())) {
      if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`tun-relay did not start: ${proc.output().trim() || 'no output'}`);
      await sleep(20);
    }
    for (const [node, peer] of [[a, b], [b, a]] as const) {
      await ipBatchOn(node.ns, [`link set ${RELAY_DEV} mtu ${mtu} up`, `route replace 10.244.${peer.index}.0/24 dev ${RELAY_DEV}`]);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const pids = (): number[] => (proc.child.pid && proc.child.exitCode === null ? [proc.child.pid] : []);
  return { pids, stop };
}
