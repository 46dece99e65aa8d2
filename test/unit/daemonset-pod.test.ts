// deploy/container/daemonset-pod.ts: the `podman run` arguments come from the manifests' pod spec and nothing else
// but the kubelet's part (node and pod names, the token and CA, KUBERNETES_SERVICE_HOST/PORT, Secret values).
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { type PodPlacement, SERVICE_ACCOUNT_DIR, loadDaemonSetPod, podmanRunArgs, probePort, runtimeArgs } from '../../deploy/container/daemonset-pod.js';

const K8S = new URL('../../deploy/kubernetes/', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-daemonset-pod-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const at = (o: Partial<PodPlacement> = {}): PodPlacement => ({
  nodeName: 'node1', netns: 'x-node1', nodeRoot: join(dir, 'root'), podDir: join(dir, 'pod'), podName: 'kube-flannel-ds-abcde', containerPrefix: 'x-node1', ...o,
});
const values = (args: string[], flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1] as string] : a.startsWith(`${flag}=`) ? [a.slice(flag.length + 1)] : []));

t.test('kube mode: the main container as the manifest says, with the kubelet\'s in-cluster config', async (t) => {
  const pod = loadDaemonSetPod(join(K8S, 'kube-flannel-ts.yml'));
  const args = podmanRunArgs(pod, 'kube-flannel', at({ kube: { host: '192.0.2.254', port: 6443, token: 'TOKEN', caPem: 'CA' } }));
  t.same(args.slice(0, 1 + runtimeArgs().length), ['run', ...runtimeArgs()]);
  t.ok(runtimeArgs().includes('--runtime=runc'), 'runc');
  t.same(values(args, '--network'), ['ns:/run/netns/x-node1'], 'hostNetwork: the node\'s namespace');
  t.same(args.filter((a) => a.startsWith('--cap-')), ['--cap-drop=all', '--cap-add=NET_ADMIN', '--cap-add=NET_RAW'], 'only NET_ADMIN and NET_RAW');
  t.notOk(args.includes('--privileged'));
  t.same(values(args, '--device'), ['/dev/net/tun:/dev/net/tun'], '/dev/net/tun (CharDevice hostPath)');
  t.same(values(args, '--env').sort(), ['KUBERNETES_SERVICE_HOST=192.0.2.254', 'KUBERNETES_SERVICE_PORT=6443', 'NODE_NAME=node1', 'POD_NAME=kube-flannel-ds-abcde', 'POD_NAMESPACE=kube-flannel']);
  t.same(values(args, '--entrypoint'), [JSON.stringify(['/usr/bin/tini', '--', 'node', '/opt/flannel-ts/dist/flanneld/main.js'])], 'command replaces the ENTRYPOINT');
  t.same(args.slice(args.indexOf('flannel-ts:0.1.0')), ['flannel-ts:0.1.0', '--ip-masq', '--kube-subnet-mgr', '--healthz-port=8081', '--subnet-file=/run/flannel/subnet.env'], 'image, then args');
  t.same(values(args, '--stop-timeout'), ['30'], 'terminationGracePeriodSeconds');
  const volumes = values(args, '--volume');
  t.same(volumes.map((v) => v.split(':').slice(1).join(':')).sort(), ['/etc/kube-flannel/:ro', '/run/flannel', '/run/xtables.lock', `${SERVICE_ACCOUNT_DIR}:ro`].sort());
  t.ok(volumes.includes(`${join(dir, 'root', '/run/flannel')}:/run/flannel`), 'hostPath under the node root');
  t.ok(existsSync(join(dir, 'root', 'run/xtables.lock')), 'FileOrCreate made the file');
  t.equal(readFileSync(join(dir, 'pod', 'serviceaccount', 'token'), 'utf8'), 'TOKEN');
  t.match(readFileSync(join(dir, 'pod', 'volumes', 'flannel-cfg', 'net-conf.json'), 'utf8'), /"Network": "10.244.0.0\/16"/, 'the ConfigMap as files');
  const main = pod.spec.containers[0];
  t.equal(probePort(main, main.readinessProbe), 8081, 'the probe port named healthz');
});

t.test('init containers: every capability dropped, only their mounts', async (t) => {
  const pod = loadDaemonSetPod(join(K8S, 'kube-flannel-ts.yml'));
  const args = podmanRunArgs(pod, 'install-cni-plugin', at());
  t.same(args.filter((a) => a.startsWith('--cap-')), ['--cap-drop=all']);
  t.same(values(args, '--volume'), [`${join(dir, 'root', '/opt/cni/bin')}:/opt/cni/bin`]);
  t.same(values(args, '--env'), [], 'no in-cluster config without a placement that has one');
});

t.test('etcd mode: no token, the Secret through secretKeyRef and a 0400 volume with its items', async (t) => {
  const pod = loadDaemonSetPod(join(K8S, 'kube-flannel-ts-etcd.yml'));
  t.equal(pod.automountToken, false);
  const secrets = { 'flannel-etcd': { endpoints: 'https://192.0.2.254:2379', 'ca.crt': 'CA', 'tls.crt': 'CRT', 'tls.key': 'KEY' } };
  const p = at({ podDir: join(dir, 'pod-etcd'), kube: { host: 'h', port: 1, token: 'T', caPem: 'C' }, secrets });
  const args = podmanRunArgs(pod, 'seed-net-conf', p);
  t.ok(values(args, '--env').includes('FLANNELD_ETCD_ENDPOINTS=https://192.0.2.254:2379'));
  t.notOk(values(args, '--env').some((e) => e.startsWith('KUBERNETES_SERVICE_HOST')), 'no in-cluster config where no token is mounted');
  t.notOk(values(args, '--volume').some((v) => v.includes(SERVICE_ACCOUNT_DIR)));
  t.equal(statSync(join(dir, 'pod-etcd', 'volumes', 'etcd-tls', 'tls.key')).mode & 0o777, 0o400, 'defaultMode 0400');
  t.throws(() => podmanRunArgs(pod, 'kube-flannel', at({ podDir: join(dir, 'pod-etcd2') })), /Secret flannel-etcd has no key endpoints/, 'a missing Secret fails clearly');
});
