// The etcd-mode DaemonSet (deploy/kubernetes/kube-flannel-ts-etcd.yml) in containers of the built image on a 3-node
// local cluster whose etcd requires mutual TLS, as that manifest expects: the Secret flannel-etcd (endpoints, CA,
// client certificate and key; the kubelet's part) mounted 0400 and read through secretKeyRef, no ServiceAccount
// token, and the third init container, seed-net-conf, writing the ConfigMap's net-conf.json to etcd once (the
// second and third node leave it). Then: every node leases a distinct subnet of 10.244.0.0/16 on the manifest's
// backend (vxlan, userspace), pods added by the installed CNI plugin ping each other, a container killed with
// SIGKILL and started again keeps its lease and subnet, and `podman stop` exits 0.
// Skips in one line where podman, mmdebstrap or runc is missing; kube mode is container-daemonset.test.ts.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ContainerDaemons } from '../../deploy/container/container-daemons.js';
import { loadDaemonSetPod } from '../../deploy/container/daemonset-pod.js';
import { buildImage, missingTools } from '../../deploy/container/image.js';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { runTag } from '../../deploy/local/netns.js';
import type { PodHost } from '../../deploy/local/topology.js';
import { allPairsPing } from '../helpers/pod-traffic.js';
import { makeEtcdTestCerts } from '../helpers/etcd-test-certs.js';

const MANIFEST = new URL('../../deploy/kubernetes/kube-flannel-ts-etcd.yml', import.meta.url).pathname;

// On a fresh machine this may first wait for make deps' background builds (the image; the kube-apiserver, minutes).
t.setTimeout(10 * 60_000);
const missing = await missingTools();
const image = missing.length ? undefined : await buildImage();
if (missing.length) t.plan(0, `the container tests skipped: ${missing.join(', ')} not installed (make deps installs them)`);
else if (!image?.ok) t.fail(`the image could not be built: ${image?.ok === false ? image.reason : ''}`);

if (image?.ok) {
  t.test('the etcd-mode DaemonSet in containers on 3 nodes, etcd with mutual TLS', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-container-etcd-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const f = await makeEtcdTestCerts(dir);
    const cluster = await LocalCluster.create({ tag: runTag('ce'), nodes: 3, etcdTls: { certFile: f('server.crt'), keyFile: f('server.key'), caFile: f('ca.crt') } });
    const pod = loadDaemonSetPod(MANIFEST);
    const secret = { endpoints: cluster.etcdEndpoint, 'ca.crt': readFileSync(f('ca.crt'), 'utf8'), 'tls.crt': readFileSync(f('client.crt'), 'utf8'), 'tls.key': readFileSync(f('client.key'), 'utf8') };
    const daemons = new ContainerDaemons(cluster, pod, { 'flannel-etcd': secret });
    cluster.onDestroy(() => daemons.destroy());
    t.teardown(async () => {
      if (!t.passing()) for (const node of cluster.nodes) console.error(`--- container on ${node.name}:\n${await daemons.logs(node)}`);
      await cluster.destroy();
    });
    t.equal(pod.automountToken, false, 'kube-flannel-ts-etcd.yml mounts no ServiceAccount token');
    t.match(cluster.etcdEndpoint, /^https:\/\//, `etcd requires TLS: ${cluster.etcdEndpoint}`);

    const seedLogs: string[] = [];
    for (const node of cluster.nodes) {
      seedLogs.push((await daemons.runInitContainers(node)).find((l) => l.startsWith('seed-net-conf:')) ?? '');
      await daemons.start(node, { init: false });
    }
    t.match(seedLogs[0], /wrote \/coreos\.com\/network\/config/, `node1's seed-net-conf seeded the config: ${seedLogs[0]}`);
    t.ok(seedLogs.slice(1).every((l) => /left \/coreos\.com\/network\/config as it is \(same as/.test(l)), `the others left it: ${seedLogs.slice(1).join(' | ')}`);
    const inEtcd = JSON.parse(await cluster.etcd.get('/coreos.com/network/config') ?? '{}');
    t.same(inEtcd, JSON.parse(pod.configMaps.get('kube-flannel-cfg')?.['net-conf.json'] ?? ''), 'the config in etcd is the ConfigMap\'s net-conf.json');

    await Promise.all(cluster.nodes.map((node) => daemons.waitReady(node)));
    const subnets = new Map<string, string>();
    const pods: PodHost[] = [];
    for (const node of cluster.nodes) {
      subnets.set(node.name, await cluster.waitForSubnet(node, 60_000));
      daemons.useInstalledCni(node);
      pods.push(await cluster.addCniPod(node));
    }
    t.equal(new Set(subnets.values()).size, 3, `a distinct subnet per node: ${[...subnets.values()].join(', ')}`);
    t.ok([...subnets.values()].every((s) => /^10\.244\.\d+\.1\/24$/.test(s)), 'every subnet is in 10.244.0.0/16');
    const m = await allPairsPing(cluster, pods, 30_000).catch((err: Error) => err.message);
    t.ok(Array.isArray(m) && m.flat().every(Boolean), `all pairs ping: ${JSON.stringify(m)}`);

    const node = cluster.nodes[1] ?? cluster.nodes[0];
    if (!node) throw new Error('no node');
    t.equal(await daemons.stop(node, 'kill'), 137, `${node.name}: the killed container exits 137`);
    await daemons.start(node, { init: false });
    await daemons.waitReady(node);
    t.equal(await cluster.waitForSubnet(node, 60_000), subnets.get(node.name), `${node.name}: restarted, it keeps its lease ${subnets.get(node.name)}`);
    const again = await allPairsPing(cluster, pods, 30_000).catch((err: Error) => err.message);
    t.ok(Array.isArray(again) && again.flat().every(Boolean), `all pairs ping after the restart: ${JSON.stringify(again)}`);

    const codes = await Promise.all(cluster.nodes.map((n) => daemons.stop(n, 'stop')));
    t.same(codes, cluster.nodes.map(() => 0), 'podman stop: flanneld exits 0 on every node');
  });
}
