// A local flannel cluster: the namespace topology, a real etcd on the underlay switch, one real
// flanneld (the compiled dist/flanneld/main.js) per node, and pods wired either by hand (addPod) or
// through our CNI plugin (addCniPod). Used by the README's main job, the end-to-end tests and the benchmark.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { type FlannelNetwork, callPlugin, callPluginChecked, flannelNetConf, resultIp, resultIp6 } from '../cni/runtime.js';
import { EtcdServer } from './etcd-server.js';
import { type KubeApiserver, type KubeTokenUser, startKubeApiserver } from './kube-apiserver.js';
import { realFlannelArgs } from './real-flannel.js';
import { type SpawnedProcess, execIn, spawnIn, stopProcess } from './netns.js';
import { type NodeHost, type PodHost, Topology, UNDERLAY_GATEWAY } from './topology.js';
import { formatIp6, parseCidr6 } from '../../lib/ip6.js';

export const DEFAULT_PREFIX = '/coreos.com/network';

/** The user flannel's DaemonSet runs as (ServiceAccount flannel in namespace kube-flannel), as a token user: RBAC
 * matches a ServiceAccount subject on this name, so the binding below applies to it exactly. */
export const FLANNEL_KUBE_USER = 'system:serviceaccount:kube-flannel:flannel';
export const FLANNEL_KUBE_GROUPS = ['system:serviceaccounts', 'system:serviceaccounts:kube-flannel'] as const;
/** flannel's ClusterRole, from kube-flannel.yml. */
export const FLANNEL_CLUSTER_ROLE = {
  apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'flannel' },
  rules: [
    { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
    { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
    { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch'] },
  ],
} as const;
/** Its binding to ServiceAccount kube-flannel/flannel, from kube-flannel.yml. */
export const FLANNEL_CLUSTER_ROLE_BINDING = {
  apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'flannel' },
  roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'flannel' },
  subjects: [{ kind: 'ServiceAccount', name: 'flannel', namespace: 'kube-flannel' }],
} as const;
/** Where the apiserver serves in the underlay namespace (beside etcd, on the switch's address). */
export const KUBE_APISERVER_PORT = 6443;

/** The answer to a request made with LocalCluster.kubeRequest. */
export interface KubeAnswer {
  readonly status: number;
  readonly text: string;
  readonly json: any;
}

/** The compiled daemon, found from this file both under tsx (deploy/local) and compiled (dist/deploy/local). */
export function daemonPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  const path = resolve(dir, 'dist', 'flanneld', 'main.js');
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`npm run build\` first`);
  return path;
}

/** Which daemon runs on a node: ours, or the real flannel (deploy/local/real-flannel.ts). */
export type DaemonKind = 'flannel-ts' | 'flannel';

export interface DaemonHandle {
  readonly node: NodeHost;
  readonly kind: DaemonKind;
  readonly proc: SpawnedProcess;
  readonly subnetFile: string;
}

/** A pod added through the CNI plugin: its container ID and the plugin's ADD result. */
export interface CniPod extends PodHost {
  readonly containerId: string;
  readonly result: Record<string, unknown>;
}

export class LocalCluster {
  readonly daemons = new Map<string, DaemonHandle>();
  /** Pods to DEL through the CNI plugin at teardown, as a runtime would (also after a failed ADD). */
  private readonly cniAttachments: Array<{ node: NodeHost; containerId: string; ns: string }> = [];
  /** Per node: a CNI plugin and config other than dist/cni/flannel with cniNetworkOf's (useCni). */
  private readonly cniOverrides = new Map<string, { plugin: string; config: Record<string, unknown> }>();
  /** Per node: a subnet file other than the state dir's (a daemon adopted with adoptDaemon writes its own). */
  private readonly subnetFiles = new Map<string, string>();
  /** Run first by destroy(), last registered first (e.g. removing the containers of deploy/container). */
  private readonly cleanups: Array<() => Promise<void>> = [];
  readonly stateDir = mkdtempSync(join(tmpdir(), 'flannel-ts-cluster-'));

  /** The real kube-apiserver of a Kubernetes-mode cluster (create({ kube: true }) or startKubeApiserver()). */
  kube: KubeApiserver | undefined;
  /** In Kubernetes mode, the net-conf.json every node's flanneld reads (set by putConfig). */
  private netConf: string | undefined;

  /** Whether the Nodes get an IPv4 podCIDR (not on an IPv6-only cluster). */
  private ipv4PodCidrs = true;

