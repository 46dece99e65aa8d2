// The DaemonSet's image, built on this machine without a registry (deploy/container/image.ts, cached by its inputs),
// and its pod spec taken from deploy/kubernetes/kube-flannel-ts.yml (the default, kube mode) run with podman in each
// node of a 3-node local cluster with a real kube-apiserver (deploy/container/daemonset-pod.ts: image, command and
// args, env, securityContext (only NET_ADMIN and NET_RAW), hostNetwork = the node's namespace, the /run/flannel,
// /dev/net/tun, xtables lock, CNI and config mounts, the init containers; the kubelet's part emulated: node and pod
// names, the ServiceAccount token and CA with KUBERNETES_SERVICE_HOST/PORT).
// The image: every addon of binding.gyp loads in it, no compiler, npm or dev dependency is in it, and its iptables
// uses the host's backend. Then ONE cluster goes through every backend (host-gw, udp, vxlan kernel, wireguard,
// vxlan userspace), switched as an operator would: the ConfigMap's net-conf.json edited, the containers stopped and
// started again. On each: every node's subnet is its Node's podCIDR, the CNI plugin and conflist the init containers
// installed add a pod per node, all pairs ping through the backend's device, the liveness and readiness probes
// answer 200, and `podman stop` (SIGTERM through tini) ends flanneld with exit 0 and its iptables rules gone.
// A container killed with SIGKILL and started again keeps its subnet and the pods still ping.
// Skips in one line where podman, mmdebstrap or runc, the image build or the kube-apiserver binary is missing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ContainerDaemons } from '../../deploy/container/container-daemons.js';
import { loadDaemonSetPod, runtimeArgs } from '../../deploy/container/daemonset-pod.js';
import { buildImage, missingTools } from '../../deploy/container/image.js';
import { kubeApiserverOrSkip } from '../../deploy/local/kube-apiserver.js';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { execIn, runTag } from '../../deploy/local/netns.js';
import type { PodHost } from '../../deploy/local/topology.js';
import { runCommand } from '../../lib/run-command.js';
import { allPairsPing } from '../helpers/pod-traffic.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const MANIFEST = join(ROOT, 'deploy/kubernetes/kube-flannel-ts.yml');
/**
 * Each backend, and the device the route to another node's pod must leave by ('eth0' for host-gw). A stopped
 * flanneld leaves its kernel routes (as flannel does, so pods keep talking across a restart): host-gw's and kernel
 * vxlan's per-node routes stay when the next backend starts, so host-gw first and kernel vxlan before udp check that
 * udp and wireguard remove them (they would shadow their device's route to the whole network).
 */
const BACKENDS = [
  { name: 'host-gw', backend: { Type: 'host-gw' }, dev: 'eth0' },
  { name: 'udp', backend: { Type: 'udp' }, dev: 'flannel0' },
  { name: 'vxlan (kernel)', backend: { Type: 'vxlan', Datapath: 'kernel' }, dev: 'flannel.1' },
  { name: 'wireguard', backend: { Type: 'wireguard' }, dev: 'flannel-wg' },
  { name: 'vxlan (userspace)', backend: { Type: 'vxlan' }, dev: 'flannel.1' },
] as const;

// On a fresh machine this may first wait for make deps' background builds (the image; the kube-apiserver, minutes).
t.setTimeout(10 * 60_000);
let skip = '';
const missing = await missingTools();
if (missing.length) skip = `the container tests skipped: ${missing.join(', ')} not installed (make deps installs them)`;
const bin = skip ? undefined : await kubeApiserverOrSkip((line) => { skip = line; });
const image = bin ? await buildImage() : undefined;
// With podman, mmdebstrap and runc installed, an image that cannot be built is a failure, not a skip.
if (image && !image.ok) t.fail(`the image could not be built: ${image.reason}`);
else if (skip || !image?.ok) t.plan(0, skip);

const inImage = (file: string, args: readonly string[]): ReturnType<typeof runCommand> =>
  runCommand('podman', ['run', '--rm', ...runtimeArgs(), '--network=none', '--pull=never', `--entrypoint=${file}`, image?.ok ? image.image : '', ...args]);

