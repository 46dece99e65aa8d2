// flanneld with --kube-subnet-mgr against a REAL kube-apiserver (built from k8s.io/kubernetes, running in the
// underlay namespace on the cluster's real etcd), 3 namespace nodes, host-gw and vxlan (userspace): each node's
// subnet is its Node's podCIDR, all pairs of pods ping, every Node carries exactly flannel's annotations and the
// NetworkUnavailable=False/FlannelIsUp condition, a deleted Node's routes go away on the others, a Node added later
// is routed. The daemons run with exactly flannel's RBAC (kube-flannel.yml's ClusterRole); a token without
// `nodes/status patch` fails with a message naming it. The API server unreachable mid-run keeps the data path and
// recovers by itself. Dual-stack vxlan: both subnets from podCIDRs, the IPv6 annotations, IPv6 pods ping. Skips in
// one line where the apiserver cannot be built.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { kubeApiserverOrSkip } from '../../deploy/local/kube-apiserver.js';
import { FLANNEL_KUBE_USER, KUBE_APISERVER_PORT, LocalCluster } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, ipIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { until } from '../helpers/wait.js';

const ANN = 'flannel.alpha.coreos.com/';
const NO_PATCH_USER = 'flannel-no-status-patch';

let skipReason = '';
const bin = await kubeApiserverOrSkip((line) => { skipReason = line; });
if (!bin) t.plan(0, skipReason);

const flannelAnnotations = (node: any): Record<string, string> =>
  Object.fromEntries(Object.entries(node.metadata.annotations ?? {}).filter(([k]) => k.startsWith(ANN)).map(([k, v]) => [k.slice(ANN.length), v as string]));

async function allPairs(cluster: LocalCluster, pods: readonly PodHost[], timeoutMs = 30_000): Promise<boolean[][]> {
  let last: boolean[][] = [];
  await until('all-pairs connectivity', async () => {
    last = await cluster.pingMatrix(pods);
    return last.flat().every(Boolean);
  }, timeoutMs).catch(() => undefined);
  return last;
}

