// The Kubernetes subnet manager's pure parts: flannel's annotation prefix rules, the annotations a node writes,
// a Node as a peer lease, podCIDR(s) parsing, the kubeconfig reader, and the kube flags.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseFlags } from '../../../flanneld/options.js';
import { formatCidr4, parseIp4 } from '../../../lib/ip.js';
import { formatCidr6, parseIp6 } from '../../../lib/ip6.js';
import {
  annotationNames, annotationPrefix, annotationsToPatch, applyOverwrites, desiredAnnotations, leaseFromNode, networkAvailablePatch, podCidrsOf,
} from '../../../subnet/kube/annotations.js';
import { loadKubeClientConfig, readKubeconfig } from '../../../subnet/kube/kube-client.js';
import type { KubeNode } from '../../../subnet/kube/kube-client.js';

const ip4 = (s: string): number => parseIp4(s) as number;
const ip6 = (s: string): bigint => parseIp6(s) as bigint;

t.test('prefix rules: "/" appended without a slash, "-" after a name, one slash at most, fqdn[/name]', async (t) => {
  t.equal(annotationPrefix('flannel.alpha.coreos.com'), 'flannel.alpha.coreos.com/');
  t.equal(annotationPrefix('example.com/flannel'), 'example.com/flannel-');
  t.equal(annotationPrefix('example.com/flannel-'), 'example.com/flannel-');
  t.equal(annotationPrefix('example.com/'), 'example.com/');
  t.equal(annotationPrefix('example.com/flannel.v2'), 'example.com/flannel.v2-');
  for (const bad of ['a/b/c', 'Example.com', 'example.com/-x', '-example.com', 'example..com', '']) {
    t.throws(() => annotationPrefix(bad), { code: 'FLN_ERR_USAGE' }, `refused: ${JSON.stringify(bad)}`);
  }
  try { annotationPrefix('a/b/c'); } catch (e) { t.match((e as Error).message, /at most one slash/); }
  const n = annotationNames('example.com/flannel');
  t.equal(n.backendData, 'example.com/flannel-backend-data');
  t.equal(n.subnetKubeManaged, 'example.com/flannel-kube-subnet-manager');
  t.same(Object.values(annotationNames()).sort(), [
    'flannel.alpha.coreos.com/backend-data', 'flannel.alpha.coreos.com/backend-type', 'flannel.alpha.coreos.com/backend-v6-data',
    'flannel.alpha.coreos.com/kube-subnet-manager', 'flannel.alpha.coreos.com/node-public-ip', 'flannel.alpha.coreos.com/node-public-ipv6',
    'flannel.alpha.coreos.com/public-ip', 'flannel.alpha.coreos.com/public-ip-overwrite', 'flannel.alpha.coreos.com/public-ipv6',
    'flannel.alpha.coreos.com/public-ipv6-overwrite',
  ]);
});

const names = annotationNames();
const P = 'flannel.alpha.coreos.com/';

t.test('the annotations a node writes, and only those that differ are patched', async (t) => {
  const vx = desiredAnnotations({ publicIp: ip4('192.0.2.1'), backendType: 'vxlan', backendData: '{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}' }, names);
  t.same(vx, {
    [`${P}kube-subnet-manager`]: 'true', [`${P}backend-data`]: '{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}',
    [`${P}backend-type`]: 'vxlan', [`${P}public-ip`]: '192.0.2.1',
  });
  t.same(desiredAnnotations({ publicIp: ip4('192.0.2.1'), backendType: 'host-gw' }, names)[`${P}backend-data`], 'null', 'no backend data: "null", as flannel');
  t.equal(desiredAnnotations({ publicIp: ip4('192.0.2.1') }, names)[`${P}backend-type`], '', 'no backend type (udp): ""');
  const ds = desiredAnnotations({ publicIp: ip4('192.0.2.1'), backendType: 'vxlan', backendData: '{}', publicIpv6: ip6('2001:db8::1'), backendV6Data: '{"VNI":1}' }, names);
  t.equal(ds[`${P}public-ipv6`], '2001:db8::1');
  t.equal(ds[`${P}backend-v6-data`], '{"VNI":1}');
  t.equal(annotationsToPatch(vx, { ...vx, other: 'x' }), undefined, 'all equal: no patch');
  t.same(annotationsToPatch(vx, { ...vx, [`${P}public-ip`]: '192.0.2.9' }), { [`${P}public-ip`]: '192.0.2.1' }, 'one differs: only it');
  t.same(Object.keys(annotationsToPatch(vx, undefined) ?? {}).length, 4, 'none yet: all');
});

t.test('public-ip-overwrite replaces the PublicIP; a bad one is ignored', async (t) => {
  const attrs = { publicIp: ip4('192.0.2.1'), backendType: 'host-gw' };
  t.equal(applyOverwrites(attrs, names, { [`${P}public-ip-overwrite`]: '198.51.100.7' }).publicIp, ip4('198.51.100.7'));
  t.equal(applyOverwrites(attrs, names, { [`${P}public-ip-overwrite`]: 'nope' }).publicIp, ip4('192.0.2.1'));
  t.same(applyOverwrites(attrs, names, undefined), attrs, 'no annotations: unchanged');
  t.equal(applyOverwrites({ ...attrs, publicIpv6: ip6('2001:db8::1') }, names, { [`${P}public-ipv6-overwrite`]: '2001:db8::99' }).publicIpv6, ip6('2001:db8::99'));
});

