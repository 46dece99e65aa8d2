// The Kubernetes subnet manager (subnet/kube) against a REAL kube-apiserver on a real loopback etcd, with exactly
// flannel's RBAC: the lease waits for the Node's podCIDR (naming the node), takes dual-stack podCIDRs, refuses a
// podCIDR outside the Network, honours public-ip-overwrite, a custom annotation prefix and
// --set-node-network-unavailable=false, finds the node through POD_NAME/POD_NAMESPACE; the watch turns Nodes into
// exactly the added/removed events of etcd mode; 401 and 403 tell what to fix. Skips in one line without the binary.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t from 'tap';
import { FLANNEL_CLUSTER_ROLE, FLANNEL_CLUSTER_ROLE_BINDING, FLANNEL_KUBE_GROUPS, FLANNEL_KUBE_USER } from '../../deploy/local/local-cluster.js';
import { formatCidr4, parseIp4 } from '../../lib/ip.js';
import { formatCidr6, parseIp6 } from '../../lib/ip6.js';
import { KubeClient, readKubeconfig } from '../../subnet/kube/kube-client.js';
import { KubeSubnetManager } from '../../subnet/kube/kube-subnet-manager.js';
import type { LeaseEvent } from '../../subnet/lease.js';
import { parseNetworkConfig } from '../../subnet/network-config.js';
import { startKubeApiserver } from '../../deploy/local/kube-apiserver.js';
import { kubeApiserverOrSkip, kubeRequest } from '../helpers/kube-apiserver.js';
import { CLIENT_IP, clientEndpoints } from '../helpers/loopback-etcd.js';
import { until } from '../helpers/wait.js';

const P = 'flannel.alpha.coreos.com/';
const ctx = await kubeApiserverOrSkip(t, { users: [{ user: FLANNEL_KUBE_USER, groups: [...FLANNEL_KUBE_GROUPS] }, { user: 'nobody' }] });

