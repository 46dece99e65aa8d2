// One host's half of a data path in underlay mode, built on this machine with the given interface:
// nothing for raw, flannel.1 by hand plus a pod for kernel VXLAN, a flanneld plus a pod otherwise.
// Everything is undone by teardown(); setup refuses to touch a host that already has flannel devices.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { daemonPath, readEnvFile } from '../../deploy/local/local-cluster.js';
import { type SpawnedProcess, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { UnderlayOptions } from '../cli/options.js';
import { benchTag, onTeardown } from '../cli/teardown.js';
import { type DataPathDef, type Endpoint, UnavailableError } from '../datapaths/catalog.js';
import { addVtepPeer, createVtep, randomVtepMac, VTEP_DEV, VXLAN_OVERHEAD } from '../datapaths/kernel-vxlan.js';
import { lastDaemonMessage } from '../lib/daemon-log.js';
import { execOn, execOnChecked } from '../lib/exec.js';
import { BENCH_ROOT, type HalfInfo } from './coordinator.js';
import { addHostPod, type HostPod } from './host-pod.js';

export interface Half {
  readonly info: HalfInfo;
  /** Where this host's programs run (the pod, or the host for raw veth). */
  readonly endpoint: Endpoint;
  connect(peer: HalfInfo): Promise<void>;
  daemonPids(): number[];
  teardown(): Promise<void>;
}

export const netPrefix = (def: DataPathDef): string => `${BENCH_ROOT}/net/${def.id}`;
const FLANNEL_LINKS = [VTEP_DEV, 'flannel0', 'cni0'];

interface HostAddr { ip: string; mtu: number }

export async function hostAddress(iface: string): Promise<HostAddr> {
  const links = JSON.parse(await execOnChecked(undefined, 'ip', ['-j', 'addr', 'show', 'dev', iface])) as Array<{ mtu: number; addr_info?: Array<{ family: string; local: string }> }>;
  const ip = links[0]?.addr_info?.find((a) => a.family === 'inet')?.local;
  if (!ip || !links[0]) throw new Error(`${iface} has no IPv4 address`);
  return { ip, mtu: links[0].mtu };
}

/** Refuses to run where a real flannel might live: our devices must not exist beforehand. */
export async function checkHostIsClean(): Promise<void> {
  for (const link of FLANNEL_LINKS) {
    const r = await execOn(undefined, 'ip', ['link', 'show', link]);
    if (r.code === 0) throw new Error(`${link} already exists on this host; the benchmark needs a host without flannel (or remove ${link})`);
  }
}

/** Forwarding on for the pod, restored at teardown. */
async function enableForwarding(): Promise<() => Promise<void>> {
  const before = (await execOnChecked(undefined, 'sysctl', ['-n', 'net.ipv4.ip_forward'])).trim();
  await execOnChecked(undefined, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  return async () => { await execOn(undefined, 'sysctl', ['-q', '-w', `net.ipv4.ip_forward=${before}`]); };
}

export async function setupHalf(def: DataPathDef, u: UnderlayOptions, role: 'a' | 'b'): Promise<Half> {
  const host = await hostAddress(u.iface);
  if (def.id === 'raw') {
    return { info: { hostIp: host.ip, ip: host.ip }, endpoint: { ns: undefined, ip: host.ip }, connect: async () => {}, daemonPids: () => [], teardown: async () => {} };
  }
  const undo: Array<() => Promise<unknown>> = [];
  // Registered globally too, so that Ctrl-C in the middle of a measurement still undoes this half.
  const teardown = onTeardown(`${def.id} on this host`, async () => {
    for (const f of undo.splice(0).reverse()) await f().catch(() => {});
  });
  try {
    undo.push(await enableForwarding());
    const tag = benchTag(`u${role}`);
    return def.backend ? await flanneldHalf(def, u, host, tag, undo, teardown) : await kernelVxlanHalf(role, u, host, tag, undo, teardown);
  } catch (err) {
    await teardown();
    throw err;
  }
}

async function kernelVxlanHalf(role: 'a' | 'b', u: UnderlayOptions, host: HostAddr, tag: string, undo: Array<() => Promise<unknown>>, teardown: () => Promise<void>): Promise<Half> {
  const third = role === 'a' ? 1 : 2;
  const mac = randomVtepMac();
  undo.push(() => execOn(undefined, 'ip', ['link', 'del', VTEP_DEV]));
  await createVtep({ ns: undefined, localIp: host.ip, extIface: u.iface, extMtu: host.mtu, mac, address: `10.244.${third}.0` });
  const pod = await addHostPod(tag, `10.244.${third}.1/24`, `10.244.${third}.2`, host.mtu - VXLAN_OVERHEAD);
  undo.push(() => pod.remove());
  return {
    info: { hostIp: host.ip, ip: pod.ip, subnet: `10.244.${third}.0/24`, vtepMac: mac },
    endpoint: { ns: pod.ns, ip: pod.ip },
    connect: async (peer) => {
      if (!peer.subnet || !peer.vtepMac) throw new Error('the other host sent no VTEP MAC or subnet');
      await addVtepPeer(undefined, { subnet: peer.subnet, mac: peer.vtepMac, publicIp: peer.hostIp });
    },
    daemonPids: () => [],
    teardown,
  };
}

async function flanneldHalf(def: DataPathDef, u: UnderlayOptions, host: HostAddr, tag: string, undo: Array<() => Promise<unknown>>, teardown: () => Promise<void>): Promise<Half> {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-bench-'));
  undo.push(async () => rmSync(dir, { recursive: true, force: true }));
  const subnetFile = join(dir, 'subnet.env');
  // Kernel state flanneld leaves on purpose at stop (routes, devices) is ours to remove here.
  undo.push(() => execOn(undefined, 'ip', ['route', 'flush', 'root', '10.244.0.0/16', 'proto', '241']));
  for (const link of [VTEP_DEV, 'flannel0']) undo.push(() => execOn(undefined, 'ip', ['link', 'del', link]));
  const proc: SpawnedProcess = spawnIn(undefined, process.execPath, [daemonPath(), `--etcd-endpoints=${u.etcd}`, `--etcd-prefix=${netPrefix(def)}`,
    `--subnet-file=${subnetFile}`, `--iface=${u.iface}`, '--log-level=warn']);
  undo.push(() => stopProcess(proc, 'SIGTERM', 5000));
  const subnet = await waitForSubnetFile(proc, subnetFile);
  const env = readEnvFile(subnetFile);
  const base = subnet.split('.').slice(0, 3).join('.');
  const pod: HostPod = await addHostPod(tag, subnet, `${base}.2`, Number(env.FLANNEL_MTU) || host.mtu);
  undo.push(() => pod.remove());
  return {
    info: { hostIp: host.ip, ip: pod.ip, subnet },
    endpoint: { ns: pod.ns, ip: pod.ip },
    connect: async () => {},
    daemonPids: () => (proc.child.pid && proc.child.exitCode === null ? [proc.child.pid] : []),
    teardown,
  };
}

async function waitForSubnetFile(proc: SpawnedProcess, file: string): Promise<string> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const subnet = readEnvFile(file).FLANNEL_SUBNET;
    if (subnet) return subnet;
    if (proc.child.exitCode === 69) throw new UnavailableError(`flanneld exited 69: ${lastDaemonMessage(proc.output())}`);
    if (proc.child.exitCode !== null) throw new Error(`flanneld exited ${proc.child.exitCode}: ${lastDaemonMessage(proc.output())}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`flanneld wrote no subnet file in 30 s: ${lastDaemonMessage(proc.output())}`);
}
