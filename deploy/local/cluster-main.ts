// The README's main job: N nodes (namespaces on an underlay bridge) running flanneld against a local
// etcd, pods added through our CNI plugin (dist/cni/flannel → bridge + host-local), a node/subnet table
// and an all-pairs ping matrix, then teardown (Ctrl-C too). --keep leaves it running; --destroy ends it.
// --mixed (make cluster MIXED=1) runs the real flannel (deploy/local/real-flannel.ts) on every second node.
// --ipv6 dual (make cluster IPV6=dual) makes the network dual-stack: pods get an address of each family and
// the matrix is pinged on both. --ipv6 only (IPV6=only) makes it IPv6-only (EnableIPv4 false): pods get an
// IPv6 address only. --kube (make cluster KUBE=1) runs flanneld with --kube-subnet-mgr against a real
// kube-apiserver (built from k8s.io/kubernetes, deploy/local/kube-apiserver.ts) on the same etcd, with flannel's
// RBAC: each node's subnet is its Node's podCIDR (podCIDRs in dual-stack), net-conf.json is a file per node; with
// --mixed the real flannel runs in kube mode on every second node, on the same apiserver.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { cidrEquals, parseCidr4 } from '../../lib/ip.js';
import { cidr6Equals, parseCidr6 } from '../../lib/ip6.js';
import { runCommand } from '../../lib/run-command.js';
import { BACKEND_TYPES } from '../../subnet/network-config.js';
import { type CniPod, type DaemonKind, LocalCluster, readEnvFile } from './local-cluster.js';
import { buildKubeApiserver } from './kube-apiserver.js';
import { buildRealFlannel } from './real-flannel.js';
import { deleteNetns, runTag } from './netns.js';
import { CONTAINERS_MANIFEST, containerImage, containersOf, removeContainersOf, startContainerDaemons } from '../container/cluster-containers.js';
import type { NodeHost } from './topology.js';

/** The backends both our flanneld and the real flannel run here (flannel's wireguard needs the kernel module). */
const MIXED_BACKENDS = ['host-gw', 'udp', 'vxlan'] as const;
/** The backends that carry IPv6 here, as in flannel. */
const IPV6_BACKENDS = ['host-gw', 'vxlan', 'wireguard'] as const;
const NETWORK6 = 'fd00:10:244::/56';
const USAGE = `Usage: node dist/deploy/local/cluster-main.js [--backend ${BACKEND_TYPES.join('|')}] [--nodes N] [--pods N] [--mixed] [--ipv6 dual|only] [--kube] [--containers] [--keep]
       node dist/deploy/local/cluster-main.js --destroy TAG
  --backend  the flannel backend (default: $CLUSTER_BACKEND or host-gw)
  --nodes    nodes, 1-20 (default 3);  --pods  pods per node, 1-10 (default 2)
  --mixed    the real flannel (flannel-io/flannel, built with Go) on every second node, ours on the others
             (make cluster MIXED=1); backends ${MIXED_BACKENDS.join(', ')}, at least 2 nodes
  --ipv6     dual: a dual-stack network (make cluster IPV6=dual), IPv6Network ${NETWORK6}, underlay 2001:db8::/64;
             only: IPv6-only (make cluster IPV6=only, EnableIPv4 false); backends ${IPV6_BACKENDS.join(', ')}
  --kube     Kubernetes mode (make cluster KUBE=1): a real kube-apiserver (built with Go) on the etcd, flanneld with
             --kube-subnet-mgr and flannel's RBAC, each node's subnet its Node's podCIDR; with --ipv6 dual or
             only (the Nodes' podCIDRs IPv6 only), and --mixed (the real flannel in kube mode)
  --containers  every flanneld in a container of the built image (make cluster CONTAINERS=1; implies --kube): the
             pod spec of ${CONTAINERS_MANIFEST} run with podman (runc) in each node, the init containers installing
             the CNI plugin that adds the pods; the image is built first if needed (npm run image); not with --mixed
  --keep     leave the cluster running and print how to use it and tear it down
  --destroy  tear down a cluster left running by --keep`;