t.test('the NetworkUnavailable condition patch', async (t) => {
  const p = networkAvailablePatch(new Date('2026-01-02T03:04:05.678Z')) as any;
  t.same(p.status.conditions, [{ type: 'NetworkUnavailable', status: 'False', reason: 'FlannelIsUp', message: 'Flannel is running on this node',
    lastTransitionTime: '2026-01-02T03:04:05Z', lastHeartbeatTime: '2026-01-02T03:04:05Z' }]);
});

const node = (o: { name?: string; podCIDR?: string; podCIDRs?: string[]; ann?: Record<string, string> }): KubeNode => ({
  metadata: { name: o.name ?? 'n1', annotations: o.ann ?? {} },
  spec: { ...(o.podCIDR ? { podCIDR: o.podCIDR } : {}), ...(o.podCIDRs ? { podCIDRs: o.podCIDRs } : {}) },
});
const peerAnn = { [`${P}kube-subnet-manager`]: 'true', [`${P}public-ip`]: '192.0.2.2', [`${P}backend-type`]: 'vxlan', [`${P}backend-data`]: '{"VNI":1,"VtepMAC":"02:00:00:00:00:02"}' };
const V4 = { ipv4: true, ipv6: false };
const DS = { ipv4: true, ipv6: true };

t.test('podCIDR(s): one or two entries, one per family; 3+ or junk refused', async (t) => {
  t.equal(formatCidr4(podCidrsOf(node({ podCIDR: '10.244.1.0/24' })).v4!), '10.244.1.0/24', 'spec.podCIDR alone');
  const ds = podCidrsOf(node({ podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] }));
  t.equal(formatCidr4(ds.v4!), '10.244.1.0/24');
  t.equal(formatCidr6(ds.v6!), 'fd00:10:244:1::/64');
  t.equal(formatCidr6(podCidrsOf(node({ podCIDRs: ['fd00:10:244:1::/64'] })).v6!), 'fd00:10:244:1::/64', 'IPv6 only');
  t.same(podCidrsOf(node({})), {}, 'none assigned');
  for (const bad of [['10.244.1.0/24', 'fd00::/64', '10.244.2.0/24'], ['10.244.1.0/24', '10.244.2.0/24'], ['nope']]) {
    t.throws(() => podCidrsOf(node({ podCIDRs: bad })), { code: 'FLN_ERR_KUBE_POD_CIDR' }, JSON.stringify(bad));
  }
});

t.test('a Node as a peer lease', async (t) => {
  const l = leaseFromNode(node({ podCIDR: '10.244.2.0/24', ann: peerAnn }), names, V4);
  t.ok(l, 'a managed node with public-ip and podCIDR is a peer');
  t.equal(formatCidr4(l!.subnet!), '10.244.2.0/24');
  t.same(l!.attrs, { publicIp: ip4('192.0.2.2'), backendType: 'vxlan', backendData: '{"VNI":1,"VtepMAC":"02:00:00:00:00:02"}' }, 'backend data kept as raw text');
  t.equal(l!.expiresAtMs, Infinity);
  t.equal(leaseFromNode(node({ podCIDR: '10.244.2.0/24', ann: { ...peerAnn, [`${P}kube-subnet-manager`]: 'false' } }), names, V4), undefined, 'not managed: no peer');
  t.equal(leaseFromNode(node({ podCIDR: '10.244.2.0/24', ann: { ...peerAnn, [`${P}public-ip`]: 'x' } }), names, V4), undefined, 'bad public-ip: dropped');
  t.equal(leaseFromNode(node({ ann: peerAnn }), names, V4), undefined, 'no podCIDR: no peer');
  t.equal(leaseFromNode(node({ podCIDR: '10.244.2.0/24', ann: peerAnn }), annotationNames('example.com/flannel'), V4), undefined, 'another prefix: not ours');
  const hg = leaseFromNode(node({ podCIDR: '10.244.2.0/24', ann: { ...peerAnn, [`${P}backend-type`]: 'host-gw', [`${P}backend-data`]: 'null' } }), names, V4);
  t.same(hg!.attrs, { publicIp: ip4('192.0.2.2'), backendType: 'host-gw' }, '"null" backend data: none');
  const dsAnn = { ...peerAnn, [`${P}public-ipv6`]: '2001:db8::2', [`${P}backend-v6-data`]: '{"VNI":1,"VtepMAC":"02:00:00:00:01:02"}' };
  const ds = leaseFromNode(node({ podCIDRs: ['10.244.2.0/24', 'fd00:10:244:2::/64'], ann: dsAnn }), names, DS);
  t.equal(formatCidr6(ds!.ipv6Subnet!), 'fd00:10:244:2::/64');
  t.equal(ds!.attrs.publicIpv6, ip6('2001:db8::2'));
  t.equal(ds!.attrs.backendV6Data, '{"VNI":1,"VtepMAC":"02:00:00:00:01:02"}');
  t.equal(leaseFromNode(node({ podCIDRs: ['10.244.2.0/24', 'fd00:10:244:2::/64'], ann: dsAnn }), names, V4)!.ipv6Subnet, undefined, 'IPv4-only network: the IPv6 podCIDR is not used');
  const v6only = leaseFromNode(node({ podCIDRs: ['fd00:10:244:2::/64'], ann: { ...dsAnn, [`${P}public-ip`]: '0.0.0.0' } }), names, { ipv4: false, ipv6: true });
  t.ok(v6only && !v6only.subnet && v6only.ipv6Subnet, 'IPv6-only: a lease with only an IPv6 subnet');
  t.equal(leaseFromNode(node({ podCIDRs: ['10.244.2.0/24', '10.244.3.0/24'], ann: peerAnn }), names, V4), undefined, 'bad podCIDRs: dropped, no throw');
});