  private constructor(readonly topo: Topology, readonly etcd: EtcdServer, readonly prefix: string) {}

  /**
   * Builds the hosts and starts etcd on the switch (192.0.2.254, and 127.0.0.1 inside its namespace). With `kube`,
   * also a real kube-apiserver beside it (see startKubeApiserver): the daemons then run with --kube-subnet-mgr.
   * `ipv6: 'only'`: the hosts are dual-stack as with `true`, and the Nodes get an IPv6 podCIDR only (an
   * IPv6-only network in kube mode).
   */
  static async create(o: { tag: string; nodes: number; prefix?: string; ipv6?: boolean | 'only'; kube?: boolean | { users?: readonly KubeTokenUser[]; bin?: string };
    etcdTls?: { certFile: string; keyFile: string; caFile: string } }): Promise<LocalCluster> {
    const topo = await Topology.create(o.tag, o.nodes, { ipv6: o.ipv6 !== undefined && o.ipv6 !== false });
    const etcd = new EtcdServer({ ns: topo.underlayNs, listenIps: [UNDERLAY_GATEWAY, '127.0.0.1'], ...(o.etcdTls ? { tls: o.etcdTls } : {}) });
    const cluster = new LocalCluster(topo, etcd, o.prefix ?? DEFAULT_PREFIX);
    cluster.ipv4PodCidrs = o.ipv6 !== 'only';
    try {
      await etcd.start();
      if (o.kube) await cluster.startKubeApiserver(typeof o.kube === 'object' ? o.kube : {});
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
    return cluster;
  }

  get nodes(): NodeHost[] { return this.topo.nodes; }
  /** etcd on the switch: http, or https where created with etcdTls (mutual TLS). */
  get etcdEndpoint(): string { return this.etcd.endpoints([UNDERLAY_GATEWAY])[0] as string; }

  /** The network config: in etcd, or in Kubernetes mode the net-conf.json file of every node (written as each daemon starts). */
  async putConfig(config: unknown): Promise<void> {
    const text = typeof config === 'string' ? config : JSON.stringify(config);
    if (this.kube) {
      this.netConf = text;
      for (const node of this.nodes) if (existsSync(join(this.stateDir, node.name))) this.writeNetConf(node);
      return;
    }
    await this.etcd.put(`${this.prefix}/config`, text);
  }

  /**
   * Kubernetes mode: a real kube-apiserver in the underlay namespace on https://192.0.2.254:6443 against the
   * cluster's etcd, flannel's ClusterRole bound to flannel's service-account user (FLANNEL_KUBE_USER, whose token
   * every node's kubeconfig holds), and a Node object per node with its podCIDR (registerNode). `users` adds more
   * token users (e.g. one with fewer permissions).
   */
  async startKubeApiserver(o: { users?: readonly KubeTokenUser[]; bin?: string } = {}): Promise<KubeApiserver> {
    if (this.kube) return this.kube;
    this.kube = await startKubeApiserver({
      etcdServers: ['http://127.0.0.1:2379'], ns: this.topo.underlayNs, address: UNDERLAY_GATEWAY, port: KUBE_APISERVER_PORT,
      users: [{ user: FLANNEL_KUBE_USER, groups: [...FLANNEL_KUBE_GROUPS] }, ...(o.users ?? [])], ...(o.bin ? { bin: o.bin } : {}),
    });
    await this.kubeChecked('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', FLANNEL_CLUSTER_ROLE);
    await this.kubeChecked('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', FLANNEL_CLUSTER_ROLE_BINDING);
    // The RBAC authorizer reads roles through an informer: wait until the binding is in effect.
    await this.waitForKubePermission(FLANNEL_KUBE_USER, '/api/v1/nodes');
    for (const node of this.nodes) await this.registerNode(node);
    return this.kube;
  }

  private requireKube(): KubeApiserver {
    if (!this.kube) throw new Error('this cluster runs no kube-apiserver: create it with { kube: true }');
    return this.kube;
  }

  /** One API request from the underlay namespace (curl), with the admin's token unless `user` (a token user) is given. */
  async kubeRequest(method: string, path: string, body?: unknown, o: { user?: string; contentType?: string } = {}): Promise<KubeAnswer> {
    const api = this.requireKube();
    const token = o.user ? api.tokens[o.user] : api.adminToken;
    if (!token) throw new Error(`no token for user ${o.user}`);
    const args = ['-sS', '--max-time', '15', '--cacert', api.caFile, '-H', `Authorization: Bearer ${token}`, '-H', 'Accept: application/json',
      '-X', method, '-w', '\n%{http_code}'];
    if (body !== undefined) args.push('-H', `Content-Type: ${o.contentType ?? 'application/json'}`, '--data-binary', '@-');
    const r = await execIn(this.topo.underlayNs, 'curl', [...args, `${api.url}${path}`], body === undefined ? undefined : JSON.stringify(body));
    if (r.code !== 0) throw new Error(`curl ${method} ${path}: ${r.stderr.trim()}`);
    const nl = r.stdout.lastIndexOf('\n');
    const text = r.stdout.slice(0, nl);
    let json: unknown;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: Number(r.stdout.slice(nl + 1)), text, json };
  }

