// deploy/kubernetes and deploy/container, checked offline: every manifest against the Kubernetes
// schemas (kubernetes-models); the default kube-flannel-ts.yml in kube mode (flannel's exact RBAC, --kube-subnet-mgr,
// the downward-API env, the ConfigMap at /etc/kube-flannel/, no etcd); the etcd-mode alternative
// kube-flannel-ts-etcd.yml (no RBAC grants, the Secret, seed-net-conf); the DaemonSets' security and wiring, the
// ConfigMaps' CNI and network configs, every flanneld flag through parseFlags, the Containerfile, install-file.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { buildDelegate, parseNetConf } from '../../deploy/cni/netconf.js';
import { parseFlannelEnv } from '../../deploy/cni/flannel-env.js';
import { FLANNEL_CLUSTER_ROLE, FLANNEL_CLUSTER_ROLE_BINDING, FLANNEL_KUBE_USER } from '../../deploy/local/local-cluster.js';
import { parseFlags, usage } from '../../flanneld/options.js';
import { parseNetworkConfig } from '../../subnet/network-config.js';

type Obj = Record<string, any>; // manifests are free-form JSON
const require = createRequire(import.meta.url);
const REPO = new URL('../../', import.meta.url).pathname;
const K8S = join(REPO, 'deploy/kubernetes');

/** YAML 1.1, as kubectl reads it (so 0400 is octal). */
function docsOf(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(join(K8S, file), 'utf8'), { version: '1.1' });
  if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
  for (const d of docs) if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
  return docs.map((d) => d.toJS() as Obj).filter((o) => o !== null);
}

function validate(o: Obj): void {
  const models = require(`kubernetes-models/${String(o.apiVersion)}`) as Record<string, new (o: Obj) => { validate(): void }>;
  const Model = models[String(o.kind)];
  if (!Model) throw new Error(`no schema for ${String(o.apiVersion)} ${String(o.kind)}`);
  new Model(o).validate();
}

const files = readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f));
const all = files.flatMap((f) => docsOf(f).map((o) => ({ file: f, o })));
const KUBE = 'kube-flannel-ts.yml';
const ETCD = 'kube-flannel-ts-etcd.yml';
const findIn = (file: string, kind: string): Obj => all.find((d) => d.file === file && d.o.kind === kind)?.o ?? {};
/** The etcd-mode manifest's objects (and the example Secret). */
const find = (kind: string): Obj => (kind === 'Secret' ? findIn('etcd-secret.example.yml', kind) : findIn(ETCD, kind));
const ds = find('DaemonSet');
const pod = ds.spec?.template?.spec as Obj;
const main = pod.containers.find((c: Obj) => c.name === 'kube-flannel') as Obj;
const init = (name: string): Obj => pod.initContainers.find((c: Obj) => c.name === name) as Obj;
const kds = findIn(KUBE, 'DaemonSet');
const kpod = kds.spec?.template?.spec as Obj;
const kmain = kpod.containers.find((c: Obj) => c.name === 'kube-flannel') as Obj;
const kinit = (name: string): Obj | undefined => kpod.initContainers.find((c: Obj) => c.name === name);
const pods: Array<[string, Obj]> = [[KUBE, kpod], [ETCD, pod]];
const knownFlags = new Set([...usage().matchAll(/^ {2}--([a-z0-9-]+)/gm)].map((m) => m[1]));