const RUN_ROOT = '/run/flannel-ts-cluster';
const READY_MARK = '--- cluster ready ---';
const EXIT = { OK: 0, FAILED: 1, USAGE: 64, UNAVAILABLE: 69, INTERRUPTED: 130 } as const;

class ExitError extends Error {
  constructor(readonly exitCode: number, message: string) { super(message); }
}

type Ipv6Mode = 'off' | 'dual' | 'only';
interface Options { backend: string; nodes: number; pods: number; mixed: boolean; ipv6: Ipv6Mode; kube: boolean; containers: boolean; keep: boolean; keeper: boolean; tag?: string; destroy?: string }

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { backend: process.env.CLUSTER_BACKEND || 'host-gw', nodes: 3, pods: 2, mixed: false, ipv6: 'off', kube: false, containers: false, keep: false, keeper: false };
  const int = (name: string, v: string, max: number): number => {
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) throw new ExitError(EXIT.USAGE, `--${name} must be 1-${max}, got ${JSON.stringify(v)}\n${USAGE}`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = (argv[i] as string).split(/=(.*)/s, 2) as [string, string | undefined];
    const value = (): string => inline ?? argv[++i] ?? '';
    switch (flag) {
      case '--backend': o.backend = value(); break;
      case '--nodes': o.nodes = int('nodes', value(), 20); break;
      case '--pods': o.pods = int('pods', value(), 10); break;
      case '--keep': o.keep = true; break;
      case '--mixed': o.mixed = true; break;
      case '--kube': o.kube = true; break;
      case '--containers': o.containers = true; o.kube = true; break;
      case '--ipv6': o.ipv6 = ipv6Mode(value()); break;
      case '--keeper': o.keeper = true; break;
      case '--tag': o.tag = value(); break;
      case '--destroy': o.destroy = value(); break;
      case '--help': case '-h': throw new ExitError(EXIT.OK, USAGE);
      default: throw new ExitError(EXIT.USAGE, `unknown argument ${JSON.stringify(argv[i])}\n${USAGE}`);
    }
  }
  if (!(BACKEND_TYPES as readonly string[]).includes(o.backend)) {
    throw new ExitError(EXIT.USAGE, `unknown backend ${JSON.stringify(o.backend)}: expected one of ${BACKEND_TYPES.join(', ')}`);
  }
  if (o.mixed && !(MIXED_BACKENDS as readonly string[]).includes(o.backend)) {
    throw new ExitError(EXIT.USAGE, `--mixed (MIXED=1) runs the real flannel beside ours, which share the backends ${MIXED_BACKENDS.join(', ')}; `
      + `not ${o.backend}: flannel's ${o.backend} backend needs the kernel WireGuard module, which this machine's nodes lack (ours is userspace)`);
  }
  if (o.ipv6 !== 'off' && !(IPV6_BACKENDS as readonly string[]).includes(o.backend)) {
    throw new ExitError(EXIT.USAGE, `--ipv6 ${o.ipv6} (IPV6=${o.ipv6}) needs a backend that carries IPv6 here: ${IPV6_BACKENDS.join(' or ')}, not ${o.backend}`
      + ' (udp is IPv4-only, as in flannel)');
  }
  if (o.mixed && o.ipv6 === 'only') {
    throw new ExitError(EXIT.USAGE, '--mixed with --ipv6 only: the real flannel cannot run an IPv6-only network on etcd (every flannel node would share one lease); use IPV6=dual with MIXED=1');
  }
  if (o.containers && o.mixed) throw new ExitError(EXIT.USAGE, '--containers (CONTAINERS=1) runs flannel-ts from the image on every node; it does not mix with --mixed (MIXED=1)');
  if (o.mixed && o.nodes < 2) throw new ExitError(EXIT.USAGE, '--mixed (MIXED=1) needs at least 2 nodes: ours on node1, the real flannel on node2');
  return o;
}

/** --ipv6 dual | only | off. */
function ipv6Mode(v: string): Ipv6Mode {
  if (v === 'dual' || v === 'only') return v;
  if (v === '' || v === 'off' || v === 'no' || v === '0') return 'off';
  throw new ExitError(EXIT.USAGE, `--ipv6 must be dual, only or off, got ${JSON.stringify(v)}\n${USAGE}`);
}