for (const backend of bin ? ['host-gw', 'vxlan'] as const : []) {
  t.test(`3 nodes in kube mode, ${backend}`, async (t) => {
    const cluster = await LocalCluster.create({ tag: runTag(backend === 'vxlan' ? 'kv' : 'kh'), nodes: 3, kube: { bin, users: [{ user: NO_PATCH_USER }] } });
    t.teardown(() => cluster.destroy());
    t.comment(`kube-apiserver ready at ${cluster.kube?.url} in ${cluster.kube?.startupMs} ms`);
    await cluster.putConfig({ Network: '10.244.0.0/16', Backend: { Type: backend } });
    for (const node of cluster.nodes) cluster.startDaemon(node);
    const pods: PodHost[] = [];
    for (const node of cluster.nodes) {
      const subnet = await cluster.waitForSubnet(node, 60_000);
      t.equal(subnet, `10.244.${node.index}.1/24`, `${node.name}: subnet.env FLANNEL_SUBNET is its Node's podCIDR`);
      pods.push(await cluster.addPod(node, subnet));
    }

    await t.test('all pairs of pods ping each other', async (t) => {
      const m = await allPairs(cluster, pods);
      t.ok(m.flat().every(Boolean), JSON.stringify(m));
    });

    await t.test('every Node has exactly flannel\'s annotations and the NetworkUnavailable=False condition', async (t) => {
      const macs = new Set<string>();
      for (const node of cluster.nodes) {
        const obj = await cluster.kubeChecked('GET', `/api/v1/nodes/${node.name}`);
        const ann = flannelAnnotations(obj);
        t.same(Object.keys(ann).sort(), ['backend-data', 'backend-type', 'kube-subnet-manager', 'public-ip'], `${node.name}: the annotation names`);
        t.equal(ann['kube-subnet-manager'], 'true');
        t.equal(ann['backend-type'], backend);
        t.equal(ann['public-ip'], node.underlayIp);
        if (backend === 'host-gw') {
          t.equal(ann['backend-data'], 'null', 'host-gw has no backend data (flannel writes null)');
        } else {
          const data = JSON.parse(ann['backend-data'] ?? '{}');
          t.equal(data.VNI, 1, 'VNI 1');
          t.match(data.VtepMAC, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, `VtepMAC ${data.VtepMAC}`);
          macs.add(data.VtepMAC);
        }
        const cond = (obj.status?.conditions ?? []).find((c: any) => c.type === 'NetworkUnavailable');
        t.match(cond, { status: 'False', reason: 'FlannelIsUp', message: 'Flannel is running on this node' }, `${node.name}: condition`);
        t.ok(cond?.lastTransitionTime && cond?.lastHeartbeatTime, 'with both timestamps');
      }
      if (backend === 'vxlan') t.equal(macs.size, 3, 'one VtepMAC per node');
    });

    await t.test('a restarted daemon keeps its subnet and VtepMAC and patches nothing', async (t) => {
      const node = cluster.nodes[1] as NodeHost;
      const before = flannelAnnotations(await cluster.kubeChecked('GET', `/api/v1/nodes/${node.name}`));
      await cluster.stopDaemon(node);
      const d = cluster.startDaemon(node);
      await until('the restarted daemon to run', async () => d.proc.output().includes('"running"'), 30_000);
      t.notMatch(d.proc.output(), /annotated our Node/, 'no annotation differed: no patch');
      t.same(flannelAnnotations(await cluster.kubeChecked('GET', `/api/v1/nodes/${node.name}`)), before, 'annotations unchanged (VtepMAC stable)');
      const m = await allPairs(cluster, pods);
      t.ok(m.flat().every(Boolean), `connectivity after the restart: ${JSON.stringify(m)}`);
    });

    await t.test('deleting a Node from the API removes its routes on the others', async (t) => {
      const gone = cluster.nodes[2] as NodeHost;
      const cidr = `10.244.${gone.index}.0/24`;
      for (const n of cluster.nodes.slice(0, 2)) {
        t.match(await ipIn(n.ns, ['route', 'show', cidr]), new RegExp(`^${cidr.replace(/\./g, '\\.')}`), `${n.name} routes ${cidr} before`);
      }
      await cluster.kubeChecked('DELETE', `/api/v1/nodes/${gone.name}`);
      for (const n of cluster.nodes.slice(0, 2)) {
        const routes = await until(`${n.name} to drop ${cidr}`, async () => {
          const r = await ipIn(n.ns, ['route', 'show', cidr]);
          return r.trim() === '' ? 'gone' : false;
        }, 20_000).catch(() => 'still there');
        t.equal(routes, 'gone', `${n.name}: no route to ${cidr} any more`);
      }
      t.notOk(await cluster.pingMatrix([pods[0] as PodHost, pods[2] as PodHost]).then((m) => m[0]?.[1]), 'node3\'s pod is unreachable from node1\'s');
      await cluster.stopDaemon(gone);
    });

    await t.test('a node added later (Node object + daemon) is routed', async (t) => {
      const node = await cluster.addKubeNode();
      cluster.startDaemon(node);
      const subnet = await cluster.waitForSubnet(node, 60_000);
      t.equal(subnet, `10.244.${node.index}.1/24`, `${node.name}: its podCIDR`);
      const pod = await cluster.addPod(node, subnet);
      const m = await allPairs(cluster, [pods[0] as PodHost, pods[1] as PodHost, pod]);
      t.ok(m.flat().every(Boolean), `node1, node2 and ${node.name} pods: ${JSON.stringify(m)}`);
    });

    await t.test('the API server unreachable mid-run: peers stay routed, and the daemons catch up by themselves', async (t) => {
      const [n1, n2] = cluster.nodes as [NodeHost, NodeHost];
      const later = cluster.nodes[3] as NodeHost;
      const cidr = `10.244.${later.index}.0/24`;
      // Both directions of the API server's port on the switch: requests in, and the watch events out.
      const rules = [['INPUT', '-i', 'br0', '-p', 'tcp', '--dport', String(KUBE_APISERVER_PORT), '-j', 'REJECT', '--reject-with', 'tcp-reset'],
        ['OUTPUT', '-o', 'br0', '-p', 'tcp', '--sport', String(KUBE_APISERVER_PORT), '-j', 'DROP']];
      const underlay = cluster.topo.underlayNs;
      for (const n of [n1, n2]) {
        const earlier = (cluster.daemons.get(n.name)?.proc.output() ?? '').split('\n').filter((l) => /Node watch/.test(l));
        if (earlier.length > 0) t.comment(`${n.name} before the outage: ${earlier.map((l) => l.slice(0, 300)).join(' | ')}`);
      }
      const seen = new Map([n1, n2].map((n) => [n.name, cluster.daemons.get(n.name)?.proc.output().length ?? 0]));
      for (const rule of rules) await execCheckedIn(underlay, 'iptables', ['-w', '-I', ...rule]);
      let blocked = true;
      const unblock = async (): Promise<void> => {
        if (!blocked) return;
        blocked = false;
        for (const rule of rules) await execIn(underlay, 'iptables', ['-w', '-D', ...rule]);
      };
      t.teardown(unblock);
      const noticed = await until('the daemons to notice the outage', async () => [n1, n2].every((n) =>
        /Node watch: .*keeping the \d+ known peers/.test((cluster.daemons.get(n.name)?.proc.output() ?? '').slice(seen.get(n.name)))), 60_000).catch(() => false);
      t.ok(noticed, 'both daemons report the API server unreachable and keep their peers');
      // The admin's requests come from the underlay namespace itself (not through br0): the API still works for them.
      await cluster.kubeChecked('DELETE', `/api/v1/nodes/${later.name}`);
      await sleep(2000);
      for (const n of [n1, n2]) t.match(await ipIn(n.ns, ['route', 'show', cidr]), /\S/, `${n.name} still routes ${cidr} (the deletion is not seen yet)`);
      const m = await allPairs(cluster, [pods[0] as PodHost, pods[1] as PodHost], 10_000);
      t.ok(m.flat().every(Boolean), `the data path keeps working during the outage: ${JSON.stringify(m)}`);
      for (const n of [n1, n2]) t.equal(cluster.daemons.get(n.name)?.proc.child.exitCode, null, `${n.name}'s daemon still runs`);
      await unblock();
      for (const n of [n1, n2]) {
        const r = await until(`${n.name} to drop ${cidr} after the outage`, async () => ((await ipIn(n.ns, ['route', 'show', cidr])).trim() === '' ? 'gone' : false), 60_000)
          .catch(() => 'still there');
        t.equal(r, 'gone', `${n.name}: re-listed after the outage, ${later.name}'s route removed`);
      }
      await cluster.stopDaemon(later);
    });

    if (backend !== 'host-gw') return;
    await t.test('a token without `nodes/status patch` fails with a message naming it', async (t) => {
      await cluster.kubeChecked('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: NO_PATCH_USER },
        rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get'] }, { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] }],
      });
      await cluster.kubeChecked('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: NO_PATCH_USER },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: NO_PATCH_USER },
        subjects: [{ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: NO_PATCH_USER }],
      });
      await cluster.waitForKubePermission(NO_PATCH_USER, '/api/v1/nodes');
      const node = await cluster.addKubeNode();
      const d = cluster.startDaemon(node, [`--kubeconfig-file=${cluster.kubeconfigOf(node, NO_PATCH_USER)}`]);
      const code = await Promise.race([d.proc.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 60_000))]);
      t.equal(code, 1, 'the daemon exits with a failure');
      const out = d.proc.output();
      t.match(out, /FLN_ERR_KUBE_FORBIDDEN/, 'code FLN_ERR_KUBE_FORBIDDEN');
      t.match(out, /missing permission \\"nodes\/status patch\\"/, 'the message names the missing permission');
      t.match(out, /grant flannel's ClusterRole/, 'and says what to do');
      t.notOk(cluster.kube?.tokens[FLANNEL_KUBE_USER] === cluster.kube?.tokens[NO_PATCH_USER], 'a different token than flannel\'s');
    });
  });
}