t.test('every manifest validates against the Kubernetes schemas', async (t) => {
  t.same(files.sort(), ['etcd-secret.example.yml', ETCD, KUBE]);
  const kinds = (file: string): string[] => all.filter((d) => d.file === file).map((d) => d.o.kind).sort();
  t.same(kinds(KUBE), ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet', 'Namespace', 'ServiceAccount']);
  t.same(kinds(ETCD), ['ConfigMap', 'DaemonSet', 'Namespace', 'ServiceAccount']);
  t.same(kinds('etcd-secret.example.yml'), ['Secret']);
  for (const { file, o } of all) t.doesNotThrow(() => validate(o), `${file}: ${o.kind} ${o.metadata?.name}`);
  const broken = structuredClone(kds);
  broken.spec.template.spec.containers[0].securityContext.capabilities.add = 'NET_ADMIN';
  t.throws(() => validate(broken), 'a wrong type is caught (capabilities.add as a string)');
  const badPolicy = structuredClone(kds);
  badPolicy.spec.template.spec.containers[0].livenessProbe.httpGet.port = { name: 'healthz' };
  t.throws(() => validate(badPolicy), 'and so is a malformed probe port');
});

t.test('DaemonSets: host network, node-critical, NET_ADMIN and NET_RAW only, never privileged', async (t) => {
  for (const [file, pod] of pods) {
    const main = pod.containers.find((c: Obj) => c.name === 'kube-flannel') as Obj;
    t.equal(pod.hostNetwork, true, file);
    t.equal(pod.priorityClassName, 'system-node-critical');
    t.same(pod.tolerations, [{ operator: 'Exists', effect: 'NoSchedule' }]);
    t.match(pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0], { key: 'kubernetes.io/os', operator: 'In', values: ['linux'] });
    t.same(main.securityContext, { privileged: false, capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] } });
    for (const c of [...pod.initContainers, ...pod.containers] as Obj[]) {
      t.equal(c.securityContext?.privileged, false, `${file}: ${c.name} is not privileged`);
      t.ok((c.securityContext?.capabilities?.add ?? []).every((cap: string) => ['NET_ADMIN', 'NET_RAW'].includes(cap)), `${file}: ${c.name} adds no other capability`);
    }
  }
});

t.test('DaemonSets: probes, /run/flannel, /dev/net/tun, xtables lock', async (t) => {
  for (const [file, pod] of pods) {
    const main = pod.containers.find((c: Obj) => c.name === 'kube-flannel') as Obj;
    const port = main.ports.find((p: Obj) => p.name === 'healthz');
    t.match(main.livenessProbe.httpGet, { path: '/healthz', port: 'healthz' });
    t.match(main.readinessProbe.httpGet, { path: '/readyz', port: 'healthz' });
    t.ok(main.args.includes(`--healthz-port=${port.containerPort}`), `${file}: the probes hit the port flanneld serves`);
    const hostPath = (mountPath: string): Obj | undefined => {
      const m = main.volumeMounts.find((v: Obj) => v.mountPath === mountPath);
      return pod.volumes.find((v: Obj) => v.name === m?.name)?.hostPath;
    };
    t.same(hostPath('/run/flannel'), { path: '/run/flannel', type: 'DirectoryOrCreate' });
    t.same(hostPath('/dev/net/tun'), { path: '/dev/net/tun', type: 'CharDevice' });
    t.same(hostPath('/run/xtables.lock'), { path: '/run/xtables.lock', type: 'FileOrCreate' });
  }
});

t.test('kube mode (the default): --ip-masq --kube-subnet-mgr, the node from the downward API, no etcd', async (t) => {
  t.match(readFileSync(join(K8S, KUBE), 'utf8'), /--kube-subnet-mgr/);
  t.ok(kmain.args.includes('--ip-masq') && kmain.args.includes('--kube-subnet-mgr'), `args ${kmain.args.join(' ')}`);
  const flags = parseFlags(kmain.args, {});
  t.equal(flags['kube-subnet-mgr'], true);
  t.equal(flags['ip-masq'], true);
  t.equal(flags['kube-api-url'], '', 'the in-cluster config: no API URL');
  t.equal(flags['kubeconfig-file'], '', 'and no kubeconfig');
  const env = Object.fromEntries(kmain.env.map((e: Obj) => [e.name, e]));
  t.same(env.NODE_NAME.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
  t.same(env.POD_NAME.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } });
  t.same(env.POD_NAMESPACE.valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } });
  t.notOk(kmain.env.some((e: Obj) => String(e.name).startsWith('FLANNELD_ETCD')), 'no etcd settings');
  t.notOk(kpod.volumes.some((v: Obj) => v.secret), 'no etcd Secret mounted');
  t.equal(kinit('seed-net-conf'), undefined, 'no seed-net-conf init step (the net-conf.json is read from the ConfigMap)');
  const cfgMount = kmain.volumeMounts.find((m: Obj) => m.mountPath === '/etc/kube-flannel/');
  t.equal(kpod.volumes.find((v: Obj) => v.name === cfgMount?.name)?.configMap?.name, findIn(KUBE, 'ConfigMap').metadata.name, 'the ConfigMap at /etc/kube-flannel/');
  t.equal(flags['net-config-path'], '/etc/kube-flannel/net-conf.json', 'where flanneld reads net-conf.json by default');
  t.ok(findIn(KUBE, 'ConfigMap').data['net-conf.json'], 'and the ConfigMap has that key');
});