const runDir = (tag: string): string => join(RUN_ROOT, tag);

function removeRunDir(tag: string): void {
  rmSync(runDir(tag), { recursive: true, force: true });
  try { rmdirSync(RUN_ROOT); } catch { /* other clusters are still kept */ }
}

/** Builds the cluster and reports on it; tears it down at the end, on failure and on a signal. */
async function runCluster(o: Options): Promise<number> {
  const flannelBin = o.mixed ? await realFlannel() : undefined;
  const apiserver = o.kube ? await kubeApiserver() : undefined;
  const image = o.containers ? await containerImage((line) => console.log(line)).catch((err: Error) => { throw new ExitError(EXIT.UNAVAILABLE, err.message); }) : undefined;
  const tag = o.tag ?? runTag('fc');
  const store = apiserver ? `a real kube-apiserver ${apiserver.version} (on etcd)` : 'etcd';
  if (image) console.log(`Image ${image.image} (${Math.round(image.sizeBytes / 1e6)} MB): flanneld runs in it on every node, from ${CONTAINERS_MANIFEST}'s pod spec.`);
  console.log(`Building a ${o.nodes}-node ${{ off: '', dual: 'dual-stack ', only: 'IPv6-only ' }[o.ipv6]}cluster (tag ${tag}) with ${store} and the ${o.backend} backend${flannelBin ? `, mixed: the real flannel ${flannelBin.version} on the even nodes, flannel-ts on the odd ones` : ''}...`);
  let cluster: LocalCluster | undefined;
  let stopping: Promise<void> | undefined;
  let interrupted = false;
  let stopRequested: (() => void) | undefined;
  const teardown = (): Promise<void> => (stopping ??= (async () => {
    if (!cluster) return;
    console.log('Tearing down...');
    await cluster.destroy();
    const left = await leftovers(tag, statePaths(cluster));
    console.log(left.length === 0 ? 'Done: no namespace, device, process or file of this cluster is left.' : `Left behind: ${left.join(', ')}`);
  })());
  const onSignal = (sig: string): void => {
    if (stopRequested) { stopRequested(); return; }
    if (interrupted) return;
    interrupted = true;
    console.log(`\n${sig}: stopping (please wait for the teardown)...`);
    if (cluster) void teardown().finally(() => process.exit(EXIT.INTERRUPTED));
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
  try {
    cluster = await LocalCluster.create({ tag, nodes: o.nodes, ipv6: o.ipv6 === 'only' ? 'only' : o.ipv6 === 'dual', ...(apiserver ? { kube: { bin: apiserver.bin } } : {}) });
    if (o.keeper) writeFileSync(join(runDir(tag), 'paths.json'), JSON.stringify(statePaths(cluster)));
    if (interrupted) return EXIT.INTERRUPTED;
    const rows = await bringUp(cluster, o, flannelBin);
    const ok = await report(cluster, rows, () => interrupted, o.mixed, o.ipv6);
    if (!o.keeper || !ok) return ok ? EXIT.OK : EXIT.FAILED;
    printKeepInstructions(tag, rows, cluster);
    console.log(READY_MARK);
    await new Promise<void>((resolve) => { stopRequested = resolve; });
    return EXIT.OK;
  } finally {
    await teardown();
  }
}

/** A cluster's directories outside the run dir: its state, etcd's data, the kube-apiserver's (Kubernetes mode). */
function statePaths(cluster: LocalCluster): string[] {
  return [cluster.stateDir, cluster.etcd.dataDir, ...(cluster.kube ? [dirname(cluster.kube.certDir)] : [])];
}

/** What of a cluster still exists: its namespaces (devices and processes live in them) and state dirs. */
async function leftovers(tag: string, paths: readonly string[]): Promise<string[]> {
  return [...await clusterNamespaces(tag), ...paths.filter((p) => existsSync(p)), ...await containersOf(tag)];
}

async function clusterNamespaces(tag: string): Promise<string[]> {
  const list = await runCommand('ip', ['netns', 'list']);
  return list.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${tag}-`));
}

/** --mixed: the real flanneld (built from its Go module the first time, about 80 s), or exit 69 saying why not. */
async function realFlannel(): Promise<{ bin: string; version: string }> {
  const build = buildRealFlannel();
  const slow = setTimeout(() => console.log('Building the real flannel from its Go module (deploy/local/flannel; about 80 s on 2 cores, once)...'), 1000);
  const b = await build.finally(() => clearTimeout(slow));
  if (!b.ok) {
    throw new ExitError(EXIT.UNAVAILABLE, `MIXED=1 needs the real flannel (flannel-io/flannel, built from its Go module by deploy/local/real-flannel.ts), which is not available here:\n  ${b.reason}\n`
      + '  Install Go (https://go.dev/dl/) and run `make deps`, or run `make cluster` without MIXED=1.');
  }
  return { bin: b.bin, version: b.version };
}

/** --kube: the real kube-apiserver (built from k8s.io/kubernetes the first time, minutes), or exit 69 saying why not. */
async function kubeApiserver(): Promise<{ bin: string; version: string }> {
  const build = buildKubeApiserver();
  const slow = setTimeout(() => console.log('Getting the real kube-apiserver (deploy/local/kube-apiserver; built from k8s.io/kubernetes the first time, which takes minutes; `make deps` starts it)...'), 1000);
  const b = await build.finally(() => clearTimeout(slow));
  if (!b.ok) {
    throw new ExitError(EXIT.UNAVAILABLE, `KUBE=1 needs the real kube-apiserver (k8s.io/kubernetes, built from its Go modules by deploy/local/kube-apiserver.ts), which is not available here:\n  ${b.reason}\n`
      + '  Install Go (https://go.dev/dl/) and run `make deps`, or run `make cluster` without KUBE=1.');
  }
  return { bin: b.bin, version: b.version };
}

/** Which daemon a node runs: --mixed puts the real flannel on every second node (node2, node4...). */
function daemonKindOf(index: number, mixed: boolean): DaemonKind {
  return mixed && index % 2 === 0 ? 'flannel' : 'flannel-ts';
}

/** A node's daemon in the node table and the matrix: flannel-ts, or the real flannel with its release. */
interface Row { node: NodeHost; subnet: string; subnet6?: string; pods: CniPod[]; daemon: string; podCidrs?: string[] }

async function bringUp(cluster: LocalCluster, o: Options, flannel: { bin: string; version: string } | undefined): Promise<Row[]> {
  const v4 = o.ipv6 === 'only' ? { EnableIPv4: false } : { Network: '10.244.0.0/16' };
  const netConf = { ...v4, ...(o.ipv6 !== 'off' ? { EnableIPv6: true, IPv6Network: NETWORK6 } : {}), Backend: { Type: o.backend } };
  await cluster.putConfig(netConf);
  if (cluster.kube && flannel) {
    // The real flannel in kube mode panics on a Node with no annotations at all ("assignment to entry in nil map",
    // kube.go:431); a real Node always has the one the kubelet writes when it registers, so ours get it too.
    for (const node of cluster.nodes) {
      await cluster.kubeChecked('PATCH', `/api/v1/nodes/${node.name}`, { metadata: { annotations: { 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' } } },
        { contentType: 'application/strategic-merge-patch+json' });
    }
  }
  if (o.containers) await startContainerDaemons(cluster, netConf);
  else {
    for (const node of cluster.nodes) {
      if (flannel && daemonKindOf(node.index, true) === 'flannel') cluster.startFlannel(node, flannel.bin, ['--ip-masq']);
      else cluster.startDaemon(node, ['--ip-masq']);
    }
  }
  const rows: Row[] = [];
  for (const node of cluster.nodes) {
    const subnet = await waitForSubnet(cluster, node, o.backend, o.ipv6 === 'only' ? 'FLANNEL_IPV6_SUBNET' : 'FLANNEL_SUBNET');
    const pods: CniPod[] = [];
    for (let i = 0; i < o.pods; i++) pods.push(await cluster.addCniPod(node));
    const subnet6 = o.ipv6 === 'dual' ? readEnvFile(cluster.subnetFileOf(node)).FLANNEL_IPV6_SUBNET : undefined;
    const podCidrs = cluster.kube ? (await cluster.kubeChecked('GET', `/api/v1/nodes/${node.name}`)).spec?.podCIDRs as string[] | undefined : undefined;
    rows.push({ node, subnet, ...(subnet6 ? { subnet6 } : {}), ...(podCidrs ? { podCidrs } : {}), pods, daemon: cluster.daemons.get(node.name)?.kind === 'flannel' ? `flannel ${flannel?.version ?? ''}`.trim() : o.containers ? 'flannel-ts (container)' : 'flannel-ts' });
  }
  return rows;
}

/** waitForSubnet, with a clear message when flanneld refuses the backend (exit 69). */
async function waitForSubnet(cluster: LocalCluster, node: NodeHost, backend: string, variable: string): Promise<string> {
  try {
    return await cluster.waitForSubnet(node, 30_000, variable);
  } catch (err) {
    const d = cluster.daemons.get(node.name);
    if (d?.proc.child.exitCode !== 69) throw err;
    const fatal = d.proc.output().split('\n').map((l) => { try { return JSON.parse(l) as { level?: string; msg?: string }; } catch { return {}; } })
      .find((l) => l.level === 'fatal')?.msg ?? d.proc.output().trim();
    throw new ExitError(EXIT.UNAVAILABLE, `The ${backend} backend is not available: flanneld on ${node.name} refused it (exit 69):\n  ${fatal}`);
  }
}

async function report(cluster: LocalCluster, rows: readonly Row[], interrupted: () => boolean, mixed: boolean, mode: Ipv6Mode): Promise<boolean> {
  const ipv6 = mode === 'dual';
  // Mixed: a daemon column after the node, and each matrix row names its pod's node and daemon.
  const daemonCol = (s: string): string => (mixed ? s.padEnd(Math.max(...rows.map((r) => r.daemon.length)) + 2) : '');
  const only = mode === 'only';
  const subnetTitle = only ? 'subnet (FLANNEL_IPV6_SUBNET)' : 'subnet (FLANNEL_SUBNET)';
  // Kubernetes mode: a column with the Node's podCIDR the subnet came from (spec.podCIDRs, as the apiserver has it).
  const kube = rows.some((r) => r.podCidrs);
  const cidrCol = (s: string): string => (kube ? s.padEnd(22) : '');
  console.log(`\n${'node'.padEnd(8)}${daemonCol('daemon')}${'underlay IP'.padEnd(15)}${subnetTitle.padEnd(only ? 30 : 26)}${cidrCol('from Node podCIDR')}pods (added by the flannel CNI plugin)`);
  let ok = true;
  for (const r of rows) {
    const underlay = only ? r.node.underlayIp6 ?? '' : r.node.underlayIp;
    console.log(`${r.node.name.padEnd(8)}${daemonCol(r.daemon)}${underlay.padEnd(15)}${r.subnet.padEnd(only ? 30 : 26)}${cidrCol(r.podCidrs?.[0] ?? '')}${r.pods.map((p) => p.ip).join(', ')}`);
    if (ipv6) console.log(`${''.padEnd(8)}${daemonCol('')}${(r.node.underlayIp6 ?? '').padEnd(15)}${(r.subnet6 ?? '').padEnd(26)}${cidrCol(r.podCidrs?.[1] ?? '')}${r.pods.map((p) => p.ip6 ?? '-').join(', ')}`);
    if (kube) {
      const mismatch = [[r.subnet, r.podCidrs?.[0]], ...(ipv6 ? [[r.subnet6, r.podCidrs?.[1]]] : [])].filter(([s, c]) => !sameNetwork(s, c));
      for (const [s, c] of mismatch) console.log(`  ${r.node.name}: subnet ${s ?? '(none)'} is NOT its Node's podCIDR ${c ?? '(none)'}`);
      if (mismatch.length > 0) ok = false;
    }
  }
  if (kube && ok) console.log(`Every node's subnet is its Node's podCIDR (spec.podCIDR${ipv6 ? 's' : ''}, read from the kube-apiserver).`);
  const pods4 = rows.flatMap((r) => r.pods);
  ok = (await matrixReport(cluster, pods4, rows, interrupted, mixed, ipv6 ? 'IPv4' : only ? 'IPv6' : '')) && ok;
  if (ipv6 && !interrupted()) {
    const pods6 = pods4.map((p) => ({ ...p, ip: p.ip6 ?? 'no IPv6 address' }));
    ok = (await matrixReport(cluster, pods6, rows, interrupted, mixed, 'IPv6')) && ok;
  }
  if (!ok && !interrupted()) for (const d of cluster.daemons.values()) console.log(`--- ${d.kind === 'flannel' ? 'the real flanneld' : 'flanneld'} on ${d.node.name} ---\n${d.proc.output()}`);
  return ok;
}

