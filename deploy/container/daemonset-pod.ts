// The DaemonSet's pod, read from a manifest of deploy/kubernetes and turned into `podman run` invocations, as a
// kubelet would run it on one node: the init containers in order (each must exit 0), then the main container.
// Everything comes from the manifest (image, command and args, env, securityContext, hostNetwork, volumes and
// mounts, terminationGracePeriodSeconds, probes) except what a kubelet itself supplies: the node's name, the pod's
// name, the ServiceAccount token and CA (with KUBERNETES_SERVICE_HOST/PORT), and Secret values. A "node" here is a
// network namespace (the pod's host network) and a directory standing for its root filesystem (hostPath volumes
// are made under it; character devices are the machine's own, as devices are not per node).
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync, closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

type Obj = Record<string, any>; // manifest objects are free-form JSON

/** Where the kubelet mounts the ServiceAccount's token, CA and namespace. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The podman/runc settings this machine needs (see README, "The image"): runc, not crun (crun 1.x refuses the hybrid
 * cgroup layout), and rlimits within the machine's hard limits (podman's defaults exceed them: setrlimit EPERM). */
export function runtimeArgs(): string[] {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const hard = (what: string, fallback: number): number => {
    const m = new RegExp(`^${what}\\s+\\S+\\s+(\\S+)`, 'm').exec(limits);
    const v = m?.[1] === 'unlimited' ? Infinity : Number(m?.[1]);
    return Math.min(Number.isFinite(v) && v > 0 ? v : fallback, 1 << 20);
  };
  const nofile = hard('Max open files', 4096);
  // Measured here: conmon runs with RLIMIT_NPROC at kernel.pid_max (32768) although `ulimit -Hu` is higher, and the
  // container may not exceed it (its init has no CAP_SYS_RESOURCE); so nproc is kept within both.
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim()) || 32768;
  const nproc = Math.min(hard('Max processes', 4096), pidMax);
  return ['--runtime=runc', `--ulimit=nofile=${nofile}:${nofile}`, `--ulimit=nproc=${nproc}:${nproc}`];
}

export interface DaemonSetPod {
  readonly file: string;
  readonly namespace: string;
  readonly daemonSet: Obj;
  readonly spec: Obj;
  /** ConfigMap name → data (the caller may change a copy's data, as `kubectl edit configmap` would). */
  readonly configMaps: Map<string, Record<string, string>>;
  /** Whether the kubelet mounts a ServiceAccount token (automountServiceAccountToken of the pod, else its ServiceAccount). */
  readonly automountToken: boolean;
}

/** Reads the DaemonSet, its ConfigMaps and its ServiceAccount from a manifest (YAML 1.1, as kubectl reads it). */
export function loadDaemonSetPod(file: string): DaemonSetPod {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { version: '1.1' });
  if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
  const objs = docs.map((d) => d.toJS() as Obj).filter((o) => o !== null);
  const ds = objs.find((o) => o.kind === 'DaemonSet');
  if (!ds) throw new Error(`${file} has no DaemonSet`);
  const spec = ds.spec?.template?.spec as Obj;
  const configMaps = new Map<string, Record<string, string>>();
  for (const o of objs) if (o.kind === 'ConfigMap') configMaps.set(String(o.metadata.name), { ...(o.data ?? {}) });
  const sa = objs.find((o) => o.kind === 'ServiceAccount' && o.metadata?.name === (spec.serviceAccountName ?? 'default'));
  const automountToken = spec.automountServiceAccountToken ?? sa?.automountServiceAccountToken ?? true;
  return { file, namespace: String(ds.metadata.namespace ?? 'default'), daemonSet: ds, spec, configMaps, automountToken };
}