t.test('kube mode RBAC: exactly flannel\'s ClusterRole, bound to the DaemonSet\'s ServiceAccount, its token mounted', async (t) => {
  t.same(findIn(KUBE, 'ClusterRole'), FLANNEL_CLUSTER_ROLE, 'pods get; nodes get, list, watch; nodes/status patch (as kube-flannel.yml)');
  t.same(findIn(KUBE, 'ClusterRoleBinding'), FLANNEL_CLUSTER_ROLE_BINDING);
  const sa = findIn(KUBE, 'ServiceAccount');
  t.same(FLANNEL_CLUSTER_ROLE_BINDING.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
  t.equal(FLANNEL_KUBE_USER, `system:serviceaccount:${sa.metadata.namespace}:${sa.metadata.name}`);
  t.equal(kpod.serviceAccountName, sa.metadata.name);
  t.equal(kds.metadata.namespace, sa.metadata.namespace);
  t.not(sa.automountServiceAccountToken, false, 'the ServiceAccount token is mounted (the in-cluster config)');
  t.not(kpod.automountServiceAccountToken, false);
  t.same(all.filter((d) => d.file !== KUBE && /Role|Binding/.test(String(d.o.kind))), [], 'no RBAC in the etcd-mode files');
});

t.test('etcd endpoints and TLS come from the Secret, for flanneld and seed-net-conf alike', async (t) => {
  const secret = find('Secret');
  t.same(Object.keys(secret.stringData).sort(), ['ca.crt', 'endpoints', 'tls.crt', 'tls.key']);
  const tlsVolume = pod.volumes.find((v: Obj) => v.secret);
  t.equal(tlsVolume.secret.secretName, secret.metadata.name);
  t.equal(tlsVolume.secret.defaultMode, 0o400, 'key files are 0400');
  for (const c of [main, init('seed-net-conf')]) {
    const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e]));
    t.same(env.FLANNELD_ETCD_ENDPOINTS.valueFrom.secretKeyRef, { name: secret.metadata.name, key: 'endpoints' }, `${c.name}: endpoints`);
    const mount = c.volumeMounts.find((m: Obj) => m.name === tlsVolume.name);
    t.equal(mount.readOnly, true);
    for (const [v, file] of [['FLANNELD_ETCD_CAFILE', 'ca.crt'], ['FLANNELD_ETCD_CERTFILE', 'tls.crt'], ['FLANNELD_ETCD_KEYFILE', 'tls.key']]) {
      t.equal(env[v as string].value, `${mount.mountPath}/${file}`, `${c.name}: ${v}`);
    }
  }
  t.same(init('seed-net-conf').env, main.env, 'the same etcd settings in both');
});

t.test('etcd mode RBAC: least privilege is nothing at all', async (t) => {
  t.same(all.filter((d) => d.file === ETCD && /Role|Binding/.test(String(d.o.kind))), [], 'no Role, ClusterRole or binding');
  const sa = find('ServiceAccount');
  t.equal(sa.automountServiceAccountToken, false);
  t.equal(pod.serviceAccountName, sa.metadata.name);
  t.equal(pod.automountServiceAccountToken, false, 'no API token in the pod');
  t.match(readFileSync(join(K8S, ETCD), 'utf8'), /reads and writes nothing in the Kubernetes API/, 'and the manifest says so');
});