if (ctx) {
  const { api } = ctx;
  const admin = api.adminToken;
  const dir = mkdtempSync(join(tmpdir(), 'kube-sm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ok = async (method: string, path: string, body?: unknown, ct?: string): Promise<any> => {
    const r = await kubeRequest(api, admin, method, path, body, ct);
    if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path}: ${r.status} ${r.text.slice(0, 300)}`);
    return r.json;
  };
  await ok('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', FLANNEL_CLUSTER_ROLE);
  await ok('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', FLANNEL_CLUSTER_ROLE_BINDING);
  await until('flannel\'s binding to take effect', async () => (await kubeRequest(api, api.tokens[FLANNEL_KUBE_USER] as string, 'GET', '/api/v1/nodes')).status === 200);

  const client = (user = FLANNEL_KUBE_USER): KubeClient => new KubeClient(readKubeconfig(api.writeKubeconfig(user)));
  const netConf = (cfg: unknown): string => {
    const f = join(dir, `net-conf-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(f, JSON.stringify(cfg));
    return f;
  };
  const capture = (): { log: ReturnType<typeof pino>; lines: string[] } => {
    const lines: string[] = [];
    return { lines, log: pino({ level: 'debug' }, { write: (s: string) => { lines.push(s); } }) };
  };
  const V4 = { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } };
  const DS = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'vxlan' } };
  const node = (name: string, podCIDRs?: string[], annotations?: Record<string, string>) => ({
    apiVersion: 'v1', kind: 'Node', metadata: { name, ...(annotations ? { annotations } : {}) },
    spec: podCIDRs ? { podCIDR: podCIDRs[0], podCIDRs } : {},
  });
  const attrs4 = { publicIp: parseIp4('192.0.2.10') as number, backendType: 'host-gw' };
  const signal = new AbortController().signal;

  t.test('waits for the podCIDR naming the node, then a dual-stack lease, annotations and condition', async (t) => {
    await ok('POST', '/api/v1/nodes', node('ds1'));
    const file = netConf(DS);
    const { log, lines } = capture();
    const m = new KubeSubnetManager(client(), { log, netConfPath: file, env: { NODE_NAME: 'ds1' } });
    t.teardown(() => m.close());
    const cfg = await m.waitForNetworkConfig(signal, () => {});
    t.same(cfg, parseNetworkConfig(JSON.stringify(DS), 'x'), 'the net-conf.json file, parsed');
    const attrs = { publicIp: parseIp4('192.0.2.11') as number, backendType: 'vxlan', backendData: '{"VNI":1,"VtepMAC":"02:00:00:00:00:11"}',
      publicIpv6: parseIp6('2001:db8::11') as bigint, backendV6Data: '{"VNI":1,"VtepMAC":"02:00:00:00:01:11"}' };
    const pending = m.acquireLease(cfg, attrs, { signal });
    await until('the wait message', async () => lines.some((l) => l.includes('node \\"ds1\\" pod cidr not assigned')), 10_000);
    t.pass('while missing: node "ds1" pod cidr not assigned');
    await ok('PATCH', '/api/v1/nodes/ds1', { spec: { podCIDR: '10.244.7.0/24', podCIDRs: ['10.244.7.0/24', 'fd00:10:244:7::/64'] } }, 'application/strategic-merge-patch+json');
    const lease = await pending;
    t.equal(formatCidr4(lease.subnet!), '10.244.7.0/24');
    t.equal(formatCidr6(lease.ipv6Subnet!), 'fd00:10:244:7::/64');
    t.equal(lease.expiresAtMs, Infinity, 'no expiry in kube mode');
    const n = await ok('GET', '/api/v1/nodes/ds1');
    t.same(n.metadata.annotations, {
      [`${P}kube-subnet-manager`]: 'true', [`${P}backend-type`]: 'vxlan', [`${P}backend-data`]: attrs.backendData, [`${P}public-ip`]: '192.0.2.11',
      [`${P}backend-v6-data`]: attrs.backendV6Data, [`${P}public-ipv6`]: '2001:db8::11',
    }, 'flannel\'s annotations, the IPv6 ones too');
    t.match(n.status.conditions.find((c: any) => c.type === 'NetworkUnavailable'), { status: 'False', reason: 'FlannelIsUp' });
    const stop = new AbortController();
    const renewal = m.runRenewal(lease, { renewMarginMs: 1000, signal: stop.signal });
    stop.abort();
    await renewal;
    t.pass('runRenewal returns when the signal fires');
  });

  t.test('a podCIDR outside the Network is refused with the node and both ranges named', async (t) => {
    await ok('POST', '/api/v1/nodes', node('out1', ['10.99.1.0/24']));
    const m = new KubeSubnetManager(client(), { log: pino({ level: 'silent' }), netConfPath: netConf(V4), env: { NODE_NAME: 'out1' } });
    t.teardown(() => m.close());
    const cfg = await m.waitForNetworkConfig(signal, () => {});
    await t.rejects(m.acquireLease(cfg, attrs4, { signal }), { code: 'FLN_ERR_KUBE_POD_CIDR', message: /node "out1" podCIDR 10\.99\.1\.0\/24 is not in the Network 10\.244\.0\.0\/16/ });
  });

  t.test('public-ip-overwrite, a custom prefix, no condition with --set-node-network-unavailable=false', async (t) => {
    await ok('POST', '/api/v1/nodes', node('ow1', ['10.244.21.0/24'], { 'example.com/flannel-public-ip-overwrite': '198.51.100.21' }));
    const m = new KubeSubnetManager(client(), { log: pino({ level: 'silent' }), netConfPath: netConf(V4), env: { NODE_NAME: 'ow1' },
      annotationPrefix: 'example.com/flannel', setNodeNetworkUnavailable: false });
    t.teardown(() => m.close());
    const lease = await m.acquireLease(await m.waitForNetworkConfig(signal, () => {}), attrs4, { signal });
    t.equal(lease.attrs.publicIp, parseIp4('198.51.100.21'), 'the lease advertises the overwrite');
    const n = await ok('GET', '/api/v1/nodes/ow1');
    t.equal(n.metadata.annotations['example.com/flannel-public-ip'], '198.51.100.21', 'written under the custom prefix');
    t.equal(n.metadata.annotations['example.com/flannel-kube-subnet-manager'], 'true');
    t.notOk(Object.keys(n.metadata.annotations).some((k: string) => k.startsWith(P)), 'nothing under the default prefix');
    t.notOk((n.status?.conditions ?? []).some((c: any) => c.type === 'NetworkUnavailable'), 'no NetworkUnavailable condition');
  });

  t.test('node-public-ip and node-public-ipv6 annotations, read at start, override --public-ip(v6); junk ignored', async (t) => {
    await ok('POST', '/api/v1/nodes', node('np1', ['10.244.61.0/24'], { [`${P}node-public-ip`]: '198.51.100.61', [`${P}node-public-ipv6`]: '2001:db8::61' }));
    await ok('POST', '/api/v1/nodes', node('np2', ['10.244.62.0/24'], { [`${P}node-public-ip`]: 'nope', [`${P}node-public-ipv6`]: '10.0.0.1' }));
    await ok('POST', '/api/v1/nodes', node('np3', ['10.244.63.0/24']));
    const over = async (name: string): Promise<unknown> => {
      const m = new KubeSubnetManager(client(), { log: pino({ level: 'silent' }), netConfPath: netConf(V4), env: { NODE_NAME: name } });
      try { return await m.nodePublicIpOverrides(signal); } finally { await m.close(); }
    };
    t.same(await over('np1'), { publicIp: '198.51.100.61', publicIpv6: '2001:db8::61' });
    t.same(await over('np2'), {}, 'unparsable values: no override');
    t.same(await over('np3'), {}, 'no annotations: no override');
  });

  t.test('the node from POD_NAME and POD_NAMESPACE (pods get), and a clear error without any of them', async (t) => {
    await ok('POST', '/api/v1/nodes', node('pn1', ['10.244.31.0/24']));
    await ok('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kube-flannel' } });
    await ok('POST', '/api/v1/namespaces/kube-flannel/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } });
    await ok('POST', '/api/v1/namespaces/kube-flannel/pods', {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'kube-flannel-ds-x' },
      spec: { nodeName: 'pn1', automountServiceAccountToken: false, containers: [{ name: 'f', image: 'flannel-ts' }] },
    });
    const m = new KubeSubnetManager(client(), { log: pino({ level: 'silent' }), netConfPath: netConf(V4), env: { POD_NAME: 'kube-flannel-ds-x', POD_NAMESPACE: 'kube-flannel' } });
    t.teardown(() => m.close());
    const cfg = await m.waitForNetworkConfig(signal, () => {});
    t.equal(formatCidr4((await m.acquireLease(cfg, attrs4, { signal })).subnet!), '10.244.31.0/24', 'pn1\'s podCIDR');
    const none = new KubeSubnetManager(client(), { log: pino({ level: 'silent' }), netConfPath: netConf(V4), env: {} });
    t.teardown(() => none.close());
    await t.rejects(none.acquireLease(cfg, attrs4, { signal }), { code: 'FLN_ERR_KUBE_CONFIG', message: /set NODE_NAME/ });
  });

  t.test('a missing net-conf.json is reported, and read once it appears', async (t) => {
    const file = join(dir, 'late-net-conf.json');
    const m = new KubeSubnetManager(client(), { log: pino({ level: 'silent' }), netConfPath: file, env: {} });
    t.teardown(() => m.close());
    const problems: string[] = [];
    const pending = m.waitForNetworkConfig(signal, (e) => problems.push(`${e.code}: ${e.message}`));
    await sleep(1500);
    writeFileSync(file, JSON.stringify(V4));
    await pending;
    t.match(problems[0], /^FLN_ERR_CONFIG_NOT_FOUND: cannot read the network config file .*late-net-conf\.json/);
  });

  t.test('the watch: Nodes as exactly the added/removed events of etcd mode; our own Node is no peer', async (t) => {
    await ok('POST', '/api/v1/nodes', node('w-self', ['10.244.40.0/24']));
    const m = new KubeSubnetManager(client(), { log: pino({ level: 'silent' }), netConfPath: netConf(V4), env: { NODE_NAME: 'w-self' } });
    t.teardown(() => m.close());
    const own = await m.acquireLease(await m.waitForNetworkConfig(signal, () => {}), attrs4, { signal });
    const events: string[] = [];
    let synced = 0;
    const stop = new AbortController();
    const show = (e: LeaseEvent): string => `${e.kind} ${formatCidr4(e.lease.subnet!)} ${e.lease.attrs.backendType ?? ''}`;
    const watch = m.runLeaseWatch(own, { onEvents: (evs) => events.push(...evs.map(show)), onOwnLeaseLost: () => events.push('LOST'), onSynced: () => { synced++; } }, stop.signal);
    await until('the first sync', async () => synced > 0);
    const peers0 = events.length; // the nodes of the earlier tests that are peers (ds1, ow1 has another prefix, pn1)
    t.ok(events.every((e) => e.startsWith('added')), `the first list: only additions (${events.join(', ')})`);
    const ann = { [`${P}kube-subnet-manager`]: 'true', [`${P}public-ip`]: '192.0.2.41', [`${P}backend-type`]: 'host-gw', [`${P}backend-data`]: 'null' };
    await ok('POST', '/api/v1/nodes', node('w-peer', ['10.244.41.0/24'], ann));
    await ok('POST', '/api/v1/nodes', node('w-unmanaged', ['10.244.42.0/24'], { [`${P}public-ip`]: '192.0.2.42' }));
    await until('added', async () => events.length > peers0);
    await ok('PATCH', '/api/v1/nodes/w-peer/status', { metadata: { annotations: { [`${P}public-ip`]: '192.0.2.141' } } }, 'application/strategic-merge-patch+json');
    await ok('PATCH', '/api/v1/nodes/w-peer/status', { metadata: { labels: { x: 'y' } } }, 'application/strategic-merge-patch+json');
    await until('changed', async () => events.length >= peers0 + 3);
    await ok('DELETE', '/api/v1/nodes/w-peer');
    await until('removed', async () => events.length >= peers0 + 4);
    await sleep(500);
    t.same(events.slice(peers0), ['added 10.244.41.0/24 host-gw', 'removed 10.244.41.0/24 host-gw', 'added 10.244.41.0/24 host-gw', 'removed 10.244.41.0/24 host-gw'],
      'added; a new public-ip: removed + added (a label change: nothing); deleted: removed; the unmanaged node: nothing');
    t.notOk(events.includes('LOST'), 'never our own lease lost');
    stop.abort();
    await watch;
    t.pass('runLeaseWatch returns when stopped');
  });

  t.test('a watch from a compacted resourceVersion: 410 Gone → FLN_ERR_KUBE_WATCH_GONE (the manager then lists again)', async (t) => {
    // An apiserver of its own without the watch cache, so the watch goes to etcd, whose compaction makes the version too old.
    const api2 = await startKubeApiserver({ etcdServers: clientEndpoints(ctx.etcd), extraArgs: ['--watch-cache=false'] });
    t.teardown(() => api2.stop());
    const c = new KubeClient({ server: api2.url, ca: api2.caPem, token: api2.adminToken, source: 'test' });
    t.teardown(() => c.close());
    const { resourceVersion } = await c.listNodes();
    const r = await kubeRequest(api2, api2.adminToken, 'POST', '/api/v1/nodes', node('gone1', ['10.244.50.0/24']));
    t.equal(r.status, 201, 'a change after the list');
    t.equal((await kubeRequest(api2, api2.adminToken, 'POST', '/api/v1/nodes', node('gone2', ['10.244.51.0/24']))).status, 201, 'and another');
    const rev = JSON.parse(await ctx.etcd.ctlChecked(['get', 'x', '-w', 'json'], CLIENT_IP)).header.revision as number;
    await ctx.etcd.ctlChecked(['compact', String(rev)], CLIENT_IP);
    const stop = new AbortController();
    t.teardown(() => stop.abort());
    await t.rejects(c.watchNodes(resourceVersion, { onEvent: () => {} }, stop.signal, 30), { code: 'FLN_ERR_KUBE_WATCH_GONE' }, `from ${resourceVersion}, compacted at ${rev}`);
  });

  t.test('the periodic re-list (the watch\'s timeout): lists again, delivers nothing new', async (t) => {
    await ok('POST', '/api/v1/nodes', node('rs-self', ['10.244.70.0/24']));
    const m = new KubeSubnetManager(client(), { log: pino({ level: 'silent' }), netConfPath: netConf(V4), env: { NODE_NAME: 'rs-self' }, resyncIntervalMs: 1500 });
    t.teardown(() => m.close());
    const own = await m.acquireLease(await m.waitForNetworkConfig(signal, () => {}), attrs4, { signal });
    let synced = 0;
    let batches = 0;
    const resyncs: string[] = [];
    const stop = new AbortController();
    const watch = m.runLeaseWatch(own, { onEvents: () => { batches++; }, onOwnLeaseLost: () => {}, onSynced: () => { synced++; }, onResync: (r) => resyncs.push(r) }, stop.signal);
    await until('three lists', async () => synced >= 3, 15_000);
    stop.abort();
    await watch;
    t.ok(synced >= 3, `${synced} lists`);
    t.equal(batches, 1, 'the peers once (the first list), nothing on the re-lists');
    t.ok(resyncs.every((r) => r === 'the Node watch ended'), `every re-list after the watch ended: ${resyncs.join(', ')}`);
  });

  t.test('401 and 403 say what to fix', async (t) => {
    const bad = new KubeClient({ ...readKubeconfig(api.writeKubeconfig(FLANNEL_KUBE_USER)), token: 'not-a-token' });
    t.teardown(() => bad.close());
    await t.rejects(bad.getNode('ds1'), { code: 'FLN_ERR_KUBE_FORBIDDEN', message: /refused our credentials \(401 Unauthorized\)/ });
    const nobody = client('nobody');
    t.teardown(() => nobody.close());
    await t.rejects(nobody.listNodes(), { code: 'FLN_ERR_KUBE_FORBIDDEN', message: /missing permission "nodes list"/ });
    await t.rejects(nobody.patchNodeStatus('ds1', {}), { code: 'FLN_ERR_KUBE_FORBIDDEN', message: /missing permission "nodes\/status patch"/ });
    const flannel = client();
    t.teardown(() => flannel.close());
    await t.rejects(flannel.getNode('no-such-node'), { code: 'FLN_ERR_KUBE_NOT_FOUND' });
  });
}
