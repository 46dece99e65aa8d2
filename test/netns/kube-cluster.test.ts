// flanneld with --kube-subnet-mgr against a REAL kube-apiserver (built from k8s.io/kubernetes, running in the
// underlay namespace on the cluster's real etcd), 3 namespace nodes, host-gw and vxlan (userspace): each node's
// subnet is its Node's podCIDR, all pairs of pods ping, every Node carries exactly flannel's annotations and the
// NetworkUnavailable=False/FlannelIsUp condition, a deleted Node's routes go away on the others, a Node added later
// is routed. The daemons run with exactly flannel's RBAC (kube-flannel.yml's ClusterRole); a token without
// `nodes/status patch` fails with a message naming it. The API server unreachable mid-run keeps the data path and
// recovers by itself. On host-gw also: the API server stopped and etcd compacted meanwhile (the resumed watches get
// 410 Gone and must re-list; a daemon started while it is down waits for it), the in-cluster config (service-account
// files in a private mount namespace), our own Node deleted and created again, and a bare --kube-api-url.
// Dual-stack vxlan: both subnets from podCIDRs, the IPv6 annotations, IPv6 pods ping. Skips in one line where the
// apiserver cannot be built.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import type { Test } from 'tap';
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

/** Cuts the nodes off the API server (new connections reset, its answers dropped) until the returned function, or
 * the test's end, lifts it. */