if (bin) {
  t.test('3 nodes in kube mode, dual-stack vxlan: podCIDRs give both subnets, IPv6 annotations, IPv6 pods ping', async (t) => {
    const cluster = await LocalCluster.create({ tag: runTag('kd'), nodes: 3, ipv6: true, kube: { bin } });
    t.teardown(() => cluster.destroy());
    await cluster.putConfig({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'vxlan' } });
    for (const node of cluster.nodes) cluster.startDaemon(node);
    const pods: PodHost[] = [];
    for (const node of cluster.nodes) {
      const subnet = await cluster.waitForSubnet(node, 60_000);
      const subnet6 = await cluster.waitForSubnet(node, 10_000, 'FLANNEL_IPV6_SUBNET');
      t.equal(subnet, `10.244.${node.index}.1/24`, `${node.name}: FLANNEL_SUBNET from podCIDRs[0]`);
      t.equal(subnet6, `fd00:10:244:${node.index}::1/64`, `${node.name}: FLANNEL_IPV6_SUBNET from podCIDRs[1]`);
      pods.push(await cluster.addPod(node, subnet, 2, subnet6));
    }
    const m4 = await allPairs(cluster, pods);
    t.ok(m4.flat().every(Boolean), `IPv4 all pairs: ${JSON.stringify(m4)}`);
    const m6 = await allPairs(cluster, pods.map((p) => ({ ...p, ip: p.ip6 as string })));
    t.ok(m6.flat().every(Boolean), `IPv6 all pairs: ${JSON.stringify(m6)}`);
    for (const node of cluster.nodes) {
      const ann = flannelAnnotations(await cluster.kubeChecked('GET', `/api/v1/nodes/${node.name}`));
      t.same(Object.keys(ann).sort(), ['backend-data', 'backend-type', 'backend-v6-data', 'kube-subnet-manager', 'public-ip', 'public-ipv6'], `${node.name}: the annotation names`);
      t.equal(ann['public-ipv6'], node.underlayIp6, `${node.name}: public-ipv6`);
      t.match(JSON.parse(ann['backend-v6-data'] ?? '{}'), { VNI: 1, VtepMAC: /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/ }, `${node.name}: backend-v6-data`);
    }
  });
}