t.test('ConfigMaps: the conflist our plugin accepts and a net-conf.json flanneld accepts', async (t) => {
  t.same(findIn(KUBE, 'ConfigMap').data, find('ConfigMap').data, 'the same cni-conf.json and net-conf.json in both modes');
  t.same(kinit('install-cni'), init('install-cni'), 'the same CNI install init containers');
  t.same(kinit('install-cni-plugin'), init('install-cni-plugin'));
  const net = JSON.parse(findIn(KUBE, 'ConfigMap').data['net-conf.json']);
  t.match(net, { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }, 'as kube-flannel.yml');
  const cm = find('ConfigMap');
  const conflist = JSON.parse(cm.data['cni-conf.json']);
  t.same(conflist, JSON.parse(readFileSync(join(REPO, 'deploy/cni/10-flannel.conflist'), 'utf8')), 'the same conflist as deploy/cni/10-flannel.conflist');
  const plugin = { name: conflist.name, cniVersion: conflist.cniVersion, ...conflist.plugins[0] };
  t.equal(plugin.type, 'flannel');
  const env = parseFlannelEnv('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n', 'subnet.env');
  t.match(buildDelegate(parseNetConf(JSON.stringify(plugin)), env), { type: 'bridge', hairpinMode: true, isDefaultGateway: true, mtu: 1450 });
  t.equal(parseNetworkConfig(cm.data['net-conf.json'], 'net-conf.json').ipv4?.network.prefixLen, 16);
  t.same(init('install-cni').command.slice(1), ['/etc/kube-flannel/cni-conf.json', '/etc/cni/net.d/10-flannel.conflist', '0644']);
  t.match(init('seed-net-conf').command, ['node', /seed-net-conf\.js$/, '--net-conf=/etc/kube-flannel/net-conf.json']);
  t.same(init('install-cni-plugin').command.slice(1), ['/opt/flannel-ts/dist/cni/flannel', '/opt/cni/bin/flannel', '0755']);
});

/** Turns FLANNELD_* env entries into flags; a name that is no flanneld flag is reported. */
function envFlags(env: Obj[]): { argv: string[]; unknown: string[] } {
  const argv: string[] = [];
  const unknown: string[] = [];
  for (const e of env.filter((e) => String(e.name).startsWith('FLANNELD_'))) {
    const flag = String(e.name).slice('FLANNELD_'.length).toLowerCase().replace(/_/g, '-');
    if (!knownFlags.has(flag)) unknown.push(e.name);
    argv.push(`--${flag}=${e.value ?? 'https://192.0.2.10:2379'}`);
  }
  return { argv, unknown };
}

t.test('every flag in the manifests is one flanneld accepts (through parseFlags)', async (t) => {
  t.equal(kmain.command.at(-1), '/opt/flannel-ts/dist/flanneld/main.js');
  t.same(envFlags(kmain.env).unknown, []);
  t.doesNotThrow(() => parseFlags(kmain.args, {}), `flanneld ${kmain.args.join(' ')}`);
  t.equal(main.command.at(-1), '/opt/flannel-ts/dist/flanneld/main.js');
  const fromEnv = envFlags(main.env);
  t.same(fromEnv.unknown, []);
  t.doesNotThrow(() => parseFlags([...main.args, ...fromEnv.argv], {}), `flanneld ${main.args.join(' ')}`);
  const seedArgs = init('seed-net-conf').command.slice(2).filter((a: string) => !a.startsWith('--net-conf'));
  t.doesNotThrow(() => parseFlags([...seedArgs, ...envFlags(init('seed-net-conf').env).argv], {}));
  t.same(envFlags([{ name: 'FLANNELD_ETCD_ENDPOINT', value: 'x' }]).unknown, ['FLANNELD_ETCD_ENDPOINT'], 'a misspelt variable would be caught');
  t.throws(() => parseFlags(['--kube-subnet-manager'], {}), 'and so would a flag flanneld does not know');
});