t.test('kubeconfig: current-context, server, CA data, token or client cert; bare URL; in-cluster', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kubecfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const file = join(dir, 'kubeconfig');
  writeFileSync(file, [
    'apiVersion: v1', 'kind: Config', 'current-context: b',
    'clusters:', '- name: ca', '  cluster: { server: "https://a:1" }', '- name: cb', `  cluster: { server: "https://10.0.0.1:6443/", certificate-authority-data: "${b64('CA-PEM')}" }`,
    'users:', '- name: ub', '  user: { client-certificate: cert.pem, client-key-data: "' + b64('KEY') + '" }',
    'contexts:', '- name: a', '  context: { cluster: ca, user: ub }', '- name: b', '  context: { cluster: cb, user: ub }', '',
  ].join('\n'));
  writeFileSync(join(dir, 'cert.pem'), 'CERT');
  const c = readKubeconfig(file);
  t.same({ server: c.server, ca: c.ca, cert: c.cert, key: c.key, token: c.token }, { server: 'https://10.0.0.1:6443', ca: 'CA-PEM', cert: 'CERT', key: 'KEY', token: undefined });
  t.equal(loadKubeClientConfig({ apiUrl: 'https://other:6443', kubeconfigFile: file }).server, 'https://other:6443', '--kube-api-url overrides the server');
  const bare = loadKubeClientConfig({ apiUrl: 'http://10.0.0.1:8080', kubeconfigFile: '' });
  t.same([bare.server, bare.ca, bare.token, bare.cert], ['http://10.0.0.1:8080', undefined, undefined, undefined], 'a bare URL: no credentials, no CA');
  t.throws(() => loadKubeClientConfig({ apiUrl: '', kubeconfigFile: '', env: {} }), { code: 'FLN_ERR_KUBE_CONFIG' }, 'nothing: a config error');
  writeFileSync(join(dir, 'token'), 'tok\n');
  writeFileSync(join(dir, 'ca.crt'), 'SA-CA');
  const ic = loadKubeClientConfig({ apiUrl: '', kubeconfigFile: '', env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, inClusterDir: dir });
  t.same([ic.server, ic.ca, ic.tokenFile], ['https://10.96.0.1:443', 'SA-CA', join(dir, 'token')], 'in-cluster: service host, CA, token file');
  writeFileSync(file, 'apiVersion: v1\nkind: Config\nclusters: []\n');
  t.throws(() => readKubeconfig(file), /no current-context/);
  t.throws(() => readKubeconfig(join(dir, 'missing')), { code: 'FLN_ERR_KUBE_CONFIG' });
});

t.test('the kube flags, also as FLANNELD_* variables', async (t) => {
  const d = parseFlags([], {});
  t.same([d['kube-subnet-mgr'], d['kube-api-url'], d['kubeconfig-file'], d['kube-annotation-prefix'], d['net-config-path'], d['set-node-network-unavailable']],
    [false, '', '', 'flannel.alpha.coreos.com', '/etc/kube-flannel/net-conf.json', true], 'flannel\'s defaults');
  const f = parseFlags(['--kube-subnet-mgr', '--kubeconfig-file=/k', '--net-config-path', '/n', '--set-node-network-unavailable=false', '--kube-annotation-prefix=example.com/flannel'], {});
  t.same([f['kube-subnet-mgr'], f['kubeconfig-file'], f['net-config-path'], f['set-node-network-unavailable'], f['kube-annotation-prefix']],
    [true, '/k', '/n', false, 'example.com/flannel']);
  const e = parseFlags([], { FLANNELD_KUBE_SUBNET_MGR: 'true', FLANNELD_KUBE_API_URL: 'https://10.0.0.1:6443', FLANNELD_SET_NODE_NETWORK_UNAVAILABLE: 'false' });
  t.same([e['kube-subnet-mgr'], e['kube-api-url'], e['set-node-network-unavailable']], [true, 'https://10.0.0.1:6443', false]);
  t.throws(() => parseFlags(['--kube-annotation-prefix=a/b/c'], {}), { code: 'FLN_ERR_USAGE' });
  t.throws(() => parseFlags(['--kube-api-url=ftp://x'], {}), { code: 'FLN_ERR_USAGE' });
});
