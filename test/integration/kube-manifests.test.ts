// deploy/kubernetes against a REAL kube-apiserver (on a real loopback etcd): every document of every manifest
// (kube-flannel-ts.yml, the default kube mode; kube-flannel-ts-etcd.yml and etcd-secret.example.yml, the etcd mode)
// passes a server-side apply with dryRun=All as the admin, and nothing is stored by it; then kube-flannel-ts.yml is
// applied for real, and flannel's service account (a token user named system:serviceaccount:kube-flannel:flannel)
// may do exactly what the daemon does (pods get, nodes get/list/watch, nodes/status patch) and nothing more (nodes
// delete, nodes patch, secrets list, pods list: 403). The daemon's own KubeSubnetManager with that token takes a
// lease from a Node's podCIDR with the manifest's net-conf.json; with a ClusterRole lacking nodes/status patch it
// fails with FLN_ERR_KUBE_FORBIDDEN naming that permission. Skips in one line without the binary.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { formatCidr4, parseIp4 } from '../../lib/ip.js';
import { KubeClient, readKubeconfig } from '../../subnet/kube/kube-client.js';
import { KubeSubnetManager } from '../../subnet/kube/kube-subnet-manager.js';
import { type KubeResponse, kubeApiserverOrSkip, kubeRequest } from '../helpers/kube-apiserver.js';
import { until } from '../helpers/wait.js';

type Obj = Record<string, any>; // manifests are free-form JSON
const K8S = new URL('../../deploy/kubernetes/', import.meta.url).pathname;
const KUBE = 'kube-flannel-ts.yml';
const FLANNEL_USER = 'system:serviceaccount:kube-flannel:flannel';
/** A second service account, bound to flannel's ClusterRole without nodes/status patch. */
const WEAK_USER = 'system:serviceaccount:kube-flannel:flannel-weak';
const GROUPS = ['system:serviceaccounts', 'system:serviceaccounts:kube-flannel'];
const P = 'flannel.alpha.coreos.com/';

/** YAML 1.1, as kubectl reads it (so 0400 is octal). */
function docsOf(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(join(K8S, file), 'utf8'), { version: '1.1' });
  if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
  return docs.map((d) => d.toJS() as Obj).filter((o) => o !== null);
}

const PLURAL: Record<string, [string, string, boolean]> = { // kind → [group path, resource, namespaced]
  Namespace: ['/api/v1', 'namespaces', false],
  ServiceAccount: ['/api/v1', 'serviceaccounts', true],
  ConfigMap: ['/api/v1', 'configmaps', true],
  Secret: ['/api/v1', 'secrets', true],
  DaemonSet: ['/apis/apps/v1', 'daemonsets', true],
  ClusterRole: ['/apis/rbac.authorization.k8s.io/v1', 'clusterroles', false],
  ClusterRoleBinding: ['/apis/rbac.authorization.k8s.io/v1', 'clusterrolebindings', false],
};
/** The object's own URL path. */
function pathOf(o: Obj): string {
  const p = PLURAL[String(o.kind)];
  if (!p) throw new Error(`no resource path known for ${String(o.kind)}`);
  const [group, resource, namespaced] = p;
  return `${group}${namespaced ? `/namespaces/${String(o.metadata.namespace)}` : ''}/${resource}/${String(o.metadata.name)}`;
}

const ctx = await kubeApiserverOrSkip(t, {
  users: [{ user: FLANNEL_USER, groups: GROUPS }, { user: WEAK_USER, groups: GROUPS }],
});

