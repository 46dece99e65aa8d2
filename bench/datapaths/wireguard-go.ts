// The wireguard-go reference rows: a node set up by hand exactly as flannel's wireguard backend sets one up
// (wireguard.md §1), with wireguard-go in place of the kernel module this machine lacks. On each node
// namespace: wireguard-go on a TUN named like flannel-wg (fwg<run tag><node>, unique per run because
// /var/run/wireguard, where its UAPI socket lives, is shared by every namespace), a key pair from
// `wg genkey`/`wg pubkey`, `wg set <dev> private-key <file> listen-port 51820 peer <pub> endpoint
// <peer ip>:51820 allowed-ips <peer subnet>`, <subnet>.0/32 on the device, MTU underlay − 80, the device
// up, and a route for the whole network on it (scope link). The wireguard-go processes are the "daemon".
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type SpawnedProcess, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { Topology } from '../../deploy/local/topology.js';
import { onTeardown } from '../cli/teardown.js';
import { execOn, execOnChecked, ipBatchOn } from '../lib/exec.js';
import { OVERLAY_NETWORK } from './catalog.js';

export const WG_PORT = 51820;
/** flannel's wireguard backend: device MTU (and FLANNEL_MTU) = underlay MTU − 80 (IPv6 worst case). */
export const WIREGUARD_OVERHEAD = 80;
export const WG_RUN_DIR = '/var/run/wireguard';
const IFNAMSIZ = 16;

export interface WireguardGoPair {
  /** The wireguard-go processes still running, for the "daemon CPU" column. */
  readonly pids: () => number[];
  readonly devices: readonly string[];
  readonly stop: () => Promise<void>;
}

/** flannel-wg's stand-in on node `index` of the run tagged `tag`: at most 15 characters. */
export function wgDeviceName(tag: string, index: number): string {
  const name = `fwg${tag}${index}`;
  if (name.length >= IFNAMSIZ) throw new Error(`device name ${name} is longer than 15 characters`);
  return name;
}

/** Starts `bin` (a wireguard-go) on both nodes of `topo` and joins them as flannel would; node i owns
 * 10.244.<i>.0/24. Everything it made is removed by `stop`, also registered with the global teardown. */
export async function startWireguardGo(topo: Topology, bin: string, tag: string, extMtu: number): Promise<WireguardGoPair> {
  const [a, b] = topo.nodes;
  if (!a || !b) throw new Error('wireguard-go needs two nodes');
  const nodes = [a, b] as const;
  const devices = nodes.map((n) => wgDeviceName(tag, n.index));
  const keyDir = mkdtempSync(join(tmpdir(), `flannel-bench-${tag}-wg-`));
  const procs: SpawnedProcess[] = [];
  const stop = onTeardown(`wireguard-go (${devices.join(', ')})`, async () => {
    // SIGTERM lets wireguard-go close its device and remove its socket; what is left is removed below.
    await Promise.all(procs.map((p) => stopProcess(p, 'SIGTERM', 3000)));
    for (const [i, node] of nodes.entries()) {
      await execOn(node.ns, 'ip', ['link', 'del', 'dev', devices[i] as string]).catch(() => undefined);
    }
    for (const dev of devices) rmSync(join(WG_RUN_DIR, `${dev}.sock`), { force: true });
    rmSync(keyDir, { recursive: true, force: true });
  });
  try {
    const keys: Array<{ file: string; pub: string }> = [];
    for (const dev of devices) {
      const priv = (await execOnChecked(undefined, 'wg', ['genkey'])).trim();
      const pub = (await execOnChecked(undefined, 'wg', ['pubkey'], `${priv}\n`)).trim();
      const file = join(keyDir, `${dev}.key`);
      writeFileSync(file, `${priv}\n`, { mode: 0o600 });
      keys.push({ file, pub });
    }
    for (const [i, node] of nodes.entries()) {
      const dev = devices[i] as string;
      if (existsSync(join(WG_RUN_DIR, `${dev}.sock`))) throw new Error(`${WG_RUN_DIR}/${dev}.sock already exists`);
      procs.push(spawnIn(node.ns, bin, ['-f', dev], { LOG_LEVEL: 'error', WG_PROCESS_FOREGROUND: '1' }));
    }
    for (const [i, proc] of procs.entries()) await waitForSocket(proc, devices[i] as string);
    for (const [i, node] of nodes.entries()) {
      const dev = devices[i] as string;
      const j = 1 - i;
      const peer = nodes[j] as typeof node;
      await execOnChecked(node.ns, 'wg', [
        'set', dev, 'private-key', (keys[i] as { file: string }).file, 'listen-port', String(WG_PORT),
        'peer', (keys[j] as { pub: string }).pub, 'endpoint', `${peer.underlayIp}:${WG_PORT}`, 'allowed-ips', `10.244.${peer.index}.0/24`,
      ]);
      await ipBatchOn(node.ns, [
        `addr add 10.244.${node.index}.0/32 dev ${dev}`,
        `link set ${dev} mtu ${extMtu - WIREGUARD_OVERHEAD} up`,
        `route replace ${OVERLAY_NETWORK} dev ${dev} scope link`,
      ]);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const pids = (): number[] => procs.flatMap((p) => (p.child.pid && p.child.exitCode === null && p.child.signalCode === null ? [p.child.pid] : []));
  return { pids, devices, stop };
}

/** wireguard-go is ready once its UAPI socket exists; it exiting first is an error with its words. */
async function waitForSocket(proc: SpawnedProcess, dev: string, timeoutMs = 10_000): Promise<void> {
  const sock = join(WG_RUN_DIR, `${dev}.sock`);
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(sock)) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`wireguard-go ${dev} exited ${proc.child.exitCode ?? proc.child.signalCode}: ${proc.output().trim().split('\n').slice(-3).join(' | ') || 'no output'}`);
    }
    if (Date.now() > deadline) throw new Error(`wireguard-go ${dev}: no ${sock} after ${timeoutMs / 1000} s`);
    await sleep(20);
  }
}