  /** kubeRequest that throws unless the answer is 2xx. */
  async kubeChecked(method: string, path: string, body?: unknown, o: { user?: string; contentType?: string } = {}): Promise<any> {
    const r = await this.kubeRequest(method, path, body, o);
    if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path}: ${r.status} ${r.text.slice(0, 300)}`);
    return r.json;
  }

  /** Waits until `user` may GET `path` (RBAC changes take effect a moment later). */
  async waitForKubePermission(user: string, path: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.kubeRequest('GET', path, undefined, { user });
      if (r.status === 200) return;
      if (Date.now() > deadline) throw new Error(`${user} still may not GET ${path}: ${r.status} ${r.text.slice(0, 200)}`);
      await sleep(100);
    }
  }

  /** The podCIDRs a node is registered with: 10.244.<i>.0/24, and fd00:10:244:<i>::/64 on a dual-stack cluster
   * (that one alone on an IPv6-only cluster). */
  podCidrsOf(node: NodeHost): string[] {
    return [...(this.ipv4PodCidrs ? [`10.244.${node.index}.0/24`] : []), ...(this.topo.ipv6 ? [`fd00:10:244:${node.index.toString(16)}::/64`] : [])];
  }

  /** Creates the Node object of `node` (named after it) with its podCIDR(s), as kube-controller-manager would assign them. */
  async registerNode(node: NodeHost): Promise<void> {
    const podCIDRs = this.podCidrsOf(node);
    await this.kubeChecked('POST', '/api/v1/nodes', {
      apiVersion: 'v1', kind: 'Node', metadata: { name: node.name, labels: { 'kubernetes.io/hostname': node.name } },
      spec: { podCIDR: podCIDRs[0], podCIDRs },
    });
  }

  /** Kubernetes mode: a new node host and its Node object (start its daemon with startDaemon). */
  async addKubeNode(): Promise<NodeHost> {
    this.requireKube();
    const node = await this.topo.addNode();
    await this.registerNode(node);
    return node;
  }

  /** A node's kubeconfig for `user` (flannel's service-account user unless given), in the node's state directory. */
  kubeconfigOf(node: NodeHost, user: string = FLANNEL_KUBE_USER): string {
    const dir = join(this.stateDir, node.name);
    mkdirSync(dir, { recursive: true });
    return this.requireKube().writeKubeconfig(user, join(dir, `kubeconfig-${user.replace(/[^A-Za-z0-9._-]/g, '-')}`));
  }

  netConfOf(node: NodeHost): string { return join(this.stateDir, node.name, 'net-conf.json'); }

  private writeNetConf(node: NodeHost): void {
    if (this.netConf === undefined) return;
    mkdirSync(join(this.stateDir, node.name), { recursive: true });
    writeFileSync(this.netConfOf(node), this.netConf);
  }

  subnetFileOf(node: NodeHost): string { return this.subnetFiles.get(node.name) ?? join(this.stateDir, node.name, 'subnet.env'); }

  /** Registers a daemon started elsewhere (e.g. in a container): waitForSubnet reads its subnet file, destroy stops it. */
  adoptDaemon(handle: DaemonHandle): void {
    this.subnetFiles.set(handle.node.name, handle.subnetFile);
    this.daemons.set(handle.node.name, handle);
  }

  /** addCniPod on `node` calls `plugin` with `config` (e.g. the plugin and conflist an init container installed). */
  useCni(node: NodeHost, plugin: string, config: Record<string, unknown>): void {
    this.cniOverrides.set(node.name, { plugin, config });
  }

  /** `fn` runs first when the cluster is destroyed (never throwing is its job). */
  onDestroy(fn: () => Promise<void>): void { this.cleanups.push(fn); }

  /** A node's WireGuard key file: namespaces share /run, so each node of the cluster keeps its own here. */
  wgKeyFileOf(node: NodeHost): string { return join(this.stateDir, node.name, 'wgkey'); }

  /** Starts flanneld in a node's namespace. Extra flags are appended (they may override defaults). */
  /** In Kubernetes mode the daemon runs with --kube-subnet-mgr, the node's kubeconfig (flannel's RBAC) and net-conf.json, and NODE_NAME. */
  /** `o.kubeconfig: false` leaves out --kubeconfig-file (in-cluster config or a bare --kube-api-url); `o.wrapper` is
   * a command the daemon's command line is appended to (e.g. `unshare -m … sh -c '…; exec "$@"' sh`). */
  startDaemon(node: NodeHost, extraArgs: readonly string[] = [], env: NodeJS.ProcessEnv = {}, o: { kubeconfig?: boolean; wrapper?: readonly string[] } = {}): DaemonHandle {
    const subnetFile = this.subnetFileOf(node);
    let store = [`--etcd-endpoints=${this.etcdEndpoint}`, `--etcd-prefix=${this.prefix}`];
    let storeEnv: NodeJS.ProcessEnv = {};
    if (this.kube) {
      this.writeNetConf(node);
      store = ['--kube-subnet-mgr', ...(o.kubeconfig === false ? [] : [`--kubeconfig-file=${this.kubeconfigOf(node)}`]), `--net-config-path=${this.netConfOf(node)}`];
      storeEnv = { NODE_NAME: node.name };
    }
    const args = [daemonPath(), ...store, `--subnet-file=${subnetFile}`, '--iface=eth0', ...extraArgs];
    const [file, ...pre] = o.wrapper && o.wrapper.length > 0 ? [...o.wrapper, process.execPath] : [process.execPath];
    const handle: DaemonHandle = { node, kind: 'flannel-ts', proc: spawnIn(node.ns, file as string, [...pre, ...args], { WIREGUARD_KEY_FILE: this.wgKeyFileOf(node), ...storeEnv, ...env }), subnetFile };
    this.daemons.set(node.name, handle);
    return handle;
  }

  /** Starts the real flanneld (`bin`, from buildRealFlannel) in a node's namespace with the same etcd, prefix,
   * subnet file and interface as startDaemon gives ours; extra flags are appended. In Kubernetes mode, as ours:
   * --kube-subnet-mgr with the node's kubeconfig (flannel's RBAC) and net-conf.json instead of etcd, and NODE_NAME. */
  startFlannel(node: NodeHost, bin: string, extraArgs: readonly string[] = []): DaemonHandle {
    const subnetFile = this.subnetFileOf(node);
    let args = realFlannelArgs({ etcdEndpoint: this.etcdEndpoint, prefix: this.prefix, subnetFile }, extraArgs);
    let env: NodeJS.ProcessEnv = {};
    if (this.kube) {
      this.writeNetConf(node);
      args = ['--kube-subnet-mgr', `--kubeconfig-file=${this.kubeconfigOf(node)}`, `--net-config-path=${this.netConfOf(node)}`,
        `--subnet-file=${subnetFile}`, '--iface=eth0', ...extraArgs];
      env = { NODE_NAME: node.name };
    }
    const handle: DaemonHandle = { node, kind: 'flannel', proc: spawnIn(node.ns, bin, args, env), subnetFile };
    this.daemons.set(node.name, handle);
    return handle;
  }

  async stopDaemon(node: NodeHost, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const d = this.daemons.get(node.name);
    if (!d) return null;
    return stopProcess(d.proc, signal);
  }

  /** Waits until the node's subnet.env exists and returns `variable` from it (FLANNEL_SUBNET, e.g. "10.244.3.1/24", or FLANNEL_IPV6_SUBNET). */
  async waitForSubnet(node: NodeHost, timeoutMs = 30_000, variable = 'FLANNEL_SUBNET'): Promise<string> {
    const d = this.daemons.get(node.name);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const env = readEnvFile(this.subnetFileOf(node));
      if (env[variable]) return env[variable];
      if (d && d.proc.child.exitCode !== null) throw new Error(`${d.kind} on ${node.name} exited ${d.proc.child.exitCode}:\n${d.proc.output()}`);
      await sleep(100);
    }
    throw new Error(`${d?.kind ?? 'flanneld'} on ${node.name} wrote no subnet file in ${timeoutMs} ms:\n${d?.proc.output() ?? ''}`);
  }

  /**
   * Adds a pod at the subnet's .2 address (or `host`) behind the node's cni0 bridge; with the node's
   * FLANNEL_IPV6_SUBNET (e.g. "fd00:10:244:1::1/64") also at <IPv6 subnet>::2 (or `host`).
   */
  async addPod(node: NodeHost, flannelSubnet: string, host = 2, flannelIpv6Subnet?: string): Promise<PodHost> {
    const [gw, len] = flannelSubnet.split('/') as [string, string];
    const base = gw.split('.').slice(0, 3).join('.');
    const v6 = flannelIpv6Subnet === undefined ? undefined : parseCidr6(flannelIpv6Subnet);
    if (flannelIpv6Subnet !== undefined && !v6) throw new Error(`not an IPv6 subnet: ${flannelIpv6Subnet}`);
    return this.topo.addPod(node, `${gw}/${len}`, `${base}.${host}`,
      v6 && flannelIpv6Subnet ? { gatewayCidr: flannelIpv6Subnet, ip: formatIp6(v6.ip + BigInt(host)) } : undefined);
  }

  /** The CNI network of a node: its subnet.env, and the plugin's and host-local's data dirs in our state dir. */
  cniNetworkOf(node: NodeHost): FlannelNetwork {
    const dir = join(this.stateDir, node.name, 'cni');
    return { subnetFile: this.subnetFileOf(node), dataDir: join(dir, 'flannel'), ipamDataDir: join(dir, 'networks') };
  }

  private cniOf(node: NodeHost): { config: Record<string, unknown>; plugin?: string } {
    return this.cniOverrides.get(node.name) ?? { config: flannelNetConf(this.cniNetworkOf(node)) };
  }

  /** Adds a pod the way a container runtime does: a fresh namespace, then dist/cni/flannel ADD. */
  async addCniPod(node: NodeHost): Promise<CniPod> {
    const ns = await this.topo.addPodNamespace(node);
    const attachment = { node, containerId: ns, ns };
    this.cniAttachments.push(attachment);
    const result = await callPluginChecked({ nodeNs: node.ns, command: 'ADD', containerId: ns, netns: `/run/netns/${ns}`, ...this.cniOf(node) });
    const ip6 = resultIp6(result);
    return { ns, ip: resultIp(result), ...(ip6 ? { ip6 } : {}), node, containerId: ns, result };
  }

  /** CNI DEL of every pod added with addCniPod; returns the failures (DEL is idempotent, so a repeat is harmless). */
  async deleteCniPods(): Promise<string[]> {
    const failures: string[] = [];
    for (const a of this.cniAttachments.splice(0)) {
      const r = await callPlugin({ nodeNs: a.node.ns, command: 'DEL', containerId: a.containerId, netns: `/run/netns/${a.ns}`, ...this.cniOf(a.node) }).catch((err: unknown) => ({ code: -1, stdout: String(err) }));
      if (r.code !== 0) failures.push(`${a.containerId}: ${r.stdout}`);
    }
    return failures;
  }

  /** Pings every pod from every other pod; returns the pass/fail matrix. */
  async pingMatrix(pods: readonly PodHost[], count = 1): Promise<boolean[][]> {
    const rows: boolean[][] = [];
    for (const from of pods) {
      rows.push(await Promise.all(pods.map((to) => (to === from ? Promise.resolve(true) : ping(from.ns, to.ip, count)))));
    }
    return rows;
  }

  /** Stops every daemon, etcd and all namespaces; safe after a partial start or a failure. */
  async destroy(): Promise<void> {
    await this.deleteCniPods();
    for (const fn of this.cleanups.splice(0).reverse()) await fn().catch(() => {});
    for (const d of this.daemons.values()) await stopProcess(d.proc, 'SIGTERM', 3000).catch(() => null);
    await this.kube?.stop().catch(() => {});
    await this.etcd.destroy().catch(() => {});
    await this.topo.destroy();
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}

export async function ping(ns: string, ip: string, count = 1, timeoutSec = 2): Promise<boolean> {
  const r = await execIn(ns, 'ping', ['-n', '-q', '-c', String(count), '-W', String(timeoutSec), '-i', '0.2', ip]);
  return r.code === 0;
}

export function readEnvFile(path: string): Record<string, string> {
  let text = '';
  try { text = readFileSync(path, 'utf8'); } catch { return {}; }
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}
