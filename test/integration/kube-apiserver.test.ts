// A real kube-apiserver (k8s.io/kubernetes built from its Go modules, deploy/local/kube-apiserver.ts) on a real
// etcd on loopback: the ground the Kubernetes subnet manager will be tested on. With the admin token: Nodes with
// spec.podCIDR (and dual-stack podCIDRs) are created, listed and watched (ADDED, then MODIFIED after a
// strategic-merge patch of annotations through nodes/status, as flannel writes them). flannel's ClusterRole and
// binding from kube-flannel.yml, for a token user named as flannel's service account: nodes list/get/watch and
// nodes/status patch work, anything else (nodes delete or patch, secrets list) is refused with 403.
import { existsSync, readFileSync } from 'node:fs';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { type KubeResponse, kubeApiserverOrSkip, kubeRequest, kubeWatch } from '../helpers/kube-apiserver.js';

// kube-flannel.yml binds ClusterRole flannel to ServiceAccount kube-flannel/flannel; RBAC matches that subject on this
// user name, so a token user with it stands for the service account exactly.
const FLANNEL_USER = 'system:serviceaccount:kube-flannel:flannel';
const ANN = 'flannel.alpha.coreos.com';

const ctx = await kubeApiserverOrSkip(t, {
  users: [{ user: FLANNEL_USER, groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-flannel'] }],
});

if (ctx) {
  const { api } = ctx;
  const admin = api.adminToken;
  const flannel = api.tokens[FLANNEL_USER] as string;
  t.comment(`kube-apiserver ready at ${api.url} in ${api.startupMs} ms`);
  /** The message of a status check, with the server's answer where it is not the one expected. */
  const said = (what: string, r: KubeResponse, want: number): string => (r.status === want ? what : `${what}: ${r.text.slice(0, 400)}`);
  const node = (name: string, podCIDRs: string[]) => ({
    apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'flannel-ts/test': 'yes' } },
    spec: { podCIDR: podCIDRs[0], podCIDRs },
  });

  t.test('the real thing: /version names the pinned release, /readyz is ok', async (t) => {
    const v = await kubeRequest(api, admin, 'GET', '/version');
    t.equal(v.status, 200, said('GET /version', v, 200));
    t.match(v.json?.gitVersion, /^v1\.\d+\.\d+$/, `gitVersion ${v.json?.gitVersion}`);
    const r = await kubeRequest(api, admin, 'GET', '/readyz');
    t.equal(r.text, 'ok', '/readyz says ok');
    const anon = await kubeRequest(api, 'not-a-token', 'GET', '/api/v1/nodes');
    t.equal(anon.status, 401, 'an unknown token is refused with 401');
  });

  t.test('Nodes with podCIDR and dual-stack podCIDRs: created, listed, watched, status-patched', async (t) => {
    const a = await kubeRequest(api, admin, 'POST', '/api/v1/nodes', node('node-a', ['10.244.1.0/24']));
    t.equal(a.status, 201, said('node-a created', a, 201));
    t.same([a.json?.spec?.podCIDR, a.json?.spec?.podCIDRs], ['10.244.1.0/24', ['10.244.1.0/24']], 'single-stack podCIDR kept');
    t.match(a.json?.spec?.taints, [{ key: 'node.kubernetes.io/not-ready', effect: 'NoSchedule' }], 'a real apiserver\'s admission taints a new node not-ready');
    const b = await kubeRequest(api, admin, 'POST', '/api/v1/nodes', node('node-b', ['10.244.2.0/24', 'fd00:10:244:2::/64']));
    t.equal(b.status, 201, said('node-b created (dual-stack)', b, 201));
    t.same(b.json?.spec?.podCIDRs, ['10.244.2.0/24', 'fd00:10:244:2::/64'], 'dual-stack podCIDRs kept');
    const bad = await kubeRequest(api, admin, 'POST', '/api/v1/nodes', node('node-bad', ['10.244.3.0/24', '10.244.4.0/24']));
    t.equal(bad.status, 422, 'two IPv4 podCIDRs are refused by the apiserver\'s validation');

    const list = await kubeRequest(api, admin, 'GET', '/api/v1/nodes?labelSelector=flannel-ts%2Ftest%3Dyes');
    t.equal(list.status, 200, said('nodes listed', list, 200));
    t.same(list.json.items.map((n: any) => [n.metadata.name, n.spec.podCIDRs]).sort(),
      [['node-a', ['10.244.1.0/24']], ['node-b', ['10.244.2.0/24', 'fd00:10:244:2::/64']]], 'both listed with their podCIDRs');
    const rv = list.json.metadata.resourceVersion as string;

    const w = await kubeWatch(api, admin, `/api/v1/nodes?watch=1&resourceVersion=${rv}&allowWatchBookmarks=false`);
    t.teardown(() => w.close());
    t.equal(w.status, 200, 'watch from the list\'s resourceVersion');
    const c = await kubeRequest(api, admin, 'POST', '/api/v1/nodes', node('node-c', ['10.244.5.0/24']));
    t.equal(c.status, 201, said('node-c created', c, 201));
    const added = await w.next((e) => e.type === 'ADDED' && e.object.metadata.name === 'node-c');
    t.equal(added.object.spec.podCIDR, '10.244.5.0/24', 'ADDED node-c with its podCIDR');

    // What flannel does to its own node: a strategic-merge patch of annotations through the status subresource.
    const backendData = JSON.stringify({ VNI: 1, VtepMAC: '02:00:00:00:00:0a' });
    const patch = {
      metadata: {
        annotations: {
          [`${ANN}/kube-subnet-manager`]: 'true', [`${ANN}/backend-type`]: 'vxlan',
          [`${ANN}/backend-data`]: backendData, [`${ANN}/public-ip`]: '192.0.2.10',
        },
      },
    };
    const p = await kubeRequest(api, admin, 'PATCH', '/api/v1/nodes/node-a/status', patch, 'application/strategic-merge-patch+json');
    t.equal(p.status, 200, said('strategic-merge patch of nodes/status', p, 200));
    t.equal(p.json?.metadata?.annotations?.[`${ANN}/backend-data`], backendData, 'annotations written through nodes/status');
    const modified = await w.next((e) => e.type === 'MODIFIED' && e.object.metadata.name === 'node-a');
    t.equal(modified.object.metadata.annotations[`${ANN}/public-ip`], '192.0.2.10', 'MODIFIED node-a with the annotations');
    t.same(modified.object.spec.podCIDRs, ['10.244.1.0/24'], 'its podCIDR untouched');
    t.same(w.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED node-c', 'MODIFIED node-a'], 'exactly these events, in order');

    const del = await kubeRequest(api, admin, 'DELETE', '/api/v1/nodes/node-c');
    t.equal(del.status, 200, said('node-c deleted', del, 200));
    await w.next((e) => e.type === 'DELETED' && e.object.metadata.name === 'node-c');
    t.pass('DELETED node-c');
  });

  t.test('flannel\'s ClusterRole bound to flannel\'s service-account user: exactly its permissions', async (t) => {
    const role = {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'flannel' },
      rules: [
        { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
        { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch'] },
      ],
    };
    const binding = {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'flannel' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'flannel' },
      subjects: [{ kind: 'ServiceAccount', name: 'flannel', namespace: 'kube-flannel' }],
    };
    const before = await kubeRequest(api, flannel, 'GET', '/api/v1/nodes');
    t.equal(before.status, 403, 'before the binding, flannel\'s user may not list nodes');
    t.equal((await kubeRequest(api, admin, 'POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', role)).status, 201, 'ClusterRole flannel');
    t.equal((await kubeRequest(api, admin, 'POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', binding)).status, 201, 'ClusterRoleBinding flannel');

    // The RBAC authorizer reads roles through an informer: the binding takes effect a moment later.
    let list = before;
    for (let i = 0; i < 100 && list.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      list = await kubeRequest(api, flannel, 'GET', '/api/v1/nodes');
    }
    t.equal(list.status, 200, 'nodes list allowed');
    t.ok(list.json.items.some((n: any) => n.metadata.name === 'node-a'), 'and sees node-a');
    t.equal((await kubeRequest(api, flannel, 'GET', '/api/v1/nodes/node-a')).status, 200, 'nodes get allowed');
    t.equal((await kubeRequest(api, flannel, 'GET', '/api/v1/nodes?watch=1&timeoutSeconds=1')).status, 200, 'nodes watch allowed');
    t.equal((await kubeRequest(api, flannel, 'GET', '/api/v1/namespaces/kube-flannel/pods/nope')).status, 404, 'pods get allowed (404, not 403)');
    const ok = await kubeRequest(api, flannel, 'PATCH', '/api/v1/nodes/node-a/status',
      { metadata: { annotations: { [`${ANN}/public-ip`]: '192.0.2.11' } } }, 'application/strategic-merge-patch+json');
    t.equal(ok.status, 200, 'nodes/status patch allowed');

    t.equal((await kubeRequest(api, flannel, 'DELETE', '/api/v1/nodes/node-b')).status, 403, 'nodes delete refused');
    t.equal((await kubeRequest(api, flannel, 'PATCH', '/api/v1/nodes/node-b',
      { metadata: { labels: { x: 'y' } } }, 'application/strategic-merge-patch+json')).status, 403, 'nodes patch (not status) refused');
    const secrets = await kubeRequest(api, flannel, 'GET', '/api/v1/secrets');
    t.equal(secrets.status, 403, 'secrets list refused');
    t.equal(secrets.json?.reason, 'Forbidden', 'as a Status with reason Forbidden');
    t.equal((await kubeRequest(api, flannel, 'GET', '/api/v1/pods')).status, 403, 'pods list refused (get only)');
    t.equal((await kubeRequest(api, admin, 'GET', '/api/v1/nodes/node-b')).status, 200, 'node-b still there');
  });

  t.test('a kubeconfig for a token: server, CA and token that work', async (t) => {
    const file = api.writeKubeconfig(FLANNEL_USER);
    const kc = parseYaml(readFileSync(file, 'utf8'));
    t.equal(kc.clusters[0].cluster.server, api.url, 'server');
    t.equal(Buffer.from(kc.clusters[0].cluster['certificate-authority-data'], 'base64').toString(), api.caPem, 'CA');
    t.equal(kc.users[0].user.token, flannel, 'the user\'s token');
    t.equal(kc['current-context'], kc.contexts[0].name, 'a current context');
    const r = await kubeRequest({ ...api, caPem: Buffer.from(kc.clusters[0].cluster['certificate-authority-data'], 'base64').toString() },
      kc.users[0].user.token, 'GET', '/api/v1/nodes/node-a');
    t.equal(r.status, 200, 'a request with what the kubeconfig holds');
  });

  t.test('stop ends the process and removes its directory', async (t) => {
    await api.stop();
    t.notOk(existsSync(api.certDir), 'cert dir removed');
    const err = await kubeRequest(api, admin, 'GET', '/readyz').catch((e: Error) => e);
    t.ok(err instanceof Error, 'nothing answers any more');
    await api.stop();
    t.pass('a second stop is harmless');
  });
}
