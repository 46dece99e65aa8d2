// `make cluster CONTAINERS=1` (cluster-main --containers): every flanneld of the local cluster in a container of the
// built image, run from deploy/kubernetes/kube-flannel-ts.yml's pod spec (kube mode, as the default manifest) with
// the cluster's network config as the ConfigMap's net-conf.json; pods are added with the CNI plugin and conflist
// the init containers installed on each node.
import { join } from 'node:path';
import { runCommand } from '../../lib/run-command.js';
import { type LocalCluster } from '../local/local-cluster.js';
import { ContainerDaemons } from './container-daemons.js';
import { loadDaemonSetPod } from './daemonset-pod.js';
import { buildImage, repoRoot } from './image.js';

export const CONTAINERS_MANIFEST = 'deploy/kubernetes/kube-flannel-ts.yml';

/** The image, built if its inputs changed; throws with the reason where it cannot be had. */
export async function containerImage(log: (line: string) => void): Promise<{ image: string; sizeBytes: number }> {
  const slow = setTimeout(() => log('Building the image (npm run image; a minute or two the first time)...'), 1000);
  const r = await buildImage((line) => log(`  ${line}`)).finally(() => clearTimeout(slow));
  if (!r.ok) throw new Error(`CONTAINERS=1 needs the flannel-ts image, which could not be built: ${r.reason}`);
  return { image: r.image, sizeBytes: r.sizeBytes };
}

/** Starts the DaemonSet's pod on every node with `netConf` in its ConfigMap, waits until each is ready, and makes
 * addCniPod use the installed plugin. The containers are removed when the cluster is destroyed. */
export async function startContainerDaemons(cluster: LocalCluster, netConf: unknown): Promise<ContainerDaemons> {
  const pod = loadDaemonSetPod(join(repoRoot(), CONTAINERS_MANIFEST));
  const cfg = pod.configMaps.get('kube-flannel-cfg');
  if (!cfg || !('net-conf.json' in cfg)) throw new Error(`${CONTAINERS_MANIFEST} has no ConfigMap kube-flannel-cfg with net-conf.json`);
  cfg['net-conf.json'] = JSON.stringify(netConf, null, 2);
  const daemons = new ContainerDaemons(cluster, pod);
  cluster.onDestroy(() => daemons.destroy());
  await Promise.all(cluster.nodes.map((node) => daemons.start(node)));
  await Promise.all(cluster.nodes.map((node) => daemons.waitReady(node)));
  for (const node of cluster.nodes) daemons.useInstalledCni(node);
  return daemons;
}

/** The names of the containers (running or not) of the cluster tagged `tag`; none where podman is missing. */
export async function containersOf(tag: string): Promise<string[]> {
  const r = await runCommand('podman', ['ps', '--all', '--format', '{{.Names}}', '--filter', `label=io.flannel-ts.cluster=${tag}`]).catch(() => ({ code: 1, stdout: '' }));
  return r.code === 0 ? r.stdout.split('\n').filter(Boolean).map((n) => `container ${n}`) : [];
}

/** Removes every container of the cluster tagged `tag` (for --destroy after a killed keeper). Never throws. */
export async function removeContainersOf(tag: string): Promise<void> {
  const names = (await containersOf(tag)).map((n) => n.slice('container '.length));
  if (names.length) await runCommand('podman', ['rm', '--force', '--time', '3', ...names]).catch(() => null);
}