/** The node a pod is placed on, and what its kubelet supplies. */
export interface PodPlacement {
  readonly nodeName: string;
  /** The network namespace that is the node's host network (hostNetwork: true). */
  readonly netns: string;
  /** The directory standing for the node's root filesystem (hostPath volumes go under it). */
  readonly nodeRoot: string;
  /** The pod's own directory (ConfigMap and token volumes are written here). */
  readonly podDir: string;
  readonly podName: string;
  /** Container names are <prefix>-<container name>. */
  readonly containerPrefix: string;
  /** In-cluster API access: what the kubelet injects when the ServiceAccount token is mounted. */
  readonly kube?: { readonly host: string; readonly port: number; readonly token: string; readonly caPem: string };
  /** Secret name → data, for secretKeyRef env and secret volumes. */
  readonly secrets?: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

/** The manifest's containers by name (init containers and main containers). */
export function containerOf(pod: DaemonSetPod, name: string): Obj {
  const c = [...(pod.spec.initContainers ?? []), ...(pod.spec.containers ?? [])].find((x: Obj) => x.name === name);
  if (!c) throw new Error(`${pod.file}: no container named ${name}`);
  return c;
}

function envOf(c: Obj, pod: DaemonSetPod, at: PodPlacement): string[] {
  const out: string[] = [];
  for (const e of (c.env ?? []) as Obj[]) {
    let value: string;
    if (e.value !== undefined) value = String(e.value);
    else if (e.valueFrom?.fieldRef) {
      const path = String(e.valueFrom.fieldRef.fieldPath);
      const fields: Record<string, string> = { 'spec.nodeName': at.nodeName, 'metadata.name': at.podName, 'metadata.namespace': pod.namespace };
      if (fields[path] === undefined) throw new Error(`${c.name}: env ${e.name}: fieldRef ${path} is not supported`);
      value = fields[path] as string;
    } else if (e.valueFrom?.secretKeyRef) {
      const { name, key } = e.valueFrom.secretKeyRef as { name: string; key: string };
      const v = at.secrets?.[name]?.[key];
      if (v === undefined) throw new Error(`${c.name}: env ${e.name}: Secret ${name} has no key ${key}`);
      value = v;
    } else throw new Error(`${c.name}: env ${e.name}: unsupported valueFrom ${JSON.stringify(e.valueFrom)}`);
    out.push('--env', `${e.name}=${value}`);
  }
  if (at.kube && pod.automountToken) out.push('--env', `KUBERNETES_SERVICE_HOST=${at.kube.host}`, '--env', `KUBERNETES_SERVICE_PORT=${at.kube.port}`);
  return out;
}

/** hostPath → under the node root (made as its type says); configMap/secret → files in the pod dir; token → the SA dir. */
function mountsOf(c: Obj, pod: DaemonSetPod, at: PodPlacement): string[] {
  const volumes = new Map<string, Obj>(((pod.spec.volumes ?? []) as Obj[]).map((v) => [String(v.name), v]));
  const out: string[] = [];
  for (const m of (c.volumeMounts ?? []) as Obj[]) {
    const v = volumes.get(String(m.name));
    if (!v) throw new Error(`${c.name}: volumeMount ${m.name} has no volume`);
    const ro = m.readOnly ? ':ro' : '';
    if (v.hostPath) {
      const type = String(v.hostPath.type ?? '');
      if (type === 'CharDevice') {
        if (!existsSync(v.hostPath.path)) throw new Error(`${c.name}: hostPath ${v.hostPath.path} (CharDevice) does not exist on this machine`);
        out.push('--device', `${v.hostPath.path}:${m.mountPath}`);
        continue;
      }
      const path = join(at.nodeRoot, v.hostPath.path);
      if (type === 'DirectoryOrCreate' || type === 'Directory') mkdirSync(path, { recursive: true });
      else if (type === 'FileOrCreate' || type === 'File') { mkdirSync(join(path, '..'), { recursive: true }); closeSync(openSync(path, 'a')); }
      else throw new Error(`${c.name}: hostPath type ${type || '(none)'} of ${v.name} is not supported`);
      out.push('--volume', `${path}:${m.mountPath}${ro}`);
    } else if (v.configMap || v.secret) {
      const name = String(v.configMap?.name ?? v.secret?.secretName);
      const data = v.configMap ? pod.configMaps.get(name) : at.secrets?.[name];
      if (!data) throw new Error(`${c.name}: volume ${v.name}: ${v.configMap ? 'ConfigMap' : 'Secret'} ${name} is not in ${pod.file}`);
      const src = (v.configMap ?? v.secret) as Obj;
      const dir = join(at.podDir, 'volumes', String(v.name));
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const files = src.items
        ? (src.items as Obj[]).map((i) => {
          if (data[String(i.key)] === undefined) throw new Error(`${c.name}: volume ${v.name}: no key ${String(i.key)} in ${name}`);
          return [String(i.path), data[String(i.key)] as string, i.mode as number | undefined] as const;
        })
        : Object.entries(data).map(([k, text]) => [k, text, undefined] as const);
      for (const [path, text, mode] of files) writeFileSync(join(dir, path), text, { mode: mode ?? (src.defaultMode as number | undefined) ?? 0o644 });
      out.push('--volume', `${dir}:${m.mountPath}:ro`);
    } else throw new Error(`${c.name}: volume ${v.name}: only hostPath, configMap and secret volumes are supported`);
  }
  if (at.kube && pod.automountToken) {
    const dir = join(at.podDir, 'serviceaccount');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'token'), at.kube.token);
    writeFileSync(join(dir, 'ca.crt'), at.kube.caPem);
    writeFileSync(join(dir, 'namespace'), pod.namespace);
    out.push('--volume', `${dir}:${SERVICE_ACCOUNT_DIR}:ro`);
  }
  return out;
}