/** A subnet.env subnet (the node's first address, e.g. 10.244.1.1/24) and a podCIDR (10.244.1.0/24): the same network? */
function sameNetwork(subnet: string | undefined, podCidr: string | undefined): boolean {
  if (!subnet || !podCidr) return false;
  const a4 = parseCidr4(subnet);
  const b4 = parseCidr4(podCidr);
  if (a4 && b4) return cidrEquals(a4, b4);
  const a6 = parseCidr6(subnet);
  const b6 = parseCidr6(podCidr);
  return !!a6 && !!b6 && cidr6Equals(a6, b6);
}

/** Pings every pod from every other pod (by `ip`) and prints the matrix (titled with the family in dual-stack); true when all pairs connect. */
async function matrixReport(cluster: LocalCluster, pods: readonly CniPod[], rows: readonly Row[], interrupted: () => boolean, mixed: boolean, family: string): Promise<boolean> {
  const daemonOf = new Map(rows.map((r) => [r.node.name, r.daemon]));
  const rowLabel = (p: CniPod): string => (mixed ? `${p.ip} (${p.node.name}, ${daemonOf.get(p.node.name)})` : p.ip);
  const lw = Math.max(16, ...pods.map((p) => rowLabel(p).length + 2));
  const w = Math.max(16, ...pods.map((p) => p.ip.length + 2));
  const deadline = Date.now() + 15_000; // the daemons need a moment to see each other's leases
  while (Date.now() < deadline && !(await cluster.pingMatrix(pods, 1)).flat().every(Boolean)) await sleep(200);
  const matrix = await cluster.pingMatrix(pods, 2);
  if (interrupted()) return false; // the pings were cut short by Ctrl-C: no matrix to report
  console.log(`\n${family ? `${family} connectivity` : 'Connectivity'} (ping from row pod to column pod):`);
  console.log(`${'from \\ to'.padEnd(lw)}${pods.map((p) => p.ip.padEnd(w)).join('')}`.trimEnd());
  matrix.forEach((row, i) => console.log(`${rowLabel(pods[i] as CniPod).padEnd(lw)}${row.map((ok) => (ok ? 'pass' : 'FAIL').padEnd(w)).join('')}`.trimEnd()));
  const failures = matrix.flat().filter((ok) => !ok).length;
  const label = family ? `${family}: ` : '';
  console.log(failures === 0 ? `\n${label}${family ? 'all' : 'All'} ${pods.length * pods.length} pairs connected.` : `\n${label}${failures} pair(s) FAILED.`);
  return failures === 0;
}