if (ctx) {
  const { api } = ctx;
  const admin = api.adminToken;
  const dir = mkdtempSync(join(tmpdir(), 'kube-manifests-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const said = (what: string, r: KubeResponse, want: number[]): string => (want.includes(r.status) ? what : `${what}: ${r.status} ${r.text.slice(0, 400)}`);
  /** Server-side apply (a JSON body is YAML too), as `kubectl apply --server-side [--dry-run=server]`. */
  const apply = (o: Obj, dryRun: boolean, token = admin): Promise<KubeResponse> =>
    kubeRequest(api, token, 'PATCH', `${pathOf(o)}?fieldManager=flannel-ts-test${dryRun ? '&dryRun=All' : ''}`, o, 'application/apply-patch+yaml');
  const files = readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f)).sort();
  const kube = docsOf(KUBE);
  const ofKind = (kind: string): Obj => kube.find((o) => o.kind === kind) as Obj;

  t.test('every document of every manifest passes a server-side dry run, and nothing is stored', async (t) => {
    t.ok(files.includes(KUBE) && files.length >= 3, `manifests: ${files.join(', ')}`);
    const docs = files.flatMap((f) => docsOf(f).map((o) => ({ f, o })));
    // A namespaced object needs its namespace (NamespaceLifecycle admission): dry-run the Namespace, then create it.
    const ns = docs.find((d) => d.o.kind === 'Namespace')?.o as Obj;
    const r = await apply(ns, true);
    t.equal(r.status, 201, said(`dry run: Namespace ${ns.metadata.name}`, r, [201]));
    t.equal((await kubeRequest(api, admin, 'GET', pathOf(ns))).status, 404, 'the dry run stored nothing');
    t.equal((await apply(ns, false)).status, 201, 'the Namespace created for real');
    for (const { f, o } of docs) {
      const d = await apply(o, true);
      t.ok(d.status === 200 || d.status === 201, said(`${f}: ${o.kind} ${o.metadata.name} applies (dry run)`, d, [200, 201]));
      if (o.kind !== 'Namespace') t.equal((await kubeRequest(api, admin, 'GET', pathOf(o))).status, 404, `${o.kind} ${o.metadata.name} not stored`);
    }
    const ds = kube.find((o) => o.kind === 'DaemonSet') as Obj;
    const wrongType = structuredClone(ds);
    wrongType.spec.template.spec.containers[0].securityContext.capabilities.add = 'NET_ADMIN';
    const noSelector = structuredClone(ds);
    delete noSelector.spec.selector;
    // Server-side apply answers a value of the wrong type with 500 "failed to create typed patch object".
    const typed = await apply(wrongType, true);
    t.ok(typed.status >= 400 && /expected list/.test(String(typed.json?.message)), `a wrong type is refused (${typed.status}: expected list)`);
    const invalid = await apply(noSelector, true);
    t.equal(invalid.status, 422, 'a DaemonSet without selector is refused (422 Invalid)');
  });

  t.test(`${KUBE} applied for real: flannel's service account may do exactly what flanneld does`, async (t) => {
    for (const o of kube) {
      const r = await apply(o, false);
      t.ok(r.status === 200 || r.status === 201, said(`${o.kind} ${o.metadata.name} applied`, r, [200, 201]));
    }
    const token = api.tokens[FLANNEL_USER] as string;
    await until('the binding to take effect', async () => (await kubeRequest(api, token, 'GET', '/api/v1/nodes')).status === 200);
    await kubeRequest(api, admin, 'POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'rb1' }, spec: { podCIDR: '10.244.9.0/24' } });
    const as = (method: string, path: string, body?: unknown, ct?: string): Promise<number> => kubeRequest(api, token, method, path, body, ct).then((r) => r.status);
    t.equal(await as('GET', '/api/v1/nodes'), 200, 'nodes list');
    t.equal(await as('GET', '/api/v1/nodes/rb1'), 200, 'nodes get');
    t.equal(await as('GET', '/api/v1/nodes?watch=1&timeoutSeconds=1'), 200, 'nodes watch');
    t.equal(await as('GET', '/api/v1/namespaces/kube-flannel/pods/nope'), 404, 'pods get (404, not 403)');
    t.equal(await as('PATCH', '/api/v1/nodes/rb1/status', { metadata: { annotations: { [`${P}public-ip`]: '192.0.2.9' } } },
      'application/strategic-merge-patch+json'), 200, 'nodes/status patch');
    t.equal(await as('DELETE', '/api/v1/nodes/rb1'), 403, 'nodes delete refused');
    t.equal(await as('PATCH', '/api/v1/nodes/rb1', { metadata: { labels: { x: 'y' } } }, 'application/strategic-merge-patch+json'), 403, 'nodes patch (not status) refused');
    t.equal(await as('GET', '/api/v1/secrets'), 403, 'secrets list refused');
    t.equal(await as('GET', '/api/v1/namespaces/kube-flannel/configmaps/kube-flannel-cfg'), 403, 'configmaps get refused (net-conf.json is a mounted file)');
    t.equal(await as('GET', '/api/v1/pods'), 403, 'pods list refused (get only)');
    t.equal(await as('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'rb-x' } }), 403, 'nodes create refused');
  });

  const netConfFile = join(dir, 'net-conf.json');
  writeFileSync(netConfFile, ofKind('ConfigMap').data['net-conf.json']);
  const attrs = { publicIp: parseIp4('192.0.2.21') as number, backendType: 'vxlan', backendData: '{"VNI":1,"VtepMAC":"02:00:00:00:00:21"}' };
  const signal = new AbortController().signal;

  t.test('the daemon\'s KubeSubnetManager with that token: a lease from the Node\'s podCIDR', async (t) => {
    await kubeRequest(api, admin, 'POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'kn1' }, spec: { podCIDR: '10.244.21.0/24' } });
    const m = new KubeSubnetManager(new KubeClient(readKubeconfig(api.writeKubeconfig(FLANNEL_USER))),
      { log: pino({ level: 'silent' }), netConfPath: netConfFile, env: { NODE_NAME: 'kn1' } });
    t.teardown(() => m.close());
    const cfg = await m.waitForNetworkConfig(signal, () => {});
    t.equal(cfg.backendType, 'vxlan', 'the ConfigMap\'s net-conf.json: vxlan');
    const lease = await m.acquireLease(cfg, attrs, { signal });
    t.equal(formatCidr4(lease.subnet!), '10.244.21.0/24', 'kn1\'s podCIDR');
    const n = (await kubeRequest(api, admin, 'GET', '/api/v1/nodes/kn1')).json;
    t.match(n.metadata.annotations, { [`${P}kube-subnet-manager`]: 'true', [`${P}backend-type`]: 'vxlan', [`${P}public-ip`]: '192.0.2.21' }, 'annotated');
    t.match(n.status.conditions.find((c: Obj) => c.type === 'NetworkUnavailable'), { status: 'False', reason: 'FlannelIsUp' });
  });

  t.test('with a ClusterRole lacking nodes/status patch: FLN_ERR_KUBE_FORBIDDEN naming it', async (t) => {
    const role = structuredClone(ofKind('ClusterRole'));
    role.metadata.name = 'flannel-weak';
    role.rules = role.rules.filter((r: Obj) => !r.resources.includes('nodes/status'));
    t.equal(role.rules.length, 2, 'pods get and nodes get/list/watch kept');
    const binding = structuredClone(ofKind('ClusterRoleBinding'));
    binding.metadata.name = 'flannel-weak';
    binding.roleRef.name = 'flannel-weak';
    binding.subjects[0].name = 'flannel-weak';
    for (const o of [role, binding]) t.equal((await apply(o, false)).status, 201, `${o.kind} ${o.metadata.name}`);
    const token = api.tokens[WEAK_USER] as string;
    await until('the weak binding to take effect', async () => (await kubeRequest(api, token, 'GET', '/api/v1/nodes')).status === 200);
    await kubeRequest(api, admin, 'POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'kn2' }, spec: { podCIDR: '10.244.22.0/24' } });
    const m = new KubeSubnetManager(new KubeClient(readKubeconfig(api.writeKubeconfig(WEAK_USER))),
      { log: pino({ level: 'silent' }), netConfPath: netConfFile, env: { NODE_NAME: 'kn2' } });
    t.teardown(() => m.close());
    const cfg = await m.waitForNetworkConfig(signal, () => {});
    await t.rejects(m.acquireLease(cfg, attrs, { signal }), { code: 'FLN_ERR_KUBE_FORBIDDEN', message: /missing permission "nodes\/status patch"/ });
    const n = (await kubeRequest(api, admin, 'GET', '/api/v1/nodes/kn2')).json;
    t.notOk(n.metadata.annotations?.[`${P}kube-subnet-manager`], 'kn2 left unannotated');
  });
}
