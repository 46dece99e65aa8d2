// flanneld in containers of the built image on a LocalCluster's nodes, run from the DaemonSet's pod spec
// (daemonset-pod.ts) the way a kubelet runs it: per node, the init containers in order (install the CNI plugin and
// its conflist into the node's /opt/cni/bin and /etc/cni/net.d), then the main container attached, its handle
// registered with the cluster so waitForSubnet, addCniPod and destroy work as with a process. Every container is
// labelled with the cluster's tag, and destroy() removes them all, on failure too.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../lib/run-command.js';
import { FLANNEL_KUBE_USER, KUBE_APISERVER_PORT, type DaemonHandle, type LocalCluster } from '../local/local-cluster.js';
import { execIn, spawnIn } from '../local/netns.js';
import { type NodeHost, UNDERLAY_GATEWAY } from '../local/topology.js';
import { type DaemonSetPod, type PodPlacement, containerOf, podmanRunArgs, probePort } from './daemonset-pod.js';

type Obj = Record<string, any>;

export class ContainerDaemons {
  private readonly placements = new Map<string, PodPlacement>();
  readonly label: string;

  /** `secrets`: the Secrets the pod refers to (name → data), as the API server would hand them to the kubelet. */
  constructor(readonly cluster: LocalCluster, readonly pod: DaemonSetPod, readonly secrets: Readonly<Record<string, Readonly<Record<string, string>>>> = {}) {
    this.label = `io.flannel-ts.cluster=${cluster.topo.tag}`;
  }

  /** The DaemonSet's main container (its first). */
  get main(): Obj { return this.pod.spec.containers[0] as Obj; }

  /** Where a node's pod lives: its root filesystem and pod directory in the cluster's state dir; its kubelet's view. */
  placementOf(node: NodeHost): PodPlacement {
    let at = this.placements.get(node.name);
    if (at) return at;
    const api = this.cluster.kube;
    const podName = `${String(this.pod.daemonSet.metadata.name)}-${randomBytes(3).toString('hex').slice(0, 5)}`;
    at = {
      nodeName: node.name, netns: node.ns, podName,
      nodeRoot: join(this.cluster.stateDir, node.name, 'root'), podDir: join(this.cluster.stateDir, node.name, 'pod'),
      containerPrefix: `${this.cluster.topo.tag}-${node.name}`, secrets: this.secrets,
      ...(api ? { kube: { host: UNDERLAY_GATEWAY, port: KUBE_APISERVER_PORT, token: api.tokens[FLANNEL_KUBE_USER] as string, caPem: api.caPem } } : {}),
    };
    this.placements.set(node.name, at);
    return at;
  }

  /** The file on the node behind a path in the main container (through its hostPath mounts). */
  hostPathOf(node: NodeHost, containerPath: string): string {
    const volumes = new Map<string, Obj>(((this.pod.spec.volumes ?? []) as Obj[]).map((v) => [String(v.name), v]));
    for (const m of (this.main.volumeMounts ?? []) as Obj[]) {
      const mount = String(m.mountPath).replace(/\/+$/, '');
      const host = volumes.get(String(m.name))?.hostPath?.path as string | undefined;
      if (host && (containerPath === mount || containerPath.startsWith(`${mount}/`))) {
        return join(this.placementOf(node).nodeRoot, host, containerPath.slice(mount.length));
      }
    }
    throw new Error(`${containerPath} is on no hostPath volume of ${String(this.main.name)}`);
  }

  /** The main container's --subnet-file, on the node. */
  subnetFileOf(node: NodeHost): string {
    const arg = ((this.main.args ?? []) as string[]).find((a) => a.startsWith('--subnet-file='));
    return this.hostPathOf(node, arg ? arg.slice('--subnet-file='.length) : '/run/flannel/subnet.env');
  }

  private podman(args: readonly string[]): ReturnType<typeof runCommand> { return runCommand('podman', args); }

  /** Runs the pod's init containers in order; each must exit 0 (podman run --rm, attached). */
  async runInitContainers(node: NodeHost): Promise<string[]> {
    const at = this.placementOf(node);
    const logs: string[] = [];
    for (const c of (this.pod.spec.initContainers ?? []) as Obj[]) {
      const args = podmanRunArgs(this.pod, String(c.name), at);
      args.splice(1, 0, '--rm', `--label=${this.label}`);
      const r = await this.podman(args);
      if (r.code !== 0) throw new Error(`init container ${String(c.name)} on ${node.name} exited ${r.code}: ${(r.stderr + r.stdout).trim()}`);
      logs.push(`${String(c.name)}: ${r.stdout.trim()}`);
    }
    return logs;
  }

  /** Starts the main container (attached) and registers it with the cluster; `init` runs the init containers first. */
  async start(node: NodeHost, o: { init?: boolean } = {}): Promise<DaemonHandle> {
    if (o.init ?? true) await this.runInitContainers(node);
    const at = this.placementOf(node);
    const name = `${at.containerPrefix}-${String(this.main.name)}`;
    await this.podman(['rm', '--force', '--ignore', name]);
    mkdirSync(at.podDir, { recursive: true });
    const args = podmanRunArgs(this.pod, String(this.main.name), at);
    args.splice(1, 0, `--label=${this.label}`);
    const handle: DaemonHandle = { node, kind: 'flannel-ts', proc: spawnIn(undefined, 'podman', args), subnetFile: this.subnetFileOf(node) };
    this.cluster.adoptDaemon(handle);
    return handle;
  }