function securityOf(c: Obj): string[] {
  const sc = (c.securityContext ?? {}) as Obj;
  if (sc.privileged) return ['--privileged'];
  const out: string[] = [];
  for (const cap of (sc.capabilities?.drop ?? []) as string[]) out.push(`--cap-drop=${cap.toLowerCase() === 'all' ? 'all' : cap}`);
  for (const cap of (sc.capabilities?.add ?? []) as string[]) out.push(`--cap-add=${cap}`);
  if (sc.runAsUser !== undefined) out.push(`--user=${sc.runAsUser}`);
  if (sc.readOnlyRootFilesystem) out.push('--read-only');
  return out;
}

/**
 * The `podman run` arguments of one container of the pod (init or main), attached (the podman client's exit code is
 * the container's, and SIGTERM to it is proxied to the container's PID 1). `command` replaces the image's
 * ENTRYPOINT and `args` its CMD, as in Kubernetes.
 */
export function podmanRunArgs(pod: DaemonSetPod, containerName: string, at: PodPlacement): string[] {
  const c = containerOf(pod, containerName);
  const args = ['run', ...runtimeArgs(), '--name', `${at.containerPrefix}-${c.name}`, '--pull=never', '--sig-proxy=true', '--log-driver=k8s-file'];
  if (pod.spec.hostNetwork) args.push(`--network=ns:/run/netns/${at.netns}`);
  else throw new Error(`${pod.file}: only hostNetwork pods are supported`);
  const grace = pod.spec.terminationGracePeriodSeconds;
  if (grace !== undefined) args.push(`--stop-timeout=${grace}`);
  args.push(...securityOf(c), ...envOf(c, pod, at), ...mountsOf(c, pod, at));
  if (c.command) args.push(`--entrypoint=${JSON.stringify(c.command)}`);
  if (c.workingDir) args.push(`--workdir=${c.workingDir}`);
  args.push(String(c.image), ...((c.args ?? []) as string[]));
  return args;
}

/** The port a probe's httpGet names (a number, or the name of a containerPort). */
export function probePort(c: Obj, probe: Obj): number {
  const port = probe.httpGet?.port;
  if (typeof port === 'number') return port;
  const p = ((c.ports ?? []) as Obj[]).find((x) => x.name === port);
  if (!p) throw new Error(`${c.name}: probe port ${String(port)} is not a containerPort`);
  return Number(p.containerPort);
}
