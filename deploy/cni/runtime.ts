// A minimal container runtime for the local cluster and the tests: it calls the built CNI plugin
// (dist/cni/flannel) inside a node's namespace with the CNI_* variables and a config on stdin, as
// containerd or CRI-O would, and delegates to the reference plugins in /usr/lib/cni (Debian).
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../../lib/run-command.js';

export const REFERENCE_PLUGINS_DIR = '/usr/lib/cni';

/** dist/cni/flannel, found from this file both under tsx (deploy/cni) and compiled (dist/deploy/cni). */
export function cniPluginPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  const path = resolve(dir, 'dist', 'cni', 'flannel');
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`npm run build\` first`);
  return path;
}

export interface FlannelNetwork {
  readonly subnetFile: string;
  /** The plugin's dataDir (saved delegate configs). */
  readonly dataDir: string;
  /** host-local's dataDir (address reservations). */
  readonly ipamDataDir: string;
  readonly name?: string;
  readonly cniVersion?: string;
}

/** The network config a runtime hands the plugin: kube-flannel's conflist entry, paths made local. */
export function flannelNetConf(n: FlannelNetwork, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: n.cniVersion ?? '1.0.0', name: n.name ?? 'cbr0', type: 'flannel',
    subnetFile: n.subnetFile, dataDir: n.dataDir, ipam: { dataDir: n.ipamDataDir },
    delegate: { hairpinMode: true, isDefaultGateway: true }, ...extra,
  };
}

export interface CniCall {
  /** The namespace the plugin runs in: the node's. */
  readonly nodeNs: string;
  readonly command: 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | string;
  readonly containerId: string;
  /** The pod's namespace path, e.g. /run/netns/<name>. */
  readonly netns: string;
  readonly config: Record<string, unknown> | string;
  readonly ifname?: string;
  /** Environment beyond the CNI_* variables; default: only this process's PATH. */
  readonly env?: Readonly<Record<string, string>>;
  readonly cniPath?: string;
  /** The plugin to run; dist/cni/flannel unless given (e.g. the copy an init container installed). */
  readonly plugin?: string;
}

export interface CniReply {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as JSON, when it is JSON. */
  readonly json: Record<string, unknown> | undefined;
}

/** Runs the plugin with exactly the given environment (`env -i`), so nothing else leaks in. */
export async function callPlugin(c: CniCall): Promise<CniReply> {
  const vars = {
    CNI_COMMAND: c.command, CNI_CONTAINERID: c.containerId, CNI_NETNS: c.netns, CNI_IFNAME: c.ifname ?? 'eth0',
    CNI_PATH: c.cniPath ?? REFERENCE_PLUGINS_DIR, ...(c.env ?? { PATH: process.env.PATH ?? '' }),
  };
  const assignments = Object.entries(vars).map(([k, v]) => `${k}=${v}`);
  const input = typeof c.config === 'string' ? c.config : JSON.stringify(c.config);
  const r = await runCommand('ip', ['netns', 'exec', c.nodeNs, 'env', '-i', ...assignments, c.plugin ?? cniPluginPath()], input);
  let json: Record<string, unknown> | undefined;
  try { json = JSON.parse(r.stdout) as Record<string, unknown>; } catch { json = undefined; }
  return { ...r, json };
}

/** Like callPlugin, but a failure throws with the plugin's CNI error. */
export async function callPluginChecked(c: CniCall): Promise<Record<string, unknown>> {
  const r = await callPlugin(c);
  if (r.code !== 0) throw new Error(`CNI ${c.command} of ${c.containerId} in ${c.nodeNs} failed (exit ${r.code}): ${r.stdout}${r.stderr}`);
  return r.json ?? {};
}

/** The IPv6 address of a dual-stack CNI result, without its prefix length; undefined when it has none. */
export function resultIp6(result: Record<string, unknown>): string | undefined {
  const ips = result.ips as Array<{ address?: string }> | undefined;
  return ips?.map((ip) => ip.address).find((a) => a?.includes(':'))?.split('/')[0];
}

/** The IPv4 address of a CNI result (of an IPv6-only one, its first address), without its prefix length. */
export function resultIp(result: Record<string, unknown>): string {
  const ips = result.ips as Array<{ address?: string }> | undefined;
  const address = ips?.map((ip) => ip.address).find((a) => a && !a.includes(':')) ?? ips?.[0]?.address;
  if (!address) throw new Error(`the CNI result has no address: ${JSON.stringify(result)}`);
  return address.split('/')[0] as string;
}