if (image?.ok) {
  t.comment(`image ${image.image} ${image.id.slice(0, 12)}: ${Math.round(image.sizeBytes / 1e6)} MB, ${image.built ? `built in ${image.seconds} s` : 'cached'}`);

  t.test('the image: every addon loads, no compiler, npm or dev dependency, the host\'s iptables backend', async (t) => {
    const targets = [...readFileSync(join(ROOT, 'binding.gyp'), 'utf8').matchAll(/"target_name":\s*"([^"]+)"/g)].map((m) => m[1] as string);
    t.ok(targets.length >= 2, `binding.gyp targets: ${targets.join(', ')}`);
    const load = targets.map((n) => `require('/opt/flannel-ts/build/Release/${n}.node')`).join(';');
    const r = await inImage('node', ['-e', `${load};console.log(process.version)`]);
    t.equal(r.code, 0, `every addon loads in the image: ${r.stderr.trim()}`);
    t.match(r.stdout, /^v20\./, `Node ${r.stdout.trim()}`);
    const absent = await inImage('sh', ['-c', 'for p in cc gcc g++ make python3 npm npx; do command -v $p; done; ls -d /opt/flannel-ts/node_modules/typescript /opt/flannel-ts/node_modules/tap /opt/flannel-ts/node_modules/esbuild /root/.npm 2>/dev/null; true']);
    t.equal(absent.stdout.trim(), '', 'no compiler, no npm, no dev dependency, no npm cache');
    const seed = await inImage('node', ['/opt/flannel-ts/dist/deploy/kubernetes/seed-net-conf.js']);
    t.equal(seed.code, 64, `the etcd manifest's seed-net-conf step loads in the image (no --net-conf: usage, exit 64): ${seed.stderr.trim()}`);
    const plugin = await runCommand('podman', ['run', '--rm', ...runtimeArgs(), '--network=none', '--pull=never', '--env=CNI_COMMAND=VERSION',
      '--entrypoint=/opt/flannel-ts/dist/cni/flannel', image?.ok ? image.image : '']);
    t.match(plugin.stdout, /"supportedVersions"/, `the CNI plugin runs in the image (VERSION): ${plugin.stdout.trim()}${plugin.stderr.trim()}`);
    const host = (await runCommand('iptables', ['-V'])).stdout.trim();
    const img = await inImage('iptables', ['-V']);
    t.equal(/\((\w+)\)/.exec(img.stdout)?.[1], /\((\w+)\)/.exec(host)?.[1], `the image's iptables (${img.stdout.trim()}) uses the host's backend (${host})`);
  });

  t.test('the DaemonSet in containers on 3 nodes, kube mode, every backend', async (t) => {
    const cluster = await LocalCluster.create({ tag: runTag('ct'), nodes: 3, kube: { bin: bin as string } });
    const pod = loadDaemonSetPod(MANIFEST);
    const daemons = new ContainerDaemons(cluster, pod);
    cluster.onDestroy(() => daemons.destroy());
    t.teardown(async () => {
      if (!t.passing()) for (const node of cluster.nodes) console.error(`--- container on ${node.name}:\n${await daemons.logs(node)}`);
      await cluster.destroy();
    });
    t.ok(pod.automountToken, 'kube-flannel-ts.yml mounts the ServiceAccount token (in-cluster config)');
    const netConf = JSON.parse(pod.configMaps.get('kube-flannel-cfg')?.['net-conf.json'] ?? '{}') as Record<string, unknown>;
    t.equal(netConf.Network, '10.244.0.0/16', 'the ConfigMap\'s net-conf.json');
    const pods: PodHost[] = [];

    for (const [i, b] of BACKENDS.entries()) {
      await t.test(b.name, async (t) => {
        (pod.configMaps.get('kube-flannel-cfg') as Record<string, string>)['net-conf.json'] = JSON.stringify({ ...netConf, Backend: b.backend }, null, 2);
        // A new pod per node the first time (init containers, then the main one); after that the main container restarts.
        await Promise.all(cluster.nodes.map((node) => daemons.start(node, { init: i === 0 })));
        // Ready as the kubelet sees it (the readinessProbe), so a subnet.env left by the previous backend is not taken for this one's.
        await Promise.all(cluster.nodes.map((node) => daemons.waitReady(node)));
        for (const node of cluster.nodes) {
          const subnet = await cluster.waitForSubnet(node, 60_000);
          t.equal(subnet, `10.244.${node.index}.1/24`, `${node.name}: FLANNEL_SUBNET is its Node's podCIDR`);
        }
        if (i === 0) {
          for (const node of cluster.nodes) {
            daemons.useInstalledCni(node);
            pods.push(await cluster.addCniPod(node));
          }
          t.ok(pods.every((p) => p.ip.startsWith(`10.244.${p.node.index}.`)), `the installed CNI plugin added ${pods.map((p) => p.ip).join(', ')}`);
        }
        const m = await allPairsPing(cluster, pods, 30_000).catch((err: Error) => err.message);
        t.ok(Array.isArray(m) && m.flat().every(Boolean), `all pairs ping: ${JSON.stringify(m)}`);
        for (const p of pods) {
          const peer = pods.find((q) => q.node !== p.node) as PodHost;
          const route = await execIn(p.node.ns, 'ip', ['route', 'get', peer.ip]);
          t.match(route.stdout, new RegExp(`dev ${b.dev.replace('.', '\\.')} `), `${p.node.name}: ${peer.ip} is reached through ${b.dev}`);
        }
        for (const node of cluster.nodes) {
          const live = await daemons.probe(node, 'livenessProbe');
          const ready = await daemons.probe(node, 'readinessProbe');
          t.equal(live.status, 200, `${node.name}: livenessProbe ${live.body}`);
          t.equal(ready.status, 200, `${node.name}: readinessProbe ${ready.body}`);
        }
        if (i === BACKENDS.length - 1) {
          const node = cluster.nodes[1] ?? cluster.nodes[0];
          if (!node) throw new Error('no node');
          const before = await cluster.waitForSubnet(node);
          t.equal(await daemons.stop(node, 'kill'), 137, `${node.name}: the killed container exits 137`);
          await daemons.start(node, { init: false });
          await daemons.waitReady(node);
          t.equal(await cluster.waitForSubnet(node, 60_000), before, `${node.name}: restarted, it keeps its subnet ${before}`);
          const again = await allPairsPing(cluster, pods, 30_000).catch((err: Error) => err.message);
          t.ok(Array.isArray(again) && again.flat().every(Boolean), `all pairs ping after the restart: ${JSON.stringify(again)}`);
        }
        const codes = await Promise.all(cluster.nodes.map((node) => daemons.stop(node, 'stop')));
        t.same(codes, cluster.nodes.map(() => 0), 'podman stop: SIGTERM through tini, flanneld exits 0 on every node');
        for (const node of cluster.nodes) {
          const save = await execIn(node.ns, 'iptables-save', []);
          t.notMatch(save.stdout, /FLANNEL|10\.244\.0\.0\/16/, `${node.name}: flanneld's iptables rules are removed`);
        }
      });
    }
  });
}