  containerName(node: NodeHost): string { return `${this.placementOf(node).containerPrefix}-${String(this.main.name)}`; }

  /** `podman stop` (SIGTERM to tini, SIGKILL after terminationGracePeriodSeconds) or `podman kill` (SIGKILL); the exit code. */
  async stop(node: NodeHost, how: 'stop' | 'kill' = 'stop'): Promise<number | null> {
    const d = this.cluster.daemons.get(node.name);
    const name = this.containerName(node);
    const grace = String(this.pod.spec.terminationGracePeriodSeconds ?? 30);
    const r = await this.podman(how === 'stop' ? ['stop', '--time', grace, name] : ['kill', '--signal', 'KILL', name]);
    if (r.code !== 0 && !/no such container|not running/i.test(r.stderr)) throw new Error(`podman ${how} ${name}: ${r.stderr.trim()}`);
    const code = d ? await d.proc.exited : null;
    const inspected = await this.podman(['inspect', '--format', '{{.State.ExitCode}}', name]);
    await this.podman(['rm', '--force', '--ignore', name]);
    return inspected.code === 0 ? Number(inspected.stdout.trim()) : code;
  }

  /** The container's log so far (podman logs), for failure reports. */
  async logs(node: NodeHost, lines = 40): Promise<string> {
    const r = await this.podman(['logs', '--tail', String(lines), this.containerName(node)]);
    if (r.code === 0) return (r.stdout + r.stderr).trim();
    return this.cluster.daemons.get(node.name)?.proc.output().split('\n').slice(-lines).join('\n') ?? r.stderr.trim();
  }

  /** A probe of the main container, as the kubelet makes it: HTTP GET to the pod's IP (the node's: hostNetwork). */
  async probe(node: NodeHost, which: 'livenessProbe' | 'readinessProbe'): Promise<{ status: number; body: string }> {
    const probe = this.main[which] as Obj | undefined;
    if (!probe?.httpGet) throw new Error(`${String(this.main.name)} has no httpGet ${which}`);
    const url = `http://${node.underlayIp}:${probePort(this.main, probe)}${String(probe.httpGet.path ?? '/')}`;
    const r = await execIn(node.ns, 'curl', ['-sS', '--max-time', String(probe.timeoutSeconds ?? 1), '-w', '\n%{http_code}', url]);
    const nl = r.stdout.lastIndexOf('\n');
    return { status: r.code === 0 ? Number(r.stdout.slice(nl + 1)) : 0, body: r.code === 0 ? r.stdout.slice(0, nl) : r.stderr.trim() };
  }

  /** Waits until the readinessProbe answers 200, as the kubelet marks the pod Ready; throws if the container exits first. */
  async waitReady(node: NodeHost, timeoutMs = 60_000): Promise<void> {
    const d = this.cluster.daemons.get(node.name);
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (d && d.proc.child.exitCode !== null) throw new Error(`the container on ${node.name} exited ${d.proc.child.exitCode}:\n${d.proc.output().split('\n').slice(-30).join('\n')}`);
      const r = await this.probe(node, 'readinessProbe');
      if (r.status === 200) return;
      last = `${r.status} ${r.body}`;
      await sleep(200);
    }
    throw new Error(`the container on ${node.name} is not ready after ${timeoutMs} ms (readinessProbe: ${last}):\n${await this.logs(node)}`);
  }

  /** The conflist the install-cni init container put on the node. */
  installedConflist(node: NodeHost): Obj {
    const file = join(this.placementOf(node).nodeRoot, 'etc/cni/net.d/10-flannel.conflist');
    return JSON.parse(readFileSync(file, 'utf8')) as Obj;
  }

  /** The CNI plugin the install-cni-plugin init container put on the node. */
  installedPlugin(node: NodeHost): string { return join(this.placementOf(node).nodeRoot, 'opt/cni/bin/flannel'); }

  /**
   * What a container runtime on the node would call for a pod: the installed plugin with the installed conflist's
   * flannel entry (name and cniVersion from the conflist), its default paths (/run/flannel/subnet.env,
   * /var/lib/cni/…) put under the node's root as every path of this node is.
   */
  useInstalledCni(node: NodeHost): void {
    const root = this.placementOf(node).nodeRoot;
    const list = this.installedConflist(node);
    const entry = (list.plugins as Obj[]).find((p) => p.type === 'flannel');
    if (!entry) throw new Error(`${node.name}: the installed conflist has no flannel plugin`);
    const plugin = this.installedPlugin(node);
    if (!existsSync(plugin)) throw new Error(`${node.name}: ${plugin} was not installed`);
    this.cluster.useCni(node, plugin, {
      cniVersion: list.cniVersion, name: list.name, ...entry,
      subnetFile: join(root, String(entry.subnetFile ?? '/run/flannel/subnet.env')),
      dataDir: join(root, String(entry.dataDir ?? '/var/lib/cni/flannel')),
      ipam: { ...(entry.ipam ?? {}), dataDir: join(root, '/var/lib/cni/networks') },
    });
  }

  /** Removes every container of this cluster (running or not). Never throws. */
  async destroy(): Promise<void> {
    const r = await this.podman(['ps', '--all', '--quiet', '--filter', `label=${this.label}`]).catch(() => ({ stdout: '' }));
    const ids = r.stdout.split('\n').filter(Boolean);
    if (ids.length) await this.podman(['rm', '--force', '--time', '3', ...ids]).catch(() => null);
  }
}