t.test('Containerfile: slim Debian, iproute2, iptables, tini; everything the manifests run is in the image', async (t) => {
  const text = readFileSync(join(REPO, 'deploy/container/Containerfile'), 'utf8');
  const stages = new Map([...text.matchAll(/^FROM (\S+)(?: AS (\S+))?$/gm)].map((m) => [m[2] ?? 'final', String(m[1])]));
  // Where a registry is reachable (no build args): a bookworm-slim builder and runtime; npm run image passes
  // BASE (its mmdebstrap base) and PAYLOAD=prebuilt (the payload staged by assemble-payload.sh).
  t.match(text, /^ARG BASE=registry-base$/m, 'BASE defaults to the registry base');
  t.match(text, /^ARG PAYLOAD=from-source$/m, 'PAYLOAD defaults to compiling from source');
  t.equal(stages.get('registry-base'), 'docker.io/library/node:20-bookworm-slim');
  t.equal(stages.get('from-source'), 'docker.io/library/node:20-bookworm-slim');
  t.equal(stages.get('prebuilt'), 'scratch');
  t.equal(stages.get('payload'), '${PAYLOAD}');
  t.equal(stages.get('final'), '${BASE}');
  const stage = (name: string): string => text.slice(text.indexOf(`AS ${name}\n`)).split(/\nFROM /)[0] as string;
  t.match(stage('registry-base'), /apt-get install -y --no-install-recommends[^\n]*\biproute2\b[^\n]*\biptables\b[^\n]*\btini\b/);
  t.match(stage('from-source'), /sh deploy\/container\/assemble-payload\.sh \/src \/src\/node_modules \/payload/, 'the from-source payload is assembled by the same script');
  const final = text.slice(text.lastIndexOf('\nFROM '));
  t.match(final, /^COPY --from=payload \/payload\/ \/$/m);
  t.match(final, /^ENTRYPOINT \["\/usr\/bin\/tini", "--"\]$/m);
  t.match(final, /^WORKDIR \/opt\/flannel-ts$/m);
  for (const m of stage('from-source').matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const src of String(m[1]).split(' ')) t.ok(existsSync(join(REPO, src)), `COPY source ${src} exists`);
  }
  const assemble = readFileSync(join(REPO, 'deploy/container/assemble-payload.sh'), 'utf8');
  t.match(assemble, /target_name/, 'assemble-payload.sh copies every binding.gyp target (build/Release/<target>.node)');
  t.match(assemble, /install-file\.sh" "\$dest\/bin\/install-file"/, 'and install-file to /opt/flannel-ts/bin/install-file');
  const inImage = (p: string): string | undefined => p.startsWith('/opt/flannel-ts/dist/') ? join(REPO, p.slice('/opt/flannel-ts/'.length))
    : p === '/opt/flannel-ts/bin/install-file' ? join(REPO, 'deploy/container/install-file.sh') : undefined;
  const used = [...pod.initContainers, ...pod.containers, ...kpod.initContainers, ...kpod.containers].flatMap((c: Obj) => c.command as string[]).filter((a) => a.startsWith('/opt/flannel-ts/'));
  for (const p of used) t.ok(inImage(p) && existsSync(inImage(p) as string), `${p} is built into the image (npm run build)`);
});

t.test('install-file copies atomically: a new file renamed into place, with the mode asked for', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-install-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(REPO, 'deploy/container/install-file.sh');
  writeFileSync(join(dir, 'src'), 'new');
  writeFileSync(join(dir, 'dst'), 'old');
  const oldInode = statSync(join(dir, 'dst')).ino;
  const r = spawnSync('sh', [script, join(dir, 'src'), join(dir, 'dst'), '0755'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(readFileSync(join(dir, 'dst'), 'utf8'), 'new');
  t.equal(statSync(join(dir, 'dst')).mode & 0o777, 0o755);
  t.not(statSync(join(dir, 'dst')).ino, oldInode, 'replaced by rename, never rewritten in place');
  t.same(readdirSync(dir).sort(), ['dst', 'src'], 'no temporary file left');
  t.equal(spawnSync('sh', [script, 'only-one-arg']).status, 64);
  t.not(spawnSync('sh', [script, join(dir, 'missing'), join(dir, 'x'), '0644']).status, 0);
  t.same(readdirSync(dir).sort(), ['dst', 'src'], 'a failed copy leaves nothing behind');
});