function printKeepInstructions(tag: string, rows: readonly Row[], cluster: LocalCluster): void {
  const pods = rows.flatMap((r) => r.pods);
  const [a, b] = [pods[0], pods.find((p) => p.node !== pods[0]?.node) ?? pods[1]];
  console.log(`\nThe cluster keeps running (tag ${tag}). Pods (namespace, address, node):`);
  for (const p of pods) console.log(`  ${p.ns.padEnd(18)}${p.ip.padEnd(16)}${p.node.name}`);
  console.log([
    '',
    `  a shell in a pod:    ip netns exec ${a?.ns} bash`,
    `  ping across nodes:   ip netns exec ${a?.ns} ping ${b?.ip}`,
    `  a node's routes:     ip netns exec ${tag}-n1 ip route`,
    ...(cluster.kube && rows[0]
      ? [`  the Nodes (leases):  ip netns exec ${tag}-n1 kubectl --kubeconfig ${cluster.kubeconfigOf(rows[0].node)} get nodes -o custom-columns=NODE:.metadata.name,PODCIDRS:.spec.podCIDRs`,
        `                       (flannel's RBAC, the kube-apiserver at ${cluster.kube.url}; \`-o yaml\` shows the flannel.alpha.coreos.com annotations)`]
      : [`  the leases in etcd:  ip netns exec ${tag}-u env ETCDCTL_API=3 etcdctl get --prefix /coreos.com/network`]),
    `  tear it down:        make cluster ARGS="--destroy ${tag}"   (or: node dist/deploy/local/cluster-main.js --destroy ${tag})`,
    `  (every namespace of this cluster is named ${tag}-*; the log is ${join(runDir(tag), 'cluster.log')})`,
  ].join('\n'));
}

