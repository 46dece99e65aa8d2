// flanneld with --kube-subnet-mgr against a REAL kube-apiserver (deploy/local/kube-apiserver.ts), 3 namespace
// nodes, on the udp and wireguard backends (kube-cluster.test.ts covers host-gw and vxlan): each node's subnet is its
// Node's podCIDR, all pairs of pods ping, and the Node annotations are what flannel v0.28.10's
// pkg/subnet/kube/kube.go AcquireLease would write for that backend:
// - udp: flannel's udp backend acquires with LeaseAttrs{PublicIP} only, so BackendType is "" and BackendData nil;
//   kube.go sets backend-type = attrs.BackendType unconditionally (an empty string, kept by the strategic-merge
//   patch) and, since the type is not "vxlan", backend-data = MarshalJSON(nil) = "null". Ours: the same names and
//   backend-type "", but backend-data {"AcceptsPartialChecksums":true} (its etcd lease's BackendData; flannel's udp
//   ignores peers' backend data).
// - wireguard: backend-type "wireguard", backend-data {"PublicKey":<base64>,"Port":51820}.
// Plus a 20 MB TCP transfer with equal sha256 on wireguard. Skips in one line where the apiserver cannot be built.
import t from 'tap';
import { kubeApiserverOrSkip } from '../../deploy/local/kube-apiserver.js';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { runTag } from '../../deploy/local/netns.js';
import type { PodHost } from '../../deploy/local/topology.js';
import { allPairsPing, sha256Transfer } from '../helpers/pod-traffic.js';

const ANN = 'flannel.alpha.coreos.com/';

let skipReason = '';
const bin = await kubeApiserverOrSkip((line) => { skipReason = line; });
if (!bin) t.plan(0, skipReason);

const flannelAnnotations = (node: any): Record<string, string> =>
  Object.fromEntries(Object.entries(node.metadata.annotations ?? {}).filter(([k]) => k.startsWith(ANN)).map(([k, v]) => [k.slice(ANN.length), v as string]));

for (const backend of bin ? ['udp', 'wireguard'] as const : []) {
  t.test(`3 nodes in kube mode, ${backend}`, async (t) => {
    const cluster = await LocalCluster.create({ tag: runTag(backend === 'udp' ? 'ku' : 'kw'), nodes: 3, kube: { bin } });
    t.teardown(async () => {
      if (!t.passing()) for (const d of cluster.daemons.values()) console.error(`--- ${d.kind} on ${d.node.name}:\n${d.proc.output().split('\n').slice(-30).join('\n')}`);
      await cluster.destroy();
    });
    await cluster.putConfig({ Network: '10.244.0.0/16', Backend: { Type: backend } });
    for (const node of cluster.nodes) cluster.startDaemon(node);
    const pods: PodHost[] = [];
    for (const node of cluster.nodes) {
      const subnet = await cluster.waitForSubnet(node, 60_000);
      t.equal(subnet, `10.244.${node.index}.1/24`, `${node.name}: FLANNEL_SUBNET is its Node's podCIDR`);
      pods.push(await cluster.addPod(node, subnet));
    }

    await t.test('all pairs of pods ping each other', async (t) => {
      const m = await allPairsPing(cluster, pods, 30_000).catch((err: Error) => err.message);
      t.ok(Array.isArray(m) && m.flat().every(Boolean), JSON.stringify(m));
    });

    await t.test(`every Node has exactly the annotations flannel writes for ${backend}`, async (t) => {
      const keys = new Set<string>();
      for (const node of cluster.nodes) {
        const obj = await cluster.kubeChecked('GET', `/api/v1/nodes/${node.name}`);
        const ann = flannelAnnotations(obj);
        t.same(Object.keys(ann).sort(), ['backend-data', 'backend-type', 'kube-subnet-manager', 'public-ip'], `${node.name}: the annotation names`);
        t.equal(ann['kube-subnet-manager'], 'true', `${node.name}: kube-subnet-manager`);
        t.equal(ann['public-ip'], node.underlayIp, `${node.name}: public-ip`);
        if (backend === 'udp') {
          t.equal(ann['backend-type'], '', `${node.name}: backend-type "" (flannel's udp sets no BackendType)`);
          // flannel writes "null"; ours writes the same BackendData as its etcd lease (udp-cluster.test.ts): the
          // AcceptsPartialChecksums extension, which flannel's udp never reads (it ignores peers' backend data).
          t.equal(ann['backend-data'], '{"AcceptsPartialChecksums":true}', `${node.name}: backend-data = our etcd lease's BackendData (flannel: "null")`);
        } else {
          t.equal(ann['backend-type'], 'wireguard', `${node.name}: backend-type`);
          const data = JSON.parse(ann['backend-data'] ?? '{}');
          t.same(Object.keys(data), ['PublicKey', 'Port'], `${node.name}: backend-data has flannel's fields in flannel's order`);
          t.equal(data.Port, 51820, `${node.name}: Port 51820`);
          t.match(data.PublicKey, /^[A-Za-z0-9+/]{43}=$/, `${node.name}: PublicKey ${data.PublicKey}`);
          keys.add(data.PublicKey);
        }
      }
      if (backend === 'wireguard') t.equal(keys.size, 3, 'one public key per node');
    });

    if (backend === 'wireguard') {
      await t.test('20 MB over TCP through the tunnel, sha256 equal', async (t) => {
        await sha256Transfer(t, pods[0] as PodHost, pods[2] as PodHost, 20, 5231);
      });
    }
  });
}