async function blockApiserver(t: Test, cluster: LocalCluster): Promise<() => Promise<void>> {
  const rules = [['INPUT', '-i', 'br0', '-p', 'tcp', '--dport', String(KUBE_APISERVER_PORT), '-j', 'REJECT', '--reject-with', 'tcp-reset'],
    ['OUTPUT', '-o', 'br0', '-p', 'tcp', '--sport', String(KUBE_APISERVER_PORT), '-j', 'DROP']];
  const underlay = cluster.topo.underlayNs;
  for (const rule of rules) await execCheckedIn(underlay, 'iptables', ['-w', '-I', ...rule]);
  let blocked = true;
  const unblock = async (): Promise<void> => {
    if (!blocked) return;
    blocked = false;
    for (const rule of rules) await execIn(underlay, 'iptables', ['-w', '-D', ...rule]);
  };
  t.teardown(unblock);
  return unblock;
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
      for (const n of [n1, n2]) {
        const earlier = (cluster.daemons.get(n.name)?.proc.output() ?? '').split('\n').filter((l) => /Node watch/.test(l));
        if (earlier.length > 0) t.comment(`${n.name} before the outage: ${earlier.map((l) => l.slice(0, 300)).join(' | ')}`);
      }
      const seen = new Map([n1, n2].map((n) => [n.name, cluster.daemons.get(n.name)?.proc.output().length ?? 0]));
      const unblock = await blockApiserver(t, cluster);
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
        t.equal(r, 'gone', `${n.name}: caught up after the outage (the resumed watch or a re-list), ${later.name}'s route removed`);
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

    // The API server stopped (not just unreachable) with etcd compacted meanwhile, then started again: the running
    // daemons resume their watch from the last resourceVersion they saw, which is gone, so the server answers 410
    // and they must list again; a daemon started while it is down waits for it. What changed while the daemons
    // were cut off (the Node `ghost` deleted) only a re-list can tell them: no event for it comes any more.
    let livePods: PodHost[] = []; // node1's, node2's and the late node's pods (node3's and node4's are gone)
    await t.test('API server stopped, etcd compacted, started again: 410 Gone and a re-list; a daemon started meanwhile waits for it', async (t) => {
      const api = cluster.kube as NonNullable<typeof cluster.kube>;
      const [n1, n2] = cluster.nodes as [NodeHost, NodeHost];
      const ghostCidr = '10.244.99.0/24';
      await cluster.kubeChecked('POST', '/api/v1/nodes', {
        apiVersion: 'v1', kind: 'Node', metadata: { name: 'ghost', annotations: {
          [`${ANN}kube-subnet-manager`]: 'true', [`${ANN}backend-type`]: 'host-gw', [`${ANN}backend-data`]: 'null', [`${ANN}public-ip`]: '192.0.2.99' } },
        spec: { podCIDR: ghostCidr, podCIDRs: [ghostCidr] },
      });
      const routed = async (n: NodeHost, cidr: string): Promise<boolean> => (await ipIn(n.ns, ['route', 'show', cidr])).trim() !== '';
      for (const n of [n1, n2]) t.ok(await until(`${n.name} to route ${ghostCidr}`, () => routed(n, ghostCidr), 20_000).catch(() => false), `${n.name} routes the ghost's ${ghostCidr}`);
      const out = (n: NodeHost): string => cluster.daemons.get(n.name)?.proc.output() ?? '';
      const seen = new Map([n1, n2].map((n) => [n.name, out(n).length]));
      const since = (n: NodeHost): string => out(n).slice(seen.get(n.name));
      // Cut the daemons off (as in the outage above) so that they miss the deletion, then stop the server.
      const unblock = await blockApiserver(t, cluster);
      t.teardown(() => api.start().then(() => undefined));
      // Break their watch connections at once (as a reset would), rather than wait for TCP keepalive to notice.
      for (const n of [n1, n2]) await execIn(n.ns, 'ss', ['-K', '-tn', 'dst', `192.0.2.254:${KUBE_APISERVER_PORT}`]);
      const resuming = await until('the daemons to lose their watch', async () => [n1, n2].every((n) =>
        /Node watch: .*resuming the watch from resourceVersion \d+/.test(since(n))), 60_000).catch(() => false);
      t.ok(resuming, 'both daemons lost the watch and will resume it from the last resourceVersion');
      await cluster.kubeChecked('DELETE', '/api/v1/nodes/ghost');
      const late = await cluster.addKubeNode();
      await api.kill();
      const rev = JSON.parse(await cluster.etcd.ctlChecked(['endpoint', 'status', '-w', 'json']))[0]?.Status?.header?.revision as number;
      await cluster.etcd.ctlChecked(['compact', String(rev)]);
      t.comment(`etcd compacted to revision ${rev}`);
      await unblock();

      // A daemon started while the API server is down: it retries, and says why.
      const d = cluster.startDaemon(late);
      const waiting = await until(`${late.name}'s daemon to report the API server unreachable`, async () =>
        /FLN_ERR_KUBE_UNAVAILABLE.*cannot reach the Kubernetes API server https:\/\/192\.0\.2\.254:6443.*trying again/.test(d.proc.output()), 30_000).catch(() => false);
      t.ok(waiting, `${late.name}: FLN_ERR_KUBE_UNAVAILABLE, cannot reach the API server, trying again`);
      // The data path while the server is down.
      const m = await allPairs(cluster, [pods[0] as PodHost, pods[1] as PodHost], 10_000);
      t.ok(m.flat().every(Boolean), `node1 and node2 pods ping while the API server is stopped: ${JSON.stringify(m)}`);
      await sleep(1500);
      t.equal(d.proc.child.exitCode, null, `${late.name}'s daemon keeps running while the API server is down`);
      for (const n of [n1, n2]) t.ok(await routed(n, ghostCidr), `${n.name} still routes ${ghostCidr} (the deletion is not seen yet)`);

      const restartMs = await api.start();
      t.comment(`kube-apiserver started again in ${restartMs} ms`);
      const subnet = await cluster.waitForSubnet(late, 60_000);
      t.equal(subnet, `10.244.${late.index}.1/24`, `${late.name}: its podCIDR once the API server is back`);
      t.same(Object.keys(flannelAnnotations(await cluster.kubeChecked('GET', `/api/v1/nodes/${late.name}`))).sort(),
        ['backend-data', 'backend-type', 'kube-subnet-manager', 'public-ip'], `${late.name}: annotated`);
      for (const n of [n1, n2]) {
        const gone = await until(`${n.name} to get 410 Gone`, async () => /FLN_ERR_KUBE_WATCH_GONE.*410.*re-listing Nodes/.test(since(n)), 60_000).catch(() => false);
        t.ok(gone, `${n.name}: the resumed watch got 410 Gone (FLN_ERR_KUBE_WATCH_GONE) and re-listed`);
        if (!gone) t.comment(since(n).split('\n').filter((l) => /subnet\/kube/.test(l)).slice(-8).join('\n'));
        const dropped = await until(`${n.name} to drop ${ghostCidr}`, async () => !(await routed(n, ghostCidr)), 20_000).catch(() => false);
        t.ok(dropped, `${n.name}: the re-list found the ghost deleted and its route removed`);
        if (!dropped) t.comment(since(n).split('\n').filter((l) => /subnet\/kube|route/.test(l)).slice(-12).join('\n'));
      }
      const pod = await cluster.addPod(late, subnet);
      const m2 = await allPairs(cluster, [pods[0] as PodHost, pods[1] as PodHost, pod]);
      t.ok(m2.flat().every(Boolean), `node1, node2 and ${late.name} pods ping each other: ${JSON.stringify(m2)}`);
      livePods = [pods[0] as PodHost, pods[1] as PodHost, pod];
    });

    // The in-cluster config, as in a pod of the DaemonSet: no --kubeconfig-file, no --kube-api-url, the service's
    // address in KUBERNETES_SERVICE_HOST/PORT and the ServiceAccount's token, CA and namespace under
    // /var/run/secrets/kubernetes.io/serviceaccount, put there in a private mount namespace (an overlay on /run that
    // only the daemon sees; the host's /run is not changed).
    await t.test('in-cluster config: the service-account files and KUBERNETES_SERVICE_HOST/PORT give the daemon its subnet', async (t) => {
      const api = cluster.kube as NonNullable<typeof cluster.kube>;
      const n2 = cluster.nodes[1] as NodeHost;
      const src = join(cluster.stateDir, n2.name, 'sa');
      const mnt = join(cluster.stateDir, n2.name, 'run-overlay');
      mkdirSync(src, { recursive: true });
      mkdirSync(mnt, { recursive: true });
      writeFileSync(join(src, 'token'), api.tokens[FLANNEL_KUBE_USER] as string, { mode: 0o600 });
      writeFileSync(join(src, 'ca.crt'), api.caPem);
      writeFileSync(join(src, 'namespace'), 'kube-flannel');
      const hostHad = existsSync('/run/secrets/kubernetes.io/serviceaccount');
      const script = 'mount -t tmpfs -o size=4m,mode=0700 flannel-ts-sa "$SA_MNT"; mkdir "$SA_MNT/up" "$SA_MNT/work"; ' +
        'mount -t overlay overlay -o "lowerdir=/run,upperdir=$SA_MNT/up,workdir=$SA_MNT/work" /run; ' +
        'mkdir -p /var/run/secrets/kubernetes.io/serviceaccount; cp "$SA_SRC/token" "$SA_SRC/ca.crt" "$SA_SRC/namespace" /var/run/secrets/kubernetes.io/serviceaccount/; ' +
        'exec "$@"';
      await cluster.stopDaemon(n2);
      const d = cluster.startDaemon(n2, [], { KUBERNETES_SERVICE_HOST: '192.0.2.254', KUBERNETES_SERVICE_PORT: String(KUBE_APISERVER_PORT), SA_MNT: mnt, SA_SRC: src },
        { kubeconfig: false, wrapper: ['unshare', '-m', '--propagation', 'private', 'sh', '-ec', script, 'sh'] });
      const running = await until('the in-cluster daemon to run', async () => d.proc.output().includes('"msg":"running"') || d.proc.child.exitCode !== null, 30_000).catch(() => false);
      const out = d.proc.output();
      t.ok(running && d.proc.child.exitCode === null, 'the daemon runs');
      t.match(out, /"server":"https:\/\/192\.0\.2\.254:6443","source":"in-cluster service account \(\/var\/run\/secrets\/kubernetes\.io\/serviceaccount\)"/,
        'its client config: the in-cluster service account, the server from KUBERNETES_SERVICE_HOST/PORT');
      t.match(out, /"subnet":"10\.244\.2\.0\/24".*"msg":"acquired lease/, 'its subnet: node2\'s podCIDR');
      if (!running) t.comment(out.split('\n').slice(-10).join('\n'));
      t.equal(existsSync('/run/secrets/kubernetes.io/serviceaccount'), hostHad, 'the host\'s /run is unchanged');
      const m = await allPairs(cluster, livePods);
      t.ok(m.flat().every(Boolean), `all pods ping: ${JSON.stringify(m)}`);
    });

    // flannel: our Node's deletion is a removed event like any other and nothing else; it keeps its subnet, and a Node
    // created again (kubelet registers it anew, without flannel's annotations) stays unannotated until flannel
    // restarts, so no peer routes to it meanwhile. Ours: the same, said in the log, and it annotates the Node again
    // when it comes back with the same podCIDR.
    await t.test('our own Node deleted while running: a clear log, no exit, our routes kept; annotated again when it comes back', async (t) => {
      const [n1, n2] = cluster.nodes as [NodeHost, NodeHost];
      const late = cluster.nodes[5] as NodeHost;
      const d = cluster.daemons.get(n2.name);
      const from = d?.proc.output().length ?? 0;
      const since = (): string => (d?.proc.output() ?? '').slice(from);
      const routed = async (n: NodeHost, cidr: string): Promise<boolean> => (await ipIn(n.ns, ['route', 'show', cidr])).trim() !== '';
      await cluster.kubeChecked('DELETE', `/api/v1/nodes/${n2.name}`);
      t.ok(await until('node1 to drop node2\'s subnet', async () => !(await routed(n1, '10.244.2.0/24')), 20_000).catch(() => false), 'node1 drops its route to node2 (node2\'s Node is gone)');
      t.ok(await until('the log', async () => /our own Node was deleted from the API/.test(since()), 20_000).catch(() => false), 'node2 logs that its own Node was deleted');
      await sleep(1000);
      t.equal(d?.proc.child.exitCode, null, 'node2\'s daemon keeps running');
      for (const cidr of ['10.244.1.0/24', `10.244.${late.index}.0/24`]) t.ok(await routed(n2, cidr), `node2 still routes ${cidr}`);
      const m = await allPairs(cluster, [livePods[0] as PodHost, livePods[2] as PodHost], 10_000);
      t.ok(m.flat().every(Boolean), `node1 and ${late.name} pods still ping: ${JSON.stringify(m)}`);
      await cluster.registerNode(n2); // as the kubelet registers its Node again: the same podCIDR, no flannel annotations
      t.ok(await until('node2 to annotate its Node again', async () => /annotated it again/.test(since()), 30_000).catch(() => false), 'node2 annotates its Node again');
      t.same(Object.keys(flannelAnnotations(await cluster.kubeChecked('GET', `/api/v1/nodes/${n2.name}`))).sort(), ['backend-data', 'backend-type', 'kube-subnet-manager', 'public-ip'], 'flannel\'s annotations are back');
      const back = await allPairs(cluster, livePods);
      t.ok(back.flat().every(Boolean), `node1 routes to node2 again: all pods ping: ${JSON.stringify(back)}`);
    });

    // A bare --kube-api-url (no --kubeconfig-file) carries no CA and no credentials, as in flannel (client-go's
    // BuildConfigFromFlags with a URL only). With a self-signed apiserver the certificate cannot be verified; with its
    // CA trusted by the process (NODE_EXTRA_CA_CERTS, as SSL_CERT_FILE would be for flannel) we are system:anonymous,
    // which RBAC refuses: both must say so and what to do instead, and exit rather than retry for ever.
    await t.test('a bare --kube-api-url: an untrusted certificate, then anonymous and refused, each says what to do', async (t) => {
      const api = cluster.kube as NonNullable<typeof cluster.kube>;
      const node = cluster.nodes[4] as NodeHost;
      const exited = (d: ReturnType<typeof cluster.startDaemon>): Promise<number | null | string> =>
        Promise.race([d.proc.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 30_000))]);
      const bare = ['--kube-api-url=https://192.0.2.254:6443'];
      const d1 = cluster.startDaemon(node, bare, {}, { kubeconfig: false });
      t.equal(await exited(d1), 1, 'without the CA: exits 1');
      t.match(d1.proc.output(), /FLN_ERR_KUBE_CONFIG.*cannot verify the certificate of the Kubernetes API server https:\/\/192\.0\.2\.254:6443 \((?:SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT)/,
        'FLN_ERR_KUBE_CONFIG: cannot verify the server\'s certificate');
      t.match(d1.proc.output(), /use a kubeconfig \(--kubeconfig-file\) whose cluster has certificate-authority/, 'and what to do');
      const d2 = cluster.startDaemon(node, bare, { NODE_EXTRA_CA_CERTS: api.caFile }, { kubeconfig: false });
      t.equal(await exited(d2), 1, 'with the CA trusted: exits 1');
      const out = d2.proc.output();
      t.match(out, /FLN_ERR_KUBE_FORBIDDEN/, 'FLN_ERR_KUBE_FORBIDDEN');
      t.match(out, /missing permission \\"nodes get\\".*User \\"system:anonymous\\"/, 'names the permission, refused to system:anonymous');
      t.match(out, /a bare --kube-api-url sends none.*pass --kubeconfig-file with a token or client certificate/, 'and says what to do');
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