/** --keep: runs the cluster in a detached keeper process and relays its log until it is ready. */
async function launchKeeper(argv: readonly string[]): Promise<number> {
  const tag = runTag('fc');
  const dir = runDir(tag);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const log = join(dir, 'cluster.log');
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...argv, '--keeper', `--tag=${tag}`], { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  writeFileSync(join(dir, 'keeper.pid'), String(child.pid));
  child.unref();
  let exitCode: number | undefined;
  child.on('exit', (code) => { exitCode = code ?? EXIT.FAILED; });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill('SIGTERM'));
  let shown = 0;
  for (;;) {
    const finished = exitCode !== undefined;
    const text = readFileSync(log, 'utf8');
    const mark = text.indexOf(READY_MARK);
    process.stdout.write(text.slice(shown, mark >= 0 ? mark : text.length));
    shown = mark >= 0 ? mark : text.length;
    if (mark >= 0) return EXIT.OK;
    if (finished) {
      removeRunDir(tag);
      return exitCode ?? EXIT.FAILED;
    }
    await sleep(200);
  }
}

/** --destroy TAG: stops the keeper (which tears down), then removes whatever a killed keeper left. */
async function destroyKept(tag: string): Promise<number> {
  if (!/^[a-z0-9]{3,16}$/.test(tag)) throw new ExitError(EXIT.USAGE, `--destroy needs the tag printed by --keep (e.g. fc1a2b3c), got ${JSON.stringify(tag)}`);
  const dir = runDir(tag);
  const read = (f: string): string => { try { return readFileSync(join(dir, f), 'utf8'); } catch { return ''; } };
  const pid = Number(read('keeper.pid'));
  const cmdline = (): string => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { return ''; } };
  let found = existsSync(dir);
  if (pid > 0 && cmdline().split('\0').includes(`--tag=${tag}`)) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 600 && cmdline(); i++) await sleep(100);
    if (cmdline()) process.kill(pid, 'SIGKILL');
  }
  await removeContainersOf(tag);
  const stray = await clusterNamespaces(tag);
  await deleteNetns(stray);
  for (const p of (JSON.parse(read('paths.json') || '[]') as string[])) {
    if (isAbsolute(p) && basename(p).startsWith('flannel-ts-')) rmSync(p, { recursive: true, force: true });
  }
  const log = read('cluster.log');
  removeRunDir(tag);
  found ||= stray.length > 0;
  if (!found) throw new ExitError(EXIT.FAILED, `no cluster with tag ${tag} is running (nothing in ${dir}, no ${tag}-* namespace)`);
  const tail = log.slice(log.indexOf(READY_MARK) + READY_MARK.length).trim();
  console.log(`${tail ? `${tail}\n` : ''}Cluster ${tag} destroyed${stray.length ? ` (also removed ${stray.length} leftover namespace(s))` : ''}.`);
  return EXIT.OK;
}

async function main(argv: readonly string[]): Promise<number> {
  // A vanished reader of our output (`make cluster | tee`, Ctrl-C kills tee too) must not stop a teardown.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
  const o = parseArgs(argv);
  if (o.destroy !== undefined) return destroyKept(o.destroy);
  if (o.keep && !o.keeper) return launchKeeper(argv);
  return runCluster(o);
}

process.exitCode = await main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ExitError) {
    (err.exitCode === EXIT.OK ? console.log : console.error)(err.message);
    return err.exitCode;
  }
  console.error(err instanceof Error ? err.stack : err);
  return EXIT.FAILED;
});
